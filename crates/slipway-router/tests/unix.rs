//! The router against upstreams on unix sockets (`socket_family: unix`): pooled keep-alive
//! connections, request bodies, upgrades, the health probe, and a switch between two
//! releases' sockets with a request in flight on the old one.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_router::{probe_http_unix, EnvRoutes, ProbeError, RouterConfig, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::Notify;

const HOST: &str = "main.demo.localhost";

/// An HTTP/1.1 app on a unix socket: `/` answers its name, `/echo` the request body,
/// `/slow` its name once `release` is notified (`started` first); an `Upgrade` request
/// gets a 101 and a raw echo.
struct UnixApp {
    path: PathBuf,
    connections: Arc<AtomicUsize>,
    started: Arc<Notify>,
    release: Arc<Notify>,
}

fn unix_app(dir: &Path, name: &'static str) -> UnixApp {
    let path = dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&path).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (c, s, r) = (connections.clone(), started.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (s, r) = (s.clone(), r.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                        let (s, r) = (s.clone(), r.clone());
                        async move {
                            if req.headers().contains_key("upgrade") {
                                let on_upgrade = hyper::upgrade::on(&mut req);
                                tokio::spawn(async move {
                                    if let Ok(up) = on_upgrade.await {
                                        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(up));
                                        let _ = tokio::io::copy(&mut rd, &mut wr).await;
                                    }
                                });
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(StatusCode::SWITCHING_PROTOCOLS)
                                        .header("upgrade", "echo")
                                        .header("connection", "upgrade")
                                        .body(empty())
                                        .unwrap(),
                                );
                            }
                            Ok(match req.uri().path() {
                                "/echo" => {
                                    Response::new(http_body_util::combinators::UnsyncBoxBody::new(
                                        req.into_body(),
                                    ))
                                }
                                "/slow" => {
                                    s.notify_one();
                                    r.notified().await;
                                    Response::new(full(name))
                                }
                                _ => Response::new(full(name)),
                            })
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    UnixApp {
        path,
        connections,
        started,
        release,
    }
}

fn on_socket(release: &str, socket: &Path) -> Upstream {
    Upstream {
        release: release.into(),
        netns: None,
        // A port nothing listens on: the socket, not the port, must be used.
        port: closed_port(),
        socket: Some(socket.to_path_buf()),
    }
}

#[tokio::test]
async fn unix_socket_upstreams_pool_stream_upgrade_and_switch() {
    let dir = tempfile::tempdir().unwrap();
    let a = unix_app(dir.path(), "app-a");
    let b = unix_app(dir.path(), "app-b");
    let r = start_router(RouterConfig::default()).await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec![HOST.into()], on_socket("r-a", &a.path)),
        )
        .unwrap();

    // The health probe speaks HTTP over the socket; a missing socket is a connect error.
    assert_eq!(
        probe_http_unix(&a.path, Duration::from_secs(5))
            .await
            .unwrap(),
        200
    );
    let missing = dir.path().join("missing.sock");
    assert!(matches!(
        probe_http_unix(&missing, Duration::from_secs(5)).await,
        Err(ProbeError::SocketConnect { .. })
    ));

    // Keep-alive GETs reuse one pooled upstream connection.
    let before = a.connections.load(Ordering::SeqCst);
    let mut c = client(r.addr).await;
    for _ in 0..5 {
        let answer = within(5, get(&mut c, HOST, "/")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "app-a")
        );
    }
    assert_eq!(
        a.connections.load(Ordering::SeqCst) - before,
        1,
        "one upstream connection for five requests"
    );

    // A request body streams through and back.
    let body = "x".repeat(200_000);
    let req = Request::post("/echo")
        .header("host", HOST)
        .body(full(body.clone()))
        .unwrap();
    let answer = within(5, request(&mut c, req)).await.unwrap();
    assert_eq!(answer.body.len(), body.len());
    assert_eq!(answer.body, body);

    // An upgrade is passed through to the socket.
    let mut raw = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    raw.write_all(b"GET /ws HTTP/1.1\r\nHost: main.demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = within(5, raw.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"));
    raw.write_all(b"ping over a unix socket").await.unwrap();
    let mut echoed = [0u8; 23];
    within(5, raw.read_exact(&mut echoed)).await.unwrap();
    assert_eq!(&echoed, b"ping over a unix socket");

    // Switch to another release's socket with a request in flight on the old one: it
    // finishes there, new requests go to the new socket, the old release drains.
    let addr = r.addr;
    let slow = tokio::spawn(async move { get_once(addr, HOST, "/slow").await });
    within(5, a.started.notified()).await;
    let old = r
        .router
        .switch(
            "demo/main",
            EnvRoutes::single(vec![HOST.into()], on_socket("r-b", &b.path)),
        )
        .unwrap()
        .unwrap();
    assert_eq!(within(5, get(&mut c, HOST, "/")).await.body, "app-b");
    assert!(!old.drained(Duration::from_millis(100)).await);
    a.release.notify_one();
    let answer = within(5, slow).await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "app-a")
    );
    drop(raw);
    assert!(old.drained(Duration::from_secs(5)).await);
    r.stop().await.unwrap();
}
