//! The router end to end: routes from the pushed config, and an environment that deploys
//! 20 times in a row (some deploys failing) under keep-alive GETs, POSTs with bodies and
//! a long-lived WebSocket: no request fails, no connection is reset, every response comes
//! whole from one release.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, LoadTally, Server, Ws};

const HOST: &str = "main.demo.localhost";

/// The load test's app ([`slipway_e2e::py_release_app!`] on `$PORT`): `GET /` answers `release-N|` repeated over ~4 KB (`GET /slow`
/// too, after 0.4 s: it is in flight when the routes switch); `POST /echo`
/// answers `release-N:` + the body; `GET /ws` is a WebSocket answering each text frame
/// with `release-N:` + its payload. Keep-alive: HTTP/1.1 with Content-Length.
const SERVER: &str = slipway_e2e::py_release_app!(
    4096,
    r#"H.disable_nagle_algorithm = True

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#
);

const APP_YAML: &str = "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"release-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n";

fn load_app(server: &Server) -> App {
    let app = App {
        dir: server.dir.path().join("load-app"),
    };
    std::fs::create_dir_all(&app.dir).expect("app dir");
    app.write(".platform.app.yaml", APP_YAML);
    app.write("server.py", SERVER);
    app.write("VERSION", "1\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("v1");
    app
}

fn push(server: &Server, app: &App, branch: &str) -> (bool, String) {
    let o = server.git(
        &app.dir,
        &[
            "push",
            "-f",
            &server.remote("demo"),
            &format!("HEAD:{branch}"),
        ],
    );
    (o.status.success(), text(&o))
}

/// A response read from a kept-alive connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 keep-alive client on one connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(s),
        })
    }

    fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<Answer> {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slipway-e2e\r\n")
                .into_bytes();
        if method == "POST" {
            req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.reader.get_mut().write_all(&req)?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the status line",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed in the headers",
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = answer
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
        answer.body.resize(len, 0);
        self.reader.read_exact(&mut answer.body)?;
        Ok(answer)
    }
}

/// The release a `release-N|release-N|...` page comes from, if the page is whole and
/// from one release.
fn page_release(body: &[u8]) -> Result<u32, String> {
    let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let units: Vec<&str> = text.split_terminator('|').collect();
    let first = units.first().copied().unwrap_or("");
    let n: u32 = first
        .strip_prefix("release-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected page start {:?}", &text[..text.len().min(40)]))?;
    if units.len() < 100 || units.iter().any(|u| *u != first) || !text.ends_with('|') {
        return Err(format!(
            "a page mixing releases or cut short ({} bytes)",
            body.len()
        ));
    }
    Ok(n)
}

fn release_prefix(data: &[u8]) -> Option<(u32, &[u8])> {
    let colon = data.iter().position(|b| *b == b':')?;
    let n = std::str::from_utf8(&data[..colon])
        .ok()?
        .strip_prefix("release-")?
        .parse()
        .ok()?;
    Some((n, &data[colon + 1..]))
}

fn get_loop(port: u16, path: &str, stop: &AtomicBool, tally: &LoadTally) {
    let Ok(mut c) = Client::connect(port) else {
        return tally.fail("GET client could not connect".into());
    };
    while !stop.load(Ordering::Relaxed) {
        match c.request("GET", HOST, path, b"") {
            Ok(a) if a.status == 200 => match page_release(&a.body) {
                Ok(n) => tally.saw(n),
                Err(e) => tally.fail(format!("GET: {e}")),
            },
            Ok(a) => tally.fail(format!(
                "GET: status {} {:?}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )),
            Err(e) => {
                // A reset or a close of a kept-alive connection is a failure; go on with a new one.
                tally.fail(format!("GET: connection error {e} ({:?})", e.kind()));
                match Client::connect(port) {
                    Ok(n) => c = n,
                    Err(_) => return,
                }
            }
        }
    }
}

fn post_loop(port: u16, seed: usize, stop: &AtomicBool, tally: &LoadTally) {
    let Ok(mut c) = Client::connect(port) else {
        return tally.fail("POST client could not connect".into());
    };
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 1 + (i >> 33) % 64_000;
        let body: Vec<u8> = (0..len).map(|k| b'a' + ((k + i) % 26) as u8).collect();
        match c.request("POST", HOST, "/echo", &body) {
            Ok(a) if a.status == 200 => match release_prefix(&a.body) {
                Some((n, echoed)) if echoed == body.as_slice() => tally.saw(n),
                _ => tally.fail(format!(
                    "POST: the body came back altered ({} of {len} bytes)",
                    a.body.len()
                )),
            },
            Ok(a) => tally.fail(format!(
                "POST: status {} {:?}",
                a.status,
                String::from_utf8_lossy(&a.body)
            )),
            Err(e) => {
                tally.fail(format!("POST: connection error {e} ({:?})", e.kind()));
                match Client::connect(port) {
                    Ok(n) => c = n,
                    Err(_) => return,
                }
            }
        }
    }
}

/// One long-lived WebSocket: a message every 50 ms, each echoed by the release it is on.
/// The router may close it (in order) once its release is retired and the drain timeout
/// passed; then a new one is opened.
fn ws_loop(port: u16, stop: &AtomicBool, tally: &LoadTally) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut ws = match Ws::connect(port, HOST) {
            Ok(ws) => ws,
            Err(e) => return tally.fail(format!("WebSocket: {e}")),
        };
        let mut release = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            seq += 1;
            let msg = format!("message {seq}");
            if let Err(e) = ws.send(msg.as_bytes()) {
                tally.fail(format!("WebSocket send: {e} ({:?})", e.kind()));
                break;
            }
            match ws.recv() {
                Ok(Some((1, data))) => match release_prefix(&data) {
                    Some((n, echoed))
                        if echoed == msg.as_bytes() && release.is_none_or(|r| r == n) =>
                    {
                        release = Some(n);
                        tally.ws_messages.fetch_add(1, Ordering::Relaxed);
                        tally.saw(n);
                    }
                    _ => tally.fail(format!(
                        "WebSocket: unexpected echo {:?}",
                        String::from_utf8_lossy(&data)
                    )),
                },
                Ok(Some((op, _))) => tally.fail(format!("WebSocket: unexpected frame opcode {op}")),
                Ok(None) => {
                    tally.ws_closed_by_server.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    tally.fail(format!("WebSocket recv: {e} ({:?})", e.kind()));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn twenty_deploys_under_load_lose_nothing() {
    let t0 = Instant::now();
    // Two router workers, whatever the CPU count (the default is one per CPU): requests
    // of one client connection stay on one worker, with that worker's own upstream
    // connections.
    let server = Server::start_with(&[
        ("SLIPWAY_DRAIN_TIMEOUT", "3"),
        ("SLIPWAY_ROUTER_WORKERS", "2"),
    ]);
    assert!(
        server.server_log().contains("(2 router workers)"),
        "SLIPWAY_ROUTER_WORKERS=2 not taken:\n{}",
        server.server_log()
    );
    let app = load_app(&server);
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "first push failed:\n{out}\n{}", server.server_log());

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(LoadTally::default());
    let port = server.http_port;
    let mut load = Vec::new();
    for i in 0..8 {
        let (stop, tally) = (stop.clone(), tally.clone());
        load.push(std::thread::spawn(move || match i {
            0..=2 => get_loop(port, "/", &stop, &tally),
            3 | 4 => get_loop(port, "/slow", &stop, &tally),
            5 | 6 => post_loop(port, i, &stop, &tally),
            _ => ws_loop(port, &stop, &tally),
        }));
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut live = BTreeSet::from([1u32]);
    let mut failed = BTreeSet::new();
    for deploy in 2..=21u32 {
        let yaml = if deploy % 4 == 0 {
            failed.insert(deploy);
            APP_YAML.replace("set -e\n", "set -e\n    echo this build fails; exit 1\n")
        } else {
            live.insert(deploy);
            APP_YAML.to_string()
        };
        app.write(".platform.app.yaml", &yaml);
        app.write("VERSION", &format!("{deploy}\n"));
        app.commit(&format!("v{deploy}"));
        let (ok, out) = push(&server, &app, "main");
        if failed.contains(&deploy) {
            assert!(!ok, "deploy {deploy} should have failed:\n{out}");
            assert!(out.contains("build failed"), "{out}");
        } else {
            assert!(
                ok,
                "deploy {deploy} failed:\n{out}\n{}",
                server.server_log()
            );
        }
    }
    // Let the last retirements (drain timeout 3 s) happen under load too.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }

    let ok = tally.assert_none_failed();
    let seen = tally.releases_seen();
    assert!(
        seen.is_subset(&live),
        "responses from releases {:?} that never went live",
        seen.difference(&live).collect::<Vec<_>>()
    );
    assert!(seen.is_disjoint(&failed));
    assert!(
        seen.len() >= live.len() / 2,
        "too few releases answered: {seen:?} of {live:?}"
    );
    assert!(
        seen.contains(&21),
        "the last release never answered: {seen:?}"
    );
    assert!(ok > 1000, "only {ok} requests ran");
    assert!(
        tally.ws_messages.load(Ordering::Relaxed) > 100,
        "the WebSocket barely ran"
    );
    // Closed only at drain timeouts of retired releases.
    assert!(tally.ws_closed_by_server.load(Ordering::Relaxed) <= live.len());
    assert!(
        t0.elapsed() < Duration::from_secs(180),
        "took {:?}",
        t0.elapsed()
    );
    eprintln!(
        "{ok} requests, {} WebSocket messages, {} WebSocket closes at drain timeouts, releases seen {seen:?}, {:?}",
        tally.ws_messages.load(Ordering::Relaxed),
        tally.ws_closed_by_server.load(Ordering::Relaxed),
        t0.elapsed()
    );
}

#[test]
fn serve_refuses_a_bad_router_worker_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for bad in ["0", "257", "two", "-1"] {
        let o = slipway_e2e::run(
            std::process::Command::new(slipway_e2e::slipway_bin())
                .args([
                    "serve",
                    "--http-listen",
                    "127.0.0.1:0",
                    "--ssh-listen",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(&data)
                .arg(format!("--router-workers={bad}")),
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--router-workers={bad}: {}",
            text(&o)
        );
        assert!(
            err.contains("--router-workers"),
            "--router-workers={bad}: {err}"
        );
        assert!(
            !data.exists(),
            "--router-workers={bad} created the data dir"
        );
    }
}

#[test]
fn routes_come_from_the_config() {
    let server = Server::start();
    let app = load_app(&server);
    // api.example.com is not under demo.localhost: a server admin assigns it to the
    // project, which the first push creates.
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let o = server.ssh(&server.key, "git", "domain add demo api.example.com");
    assert!(o.status.success(), "{}", text(&o));
    app.write(
        ".platform/routes.yaml",
        r#""https://{default}/":
    type: upstream
    upstream: "hello:http"
"http://{default}/":
    type: redirect
    to: "https://{default}/"
"https://www.{default}/":
    type: redirect
    to: "https://{default}/"
"https://{default}/old":
    type: redirect
    to: "https://{default}/new"
"https://api.example.com/":
    type: upstream
    upstream: "hello:http"
"https://elsewhere.{default}/":
    type: redirect
    to: "https://example.org/"
"#,
    );
    app.commit("routes");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains(
            "switch routes: main.demo.localhost, www.main.demo.localhost, api.example.com"
        ),
        "{out}"
    );
    let port = server.http_port;
    let mut c = Client::connect(port).expect("connect");

    // https://{default}/ is served on http; the http -> https redirect does not loop.
    let a = c.request("GET", HOST, "/", b"").expect("GET");
    assert_eq!((a.status, page_release(&a.body)), (200, Ok(1)));
    let a = c
        .request("GET", &format!("www.{HOST}:{port}"), "/some/page?x=1", b"")
        .expect("GET www");
    assert_eq!(a.status, 301);
    assert_eq!(
        a.header("location"),
        Some(format!("http://{HOST}:{port}/some/page?x=1").as_str())
    );
    let a = c.request("GET", HOST, "/old/thing", b"").expect("GET old");
    assert_eq!(a.status, 301);
    assert_eq!(
        a.header("location"),
        Some(format!("http://{HOST}:{port}/new/thing").as_str())
    );
    let a = c
        .request("GET", "elsewhere.main.demo.localhost", "/x", b"")
        .expect("GET elsewhere");
    assert_eq!(a.header("location"), Some("https://example.org/x"));
    // An explicit domain is production's.
    let a = c
        .request("GET", "api.example.com", "/", b"")
        .expect("GET api");
    assert_eq!((a.status, page_release(&a.body)), (200, Ok(1)));

    // A branch gets generated hosts; the explicit domain stays with production.
    app.write("VERSION", "2\n");
    app.commit("v2 on dev");
    let (ok, out) = push(&server, &app, "dev");
    assert!(ok, "{out}\n{}", server.server_log());
    let a = c
        .request("GET", "api.example.com.dev.demo.localhost", "/", b"")
        .expect("GET dev api");
    assert_eq!((a.status, page_release(&a.body)), (200, Ok(2)), "dev's app");
    let a = c
        .request("GET", "dev.demo.localhost", "/", b"")
        .expect("GET dev");
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).starts_with("release-2|"));
    let a = c
        .request("GET", "api.example.com", "/", b"")
        .expect("GET api");
    assert!(
        String::from_utf8_lossy(&a.body).starts_with("release-1|"),
        "production keeps its domain"
    );
    // Unknown hosts: a short 404 naming nothing internal.
    let a = c
        .request("GET", "nope.example.com", "/", b"")
        .expect("GET nope");
    assert_eq!(a.status, 404);
    assert!(!String::from_utf8_lossy(&a.body).contains("127.0.0.1"));
}
