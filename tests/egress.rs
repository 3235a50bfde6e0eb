//! Egress of environments (issues 13/14): an app, its deploy hook, a cron and an SSH shell reach
//! the outside through the egress proxy Slipway runs in their environment's network
//! namespace (`HTTP_PROXY` and the like set for them), as on Platform.sh and Heroku, and
//! never the host's own listeners (SSH endpoint, router) nor another environment's apps;
//! after `serve --upgrade` and a restart the new server's proxy serves them.
//!
//! "The outside" is an HTTP server this test runs on `127.0.0.2` (this machine: no traffic
//! leaves it), allowed with `SLIPWAY_EGRESS_ALLOW` as an operator allows a mirror; a
//! public address needs no allowing. It is not `127.0.0.1`, which an environment's
//! `NO_PROXY` keeps for its own namespace.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use slipway_e2e::{text, App, Server};

/// What an app's process can reach, one `net NAME RESULT` line each: `outside` through
/// the proxy its environment's variables name (urllib, as any client that honours
/// `HTTP_PROXY`), the host's SSH and HTTP ports straight and through the proxy, and the
/// targets given as arguments (another environment's addresses) the same two ways.
const NET_PROBE: &str = r#"import os, socket, sys, urllib.error, urllib.request
def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "open"
    except OSError:
        return "closed"
def get(url):
    try:
        r = urllib.request.urlopen(url, timeout=20)
        return "%d %s" % (r.status, r.read().decode().strip())
    except urllib.error.HTTPError as e:
        return "%d %s" % (e.code, e.read().decode().strip())
    except Exception as e:
        return "error-" + type(e).__name__
def proxied(target):
    host, port = os.environ["HTTP_PROXY"].split("//")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(("GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return "%s %s" % (head.split(b" ")[1].decode(), body.decode().strip())
who = sys.argv[1]
print(who, "net outside", get(OUTSIDE), flush=True)
for name, port in (("ssh", SSH_PORT), ("router", HTTP_PORT)):
    print(who, "net direct-%s" % name, tcp("127.0.0.1", port), flush=True)
    print(who, "net proxy-%s" % name, proxied("127.0.0.1:%d" % port), flush=True)
for target in sys.argv[2:]:
    host, port = target.split(":")
    print(who, "net direct-other", target, tcp(host, int(port)), flush=True)
    print(who, "net proxy-other", target, proxied(target), flush=True)
"#;

/// The app: answers each GET with what `net.py` prints from its process, with the
/// targets of the query string (`?HOST:PORT,...`).
const SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        targets = [t for t in self.path.partition("?")[2].split(",") if t]
        out = subprocess.run([sys.executable, "/app/net.py", "app"] + targets, capture_output=True, text=True)
        body = (out.stdout + out.stderr).encode()
"#
);

/// An HTTP server on `127.0.0.2` answering every request with `hello from outside`;
/// returns its `HOST:PORT`. Its thread ends with the test process.
fn outside_server() -> String {
    let listener = TcpListener::bind("127.0.0.2:0").expect("binding 127.0.0.2");
    let addr = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
                head.push(byte[0]);
            }
            let body = "hello from outside\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Lines of `out` that `who`'s probe printed (`WHO net ...`), without the `WHO `.
fn net_lines(out: &str, who: &str) -> Vec<String> {
    let prefix = format!("{who} net ");
    out.lines()
        .filter_map(|l| {
            l.split_once(&prefix)
                .map(|(_, rest)| format!("net {}", rest.trim_end()))
        })
        .collect()
}

/// Checks what `who` reached: the outside, and nothing of the host or of `other`.
fn assert_egress(out: &str, who: &str, server: &Server, other: &[String]) {
    let lines = net_lines(out, who);
    let has = |want: &str| lines.iter().any(|l| l == want);
    let mut wants = vec![
        "net outside 200 hello from outside".to_string(),
        "net direct-ssh closed".to_string(),
        "net direct-router closed".to_string(),
    ];
    for port in [server.ssh_port, server.http_port] {
        wants.push(format!(
            "net proxy-{} 403 slipway egress proxy: 127.0.0.1:{port} refused: 127.0.0.1 is this machine's own address",
            if port == server.ssh_port { "ssh" } else { "router" }
        ));
    }
    for target in other {
        let ip = target.split(':').next().unwrap_or_default();
        wants.push(format!("net direct-other {target} closed"));
        wants.push(format!(
            "net proxy-other {target} 403 slipway egress proxy: {target} refused: {ip} is this machine's own address"
        ));
    }
    for want in &wants {
        assert!(
            has(want),
            "{who}: missing {want:?} in:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn apps_hooks_crons_and_shells_reach_the_outside_but_not_the_host_or_other_environments() {
    let outside = outside_server();
    let mut server = Server::start_with(&[("SLIPWAY_EGRESS_ALLOW", outside.as_str())]);

    // Another project, pushed twice so that its app's port (and relationship address)
    // differ from the first release's port the probing app gets.
    let other = App::demo(server.dir.path(), "other");
    server.push_ok(&other, "other");
    other.write("VERSION", "2\n");
    other.commit("second release");
    server.push_ok(&other, "other");
    let o = server.ssh(&server.key, "main.other", "echo $PORT");
    assert!(o.status.success(), "{}", text(&o));
    let other_port: u16 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("the other app's $PORT");
    let [hi, lo] = other_port.to_be_bytes();
    let other_targets = vec![
        format!("127.0.0.1:{other_port}"),
        format!("127.4.{hi}.{lo}:80"),
    ];

    let app = App::demo(server.dir.path(), "app");
    app.write(
        "net.py",
        &format!(
            "OUTSIDE = \"http://{outside}/\"\nSSH_PORT = {}\nHTTP_PORT = {}\n{NET_PROBE}",
            server.ssh_port, server.http_port
        ),
    );
    app.write("server.py", SERVER);
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  deploy: |\n    set -e\n    \
         python3 net.py deploy\n    echo \"curl $(curl -sS http://OUTSIDE/)\"\n\
         web:\n  commands:\n    start: python3 server.py\n\
         crons:\n  probe:\n    spec: '0 0 1 1 *'\n    cmd: python3 net.py cron\n"
            .replace("OUTSIDE", &outside)
            .as_str(),
    );
    app.commit("egress probe");
    let out = server.push_ok(&app, "demo");
    // The deploy hook: Python's and curl's clients both go through the proxy.
    assert_egress(&out, "deploy", &server, &[]);
    assert!(out.contains("curl hello from outside"), "{out}");

    // The app, with the other environment's addresses.
    let query = format!("/?{}", other_targets.join(","));
    let probe_app = |server: &Server| {
        let (status, body) = server
            .get("main.demo.localhost", &query)
            .expect("the app answers");
        assert_eq!(status, 200, "{body}");
        body
    };
    assert_egress(&probe_app(&server), "app", &server, &other_targets);

    // An SSH shell into the app.
    let o = server.ssh(&server.key, "main.demo", "python3 /app/net.py shell");
    assert!(o.status.success(), "{}", text(&o));
    assert_egress(&String::from_utf8_lossy(&o.stdout), "shell", &server, &[]);

    // HTTPS to a package registry, as a deploy hook's `npm install` or an app's API call
    // does: through the proxy, trusting the host's CA bundle (a registry behind a
    // TLS-inspecting proxy with a private CA, as on this machine, is trusted too).
    let o = server.ssh(
        &server.key,
        "main.demo",
        "echo \"ca=$SSL_CERT_FILE\"; sha256sum < \"$SSL_CERT_FILE\"; curl -sS -o /dev/null -w 'https %{http_code}\\n' https://registry.npmjs.org/is-number",
    );
    let shell = String::from_utf8_lossy(&o.stdout).to_string();
    let host_ca = slipway_e2e::run(
        std::process::Command::new("sh")
            .args(["-c", "sha256sum < /etc/ssl/certs/ca-certificates.crt"]),
    );
    let host_ca = String::from_utf8_lossy(&host_ca.stdout).to_string();
    assert!(
        shell.contains("ca=/tmp/.slipway/ca-certificates.crt")
            && shell.contains(host_ca.trim())
            && shell.contains("https 200"),
        "{}",
        text(&o)
    );

    // A cron, run now.
    let o = server.admin("cron run demo main probe");
    assert!(o.status.success(), "{}", text(&o));
    assert_egress(&text(&o), "cron", &server, &[]);

    // The server logs each refusal with its reason.
    let log = server.server_log();
    assert!(
        log.contains("egress proxy: refused")
            && log.contains(&format!("127.0.0.1:{}", server.ssh_port))
            && log.contains("is this machine's own address"),
        "{log}"
    );

    // A graceful upgrade: the new server's proxy serves the running app once the old
    // server is gone.
    let code = server.upgrade(Duration::from_secs(120), |_| {});
    assert_eq!(code, Some(0), "{}", server.server_log());
    assert_egress(&probe_app(&server), "app", &server, &other_targets);

    // A restart: the app is adopted, and the proxy listens again.
    server.stop();
    server.serve();
    assert_egress(&probe_app(&server), "app", &server, &other_targets);
}
