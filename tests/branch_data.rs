//! A branch's copied service data as its apps use it (issue 14): a new branch's app logs in
//! to the copy of its parent's PostgreSQL and MariaDB with the branch's own credentials
//! (the service's user and its endpoints'), and still does after `sync` copied the
//! parent's data again; a sync that cannot copy everything copies nothing and says why;
//! a PostgreSQL extension added by a later push is there for the app without a restart.

use slipway_e2e::{cached_stack, text, App, Server};

/// An app that queries its relationships with the credentials of `PLATFORM_RELATIONSHIPS`
/// through the stack's `psql` and `mysql` clients: `/REL/write/N` adds row N to table `t`
/// (made when missing), `/REL/read` answers its rows, `/REL/hstore` uses the `hstore`
/// extension; each answer is `ok ...` or `error ...`. `/passwords`: the relationships'.
const SERVER_PY: &str = slipway_e2e::py_app!(
    concat!(
        slipway_e2e::py_relationships!(),
        r#"def q(rel, sql):
    try:
        return q_(rel, sql)
    except Exception as e:
        return "error %r" % e
def q_(rel, sql):
    d = rels[rel][0]
    if d["scheme"] == "pgsql":
        env = dict(os.environ, PGPASSWORD=d["password"], PGCONNECT_TIMEOUT="10")
        cmd = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", d["host"], "-p", str(d["port"]), "-U", d["username"], "-d", d["path"], "-c", sql]
    else:
        env = dict(os.environ, MYSQL_PWD=d["password"])
        cmd = ["mysql", "--no-defaults", "-N", "-B", "-h", d["host"], "-P", str(d["port"]), "-u", d["username"], d["path"], "-e", sql]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        return "ok " + " ".join(p.stdout.split())
    return "error " + p.stderr.strip()
"#
    ),
    r#"        rel, _, rest = self.path.strip("/").partition("/")
        if rel == "passwords":
            body = " ".join(rels[r][0]["password"] for r in sorted(rels))
        elif rest.startswith("write/"):
            body = q(rel, "CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t VALUES (%d)" % int(rest[6:]))
        elif rest == "read":
            body = q(rel, "SELECT n FROM t ORDER BY n")
        elif rest == "hstore":
            body = q(rel, "SELECT ('a=>1'::hstore) -> 'a'")
        else:
            body = "hello"
        body = body.encode()
"#
);

const APP_YAML: &str = "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\n  pgadmin: 'db:admin'\n  mysql: 'maria:mysql'\n  mreport: 'maria:reporter'\nweb:\n  commands:\n    start: python3 server.py\n";

/// PostgreSQL `db` (its own user and an endpoint `admin`) and MariaDB `maria` (its own
/// user and a read-only endpoint `reporter`); `db_extra`: more of `db`'s configuration.
fn services(db_disk: u32, db_extra: &str) -> String {
    format!(
        "db:\n  type: postgresql:15\n  disk: {db_disk}\n  configuration:\n{db_extra}    endpoints:\n      admin:\n        default_database: main\n        privileges: {{main: admin}}\n\
         maria:\n  type: mariadb:10.11\n  disk: 256\n  configuration:\n    schemas: [main]\n    endpoints:\n      mysql:\n        default_schema: main\n        privileges: {{main: admin}}\n      reporter:\n        default_schema: main\n        privileges: {{main: ro}}\n"
    )
}

const RELS: [&str; 4] = ["database", "pgadmin", "mysql", "mreport"];

fn get(server: &Server, env: &str, path: &str) -> String {
    match server.get(&format!("{env}.demo.localhost"), path) {
        Some((200, body)) => body,
        other => panic!("{env} {path}: {other:?}\n{}", server.server_log()),
    }
}

/// Each relationship of the app of `env` reads `rows` from its service.
fn assert_reads(server: &Server, env: &str, rows: &str) {
    for rel in RELS {
        assert_eq!(
            get(server, env, &format!("/{rel}/read")),
            format!("ok {rows}"),
            "{env}'s app through {rel}"
        );
    }
}

fn push(server: &Server, app: &App, branch: &str) -> String {
    let o = server.push_with(app, "demo", &format!("HEAD:refs/heads/{branch}"), &[]);
    assert!(o.status.success(), "push {branch}: {}", text(&o));
    text(&o)
}

#[test]
fn a_branch_app_uses_its_copied_service_data_with_its_own_credentials_after_sync_too() {
    // python:3.11, postgresql:15 and mariadb:10.11 are test stacks (the shared folder).
    cached_stack("postgresql:15");
    cached_stack("mariadb:10.11");
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", APP_YAML);
    app.write(".platform/services.yaml", &services(256, ""));
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", SERVER_PY);
    app.commit("with services");
    push(&server, &app, "main");
    for rel in ["database", "mysql"] {
        assert_eq!(get(&server, "main", &format!("/{rel}/write/1")), "ok ");
    }
    assert_reads(&server, "main", "1");

    // A branch: a copy of main's data, its own generated credentials, which its app uses.
    let out = push(&server, &app, "dev");
    assert!(out.contains("service db: data copied from main"), "{out}");
    let (main_pw, dev_pw) = (
        get(&server, "main", "/passwords"),
        get(&server, "dev", "/passwords"),
    );
    for (m, d) in main_pw.split(' ').zip(dev_pw.split(' ')) {
        assert_ne!(m, d, "dev has credentials of its own");
    }
    assert_reads(&server, "dev", "1");
    // Its writes are its own.
    assert_eq!(get(&server, "dev", "/database/write/10"), "ok ");
    assert_reads(&server, "main", "1");

    // `sync` copies main's data again: the new rows come, dev's go, its credentials stay
    // its own (main's endpoint passwords and init files came with the copy).
    for rel in ["database", "mysql"] {
        assert_eq!(get(&server, "main", &format!("/{rel}/write/2")), "ok ");
    }
    let t = server.admin_ok("sync demo dev");
    assert!(t.contains("dev now has a copy of main's"), "{t}");
    assert_reads(&server, "dev", "1 2");
    for rel in ["database", "mysql"] {
        let said = get(&server, "main", &format!("/{rel}/write/3"));
        assert_eq!(said, "ok ", "main's credentials are still main's");
    }
    assert_reads(&server, "main", "1 2 3");

    // A later push adds an extension to the running PostgreSQL: the app can use it at
    // once, in the database of each of its relationships.
    assert!(get(&server, "main", "/database/hstore").starts_with("error "));
    app.write(
        ".platform/services.yaml",
        &services(512, "    extensions:\n      - hstore\n"),
    );
    app.commit("hstore, a bigger disk");
    push(&server, &app, "main");
    assert_eq!(get(&server, "main", "/database/hstore"), "ok 1");
    assert_eq!(get(&server, "main", "/pgadmin/hstore"), "ok 1");

    // main's db volume (512 MB now) does not fit dev's (256 MB): the sync is refused,
    // saying which and why, and dev keeps its data.
    for rel in ["database", "mysql"] {
        assert_eq!(get(&server, "dev", &format!("/{rel}/write/20")), "ok ");
    }
    let o = server.admin("sync demo dev");
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("nothing copied") && t.contains("service-db (512 MB, 256 MB here)"),
        "{t}"
    );
    assert_reads(&server, "dev", "1 2 20");
}
