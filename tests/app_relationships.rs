//! App-to-app relationships (issue 14, as on Platform.sh): `relationships: {back: "back:http"}`
//! lets app `front` reach app `back` of the same environment at `http://back.internal/`
//! (port 80), from its web process, its deploy hook (which finds `back` answering), its
//! shell and its workers' containers; `PLATFORM_RELATIONSHIPS` describes the endpoint in
//! Platform.sh's shape; a push that changes only `back` has `front` reach the new `back`
//! after the switch; another project's app neither resolves the name nor reaches the
//! address.

use slipway_e2e::{py_app, text, Server};

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
