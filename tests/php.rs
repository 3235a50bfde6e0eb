//! PHP apps end to end (issue 17): a `php:8.4` app with no start command runs PHP-FPM in
//! its container and the router speaks FastCGI to it behind Drupal-like locations: the
//! front controller (`passthru: /index.php`) answers dynamic requests (PHP_VERSION,
//! REQUEST_URI, a query string, a POST body), a `.php` file runs where `scripts: true`,
//! static assets are files, disallowed files go to the front controller without leaking,
//! a `.php` file under `scripts: false` is never run, `runtime` extensions and
//! `variables.php` apply. An unknown extension is refused at push and by `config check`
//! with its position. PHP-FPM listens on a unix socket in the container's own run folder
//! that another project cannot reach and whose replacement by a link is never followed.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slipway_e2e::{header_field as field, raw_http, run, text, App, LoadTally, Server};

const HOST: &str = "main.demo.localhost";

const CONFIG: &str = r#"name: app
type: php:8.4
runtime:
  extensions: [redis, apcu]
  disabled_extensions: [gmp]
variables:
  php:
    memory_limit: 123M
web:
  locations:
    '/':
      root: web
      passthru: /index.php
      scripts: true
      allow: false
      expires: 5m
      rules:
        '\.(css|js|png|ico)$': {allow: true}
        '^/robots\.txt$': {allow: true}
    '/sites/default/files':
      root: web/sites/default/files
      allow: true
      scripts: false
      passthru: /index.php
"#;

const INDEX: &str = r#"<?php
header('X-Php: front');
if ($_SERVER['REQUEST_URI'] === '/teapot') { http_response_code(418); }
echo "version=" . PHP_VERSION . "\n";
echo "uri=" . $_SERVER['REQUEST_URI'] . "\n";
echo "script=" . $_SERVER['SCRIPT_NAME'] . "|" . $_SERVER['SCRIPT_FILENAME'] . "\n";
echo "query=" . ($_SERVER['QUERY_STRING'] ?? '') . "|" . ($_GET['a'] ?? '') . "\n";
echo "method=" . $_SERVER['REQUEST_METHOD'] . "\n";
echo "body=" . file_get_contents('php://input') . "|" . ($_POST['x'] ?? '') . "\n";
echo "remote=" . $_SERVER['REMOTE_ADDR'] . "\n";
echo "host=" . ($_SERVER['HTTP_HOST'] ?? '') . "\n";
echo "redis=" . (extension_loaded('redis') ? 'yes' : 'no') . "\n";
echo "gmp=" . (extension_loaded('gmp') ? 'yes' : 'no') . "\n";
echo "memory_limit=" . ini_get('memory_limit') . "\n";
echo "max_input_vars=" . ini_get('max_input_vars') . "\n";
echo "user=" . (posix_getpwuid(posix_geteuid())['name'] ?? posix_geteuid()) . "\n";
"#;

/// One raw request; (status, head, body as text, chunk framing left in).
fn raw(port: u16, request: &str) -> (u16, String, String) {
    let (status, head, body) = raw_http(port, request);
    (status, head, String::from_utf8_lossy(&body).to_string())
}

fn get(port: u16, path: &str) -> (u16, String, String) {
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn a_php_app_is_served_by_php_fpm_behind_its_locations() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "php");
    app.write(".platform.app.yaml", CONFIG);
    app.write("web/index.php", INDEX);
    app.write(
        "web/info.php",
        "<?php echo 'info:' . $_SERVER['SCRIPT_NAME'] . ':' . ($_SERVER['PATH_INFO'] ?? '');\n",
    );
    app.write("php.ini", "max_input_vars = 4321\n");
    app.write("web/style.css", "body { color: red }\n");
    app.write("web/robots.txt", "User-agent: *\n");
    app.write("web/README.md", "private-notes\n");
    app.write("web/sites/default/files/a.txt", "uploaded\n");
    app.write(
        "web/sites/default/files/evil.php",
        "<?php echo 'EXE' . 'CUTED';\n",
    );
    app.commit("a php app");
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("PHP-FPM answering FastCGI"), "{out}");
    let port = server.http_port;

    // The front controller: a missing path runs /index.php with the original URI.
    let (status, head, body) = get(port, "/node/7?a=1&b=two");
    assert_eq!(status, 200, "{head}\n{body}\n{}", server.server_log());
    assert_eq!(field(&head, "x-php"), Some("front"), "{head}");
    assert!(body.contains("version=8.4."), "{body}");
    assert!(body.contains("uri=/node/7?a=1&b=two\n"), "{body}");
    assert!(
        body.contains("script=/index.php|/app/web/index.php\n"),
        "{body}"
    );
    assert!(body.contains("query=a=1&b=two|1\n"), "{body}");
    assert!(body.contains("remote=127.0.0.1\n"), "{body}");
    assert!(body.contains(&format!("host={HOST}\n")), "{body}");
    // runtime.extensions / disabled_extensions and variables.php.
    assert!(body.contains("redis=yes\n"), "{body}");
    assert!(body.contains("gmp=no\n"), "{body}");
    assert!(body.contains("memory_limit=123M\n"), "{body}");
    // The app's own php.ini.
    assert!(body.contains("max_input_vars=4321\n"), "{body}");
    // PHP runs as the container's unprivileged `web` user.
    assert!(body.contains("user=web\n"), "{body}");
    // Status from PHP.
    let (status, ..) = get(port, "/teapot");
    assert_eq!(status, 418);

    // A POST body, streamed to PHP.
    let form = "x=hello+world&y=2";
    let (status, head, body) = raw(
        port,
        &format!(
            "POST /submit HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(body.contains("method=POST\n"), "{body}");
    assert!(
        body.contains(&format!("body={form}|hello world\n")),
        "{body}"
    );

    // A chunked POST body: read whole, then given to PHP with its length.
    let (status, head, body) = raw(
        port,
        &format!(
            "POST /chunked HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nx=ab\r\n3\r\ncde\r\n0\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(body.contains("body=x=abcde|abcde\n"), "{body}");

    // A .php file where scripts are on, with PATH_INFO.
    let (status, _, body) = get(port, "/info.php/a/b");
    assert_eq!(status, 200);
    assert!(body.contains("info:/info.php:/a/b"), "{body}");

    // Static files are files (with the location's expires), not PHP.
    let (status, head, body) = get(port, "/style.css");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "body { color: red }\n");
    assert_eq!(field(&head, "cache-control"), Some("max-age=300"));
    assert_eq!(field(&head, "x-php"), None);
    let (_, _, body) = get(port, "/robots.txt");
    assert_eq!(body, "User-agent: *\n");
    // A disallowed file goes to the front controller; its content never leaks.
    let (status, _, body) = get(port, "/README.md");
    assert_eq!(status, 200);
    assert!(body.contains("uri=/README.md\n"), "{body}");
    assert!(!body.contains("private-notes"), "{body}");
    // Uploads are files; a script among them is never run.
    let (_, _, body) = get(port, "/sites/default/files/a.txt");
    assert_eq!(body, "uploaded\n");
    let (_, _, body) = get(port, "/sites/default/files/evil.php");
    assert!(!body.contains("EXECUTED"), "{body}");
    // Traversal towards the config: refused, nothing read.
    let (status, _, body) = get(port, "/%2e%2e/.platform.app.yaml");
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("disabled_extensions"));
    // The legitimate path still works.
    let (status, ..) = get(port, "/node/8");
    assert_eq!(status, 200);
}

/// One client of the load: `kind` 0 PHP GET, 1 PHP POST, 2 static file. Records the
/// release each answer came from, and every failure.
fn load_loop(port: u16, kind: usize, stop: &AtomicBool, tally: &LoadTally) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (status, head, body) = match kind {
            0 => get(port, &format!("/load/{i}?n={i}")),
            1 => raw(
                port,
                &format!(
                    "POST /load HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\nx={i}",
                    format!("x={i}").len()
                ),
            ),
            _ => get(port, "/version.css"),
        };
        let version = body
            .lines()
            .find_map(|l| l.strip_prefix("release="))
            .and_then(|v| v.parse().ok());
        let expected = match kind {
            0 => body.contains(&format!("uri=/load/{i}?n={i}\n")),
            1 => body.contains(&format!("body=x={i}|{i}\n")),
            _ => true,
        };
        match version {
            Some(v) if status == 200 && expected => tally.saw(v),
            _ => tally.fail(format!("kind {kind} #{i}: {status} {head} {body}")),
        }
    }
}

/// Deploys while PHP and static requests keep coming: none is lost, and every answer
/// comes from a release that went live.
#[test]
fn deploys_under_mixed_php_and_static_load_lose_nothing() {
    let server = Server::start_with(&[("SLIPWAY_DRAIN_TIMEOUT", "3")]);
    let app = App::demo(server.dir.path(), "phpload");
    app.write(".platform.app.yaml", CONFIG);
    let release = |n: u32| {
        app.write(
            "web/index.php",
            &format!("{INDEX}echo \"release={n}\\n\";\n"),
        );
        app.write("web/version.css", &format!("/*\nrelease={n}\n*/\n"));
        app.commit(&format!("v{n}"));
        let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
        assert!(
            o.status.success(),
            "push {n} failed:\n{}\n{}",
            text(&o),
            server.server_log()
        );
    };
    release(1);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(LoadTally::default());
    let port = server.http_port;
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || load_loop(port, i % 3, &stop, &tally))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for n in 2..=4 {
        release(n);
    }
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let ok = tally.assert_none_failed();
    assert!(ok > 50, "only {ok} requests answered");
    let seen = tally.releases_seen();
    let live: BTreeSet<u32> = (1..=4).collect();
    assert!(seen.is_subset(&live), "{seen:?}");
    assert!(
        seen.contains(&4),
        "the last release never answered: {seen:?}"
    );
}

#[test]
fn an_unknown_php_extension_and_a_missing_start_are_refused_at_push_and_config_check() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "badext");
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: php:8.4\nruntime:\n  extensions:\n    - redis\n    - nosuchext\n",
    );
    app.write("index.php", "<?php echo 1;\n");
    app.commit("an unknown extension");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    let want = ".platform.app.yaml:6:7: error: unknown PHP extension `nosuchext`";
    assert!(out.contains(want), "{out}");
    let o = slipway_e2e::config_check(&app.dir);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains(want), "{out}");

    // A non-PHP app without a start command: refused alike, at the same position.
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: ''\n",
    );
    app.commit("no start command");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    let want = ".platform.app.yaml:5:12: error: app 'app' has no start command";
    assert!(out.contains(want), "{out}");
    let o = slipway_e2e::config_check(&app.dir);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains(want), "{out}");

    // Without it the same app is accepted by config check.
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: php:8.4\nruntime:\n  extensions:\n    - redis\n",
    );
    let o = slipway_e2e::config_check(&app.dir);
    assert!(o.status.success(), "{}", text(&o));
}

/// One answer on a kept-alive connection: (status, head, body); a chunked body is
/// joined.
fn keep_alive(
    conn: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    request: &str,
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    conn.write_all(request.as_bytes()).expect("send");
    let mut fill = |buf: &mut Vec<u8>| {
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(buf);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    buf.drain(..end);
    let status = head[9..12].parse().expect("status");
    let mut body = Vec::new();
    if field(&head, "transfer-encoding") == Some("chunked") {
        loop {
            let line = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(buf);
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&buf[..line]).trim(), 16)
                .expect("chunk size");
            while buf.len() < line + 2 + size + 2 {
                fill(buf);
            }
            body.extend_from_slice(&buf[line + 2..line + 2 + size]);
            buf.drain(..line + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = field(&head, "content-length").map_or(0, |l| l.parse().expect("length"));
        while buf.len() < len {
            fill(buf);
        }
        body = buf.drain(..len).collect();
    }
    (status, head, body)
}

/// PHP-FPM listens on a unix socket in the container's own run folder
/// (`DATA/run/CONTAINER/app.sock`, 0700, the project's user), not on TCP: static files and
/// PHP (a chunked upload too) on one kept-alive connection; another project's container
/// cannot reach the socket; a symbolic link the app plants in its place is never followed
/// (502, the host socket it points to is never reached); a redeploy serves again.
#[test]
fn php_fpm_listens_on_a_private_unix_socket_and_a_planted_link_is_never_followed() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let server = Server::start_with(&[]);
    // A socket of the host, outside any container: what a planted link would lead to.
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
                    Ok(_) => {
                        reached.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let plant = format!(
        "<?php unlink('/run/app.sock'); symlink('{}', '/run/app.sock'); echo is_link('/run/app.sock') ? 'planted' : 'not planted';\n",
        host_socket.display()
    );
    let app = server.project(
        "php-sock",
        &[
            (".platform.app.yaml", "name: app\ntype: php:8.4\nweb:\n  locations:\n    '/':\n      root: web\n      passthru: /index.php\n      scripts: true\n"),
            ("web/index.php", "<?php echo 'php:' . $_SERVER['REQUEST_METHOD'] . ':' . file_get_contents('php://input') . ':' . ($_SERVER['HTTPS'] ?? 'off');\n"),
            ("web/plant.php", &plant),
            ("web/style.css", "body {}\n"),
        ],
    );
    let out = server.push_ok(&app, "demo");
    assert!(
        out.contains("PHP-FPM answering FastCGI on unix socket /run/app.sock"),
        "{out}"
    );
    let dirs: Vec<_> = std::fs::read_dir(server.data.join("run"))
        .expect("DATA/run")
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(dirs.len(), 1, "one socket folder");
    let dir = dirs[0].path();
    let meta = std::fs::metadata(&dir).expect("socket folder");
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_ne!(meta.uid(), 0, "owned by the project's user");
    let socket = dir.join("app.sock");
    let meta = std::fs::symlink_metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());

    // Static, PHP, static, a chunked upload to PHP, PHP: one kept-alive connection.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = Vec::new();
    let ask = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &ask("/style.css"));
    assert_eq!((status, body.as_slice()), (200, &b"body {}\n"[..]));
    let (status, head, body) = keep_alive(&mut conn, &mut buf, &ask("/page"));
    assert_eq!(status, 200, "{head}\n{}", server.server_log());
    assert_eq!(body, b"php:GET::off");
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &ask("/style.css"));
    assert_eq!((status, body.as_slice()), (200, &b"body {}\n"[..]));
    let (status, head, body) = keep_alive(
        &mut conn,
        &mut buf,
        &format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"php:POST:abcde:off");
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &ask("/again"));
    assert_eq!((status, body.as_slice()), (200, &b"php:GET::off"[..]));
    drop(conn);

    // Another project's container: the first project's socket folder is not there.
    let other = server.project(
        "other",
        &[
            (".platform.app.yaml", "name: app\ntype: php:8.4\nweb:\n  locations:\n    '/':\n      root: web\n      passthru: /index.php\n"),
            ("web/index.php", "<?php echo 'other';\n"),
        ],
    );
    server.push_ok(&other, "other");
    let attempt = format!(
        "php -r '$s = @stream_socket_client(\"unix://{}\", $no, $why); echo $s ? \"connected\" : \"refused: $why\";'",
        socket.display()
    );
    let o = server.ssh(&server.key, "main.other", &attempt);
    let said = text(&o);
    assert!(said.contains("refused"), "{said}");
    assert!(!said.contains("connected"), "{said}");

    // The app plants a link to a host socket in place of its own: never followed.
    let (status, _, body) = get(server.http_port, "/plant.php");
    assert_eq!((status, body.as_str()), (200, "planted"));
    assert!(std::fs::symlink_metadata(&socket)
        .expect("link")
        .file_type()
        .is_symlink());
    let (status, _, body) = get(server.http_port, "/page");
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the host socket was reached"
    );

    // A redeploy starts afresh and serves again.
    app.write("web/style.css", "body { color: red }\n");
    app.commit("again");
    server.push_ok(&app, "demo");
    let (status, _, body) = get(server.http_port, "/page");
    assert_eq!((status, body.as_str()), (200, "php:GET::off"));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    stop.store(true, Ordering::Relaxed);
    daemon.join().expect("daemon thread");
}

/// The upload script of `request_bodies_*`: what PHP read of the body.
const UPLOAD: &str = r#"<?php
$in = file_get_contents('php://input');
echo "len=" . strlen($in) . " sha=" . hash('sha256', $in) . " cl=" . ($_SERVER['CONTENT_LENGTH'] ?? '') . " te=" . ($_SERVER['HTTP_TRANSFER_ENCODING'] ?? '') . "\n";
"#;

/// The sha256 of `data`, by `sha256sum`.
fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// curl with `args` against the router; (its stdout, its stderr).
fn curl(args: &[&str]) -> (String, String) {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "60", "-H"])
        .arg(format!("Host: {HOST}"))
        .args(args));
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Request bodies to PHP-FPM on the router's own path (issue 17), with a 6 MiB cap and a
/// 3 s body timeout: a chunked upload of 5 MiB reaches PHP whole (its sha256 as PHP
/// computes it, `CONTENT_LENGTH` set, no `Transfer-Encoding` left); `Expect:
/// 100-continue` with curl gets one `100 Continue`; a body over the cap is answered 413
/// (before it is sent, with `Expect`), malformed chunking 400; on one kept-alive
/// connection a static file, a chunked PHP upload and a static file again; uploads that
/// stall mid-body hold no PHP-FPM worker (PHP answers others meanwhile) and end in 408;
/// `runtime.request_terminate_timeout` ends a script that runs too long (502).
#[test]
fn request_bodies_chunked_expect_oversize_and_stalled_on_the_own_path() {
    let server = Server::start_with(&[
        ("SLIPWAY_ROUTER_MAX_BODY", "6M"),
        ("SLIPWAY_ROUTER_BODY_TIMEOUT", "3"),
    ]);
    let app = server.project(
        "demo",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: php:8.4\nruntime:\n  request_terminate_timeout: 2\n  sizing_hints:\n    request_memory: 100000\nvariables:\n  php:\n    post_max_size: 64M\nweb:\n  locations:\n    '/':\n      root: web\n      passthru: /index.php\n      scripts: true\n",
            ),
            ("web/index.php", UPLOAD),
            ("web/style.css", "body { color: red }\n"),
            ("web/slow.php", "<?php sleep(8); echo 'finished';\n"),
        ],
    );
    server.push_ok(&app, "demo");
    let port = server.http_port;
    let url = format!("http://127.0.0.1:{port}/upload");
    let dir = server.dir.path();
    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.join("upload.bin");
    std::fs::write(&file, &data).expect("write upload");
    let at_file = format!("@{}", file.display());
    let expected = format!(
        "len={} sha={} cl={} te=\n",
        data.len(),
        sha256(&data),
        data.len()
    );

    // Chunked (curl streams the file in chunks, and asks for 100-continue first).
    let (out, err) = curl(&[
        "-v",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &at_file,
        &url,
    ]);
    assert_eq!(out, expected, "{err}\n{}", server.server_log());
    assert!(err.contains("> Transfer-Encoding: chunked"), "{err}");
    // With a length and an explicit Expect: one 100 Continue, then the answer.
    let (out, err) = curl(&[
        "-v",
        "-H",
        "Expect: 100-continue",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &at_file,
        &url,
    ]);
    assert_eq!(out, expected, "{err}");
    assert_eq!(err.matches("< HTTP/1.1 100 Continue").count(), 1, "{err}");
    assert!(err.contains("< HTTP/1.1 200 OK"), "{err}");

    // Over the cap: 413, with a length before the body is sent (no 100), chunked once it
    // grows past the cap.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![b'x'; 7 * 1024 * 1024]).expect("write big");
    let at_big = format!("@{}", big.display());
    let (out, err) = curl(&[
        "-v",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &at_big,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(out, "413", "{err}");
    assert!(!err.contains("100 Continue"), "{err}");
    let (out, err) = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect:",
        "--data-binary",
        &at_big,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &url,
    ]);
    assert_eq!(out, "413", "{err}");

    // Over h2c (hyper's path) a body with its length still goes through.
    let (out, err) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &at_file,
        &url,
    ]);
    assert_eq!(out, expected, "{err}");

    // Malformed chunking: 400.
    for bad in ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXY0\r\n\r\n"] {
        let (status, head, body) = raw(
            port,
            &format!(
                "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n{bad}"
            ),
        );
        assert_eq!(status, 400, "{bad:?}: {head}\n{body}");
    }

    // One kept-alive connection: static, a chunked PHP upload, static again.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let css = format!("GET /style.css HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &css);
    assert_eq!((status, &body[..]), (200, &b"body { color: red }\n"[..]));
    let text_body: String = (0..40_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut chunked =
        format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n");
    for piece in text_body.as_bytes().chunks(7_001) {
        chunked.push_str(&format!("{:x}\r\n", piece.len()));
        chunked.push_str(std::str::from_utf8(piece).expect("ascii"));
        chunked.push_str("\r\n");
    }
    chunked.push_str("0\r\n\r\n");
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &chunked);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!(
            "len=40000 sha={} cl=40000 te=\n",
            sha256(text_body.as_bytes())
        )
    );
    let (status, _, body) = keep_alive(&mut conn, &mut buf, &css);
    assert_eq!((status, &body[..]), (200, &b"body { color: red }\n"[..]));

    // Uploads that stall mid-body: more of them than PHP-FPM has workers (one, by the
    // sizing hints). PHP still answers meanwhile, while they wait (no worker is held by
    // them), then each ends in 408.
    use std::io::{Read, Write};
    let stalled: Vec<std::net::TcpStream> = (0..6)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.write_all(
                format!("POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\nabc")
                    .as_bytes(),
            )
            .expect("send");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            s
        })
        .collect();
    let (out, err) = curl(&["--data-binary", "meanwhile", &url]);
    assert!(out.starts_with("len=9 "), "{out}{err}");
    for s in &stalled {
        s.set_nonblocking(true).expect("nonblocking");
        let mut probe = [0u8; 1];
        let waiting = s.peek(&mut probe);
        assert!(
            waiting
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled upload was answered before PHP answered another: {waiting:?}"
        );
        s.set_nonblocking(false).expect("blocking");
    }
    for mut s in stalled {
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }
    // The legitimate path still works.
    let (out, _) = curl(&["--data-binary", "after", &url]);
    assert!(out.starts_with("len=5 "), "{out}");

    // runtime.request_terminate_timeout (2 s): PHP-FPM kills a script still running
    // then (sleep() does not count for max_execution_time): 502, never its output.
    let (out, err) = curl(&[
        "-w",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{port}/slow.php"),
    ]);
    assert!(out.ends_with("\n502"), "{out}{err}");
    assert!(!out.contains("finished"), "{out}");
    let (out, _) = curl(&["--data-binary", "again", &url]);
    assert!(out.starts_with("len=5 "), "{out}");
}
