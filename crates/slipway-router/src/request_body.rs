//! Request bodies the router reads whole before it passes a request on (a PHP script's:
//! [`crate::fastcgi_h1`] on the router's own HTTP/1.1 path, [`crate::fastcgi`] on
//! hyper's), and the rules every path applies to a client's request body: the cap
//! ([`crate::RouterConfig::max_request_body`], 413), the wait for its next bytes
//! ([`crate::RouterConfig::request_body_timeout`], 408), malformed framing (400), each
//! answered with the same page on both paths.
//!
//! A body is held in a [`Spool`]: in memory up to [`SPOOL_IN_MEMORY`] bytes, beyond that
//! in an unlinked temporary file (`tempfile::tempfile`, in `TMPDIR`), never whole in
//! memory. A refused body is read and dropped for a moment after the answer (a linger),
//! so that the client reads the answer rather than a reset.

use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode, Version};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::body::ProxyBody;
use crate::chunked::BadChunking;
use crate::fastcgi::{put_body_end, put_stdin};
use crate::proxy::page;

/// The rules a request body is read by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    /// The largest body (bytes): over it, 413.
    pub(crate) max: u64,
    /// How long to wait for the body's next bytes: then 408.
    pub(crate) timeout: Duration,
}

impl BodyLimits {
    /// The router's settings' limits.
    pub(crate) fn of(config: &crate::RouterConfig) -> BodyLimits {
        BodyLimits {
            max: config.max_request_body,
            timeout: config.request_body_timeout,
        }
    }
}

/// Why a request body was not read whole.
#[derive(Debug)]
pub(crate) enum BodyFailure {
    /// Over the cap: 413.
    TooLarge,
    /// Malformed chunking (the router's own decoder): 400.
    Malformed(BadChunking),
    /// Malformed framing as hyper read it (HTTP/1.1 chunking, a length not kept): 400.
    Framing(hyper::Error),
    /// Nothing came for the body timeout: 408.
    TimedOut,
    /// Storing it failed (the temporary file): 500.
    Store(io::Error),
    /// The client's side broke or ended within the body: no answer.
    Client(io::Error),
}

impl BodyFailure {
    /// The status and page the router answers a refused body with; `None` for a client
    /// that went away (no one to answer).
    pub(crate) fn answer(&self) -> Option<(StatusCode, &'static str)> {
        Some(match self {
            BodyFailure::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Content Too Large: the request body is over the router's limit.\n",
            ),
            BodyFailure::Malformed(_) | BodyFailure::Framing(_) => (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the chunked request body is malformed.\n",
            ),
            BodyFailure::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the request body stopped coming.\n",
            ),
            BodyFailure::Store(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the request body could not be stored.\n",
            ),
            BodyFailure::Client(_) => return None,
        })
    }

    /// What the failure says, for the log and the connection's error.
    pub(crate) fn text(&self) -> String {
        match self {
            BodyFailure::TooLarge => "the request body is over the limit".into(),
            BodyFailure::Malformed(e) => format!("the chunked request body is malformed: {e}"),
            BodyFailure::Framing(e) => format!("the request body is malformed: {e}"),
            BodyFailure::TimedOut => "the request body timed out".into(),
            BodyFailure::Store(e) | BodyFailure::Client(e) => e.to_string(),
        }
    }

    /// Log the failure (an error for storing, else information) for `script`.
    pub(crate) fn log(&self, script: &str) {
        match self {
            BodyFailure::Store(e) => tracing::error!(script, "storing a request body: {e}"),
            other => tracing::info!(script, "request body refused: {}", other.text()),
        }
    }

    /// A failure of hyper reading a client's body: malformed framing (hyper's decoder
    /// says `InvalidInput`/`InvalidData`), else the client's side broke.
    fn of_hyper(error: hyper::Error) -> BodyFailure {
        let malformed = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<io::Error>())
            .is_some_and(|e| {
                matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
                )
            });
        if malformed {
            BodyFailure::Framing(error)
        } else {
            BodyFailure::Client(io::Error::other(error))
        }
    }
}

/// A request body held for PHP-FPM: in memory up to [`SPOOL_IN_MEMORY`] bytes, beyond that
/// in an unlinked temporary file.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    memory: Vec<u8>,
    file: Option<std::fs::File>,
    len: u64,
}

/// Bytes of a request body held in memory before it goes to a temporary file (nginx's
/// `client_body_buffer_size` is 16 KiB; a form post or a JSON document stays in memory).
pub(crate) const SPOOL_IN_MEMORY: usize = 128 * 1024;

/// Bytes of a spooled body sent to PHP-FPM at once.
pub(crate) const BODY_CHUNK: usize = 32 * 1024;

impl Spool {
    /// Append `data` (to the file, once there is one; the file is written with plain
    /// system calls: page-cache writes).
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.file.is_none() && self.memory.len() + data.len() <= SPOOL_IN_MEMORY {
            self.memory.extend_from_slice(data);
        } else {
            let file = match &mut self.file {
                Some(file) => file,
                None => {
                    let mut file = tempfile::tempfile()?;
                    file.write_all(&self.memory)?;
                    self.memory = Vec::new();
                    self.file.insert(file)
                }
            };
            file.write_all(data)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// The body's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Send the body to PHP-FPM as `FCGI_STDIN` records, then the body's end.
    pub(crate) async fn send<W: AsyncWrite + Unpin>(&self, wr: &mut W) -> io::Result<()> {
        let mut out = Vec::with_capacity(BODY_CHUNK + 64);
        match &self.file {
            None => put_stdin(&mut out, &self.memory),
            Some(file) => {
                let mut chunk = vec![0u8; BODY_CHUNK];
                let mut offset = 0;
                while offset < self.len {
                    let n = file.read_at(&mut chunk, offset)?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    offset += n as u64;
                    out.clear();
                    put_stdin(&mut out, &chunk[..n]);
                    wr.write_all(&out).await?;
                }
                out.clear();
            }
        }
        put_body_end(&mut out);
        wr.write_all(&out).await
    }
}

/// Whether `body`, as hyper announces it (its `Content-Length`, HTTP/1.1 or h2), is
/// over the cap before any of it is read.
pub(crate) fn announced_over(body: &Incoming, limits: BodyLimits) -> bool {
    body.size_hint().lower() > limits.max
}

/// Read a body hyper receives (HTTP/2, or HTTP/1.1 on a connection handed to hyper) whole
/// into a [`Spool`], by `limits`: a `Content-Length` over the cap is refused before any
/// of it is read (no `100 Continue`), a body growing past it once it does.
pub(crate) async fn spool_incoming(
    body: &mut Incoming,
    limits: BodyLimits,
) -> Result<Spool, BodyFailure> {
    let mut spool = Spool::default();
    if announced_over(body, limits) {
        return Err(BodyFailure::TooLarge);
    }
    while !body.is_end_stream() {
        let frame = match tokio::time::timeout(limits.timeout, body.frame()).await {
            Err(_) => return Err(BodyFailure::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyFailure::of_hyper(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers are not passed on.
        if let Ok(data) = frame.into_data() {
            if spool.len() + data.len() as u64 > limits.max {
                return Err(BodyFailure::TooLarge);
            }
            spool.push(&data).map_err(BodyFailure::Store)?;
        }
    }
    Ok(spool)
}

/// After refusing a body: how long, and how many bytes at most, what the client still
/// sends is read and dropped before the connection (or stream) closes, so that the
/// client reads the answer instead of a reset.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// See [`LINGER`].
pub(crate) const LINGER_MAX: usize = 8 * 1024 * 1024;

/// The answer on hyper's path to a request whose body was refused (`None`: the client
/// went away). What the client still sends of the body is read and dropped for a moment
/// (the [`LINGER`]) while the answer goes out; an HTTP/1.1 connection closes after it.
pub(crate) fn refuse_incoming(
    failure: &BodyFailure,
    body: Incoming,
    version: Version,
    limits: BodyLimits,
    request_id: &HeaderValue,
) -> Option<Response<ProxyBody>> {
    let resp = refusal_page(failure, version, request_id)?;
    linger(body, limits);
    Some(resp)
}

/// The page answering a refused body on hyper's path (`None`: the client went away); an
/// HTTP/1.1 connection closes after it.
pub(crate) fn refusal_page(
    failure: &BodyFailure,
    version: Version,
    request_id: &HeaderValue,
) -> Option<Response<ProxyBody>> {
    let (status, text) = failure.answer()?;
    let mut resp = page(status, text, Some(request_id));
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Some(resp)
}

/// Read and drop what the client still sends of `body` for a moment (the [`LINGER`], at
/// most [`LINGER_MAX`] bytes) in a task of its own, then drop it.
pub(crate) fn linger(body: Incoming, limits: BodyLimits) {
    tokio::spawn(async move {
        let mut body = body;
        let linger = async {
            let mut dropped = 0;
            while dropped < LINGER_MAX {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        dropped += frame.data_ref().map_or(0, |d| d.len());
                    }
                    Some(Err(_)) | None => break,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER.min(limits.timeout), linger).await;
    });
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::BodyExt as _;
    use hyper::body::{Body, Frame, SizeHint};
    use hyper::client::conn::http2::SendRequest;
    use hyper::Request;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use crate::fastcgi_h1::tests::{fake_fpm_counted, param, php_site};
    use crate::test_client::serve_site_with;

    /// A client's request body, sent a piece at a time through a channel (ends when the
    /// sender is dropped), with a length or without.
    struct Upload {
        rx: mpsc::Receiver<Bytes>,
        len: Option<u64>,
    }

    impl Body for Upload {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.rx.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }

        fn size_hint(&self) -> SizeHint {
            self.len
                .map_or_else(SizeHint::default, SizeHint::with_exact)
        }
    }

    /// An h2c (prior knowledge) connection to `addr`.
    async fn h2(addr: std::net::SocketAddr) -> SendRequest<Upload> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        sender
    }

    /// POST `pieces` to `path` on `host` over `sender` (`len`: a `Content-Length`), the
    /// body's sender held open afterwards for as long as `hold` (a stalled upload): the
    /// answer's status and body (as text, see [`post_bytes`]).
    async fn post(
        sender: &mut SendRequest<Upload>,
        host: &str,
        path: &str,
        len: Option<u64>,
        pieces: Vec<Bytes>,
        hold: bool,
    ) -> (u16, String) {
        let (status, body) = post_bytes(sender, host, path, len, pieces, hold).await;
        (status, String::from_utf8_lossy(&body).to_string())
    }

    /// [`post`], the answer's body as bytes.
    async fn post_bytes(
        sender: &mut SendRequest<Upload>,
        host: &str,
        path: &str,
        len: Option<u64>,
        pieces: Vec<Bytes>,
        hold: bool,
    ) -> (u16, Bytes) {
        let (tx, rx) = mpsc::channel(4);
        let mut req = Request::post(format!("http://{host}{path}"));
        if let Some(len) = len {
            req = req.header("content-length", len);
        }
        let req = req.body(Upload { rx, len }).expect("request");
        let feeding = tokio::spawn(async move {
            for piece in pieces {
                if tx.send(piece).await.is_err() {
                    return;
                }
            }
            if hold {
                tx.closed().await;
            }
        });
        sender.ready().await.expect("ready");
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("answer body");
        feeding.abort();
        (status, body.to_bytes())
    }

    fn pieces(data: &[u8], size: usize) -> Vec<Bytes> {
        data.chunks(size).map(Bytes::copy_from_slice).collect()
    }

    fn settings() -> crate::RouterConfig {
        crate::RouterConfig {
            max_request_body: 4 * 1024 * 1024,
            request_body_timeout: Duration::from_millis(300),
            ..crate::RouterConfig::default()
        }
    }

    /// PHP over HTTP/2 (hyper's path), by the own path's rules: a 3 MiB body without a
    /// length reaches the script whole with its `CONTENT_LENGTH` (spooled to a file); a
    /// `Content-Length` over the cap 413, a body growing past it 413, a body that stops
    /// coming 408: none reaches PHP-FPM (no worker held while the client uploads), and a
    /// body on the same h2 connection afterwards still goes through.
    #[tokio::test]
    async fn php_over_h2_spools_caps_and_times_out_bodies() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("index.php"), "<?php\n").expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fpm_addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let fpm = fake_fpm_counted(listener, Arc::clone(&accepted));
        let (addr, stop, serving) = serve_site_with(
            "php.test",
            fpm_addr.port(),
            php_site(dir.path()),
            settings(),
        )
        .await;
        let mut h2 = h2(addr).await;

        let data: Vec<u8> = (0..3 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let upload = pieces(&data, 61_441);
        let (status, body) = post_bytes(&mut h2, "php.test", "/up", None, upload, false).await;
        assert_eq!(status, 200);
        let at = body
            .windows(6)
            .position(|w| w == b"body: ")
            .expect("a body")
            + 6;
        let params = String::from_utf8_lossy(&body[..at]).to_string();
        assert_eq!(
            param(&params, "CONTENT_LENGTH"),
            Some("3145728"),
            "{params}"
        );
        assert_eq!(param(&params, "SERVER_PROTOCOL"), Some("HTTP/2.0"));
        assert!(body[at..] == data[..], "the body differs");
        let (status, body) = post(
            &mut h2,
            "php.test",
            "/form",
            Some(5),
            vec![Bytes::from_static(b"a=1&b")],
            false,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(param(&body, "CONTENT_LENGTH"), Some("5"), "{body}");
        assert!(body.ends_with("body: a=1&b"), "{body}");
        let before = accepted.load(Ordering::SeqCst);
        assert_eq!(before, 2);

        // A length over the cap: 413 before any of it is read.
        let (status, body) = post(
            &mut h2,
            "php.test",
            "/big",
            Some(4 * 1024 * 1024 + 1),
            Vec::new(),
            true,
        )
        .await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("over the router's limit"), "{body}");
        // A body without one, growing past it.
        let big = vec![b'x'; 5 * 1024 * 1024];
        let (status, body) = post(
            &mut h2,
            "php.test",
            "/big",
            None,
            pieces(&big, 1 << 20),
            true,
        )
        .await;
        assert_eq!(status, 413, "{body}");
        // A body that stops coming, with a length and without: 408.
        for len in [Some(10), None] {
            let abc = vec![Bytes::from_static(b"abc")];
            let (status, body) = post(&mut h2, "php.test", "/slow", len, abc, true).await;
            assert_eq!(status, 408, "{len:?}: {body}");
            assert!(body.contains("stopped coming"), "{body}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            before,
            "a refused body reached PHP-FPM"
        );

        // The legitimate path still works, on the same connection.
        let ok = vec![Bytes::from_static(b"ok")];
        let (status, body) = post(&mut h2, "php.test", "/ok", None, ok, false).await;
        assert_eq!(status, 200);
        assert!(body.ends_with("body: ok"), "{body}");
        fpm.abort();
        drop(h2);
        let _ = stop.send(());
        serving.await.expect("serve task").expect("serve");
    }

    /// A stand-in app on `listener`: reads a request's head and its body (a length, or
    /// chunked to its last chunk), then answers `200 got N` and closes; counts the
    /// connections it accepts in `accepted`.
    fn reading_app(listener: TcpListener, accepted: Arc<AtomicUsize>) {
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        if conn.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    loop {
                        let body = &buf[head_end..];
                        let whole = match length {
                            Some(n) => body.len() >= n,
                            None => body.ends_with(b"0\r\n\r\n"),
                        };
                        if whole {
                            break;
                        }
                        if conn.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let text = format!("got {}", buf.len() - head_end);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
    }

    /// The proxying path on hyper (HTTP/2 to an app over HTTP/1.1) has the same cap: a
    /// `Content-Length` over it 413 without the app being connected to, a body growing
    /// past it 413 (the upload stops); a body under it reaches the app.
    #[tokio::test]
    async fn proxied_h2_bodies_have_the_cap() {
        use crate::{EnvRoutes, Router, Upstream};
        let app = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = app.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        reading_app(app, Arc::clone(&accepted));
        let router = Router::new(settings());
        let upstream = Upstream {
            release: "r1".into(),
            netns: None,
            port,
            socket: None,
        };
        let routes = EnvRoutes::single(vec!["app.test".into()], upstream);
        router.switch("p/main", routes).expect("switch");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            router
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        let mut h2 = h2(addr).await;

        let (status, body) = post(
            &mut h2,
            "app.test",
            "/big",
            Some(4 * 1024 * 1024 + 1),
            Vec::new(),
            true,
        )
        .await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("over the router's limit"), "{body}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "the app was connected to"
        );
        let big = vec![b'x'; 5 * 1024 * 1024];
        let (status, body) = post(
            &mut h2,
            "app.test",
            "/big",
            None,
            pieces(&big, 1 << 20),
            true,
        )
        .await;
        assert_eq!(status, 413, "{body}");

        let small = pieces(&[b'y'; 100_000], 30_000);
        let (status, body) = post(&mut h2, "app.test", "/ok", Some(100_000), small, false).await;
        assert_eq!((status, body.as_str()), (200, "got 100000"));
        drop(h2);
        let _ = stop.send(());
        serving.await.expect("serve task").expect("serve");
    }
}
