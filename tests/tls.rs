//! HTTPS (issue 15, spec section 11): `serve --https-listen` serves `https://` routes with
//! certificates of a local CA printed at start, negotiates h2 by ALPN, answers 301 on plain
//! HTTP for an `http://` route redirecting to `https://`, refuses a host no route knows,
//! and uses a certificate dropped into DATA/certs without a restart (a bad one is named
//! in the log and the host keeps being served); a route's HSTS is sent on its HTTPS
//! answers only, and the environment's URL says `https://`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{curl_https, free_port, run, text, App, Server};

/// The app: answers with the `X-Forwarded-Proto` it got (`/routes`: the URLs of its
/// `PLATFORM_ROUTES`).
const PROTO_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        body = ("proto=" + str(self.headers.get("X-Forwarded-Proto"))).encode()
        if self.path == "/routes":
            routes = json.loads(base64.b64decode(os.environ["PLATFORM_ROUTES"]))
            body = " ".join(sorted(routes)).encode()
"#
);

const HOST: &str = "main.tls.localhost";

/// `curl_https` arguments: over h2, the HTTP version and status written after the body.
const H2: &[&str] = &["--http2", "-w", " %{http_version} %{http_code}"];

/// The app `name` in `server`'s folder, `server_py` with `routes`, committed as `message`
/// and pushed to project `tls`, which must succeed: the app and what the push printed.
fn push_app(
    server: &Server,
    name: &str,
    server_py: &str,
    routes: &str,
    message: &str,
) -> (App, String) {
    let app = App::demo(server.dir.path(), name);
    app.write("server.py", server_py);
    app.write(".platform/routes.yaml", routes);
    app.commit(message);
    let o = server.git(&app.dir, &["push", &server.remote("tls"), "main"]);
    assert!(o.status.success(), "push: {}", text(&o));
    (app, text(&o))
}

#[test]
fn https_routes_are_served_with_the_local_ca_h2_and_a_redirect() {
    let (server, https_port) = Server::start_https(&[]);
    // The CA is made on first start and its path printed.
    let ca = server.data.join("ca").join("ca.pem");
    let log = server.server_log();
    assert!(
        log.contains(&format!(
            "https 127.0.0.1:{https_port} (local CA {})",
            ca.display()
        )),
        "start line names the CA: {log}"
    );
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("ca").join("ca.key"))
            .expect("ca.key")
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "the CA key is private");

    push_app(
        &server,
        "tls-app",
        PROTO_SERVER,
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"http://{default}/\":\n    type: redirect\n    to: \"https://{default}/\"\n",
        "https routes",
    );

    // HTTPS with the printed CA: the app, over h2, told it was https.
    let (ok, out, err) = curl_https(https_port, HOST, "/", &ca, H2);
    assert!(ok, "curl https: {out} {err}\n{}", server.server_log());
    assert_eq!(out, "proto=https 2 200");

    // The app's PLATFORM_ROUTES has the https:// route at its HTTPS URL.
    let (_, out, err) = curl_https(https_port, HOST, "/routes", &ca, &[]);
    // (The http:// redirect of the same host and path shares its key: the https:// one is kept.)
    assert_eq!(
        format!("{out}{err}"),
        format!("https://{HOST}:{https_port}/"),
        "PLATFORM_ROUTES"
    );

    // HTTP/1.1 over TLS too (ALPN http/1.1).
    let (_, out, err) = curl_https(
        https_port,
        HOST,
        "/",
        &ca,
        &["--http1.1", "-w", " %{http_version} %{http_code}"],
    );
    assert_eq!(format!("{out}{err}"), "proto=https 1.1 200");

    // Plain HTTP: the http:// route redirects to https:// with the HTTPS port.
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{redirect_url}", "-H"])
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://127.0.0.1:{}/x?y=1", server.http_port)));
    assert_eq!(
        text(&o),
        format!("301 https://{HOST}:{https_port}/x?y=1"),
        "redirect on plain HTTP"
    );

    // A host no route knows gets no certificate (nothing issued for arbitrary names).
    let (ok, out, _) = curl_https(https_port, "evil.localhost", "/", &ca, H2);
    assert!(!ok, "handshake for an unknown host refused: {out}");
    assert!(!server
        .data
        .join("certs")
        .join("evil.localhost.pem")
        .exists());

    // A bad certificate file: named in the log; the host is still served (local CA).
    let certs = server.data.join("certs");
    std::fs::write(certs.join(format!("{HOST}.pem")), "not a certificate").expect("pem");
    std::fs::write(certs.join(format!("{HOST}.key")), "not a key").expect("key");
    std::thread::sleep(Duration::from_millis(2500));
    let (ok, out, err) = curl_https(https_port, HOST, "/", &ca, H2);
    assert!(
        ok && out == "proto=https 2 200",
        "still served: {out} {err}"
    );
    let bad = certs.join(format!("{HOST}.pem"));
    assert!(
        server
            .server_log()
            .contains(&format!("{}: ", bad.display())),
        "the bad file is named: {}",
        server.server_log()
    );

    // A certificate dropped into certs/ is used without a restart.
    let own = server.dir.path().join("own");
    std::fs::create_dir_all(&own).expect("own dir");
    let o = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={HOST}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{HOST}"))
        .arg("-keyout")
        .arg(own.join("key.pem"))
        .arg("-out")
        .arg(own.join("cert.pem")));
    assert!(o.status.success(), "openssl: {}", text(&o));
    std::fs::copy(own.join("key.pem"), certs.join(format!("{HOST}.key"))).expect("key");
    std::fs::copy(own.join("cert.pem"), certs.join(format!("{HOST}.pem"))).expect("cert");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = curl_https(https_port, HOST, "/", &own.join("cert.pem"), H2);
        if ok {
            assert_eq!(out, "proto=https 2 200");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dropped certificate not used: {err}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // And the local CA's certificate is no longer what this host presents.
    let (ok, _, _) = curl_https(https_port, HOST, "/", &ca, H2);
    assert!(!ok, "the host now presents the dropped certificate");
}

/// The app of the HSTS test: `/url` answers its `SLIPWAY_URL`, and `/own-hsts` sends its
/// own `Strict-Transport-Security`.
const URL_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        body = os.environ["SLIPWAY_URL"].encode()
        if self.path == "/own-hsts":
            body = b"own"
            self.send_response(200)
            self.send_header("Strict-Transport-Security", "max-age=60")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
"#
);

/// The response heads (lowercased) of `curl ARGS` to `urls` over HTTPS on the server's
/// HTTPS port, trusting `ca`, one after the other on one connection where curl can.
fn heads_over_https(port: u16, ca: &Path, args: &[&str], urls: &[&str]) -> String {
    let o = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
        ])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{HOST}:{port}:127.0.0.1"))
        .args(args)
        .args(urls.iter().map(|u| format!("https://{HOST}:{port}{u}"))));
    assert!(o.status.success(), "curl: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_ascii_lowercase()
}

#[test]
fn hsts_is_sent_on_https_answers_only_and_the_url_says_https() {
    let (server, https_port) = Server::start_https(&[]);
    let ca = server.data.join("ca").join("ca.pem");
    let (_, pushed) = push_app(
        &server,
        "hsts-app",
        URL_SERVER,
        "\"https://{default}/\":\n  type: upstream\n  upstream: \"hello:http\"\n  tls:\n    strict_transport_security:\n      enabled: true\n      include_subdomains: true\n\"http://{default}/\":\n  type: redirect\n  to: \"https://{default}/\"\n\"http://{default}/plain\":\n  type: upstream\n  upstream: \"hello:http\"\n",
        "https routes with HSTS",
    );
    let url = format!("https://{HOST}:{https_port}/");
    // The push output and SLIPWAY_URL name the environment's https:// URL.
    assert!(
        pushed.contains(&format!("-----> live: {url} (release 1")),
        "{pushed}"
    );
    let (_, out, err) = curl_https(https_port, HOST, "/url", &ca, &[]);
    assert_eq!(format!("{out}{err}"), url, "SLIPWAY_URL");

    let hsts = "strict-transport-security: max-age=31536000; includesubdomains\r\n";
    // Over h2, and over HTTP/1.1 for two requests on one kept-alive connection.
    let h2 = heads_over_https(https_port, &ca, &["--http2"], &["/"]);
    assert!(h2.starts_with("http/2 200") && h2.contains(hsts), "{h2}");
    let h1 = heads_over_https(https_port, &ca, &["--http1.1"], &["/", "/x"]);
    assert_eq!(h1.matches("http/1.1 200").count(), 2, "{h1}");
    assert_eq!(h1.matches(hsts).count(), 2, "each answer: {h1}");
    // An app's own field stays as it is (one field, the app's).
    let own = heads_over_https(https_port, &ca, &["--http1.1"], &["/own-hsts"]);
    assert!(
        own.contains("strict-transport-security: max-age=60\r\n")
            && own.matches("strict-transport-security").count() == 1,
        "{own}"
    );

    // Never on plain HTTP: neither the redirect to https:// nor the http:// route's answer.
    for path in ["/", "/plain"] {
        let o = run(Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-H",
            ])
            .arg(format!("Host: {HOST}"))
            .arg(format!("http://127.0.0.1:{}{path}", server.http_port)));
        let head = text(&o).to_ascii_lowercase();
        assert!(
            head.starts_with(if path == "/" {
                "http/1.1 301"
            } else {
                "http/1.1 200"
            }),
            "{path}: {head}"
        );
        assert!(
            !head.contains("strict-transport-security"),
            "{path}: {head}"
        );
    }
    // Over TLS, the http:// route's answer has none either (its route has no HSTS).
    let plain = heads_over_https(https_port, &ca, &["--http1.1"], &["/plain"]);
    assert!(
        plain.starts_with("http/1.1 200") && !plain.contains("strict-transport-security"),
        "{plain}"
    );
}

#[test]
fn log_format_json_writes_one_object_a_line() {
    let server = Server::start_with(&[("SLIPWAY_LOG_FORMAT", "json")]);
    let log = server.server_log();
    let json_lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l.contains("\"level\":\"INFO\"") && l.contains("\"fields\":{")),
        "json log lines: {log}"
    );
    // Every stderr line is JSON (stdout's lines, e.g. "slipway serving", are not logs).
    let human: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN "))
        .collect();
    assert!(human.is_empty(), "human log lines in json mode: {human:?}");
}

/// The app: `/ws` switches protocols and echoes what it gets; anything else answers
/// `release-VERSION`.
const WS_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        if self.path == "/ws":
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
        body = ("release-" + open("VERSION").read().strip()).encode()
"#
);

/// A client that upgrades `/ws` over TLS (ALPN http/1.1), prints the status line, then
/// sends `ping-over-tls` and prints what comes back.
const WS_CLIENT: &str = r#"import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host)
s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % host).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
head, _, rest = buf.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
s.sendall(b"ping-over-tls")
got = rest
while len(got) < len(b"ping-over-tls"):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print(got.decode())
"#;

#[test]
fn a_websocket_upgrade_and_a_switch_hold_over_tls() {
    let (server, https_port) = Server::start_https(&[]);
    let ca = server.data.join("ca").join("ca.pem");
    let (app, _) = push_app(
        &server,
        "ws-app",
        WS_SERVER,
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n",
        "ws",
    );

    let client = server.dir.path().join("ws_client.py");
    std::fs::write(&client, WS_CLIENT).expect("client");
    let o = run(Command::new("python3")
        .arg(&client)
        .arg(HOST)
        .arg(https_port.to_string())
        .arg(&ca));
    assert_eq!(
        text(&o),
        "HTTP/1.1 101 Switching Protocols\nping-over-tls\n",
        "websocket over TLS"
    );
    // The route is written only `https://`: plain HTTP is redirected to the HTTPS listener,
    // as Platform.sh does for routes defined with HTTPS only.
    let (status, head, _) = slipway_e2e::http_request(
        server.http_port,
        "GET",
        &format!("{HOST}:{}", server.http_port),
        "/x/y?z=1",
        b"",
    );
    assert_eq!(status, 301, "{head}");
    assert_eq!(
        slipway_e2e::header_field(&head, "location"),
        Some(format!("https://{HOST}:{https_port}/x/y?z=1").as_str()),
        "{head}"
    );

    // A redeploy while a client asks over TLS all along: every answer is the old or the
    // new release, never an error.
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answers = {
        let asking = asking.clone();
        let ca = ca.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while asking.load(std::sync::atomic::Ordering::Relaxed) {
                let (ok, out, err) = curl_https(https_port, HOST, "/", &ca, H2);
                answers.push(if ok { out } else { err });
            }
            answers
        })
    };
    app.write("VERSION", "2\n");
    app.commit("v2");
    let o = server.git(&app.dir, &["push", &server.remote("tls"), "main"]);
    assert!(o.status.success(), "push v2: {}", text(&o));
    let (ok, out, _) = curl_https(https_port, HOST, "/", &ca, H2);
    assert!(ok && out == "release-2 2 200", "v2 live over TLS: {out}");
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    let answers = answers.join().expect("asking thread");
    assert!(!answers.is_empty());
    for answer in &answers {
        assert!(
            answer == "release-1 2 200" || answer == "release-2 2 200",
            "an answer during the switch: {answer}"
        );
    }
}

/// How many sockets listen on 127.0.0.1:`port` (`ss`): one when a server took the
/// socket over, two when two servers each bound one (`SO_REUSEPORT`).
fn listening_sockets(port: u16) -> usize {
    let o = run(Command::new("ss")
        .args(["-Hltn"])
        .arg(format!("sport = :{port}")));
    assert!(o.status.success(), "ss: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn https_and_metrics_sockets_are_handed_over_by_serve_upgrade_and_no_request_fails() {
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let (mut server, https_port) =
        Server::start_https(&[("SLIPWAY_METRICS_LISTEN", &metrics_listen)]);
    let ca = server.data.join("ca").join("ca.pem");
    push_app(
        &server,
        "up-app",
        PROTO_SERVER,
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n",
        "https",
    );
    assert_eq!(
        curl_https(https_port, HOST, "/", &ca, H2).1,
        "proto=https 2 200"
    );
    assert_eq!(listening_sockets(https_port), 1);
    assert_eq!(listening_sockets(metrics_port), 1);

    // Four clients ask over HTTPS without a pause, through the whole upgrade.
    let asking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let asking = asking.clone();
            let ca = ca.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while asking.load(std::sync::atomic::Ordering::Relaxed) {
                    let (ok, out, err) = curl_https(https_port, HOST, "/", &ca, H2);
                    answers.push(if ok { out } else { err });
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let code = server.upgrade(Duration::from_secs(60), |s| {
        // Both servers run: the new one accepts on the very sockets the old one listened
        // on (one socket each), not on sockets of its own next to them.
        assert_eq!(
            listening_sockets(https_port),
            1,
            "the HTTPS socket was not handed over\n{}",
            s.server_log()
        );
        assert_eq!(
            listening_sockets(metrics_port),
            1,
            "the metrics socket was not handed over\n{}",
            s.server_log()
        );
        let (ok, out, err) = curl_https(https_port, HOST, "/", &ca, H2);
        assert!(
            ok,
            "https while the old server drains: {out} {err}\n{}",
            s.server_log()
        );
        let m = run(Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{metrics_port}/metrics")));
        assert!(
            m.status.success() && String::from_utf8_lossy(&m.stdout).contains("slipway_"),
            "metrics while the old server drains: {}",
            text(&m)
        );
    });
    assert_eq!(code, Some(0), "{}", server.server_log());
    std::thread::sleep(Duration::from_millis(500));
    asking.store(false, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("asking thread"))
        .collect();
    let failed: Vec<&String> = answers
        .iter()
        .filter(|a| *a != "proto=https 2 200")
        .collect();
    assert!(
        answers.len() >= 20,
        "too few requests to tell: {}",
        answers.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} HTTPS requests failed during the upgrade: {failed:?}",
        failed.len(),
        answers.len()
    );
    println!(
        "{} HTTPS requests during the upgrade, 0 failed",
        answers.len()
    );
    assert_eq!(
        curl_https(https_port, HOST, "/", &ca, H2).1,
        "proto=https 2 200"
    );
    assert_eq!(listening_sockets(https_port), 1);
    assert_eq!(listening_sockets(metrics_port), 1);
}
