//! Dialing into a real network namespace (needs root; never skipped).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hyper::StatusCode;
use slipway_router::{
    connect, forget_netns, netns_threads, probe_http, EnvRoutes, RouterConfig, Upstream,
};

/// A network namespace created with `ip netns add`, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create(tag: &str) -> NetNs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "slipway-rt-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::SeqCst)
        );
        run(&["netns", "add", &name]);
        let ns = NetNs { name };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn delete(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.delete();
    }
}

fn run(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// A listener on 127.0.0.1:0 inside the namespace at `path` (bound by a thread that
/// entered it; the socket stays in that namespace).
fn listener_in(path: &Path) -> tokio::net::TcpListener {
    let path = path.to_path_buf();
    let std_listener = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    })
    .join()
    .unwrap();
    tokio::net::TcpListener::from_std(std_listener).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_into_a_network_namespace() {
    let ns = NetNs::create("proxy");
    let inner = upstream_on("in-netns", listener_in(&ns.path()));

    // The port answers inside the namespace only.
    let mut conn = connect(Some(&ns.path()), inner.port).await.unwrap();
    drop(conn);
    assert_eq!(
        probe_http(Some(&ns.path()), inner.port, Duration::from_secs(5))
            .await
            .unwrap(),
        200
    );
    if let Ok(code) = probe_http(None, inner.port, Duration::from_secs(2)).await {
        // Something unrelated on the host may use the same port number; it is not ours.
        assert_eq!(
            inner.hits(),
            1,
            "host probe (status {code}) reached the namespace"
        );
    }

    let r = start_router(RouterConfig::default()).await;
    let target = Upstream {
        release: "r-ns".into(),
        netns: Some(ns.path()),
        port: inner.port,
        socket: None,
    };
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], target),
        )
        .unwrap();
    let mut c = client(r.addr).await;
    for _ in 0..20 {
        let answer = get(&mut c, "main.demo.localhost", "/headers").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.starts_with("in-netns\n"), "{}", answer.body);
        assert!(answer.body.contains("x-forwarded-proto: http"));
    }
    assert_eq!(inner.hits(), 21);

    // Wrong port inside the namespace: 502, not a hang.
    let dead = Upstream {
        release: "r-dead".into(),
        netns: Some(ns.path()),
        port: closed_port(),
        socket: None,
    };
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], dead),
        )
        .unwrap();
    assert_eq!(
        get(&mut c, "main.demo.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY
    );

    // The namespace is deleted and re-created under the same name: the kept thread of the
    // old namespace must not be used for the new one.
    drop(inner);
    ns.delete();
    let missing = connect(Some(&ns.path()), 80).await.unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound, "{missing}");
    assert_eq!(
        get(&mut c, "main.demo.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    run(&["netns", "add", &ns.name]);
    run(&["-n", &ns.name, "link", "set", "lo", "up"]);
    let again = upstream_on("in-new-netns", listener_in(&ns.path()));
    let target = Upstream {
        release: "r-ns2".into(),
        netns: Some(ns.path()),
        port: again.port,
        socket: None,
    };
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], target),
        )
        .unwrap();
    let answer = get(&mut c, "main.demo.localhost", "/").await;
    assert_eq!(answer.body, "in-new-netns");

    // forget_netns ends the thread; the next connect starts a new one.
    let before = netns_threads();
    forget_netns(&ns.path());
    assert_eq!(netns_threads(), before - 1);
    assert_eq!(
        get(&mut c, "main.demo.localhost", "/").await.body,
        "in-new-netns"
    );
    conn = connect(Some(&ns.path()), again.port).await.unwrap();
    drop(conn);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn bad_namespace_paths_fail_cleanly() {
    let err = connect(Some(Path::new("/nonexistent/netns/x")), 80)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    // A file that is no namespace: setns fails; the error comes back, nothing hangs.
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = within(5, connect(Some(file.path()), 80)).await.unwrap_err();
    assert!(err.to_string().contains("setns"), "{err}");
    // Still failing the second time (the failed thread is not reused as if it worked).
    let err = within(5, connect(Some(file.path()), 80)).await.unwrap_err();
    assert!(err.to_string().contains("setns"), "{err}");

    // Through the router: 502.
    let r = start_router(RouterConfig::default()).await;
    let target = Upstream {
        release: "r-bad".into(),
        netns: Some(file.path().to_path_buf()),
        port: 80,
        socket: None,
    };
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], target),
        )
        .unwrap();
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    r.stop().await.unwrap();
}
