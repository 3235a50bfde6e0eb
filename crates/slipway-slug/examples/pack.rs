//! `cargo run -p slipway-slug --example pack -- DIR OUT [LEVEL]`: pack a folder as a build
//! does and print the digest (the library alone, for profiling the packer).

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: pack DIR OUT [LEVEL]");
        std::process::exit(2);
    };
    let level = args
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(slipway_slug::DEFAULT_LEVEL);
    let file = match std::fs::File::create(&out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{out}: {e}");
            std::process::exit(1);
        }
    };
    match slipway_slug::pack_dir(std::path::Path::new(&dir), &file, level) {
        Ok(info) => println!("{} {} {}", info.digest, info.size, info.diff_id),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
