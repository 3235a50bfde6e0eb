//! Variables and logs of tenants (issue 12, findings 6, 7 and 9): secret values stay out
//! of bundles, image configs and command lines while apps, hooks and shells see them;
//! viewers read names only and sensitive values are never shown; a build printing a
//! million lines keeps a capped log without slowing others down; app logs rotate by size
//! and `logs -f` follows across a rotation.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_e2e::{run, text, App, Server};

const HOST: &str = "main.demo.localhost";

/// Files under `dir` holding `needle` (grep -rl).
fn files_with(dir: &std::path::Path, needle: &str) -> String {
    let o = run(Command::new("grep").arg("-rlF").arg(needle).arg(dir));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256_prefix(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..16].to_string()
}

/// An app answering with its `API_TOKEN` and `MODE`, whose deploy hook prints a hash of
/// the token after a pause (long enough to look at the command lines meanwhile).
fn env_app(server: &Server) -> App {
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: python:3.11\nhooks:\n  deploy: |\n    sleep 3\n    echo \"hook token $(printf %s \"$API_TOKEN\" | sha256sum | cut -c1-16)\"\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write(
        "server.py",
        slipway_e2e::py_app!(
            "",
            r#"        body = ("token=%s mode=%s\n" % (os.environ.get("API_TOKEN", ""), os.environ.get("MODE", ""))).encode()
"#
        ),
    );
    app.commit("env app");
    app
}

#[test]
fn secret_values_reach_apps_hooks_and_shells_but_no_file_or_command_line() {
    let server = Server::start();
    let app = env_app(&server);
    server.push_ok(&app, "demo");
    let secret = format!("s3cret-{}-value", std::process::id());

    let o = server.admin(&format!("var set --sensitive demo main API_TOKEN={secret}"));
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("never shown again"), "{out}");
    assert!(
        out.contains(&format!("hook token {}", sha256_prefix(&secret))),
        "the deploy hook sees it: {out}"
    );
    assert!(!out.contains(&secret), "{out}");
    // The redeploy that applies it names it, never its value.
    assert!(
        out.contains("variables changed since release 1: API_TOKEN (new)"),
        "{out}"
    );
    let body = server.get(HOST, "/").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(body, format!("token={secret} mode=\n"), "the app sees it");

    // A redeploy runs the hook again, and a shell runs a slow command: meanwhile no
    // process's command line shows the value, and their `runc exec`s are seen running
    // (with the process passed as a file).
    let in_background = |user: &'static str, command: &'static str| {
        let cmd = server.ssh_command(&server.key);
        let port = server.ssh_port;
        std::thread::spawn(move || {
            let mut c = Command::new("ssh");
            for a in cmd.split_whitespace().skip(1) {
                c.arg(a);
            }
            run(c
                .arg("-p")
                .arg(port.to_string())
                .arg(format!("{user}@127.0.0.1"))
                .arg(command))
        })
    };
    let redeploy = in_background("git", "redeploy demo main");
    let shell = in_background("main.demo", "sleep 3; echo \"[$API_TOKEN]\"");
    let mut seen_exec = false;
    let t0 = Instant::now();
    while !(redeploy.is_finished() && shell.is_finished())
        && t0.elapsed() < Duration::from_secs(300)
    {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(
                !cmdline.contains(&secret),
                "a command line shows it: {cmdline}"
            );
            seen_exec |=
                cmdline.contains(" exec ") && cmdline.contains("--process /proc/self/fd/3");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = redeploy.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = shell.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("[{secret}]"),
        "{}",
        text(&o)
    );
    assert!(seen_exec, "the deploy hook's runc exec was never seen");

    // No bundle, runtime state or image config (archive blob) holds the value.
    for dir in ["runtime", "archive"] {
        let found = files_with(&server.data.join(dir), &secret);
        assert!(found.is_empty(), "{dir}: {found}");
    }
    // ...while the legitimate reader, the app, still has it, and so does a shell.
    let body = server.get(HOST, "/").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(body, format!("token={secret} mode=\n"));
    let o = server.ssh(&server.key, "main.demo", "echo \"[$API_TOKEN]\"");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("[{secret}]")
    );
    // Releases, as any viewer may list them, hold no value either, nor the secrets Slipway
    // generates for the apps (the project's entropy, services' passwords): each app by its
    // name and slug only.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "echo \"$PLATFORM_PROJECT_ENTROPY\"",
    );
    let entropy = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(entropy.len() >= 16, "{}", text(&o));
    let o = server.admin("releases demo main --json");
    assert!(
        o.status.success() && !text(&o).contains(&secret) && !text(&o).contains(&entropy),
        "{}",
        text(&o)
    );
    let releases: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(releases[0]["apps"][0]["name"], "app", "{releases}");
    assert!(
        releases[0]["apps"][0]["slug"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:")),
        "{releases}"
    );
    // An environment that does not exist is said so, as `services` says it.
    let o = server.admin("releases demo nope");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("environment 'nope' of project 'demo' not found"),
        "{}",
        text(&o)
    );
    // `envs` names the URL the push printed (with the port), and the live release by the
    // number `rollback` takes.
    let url = format!("http://{HOST}:{}/", server.http_port);
    let o = server.admin("envs demo");
    assert!(text(&o).contains(&format!("\t{url}")), "{}", text(&o));
    let o = server.admin("envs demo --json");
    let envs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(envs[0]["url"], url.as_str(), "{envs}");
    assert_eq!(envs[0]["live_release"], releases[0]["number"], "{envs}");

    // Sensitive: hidden from admins too, in text and JSON, and stays sensitive when set again.
    for cmd in ["var ls demo main", "var ls demo main --json"] {
        let o = server.admin(cmd);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("API_TOKEN"), "{}", text(&o));
        assert!(!text(&o).contains(&secret), "{}", text(&o));
    }
    let o = server.admin("var ls demo main");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "API_TOKEN (sensitive: value hidden)"
    );

    // A plain variable: contributors and admins read it, viewers see its name only.
    // A value with spaces, quoted inside the command as a shell would take it.
    let o = server.admin("var set demo main 'MODE=visible-mode  with spaces'");
    assert!(o.status.success(), "{}", text(&o));
    // Its redeploy names MODE only (API_TOKEN did not change since), and so does the
    // activity's stored log, as the console replays it.
    let out = text(&o);
    assert!(
        out.contains("variables changed since release 3: MODE (new)\n"),
        "{out}"
    );
    let newest = String::from_utf8_lossy(&server.admin("activity demo main").stdout)
        .split('\t')
        .next()
        .unwrap_or("")
        .to_string();
    let o = server.admin(&format!("activity log {newest}"));
    let log = text(&o);
    assert!(
        log.contains("variables changed since release 3: MODE (new)\n")
            && !log.contains("visible-mode")
            && !log.contains(&secret),
        "{log}"
    );
    let o = server.admin("var ls demo main");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("MODE=visible-mode  with spaces"),
        "{}",
        text(&o)
    );
    let body = server.get(HOST, "/").map(|(_, b)| b).unwrap_or_default();
    assert_eq!(
        body,
        format!("token={secret} mode=visible-mode  with spaces\n"),
        "the app sees the value whole"
    );
    let o = server.admin("var set demo main 'MODE=unclosed");
    assert!(!o.status.success());
    assert!(text(&o).contains("quoting is unbalanced"), "{}", text(&o));
    let bob = slipway_e2e::new_key(server.dir.path(), "bob");
    let o = server.slipway(&[
        "user",
        "add",
        "bob",
        "--key",
        bob.with_extension("pub").to_str().unwrap_or(""),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = server.admin("access grant demo bob viewer");
    assert!(o.status.success(), "{}", text(&o));
    for cmd in ["var ls demo main", "var ls demo main --json"] {
        let o = server.ssh(&bob, "git", cmd);
        assert!(o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("MODE") && t.contains("API_TOKEN"), "{t}");
        assert!(!t.contains("visible-mode") && !t.contains(&secret), "{t}");
    }
    let o = server.ssh(&bob, "git", "var set demo main MODE=x");
    assert!(!o.status.success(), "a viewer cannot set: {}", text(&o));
}

/// The ids in the first column of `activity demo` (newest first).
fn activity_ids(server: &Server) -> Vec<String> {
    let o = server.admin("activity demo");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn server_admins_prune_activity_logs_over_ssh_and_others_cannot() {
    // No pruning by the server itself while the test runs (the first, at start, finds
    // nothing).
    let server = Server::start_with(&[("SLIPWAY_ACTIVITY_PRUNE_EVERY", "100000")]);
    // Three pushes, each refused at validate: three activities with logs, nothing built.
    let app = server.project(
        "demo",
        &[(
            ".platform.app.yaml",
            "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: [not a command]\n",
        )],
    );
    // A good first push of branch `dev` makes the project (a refused first push would
    // leave none); its one activity is dev's, which every prune below keeps.
    app.git_ok(&["checkout", "-q", "-b", "dev"]);
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.commit("dev");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "dev"]);
    assert!(o.status.success(), "{}", text(&o));
    app.git_ok(&["checkout", "-q", "main"]);
    for _ in 0..3 {
        let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
        assert!(!o.status.success(), "{}", text(&o));
    }
    let all = activity_ids(&server);
    assert_eq!(all.len(), 4, "{all:?}");
    // main's three, newest first.
    let ids = all[..3].to_vec();
    let log_of = |id: &str| text(&server.admin(&format!("activity log {id}")));
    let pruned = |id: &str| log_of(id).contains("log pruned");
    assert!(ids.iter().all(|id| !pruned(id)), "{}", log_of(&ids[2]));

    // A project admin who is no server admin is refused, and nothing goes.
    let ada = server.add_user_with_role("ada", "demo", "admin");
    let o = server.ssh(&ada, "git", "activity prune --keep 0 --keep-days 0");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));
    // Bad flags are usage errors (exit 2), naming the form.
    for bad in [
        "activity prune --keep lots",
        "activity prune --keep -1",
        "activity prune --keep-days",
        "activity prune demo",
        "activity prune --keep 1 --keep 2",
    ] {
        let o = server.admin(bad);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(
            text(&o).contains("usage: activity prune [--keep N] [--keep-days D] [--dry-run]"),
            "{bad}: {}",
            text(&o)
        );
    }
    assert!(ids.iter().all(|id| !pruned(id)));
    // The server's own rules (the newest 200, 30 days) keep everything.
    let o = server.admin("activity prune");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).starts_with("pruned the logs of 0 activities: each environment keeps the logs of its newest 200 activities and of all that ended within 30 days"),
        "{}",
        text(&o)
    );
    // A dry run names the two older ones and deletes nothing.
    let o = server.admin("activity prune --keep 1 --keep-days=0 --dry-run");
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    let listed: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("\tdemo\tmain\tpush\tfailure\tended "))
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(listed, vec![ids[2].as_str(), ids[1].as_str()], "{said}");
    assert!(
        said.contains("would prune the logs of 2 activities"),
        "{said}"
    );
    assert!(said.contains("dry run: nothing was deleted"), "{said}");
    assert!(ids.iter().all(|id| !pruned(id)));
    // The real thing, as JSON: the same two go, the newest keeps its log.
    let o = server.admin("activity prune --keep 1 --keep-days 0 --json");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["dry_run"], false, "{v}");
    let gone: Vec<String> = v["pruned"]
        .as_array()
        .expect("pruned")
        .iter()
        .map(|a| a["id"].to_string())
        .collect();
    assert_eq!(gone, vec![ids[2].clone(), ids[1].clone()], "{v}");
    assert!(pruned(&ids[1]) && pruned(&ids[2]));
    assert!(
        !pruned(&ids[0]) && log_of(&ids[0]).contains("start"),
        "{}",
        log_of(&ids[0])
    );
    // Done once: nothing more to prune; the activities are still listed.
    let o = server.admin("activity prune --keep 1 --keep-days 0");
    assert!(
        text(&o).starts_with("pruned the logs of 0 activities"),
        "{}",
        text(&o)
    );
    assert_eq!(activity_ids(&server), all);
}

#[test]
fn a_build_printing_a_million_lines_keeps_a_capped_log_and_others_are_served() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    seq 1 1000000 | sed 's/^/noise line /'\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("noisy build");
    let db_size = || {
        ["state.db", "state.db-wal"]
            .iter()
            .map(|f| {
                std::fs::metadata(server.data.join(f))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum::<u64>()
    };
    let before = db_size();
    let pusher = server.push_in_background(&app, "demo");
    // Meanwhile another user's commands answer (generously soon).
    let mut answered = 0;
    while !pusher.is_finished() {
        let t = Instant::now();
        let o = server.admin("projects");
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "projects took {:?}",
            t.elapsed()
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = pusher.join().unwrap();
    assert!(
        o.status.success(),
        "push: {}",
        &text(&o)[..2000.min(text(&o).len())]
    );
    assert!(answered > 0);
    assert_eq!(
        server.get(HOST, "/").map(|(_, b)| b).as_deref(),
        Some("built-1\n")
    );

    let o = server.admin("activity demo");
    let id = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let o = server.admin(&format!("activity log {id}"));
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(log.contains("noise line 1\n"), "the head");
    assert!(log.contains("noise line 1000000\n"), "the tail");
    assert!(
        log.contains("-----> live"),
        "the end of the push: {}",
        &log[log.len() - 2000..]
    );
    let marker = log
        .lines()
        .find(|l| l.starts_with("... ") && l.ends_with(" cut ..."))
        .expect("a cut marker");
    let cut: u64 = marker
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(cut > 900_000, "{marker}");
    assert!(log.len() < 1 << 20, "{} bytes", log.len());
    let grown = db_size().saturating_sub(before);
    assert!(grown < 4 << 20, "state.db grew by {grown} bytes");
}

#[test]
fn app_logs_rotate_by_size_and_logs_f_follows_across_rotations() {
    let server = Server::start_with(&[("SLIPWAY_APP_LOG_MAX_SIZE", "32K")]);
    let app = App::demo(server.dir.path(), "app");
    app.write(
        "server.py",
        &format!(
            "import threading, time\ndef tick():\n    i = 0\n    while True:\n        print('tick %d %s' % (i, 'x' * 100), flush=True)\n        i += 1\n        time.sleep(0.005)\nthreading.Thread(target=tick, daemon=True).start()\n{}",
            slipway_e2e::DEMO_SERVER
        ),
    );
    app.commit("ticking app");
    server.push_ok(&app, "demo");
    let log = server.data.join("logs/demo/main/hello.log");

    let mut cmd = Command::new("ssh");
    for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
        cmd.arg(a);
    }
    let mut follower = cmd
        .arg("-p")
        .arg(server.ssh_port.to_string())
        .arg("git@127.0.0.1")
        .arg("logs demo main -f")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    // ~20 KiB/s against a 32 KiB limit: several rotations.
    std::thread::sleep(Duration::from_secs(8));
    let _ = follower.kill();
    let _ = follower.wait();
    let followed = reader.join().unwrap();

    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(size < 128 * 1024, "{size} bytes: not rotated");
    assert!(rotated(&log, 1).exists() && rotated(&log, 2).exists());
    assert!(!rotated(&log, 3).exists(), "two kept");
    let ticks: Vec<u64> = followed
        .lines()
        .filter_map(|l| l.strip_prefix("tick "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    // The follower went on past rotations: it saw lines that are now in APP.log.1's
    // successors, with (almost) nothing missing on the way.
    assert!(last - first > 500, "followed {first}..{last}");
    assert!(
        ticks.len() as u64 + 20 >= last - first,
        "followed {} of {first}..{last}",
        ticks.len()
    );
    let now = std::fs::read_to_string(rotated(&log, 1)).unwrap_or_default();
    let rotated_first: u64 = now
        .lines()
        .filter_map(|l| l.strip_prefix("tick "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next()
        .unwrap_or(u64::MAX);
    assert!(
        rotated_first > first,
        "at least one rotation while following"
    );
}

fn rotated(log: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    std::path::PathBuf::from(name)
}
