//! The acceptance scenario of the end-to-end issue, driven exactly as a user
//! does: `slipway user add`, `slipway serve`, `git push` over OpenSSH, HTTP
//! requests through the router, `git clone`, stop and restart, `slipway down`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, Server};

const HOST: &str = "main.demo.localhost";

fn push(server: &Server, app: &App) -> (bool, String) {
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    (o.status.success(), text(&o))
}

/// Only the containers of the live release run; nothing of failed attempts is left.
fn assert_only_live_containers(server: &Server, release: u32) {
    // Retiring the previous release happens in the background after its requests drained.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cs = server.containers();
        let ok = cs.len() == 1
            && cs[0].0 == format!("demo.main.hello.r{release}")
            && cs[0].1 == "running";
        if ok {
            return;
        }
        if Instant::now() > deadline {
            panic!("expected only demo.main.hello.r{release} running, found {cs:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn push_builds_runs_serves_and_clones() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");

    let (ok, out) = push(&server, &app);
    assert!(ok, "first push failed:\n{out}\n{}", server.server_log());
    // Every phase shows, live, with its time, and the URL last.
    for phase in [
        "remote: -----> validate:",
        "remote: -----> diff:",
        "remote: -----> build hello: built sha256:",
        "remote: -----> provision hello:",
        "remote: -----> health check hello: HTTP 200",
        "remote: -----> switch routes: main.demo.localhost -> release 1",
        "remote: -----> retire:",
    ] {
        assert!(out.contains(phase), "push output lacks {phase:?}:\n{out}");
    }
    let url = format!(
        "remote: -----> live: http://main.demo.localhost:{}/",
        server.http_port
    );
    assert!(out.contains(&url), "push output lacks the URL:\n{out}");
    let phases: Vec<usize> = [
        "validate:",
        "diff:",
        "build hello",
        "provision hello",
        "health check",
        "switch routes",
        "live:",
    ]
    .iter()
    .map(|p| out.find(p).unwrap_or(usize::MAX))
    .collect();
    assert!(
        phases.windows(2).all(|w| w[0] < w[1]),
        "phases out of order:\n{out}"
    );
    assert!(out.contains("* [new branch]      main -> main"), "{out}");

    assert_eq!(server.page(HOST, "/"), "built-1\n");
    let head = app.git_ok(&["rev-parse", "HEAD"]);
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), head);

    // An unknown host gets a plain 404 naming no internals.
    let (status, b) = server
        .get("nope.demo.localhost", "/")
        .expect("router answers");
    assert_eq!(status, 404);
    assert!(!b.contains("10.") && !b.contains("netns"), "{b}");

    // Clone gets the deployed commit.
    let clone = server.dir.path().join("clone");
    let o = server.git(
        server.dir.path(),
        &[
            "clone",
            "-q",
            &server.remote("demo"),
            clone.to_str().unwrap_or("clone"),
        ],
    );
    assert!(o.status.success(), "clone: {}", text(&o));
    let cloned = slipway_e2e::run(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&clone),
    );
    assert_eq!(String::from_utf8_lossy(&cloned.stdout).trim(), head);

    // The same tree pushed again (a new commit, same app tree) reuses the slug: no build runs.
    app.git_ok(&[
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@e",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "empty",
    ]);
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert!(out.contains("build hello: reused sha256:"), "{out}");
    assert!(!out.contains("running hooks.build"), "{out}");
    assert_eq!(server.page(HOST, "/"), "built-1\n");

    // The activity log replays what the pusher saw.
    let o = server.ssh(&server.key, "git", "activity demo main");
    assert!(o.status.success(), "{}", text(&o));
    let first_id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .and_then(|l| l.split('\t').next().map(str::to_string))
        .unwrap_or_default();
    let o = server.ssh(&server.key, "git", &format!("activity log {first_id}"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("-----> health check hello: HTTP 200"),
        "{}",
        text(&o)
    );
}

#[test]
fn second_push_switches_without_losing_a_request() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");

    // Hammer the router while the second release deploys and takes over.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen_new = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, failures, seen_new, total) = (
            stop.clone(),
            failures.clone(),
            seen_new.clone(),
            total.clone(),
        );
        let port = server.http_port;
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match slipway_e2e::http_get(port, HOST, "/") {
                    Some((200, b)) if b == "built-1\n" => {}
                    Some((200, b)) if b == "built-2\n" => {
                        seen_new.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("{other:?}")),
                }
                total.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    app.write("VERSION", "2\n");
    app.commit("v2");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    // Keep going until the old release is retired.
    assert_only_live_containers(&server, 2);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        total.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(
        seen_new.load(Ordering::Relaxed) > 0,
        "the new release never answered"
    );
    assert!(
        total.load(Ordering::Relaxed) > 20,
        "too few requests to say anything"
    );
    assert_eq!(server.page(HOST, "/"), "built-2\n");
}

#[test]
fn failed_pushes_leave_the_old_release_serving() {
    let server = Server::start_with(&[("SLIPWAY_HEALTH_TIMEOUT", "4")]);
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let good = app.git_ok(&["rev-parse", "HEAD"]);

    let check_untouched = |out: &str, what: &str| {
        assert!(
            out.contains("error: failed to push some refs"),
            "{what}: {out}"
        );
        assert_eq!(
            server.branch_head(&app.dir, "demo", "main"),
            good,
            "{what}: the branch moved"
        );
        assert_eq!(
            server.page(HOST, "/"),
            "built-1\n",
            "{what}: the old release stopped answering"
        );
        assert_only_live_containers(&server, 1);
    };

    // 1. The build hook fails.
    let yaml = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap_or_default();
    app.write(
        ".platform.app.yaml",
        &yaml.replace("set -e\n", "set -e\n    echo compiling; exit 7\n"),
    );
    app.commit("build fails");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    assert!(out.contains("! [remote rejected] main -> main (build failed: hooks.build of hello exited with status 7)"), "{out}");
    assert!(
        out.contains("hello | compiling"),
        "build output streams: {out}"
    );
    check_untouched(&out, "build failure");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // 2. The app exits at once: fails fast, not after the health timeout.
    app.write(
        "server.py",
        "import sys\nprint('no DATABASE_URL, giving up')\nsys.exit(3)\n",
    );
    app.commit("exits at start");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    // Detected as an exit (fail fast), not as a health timeout.
    assert!(
        out.contains(
            "! [remote rejected] main -> main (health check failed: app hello exited at start"
        ),
        "{out}"
    );
    assert!(!out.contains("did not answer"), "{out}");
    assert!(
        out.contains("no DATABASE_URL, giving up"),
        "the app's output is shown: {out}"
    );
    check_untouched(&out, "exit at start");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // 3. The app runs but never answers on $PORT.
    app.write("server.py", "import time\ntime.sleep(3600)\n");
    app.commit("never listens");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    assert!(
        out.contains("(health check failed: app hello did not answer HTTP on $PORT"),
        "{out}"
    );
    assert!(!out.contains("instead"), "{out}");
    check_untouched(&out, "never answers");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // 3b. The app listens on a port of its own (Platform.sh's 8888, written in its code):
    // the failure says where it listens.
    app.write(
        "server.py",
        "import http.server\nhttp.server.HTTPServer(('127.0.0.1', 8888), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
    );
    app.commit("fixed port");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    assert!(
        out.contains("did not answer HTTP on $PORT (")
            && out.contains("; it listens on 127.0.0.1:8888 instead: make it listen on $PORT)"),
        "{out}"
    );
    check_untouched(&out, "a fixed port");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // 4. Broken YAML is refused before any build, naming the file, line and column.
    app.write(".platform.app.yaml", "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\n   bad: [\n");
    app.commit("broken yaml");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    assert!(
        out.contains("(validate failed: .platform.app.yaml:"),
        "{out}"
    );
    let pos = out
        .split("(validate failed: .platform.app.yaml:")
        .nth(1)
        .unwrap_or("");
    let mut nums = pos.split(':').take(2).map(|n| n.parse::<u32>().is_ok());
    assert!(
        nums.next() == Some(true) && nums.next() == Some(true),
        "line and column: {out}"
    );
    assert!(!out.contains("-----> build"), "nothing is built: {out}");
    check_untouched(&out, "broken yaml");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // 5. A mount whose source_path climbs out of its source: refused by `config check`
    // and by the push alike, at the value's line and column, before any build.
    let yaml = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap_or_default();
    let line = yaml.lines().count() + 4;
    app.write(
        ".platform.app.yaml",
        &format!(
            "{yaml}mounts:\n  uploads:\n    source: local\n    source_path: ../../../../etc\n"
        ),
    );
    let at = format!(".platform.app.yaml:{line}:18:");
    let why = "mount source_path `../../../../etc` leaves the mount's source";
    let checked = slipway_e2e::config_check(&app.dir);
    assert!(!checked.status.success(), "{}", text(&checked));
    assert!(
        text(&checked).contains(&format!("{at} error: {why}")),
        "{}",
        text(&checked)
    );
    app.commit("mount outside its source");
    let (ok, out) = push(&server, &app);
    assert!(!ok);
    assert!(out.contains(&format!("(validate failed: {at}")), "{out}");
    assert!(out.contains(why), "{out}");
    assert!(!out.contains("-----> build"), "nothing is built: {out}");
    check_untouched(&out, "mount source_path");
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // And a good push still works afterwards.
    app.write("VERSION", "3\n");
    app.commit("v3");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(server.page(HOST, "/"), "built-3\n");
}

#[test]
fn restart_adopts_and_down_then_serve_brings_back() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(server.page(HOST, "/"), "built-1\n");
    let before = server.containers();

    // SIGTERM: the server exits 0, containers keep running, the next start adopts them.
    assert_eq!(server.stop(), Some(0), "{}", server.server_log());
    assert_eq!(
        server.containers(),
        before,
        "containers keep running while the server is stopped"
    );
    server.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(HOST, "/").map(|(s, _)| s) != Some(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.page(HOST, "/"), "built-1\n");
    assert_eq!(
        server.containers(),
        before,
        "the same container was adopted, not restarted"
    );

    // `slipway down` stops every container of the data dir; the next serve brings them back.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(server.containers().is_empty(), "{:?}", server.containers());
    server.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(HOST, "/").map(|(s, _)| s) != Some(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.page(HOST, "/"), "built-1\n");
    assert_eq!(server.containers().len(), 1);
}

#[test]
fn ssh_refuses_unknown_keys_and_other_commands() {
    let server = Server::start();
    let stranger = slipway_e2e::new_key(server.dir.path(), "stranger");
    let o = server.ssh(&stranger, "git", "help");
    assert_eq!(
        o.status.code(),
        Some(255),
        "unknown key must be refused at authentication: {}",
        text(&o)
    );
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));

    let o = server.ssh(&server.key, "git", "help");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("git push"),
        "{}",
        text(&o)
    );

    for bad in [
        "git-upload-pack '../etc.git'",
        "git-upload-pack '--help'",
        "git-receive-pack '/Demo.git'",
        "rm -rf /",
    ] {
        let o = server.ssh(&server.key, "git", bad);
        assert!(!o.status.success(), "{bad} was accepted: {}", text(&o));
        assert!(
            text(&o).contains("slipway:"),
            "{bad}: no clear message: {}",
            text(&o)
        );
    }
    // A missing project looks the same as one the user may not see.
    let o = server.ssh(&server.key, "git", "git-upload-pack '/nothing.git'");
    assert!(
        text(&o).contains("repository 'nothing.git' not found"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_push_during_a_deploy_waits_then_deploys() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");

    // v2 builds slowly; v3 (on top of v2) is pushed while v2 deploys.
    let yaml = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap_or_default();
    app.write(
        ".platform.app.yaml",
        &yaml.replace("set -e\n", "set -e\n    sleep 3\n"),
    );
    app.write("VERSION", "2\n");
    app.commit("v2, slow build");
    let first = server.push_in_background(&app, "demo");
    std::thread::sleep(Duration::from_millis(1500));
    app.write("VERSION", "3\n");
    let v3 = app.commit("v3");
    let (ok, second) = push(&server, &app);
    let first = first.join().expect("first push thread");
    assert!(first.status.success(), "first push: {}", text(&first));
    assert!(ok, "second push: {second}");
    assert!(
        second.contains("another deploy of main is running"),
        "the second push says it waits: {second}"
    );
    assert!(second.contains("builds on it, deploying"), "{second}");
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), v3);
    assert_eq!(server.page(HOST, "/"), "built-3\n");
    assert_only_live_containers(&server, 3);
}

#[test]
fn the_infrastructure_diff_refuses_data_losing_changes() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform/services.yaml",
        "db:\n  type: mariadb:10.4\n  disk: 512\n",
    );
    app.commit("with a database");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let good = app.git_ok(&["rev-parse", "HEAD"]);

    // A major upgrade needs the explicit push option.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: mariadb:11.4\n  disk: 512\n",
    );
    app.commit("upgrade db");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "{out}");
    assert!(out.contains("(diff failed:"), "{out}");
    assert!(
        out.contains("allow-service-upgrade"),
        "the refusal says how to proceed: {out}"
    );
    assert!(!out.contains("-----> build"), "nothing is built: {out}");
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), good);
    // A misspelled option is refused at validate, naming it, never ignored.
    let o = server.push_with(&app, "demo", "main", &["allow-service-upgrad"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("(validate failed: unknown push option `allow-service-upgrad`; did you mean `allow-service-upgrade`?"),
        "{out}"
    );
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), good);
    // An option for another host (a `push.pushOption` meant for GitLab) is warned about.
    let o = server.push_with(&app, "demo", "main", &["ci.skip", "allow-service-upgrade"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: push option `ci.skip` is not Slipway's and is ignored"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("db"),
        "the diff shows the service change: {}",
        text(&o)
    );

    // Removing a service that holds data is refused.
    std::fs::remove_file(app.dir.join(".platform/services.yaml")).expect("rm");
    app.commit("drop db");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "{out}");
    assert!(out.contains("(diff failed:"), "{out}");
    assert_eq!(server.page(HOST, "/"), "built-1\n");
}

#[test]
fn an_atomic_push_deploys_every_branch_or_none() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);

    // main gets a good v2; dev gets a commit whose build fails.
    app.write("VERSION", "2\n");
    app.commit("v2");
    app.git_ok(&["checkout", "-q", "-b", "dev"]);
    let yaml = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap_or_default();
    app.write(
        ".platform.app.yaml",
        &yaml.replace("set -e\n", "set -e\n    exit 9\n"),
    );
    app.commit("dev breaks the build");
    let o = server.git(
        &app.dir,
        &["push", "--atomic", &server.remote("demo"), "main", "dev"],
    );
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("dev -> dev (build failed: hooks.build of hello exited with status 9)"),
        "{out}"
    );
    assert!(
        out.contains("main -> main (atomic push refused: refs/heads/dev failed)"),
        "{out}"
    );
    assert_eq!(
        server.branch_head(&app.dir, "demo", "main"),
        v1,
        "main did not move"
    );
    assert_eq!(server.page(HOST, "/"), "built-1\n", "main still serves v1");
    assert!(
        server.branch_head(&app.dir, "demo", "dev").is_empty(),
        "dev was not created"
    );
    assert_only_live_containers(&server, 1);

    // Fixed: both go live together.
    app.write(".platform.app.yaml", &yaml);
    app.write("VERSION", "dev\n");
    app.commit("dev fixed");
    let o = server.git(
        &app.dir,
        &["push", "--atomic", &server.remote("demo"), "main", "dev"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.page(HOST, "/"), "built-2\n");
    assert_eq!(
        server.get("dev.demo.localhost", "/").map(|(_, b)| b),
        Some("built-dev\n".to_string())
    );
}

#[test]
fn deleting_a_branch_stops_its_environment_for_good() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.git_ok(&["checkout", "-q", "-b", "dev"]);
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "dev"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        server.get("dev.demo.localhost", "/").map(|(s, _)| s),
        Some(200)
    );

    let o = server.git(&app.dir, &["push", &server.remote("demo"), ":dev"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("[deleted]"), "{}", text(&o));
    assert_eq!(
        server.get("dev.demo.localhost", "/").map(|(s, _)| s),
        Some(404)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.containers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.containers().is_empty(), "{:?}", server.containers());

    // A restart does not bring it back.
    server.stop();
    server.serve();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        server.get("dev.demo.localhost", "/").map(|(s, _)| s),
        Some(404)
    );
    assert!(server.containers().is_empty(), "{:?}", server.containers());
}

/// `ssh git@HOST COMMAND --json` as the admin, parsed.
fn admin_json(server: &Server, command: &str) -> serde_json::Value {
    let o = server.ssh(&server.key, "git", &format!("{command} --json"));
    assert!(o.status.success(), "{command}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{command}: {e}: {}", text(&o)))
}

/// The `name` of each row of a JSON list.
fn names(rows: &serde_json::Value) -> Vec<String> {
    rows.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_refused_first_push_leaves_no_project_and_the_name_free() {
    let server = Server::start();
    let other = slipway_e2e::new_key(server.dir.path(), "other");
    let pubkey = std::fs::read(other.with_extension("pub")).expect("pub key");
    let o = server.ssh_with_input(&server.key, "git", "user add other --admin", &pubkey);
    assert!(o.status.success(), "user add: {}", text(&o));

    // A build that fails: the environment was recorded (diff) and built in, then refused.
    let app = App::demo(server.dir.path(), "app");
    let good = app.git_ok(&["rev-parse", "HEAD"]);
    let yaml = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap_or_default();
    app.write(
        ".platform.app.yaml",
        &yaml.replace("set -e\n", "set -e\n    exit 7\n"),
    );
    app.commit("build fails");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "{out}");
    assert!(out.contains("(build failed: "), "{out}");
    assert!(
        out.contains("project demo was not created: nothing of its first push was accepted"),
        "{out}"
    );
    assert_eq!(admin_json(&server, "projects"), serde_json::json!([]));
    assert!(!slipway_e2e::repo_dir(&server, "demo").exists());
    assert!(!server.data.join("volumes").join("demo").exists());
    assert!(server.containers().is_empty(), "{:?}", server.containers());

    // Another admin makes the project with that name: theirs alone (the first pusher holds
    // no role granted on it).
    app.git_ok(&["reset", "-q", "--hard", &good]);
    let o = server.git_as(&other, &app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(server.page(HOST, "/"), "built-1\n");
    assert_eq!(admin_json(&server, "projects"), serde_json::json!(["demo"]));
    let access = admin_json(&server, "access ls demo");
    let members: Vec<&str> = access
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["server_admin"] == false)
        .filter_map(|e| e["user"].as_str())
        .collect();
    assert_eq!(members, ["other"], "{access}");

    // A bad config refused at validate, then the same pusher's good push makes it.
    let again = App::demo(server.dir.path(), "again");
    again.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nweb: [\n",
    );
    again.commit("bad config");
    let o = server.git(&again.dir, &["push", &server.remote("again"), "main"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(admin_json(&server, "projects"), serde_json::json!(["demo"]));
    again.git_ok(&["reset", "-q", "--hard", "HEAD~1"]);
    server.push_ok(&again, "again");
    assert_eq!(
        admin_json(&server, "projects"),
        serde_json::json!(["again", "demo"])
    );
    assert_eq!(
        server.get("main.again.localhost", "/"),
        Some((200, "built-1\n".to_string()))
    );
}

/// Answers with what `data/first.txt` holds: written by the deploy hook of the first
/// environment whose volume lacks it.
const FIRST_WRITER: &str = slipway_e2e::py_app!(
    "",
    "        body = open(\"data/first.txt\").read().encode()\n"
);

#[test]
fn a_failed_push_removes_the_services_it_added_and_a_new_branch_it_made() {
    let server = Server::start_with(&[("SLIPWAY_HEALTH_TIMEOUT", "4")]);
    let app = App::demo(server.dir.path(), "app");
    let hooks = "hooks:\n  build: echo built > build.txt\n  deploy: |\n    set -e\n    [ -f data/first.txt ] || echo \"$PLATFORM_BRANCH\" > data/first.txt\n";
    let config = |extra: &str| {
        format!("name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data: {{source: local, source_path: data}}\n{hooks}{extra}web:\n  commands:\n    start: python3 server.py\n")
    };
    app.write(".platform.app.yaml", &config(""));
    app.write("server.py", FIRST_WRITER);
    app.commit("writes data/first.txt");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(server.page(HOST, "/"), "main\n");
    let good = app.git_ok(&["rev-parse", "HEAD"]);
    let envs_before = names(&admin_json(&server, "envs demo"));
    assert_eq!(envs_before, ["main"]);

    // A push adding a Redis service whose deploy hook then fails: the service goes again.
    app.write(".platform/services.yaml", "cache:\n  type: redis:7.0\n");
    app.write(
        ".platform.app.yaml",
        &config("relationships:\n  cache: 'cache:redis'\n").replace(
            "  deploy: |\n    set -e\n",
            "  deploy: |\n    set -e\n    exit 5\n",
        ),
    );
    app.commit("adds redis, deploy hook fails");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "{out}");
    assert!(
        out.contains("service cache"),
        "the service was started: {out}"
    );
    assert!(out.contains("(deploy hook failed"), "{out}");
    assert!(
        out.contains("services this push added were removed: cache"),
        "{out}"
    );
    assert_eq!(
        admin_json(&server, "services demo main"),
        serde_json::json!([])
    );
    assert_eq!(names(&admin_json(&server, "envs demo")), envs_before);
    assert!(
        !server
            .containers()
            .iter()
            .any(|(id, _)| id.ends_with(".service")),
        "{:?}",
        server.containers()
    );
    assert!(!server
        .data
        .join("volumes/demo/main/service-cache.img")
        .exists());
    assert_eq!(
        server.page(HOST, "/"),
        "main\n",
        "the live release still serves"
    );
    app.git_ok(&["reset", "-q", "--hard", &good]);

    // The first push of branch `feature` fails its health check: no environment, no copy
    // of main's volume.
    app.git_ok(&["checkout", "-q", "-b", "feature"]);
    let good_feature = app.git_ok(&["rev-parse", "HEAD"]);
    app.write("server.py", "import sys\nsys.exit(3)\n");
    app.commit("exits at start");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "feature"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    // Its container exits at once: the deploy hook (which runs in it) or the health check
    // fails, whichever comes first.
    assert!(
        out.contains("(deploy hook failed") || out.contains("(health check failed"),
        "{out}"
    );
    assert!(
        out.contains("environment feature removed again: it never went live"),
        "{out}"
    );
    assert_eq!(names(&admin_json(&server, "envs demo")), ["main"]);
    assert!(!server.data.join("volumes/demo/feature").exists());

    // A good push of it then deploys, on a copy of main's data made then.
    app.git_ok(&["reset", "-q", "--hard", &good_feature]);
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "feature"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        names(&admin_json(&server, "envs demo")),
        ["feature", "main"]
    );
    assert_eq!(
        server.get("feature.demo.localhost", "/"),
        Some((200, "main\n".to_string()))
    );
}
