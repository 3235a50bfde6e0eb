//! Containers that exit while serving come back by themselves (issues 13, 14, 17): an app
//! whose process is killed answers again with a restart line in its log and the restart
//! counted; an app that exits at every start is started again ever more slowly while
//! other environments go on; PostgreSQL killed comes back with its rows; a deploy racing
//! a crash ends with one container per app; `slipway down` then `serve` counts nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{free_port, run, text, App, Server};

/// The host pid of a container's first process (tini), from `runc state`.
fn container_pid(server: &Server, container: &str) -> i32 {
    let o = run(Command::new("runc")
        .arg("--root")
        .arg(server.data.join("runtime/state"))
        .args(["state", container]));
    assert!(o.status.success(), "runc state {container}: {}", text(&o));
    let state: serde_json::Value = serde_json::from_slice(&o.stdout).expect("runc state JSON");
    let pid = state["pid"].as_i64().expect("a pid") as i32;
    assert!(pid > 0, "{state}");
    pid
}

/// `kill -9 PID` from the host.
fn kill9(pid: i32) {
    let o = run(Command::new("kill").args(["-9", &pid.to_string()]));
    assert!(o.status.success(), "kill -9 {pid}: {}", text(&o));
}

/// The exposition scraped with curl.
fn scrape(port: u16) -> String {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/metrics")));
    assert!(o.status.success(), "scrape: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The value of the sample `series` (exactly as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Wait until `host` answers `/` with 200, at most `within`; returns how long it took.
fn wait_200(server: &Server, host: &str, within: Duration) -> Duration {
    let start = Instant::now();
    while server.get(host, "/").map(|a| a.0) != Some(200) {
        assert!(
            start.elapsed() < within,
            "{host} did not answer 200 within {within:?}:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

fn admin(server: &Server, command: &str) -> String {
    let o = server.ssh(&server.key, "git", command);
    let t = text(&o);
    assert!(o.status.success(), "{command}: {t}");
    t
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

    // `down` while a server runs would fight its restarts: refused, nothing stopped.
    let o = server.slipway(&["down"]);
    assert!(!o.status.success(), "down while serving: {}", text(&o));
    assert!(text(&o).contains("stop it first"), "{}", text(&o));
    assert_eq!(server.get(host, "/").map(|a| a.0), Some(200));

    let pid = container_pid(&server, container);
    kill9(pid);
    // Down (502/503) or back: never 404.
    let took = wait_200(&server, host, Duration::from_secs(30));
    eprintln!("answered again {took:?} after kill -9");
    assert_ne!(container_pid(&server, container), pid, "a new process");
    assert_eq!(server.get(host, "/"), Some((200, "built-1\n".into())));

    let logs = admin(&server, "logs demo main");
    assert!(
        logs.contains("app hello restarted after it exited with signal 9 (SIGKILL)"),
        "{logs}"
    );
    let m = scrape(metrics_port);
    assert_eq!(
        sample(
            &m,
            "slipway_container_restarts_total{environment=\"demo/main\",kind=\"app\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let envs = admin(&server, "envs demo");
    assert!(
        envs.contains("restarted: hello (1 restart; last exit signal 9 (SIGKILL))"),
        "{envs}"
    );

    // Killed again at once: still comes back (1 s, then 2 s of backoff).
    kill9(container_pid(&server, container));
    wait_200(&server, host, Duration::from_secs(30));
    let m = scrape(metrics_port);
    assert_eq!(
        sample(
            &m,
            "slipway_container_restarts_total{environment=\"demo/main\",kind=\"app\"}"
        ),
        Some(2.0),
        "{m}"
    );

    // Stopped on purpose and started by the next serve: no restart counted, none logged.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    server.serve();
    wait_200(&server, host, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let m = scrape(metrics_port);
    assert!(!m.contains("slipway_container_restarts_total{"), "{m}");
    let envs = admin(&server, "envs demo");
    assert!(!envs.contains("restart"), "{envs}");
}

/// An app that exits with code 3 at every start once `/crash` was asked (a file on its
/// mount says so), and on `/crash` itself.
const CRASHING_SERVER: &str = r#"import http.server, os, sys
if os.path.exists("data/crash"):
    print("crashing at start on purpose", flush=True)
    sys.exit(3)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/crash":
            open("data/crash", "w").close()
            os._exit(3)
        body = b"up\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

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
            restarting_seen = admin(&server, "envs loop").contains("restarting: hello");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(restarting_seen, "envs never said restarting");
    // Restarted after 1, 2, 4, 8 s (plus each start): about 4 times in 25 s, never once a
    // second.
    let restarts = sample(&scrape(metrics_port), series).unwrap_or(0.0);
    assert!(
        (2.0..=6.0).contains(&restarts),
        "{restarts} restarts in 25 s:\n{}",
        server.server_log()
    );
    let logs = admin(&server, "logs loop main");
    assert!(logs.contains("crashing at start on purpose"), "{logs}");
    assert!(
        logs.contains("app hello restarted after it exited with code 3"),
        "{logs}"
    );
    let envs = admin(&server, "envs loop");
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
                kill9(container_pid(&server, "demo.main.hello.r1"));
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
    let logs = admin(&server, "logs demo main");
    assert!(!logs.contains("restarted after"), "{logs}");
    assert_eq!(server.get(host, "/"), Some((200, "built-2\n".into())));
}
