//! The router alone, for bench/router.sh: every path of one host to one upstream on the
//! host's loopback, served with the same code and runtime kind as `slipway serve`.
//!
//! Usage: `router_bench LISTEN_ADDR HOST UPSTREAM_PORT [STATIC_DIR]` (UPSTREAM_PORT may be
//! the absolute path of a unix socket instead);
//! `SLIPWAY_ROUTER_WORKERS=N` sets the number of worker threads (default: as `slipway
//! serve`, one per CPU, at most 16). With `STATIC_DIR` (for bench/static.sh), the app has one
//! location `/` whose root is that folder, `passthru: false`: the router serves its files.
//! With `SLIPWAY_BENCH_FASTCGI=1` too (for bench/php.sh), the upstream is PHP-FPM: the
//! location runs `.php` files and passes the rest to `/index.php`, over FastCGI, with
//! scripts named as in a container (`/app/...`).
//! With `SLIPWAY_BENCH_TLS=DIR` (for bench/tls.sh), it listens for HTTPS as `serve
//! --https-listen` does, with the certificates of `DIR/certs` (`HOST.pem` + `HOST.key`)
//! and the local CA of `DIR/ca` for any other host.
//! With `SLIPWAY_OPEN_FILE_CACHE=off`, static files are opened at each request (the
//! open-file cache off, to compare with it on). With `SLIPWAY_BENCH_GZIP_DIR=DIR`, gzipped
//! copies of static files are kept in `DIR` (as `slipway serve` does in `DATA/router/gzip`).

use std::process::ExitCode;

use slipway_router::{EnvRoutes, Location, Router, RouterConfig, Site, Upstream};

// The same allocator as the `slipway` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, host, port, static_dir) = match args.as_slice() {
        [listen, host, port] => (listen, host, port, None),
        [listen, host, port, dir] => (listen, host, port, Some(dir.clone())),
        _ => {
            eprintln!("usage: router_bench LISTEN_ADDR HOST UPSTREAM_PORT [STATIC_DIR]");
            return ExitCode::from(2);
        }
    };
    // A path: the upstream's unix socket (PHP-FPM on a socket, as `slipway serve` runs it).
    let (port, socket) = if port.starts_with('/') {
        (0, Some(std::path::PathBuf::from(port)))
    } else {
        match port.parse::<u16>() {
            Ok(port) => (port, None),
            Err(_) => {
                eprintln!("UPSTREAM_PORT: not a port nor a socket path: {port}");
                return ExitCode::from(2);
            }
        }
    };
    // Like `slipway serve`: connections are accepted on a multi-threaded runtime; `serve`
    // starts the router's own worker threads.
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let mut config = RouterConfig::default();
        if let Ok(workers) = std::env::var("SLIPWAY_ROUTER_WORKERS") {
            match workers.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => config.workers = Some(n),
                _ => {
                    eprintln!("SLIPWAY_ROUTER_WORKERS: not a number from 1 to 256: {workers}");
                    return ExitCode::from(2);
                }
            }
        }
        // SLIPWAY_OPEN_FILE_CACHE=off: static files opened at each request (a comparison).
        config.open_file_cache =
            std::env::var_os("SLIPWAY_OPEN_FILE_CACHE").is_none_or(|v| v != "off");
        // SLIPWAY_BENCH_GZIP_DIR=DIR: gzipped copies of static files kept there, as
        // `slipway serve` keeps them in DATA/router/gzip.
        config.gzip_dir = std::env::var_os("SLIPWAY_BENCH_GZIP_DIR").map(Into::into);
        let workers = config.worker_count();
        let router = Router::new(config);
        let upstream = Upstream {
            release: "bench".into(),
            netns: None,
            port,
            socket,
        };
        let mut routes = EnvRoutes::single(vec![host.clone()], upstream);
        if let Some(dir) = static_dir {
            let fastcgi = std::env::var_os("SLIPWAY_BENCH_FASTCGI").is_some_and(|v| v == "1");
            let mut root = Location::new("/");
            root.root = Some(String::new());
            root.index = vec!["index.html".into()];
            if fastcgi {
                root.scripts = true;
                root.passthru = slipway_router::Passthru::Script("/index.php".into());
            }
            routes.sites = vec![(
                "app".into(),
                Site {
                    app_dir: dir.into(),
                    tag: "bench".into(),
                    locations: vec![root],
                    fastcgi,
                    no_web_process: false,
                    mounts: Vec::new(),
                },
            )];
        }
        if let Err(e) = router.switch("bench/main", routes) {
            eprintln!("routes: {e}");
            return ExitCode::from(1);
        }
        let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("listen {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        let tls = match std::env::var_os("SLIPWAY_BENCH_TLS") {
            None => None,
            Some(dir) => {
                let dir = std::path::PathBuf::from(dir);
                let certificates = slipway_router::LocalCa::open_or_create(&dir.join("ca"))
                    .and_then(|ca| slipway_router::Certificates::new(dir.join("certs"), ca));
                match certificates {
                    Ok(c) => Some(std::sync::Arc::new(c)),
                    Err(e) => {
                        eprintln!("SLIPWAY_BENCH_TLS: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
        };
        println!(
            "router_bench listening on {listen} with {workers} worker(s){}",
            if tls.is_some() { " over TLS" } else { "" }
        );
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let served = match tls {
            Some(certificates) => router.serve_tls(listener, certificates, stop).await,
            None => router.serve(listener, stop).await,
        };
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serve: {e}");
                ExitCode::from(1)
            }
        }
    })
}
