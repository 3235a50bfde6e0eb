//! Acceptance audit of spec sections 8-11 (session 17): findings shown as end-to-end tests
//! with real git, OpenSSH and runc. Each test quotes the spec or issue line it checks.
//! Tests here may fail on the current code: each one is a finding of the audit report.

use slipway_e2e::{text, Server};

const APP: &str = "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n";

/// An app with `relationships` to `cache` (when `cache` names a type) and the services file.
fn files(cache: Option<(&str, &str)>) -> Vec<(&'static str, String)> {
    let mut app = APP.to_string();
    let mut services = "db:\n  type: postgresql:15\n  disk: 256\n".to_string();
    app.push_str("relationships:\n  db: \"db:postgresql\"\n");
    if let Some((ty, endpoint)) = cache {
        app.push_str(&format!("  cache: \"cache:{endpoint}\"\n"));
        services.push_str(&format!("cache:\n  type: {ty}\n"));
    }
    vec![
        (".platform.app.yaml", app),
        (".platform/services.yaml", services),
    ]
}

/// A project `demo` committed with `files`.
fn project(server: &Server, files: &[(&str, String)]) -> slipway_e2e::App {
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    server.project("demo", &refs)
}

fn push_files(
    server: &Server,
    app: &slipway_e2e::App,
    files: &[(&str, String)],
    msg: &str,
) -> String {
    for (p, c) in files {
        app.write(p, c);
    }
    app.commit(msg);
    server.push_ok(app, "demo")
}

/// Spec 9: "Each service of the config runs in its own container per environment".
/// Spec 9: "A change that would lose data (removing a service ...) is refused unless
/// pushed with `-o allow-data-loss`": a redis (no data) may go without the option, and the
/// diff says `service cache removed`; then it must be gone. Today it keeps running, listed by
/// `services` and included in `backup create`, because `services::remove_dropped`
/// (slipway-deploy pipeline.rs) only runs with `-o allow-data-loss`.
#[test]
fn a_service_removed_from_the_config_without_data_stops_running() {
    let server = Server::start();
    let app = project(&server, &files(Some(("redis:7.0", "redis"))));
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("service cache added (redis:7.0)"), "{out}");
    let out = push_files(&server, &app, &files(None), "without redis");
    assert!(out.contains("service cache removed (redis:7.0)"), "{out}");
    let services = server.admin_ok("services demo main");
    assert!(
        !services.contains("cache\t"),
        "a removed service is still listed:\n{services}"
    );
    assert!(
        !server
            .containers()
            .iter()
            .any(|(id, _)| id == "demo.main.cache.service"),
        "a removed service's container still runs: {:?}",
        server.containers()
    );
}

/// Spec 9: apps reach a service "at the relationship's host (`NAME.internal`) and port".
/// After redis `cache` was removed (accepted without `-o allow-data-loss`), a push adding
/// `cache` as memcached says `service cache added (memcached:1.6)` and gives the app a
/// memcached relationship on port 11211, but `cache.internal` is still the old redis
/// container (answers PING on 6379, refuses 11211): the app cannot reach its memcached.
#[test]
fn a_service_name_reused_for_another_type_runs_that_type() {
    let server = Server::start();
    let app = project(&server, &files(Some(("redis:7.0", "redis"))));
    server.push_ok(&app, "demo");
    push_files(&server, &app, &files(None), "without redis");
    let out = push_files(
        &server,
        &app,
        &files(Some(("memcached:1.6", "memcached"))),
        "memcached",
    );
    assert!(out.contains("service cache added (memcached:1.6)"), "{out}");
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tmemcached:1.6"), "{services}");
    let probe = "python3 -c 'import socket; s=socket.create_connection((\"cache.internal\", 11211), 5); s.sendall(b\"version\\r\\n\"); print(s.recv(100))'";
    let o = server.ssh(&server.key, "main.demo", probe);
    assert!(
        o.status.success() && text(&o).contains("VERSION"),
        "memcached not reachable at cache.internal:11211: {}",
        text(&o)
    );
}

/// Issue 13, Bad input: "an app over its memory limit (killed, reported as such in the
/// push's health phase or in `logs`)". Today the health phase says only
/// `app hog exited at start (its output is above)` after a bare `Killed` line:
/// `health::wait_app` (slipway-deploy health.rs) does not ask the runtime whether the
/// kernel killed it for memory, as the supervisor does for `logs`.
#[test]
fn an_app_killed_for_memory_at_start_fails_the_push_saying_out_of_memory() {
    let server = Server::start();
    let app = server.project(
        "demo",
        &[(
            ".platform.app.yaml",
            "name: hog\ntype: python:3.11\nsize: S\nweb:\n  commands:\n    start: python3 -c 'x = bytearray(8 << 30)'\n",
        )],
    );
    let o = server.push_with(&app, "demo", "main", &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("health check failed"), "{out}");
    assert!(
        out.contains("out of memory"),
        "the push does not say the app went over its memory limit:\n{out}"
    );
}

/// Spec 9: apps reach a service "at the relationship's host (`NAME.internal`) and port".
/// One push changing service `cache` from redis:7.0 to memcached:1.6 is accepted (the diff
/// says `service cache replaced: redis:7.0 -> memcached:1.6`), but `services::converge`
/// (slipway-deploy services/mod.rs) takes the existing record of that name as it is, never
/// comparing its type: redis keeps running and the app's memcached relationship (port
/// 11211) reaches nothing.
#[test]
fn a_service_replaced_by_another_type_in_one_push_runs_the_new_type() {
    let server = Server::start();
    let app = project(&server, &files(Some(("redis:7.0", "redis"))));
    server.push_ok(&app, "demo");
    let out = push_files(
        &server,
        &app,
        &files(Some(("memcached:1.6", "memcached"))),
        "memcached",
    );
    assert!(
        out.contains("service cache replaced: redis:7.0 -> memcached:1.6"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tmemcached:1.6"), "{services}");
}

/// Spec 9: "service data ... survive[s] deploys, ..., restarts". Changing `cache` from
/// redis:7.0 to redis-persistent:7.0 (the diff says `type changed`) keeps the old container,
/// started with `--appendonly no --save ''`: what the app writes to its "persistent" redis
/// is lost at the next restart. Same cause as the test above (`services::converge`).
#[test]
fn a_redis_made_persistent_runs_as_redis_persistent() {
    let server = Server::start();
    let app = project(&server, &files(Some(("redis:7.0", "redis"))));
    server.push_ok(&app, "demo");
    let mut next = files(Some(("redis-persistent:7.0", "redis")));
    next[1].1.push_str("  disk: 256\n");
    let out = push_files(&server, &app, &next, "persistent");
    assert!(
        out.contains("service cache type changed (redis -> redis-persistent)"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("cache\tredis-persistent:7.0"),
        "{services}"
    );
}

/// Spec 9: "`services PROJECT ENV`: each service, its type, state, disk used and size."
/// A network-storage service (a 512 MB volume the push makes, `volume service-files`) is
/// not listed: `services` shows only the records of started containers
/// (slipway-ssh admin/services.rs), and answers `main has no services`.
#[test]
fn services_lists_a_network_storage_service() {
    let server = Server::start();
    let config = "applications:\n  app:\n    type: python:3.11\n    web:\n      commands:\n        start: python3 -m http.server $PORT --bind 127.0.0.1\n    mounts:\n      shared:\n        source: service\n        service: files\n        source_path: x\nservices:\n  files:\n    type: network-storage:2.0\n";
    let app = server.project("demo", &[(".upsun/config.yaml", config)]);
    let out = server.push_ok(&app, "demo");
    assert!(
        out.contains("service files added (network-storage:2.0)"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("files\tnetwork-storage:2.0"),
        "{services}"
    );
}
