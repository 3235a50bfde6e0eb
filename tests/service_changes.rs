//! Services a push changes the type of or removes, and network-storage in `services`
//! (spec 9), with real git, OpenSSH and runc: a service replaced by another type runs that
//! type once the push is live (the old one stops, its data deleted); a failed push leaves
//! the old one serving; a service holding no data removed from the config stops; a change
//! that would lose data is refused without `-o allow-data-loss`.

use slipway_e2e::{text, Server};

const START: &str = "python3 -m http.server $PORT --bind 127.0.0.1";

/// An app (started with `start`) with `relationships` to `db` and to `cache` (when `cache`
/// names a type and endpoint), and the services file.
fn files_with(start: &str, cache: Option<(&str, &str)>) -> Vec<(&'static str, String)> {
    let mut app = format!("name: app\ntype: python:3.11\nweb:\n  commands:\n    start: {start}\n");
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

/// [`files_with`] an app that serves.
fn files(cache: Option<(&str, &str)>) -> Vec<(&'static str, String)> {
    files_with(START, cache)
}

/// A project `demo` committed with `files`.
fn project(server: &Server, files: &[(&str, String)]) -> slipway_e2e::App {
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    server.project("demo", &refs)
}

/// Commit `files` and push them with `options`: whether the push succeeded, and its output.
fn push_files(
    server: &Server,
    app: &slipway_e2e::App,
    files: &[(&str, String)],
    msg: &str,
    options: &[&str],
) -> (bool, String) {
    for (p, c) in files {
        app.write(p, c);
    }
    app.commit(msg);
    let o = server.push_with(app, "demo", "main", options);
    (o.status.success(), text(&o))
}

/// A project `demo` with a redis `cache`, pushed (which must succeed).
fn with_redis(server: &Server) -> slipway_e2e::App {
    let app = project(server, &files(Some(("redis:7.0", "redis"))));
    server.push_ok(&app, "demo");
    app
}

/// [`files`] with `cache` a redis-persistent of 256 MB.
fn persistent_redis() -> Vec<(&'static str, String)> {
    let mut files = files(Some(("redis-persistent:7.0", "redis")));
    files[1].1.push_str("  disk: 256\n");
    files
}

/// Push `cache` as memcached (which must succeed); the push output.
fn push_memcached(server: &Server, app: &slipway_e2e::App) -> String {
    let (ok, out) = push_files(
        server,
        app,
        &files(Some(("memcached:1.6", "memcached"))),
        "memcached",
        &[],
    );
    assert!(ok, "{out}");
    out
}

/// What `host:port` answers to `request`, asked from the app's container of `main`.
fn ask(server: &Server, host: &str, port: u16, request: &str) -> String {
    let probe = format!(
        "python3 -c 'import socket; s=socket.create_connection((\"{host}\", {port}), 5); s.sendall(b\"{request}\\r\\n\"); print(s.recv(100))'"
    );
    text(&server.ssh(&server.key, "main.demo", &probe))
}

fn service_container_runs(server: &Server, name: &str) -> bool {
    let id = format!("demo.main.{name}.service");
    server.containers().iter().any(|(c, _)| *c == id)
}

/// Spec 9: "Each service of the config runs in its own container per environment". A redis
/// (no data) may go without `-o allow-data-loss` (the diff says `service cache removed`);
/// once the push is live it is gone: not listed, no container.
#[test]
fn a_service_removed_from_the_config_without_data_stops_running() {
    let server = Server::start();
    let app = project(&server, &files(Some(("redis:7.0", "redis"))));
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("service cache added (redis:7.0)"), "{out}");
    let (ok, out) = push_files(&server, &app, &files(None), "without redis", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("service cache removed (redis:7.0)"), "{out}");
    assert!(out.contains("service cache stopped and removed"), "{out}");
    let services = server.admin_ok("services demo main");
    assert!(
        !services.contains("cache\t"),
        "a removed service is still listed:\n{services}"
    );
    assert!(
        !service_container_runs(&server, "cache"),
        "a removed service's container still runs: {:?}",
        server.containers()
    );
}

/// Spec 9: apps reach a service "at the relationship's host (`NAME.internal`) and port".
/// After redis `cache` was removed, a push adding `cache` as memcached runs memcached there.
#[test]
fn a_service_name_reused_for_another_type_runs_that_type() {
    let server = Server::start();
    let app = with_redis(&server);
    let (ok, out) = push_files(&server, &app, &files(None), "without redis", &[]);
    assert!(ok, "{out}");
    let out = push_memcached(&server, &app);
    assert!(out.contains("service cache added (memcached:1.6)"), "{out}");
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tmemcached:1.6"), "{services}");
    let answer = ask(&server, "cache.internal", 11211, "version");
    assert!(
        answer.contains("VERSION"),
        "memcached not reachable at cache.internal:11211: {answer}"
    );
}

/// Spec 9: one push changing `cache` from redis:7.0 to memcached:1.6 (the diff says
/// `service cache replaced: redis:7.0 -> memcached:1.6`) runs memcached at `cache.internal`
/// once it is live, and the redis is gone.
#[test]
fn a_service_replaced_by_another_type_in_one_push_runs_the_new_type() {
    let server = Server::start();
    let app = with_redis(&server);
    let out = push_memcached(&server, &app);
    assert!(
        out.contains("service cache replaced: redis:7.0 -> memcached:1.6"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tmemcached:1.6"), "{services}");
    assert!(!services.contains("redis"), "{services}");
    let answer = ask(&server, "cache.internal", 11211, "version");
    assert!(answer.contains("VERSION"), "{answer}");
    let answer = ask(&server, "cache.internal", 6379, "PING");
    assert!(!answer.contains("PONG"), "redis still answers: {answer}");
}

/// Spec 9 and ARCHITECTURE's invariant "failed deploys touch nothing": a push changing
/// `cache` from redis to memcached whose app fails its health check leaves redis serving at
/// `cache.internal:6379` (and listed as it was), with no memcached left behind.
#[test]
fn a_failed_push_after_a_type_change_leaves_the_old_service_serving() {
    let server = Server::start();
    let app = with_redis(&server);
    let (ok, out) = push_files(
        &server,
        &app,
        &files_with("exit 1", Some(("memcached:1.6", "memcached"))),
        "memcached, and an app that does not start",
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("health check failed"), "{out}");
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tredis:7.0\t"), "{services}");
    let answer = ask(&server, "cache.internal", 6379, "PING");
    assert!(answer.contains("PONG"), "redis does not answer: {answer}");
}

/// A rollback to the release before a type change runs that release's type again: redis
/// back at `cache.internal:6379` (memcached, holding no data, goes). A rollback never
/// deletes data: from redis-persistent back to a release with a plain redis it is refused
/// and the persistent one keeps running.
#[test]
fn a_rollback_over_a_type_change_runs_the_old_type_unless_that_would_lose_data() {
    let server = Server::start();
    let app = with_redis(&server);
    push_memcached(&server, &app);
    server.admin_ok("rollback demo main");
    let services = server.admin_ok("services demo main");
    assert!(services.contains("cache\tredis:7.0\t"), "{services}");
    let answer = ask(&server, "cache.internal", 6379, "PING");
    assert!(answer.contains("PONG"), "{answer}");
    let (ok, out) = push_files(&server, &app, &persistent_redis(), "persistent", &[]);
    assert!(ok, "{out}");
    let o = server.admin("rollback demo main");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("would delete its data"), "{}", text(&o));
    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("cache\tredis-persistent:7.0\t"),
        "{services}"
    );
}

/// Spec 9: "service data ... survive[s] deploys, ..., restarts". Changing `cache` from
/// redis:7.0 to redis-persistent:7.0 (the diff says `type changed`) runs it as
/// redis-persistent, which keeps what it is given across a restart of the service.
#[test]
fn a_redis_made_persistent_runs_as_redis_persistent() {
    let server = Server::start();
    let app = with_redis(&server);
    let (ok, out) = push_files(&server, &app, &persistent_redis(), "persistent", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("service cache type changed (redis -> redis-persistent)"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("cache\tredis-persistent:7.0"),
        "{services}"
    );
    let answer = ask(&server, "cache.internal", 6379, "CONFIG GET appendonly");
    assert!(answer.contains("yes"), "not persistent: {answer}");
}

/// Spec 9: "A change that would lose data ... is refused unless pushed with
/// `-o allow-data-loss`": redis-persistent made a plain redis, and a postgresql replaced by
/// redis, are refused with the running service untouched.
#[test]
fn a_type_change_that_would_lose_data_is_refused_without_allow_data_loss() {
    let server = Server::start();
    let first = persistent_redis();
    let app = project(&server, &first);
    server.push_ok(&app, "demo");
    let (ok, out) = push_files(
        &server,
        &app,
        &files(Some(("redis:7.0", "redis"))),
        "plain redis",
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "changing service `cache` from redis-persistent to redis would delete its data"
        ),
        "{out}"
    );
    let mut db_as_redis = first.clone();
    db_as_redis[0].1 = db_as_redis[0].1.replace("db:postgresql", "db:redis");
    db_as_redis[1].1 = db_as_redis[1].1.replace("postgresql:15", "redis:7.0");
    let (ok, out) = push_files(&server, &app, &db_as_redis, "db as redis", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("changing service `db` from postgresql to redis would delete its data"),
        "{out}"
    );
    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("cache\tredis-persistent:7.0"),
        "{services}"
    );
    assert!(services.contains("db\tpostgresql:15"), "{services}");
}

/// Spec 9: "`services PROJECT ENV`: each service, its type, state, disk used and size."
/// A network-storage service (a 512 MB volume the push makes) is listed with its volume.
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
        services.contains("files\tnetwork-storage:2.0\tready\t"),
        "{services}"
    );
    assert!(services.contains("of 512 MiB"), "{services}");
    let json = server.admin_ok("services demo main --json");
    let rows: serde_json::Value = serde_json::from_str(&json).expect(&json);
    assert_eq!(rows[0]["name"], "files", "{json}");
    assert_eq!(rows[0]["disk_size_mb"], 512, "{json}");
}

/// Invariant 1 across a crash: the server is killed (`kill -9`) while a push that changes
/// `cache` from redis to memcached runs its deploy hook, after the redis was stopped for
/// the memcached. At the next start the live release's redis is back at
/// `cache.internal:6379` and listed as it was, the memcached gone; the change pushed again
/// then goes live.
#[test]
fn a_server_killed_while_a_push_replaces_a_service_brings_the_old_one_back() {
    let mut server = Server::start();
    let app = with_redis(&server);
    let mut next = files(Some(("memcached:1.6", "memcached")));
    next[0].1.push_str("hooks:\n  deploy: sleep 600\n");
    for (p, c) in &next {
        app.write(p, c);
    }
    app.commit("memcached, and a deploy hook that waits");
    let mut pushing = server
        .push_command(&app, "demo", "main", &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("push");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !server.server_log().contains("sleep 600") {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy hook did not start:\n{}",
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.kill9();
    let _ = pushing.kill();
    let _ = pushing.wait();

    server.serve();
    // Services come back in the background of a start, before the apps.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let services = server.admin_ok("services demo main");
        if services.contains("cache\tredis:7.0\trunning") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{services}\n{}",
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let answer = ask(&server, "cache.internal", 6379, "PING");
    assert!(answer.contains("PONG"), "redis is not back: {answer}");
    let answer = ask(&server, "cache.internal", 11211, "version");
    assert!(
        !answer.contains("VERSION"),
        "memcached still answers: {answer}"
    );

    let out = push_memcached(&server, &app);
    assert!(
        out.contains("service cache replaced: redis:7.0 -> memcached:1.6"),
        "{out}"
    );
    let answer = ask(&server, "cache.internal", 11211, "version");
    assert!(answer.contains("VERSION"), "{answer}");
}
