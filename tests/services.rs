//! Services (issue 14): PostgreSQL and Redis run per environment on their stacks, apps reach
//! them through relationships (`REL.internal`, generated credentials in
//! `PLATFORM_RELATIONSHIPS`), a code-only deploy restarts no service, a service that fails
//! to start rejects the push and leaves everything running as it was, and data survives a
//! server restart.

use slipway_e2e::{run, text, App, Server};

/// The app: `/` increments a counter in Redis (`cache` relationship, over a socket) and
/// answers with it and the relationships it sees.
const APP_SERVER: &str = slipway_e2e::py_app!(
    concat!(slipway_e2e::py_redis!(), slipway_e2e::py_dburl!()),
    r#"        if self.path == "/incr":
            body = redis("INCR", "hits")
        elif self.path == "/get":
            body = redis("GET", "hits")
        elif self.path == "/dburl":
            body = dburl()
        elif self.path == "/summary":
            d, c = rels["database"][0], rels["cache"][0]
            body = "%s %s %s %d %s" % (d["host"], d["scheme"], d["username"], len(d["password"]), c["host"])
        else:
            body = json.dumps(rels)
        body = body.encode()
"#
);

const APP_YAML: &str = "name: hello\ntype: python:3.11\nhooks:\n  build: echo built > build.txt\nrelationships:\n  cache: 'cache:redis'\n  database: 'db:postgresql'\nweb:\n  commands:\n    start: python3 server.py\n";

/// The start time of a service's main process (`/proc/PID/stat` field 22), by its container.
fn start_time(server: &Server, container: &str) -> String {
    let pid = server.container_pid(container);
    // tini is pid 1 of the container; its child is the server.
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let child = children.split_whitespace().next().unwrap().to_string();
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    after_name.split_whitespace().nth(19).unwrap().to_string()
}

/// Wait until the environment answers again after `serve` (services first, then apps).
fn wait_up(server: &Server, host: &str) {
    server.wait_for_page(host, "/summary", std::time::Duration::from_secs(90));
}

fn psql(server: &Server, url: &str, sql: &str) -> String {
    server.in_container(
        "demo.main.db.service",
        &["/usr/lib/postgresql/15/bin/psql", "-tA", url, "-c", sql],
        &[],
    )
}

#[test]
fn apps_reach_their_services_and_data_outlives_deploys_and_restarts() {
    // python:3.11, redis:7.0 and postgresql:15 are test stacks (the shared folder).
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", APP_YAML);
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.0\ndb:\n  type: postgresql:15\n",
    );
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", APP_SERVER);
    app.commit("with services");
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("service db"), "{out}");
    let host = "main.demo.localhost";

    // Redis through the relationship: REL.internal resolves in the app container.
    assert_eq!(server.get(host, "/incr").map(|(_, b)| b), Some("1".into()));
    assert_eq!(server.get(host, "/incr").map(|(_, b)| b), Some("2".into()));
    let (_, summary) = server.get(host, "/summary").unwrap();
    assert_eq!(
        summary, "database.internal pgsql main 48 cache.internal",
        "a generated password"
    );
    let (_, url) = server.get(host, "/dburl").unwrap();
    assert!(
        url.starts_with("postgresql://main:")
            && (url.ends_with("@127.1.0.2:5432/main") || url.ends_with("@127.1.0.3:5432/main")),
        "{url}"
    );

    // PostgreSQL with the generated credentials, over TCP on its address; a wrong password
    // is refused.
    psql(
        &server,
        &url,
        "CREATE TABLE rows (n int); INSERT INTO rows VALUES (1), (2), (3)",
    );
    assert_eq!(psql(&server, &url, "SELECT sum(n) FROM rows"), "6");
    let at = url.rsplit_once('@').unwrap().1;
    let wrong = format!("postgresql://main:nope@{at}");
    let o = run(server.runc().args([
        "exec",
        "demo.main.db.service",
        "/usr/lib/postgresql/15/bin/psql",
        "-tA",
        &wrong,
        "-c",
        "SELECT 1",
    ]));
    assert!(
        !o.status.success(),
        "a wrong password was accepted: {}",
        text(&o)
    );
    // The service runs as the project's unprivileged user.
    let uid = server.in_container("demo.main.db.service", &["id", "-u"], &[]);
    assert_ne!(uid, "0");

    // `services PROJECT ENV`: type, state, disk used; --json.
    let o = server.ssh(&server.key, "git", "services demo main");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("db\tpostgresql:15\trunning\t"), "{t}");
    assert!(t.contains("cache\tredis-persistent:7.0\trunning\t"), "{t}");
    let o = server.ssh(&server.key, "git", "services demo main --json");
    let t = text(&o);
    assert!(
        t.contains("\"disk_used\"") && t.contains("\"state\": \"running\""),
        "{t}"
    );
    assert!(!t.contains("password"), "{t}");
    let o = server.ssh(&server.key, "git", "services nosuch main");
    assert!(!o.status.success());

    // A code-only deploy restarts no service.
    let (pg_t0, redis_t0) = (
        start_time(&server, "demo.main.db.service"),
        start_time(&server, "demo.main.cache.service"),
    );
    app.write("VERSION", "2\n");
    app.commit("code only");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "push 2 failed:\n{}", text(&o));
    assert_eq!(start_time(&server, "demo.main.db.service"), pg_t0);
    assert_eq!(start_time(&server, "demo.main.cache.service"), redis_t0);
    assert_eq!(server.get(host, "/get").map(|(_, b)| b), Some("2".into()));

    // A service that fails to start (its data folder, in the plain folder of an older
    // Slipway, holds files of no PostgreSQL there is) rejects the push; the running release
    // and its services are untouched, and the data it found stays as it was (moved onto
    // the service's volume).
    let broken = server.data.join("volumes/demo/main/services/broken/pgdata");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("PG_VERSION"), "99\n").unwrap();
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.0\ndb:\n  type: postgresql:15\nbroken:\n  type: postgresql:15\n",
    );
    app.commit("a service that cannot start");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("(provision failed: service broken exited at start"),
        "{out}"
    );
    let moved = server
        .data
        .join("volumes/demo/main/service-broken/data/pgdata/PG_VERSION");
    assert_eq!(std::fs::read_to_string(moved).unwrap(), "99\n");
    assert!(!broken.exists());
    assert_eq!(start_time(&server, "demo.main.db.service"), pg_t0);
    assert_eq!(server.get(host, "/incr").map(|(_, b)| b), Some("3".into()));
    assert_eq!(psql(&server, &url, "SELECT sum(n) FROM rows"), "6");
    app.git_ok(&["reset", "-q", "--hard", "HEAD~1"]);

    // A server restart keeps every row (services restored before apps).
    server.stop();
    server.serve();
    wait_up(&server, host);
    assert_eq!(server.get(host, "/get").map(|(_, b)| b), Some("3".into()));
    assert_eq!(psql(&server, &url, "SELECT sum(n) FROM rows"), "6");

    // `slipway down` stops services cleanly; serve brings them back with the data.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    let log = std::fs::read_to_string(server.data.join("logs/demo/main/services/db.log")).unwrap();
    assert!(log.contains("database system is shut down"), "{log}");
    server.serve();
    wait_up(&server, host);
    assert_eq!(psql(&server, &url, "SELECT sum(n) FROM rows"), "6");
    assert_eq!(server.get(host, "/get").map(|(_, b)| b), Some("3".into()));
    let restarted =
        std::fs::read_to_string(server.data.join("logs/demo/main/services/db.log")).unwrap();
    assert!(
        !restarted.contains("was interrupted") && !restarted.contains("automatic recovery"),
        "{restarted}"
    );
}

/// The app of the MariaDB test: answers with the `database` relationship as a URL.
const DB_URL_SERVER: &str = slipway_e2e::py_app!(
    r#"rels = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))
d, r = rels["database"][0], rels["reports"][0]
url = "%s %s %s %s %d %s %s %s %s %s" % (d["scheme"], d["username"], d["password"], d["ip"], d["port"], d["path"], d["host"], r["username"], r["password"], r["path"])
"#,
    r#"        body = (url + " v" + open("VERSION").read().strip()).encode()
"#
);

#[test]
fn mariadb_rows_survive_a_code_deploy_and_a_rollback() {
    // python:3.11 and mariadb:10.11 are test stacks (the shared folder).
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: echo built > build.txt\nrelationships:\n  database: 'db:mysql'\n  reports: 'db:reporter'\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    // mysql:10.4 is MariaDB 10.11 here, with a warning naming both.
    // Schemas and endpoints: `reporter` may only read `legacy`.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: mysql:10.4\n  configuration:\n    schemas: [main, legacy]\n    endpoints:\n      reporter: {default_schema: legacy, privileges: {legacy: ro}}\n",
    );
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", DB_URL_SERVER);
    app.commit("with mariadb");
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("mariadb:10.11"), "{out}");
    let host = "main.demo.localhost";
    let (_, info) = server.get(host, "/").unwrap();
    let f: Vec<&str> = info.split(' ').collect();
    assert_eq!(f.len(), 11, "{info}");
    assert_eq!(
        (f[0], f[1], f[4], f[5], f[6], f[7], f[9], f[10]),
        (
            "mysql",
            "user",
            "3306",
            "main",
            "database.internal",
            "reporter",
            "legacy",
            "v1"
        ),
        "{info}"
    );
    let reporter_pw = f[8].to_string();
    assert_eq!(reporter_pw.len(), 48);
    assert_ne!(reporter_pw, f[2]);
    let (password, ip) = (f[2].to_string(), f[3].to_string());
    assert_eq!(password.len(), 48, "{info}");
    let as_user = |user: &str, schema: &str, sql: &str, pw: &str| {
        run(server
            .runc()
            .args([
                "exec",
                "demo.main.db.service",
                "mariadb",
                "--no-defaults",
                "-N",
                "-B",
            ])
            .arg(format!("--host={ip}"))
            .arg("--port=3306")
            .arg(format!("--user={user}"))
            .arg(format!("--password={pw}"))
            .args([schema, "-e", sql]))
    };
    let mariadb = |sql: &str, pw: &str| as_user("user", "main", sql, pw);
    let o = mariadb(
        "CREATE TABLE t (n INT); INSERT INTO t VALUES (1), (2), (3)",
        &password,
    );
    assert!(o.status.success(), "{}", text(&o));
    let sum = |pw: &str| {
        let o = mariadb("SELECT SUM(n) FROM t", pw);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(sum(&password), "6");
    assert!(
        !mariadb("SELECT 1", "wrong").status.success(),
        "a wrong password was accepted"
    );
    // The reporter reads legacy and writes nothing; it cannot even see main.
    let o = as_user(
        "reporter",
        "legacy",
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'legacy'",
        &reporter_pw,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = as_user("reporter", "legacy", "CREATE TABLE x (n INT)", &reporter_pw);
    assert!(!o.status.success(), "reporter could create a table");
    assert!(text(&o).contains("denied"), "{}", text(&o));
    let o = as_user("reporter", "main", "SELECT 1", &reporter_pw);
    assert!(!o.status.success(), "reporter reached main");

    // A code deploy, then a rollback to release 1: code goes back, the rows stay.
    app.write("VERSION", "2\n");
    app.commit("v2");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "push 2:\n{}", text(&o));
    assert!(server.get(host, "/").unwrap().1.ends_with(" v2"));
    assert_eq!(sum(&password), "6");
    let o = server.ssh(&server.key, "git", "rollback demo main 1");
    assert!(o.status.success(), "rollback: {}", text(&o));
    assert!(server.get(host, "/").unwrap().1.ends_with(" v1"));
    assert_eq!(sum(&password), "6");
}
