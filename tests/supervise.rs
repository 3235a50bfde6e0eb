//! Containers that exit while serving come back by themselves (issues 13, 14, 17): an app
//! whose process is killed answers again with a restart line in its log and the restart
//! counted; an app that exits at every start is started again ever more slowly while
//! other environments go on; PostgreSQL killed comes back with its rows; a deploy racing
//! a crash ends with one container per app; `slipway down` (stopping the running server
//! first) then `serve` counts nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{free_port, metric_sample, run, scrape_metrics, slipway_bin, text, App, Server};

/// `kill -9 PID` from the host, then wait until the process has ended (gone, or a zombie
/// waiting for its parent): a container's init ends only after every process of its
/// namespace did, so nothing of the killed container answers a request after this (a
/// `wait_200` right after the kill could otherwise be answered by the dying app).
fn kill9(pid: i32) {
    let o = run(Command::new("kill").args(["-9", &pid.to_string()]));
    assert!(o.status.success(), "kill -9 {pid}: {}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.chars().next()))
            .flatten();
        if matches!(state, None | Some('Z') | Some('X')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pid} still runs 20 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `host` answers `/` with 200, at most `within`; returns how long it took.
fn wait_200(server: &Server, host: &str, within: Duration) -> Duration {
    let start = Instant::now();
    server.wait_for_page(host, "/", within);
    start.elapsed()
}

/// The children of `pid` that are zombies (exited, never waited for).
fn zombie_children(pid: u32) -> Vec<String> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            zombies.push(head.to_string());
        }
    }
    zombies
}

#[test]
fn an_app_killed_from_the_host_comes_back_with_a_log_line_and_counted() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let mut server = Server::start_with(&[("SLIPWAY_METRICS_LISTEN", &listen)]);
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    assert_eq!(server.get(host, "/"), Some((200, "built-1\n".into())));
    let container = "demo.main.hello.r1";

    let pid = server.container_pid(container);
    kill9(pid);
    // Down (502/503) or back: never 404.
    let took = wait_200(&server, host, Duration::from_secs(30));
    eprintln!("answered again {took:?} after kill -9");
    assert_ne!(server.container_pid(container), pid, "a new process");
    assert_eq!(server.get(host, "/"), Some((200, "built-1\n".into())));

    let logs = server.admin_ok("logs demo main");
    assert!(
        logs.contains("app hello restarted after it exited with signal 9 (SIGKILL)"),
        "{logs}"
    );
    let m = scrape_metrics(metrics_port);
    assert_eq!(
        metric_sample(
            &m,
            "slipway_container_restarts_total{environment=\"demo/main\",kind=\"app\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let envs = server.admin_ok("envs demo");
    assert!(
        envs.contains("restarted: hello (1 restart; last exit signal 9 (SIGKILL))"),
        "{envs}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&server.admin_ok("envs demo --json")).expect("envs --json");
    let hello = &json[0]["containers"]["hello"];
    assert_eq!(hello["condition"], "running", "{json}");
    assert_eq!(hello["restarts"], 1, "{json}");
    assert_eq!(hello["last_exit"], "signal 9 (SIGKILL)", "{json}");
    // The server is the parent of the containers it starts: the killed one was waited for.
    let serve = server.pid().expect("serving");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.container_pid(container)))
        .expect("stat");
    let ppid = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().nth(1));
    assert_eq!(ppid, Some(serve.to_string().as_str()), "{stat}");
    assert_eq!(zombie_children(serve), Vec::<String>::new());

    // Killed again at once: still comes back (1 s, then 2 s of backoff).
    kill9(server.container_pid(container));
    wait_200(&server, host, Duration::from_secs(30));
    let m = scrape_metrics(metrics_port);
    assert_eq!(
        metric_sample(
            &m,
            "slipway_container_restarts_total{environment=\"demo/main\",kind=\"app\"}"
        ),
        Some(2.0),
        "{m}"
    );

    // Stopped on purpose and started by the next serve: no restart counted, none logged.
    // `down` while the server runs stops it first (its supervisor would start again what
    // `down` stops), then every container.
    let serve = server.pid().expect("serving");
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    assert!(
        text(&o).contains(&format!("stopping slipway serve (pid {serve})")),
        "{}",
        text(&o)
    );
    assert!(!server.running(), "down stopped the server");
    server.stop();
    server.serve();
    wait_200(&server, host, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape_metrics(metrics_port);
    assert!(!m.contains("slipway_container_restarts_total{"), "{m}");
    // The restarts are kept in the state: the new server still says them, and counted
    // none more.
    let envs = server.admin_ok("envs demo");
    assert!(
        envs.contains("restarted: hello (2 restarts; last exit signal 9 (SIGKILL))"),
        "{envs}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&server.admin_ok("envs demo --json")).expect("envs --json");
    assert_eq!(json[0]["containers"]["hello"]["restarts"], 2, "{json}");
    let page = console_page(&server, "/p/demo/e/main");
    assert!(
        page.contains("<h2>Restarts</h2>")
            && page.contains("<code>hello</code>")
            && page.contains("<td>2</td><td>signal 9 (SIGKILL)</td>"),
        "{page}"
    );
    // A new release of the app starts counting anew.
    app.write("VERSION", "2\n");
    app.commit("v2");
    server.push_ok(&app, "demo");
    assert_eq!(server.get(host, "/"), Some((200, "built-2\n".into())));
    let envs = server.admin_ok("envs demo");
    assert!(!envs.contains("restart"), "{envs}");
}

/// The console page at `path` as the server's admin (logged in through a fresh link).
fn console_page(server: &Server, path: &str) -> String {
    let set_cookie = server.console_log_in(&server.key);
    let cookie = set_cookie.split(';').next().expect("a session cookie");
    let (status, head, body) = server.console("GET", path, Some(cookie), None);
    assert_eq!(status, 200, "{head}");
    body
}

/// An app that exits with code 3 at every start once `/crash` was asked (a file on its
/// mount says so), and on `/crash` itself.
const CRASHING_SERVER: &str = slipway_e2e::py_app!(
    r#"if os.path.exists("data/crash"):
    print("crashing at start on purpose", flush=True)
    sys.exit(3)
"#,
    r#"        if self.path == "/crash":
            open("data/crash", "w").close()
            os._exit(3)
        body = b"up\n"
"#
);

#[test]
fn an_app_that_exits_at_every_start_is_restarted_ever_more_slowly() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let mut server = Server::start_with(&[("SLIPWAY_METRICS_LISTEN", &listen)]);
    let crashing = server.project(
        "crashing",
        &[
            (
                ".platform.app.yaml",
                "name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nweb:\n  commands:\n    start: python3 server.py\n",
            ),
            ("server.py", CRASHING_SERVER),
        ],
    );
    server.push_ok(&crashing, "loop");
    let calm = App::demo(server.dir.path(), "calm");
    server.push_ok(&calm, "calm");
    let (host, other) = ("main.loop.localhost", "main.calm.localhost");
    assert_eq!(server.get(host, "/"), Some((200, "up\n".into())));

    // The request that crashes it gets no answer from the app.
    assert_ne!(server.get(host, "/crash").map(|a| a.0), Some(200));
    let series = "slipway_container_restarts_total{environment=\"loop/main\",kind=\"app\"}";
    let start = Instant::now();
    let mut restarting_seen = false;
    while start.elapsed() < Duration::from_secs(25) {
        // The other environment and the server go on as if nothing happened.
        assert_eq!(
            server.get(other, "/"),
            Some((200, "built-1\n".into())),
            "{}",
            server.server_log()
        );
        assert_ne!(server.get(host, "/").map(|a| a.0), Some(200));
        assert!(server.running(), "{}", server.server_log());
        if !restarting_seen {
            restarting_seen = server.admin_ok("envs loop").contains("restarting: hello");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(restarting_seen, "envs never said restarting");
    // Restarted after 1, 2, 4, 8 s (plus each start): about 4 times in 25 s, never once a
    // second.
    let restarts = metric_sample(&scrape_metrics(metrics_port), series).unwrap_or(0.0);
    assert!(
        (2.0..=6.0).contains(&restarts),
        "{restarts} restarts in 25 s:\n{}",
        server.server_log()
    );
    let logs = server.admin_ok("logs loop main");
    assert!(logs.contains("crashing at start on purpose"), "{logs}");
    assert!(
        logs.contains("app hello restarted after it exited with code 3"),
        "{logs}"
    );
    let envs = server.admin_ok("envs loop");
    assert!(envs.contains("last exit code 3"), "{envs}");
    let _ = &mut server;
}

/// The app containers of `demo/main` (ids `demo.main.hello.rN`) with their status.
fn app_containers(server: &Server) -> Vec<(String, String)> {
    server
        .containers()
        .into_iter()
        .filter(|(id, _)| id.starts_with("demo.main.hello.r"))
        .collect()
}

#[test]
fn a_deploy_racing_a_crash_ends_with_one_container_and_no_restart_of_the_retired_one() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    assert_eq!(server.get(host, "/"), Some((200, "built-1\n".into())));
    app.write("VERSION", "2\n");
    app.commit("v2");

    // While the deploy of release 2 holds the environment (its container started, not yet
    // live), release 1's process is killed.
    let killed = std::thread::scope(|s| {
        let push = s.spawn(|| server.push_ok(&app, "demo"));
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut killed = false;
        while !push.is_finished() && Instant::now() < deadline {
            if app_containers(&server)
                .iter()
                .any(|(id, _)| id == "demo.main.hello.r2")
            {
                kill9(server.container_pid("demo.main.hello.r1"));
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        push.join().expect("push");
        killed
    });
    assert!(
        killed,
        "release 2's container never showed up during its deploy"
    );
    assert_eq!(server.get(host, "/"), Some((200, "built-2\n".into())));
    // Longer than the first backoffs: release 1, retired, is never started again.
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        let c = app_containers(&server);
        assert!(
            c.iter().all(|(id, _)| id == "demo.main.hello.r2"),
            "{c:?}\n{}",
            server.server_log()
        );
    }
    assert_eq!(
        app_containers(&server),
        vec![("demo.main.hello.r2".to_string(), "running".to_string())]
    );
    let logs = server.admin_ok("logs demo main");
    assert!(!logs.contains("restarted after"), "{logs}");
    // Release 1's killed process and its retired container were waited for.
    let serve = server.pid().expect("serving");
    assert_eq!(zombie_children(serve), Vec::<String>::new());
    assert_eq!(server.get(host, "/"), Some((200, "built-2\n".into())));
}

/// An app whose `/dburl` says how to reach PostgreSQL and whose `/incr` and `/get`
/// count in Redis.
const SERVICES_APP: &str = slipway_e2e::py_app!(
    concat!(slipway_e2e::py_redis!(), slipway_e2e::py_dburl!()),
    r#"        if self.path == "/incr":
            body = redis("INCR", "hits")
        elif self.path == "/get":
            body = redis("GET", "hits")
        elif self.path == "/dburl":
            body = dburl()
        else:
            body = "up"
        body = body.encode()
"#
);

/// `psql -tA URL -c SQL` in the PostgreSQL container; None when it fails (not up yet).
fn psql(server: &Server, url: &str, sql: &str) -> Option<String> {
    let o = run(server.runc().args([
        "exec",
        "demo.main.db.service",
        "/usr/lib/postgresql/15/bin/psql",
        "-tA",
        url,
        "-c",
        sql,
    ]));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn postgresql_and_redis_killed_come_back_with_their_data() {
    // python:3.11, redis:7.0 and postgresql:15 are test stacks (the shared folder).
    let mut server = Server::start();
    let app = server.project(
        "app",
        &[
            (
                ".platform.app.yaml",
                "name: hello\ntype: python:3.11\nrelationships:\n  cache: 'cache:redis'\n  database: 'db:postgresql'\nweb:\n  commands:\n    start: python3 server.py\n",
            ),
            (
                ".platform/services.yaml",
                "cache:\n  type: redis-persistent:7.0\ndb:\n  type: postgresql:15\n",
            ),
            ("server.py", SERVICES_APP),
        ],
    );
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    let (_, url) = server.get(host, "/dburl").expect("dburl");
    assert_eq!(
        psql(
            &server,
            &url,
            "CREATE TABLE rows (n int); INSERT INTO rows SELECT generate_series(1, 1000)"
        )
        .as_deref(),
        Some("CREATE TABLE\nINSERT 0 1000")
    );
    for n in 1..=3 {
        assert_eq!(server.get(host, "/incr"), Some((200, n.to_string())));
    }
    // Redis writes its append-only file every second.
    std::thread::sleep(Duration::from_secs(2));

    kill9(server.container_pid("demo.main.db.service"));
    kill9(server.container_pid("demo.main.cache.service"));
    // Not `running` before it accepts connections: `starting` while PostgreSQL replays
    // its WAL, and once `running` a client gets in at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let json: serde_json::Value =
            serde_json::from_str(&server.admin_ok("services demo main --json")).expect("json");
        let db = json
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "db"))
            .expect("db listed")
            .clone();
        let st = db["state"].as_str().unwrap_or_default().to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st == "running" && db["restarts"] == 1 {
            // PostgreSQL replays its WAL on the same volume: every row is there.
            assert_eq!(
                psql(&server, &url, "SELECT count(*), sum(n) FROM rows").as_deref(),
                Some("1000|500500"),
                "said running before it answered (states seen: {seen:?})"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL not back within 90 s (states seen: {seen:?}):\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.iter().any(|s| s == "starting"), "{seen:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get(host, "/get").map(|a| a.1) != Some("3".into()) {
        assert!(
            Instant::now() < deadline,
            "Redis not back with its count: {:?}\n{}",
            server.get(host, "/get"),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(server.get(host, "/incr"), Some((200, "4".into())));

    let services = server.admin_ok("services demo main");
    assert!(
        services.contains("db\tpostgresql:15\trunning\t")
            && services
                .contains("restarted 1 time(s), last after it exited with signal 9 (SIGKILL)"),
        "{services}"
    );
    let log = std::fs::read_to_string(server.data.join("logs/demo/main/services/db.log"))
        .expect("db log");
    assert!(
        log.contains("service db restarted after it exited with signal 9 (SIGKILL)"),
        "{log}"
    );
    let json = server.admin_ok("services demo main --json");
    assert!(json.contains("\"restarts\": 1"), "{json}");
    assert!(json.contains("\"stack\": \"postgresql:15\""), "{json}");

    // A record of an older Slipway, which kept no stack, whose service asked for a version
    // that resolves to another major now (postgresql:12 -> 13; its data was made by 15):
    // the next start records the stack its data says (PG_VERSION), starts it on 15, and
    // its restarts are still counted.
    assert_eq!(server.stop(), Some(0), "{}", server.server_log());
    // Down while no server runs: the next one starts it (not adopts it).
    kill9(server.container_pid("demo.main.db.service"));
    let o = run(Command::new("sqlite3").arg(server.data.join("state.db")).arg(
        "UPDATE services SET version = '12', stack = NULL, stack_fingerprint = NULL WHERE name = 'db'",
    ));
    assert!(o.status.success(), "{}", text(&o));
    server.serve();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (json, db) = loop {
        let json: serde_json::Value =
            serde_json::from_str(&server.admin_ok("services demo main --json")).expect("json");
        let db = json
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == "db"))
            .expect("db listed")
            .clone();
        if db["state"] == "running" {
            break (json, db);
        }
        assert!(Instant::now() < deadline, "{json}\n{}", server.server_log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(db["stack"], "postgresql:15", "{json}");
    assert_eq!(db["restarts"], 1, "{json}");
    assert_eq!(
        psql(&server, &url, "SELECT count(*), sum(n) FROM rows").as_deref(),
        Some("1000|500500"),
        "{}\n{}",
        server.server_log(),
        std::fs::read_to_string(server.data.join("logs/demo/main/services/db.log"))
            .unwrap_or_default()
    );
    assert!(
        server
            .server_log()
            .contains("recorded postgresql:15 (from its data)"),
        "{}",
        server.server_log()
    );
    // A backup (dumps through `runc exec`, archive writes) leaves no zombie below the
    // server, a child subreaper.
    server.admin_ok("backup create demo main");
    let serve = server.pid().expect("serving");
    // A short-lived `runc` below the server is seen as a zombie now and then, until it is
    // waited for: only one seen in each of three looks a second apart is left behind.
    let mut left = zombie_children(serve);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        let now = zombie_children(serve);
        left.retain(|z| now.contains(z));
    }
    assert_eq!(left, Vec::<String>::new());
}

#[test]
fn reap_run_ends_and_waits_for_what_its_program_left_behind() {
    // `serve` runs host helpers that may daemonize (a stack build's gpg-agent) in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("daemon.pid");
    let o = run(Command::new(slipway_bin()).args([
        "reap-run".as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        std::ffi::OsStr::new(&format!(
            "setsid sleep 300 & echo $! > '{}'; exit 3",
            pidfile.display()
        )),
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let pid = pid.trim();
    assert!(!pid.is_empty());
    // Ended and waited for: no process, not even a zombie, is left.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "{}",
        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
    );
    // The program's own exit code comes through, also for a plain run.
    let o = run(Command::new(slipway_bin()).args(["reap-run", "--", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A stdlib HTTP/1.1 server on the unix socket `$SOCKET`.
const UNIX_SERVER: &str = slipway_e2e::py_socket_app!("", "        body = b\"unix-up\\n\"\n");

#[test]
fn a_php_app_and_an_app_on_a_unix_socket_come_back_after_kill() {
    let server = Server::start();
    let php = server.project(
        "php",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: php:8.4\nweb:\n  locations:\n    '/':\n      root: web\n      passthru: /index.php\n",
            ),
            ("web/index.php", "<?php echo 'php-up:' . getmypid();\n"),
        ],
    );
    server.push_ok(&php, "php");
    let unix = server.project(
        "unix",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: python:3.11\nweb:\n  upstream:\n    socket_family: unix\n  commands:\n    start: python3 server.py\n",
            ),
            ("server.py", UNIX_SERVER),
        ],
    );
    server.push_ok(&unix, "unix");
    let cases = [
        ("main.php.localhost", "php.main.app.r1", "php-up:"),
        ("main.unix.localhost", "unix.main.app.r1", "unix-up\n"),
    ];
    for (host, container, body) in cases {
        let (status, before) = server.get(host, "/").expect("an answer");
        assert_eq!(status, 200, "{before}");
        assert!(before.starts_with(body), "{before}");
        let pid = server.container_pid(container);
        kill9(pid);
        wait_200(&server, host, Duration::from_secs(30));
        assert_ne!(
            server.container_pid(container),
            pid,
            "a new container process"
        );
        // Routed to the new process each time: nothing kept a connection to the dead one.
        for _ in 0..5 {
            let (status, after) = server.get(host, "/").expect("an answer");
            assert_eq!(status, 200, "{after}\n{}", server.server_log());
            assert!(after.starts_with(body), "{after}");
        }
        let project = host.split('.').nth(1).expect("project");
        let logs = server.admin_ok(&format!("logs {project} main"));
        assert!(
            logs.contains("app app restarted after it exited with signal 9 (SIGKILL)"),
            "{logs}"
        );
    }
}

#[test]
fn an_app_killed_for_its_memory_limit_comes_back_and_its_log_says_out_of_memory() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        "server.py",
        slipway_e2e::py_app!(
            "",
            "        if self.path == \"/hog\":\n            hog = bytearray(b\"x\") * (1536 * 1024 * 1024)\n        body = b\"up\\n\"\n"
        ),
    );
    app.commit("a memory hog on /hog");
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    assert_eq!(server.get(host, "/"), Some((200, "up\n".into())));
    // Over the default 1 GiB: the kernel kills it, the request gets no answer from it.
    assert_ne!(server.get(host, "/hog").map(|a| a.0), Some(200));
    wait_200(&server, host, Duration::from_secs(30));
    let logs = server.admin_ok("logs demo main");
    assert!(
        logs.contains("app hello restarted after it exited with code 137 (SIGKILL), out of memory"),
        "{logs}"
    );
}

#[test]
fn after_serve_upgrade_only_the_new_server_restarts_a_crashed_app_and_only_once() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let host = "main.demo.localhost";
    assert_eq!(
        server.upgrade(Duration::from_secs(60), |_| {}),
        Some(0),
        "{}",
        server.server_log()
    );
    assert_eq!(server.get(host, "/"), Some((200, "built-1\n".into())));
    kill9(server.container_pid("demo.main.hello.r1"));
    wait_200(&server, host, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        app_containers(&server),
        vec![("demo.main.hello.r1".to_string(), "running".to_string())]
    );
    let logs = server.admin_ok("logs demo main");
    // Started by the old server: the new one is not its parent and cannot know how it
    // ended, and says so.
    assert_eq!(
        logs.matches("app hello restarted after it exited with an unknown status")
            .count(),
        1,
        "{logs}"
    );
}
