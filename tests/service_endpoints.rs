//! PostgreSQL databases and endpoints (issue 14, spec section 9), as on Platform.sh:
//! `configuration.databases` (or `schemas`) makes several databases, each of
//! `configuration.endpoints` is a login role of its own with a generated password and
//! exactly its `privileges` per database (`admin`, `rw`, `ro`), and `PLATFORM_RELATIONSHIPS`
//! describes each endpoint (its user, its `default_database` as `path`). A relationship to
//! a missing endpoint is refused at validate; a database or endpoint added later is created
//! on the running service with its data kept; removing one needs `-o allow-data-loss`.
//! `configuration.extensions: [postgis]` gives PostGIS on PostgreSQL 17.

use std::process::Command;

use slipway_e2e::{cached_stack, run, slipway_bin, text, App, Server};

/// Three relationships, one per endpoint (line 4 names the `reporter` endpoint).
const APP_YAML: &str = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:admin'\n  reports: 'db:reporter'\n  imports: 'db:importer'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";

/// Platform.sh's PostgreSQL example: two databases, an admin of both, a reader of `main`,
/// a writer of `legacy`.
const SERVICES: &str = "db:
  type: postgresql:15
  configuration:
    databases: [main, legacy]
    endpoints:
      admin:
        default_database: main
        privileges: {main: admin, legacy: admin}
      reporter:
        default_database: main
        privileges: {main: ro}
      importer:
        default_database: legacy
        privileges: {legacy: rw}
";

const CONTAINER: &str = "demo.main.db.service";

fn push(server: &Server, app: &App, options: &[&str]) -> (bool, String) {
    let mut args = vec!["push"];
    for o in options {
        args.extend(["-o", o]);
    }
    let remote = server.remote("demo");
    args.extend([remote.as_str(), "main"]);
    let o = server.git(&app.dir, &args);
    (o.status.success(), text(&o))
}

/// The app's `PLATFORM_RELATIONSHIPS`.
fn relationships(server: &Server) -> serde_json::Value {
    let o = server.ssh(
        &server.key,
        "main.demo",
        "echo $PLATFORM_RELATIONSHIPS | base64 -d",
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// SQL run by `psql` over TCP to the service's address as `user` with `password`, on
/// database `db`: Ok(its output) or Err(psql's error).
fn sql_as(
    server: &Server,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let ip = server_ip(server);
    let o = run(Command::new("runc")
        .arg("--root")
        .arg(server.data.join("runtime/state"))
        .args([
            "exec",
            "--env",
            &format!("PGPASSWORD={password}"),
            CONTAINER,
        ])
        .args([
            "/usr/lib/postgresql/15/bin/psql",
            &format!("host={ip} port=5432 user={user} dbname={db}"),
            "-AtX",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]));
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(text(&o))
    }
}

/// SQL as the relationship `rel`'s endpoint (its user and password), on `db`.
fn sql_via(
    server: &Server,
    rels: &serde_json::Value,
    rel: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let e = &rels[rel][0];
    sql_as(
        server,
        e["username"].as_str().unwrap(),
        e["password"].as_str().unwrap(),
        db,
        sql,
    )
}

fn server_ip(server: &Server) -> String {
    let o = server.ssh(&server.key, "git", "services demo main --json");
    assert!(o.status.success(), "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "db")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn denied(r: Result<String, String>, what: &str) {
    match r {
        Ok(out) => panic!("{what} was allowed: {out}"),
        Err(e) => assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{what}: {e}"
        ),
    }
}

#[test]
fn postgresql_endpoints_get_their_own_roles_with_exactly_their_privileges() {
    // python:3.11 and postgresql:15 are test stacks.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", APP_YAML);
    app.write(".platform/services.yaml", SERVICES);
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );

    // A relationship to an endpoint the service does not have: refused at its position by
    // config check and push alike, nothing deployed.
    app.write(
        ".platform.app.yaml",
        &APP_YAML.replace("'db:reporter'", "'db:reporters'"),
    );
    let checked = run(Command::new(slipway_bin())
        .args(["config", "check"])
        .arg(&app.dir));
    assert!(!checked.status.success(), "{}", text(&checked));
    let why = "relationship `reports` names endpoint `reporters` of `db` (postgresql), which has no such endpoint; did you mean `db:reporter`?";
    assert!(
        text(&checked).contains(&format!(".platform.app.yaml:5:3: error: {why}")),
        "{}",
        text(&checked)
    );
    app.commit("a missing endpoint");
    let (ok, out) = push(&server, &app, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(".platform.app.yaml:5:3") && out.contains(why),
        "{out}"
    );

    app.write(".platform.app.yaml", APP_YAML);
    app.commit("databases and endpoints");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(!out.contains("does not act on"), "{out}");

    // PLATFORM_RELATIONSHIPS: each endpoint its own user, password and default database.
    let rels = relationships(&server);
    let reports = &rels["reports"][0];
    assert_eq!(reports["username"], "reporter", "{rels}");
    assert_eq!(reports["path"], "main");
    assert_eq!(reports["rel"], "reporter");
    assert_eq!(reports["service"], "db");
    assert_eq!(reports["scheme"], "pgsql");
    assert_eq!(rels["imports"][0]["path"], "legacy");
    let passwords: Vec<&str> = ["database", "reports", "imports"]
        .iter()
        .map(|r| rels[r][0]["password"].as_str().unwrap())
        .collect();
    assert!(passwords.iter().all(|p| p.len() >= 32), "{passwords:?}");
    assert!(passwords[0] != passwords[1] && passwords[1] != passwords[2]);
    let url = reports["url"].as_str().unwrap();
    assert!(
        url == format!(
            "pgsql://reporter:{}@reports.internal:5432/main",
            passwords[1]
        ),
        "{url}"
    );

    // admin: schema changes and rows in both databases.
    sql_via(&server, &rels, "database", "main", "CREATE TABLE t (n int PRIMARY KEY, s text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100) g").unwrap();
    sql_via(
        &server,
        &rels,
        "database",
        "legacy",
        "CREATE TABLE old (n int)",
    )
    .unwrap();
    // ro: reads main (tables made after it was set up included), writes nothing, no legacy.
    assert_eq!(
        sql_via(&server, &rels, "reports", "main", "SELECT count(*) FROM t"),
        Ok("100".to_string())
    );
    denied(
        sql_via(
            &server,
            &rels,
            "reports",
            "main",
            "INSERT INTO t VALUES (1000, 'x')",
        ),
        "an INSERT by the ro endpoint",
    );
    denied(
        sql_via(
            &server,
            &rels,
            "reports",
            "main",
            "CREATE TABLE mine (n int)",
        ),
        "a CREATE TABLE by the ro endpoint",
    );
    let e = sql_via(&server, &rels, "reports", "legacy", "SELECT 1").unwrap_err();
    assert!(e.contains("permission denied for database"), "{e}");
    // rw: rows in legacy, no schema change, no main.
    sql_via(&server, &rels, "imports", "legacy", "INSERT INTO old VALUES (1), (2); UPDATE old SET n = 3 WHERE n = 2; DELETE FROM old WHERE n = 1").unwrap();
    assert_eq!(
        sql_via(&server, &rels, "imports", "legacy", "SELECT n FROM old"),
        Ok("3".to_string())
    );
    denied(
        sql_via(
            &server,
            &rels,
            "imports",
            "legacy",
            "CREATE TABLE mine (n int)",
        ),
        "a CREATE TABLE by the rw endpoint",
    );
    denied(
        sql_via(&server, &rels, "imports", "legacy", "DROP TABLE old"),
        "a DROP TABLE by the rw endpoint",
    );
    let e = sql_via(&server, &rels, "imports", "main", "SELECT 1").unwrap_err();
    assert!(e.contains("permission denied for database"), "{e}");
    // A wrong password gets nowhere.
    let e = sql_as(&server, "reporter", "not-the-password", "main", "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");

    // A database and an endpoint added later: created on the running service, rows kept.
    let started = sql_via(
        &server,
        &rels,
        "database",
        "main",
        "SELECT pg_postmaster_start_time()",
    )
    .unwrap();
    let more = SERVICES
        .replace("[main, legacy]", "[main, legacy, extra]")
        .replace(
            "    endpoints:\n",
            "    endpoints:\n      late:\n        default_database: extra\n        privileges: {extra: admin, main: ro}\n",
        );
    app.write(".platform/services.yaml", &more);
    app.write(
        ".platform.app.yaml",
        &APP_YAML.replace("relationships:\n", "relationships:\n  late: 'db:late'\n"),
    );
    app.commit("a database and an endpoint more");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(
        sql_via(
            &server,
            &rels,
            "database",
            "main",
            "SELECT pg_postmaster_start_time()"
        ),
        Ok(started),
        "the service kept running"
    );
    let rels = relationships(&server);
    assert_eq!(rels["late"][0]["path"], "extra", "{rels}");
    sql_via(
        &server,
        &rels,
        "late",
        "extra",
        "CREATE TABLE x (n int); INSERT INTO x VALUES (7)",
    )
    .unwrap();
    assert_eq!(
        sql_via(&server, &rels, "late", "main", "SELECT count(*) FROM t"),
        Ok("100".to_string())
    );
    assert_eq!(
        sql_via(&server, &rels, "database", "legacy", "SELECT n FROM old"),
        Ok("3".to_string())
    );

    // Removing them is refused without -o allow-data-loss, nothing changed; with it, the
    // database and the role are dropped once the push is live, every other row kept.
    app.write(".platform/services.yaml", SERVICES);
    app.write(".platform.app.yaml", APP_YAML);
    app.commit("without the extra database and endpoint");
    let (ok, out) = push(&server, &app, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("removing schema `extra` of service `db` would delete its data")
            && out.contains("removing endpoint `late` of service `db`"),
        "{out}"
    );
    assert_eq!(
        sql_via(&server, &rels, "late", "extra", "SELECT n FROM x"),
        Ok("7".to_string())
    );
    let (ok, out) = push(&server, &app, &["allow-data-loss"]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("dropped database `extra`, endpoint `late`"),
        "{out}"
    );
    let e = sql_via(&server, &rels, "late", "main", "SELECT 1").unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    let rels = relationships(&server);
    let e = sql_via(&server, &rels, "database", "extra", "SELECT 1").unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    assert_eq!(
        sql_via(&server, &rels, "reports", "main", "SELECT count(*) FROM t"),
        Ok("100".to_string())
    );
}

/// An app asking PostGIS for its version through its relationship (pg8000, pure Python,
/// installed from PyPI by the build hook).
const POSTGIS_APP: &str = r#"import base64, http.server, json, os
import pg8000.native
rels = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        e = rels["database"][0]
        try:
            c = pg8000.native.Connection(e["username"], host=e["host"], port=e["port"], password=e["password"], database=e["path"])
            body = str(c.run("SELECT postgis_full_version()")[0][0]).encode()
            status = 200
        except Exception as err:
            body, status = repr(err).encode(), 500
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn postgis_answers_an_app_on_postgresql_17() {
    // postgresql:17 is not a test stack: built once per machine (with postgis).
    cached_stack("postgresql:17");
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\nhooks:\n  build: pip install pg8000\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:17\n  configuration:\n    extensions: [postgis]\n",
    );
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", POSTGIS_APP);
    app.commit("postgis");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    let (status, body) = server
        .get("main.demo.localhost", "/")
        .expect("the app answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("POSTGIS=\"3."), "{body}");
}

/// SQL on MariaDB service `mdb` over TCP as the relationship `rel`'s endpoint, on `db`.
fn maria_via(
    server: &Server,
    rels: &serde_json::Value,
    rel: &str,
    db: &str,
    sql: &str,
) -> Result<String, String> {
    let e = &rels[rel][0];
    let o = run(Command::new("runc")
        .arg("--root")
        .arg(server.data.join("runtime/state"))
        .args([
            "exec",
            "--env",
            &format!("MYSQL_PWD={}", e["password"].as_str().unwrap()),
            "demo.main.mdb.service",
        ])
        .args([
            "mariadb",
            "--no-defaults",
            "-h",
            e["ip"].as_str().unwrap(),
            "-u",
            e["username"].as_str().unwrap(),
            "-N",
            "-B",
            db,
            "-e",
            sql,
        ]));
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(text(&o))
    }
}

#[test]
fn mariadb_schemas_and_endpoints_added_later_reach_the_running_service() {
    // python:3.11 and mariadb:10.11 are test stacks.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let yaml = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'mdb:mysql'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    app.write(".platform.app.yaml", yaml);
    app.write(".platform/services.yaml", "mdb:\n  type: mariadb:10.11\n");
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.commit("mariadb");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    let rels = relationships(&server);
    maria_via(
        &server,
        &rels,
        "database",
        "main",
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2)",
    )
    .unwrap();
    let uptime = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'";
    let up0: u64 = maria_via(&server, &rels, "database", "main", uptime)
        .unwrap()
        .parse()
        .unwrap();

    // A schema and a read-only endpoint added while the server runs.
    app.write(
        ".platform/services.yaml",
        "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main, extra]\n    endpoints:\n      mysql:\n        default_schema: main\n        privileges: {main: admin}\n      reader:\n        default_schema: main\n        privileges: {main: ro, extra: ro}\n",
    );
    app.write(
        ".platform.app.yaml",
        &yaml.replace(
            "relationships:\n",
            "relationships:\n  reports: 'mdb:reader'\n",
        ),
    );
    app.commit("a schema and an endpoint more");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(!out.contains("apply at its next start"), "{out}");
    let rels = relationships(&server);
    let up1: u64 = maria_via(&server, &rels, "database", "main", uptime)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        up1 >= up0,
        "the server was not restarted ({up0}s, then {up1}s)"
    );
    assert_eq!(
        maria_via(&server, &rels, "reports", "main", "SELECT COUNT(*) FROM t"),
        Ok("2".to_string())
    );
    let e = maria_via(
        &server,
        &rels,
        "reports",
        "main",
        "INSERT INTO t VALUES (3)",
    )
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");
    let schemas = maria_via(
        &server,
        &rels,
        "reports",
        "main",
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'extra'",
    );
    assert_eq!(schemas, Ok("extra".to_string()));
}

#[test]
fn mariadb_drops_a_removed_schema_and_endpoint_only_with_allow_data_loss() {
    // python:3.11 and mariadb:10.11 are test stacks.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let yaml = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'mdb:admin'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let kept = "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main]\n    endpoints:\n      admin:\n        default_schema: main\n        privileges: {main: admin}\n";
    let more = "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main, extra]\n    endpoints:\n      admin:\n        default_schema: main\n        privileges: {main: admin, extra: admin}\n      reader:\n        privileges: {extra: ro}\n";
    app.write(
        ".platform.app.yaml",
        &yaml.replace(
            "relationships:\n",
            "relationships:\n  reports: 'mdb:reader'\n",
        ),
    );
    app.write(".platform/services.yaml", more);
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.commit("mariadb with two schemas and a reader");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    let rels = relationships(&server);
    // An endpoint without a default schema: `path` is null, as on Platform.sh.
    assert_eq!(
        rels["reports"][0]["path"],
        serde_json::Value::Null,
        "{rels}"
    );
    assert_eq!(rels["database"][0]["path"], "main", "{rels}");
    maria_via(
        &server,
        &rels,
        "database",
        "main",
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2)",
    )
    .unwrap();
    maria_via(
        &server,
        &rels,
        "database",
        "extra",
        "CREATE TABLE x (n INT); INSERT INTO x VALUES (7)",
    )
    .unwrap();
    assert_eq!(
        maria_via(&server, &rels, "reports", "extra", "SELECT n FROM x"),
        Ok("7".to_string())
    );

    // Without -o allow-data-loss: refused, the schema and the reader still there.
    app.write(".platform/services.yaml", kept);
    app.write(".platform.app.yaml", yaml);
    app.commit("without the extra schema and the reader");
    let (ok, out) = push(&server, &app, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("removing schema `extra` of service `mdb` would delete its data")
            && out.contains("removing endpoint `reader` of service `mdb`"),
        "{out}"
    );
    assert_eq!(
        maria_via(&server, &rels, "reports", "extra", "SELECT n FROM x"),
        Ok("7".to_string())
    );

    // With it: once live, the schema is dropped and the reader can no longer log in;
    // the kept schema's rows are intact.
    let (ok, out) = push(&server, &app, &["allow-data-loss"]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("service mdb: dropped database `extra`, endpoint `reader`"),
        "{out}"
    );
    let e = maria_via(&server, &rels, "reports", "extra", "SELECT 1").unwrap_err();
    assert!(e.contains("Access denied for user 'reader'"), "{e}");
    let rels = relationships(&server);
    assert!(rels.get("reports").is_none(), "{rels}");
    let e = maria_via(&server, &rels, "database", "extra", "SELECT 1").unwrap_err();
    assert!(
        e.contains("Unknown database 'extra'") || e.contains("Access denied"),
        "{e}"
    );
    // The kept endpoint keeps no privilege on the dropped schema (a later schema of
    // that name is not open to it).
    let grants = maria_via(&server, &rels, "database", "main", "SHOW GRANTS").unwrap();
    assert!(
        grants.contains("ON `main`.*") && !grants.contains("`extra`"),
        "{grants}"
    );
    assert_eq!(
        maria_via(&server, &rels, "database", "main", "SELECT SUM(n) FROM t"),
        Ok("3".to_string())
    );
}
