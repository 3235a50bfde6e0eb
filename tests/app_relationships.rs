//! App-to-app relationships (issue 14, as on Platform.sh): `relationships: {back: "back:http"}`
//! lets app `front` reach app `back` of the same environment at `http://back.internal/`
//! (port 80), from its web process, its deploy hook (which finds `back` answering), its
//! shell and its workers' containers; `PLATFORM_RELATIONSHIPS` describes the endpoint in
//! Platform.sh's shape; a push that changes only `back` has `front` reach the new `back`
//! after the switch; another project's app neither resolves the name nor reaches the
//! address.

use slipway_e2e::{py_app, py_socket_app, text, Server};

/// Every app of the test runs this: `front` answers `/` with what `back.internal` answers,
/// `/rel` with its relationship's description, `/addr` with the address the name resolves
/// to; `/probe/ADDR` says whether port 80 of ADDR accepts a connection; `back` answers
/// `back` and its VERSION, any other app its name.
const SERVER: &str = py_app!(
    concat!(
        "import socket, urllib.request\n",
        "def fetch():\n",
        "    return urllib.request.urlopen(\"http://back.internal/\", timeout=10).read().decode()\n",
    ),
    concat!(
        "        name = os.environ[\"PLATFORM_APPLICATION_NAME\"]\n",
        "        if self.path.startswith(\"/probe/\"):\n",
        "            try:\n",
        "                socket.create_connection((self.path[7:], 80), timeout=5).close()\n",
        "                body = b\"reached\"\n",
        "            except OSError as e:\n",
        "                body = (\"unreachable: %s\" % e).encode()\n",
        "        elif self.path == \"/addr\":\n",
        "            try:\n",
        "                body = socket.gethostbyname(\"back.internal\").encode()\n",
        "            except OSError as e:\n",
        "                body = (\"unresolved: %s\" % e).encode()\n",
        "        elif name == \"back\":\n",
        "            body = (\"back \" + open(\"VERSION\").read().strip()).encode()\n",
        "        elif name != \"front\":\n",
        "            body = name.encode()\n",
        "        elif self.path == \"/rel\":\n",
        "            rels = json.loads(base64.b64decode(os.environ[\"PLATFORM_RELATIONSHIPS\"]))\n",
        "            r = rels[\"back\"][0]\n",
        "            body = json.dumps({k: r.get(k) for k in (\"service\", \"host\", \"port\", \"scheme\", \"rel\", \"type\", \"url\")}, sort_keys=True).encode()\n",
        "        else:\n",
        "            body = (\"front got: \" + fetch()).encode()\n",
    )
);

/// `front` (first, with a deploy hook that calls `back`, and a worker) and `back`.
const CONFIG: &str = "applications:
  front:
    type: python:3.11
    source: {root: front}
    relationships:
      back: 'back:http'
    hooks:
      deploy: |
        echo \"hook saw: $(python3 fetch.py)\"
    web: {commands: {start: python3 server.py}}
    workers:
      poll: {commands: {start: sleep infinity}}
  back:
    type: python:3.11
    source: {root: back}
    web: {commands: {start: python3 server.py}}
routes:
  'http://{default}/': {type: upstream, upstream: 'front:http'}
";

const FETCH: &str = "import urllib.request\nprint(urllib.request.urlopen(\"http://back.internal/\", timeout=10).read().decode())\n";

fn get(server: &Server, host: &str, path: &str) -> String {
    let (status, body) = server
        .get(host, path)
        .unwrap_or_else(|| panic!("no answer from {host}{path}:\n{}", server.server_log()));
    assert_eq!(status, 200, "{host}{path}: {body}");
    body
}

#[test]
fn an_app_reaches_another_app_of_its_release_at_rel_internal_and_no_other_project_does() {
    let server = Server::start();
    let duo = server.project(
        "duo",
        &[
            (".upsun/config.yaml", CONFIG),
            ("front/server.py", SERVER),
            ("front/fetch.py", FETCH),
            ("back/server.py", SERVER),
            ("back/VERSION", "v1\n"),
        ],
    );
    let out = server.push_ok(&duo, "duo");
    // The deploy hook of `front` (first in the configuration) found `back` answering.
    assert!(out.contains("hook saw: back v1"), "{out}");

    let host = "main.duo.localhost";
    assert_eq!(get(&server, host, "/"), "front got: back v1");
    let rel: serde_json::Value = serde_json::from_str(&get(&server, host, "/rel")).unwrap();
    assert_eq!(
        rel,
        serde_json::json!({
            "service": "back", "host": "back.internal", "port": 80, "scheme": "http",
            "rel": "http", "type": "python:3.11", "url": "http://back.internal:80",
        }),
    );
    // Its shell and its worker's container resolve and reach it too.
    for user in ["front.main.duo", "poll.main.duo"] {
        let o = server.ssh(&server.key, user, "python3 /app/fetch.py");
        assert!(o.status.success(), "{user}: {}", text(&o));
        assert_eq!(text(&o).trim(), "back v1", "{user}");
    }

    // A push that changes only `back`: after the switch, `front` (of the new release)
    // reaches the new `back`.
    let old_addr = get(&server, host, "/addr");
    duo.write("back/VERSION", "v2\n");
    duo.commit("back v2");
    let out = server.push_ok(&duo, "duo");
    assert!(out.contains("hook saw: back v2"), "{out}");
    assert_eq!(get(&server, host, "/"), "front got: back v2");
    let new_addr = get(&server, host, "/addr");
    assert_ne!(
        old_addr, new_addr,
        "each release's apps have their own addresses"
    );
    assert_eq!(get(&server, host, &format!("/probe/{new_addr}")), "reached");

    // Another project's app resolves no `back.internal` and does not reach `duo`'s
    // address (its own network namespace).
    let other = server.project(
        "other",
        &[
            (
                ".platform.app.yaml",
                "name: lone\ntype: python:3.11\nweb: {commands: {start: python3 server.py}}\n",
            ),
            ("server.py", SERVER),
        ],
    );
    server.push_ok(&other, "other");
    let host = "main.other.localhost";
    let addr = get(&server, host, "/addr");
    assert!(addr.starts_with("unresolved"), "{addr}");
    let probe = get(&server, host, &format!("/probe/{new_addr}"));
    assert!(probe.starts_with("unreachable"), "{probe}");
}

/// `front` answers `/call/NAME/PATH` with what `http://NAME.internal/PATH` answers (or
/// `status N`, `failed: WHY`), and anything else (the health check's `/`) at once.
const CALLER: &str = py_app!(
    concat!(
        "import urllib.error, urllib.request\n",
        "def call(path):\n",
        "    name, _, rest = path[6:].partition(\"/\")\n",
        "    try:\n",
        "        return urllib.request.urlopen(\"http://%s.internal/%s\" % (name, rest), timeout=20).read()\n",
        "    except urllib.error.HTTPError as e:\n",
        "        return (\"status %d\" % e.code).encode()\n",
        "    except OSError as e:\n",
        "        return (\"failed: %s\" % e).encode()\n",
    ),
    "        body = call(self.path) if self.path.startswith(\"/call/\") else b\"front\"\n"
);

/// An HTTP server on the unix socket `$SOCKET` answering `sock` and the caller's
/// `X-Forwarded-For`.
const SOCKET_SERVER: &str = py_socket_app!(
    "",
    "        body = (\"sock \" + self.path + \" \" + self.headers.get(\"X-Forwarded-For\", \"-\")).encode()\n"
);

/// `front` relates to three apps that run no HTTP server on a port of their own: `php`
/// (PHP-FPM, no start command: the router speaks FastCGI to it), `sock` (on a unix
/// socket) and `site` (a static site: locations only, no process).
const KINDS: &str = "applications:
  front:
    type: python:3.11
    source: {root: front}
    relationships:
      php: 'php:http'
      sock: 'sock:http'
      site: 'site:http'
    web: {commands: {start: python3 server.py}}
  php:
    type: php:8.2
    source: {root: php}
    web:
      locations:
        '/':
          root: web
          passthru: /index.php
  sock:
    type: python:3.11
    source: {root: sock}
    web:
      upstream: {socket_family: unix}
      commands: {start: python3 server.py}
  site:
    type: python:3.11
    source: {root: site}
    web:
      locations:
        '/':
          root: public
          index: [index.html]
          passthru: false
routes:
  'http://{default}/': {type: upstream, upstream: 'front:http'}
";

const INDEX_PHP: &str = "<?php\necho 'php ', trim(file_get_contents(__DIR__ . '/../VERSION')), ' ', $_SERVER['REQUEST_URI'], ' ', $_SERVER['HTTP_HOST'], ' ', $_SERVER['REMOTE_ADDR'];\n";

#[test]
fn a_php_a_unix_socket_and_a_static_app_answer_at_rel_internal_through_deploys_and_restarts() {
    let mut server = Server::start();
    let kinds = server.project(
        "kinds",
        &[
            (".upsun/config.yaml", KINDS),
            ("front/server.py", CALLER),
            ("php/web/index.php", INDEX_PHP),
            ("php/web/style.css", "body{}\n"),
            ("php/VERSION", "v1\n"),
            ("sock/server.py", SOCKET_SERVER),
            ("site/public/index.html", "<h1>site</h1>\n"),
        ],
    );
    server.push_ok(&kinds, "kinds");
    let host = "main.kinds.localhost";
    let check_all = |server: &Server, version: &str| {
        // PHP-FPM: its locations (a passthru to index.php, a static file) as its route
        // would serve them, the caller's Host and address given to the script.
        let php = get(server, host, "/call/php/a/b?x=1");
        let prefix = format!("php {version} /a/b?x=1 php.internal 127.");
        assert!(php.starts_with(&prefix), "{php}");
        assert_eq!(get(server, host, "/call/php/style.css"), "body{}\n");
        // The unix-socket app, with the caller's address forwarded.
        let sock = get(server, host, "/call/sock/x");
        assert!(sock.starts_with("sock /x 127."), "{sock}");
        // The static site: its index, and its 404 (no process behind it).
        assert_eq!(get(server, host, "/call/site/"), "<h1>site</h1>\n");
        assert_eq!(get(server, host, "/call/site/missing.html"), "status 404");
    };
    check_all(&server, "v1");

    // A deploy of `php` while `front` calls it in a loop: no call fails; the old front
    // reaches the old php until the switch, the new front the new one after.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.http_port;
    let caller = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let answer = slipway_e2e::http_get(port, host, "/call/php/");
                seen.push(answer);
            }
            seen
        })
    };
    kinds.write("php/VERSION", "v2\n");
    kinds.commit("php v2");
    server.push_ok(&kinds, "kinds");
    // Calls after the switch, then the old release's retirement.
    std::thread::sleep(std::time::Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = caller.join().unwrap();
    let failed: Vec<_> = seen
        .iter()
        .filter(|a| {
            !matches!(a, Some((200, body)) if body.starts_with("php v1 ") || body.starts_with("php v2 "))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed, e.g. {:?}",
        failed.len(),
        seen.len(),
        failed.first()
    );
    assert!(
        seen.iter()
            .any(|a| a.as_ref().is_some_and(|(_, b)| b.starts_with("php v2 "))),
        "no call reached the new php"
    );
    check_all(&server, "v2");

    // A server restart: the listeners are made again for the live release.
    server.stop();
    server.serve();
    check_all(&server, "v2");
}
