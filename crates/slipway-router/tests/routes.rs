//! Route rules (paths, redirects, several apps), pooled upstream connections, holding
//! requests during a switch, closing upgrades at the drain timeout, safe retries.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::{Request, StatusCode};
use slipway_router::{EnvRoutes, RouteAction, RouteError, RouteRule, RouterConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn rule(host: &str, path: &str, action: RouteAction) -> RouteRule {
    RouteRule {
        host: host.into(),
        path: path.into(),
        action,
        scheme: slipway_router::RouteScheme::Any,
        hsts: None,
    }
}

fn to_app(app: &str) -> RouteAction {
    RouteAction::Upstream(app.into())
}

#[tokio::test]
async fn paths_hosts_and_redirects() {
    let web = upstream("web").await;
    let api = upstream("api").await;
    let r = start_router(RouterConfig::default()).await;
    let routes = EnvRoutes {
        release: "r1".into(),
        upstreams: vec![
            ("web".into(), up("r1-web", web.port)),
            ("api".into(), up("r1-api", api.port)),
        ],
        sites: vec![],
        rules: vec![
            rule("main.demo.localhost", "/", to_app("web")),
            rule("main.demo.localhost", "/api", to_app("api")),
            rule(
                "main.demo.localhost",
                "/api/legacy",
                RouteAction::Redirect {
                    to: "http://main.demo.localhost/api/v2".into(),
                    code: 308,
                },
            ),
            rule(
                "www.main.demo.localhost",
                "/",
                RouteAction::Redirect {
                    to: "http://main.demo.localhost:8080/".into(),
                    code: 301,
                },
            ),
            rule("api.main.demo.localhost", "/v1", to_app("api")),
        ],
    };
    assert!(r.router.switch("demo/main", routes).unwrap().is_none());
    assert_eq!(
        r.router.hosts("demo/main"),
        vec![
            "api.main.demo.localhost",
            "main.demo.localhost",
            "www.main.demo.localhost"
        ]
    );
    let mut c = client(r.addr).await;
    let h = "main.demo.localhost";
    assert_eq!(get(&mut c, h, "/").await.body, "web");
    assert_eq!(
        get(&mut c, h, "/apiary").await.body,
        "web",
        "prefixes match whole segments"
    );
    assert_eq!(get(&mut c, h, "/api").await.body, "api");
    assert_eq!(get(&mut c, h, "/api/x?y=1").await.body, "api");

    let moved = get(&mut c, h, "/api/legacy/users/7?full=1").await;
    assert_eq!(moved.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        moved.headers["location"],
        "http://main.demo.localhost/api/v2/users/7?full=1"
    );
    let moved = get(&mut c, "WWW.main.demo.localhost:8080", "/a/b?c=d").await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        moved.headers["location"],
        "http://main.demo.localhost:8080/a/b?c=d"
    );
    assert!(moved.headers.contains_key("x-request-id"));

    // A host with no rule for the path: 404.
    assert_eq!(
        get(&mut c, "api.main.demo.localhost", "/v1/x").await.body,
        "api"
    );
    let nothing = get(&mut c, "api.main.demo.localhost", "/").await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(!nothing.body.contains("api") && !nothing.body.contains(&api.port.to_string()));

    // Bad routes are refused and change nothing.
    let bad = EnvRoutes {
        release: "r2".into(),
        upstreams: vec![("web".into(), up("r2-web", web.port))],
        sites: vec![],
        rules: vec![rule(h, "/", to_app("nope"))],
    };
    assert_eq!(
        r.router.switch("demo/main", bad).unwrap_err(),
        RouteError::UnknownApp("nope".into())
    );
    assert_eq!(get(&mut c, h, "/api").await.body, "api");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_retired_with_their_release() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    // One worker thread: one pool slot (each worker has its own).
    let config = RouterConfig {
        workers: Some(1),
        ..RouterConfig::default()
    };
    let r = start_router(config).await;
    let hosts = || vec!["main.demo.localhost".to_string()];
    r.router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    // Many clients, one after the other, each on its own connection: one upstream connection.
    for _ in 0..50 {
        assert_eq!(
            get_once(r.addr, "main.demo.localhost", "/").await.body,
            "upstream-a"
        );
    }
    assert_eq!(
        a.connections(),
        1,
        "the upstream connection is kept and reused"
    );
    // POST bodies go over the pooled connection too.
    let mut c = client(r.addr).await;
    for i in 0..20 {
        let req = Request::post("/echo")
            .header("host", "main.demo.localhost")
            .body(full(format!("body-{i}")))
            .unwrap();
        assert_eq!(
            request(&mut c, req).await.unwrap().body,
            format!("body-{i}")
        );
    }
    assert_eq!(a.connections(), 1);
    let live = r.router.current("demo/main").unwrap();
    assert_eq!(live.idle_connections(), 1);

    // Concurrent requests open more connections, kept for the next ones.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = r.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            for _ in 0..20 {
                assert_eq!(
                    get(&mut c, "main.demo.localhost", "/").await.status,
                    StatusCode::OK
                );
            }
        }));
    }
    for t in tasks {
        within(10, t).await.unwrap();
    }
    assert!(
        a.connections() <= 9,
        "{} connections for 8 clients",
        a.connections()
    );

    // A slow request is in flight on `a` when the routes switch to `b`.
    let addr = r.addr;
    let slow = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/slow").await });
    within(5, a.state.started.notified()).await;
    let old = r
        .router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap()
        .unwrap();
    assert!(old.is_retired());
    assert_eq!(
        old.idle_connections(),
        0,
        "idle connections of the old release close at once"
    );
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.body,
        "upstream-b"
    );
    a.state.release.notify_one();
    assert_eq!(within(5, slow).await.unwrap().body, "upstream-a");
    assert!(old.drained(Duration::from_secs(5)).await);
    // The busy connection closed after its request: nothing of `a` stays open.
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.closed() < a.connections() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.closed(),
        a.connections(),
        "connections to the old release stay open"
    );
    assert_eq!(old.idle_connections(), 0);

    // Re-applying the same upstreams keeps the release and its connections.
    let before = b.connections();
    assert!(r
        .router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap()
        .is_none());
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.body,
        "upstream-b"
    );
    assert_eq!(b.connections(), before);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_wait_for_the_switch_and_are_bounded() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let config = RouterConfig {
        hold_timeout: Duration::from_millis(700),
        ..RouterConfig::default()
    };
    let r = start_router(config).await;
    let hosts = || vec!["main.demo.localhost".to_string()];
    r.router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    r.router
        .switch(
            "demo/other",
            EnvRoutes::single(vec!["other.localhost".into()], up("r-o", a.port)),
        )
        .unwrap();

    let hold = r.router.hold("demo/main");
    let addr = r.addr;
    let held = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/").await });
    // Other environments are not held.
    assert_eq!(
        within(2, get_once(r.addr, "other.localhost", "/"))
            .await
            .body,
        "upstream-a"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "a held request was answered");
    r.router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap();
    drop(hold);
    let answer = within(5, held).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body, "upstream-b",
        "the held request goes to the new release"
    );

    // A hold that is never released delays requests by the hold timeout, no more.
    let _forever = r.router.hold("demo/main");
    let t = Instant::now();
    let answer = within(5, get_once(r.addr, "main.demo.localhost", "/")).await;
    assert_eq!(answer.body, "upstream-b");
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn upgrades_close_in_order_at_the_drain_timeout() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let r = start_router(RouterConfig::default()).await;
    let hosts = || vec!["main.demo.localhost".to_string()];
    r.router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"GET /ws HTTP/1.1\r\nHost: main.demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut reader = BufReader::new(raw);
    let mut line = String::new();
    within(5, reader.read_line(&mut line)).await.unwrap();
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    while line != "\r\n" {
        line.clear();
        within(5, reader.read_line(&mut line)).await.unwrap();
    }
    let old = r
        .router
        .switch("demo/main", EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap()
        .unwrap();
    // The upgraded connection keeps working on the old release after the switch...
    reader.get_mut().write_all(b"still here").await.unwrap();
    let mut echoed = [0u8; 10];
    within(5, reader.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"still here");
    assert_eq!(old.in_flight(), 1);
    assert!(!old.drained(Duration::from_millis(100)).await);
    // ...until the drain timeout: then it ends with an end of stream, not a reset.
    old.close_upgrades();
    let mut rest = Vec::new();
    let n = within(5, reader.read_to_end(&mut rest))
        .await
        .expect("an orderly end, not a reset");
    assert_eq!(n, 0);
    assert!(old.drained(Duration::from_secs(5)).await);
    r.stop().await.unwrap();
}

/// An upstream that answers the first request of each connection (keep-alive) and closes
/// the connection without answering when a second request arrives.
async fn one_request_per_connection_upstream(
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(s);
                for n in 0.. {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if n > 0 {
                        return; // closes without an answer
                    }
                    let mut body = vec![0u8; len];
                    let _ = reader.read_exact(&mut body).await;
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (port, answered)
}

#[tokio::test]
async fn only_requests_that_are_safe_to_repeat_are_sent_again() {
    let (port, answered) = one_request_per_connection_upstream().await;
    let r = start_router(RouterConfig::default()).await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r", port)),
        )
        .unwrap();
    let mut c = client(r.addr).await;
    // Each GET after the first lands on a reused connection the app closes: sent again.
    for _ in 0..5 {
        let answer = get(&mut c, "main.demo.localhost", "/").await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "ok")
        );
    }
    // A POST whose body may have been processed is not sent twice: 502.
    let req = Request::post("/")
        .header("host", "main.demo.localhost")
        .body(full("pay once"))
        .unwrap();
    let answer = request(&mut c, req).await.unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 5);
    r.stop().await.unwrap();
}
