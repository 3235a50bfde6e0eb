//! `web.locations` end to end (issue 17): an app on its stack whose static files the
//! router serves from the release's slug (expires, headers, ETag/304, ranges, HEAD,
//! precompressed siblings, rules, allow), missing files passed through to the app, a
//! folder served with `passthru: false`, traversal attempts in several encodings that
//! read nothing outside the root, and a bad location refused at push with its position.

use std::process::Command;

use slipway_e2e::{header_field as field, raw_http as raw, text, App, Server};

const HOST: &str = "main.demo.localhost";
const SECRET: &str = "top-secret-outside-the-root";

/// The app: answers every request it gets with `app:METHOD PATH`.
const SERVER: &str = r#"import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = ("app:%s %s" % (self.command, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

const CONFIG: &str = r#"name: site
type: python:3.11
web:
  commands:
    start: python3 server.py
  locations:
    '/':
      root: public
      passthru: true
      index: [index.html]
      expires: 1h
      headers:
        X-Frame-Options: SAMEORIGIN
      rules:
        '\.ini$': {allow: false, passthru: false}
    '/assets':
      root: public/assets
      expires: 2d
      allow: false
      rules:
        '\.(css|js)$': {allow: true}
    '/files':
      root: files
      passthru: false
"#;

/// A GET of `path` with extra header lines.
fn get(port: u16, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n"),
    )
}

fn site(server: &Server) -> App {
    let app = App::demo(server.dir.path(), "site");
    app.write(".platform.app.yaml", CONFIG);
    app.write("server.py", SERVER);
    app.write("secret.txt", SECRET);
    app.write("public/index.html", "<h1>home</h1>\n");
    app.write("public/settings.ini", "password=1\n");
    app.write("public/assets/site.css", "body { color: red }\n");
    app.write("public/assets/site.css.gz", "pretend-gzip\n");
    app.write("public/assets/data.json", "{}\n");
    app.write("public/big.txt", "0123456789abcdef");
    app.write("files/readme.txt", "read me\n");
    std::os::unix::fs::symlink("../secret.txt", app.dir.join("public/link.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", app.dir.join("files/host.txt")).unwrap();
    app.commit("a site");
    app
}

#[test]
fn static_files_rules_passthru_and_traversal() {
    let server = Server::start();
    let app = site(&server);
    server.push_ok(&app, "demo");
    let port = server.http_port;

    // The index file of /, with the location's expires and headers and validators.
    let (status, head, body) = get(port, "/", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"<h1>home</h1>\n");
    assert_eq!(field(&head, "content-type"), Some("text/html"));
    assert_eq!(field(&head, "cache-control"), Some("max-age=3600"));
    assert!(field(&head, "expires").is_some(), "{head}");
    assert_eq!(field(&head, "x-frame-options"), Some("SAMEORIGIN"));
    let etag = field(&head, "etag").expect("etag").to_string();
    let modified = field(&head, "last-modified")
        .expect("last-modified")
        .to_string();
    // Not the slug's fixed mtime (1980): a file of a new release is not "unmodified since"
    // the old one's date.
    assert!(!modified.contains("1980"), "{modified}");

    // Conditional requests: 304 with the validators, no body.
    let (status, head, body) = get(port, "/index.html", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(status, 304, "{head}");
    assert!(body.is_empty());
    assert_eq!(field(&head, "etag"), Some(etag.as_str()));
    let (status, ..) = get(
        port,
        "/index.html",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(status, 304);
    let (status, ..) = get(port, "/index.html", "If-None-Match: \"other\"\r\n");
    assert_eq!(status, 200);

    // Ranges and HEAD.
    let (status, head, body) = get(port, "/big.txt", "Range: bytes=4-7\r\n");
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, b"4567");
    assert_eq!(field(&head, "content-range"), Some("bytes 4-7/16"));
    let (status, head, _) = get(port, "/big.txt", "Range: bytes=99-\r\n");
    assert_eq!(status, 416, "{head}");
    assert_eq!(field(&head, "content-range"), Some("bytes */16"));
    let (status, head, body) = raw(
        port,
        &format!("HEAD /big.txt HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert_eq!(field(&head, "content-length"), Some("16"));
    assert!(body.is_empty());
    // The same through hyper's path (two Cookie fields hand the connection to it).
    let (status, head, body) = raw(
        port,
        &format!("HEAD /big.txt HTTP/1.1\r\nHost: {HOST}\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-length"), Some("16"), "{head}");
    assert!(body.is_empty());
    let big_etag = field(&head, "etag").expect("etag").to_string();
    let (status, head, body) = get(
        port,
        "/big.txt",
        &format!("Cookie: a=1\r\nCookie: b=2\r\nRange: bytes=-2\r\nIf-Range: {big_etag}\r\n"),
    );
    assert_eq!((status, body.as_slice()), (206, &b"ef"[..]), "{head}");
    let (status, head, body) = get(
        port,
        "/index.html",
        &format!("Cookie: a=1\r\nCookie: b=2\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(status, 304, "{head}");
    assert!(body.is_empty());

    // The longer prefix: its rule allows CSS, with its own expires, precompressed when
    // accepted; other files there are not allowed (403: no passthru).
    let (status, head, body) = get(port, "/assets/site.css", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"body { color: red }\n");
    assert_eq!(field(&head, "content-type"), Some("text/css"));
    assert_eq!(field(&head, "cache-control"), Some("max-age=172800"));
    let (status, head, body) = get(port, "/assets/site.css", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200);
    assert_eq!(field(&head, "content-encoding"), Some("gzip"));
    assert_eq!(body, b"pretend-gzip\n");
    let (status, ..) = get(port, "/assets/data.json", "");
    assert_eq!(status, 403);
    let (status, ..) = get(port, "/settings.ini", "");
    assert_eq!(status, 403);

    // Missing files and other methods go to the app (passthru: true), as requested.
    let (status, _, body) = get(port, "/blog/post?id=3", "");
    assert_eq!(status, 200);
    assert_eq!(body, b"app:GET /blog/post?id=3");
    let (status, _, body) = raw(
        port,
        &format!("POST /form HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"),
    );
    assert_eq!(status, 200);
    assert_eq!(body, b"app:POST /form");

    // passthru: false: files, else 404; other methods 405. The hyper path (two Cookie
    // fields hand the connection to it) serves files the same way.
    let (status, _, body) = get(port, "/files/readme.txt", "");
    assert_eq!((status, body.as_slice()), (200, &b"read me\n"[..]));
    let (status, head, body) = get(port, "/files/readme.txt", "Cookie: a=1\r\nCookie: b=2\r\n");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"read me\n"[..]),
        "{head}"
    );
    assert!(field(&head, "etag").is_some());
    let (status, ..) = get(port, "/files/nope.txt", "");
    assert_eq!(status, 404);
    let (status, ..) = raw(
        port,
        &format!("POST /files/readme.txt HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 405);

    // Traversal in several encodings: 400 (or 404), and the secret is never sent.
    for path in [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/..%2fsecret.txt",
        "/files/%c0%ae%c0%ae/secret.txt",
        "/files/%c0%af../secret.txt",
        "/files/readme.txt%00.css",
        "/files/..%5csecret.txt",
        "/../secret.txt",
        "/assets/..%2f..%2fsecret.txt",
    ] {
        let (status, head, body) = get(port, path, "");
        assert!(status == 400 || status == 404, "{path}: {head}");
        assert!(
            !String::from_utf8_lossy(&body).contains(SECRET),
            "{path} leaked the secret"
        );
    }
    // Links out of the root are not followed: 404 without passthru; with passthru the
    // app gets the request (and has no such file).
    let (status, _, body) = get(port, "/files/host.txt", "");
    assert_eq!(status, 404);
    assert!(!String::from_utf8_lossy(&body).contains(
        std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
    ));
    let (_, _, body) = get(port, "/link.txt", "");
    assert_eq!(body, b"app:GET /link.txt");
    // The legitimate path still works after the attempts.
    let (status, ..) = get(port, "/files/readme.txt", "");
    assert_eq!(status, 200);
}

#[test]
fn a_location_root_outside_the_app_is_refused_at_push() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "bad");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\n  locations:\n    '/':\n      root: '../..'\n      rules:\n        '(': {allow: false}\n        '^/([a-z]+/?)+$': {allow: false}\n",
    );
    app.commit("bad locations");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(".platform.app.yaml:8:13: error: root `../..` leaves the app"),
        "{out}"
    );
    assert!(
        out.contains(".platform.app.yaml:10:9: error: `(` is not a valid regular expression"),
        "{out}"
    );
    assert!(
        out.contains(".platform.app.yaml:11:9: error: the regular expression `^/([a-z]+/?)+$` could take exponential time"),
        "{out}"
    );
    // config check says the same.
    let o = slipway_e2e::config_check(&app.dir);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains(".platform.app.yaml:8:13: error: root"),
        "{out}"
    );
    assert!(
        out.contains(".platform.app.yaml:11:9: error: the regular expression `^/([a-z]+/?)+$`"),
        "{out}"
    );
}

/// A static site (no start command, not PHP: only `web.locations`, as Platform.sh's web
/// server serves one) deploys and answers from the router, with a PCRE rule (look-behind,
/// as WordPress's uploads location writes it) applied; no process answers a passthru.
#[test]
fn a_static_site_without_a_start_command_is_served_with_pcre_rules() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "static");
    app.write(
        ".platform.app.yaml",
        r#"name: docs
type: python:3.11
web:
  locations:
    '/':
      root: public
      passthru: false
      index: [index.html]
      rules:
        '(?<!\-lock)\.(?i:json)$': {expires: 1d}
"#,
    );
    app.write("public/index.html", "<h1>docs</h1>\n");
    app.write("public/data.json", "{}\n");
    app.write("public/package-lock.json", "{}\n");
    app.commit("a static site");
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("no web process"), "{out}");
    let port = server.http_port;
    let (status, head, body) = get(port, "/", "");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"<h1>docs</h1>\n"[..]),
        "{head}"
    );
    let (status, head, _) = get(port, "/data.json", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        field(&head, "cache-control"),
        Some("max-age=86400"),
        "{head}"
    );
    // The look-behind keeps the rule off `-lock.json`.
    let (status, head, _) = get(port, "/package-lock.json", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "cache-control"), None, "{head}");
    let (status, _, _) = get(port, "/missing.html", "");
    assert_eq!(status, 404);
    // config check accepts the same tree.
    let o = slipway_e2e::config_check(&app.dir);
    assert!(o.status.success(), "{}", text(&o));
}

/// The app of the mount test: writes `/app/web/uploads/at-start.txt` when it starts, and
/// on `POST /write?NAME` writes the file NAME there; answers `app:PATH` otherwise.
const UPLOADER: &str = r#"import http.server, os
up = "/app/web/uploads"
with open(up + "/at-start.txt", "w") as f:
    f.write("written by the app at start\n")
try:
    os.symlink("/etc/hostname", up + "/escape.txt")
except FileExistsError:
    pass
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        name = self.path.split("?", 1)[1]
        with open(up + "/" + name, "w") as f:
            f.write("new file " + name + "\n")
        self.answer()
    def do_PUT(self):
        # Rewrites the mount's file in place (same inode), with the request's body.
        name = self.path.split("?", 1)[1]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(up + "/" + name, "wb") as f:
            f.write(body)
        self.answer()
    def do_GET(self):
        self.answer()
    def answer(self):
        body = ("app:" + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// `gzip -dc` of `bytes`.
fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("writing to gzip");
    let o = child.wait_with_output().expect("gzip");
    assert!(o.status.success(), "gzip -dc failed");
    o.stdout
}

/// Text is gzipped on the fly for a client that accepts it (with `Vary`; above 1 MiB
/// while it is sent, chunked), never for one that does not, nor for small files, images
/// or a range; several ranges get `multipart/byteranges`, overlapping ones the whole
/// file (200); a location rooted at a mount serves the mount's current files (what the
/// app wrote, a file written a moment ago), not the slug's folder under it, and a link
/// the app made in the mount leads nowhere.
#[test]
fn gzip_on_the_fly_multi_range_and_a_root_in_a_mount() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "gz");
    app.write(
        ".platform.app.yaml",
        r#"name: gz
type: python:3.11
disk: 64
mounts:
  'web/uploads':
    source: local
    source_path: uploads
web:
  commands:
    start: python3 server.py
  locations:
    '/':
      root: web
      passthru: true
    '/uploads':
      root: web/uploads
      passthru: false
      expires: 1h
"#,
    );
    app.write("server.py", UPLOADER);
    let page = "<p>a paragraph of text that compresses well</p>\n".repeat(100);
    app.write("web/page.html", &page);
    app.write("web/small.txt", "short\n");
    app.write("web/image.png", &"not really a png ".repeat(200));
    app.write("web/uploads/from-slug.txt", "hidden by the mount\n");
    // Over 1 MiB: gzipped while it is sent (chunked); as it is, with sendfile(2).
    let big: String = (0..120_000).map(|i| format!("line {i:06}\n")).collect();
    app.write("web/big.txt", &big);
    app.commit("gzip and a mount");
    server.push_ok(&app, "demo");
    let port = server.http_port;

    // On the fly, for a client that takes gzip.
    let (status, head, body) = get(port, "/page.html", "Accept-Encoding: br, gzip\r\n");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(field(&head, "vary"), Some("Accept-Encoding"), "{head}");
    assert!(body.len() < page.len() / 4, "{} bytes", body.len());
    assert_eq!(gunzip(&body), page.as_bytes());
    let gz_etag = field(&head, "etag").expect("etag").to_string();
    // Its own validator: a 304 for the gzipped one, not the plain one's.
    let (status, ..) = get(
        port,
        "/page.html",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {gz_etag}\r\n"),
    );
    assert_eq!(status, 304);
    // Not for a client that does not take it, nor a range, nor small files or images.
    let (status, head, body) = get(port, "/page.html", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), None, "{head}");
    assert_eq!(body, page.as_bytes());
    assert_ne!(field(&head, "etag"), Some(gz_etag.as_str()));
    let (status, head, _) = get(port, "/page.html", "Accept-Encoding: gzip;q=0\r\n");
    assert_eq!((status, field(&head, "content-encoding")), (200, None));
    let (status, head, body) = get(
        port,
        "/page.html",
        "Accept-Encoding: gzip\r\nRange: bytes=0-2\r\n",
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(field(&head, "content-encoding"), None, "{head}");
    assert_eq!(body, b"<p>");
    for path in ["/small.txt", "/image.png"] {
        let (status, head, _) = get(port, path, "Accept-Encoding: gzip\r\n");
        assert_eq!(status, 200, "{path}: {head}");
        assert_eq!(field(&head, "content-encoding"), None, "{path}: {head}");
    }
    // HEAD: the gzipped length, no body.
    let (status, head, body) = raw(
        port,
        &format!("HEAD /page.html HTTP/1.1\r\nHost: {HOST}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty());
    let length: usize = field(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .expect("content-length");
    assert!(length > 0 && length < page.len() / 4, "{head}");

    // A large file: gzipped while it is sent (chunked, no length); as it is, whole and
    // as a range, byte for byte (zero-copy on plain TCP).
    let (status, head, body) = get(port, "/big.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(field(&head, "transfer-encoding"), Some("chunked"), "{head}");
    assert_eq!(field(&head, "content-length"), None, "{head}");
    assert_eq!(field(&head, "vary"), Some("Accept-Encoding"), "{head}");
    let gz = slipway_e2e::dechunk(&body);
    assert!(gz.len() < big.len() / 3, "{} bytes", gz.len());
    assert!(gunzip(&gz) == big.as_bytes(), "the text back");
    let (status, head, body) = get(port, "/big.txt", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), None, "{head}");
    assert!(
        body == big.as_bytes(),
        "{} of {} bytes",
        body.len(),
        big.len()
    );
    let (status, head, body) = get(port, "/big.txt", "Range: bytes=1000005-1100004\r\n");
    assert_eq!(status, 206, "{head}");
    assert_eq!(field(&head, "content-encoding"), None, "{head}");
    assert!(body == big.as_bytes()[1_000_005..1_100_005]);

    // Several ranges: multipart/byteranges, each part with its range.
    let (status, head, body) = get(port, "/small.txt", "Range: bytes=0-1,3-4\r\n");
    assert_eq!(status, 206, "{head}");
    let boundary = field(&head, "content-type")
        .and_then(|t| t.strip_prefix("multipart/byteranges; boundary="))
        .unwrap_or_else(|| panic!("not multipart: {head}"))
        .to_string();
    let expected = format!(
        "\r\n--{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 0-1/6\r\n\r\nsh\
         \r\n--{boundary}\r\ncontent-type: text/plain\r\ncontent-range: bytes 3-4/6\r\n\r\nrt\
         \r\n--{boundary}--\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&body), expected);
    assert_eq!(
        field(&head, "content-length"),
        Some(expected.len().to_string().as_str())
    );
    // Overlapping ranges: the whole file, 200.
    let (status, head, body) = get(port, "/small.txt", "Range: bytes=0-3,2-4\r\n");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"short\n");
    assert_eq!(field(&head, "content-range"), None, "{head}");

    // The mount's files, as the app wrote them at start; the slug's folder is hidden.
    let (status, head, body) = get(port, "/uploads/at-start.txt", "");
    assert_eq!(status, 200, "{head}\n{}", server.server_log());
    assert_eq!(body, b"written by the app at start\n");
    assert_eq!(field(&head, "cache-control"), Some("max-age=3600"));
    let (status, ..) = get(port, "/uploads/from-slug.txt", "");
    assert_eq!(status, 404);
    // A file the app writes now is served at once.
    let (status, _, body) = raw(
        port,
        &format!("POST /write?now.txt HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, body.as_slice()), (200, &b"app:/write?now.txt"[..]));
    let (status, head, body) = get(port, "/uploads/now.txt", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"new file now.txt\n");
    // A link out of the mount, made by the app: nothing outside is read.
    let (status, _, body) = get(port, "/uploads/escape.txt", "");
    assert_eq!(status, 404);
    let hostname = std::fs::read("/etc/hostname").unwrap_or_default();
    assert!(hostname.is_empty() || body != hostname);

    gzipped_copies_of_a_mount_file_and_a_large_file(&server, &big);

    // The rest of the app's folder is still the slug's.
    let (status, _, body) = get(port, "/small.txt", "");
    assert_eq!((status, body.as_slice()), (200, &b"short\n"[..]));
}

/// The gzipped copies in the router's store (`DATA/router/gzip`), each gunzipped.
fn stored_copies(server: &Server) -> Vec<Vec<u8>> {
    let dir = server.data.join("router/gzip");
    let mut copies = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the router's gzip folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "gz") {
            copies.push(gunzip(&std::fs::read(&path).expect("a copy")));
        }
    }
    copies
}

/// A text file of a mount is gzipped once per version into the router's store and
/// served from there (its length known, ranges of the gzipped bytes); the app rewriting
/// it in place (same inode, same size) is answered with the new text at once, never the
/// old copy, and the old copy goes; a file over 1 MiB gets its copy in the background.
fn gzipped_copies_of_a_mount_file_and_a_large_file(server: &Server, big: &str) {
    let port = server.http_port;
    let put = |name: &str, body: &str| {
        let (status, _, answer) = raw(
            port,
            &format!(
                "PUT /put?{name} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    };
    let gz_get = |extra: &str| {
        get(
            port,
            "/uploads/notes.txt",
            &format!("Accept-Encoding: gzip\r\n{extra}"),
        )
    };
    let first = "the first version of the notes\n".repeat(300);
    let second = "THE OTHER VERSION OF THE NOTES\n".repeat(300);
    assert_eq!(first.len(), second.len());
    put("notes.txt", &first);
    // Written a moment ago: compressed for the request, as before.
    let (status, head, body) = gz_get("");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(gunzip(&body), first.as_bytes());
    // Settled: from its stored copy, with its length and its own validator.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (status, head, whole) = gz_get("");
    assert_eq!(status, 200, "{head}");
    assert_eq!(field(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(
        field(&head, "content-length"),
        Some(whole.len().to_string().as_str()),
        "{head}"
    );
    let etag = field(&head, "etag").expect("etag").to_string();
    assert!(etag.ends_with("-gzs\""), "{head}");
    assert_eq!(gunzip(&whole), first.as_bytes());
    assert!(
        stored_copies(server).iter().any(|c| c == first.as_bytes()),
        "a copy in the store"
    );
    // A range of the gzipped bytes, for the same validator (the copy is some 90 bytes).
    assert!(whole.len() > 50, "{} gzipped bytes", whole.len());
    let (status, head, part) = gz_get(&format!("Range: bytes=10-49\r\nIf-Range: {etag}\r\n"));
    assert_eq!(status, 206, "{head}");
    assert_eq!(field(&head, "content-encoding"), Some("gzip"), "{head}");
    assert_eq!(
        field(&head, "content-range"),
        Some(format!("bytes 10-49/{}", whole.len()).as_str())
    );
    assert_eq!(part, whole[10..50]);

    // Rewritten in place, same size, right away: the new text, never the old copy.
    put("notes.txt", &second);
    let (status, head, body) = gz_get("");
    assert_eq!(status, 200, "{head}");
    assert_eq!(gunzip(&body), second.as_bytes());
    let (status, head, body) = gz_get(&format!("If-None-Match: {etag}\r\n"));
    assert_eq!(status, 200, "not the old version's 304: {head}");
    assert_eq!(gunzip(&body), second.as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (status, head, body) = gz_get("");
    assert_eq!(status, 200, "{head}");
    assert!(field(&head, "content-length").is_some(), "stored: {head}");
    assert_eq!(gunzip(&body), second.as_bytes());
    let copies = stored_copies(server);
    assert!(copies.iter().any(|c| c == second.as_bytes()));
    assert!(
        !copies.iter().any(|c| c == first.as_bytes()),
        "the old version's copy was removed"
    );
    // Without gzip: the file as it is.
    let (status, _, body) = get(port, "/uploads/notes.txt", "");
    assert_eq!((status, body.as_slice()), (200, second.as_bytes()));

    // Over 1 MiB: the copy is made in the background, then answered with its length.
    let mut stored = None;
    for _ in 0..100 {
        let (status, head, body) = get(port, "/big.txt", "Accept-Encoding: gzip\r\n");
        assert_eq!(status, 200, "{head}");
        if field(&head, "content-length").is_some() {
            stored = Some(body);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let stored = stored.expect("a stored copy of big.txt");
    assert!(gunzip(&stored) == big.as_bytes(), "the text back");
}

/// The slug folders (`DATA/slugs/HEX`) that `slipway serve` (process `pid`) holds
/// descriptors into, with how many each.
fn slug_fds(pid: u32, data: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let slugs = data.join("slugs");
    let mut held = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds") {
        let Ok(target) = std::fs::read_link(entry.expect("fd").path()) else {
            continue;
        };
        if let Ok(rest) = target.strip_prefix(&slugs) {
            if let Some(hex) = rest.components().next() {
                let hex = hex.as_os_str().to_string_lossy().to_string();
                *held.entry(hex).or_insert(0) += 1;
            }
        }
    }
    held
}

/// The router's open-file cache holds a release's static files open while it is live
/// (answers stay right), and a redeploy with new files serves the new ones and, once the
/// old release is retired, leaves no descriptor into its slug.
#[test]
fn a_redeploy_closes_the_old_release_files() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "cached");
    app.write(
        ".platform.app.yaml",
        r#"name: cached
type: python:3.11
web:
  locations:
    '/':
      root: public
      passthru: false
      index: [index.html]
"#,
    );
    for (name, text) in [("index.html", "<h1>one</h1>\n"), ("a.css", "a{}\n")] {
        app.write(&format!("public/{name}"), text);
    }
    app.commit("first");
    let push = |what: &str| {
        let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
        assert!(
            o.status.success(),
            "{what}: {}\n{}",
            text(&o),
            server.server_log()
        );
    };
    push("first push");
    let port = server.http_port;
    let pid = server.pid().expect("serve runs");
    for _ in 0..3 {
        for (path, want) in [("/", "<h1>one</h1>\n"), ("/a.css", "a{}\n")] {
            let (status, head, body) = get(port, path, "");
            assert_eq!((status, body.as_slice()), (200, want.as_bytes()), "{head}");
        }
    }
    let first = slug_fds(pid, &server.data);
    assert_eq!(first.len(), 1, "one release's slug: {first:?}");
    let (old, &count) = first.iter().next().expect("a slug");
    assert!(count >= 2, "its files are held open: {first:?}");

    app.write("public/index.html", "<h1>two</h1>\n");
    app.commit("second");
    push("second push");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let held = loop {
        // The new release's files, at once (another slug, another cache).
        let (status, _, body) = get(port, "/", "");
        assert_eq!((status, body.as_slice()), (200, &b"<h1>two</h1>\n"[..]));
        let held = slug_fds(pid, &server.data);
        if !held.contains_key(old) || std::time::Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        !held.contains_key(old),
        "the retired release's slug is still held open: {held:?}"
    );
    assert_eq!(held.len(), 1, "the new release's slug: {held:?}");
}
