//! The router's upstream HTTP/1.1 client against a scripted app on a raw TCP socket: body
//! framings, interim responses, answers split into single bytes, early answers, broken
//! answers, and which connections are kept.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hyper::{Request, StatusCode};
use slipway_router::{EnvRoutes, RouterConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request as the scripted app received it.
#[derive(Debug, Clone)]
struct Received {
    connection: usize,
    head: String,
    body: Vec<u8>,
}

/// The scripted app: for each request, reads the head and the body (Content-Length or
/// chunked, decoded), records them, and writes `answer(path)` (raw bytes; `None`: close
/// without answering). With `slow`, every answer is written one byte at a time.
struct Script {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

async fn script(answer: fn(&str) -> Option<Vec<u8>>, slow: bool) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (rec, conns) = (Arc::clone(&received), Arc::clone(&connections));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let connection = conns.fetch_add(1, Ordering::SeqCst) + 1;
            let rec = Arc::clone(&rec);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let Some(head) = read_head(&mut reader).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    // `/early` answers before reading the body.
                    let body = if path == "/early" {
                        Vec::new()
                    } else {
                        read_body(&mut reader, &head).await.expect("a request body")
                    };
                    rec.lock().unwrap().push(Received {
                        connection,
                        head: head.clone(),
                        body,
                    });
                    let Some(out) = answer(&path) else { return };
                    let w = reader.get_mut();
                    if slow {
                        for b in out {
                            if w.write_all(&[b]).await.is_err() {
                                return;
                            }
                            w.flush().await.unwrap();
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    } else if w.write_all(&out).await.is_err() {
                        return;
                    }
                    if ["/until-close", "/early", "/close", "/short"].contains(&path.as_str()) {
                        return;
                    }
                }
            });
        }
    });
    Script {
        port,
        received,
        connections,
    }
}

fn answers(path: &str) -> Option<Vec<u8>> {
    let text: &str = match path {
        "/length" => "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: length\r\n\r\nhello",
        "/chunked" => {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
             5;ext=1\r\nhello\r\n1 \r\n,\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
        }
        "/interim" => {
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        }
        "/no-content" => "HTTP/1.1 204 No Content\r\n\r\n",
        "/not-modified" => "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
        "/until-close" => "HTTP/1.0 200 OK\r\n\r\nall of it until the end",
        "/close" => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
        "/conflict" => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "/garbage" => "HTTP/1.1 2OO OK\r\n\r\n",
        "/bad-chunk" => {
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n"
        }
        "/short" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "/early" => "HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig!",
        "/echo-length" => return Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()),
        "/head" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        _ => return None,
    };
    Some(text.as_bytes().to_vec())
}

async fn router_to(port: u16) -> TestRouter {
    let r = start_router(RouterConfig {
        workers: Some(1),
        ..RouterConfig::default()
    })
    .await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec!["main.demo.localhost".into()], up("r", port)),
        )
        .unwrap();
    r
}

const HOST: &str = "main.demo.localhost";

#[tokio::test]
async fn body_framings_and_interim_answers_even_one_byte_at_a_time() {
    for slow in [false, true] {
        let app = script(answers, slow).await;
        let r = router_to(app.port).await;
        let mut c = client(r.addr).await;
        let a = within(10, get(&mut c, HOST, "/length")).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "hello"));
        assert_eq!(
            a.headers.get("x-app").map(|v| v.to_str().unwrap()),
            Some("length")
        );
        let a = within(10, get(&mut c, HOST, "/chunked")).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, "hello,0123456789"),
            "slow: {slow}"
        );
        let a = within(10, get(&mut c, HOST, "/interim")).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "ok"));
        let a = within(10, get(&mut c, HOST, "/no-content")).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::NO_CONTENT, ""));
        let a = within(10, get(&mut c, HOST, "/not-modified")).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::NOT_MODIFIED, ""));
        let head = Request::head("/head")
            .header("host", HOST)
            .body(empty())
            .unwrap();
        let a = within(10, request(&mut c, head)).await.unwrap();
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
        assert_eq!(
            a.headers["content-length"], "10",
            "HEAD keeps the length of the GET"
        );
        // Every answer above left the connection in step: one upstream connection.
        assert_eq!(app.connections.load(Ordering::SeqCst), 1, "slow: {slow}");

        // Read until close: all of it, and the connection is not reused.
        let a = within(10, get(&mut c, HOST, "/until-close")).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, "all of it until the end")
        );
        let a = within(10, get(&mut c, HOST, "/length")).await;
        assert_eq!(a.body, "hello");
        assert_eq!(app.connections.load(Ordering::SeqCst), 2);
        // `Connection: close` is not reused either.
        let a = within(10, get(&mut c, HOST, "/close")).await;
        assert_eq!(a.body, "bye");
        let a = within(10, get(&mut c, HOST, "/length")).await;
        assert_eq!(a.body, "hello");
        assert_eq!(app.connections.load(Ordering::SeqCst), 3);
        let received = app.received.lock().unwrap().clone();
        let first = &received[0].head;
        assert!(first.starts_with("GET /length HTTP/1.1\r\n"), "{first}");
        assert!(first.contains("x-forwarded-for: 127.0.0.1\r\n"), "{first}");
        assert!(
            !first.to_ascii_lowercase().contains("transfer-encoding"),
            "{first}"
        );
        r.stop().await.unwrap();
    }
}

#[tokio::test]
async fn broken_answers_are_502_and_their_connections_dropped() {
    let app = script(answers, false).await;
    let r = router_to(app.port).await;
    for path in ["/conflict", "/garbage", "/nothing"] {
        let a = within(10, get_once(r.addr, HOST, path)).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{path}: {}", a.body);
        assert!(a.body.starts_with("502 Bad Gateway"), "{path}: {}", a.body);
    }
    // A body that breaks after the head went out: the client's answer is cut short, not
    // completed with anything else.
    for path in ["/bad-chunk", "/short"] {
        let mut c = client(r.addr).await;
        let req = Request::get(path)
            .header("host", HOST)
            .body(empty())
            .unwrap();
        let result = within(10, request(&mut c, req)).await;
        assert!(
            result.is_err(),
            "{path}: a broken body must not look complete"
        );
    }
    let a = within(10, get_once(r.addr, HOST, "/length")).await;
    assert_eq!(a.body, "hello");
    let live = r.router.current("demo/main").unwrap();
    assert_eq!(
        live.idle_connections(),
        1,
        "only the good connection is kept"
    );
    r.stop().await.unwrap();
}

#[tokio::test]
async fn request_bodies_with_a_length_or_chunked_and_early_answers() {
    let app = script(answers, false).await;
    let r = router_to(app.port).await;
    let mut c = client(r.addr).await;

    // A body of known length is sent as is.
    let req = Request::post("/echo-length")
        .header("host", HOST)
        .body(full("twelve bytes"))
        .unwrap();
    let a = within(10, request(&mut c, req)).await.unwrap();
    assert_eq!(a.body, "ok");
    // A body of unknown length (streamed by the client) goes chunked.
    let (tx, body) = channel_body();
    let req = Request::post("/echo-length")
        .header("host", HOST)
        .body(body)
        .unwrap();
    let feeder = tokio::spawn(async move {
        for part in ["one,", "two,", "three"] {
            tx.send(bytes::Bytes::from(part)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let a = within(10, request(&mut c, req)).await.unwrap();
    feeder.await.unwrap();
    assert_eq!(a.body, "ok");
    {
        let received = app.received.lock().unwrap();
        assert_eq!(received[0].body, b"twelve bytes");
        assert!(
            received[0].head.contains("content-length: 12\r\n"),
            "{}",
            received[0].head
        );
        assert_eq!(received[1].body, b"one,two,three");
        assert!(
            received[1].head.contains("transfer-encoding: chunked\r\n"),
            "{}",
            received[1].head
        );
        assert_eq!(received[1].connection, 1, "both on one kept connection");
    }

    // The app answers 413 without reading a large body: the client gets the 413, and the
    // connection, out of step, is not reused.
    let req = Request::post("/early")
        .header("host", HOST)
        .body(full(vec![b'x'; 4 << 20]))
        .unwrap();
    let mut c2 = client(r.addr).await;
    let a = within(10, request(&mut c2, req)).await.unwrap();
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "big!")
    );
    let a = within(10, get_once(r.addr, HOST, "/length")).await;
    assert_eq!(a.body, "hello");
    let last = app.received.lock().unwrap().last().unwrap().connection;
    assert_ne!(last, 1, "the connection of the early answer was not reused");
    r.stop().await.unwrap();
}

/// A message head (up to its empty line) from `r`; `None` at end of stream before it ends.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// The body after `head` (Content-Length or chunked, decoded; none without either).
async fn read_body<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, head: &str) -> Option<Vec<u8>> {
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(i) = lower.find("content-length: ") {
        let n: usize = lower[i + 16..].split("\r\n").next()?.parse().ok()?;
        body = vec![0u8; n];
        r.read_exact(&mut body).await.ok()?;
    }
    Some(body)
}

/// One answer read off a raw client connection: the head and the body as text. `None` at
/// end of stream before a head.
async fn read_answer<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<(String, String)> {
    let head = read_head(r).await?;
    let body = read_body(r, &head).await?;
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

/// Send `request` on a raw client connection and read its answer (within 10 s).
async fn ask(c: &mut BufReader<tokio::net::TcpStream>, request: &str) -> (String, String) {
    c.get_mut().write_all(request.as_bytes()).await.unwrap();
    within(10, read_answer(c)).await.unwrap()
}

/// The router's own HTTP/1.1 path (GET and HEAD without a body) and its handover to hyper
/// in the middle of a connection, as a raw client sees them.
#[tokio::test]
async fn raw_clients_pipelining_handover_close_and_odd_heads() {
    let app = script(answers, false).await;
    let r = router_to(app.port).await;

    // Two GETs in one write (pipelined), then a POST (hyper's from here on), then a GET.
    let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let two = format!(
        "GET /length HTTP/1.1\r\nHost: {HOST}\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Host: spoofed\r\nX-Request-Id: mine-1\r\n\r\n\
         GET /chunked HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
    );
    c.get_mut().write_all(two.as_bytes()).await.unwrap();
    let (head, body) = within(10, read_answer(&mut c)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "hello");
    assert!(head.contains("X-App: length\r\n"), "{head}");
    assert!(head.contains("x-request-id: mine-1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\ndate: "),
        "the router adds a date: {head}"
    );
    let (head, body) = within(10, read_answer(&mut c)).await.unwrap();
    assert_eq!(body, "hello,0123456789", "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    let post = format!(
        "POST /echo-length HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 12\r\n\r\ntwelve bytes"
    );
    let (_, body) = ask(&mut c, &post).await;
    assert_eq!(body, "ok");
    let get = format!("GET /length HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let (_, body) = ask(&mut c, &get).await;
    assert_eq!(body, "hello");
    {
        let received = app.received.lock().unwrap();
        let first = &received[0].head;
        assert!(
            first.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\r\n"),
            "{first}"
        );
        assert!(
            first.contains("x-forwarded-host: main.demo.localhost\r\n"),
            "{first}"
        );
        assert!(!first.contains("spoofed"), "{first}");
        assert!(first.contains("x-request-id: mine-1\r\n"), "{first}");
        assert_eq!(received[2].body, b"twelve bytes");
    }

    // A head one byte at a time.
    let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    for b in get.as_bytes() {
        c.get_mut().write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (_, body) = within(10, read_answer(&mut c)).await.unwrap();
    assert_eq!(body, "hello");

    // `Connection: close`: said in the answer, then the router closes.
    let close = format!("GET /length HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let (head, body) = ask(&mut c, &close).await;
    assert_eq!(body, "hello");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(
        within(10, read_answer(&mut c)).await.is_none(),
        "closed after the answer"
    );

    // A head bigger than the router's own path takes, HTTP/1.0, an unknown host: still
    // answered (by hyper, by hyper, and by the router's own 404 page).
    let big = format!(
        "GET /length HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let old = format!("GET /length HTTP/1.0\r\nHost: {HOST}\r\n\r\n");
    let unknown = "GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n".to_string();
    for (request, status, expected) in [
        (big, "200", "hello"),
        (old, "200", "hello"),
        (
            unknown,
            "404",
            "404 Not Found: nothing is deployed at this address.\n",
        ),
    ] {
        let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
        let (head, body) = ask(&mut c, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} "))
                || head.starts_with(&format!("HTTP/1.0 {status} ")),
            "{head}"
        );
        assert_eq!(body, expected, "{head}");
    }
    r.stop().await.unwrap();
}

/// An app that does not read request bodies (a lax server): it answers `/upload` at once,
/// the head first and the body a little later, without reading the upload; anything
/// after a head it reads as the next request, and answers each (after a short think) with
/// the path it saw. Empty or pathless heads get no answer.
async fn lax_app() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                while let Some(head) = read_head(&mut reader).await {
                    let Some(path) = head.split(' ').nth(1).map(str::to_string) else {
                        continue;
                    };
                    let w = reader.get_mut();
                    let written = if path == "/upload" {
                        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n";
                        if w.write_all(head).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        w.write_all(b"upload").await
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                            path.len()
                        );
                        w.write_all(answer.as_bytes()).await
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Issue 12, finding 10: an upload the app never reads. The app reads it as a request of
/// its own (here `GET /smuggled`) and answers it; the connection must not be pooled, or
/// the next request sent on it, from another client, gets that answer instead of its own.
/// Three ways: answered before the router sent the whole upload (chunked, and with a
/// length), and a chunked upload sent whole at once (a server that does not read chunked
/// bodies, whenever it answers).
#[tokio::test]
async fn an_unread_upload_never_gives_its_connection_to_another_request() {
    let port = lax_app().await;
    let r = router_to(port).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let cases = [
        (
            "Transfer-Encoding: chunked",
            "3\r\nabc\r\n",
            chunked.clone(),
            true,
        ),
        (
            &*format!("Content-Length: {}", 3 + smuggled.len()),
            "abc",
            smuggled.to_string(),
            true,
        ),
        ("Transfer-Encoding: chunked", "3\r\nabc\r\n", chunked, false),
    ];
    for (framing, first, rest, after_head) in &cases {
        for round in 0..10 {
            let what = format!("{framing}, rest after the head: {after_head}, round {round}");
            let mut attacker =
                BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
            let start =
                format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\n\r\n{first}");
            let head = if *after_head {
                // The answer's head comes before the upload is whole; then the rest of it.
                attacker
                    .get_mut()
                    .write_all(start.as_bytes())
                    .await
                    .unwrap();
                let head = within(10, read_head(&mut attacker)).await.unwrap();
                attacker.get_mut().write_all(rest.as_bytes()).await.unwrap();
                head
            } else {
                let whole = format!("{start}{rest}");
                attacker
                    .get_mut()
                    .write_all(whole.as_bytes())
                    .await
                    .unwrap();
                within(10, read_head(&mut attacker)).await.unwrap()
            };
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{what}: {head}");
            let body = within(10, read_body(&mut attacker, &head)).await.unwrap();
            assert_eq!(body, b"upload", "{what}");

            // Another client, on the own path and on hyper's: each gets its own answer.
            let mut victim = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
            let (_, body) = ask(
                &mut victim,
                &format!("GET /victim HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
            )
            .await;
            assert_eq!(body, "/victim", "{what}: another request's answer");
            let (_, body) = ask(
                &mut victim,
                &format!("POST /victim-post HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n"),
            )
            .await;
            assert_eq!(body, "/victim-post", "{what}: another request's answer");
        }
    }
    // A plain request's connection is still kept and reused.
    let live = r.router.current("demo/main").unwrap();
    assert!(
        live.idle_connections() >= 1,
        "the victims' connection is kept"
    );
    r.stop().await.unwrap();
}

/// Issue 12, finding 12: two `Host` fields are answered 400 on the router's own path and
/// on hyper's (after a handover), a head with a bare-LF line end 400, and none reaches
/// the app; a client that names `X-Request-Id` in `Connection` does not take it off the
/// request. The same requests written properly are served.
#[tokio::test]
async fn two_hosts_and_bare_line_feeds_are_refused_and_the_request_id_stays() {
    let app = script(answers, false).await;
    let r = router_to(app.port).await;
    let refused = [
        (
            format!("GET /length HTTP/1.1\r\nHost: {HOST}\r\nHost: other.localhost\r\n\r\n"),
            "more than one Host",
        ),
        (
            format!("GET /length HTTP/1.1\nHost: {HOST}\n\n"),
            "LF without CR",
        ),
        (
            format!("GET /length HTTP/1.1\r\nHost: {HOST}\nX-A: 1\r\n\r\n"),
            "LF without CR",
        ),
        (
            format!("POST /echo-length HTTP/1.1\nHost: {HOST}\nContent-Length: 2\n\nok"),
            "LF without CR",
        ),
    ];
    for (request, why) in &refused {
        let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
        let (head, body) = ask(&mut c, request).await;
        assert!(head.starts_with("HTTP/1.1 400 "), "{request:?}: {head}");
        assert!(body.contains(why), "{request:?}: {body}");
        assert!(
            within(10, read_answer(&mut c)).await.is_none(),
            "closed after a refused head"
        );
    }
    assert!(
        app.received.lock().unwrap().is_empty(),
        "nothing reached the app"
    );

    // Hyper's path: a POST hands the connection over, then two Hosts.
    let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let post = format!("POST /echo-length HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\n\r\nok");
    let (_, body) = ask(&mut c, &post).await;
    assert_eq!(body, "ok");
    let (head, body) = ask(&mut c, &refused[0].0).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(body.contains("more than one Host"), "{body}");
    assert_eq!(
        app.received.lock().unwrap().len(),
        1,
        "only the POST reached the app"
    );
    let (_, body) = ask(
        &mut c,
        &format!("GET /length HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
    )
    .await;
    assert_eq!(body, "hello");

    // `Connection: X-Request-Id` (hyper's path): the app still gets a request id.
    for id in ["X-Request-Id: mine-2\r\n", ""] {
        let request = format!(
            "GET /length HTTP/1.1\r\nHost: {HOST}\r\nConnection: X-Request-Id, X-Forwarded-For\r\n{id}\r\n"
        );
        let mut c = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
        let (head, body) = ask(&mut c, &request).await;
        assert_eq!(body, "hello", "{head}");
        let received = app.received.lock().unwrap().last().unwrap().head.clone();
        let lower = received.to_ascii_lowercase();
        assert_eq!(lower.matches("\r\nx-request-id: ").count(), 1, "{received}");
        assert_eq!(
            lower.matches("\r\nx-forwarded-for: 127.0.0.1\r\n").count(),
            1,
            "{received}"
        );
        let sent = lower
            .split("\r\nx-request-id: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .to_string();
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("x-request-id: {sent}\r\n")),
            "the client is told the id the app got: {head}"
        );
    }
    r.stop().await.unwrap();
}

/// The cap on open client connections: at the cap a new connection gets no answer until
/// one of the open ones closes; then it is served.
#[tokio::test]
async fn client_connections_beyond_the_cap_wait_until_one_closes() {
    let app = script(answers, false).await;
    let r = start_router(RouterConfig {
        workers: Some(1),
        max_client_connections: 2,
        ..RouterConfig::default()
    })
    .await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec![HOST.into()], up("r", app.port)),
        )
        .unwrap();
    let get = format!("GET /length HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut first = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let mut second = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    assert_eq!(ask(&mut first, &get).await.1, "hello");
    assert_eq!(ask(&mut second, &get).await.1, "hello");
    let mut third = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    third.get_mut().write_all(get.as_bytes()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), read_answer(&mut third)).await;
    assert!(
        waited.is_err(),
        "a third connection was served at a cap of two"
    );
    drop(first);
    let (_, body) = within(10, read_answer(&mut third)).await.unwrap();
    assert_eq!(body, "hello");
    assert_eq!(ask(&mut second, &get).await.1, "hello");
    r.stop().await.unwrap();

    // An upgraded connection (a WebSocket) still counts once hyper let go of it.
    let echo = upstream("echo").await;
    let r = start_router(RouterConfig {
        workers: Some(1),
        max_client_connections: 1,
        ..RouterConfig::default()
    })
    .await;
    r.router
        .switch(
            "demo/main",
            EnvRoutes::single(vec![HOST.into()], up("r", echo.port)),
        )
        .unwrap();
    let mut upgraded = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let upgrade =
        format!("GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    upgraded
        .get_mut()
        .write_all(upgrade.as_bytes())
        .await
        .unwrap();
    let head = within(10, read_head(&mut upgraded)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    upgraded.get_mut().write_all(b"ping\n").await.unwrap();
    let mut line = String::new();
    within(10, upgraded.read_line(&mut line)).await.unwrap();
    assert_eq!(line, "ping\n");
    let mut next = BufReader::new(tokio::net::TcpStream::connect(r.addr).await.unwrap());
    let get = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    next.get_mut().write_all(get.as_bytes()).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), read_answer(&mut next)).await;
    assert!(
        waited.is_err(),
        "served beside an open WebSocket at a cap of one"
    );
    drop(upgraded);
    let (_, body) = within(10, read_answer(&mut next)).await.unwrap();
    assert_eq!(body, "echo");
    r.stop().await.unwrap();
}
