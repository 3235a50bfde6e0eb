//! HTTP/1.1 over TLS on the router's own HTTP/1.1 path (issue 15, spec section 11): many
//! requests kept alive on one TLS connection, pipelined requests, static files of
//! `web.locations`, a request the path hands to hyper midway (a POST, then a WebSocket),
//! a malformed request answered 400, and a redeploy under HTTPS load on kept-alive
//! connections with no request lost. The client is python's `ssl` with ALPN `http/1.1`
//! only (curl would pick h2, which hyper serves).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use slipway_e2e::{free_port, run, text, App, Server};

const HOST: &str = "main.tlsh1.localhost";

/// The app: GET answers `proto=X-Forwarded-Proto path=PATH release=VERSION`; POST
/// answers `posted=BODY`; `/ws` switches protocols and echoes what it gets.
const APP_SERVER: &str = r#"import http.server, os
VERSION = open("VERSION").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/ws":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(1024)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        proto = self.headers.get("X-Forwarded-Proto")
        self.send(("proto=%s path=%s release=%s" % (proto, self.path, VERSION)).encode())
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.send(b"posted=" + self.rfile.read(n))
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const APP_CONFIG: &str = "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\n  locations:\n    '/static':\n      root: public/static\n      passthru: false\n";

/// The app over HTTPS, and over plain HTTP too (a route written only `https://` would
/// redirect plain HTTP to the HTTPS listener, as on Platform.sh).
const ROUTES: &str = "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"http://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n";

/// The client: `client.py HOST PORT CA MODE [ARG]`, HTTP/1.1 over TLS (ALPN http/1.1),
/// printing what it saw one fact a line.
const CLIENT: &str = r#"import hashlib, os, socket, ssl, sys, time
host, port, ca, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
arg = sys.argv[5] if len(sys.argv) > 5 else ""
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])

def connect():
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
    assert s.selected_alpn_protocol() == "http/1.1", s.selected_alpn_protocol()
    return Conn(s)

class Conn:
    def __init__(self, s):
        self.s, self.buf = s, b""
    def fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("closed")
        self.buf += chunk
    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        out, _, self.buf = self.buf.partition(b"\r\n")
        return out
    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        fields = [l.split(":", 1) for l in lines[1:]]
        get = lambda n: next((v.strip() for k, v in fields if k.lower() == n), None)
        if get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.line(), 16)
                body += self.take(size)
                self.line()
                if size == 0:
                    break
        else:
            body = self.take(int(get("content-length") or 0))
        return lines[0], [k for k, _ in fields], get, body
    def closed(self):
        try:
            self.s.settimeout(5)
            return self.s.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

def get(path):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()

if mode == "keepalive":
    c = connect()
    ok = 0
    for i in range(int(arg)):
        c.s.sendall(get("/n/%d" % i))
        status, names, field, body = c.response()
        if status == "HTTP/1.1 200 OK" and body == ("proto=https path=/n/%d release=1" % i).encode():
            ok += 1
        if i == 0:
            print("names " + " ".join(names))
    print("keepalive ok %d" % ok)
    # A request with a body goes to hyper, on the same connection; and the next GET too.
    c.s.sendall(("POST /p HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello" % host).encode())
    status, _, _, body = c.response()
    print("post %s %s" % (status, body.decode()))
elif mode == "pipeline":
    c = connect()
    c.s.sendall(get("/a") + get("/b") + get("/static/small.txt") + get("/c"))
    for _ in range(4):
        status, _, _, body = c.response()
        print("%s %s" % (status, body.decode()))
elif mode == "mixed":
    c = connect()
    c.s.sendall(get("/before"))
    print(c.response()[3].decode())
    c.s.sendall(("POST /p HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello" % host).encode())
    print(c.response()[3].decode())
    c.s.sendall(get("/after"))
    print(c.response()[3].decode())
elif mode == "static":
    c = connect()
    c.s.sendall(get("/static/big.bin"))
    status, _, field, body = c.response()
    print("%s %s %s" % (status, len(body), hashlib.sha256(body).hexdigest()))
    c.s.sendall(get("/static/big.bin").replace(b"GET", b"HEAD", 1))
    while b"\r\n\r\n" not in c.buf:
        c.fill()
    head, _, c.buf = c.buf.partition(b"\r\n\r\n")
    print("head " + head.decode().split("\r\n")[0])
    c.s.sendall(get("/n/1"))
    print(c.response()[3].decode())
elif mode == "ws":
    c = connect()
    c.s.sendall(get("/first"))
    print(c.response()[3].decode())
    c.s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % host).encode())
    while b"\r\n\r\n" not in c.buf:
        c.fill()
    head, _, c.buf = c.buf.partition(b"\r\n\r\n")
    print(head.decode().split("\r\n")[0])
    c.s.sendall(b"ping-over-tls")
    print(c.take(len(b"ping-over-tls")).decode())
elif mode == "gets":
    # The comma-separated paths of ARG on one connection: "STATUS BODY" each.
    c = connect()
    for path in arg.split(","):
        c.s.sendall(get(path))
        status, _, _, body = c.response()
        print("%s %s" % (status, body.decode().strip()))
elif mode == "posts":
    # A POST whose body comes with its head, one whose body comes after it (another TLS
    # record), then a GET, on one connection: "STATUS BODY" each.
    c = connect()
    for split in (False, True):
        head = ("POST /form HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\n" % host).encode()
        if split:
            c.s.sendall(head)
            time.sleep(0.3)
            c.s.sendall(b"hello")
        else:
            c.s.sendall(head + b"hello")
        status, _, _, body = c.response()
        print("%s %s" % (status, body.decode().strip()))
    c.s.sendall(get("/last"))
    status, _, _, body = c.response()
    print("%s %s" % (status, body.decode().strip()))
elif mode == "chunked":
    # A chunked POST with Expect: 100-continue whose chunks come one by one after the
    # 100 (each its own TLS record, with pauses), then a GET, on one connection; then a
    # chunked body over the router's cap on another.
    c = connect()
    c.s.sendall(("POST /late HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n"
                 "Expect: 100-continue\r\n\r\n" % host).encode())
    print(c.line().decode())
    c.line()
    for piece in (b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"):
        time.sleep(0.2)
        c.s.sendall(piece)
    status, _, _, body = c.response()
    print("%s %s" % (status, body.decode().strip()))
    c.s.sendall(get("/hello.txt"))
    status, _, _, body = c.response()
    print("%s %s" % (status, body.decode().strip()))
    c = connect()
    c.s.sendall(("POST /big HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % host).encode())
    try:
        for _ in range(3):
            c.s.sendall(b"80000\r\n" + b"x" * 0x80000 + b"\r\n")
    except (ConnectionError, ssl.SSLError):
        pass
    status, _, _, body = c.response()
    print("%s %s" % (status, body.decode().strip()))
elif mode == "raw":
    c = connect()
    c.s.sendall(arg.encode().decode("unicode_escape").encode("latin-1"))
    status, _, _, body = c.response()
    print(status)
    print(body.decode().strip())
    print("closed" if c.closed() else "open")
elif mode in ("load", "loadfresh"):
    # Kept-alive connections (`loadfresh`: a new connection for every request) asking
    # until the file ARG exists; a connection the server closes (connection: close) is
    # opened again. Every answer or error is counted.
    answers, failures, connections = {}, [], 0
    c = None
    while not os.path.exists(arg):
        try:
            if c is None:
                c = connect()
                connections += 1
            c.s.sendall(get("/"))
            status, _, field, body = c.response()
            key = "%s %s" % (status, body.decode())
            answers[key] = answers.get(key, 0) + 1
            if sum(answers.values()) == 1:
                open("%s.started.%d" % (arg, os.getpid()), "w").close()
            if mode == "loadfresh" or (field("connection") or "").lower() == "close":
                c.s.close()
                c = None
        except Exception as e:
            failures.append(repr(e))
            c = None
    for key, n in sorted(answers.items()):
        print("answer %d %s" % (n, key))
    print("connections %d" % connections)
    for f in failures:
        print("failure " + f)
"#;

/// A PHP app: its front controller says what PHP was told of the scheme.
const PHP_CONFIG: &str = "name: hello\ntype: php:8.4\nweb:\n  locations:\n    '/':\n      root: web\n      passthru: /index.php\n      scripts: true\n";

const PHP_INDEX: &str = "<?php\necho 'https=' . ($_SERVER['HTTPS'] ?? '') . ' scheme=' . $_SERVER['REQUEST_SCHEME'] . ' port=' . $_SERVER['SERVER_PORT'] . ' proto=' . ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '') . ' uri=' . $_SERVER['REQUEST_URI'] . ' body=' . file_get_contents('php://input');\n";

#[test]
fn php_over_tls_is_told_https_on_a_kept_alive_connection_with_static_files() {
    let (server, https_port) = Server::start_https(&[("SLIPWAY_ROUTER_MAX_BODY", "1M")]);
    let ca = server.data.join("ca").join("ca.pem");
    let app = App::demo(server.dir.path(), "tlsh1-php");
    std::fs::remove_file(app.dir.join("server.py")).expect("no python server");
    app.write(".platform.app.yaml", PHP_CONFIG);
    app.write(".platform/routes.yaml", ROUTES);
    app.write("web/index.php", PHP_INDEX);
    app.write("web/hello.txt", "static over tls\n");
    app.commit("php over tls");
    server.push_ok(&app, "tlsh1");
    let script = server.dir.path().join("h1_client.py");
    std::fs::write(&script, CLIENT).expect("client script");
    // A static file, PHP (FastCGI) and a static file again, all on the router's own path,
    // on one TLS connection.
    let out = client(
        &script,
        https_port,
        &ca,
        "gets",
        "/hello.txt,/a/b?c=1,/hello.txt",
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK static over tls\n\
         HTTP/1.1 200 OK https=on scheme=https port=443 proto=https uri=/a/b?c=1 body=\n\
         HTTP/1.1 200 OK static over tls\n",
        "{}",
        server.server_log()
    );
    // PHP with a body over TLS: the body that came with the head and one still to come
    // alike, on the own path (read through the TLS state); the connection goes on.
    let out = client(&script, https_port, &ca, "posts", "");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK https=on scheme=https port=443 proto=https uri=/form body=hello\n\
         HTTP/1.1 200 OK https=on scheme=https port=443 proto=https uri=/form body=hello\n\
         HTTP/1.1 200 OK https=on scheme=https port=443 proto=https uri=/last body=\n",
        "{}",
        server.server_log()
    );
    // A chunked body arriving late over TLS after a 100 Continue, then a static file on
    // the same connection; a chunked body over the cap (1M) refused by the own path's
    // 413 (hyper's path would have taken it whole).
    let out = client(&script, https_port, &ca, "chunked", "");
    assert_eq!(
        out,
        "HTTP/1.1 100 Continue\n\
         HTTP/1.1 200 OK https=on scheme=https port=443 proto=https uri=/late body=hello world\n\
         HTTP/1.1 200 OK static over tls\n\
         HTTP/1.1 413 Payload Too Large 413 Content Too Large: the request body is over the router's limit.\n",
        "{}",
        server.server_log()
    );
    // Plain HTTP is told http (the same app, no HTTPS).
    let plain = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H"])
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://127.0.0.1:{}/x", server.http_port)));
    assert_eq!(
        text(&plain),
        "https= scheme=http port=80 proto=http uri=/x body=",
        "plain HTTP"
    );
}

/// A server with `--https-listen` and the app pushed: (server, HTTPS port, CA file,
/// client script, app).
fn deployed(env: &[(&str, &str)]) -> (Server, u16, PathBuf, PathBuf, App) {
    let (server, https_port) = Server::start_https(env);
    let ca = server.data.join("ca").join("ca.pem");
    let app = App::demo(server.dir.path(), "tlsh1-app");
    app.write("server.py", APP_SERVER);
    app.write(".platform.app.yaml", APP_CONFIG);
    app.write(".platform/routes.yaml", ROUTES);
    app.write("public/static/small.txt", "small static file\n");
    app.commit("h1 over tls");
    server.push_ok(&app, "tlsh1");
    let client = server.dir.path().join("h1_client.py");
    std::fs::write(&client, CLIENT).expect("client script");
    (server, https_port, ca, client, app)
}

/// Run the client script in `mode`; its output (asserting it succeeded).
fn client(script: &Path, port: u16, ca: &Path, mode: &str, arg: &str) -> String {
    let o = run(Command::new("python3")
        .arg(script)
        .arg(HOST)
        .arg(port.to_string())
        .arg(ca)
        .arg(mode)
        .arg(arg));
    assert!(o.status.success(), "client {mode}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn http1_over_tls_keeps_alive_pipelines_serves_files_hands_over_and_refuses_bad_heads() {
    let (server, port, ca, script, app) = deployed(&[]);
    let log = || server.server_log();

    // 200 requests on one TLS connection, each told it came over https. The app's head
    // arrives as the app wrote it (field names as sent: the router's own path passes heads
    // through as bytes, where hyper would have lowered them).
    let out = client(&script, port, &ca, "keepalive", "200");
    assert!(out.contains("keepalive ok 200\n"), "{out}\n{}", log());
    let names = out.lines().find(|l| l.starts_with("names ")).unwrap_or("");
    assert!(
        names.split(' ').any(|n| n == "Content-Length"),
        "served by the router's own HTTP/1.1 path: {names}"
    );
    assert!(out.contains("post HTTP/1.1 200 OK posted=hello\n"), "{out}");

    // Pipelined: four requests in one write, four answers in order (one a static file).
    let out = client(&script, port, &ca, "pipeline", "");
    assert_eq!(
        out,
        "HTTP/1.1 200 OK proto=https path=/a release=1\n\
         HTTP/1.1 200 OK proto=https path=/b release=1\n\
         HTTP/1.1 200 OK small static file\n\n\
         HTTP/1.1 200 OK proto=https path=/c release=1\n",
        "{}",
        log()
    );

    // A request hyper serves midway (a body), and the connection goes on with it.
    let out = client(&script, port, &ca, "mixed", "");
    assert_eq!(
        out,
        "proto=https path=/before release=1\nposted=hello\nproto=https path=/after release=1\n"
    );

    // A static file of several TLS records arrives whole; HEAD has no body; the connection
    // goes on.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(app.dir.join("public/static/big.bin"), &big).expect("big file");
    app.commit("big file");
    server.push_ok(&app, "tlsh1");
    let sum = run(Command::new("sha256sum").arg(app.dir.join("public/static/big.bin")));
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split(' ')
        .next()
        .unwrap_or("")
        .to_string();
    let out = client(&script, port, &ca, "static", "");
    assert_eq!(
        out,
        format!(
            "HTTP/1.1 200 OK {} {sum}\nhead HTTP/1.1 200 OK\nproto=https path=/n/1 release=1\n",
            big.len()
        ),
        "{}",
        log()
    );

    // A WebSocket after a request on the same TLS connection.
    let out = client(&script, port, &ca, "ws", "");
    assert_eq!(
        out,
        "proto=https path=/first release=1\nHTTP/1.1 101 Switching Protocols\nping-over-tls\n"
    );

    // Malformed heads: 400 and the connection closed, over TLS as over TCP.
    let bare_lf = format!("GET / HTTP/1.1\\nHost: {HOST}\\r\\n\\r\\n");
    let out = client(&script, port, &ca, "raw", &bare_lf);
    assert_eq!(
        out,
        "HTTP/1.1 400 Bad Request\n400 Bad Request: a line of the request head ends in LF without CR.\nclosed\n"
    );
    let two_hosts = format!("GET / HTTP/1.1\\r\\nHost: {HOST}\\r\\nHost: other\\r\\n\\r\\n");
    let out = client(&script, port, &ca, "raw", &two_hosts);
    assert_eq!(
        out,
        "HTTP/1.1 400 Bad Request\n400 Bad Request: the request has more than one Host field.\nclosed\n"
    );
    let garbage = format!("GET / HTTP/1.1\\r\\nHost: {HOST}\\r\\nBad Field\\r\\n\\r\\n");
    let out = client(&script, port, &ca, "raw", &garbage);
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\n"), "{out}");
    assert!(out.ends_with("closed\n"), "{out}");

    // And a well-formed request still works afterwards.
    let out = client(&script, port, &ca, "keepalive", "3");
    assert!(out.contains("keepalive ok 3\n"), "{out}");
}

#[test]
fn a_redeploy_under_https_keep_alive_load_loses_no_request() {
    let (server, port, ca, script, app) = deployed(&[]);
    let answers = under_load(port, &ca, &script, || {
        app.write("VERSION", "2\n");
        app.commit("v2");
        let o = server.git(&app.dir, &["push", &server.remote("tlsh1"), "main"]);
        assert!(o.status.success(), "push v2: {}", text(&o));
    });
    assert!(
        answers[0] > 0 && answers[1] > 0,
        "both releases answered: {answers:?}"
    );
    println!(
        "{} requests over TLS during the switch, 0 failed",
        answers[0] + answers[1]
    );
}

#[test]
fn serve_upgrade_under_https_keep_alive_load_loses_no_request_and_metrics_count_http1_over_tls() {
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let (mut server, port, ca, script, _app) =
        deployed(&[("SLIPWAY_METRICS_LISTEN", &metrics_listen)]);
    let mut code = None;
    let answers = under_load(port, &ca, &script, || {
        code = server.upgrade(Duration::from_secs(60), |_| {});
    });
    assert_eq!(code, Some(0), "{}", server.server_log());
    assert!(answers[0] > 20, "too few requests to tell: {answers:?}");
    println!(
        "{} requests over TLS during the upgrade, 0 failed",
        answers[0]
    );

    // The new server counts the requests of the router's own path over TLS.
    let env = "slipway_router_requests_total{environment=\"tlsh1/main\",class=\"2xx\"}";
    let before = metric(metrics_port, env);
    let out = client(&script, port, &ca, "keepalive", "50");
    assert!(out.contains("keepalive ok 50\n"), "{out}");
    let after = metric(metrics_port, env);
    assert_eq!(after - before, 51.0, "50 GETs and a POST counted");
}

/// The value of the sample `name` (with its labels) on the metrics listener, 0 if absent.
fn metric(port: u16, name: &str) -> f64 {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/metrics")));
    assert!(o.status.success(), "metrics: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Four kept-alive HTTPS clients and one opening a connection per request ask all
/// along while `during` runs; asserts that none failed and every answer is release 1 or
/// 2: how many of each.
fn under_load(port: u16, ca: &Path, script: &Path, during: impl FnOnce()) -> [u64; 2] {
    let stop = script.with_file_name(format!("stop-load-{port}"));
    let loaders: Vec<_> = ["load", "load", "load", "load", "loadfresh"]
        .into_iter()
        .map(|mode| {
            let (script, ca, stop) = (script.to_path_buf(), ca.to_path_buf(), stop.clone());
            std::thread::spawn(move || client(&script, port, &ca, mode, &stop.to_string_lossy()))
        })
        .collect();
    // Every client has its first answer before `during` starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let started = || {
        std::fs::read_dir(script.parent().expect("script dir"))
            .expect("script dir")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("stop-load-{port}.started."))
            })
            .count()
    };
    while started() < loaders.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the clients did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    during();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&stop, "").expect("stop file");
    let mut seen = [0u64; 2];
    for loader in loaders {
        let out = loader.join().expect("load thread");
        let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("failure")).collect();
        assert!(failures.is_empty(), "requests failed: {failures:?}\n{out}");
        for line in out.lines().filter(|l| l.starts_with("answer ")) {
            let mut parts = line.splitn(3, ' ');
            let n: u64 = parts.nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            match parts.next() {
                Some("HTTP/1.1 200 OK proto=https path=/ release=1") => seen[0] += n,
                Some("HTTP/1.1 200 OK proto=https path=/ release=2") => seen[1] += n,
                other => panic!("an unexpected answer: {other:?}\n{out}"),
            }
        }
    }
    seen
}
