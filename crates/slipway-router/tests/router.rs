//! The router against real upstream HTTP servers on loopback.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use slipway_router::{probe_http, EnvRoutes, ProbeError, RouterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header_lines(body: &str) -> Vec<(String, String)> {
    body.lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn header<'a>(lines: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn routes_by_host_and_adds_forwarding_headers() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let r = start_router(RouterConfig::default()).await;
    assert!(r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(
                vec!["main.demo.localhost".into(), "WWW.Example.com".into()],
                up("r-a", a.port)
            )
        )
        .unwrap()
        .is_none());
    assert!(r
        .router
        .switch(
            "demo/dev",
            EnvRoutes::single(vec!["dev.demo.localhost".into()], up("r-b", b.port))
        )
        .unwrap()
        .is_none());
    assert_eq!(
        r.router.current("demo/main").map(|u| u.upstreams()[0].port),
        Some(a.port)
    );
    assert!(r.router.current("demo/nope").is_none());

    let mut c = client(r.addr).await;
    // Same keep-alive connection, different hosts; port and case are ignored.
    assert_eq!(
        get(&mut c, "main.demo.localhost:8080", "/").await.body,
        "upstream-a"
    );
    assert_eq!(
        get(&mut c, "DEV.demo.LOCALHOST", "/").await.body,
        "upstream-b"
    );
    assert_eq!(
        get(&mut c, "www.example.com.", "/").await.body,
        "upstream-a"
    );

    let req = Request::get("/headers?x=1")
        .header("host", "Main.Demo.localhost:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9v")
        .header("te", "trailers")
        .header("x-custom", "kept")
        .body(empty())
        .unwrap();
    let answer = request(&mut c, req).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let lines = header_lines(&answer.body);
    assert_eq!(
        header(&lines, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(header(&lines, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        header(&lines, "x-forwarded-host"),
        ["Main.Demo.localhost:8080"]
    );
    assert_eq!(header(&lines, "host"), ["Main.Demo.localhost:8080"]);
    assert_eq!(header(&lines, "x-custom"), ["kept"]);
    for gone in ["x-private", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            header(&lines, gone).is_empty(),
            "{gone} was forwarded: {}",
            answer.body
        );
    }
    let generated = header(&lines, "x-request-id");
    assert_eq!(generated.len(), 1);
    assert_eq!(generated[0].len(), 32);
    assert!(generated[0].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        answer.headers["x-request-id"], generated[0],
        "the id is returned to the client too"
    );

    // A given request id is passed on unchanged.
    let req = Request::get("/headers")
        .header("host", "main.demo.localhost")
        .header("x-request-id", "abc-42")
        .body(empty())
        .unwrap();
    let answer = request(&mut c, req).await.unwrap();
    assert_eq!(
        header(&header_lines(&answer.body), "x-request-id"),
        ["abc-42"]
    );

    // Absolute-form request target: the URI's authority routes, the upstream gets origin-form.
    let req = Request::get("http://dev.demo.localhost/headers")
        .header("host", "main.demo.localhost")
        .body(empty())
        .unwrap();
    let answer = request(&mut c, req).await.unwrap();
    assert!(answer.body.starts_with("upstream-b\n"), "{}", answer.body);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_host_is_404_and_missing_host_is_400() {
    let a = upstream("upstream-a").await;
    let r = start_router_to(RouterConfig::default(), &a).await;
    let answer = get_once(r.addr, "other.demo.localhost", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.body.starts_with("404 Not Found"), "{}", answer.body);
    assert!(!answer.body.contains("127.0.0.1") && !answer.body.contains(&a.port.to_string()));
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert!(answer.headers.contains_key("x-request-id"));
    // A suffix or prefix of a routed host is no match.
    assert_eq!(
        get_once(r.addr, "demo.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_once(r.addr, "xmain.demo.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(a.hits(), 0);

    // HTTP/1.1 without Host.
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = within(5, raw.read(&mut buf)).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");

    // Garbage instead of HTTP: the connection is closed, the router keeps serving.
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = within(5, raw.read_to_end(&mut sink)).await;
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.body,
        "upstream-a"
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn deploying_is_503_until_switch() {
    let a = upstream("upstream-a").await;
    let r = start_router(RouterConfig::default()).await;
    r.router
        .set_deploying("demo/main", vec!["main.demo.localhost".into()]);
    assert!(r.router.current("demo/main").is_none());
    let answer = get_once(r.addr, "main.demo.localhost", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "5");
    assert!(answer.body.starts_with("503"), "{}", answer.body);

    assert!(r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a", a.port))
        )
        .unwrap()
        .is_none());
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.body,
        "upstream-a"
    );

    // A live environment keeps serving while it is redeployed.
    r.router
        .set_deploying("demo/main", vec!["main.demo.localhost".into()]);
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.status,
        StatusCode::OK
    );

    // remove() of a deploying-only environment drops its marker.
    r.router
        .set_deploying("demo/new", vec!["new.demo.localhost".into()]);
    assert!(r.router.remove("demo/new").is_none());
    assert_eq!(
        get_once(r.addr, "new.demo.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // remove() of a live environment returns its route.
    let removed = r.router.remove("demo/main").expect("live route");
    assert_eq!(removed.upstreams()[0].port, a.port);
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(r.router.current("demo/main").is_none());
    r.stop().await.unwrap();
}

#[tokio::test]
async fn upstream_down_is_502_and_switch_back_recovers() {
    let a = upstream("upstream-a").await;
    let r = start_router(RouterConfig::default()).await;
    let dead = closed_port();
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-dead", dead)),
        )
        .unwrap();
    let mut c = client(r.addr).await;
    let answer = get(&mut c, "main.demo.localhost", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(answer.body.starts_with("502"), "{}", answer.body);
    assert!(!answer.body.contains(&dead.to_string()));
    // Same client connection keeps working after a 502.
    let old = r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a", a.port)),
        )
        .unwrap()
        .unwrap();
    assert_eq!(old.upstreams()[0].port, dead);
    assert_eq!(old.in_flight(), 0);
    assert!(old.drained(Duration::from_millis(1)).await);
    assert_eq!(
        get(&mut c, "main.demo.localhost", "/").await.body,
        "upstream-a"
    );
    // Switching to the same upstream again returns nothing to drain.
    assert!(r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(
                vec!["main.demo.localhost".into(), "alias.localhost".into()],
                up("r-a", a.port)
            )
        )
        .unwrap()
        .is_none());
    assert_eq!(get(&mut c, "alias.localhost", "/").await.body, "upstream-a");
    r.stop().await.unwrap();
}

#[tokio::test]
async fn upstream_closing_without_answer_is_502() {
    // An upstream that accepts and closes at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let r = start_router(RouterConfig::default()).await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-rude", port)),
        )
        .unwrap();
    let answer = get_once(r.addr, "main.demo.localhost", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn slow_upstream_headers_are_504_after_request_timeout() {
    let a = upstream("upstream-a").await;
    let config = RouterConfig {
        request_timeout: Some(Duration::from_millis(200)),
        ..RouterConfig::default()
    };
    let r = start_router(config).await;
    let route_env = "demo/main";
    r.router
        .switch(
            route_env,
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a", a.port)),
        )
        .unwrap();
    let answer = within(5, get_once(r.addr, "main.demo.localhost", "/slow")).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    // The timed-out request no longer counts in flight.
    let route = r.router.remove(route_env).unwrap();
    assert!(route.drained(Duration::from_secs(2)).await);
    a.state.release.notify_one();
    r.stop().await.unwrap();
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let a = upstream("upstream-a").await;
    let r = start_router_to(RouterConfig::default(), &a).await;
    let mut c = client(r.addr).await;

    // Request body: 8 MiB in chunks, echoed back.
    let (tx, body) = channel_body();
    let req = Request::post("/echo")
        .header("host", "main.demo.localhost")
        .body(body)
        .unwrap();
    let feeder = tokio::spawn(async move {
        for i in 0..128u32 {
            let chunk = Bytes::from(vec![(i % 251) as u8; 64 * 1024]);
            tx.send(chunk).await.unwrap();
        }
    });
    let answer = within(30, async {
        c.ready().await.unwrap();
        let resp = c.send_request(req).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    })
    .await;
    feeder.await.unwrap();
    assert_eq!(answer.len(), 128 * 64 * 1024);
    for i in 0..128usize {
        assert!(answer[i * 65536..(i + 1) * 65536]
            .iter()
            .all(|&b| b == (i % 251) as u8));
    }

    // Response body: the first chunk arrives before the upstream produced the second, and
    // the request stays in flight until the body is complete.
    let route = r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a2", a.port)),
        )
        .unwrap()
        .unwrap();
    assert!(route.drained(Duration::from_secs(2)).await);
    let req = Request::get("/drip")
        .header("host", "main.demo.localhost")
        .body(empty())
        .unwrap();
    c.ready().await.unwrap();
    let resp = within(5, c.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = within(5, body.frame())
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    let live = r.router.remove("demo/main").unwrap();
    assert_eq!(live.name(), "r-a2");
    assert_eq!(
        live.in_flight(),
        1,
        "headers sent, body not: still in flight"
    );
    assert!(!live.drained(Duration::from_millis(100)).await);
    a.state.release.notify_one();
    let rest = within(5, body.collect()).await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
    assert!(live.drained(Duration::from_secs(2)).await);
    assert_eq!(live.in_flight(), 0);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switch_under_load_loses_no_request() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    // Several workers, each with its own share of every pool, whatever the CPU count.
    let r = start_router(RouterConfig {
        workers: Some(3),
        ..RouterConfig::default()
    })
    .await;
    let env = "demo/main";
    let hosts = || vec!["main.demo.localhost".to_string()];
    r.router
        .switch(env, EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (stop, ok, addr) = (Arc::clone(&stop), Arc::clone(&ok), r.addr);
        workers.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = Request::get("/")
                    .header("host", "main.demo.localhost")
                    .body(empty())
                    .unwrap();
                match request(&mut c, req).await {
                    Ok(ans)
                        if ans.status == StatusCode::OK && ans.body.starts_with("upstream-") =>
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(ans) => failures.push(format!("{} {}", ans.status, ans.body)),
                    Err(err) => {
                        failures.push(err.to_string());
                        c = client(addr).await;
                    }
                }
            }
            failures
        }));
    }

    let mut drains = Vec::new();
    for i in 0..200 {
        let (release, port) = if i % 2 == 0 {
            ("r-b", b.port)
        } else {
            ("r-a", a.port)
        };
        let old = r
            .router
            .switch(env, EnvRoutes::single(hosts(), up(release, port)))
            .unwrap()
            .expect("an old route every time");
        assert_ne!(old.upstreams()[0].port, port);
        drains.push(tokio::spawn(async move {
            old.drained(Duration::from_secs(10)).await
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(within(30, w).await.unwrap());
    }
    for d in drains {
        assert!(within(30, d).await.unwrap(), "an old route did not drain");
    }
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok > 500, "only {ok} requests ran");
    assert!(
        a.hits() > 50 && b.hits() > 50,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
    assert_eq!(a.hits() + b.hits(), ok);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn slow_request_finishes_on_old_release_after_switch() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let r = start_router_to(RouterConfig::default(), &a).await;

    let addr = r.addr;
    let slow = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/slow").await });
    within(5, a.state.started.notified()).await;

    let old = r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-b", b.port)),
        )
        .unwrap()
        .unwrap();
    assert_eq!(old.name(), "r-a");
    assert_eq!(old.in_flight(), 1);
    // New requests go to the new release while the old one still works.
    assert_eq!(
        get_once(r.addr, "main.demo.localhost", "/").await.body,
        "upstream-b"
    );
    assert!(
        !old.drained(Duration::from_millis(200)).await,
        "drained while a request is in flight"
    );

    let waiter = {
        let old = Arc::clone(&old);
        tokio::spawn(async move { old.drained(Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    a.state.release.notify_one();
    let answer = within(10, slow).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body, "upstream-a",
        "the slow request completes from the old release"
    );
    assert!(within(10, waiter).await.unwrap());
    assert_eq!(old.in_flight(), 0);
    r.stop().await.unwrap();
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let a = upstream("upstream-a").await;
    let r = start_router_to(RouterConfig::default(), &a).await;
    let stream = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, TestBody>(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("http://Main.demo.localhost:8080/headers")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(empty())
            .unwrap();
        let resp = within(5, sender.send_request(req)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        let lines = header_lines(&body);
        assert!(body.starts_with("upstream-a\n"), "{body}");
        assert_eq!(header(&lines, "host"), ["Main.demo.localhost:8080"]);
        assert_eq!(
            header(&lines, "x-forwarded-host"),
            ["Main.demo.localhost:8080"]
        );
        assert_eq!(header(&lines, "cookie"), ["a=1; b=2"]);
    }
    let req = Request::get("http://nobody.localhost/")
        .body(empty())
        .unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    r.stop().await.unwrap();
}

/// The value of `slipway_router_open_upgrades` of `env` in the router's metrics.
fn open_upgrades(router: &Arc<slipway_router::Router>, env: &str) -> Option<f64> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(router.collector()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let series = format!("slipway_router_open_upgrades{{environment=\"{env}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn upgrade_is_passed_through() {
    let a = upstream("upstream-a").await;
    let r = start_router_to(RouterConfig::default(), &a).await;
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"GET /ws HTTP/1.1\r\nHost: main.demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = within(5, raw.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "closed before the 101: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    raw.write_all(b"ping through the router").await.unwrap();
    let mut echoed = vec![0u8; 23];
    within(5, raw.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"ping through the router");
    let route = r.router.current("demo/main").unwrap();
    assert_eq!(route.upstreams()[0].port, a.port);
    // Counted as open while it is, and no longer once the client closed it.
    assert_eq!(open_upgrades(&r.router, "demo/main"), Some(1.0));
    drop(raw);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_upgrades(&r.router, "demo/main") != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "still counted open: {:?}",
            open_upgrades(&r.router, "demo/main")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let a = upstream("upstream-a").await;
    let mut r = start_router_to(RouterConfig::default(), &a).await;
    let addr = r.addr;
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = client(addr).await;
    assert_eq!(
        get(&mut idle, "main.demo.localhost", "/").await.status,
        StatusCode::OK
    );
    let slow = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/slow").await });
    within(5, a.state.started.notified()).await;
    r.trigger_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !r.served.is_finished(),
        "serve returned with a request in flight"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    a.state.release.notify_one();
    let answer = within(10, slow).await.unwrap();
    assert_eq!(answer.body, "upstream-a");
    within(10, &mut r.served).await.unwrap().unwrap();
}

/// A client connected before the stop whose request comes only after it (the race of every
/// upgrade: the old server stops accepting as clients are between connect and send) is
/// answered, not closed under its request (which reset it): on the router's own HTTP/1.1
/// path and on hyper's (which the console's pages and anything unusual take).
#[tokio::test]
async fn a_connection_accepted_before_the_stop_gets_its_request_answered() {
    let own = "GET / HTTP/1.1\r\nHost: main.demo.localhost\r\n\r\n";
    // A `Connection` option other than close and keep-alive: hyper's.
    let hypers =
        "GET / HTTP/1.1\r\nHost: main.demo.localhost\r\nConnection: te\r\nTE: trailers\r\n\r\n";
    for request in [own, hypers] {
        let a = upstream("upstream-a").await;
        let mut r = start_router_to(RouterConfig::default(), &a).await;
        let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
        // Accepted and handed to a worker, then the stop, then the request.
        tokio::time::sleep(Duration::from_millis(300)).await;
        r.trigger_stop();
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let read = within(5, raw.read_to_end(&mut got)).await;
        let answer = String::from_utf8_lossy(&got);
        assert!(
            read.is_ok(),
            "{request:?}: the connection was reset: {read:?} after {answer:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{request:?}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{request:?}: {answer}"
        );
        assert!(answer.ends_with("upstream-a"), "{request:?}: {answer}");
        within(10, &mut r.served).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn shutdown_gives_up_after_drain_timeout() {
    let a = upstream("upstream-a").await;
    let config = RouterConfig {
        drain_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let mut r = start_router_to(config, &a).await;
    let addr = r.addr;
    let slow = tokio::spawn(async move {
        let mut c = client(addr).await;
        let req = Request::get("/slow")
            .header("host", "main.demo.localhost")
            .body(empty())
            .unwrap();
        request(&mut c, req).await.map(|a| a.status)
    });
    within(5, a.state.started.notified()).await;
    r.trigger_stop();
    within(5, &mut r.served).await.unwrap().unwrap();
    assert!(
        within(5, slow).await.unwrap().is_err(),
        "the unfinished request is cut"
    );
}

#[tokio::test]
async fn probe_reports_status_or_error() {
    let a = upstream("upstream-a").await;
    assert_eq!(
        probe_http(None, a.port, Duration::from_secs(5))
            .await
            .unwrap(),
        200
    );
    let err = probe_http(None, closed_port(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
    // Accepts but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            kept.push(s);
        }
    });
    let err = probe_http(None, port, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
    holder.abort();
    // Answers garbage.
    let liar = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = liar.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = liar.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.0\r\n").await;
        }
    });
    let err = probe_http(None, port, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Http { .. }), "{err}");
}

#[tokio::test]
async fn client_going_away_ends_the_in_flight_request() {
    let a = upstream("upstream-a").await;
    let r = start_router_to(RouterConfig::default(), &a).await;
    let addr = r.addr;

    // Waiting for headers.
    let waiting = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/slow").await });
    within(5, a.state.started.notified()).await;
    let route = r.router.remove("demo/main").unwrap();
    assert_eq!(route.in_flight(), 1);
    waiting.abort();
    assert!(
        route.drained(Duration::from_secs(5)).await,
        "an abandoned request stays counted"
    );

    // Reading the body.
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a", a.port)),
        )
        .unwrap();
    let mut c = client(addr).await;
    let req = Request::get("/drip")
        .header("host", "main.demo.localhost")
        .body(empty())
        .unwrap();
    c.ready().await.unwrap();
    let resp = within(5, c.send_request(req)).await.unwrap();
    let route = r.router.remove("demo/main").unwrap();
    assert_eq!(route.in_flight(), 1);
    drop(resp);
    drop(c);
    assert!(
        route.drained(Duration::from_secs(5)).await,
        "an abandoned body stays counted"
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn idle_and_too_slow_clients_are_closed_but_slow_answers_are_not() {
    let a = upstream("upstream-a").await;
    let r = start_router(RouterConfig {
        client_idle_timeout: Duration::from_millis(800),
        ..RouterConfig::default()
    })
    .await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r-a", a.port)),
        )
        .unwrap();
    // Until the router closes the connection: how long, and what it answered.
    async fn until_closed(s: &mut tokio::net::TcpStream) -> (Duration, String) {
        let t = std::time::Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match within(10, s.read(&mut buf)).await {
                Ok(0) | Err(_) => return (t.elapsed(), String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    // Headers that never end.
    let mut slow = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: main.demo.localhost\r\nX-Slow: 1")
        .await
        .unwrap();
    let (took, answered) = until_closed(&mut slow).await;
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );
    assert!(!answered.contains("200"), "{answered}");

    // A kept-alive connection left idle after one request.
    let mut idle = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: main.demo.localhost\r\n\r\n")
        .await
        .unwrap();
    let (took, answered) = until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered}");
    assert!(answered.ends_with("upstream-a"), "{answered}");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );

    // An answer that takes longer than the idle timeout is waited for.
    let addr = r.addr;
    let pending = tokio::spawn(async move { get_once(addr, "main.demo.localhost", "/slow").await });
    within(5, a.state.started.notified()).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.state.release.notify_one();
    let answer = within(5, pending).await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "upstream-a")
    );
    r.stop().await.unwrap();
}
