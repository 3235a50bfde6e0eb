//! Accepting client connections: HTTP/1.1 with keep-alive and h2c, graceful stop.
//!
//! `serve` runs one worker thread per CPU (at most 16 by default; configurable), each with
//! its own single-threaded tokio runtime, like nginx's worker processes; connections are accepted
//! on the caller's runtime and handed to the workers in turn. A client connection, its
//! requests and the upstream connections they use stay on one thread, so a request costs
//! no cross-thread wake-up.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::app_listener::{Accepted, Intake};
use crate::body::{BoxError, ProxyBody};
use crate::h1;
use crate::pool::set_worker;
use crate::proxy;
use crate::router::Router;
use crate::tls::{self, CertificateSource};
use tokio_rustls::TlsAcceptor;

impl Router {
    /// Serve HTTP/1.1 (keep-alive) and h2c on `listener` until `shutdown` resolves; then
    /// stop accepting, close idle connections, and let in-flight requests finish for up to
    /// `drain_timeout` before dropping what is left.
    ///
    /// Errors accepting one connection (e.g. out of file descriptors) are logged and the
    /// loop goes on; the function returns `Ok(())` after shutdown, and an error only if
    /// no worker thread could start.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        self.serve_on(listener, None, shutdown).await
    }

    /// Serve HTTPS on `listener` as [`Router::serve`] serves HTTP: TLS with the
    /// certificate `certificates` gives for the host the client names (SNI; only hosts
    /// the route table knows), then h2 or HTTP/1.1 as ALPN says. Requests get
    /// `X-Forwarded-Proto: https` and the rules of `https://` routes.
    pub async fn serve_tls(
        self: &Arc<Self>,
        listener: TcpListener,
        certificates: Arc<dyn CertificateSource>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let acceptor = TlsAcceptor::from(tls::server_config(self, certificates));
        self.serve_on(listener, Some(acceptor), shutdown).await
    }

    async fn serve_on(
        self: &Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let workers = self.config.worker_count();
        if let Ok(addr) = listener.local_addr() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, workers, scheme, "HTTP router listening");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        // One place per open client connection: at the cap, no accept until one closes.
        let cap = self
            .config
            .max_client_connections
            .clamp(1, Semaphore::MAX_PERMITS);
        let places = Arc::new(Semaphore::new(cap));
        let mut queues = Vec::new();
        let mut done = Vec::new();
        for index in 0..workers {
            let router = Arc::clone(self);
            let stop = stop_rx.clone();
            let all_places = (Arc::clone(&places), cap);
            let tls = tls.clone();
            // The HTTPS listener's workers have their own pool slots, after the HTTP ones.
            let slot = if tls.is_some() {
                workers + index
            } else {
                index
            };
            let (queue_tx, queue_rx) = mpsc::unbounded_channel::<Accepted>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let started = std::thread::Builder::new()
                .name(if tls.is_some() {
                    format!("router-tls-{index}")
                } else {
                    format!("router-{index}")
                })
                .spawn(move || {
                    set_worker(slot);
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(router.worker(queue_rx, stop, all_places, tls)),
                        Err(err) => tracing::error!(error = %err, "router worker runtime"),
                    }
                    let _ = done_tx.send(());
                });
            match started {
                Ok(_) => {
                    queues.push(queue_tx);
                    done.push(done_rx);
                }
                Err(err) if queues.is_empty() => return Err(err),
                Err(err) => tracing::warn!(error = %err, "starting a router worker thread"),
            }
        }
        // The plain HTTP listener's workers also serve the apps' relationship addresses
        // (`app_listener.rs`).
        if tls.is_none() {
            *self.app_listeners.intake() = Some(Intake {
                queues: queues.clone(),
                places: Arc::clone(&places),
                next: 0,
            });
        }
        // Accept here and hand connections to the workers in turn: an even spread, which
        // a shared accepting socket does not give.
        tokio::pin!(shutdown);
        let mut next = 0usize;
        let mut warned_at: Option<std::time::Instant> = None;
        loop {
            if places.available_permits() == 0
                && warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
            {
                warned_at = Some(std::time::Instant::now());
                tracing::warn!(
                    cap,
                    "the router has as many client connections open as it may; new ones wait until one closes"
                );
            }
            let place = tokio::select! {
                () = &mut shutdown => break,
                place = Arc::clone(&places).acquire_owned() => match place {
                    Ok(place) => place,
                    Err(_) => break,
                },
            };
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        next = (next + 1) % queues.len();
                        if queues[next].send((stream.into_std(), peer, place, None)).is_err() {
                            tracing::error!(worker = next, "a router worker is gone; connection dropped");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        if tls.is_none() {
            // The apps' relationship addresses stop accepting with the public listener
            // (in an upgrade, the new server's listeners beside them take over).
            *self.app_listeners.intake() = None;
            self.app_listeners.close_all();
        }
        tracing::info!(
            scheme = if tls.is_some() { "https" } else { "http" },
            "HTTP router stopped accepting; draining its connections"
        );
        let _ = stop_tx.send(true);
        drop(queues);
        for worker in done {
            let _ = worker.await;
        }
        Ok(())
    }

    /// One worker: serve the connections handed to it, then drain. `places` are the
    /// places of all workers' client connections, and how many there are.
    async fn worker(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Accepted>,
        stop_rx: watch::Receiver<bool>,
        places: (Arc<Semaphore>, usize),
        tls: Option<TlsAcceptor>,
    ) {
        // No per-request header timer (it costs a timer per request): each connection's
        // watchdog closes it when it had no request open nor started for the idle timeout,
        // which also ends a client that is too slow to send its headers.
        let mut h1_builder = http1::Builder::new();
        h1_builder.timer(TokioTimer::new()).keep_alive(true);
        let mut h2_builder = http2::Builder::new(TokioExecutor::new());
        h2_builder.timer(TokioTimer::new());
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                // No break on the stop: the connections accepted before it, still in the
                // queue, are served too (their `end` is a stop already: one request
                // each); the queue closes as the accepting loop stops.
                accepted = queue.recv() => {
                    let Some((stream, peer, place, fixed)) = accepted else { break };
                    let stream = match stream.and_then(|s| {
                        s.set_nonblocking(true)?;
                        tokio::net::TcpStream::from_std(s)
                    }) {
                        Ok(stream) => stream,
                        Err(err) => {
                            tracing::warn!(error = %err, "taking over a client connection failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let router = Arc::clone(&self);
                    let (h1_builder, h2_builder) = (h1_builder.clone(), h2_builder.clone());
                    let mut stop = stop_rx.clone();
                    let idle_timeout = self.config.client_idle_timeout;
                    let tls = tls.clone();
                    connections.spawn(async move {
                        // The connection's place under the cap, until this task ends (or,
                        // for an upgraded connection, its tunnel).
                        let mut client = proxy::Client::with_place(peer, place);
                        client.tls = tls.is_some();
                        client.fixed = fixed;
                        let client = Arc::new(client);
                        let activity = Arc::new(Activity::default());
                        let requests = Arc::clone(&activity);
                        let (raw_router, raw_client) = (Arc::clone(&router), Arc::clone(&client));
                        let stopping = stop.clone();
                        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let router = Arc::clone(&router);
                            let client = Arc::clone(&client);
                            let open = OpenRequest::new(&requests);
                            let stopping = stopping.clone();
                            async move {
                                let http1 = req.version() < hyper::Version::HTTP_2;
                                let mut resp = proxy::handle(&router, &client, req).await;
                                // A stopping router's HTTP/1.1 answers say the connection
                                // closes, as the own path's do: the client opens its next
                                // request elsewhere instead of racing the close.
                                if http1
                                    && *stopping.borrow()
                                    && resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS
                                {
                                    resp.headers_mut().insert(
                                        hyper::header::CONNECTION,
                                        hyper::header::HeaderValue::from_static("close"),
                                    );
                                }
                                Ok::<_, Infallible>(resp.map(|body| TrackedBody { body, _open: open }))
                            }
                        });
                        // The connection's task wakes for every read and write; what ends it
                        // otherwise (a stop, idleness) is looked at only when it woke.
                        let activity_seen = Arc::clone(&activity);
                        let end = OnWake::new(async move {
                            tokio::select! {
                                () = stopped(&mut stop) => End::Stop,
                                () = watchdog(&activity_seen, idle_timeout) => End::Idle,
                            }
                        });
                        tokio::pin!(end);
                        // Serve until the connection ends, or `end` says to close it.
                        // `$stopping`: the stop came already (during the TLS handshake).
                        macro_rules! drive {
                            ($conn:expr, $stopping:expr) => {{
                                let conn = $conn;
                                tokio::pin!(conn);
                                'driven: {
                                    let why = if $stopping {
                                        End::Stop
                                    } else {
                                        tokio::select! {
                                            biased;
                                            result = conn.as_mut() => break 'driven result,
                                            why = &mut end => why,
                                        }
                                    };
                                    match why {
                                        End::Stop => {
                                            // As on the own HTTP/1.1 path: the request open, or
                                            // the next one if it comes soon, is answered first.
                                            if let Some(result) = last_request(&activity, conn.as_mut()).await {
                                                break 'driven result;
                                            }
                                            conn.as_mut().graceful_shutdown();
                                            conn.await
                                        }
                                        End::Idle => {
                                            conn.as_mut().graceful_shutdown();
                                            tracing::debug!(%peer, "closing an idle client connection");
                                            tokio::time::timeout(CLOSE_GRACE, conn).await.unwrap_or(Ok(()))
                                        }
                                    }
                                }
                            }};
                        }
                        let result = if let Some(acceptor) = tls {
                            // HTTPS: the handshake, then h2 or HTTP/1.1 as ALPN chose.
                            let handshake = acceptor.accept(stream);
                            tokio::pin!(handshake);
                            let mut stopping = false;
                            let accepted = tokio::select! {
                                accepted = &mut handshake => accepted,
                                why = &mut end => match why {
                                    End::Idle => return,
                                    // A client in its handshake as the server stops was
                                    // accepted: it still gets its request answered.
                                    End::Stop => {
                                        stopping = true;
                                        match tokio::time::timeout(h1::LAST_REQUEST_WAIT, &mut handshake).await {
                                            Ok(accepted) => accepted,
                                            Err(_) => return,
                                        }
                                    }
                                },
                            };
                            let stream = match accepted {
                                Ok(stream) => stream,
                                Err(err) => {
                                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                                    return;
                                }
                            };
                            let alpn = stream.get_ref().1.alpn_protocol();
                            if alpn == Some(crate::acme_challenges::ACME_TLS_ALPN) {
                                // A TLS-ALPN-01 validation: the handshake was all (RFC 8737).
                                return;
                            }
                            let h2 = alpn == Some(b"h2");
                            if h2 {
                                drive!(h2_builder.serve_connection(TokioIo::new(stream), service), stopping)
                            } else {
                                // HTTP/1.1 over TLS: the router's own path, as on plain HTTP.
                                let mut stream = stream;
                                match h1::serve(&raw_router, &raw_client, &mut stream, &activity, end.as_mut(), stopping).await {
                                    h1::Served::Closed => return,
                                    h1::Served::Handover { read, stopping } => {
                                        let io = TokioIo::new(Rewind { read, io: stream });
                                        drive!(h1_builder.serve_connection(io, service).with_upgrades(), stopping)
                                    }
                                }
                            }
                        } else {
                            // HTTP/2 (h2c, prior knowledge) or HTTP/1.1: the first bytes say.
                            let mut stopping = false;
                            let detected = tokio::select! {
                                detected = speaks_h2(&stream) => detected,
                                why = &mut end => match why {
                                    End::Idle => return,
                                    // A client accepted just before the stop whose request is
                                    // not in yet still gets it answered: closing now would
                                    // reset the connection under a request on its way.
                                    End::Stop => {
                                        stopping = true;
                                        match tokio::time::timeout(h1::LAST_REQUEST_WAIT, speaks_h2(&stream)).await {
                                            Ok(detected) => detected,
                                            Err(_) => return,
                                        }
                                    }
                                },
                            };
                            let h2 = match detected {
                                Ok(h2) => h2,
                                Err(err) => {
                                    tracing::debug!(%peer, error = %err, "client connection failed before a request");
                                    return;
                                }
                            };
                            if h2 {
                                drive!(h2_builder.serve_connection(TokioIo::new(stream), service), stopping)
                            } else {
                                // The common requests are served by the router's own HTTP/1.1
                                // path; the first other one hands the connection to hyper.
                                let mut stream = stream;
                                match h1::serve(&raw_router, &raw_client, &mut stream, &activity, end.as_mut(), stopping).await {
                                    h1::Served::Closed => return,
                                    h1::Served::Handover { read, stopping } => {
                                        let io = TokioIo::new(Rewind { read, io: stream });
                                        drive!(h1_builder.serve_connection(io, service).with_upgrades(), stopping)
                                    }
                                }
                            }
                        };
                        if let Err(err) = result {
                            tracing::debug!(%peer, error = %err, "client connection ended with an error");
                        }
                    });
                }
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(error = %err, "client connection task failed");
                    }
                }
            }
        }

        let open = connections.len();
        tracing::debug!(open, "HTTP router worker draining connections");
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "drain timeout passed; dropping connections"
            );
            connections.shutdown().await;
        }
        // Upgraded connections (WebSockets) are tunnels running on this worker's runtime,
        // each holding its client's place: they too may go on until the drain timeout
        // (the runtime, and so they, end when this returns).
        let (places, cap) = places;
        while places.available_permits() < cap && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Why a client connection is ended by the router.
pub(crate) enum End {
    /// The router stops.
    Stop,
    /// The connection was idle for the idle timeout.
    Idle,
}

/// A future polled only after it woke itself (and on the first poll): cheap to keep in a
/// `select!` whose other branch wakes the task all the time.
struct OnWake<F> {
    fut: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    waker: Waker,
}

/// Set when an [`OnWake`] future woke; passes the wake-up on to the task.
struct WakeFlag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> OnWake<F> {
    fn new(fut: F) -> OnWake<F> {
        let flag = Arc::new(WakeFlag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        OnWake {
            fut: Box::pin(fut),
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut task = self.flag.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        this.fut
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

/// The HTTP/2 connection preface (RFC 9113 3.4): a client that starts with it speaks h2c.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client starts with the HTTP/2 preface; looks without reading (`peek`), so
/// the chosen protocol's server reads the bytes again. Any other first byte (every HTTP/1
/// method but `PRI`) answers at once; a client that sent only part of the preface is
/// looked at again shortly (the connection's watchdog bounds the wait).
async fn speaks_h2(stream: &tokio::net::TcpStream) -> std::io::Result<bool> {
    let mut start = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut start).await?;
        if n == 0 || start[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client connection with bytes already read from it in front: what the router's own
/// HTTP/1.1 path read before it handed the connection to hyper.
struct Rewind<S> {
    read: Bytes,
    io: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How long a connection closed for idleness may take to end on its own before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The requests of one client connection.
#[derive(Default)]
pub(crate) struct Activity {
    /// How many started (their headers were read).
    started: AtomicU64,
    /// How many are not finished (their answer's body was not sent whole yet).
    open: AtomicU64,
}

/// A stopping server's connection `conn` goes on until a request is open on it (then it
/// may be shut down gracefully: that request is answered, with `connection: close` on
/// HTTP/1.1), for at most [`h1::LAST_REQUEST_WAIT`]; `Some` if it ended meanwhile.
async fn last_request<F: Future>(activity: &Activity, mut conn: Pin<&mut F>) -> Option<F::Output> {
    let seen = activity.started.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + h1::LAST_REQUEST_WAIT;
    loop {
        if activity.open.load(Ordering::Relaxed) > 0
            || activity.started.load(Ordering::Relaxed) > seen
            || tokio::time::Instant::now() >= deadline
        {
            return None;
        }
        tokio::select! {
            biased;
            result = conn.as_mut() => return Some(result),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

/// One open request of a connection; finished when dropped (with its answer's body).
pub(crate) struct OpenRequest(Arc<Activity>);

impl OpenRequest {
    /// A request of the connection whose requests `activity` counts started.
    pub(crate) fn new(activity: &Arc<Activity>) -> OpenRequest {
        activity.started.fetch_add(1, Ordering::Relaxed);
        activity.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(Arc::clone(activity))
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body that keeps its request open until it is dropped.
struct TrackedBody {
    body: ProxyBody,
    _open: OpenRequest,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Resolves once the connection had no request open and none started for `idle` (checked
/// every quarter of it: so between `idle` and 1.25 x `idle`). That covers a kept-alive
/// connection nobody uses and a client too slow to send its headers, with one timer per
/// connection instead of one per request.
async fn watchdog(activity: &Activity, idle: Duration) {
    let period = (idle / 4).max(Duration::from_millis(10));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.started.load(Ordering::Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        let now = ticks.tick().await;
        let started = activity.started.load(Ordering::Relaxed);
        if started != seen || activity.open.load(Ordering::Relaxed) > 0 {
            seen = started;
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= idle {
            return;
        }
    }
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
