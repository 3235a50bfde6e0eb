//! Backups (issue 14, spec section 9): `backup create` takes consistent dumps of every
//! service (PostgreSQL, MariaDB, Redis) and a tar of every mount while the environment
//! keeps serving; `backup restore` gives back exactly the backed-up data; a corrupt blob or
//! another project's backup is refused with nothing changed; `archive gc` keeps backups by
//! its retention rule and `archive verify` checks their blobs.

use std::process::Command;

use slipway_e2e::{run, text, App, Server};

const APP_YAML: &str = "name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nrelationships:\n  database: 'db:postgresql'\n  cache: 'cache:redis'\n  mysql: 'mdb:mysql'\nhooks:\n  build: echo built > build.txt\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";

const SERVICES: &str = "db:\n  type: postgresql:15\ncache:\n  type: redis-persistent:7.0\nmdb:\n  type: mariadb:10.11\n";

/// Run `args` in a service's container; its stdout, trimmed.
fn in_service(server: &Server, container: &str, args: &[&str]) -> String {
    server.in_container(container, args, &[])
}

/// SQL on the `main` database of project `project`'s PostgreSQL 15 (over its socket).
fn psql(server: &Server, project: &str, sql: &str) -> String {
    psql_of(server, project, "15", sql)
}

/// SQL on the `main` database of project `project`'s PostgreSQL `major`.
fn psql_of(server: &Server, project: &str, major: &str, sql: &str) -> String {
    in_service(
        server,
        &format!("{project}.main.db.service"),
        &[
            &format!("/usr/lib/postgresql/{major}/bin/psql"),
            "-h",
            "/tmp",
            "-U",
            "main",
            "-d",
            "main",
            "-AtX",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )
}

/// A checksum of every row of `rows`.
const PG_SUM: &str =
    "SELECT count(*) || ':' || md5(string_agg(n || '=' || t, ',' ORDER BY n)) FROM rows";

/// [`PG_SUM`] on project `demo`'s PostgreSQL 15.
fn pg_sum(server: &Server) -> String {
    psql(server, "demo", PG_SUM)
}

/// SQL on MariaDB's `main` as the backup account (through the socket in its container,
/// with the service's password, which the app's `mysql` relationship has).
fn mariadb(server: &Server, sql: &str) -> String {
    let rels = shell(server, "echo $PLATFORM_RELATIONSHIPS | base64 -d");
    let rels: serde_json::Value = serde_json::from_str(&rels).unwrap();
    let password = rels["mysql"][0]["password"].as_str().unwrap().to_string();
    server.in_container(
        "demo.main.mdb.service",
        &[
            "mariadb",
            "--no-defaults",
            "--socket=/tmp/mysqld.sock",
            "--user=slipway",
            "-N",
            "-B",
            "main",
            "-e",
            sql,
        ],
        &[("MYSQL_PWD", &password)],
    )
}

fn maria_sum(server: &Server) -> String {
    mariadb(
        server,
        "SELECT CONCAT(COUNT(*), ':', MD5(GROUP_CONCAT(n, '=', t ORDER BY n))) FROM items",
    )
}

fn redis(server: &Server, addr: &str, args: &[&str]) -> String {
    let mut all = vec!["redis-cli", "-h", addr, "-p", "6379"];
    all.extend_from_slice(args);
    in_service(server, "demo.main.cache.service", &all)
}

/// Wait until `host` answers 200 (the apps start again after a restore).
fn answers(server: &Server, host: &str) {
    server.wait_for_page(host, "/", std::time::Duration::from_secs(60));
}

fn shell(server: &Server, command: &str) -> String {
    let o = server.ssh(&server.key, "main.demo", command);
    assert!(o.status.success(), "{command}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn refused(server: &Server, command: &str) -> String {
    let o = server.ssh(&server.key, "git", command);
    assert!(!o.status.success(), "{command} was accepted: {}", text(&o));
    text(&o)
}

/// The JSON of `backup ls PROJECT main --json`.
fn backups(server: &Server, project: &str) -> serde_json::Value {
    let o = server.ssh(
        &server.key,
        "git",
        &format!("backup ls {project} main --json"),
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn backup_and_restore_give_back_exactly_the_backed_up_data() {
    // python:3.11, postgresql:15, redis:7.0 and mariadb:10.11 are test stacks.
    let server = Server::start();
    let app = App::with_services(server.dir.path(), APP_YAML, SERVICES);
    app.commit("with services");
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    let services: serde_json::Value =
        serde_json::from_str(&server.admin_ok("services demo main --json")).unwrap();
    // An environment that does not exist is said so, not listed as one without services.
    assert!(
        refused(&server, "services demo nope")
            .contains("environment 'nope' of project 'demo' not found"),
        "services of a missing environment"
    );
    let cache_addr = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cache")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();

    // Data in every service and a mount.
    psql(
        &server,
        "demo",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    );
    mariadb(
        &server,
        "CREATE TABLE items (n INT PRIMARY KEY, t TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    );
    redis(&server, &cache_addr, &["SET", "k", "before"]);
    shell(&server, "echo before > /app/data/f.txt");
    let (pg0, maria0) = (pg_sum(&server), maria_sum(&server));
    assert!(pg0.starts_with("5000:"), "{pg0}");

    // backup create: each part named with its time; the app keeps answering.
    let out = server.admin_ok("backup create demo main");
    assert!(
        out.contains("backup db") && out.contains("backup mount"),
        "{out}"
    );
    assert!(out.contains("backup 1 of main taken"), "{out}");
    assert_eq!(server.get(host, "/").map(|(s, _)| s), Some(200));
    let list = backups(&server, "demo");
    let parts = list[0]["manifest"]["parts"].as_array().unwrap().clone();
    let kinds: Vec<&str> = parts.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    for k in ["postgresql-dump", "mariadb-dump", "redis-rdb", "mount-tar"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    let ls = server.admin_ok("backup ls demo main");
    assert!(ls.starts_with("1\t") && ls.contains("db/main"), "{ls}");

    // More writes everywhere, then restore: exactly the backed-up data again.
    psql(
        &server,
        "demo",
        "INSERT INTO rows SELECT g, 'later' FROM generate_series(5001, 6000) g; UPDATE rows SET t = 'changed' WHERE n < 10; CREATE TABLE extra (n int)",
    );
    mariadb(
        &server,
        "INSERT INTO items VALUES (4, 'd'); DELETE FROM items WHERE n = 1",
    );
    redis(&server, &cache_addr, &["SET", "k", "after"]);
    shell(
        &server,
        "echo after > /app/data/f.txt; echo new > /app/data/g.txt",
    );
    assert_ne!(pg_sum(&server), pg0);
    let out = server.admin_ok("backup restore demo main 1");
    assert!(out.contains("restored from backup 1"), "{out}");
    assert_eq!(pg_sum(&server), pg0);
    assert_eq!(
        psql(
            &server,
            "demo",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'extra'"
        ),
        "0"
    );
    assert_eq!(maria_sum(&server), maria0);
    assert_eq!(redis(&server, &cache_addr, &["GET", "k"]), "before");
    assert_eq!(shell(&server, "cat /app/data/f.txt"), "before");
    assert_eq!(shell(&server, "ls /app/data"), "f.txt");
    answers(&server, host);

    // A second backup whose PostgreSQL dump gets corrupted: the restore is refused before
    // anything changes, and `archive verify` names the blob.
    psql(&server, "demo", "INSERT INTO rows VALUES (7000, 'second')");
    server.admin_ok("backup create demo main");
    psql(&server, "demo", "INSERT INTO rows VALUES (7001, 'third')");
    let current = pg_sum(&server);
    let list = backups(&server, "demo");
    assert_eq!(list[0]["id"], 2, "{list}");
    let dump = list[0]["manifest"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "postgresql-dump")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = server
        .data
        .join("archive/blobs/sha256")
        .join(dump.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let why = refused(&server, "backup restore demo main 2");
    assert!(
        why.contains("backup 2 is damaged") && why.contains("nothing was changed"),
        "{why}"
    );
    assert_eq!(pg_sum(&server), current);
    assert_eq!(server.get(host, "/").map(|(s, _)| s), Some(200));
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(dump.trim_start_matches("sha256:")),
        "{}",
        text(&o)
    );

    // Another project's backup is not this project's.
    let o = server.git(&app.dir, &["push", &server.remote("other"), "main"]);
    assert!(o.status.success(), "push other:\n{}", text(&o));
    psql(
        &server,
        "other",
        "CREATE TABLE rows (n int PRIMARY KEY, t text)",
    );
    server.admin_ok("backup create other main");
    assert_eq!(backups(&server, "other")[0]["id"], 3);
    let why = refused(&server, "backup restore demo main 3");
    assert!(
        why.contains("backup 3 is not a backup of project demo"),
        "{why}"
    );
    assert_eq!(pg_sum(&server), current);
    let why = refused(&server, "backup restore demo main 99");
    assert!(
        why.contains("backup 99 is not a backup of project demo"),
        "{why}"
    );

    // Retention: the newest backup of each environment is kept (and none is young enough
    // to be kept for its age); backup 1 and its own blobs go.
    let first_dump = parts
        .iter()
        .find(|p| p["kind"] == "postgresql-dump")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let o = server.slipway(&[
        "archive",
        "gc",
        "--keep-backups",
        "1",
        "--keep-backup-days",
        "0",
    ]);
    assert!(o.status.success(), "gc: {}", text(&o));
    assert!(
        text(&o).contains("dropped backup 1 of demo/main"),
        "{}",
        text(&o)
    );
    let ids: Vec<i64> = backups(&server, "demo")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![2]);
    assert_eq!(backups(&server, "other")[0]["id"], 3);
    assert!(!server
        .data
        .join("archive/blobs/sha256")
        .join(&first_dump)
        .exists());
    assert!(blob.exists(), "backup 2's blobs are kept");
    // The default rule keeps them all (7 newest, 30 days).
    let o = server.slipway(&["archive", "gc"]);
    assert!(o.status.success(), "gc: {}", text(&o));
    assert_eq!(backups(&server, "other")[0]["id"], 3);
    assert_eq!(backups(&server, "demo")[0]["id"], 2);

    // Roles: a viewer lists backups but takes and restores none (main is protected: both
    // need the admin role there).
    let bob = slipway_e2e::new_key(server.dir.path(), "bob");
    let o = server.slipway(&[
        "user",
        "add",
        "bob",
        "--key",
        bob.with_extension("pub").to_str().unwrap_or(""),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    server.admin_ok("access grant demo bob viewer");
    let o = server.ssh(&bob, "git", "backup ls demo main");
    assert!(
        o.status.success() && text(&o).starts_with("2\t"),
        "{}",
        text(&o)
    );
    for command in ["backup create demo main", "backup restore demo main 2"] {
        let o = server.ssh(&bob, "git", command);
        assert!(!o.status.success(), "{command}: {}", text(&o));
        assert!(
            text(&o).contains("needs the admin role on demo"),
            "{command}: {}",
            text(&o)
        );
    }
    assert_eq!(backups(&server, "demo").as_array().unwrap().len(), 1);
}

/// Asserts that `services demo main` lists a service on `stack` (e.g. `postgresql:17`).
fn assert_service_runs(server: &Server, stack: &str) {
    let services = server.admin_ok("services demo main");
    assert!(services.contains(stack), "{stack}: {services}");
}

/// Pushes `app` to `demo` with `-o allow-service-upgrade`, which must succeed and say each
/// of `steps`.
fn push_service_upgrade(server: &Server, app: &App, steps: &[&str]) {
    let o = server.push_with(app, "demo", "main", &["allow-service-upgrade"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}\n{}", server.server_log());
    for step in steps {
        assert!(out.contains(step), "{step}: {out}");
    }
}

#[test]
fn a_major_service_upgrade_needs_its_option_and_keeps_every_row() {
    // postgresql:17 is not a test stack: this push builds it (once per machine).
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\nhooks:\n  build: echo built > build.txt\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.write(".platform/services.yaml", "db:\n  type: postgresql:15\n");
    app.commit("postgresql 15");
    server.push_ok(&app, "demo");
    psql(
        &server,
        "demo",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 3000) g",
    );
    let before = pg_sum(&server);

    // Without the option: refused at the diff, nothing changed.
    app.write(".platform/services.yaml", "db:\n  type: postgresql:17\n");
    app.commit("postgresql 17");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("allow-service-upgrade"), "{out}");
    assert_service_runs(&server, "postgresql:15");
    assert_eq!(pg_sum(&server), before);

    // With it: a backup, then dump and restore into 17; every row is there.
    push_service_upgrade(
        &server,
        &app,
        &[
            "service upgrade: db postgresql 15 -> 17: a backup first",
            "backup: backup 1",
            "db: starting postgresql 17",
            "service upgrade db: postgresql 15 -> 17 by dump and restore",
        ],
    );
    assert_service_runs(&server, "postgresql:17");
    let version = psql_of(&server, "demo", "17", "SHOW server_version_num");
    assert!(version.starts_with("17"), "{version}");
    let after = psql_of(&server, "demo", "17", PG_SUM);
    assert_eq!(after, before);
    assert!(server
        .data
        .join("volumes/demo/main/service-db/db.pre-upgrade-15/pgdata/PG_VERSION")
        .exists());
    assert_eq!(backups(&server, "demo")[0]["created_by"], "slipway");

    // Back down to 15: refused without `-o allow-data-loss`; with it, 15 cannot read 17's
    // dump, so the push fails, says so, and 17 keeps running on every row (never a silent
    // "still 17" after a successful push).
    app.write(".platform/services.yaml", "db:\n  type: postgresql:15\n");
    app.commit("postgresql 15 again");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = server.push_with(&app, "demo", "main", &["allow-data-loss"]);
    let out = text(&o);
    assert!(!o.status.success(), "a downgrade 15 cannot load: {out}");
    assert!(
        out.contains("db postgresql 17 -> 15") && out.contains("comes back on its data"),
        "{out}"
    );
    assert_service_runs(&server, "postgresql:17");
    let again = psql_of(&server, "demo", "17", PG_SUM);
    assert_eq!(again, before);
}

#[test]
fn a_restore_that_fails_halfway_puts_every_service_back_as_it_was() {
    // python:3.11, postgresql:15, redis:7.0 and mariadb:10.11 are test stacks. MariaDB
    // is killed below and must stay dead until the restore reaches it: no supervision.
    let server = Server::start_with(&[("SLIPWAY_TEST_NO_SUPERVISION", "1")]);
    let app = App::with_services(server.dir.path(), APP_YAML, SERVICES);
    app.commit("with services");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    let host = "main.demo.localhost";
    psql(
        &server,
        "demo",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    );
    mariadb(
        &server,
        "CREATE TABLE items (n INT PRIMARY KEY, t TEXT); INSERT INTO items VALUES (1, 'a'), (2, 'b')",
    );
    let out = server.admin_ok("backup create demo main");
    assert!(out.contains("backup 1 of main taken"), "{out}");

    // Writes after the backup, in both databases.
    psql(
        &server,
        "demo",
        "INSERT INTO rows SELECT g, 'later' FROM generate_series(1001, 1500) g; DELETE FROM rows WHERE n <= 10",
    );
    mariadb(&server, "INSERT INTO items VALUES (3, 'c')");
    let (pg_now, maria_now) = (pg_sum(&server), maria_sum(&server));
    assert!(pg_now.starts_with("1490:"), "{pg_now}");

    // The MariaDB server dies after the checks: its part (loaded after PostgreSQL's, by
    // service name) fails, and PostgreSQL is put back as it was before the restore, not
    // left with the backup's rows.
    let o = run(server
        .runc()
        .args(["kill", "demo.main.mdb.service", "KILL"]));
    assert!(o.status.success(), "{}", text(&o));
    let o = server.ssh(&server.key, "git", "backup restore demo main 1");
    let out = text(&o);
    assert!(!o.status.success(), "the restore went through: {out}");
    assert!(
        out.contains("restore db"),
        "PostgreSQL's part was loaded first: {out}"
    );
    assert!(
        out.contains("every service and mount was put back as it was before the restore"),
        "{out}"
    );
    assert_eq!(pg_sum(&server), pg_now, "{out}");
    assert_eq!(
        maria_sum(&server),
        maria_now,
        "MariaDB runs again on its data"
    );
    answers(&server, host);
    assert!(
        !server
            .data
            .join("volumes/demo/main/service-db.img.pre-restore")
            .exists(),
        "the copies go"
    );

    // With every server up, the same restore goes through.
    let out = server.admin_ok("backup restore demo main 1");
    assert!(out.contains("restored from backup 1"), "{out}");
    let pg = pg_sum(&server);
    assert!(pg.starts_with("1000:"), "{pg}");
    assert_eq!(
        mariadb(&server, "SELECT COUNT(*) FROM items"),
        "2",
        "the backup's rows"
    );
}

#[test]
fn a_mariadb_major_upgrade_goes_through_a_backup_and_dump_and_restore() {
    // mariadb:11.8 is a trixie stack, not a test stack: built here once per machine.
    slipway_e2e::cached_stack("mariadb:11.8");
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nrelationships:\n  mysql: 'mdb:mysql'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.write(".platform/services.yaml", "mdb:\n  type: mariadb:10.11\n");
    app.commit("mariadb 10.11");
    server.push_ok(&app, "demo");
    mariadb(
        &server,
        "CREATE TABLE items (n INT PRIMARY KEY, t TEXT); INSERT INTO items SELECT seq, MD5(seq) FROM seq_1_to_2000",
    );
    let before = maria_sum(&server);
    assert!(before.starts_with("2000:"), "{before}");

    // Without the option: refused at the diff, nothing changed.
    app.write(".platform/services.yaml", "mdb:\n  type: mariadb:11.8\n");
    app.commit("mariadb 11.8");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(
        !o.status.success() && out.contains("allow-service-upgrade"),
        "{out}"
    );
    assert_service_runs(&server, "mariadb:10.11");

    // With it: a backup, the dump, then the restore into 11.8; every row is there.
    push_service_upgrade(
        &server,
        &app,
        &[
            "service upgrade: mdb mariadb 10.11 -> 11.8: a backup first",
            "backup mdb",
            "backup: backup 1",
            "mdb: starting mariadb 11.8",
            "service upgrade mdb: mariadb 10.11 -> 11.8 by dump and restore",
        ],
    );
    assert_service_runs(&server, "mariadb:11.8");
    let version = mariadb(&server, "SELECT VERSION()");
    assert!(version.starts_with("11.8"), "{version}");
    assert_eq!(maria_sum(&server), before);
    assert_eq!(backups(&server, "demo")[0]["created_by"], "slipway");
}

/// A PostgreSQL service with two endpoints: `admin` (of `main`) and `reporter` (reads it).
const ENDPOINT_SERVICES: &str = "db:
  type: postgresql:15
  configuration:
    databases: [main]
    endpoints:
      admin:
        default_database: main
        privileges: {main: admin}
      reporter:
        default_database: main
        privileges: {main: ro}
";

/// Whether role `role` of project `demo`'s PostgreSQL can log in, has a password, and may
/// read table `rows` (`t`/`f` each, `|`-separated), or `none` when it does not exist.
fn role_state(server: &Server, role: &str) -> String {
    psql(
        server,
        "demo",
        &format!("SELECT coalesce((SELECT concat_ws('|', rolcanlogin, rolpassword IS NOT NULL, has_table_privilege(rolname, 'rows', 'SELECT')) FROM pg_authid WHERE rolname = '{role}'), 'none')"),
    )
}

#[test]
fn a_backup_keeps_its_endpoint_roles_and_restores_after_one_left_the_configuration() {
    // python:3.11 and postgresql:15 are test stacks.
    let server = Server::start();
    let app_yaml = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:admin'\n  reports: 'db:reporter'\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";
    let app = App::with_services(server.dir.path(), app_yaml, ENDPOINT_SERVICES);
    app.commit("two endpoints");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    psql(
        &server,
        "demo",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
    );
    let pg0 = pg_sum(&server);
    assert_eq!(role_state(&server, "reporter"), "t|t|t");

    // The backup holds the two endpoint roles, without any password and without the
    // superuser, in a blob of its own under its digest.
    let out = server.admin_ok("backup create demo main");
    assert!(out.contains("backup 1 of main taken"), "{out}");
    assert!(out.contains("service db: roles admin, reporter"), "{out}");
    let list = backups(&server, "demo");
    let roles = list[0]["manifest"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "postgresql-roles")
        .unwrap_or_else(|| panic!("no roles part: {list}"))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = server
        .data
        .join("archive/blobs/sha256")
        .join(roles.trim_start_matches("sha256:"));
    let sql = std::fs::read_to_string(&blob).unwrap();
    assert!(
        sql.contains("CREATE ROLE \"admin\";") && sql.contains("CREATE ROLE \"reporter\";"),
        "{sql}"
    );
    assert!(!sql.to_lowercase().contains("password"), "{sql}");
    assert!(!sql.contains("SCRAM"), "{sql}");
    assert!(!sql.contains("main"), "{sql}");
    let o = run(Command::new("sha256sum").arg(&blob));
    assert!(
        text(&o).starts_with(roles.trim_start_matches("sha256:")),
        "{}",
        text(&o)
    );

    // The reporter endpoint leaves the configuration (its role dropped), rows change.
    app.write(
        ".platform.app.yaml",
        &app_yaml.replace("  reports: 'db:reporter'\n", ""),
    );
    app.write(
        ".platform/services.yaml",
        &ENDPOINT_SERVICES.replace(
            "      reporter:\n        default_database: main\n        privileges: {main: ro}\n",
            "",
        ),
    );
    app.commit("no reporter");
    let o = server.push_with(&app, "demo", "main", &["allow-data-loss"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    assert_eq!(role_state(&server, "reporter"), "none");
    psql(
        &server,
        "demo",
        "DELETE FROM rows WHERE n > 1500; INSERT INTO rows VALUES (9999, 'later')",
    );
    assert_ne!(pg_sum(&server), pg0);

    // The restore makes the role again before the data (its grant applies), keeps it
    // disabled, and says so; every row is the backup's.
    let out = server.admin_ok("backup restore demo main 1");
    assert!(out.contains("restored from backup 1"), "{out}");
    assert!(
        out.contains("role reporter (in the backup, no longer an endpoint of db): kept disabled"),
        "{out}"
    );
    assert_eq!(pg_sum(&server), pg0);
    assert_eq!(
        role_state(&server, "reporter"),
        "f|f|t",
        "no login, no password, its grant back"
    );
    assert_eq!(
        role_state(&server, "admin"),
        "t|t|t",
        "the configured endpoint logs in"
    );
    answers(&server, "main.demo.localhost");

    // Configured again, the endpoint logs in again with its grants.
    app.write(".platform.app.yaml", app_yaml);
    app.write(".platform/services.yaml", ENDPOINT_SERVICES);
    app.commit("the reporter again");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    assert_eq!(role_state(&server, "reporter"), "t|t|t");
    assert_eq!(pg_sum(&server), pg0);

    // The roles part is verified on read like every part: changed by one byte, the
    // restore is refused before anything changes.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    psql(&server, "demo", "INSERT INTO rows VALUES (10001, 'kept')");
    let now = pg_sum(&server);
    let why = refused(&server, "backup restore demo main 1");
    assert!(
        why.contains("backup 1 is damaged") && why.contains("nothing was changed"),
        "{why}"
    );
    assert_eq!(pg_sum(&server), now);
}

#[test]
fn a_service_whose_stack_changed_under_it_is_moved_onto_it_after_a_backup() {
    // redis:7.0 and python:3.11 are test stacks.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nrelationships:\n  cache: 'cache:redis'\nhooks:\n  build: echo built > build.txt\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.0\n",
    );
    app.commit("redis");
    let push = |what: &str| {
        app.write("VERSION", &format!("push {what}\n"));
        app.commit(what);
        let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
        assert!(
            o.status.success(),
            "{what}: {}\n{}",
            text(&o),
            server.server_log()
        );
        text(&o)
    };
    push("1");
    let services: serde_json::Value =
        serde_json::from_str(&server.admin_ok("services demo main --json")).unwrap();
    let addr = services[0]["address"].as_str().unwrap().to_string();
    redis(&server, &addr, &["SET", "k", "kept"]);
    // As if made on an earlier build of its stack (a stack built again with newer
    // packages, one imported over it, or a newer Slipway's recipe): another fingerprint.
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let n = db
        .execute(
            "UPDATE services SET stack_fingerprint = '000000000000' WHERE name = 'cache'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);

    // The next deploy takes a backup, then restarts it on its stack as it is now, saying so.
    let out = push("2");
    assert!(
        out.contains(
            "service upgrade: cache runs on redis:7.0 (build 000000000000), its stack is redis:7.0 (build "
        ) && out.contains("a backup first"),
        "{out}"
    );
    assert!(out.contains("backup: backup 1"), "{out}");
    assert!(
        out.contains("service upgrade cache: restarted on redis:7.0"),
        "{out}"
    );
    let list = backups(&server, "demo");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["created_by"], "slipway");
    assert_eq!(list[0]["manifest"]["parts"][0]["name"], "cache");
    assert!(server.admin_ok("backup ls demo main").contains("cache"));
    assert_eq!(redis(&server, &addr, &["GET", "k"]), "kept");
    let fingerprint: String = db
        .query_row(
            "SELECT stack_fingerprint FROM services WHERE name = 'cache'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(fingerprint, "000000000000");

    // Moved: the deploy after it takes none.
    let out = push("3");
    assert!(!out.contains("service upgrade"), "{out}");
    assert_eq!(backups(&server, "demo").as_array().unwrap().len(), 1);
}
