//! PHP on the router's own HTTP/1.1 path ([`crate::h1`]): a request for a script of an
//! app served by PHP-FPM goes to it as one FastCGI request, and the answer is written to
//! the client as bytes, on the same kept-alive connection as the requests before and
//! after it (the connection is no longer handed over to hyper at its first PHP request).
//!
//! A request body (`Content-Length` or chunked) is read whole before PHP-FPM is
//! connected to, as nginx does by default (`fastcgi_request_buffering on`): into memory up
//! to [`crate::request_body::SPOOL_IN_MEMORY`] bytes, beyond that into an unlinked temporary file
//! (`tempfile::tempfile`, in `TMPDIR`), never whole in memory. So PHP gets the
//! `CONTENT_LENGTH` it reads `php://input` by (PHP-FPM reads no more of `FCGI_STDIN`
//! than `CONTENT_LENGTH` says: without it a chunked body reaches the script empty), and a
//! slow or stalled client holds no PHP-FPM worker while it uploads. The body is then sent
//! as `FCGI_STDIN` records while the answer is read. A chunked body is decoded as it
//! comes ([`crate::chunked`]); nothing after the body's end is read as part of it (a
//! pipelined request stays for the next round). `Expect: 100-continue` is answered
//! `100 Continue` once, when the router starts reading the body from the client (not
//! when all of it came with the head); a body over the router's cap
//! ([`crate::RouterConfig::max_request_body`]) is answered 413 (at once, without a
//! `100`, for a `Content-Length` over it), malformed chunking 400, a client that sends
//! nothing for [`crate::RouterConfig::request_body_timeout`] mid-body 408: each closes
//! the connection after a short linger (reading and dropping what the client still
//! sends, so it sees the answer rather than a reset). Over TLS the body is read through
//! the connection's rustls state ([`crate::client_stream::BodyRead`]).
//!
//! The CGI parameters are those of the hyper path ([`crate::fastcgi`]): they are made
//! from the head the router writes for an app (hop-by-hop fields out, the router's
//! `X-Forwarded-*` and `X-Request-Id` in), so `REMOTE_ADDR`, `HTTPS`, `PATH_INFO` and
//! the `HTTP_*` fields are the same on both paths. An answer whose end came with its head
//! goes out whole with its `Content-Length` in one write; a longer one is streamed
//! chunked as PHP-FPM sends it. PHP-FPM not answering (no connection, no valid head) is
//! a 502 page; an answer that breaks off after its head closes the client connection.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;

use crate::chunked::{ChunkedDecoder, Leniency};
use crate::client_stream::BodyRead;
use crate::fastcgi::{
    bad_gateway, buffered_output, connect, params_of_head, put_param, read_answer_head,
    request_head, server_name_port, AnswerHead, FastCgiError, Output, ScriptCall,
};
use crate::h1::{put_date, write_page, WRITE_BATCH};
use crate::headers::{
    add_hsts, is_hop_by_hop_name, put_field, put_hsts, put_status_line, X_REQUEST_ID,
};
use crate::proxy::{page, Client};
use crate::release::InFlightGuard;
use crate::request_body::{BodyFailure, Spool, BODY_CHUNK, LINGER, LINGER_MAX};
use crate::routes::Upstream;

/// A request for a script, on its way to PHP-FPM.
pub(crate) struct ScriptRequest<'a, 'r> {
    /// Where the app's PHP-FPM listens.
    pub(crate) upstream: &'a Upstream,
    /// The head the router writes for the app (request line and fields).
    pub(crate) head: &'a [u8],
    /// The script and its CGI path variables.
    pub(crate) call: ScriptCall,
    /// The client connection.
    pub(crate) client: &'a Client,
    /// The request's `Host` value.
    pub(crate) host: &'a str,
    /// The request's id (`X-Request-Id` of the answer).
    pub(crate) request_id: &'a HeaderValue,
    /// A `HEAD` request: the answer's head only.
    pub(crate) head_only: bool,
    /// The connection closes after this answer.
    pub(crate) close: bool,
    /// The request counted in flight on its release, until its answer is read.
    pub(crate) guard: InFlightGuard,
    /// When the request's head was read (for the latency metric).
    pub(crate) started: Instant,
    /// The request's body, if it has one.
    pub(crate) body: Option<RequestBody<'a, 'r>>,
    /// The route's HSTS value, over TLS (added to the answer unless the app sent one).
    pub(crate) hsts: Option<&'a HeaderValue>,
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request body, read whole ([`Spool`]) before PHP-FPM is connected to.
pub(crate) struct RequestBody<'a, 'r> {
    /// How it is framed.
    pub(crate) framing: BodyFraming,
    /// The bytes read after the head (what of the body came with it, maybe more).
    pub(crate) buffered: &'a [u8],
    /// The client sent `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
    /// The client connection's read half, to read the rest from.
    pub(crate) reader: &'a mut ReadHalf<'r>,
    /// The body cap (bytes) and how long to wait for its next bytes.
    pub(crate) max: u64,
    pub(crate) timeout: Duration,
    /// Set to where the body ended.
    pub(crate) end: &'a mut BodyEnd,
}

/// Where a request body ended: what of the bytes read with the head it took, and what
/// was read from the client beyond it (the start of the next request).
#[derive(Debug, Default)]
pub(crate) struct BodyEnd {
    /// Bytes of [`RequestBody::buffered`] that were the body's.
    pub(crate) from_buffer: usize,
    /// Bytes read after the body's end.
    pub(crate) read_ahead: Vec<u8>,
}

/// Decode `input` into `spool` until it is all taken or the body ends: how many bytes
/// of it the body took.
fn feed(
    decoder: &mut ChunkedDecoder,
    spool: &mut Spool,
    mut input: &[u8],
    max: u64,
) -> Result<usize, BodyFailure> {
    let mut used = 0;
    while !input.is_empty() && !decoder.is_done() {
        let (n, data) = decoder.next(input).map_err(BodyFailure::Malformed)?;
        if decoder.decoded() > max {
            return Err(BodyFailure::TooLarge);
        }
        spool.push(data).map_err(BodyFailure::Store)?;
        input = &input[n..];
        used += n;
    }
    Ok(used)
}

impl RequestBody<'_, '_> {
    /// Read the body whole into a [`Spool`], sending `100 Continue` on `stream` first if
    /// the client asked for it and the body is still to be read from the client.
    async fn read<W: AsyncWrite + BodyRead + Unpin>(
        &mut self,
        stream: &mut W,
    ) -> Result<Spool, BodyFailure> {
        let RequestBody {
            framing,
            buffered,
            expect_continue,
            ref mut reader,
            max,
            timeout,
            ref mut end,
        } = *self;
        let mut spool = Spool::default();
        let store = |spool: &mut Spool, data: &[u8]| spool.push(data).map_err(BodyFailure::Store);
        let mut chunk = Vec::new();
        let mut continued = !expect_continue;
        // The next bytes from the client: after `100 Continue`, if it waits for one.
        let mut next = async |chunk: &mut Vec<u8>, want: usize| -> Result<usize, BodyFailure> {
            if !continued {
                continued = true;
                stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .map_err(BodyFailure::Client)?;
            }
            chunk.resize(want, 0);
            let read = tokio::time::timeout(timeout, stream.read_body(reader, chunk));
            match read.await {
                Err(_) => Err(BodyFailure::TimedOut),
                Ok(Err(e)) => Err(BodyFailure::Client(e)),
                Ok(Ok(0)) => Err(BodyFailure::Client(io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => Ok(n),
            }
        };
        match framing {
            BodyFraming::Length(len) => {
                if len > max {
                    return Err(BodyFailure::TooLarge);
                }
                let take = len.min(buffered.len() as u64) as usize;
                store(&mut spool, &buffered[..take])?;
                end.from_buffer = take;
                let mut rest = len - take as u64;
                while rest > 0 {
                    let want = rest.min(BODY_CHUNK as u64) as usize;
                    let n = next(&mut chunk, want).await?;
                    store(&mut spool, &chunk[..n])?;
                    rest -= n as u64;
                }
            }
            BodyFraming::Chunked => {
                let mut decoder = ChunkedDecoder::new(Leniency::Strict);
                end.from_buffer = feed(&mut decoder, &mut spool, buffered, max)?;
                while !decoder.is_done() {
                    let n = next(&mut chunk, BODY_CHUNK).await?;
                    let used = feed(&mut decoder, &mut spool, &chunk[..n], max)?;
                    if used < n {
                        end.read_ahead.extend_from_slice(&chunk[used..n]);
                    }
                }
            }
        }
        Ok(spool)
    }
}

impl ScriptRequest<'_, '_> {
    /// Read the request's body, run the script and write its answer to `stream`. `Err`:
    /// the client connection cannot go on (it broke, the body was refused or not read
    /// whole, or the answer broke off after its head was written).
    pub(crate) async fn run<W: AsyncWrite + BodyRead + Unpin>(
        self,
        stream: &mut W,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let ScriptRequest {
            upstream,
            head,
            call,
            client,
            host,
            request_id,
            head_only,
            close,
            guard,
            started,
            body,
            hsts,
        } = self;
        let answer = Answer {
            upstream,
            script: &call.script_filename,
            request_id,
            head_only,
            close,
            started,
            hsts,
        };
        let (chunked, spool) = match body {
            None => (false, Spool::default()),
            Some(mut body) => match body.read(stream).await {
                Ok(spool) => (body.framing == BodyFraming::Chunked, spool),
                Err(failure) => {
                    let timeout = body.timeout;
                    return answer
                        .refuse(failure, guard, stream, body.reader, out, timeout)
                        .await;
                }
            },
        };
        let opened = async {
            let (name, port) = server_name_port(host, client.tls);
            let remote = client.forwarded_for.to_str().unwrap_or("");
            let mut params = params_of_head(head, &call, remote, name, port)
                .ok_or_else(|| FastCgiError::BadHead("the request head".into()))?;
            if chunked {
                // The length PHP reads the body by (the head has none).
                put_param(
                    &mut params,
                    b"CONTENT_LENGTH",
                    spool.len().to_string().as_bytes(),
                );
            }
            let mut conn = connect(upstream).await?;
            // The head and a short body with its end: in one write, as nginx sends a
            // short request.
            let mut request = request_head(&params);
            if spool.len() <= ONE_WRITE as u64 {
                spool.send(&mut request).await?;
            }
            conn.write_all(&request).await?;
            Ok::<_, FastCgiError>(conn)
        };
        let mut conn = match opened.await {
            Ok(conn) => conn,
            Err(e) => return answer.failed(&e, guard, stream, out, false).await,
        };
        if spool.len() <= ONE_WRITE as u64 {
            return answer.relay(&mut conn, guard, stream, out).await;
        }
        // A longer body is sent while the answer is read and relayed: a script may
        // answer before it has read everything (and PHP-FPM then stops reading it).
        let (mut rd, mut wr) = tokio::io::split(conn);
        let send = async {
            if let Err(e) = spool.send(&mut wr).await {
                tracing::debug!(upstream = %upstream.release, "PHP-FPM stopped taking the request body: {e}");
            }
            std::future::pending::<()>().await
        };
        let relay = answer.relay(&mut rd, guard, stream, out);
        tokio::select! {
            () = send => unreachable!("sending never ends by itself"),
            relayed = relay => relayed,
        }
    }
}

/// A body up to this long goes to PHP-FPM in one write with the request's head.
const ONE_WRITE: usize = 64 * 1024;
/// What the answer to a script request depends on.
struct Answer<'a> {
    upstream: &'a Upstream,
    script: &'a str,
    request_id: &'a HeaderValue,
    head_only: bool,
    close: bool,
    started: Instant,
    hsts: Option<&'a HeaderValue>,
}

impl Answer<'_> {
    /// Answer a request whose body was not read whole (413, 400, 408 or 500; nothing for
    /// a client that went away), then close: what the client still sends is read and
    /// dropped for a moment first, so that it reads the answer.
    async fn refuse<W: AsyncWrite + BodyRead + Unpin>(
        &self,
        failure: BodyFailure,
        guard: InFlightGuard,
        stream: &mut W,
        reader: &mut ReadHalf<'_>,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> io::Result<()> {
        let Some((status, text)) = failure.answer() else {
            let kind = match &failure {
                BodyFailure::Client(e) => e.kind(),
                _ => io::ErrorKind::Other,
            };
            return Err(io::Error::new(kind, "the request body was not sent whole"));
        };
        failure.log(self.script);
        guard
            .stats()
            .record(status.as_u16(), self.started.elapsed());
        drop(guard);
        let mut page = page(status, text, Some(self.request_id));
        add_hsts(page.headers_mut(), self.hsts);
        write_page(stream, page, true, out).await?;
        let _ = stream.shutdown().await;
        let linger = async {
            let mut sink = vec![0u8; BODY_CHUNK];
            let mut dropped = 0;
            while dropped < LINGER_MAX {
                match stream.read_body(reader, &mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dropped += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER.min(timeout), linger).await;
        Err(io::Error::other(failure.text()))
    }

    /// Answer 502: PHP-FPM could not be reached or gave no valid head (`close`: the
    /// connection closes after it).
    async fn failed<W: AsyncWrite + Unpin>(
        &self,
        error: &FastCgiError,
        guard: InFlightGuard,
        stream: &mut W,
        out: &mut Vec<u8>,
        close: bool,
    ) -> io::Result<()> {
        tracing::warn!(upstream = %self.upstream.release, script = %self.script, "FastCGI request failed: {error}");
        let mut page = bad_gateway(self.request_id);
        add_hsts(page.headers_mut(), self.hsts);
        guard
            .stats()
            .record(page.status().as_u16(), self.started.elapsed());
        drop(guard);
        write_page(stream, page, self.close || close, out).await
    }

    /// Read the answer from PHP-FPM on `rd` and write it to `stream`: whole with its
    /// length when its end came with its head, else chunked as it comes.
    async fn relay<C, W>(
        &self,
        rd: &mut C,
        guard: InFlightGuard,
        stream: &mut W,
        out: &mut Vec<u8>,
    ) -> io::Result<()>
    where
        C: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Answer {
            request_id,
            head_only,
            close,
            started,
            ..
        } = *self;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let AnswerHead {
            status,
            headers,
            body_start,
            ended,
        } = match read_answer_head(rd, &mut buf).await {
            Ok(head) => head,
            Err(e) => return self.failed(&e, guard, stream, out, false).await,
        };
        guard.stats().record(status.as_u16(), started.elapsed());
        out.clear();
        put_status_line(out, status);
        let (mut has_date, mut has_hsts) = (false, false);
        for (name, value) in &headers {
            // The framing is the router's; the request id is the router's.
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == X_REQUEST_ID
                || is_hop_by_hop_name(name.as_str())
            {
                continue;
            }
            has_date |= name == header::DATE;
            has_hsts |= name == header::STRICT_TRANSPORT_SECURITY;
            put_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
        put_field(out, b"x-request-id", request_id.as_bytes());
        if !has_date {
            put_date(out);
        }
        put_hsts(out, self.hsts, has_hsts);
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if ended {
            // Answered whole: with its length, in one write. The app's part is done.
            drop(guard);
            if !bodiless {
                put_field(
                    out,
                    b"content-length",
                    body_start.len().to_string().as_bytes(),
                );
            }
            if close {
                out.extend_from_slice(b"connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            if !head_only && !bodiless {
                out.extend_from_slice(&body_start);
            }
            stream.write_all(out).await?;
            out.clear();
            return Ok(());
        }

        // Streamed as it comes, chunked; the head goes out at once.
        if !bodiless {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let send_body = !bodiless && !head_only;
        if send_body {
            put_chunk(out, &body_start);
        }
        stream.write_all(out).await?;
        out.clear();
        loop {
            match buffered_output(&mut buf) {
                Some(Output::Stdout(data)) => {
                    if send_body {
                        put_chunk(out, &data);
                        if out.len() >= WRITE_BATCH {
                            stream.write_all(out).await?;
                            out.clear();
                        }
                    }
                }
                Some(Output::End) => break,
                None => {
                    // What is gathered goes out before waiting for more.
                    if !out.is_empty() {
                        stream.write_all(out).await?;
                        out.clear();
                    }
                    if rd.read_buf(&mut buf).await? == 0 {
                        break;
                    }
                }
            }
        }
        if send_body {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        stream.write_all(out).await?;
        out.clear();
        drop(guard);
        Ok(())
    }
}

/// Append `data` as one chunk (nothing for no data: an empty chunk would end the body).
fn put_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use crate::fastcgi::{parse_record, put_records};
    use crate::test_client::{ask, serve_site, serve_site_with};
    use crate::{Location, Passthru, Site};

    const PARAMS: u8 = 4;
    const STDIN: u8 = 5;
    const STDOUT: u8 = 6;
    const END_REQUEST: u8 = 3;

    /// The name-value pairs of `FCGI_PARAMS` content.
    fn decode_params(mut p: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let len = |p: &mut &[u8]| -> usize {
            if p[0] < 128 {
                let l = p[0] as usize;
                *p = &p[1..];
                l
            } else {
                let l = u32::from_be_bytes([p[0] & 0x7f, p[1], p[2], p[3]]) as usize;
                *p = &p[4..];
                l
            }
        };
        while !p.is_empty() {
            let (n, v) = (len(&mut p), len(&mut p));
            let name = String::from_utf8_lossy(&p[..n]).to_string();
            let value = String::from_utf8_lossy(&p[n..n + v]).to_string();
            p = &p[n + v..];
            out.push((name, value));
        }
        out
    }

    /// A stand-in for PHP-FPM on `listener`: per connection one request, answered with
    /// its parameters (`NAME=VALUE` lines) and then `body: ` and the request body, whole
    /// in one write; the connection closes after each answer.
    fn fake_fpm(listener: TcpListener) -> JoinHandle<()> {
        fake_fpm_counted(listener, Arc::default())
    }

    /// [`fake_fpm`], counting the connections it accepts in `accepted`.
    pub(crate) fn fake_fpm_counted(
        listener: TcpListener,
        accepted: Arc<AtomicUsize>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = bytes::BytesMut::new();
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
                        if conn.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let mut answer =
                        b"Content-Type: text/plain\r\nX-Request-Id: app's\r\n\r\n".to_vec();
                    for (n, v) in decode_params(&params) {
                        answer.extend_from_slice(format!("{n}={v}\n").as_bytes());
                    }
                    answer.extend_from_slice(b"body: ");
                    answer.extend_from_slice(&stdin);
                    let mut out = Vec::new();
                    put_records(&mut out, STDOUT, &answer);
                    put_records(&mut out, STDOUT, &[]);
                    put_records(&mut out, END_REQUEST, &[0; 8]);
                    let _ = conn.write_all(&out).await;
                });
            }
        })
    }

    pub(crate) fn php_site(dir: &std::path::Path) -> Site {
        let mut root = Location::new("/");
        root.root = Some(String::new());
        root.scripts = true;
        root.passthru = Passthru::Script("/index.php".into());
        Site {
            app_dir: dir.into(),
            tag: "t1".into(),
            locations: vec![root],
            fastcgi: true,
            no_web_process: false,
            mounts: Vec::new(),
        }
    }

    pub(crate) fn param<'a>(body: &'a str, name: &str) -> Option<&'a str> {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
    }

    /// On one kept-alive connection: a static file, then PHP requests (their CGI
    /// parameters as the hyper path gives them), a static file again, a chunked upload
    /// to PHP, and PHP again. PHP-FPM gone: a 502 on the same connection, which then
    /// recovers once PHP-FPM is back.
    #[tokio::test]
    async fn php_after_static_on_one_connection_then_502_and_recovery() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("index.php"), "<?php\n").expect("write");
        std::fs::write(dir.path().join("style.css"), "body {}\n").expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fpm_addr = listener.local_addr().expect("addr");
        let fpm = fake_fpm(listener);
        let (addr, stop, serving) =
            serve_site("php.test", fpm_addr.port(), php_site(dir.path())).await;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();

        let css = ask(
            &mut conn,
            &mut buf,
            "GET /style.css HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!((css.status, &css.body[..]), (200, &b"body {}\n"[..]));

        let php = ask(
            &mut conn,
            &mut buf,
            "GET /index.php/a/b?x=1 HTTP/1.1\r\nHost: php.test:8080\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nProxy: http://evil\r\nConnection: keep-alive\r\nX-Request-Id: req-1\r\nAccept: text/html\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(php.status, 200);
        let text = String::from_utf8(php.body.clone()).expect("text");
        assert_eq!(param(&text, "SCRIPT_NAME"), Some("/index.php"), "{text}");
        assert_eq!(param(&text, "PATH_INFO"), Some("/a/b"), "{text}");
        assert_eq!(param(&text, "REQUEST_URI"), Some("/index.php/a/b?x=1"));
        assert_eq!(param(&text, "QUERY_STRING"), Some("x=1"));
        assert_eq!(param(&text, "REQUEST_METHOD"), Some("GET"));
        assert_eq!(param(&text, "SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(param(&text, "SERVER_NAME"), Some("php.test"));
        assert_eq!(param(&text, "SERVER_PORT"), Some("8080"));
        assert_eq!(param(&text, "REMOTE_ADDR"), Some("127.0.0.1"));
        assert_eq!(
            param(&text, "HTTP_X_FORWARDED_FOR"),
            Some("203.0.113.9, 127.0.0.1")
        );
        // The client's own X-Forwarded-Proto is replaced: not HTTPS.
        assert_eq!(param(&text, "HTTP_X_FORWARDED_PROTO"), Some("http"));
        assert_eq!(param(&text, "REQUEST_SCHEME"), Some("http"));
        assert_eq!(param(&text, "HTTPS"), None);
        assert_eq!(param(&text, "HTTP_PROXY"), None);
        assert_eq!(param(&text, "HTTP_CONNECTION"), None);
        assert_eq!(param(&text, "HTTP_ACCEPT"), Some("text/html"));
        assert_eq!(param(&text, "HTTP_X_REQUEST_ID"), Some("req-1"));
        assert_eq!(php.field("x-request-id"), Some("req-1"));
        assert_eq!(php.field("content-type"), Some("text/plain"));
        assert_eq!(
            php.field("content-length"),
            Some(php.body.len().to_string().as_str())
        );

        let head = ask(
            &mut conn,
            &mut buf,
            "HEAD /anything HTTP/1.1\r\nHost: php.test\r\n\r\n",
            true,
        )
        .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());

        let css = ask(
            &mut conn,
            &mut buf,
            "GET /style.css HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!((css.status, &css.body[..]), (200, &b"body {}\n"[..]));

        // A body with its length, sent in two parts, then the next request in the same
        // write as the body's end: the body reaches the script whole, and no more.
        {
            use tokio::io::AsyncWriteExt as _;
            conn.write_all(b"POST /form HTTP/1.1\r\nHost: php.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\n\r\nname=")
                .await
                .expect("send");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let form = ask(
            &mut conn,
            &mut buf,
            "a+b&c=1GET /style.css HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(form.status, 200);
        let text = String::from_utf8(form.body).expect("text");
        assert_eq!(param(&text, "REQUEST_METHOD"), Some("POST"), "{text}");
        assert_eq!(param(&text, "CONTENT_LENGTH"), Some("12"), "{text}");
        assert_eq!(
            param(&text, "CONTENT_TYPE"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(text.ends_with("body: name=a+b&c=1"), "{text}");
        let css = crate::test_client::ask(&mut conn, &mut buf, "", false).await;
        assert_eq!((css.status, &css.body[..]), (200, &b"body {}\n"[..]));
        // Another method without a body runs the script too.
        let delete = ask(
            &mut conn,
            &mut buf,
            "DELETE /item/3 HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(
            param(&String::from_utf8_lossy(&delete.body), "REQUEST_METHOD"),
            Some("DELETE")
        );

        // A chunked upload reaches the script whole, with its length.
        let upload = ask(
            &mut conn,
            &mut buf,
            "POST /upload HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(upload.status, 200);
        let text = String::from_utf8(upload.body).expect("text");
        assert_eq!(param(&text, "CONTENT_LENGTH"), Some("11"), "{text}");
        assert_eq!(param(&text, "REQUEST_METHOD"), Some("POST"));
        assert!(text.ends_with("body: hello world"), "{text}");
        let php = ask(
            &mut conn,
            &mut buf,
            "GET /after HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(php.status, 200);

        // PHP-FPM gone: 502, and the connection goes on.
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        fpm.abort();
        let _ = fpm.await;
        let down = ask(
            &mut conn,
            &mut buf,
            "GET /x HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(down.status, 502);
        assert!(down.field("x-request-id").is_some());
        let css = ask(
            &mut conn,
            &mut buf,
            "GET /style.css HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(css.status, 200);
        // Back: answered again.
        let fpm = fake_fpm(TcpListener::bind(fpm_addr).await.expect("bind again"));
        let up = ask(
            &mut conn,
            &mut buf,
            "GET /x HTTP/1.1\r\nHost: php.test\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(up.status, 200);
        assert_eq!(
            param(&String::from_utf8_lossy(&up.body), "SCRIPT_NAME"),
            Some("/index.php")
        );
        fpm.abort();
        drop(conn);
        let _ = stop.send(());
        serving.await.expect("serve task").expect("serve");
    }

    /// Read what the router sends until the connection closes.
    async fn read_to_close(conn: &mut TcpStream) -> String {
        let mut all = Vec::new();
        let read = conn.read_to_end(&mut all);
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        String::from_utf8_lossy(&all).to_string()
    }

    /// On the own path: a chunked upload of 3 MiB (spooled to a file) sent in odd pieces
    /// with the next request in the same write as its end; `Expect: 100-continue` with a
    /// `Content-Length` and with chunking (one `100`, then the answer); a `Content-Length`
    /// over the cap answered 413 at once (no `100`), a chunked body growing over it 413,
    /// malformed chunking 400, a body that stops coming 408: none of these reaches
    /// PHP-FPM, and the legitimate requests before and after still do.
    #[tokio::test]
    async fn request_bodies_chunked_expect_and_refusals() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("index.php"), "<?php\n").expect("write");
        std::fs::write(dir.path().join("style.css"), "body {}\n").expect("write");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fpm_addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let fpm = fake_fpm_counted(listener, Arc::clone(&accepted));
        let config = crate::RouterConfig {
            max_request_body: 4 * 1024 * 1024,
            request_body_timeout: Duration::from_millis(300),
            ..crate::RouterConfig::default()
        };
        let (addr, stop, serving) =
            serve_site_with("php.test", fpm_addr.port(), php_site(dir.path()), config).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();

        // 3 MiB chunked, in chunks of varying sizes, written in pieces that cut them.
        let data: Vec<u8> = (0..3 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut wire =
            b"POST /upload HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        let mut at = 0;
        let mut size = 1;
        while at < data.len() {
            let end = (at + size).min(data.len());
            wire.extend_from_slice(format!("{:x};n=1\r\n", end - at).as_bytes());
            wire.extend_from_slice(&data[at..end]);
            wire.extend_from_slice(b"\r\n");
            at = end;
            size = size * 5 % 100_003 + 1;
        }
        wire.extend_from_slice(
            b"0\r\nX-Trailer: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: php.test\r\n\r\n",
        );
        let writer = {
            let (_, mut wr) = conn.split();
            async move {
                for piece in wire.chunks(61_441) {
                    wr.write_all(piece).await.expect("send");
                }
            }
        };
        writer.await;
        let upload = ask(&mut conn, &mut buf, "", false).await;
        assert_eq!(upload.status, 200);
        let marker = b"body: ";
        let body_at = upload
            .body
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("a body")
            + marker.len();
        let params = String::from_utf8_lossy(&upload.body[..body_at]).to_string();
        assert_eq!(
            param(&params, "CONTENT_LENGTH"),
            Some("3145728"),
            "{params}"
        );
        assert_eq!(param(&params, "HTTP_TRANSFER_ENCODING"), None);
        assert_eq!(param(&params, "HTTP_X_TRAILER"), None);
        assert!(upload.body[body_at..] == data[..], "the body differs");
        let css = ask(&mut conn, &mut buf, "", false).await;
        assert_eq!((css.status, &css.body[..]), (200, &b"body {}\n"[..]));

        // Expect: 100-continue, with a length: one 100 before the body is sent.
        conn.write_all(b"POST /form HTTP/1.1\r\nHost: php.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
            .await
            .expect("send");
        let mut interim = vec![0u8; 25];
        conn.read_exact(&mut interim).await.expect("100");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        let form = ask(&mut conn, &mut buf, "hello world", false).await;
        assert_eq!(form.status, 200);
        let text = String::from_utf8_lossy(&form.body).to_string();
        assert!(text.ends_with("body: hello world"), "{text}");
        assert_eq!(param(&text, "HTTP_EXPECT"), None, "{text}");
        // ... with chunking, the body's start sent with the head: no 100 is needed
        // for what came, one is sent when the rest is read.
        conn.write_all(b"PUT /c HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n")
            .await
            .expect("send");
        let mut interim = vec![0u8; 25];
        conn.read_exact(&mut interim).await.expect("100");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        let put = ask(&mut conn, &mut buf, "2\r\nde\r\n0\r\n\r\n", false).await;
        assert_eq!(put.status, 200, "a single 100, then the answer");
        assert!(String::from_utf8_lossy(&put.body).ends_with("body: abcde"));
        // The whole body with the head: no 100 at all.
        let whole = ask(
            &mut conn,
            &mut buf,
            "POST /w HTTP/1.1\r\nHost: php.test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
            false,
        )
        .await;
        assert_eq!(whole.status, 200);
        let before = accepted.load(Ordering::SeqCst);
        assert_eq!(before, 4);

        // A length over the cap: 413 at once, without a 100, and the connection closes.
        conn.write_all(b"POST /big HTTP/1.1\r\nHost: php.test\r\nContent-Length: 4194305\r\nExpect: 100-continue\r\n\r\n")
            .await
            .expect("send");
        let answer = read_to_close(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");

        // A chunked body that grows over the cap: 413 (hyper's path would take it).
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(
            b"POST /big HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .expect("send");
        let piece = format!("100000\r\n{}\r\n", "x".repeat(0x100000));
        let sender = async {
            for _ in 0..5 {
                if conn.write_all(piece.as_bytes()).await.is_err() {
                    break;
                }
            }
            read_to_close(&mut conn).await
        };
        let answer = sender.await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(answer.contains("over the router's limit"), "{answer}");

        // Malformed chunking: 400, nothing sent on.
        for bad in [
            "zz\r\nhello\r\n0\r\n\r\n",
            "5\r\nhelloXY0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
        ] {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            conn.write_all(
                format!("POST /bad HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\r\n{bad}")
                    .as_bytes(),
            )
            .await
            .expect("send");
            let answer = read_to_close(&mut conn).await;
            assert!(answer.starts_with("HTTP/1.1 400 "), "{bad:?}: {answer}");
        }

        // A body that stops coming: 408 after the body timeout, PHP-FPM never involved.
        for head in [
            "POST /slow HTTP/1.1\r\nHost: php.test\r\nContent-Length: 10\r\n\r\nabc",
            "POST /slow HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            conn.write_all(head.as_bytes()).await.expect("send");
            let answer = read_to_close(&mut conn).await;
            assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            before,
            "a refused body reached PHP-FPM"
        );

        // The legitimate path still works.
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let ok = ask(
            &mut conn,
            &mut buf,
            "POST /ok HTTP/1.1\r\nHost: php.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
        )
        .await;
        assert_eq!(ok.status, 200);
        assert!(String::from_utf8_lossy(&ok.body).ends_with("body: ok"));
        fpm.abort();
        drop(conn);
        let _ = stop.send(());
        serving.await.expect("serve task").expect("serve");
    }

    /// A chunk of no data is left out (it would end the body).
    #[test]
    fn put_chunk_skips_empty_data() {
        let mut out = Vec::new();
        super::put_chunk(&mut out, b"");
        assert!(out.is_empty());
        super::put_chunk(&mut out, &[b'a'; 17]);
        assert!(out.starts_with(b"11\r\naaaa"));
        assert!(out.ends_with(b"a\r\n"));
    }
}
