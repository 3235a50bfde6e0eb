//! HTTPS (issue 15, spec section 11): `serve --https-listen` serves `https://` routes with
//! certificates of a local CA printed at start, negotiates h2 by ALPN, answers 301 on plain
//! HTTP for an `http://` route redirecting to `https://`, refuses a host no route knows,
//! and uses a certificate dropped into DATA/certs without a restart (a bad one is named
//! in the log and the host keeps being served).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{free_port, run, text, App, Server};

/// The app: answers with the `X-Forwarded-Proto` it got.
const PROTO_SERVER: &str = r#"import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("proto=" + str(self.headers.get("X-Forwarded-Proto"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const HOST: &str = "main.tls.localhost";

/// `curl` over HTTPS to `HOST` on the server's HTTPS port, trusting `ca`:
/// (success, "HTTP_VERSION STATUS BODY", stderr).
fn curl_https(port: u16, host: &str, ca: &Path) -> (bool, String, String) {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", " %{http_version} %{http_code}"])
        .arg(format!("https://{host}:{port}/")));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn https_routes_are_served_with_the_local_ca_h2_and_a_redirect() {
    let https_port = free_port();
    let listen = format!("127.0.0.1:{https_port}");
    let server = Server::start_with(&[("SLIPWAY_HTTPS_LISTEN", &listen)]);
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

    let app = App::demo(server.dir.path(), "tls-app");
    app.write("server.py", PROTO_SERVER);
    app.write(
        ".platform/routes.yaml",
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"http://{default}/\":\n    type: redirect\n    to: \"https://{default}/\"\n",
    );
    app.commit("https routes");
    let o = server.git(&app.dir, &["push", &server.remote("tls"), "main"]);
    assert!(o.status.success(), "push: {}", text(&o));

    // HTTPS with the printed CA: the app, over h2, told it was https.
    let (ok, out, err) = curl_https(https_port, HOST, &ca);
    assert!(ok, "curl https: {out} {err}\n{}", server.server_log());
    assert_eq!(out, "proto=https 2 200");

    // HTTP/1.1 over TLS too (ALPN http/1.1).
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http1.1", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("{HOST}:{https_port}:127.0.0.1"))
        .args(["-w", " %{http_version} %{http_code}"])
        .arg(format!("https://{HOST}:{https_port}/")));
    assert_eq!(text(&o), "proto=https 1.1 200");

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
    let (ok, out, _) = curl_https(https_port, "evil.localhost", &ca);
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
    let (ok, out, err) = curl_https(https_port, HOST, &ca);
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
        let (ok, out, err) = curl_https(https_port, HOST, &own.join("cert.pem"));
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
    let (ok, _, _) = curl_https(https_port, HOST, &ca);
    assert!(!ok, "the host now presents the dropped certificate");
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
