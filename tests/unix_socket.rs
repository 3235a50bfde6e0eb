//! `web.upstream.socket_family: unix` end to end: the app listens on `$SOCKET`
//! (`/run/app.sock`), not on `$PORT`; the router reaches it through the socket's host
//! folder (plain requests and a WebSocket); redeploys switch between two releases'
//! sockets under load with no failed request; a retired release's socket folder is
//! removed; an app that never creates its socket fails the health phase, clearly, while
//! the old release keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, LoadTally, Server, Ws};

const HOST: &str = "main.demo.localhost";

/// The app ([`slipway_e2e::py_release_app!`]) on the unix socket `$SOCKET`: `GET /`
/// answers `release-N|` repeated over 2 KB (keep-alive, Content-Length), `GET /env` what it
/// sees of `PORT` and `SOCKET`, `GET /ws` is a WebSocket echoing each text frame as
/// `release-N:PAYLOAD`.
const SERVER: &str = slipway_e2e::py_release_app!(
    2048,
    r#"class S(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 256

path = os.environ["SOCKET"]
print("listening on", path, flush=True)
S(path, H).serve_forever()
"#
);

const APP_YAML: &str = "name: app\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"release-$(cat VERSION)\" > build.txt\nweb:\n  upstream:\n    socket_family: unix\n  commands:\n    start: python3 server.py\n";

fn push(server: &Server, app: &App) -> (bool, String) {
    let o = server.git(
        &app.dir,
        &["push", "-f", &server.remote("demo"), "HEAD:main"],
    );
    (o.status.success(), text(&o))
}

/// `GET path` on a fresh connection through the router: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    slipway_e2e::http_get(port, HOST, path).unwrap_or((0, String::new()))
}

/// The release number a page of `release-N|` units is from, if it is whole and from one.
fn page_release(body: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(body).ok()?;
    let unit = s.split('|').next()?;
    let n = unit.strip_prefix("release-")?.parse().ok()?;
    (s.len() >= 1000 && s.split('|').filter(|u| !u.is_empty()).all(|u| u == unit)).then_some(n)
}

/// Keep-alive GETs of `/` on one client connection until `stop`.
fn get_loop(port: u16, stop: &AtomicBool, tally: &LoadTally) {
    let connect = || -> std::io::Result<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(s)
    };
    let Ok(mut conn) = connect() else {
        return tally.fail("GET client could not connect".into());
    };
    while !stop.load(Ordering::Relaxed) {
        match keep_alive_get(&mut conn) {
            Ok((200, body)) => match page_release(&body) {
                Some(n) => tally.saw(n),
                None => tally.fail(format!(
                    "GET: mixed or cut page {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                )),
            },
            Ok((status, body)) => tally.fail(format!(
                "GET: status {status} {:?}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => {
                tally.fail(format!("GET: connection error {e}"));
                match connect() {
                    Ok(c) => conn = c,
                    Err(_) => return,
                }
            }
        }
    }
}

/// One GET of `/` on a kept-alive connection; the answer must have a Content-Length.
fn keep_alive_get(conn: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    write!(conn, "GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n")?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if conn.read(&mut b)? == 0 {
            return Err(std::io::Error::other("closed in the head"));
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no content-length in {head:?}")))?;
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok((status, body))
}

fn ws_loop(port: u16, stop: &AtomicBool, tally: &LoadTally) {
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut ws = match Ws::connect(port, HOST) {
            Ok(ws) => ws,
            Err(e) => return tally.fail(format!("WebSocket: {e}")),
        };
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let msg = format!("m{seq}");
            match ws.send(msg.as_bytes()).and_then(|()| ws.recv()) {
                Ok(Some((_, data))) => {
                    let text = String::from_utf8_lossy(&data).to_string();
                    match text.split_once(':') {
                        Some((rel, echoed)) if echoed == msg && rel.starts_with("release-") => {
                            tally.ws_messages.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tally.fail(format!("WebSocket: unexpected echo {text:?}")),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tally.fail(format!("WebSocket: {e}"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The socket folders on the host (`DATA/run/CONTAINER`), by name.
fn socket_dirs(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(server.data.join("run"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Wait until only the socket folder `live` is left; what is there at the end.
fn wait_only(server: &Server, live: &str, within: Duration) -> Vec<String> {
    let t = Instant::now();
    loop {
        let names = socket_dirs(server);
        if names == [live] || t.elapsed() > within {
            return names;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_app_on_a_unix_socket_serves_switches_under_load_and_fails_health_clearly() {
    let server = Server::start_with(&[
        ("SLIPWAY_DRAIN_TIMEOUT", "3"),
        ("SLIPWAY_HEALTH_TIMEOUT", "8"),
    ]);
    let app = App {
        dir: server.dir.path().join("socket-app"),
    };
    std::fs::create_dir_all(&app.dir).expect("app dir");
    app.write(".platform.app.yaml", APP_YAML);
    app.write("server.py", SERVER);
    app.write("VERSION", "1\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("v1");
    let (ok, out) = push(&server, &app);
    assert!(ok, "first push failed:\n{out}\n{}", server.server_log());
    assert!(
        out.contains("on unix socket /run/app.sock"),
        "the push names the socket:\n{out}"
    );
    let port = server.http_port;

    // It answers through the router, on $SOCKET; $PORT is not set for it.
    let (status, body) = get(port, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(page_release(body.as_bytes()), Some(1), "{body}");
    let (status, env) = get(port, "/env");
    assert_eq!(status, 200, "{env}");
    let env: serde_json::Value = serde_json::from_str(&env).expect("json");
    assert_eq!(env["SOCKET"], "/run/app.sock");
    assert_eq!(env["PORT"], serde_json::Value::Null, "no $PORT: {env}");
    // The container's /run holds its socket and its config.json, nothing of the host's.
    assert_eq!(
        env["run"],
        serde_json::json!(["app.sock", "config.json"]),
        "{env}"
    );
    // A request body (hyper's path) goes through the socket whole.
    let upload: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let (status, _, echoed) = slipway_e2e::raw_http(
        port,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{upload}",
            upload.len()
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(echoed, format!("release-1:{upload}").into_bytes());

    // On the host: the socket's folder is the project's user's alone, in a root-only parent.
    let first = socket_dirs(&server);
    assert_eq!(first.len(), 1, "{first:?}");
    let first = first[0].clone();
    assert!(first.starts_with("demo.main.app.r"), "{first}");
    let dir = server.data.join("run").join(&first);
    let meta = std::fs::metadata(&dir).expect("socket folder of release 1");
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_ne!(meta.uid(), 0, "owned by the project's user, not root");
    let parent = std::fs::metadata(server.data.join("run")).expect("DATA/run");
    assert_eq!((parent.uid(), parent.mode() & 0o777), (0, 0o700));
    assert!(dir.join("app.sock").exists());
    // Nothing answers on the port the release would have had without a socket.
    let shell = server.ssh(
        &server.key,
        "main.demo",
        "python3 -c 'import socket; s=socket.socket(); print(s.connect_ex((\"127.0.0.1\", 11000)))'; ls -A /run",
    );
    let shell_out = text(&shell);
    assert!(shell.status.success(), "{shell_out}");
    assert!(!shell_out.lines().any(|l| l.trim() == "0"), "{shell_out}");

    // Redeploys under load: keep-alive GETs and a WebSocket, no failed request.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(LoadTally::default());
    let mut load = Vec::new();
    for i in 0..4 {
        let (stop, tally) = (stop.clone(), tally.clone());
        load.push(std::thread::spawn(move || match i {
            0..=2 => get_loop(port, &stop, &tally),
            _ => ws_loop(port, &stop, &tally),
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    for n in 2..=4u32 {
        app.write("VERSION", &format!("{n}\n"));
        app.commit(&format!("v{n}"));
        let (ok, out) = push(&server, &app);
        assert!(ok, "deploy {n} failed:\n{out}\n{}", server.server_log());
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let ok = tally.assert_none_failed();
    let seen = tally.releases_seen();
    assert!(
        seen.contains(&4),
        "the last release never answered: {seen:?}"
    );
    assert!(ok > 100, "only {ok} requests ran");
    assert!(
        tally.ws_messages.load(Ordering::Relaxed) > 20,
        "the WebSocket barely ran"
    );
    eprintln!(
        "{ok} requests, {} WebSocket messages, releases seen {seen:?}",
        tally.ws_messages.load(Ordering::Relaxed)
    );

    // Retired releases' socket folders are gone; the live one's is there.
    let live = socket_dirs(&server)
        .into_iter()
        .max_by_key(|n| n.rsplit('r').next().and_then(|r| r.parse::<u32>().ok()))
        .expect("a socket folder");
    assert_ne!(live, first);
    let left = wait_only(&server, &live, Duration::from_secs(10));
    assert_eq!(
        left,
        std::slice::from_ref(&live),
        "retired releases' socket folders left behind"
    );
    assert!(server
        .data
        .join("run")
        .join(&live)
        .join("app.sock")
        .exists());

    // An app that never creates its socket (it listens on a port instead) fails the health
    // phase, saying so; the old release keeps serving.
    app.write(
        ".platform.app.yaml",
        &APP_YAML.replace("python3 server.py", "python3 -m http.server 8000"),
    );
    app.write("VERSION", "5\n");
    app.commit("v5 listens on a port");
    let (ok, out) = push(&server, &app);
    assert!(
        !ok,
        "a deploy that never creates its socket went live:\n{out}"
    );
    assert!(
        out.contains("health check failed")
            && out.contains("never created its unix socket $SOCKET (/run/app.sock)"),
        "{out}"
    );
    let (status, body) = get(port, "/");
    assert_eq!(status, 200, "{body}");
    assert_eq!(page_release(body.as_bytes()), Some(4), "{body}");
    let left = wait_only(&server, &live, Duration::from_secs(10));
    assert_eq!(
        left,
        [live],
        "the failed attempt's socket folder was left behind"
    );
}

/// The wagtail template's shape: gunicorn from PyPI (installed by the build hook)
/// started with `-b unix:$SOCKET`, a WSGI app answering through the router.
const GUNICORN_APP_YAML: &str = r#"name: app
type: python:3.11
hooks:
  build: |
    set -eu
    pip install gunicorn
web:
  commands:
    start: "gunicorn -w 2 -b unix:$SOCKET myapp:application"
  upstream:
    socket_family: unix
    protocol: http
"#;

const GUNICORN_WSGI: &str = r#"import os
def application(environ, start_response):
    body = ("gunicorn on " + os.environ["SOCKET"] + " port=" + str(os.environ.get("PORT"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

/// A plain TCP app of another project, whose shell tries to reach the first project's
/// socket.
const OTHER_APP_YAML: &str =
    "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT\n";

#[test]
fn gunicorn_from_pypi_serves_on_the_socket_and_another_tenant_cannot_reach_it() {
    let mut server = Server::start_with(&[]);
    let app = App {
        dir: server.dir.path().join("gunicorn-app"),
    };
    std::fs::create_dir_all(&app.dir).expect("app dir");
    app.write(".platform.app.yaml", GUNICORN_APP_YAML);
    app.write("myapp.py", GUNICORN_WSGI);
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("gunicorn");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert!(out.contains("Successfully installed"), "{out}");
    // socket_family is acted on: no warning about it.
    assert!(!out.contains("socket_family"), "{out}");
    let (status, body) = get(server.http_port, "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "gunicorn on /run/app.sock port=None")
    );
    let socket = server
        .data
        .join("run")
        .join(socket_dirs(&server).first().expect("a socket folder"))
        .join("app.sock");
    assert!(socket.exists());

    // Another project's container cannot reach it: the host path is not there, and its
    // own /run holds nothing of the first project's.
    let other = App {
        dir: server.dir.path().join("other-app"),
    };
    std::fs::create_dir_all(&other.dir).expect("app dir");
    other.write(".platform.app.yaml", OTHER_APP_YAML);
    other.git_ok(&["init", "-q", "-b", "main"]);
    other.commit("other");
    let o = server.git(
        &other.dir,
        &["push", "-f", &server.remote("other"), "HEAD:main"],
    );
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    let attempt = format!(
        "ls -A /run; python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.connect(\"{}\")' 2>&1 | tail -1",
        socket.display()
    );
    let o = server.ssh(&server.key, "main.other", &attempt);
    let said = text(&o);
    assert!(said.contains("FileNotFoundError"), "{said}");
    assert!(!said.contains("app.sock"), "{said}");
    // The legitimate path still works, and after a restart of the server too (the
    // release's socket is part of its stored spec; the running app is adopted).
    let (status, _) = get(server.http_port, "/");
    assert_eq!(status, 200);
    server.stop();
    server.serve();
    let (status, body) = get(server.http_port, "/");
    assert_eq!(
        (status, body.as_str()),
        (200, "gunicorn on /run/app.sock port=None")
    );
    assert!(
        socket.exists(),
        "a live release's socket folder removed at restore"
    );
}

#[test]
fn a_symbolic_link_at_socket_never_leads_the_router_to_a_host_socket() {
    let server = Server::start_with(&[("SLIPWAY_HEALTH_TIMEOUT", "5")]);
    // A socket of the host, outside any container, that answers HTTP: the target.
    let host_socket = server.dir.path().join("host-daemon.sock");
    let listener = std::os::unix::net::UnixListener::bind(&host_socket).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let reached = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = {
        let (reached, stop) = (reached.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        reached.fetch_add(1, Ordering::SeqCst);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhost secret",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let app = App {
        dir: server.dir.path().join("link-app"),
    };
    std::fs::create_dir_all(&app.dir).expect("app dir");
    app.write(
        ".platform.app.yaml",
        &APP_YAML.replace(
            "python3 server.py",
            &format!("ln -s {} $SOCKET && exec sleep 600", host_socket.display()),
        ),
    );
    app.write("server.py", SERVER);
    app.write("VERSION", "1\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("a link to a host socket");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "a release whose $SOCKET is a link went live:\n{out}");
    assert!(
        out.contains("something other than a unix socket at $SOCKET"),
        "{out}"
    );
    let (status, body) = get(server.http_port, "/");
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains("host secret"), "{body}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the host socket was reached"
    );

    // The legitimate app on the same server goes live.
    app.write(".platform.app.yaml", APP_YAML);
    app.commit("the real server");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}\n{}", server.server_log());
    let (status, body) = get(server.http_port, "/");
    assert_eq!(
        (status, page_release(body.as_bytes()).is_some()),
        (200, true),
        "{body}"
    );
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    stop.store(true, Ordering::Relaxed);
    daemon.join().expect("daemon thread");
}
