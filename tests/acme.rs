//! ACME (issue 15, spec section 11): `serve --acme-directory` against a real ACME server
//! (pebble, with pebble-challtestsrv as its DNS). A pushed `https://` route gets a
//! certificate ordered over HTTP-01 (the router answers the challenge on plain HTTP) that
//! verifies against pebble's root, stored with its key (0600) and served without a
//! restart; a restart reuses it (no new order); a host whose challenge fails (its DNS
//! points elsewhere) is retried and logged and keeps the local CA's certificate; a
//! server whose ACME server does not answer serves with the local CA and says why. With
//! `--acme-challenge tls-alpn-01` the challenge is answered on the HTTPS listener instead
//! (RFC 8737), with nothing listening on pebble's HTTP-01 port.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slipway_e2e::{curl_https, free_port, http_get, run, text, App, Server};

const HOST: &str = "main.acme.localhost";
/// A host of the same app whose DNS (at pebble's resolver) points where no router is.
const WRONG: &str = "wrong.main.acme.localhost";

/// The app: answers `proto=` and the `X-Forwarded-Proto` it got.
const PROTO_SERVER: &str = slipway_e2e::py_app!(
    "",
    "        body = (\"proto=\" + str(self.headers.get(\"X-Forwarded-Proto\"))).encode()\n"
);

/// pebble and its DNS server, killed on drop.
struct Pebble {
    dir: tempfile::TempDir,
    /// The directory URL.
    directory: String,
    /// The CA of pebble's own HTTPS certificate (for `--acme-ca-cert` and curl).
    https_ca: PathBuf,
    management_port: u16,
    dns_management_port: u16,
    children: Vec<Child>,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    /// pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`, resolving
    /// names with its own DNS server (127.0.0.1 for every name unless told otherwise).
    fn start(http_port: u16, tls_port: u16) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("slipway-pebble-")
            .tempdir()
            .expect("tempdir");
        // pebble's own HTTPS certificate, from a CA of the test.
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
        let https_ca = dir.path().join("https-ca.pem");
        std::fs::write(&https_ca, ca.pem()).expect("write");
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("write");
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("write");

        let (port, management_port) = (free_port(), free_port());
        let (dns_port, dns_management_port) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(name))
                .map(Stdio::from)
                .expect("log")
        };
        let dns = Command::new("pebble-challtestsrv")
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .arg("-dns01")
            .arg(format!("127.0.0.1:{dns_port}"))
            .arg("-management")
            .arg(format!("127.0.0.1:{dns_management_port}"))
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("pebble-challtestsrv (apt-get install pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let pebble = Pebble {
            directory: format!("https://127.0.0.1:{port}/dir"),
            https_ca,
            management_port,
            dns_management_port,
            children: vec![dns, pebble],
            dir,
        };
        wait_listening(
            dns_management_port,
            "pebble-challtestsrv",
            &pebble.log("dns.log"),
        );
        wait_listening(port, "pebble", &pebble.log("pebble.log"));
        wait_listening(management_port, "pebble", &pebble.log("pebble.log"));
        pebble
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// pebble's issuing root (regenerated at each start), written to a file.
    fn root(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        let o = run(Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
            .arg(&self.https_ca)
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .arg("-o")
            .arg(&path));
        assert!(o.status.success(), "pebble root: {}", text(&o));
        path
    }

    /// Make pebble's DNS answer `address` for `host`.
    fn point(&self, host: &str, address: &str) {
        let o = run(Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-d"])
            .arg(serde_json::json!({"host": host, "addresses": [address]}).to_string())
            .arg(format!(
                "http://127.0.0.1:{}/add-a",
                self.dns_management_port
            )));
        assert!(o.status.success(), "add-a: {}", text(&o));
    }
}

/// The log lines (from `from` on) that contain all of `words`.
fn lines_with(log: &str, words: &[&str]) -> usize {
    log.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// Wait until the server's log (from byte `from` on) has `count` lines with all of
/// `words`.
fn wait_for_log(server: &Server, from: usize, words: &[&str], count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let log = server.server_log();
        if lines_with(log.get(from..).unwrap_or(""), words) >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} log line(s) with {words:?} within {within:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mode_of(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions(),
    ) & 0o777
}

/// A server with an HTTPS listener ordering its certificates from a fresh pebble (its
/// directory and CA in the server's environment, `env` besides): pebble validates HTTP-01
/// on the server's HTTP port or, with `tls_alpn_01`, TLS-ALPN-01 on its HTTPS port
/// (`SLIPWAY_ACME_CHALLENGE=tls-alpn-01`), the other challenge's port being one where
/// nothing listens. The server, its HTTPS port and pebble.
fn served_by_pebble(tls_alpn_01: bool, env: &[(&str, &str)]) -> (Server, u16, Pebble) {
    // pebble's challenge port is the server's: started once to know it.
    let (mut server, https_port) = Server::start_https(&[]);
    server.stop();
    let pebble = if tls_alpn_01 {
        Pebble::start(free_port(), https_port)
    } else {
        Pebble::start(server.http_port, free_port())
    };
    server.env.extend([
        (
            "SLIPWAY_ACME_DIRECTORY".to_string(),
            pebble.directory.clone(),
        ),
        (
            "SLIPWAY_ACME_CA_CERT".to_string(),
            pebble.https_ca.display().to_string(),
        ),
    ]);
    if tls_alpn_01 {
        server.env.push((
            "SLIPWAY_ACME_CHALLENGE".to_string(),
            "tls-alpn-01".to_string(),
        ));
    }
    server
        .env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    server.serve();
    (server, https_port, pebble)
}

/// Pushes the app ([`PROTO_SERVER`]) with `routes` to project `acme` and waits for
/// [`HOST`]'s ACME certificate: once issued, HTTPS to the app verifies against pebble's
/// root (returned) and the app sees `https`.
fn push_until_issued(server: &Server, https_port: u16, pebble: &Pebble, routes: &str) -> PathBuf {
    let app = App::demo(server.dir.path(), "acme-app");
    app.write("server.py", PROTO_SERVER);
    app.write(".platform/routes.yaml", routes);
    app.commit("https routes");
    server.push_ok(&app, "acme");
    wait_for_log(
        server,
        0,
        &["ACME certificate issued", HOST],
        1,
        Duration::from_secs(60),
    );
    let root = pebble.root();
    let (ok, out, err) = curl_https(https_port, HOST, "/", &root, &[]);
    assert!(ok, "HTTPS verified by pebble's root: {out} {err}");
    assert_eq!(out, "proto=https");
    root
}

#[test]
fn https_routes_get_acme_certificates_kept_across_restarts_and_failures_fall_back() {
    let (mut server, https_port, pebble) =
        served_by_pebble(false, &[("SLIPWAY_ACME_EMAIL", "ops@example.com")]);
    pebble.point(WRONG, "127.0.0.2");
    let local_ca = server.data.join("ca").join("ca.pem");

    // Ordered, answered over HTTP-01 by the router, stored and served without a restart.
    let root = push_until_issued(
        &server,
        https_port,
        &pebble,
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"http://{default}/\":\n    type: redirect\n    to: \"https://{default}/\"\n\"https://wrong.{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n",
    );
    // The local CA no longer signs what this host gets.
    let (ok, _, _) = curl_https(https_port, HOST, "/", &local_ca, &[]);
    assert!(!ok, "the ACME certificate, not the local CA's, is served");
    let stored = server
        .data
        .join("acme")
        .join("certs")
        .join(format!("{HOST}.pem"));
    assert_eq!(mode_of(&stored), 0o600, "the certificate's key is private");
    assert_eq!(
        mode_of(&server.data.join("acme").join("account.json")),
        0o600
    );
    let stored_bytes = std::fs::read(&stored).expect("stored certificate");
    assert!(String::from_utf8_lossy(&stored_bytes).contains("PRIVATE KEY"));
    // The console's host gets one too.
    wait_for_log(
        &server,
        0,
        &["ACME certificate issued", "console.localhost"],
        1,
        Duration::from_secs(60),
    );
    // A challenge path with no order behind it is the app's: the redirect applies.
    let o = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Host: {HOST}"))
        .arg(format!(
            "http://127.0.0.1:{}/.well-known/acme-challenge/nothing",
            server.http_port
        )));
    assert_eq!(text(&o), "301", "unknown token: routed as usual");

    // The host whose challenge cannot be validated: logged with the ACME error, retried,
    // and served meanwhile with the local CA.
    wait_for_log(
        &server,
        0,
        &["ACME certificate order failed", WRONG],
        2,
        Duration::from_secs(60),
    );
    let log = server.server_log();
    let failed = log
        .lines()
        .find(|l| l.contains("ACME certificate order failed") && l.contains(WRONG))
        .expect("failure line");
    assert!(
        failed.contains("127.0.0.2") || failed.contains("connection"),
        "the ACME error is said: {failed}"
    );
    let (ok, out, err) = curl_https(https_port, WRONG, "/", &local_ca, &[]);
    assert!(
        ok,
        "local CA still served for the failing host: {out} {err}"
    );
    assert_eq!(out, "proto=https");
    assert!(server.running(), "the server keeps serving");

    // A restart serves the stored certificate: no new order for the host.
    let before = server.server_log().len();
    assert_eq!(server.stop(), Some(0));
    server.serve();
    wait_for_log(
        &server,
        before,
        &["using the stored ACME certificate", HOST],
        1,
        Duration::from_secs(30),
    );
    wait_for_log(
        &server,
        before,
        &["using the stored ACME account"],
        1,
        Duration::from_secs(30),
    );
    let (ok, out, err) = curl_https(https_port, HOST, "/", &root, &[]);
    assert!(ok, "after a restart: {out} {err}\n{}", server.server_log());
    let log = server.server_log();
    assert_eq!(
        lines_with(
            &log[before..],
            &["ordering an ACME certificate", &format!("host=\"{HOST}\"")]
        ),
        0,
        "no new order after a restart:\n{}",
        &log[before..]
    );
    assert_eq!(std::fs::read(&stored).expect("stored"), stored_bytes);
    // Plain HTTP still works as before (the redirect).
    let (status, _) = http_get(server.http_port, HOST, "/").expect("http");
    assert_eq!(status, 301);
    server.stop();
}

#[test]
fn an_unreachable_acme_server_leaves_the_local_ca_and_says_why() {
    // Nothing listens there.
    let directory = format!("https://127.0.0.1:{}/dir", free_port());
    let (mut server, https_port) = Server::start_https(&[("SLIPWAY_ACME_DIRECTORY", &directory)]);
    // The console's host is ordered at start: fails, said with the host and the server,
    // and retried.
    wait_for_log(
        &server,
        0,
        &[
            "ACME certificate order failed",
            "console.localhost",
            &directory,
        ],
        2,
        Duration::from_secs(30),
    );
    let local_ca = server.data.join("ca").join("ca.pem");
    let (ok, out, err) = curl_https(
        https_port,
        "console.localhost",
        "/",
        &local_ca,
        &["-o", "/dev/null", "-w", "%{http_code}"],
    );
    assert!(ok, "local CA served: {out}{err}");
    assert!(server.running());

    // Flags that cannot work are refused at start.
    server.stop();
    let o = run(Command::new(slipway_e2e::slipway_bin())
        .args(["serve", "--data-dir"])
        .arg(&server.data)
        .args(["--acme-directory", "https://127.0.0.1:1/dir"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("needs --https-listen"), "{}", text(&o));
}

/// The subject of the certificate the HTTPS listener on `port` presents for `host` to a
/// handshake offering ALPN `alpn` (openssl s_client), or what it said if none.
fn presented(port: u16, host: &str, alpn: &str) -> String {
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} -alpn {alpn} </dev/null 2>&1 | openssl x509 -noout -subject -ext subjectAltName 2>&1"
    )));
    text(&o)
}

#[test]
fn tls_alpn_01_is_answered_on_the_https_listener() {
    // pebble validates TLS-ALPN-01 on the server's HTTPS port; its HTTP-01 port is one
    // where nothing listens, so only the TLS-ALPN-01 answer can get the certificate.
    let (mut server, https_port, pebble) = served_by_pebble(true, &[]);
    push_until_issued(
        &server,
        https_port,
        &pebble,
        "\"https://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n",
    );
    // With no validation in progress, a handshake offering acme-tls/1 gets no certificate
    // (the issued one is for h2 and HTTP/1.1), and the listener still serves the rest.
    let said = presented(https_port, HOST, "acme-tls/1");
    assert!(!said.contains(HOST), "no challenge certificate now: {said}");
    let said = presented(https_port, HOST, "http/1.1");
    assert!(said.contains(HOST), "the issued certificate: {said}");
    assert!(server.running());
    server.stop();
}
