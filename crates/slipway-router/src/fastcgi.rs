//! The router's FastCGI client: a request for a PHP script of an app served by PHP-FPM
//! ([`crate::site::Site::fastcgi`]) goes to the app as one FastCGI request (role
//! responder) on a connection of its own, with the CGI parameters nginx's
//! `fastcgi_params` gives. This module serves hyper's path (HTTP/2, and HTTP/1.1 on a
//! connection handed to hyper); the router's own HTTP/1.1 path is [`crate::fastcgi_h1`].
//! The request body is read whole first by the same rules and into the same spool as on
//! the own path ([`crate::request_body`]: the cap, the body timeout, memory then an
//! unlinked file), so PHP gets its `CONTENT_LENGTH` (it reads only that many bytes) and
//! PHP-FPM is not connected to while a client uploads; it is then sent as `FCGI_STDIN`
//! while the answer is read. The answer's CGI head (`Status:`, headers) becomes the HTTP
//! response head and its body is streamed to the client as it comes.
//!
//! The common short request costs no more than it must: a request without a body goes
//! to PHP-FPM in one write (no writer task), and an answer whose end came with its head
//! (PHP-FPM sends a short output and `FCGI_END_REQUEST` at once) goes to the client
//! whole, with its `Content-Length`, in one write (no reader task, no chunked framing).
//! (Each answer used to take two tasks and go out as a head, a chunk and a last chunk,
//! each a wake-up of the connection's task on the router's worker thread: see the PHP
//! section of `docs/BENCHMARKS.md`.)
//!
//! Connections are not pooled: PHP-FPM serves one request per connection unless asked to
//! keep it (`FCGI_KEEP_CONN`), and a kept connection holds one of its workers for as long
//! as it is open, idle or not, so a pool of idle connections would starve the workers
//! (`pm.max_children`); a loopback connect costs microseconds next to a PHP request.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::body::{full, BoxError, ProxyBody};
use crate::headers::X_REQUEST_ID;
use crate::release::InFlightGuard;
use crate::request_body::{refuse_incoming, spool_incoming, BodyLimits, Spool};
use crate::routes::Upstream;
use crate::upstream_stream::UpstreamStream;

/// FastCGI record types used here.
const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const GET_VALUES: u8 = 9;
/// The answer to `FCGI_GET_VALUES`.
pub(crate) const GET_VALUES_RESULT: u8 = 10;
/// The one request id used per connection.
const REQUEST_ID: u16 = 1;
/// Largest content of one record.
const MAX_CONTENT: usize = 65535;
/// Largest CGI head (status and headers) accepted from the app.
const MAX_HEAD: usize = 64 * 1024;
/// A request body up to this long goes to PHP-FPM in one write with the request's head.
const ONE_WRITE: u64 = 64 * 1024;
/// How long connecting to PHP-FPM may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which script of the app a request runs, and the CGI path variables of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptCall {
    /// `SCRIPT_NAME`: the script's URL path (e.g. `/index.php`).
    pub(crate) script_name: String,
    /// `PATH_INFO`: what follows the script in the URL path (`/a/b` of `/index.php/a/b`).
    pub(crate) path_info: String,
    /// `DOCUMENT_ROOT`: the location's root inside the container (e.g. `/app/web`).
    pub(crate) document_root: String,
    /// `SCRIPT_FILENAME`: the script inside the container (e.g. `/app/web/index.php`).
    pub(crate) script_filename: String,
}

/// One record: its type and content.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The record type (`FCGI_STDOUT`, ...).
    pub(crate) kind: u8,
    /// The request id it belongs to.
    pub(crate) id: u16,
    /// Its content, padding removed.
    pub(crate) content: Bytes,
}

/// Take one complete record off the front of `buf`, if it holds one.
pub(crate) fn parse_record(buf: &mut BytesMut) -> Option<Record> {
    if buf.len() < 8 {
        return None;
    }
    let len = u16::from_be_bytes([buf[4], buf[5]]) as usize;
    let padding = buf[6] as usize;
    if buf.len() < 8 + len + padding {
        return None;
    }
    let kind = buf[1];
    let id = u16::from_be_bytes([buf[2], buf[3]]);
    buf.advance(8);
    let content = buf.split_to(len).freeze();
    buf.advance(padding);
    Some(Record { kind, id, content })
}

/// Append records of `kind` holding `content` (split at the largest record size; an
/// empty `content` writes one empty record, the end of a stream).
pub(crate) fn put_records(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    let mut chunks = content.chunks(MAX_CONTENT).peekable();
    if chunks.peek().is_none() {
        put_record(out, kind, &[]);
    }
    for chunk in chunks {
        put_record(out, kind, chunk);
    }
}

fn put_record(out: &mut Vec<u8>, kind: u8, chunk: &[u8]) {
    let padding = (8 - chunk.len() % 8) % 8;
    out.extend_from_slice(&[1, kind]);
    out.extend_from_slice(&REQUEST_ID.to_be_bytes());
    out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
    out.extend_from_slice(&[padding as u8, 0]);
    out.extend_from_slice(chunk);
    out.extend_from_slice(&[0; 8][..padding]);
}

/// An `FCGI_GET_VALUES` record asking for `FCGI_MPXS_CONNS` (a management record:
/// request id 0).
pub(crate) fn get_values_request() -> Vec<u8> {
    let mut content = Vec::new();
    put_param(&mut content, b"FCGI_MPXS_CONNS", b"");
    let mut out = Vec::new();
    put_records(&mut out, GET_VALUES, &content);
    // Management records have request id 0.
    out[2] = 0;
    out[3] = 0;
    out
}

/// Encode one name-value pair of `FCGI_PARAMS`.
pub(crate) fn put_param(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// The request line of a request for a script, as the CGI parameters give it.
pub(crate) struct CgiRequest<'a> {
    /// `REQUEST_METHOD`.
    pub(crate) method: &'a str,
    /// `REQUEST_URI`: the path and query as the client sent them.
    pub(crate) request_uri: &'a str,
    /// `QUERY_STRING` (empty without a query).
    pub(crate) query: &'a str,
    /// `SERVER_PROTOCOL` (`HTTP/1.1`).
    pub(crate) protocol: &'a str,
}

/// The CGI parameters of `req` running `call`. `fields`: the request fields the app gets
/// (hop-by-hop ones removed, the router's `X-Forwarded-*` and `X-Request-Id` in), as
/// (name, value); both of the router's HTTP/1.1 paths give the same ones.
fn params<'f, F>(
    req: &CgiRequest<'_>,
    fields: F,
    call: &ScriptCall,
    remote_addr: &str,
    host: &str,
    server_port: u16,
) -> Vec<u8>
where
    F: Iterator<Item = (&'f [u8], &'f [u8])> + Clone,
{
    let mut p = Vec::with_capacity(2048);
    let mut put = |n: &str, v: &[u8]| put_param(&mut p, n.as_bytes(), v);
    let field = |name: &str| {
        fields
            .clone()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    };
    put("GATEWAY_INTERFACE", b"CGI/1.1");
    put("SERVER_SOFTWARE", b"slipway");
    put("SERVER_PROTOCOL", req.protocol.as_bytes());
    put("REQUEST_METHOD", req.method.as_bytes());
    put("REQUEST_URI", req.request_uri.as_bytes());
    put("QUERY_STRING", req.query.as_bytes());
    put("SCRIPT_NAME", call.script_name.as_bytes());
    put(
        "PHP_SELF",
        format!("{}{}", call.script_name, call.path_info).as_bytes(),
    );
    put("PATH_INFO", call.path_info.as_bytes());
    put("SCRIPT_FILENAME", call.script_filename.as_bytes());
    put("DOCUMENT_ROOT", call.document_root.as_bytes());
    put("DOCUMENT_URI", call.script_name.as_bytes());
    put("REMOTE_ADDR", remote_addr.as_bytes());
    put("REMOTE_PORT", b"0");
    put("SERVER_ADDR", b"127.0.0.1");
    put("SERVER_NAME", host.as_bytes());
    put("SERVER_PORT", server_port.to_string().as_bytes());
    // `X-Forwarded-Proto` was set by the router from the client's connection (a client's
    // own value never reaches the app).
    let https = field("x-forwarded-proto").is_some_and(|v| v == b"https");
    put("REQUEST_SCHEME", if https { b"https" } else { b"http" });
    if https {
        put("HTTPS", b"on");
    }
    put("REDIRECT_STATUS", b"200");
    if let Some(v) = field("content-type") {
        put("CONTENT_TYPE", v);
    }
    if let Some(v) = field("content-length") {
        put("CONTENT_LENGTH", v);
    }
    let mut var = String::with_capacity(64);
    for (name, value) in fields {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        // `Proxy` would become HTTP_PROXY (httpoxy): never passed on.
        if is("content-type") || is("content-length") || is("proxy") {
            continue;
        }
        var.clear();
        var.push_str("HTTP_");
        var.extend(name.iter().map(|&c| match c {
            b'-' => '_',
            c => c.to_ascii_uppercase() as char,
        }));
        put(&var, value);
    }
    p
}

/// The parameters of a request's FastCGI head, in records: `FCGI_BEGIN_REQUEST` (role
/// responder, flags 0: PHP-FPM closes the connection after the answer), `FCGI_PARAMS`
/// with `params` and the end of the params.
pub(crate) fn request_head(params: &[u8]) -> Vec<u8> {
    let mut head = Vec::with_capacity(params.len() + 64);
    put_records(&mut head, BEGIN_REQUEST, &[0, 1, 0, 0, 0, 0, 0, 0]);
    if !params.is_empty() {
        put_records(&mut head, PARAMS, params);
    }
    put_records(&mut head, PARAMS, &[]);
    head
}

/// A piece of a request's body (`FCGI_STDIN`; nothing for no data), appended to `out`.
pub(crate) fn put_stdin(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        put_records(out, STDIN, data);
    }
}

/// The end of a request's body (an empty `FCGI_STDIN`), appended to `out`.
pub(crate) fn put_body_end(out: &mut Vec<u8>) {
    put_records(out, STDIN, &[]);
}

/// `SERVER_NAME` and `SERVER_PORT` of a request for `host` (its `Host` value) on a
/// connection that is TLS or not (the port the scheme implies when the host names none).
pub(crate) fn server_name_port(host: &str, tls: bool) -> (&str, u16) {
    let default_port = if tls { 443 } else { 80 };
    match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || p.parse::<u16>().is_ok() => {
            (n, p.parse().unwrap_or(default_port))
        }
        _ => (host, default_port),
    }
}

/// The CGI parameters of a request for `call` whose head for the app (the request line
/// and the fields the app gets) is `head`: on the router's own path. `None` if `head`
/// does not parse whole (it was written by the router from a parsed request).
pub(crate) fn params_of_head(
    head: &[u8],
    call: &ScriptCall,
    remote_addr: &str,
    host: &str,
    server_port: u16,
) -> Option<Vec<u8>> {
    let mut fields = [httparse::EMPTY_HEADER; 96];
    let mut req = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = req.parse(head) else {
        return None;
    };
    let target = req.path?;
    let cgi = CgiRequest {
        method: req.method?,
        request_uri: target,
        query: target.split_once('?').map_or("", |(_, q)| q),
        protocol: "HTTP/1.1",
    };
    let fields = req.headers.iter().map(|f| (f.name.as_bytes(), f.value));
    Some(params(&cgi, fields, call, remote_addr, host, server_port))
}

/// The router's answer when PHP-FPM could not be reached or gave no valid head.
pub(crate) fn bad_gateway(request_id: &HeaderValue) -> Response<ProxyBody> {
    let mut resp = Response::new(full("502 Bad Gateway: the app (PHP-FPM) did not answer.\n"));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(&X_REQUEST_ID, request_id.clone());
    resp
}

/// Why a FastCGI exchange failed before any response head was sent (a 502).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FastCgiError {
    /// No connection to PHP-FPM.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Connecting took longer than [`CONNECT_TIMEOUT`].
    #[error("connect timed out")]
    ConnectTimeout,
    /// Reading the answer failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The request ended before a complete CGI head.
    #[error("the app's answer ended before its head")]
    NoHead,
    /// The CGI head does not parse, or is too long.
    #[error("the app's CGI head is not valid: {0}")]
    BadHead(String),
}

/// The CGI head of an answer: status and headers.
pub(crate) fn parse_head(
    head: &[u8],
) -> Result<(StatusCode, Vec<(HeaderName, HeaderValue)>), String> {
    let mut raw = [httparse::EMPTY_HEADER; 128];
    let parsed = match httparse::parse_headers(head, &mut raw) {
        Ok(httparse::Status::Complete((_, headers))) => headers,
        Ok(httparse::Status::Partial) => return Err("incomplete head".into()),
        Err(e) => return Err(e.to_string()),
    };
    let mut status = None;
    let mut headers = Vec::with_capacity(parsed.len());
    for h in parsed.iter() {
        if h.name.eq_ignore_ascii_case("status") {
            let code = h.value.get(..3).ok_or("a short Status")?;
            status =
                Some(StatusCode::from_bytes(code).map_err(|_| "a Status that is no HTTP status")?);
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_bytes(h.value).map_err(|e| e.to_string())?;
        headers.push((name, value));
    }
    let status = match status {
        Some(s) => s,
        // CGI: a `Location` without a `Status` is a redirect.
        None if headers.iter().any(|(n, _)| n == header::LOCATION) => StatusCode::FOUND,
        None => StatusCode::OK,
    };
    Ok((status, headers))
}

/// Where the CGI head ends in `buf` (the index after the blank line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    for i in 0..buf.len() {
        if buf[i..].starts_with(b"\r\n\r\n") {
            return Some(i + 4);
        }
        if buf[i..].starts_with(b"\n\n") {
            return Some(i + 2);
        }
    }
    None
}

/// Connect to the app's PHP-FPM: its unix socket or `127.0.0.1:PORT` in its network
/// namespace (as any upstream, [`crate::upstream_stream::dial`]).
pub(crate) async fn connect(upstream: &Upstream) -> Result<UpstreamStream, FastCgiError> {
    tokio::time::timeout(CONNECT_TIMEOUT, crate::upstream_stream::dial(upstream))
        .await
        .map_err(|_| FastCgiError::ConnectTimeout)?
        .map_err(FastCgiError::Connect)
}

/// Run `call` for `req` on the app `upstream` and answer with what it prints. The
/// request body is read whole first by `limits` ([`crate::request_body`]: 413, 408 and
/// 400 as on the router's own path), so PHP gets its `CONTENT_LENGTH` and a slow client
/// holds no PHP-FPM worker while it uploads.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn respond(
    upstream: &Upstream,
    req: Request<Incoming>,
    call: ScriptCall,
    remote_addr: &str,
    host: &str,
    server_port: u16,
    request_id: &HeaderValue,
    guard: InFlightGuard,
    limits: BodyLimits,
) -> Response<ProxyBody> {
    let (mut parts, mut body) = req.into_parts();
    let spool = match spool_incoming(&mut body, limits).await {
        Ok(spool) => spool,
        Err(failure) => {
            failure.log(&call.script_filename);
            drop(guard);
            return refuse_incoming(&failure, body, parts.version, limits, request_id)
                .unwrap_or_else(|| bad_request_body(request_id));
        }
    };
    drop(body);
    if spool.len() > 0 || parts.headers.contains_key(header::CONTENT_LENGTH) {
        // The length PHP reads the body by (a chunked or h2 body has none of its own).
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(spool.len()));
    }
    let cgi = (upstream, &call, remote_addr, host, server_port);
    match exchange(cgi, &parts, spool, guard).await {
        Ok(mut resp) => {
            resp.headers_mut().insert(&X_REQUEST_ID, request_id.clone());
            resp
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.release, script = %call.script_filename, "FastCGI request failed: {e}");
            bad_gateway(request_id)
        }
    }
}

/// The answer to a request whose body broke off (no one is likely to read it).
fn bad_request_body(request_id: &HeaderValue) -> Response<ProxyBody> {
    crate::proxy::page(
        StatusCode::BAD_REQUEST,
        "400 Bad Request: the request body was not sent whole.\n",
        Some(request_id),
    )
}

/// Where a script request goes and its CGI server variables: the app, the script, the
/// client's address, the server name and port.
type CgiTarget<'a> = (&'a Upstream, &'a ScriptCall, &'a str, &'a str, u16);

async fn exchange(
    (upstream, call, remote_addr, host, server_port): CgiTarget<'_>,
    parts: &hyper::http::request::Parts,
    spool: Spool,
    guard: InFlightGuard,
) -> Result<Response<ProxyBody>, FastCgiError> {
    let stream = connect(upstream).await?;
    let uri = &parts.uri;
    let cgi = CgiRequest {
        method: parts.method.as_str(),
        request_uri: uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or_else(|| uri.path()),
        query: uri.query().unwrap_or(""),
        protocol: &format!("{:?}", parts.version),
    };
    let fields: Vec<(&[u8], &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
        .collect();
    let p = params(
        &cgi,
        fields.iter().copied(),
        call,
        remote_addr,
        host,
        server_port,
    );
    let mut head = request_head(&p);
    let (mut rd, writer): (Box<dyn AsyncRead + Send + Unpin>, Option<JoinHandle<_>>) =
        if spool.len() <= ONE_WRITE {
            // No body (a GET) or a short one: the whole request in one write, as nginx
            // sends it, and no task to write it.
            let mut stream = stream;
            spool.send(&mut head).await?;
            stream.write_all(&head).await?;
            (Box::new(stream), None)
        } else {
            let (rd, mut wr) = tokio::io::split(stream);
            // The body is written while the answer is read: a script may answer before
            // it has read everything.
            let writer = tokio::spawn(async move {
                wr.write_all(&head).await?;
                spool.send(&mut wr).await?;
                Ok::<_, std::io::Error>(wr)
            });
            (Box::new(rd), Some(writer))
        };
    let abort = |writer: &Option<JoinHandle<_>>| {
        if let Some(w) = writer {
            w.abort();
        }
    };

    let mut buf = BytesMut::with_capacity(16 * 1024);
    let AnswerHead {
        status,
        headers,
        body_start,
        ended,
    } = match read_answer_head(&mut rd, &mut buf).await {
        Ok(head) => head,
        Err(e) => {
            abort(&writer);
            return Err(e);
        }
    };
    if ended {
        // Answered whole, with its length and in one write, without a task to read on.
        // The app's part is done: the request is no longer in flight on its release.
        abort(&writer);
        drop(guard);
        let mut resp = Response::new(full(body_start.freeze()));
        *resp.status_mut() = status;
        for (name, value) in headers {
            resp.headers_mut().append(name, value);
        }
        return Ok(resp);
    }

    let (tx, rx) = mpsc::channel::<Result<Bytes, BoxError>>(8);
    tokio::spawn(async move {
        let _guard = guard;
        if !body_start.is_empty() && tx.send(Ok(body_start.freeze())).await.is_err() {
            abort(&writer);
            return;
        }
        if !ended {
            loop {
                match next_output(&mut rd, &mut buf).await {
                    Ok(Output::Stdout(data)) => {
                        if tx.send(Ok(data)).await.is_err() {
                            break;
                        }
                    }
                    Ok(Output::End) => break,
                    Err(e) => {
                        let _ = tx.send(Err(Box::new(e))).await;
                        break;
                    }
                }
            }
        }
        abort(&writer);
    });
    let mut resp = Response::new(ProxyBody::Channel(rx));
    *resp.status_mut() = status;
    for (name, value) in headers {
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

/// The CGI head of an answer and what came with it.
pub(crate) struct AnswerHead {
    /// The status (`Status:`, else 302 with a `Location`, else 200).
    pub(crate) status: StatusCode,
    /// The app's header fields, in order.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body bytes read with the head.
    pub(crate) body_start: BytesMut,
    /// Whether the answer ended with them (`FCGI_END_REQUEST` came already): a short
    /// answer, PHP-FPM writes its output and the end of the request at once.
    pub(crate) ended: bool,
}

/// Read the answer from PHP-FPM on `rd` until its CGI head is complete, and take what
/// came with it; `buf` keeps the records read beyond.
pub(crate) async fn read_answer_head<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<AnswerHead, FastCgiError> {
    let mut stdout = BytesMut::new();
    let mut ended = false;
    let split = loop {
        if let Some(end) = head_end(&stdout) {
            break end;
        }
        if ended {
            return Err(FastCgiError::NoHead);
        }
        if stdout.len() > MAX_HEAD {
            return Err(FastCgiError::BadHead("longer than 64 KiB".into()));
        }
        match next_output(rd, buf).await? {
            Output::Stdout(data) => stdout.extend_from_slice(&data),
            Output::End => ended = true,
        }
    };
    let mut body_start = stdout.split_off(split);
    let (status, headers) = parse_head(&stdout).map_err(FastCgiError::BadHead)?;
    while !ended {
        match buffered_output(buf) {
            Some(Output::Stdout(data)) => body_start.extend_from_slice(&data),
            Some(Output::End) => ended = true,
            None => break,
        }
    }
    Ok(AnswerHead {
        status,
        headers,
        body_start,
        ended,
    })
}

/// What the app sent next.
pub(crate) enum Output {
    /// A piece of the answer's body.
    Stdout(Bytes),
    /// The end of the request (`FCGI_END_REQUEST`, or the connection closed).
    End,
}

/// The next `FCGI_STDOUT` data (or the end of the request); `FCGI_STDERR` is logged.
pub(crate) async fn next_output<R: AsyncRead + Unpin + ?Sized>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Output, FastCgiError> {
    loop {
        if let Some(output) = buffered_output(buf) {
            return Ok(output);
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(Output::End);
        }
    }
}

/// The next `FCGI_STDOUT` data or end of the request among the records already read into
/// `buf`, if there is one; `FCGI_STDERR` is logged.
pub(crate) fn buffered_output(buf: &mut BytesMut) -> Option<Output> {
    while let Some(rec) = parse_record(buf) {
        match rec.kind {
            STDOUT if !rec.content.is_empty() => return Some(Output::Stdout(rec.content)),
            STDERR if !rec.content.is_empty() => {
                let text = String::from_utf8_lossy(&rec.content[..rec.content.len().min(2048)]);
                tracing::info!(target: "slipway_router::php", "{}", text.trim_end());
            }
            END_REQUEST => return Some(Output::End),
            _ => {}
        }
    }
    None
}

/// Read `data` as what PHP-FPM sends back: records taken off one at a time (none may
/// claim more bytes than there are, each consumes exactly its header, content and
/// padding), then the CGI head of the joined `FCGI_STDOUT`, if it has one (a parsed
/// status is a valid HTTP status). Panics on any disagreement. For the fuzz target.
pub(crate) fn check_answer(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut stdout = Vec::new();
    loop {
        let before = buf.len();
        let Some(rec) = parse_record(&mut buf) else {
            break;
        };
        let padding = data[data.len() - before + 6] as usize;
        assert_eq!(before - buf.len(), 8 + rec.content.len() + padding);
        if rec.kind == STDOUT {
            stdout.extend_from_slice(&rec.content);
        }
        // What we write, we read back the same.
        let mut out = Vec::new();
        put_record(&mut out, rec.kind, &rec.content);
        let mut again = BytesMut::from(&out[..]);
        let back = parse_record(&mut again).expect("a written record parses");
        assert_eq!((back.kind, &back.content[..]), (rec.kind, &rec.content[..]));
        assert!(again.is_empty());
    }
    if let Some(end) = head_end(&stdout) {
        if let Ok((status, headers)) = parse_head(&stdout[..end]) {
            assert!((100..1000).contains(&status.as_u16()));
            assert!(headers.len() <= 128);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_padding_and_splits() {
        let content = vec![7u8; MAX_CONTENT + 10];
        let mut out = Vec::new();
        put_records(&mut out, STDOUT, &content);
        put_records(&mut out, STDOUT, &[]);
        let mut buf = BytesMut::from(&out[..]);
        let a = parse_record(&mut buf).unwrap();
        let b = parse_record(&mut buf).unwrap();
        let c = parse_record(&mut buf).unwrap();
        assert_eq!(a.content.len(), MAX_CONTENT);
        assert_eq!(b.content.len(), 10);
        assert!(c.content.is_empty());
        assert_eq!((a.kind, a.id), (STDOUT, REQUEST_ID));
        assert!(buf.is_empty());
        assert!(parse_record(&mut BytesMut::from(&out[..12])).is_none());
    }

    #[test]
    fn get_values_is_a_management_record() {
        let mut buf = BytesMut::from(&get_values_request()[..]);
        let rec = parse_record(&mut buf).unwrap();
        assert_eq!((rec.kind, rec.id), (GET_VALUES, 0));
        assert_eq!(&rec.content[..], b"\x0f\x00FCGI_MPXS_CONNS");
        assert!(buf.is_empty());
    }

    #[test]
    fn long_params_use_four_byte_lengths() {
        let mut out = Vec::new();
        put_param(&mut out, b"A", &[b'x'; 200]);
        assert_eq!(&out[..5], &[1, 0x80, 0, 0, 200]);
        assert_eq!(out.len(), 5 + 1 + 200);
    }

    #[test]
    fn cgi_head_gives_status_and_headers() {
        let (s, h) = parse_head(b"Status: 404 Not Found\r\nX-A: b\r\n\r\n").unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(h.len(), 1);
        let (s, _) = parse_head(b"Location: /x\r\n\r\n").unwrap();
        assert_eq!(s, StatusCode::FOUND);
        assert!(parse_head(b"Status: abc\r\n\r\n").is_err());
        assert_eq!(head_end(b"A: b\n\nbody"), Some(6));
    }

    /// A stand-in for PHP-FPM: per connection, reads one request (its params and
    /// stdin), then answers by `REQUEST_URI`: `/hello` short and whole in one write,
    /// `/stream` a head and a first line, then (once `go` is notified) a second line,
    /// `/echo` the request body. Closes the connection after each answer, as PHP-FPM
    /// without `FCGI_KEEP_CONN`.
    async fn fake_fpm(go: std::sync::Arc<tokio::sync::Notify>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let go = go.clone();
                tokio::spawn(async move {
                    let mut buf = BytesMut::new();
                    let (mut params, mut stdin) = (Vec::new(), Vec::new());
                    'read: loop {
                        while let Some(rec) = parse_record(&mut buf) {
                            match rec.kind {
                                PARAMS => params.extend_from_slice(&rec.content),
                                STDIN if rec.content.is_empty() => break 'read,
                                STDIN => stdin.extend_from_slice(&rec.content),
                                _ => {}
                            }
                        }
                        if conn.read_buf(&mut buf).await.expect("read") == 0 {
                            return;
                        }
                    }
                    let params = String::from_utf8_lossy(&params).to_string();
                    let mut out = Vec::new();
                    let end = [0u8; 8];
                    if params.contains("/stream") {
                        put_records(&mut out, STDOUT, b"Content-Type: text/plain\r\n\r\nfirst\n");
                        conn.write_all(&out).await.expect("write");
                        go.notified().await;
                        out.clear();
                        put_records(&mut out, STDOUT, b"second\n");
                    } else if params.contains("/echo") {
                        let mut answer = b"Status: 201 Created\r\n\r\n".to_vec();
                        answer.extend_from_slice(&stdin);
                        put_records(&mut out, STDOUT, &answer);
                    } else {
                        put_records(&mut out, STDOUT, b"X-Php: yes\r\n\r\nHello, world!\n");
                    }
                    put_records(&mut out, STDOUT, &[]);
                    put_records(&mut out, END_REQUEST, &end);
                    conn.write_all(&out).await.expect("write");
                });
            }
        });
        port
    }

    /// A short answer goes out whole with its length; a long-running one is still
    /// streamed as it comes (chunked); a request body still reaches the script.
    #[tokio::test]
    async fn short_answers_go_whole_and_long_ones_are_streamed() {
        use crate::test_client::{ask, serve_site};
        use crate::{Location, Passthru, Site};
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("index.php"), "<?php\n").expect("write");
        let go = std::sync::Arc::new(tokio::sync::Notify::new());
        let fpm = fake_fpm(go.clone()).await;
        let mut root = Location::new("/");
        root.root = Some(String::new());
        root.scripts = true;
        root.passthru = Passthru::Script("/index.php".into());
        let (addr, stop, serving) = serve_site(
            "php.test",
            fpm,
            Site {
                app_dir: dir.path().into(),
                tag: "t1".into(),
                locations: vec![root],
                fastcgi: true,
                no_web_process: false,
                mounts: Vec::new(),
            },
        )
        .await;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        for _ in 0..3 {
            let hello = ask(
                &mut conn,
                &mut buf,
                "GET /hello HTTP/1.1\r\nHost: php.test\r\n\r\n",
                false,
            )
            .await;
            assert_eq!(hello.status, 200);
            assert_eq!(hello.body, b"Hello, world!\n");
            assert_eq!(hello.field("content-length"), Some("14"));
            assert_eq!(hello.field("transfer-encoding"), None);
            assert_eq!(hello.field("x-php"), Some("yes"));
        }

        let echo = ask(
            &mut conn,
            &mut buf,
            "POST /echo HTTP/1.1\r\nHost: php.test\r\nContent-Length: 10\r\n\r\nname=value",
            false,
        )
        .await;
        assert_eq!(echo.status, 201);
        assert_eq!(echo.body, b"name=value");
        drop(conn);

        // The first line arrives while the script still runs: it was not held back.
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /stream HTTP/1.1\r\nHost: php.test\r\n\r\n")
            .await
            .expect("send");
        let mut seen = Vec::new();
        while !seen.windows(6).any(|w| w == b"first\n") {
            let n = conn.read_buf(&mut seen).await.expect("read");
            assert!(n > 0, "closed before the first line");
        }
        let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
        assert!(text.contains("transfer-encoding: chunked"), "{text}");
        assert!(!text.contains("second"));
        go.notify_one();
        while !seen.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = conn.read_buf(&mut seen).await.expect("read");
            assert!(n > 0, "closed before the end");
        }
        assert!(String::from_utf8_lossy(&seen).contains("second\n"));
        drop(conn);
        let _ = stop.send(());
        serving.await.expect("serve task").expect("serve");
    }
}
