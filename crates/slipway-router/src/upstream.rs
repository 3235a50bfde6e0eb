//! The upstream HTTP/1.1 client: sends a request to an app over a pooled connection and
//! reads its answer, within the client request's own task.
//!
//! hyper's client runs each upstream connection as a task of its own and passes every
//! request and response through channels between that task and the request's. Here the
//! request's task writes the head (and streams the body), reads the answer's head, and the
//! response body reads the socket as the client takes it: no extra task, no channel, no
//! cross-task wake-up. Only protocol upgrades (WebSocket) still go through hyper's client,
//! which hands over the upgraded connection ([`crate::pool::Pool::connect_upgrade`]).
//!
//! Two ways in: [`Conn::exchange`] takes a request as `http` parts (hyper's side of the
//! router) and gives the answer as an `http::Response`; [`Conn::exchange_raw`] takes a head
//! already in bytes and writes the answer's head as bytes (the router's own HTTP/1.1 path,
//! `crate::h1`). One parser reads both ([`parse_answer`]).
//!
//! What it implements of RFC 9112: the request head written in one `write`; a request
//! body sent as it arrives, with its `Content-Length` or else chunked, while the answer
//! is awaited (an app may answer before reading the whole body; then the connection is
//! not kept, nor after a chunked body, which simple app servers may not read); the response
//! head parsed with httparse (at most [`MAX_HEAD`] bytes, [`MAX_HEADERS`] fields); interim
//! 1xx responses skipped; the body framed by the request method and status (HEAD, 1xx,
//! 204, 304: none), `Transfer-Encoding: chunked` (decoded; trailers dropped), another
//! transfer coding or neither header (until the upstream closes), or `Content-Length`
//! (several equal values allowed, different ones refused). A connection is kept only if
//! its response said so (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
//! `keep-alive`) and its body was read to the end.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::response;
use hyper::{Method, Response, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::chunked::{BadChunking, ChunkedDecoder, Leniency};
use crate::headers::{is_hop_by_hop_name, put_field, put_status_line};
use crate::pool::Pool;
use crate::release::InFlightGuard;
use crate::upstream_stream::UpstreamStream;

/// Largest response head accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
pub(crate) const MAX_HEADERS: usize = 128;
/// Bytes read from the socket at once.
const READ_SIZE: usize = 16 * 1024;

/// Why a bodiless request got no usable response head.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The connection ended before any byte of a response: a kept-alive connection the
    /// app closed just as it was reused (the request was most likely not processed).
    #[error("the connection closed before any response byte")]
    ClosedBeforeResponse,
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Reading the client's request body failed.
    #[error("reading the client's request body: {0}")]
    ClientBody(hyper::Error),
    /// The client's request body grew past the router's cap (answered 413); the rest of
    /// it, to linger on.
    #[error("the client's request body is over the router's limit")]
    BodyTooLarge(Option<Incoming>),
    /// The upstream's answer is not valid HTTP/1.1.
    #[error("invalid response from the application: {0}")]
    Protocol(&'static str),
}

/// One kept-alive connection to an upstream, with what was read past the last response.
pub(crate) struct Conn {
    io: UpstreamStream,
    buf: BytesMut,
    head: Vec<u8>,
    /// The request body still being sent.
    upload: Option<Upload>,
    /// Whether sending a request body failed (the connection is out of step).
    upload_failed: bool,
    /// Whether an answer came before its request's body was sent whole: the app answered
    /// without reading all of it, and may read what is left as a request of its own,
    /// whose answer would then come to the next request sent here. Never pooled again.
    answered_early: bool,
    /// Whether a request body went chunked (its length unknown). Many simple app servers
    /// do not read chunked request bodies and take them for requests of their own,
    /// whenever they answered: never pooled again.
    chunked_upload: bool,
}

impl Conn {
    /// A fresh connection.
    pub(crate) fn new(io: UpstreamStream) -> Conn {
        if let UpstreamStream::Tcp(tcp) = &io {
            let _ = tcp.set_nodelay(true);
        }
        Conn {
            io,
            buf: BytesMut::new(),
            head: Vec::new(),
            upload: None,
            upload_failed: false,
            answered_early: false,
            chunked_upload: false,
        }
    }

    /// Whether an idle connection can take a request: nothing arrived on it since its
    /// last response (an end of stream, or stray bytes, make it unusable). Asks the
    /// reactor's readiness only; no system call unless the socket looks readable.
    pub(crate) fn is_reusable(&self) -> bool {
        if !self.buf.is_empty() || !self.in_step() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Send the request (`parts` in origin form) and read the answer's head; interim 1xx
    /// responses are skipped. `body`, the client's request body if it has one, is taken
    /// once the head is written (so a request whose head could not be written can be sent
    /// again with it), and sent as it arrives while the answer is awaited, and then while
    /// the answer's body is read ([`LeanBody`]): an app may answer before it read the whole
    /// request, or stream its answer while it reads (an echo). A body growing past
    /// `max_body` bytes stops the upload ([`UpstreamError::BodyTooLarge`] before the
    /// answer's head, an error of the answer's body after it).
    pub(crate) async fn exchange(
        &mut self,
        parts: &Parts,
        body: &mut Option<Incoming>,
        max_body: u64,
    ) -> Result<Head, Failure> {
        let chunked = body.is_some() && !parts.headers.contains_key(header::CONTENT_LENGTH);
        write_head(&mut self.head, parts, chunked);
        if let Err(err) = self.io.write_all(&self.head).await {
            return Err(Failure {
                sent: false,
                error: UpstreamError::Io(err),
            });
        }
        self.chunked_upload |= chunked;
        self.upload = body.take().map(|body| Upload {
            body,
            chunked,
            pending: VecDeque::new(),
            read_all: false,
            received: 0,
            max: max_body,
        });
        let mut received_any = false;
        let head = std::future::poll_fn(|cx| {
            match self.poll_upload(cx) {
                Poll::Ready(Err(UploadError::Client(err))) => {
                    return Poll::Ready(Err(Failure::sent(UpstreamError::ClientBody(err))));
                }
                Poll::Ready(Err(UploadError::TooLarge(rest))) => {
                    return Poll::Ready(Err(Failure::sent(UpstreamError::BodyTooLarge(rest))));
                }
                _ => {}
            }
            poll_head(&mut self.io, &mut self.buf, &mut received_any, cx, |buf| {
                parse_head(buf, &parts.method)
            })
            .map_err(Failure::sent)
        })
        .await;
        // By this exchange's own count: the body was not all written when the answer's
        // head was complete (however the rest goes later).
        if head.is_ok() && !self.upload_done() {
            self.answered_early = true;
        }
        head
    }

    /// Send a bodiless request whose head `request` is already serialized (origin form,
    /// the router's forwarding headers included), and read the answer's head into
    /// `answer`, written for the client (see [`parse_head_raw`]).
    pub(crate) async fn exchange_raw(
        &mut self,
        request: &[u8],
        method: &Method,
        answer: &mut Vec<u8>,
    ) -> Result<RawHead, Failure> {
        if let Err(err) = self.io.write_all(request).await {
            return Err(Failure {
                sent: false,
                error: UpstreamError::Io(err),
            });
        }
        let mut received_any = false;
        std::future::poll_fn(|cx| {
            poll_head(&mut self.io, &mut self.buf, &mut received_any, cx, |buf| {
                parse_head_raw(buf, method, answer)
            })
            .map_err(Failure::sent)
        })
        .await
    }

    /// Send what there is of the request body: `Ready(Ok)` once it was all sent (or there
    /// is none). An error stops the upload for good and leaves the connection unusable.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        let Conn {
            io,
            upload,
            upload_failed,
            ..
        } = self;
        let Some(up) = upload.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            while let Some(front) = up.pending.front_mut() {
                match Pin::new(&mut *io).poll_write(cx, front) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        front.advance(n);
                        if front.is_empty() {
                            up.pending.pop_front();
                        }
                    }
                    Poll::Ready(Ok(_)) => {
                        *upload = None;
                        *upload_failed = true;
                        tracing::debug!("writing a request body upstream wrote nothing");
                        return Poll::Ready(Err(UploadError::Upstream));
                    }
                    Poll::Ready(Err(err)) => {
                        tracing::debug!(error = %err, "writing a request body upstream failed");
                        *upload = None;
                        *upload_failed = true;
                        return Poll::Ready(Err(UploadError::Upstream));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if up.read_all {
                *upload = None;
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut up.body).poll_frame(cx)) {
                None => {
                    up.read_all = true;
                    if up.chunked {
                        up.pending.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Some(Err(err)) => {
                    *upload = None;
                    *upload_failed = true;
                    return Poll::Ready(Err(UploadError::Client(err)));
                }
                Some(Ok(frame)) => {
                    // Trailers are not forwarded.
                    if let Ok(data) = frame.into_data() {
                        up.received += data.len() as u64;
                        if up.received > up.max {
                            let rest = upload.take().map(|up| up.body);
                            *upload_failed = true;
                            return Poll::Ready(Err(UploadError::TooLarge(rest)));
                        }
                        if !data.is_empty() {
                            if up.chunked {
                                up.pending
                                    .push_back(Bytes::from(format!("{:x}\r\n", data.len())));
                                up.pending.push_back(data);
                                up.pending.push_back(Bytes::from_static(b"\r\n"));
                            } else {
                                up.pending.push_back(data);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the request body, if any, was sent whole.
    fn upload_done(&self) -> bool {
        self.upload.is_none() && !self.upload_failed
    }

    /// Whether the connection may carry another request once its answer was read: its
    /// request body, if any, had a length and was sent whole before the answer came.
    fn in_step(&self) -> bool {
        self.upload_done() && !self.answered_early && !self.chunked_upload
    }

    /// Read more from the socket into the buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// A request body on its way to the app.
struct Upload {
    body: Incoming,
    chunked: bool,
    /// Bytes read from the client, not yet written.
    pending: VecDeque<Bytes>,
    /// Whether the client's body ended (what is left is in `pending`).
    read_all: bool,
    /// Bytes of the body read from the client so far.
    received: u64,
    /// The router's cap on them.
    max: u64,
}

/// Why sending a request body stopped.
enum UploadError {
    /// Reading the client's body failed (the client went away, or sent a broken body).
    Client(hyper::Error),
    /// The client's body grew past the router's cap; the rest of it.
    TooLarge(Option<Incoming>),
    /// Writing to the app failed (logged where it happened).
    Upstream,
}

/// Why a request got no usable answer, and whether it may have reached the app.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Whether the request head was written (the app may have processed the request).
    pub(crate) sent: bool,
    /// What went wrong.
    pub(crate) error: UpstreamError,
}

impl Failure {
    fn sent(error: UpstreamError) -> Failure {
        Failure { sent: true, error }
    }
}

/// Serialize the request head into `head`.
fn write_head(head: &mut Vec<u8>, parts: &Parts, chunked: bool) {
    head.clear();
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == header::EXPECT {
            // The router answered the client's expectation itself (hyper sends
            // `100 Continue` when the body is first read) and sends the body right away.
            continue;
        }
        put_field(head, name.as_str().as_bytes(), value.as_bytes());
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Read the response head to the request whose method is `method` from `io` (after what
/// `buf` already holds), with `parse` (which consumes interim 1xx heads itself).
/// `received_any` remembers across calls whether any byte of an answer came.
fn poll_head<R: AsyncRead + Unpin, T>(
    io: &mut R,
    buf: &mut BytesMut,
    received_any: &mut bool,
    cx: &mut Context<'_>,
    mut parse: impl FnMut(&mut BytesMut) -> Result<Option<Option<T>>, UpstreamError>,
) -> Poll<Result<T, UpstreamError>> {
    loop {
        match parse(buf)? {
            Some(Some(head)) => return Poll::Ready(Ok(head)),
            // An interim response was consumed: read the next head.
            Some(None) => {
                *received_any = true;
                continue;
            }
            None => {}
        }
        if buf.len() >= MAX_HEAD {
            return Poll::Ready(Err(UpstreamError::Protocol("response head too large")));
        }
        let n = ready!(poll_fill(io, buf, cx))?;
        if n == 0 {
            return Poll::Ready(Err(if buf.is_empty() && !*received_any {
                UpstreamError::ClosedBeforeResponse
            } else {
                UpstreamError::Protocol("connection closed in the middle of the response head")
            }));
        }
        *received_any = true;
    }
}

/// Read more from `io` into `buf`; `Ok(0)` at end of stream.
fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// What an answer's head says about its body and its connection.
struct Framed<'h> {
    framing: Framing,
    keep_alive: bool,
    /// The header names `Connection` lists: hop-by-hop for this answer.
    named: Vec<&'h str>,
    /// Whether a transfer coding overrides `Content-Length` (RFC 9112 6.3): the length the
    /// client sees is whatever the router sends.
    drop_length: bool,
}

impl Framed<'_> {
    /// Whether the answer's field `name` goes on to the client.
    fn passes(&self, name: &str) -> bool {
        let dropped = is_hop_by_hop_name(name)
            || (self.drop_length && name.eq_ignore_ascii_case("content-length"))
            || self.named.iter().any(|n| n.eq_ignore_ascii_case(name));
        !dropped
    }
}

/// The framing of the answer to a `method` request with `status` and `fields`.
fn framed<'h>(
    http10: bool,
    method: &Method,
    status: StatusCode,
    fields: &[httparse::Header<'h>],
) -> Result<Framed<'h>, UpstreamError> {
    let mut keep_alive = !http10;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut named = Vec::new();
    for field in fields {
        let name = field.name;
        if name.eq_ignore_ascii_case("connection") {
            let value = std::str::from_utf8(field.value).unwrap_or("");
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive |= http10;
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides; anything after `chunked` means read to close.
            let value = std::str::from_utf8(field.value).unwrap_or("");
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = last.eq_ignore_ascii_case("chunked");
            other_coding = !chunked;
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(field.value).unwrap_or("");
            for part in value.split(',').map(str::trim) {
                let n: u64 = part
                    .parse()
                    .map_err(|_| UpstreamError::Protocol("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(UpstreamError::Protocol("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        }
    }
    let framing = if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::UntilClose
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    Ok(Framed {
        framing,
        keep_alive,
        named,
        drop_length: chunked || other_coding,
    })
}

/// Parse an answer head from `buf` and hand its status and fields to `emit`: `None` if the
/// head is incomplete, `Some(None)` for an interim 1xx answer (consumed), else what `emit`
/// made, the framing and whether the connection may be kept. The head is consumed.
#[allow(clippy::type_complexity)]
fn parse_answer<T>(
    buf: &mut BytesMut,
    method: &Method,
    emit: impl FnOnce(StatusCode, &[httparse::Header<'_>], &Framed<'_>) -> Result<T, UpstreamError>,
) -> Result<Option<Option<(T, Framing, bool)>>, UpstreamError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamError::Protocol("too many header fields"))
        }
        Err(_) => return Err(UpstreamError::Protocol("malformed response head")),
    };
    let code = parsed.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| UpstreamError::Protocol("invalid status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamError::Protocol(
            "101 Switching Protocols to a request without Upgrade",
        ));
    }
    if status.is_informational() {
        buf.advance(len);
        return Ok(Some(None));
    }
    let framed = framed(parsed.version == Some(0), method, status, parsed.headers)?;
    let made = emit(status, parsed.headers, &framed)?;
    let (framing, keep_alive) = (framed.framing, framed.keep_alive);
    buf.advance(len);
    Ok(Some(Some((made, framing, keep_alive))))
}

/// Parse a head from `buf` into a [`Head`] (an `http::Response`): `None` if incomplete,
/// `Some(None)` for a skipped 1xx.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Option<Head>>, UpstreamError> {
    let parsed = parse_answer(buf, method, |status, fields, framed| {
        let mut builder = response::Builder::new()
            .status(status)
            .version(Version::HTTP_11);
        let headers = builder
            .headers_mut()
            .ok_or(UpstreamError::Protocol("invalid response"))?;
        headers.reserve(fields.len());
        // Hop-by-hop headers stop here.
        for field in fields.iter().filter(|f| framed.passes(f.name)) {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| UpstreamError::Protocol("invalid header name"))?;
            let value = HeaderValue::from_bytes(field.value)
                .map_err(|_| UpstreamError::Protocol("invalid header value"))?;
            headers.append(name, value);
        }
        builder
            .body(())
            .map_err(|_| UpstreamError::Protocol("invalid response"))
    })?;
    Ok(parsed.map(|answer| {
        answer.map(|(response, framing, keep_alive)| Head {
            response,
            framing,
            keep_alive,
        })
    }))
}

/// What [`Conn::exchange_raw`] found in the answer's head (the head itself was written out).
pub(crate) struct RawHead {
    /// The answer's status code.
    pub(crate) status: u16,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body was read.
    pub(crate) keep_alive: bool,
    /// Whether the answer has its own `X-Request-Id`.
    pub(crate) has_request_id: bool,
    /// Whether the answer has a `Date`.
    pub(crate) has_date: bool,
    /// Whether the answer has a `Strict-Transport-Security` (the app's own HSTS).
    pub(crate) has_hsts: bool,
}

/// Parse a head from `buf` and write it for the client into `out`: the status line
/// (HTTP/1.1, the status's canonical reason, as hyper writes it) and every field that is
/// not hop-by-hop, as the app sent it; no final empty line.
#[allow(clippy::type_complexity)]
fn parse_head_raw(
    buf: &mut BytesMut,
    method: &Method,
    out: &mut Vec<u8>,
) -> Result<Option<Option<RawHead>>, UpstreamError> {
    let parsed = parse_answer(buf, method, |status, fields, framed| {
        out.clear();
        put_status_line(out, status);
        let (mut has_request_id, mut has_date, mut has_hsts) = (false, false, false);
        for field in fields.iter().filter(|f| framed.passes(f.name)) {
            has_request_id |= field.name.eq_ignore_ascii_case("x-request-id");
            has_date |= field.name.eq_ignore_ascii_case("date");
            has_hsts |= field.name.eq_ignore_ascii_case("strict-transport-security");
            put_field(out, field.name.as_bytes(), field.value);
        }
        Ok((status.as_u16(), [has_request_id, has_date, has_hsts]))
    })?;
    Ok(parsed.map(|answer| {
        answer.map(
            |((status, [has_request_id, has_date, has_hsts]), framing, keep_alive)| RawHead {
                status,
                framing,
                keep_alive,
                has_request_id,
                has_date,
                has_hsts,
            },
        )
    }))
}

/// A response head read from an upstream.
pub(crate) struct Head {
    /// Status and headers, without the hop-by-hop ones (nor those `Connection` named).
    pub(crate) response: Response<()>,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request once the body was read.
    pub(crate) keep_alive: bool,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunked transfer coding (decoded by [`ChunkedDecoder`], leniently).
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// A response body read from its connection as the client takes it. The connection goes
/// back to its pool once the body was read to its end (if the response allowed keeping
/// it); the request stays counted in flight on its release until the body is dropped.
pub(crate) struct LeanBody {
    conn: Option<Box<Conn>>,
    framing: Framing,
    /// The decoder of a chunked body.
    chunks: Option<ChunkedDecoder>,
    done: bool,
    keep_alive: bool,
    pool: Arc<Pool>,
    _guard: InFlightGuard,
}

impl LeanBody {
    /// The body of the response whose head was `head`, read from `conn`.
    pub(crate) fn new(
        conn: Box<Conn>,
        head_framing: Framing,
        keep_alive: bool,
        pool: Arc<Pool>,
        guard: InFlightGuard,
    ) -> LeanBody {
        let keep_alive = keep_alive && (head_framing != Framing::Length(0) || conn.buf.is_empty());
        let mut body = LeanBody {
            conn: Some(conn),
            framing: head_framing,
            chunks: (head_framing == Framing::Chunked)
                .then(|| ChunkedDecoder::new(Leniency::Lenient)),
            done: false,
            keep_alive,
            pool,
            _guard: guard,
        };
        if body.framing == Framing::Length(0) {
            body.finish();
        }
        body
    }

    /// The body was read to its end: give the connection back.
    fn finish(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            // A request body not sent whole, or answered before it was, leaves the
            // connection out of step.
            if self.keep_alive && conn.in_step() {
                self.pool.checkin(conn);
            }
        }
    }

    /// The next piece of the body from the buffer: `Ok(Some(data))`, or `Ok(None)` when
    /// more must be read first or the body ended (then `done` is set).
    fn decode(&mut self) -> Result<Option<Bytes>, BadChunking> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let (data, end) = decode(&mut self.framing, self.chunks.as_mut(), &mut conn.buf)?;
        if end {
            if !conn.buf.is_empty() {
                // Bytes past the response: the connection is out of step; don't keep it.
                self.keep_alive = false;
            }
            self.finish();
        }
        Ok(data)
    }
}

/// Decode the next piece of a body framed by `framing` from `buf` (a chunked one by
/// `chunks`, the router's one chunked decoder, read leniently): the data, if any, and
/// whether the body ended.
fn decode(
    framing: &mut Framing,
    chunks: Option<&mut ChunkedDecoder>,
    buf: &mut BytesMut,
) -> Result<(Option<Bytes>, bool), BadChunking> {
    match framing {
        Framing::Length(left) => {
            if buf.is_empty() {
                return Ok((None, *left == 0));
            }
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
            *left -= n as u64;
            Ok((Some(buf.split_to(n).freeze()), *left == 0))
        }
        Framing::UntilClose => {
            if buf.is_empty() {
                return Ok((None, false));
            }
            Ok((Some(buf.split().freeze()), false))
        }
        Framing::Chunked => {
            let Some(decoder) = chunks else {
                return Ok((None, true));
            };
            loop {
                if decoder.is_done() {
                    return Ok((None, true));
                }
                if buf.is_empty() {
                    return Ok((None, false));
                }
                let (used, len) = {
                    let (used, data) = decoder.next(&buf[..])?;
                    (used, data.len())
                };
                // The data is the end of what was taken: no copy of it.
                buf.advance(used - len);
                if len > 0 {
                    return Ok((Some(buf.split_to(len).freeze()), false));
                }
            }
        }
    }
}

impl Body for LeanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            // The request body goes on while the answer streams (an app may echo it).
            let failed = match conn.poll_upload(cx) {
                Poll::Ready(Err(UploadError::Client(err))) => Some(io::Error::other(err)),
                Poll::Ready(Err(UploadError::TooLarge(_))) => Some(io::Error::other(
                    "the client's request body is over the router's limit",
                )),
                _ => None,
            };
            if let Some(err) = failed {
                this.conn = None;
                this.done = true;
                return Poll::Ready(Some(Err(err)));
            }
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.decode() {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) if this.done => return Poll::Ready(None),
                Ok(None) => {}
                Err(what) => {
                    this.conn = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        what,
                    ))));
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    this.conn = None;
                    this.done = true;
                    if this.framing == Framing::UntilClose {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the application closed the connection in the middle of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) if !self.done => SizeHint::with_exact(n),
            _ if self.done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// Check the answer-head parser on `data` for both paths, for the fuzz target and the
/// in-tree samples: the typed head (hyper's side, [`Conn::exchange`]) and the head written
/// as bytes (the router's own path, [`Conn::exchange_raw`]) must agree with each other and
/// with httparse on the same bytes; panics where they do not.
pub(crate) fn check_answer_head(data: &[u8]) {
    for method in [Method::GET, Method::HEAD] {
        let (mut typed_buf, mut raw_buf) = (BytesMut::from(data), BytesMut::from(data));
        let mut out = Vec::new();
        let typed = parse_head(&mut typed_buf, &method);
        let raw = parse_head_raw(&mut raw_buf, &method, &mut out);
        match (typed, raw) {
            (Ok(None), Ok(None)) | (Ok(Some(None)), Ok(Some(None))) | (Err(_), Err(_)) => {
                assert_eq!(typed_buf, raw_buf, "consumed differently: {data:?}");
            }
            (Ok(Some(Some(head))), Ok(Some(Some(raw)))) => {
                assert_eq!(typed_buf, raw_buf, "consumed differently: {data:?}");
                assert_eq!(
                    (head.framing, head.keep_alive),
                    (raw.framing, raw.keep_alive)
                );
                // The head written for the client parses whole, CRLF only, and says what
                // the typed head says, field for field.
                out.extend_from_slice(b"\r\n");
                assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut written = httparse::Response::new(&mut fields);
                assert_eq!(
                    written.parse(&out).ok(),
                    Some(httparse::Status::Complete(out.len())),
                    "the answer head written for the client does not parse: {out:?}"
                );
                assert_eq!(written.code, Some(head.response.status().as_u16()));
                let mut raw_fields: Vec<(String, &[u8])> = written
                    .headers
                    .iter()
                    .map(|f| (f.name.to_ascii_lowercase(), f.value))
                    .collect();
                let mut typed_fields: Vec<(String, &[u8])> = head
                    .response
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes()))
                    .collect();
                raw_fields.sort();
                typed_fields.sort();
                assert_eq!(raw_fields, typed_fields, "{data:?}");
                for (name, _) in &raw_fields {
                    assert!(!is_hop_by_hop_name(name), "{name} passed on: {data:?}");
                }
                let drop_length = matches!(raw.framing, Framing::Chunked | Framing::UntilClose);
                assert_eq!(
                    raw.has_request_id,
                    raw_fields.iter().any(|(n, _)| n == "x-request-id")
                );
                if drop_length {
                    assert!(
                        !raw_fields.iter().any(|(n, _)| n == "content-length")
                            || method == Method::HEAD,
                        "a length passed on with a body of unknown length: {data:?}"
                    );
                }
            }
            (typed, raw) => panic!(
                "the two paths disagree on {data:?}: typed {:?}, raw {:?}",
                typed.map(|h| h.map(|h| h.map(|h| h.response.status()))),
                raw.map(|h| h.map(|h| h.map(|h| h.framing)))
            ),
        }
    }
}
