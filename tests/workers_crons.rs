//! Workers and crons (issue 17, spec section 10), end to end with real git, OpenSSH and runc:
//! a worker consumes work, comes back after it is killed, is reachable by `logs` and by its
//! shell login, retires with its release, and a worker that exits at start fails the deploy
//! while the live release keeps running; crons run on schedule as activities with their
//! output, never overlap, pause during a deploy, and run on demand with `cron run`.

use std::time::{Duration, Instant};

use slipway_e2e::{new_key, text, App, Server};

const HOST: &str = "main.demo.localhost";

/// A user `name` with `role` on demo; returns their key.
fn user_with_role(server: &Server, name: &str, role: &str) -> std::path::PathBuf {
    let key = new_key(server.dir.path(), name);
    let pubkey = std::fs::read(key.with_extension("pub")).expect("pub key");
    let o = server.ssh_with_input(&server.key, "git", &format!("user add {name}"), &pubkey);
    assert!(o.status.success(), "user add {name}: {}", text(&o));
    server.admin_stdout(&format!("access grant demo {name} {role}"));
    key
}

fn push(server: &Server, app: &App) -> std::process::Output {
    server.git(&app.dir, &["push", &server.remote("demo"), "main"])
}

/// Wait until `f` holds, at most `secs`; panics with `what` otherwise.
fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out waiting for {what}");
}

/// A worker that takes jobs dropped into /tmp/inbox (its own /tmp) and says so; at start it
/// writes into the app's `data` mount, which it shares with the app.
const WORKER: &str = r#"import os, time
os.makedirs("/tmp/inbox", exist_ok=True)
open("/app/data/from-worker.txt", "w").write("written by the worker")
open("/tmp/worker.pid", "w").write(str(os.getpid()))
print("worker up pid", os.getpid(), "port", os.environ.get("PORT", "none"), "app", os.environ.get("PLATFORM_APPLICATION_NAME", "?"), "queue", os.environ.get("QUEUE_NAME", "?"), "mode", os.environ.get("MODE", "?"), "sourced", os.environ.get("FROM_ENVIRONMENT", "no"), flush=True)
while True:
    for name in sorted(os.listdir("/tmp/inbox")):
        os.remove(os.path.join("/tmp/inbox", name))
        print("processed", name, flush=True)
    time.sleep(0.2)
"#;

fn worker_config(start: &str) -> String {
    format!(
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\nvariables:\n  env:\n    MODE: app-mode\n    QUEUE_NAME: app-queue\nmounts:\n  data: {{source: local, source_path: data}}\nworkers:\n  queue:\n    size: S\n    variables:\n      env:\n        QUEUE_NAME: jobs\n    commands:\n      start: {start}\n"
    )
}

#[test]
fn a_worker_consumes_work_survives_its_crash_and_retires_with_its_release() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", &worker_config("python3 worker.py"));
    app.write("worker.py", WORKER);
    // `.environment` is sourced before the worker starts, as before the app's start.
    app.write(".environment", "export FROM_ENVIRONMENT=sourced-$((1+1))\n");
    app.commit("with a worker");
    let o = push(&server, &app);
    assert!(o.status.success(), "push: {}", text(&o));
    assert!(text(&o).contains("provision worker queue"), "{}", text(&o));
    assert_eq!(
        server.get(HOST, "/").map(|(s, _)| s),
        Some(200),
        "the app answers"
    );

    // releases and envs show it.
    let releases = server.admin_stdout("releases demo main");
    assert!(releases.contains("workers: hello/queue"), "{releases}");
    assert!(server
        .admin_stdout("envs demo")
        .contains("workers: hello/queue"));

    // A worker without mounts of its own has the app's (spec section 10): the app reads
    // what the worker wrote.
    wait_for(20, "the worker's file in the app's mount", || {
        let o = server.ssh(&server.key, "main.demo", "cat /app/data/from-worker.txt");
        o.status.success() && text(&o).contains("written by the worker")
    });

    // Work dropped through its shell login is consumed; its output is in `logs ... queue`.
    let viewer = user_with_role(&server, "vera", "viewer");
    let o = server.ssh(&viewer, "queue.main.demo", "touch /tmp/inbox/job0");
    assert!(
        !o.status.success(),
        "a viewer got a shell in a worker: {}",
        text(&o)
    );
    let o = server.ssh(&server.key, "queue.main.demo", "touch /tmp/inbox/job1");
    assert!(o.status.success(), "shell into the worker: {}", text(&o));
    wait_for(20, "job1 processed", || {
        server
            .admin_stdout("logs demo main queue")
            .contains("processed job1")
    });
    let log = server.admin_stdout("logs demo main queue");
    assert!(
        log.contains("port none app hello queue jobs mode app-mode sourced sourced-2"),
        "no $PORT, the app's variables, its own over them: {log}"
    );

    // Killed, it comes back (after its backoff) and takes work again.
    let o = server.ssh(
        &server.key,
        "queue.main.demo",
        "kill -9 $(cat /tmp/worker.pid)",
    );
    assert!(o.status.success(), "kill: {}", text(&o));
    wait_for(20, "the worker restarted", || {
        let log = server.admin_stdout("logs demo main queue");
        log.contains("worker exited with status 137") && log.matches("worker up pid").count() >= 2
    });
    let o = server.ssh(&server.key, "queue.main.demo", "touch /tmp/inbox/job2");
    assert!(o.status.success(), "{}", text(&o));
    wait_for(20, "job2 processed", || {
        server
            .admin_stdout("logs demo main queue")
            .contains("processed job2")
    });

    // A new release: the old worker retires with its release, the new one runs.
    app.write("VERSION", "2\n");
    app.commit("v2");
    let o = push(&server, &app);
    assert!(o.status.success(), "push v2: {}", text(&o));
    wait_for(30, "the release 1 worker to retire", || {
        let c = server.containers();
        !c.iter().any(|(id, _)| id == "demo.main.hello.w-queue.r1")
            && c.iter()
                .any(|(id, st)| id == "demo.main.hello.w-queue.r2" && st == "running")
    });

    // A worker that exits at once fails the deploy; release 2 and its worker keep running.
    app.write(
        ".platform.app.yaml",
        &worker_config("'echo cannot start; exit 3'"),
    );
    app.commit("broken worker");
    let o = push(&server, &app);
    assert!(!o.status.success(), "a broken worker must fail the push");
    let out = text(&o);
    assert!(out.contains("worker queue exits at start"), "{out}");
    assert!(out.contains("cannot start"), "its output is shown: {out}");
    assert_eq!(
        server.get(HOST, "/").map(|(_, b)| b),
        Some("built-2\n".to_string())
    );
    let c = server.containers();
    assert!(
        c.iter()
            .any(|(id, st)| id == "demo.main.hello.w-queue.r2" && st == "running"),
        "{c:?}"
    );
    assert!(!c.iter().any(|(id, _)| id.ends_with(".r3")), "{c:?}");
    // A worker without a start command: refused at validate, by the push and by
    // `slipway config check` alike, with its position.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\nworkers:\n  queue:\n    size: S\ncrons:\n  never:\n    spec: '0 0 31 2 *'\n    cmd: echo\n",
    );
    app.commit("worker without start");
    let o = push(&server, &app);
    assert!(!o.status.success());
    let check = slipway_e2e::config_check(&app.dir);
    assert!(!check.status.success());
    for out in [text(&o), text(&check)] {
        assert!(
            out.contains(".platform.app.yaml:7:3")
                && out.contains("worker `queue` has no start command"),
            "{out}"
        );
        assert!(
            out.contains(".platform.app.yaml:11:11") && out.contains("never fires"),
            "{out}"
        );
    }
    // Still reachable by its shell login after the failed pushes.
    let o = server.ssh(&server.key, "queue.main.demo", "cat /tmp/worker.pid");
    assert!(o.status.success(), "{}", text(&o));
}

fn activities(server: &Server) -> Vec<serde_json::Value> {
    let out = server.admin_stdout("activity demo main --json");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("activity json")
}

fn cron_runs<'a>(all: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    let prefix = format!("cron {name}:");
    let mut runs: Vec<&serde_json::Value> = all
        .iter()
        .filter(|a| a["kind"] == "cron" && a["summary"].as_str().unwrap_or("").starts_with(&prefix))
        .collect();
    runs.sort_by_key(|a| a["id"].as_i64());
    runs
}

#[test]
fn crons_run_as_activities_never_overlap_pause_during_deploys_and_run_on_demand() {
    // One schedule minute lasts 2 seconds.
    let server = Server::start_with(&[("SLIPWAY_CRON_TICK", "2")]);
    let app = App::demo(server.dir.path(), "app");
    let config = |hook: &str| {
        format!(
            "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n  deploy: {hook}\nweb:\n  commands:\n    start: python3 server.py\ntimezone: Europe/Paris\ncrons:\n  slow:\n    spec: '* * * * *'\n    commands:\n      start: 'echo \"slow start $(date +%s)\"; sleep 5; echo slow done'\n  fast:\n    spec: '* * * * *'\n    cmd: 'echo fast from $PLATFORM_APPLICATION_NAME $FROM_ENVIRONMENT'\n  yearly:\n    spec: '@yearly'\n    commands:\n      start: 'echo manual run; exit 3'\n  bounded:\n    spec: '0 0 1 1 *'\n    timeout: 2\n    shutdown_timeout: 2\n    commands:\n      start: 'trap \"echo got TERM\" TERM; echo bounded start; sleep 60 & wait; echo still here; sleep 60 & wait; echo never'\n      stop: 'echo stop command ran'\n"
        )
    };
    app.write(".platform.app.yaml", &config("'true'"));
    // `.environment` is sourced before each cron run, as before the app's start.
    app.write(".environment", "export FROM_ENVIRONMENT=sourced-$((1+1))\n");
    app.commit("with crons");
    let o = push(&server, &app);
    assert!(o.status.success(), "push: {}", text(&o));

    wait_for(40, "three finished slow runs", || {
        let all = activities(&server);
        cron_runs(&all, "slow")
            .iter()
            .filter(|a| a["status"] == "success")
            .count()
            >= 3
    });
    let all = activities(&server);
    let slow = cron_runs(&all, "slow");
    // Never two at once: each run started after the one before finished.
    for pair in slow.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let end = a["finished_at"].as_i64().expect("finished");
        assert!(
            b["started_at"].as_i64().unwrap() >= end,
            "runs overlap: {a} {b}"
        );
    }
    // Runs due meanwhile were skipped, and the running run's log says so.
    let first = slow[0]["id"].as_i64().unwrap();
    let log = server.admin_stdout(&format!("activity log {first}"));
    assert!(log.contains("slow start"), "{log}");
    assert!(log.contains("slow done"), "{log}");
    assert!(log.contains("exit status 0"), "{log}");
    assert!(log.contains("was skipped"), "{log}");
    let fast = cron_runs(&all, "fast");
    assert!(fast.len() >= 3, "fast runs every 2s: {fast:?}");
    let fast_log =
        server.admin_stdout(&format!("activity log {}", fast[0]["id"].as_i64().unwrap()));
    assert!(fast_log.contains("fast from hello sourced-2"), "{fast_log}");

    // cron ls shows each with its schedule, next run and last status (a last run may be
    // one still going: `slow` runs 5 s of every 6, `fast` for a moment every 2 s, so wait
    // for a moment where one of them shows its finished run).
    let mut ls = String::new();
    wait_for(30, "cron ls showing a finished last run", || {
        ls = server.admin_stdout("cron ls demo main");
        ls.contains("success")
    });
    assert!(ls.contains("slow\thello\t* * * * *\t"), "{ls}");
    assert!(ls.contains("fast\thello\t* * * * *\t"), "{ls}");
    assert!(ls.contains("success"), "{ls}");
    assert!(ls.contains("yearly\thello\t@yearly\t"), "{ls}");
    assert!(
        ls.contains("-01-01 00:00 Europe/Paris"),
        "in the app's time zone: {ls}"
    );

    // cron run streams the output; a failed run exits 1 naming its status; an activity too.
    let o = server.admin("cron run demo main yearly");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("slipway: cron yearly failed with exit status 3 (activity "),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("manual run"), "{}", text(&o));
    let all = activities(&server);
    let yearly = cron_runs(&all, "yearly");
    assert_eq!(yearly.len(), 1, "{yearly:?}");
    assert_eq!(yearly[0]["status"], "failure");
    assert_eq!(yearly[0]["user"], "me");
    // Past its timeout: commands.stop, then SIGTERM (which it survives), then SIGKILL.
    let t = Instant::now();
    let o = server.admin("cron run demo main bounded");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("cron bounded failed with exit status 137"),
        "{out}"
    );
    for line in [
        "bounded start",
        "stop command ran",
        "got TERM",
        "still here",
        "stopped after its timeout of 2s",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.lines().any(|l| l.trim() == "never"), "{out}");
    // One SIGTERM: a second one would end the run's second wait.
    assert_eq!(
        out.lines().filter(|l| l.trim() == "got TERM").count(),
        1,
        "{out}"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(30),
        "{took:?}"
    );
    // Viewers list crons but cannot run them; contributors cannot run them on production.
    let viewer = user_with_role(&server, "vera", "viewer");
    let contributor = user_with_role(&server, "carl", "contributor");
    let o = server.ssh(&viewer, "git", "cron ls demo main");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("yearly"), "{}", text(&o));
    let o = server.ssh(&viewer, "git", "cron run demo main yearly");
    assert!(!o.status.success(), "a viewer ran a cron: {}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));
    let o = server.ssh(&contributor, "git", "cron run demo main yearly");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("main is protected"), "{}", text(&o));
    assert_eq!(
        cron_runs(&activities(&server), "yearly").len(),
        1,
        "refused runs leave no activity"
    );
    assert!(server
        .admin("cron run demo main nosuch")
        .status
        .code()
        .is_some_and(|c| c != 0));

    // Paused during a deploy: no run of `fast` starts while the deploy (a 10 s hook) runs.
    app.write(".platform.app.yaml", &config("'sleep 10'"));
    app.commit("slow deploy hook");
    let o = push(&server, &app);
    assert!(o.status.success(), "push: {}", text(&o));
    let all = activities(&server);
    let deploy = all
        .iter()
        .filter(|a| a["kind"] != "cron")
        .max_by_key(|a| a["id"].as_i64())
        .expect("the push's activity");
    let (from, to) = (
        deploy["started_at"].as_i64().unwrap(),
        deploy["finished_at"].as_i64().unwrap(),
    );
    assert!(to - from >= 10, "{deploy}");
    let during: Vec<_> = cron_runs(&all, "fast")
        .into_iter()
        .filter(|a| {
            let s = a["started_at"].as_i64().unwrap();
            s > from + 1 && s < to - 1
        })
        .collect();
    assert!(
        during.is_empty(),
        "crons ran during the deploy: {during:?} ({deploy})"
    );
    // And they go on after it.
    let before = cron_runs(&all, "fast").len();
    wait_for(20, "fast runs after the deploy", || {
        cron_runs(&activities(&server), "fast").len() >= before + 2
    });
}

#[test]
fn a_restarted_server_adopts_running_workers_and_starts_stopped_ones() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", &worker_config("python3 worker.py"));
    app.write("worker.py", WORKER);
    app.commit("with a worker");
    let o = push(&server, &app);
    assert!(o.status.success(), "push: {}", text(&o));
    let pid = |server: &Server| {
        let o = server.ssh(&server.key, "queue.main.demo", "cat /tmp/worker.pid");
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let before = pid(&server);

    // Restarted: the same worker process goes on (adopted, not removed as an orphan).
    server.stop();
    server.serve();
    wait_for(30, "the environment back", || {
        server.get(HOST, "/").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(pid(&server), before, "the worker was adopted");

    // Its container gone while the server was down: started again at start.
    server.stop();
    let o =
        slipway_e2e::run(
            server
                .runc()
                .args(["delete", "--force", "demo.main.hello.w-queue.r1"]),
        );
    assert!(o.status.success(), "{}", text(&o));
    server.serve();
    wait_for(30, "the worker started again", || {
        server
            .containers()
            .iter()
            .any(|(id, st)| id == "demo.main.hello.w-queue.r1" && st == "running")
    });
    let o = server.ssh(
        &server.key,
        "queue.main.demo",
        "touch /tmp/inbox/after-restart",
    );
    assert!(o.status.success(), "{}", text(&o));
    wait_for(20, "work after the restart", || {
        server
            .admin_stdout("logs demo main queue")
            .contains("processed after-restart")
    });

    // `slipway down` stops it with everything else.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(server.containers().is_empty(), "{:?}", server.containers());
}
