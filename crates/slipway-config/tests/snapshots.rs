//! Snapshot tests of the diagnostics for broken fixtures (tests/fixtures/NAME/ is a repository tree,
//! tests/fixtures/NAME.expected the exact `slipway config check` output).
//! Regenerate with `SLIPWAY_BLESS=1 cargo test -p slipway-config --test snapshots`, then review the diff.

use slipway_config::{load, DirSource};
use std::path::PathBuf;

fn render(dir: &std::path::Path) -> String {
    match load(&DirSource::new(dir)) {
        Ok(l) => {
            let mut s = format!(
                "ok: {:?}, {} apps\n",
                l.format,
                l.topology.applications.len()
            );
            for w in &l.warnings {
                s += &format!("{w}\n");
            }
            s
        }
        Err(d) => format!("{d}\n"),
    }
}

#[test]
fn broken_fixtures_give_the_expected_diagnostics() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bless = std::env::var_os("SLIPWAY_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "fixtures missing");
    let mut mismatches = Vec::new();
    for dir in dirs {
        let got = render(&dir);
        let expected_path = dir.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            mismatches.push(format!(
                "== {}\n-- expected:\n{want}-- got:\n{got}",
                dir.display()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
