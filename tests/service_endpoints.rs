//! PostgreSQL databases and endpoints (issue 14, spec section 9), as on Platform.sh:
//! `configuration.databases` (or `schemas`) makes several databases, each of
//! `configuration.endpoints` is a login role of its own with a generated password and
//! exactly its `privileges` per database (`admin`, `rw`, `ro`), and `PLATFORM_RELATIONSHIPS`
//! describes each endpoint (its user, its `default_database` as `path`). A relationship to
//! a missing endpoint is refused at validate; a database or endpoint added later is created
//! on the running service with its data kept; removing one needs `-o allow-data-loss`.
//! `configuration.extensions: [postgis]` gives PostGIS on PostgreSQL 17.

use std::process::Command;

use slipway_e2e::{cached_stack, run, text, App, Server};

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

/// The service removed with its data (the app without relationships, `-o allow-data-loss`),
/// then added again as `app_yaml` and `services` say: two pushes, which must succeed.
fn removed_and_added_again(server: &Server, app: &App, app_yaml: &str, services: &str) {
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.write(".platform/services.yaml", "{}\n");
    app.commit("without the database");
    push_ok(server, app, &["allow-data-loss"]);
    app.write(".platform.app.yaml", app_yaml);
    app.write(".platform/services.yaml", services);
    app.commit("the database again");
    push_ok(server, app, &[]);
}

/// [`push`] that must succeed: what it printed.
fn push_ok(server: &Server, app: &App, options: &[&str]) -> String {
    let (ok, out) = push(server, app, options);
    assert!(ok, "{out}\n{}", server.server_log());
    out
}

fn push(server: &Server, app: &App, options: &[&str]) -> (bool, String) {
    let o = server.push_with(app, "demo", "main", options);
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
    let o = run(server
        .runc()
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
    let app = App::with_services(server.dir.path(), APP_YAML, SERVICES);

    // A relationship to an endpoint the service does not have: refused at its position by
    // config check and push alike, nothing deployed.
    app.write(
        ".platform.app.yaml",
        &APP_YAML.replace("'db:reporter'", "'db:reporters'"),
    );
    let checked = slipway_e2e::config_check(&app.dir);
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
    let out = push_ok(&server, &app, &[]);
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
    push_ok(&server, &app, &[]);
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
    // An open session of the endpoint that goes: closed with it.
    let late = &rels["late"][0];
    let mut session = Killed(
        server
            .runc()
            .args([
                "exec",
                "--env",
                &format!("PGPASSWORD={}", late["password"].as_str().unwrap()),
                CONTAINER,
                "/usr/lib/postgresql/15/bin/psql",
                &format!(
                    "host={} port=5432 user=late dbname=main",
                    server_ip(&server)
                ),
                "-AtX",
                "-c",
                "SELECT pg_sleep(300)",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let sessions = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'late'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sql_via(&server, &rels, "database", "main", sessions) != Ok("1".to_string()) {
        assert!(std::time::Instant::now() < deadline, "no session opened");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = push_ok(&server, &app, &["allow-data-loss"]);
    assert!(
        out.contains("dropped database `extra`, endpoint `late`"),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = session.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed role's session is still open"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!status.success(), "its query was cut short");
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
const POSTGIS_APP: &str = slipway_e2e::py_app!(
    r#"import pg8000.native
rels = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))
"#,
    r#"        e = rels["database"][0]
        try:
            c = pg8000.native.Connection(e["username"], host=e["host"], port=e["port"], password=e["password"], database=e["path"])
            body = str(c.run("SELECT postgis_full_version()")[0][0]).encode()
            status = 200
        except Exception as err:
            body, status = repr(err).encode(), 500
"#
);

#[test]
fn postgis_answers_an_app_on_postgresql_17() {
    // postgresql:17 is not a test stack: built once per machine (with postgis).
    cached_stack("postgresql:17");
    let server = Server::start();
    let app = App::with_services(server.dir.path(),
        "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\nhooks:\n  build: pip install pg8000\nweb:\n  commands:\n    start: python3 server.py\n",
        "db:\n  type: postgresql:17\n  configuration:\n    extensions: [postgis]\n",
    );
    app.write("server.py", POSTGIS_APP);
    app.commit("postgis");
    push_ok(&server, &app, &[]);
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
    let o = run(server
        .runc()
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
    let yaml = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'mdb:mysql'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let app = App::with_services(server.dir.path(), yaml, "mdb:\n  type: mariadb:10.11\n");
    app.commit("mariadb");
    push_ok(&server, &app, &[]);
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
    let out = push_ok(&server, &app, &[]);
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
    let yaml = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'mdb:admin'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let kept = "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main]\n    endpoints:\n      admin:\n        default_schema: main\n        privileges: {main: admin}\n";
    let more = "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main, extra]\n    endpoints:\n      admin:\n        default_schema: main\n        privileges: {main: admin, extra: admin}\n      reader:\n        privileges: {extra: ro}\n";
    let app = App::with_services(
        server.dir.path(),
        &yaml.replace(
            "relationships:\n",
            "relationships:\n  reports: 'mdb:reader'\n",
        ),
        more,
    );
    app.commit("mariadb with two schemas and a reader");
    push_ok(&server, &app, &[]);
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
    let out = push_ok(&server, &app, &["allow-data-loss"]);
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

/// `runc exec` into MariaDB service `mdb` of `demo/main` with `MYSQL_PWD=password`.
fn in_mdb(server: &Server, password: &str) -> Command {
    let mut cmd = server.runc();
    cmd.args([
        "exec",
        "--env",
        &format!("MYSQL_PWD={password}"),
        "demo.main.mdb.service",
    ]);
    cmd
}

/// SQL as the service's backup account (all privileges, over its socket; the service's
/// password, which the `own` relationship to the `mysql` endpoint has).
fn maria_admin(server: &Server, rels: &serde_json::Value, sql: &str) -> String {
    let o = run(
        in_mdb(server, rels["own"][0]["password"].as_str().unwrap()).args([
            "mariadb",
            "--no-defaults",
            "--socket=/tmp/mysqld.sock",
            "--user=slipway",
            "-N",
            "-B",
            "-e",
            sql,
        ]),
    );
    assert!(o.status.success(), "{sql}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `count` times `statement`, one new connection as relationship `rel`'s endpoint with no
/// default schema (so each statement checks the privileges the server holds at that
/// moment): the error lines the client printed.
fn maria_batch(
    server: &Server,
    rels: &serde_json::Value,
    rel: &str,
    statement: &str,
    count: usize,
) -> Vec<String> {
    use std::io::Write as _;
    let e = &rels[rel][0];
    let mut child = in_mdb(server, e["password"].as_str().unwrap())
        .args([
            "mariadb",
            "--no-defaults",
            "--force",
            "-N",
            "-B",
            "-h",
            e["ip"].as_str().unwrap(),
            "-u",
            e["username"].as_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let script = format!("{statement};\n").repeat(count);
    input.write_all(script.as_bytes()).unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    let mut errors: Vec<String> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("ERROR"))
        .map(str::to_string)
        .collect();
    if !o.status.success() && errors.is_empty() {
        errors.push(format!("client exited {}", o.status));
    }
    errors
}

/// A kill-on-drop child process.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mariadb_privileges_change_without_a_gap_and_a_dropped_endpoint_loses_its_sessions() {
    // python:3.11 and mariadb:10.11 are test stacks.
    let server = Server::start();
    let yaml = |gone: bool| {
        format!(
            "name: hello\ntype: python:3.11\nrelationships:\n  own: 'mdb:mysql'\n  database: 'mdb:writer'\n  reports: 'mdb:reader'\n{}web:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
            if gone { "  old: 'mdb:gone'\n" } else { "" }
        )
    };
    // Schemas given without `main`: only those are made (as on Platform.sh).
    let services = |reader: &str, gone: bool| {
        format!(
            "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [app_1]\n    endpoints:\n      writer:\n        default_schema: app_1\n        privileges: {{app_1: rw}}\n      reader:\n        privileges: {{app_1: {reader}}}\n{}",
            if gone { "      gone:\n        privileges: {app_1: ro}\n" } else { "" }
        )
    };
    let app = App::with_services(server.dir.path(), &yaml(true), &services("ro", true));
    app.commit("mariadb with schema app_1 and three endpoints");
    push_ok(&server, &app, &[]);
    let rels = relationships(&server);
    let schemas = maria_admin(&server, &rels, "SHOW DATABASES");
    assert!(
        schemas.lines().any(|s| s == "app_1") && !schemas.lines().any(|s| s == "main"),
        "{schemas}"
    );
    // `_` in a schema name matches only itself: `appx1` is no endpoint's.
    maria_admin(
        &server,
        &rels,
        "CREATE DATABASE appx1; CREATE TABLE appx1.s (n INT)",
    );
    for rel in ["reports", "database", "own"] {
        let e = maria_via(&server, &rels, rel, "app_1", "SELECT * FROM appx1.s").unwrap_err();
        assert!(e.contains("denied"), "{rel}: {e}");
    }
    // The service's own user owns the configured schemas.
    maria_admin(&server, &rels, "SELECT 1");
    maria_via(
        &server,
        &rels,
        "own",
        "app_1",
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2)",
    )
    .unwrap();

    // Clients loop queries as the reader (SELECT) and the writer (INSERT) during deploys.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let looping = {
        let (stop, rels, server) = (&stop, &rels, &server);
        std::thread::scope(|scope| {
            let looper = scope.spawn(|| {
                let (mut batches, mut errors) = (0usize, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    errors.extend(maria_batch(
                        server,
                        rels,
                        "reports",
                        "SELECT COUNT(*) FROM app_1.t",
                        300,
                    ));
                    errors.extend(maria_batch(
                        server,
                        rels,
                        "database",
                        "INSERT INTO app_1.t VALUES (3)",
                        100,
                    ));
                    batches += 1;
                }
                (batches, errors)
            });
            let grants = "SELECT GROUP_CONCAT(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('COM_GRANT', 'COM_REVOKE')";
            let before = maria_admin(server, rels, grants);
            // A deploy that changes no endpoint: no GRANT, no REVOKE.
            app.write("index.html", "code only\n");
            app.commit("a code-only change");
            let out = push_ok(server, &app, &[]);
            assert!(!out.contains("apply at its next start"), "{out}");
            assert_eq!(maria_admin(server, rels, grants), before);
            // The reader raised to rw, then lowered to ro again: its reads never refused.
            for level in ["rw", "ro"] {
                app.write(".platform/services.yaml", &services(level, true));
                app.commit(&format!("reader {level}"));
                let out = push_ok(server, &app, &[]);
                assert!(!out.contains("apply at its next start"), "{out}");
                // Applied on the running server: it writes exactly while it is rw.
                let wrote = maria_via(server, rels, "reports", "app_1", "INSERT INTO t VALUES (8)");
                assert_eq!(wrote.is_ok(), level == "rw", "{wrote:?}");
            }
            assert_ne!(maria_admin(server, rels, grants), before);
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            looper.join().unwrap()
        })
    };
    let (batches, errors) = looping;
    assert!(batches >= 3, "the clients ran {batches} batches");
    assert!(
        errors.is_empty(),
        "{} refused queries: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    // The reader is ro again: exactly its privileges, nothing left over.
    let e = maria_via(
        &server,
        &rels,
        "reports",
        "app_1",
        "INSERT INTO t VALUES (9)",
    )
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");

    // An open session of an endpoint that is removed: closed once the push is live.
    let gone_pw = rels["old"][0]["password"].as_str().unwrap().to_string();
    let mut session = Killed(
        in_mdb(&server, &gone_pw)
            .args([
                "mariadb",
                "--no-defaults",
                "-h",
                rels["own"][0]["ip"].as_str().unwrap(),
                "-u",
                "gone",
                "-e",
                "SELECT SLEEP(300)",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while maria_admin(
        &server,
        &rels,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'gone'",
    ) != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never opened"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    app.write(".platform/services.yaml", &services("ro", false));
    app.write(".platform.app.yaml", &yaml(false));
    app.commit("without the gone endpoint");
    let out = push_ok(&server, &app, &["allow-data-loss"]);
    assert!(out.contains("dropped endpoint `gone`"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = session.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed endpoint's session is still open"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!status.success(), "its query was cut short");
    assert_eq!(
        maria_admin(
            &server,
            &rels,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'gone'"
        ),
        "0"
    );
    // The other endpoints and every row are still there.
    assert_eq!(
        maria_via(
            &server,
            &rels,
            "reports",
            "app_1",
            "SELECT COUNT(*) > 2 FROM t"
        ),
        Ok("1".to_string())
    );
}

#[test]
fn a_postgresql_restore_into_a_fresh_service_gives_back_its_endpoints_and_privileges() {
    // python:3.11 and postgresql:15 are test stacks.
    let server = Server::start();
    let app = App::with_services(server.dir.path(), APP_YAML, SERVICES);
    app.commit("databases and endpoints");
    push_ok(&server, &app, &[]);
    let rels = relationships(&server);
    sql_via(
        &server,
        &rels,
        "database",
        "main",
        "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 100)",
    )
    .unwrap();
    sql_via(
        &server,
        &rels,
        "database",
        "legacy",
        "CREATE TABLE old (n int)",
    )
    .unwrap();
    let o = server.ssh(&server.key, "git", "backup create demo main");
    assert!(o.status.success(), "{}", text(&o));

    // The service removed with its data, then added again: a fresh cluster.
    removed_and_added_again(&server, &app, APP_YAML, SERVICES);
    let rels = relationships(&server);
    let e = sql_via(&server, &rels, "reports", "main", "SELECT count(*) FROM t").unwrap_err();
    assert!(e.contains("does not exist"), "a fresh service: {e}");

    let o = server.ssh(&server.key, "git", "backup restore demo main 1");
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    // The same endpoints with the same privileges as before the backup.
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
            "INSERT INTO t VALUES (1)",
        ),
        "an INSERT by the ro endpoint after the restore",
    );
    let e = sql_via(&server, &rels, "reports", "legacy", "SELECT 1").unwrap_err();
    assert!(e.contains("permission denied for database"), "{e}");
    sql_via(
        &server,
        &rels,
        "imports",
        "legacy",
        "INSERT INTO old VALUES (5)",
    )
    .unwrap();
    denied(
        sql_via(
            &server,
            &rels,
            "imports",
            "legacy",
            "CREATE TABLE mine (n int)",
        ),
        "a CREATE TABLE by the rw endpoint after the restore",
    );
    let e = sql_via(&server, &rels, "imports", "main", "SELECT 1").unwrap_err();
    assert!(e.contains("permission denied for database"), "{e}");
    sql_via(
        &server,
        &rels,
        "database",
        "main",
        "CREATE TABLE later (n int); INSERT INTO later VALUES (1)",
    )
    .unwrap();
    // A table the admin makes after the restore is readable by the reader again.
    assert_eq!(
        sql_via(
            &server,
            &rels,
            "reports",
            "main",
            "SELECT count(*) FROM later"
        ),
        Ok("1".to_string())
    );
}

#[test]
fn a_mariadb_restore_into_a_fresh_service_keeps_its_passwords_endpoints_and_privileges() {
    // python:3.11 and mariadb:10.11 are test stacks.
    let server = Server::start();
    let yaml = "name: hello\ntype: python:3.11\nrelationships:\n  own: 'mdb:mysql'\n  database: 'mdb:writer'\n  reports: 'mdb:reader'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let services = "mdb:\n  type: mariadb:10.11\n  configuration:\n    schemas: [app]\n    endpoints:\n      writer:\n        default_schema: app\n        privileges: {app: rw}\n      reader:\n        privileges: {app: ro}\n";
    let app = App::with_services(server.dir.path(), yaml, services);
    app.commit("mariadb with endpoints");
    push_ok(&server, &app, &[]);
    let rels = relationships(&server);
    maria_via(
        &server,
        &rels,
        "own",
        "app",
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2), (3)",
    )
    .unwrap();
    let o = server.ssh(&server.key, "git", "backup create demo main");
    assert!(o.status.success(), "{}", text(&o));

    // The service removed with its data, then added again: new passwords.
    removed_and_added_again(&server, &app, yaml, services);
    let fresh = relationships(&server);
    assert_ne!(
        rels["reports"][0]["password"],
        fresh["reports"][0]["password"]
    );

    let o = server.ssh(&server.key, "git", "backup restore demo main 1");
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    // The backed-up rows, reached with the fresh service's passwords, each endpoint with
    // exactly its privileges.
    assert_eq!(
        maria_via(&server, &fresh, "reports", "app", "SELECT COUNT(*) FROM t"),
        Ok("3".to_string())
    );
    let e = maria_via(
        &server,
        &fresh,
        "reports",
        "app",
        "INSERT INTO t VALUES (4)",
    )
    .unwrap_err();
    assert!(e.contains("denied"), "{e}");
    maria_via(
        &server,
        &fresh,
        "database",
        "app",
        "INSERT INTO t VALUES (4)",
    )
    .unwrap();
    let e = maria_via(&server, &fresh, "database", "app", "CREATE TABLE x (n INT)").unwrap_err();
    assert!(e.contains("denied"), "{e}");
    maria_via(&server, &fresh, "own", "app", "CREATE TABLE x (n INT)").unwrap();
    let e = maria_via(&server, &rels, "reports", "app", "SELECT 1").unwrap_err();
    assert!(e.contains("Access denied"), "the old password: {e}");
    // The backup account works again: a second backup is taken.
    let o = server.ssh(&server.key, "git", "backup create demo main");
    assert!(o.status.success(), "{}", text(&o));
}
