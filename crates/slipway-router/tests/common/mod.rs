//! Test helpers: real upstream HTTP servers, a running router, an HTTP/1.1 client.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use slipway_router::{Router, RouterConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

/// Body type used by the test client and upstreams.
pub type TestBody = UnsyncBoxBody<Bytes, hyper::Error>;

pub fn full(data: impl Into<Bytes>) -> TestBody {
    UnsyncBoxBody::new(Full::new(data.into()).map_err(|never: Infallible| match never {}))
}

pub fn empty() -> TestBody {
    UnsyncBoxBody::new(Empty::new().map_err(|never: Infallible| match never {}))
}

/// A body fed chunk by chunk through a channel.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

pub fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, UnsyncBoxBody::new(ChannelBody(rx)))
}

/// Shared state of one upstream server.
#[derive(Default)]
pub struct UpstreamState {
    pub name: String,
    /// Requests received.
    pub hits: AtomicUsize,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Connections that ended.
    pub closed: AtomicUsize,
    /// Notified when a `/slow` or `/drip` request arrived.
    pub started: Notify,
    /// `/slow` and `/drip` wait for this before finishing.
    pub release: Notify,
}

/// A running upstream server.
pub struct TestUpstream {
    pub port: u16,
    pub state: Arc<UpstreamState>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestUpstream {
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.state.closed.load(Ordering::SeqCst)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Start an upstream named `name` on 127.0.0.1:0 of the host.
pub async fn upstream(name: &str) -> TestUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstream_on(name, listener)
}

/// Serve an upstream named `name` on `listener`.
///
/// Paths: `/` answers the name; `/headers` the name then one `name: value` line per request
/// header; `/echo` streams the request body back; `/slow` notifies `started`, waits for
/// `release`, then answers the name; `/drip` sends headers and `first;` at once, notifies
/// `started`, and sends `second` after `release`. A request with `Upgrade` gets a 101 and
/// an echo of the raw stream.
pub fn upstream_on(name: &str, listener: TcpListener) -> TestUpstream {
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(UpstreamState {
        name: name.to_string(),
        ..Default::default()
    });
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let st = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stop_rx => break,
                accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
            };
            let st = Arc::clone(&st);
            st.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let st2 = Arc::clone(&st);
                let service = hyper::service::service_fn(move |req| {
                    let st = Arc::clone(&st);
                    async move { Ok::<_, Infallible>(upstream_handle(st, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                st2.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    TestUpstream {
        port,
        state,
        stop: Some(stop_tx),
    }
}

async fn upstream_handle(st: Arc<UpstreamState>, mut req: Request<Incoming>) -> Response<TestBody> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key("upgrade") {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "echo")
            .header("connection", "upgrade")
            .body(empty())
            .unwrap();
    }
    match req.uri().path() {
        "/headers" => {
            let mut text = format!("{}\n", st.name);
            for (k, v) in req.headers() {
                text.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            Response::new(full(text))
        }
        "/echo" => Response::new(UnsyncBoxBody::new(req.into_body())),
        "/slow" => {
            st.started.notify_one();
            st.release.notified().await;
            Response::new(full(st.name.clone()))
        }
        "/drip" => {
            let (tx, body) = channel_body();
            let st2 = Arc::clone(&st);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first;")).await;
                st2.started.notify_one();
                st2.release.notified().await;
                let _ = tx.send(Bytes::from_static(b"second")).await;
            });
            Response::new(body)
        }
        _ => Response::new(full(st.name.clone())),
    }
}

/// A router serving on 127.0.0.1:0; dropping it does not stop it, call `stop`.
pub struct TestRouter {
    pub router: Arc<Router>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestRouter {
    /// Resolve the shutdown future and wait until `serve` returned.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.served).await.unwrap()
    }

    pub fn trigger_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start_router(config: RouterConfig) -> TestRouter {
    let router = Router::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let r = Arc::clone(&router);
    let served = tokio::spawn(async move {
        r.serve(listener, async move {
            let _ = stop_rx.await;
        })
        .await
    });
    TestRouter {
        router,
        addr,
        stop: Some(stop_tx),
        served,
    }
}

/// [`start_router`], with environment `demo/main` routing `main.demo.localhost` to
/// `upstream` (as release `r-a`): the setup most tests start from.
pub async fn start_router_to(config: RouterConfig, upstream: &TestUpstream) -> TestRouter {
    let r = start_router(config).await;
    r.router
        .switch(
            "demo/main",
            slipway_router::EnvRoutes::single(
                vec!["main.demo.localhost".into()],
                up("r-a", upstream.port),
            ),
        )
        .unwrap();
    r
}

/// A keep-alive HTTP/1.1 client connection to `addr`.
pub async fn client(addr: SocketAddr) -> SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Status, headers and whole body of a response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn request(
    sender: &mut SendRequest<TestBody>,
    req: Request<TestBody>,
) -> Result<Answer, hyper::Error> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

pub async fn get(sender: &mut SendRequest<TestBody>, host: &str, path: &str) -> Answer {
    let req = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    request(sender, req).await.unwrap()
}

/// One GET on a fresh connection.
pub async fn get_once(addr: SocketAddr, host: &str, path: &str) -> Answer {
    let mut c = client(addr).await;
    get(&mut c, host, path).await
}

/// A local port where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn up(release: &str, port: u16) -> slipway_router::Upstream {
    slipway_router::Upstream {
        release: release.to_string(),
        netns: None,
        port,
        socket: None,
    }
}

/// Run `fut` with a time limit so that a broken test fails instead of hanging.
pub async fn within<T>(secs: u64, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .expect("test step timed out")
}
