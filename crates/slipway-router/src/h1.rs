//! The router's own HTTP/1.1 serving of the common request: a `GET` or `HEAD` without a
//! body (and any request for a PHP script with at most a `Content-Length` body). Its head is parsed in place and written on to the app as bytes, and the app's
//! answer head is written back as bytes, hop-by-hop fields filtered out. hyper would parse
//! each head into a `HeaderMap` and write it out again, on both sides; that was a good
//! part of the router's own CPU time per request. Such a request may be for an app's
//! upstream, a static file of its locations, or a PHP script (FastCGI to PHP-FPM,
//! [`crate::fastcgi_h1`]).
//!
//! A request with a `Content-Length` body, or of another method, is parsed here too but
//! served here only when it is for a PHP script (its body streamed to PHP-FPM).
//! Anything else hands the connection to hyper for the rest of its life, with the bytes
//! already read in front ([`Served::Handover`]): any other request with a body or
//! another method, a chunked body, `Expect`,
//! `Upgrade` (WebSocket, h2c), `Connection` options other than `close` and `keep-alive`,
//! HTTP/1.0, an absolute-form target, several `Cookie` or `X-Forwarded-For` fields, more
//! than [`MAX_FIELDS`] fields, a head over [`MAX_HEAD`] bytes, or anything malformed
//! (hyper answers it with its 400 or 431). Both paths pick the route, hold requests during
//! a switch, count them in flight on their release, forward the same headers and answer
//! with the same pages.
//!
//! Every head read here, the ones handed to hyper included, is first looked at for what
//! hyper's parser lets through and a proxy must not pass on ([`Parsed::Refused`]): a line
//! that ends in a bare LF, or two `Host` fields (routed by one, seen by the app as the
//! other). Those are answered 400 and the connection is closed.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body;
use hyper::header::HeaderValue;
use hyper::{Method, Response};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;

use crate::body::ProxyBody;
use crate::client_stream::ClientStream;
use crate::fastcgi_h1::{BodyEnd, BodyFraming, RequestBody, ScriptRequest};
use crate::file_body::Produced;
use crate::files::{StaticAnswer, StaticBody, FILE_CHUNK};
use crate::headers::{
    add_hsts, is_hop_by_hop_name, new_request_id, put_field, put_hsts, put_status_line,
    sane_request_id,
};
use crate::locations::{Ask, Resolved};
use crate::pool::Pool;
use crate::proxy::{
    bad_request, gateway_timeout, pick, router_answer, upstream_failed, within_request_timeout,
    Client, Picked, MAX_SEND_RETRIES,
};
use crate::release::InFlightGuard;
use crate::router::Router;
use crate::sendfile::{send_file, send_head, send_parts, FileSink, SENDFILE_MIN};
use crate::server::{Activity, End, OpenRequest};
use crate::upstream::{Framing, LeanBody, UpstreamError};

/// Largest request head served here; a bigger one goes to hyper (which answers 431 past
/// its own limit).
const MAX_HEAD: usize = 16 * 1024;
/// Most fields in a request head served here.
const MAX_FIELDS: usize = 64;
/// Answer bytes gathered before they are written (beyond it, body data is written as is).
pub(crate) const WRITE_BATCH: usize = 64 * 1024;

/// How serving a client connection here ended.
pub(crate) enum Served {
    /// The connection is done: closed by the client, by `Connection: close`, by an error,
    /// or by the router (stop, idleness) between requests.
    Closed,
    /// A request this path does not serve: hyper serves the connection from here on,
    /// reading `read` first. `stopping`: the router stopped already (`end` resolved and
    /// is spent), so hyper answers this request and closes.
    Handover {
        /// The bytes read from the client so far.
        read: Bytes,
        /// Whether the stop came already.
        stopping: bool,
    },
}

/// When the router stops, how long a kept-alive connection with no request in progress
/// waits for one more: a busy client's next request is answered (with
/// `connection: close`) instead of racing with the close, which it would see as a failed
/// request. A connection that sends nothing in this time is closed.
pub(crate) const LAST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// Serve HTTP/1.1 requests of `stream` (plain TCP or TLS) until the connection ends,
/// `end` resolves between two requests (a stop: after one more request, if it comes
/// within [`LAST_REQUEST_WAIT`]), or a request needs hyper. `stopping`: the stop came
/// already (`end` resolved and is not polled again).
pub(crate) async fn serve<S: ClientStream, E: Future<Output = End>>(
    router: &Router,
    client: &Client,
    stream: &mut S,
    activity: &Arc<Activity>,
    mut end: Pin<&mut E>,
    stopping: bool,
) -> Served {
    let mut buf = BytesMut::with_capacity(4096);
    let mut upstream_head = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(4096);
    // Set once the router stops (`end` resolved, never to be polled again): the next
    // request is the last.
    let mut last_call: Option<Pin<Box<tokio::time::Sleep>>> =
        stopping.then(|| Box::pin(tokio::time::sleep(LAST_REQUEST_WAIT)));
    loop {
        let mut request = loop {
            if !buf.is_empty() {
                match parse_request(&buf, client, &mut upstream_head) {
                    Parsed::Simple(request) => break request,
                    Parsed::Partial if buf.len() < MAX_HEAD => {}
                    Parsed::Partial if has_bare_lf(&buf) => {
                        return refuse(stream, BARE_LF, &mut out).await;
                    }
                    // After a stop, `end` is spent: hyper answers this one request and
                    // closes.
                    Parsed::Partial | Parsed::Other => {
                        return Served::Handover {
                            read: buf.freeze(),
                            stopping: last_call.is_some(),
                        }
                    }
                    Parsed::Refused(why) => return refuse(stream, why, &mut out).await,
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            tokio::select! {
                biased;
                why = end.as_mut(), if last_call.is_none() => match why {
                    End::Idle => return Served::Closed,
                    End::Stop => last_call = Some(Box::pin(tokio::time::sleep(LAST_REQUEST_WAIT))),
                },
                () = async { if let Some(s) = last_call.as_mut() { s.await } }, if last_call.is_some() => {
                    return Served::Closed;
                }
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return Served::Closed,
                    Ok(_) => {}
                },
            }
        };
        request.close |= last_call.is_some();
        let text = |r: &Range<usize>| std::str::from_utf8(&buf[r.clone()]).unwrap_or("");
        let host = text(&request.host);
        // The console is hyper's (its pages, forms and event streams), and so is an ACME
        // challenge in progress (plain HTTP, any host).
        if client.fixed.is_none()
            && (router.console_for(host).is_some()
                || (!client.tls && router.acme_answer(text(&request.path)).is_some()))
        {
            return Served::Handover {
                read: buf.freeze(),
                stopping: last_call.is_some(),
            };
        }
        // A body: the bytes read after the head, and the client's read half to read the
        // rest from (then it cannot be watched for the client going away meanwhile); the
        // body says where it ended (over TLS it is read through the TLS state).
        let mut body_end = BodyEnd::default();
        let open = OpenRequest::new(activity);
        let (mut reader, mut writer) = stream.answer_halves();
        let started = std::time::Instant::now();
        let only_script = request.only_script();
        // Over TLS, a route's HSTS field for every answer (never on plain HTTP).
        let hsts = if client.tls {
            router.hsts(host, text(&request.path))
        } else {
            None
        };
        let hsts = hsts.as_ref();
        let mut watch = Some(&mut reader);
        let body_reader = if request.has_body() {
            watch.take()
        } else {
            None
        };
        let answer = async {
            match pick(
                router,
                client.fixed.as_ref(),
                host,
                text(&request.path),
                request.query.as_ref().map(text),
                client.tls,
            )
            .await
            {
                // Anything but a script, for a request with a body or another method:
                // hyper's (nothing was written or read of the body yet).
                Picked::Live(..) | Picked::Answer(..) if only_script => {
                    Err(io::Error::from(HAND_TO_HYPER))
                }
                Picked::Live(guard, pool) => {
                    let exchange = Exchange {
                        router,
                        pool,
                        guard,
                        method: request.method.clone(),
                        request_id: &request.id,
                        close: request.close,
                        started,
                        hsts,
                    };
                    exchange.run(&upstream_head, &mut writer, &mut out).await
                }
                Picked::Site(guard, pool, site) => {
                    let field = |r: &Option<Range<usize>>| r.as_ref().map(|r| &buf[r.clone()]);
                    let ask = Ask {
                        path: text(&request.path),
                        query: request.query.as_ref().map(text),
                        readable: request.method == Method::GET || request.method == Method::HEAD,
                        head: request.method == Method::HEAD,
                        if_none_match: field(&request.conditions.if_none_match),
                        if_modified_since: field(&request.conditions.if_modified_since),
                        range: field(&request.conditions.range),
                        if_range: field(&request.conditions.if_range),
                        accept_encoding: field(&request.conditions.accept_encoding),
                    };
                    match site.resolve(&ask) {
                        Resolved::Script(call) => {
                            let body = match (request.framing(), body_reader) {
                                (Some(framing), Some(reader)) => Some(RequestBody {
                                    framing,
                                    buffered: &buf[request.len..],
                                    expect_continue: request.expect_continue,
                                    reader,
                                    max: router.config.max_request_body,
                                    timeout: router.config.request_body_timeout,
                                    end: &mut body_end,
                                }),
                                _ => None,
                            };
                            ScriptRequest {
                                upstream: pool.upstream(),
                                head: &upstream_head,
                                call,
                                client,
                                host,
                                request_id: &request.id,
                                head_only: request.method == Method::HEAD,
                                close: request.close,
                                guard,
                                started,
                                body,
                                hsts,
                            }
                            .run(&mut writer, &mut out)
                            .await
                        }
                        _ if only_script => Err(io::Error::from(HAND_TO_HYPER)),
                        Resolved::Forward => {
                            let exchange = Exchange {
                                router,
                                pool,
                                guard,
                                method: request.method.clone(),
                                request_id: &request.id,
                                close: request.close,
                                started,
                                hsts,
                            };
                            exchange.run(&upstream_head, &mut writer, &mut out).await
                        }
                        Resolved::Answer(mut answer) => {
                            if let Some(value) = hsts {
                                let name = hyper::header::STRICT_TRANSPORT_SECURITY;
                                if !answer.headers.iter().any(|(n, _)| n == name) {
                                    answer.headers.push((name, value.clone()));
                                }
                            }
                            guard
                                .stats()
                                .record(answer.status.as_u16(), started.elapsed());
                            // The file is the release's: counted in flight until sent.
                            let sent = write_static(
                                &mut writer,
                                answer,
                                &request.id,
                                request.close,
                                &mut out,
                            )
                            .await;
                            drop(guard);
                            sent
                        }
                    }
                }
                Picked::Answer(answer, stats) => {
                    let mut page = router_answer(answer, host, &request.id);
                    add_hsts(page.headers_mut(), hsts);
                    let stats = stats.as_deref().unwrap_or(&router.stats.unrouted);
                    stats.record(page.status().as_u16(), started.elapsed());
                    write_page(&mut writer, page, request.close, &mut out).await
                }
            }
        };
        // A client that goes away ends its request (and frees its place on the release)
        // at once, wherever the request is: held, or waiting for the app. (One sending a
        // body is seen going away as the body is read.)
        let answered = tokio::select! {
            biased;
            answered = answer => answered,
            () = client_gone(watch) => Err(io::ErrorKind::ConnectionAborted.into()),
        };
        drop((reader, writer));
        drop(open);
        match answered {
            Ok(()) => {}
            // After a stop, `end` is spent: hyper answers this one request and closes.
            Err(e) if e.kind() == HAND_TO_HYPER => {
                return Served::Handover {
                    read: buf.freeze(),
                    stopping: last_call.is_some(),
                }
            }
            Err(_) => return Served::Closed,
        }
        buf.advance(request.len + body_end.from_buffer);
        if !body_end.read_ahead.is_empty() {
            // The body was read beyond what came with its head: all of that was its.
            buf.clear();
            buf.extend_from_slice(&body_end.read_ahead);
        }
        if request.close {
            let _ = stream.shutdown().await;
            return Served::Closed;
        }
    }
}

/// The error kind of an answer that is hyper's to give (nothing was written, nothing of
/// a body read).
const HAND_TO_HYPER: io::ErrorKind = io::ErrorKind::Unsupported;

/// A request head served here.
struct Request {
    /// Length of the head in the buffer.
    len: usize,
    method: Method,
    /// Where the `Host` value, the path and the query are in the buffer.
    host: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    /// The client's `X-Request-Id` if sane, else a new one.
    id: HeaderValue,
    /// Whether the client asked to close the connection after this request.
    close: bool,
    /// Where the fields that static files answer to are in the buffer.
    conditions: Conditions,
    /// The body's length, if the request has a `Content-Length`.
    body: Option<u64>,
    /// The body is chunked (`Transfer-Encoding: chunked`, no `Content-Length`).
    chunked: bool,
    /// The client sent `Expect: 100-continue` (with a body).
    expect_continue: bool,
}

impl Request {
    /// Whether only a PHP script is served here: a request with a body or of a method
    /// other than GET and HEAD goes to hyper's path for anything else (an app's
    /// upstream, a file, the router's own answers).
    fn only_script(&self) -> bool {
        self.has_body() || !(self.method == Method::GET || self.method == Method::HEAD)
    }

    /// Whether the request has a body (of a length, maybe 0, or chunked).
    fn has_body(&self) -> bool {
        self.body.is_some() || self.chunked
    }

    /// How its body is framed, if it has one.
    fn framing(&self) -> Option<BodyFraming> {
        match (self.body, self.chunked) {
            (Some(len), _) => Some(BodyFraming::Length(len)),
            (None, true) => Some(BodyFraming::Chunked),
            (None, false) => None,
        }
    }
}

/// The places of the request fields a static file's answer depends on.
#[derive(Default)]
struct Conditions {
    if_none_match: Option<Range<usize>>,
    if_modified_since: Option<Range<usize>>,
    range: Option<Range<usize>>,
    if_range: Option<Range<usize>>,
    accept_encoding: Option<Range<usize>>,
}

// Boxing the request head would cost an allocation per request; it is moved once.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Simple(Request),
    /// More bytes are needed.
    Partial,
    /// Not a request served here (or not a valid one): hyper's.
    Other,
    /// A request no path may serve, for this reason (the text of the 400 answer).
    Refused(&'static str),
}

/// The 400 answer to a head with a line that ends in a bare LF.
const BARE_LF: &str = "400 Bad Request: a line of the request head ends in LF without CR.\n";
/// The 400 answer to a head with two `Host` fields.
const TWO_HOSTS: &str = "400 Bad Request: the request has more than one Host field.\n";

/// Whether `head` has a line feed not preceded by a carriage return (RFC 9112 2.2 lets a
/// recipient accept one; a proxy that does, in front of an app that does not, disagrees
/// with it on where the head ends).
fn has_bare_lf(head: &[u8]) -> bool {
    let mut prev = 0u8;
    for &byte in head {
        if byte == b'\n' && prev != b'\r' {
            return true;
        }
        prev = byte;
    }
    false
}

/// Answer a refused request 400 with `why`, and close the connection: after a head that
/// was not understood, the next request cannot be found reliably.
async fn refuse<S: ClientStream>(stream: &mut S, why: &'static str, out: &mut Vec<u8>) -> Served {
    let _ = write_page(stream, bad_request(why), true, out).await;
    let _ = stream.shutdown().await;
    Served::Closed
}

/// Parse the request head at the start of `buf`; for a request served here, write the head
/// the app gets into `upstream`: the same fields without hop-by-hop ones, then
/// `X-Forwarded-For` (the client's list with this client appended), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `X-Request-Id`, as the hyper path sends them.
fn parse_request(buf: &[u8], client: &Client, upstream: &mut Vec<u8>) -> Parsed {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    if has_bare_lf(&buf[..len]) {
        return Parsed::Refused(BARE_LF);
    }
    // Two `Host` fields are refused whatever the request (hyper's parser takes them).
    let mut hosts = req
        .headers
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("host"));
    if hosts.next().is_some() && hosts.next().is_some() {
        return Parsed::Refused(TWO_HOSTS);
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        Some(other) => match Method::from_bytes(other.as_bytes()) {
            Ok(method) if method != Method::CONNECT => method,
            _ => return Parsed::Other,
        },
        None => return Parsed::Other,
    };
    let (Some(1), Some(target)) = (req.version, req.path) else {
        return Parsed::Other;
    };
    if !target.starts_with('/') {
        return Parsed::Other;
    }
    let at = |s: &str| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (at(path), Some(at(query))),
        None => (at(target), None),
    };

    upstream.clear();
    upstream.extend_from_slice(method.as_str().as_bytes());
    upstream.push(b' ');
    upstream.extend_from_slice(target.as_bytes());
    upstream.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: Option<&[u8]> = None;
    let mut forwarded_for: Option<&[u8]> = None;
    let mut id = None;
    let mut cookies = 0;
    let mut close = false;
    let mut conditions = Conditions::default();
    let mut body: Option<u64> = None;
    let mut chunked = false;
    let mut expect_continue = false;
    let at_bytes = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    for field in req.headers.iter() {
        let name = field.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("host") {
            host = Some(field.value);
        } else if is("content-length") {
            // One length of plain digits (a PHP script's body); anything else is hyper's.
            let value = field.value;
            if body.is_some() || value.is_empty() || value.len() > 18 {
                return Parsed::Other;
            }
            if !value.iter().all(u8::is_ascii_digit) {
                return Parsed::Other;
            }
            body = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if is("transfer-encoding") {
            // One `chunked` coding (a PHP script's upload); anything else is hyper's.
            if chunked || !field.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Parsed::Other;
            }
            chunked = true;
            continue;
        } else if is("expect") {
            // Answered here (`100 Continue` when the body is read), not passed on.
            if expect_continue
                || !field
                    .value
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"100-continue")
            {
                return Parsed::Other;
            }
            expect_continue = true;
            continue;
        } else if is("upgrade") {
            return Parsed::Other;
        } else if is("connection") {
            for token in std::str::from_utf8(field.value)
                .unwrap_or("?")
                .split(',')
                .map(str::trim)
            {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if !token.eq_ignore_ascii_case("keep-alive") && !token.is_empty() {
                    // It names hop-by-hop fields (or it is not valid): hyper's job.
                    return Parsed::Other;
                }
            }
            continue;
        } else if is("cookie") {
            cookies += 1;
            if cookies > 1 {
                return Parsed::Other;
            }
        } else if is("x-forwarded-for") {
            if forwarded_for.replace(field.value).is_some() {
                return Parsed::Other;
            }
            continue;
        } else if is("x-request-id") {
            id = sane_request_id(field.value);
            continue;
        } else if is("x-forwarded-proto") || is("x-forwarded-host") || is_hop_by_hop_name(name) {
            continue;
        } else if let Some(slot) = conditions.slot(name) {
            *slot = Some(at_bytes(field.value));
        }
        put_field(upstream, name.as_bytes(), field.value);
    }
    // A length and chunking together, or an expectation without a body: hyper's.
    if (chunked && body.is_some()) || (expect_continue && body.is_none() && !chunked) {
        return Parsed::Other;
    }
    // Visible ASCII only, as the hyper path requires of a host.
    let Some(host) = host.filter(|h| !h.is_empty() && h.iter().all(|c| c.is_ascii_graphic()))
    else {
        return Parsed::Other;
    };
    let id = id.unwrap_or_else(new_request_id);
    upstream.extend_from_slice(b"x-forwarded-for: ");
    if let Some(list) = forwarded_for {
        upstream.extend_from_slice(list);
        upstream.extend_from_slice(b", ");
    }
    upstream.extend_from_slice(client.forwarded_for.as_bytes());
    upstream.extend_from_slice(if client.tls {
        &b"\r\nx-forwarded-proto: https\r\nx-forwarded-host: "[..]
    } else {
        &b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: "[..]
    });
    upstream.extend_from_slice(host);
    upstream.extend_from_slice(b"\r\nx-request-id: ");
    upstream.extend_from_slice(id.as_bytes());
    upstream.extend_from_slice(b"\r\n\r\n");
    let host = at(std::str::from_utf8(host).unwrap_or(""));
    Parsed::Simple(Request {
        len,
        method,
        host,
        path,
        query,
        id,
        close,
        conditions,
        body,
        chunked,
        expect_continue,
    })
}

impl Conditions {
    /// The slot of the field `name`, if static files answer to it.
    fn slot(&mut self, name: &str) -> Option<&mut Option<Range<usize>>> {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("if-none-match") {
            Some(&mut self.if_none_match)
        } else if is("if-modified-since") {
            Some(&mut self.if_modified_since)
        } else if is("range") {
            Some(&mut self.range)
        } else if is("if-range") {
            Some(&mut self.if_range)
        } else if is("accept-encoding") {
            Some(&mut self.accept_encoding)
        } else {
            None
        }
    }
}

/// One request on its way to an app of a live release.
struct Exchange<'a> {
    router: &'a Router,
    pool: Arc<Pool>,
    guard: InFlightGuard,
    method: Method,
    request_id: &'a HeaderValue,
    close: bool,
    /// When the request's head was read (for the latency metric).
    started: std::time::Instant,
    /// The route's HSTS value, over TLS.
    hsts: Option<&'a HeaderValue>,
}

impl Exchange<'_> {
    /// Send `request` (the head for the app) over a pooled connection and write the answer
    /// to the client. A request whose head could not be written, or whose reused
    /// connection closed before any answer byte (the app closed it as it was reused), is
    /// sent again on another connection, as the hyper path does. `Err`: the client
    /// connection cannot go on (it went away, or the app's body broke off midway).
    async fn run<W: AsyncWrite + Unpin>(
        self,
        request: &[u8],
        stream: &mut W,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Exchange {
            router,
            pool,
            guard,
            method,
            request_id,
            close,
            started,
            hsts,
        } = self;
        let config = &router.config;
        let with_hsts = |mut page: Response<ProxyBody>| {
            add_hsts(page.headers_mut(), hsts);
            page
        };
        let record = |guard: &InFlightGuard, status: hyper::StatusCode| {
            guard.stats().record(status.as_u16(), started.elapsed())
        };
        let mut attempt = 0;
        let (conn, head) = loop {
            attempt += 1;
            let last = attempt >= MAX_SEND_RETRIES;
            let (mut conn, reused) = match pool.checkout_or_connect(config.connect_timeout).await {
                Ok(got) => got,
                Err(err) => {
                    guard.stats().connect_error();
                    let page = with_hsts(upstream_failed(&pool, &err, request_id));
                    record(&guard, page.status());
                    // The release is done with: not counted while the page goes out.
                    drop(guard);
                    return write_page(stream, page, close, out).await;
                }
            };
            let exchange = conn.exchange_raw(request, &method, out);
            let Some(result) = within_request_timeout(config.request_timeout, exchange).await
            else {
                let page = with_hsts(gateway_timeout(&pool, request_id));
                record(&guard, page.status());
                drop(guard);
                return write_page(stream, page, close, out).await;
            };
            match result {
                Ok(head) => break (conn, head),
                Err(failure) => {
                    let closed = matches!(failure.error, UpstreamError::ClosedBeforeResponse);
                    if !last && (!failure.sent || (reused && closed)) {
                        tracing::debug!(error = %failure.error, "upstream connection failed before a response; again");
                        continue;
                    }
                    let page = with_hsts(upstream_failed(&pool, &failure.error, request_id));
                    record(&guard, page.status());
                    drop(guard);
                    return write_page(stream, page, close, out).await;
                }
            }
        };
        guard.stats().record(head.status, started.elapsed());
        // `out` holds the status line and the app's fields.
        if !head.has_request_id {
            put_field(out, b"x-request-id", request_id.as_bytes());
        }
        if !head.has_date {
            put_date(out);
        }
        put_hsts(out, hsts, head.has_hsts);
        // A body of unknown length (chunked from the app, or until it closes) goes to the
        // client chunked.
        let chunked = matches!(head.framing, Framing::Chunked | Framing::UntilClose);
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        // The body gives the connection back to the pool at its end; the request stays
        // counted in flight on its release until the body was written.
        let mut body = LeanBody::new(conn, head.framing, head.keep_alive, pool, guard);
        let sent = send_body(&mut body, chunked, stream, out).await;
        drop(body);
        sent
    }
}

/// Write `out` and then the body to the client, chunked if `chunked`. What the body has
/// at once goes out in one write with what is gathered; before waiting for more, what is
/// gathered is written, so a slow stream is not held back.
async fn send_body<W: AsyncWrite + Unpin>(
    body: &mut LeanBody,
    chunked: bool,
    stream: &mut W,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        let next = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)))
            .await
        {
            Poll::Ready(next) => next,
            Poll::Pending => {
                stream.write_all(out).await?;
                out.clear();
                std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match next {
            None => break,
            Some(Err(err)) => {
                // The client has a head (and maybe part of the body): closing the
                // connection is the only way left to say the answer is incomplete.
                tracing::debug!(error = %err, "an app's answer broke off midway");
                return Err(io::Error::other(err));
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() > WRITE_BATCH {
            stream.write_all(out).await?;
            out.clear();
            stream.write_all(&data).await?;
        } else {
            out.extend_from_slice(&data);
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

/// Write one of the router's own pages (whole, with its length and the date).
pub(crate) async fn write_page<W: AsyncWrite + Unpin>(
    stream: &mut W,
    page: Response<ProxyBody>,
    close: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let (parts, body) = page.into_parts();
    let text = match body {
        ProxyBody::Page(text) => text.unwrap_or_default(),
        _ => Bytes::new(),
    };
    out.clear();
    put_status_line(out, parts.status);
    for (name, value) in &parts.headers {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    put_field(out, b"content-length", text.len().to_string().as_bytes());
    put_date(out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&text);
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

/// The shortest body made in memory that [`write_static`] writes beside the answer's head
/// (a vectored write) rather than copying it after the head: below, the copy costs less
/// than it saves.
const TEXT_BESIDE: usize = 4096;

/// The lengths of the bodies [`write_static`] wrote beside their head, for the tests to
/// see that an answer went this way.
#[cfg(test)]
pub(crate) static BESIDE_LENGTHS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// Write a static answer: head, then the body. A file of at least [`SENDFILE_MIN`] bytes
/// on a plain TCP connection goes from the page cache to the socket (`sendfile(2)`, see
/// [`crate::sendfile`]), as do the parts of a `multipart/byteranges` answer; on any
/// other stream it is read in chunks of [`FILE_CHUNK`] and written as read; a small one
/// goes out with the head in one write. A body made in memory of [`TEXT_BESIDE`] bytes
/// or more goes out beside the head (one `writev`) on a plain TCP connection; a gzipped
/// body a worker keeps of [`SENDFILE_MIN`] bytes or more is a file (a sealed `memfd`,
/// [`crate::gzip_cache`]) and goes with `sendfile(2)`.
async fn write_static<W: FileSink>(
    stream: &mut W,
    answer: StaticAnswer,
    request_id: &HeaderValue,
    close: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    put_status_line(out, answer.status);
    for (name, value) in &answer.headers {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let chunked = answer.length.is_none() && matches!(answer.body, StaticBody::Produced(_));
    if answer.status != hyper::StatusCode::NOT_MODIFIED {
        match answer.length {
            Some(length) => put_field(out, b"content-length", length.to_string().as_bytes()),
            None if chunked => put_field(out, b"transfer-encoding", b"chunked"),
            // HEAD of an answer whose length is known only once made: neither.
            None => {}
        }
    }
    put_field(out, b"x-request-id", request_id.as_bytes());
    put_date(out);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    match answer.body {
        StaticBody::Empty => {}
        // A long body made in memory (a gzipped file shorter than SENDFILE_MIN, or one
        // not kept) on a plain TCP connection: written beside the head in one vectored write, instead of copied
        // into the head's buffer (which would also stay that large for the connection).
        StaticBody::Text(text) if text.len() >= TEXT_BESIDE && stream.plain_tcp().is_some() => {
            #[cfg(test)]
            BESIDE_LENGTHS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(text.len());
            stream
                .write_all_buf(&mut Buf::chain(&out[..], text))
                .await?;
            out.clear();
            return Ok(());
        }
        StaticBody::Text(text) => out.extend_from_slice(&text),
        StaticBody::Produced(Produced::Parts(parts)) if stream.plain_tcp().is_some() => {
            if let Some(tcp) = stream.plain_tcp() {
                // Each part's bytes from the page cache, as a single range's.
                send_parts(tcp, parts, out).await?;
            }
        }
        StaticBody::Produced(body) => write_produced(stream, body, chunked, out).await?,
        StaticBody::File { file, offset, len } if len >= SENDFILE_MIN => {
            if let Some(tcp) = stream.plain_tcp() {
                // The head first (kept by the kernel until the file's bytes follow), then
                // the file's bytes.
                send_head(tcp, out).await?;
                out.clear();
                return send_file(tcp, &file, offset, len).await;
            }
            copy_file(stream, &file, offset, len, out).await?;
        }
        StaticBody::File { file, offset, len } => {
            copy_file(stream, &file, offset, len, out).await?;
        }
    }
    stream.write_all(out).await?;
    out.clear();
    Ok(())
}

/// Append the chunks of `body` to `out` (which holds the answer's head), in chunked
/// framing if `chunked` (with its last chunk), writing `out` to `stream` whenever it holds
/// [`FILE_CHUNK`] bytes and then letting the worker's other connections run (gzip takes
/// CPU). What is left in `out` at the end is for the caller to write; an error ends the
/// body short (the caller closes the connection).
async fn write_produced<W: AsyncWrite + Unpin>(
    stream: &mut W,
    mut body: Produced,
    chunked: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    while let Some(chunk) = body.next_chunk() {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                stream.write_all(out).await?;
                out.clear();
                return Err(e);
            }
        };
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        }
        out.extend_from_slice(&chunk);
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= FILE_CHUNK {
            stream.write_all(out).await?;
            out.clear();
            tokio::task::yield_now().await;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(())
}

/// Append `len` bytes of `file` from `offset` to `out` (which holds the answer's head),
/// writing `out` to `stream` whenever it holds [`FILE_CHUNK`] bytes. What is left in
/// `out` at the end is for the caller to write.
async fn copy_file<W: AsyncWrite + Unpin>(
    stream: &mut W,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut offset = offset;
    let mut left = len;
    while left > 0 {
        let want = left.min(FILE_CHUNK as u64) as usize;
        let start = out.len();
        out.resize(start + want, 0);
        let n = file.read_at(&mut out[start..], offset)?;
        out.truncate(start + n);
        if n == 0 {
            // The length was promised: only closing can say the answer is short.
            stream.write_all(out).await?;
            out.clear();
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        offset += n as u64;
        left -= n as u64;
        if out.len() >= FILE_CHUNK {
            stream.write_all(out).await?;
            out.clear();
        }
    }
    Ok(())
}

/// Resolves when the client closed its side or the connection broke. Bytes sent ahead (a
/// pipelined request) are left for later, and then this never resolves; nor does it
/// without a reader to watch.
async fn client_gone(reader: Option<&mut ReadHalf<'_>>) {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    let mut probe = [0u8; 1];
    match reader.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Append a `date` field with the current time (formatted once a second per thread).
pub(crate) fn put_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        put_field(out, b"date", text.as_bytes());
    });
}

/// Check the request-head parser on `data` against httparse (the parser hyper serves with)
/// on the same bytes, for the fuzz target and the in-tree samples: panics where they
/// disagree or the head written for the app is not what the client sent plus the router's
/// fields.
pub(crate) fn check_request_head(data: &[u8]) {
    let client = Client::new(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)));
    let mut upstream = Vec::new();
    let parsed = parse_request(data, &client, &mut upstream);
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut theirs = httparse::Request::new(&mut fields);
    let status = theirs.parse(data);
    let hosts = |fields: &[httparse::Header<'_>]| {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("host"))
            .count()
    };
    match parsed {
        Parsed::Partial => assert!(matches!(status, Ok(httparse::Status::Partial))),
        Parsed::Refused(why) => {
            let Ok(httparse::Status::Complete(len)) = status else {
                panic!("refused a head httparse did not read whole: {data:?}");
            };
            assert!(
                has_bare_lf(&data[..len]) || hosts(theirs.headers) > 1,
                "refused ({why}) a head with one host and CRLF lines: {data:?}"
            );
        }
        Parsed::Other => {
            if let Ok(httparse::Status::Complete(len)) = status {
                assert!(!has_bare_lf(&data[..len]), "bare LF handed over: {data:?}");
                assert!(
                    hosts(theirs.headers) <= 1,
                    "two hosts handed over: {data:?}"
                );
            }
        }
        Parsed::Simple(request) => {
            let Ok(httparse::Status::Complete(len)) = status else {
                panic!("served a head httparse did not read whole: {data:?}");
            };
            assert_eq!(request.len, len);
            assert!(!has_bare_lf(&data[..len]));
            // A body only with one plain length, or one `chunked` coding and no length.
            let named = |name: &str| {
                theirs
                    .headers
                    .iter()
                    .filter(|f| f.name.eq_ignore_ascii_case(name))
                    .map(|f| f.value)
                    .collect::<Vec<_>>()
            };
            match named("transfer-encoding").as_slice() {
                [] => assert!(!request.chunked),
                [coding] => {
                    assert!(request.chunked, "{data:?}");
                    assert!(
                        coding.trim_ascii().eq_ignore_ascii_case(b"chunked"),
                        "{data:?}"
                    );
                    assert!(named("content-length").is_empty(), "{data:?}");
                }
                codings => panic!("served with codings {codings:?}: {data:?}"),
            }
            match named("expect").as_slice() {
                [] => assert!(!request.expect_continue),
                [value] => {
                    assert!(request.expect_continue && request.has_body(), "{data:?}");
                    assert!(value.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
                }
                values => panic!("served with expectations {values:?}: {data:?}"),
            }
            match (request.body, named("content-length").as_slice()) {
                (None, []) => {}
                (Some(n), [value]) => assert_eq!(
                    std::str::from_utf8(value).ok().map(str::parse::<u64>),
                    Some(Ok(n)),
                    "{data:?}"
                ),
                (body, lengths) => panic!("body {body:?} with lengths {lengths:?}: {data:?}"),
            }
            assert_eq!(theirs.method, Some(request.method.as_str()));
            assert_eq!(theirs.version, Some(1));
            let target = theirs.path.unwrap_or_default();
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            assert_eq!(&data[request.path.clone()], path.as_bytes());
            assert_eq!(request.query.map(|q| &data[q]), query.map(str::as_bytes));
            assert_eq!(hosts(theirs.headers), 1);
            let host = theirs
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("host"));
            assert_eq!(host.map(|f| f.value), Some(&data[request.host.clone()]));

            // The head written for the app: whole, CRLF only, the same request line, the
            // client's end-to-end fields in order, then one of each of the router's.
            let mut up_fields = [httparse::EMPTY_HEADER; MAX_FIELDS + 4];
            let mut up = httparse::Request::new(&mut up_fields);
            assert_eq!(
                up.parse(&upstream).ok(),
                Some(httparse::Status::Complete(upstream.len())),
                "the head for the app does not parse whole: {upstream:?}"
            );
            assert!(!has_bare_lf(&upstream));
            assert_eq!(
                (up.method, up.path, up.version),
                (theirs.method, theirs.path, Some(1))
            );
            let router_fields = [
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
            ];
            let (own, added) = up.headers.split_at(up.headers.len() - router_fields.len());
            for (field, name) in added.iter().zip(router_fields) {
                assert_eq!(field.name, name);
            }
            assert_eq!(added[2].value, &data[request.host.clone()]);
            assert_eq!(added[3].value, request.id.as_bytes());
            let mut from_client = theirs.headers.iter();
            for field in own {
                let name = field.name;
                assert!(!is_hop_by_hop_name(name), "{name} forwarded");
                assert!(
                    !router_fields.iter().any(|r| name.eq_ignore_ascii_case(r)),
                    "{name} forwarded twice"
                );
                // What this path forwards, hyper's path would take too.
                assert!(
                    hyper::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                        && HeaderValue::from_bytes(field.value).is_ok(),
                    "a field hyper would refuse: {data:?}"
                );
                assert!(
                    from_client.any(|f| f.name == name && f.value == field.value),
                    "{name} not sent by the client, or not in its order: {data:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("127.0.0.1:5000".parse().unwrap())
    }

    fn parse(head: &str) -> (Parsed, String) {
        let mut up = Vec::new();
        let parsed = parse_request(head.as_bytes(), &client(), &mut up);
        (parsed, String::from_utf8(up).unwrap())
    }

    #[test]
    fn a_simple_get_is_forwarded_with_the_router_headers() {
        let head = "GET /a/b?x=1 HTTP/1.1\r\nHost: main.demo.localhost\r\nAccept: */*\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: spoofed\r\nX-Request-Id: abc-123\r\n\r\nGET /next";
        let (parsed, up) = parse(head);
        let Parsed::Simple(r) = parsed else {
            panic!("not simple")
        };
        assert_eq!(&head[r.host.clone()], "main.demo.localhost");
        assert_eq!(&head[r.path.clone()], "/a/b");
        assert_eq!(r.query.map(|q| &head[q]), Some("x=1"));
        assert_eq!(r.len, head.len() - "GET /next".len());
        assert_eq!(r.id, "abc-123");
        assert!(!r.close);
        assert_eq!(
            up,
            "GET /a/b?x=1 HTTP/1.1\r\nHost: main.demo.localhost\r\nAccept: */*\r\n\
             x-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: main.demo.localhost\r\nx-request-id: abc-123\r\n\r\n"
        );
    }

    #[test]
    fn a_request_over_tls_is_forwarded_as_https() {
        let mut tls = client();
        tls.tls = true;
        let mut up = Vec::new();
        let head = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\n\r\n";
        assert!(matches!(
            parse_request(head.as_bytes(), &tls, &mut up),
            Parsed::Simple(_)
        ));
        let up = String::from_utf8(up).unwrap();
        assert!(up.contains("\r\nx-forwarded-proto: https\r\n"), "{up}");
        assert_eq!(up.matches("x-forwarded-proto").count(), 1, "{up}");
    }

    #[test]
    fn a_new_request_id_and_close() {
        let (parsed, up) = parse(
            "HEAD / HTTP/1.1\r\nhost: h\r\nconnection: Close\r\nx-request-id: has space\r\n\r\n",
        );
        let Parsed::Simple(r) = parsed else {
            panic!("not simple")
        };
        assert!(r.close);
        assert_eq!(r.method, Method::HEAD);
        assert_eq!(r.id.len(), 32);
        assert!(
            up.starts_with("HEAD / HTTP/1.1\r\nhost: h\r\nx-forwarded-for: 127.0.0.1\r\n"),
            "{up}"
        );
    }

    #[test]
    fn everything_else_is_hypers() {
        for head in [
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue, x\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\nx",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\nx",
            "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x-secret\r\nX-Secret: 1\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\u{e9}\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(matches!(parse(head).0, Parsed::Other), "{head:?}");
        }
        let many: String = (0..MAX_FIELDS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert!(matches!(
            parse(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")).0,
            Parsed::Other
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: h\r\n").0,
            Parsed::Partial
        ));
    }

    #[test]
    fn a_length_or_another_method_is_parsed_here_but_served_here_only_for_a_script() {
        for (head, method, body) in [
            (
                "POST /f HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
                Method::POST,
                Some(11),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
                Method::GET,
                Some(0),
            ),
            (
                "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n",
                Method::DELETE,
                None,
            ),
            (
                "PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n",
                Method::from_bytes(b"PURGE").unwrap(),
                None,
            ),
        ] {
            let (parsed, up) = parse(head);
            let Parsed::Simple(r) = parsed else {
                panic!("not parsed here: {head:?}")
            };
            assert_eq!((&r.method, r.body), (&method, body), "{head:?}");
            assert!(r.only_script());
            // The length goes on to the app (PHP's CONTENT_LENGTH).
            assert_eq!(up.contains("Content-Length"), body.is_some(), "{up}");
            assert!(!head[..r.len].contains("hello"));
        }
        let (parsed, _) = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(parsed, Parsed::Simple(r) if !r.only_script()));
        // A chunked body, and `Expect: 100-continue` with a body: parsed here, neither
        // field passed on (the router decodes the body and answers the expectation).
        for (head, framing, expect) in [
            (
                "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked \r\n\r\n5\r\n",
                BodyFraming::Chunked,
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n",
                BodyFraming::Chunked,
                true,
            ),
            (
                "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n",
                BodyFraming::Length(7),
                true,
            ),
        ] {
            let (parsed, up) = parse(head);
            let Parsed::Simple(r) = parsed else {
                panic!("not parsed here: {head:?}")
            };
            assert_eq!(
                (r.framing(), r.expect_continue, r.only_script()),
                (Some(framing), expect, true),
                "{head:?}"
            );
            let up = up.to_ascii_lowercase();
            assert!(!up.contains("transfer-encoding") && !up.contains("expect"), "{up}");
        }
        // An expectation without a body is hyper's.
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").0,
            Parsed::Other
        ));
    }

    #[test]
    fn two_hosts_and_bare_line_feeds_are_refused_whatever_the_request() {
        for (head, why) in [
            ("GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", TWO_HOSTS),
            ("GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n", TWO_HOSTS),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nHOST: i\r\n\r\nx",
                TWO_HOSTS,
            ),
            ("GET / HTTP/1.1\nHost: h\r\n\r\n", BARE_LF),
            ("GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", BARE_LF),
            ("GET / HTTP/1.1\r\nHost: h\r\n\n", BARE_LF),
            ("POST / HTTP/1.1\nHost: h\nContent-Length: 1\n\nx", BARE_LF),
        ] {
            match parse(head).0 {
                Parsed::Refused(said) => assert_eq!(said, why, "{head:?}"),
                _ => panic!("not refused: {head:?}"),
            }
        }
        // A bare LF in a body is the body's business.
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n\n\n").0,
            Parsed::Simple(r) if r.body == Some(2)
        ));
        assert!(!has_bare_lf(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    }
}

#[cfg(test)]
mod hsts_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::{
        Certificates, EnvRoutes, LocalCa, RouteAction, RouteRule, RouteScheme, Router,
        RouterConfig, Upstream,
    };

    /// A stand-in app: kept-alive connections; `/own` answers with its own
    /// `Strict-Transport-Security`, anything else with a field of mixed case.
    fn app(listener: TcpListener) {
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            if conn.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                                return;
                            }
                            continue;
                        };
                        let own = buf.starts_with(b"GET /own ");
                        buf.drain(..end + 4);
                        let field = if own {
                            "Strict-Transport-Security: max-age=60"
                        } else {
                            "X-App-Case: 1"
                        };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\n{field}\r\nContent-Length: 2\r\n\r\nok");
                        if conn.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }

    fn rule(path: &str, hsts: Option<&str>) -> RouteRule {
        RouteRule {
            host: "hsts.test".into(),
            path: path.into(),
            action: RouteAction::Upstream("app".into()),
            scheme: RouteScheme::Any,
            hsts: hsts.map(Into::into),
        }
    }

    /// Send `requests` on `conn` (the last one closes) and read what comes until the end.
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        conn: &mut S,
        requests: &str,
    ) -> String {
        conn.write_all(requests.as_bytes()).await.expect("send");
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk));
            match read.await {
                Ok(Ok(n)) if n > 0 => all.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&all).to_string()
    }

    /// Over TLS, a route with HSTS is served by the router's own HTTP/1.1 path (the app's
    /// field names reach the client as the app wrote them, which only the own path does:
    /// hyper writes them in lowercase) with `Strict-Transport-Security` on its answers,
    /// the app's own field kept as the only one; a route without HSTS has none, and
    /// neither has any answer on plain HTTP.
    #[tokio::test]
    async fn a_route_with_hsts_stays_on_the_own_path_over_tls() {
        let dir = tempfile::tempdir().expect("temp dir");
        let app_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = app_listener.local_addr().expect("addr").port();
        app(app_listener);
        let router = Router::new(RouterConfig::default());
        let upstream = Upstream {
            release: "r1".into(),
            netns: None,
            port,
            socket: None,
        };
        let mut routes = EnvRoutes::single(vec!["hsts.test".into()], upstream);
        routes.rules = vec![
            rule("/", Some("max-age=31536000; includeSubDomains")),
            rule("/plain", None),
        ];
        router.switch("p/main", routes).expect("switch");
        let ca = LocalCa::open_or_create(&dir.path().join("ca")).expect("ca");
        let ca_cert = ca.cert_path().to_path_buf();
        let certificates = Certificates::new(dir.path().join("certs"), ca).expect("certs");
        let https = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let https_addr = https.local_addr().expect("addr");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = http.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let serving = {
            let (router, mut stopped_tls, mut stopped_plain) =
                (Arc::clone(&router), stopped.clone(), stopped);
            tokio::spawn(async move {
                let tls = router.serve_tls(https, Arc::new(certificates), async move {
                    let _ = stopped_tls.changed().await;
                });
                let plain = router.serve(http, async move {
                    let _ = stopped_plain.changed().await;
                });
                let (a, b) = tokio::join!(tls, plain);
                a.and(b)
            })
        };

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&ca_cert).expect("ca pem"))
            .expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(https_addr).await.expect("connect");
        let name = ServerName::try_from("hsts.test").expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let answers = exchange(
            &mut tls,
            "GET /a HTTP/1.1\r\nHost: hsts.test\r\n\r\n\
             GET /own HTTP/1.1\r\nHost: hsts.test\r\n\r\n\
             GET /plain HTTP/1.1\r\nHost: hsts.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        let answers: Vec<&str> = answers.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{answers:?}");
        let routed = answers[0];
        assert!(routed.starts_with("200 "), "{routed}");
        assert!(
            routed.contains("\r\nX-App-Case: 1\r\n"),
            "not the own path: {routed}"
        );
        assert!(
            routed
                .contains("\r\nstrict-transport-security: max-age=31536000; includeSubDomains\r\n"),
            "{routed}"
        );
        let own = answers[1].to_ascii_lowercase();
        assert!(
            own.contains("strict-transport-security: max-age=60\r\n")
                && own.matches("strict-transport-security").count() == 1,
            "{own}"
        );
        assert!(
            answers[2].starts_with("200 ") && !answers[2].to_ascii_lowercase().contains("strict"),
            "{}",
            answers[2]
        );

        // Plain HTTP: never.
        let mut plain = TcpStream::connect(http_addr).await.expect("connect");
        let answer = exchange(
            &mut plain,
            "GET /a HTTP/1.1\r\nHost: hsts.test\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains("X-App-Case: 1"), "{answer}");
        assert!(!answer.to_ascii_lowercase().contains("strict"), "{answer}");
        drop((tls, plain));
        let _ = stop.send(true);
        serving.await.expect("serve task").expect("serve");
    }
}
