//! More service types (issue 14): RabbitMQ, headless Chromium and InfluxDB run per
//! environment on their own stacks (built once into the shared stacks folder), and an app
//! uses each through its relationship: it publishes and consumes an AMQP message, loads a
//! page through Chromium's DevTools endpoint, writes and reads InfluxDB points, and sets
//! and gets a memcached key (the service ready once it answers `version`). A type
//! whose version Debian cannot provide (InfluxDB 2) is refused at push. A backup keeps
//! InfluxDB's points and RabbitMQ's queued messages, and a restore gives them back.

use slipway_e2e::{cached_stack, text, App, Server};

/// The app: one path per service it talks to, with nothing but Python's standard library
/// (AMQP 0-9-1 spoken over a raw socket).
const APP_SERVER: &str = slipway_e2e::py_app!(
    r#"import socket, struct, time, urllib.parse, urllib.request
rels = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))

def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"
def method(channel, cls, mid, args):
    return frame(1, channel, struct.pack(">HH", cls, mid) + args)
def short(s):
    s = s.encode()
    return struct.pack(">B", len(s)) + s
def read_frame(sock):
    head = b""
    while len(head) < 7:
        got = sock.recv(7 - len(head))
        if not got:
            raise EOFError("connection closed")
        head += got
    kind, channel, size = struct.unpack(">BHI", head)
    body = b""
    while len(body) < size + 1:
        got = sock.recv(size + 1 - len(body))
        if not got:
            raise EOFError("connection closed")
        body += got
    return kind, body[:size]
def expect(sock, cls, mid):
    kind, payload = read_frame(sock)
    got = struct.unpack(">HH", payload[:4]) if kind == 1 else None
    if got != (cls, mid):
        raise RuntimeError("expected %s, got %s" % ((cls, mid), got))
    return payload[4:]

def amqp(vhost, password=None, publish=None, get=None, rel="queue"):
    r = rels[rel][0]
    s = socket.create_connection((r["host"], r["port"]), timeout=10)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    expect(s, 10, 10)
    auth = b"\x00" + r["username"].encode() + b"\x00" + (password or r["password"]).encode()
    s.sendall(method(0, 10, 11, b"\x00\x00\x00\x00" + short("PLAIN") + struct.pack(">I", len(auth)) + auth + short("en_US")))
    tune = expect(s, 10, 30)
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
    s.sendall(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
    s.sendall(method(0, 10, 40, short(vhost) + short("") + b"\x00"))
    expect(s, 10, 41)
    s.sendall(method(1, 20, 10, short("")))
    expect(s, 20, 11)
    s.sendall(method(1, 50, 10, b"\x00\x00" + short("jobs") + b"\x02" + b"\x00\x00\x00\x00"))
    expect(s, 50, 11)
    out = "ok"
    if publish is not None:
        body = publish.encode()
        # Publisher confirms: the broker acks a persistent message once it is on disk.
        s.sendall(method(1, 85, 10, b"\x00"))
        expect(s, 85, 11)
        s.sendall(method(1, 60, 40, b"\x00\x00" + short("") + short("jobs") + b"\x00"))
        s.sendall(frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0x1000) + b"\x02"))
        s.sendall(frame(3, 1, body))
        expect(s, 60, 80)
        # channel.close and its close-ok: the broker has handled the publish before it.
        s.sendall(method(1, 20, 40, struct.pack(">H", 200) + short("") + struct.pack(">HH", 0, 0)))
        expect(s, 20, 41)
    if get:
        s.sendall(method(1, 60, 70, b"\x00\x00" + short("jobs") + b"\x01"))
        kind, payload = read_frame(s)
        if struct.unpack(">HH", payload[:4]) == (60, 72):
            out = "empty"
        else:
            _, header = read_frame(s)
            size = struct.unpack(">Q", header[4:12])[0]
            body = b""
            while len(body) < size:
                body += read_frame(s)[1]
            out = body.decode()
    s.close()
    return out

def devtools(path, method="GET"):
    c = rels["chrome"][0]
    req = urllib.request.Request("http://%s:%d%s" % (c["ip"], c["port"], path), method=method)
    return urllib.request.urlopen(req, timeout=20).read().decode()

def influx(path, data=None):
    i = rels["influx"][0]
    url = "%s://%s:%d%s" % (i["scheme"], i["host"], i["port"], path)
    req = urllib.request.Request(url, data=data.encode() if data is not None else None)
    with urllib.request.urlopen(req, timeout=20) as r:
        return "%d %s" % (r.status, r.read().decode())

"#,
    r#"        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        try:
            if u.path == "/rels":
                body = json.dumps(rels)
            elif u.path == "/amqp/publish":
                body = amqp(q.get("vhost", "/"), password=q.get("password"), publish=q["msg"], rel=q.get("rel", "queue"))
            elif u.path == "/amqp/get":
                body = amqp(q.get("vhost", "/"), password=q.get("password"), get=True, rel=q.get("rel", "queue"))
            elif u.path == "/amqp/wrong-password":
                body = amqp("/", password="not-the-password")
            elif u.path == "/chrome/version":
                body = devtools("/json/version")
            elif u.path == "/chrome/load":
                page = "data:text/html,<title>%s</title>" % q["title"]
                devtools("/json/new?" + urllib.parse.quote(page, safe=""), "PUT")
                body = "not loaded"
                for _ in range(100):
                    if any(t.get("title") == q["title"] for t in json.loads(devtools("/json/list"))):
                        body = "loaded " + q["title"]
                        break
                    time.sleep(0.2)
            elif u.path == "/influx/write":
                influx("/query", "q=" + urllib.parse.quote("CREATE DATABASE metrics"))
                body = influx("/write?db=metrics", "cpu,host=web value=%s" % q["value"])
            elif u.path == "/memcached":
                c = rels["mc"][0]
                m = socket.create_connection((c["host"], c["port"]), timeout=5)
                v = q["value"]
                m.sendall(("set k 0 0 %d\r\n%s\r\nget k\r\n" % (len(v), v)).encode())
                got = b""
                while not got.endswith(b"END\r\n"):
                    more = m.recv(4096)
                    if not more:
                        break
                    got += more
                m.close()
                body = got.decode().replace("\r\n", " ").strip()
            elif u.path == "/influx/create":
                body = influx("/query", "q=" + urllib.parse.quote("CREATE DATABASE " + q["db"]))
            elif u.path == "/influx/databases":
                body = influx("/query?q=" + urllib.parse.quote("SHOW DATABASES"))
            elif u.path == "/influx/read":
                body = influx("/query?db=metrics&q=" + urllib.parse.quote("SELECT value FROM cpu"))
            else:
                body = "?"
            status = 200
        except Exception as e:
            body, status = "error: %r" % (e,), 500
        body = body.encode()
"#
);

const HOST: &str = "main.demo.localhost";

/// A server running the app with `relationships` (YAML lines) and `services` (the
/// services file), pushed once; the push's output.
fn push_app(server: &Server, relationships: &str, services: &str) -> (App, String) {
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        &format!("name: hello\ntype: python:3.11\nrelationships:\n{relationships}web:\n  commands:\n    start: python3 server.py\n"),
    );
    app.write(".platform/services.yaml", services);
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", APP_SERVER);
    app.commit("with services");
    let out = server.push_ok(&app, "demo");
    (app, out)
}

/// The RabbitMQ service `queue` of most tests: `rabbitmq:3.10` on 512 MB, no configuration.
const QUEUE: &str = "queue:\n  type: rabbitmq:3.10\n  disk: 512\n";

/// A server running the app with the relationship `queue` to the RabbitMQ service
/// [`QUEUE`] (with `configuration`, its YAML lines, after it), pushed once.
fn with_a_queue(configuration: &str) -> (Server, App) {
    cached_stack("rabbitmq:3.10");
    let server = Server::start();
    let (app, _) = push_app(
        &server,
        "  queue: 'queue:rabbitmq'\n",
        &format!("{QUEUE}{configuration}"),
    );
    (server, app)
}

fn get(server: &Server, path: &str) -> (u16, String) {
    get_at(server, HOST, path)
}

/// `path` of environment `host`: status and body (there must be an answer).
fn get_at(server: &Server, host: &str, path: &str) -> (u16, String) {
    server
        .get(host, path)
        .unwrap_or_else(|| panic!("no answer to {path}:\n{}", server.server_log()))
}

/// A new branch `branch` of `app` with `files` written, committed and pushed: what the push
/// printed (it must succeed).
fn push_new_branch(server: &Server, app: &App, branch: &str, files: &[(&str, &str)]) -> String {
    app.git_ok(&["checkout", "-q", "-b", branch]);
    for (path, content) in files {
        app.write(path, content);
    }
    app.commit(&format!("{branch}'s own"));
    let o = server.git(&app.dir, &["push", &server.remote("demo"), branch]);
    assert!(
        o.status.success(),
        "push {branch}:\n{}\n{}",
        text(&o),
        server.server_log()
    );
    text(&o)
}

/// Field `key` of the `queue` relationship's first endpoint in a `/rels` answer.
fn queue_field(rels: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(rels).expect("relationships JSON");
    v["queue"][0][key].as_str().unwrap_or_default().to_string()
}

/// `path` of environment `host` once its apps answer it with 200 (they restart after a
/// `sync` or a restore); its body.
fn get_when_up(server: &Server, host: &str, path: &str) -> String {
    server.wait_for_page(host, path, std::time::Duration::from_secs(60))
}

#[test]
fn an_app_publishes_and_consumes_amqp_messages_through_its_rabbitmq_relationship() {
    cached_stack("rabbitmq:3.10");
    let server = Server::start();
    let (_, out) = push_app(
        &server,
        "  queue: 'queue:rabbitmq'\n",
        "queue:\n  type: rabbitmq:3.13\n  disk: 512\n  configuration:\n    vhosts:\n      - orders\n",
    );
    // 3.13 is not in Debian: the nearest version the server has is used, and said so.
    assert!(out.contains("rabbitmq:3.10"), "{out}");
    let (status, rels) = get(&server, "/rels");
    assert_eq!(status, 200, "{rels}");
    let rels: serde_json::Value = serde_json::from_str(&rels).unwrap();
    let q = &rels["queue"][0];
    assert_eq!(q["scheme"], "amqp");
    assert_eq!(q["port"], 5672);
    assert_eq!(q["host"], "queue.internal");
    assert_eq!(q["username"], "guest");
    let password = q["password"].as_str().unwrap();
    assert_eq!(password.len(), 48, "a generated password, not guest");
    assert_eq!(
        q["url"],
        format!("amqp://guest:{password}@queue.internal:5672")
    );

    // A message goes in and comes out again, on the default vhost and the configured one.
    assert_eq!(
        get(&server, "/amqp/publish?msg=hello-amqp"),
        (200, "ok".into())
    );
    assert_eq!(get(&server, "/amqp/get"), (200, "hello-amqp".into()));
    assert_eq!(get(&server, "/amqp/get"), (200, "empty".into()));
    assert_eq!(
        get(&server, "/amqp/publish?vhost=orders&msg=order-1"),
        (200, "ok".into())
    );
    assert_eq!(get(&server, "/amqp/get"), (200, "empty".into()));
    assert_eq!(
        get(&server, "/amqp/get?vhost=orders"),
        (200, "order-1".into())
    );

    // The attacks: a wrong password and a vhost that was never configured are refused.
    let (status, body) = get(&server, "/amqp/wrong-password");
    assert_eq!(status, 500, "a wrong password was accepted: {body}");
    let (status, body) = get(&server, "/amqp/publish?vhost=nope&msg=x");
    assert_eq!(status, 500, "an unknown vhost was accepted: {body}");
    // The service has a container of its own.
    let containers = server.containers();
    assert!(
        containers
            .iter()
            .any(|(id, _)| id == "demo.main.queue.service"),
        "{containers:?}"
    );
}

#[test]
fn an_app_loads_a_page_through_chrome_headless_devtools() {
    cached_stack("chrome-headless:156");
    let server = Server::start();
    push_app(
        &server,
        "  chrome: 'headless:http'\n",
        "headless:\n  type: chrome-headless:120\n",
    );
    let (status, rels) = get(&server, "/rels");
    assert_eq!(status, 200, "{rels}");
    let rels: serde_json::Value = serde_json::from_str(&rels).unwrap();
    let c = &rels["chrome"][0];
    assert_eq!(c["scheme"], "http");
    assert_eq!(c["port"], 9222);
    let ip = c["ip"].as_str().unwrap().to_string();

    let (status, version) = get(&server, "/chrome/version");
    assert_eq!(status, 200, "{version}");
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert!(
        version["Browser"]
            .as_str()
            .is_some_and(|b| b.contains("Chrome")),
        "{version}"
    );
    // The WebSocket a client drives the browser with is on the service's address.
    assert!(
        version["webSocketDebuggerUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("ws://{ip}:9222/devtools/browser/"))),
        "{version}"
    );
    assert_eq!(
        get(&server, "/chrome/load?title=slipway-page"),
        (200, "loaded slipway-page".into())
    );
}

#[test]
fn an_app_writes_and_reads_influxdb_points_and_influxdb_2_is_refused() {
    cached_stack("influxdb:1.6");
    let server = Server::start();
    let (app, out) = push_app(
        &server,
        "  influx: 'metrics:influxdb'\n",
        "metrics:\n  type: influxdb:1.8\n  disk: 256\n",
    );
    assert!(out.contains("influxdb:1.6"), "{out}");
    let (status, body) = get(&server, "/influx/write?value=0.64");
    assert_eq!((status, body.as_str()), (200, "204 "), "{body}");
    let (status, body) = get(&server, "/influx/read");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("0.64"), "{body}");

    // InfluxDB 2 (tokens, orgs, buckets) is not InfluxDB 1 under another number: refused,
    // and the running environment keeps answering.
    app.write(
        ".platform/services.yaml",
        "metrics:\n  type: influxdb:1.8\n  disk: 256\nmetrics2:\n  type: influxdb:2.7\n",
    );
    app.commit("influxdb 2");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "influxdb:2.7 was accepted:\n{out}");
    assert!(out.contains("influxdb:2.7"), "{out}");
    assert!(out.contains("influxdb:1.6"), "{out}");
    let (status, body) = get(&server, "/influx/read");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("0.64"), "{body}");
}

#[test]
fn postgresql_creates_its_configured_extensions_and_refuses_missing_ones() {
    let server = Server::start();
    let services = "db:\n  type: postgresql:15\n  configuration:\n    extensions:\n      - pg_trgm\n      - hstore\n";
    let (app, _) = push_app(&server, "  database: 'db:postgresql'\n", services);
    let o = slipway_e2e::run(server.runc().args([
        "exec",
        "demo.main.db.service",
        "/usr/lib/postgresql/15/bin/psql",
        "-tA",
        "-h",
        "/tmp",
        "-U",
        "main",
        "main",
        "-c",
        "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hstore,pg_trgm,plpgsql"
    );
    // An extension the stack lacks (postgis is not in the postgresql stacks) fails the
    // new service's start, naming it, and the push is refused.
    app.write(
        ".platform/services.yaml",
        &format!("{services}geo:\n  type: postgresql:15\n  configuration:\n    extensions:\n      - postgis\n"),
    );
    app.commit("postgis");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "postgis was accepted:\n{out}");
    assert!(out.contains("extension postgis is not available"), "{out}");
    assert_eq!(get(&server, "/rels").0, 200);
}

#[test]
fn memcached_is_ready_once_it_answers_and_an_app_sets_and_gets_a_key() {
    cached_stack("memcached:1.6");
    let server = Server::start();
    let _ = push_app(
        &server,
        "  mc: 'cache:memcached'\n",
        "cache:\n  type: memcached:1.6\n",
    );
    // Ready by its `version` answer (run in its container, with the stack's own bash and
    // coreutils): the push went live, and the first request finds it serving.
    let (status, body) = get(&server, "/memcached?value=hello");
    assert_eq!(
        (status, body.as_str()),
        (200, "STORED VALUE k 0 5 hello END"),
        "{body}"
    );
}

#[test]
fn influxdb_points_and_rabbitmq_messages_are_backed_up_and_restored() {
    cached_stack("rabbitmq:3.10");
    cached_stack("influxdb:1.6");
    let server = Server::start();
    push_app(
        &server,
        "  queue: 'queue:rabbitmq'\n  influx: 'metrics:influxdb'\n",
        "queue:\n  type: rabbitmq:3.10\n  disk: 512\nmetrics:\n  type: influxdb:1.8\n  disk: 256\n",
    );
    let admin = |command: &str| server.admin_ok(command);
    // A point, and a persistent message waiting in a durable queue.
    assert_eq!(
        get(&server, "/influx/write?value=0.64"),
        (200, "204 ".into())
    );
    assert_eq!(get(&server, "/amqp/publish?msg=before"), (200, "ok".into()));
    // A database with no point yet (no shard) is kept too.
    let (status, body) = get(&server, "/influx/create?db=empty_yet");
    assert_eq!(status, 200, "{body}");

    let out = admin("backup create demo main");
    assert!(
        out.contains("backup metrics") && out.contains("backup queue"),
        "{out}"
    );
    assert!(!out.contains("holds no data to keep"), "{out}");
    let ls = admin("backup ls demo main");
    assert!(ls.contains("metrics") && ls.contains("queue"), "{ls}");
    let o = server.ssh(&server.key, "git", "backup ls demo main --json");
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = list[0]["manifest"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"influxdb-portable") && kinds.contains(&"rabbitmq-data"),
        "{kinds:?}"
    );
    // The node came back after its copy: messages go in and out.
    assert_eq!(get(&server, "/amqp/get"), (200, "before".into()));

    // Both change; the restore gives back exactly what the backup holds.
    assert_eq!(
        get(&server, "/influx/write?value=0.99"),
        (200, "204 ".into())
    );
    assert_eq!(get(&server, "/amqp/publish?msg=after"), (200, "ok".into()));
    let out = admin("backup restore demo main 1");
    assert!(out.contains("restored from backup 1"), "{out}");
    // The apps started again by the restore answer.
    let body = get_when_up(&server, HOST, "/influx/read");
    assert!(body.contains("0.64") && !body.contains("0.99"), "{body}");
    let (status, body) = get(&server, "/influx/databases");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"empty_yet\"") && body.contains("\"metrics\""),
        "{body}"
    );
    assert_eq!(get(&server, "/amqp/get"), (200, "before".into()));
    assert_eq!(get(&server, "/amqp/get"), (200, "empty".into()));
}

#[test]
fn a_rabbitmq_node_keeps_its_messages_in_a_branch_whose_service_has_another_address_and_a_backup_of_main_restores_into_it(
) {
    cached_stack("redis:7.0");
    let (server, app) = with_a_queue("");
    let admin = |command: &str| server.admin_ok(command);
    let dev = |path: &str| get_at(&server, "dev.demo.localhost", path);
    assert_eq!(
        get(&server, "/amqp/publish?msg=from-main"),
        (200, "ok".into())
    );
    let out = admin("backup create demo main");
    assert!(out.contains("backup queue"), "{out}");

    // Branch dev has a service before the queue: its queue gets another address (the
    // Erlang node's name was made from it) and starts on a copy of main's data.
    push_new_branch(
        &server,
        &app,
        "dev",
        &[(
            ".platform/services.yaml",
            &format!("cache:\n  type: redis:7.0\n  disk: 256\n{QUEUE}"),
        )],
    );
    let (main_ip, dev_ip) = (
        queue_field(&get(&server, "/rels").1, "ip"),
        queue_field(&dev("/rels").1, "ip"),
    );
    assert_ne!(
        main_ip, dev_ip,
        "the test needs dev's queue on another address"
    );
    // The copy's message is there.
    assert_eq!(dev("/amqp/get"), (200, "from-main".into()));
    assert_eq!(dev("/amqp/get"), (200, "empty".into()));

    // Main's backup restores into dev: its message is back there.
    let out = admin("backup restore demo dev 1");
    assert!(out.contains("restored from backup 1"), "{out}");
    assert_eq!(
        get_when_up(&server, "dev.demo.localhost", "/amqp/get"),
        "from-main"
    );
    // Main's queue was not touched by dev's restore.
    assert_eq!(get(&server, "/amqp/get"), (200, "from-main".into()));
}

#[test]
fn two_rabbitmq_services_of_a_branch_run_side_by_side_when_one_starts_on_a_copy_whose_node_name_is_the_others(
) {
    let (server, app) = with_a_queue("");
    assert_eq!(
        get(&server, "/amqp/publish?msg=from-main"),
        (200, "ok".into())
    );

    // Branch dev adds a second RabbitMQ service, `events`, which takes the first address
    // (main's queue's, whose node name the copy of queue's data keeps): without a port
    // mapper of its own each, the second node to start finds its name taken.
    push_new_branch(
        &server,
        &app,
        "dev",
        &[
            (
                ".platform.app.yaml",
                "name: hello\ntype: python:3.11\nrelationships:\n  events: 'events:rabbitmq'\n  queue: 'queue:rabbitmq'\nweb:\n  commands:\n    start: python3 server.py\n",
            ),
            (
                ".platform/services.yaml",
                &format!("events:\n  type: rabbitmq:3.10\n  disk: 512\n{QUEUE}"),
            ),
        ],
    );
    let dev = |path: &str| get_at(&server, "dev.demo.localhost", path);
    let rels: serde_json::Value = serde_json::from_str(&dev("/rels").1).unwrap();
    assert_eq!(
        rels["events"][0]["ip"],
        serde_json::json!("127.1.0.2"),
        "the test needs events on main's queue's address: {rels}"
    );
    // Both nodes serve: queue with the copy of main's message, events with its own.
    assert_eq!(dev("/amqp/get"), (200, "from-main".into()));
    assert_eq!(
        dev("/amqp/publish?rel=events&msg=an-event"),
        (200, "ok".into())
    );
    assert_eq!(dev("/amqp/get?rel=events"), (200, "an-event".into()));
    assert_eq!(dev("/amqp/get"), (200, "empty".into()));
    // Main's node was not disturbed.
    assert_eq!(get(&server, "/amqp/get"), (200, "from-main".into()));
}

#[test]
fn a_rabbitmq_vhost_added_by_a_later_push_is_made_on_the_running_service_which_keeps_its_messages()
{
    let (server, app) = with_a_queue("");
    assert_eq!(get(&server, "/amqp/publish?msg=kept"), (200, "ok".into()));
    // No vhost `orders` yet.
    let (status, body) = get(&server, "/amqp/publish?vhost=orders&msg=x");
    assert_eq!(status, 500, "an unknown vhost was accepted: {body}");

    // A push that changes only the service's configuration: a vhost more.
    app.write(
        ".platform/services.yaml",
        &format!("{QUEUE}  configuration:\n    vhosts:\n      - orders\n"),
    );
    app.commit("a vhost for orders");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push:\n{out}\n{}", server.server_log());
    assert!(
        out.contains("service queue configuration changed (vhost orders added)"),
        "{out}"
    );
    assert!(out.contains("service queue: vhost orders added"), "{out}");
    // Made on the running node: it was not restarted.
    assert!(!out.contains("restarted on"), "{out}");

    // The app publishes and consumes on the new vhost; the old vhost's message is there.
    assert_eq!(
        get(&server, "/amqp/publish?vhost=orders&msg=order-1"),
        (200, "ok".into())
    );
    assert_eq!(
        get(&server, "/amqp/get?vhost=orders"),
        (200, "order-1".into())
    );
    assert_eq!(get(&server, "/amqp/get"), (200, "kept".into()));
    assert_eq!(get(&server, "/amqp/get"), (200, "empty".into()));
    // A vhost never configured is still refused.
    let (status, body) = get(&server, "/amqp/publish?vhost=nope&msg=x");
    assert_eq!(status, 500, "an unknown vhost was accepted: {body}");
}

#[test]
fn a_branchs_rabbitmq_after_sync_has_its_parents_messages_its_own_password_and_its_own_vhosts() {
    let (server, app) = with_a_queue("  configuration:\n    vhosts:\n      - orders\n");
    const DEV: &str = "dev.demo.localhost";
    // Branch dev has a vhost main has not.
    push_new_branch(
        &server,
        &app,
        "dev",
        &[(
            ".platform/services.yaml",
            &format!("{QUEUE}  configuration:\n    vhosts:\n      - orders\n      - audit\n"),
        )],
    );
    let main_password = queue_field(&get(&server, "/rels").1, "password");
    let dev_password = queue_field(&get_when_up(&server, DEV, "/rels"), "password");
    assert_ne!(
        main_password, dev_password,
        "each environment its own password"
    );

    // Main's messages since the branch was made come with the sync (those the broker
    // confirmed: a copy of a running node holds what it had written to disk).
    assert_eq!(
        get(&server, "/amqp/publish?vhost=orders&msg=order-from-main"),
        (200, "ok".into())
    );
    let out = server.admin_ok("sync demo dev");
    assert!(out.contains("queue"), "{out}");
    assert_eq!(
        get_when_up(&server, DEV, "/amqp/get?vhost=orders"),
        "order-from-main",
        "{out}\n{}",
        server.server_log()
    );
    // Dev's own vhost, which main's data never had, is there after the sync.
    assert_eq!(
        get_when_up(&server, DEV, "/amqp/publish?vhost=audit&msg=a1"),
        "ok"
    );
    assert_eq!(get_when_up(&server, DEV, "/amqp/get?vhost=audit"), "a1");
    // Dev's app logs in with dev's password; main's does not open dev's broker.
    let (status, body) = get_at(&server, DEV, &format!("/amqp/get?password={main_password}"));
    assert_eq!(status, 500, "main's password opened dev's broker: {body}");
    // Main's broker is untouched: its message is still there, dev's vhost is not.
    assert_eq!(
        get(&server, "/amqp/get?vhost=orders"),
        (200, "order-from-main".into())
    );
    let (status, body) = get(&server, "/amqp/get?vhost=audit");
    assert_eq!(status, 500, "dev's vhost appeared in main: {body}");
    let (status, body) = get(&server, &format!("/amqp/get?password={dev_password}"));
    assert_eq!(status, 500, "dev's password opened main's broker: {body}");
}
