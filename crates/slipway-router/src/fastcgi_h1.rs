//! PHP on the router's own HTTP/1.1 path ([`crate::h1`]): a request for a script of an
//! app served by PHP-FPM goes to it as one FastCGI request (its `Content-Length` body, if
//! any, streamed as `FCGI_STDIN` while the answer is read), and the answer is written to
//! the client as bytes, on the same kept-alive connection as the requests before and
//! after it (the connection is no longer handed over to hyper at its first PHP request).
//!
//! The CGI parameters are those of the hyper path ([`crate::fastcgi`]): they are made
//! from the head the router writes for an app (hop-by-hop fields out, the router's
//! `X-Forwarded-*` and `X-Request-Id` in), so `REMOTE_ADDR`, `HTTPS`, `PATH_INFO` and
//! the `HTTP_*` fields are the same on both paths. An answer whose end came with its head
//! goes out whole with its `Content-Length` in one write; a longer one is streamed
//! chunked as PHP-FPM sends it. PHP-FPM not answering (no connection, no valid head) is
//! a 502 page; an answer that breaks off after its head closes the client connection.

use std::io;
use std::time::Instant;

use bytes::BytesMut;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::fastcgi::{
    bad_gateway, buffered_output, connect, params_of_head, put_body_end, put_stdin,
    read_answer_head, request_head, server_name_port, AnswerHead, FastCgiError, Output, ScriptCall,
};
use crate::h1::{put_date, write_page, WRITE_BATCH};
use crate::headers::{is_hop_by_hop_name, put_field, put_status_line, X_REQUEST_ID};
use crate::proxy::Client;
use crate::release::InFlightGuard;
use crate::routes::Upstream;

/// A request for a script, on its way to PHP-FPM.
pub(crate) struct ScriptRequest<'a, R> {
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
    /// The request's body (`Content-Length`), if it has one.
    pub(crate) body: Option<RequestBody<'a, R>>,
}

/// The body of a request with a `Content-Length`, streamed to PHP-FPM as `FCGI_STDIN`.
pub(crate) struct RequestBody<'a, R> {
    /// What of it came with the head.
    pub(crate) first: &'a [u8],
    /// How many bytes of it are still to be read from the client.
    pub(crate) rest: u64,
    /// The client connection, to read them from (never beyond the body).
    pub(crate) reader: &'a mut R,
}

/// How sending a request body ended early.
enum BodyError {
    /// The client's side broke or ended within the body.
    Client(io::Error),
    /// PHP-FPM stopped taking it (it answered, or went away).
    App,
}

impl<R: AsyncRead + Unpin> ScriptRequest<'_, R> {
    /// Run the script and write its answer to `stream`. `Err`: the client connection
    /// cannot go on (it broke, the answer broke off after its head was written, or the
    /// request body was not read whole).
    pub(crate) async fn run<W: AsyncWrite + Unpin>(
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
        } = self;
        let answer = Answer {
            upstream,
            script: &call.script_filename,
            request_id,
            head_only,
            close,
            started,
        };
        let (first, rest) = body.as_ref().map_or((&[][..], 0), |b| (b.first, b.rest));
        let opened = async {
            let (name, port) = server_name_port(host, client.tls);
            let remote = client.forwarded_for.to_str().unwrap_or("");
            let params = params_of_head(head, &call, remote, name, port)
                .ok_or_else(|| FastCgiError::BadHead("the request head".into()))?;
            let mut conn = connect(upstream).await?;
            // The head, what came of the body with it and, when that is all of it, the
            // body's end: in one write, as nginx sends a short request.
            let mut request = request_head(&params);
            put_stdin(&mut request, first);
            if rest == 0 {
                put_body_end(&mut request);
            }
            conn.write_all(&request).await?;
            Ok::<_, FastCgiError>(conn)
        };
        let mut conn = match opened.await {
            Ok(conn) => conn,
            Err(e) => {
                let unread = rest > 0;
                answer.failed(&e, guard, stream, out, unread).await?;
                return match unread {
                    true => Err(io::Error::other("the request body was not read")),
                    false => Ok(()),
                };
            }
        };
        let Some(RequestBody { reader, .. }) = body.filter(|_| rest > 0) else {
            return answer.relay(&mut conn, guard, stream, out).await;
        };
        // The rest of the body is sent while the answer is read and relayed: a script
        // may answer before it has read everything.
        let (mut rd, mut wr) = tokio::io::split(conn);
        let send = send_body(reader, rest, &mut wr);
        let relay = answer.relay(&mut rd, guard, stream, out);
        tokio::pin!(send, relay);
        let mut body_read = None;
        let relayed = loop {
            tokio::select! {
                sent = &mut send, if body_read.is_none() => body_read = Some(match sent {
                    Ok(()) => true,
                    Err(BodyError::Client(e)) => return Err(e),
                    Err(BodyError::App) => false,
                }),
                relayed = &mut relay => break relayed,
            }
        };
        relayed?;
        if body_read != Some(true) {
            // The next request cannot be found behind an unread body.
            return Err(io::Error::other("the request body was not read whole"));
        }
        Ok(())
    }
}

/// Read `rest` bytes of a request body from `reader` (never more: what follows is the
/// next request) and send them to PHP-FPM as `FCGI_STDIN`, then the body's end.
async fn send_body<R, W>(reader: &mut R, mut rest: u64, wr: &mut W) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; BODY_CHUNK];
    let mut out = Vec::with_capacity(BODY_CHUNK + 64);
    while rest > 0 {
        let want = rest.min(BODY_CHUNK as u64) as usize;
        let n = reader
            .read(&mut chunk[..want])
            .await
            .map_err(BodyError::Client)?;
        if n == 0 {
            return Err(BodyError::Client(io::ErrorKind::UnexpectedEof.into()));
        }
        rest -= n as u64;
        out.clear();
        put_stdin(&mut out, &chunk[..n]);
        wr.write_all(&out).await.map_err(|_| BodyError::App)?;
    }
    out.clear();
    put_body_end(&mut out);
    wr.write_all(&out).await.map_err(|_| BodyError::App)
}

/// Bytes of a request body read from the client at once.
const BODY_CHUNK: usize = 32 * 1024;

/// What the answer to a script request depends on.
struct Answer<'a> {
    upstream: &'a Upstream,
    script: &'a str,
    request_id: &'a HeaderValue,
    head_only: bool,
    close: bool,
    started: Instant,
}

impl Answer<'_> {
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
        let page = bad_gateway(self.request_id);
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
        let mut has_date = false;
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
            put_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
        put_field(out, b"x-request-id", request_id.as_bytes());
        if !has_date {
            put_date(out);
        }
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
mod tests {
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use crate::fastcgi::{parse_record, put_records};
    use crate::test_client::{ask, serve_site};
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
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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

    fn php_site(dir: &std::path::Path) -> Site {
        let mut root = Location::new("/");
        root.root = Some(String::new());
        root.scripts = true;
        root.passthru = Passthru::Script("/index.php".into());
        Site {
            app_dir: dir.into(),
            tag: "t1".into(),
            locations: vec![root],
            fastcgi: true,
            mounts: Vec::new(),
        }
    }

    fn param<'a>(body: &'a str, name: &str) -> Option<&'a str> {
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
