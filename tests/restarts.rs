//! Restarting and upgrading `slipway serve` (issue 18, spec section 1): a live host is
//! never answered 404 while a server starts, a graceful upgrade loses no request and
//! lets a push in flight complete, and one data dir has one server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, Server};

const HOST: &str = "main.demo.localhost";

/// `git push` of `app`'s `main` to `project` on a thread of its own (the test meanwhile
/// upgrades or restarts the server); joining it gives the push's output.
fn push_in_background(
    server: &Server,
    app: &App,
    project: &str,
) -> JoinHandle<std::process::Output> {
    let dir = app.dir.clone();
    let remote = server.remote(project);
    let ssh = server.ssh_command(&server.key);
    std::thread::spawn(move || {
        slipway_e2e::run(
            std::process::Command::new("git")
                .args(["push", &remote, "main"])
                .current_dir(dir)
                .env("GIT_SSH_COMMAND", ssh)
                .env("GIT_TERMINAL_PROMPT", "0"),
        )
    })
}

/// Wait (at most 60 s) until the old server of an upgrade in progress says it stopped
/// accepting: from then on every new connection reaches the new server.
fn wait_until_the_old_server_stops_accepting(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // Its router's own line, once its listeners are closed (the server's "upgraded:
    // stopping accepting" comes before: a connection made right after it could still be
    // accepted by the old server), after the last time a server said it would stop.
    let stopped = |log: &str| {
        log.rfind("upgraded: stopping accepting")
            .is_some_and(|at| log[at..].contains("HTTP router stopped accepting"))
    };
    while !stopped(&server.server_log()) {
        assert!(
            Instant::now() < deadline,
            "the old server did not stop accepting:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The old server of an upgrade exited 0 (`code`, as [`Server::upgrade`] returns it) and
/// the new one (not `old_pid`) serves.
fn assert_the_old_server_exited(server: &Server, code: Option<i32>, old_pid: u32) {
    assert_eq!(
        code,
        Some(0),
        "the old server exits 0\n{}",
        server.server_log()
    );
    assert_ne!(server.pid(), Some(old_pid));
}

/// What a load loop saw.
#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    not_found: AtomicUsize,
    /// Other statuses (e.g. 502, 503), with the first few answers.
    other: AtomicUsize,
    other_seen: Mutex<Vec<String>>,
    /// Connection refused: nothing listened.
    refused: AtomicUsize,
    /// A connection that broke once its request was sent, or before any answer on a
    /// fresh connection.
    broken: AtomicUsize,
    /// A kept-alive connection the server had closed before the request reached it
    /// (nothing answered): sent again on a new connection, as HTTP clients do.
    retried: AtomicUsize,
}

impl Counts {
    /// Waits until `n` more requests than now were answered 200.
    fn wait_for_more_ok(&self, n: usize) {
        let now = self.ok.load(Ordering::SeqCst);
        while self.ok.load(Ordering::SeqCst) < now + n {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no request failed, with the counts and the server's log if one did.
    fn assert_none_failed(&self, server: &Server) {
        assert_eq!(
            self.failed(),
            0,
            "{}\n{}",
            self.report(),
            server.server_log()
        );
    }

    fn failed(&self) -> usize {
        self.not_found.load(Ordering::SeqCst)
            + self.other.load(Ordering::SeqCst)
            + self.refused.load(Ordering::SeqCst)
            + self.broken.load(Ordering::SeqCst)
    }

    fn report(&self) -> String {
        format!(
            "ok {}, 404 {}, other {} {:?}, refused {}, broken {}, retried on a new connection {}",
            self.ok.load(Ordering::SeqCst),
            self.not_found.load(Ordering::SeqCst),
            self.other.load(Ordering::SeqCst),
            self.other_seen
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default(),
            self.refused.load(Ordering::SeqCst),
            self.broken.load(Ordering::SeqCst),
            self.retried.load(Ordering::SeqCst),
        )
    }
}

enum Answer {
    Status(u16, bool),
    /// The connection ended before any byte of an answer.
    Nothing,
    /// It broke in the middle of an answer.
    Broken,
}

/// One GET of `path` on `host` on a kept-alive connection: the status, and whether the
/// server closes it.
fn get_on(conn: &mut BufReader<TcpStream>, host: &str, path: &str) -> Answer {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slipway-e2e\r\n\r\n");
    if conn.get_mut().write_all(req.as_bytes()).is_err() {
        return Answer::Nothing;
    }
    let mut status_line = String::new();
    match conn.read_line(&mut status_line) {
        Ok(0) | Err(_) => return Answer::Nothing,
        Ok(_) => {}
    }
    let Some(status) = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Answer::Broken;
    };
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) | Err(_) => return Answer::Broken,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    if conn.read_exact(&mut body).is_err() {
        return Answer::Broken;
    }
    Answer::Status(status, close)
}

/// GET `/` of the demo host in a loop on a kept-alive connection until `stop`.
fn load(port: u16, stop: Arc<AtomicBool>, counts: Arc<Counts>) -> JoinHandle<()> {
    load_host(port, HOST, stop, counts)
}

/// GET `/` of `host` in a loop on a kept-alive connection until `stop`.
fn load_host(
    port: u16,
    host: &'static str,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> JoinHandle<()> {
    std::thread::spawn(move || load_loop(port, host, Duration::ZERO, &stop, &counts))
}

/// The loop of [`load_host`], on the calling thread, waiting `pause` between requests.
fn load_loop(port: u16, host: &str, pause: Duration, stop: &AtomicBool, counts: &Counts) {
    let mut conn: Option<(BufReader<TcpStream>, bool)> = None;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(pause);
        let (mut c, reused) = match conn.take() {
            Some((c, _)) => (c, true),
            None => match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    (BufReader::new(s), false)
                }
                Err(_) => {
                    counts.refused.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        match get_on(&mut c, host, "/") {
            Answer::Status(status, close) => {
                match status {
                    200 => counts.ok.fetch_add(1, Ordering::SeqCst),
                    404 => counts.not_found.fetch_add(1, Ordering::SeqCst),
                    _ => {
                        if let Ok(mut seen) = counts.other_seen.lock() {
                            if seen.len() < 5 {
                                seen.push(status.to_string());
                            }
                        }
                        counts.other.fetch_add(1, Ordering::SeqCst)
                    }
                };
                if !close {
                    conn = Some((c, true));
                }
            }
            Answer::Nothing if reused => {
                counts.retried.fetch_add(1, Ordering::SeqCst);
            }
            Answer::Nothing | Answer::Broken => {
                counts.broken.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn push(server: &Server, app: &App) -> (bool, String) {
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    (o.status.success(), text(&o))
}

fn body(server: &Server) -> String {
    match server.get(HOST, "/") {
        Some((200, b)) => b,
        other => panic!("GET http://{HOST}/ gave {other:?}\n{}", server.server_log()),
    }
}

/// Wait until the demo host answers 200 (at most 60 s).
fn wait_ok(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get(HOST, "/").map(|(s, _)| s) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "not answering 200:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The hosts of the three environments of the restart test.
const HOSTS: [&str; 3] = [HOST, "two.demo.localhost", "three.demo.localhost"];

#[test]
fn restart_and_crash_never_answer_404_for_a_live_host() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    for branch in ["main", "two", "three"] {
        let o = server.git(
            &app.dir,
            &["push", &server.remote("demo"), &format!("main:{branch}")],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    assert_eq!(body(&server), "built-1\n");

    for crash in [false, true] {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let loaders: Vec<_> = HOSTS
            .iter()
            .map(|h| load_host(server.http_port, h, stop.clone(), counts.clone()))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        if crash {
            server.kill9();
        } else {
            assert_eq!(server.stop(), Some(0), "{}", server.server_log());
        }
        server.serve();
        wait_ok(&server);
        counts.wait_for_more_ok(50);
        stop.store(true, Ordering::SeqCst);
        for l in loaders {
            l.join().expect("load thread");
        }
        let what = if crash {
            "kill -9 + start"
        } else {
            "SIGTERM + start"
        };
        eprintln!("{what}: {} ({} failed)", counts.report(), counts.failed());
        assert_eq!(
            counts.not_found.load(Ordering::SeqCst),
            0,
            "{what}: a live host was answered 404: {}\n{}",
            counts.report(),
            server.server_log()
        );
        assert!(counts.ok.load(Ordering::SeqCst) > 50, "{}", counts.report());
    }
    // A host that has nothing still gets the 404 page.
    assert_eq!(
        server.get("nothing.demo.localhost", "/").map(|(s, _)| s),
        Some(404)
    );
}

#[test]
fn a_second_server_on_a_data_dir_is_refused_and_a_crash_leaves_no_lock() {
    let mut server = Server::start();
    let pid = server.pid().expect("running");
    let (mut second, _) = server.spawn_serve(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(st)) = second.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second serve on the same data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", server.server_log());
    let log = server.server_log();
    assert!(
        log.contains(&format!(
            "another slipway serve (pid {pid}) runs on the data dir"
        )),
        "{log}"
    );
    assert!(server.running(), "the first server still serves");
    assert!(server.get("x.localhost", "/").is_some());

    // A crash leaves the lock file and the upgrade socket behind: the next start recovers.
    server.kill9();
    assert!(server.data.join("serve.lock").exists());
    assert!(server.data.join("serve.sock").exists());
    server.serve();
    assert!(server.running());
    let lock = std::fs::read_to_string(server.data.join("serve.lock")).expect("lock file");
    assert_eq!(lock.trim(), server.pid().expect("running").to_string());
}

#[test]
fn upgrade_loses_no_request_and_a_push_in_flight_completes() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(body(&server), "built-1\n");
    let old_pid = server.pid().expect("running");

    // v2 builds slowly: its push is still running when the upgrade starts.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    sleep 5\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write("VERSION", "2\n");
    app.commit("v2");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load(server.http_port, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));

    let pushing = push_in_background(&server, &app, "demo");
    std::thread::sleep(Duration::from_millis(1500));

    let mut refused_upgrade = None;
    let code = server.upgrade(Duration::from_secs(120), |s| {
        // The old server drains (the push runs): another upgrade now is refused.
        refused_upgrade = Some(slipway_e2e::run(
            std::process::Command::new(slipway_e2e::slipway_bin())
                .arg("serve")
                .arg("--upgrade")
                .arg("--data-dir")
                .arg(&s.data)
                .arg("--ssh-listen")
                .arg(format!("127.0.0.1:{}", s.ssh_port))
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{}", s.http_port)),
        ));
    });
    assert_the_old_server_exited(&server, code, old_pid);

    let o = pushing.join().expect("push thread");
    assert!(
        o.status.success(),
        "the push in flight completes: {}",
        text(&o)
    );
    wait_ok(&server);
    assert_eq!(body(&server), "built-2\n", "{}", server.server_log());

    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    eprintln!(
        "graceful upgrade: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    counts.assert_none_failed(&server);
    // Not even a kept-alive connection closed under a request: the old server answered
    // each connection's next request with `connection: close` instead.
    assert_eq!(
        counts.retried.load(Ordering::SeqCst),
        0,
        "{}",
        counts.report()
    );

    let refused = refused_upgrade.expect("second upgrade ran");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("another upgrade of this server is under way"),
        "{}",
        text(&refused)
    );

    // The new server answers upgrades itself once the old one is gone, and is the one
    // holding the data dir.
    let lock = std::fs::read_to_string(server.data.join("serve.lock")).expect("lock file");
    assert_eq!(lock.trim(), server.pid().expect("running").to_string());
}

/// Whether a process with this pid exists (not yet reaped).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid the data dir's lock file names.
fn lock_pid(server: &Server) -> u32 {
    std::fs::read_to_string(server.data.join("serve.lock"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("a pid in serve.lock")
}

#[test]
fn sighup_upgrades_to_a_new_server_with_the_same_flags() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let old_pid = server.pid().expect("running");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load(server.http_port, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));
    let o =
        slipway_e2e::run(std::process::Command::new("kill").args(["-HUP", &old_pid.to_string()]));
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.running() {
        assert!(
            Instant::now() < deadline,
            "the old server did not exit:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.stop(), Some(0), "{}", server.server_log());
    let new_pid = lock_pid(&server);
    assert_ne!(new_pid, old_pid);
    assert!(alive(new_pid), "the new server runs");
    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    eprintln!(
        "upgrade by SIGHUP: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    let failed = counts.failed();
    assert_eq!(body(&server), "built-1\n");

    // The new server is no child of this test: stop it by its pid.
    let o =
        slipway_e2e::run(std::process::Command::new("kill").args(["-TERM", &new_pid.to_string()]));
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(new_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failed, 0, "{}\n{}", counts.report(), server.server_log());
}

/// `contrib/slipway.service` and `.socket` under a real systemd, booted by
/// `systemd-nspawn` in a container of its own (tests/support/nspawn.rs: its own PID,
/// mount and network namespaces and cgroup, a throw-away root, runc allowed): installed
/// as the README says, with the shared test stacks bound read-only as its stacks dir, the
/// socket-activated server takes a push of the demo app through its SSH port, runs it
/// in runc and answers it on its HTTP port. Under keep-alive load on the app:
/// `systemctl reload` twice replaces the main process with no request lost, and the app
/// answers the same release; a reload onto a binary whose server fails to start, or onto
/// a binary that does not even run, fails, says why, and leaves the old server serving;
/// `systemctl restart` and a `kill -9` of the main process (`Restart=on-failure`) bring
/// the server back on the same release, their cost in requests is printed. Skips only
/// where nspawn cannot boot systemd, saying why; fails instead under CI=true.
#[test]
fn systemd_units_serve_and_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = slipway_e2e::slipway_bin();
    let stacks = slipway_e2e::cached_stack("python:3.11");
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys folder");
    let key = slipway_e2e::new_key(&keys, "alice");
    let binds = [
        (bin.as_path(), "/opt/build/slipway"),
        (contrib.as_path(), "/opt/build/contrib"),
        (keys.as_path(), "/opt/build/keys"),
        (stacks.as_path(), "/var/lib/slipway-stacks"),
    ];
    let log = dir.path().join("nspawn.log");
    let options = slipway_e2e::nspawn::Options {
        binds: &binds,
        runc: true,
    };
    let Some(machine) =
        slipway_e2e::nspawn::boot_or_skip_with("systemd_units_serve_and_reload", &options, &log)
    else {
        return;
    };
    let sh = |script: &str| machine.sh(script);
    let journal = || {
        text(&sh(
            "journalctl -u slipway.socket -u slipway.service --no-pager",
        ))
    };
    let ok = |script: &str| {
        let o = sh(script);
        assert!(o.status.success(), "{script}: {}\n{}", text(&o), journal());
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // Installed as the README says (the built binary in place of target/release's), with
    // a drop-in: the stacks taken from the shared test stacks (read-only: nothing is
    // built in here), and the cgroup controllers made writable for runc first.
    ok(&format!(
        "cat > /usr/local/sbin/slipway-writable-cgroups <<'EOF'\n{}EOF\n\
         chmod 0755 /usr/local/sbin/slipway-writable-cgroups",
        slipway_e2e::nspawn::WRITABLE_CGROUPS
    ));
    ok("install -m 0755 /opt/build/slipway /usr/local/bin/slipway \
        && cp /opt/build/contrib/slipway.service /opt/build/contrib/slipway.socket /etc/systemd/system/ \
        && mkdir -p /etc/systemd/system/slipway.service.d \
        && printf '[Service]\\nEnvironment=SLIPWAY_STACKS_DIR=/var/lib/slipway-stacks\\nExecStartPre=/usr/local/sbin/slipway-writable-cgroups\\n' > /etc/systemd/system/slipway.service.d/nspawn.conf \
        && systemctl daemon-reload && systemctl enable --now slipway.socket slipway.service");
    ok("slipway user add alice --admin --key /opt/build/keys/alice.pub --data-dir /var/lib/slipway");
    let main_pid = || ok("systemctl show -P MainPID slipway.service");
    let first = main_pid();
    assert_ne!(first, "0", "{}", text(&sh("systemctl status slipway")));
    assert_eq!(
        ok("systemctl is-active slipway.socket slipway.service"),
        "active\nactive"
    );

    // Through the sockets systemd holds, inside the container's network namespace.
    let get = |host: &'static str| machine.in_network(|| slipway_e2e::http_get(8080, host, "/"));
    assert_eq!(
        get("nothing.localhost").map(|(s, _)| s),
        Some(404),
        "HTTP: {}",
        journal()
    );
    let banner = machine.in_network(|| {
        let s = TcpStream::connect(("127.0.0.1", 2222)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line)
    });
    assert!(
        banner.as_deref().is_some_and(|b| b.starts_with("SSH-2.0-")),
        "{banner:?}"
    );
    // A push through the SSH socket deploys the demo app: built and run by runc inside
    // the container, on the python:3.11 stack of the shared stacks.
    let app = App::demo(dir.path(), "app");
    let pushed = machine.in_network(|| {
        slipway_e2e::run(
            std::process::Command::new("git")
                .args(["push", "ssh://git@127.0.0.1:2222/demo.git", "main"])
                .current_dir(&app.dir)
                .env(
                    "GIT_SSH_COMMAND",
                    format!(
                        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
                        key.display()
                    ),
                ),
        )
    });
    assert!(pushed.status.success(), "{}\n{}", text(&pushed), journal());
    let release = || get(HOST);
    assert_eq!(
        release(),
        Some((200, "built-1\n".to_string())),
        "{}",
        journal()
    );

    // Requests keep being answered through every reload below: a client loop on a
    // kept-alive connection, counting every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = {
        let (stop, counts) = (stop.clone(), counts.clone());
        let network = machine.network();
        std::thread::spawn(move || {
            slipway_e2e::nspawn::enter_network(&network);
            load_loop(8080, HOST, Duration::from_millis(5), &stop, &counts);
        })
    };
    let wait_answers = |n: usize| {
        let target = counts.ok.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while counts.ok.load(Ordering::SeqCst) < target {
            assert!(
                Instant::now() < deadline,
                "requests stopped being answered: {}\n{}",
                counts.report(),
                journal()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The same release answers, the server active (after a reload, restart or kill).
    let same_release = |after: &str| {
        assert_eq!(ok("systemctl is-active slipway"), "active", "after {after}");
        assert_eq!(
            release(),
            Some((200, "built-1\n".to_string())),
            "after {after}: {}",
            journal()
        );
        wait_answers(20);
    };
    wait_answers(20);

    // A good reload: a new main process, the service active.
    ok("systemctl reload slipway");
    let second = main_pid();
    assert_ne!(second, first, "reload made a new main process");
    same_release("the first reload");

    // A binary whose server fails to start (here: its OCI runtime is missing).
    ok("printf '#!/bin/sh\\n[ \"$1\" = serve ] && set -- \"$@\" --runtime /nonexistent/runc\\nexec /opt/build/slipway \"$@\"\\n' > /usr/local/bin/slipway.new \
        && chmod 0755 /usr/local/bin/slipway.new && mv /usr/local/bin/slipway.new /usr/local/bin/slipway");
    let o = sh("systemctl reload slipway");
    assert!(
        !o.status.success(),
        "a failed reload fails: {}\n{}",
        text(&o),
        journal()
    );
    let said = ok("journalctl -u slipway --no-pager");
    assert!(
        said.contains("the OCI runtime '/nonexistent/runc' was not found")
            && said.contains(&format!("slipway serve (pid {second}) goes on serving")),
        "the journal says why: {said}"
    );
    let status = text(&sh("systemctl status slipway --no-pager -n 20"));
    assert!(status.contains("goes on serving"), "{status}");
    assert_eq!(main_pid(), second, "the old server stays the main process");
    same_release("a failed reload");

    // A binary that does not run at all (truncated): the reload cannot even start.
    ok("head -c 4096 /opt/build/slipway > /usr/local/bin/slipway.new && chmod 0755 /usr/local/bin/slipway.new \
        && mv /usr/local/bin/slipway.new /usr/local/bin/slipway");
    let o = sh("systemctl reload slipway");
    assert!(
        !o.status.success(),
        "a failed reload fails: {}\n{}",
        text(&o),
        journal()
    );
    assert_eq!(main_pid(), second);
    same_release("a reload onto a truncated binary");

    // The good binary again: the second good reload succeeds.
    ok("install -m 0755 /opt/build/slipway /usr/local/bin/slipway");
    ok("systemctl reload slipway");
    let third = main_pid();
    assert!(third != second && third != "0", "{second} -> {third}");
    same_release("the second reload");
    let reloads = counts.report();
    let lost_in_reloads = counts.failed();

    // A restart (stop, then start: the socket holds the connections meanwhile) and a
    // crash of the main process (Restart=on-failure starts it again): what each costs.
    let before = counts.failed();
    ok("systemctl restart slipway");
    let fourth = main_pid();
    assert!(fourth != third && fourth != "0", "{third} -> {fourth}");
    same_release("systemctl restart");
    let lost_in_restart = counts.failed() - before;
    let before = counts.failed();
    ok(&format!("kill -9 {fourth}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let fifth = loop {
        let pid = main_pid();
        if pid != fourth && pid != "0" && ok("systemctl is-active slipway || true") == "active" {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "systemd did not start the server again: {}",
            journal()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    same_release("kill -9");
    let lost_in_kill = counts.failed() - before;
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    assert!(
        ok("journalctl -u slipway --no-pager").contains("status=9/KILL"),
        "systemd saw the kill: {}",
        journal()
    );
    eprintln!(
        "under systemd: reloads {reloads}; lost by systemctl restart {lost_in_restart}, \
         by kill -9 of the main process {lost_in_kill} (pid {fourth} -> {fifth}); \
         in all: {}",
        counts.report()
    );
    assert_eq!(
        lost_in_reloads,
        0,
        "requests failed during the reloads: {reloads}\n{}",
        text(&sh("journalctl -u slipway --no-pager -o short-unix"))
    );
    assert_eq!(
        counts.not_found.load(Ordering::SeqCst),
        0,
        "the live app was answered 404 (nothing deployed): {}",
        counts.report()
    );
}

/// systemd socket activation without systemd: a wrapper holds the HTTP and SSH
/// listening sockets (so `serve` cannot bind them itself), passes them as descriptors
/// 3 and 4 with `LISTEN_FDS`/`LISTEN_PID`, and execs `slipway serve`.
#[test]
fn serve_uses_sockets_passed_by_systemd_socket_activation() {
    // A data dir with a user, its server stopped.
    let mut first = Server::start();
    first.stop();
    let (http, ssh) = (slipway_e2e::free_port(), slipway_e2e::free_port());
    let wrapper = r#"
import os, socket, sys
fds = []
for port in (int(sys.argv[1]), int(sys.argv[2])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    fds.append(s.detach())
for target, fd in zip((3, 4), fds):
    os.dup2(fd, target)
    os.set_inheritable(target, True)
os.environ["LISTEN_FDS"] = "2"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[3], sys.argv[3:])
"#;
    let log = std::fs::File::create(first.dir.path().join("activated.log")).expect("log");
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(wrapper)
        .arg(http.to_string())
        .arg(ssh.to_string())
        .arg(slipway_e2e::slipway_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(&first.data)
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--ssh-listen")
        .arg(format!("127.0.0.1:{ssh}"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("wrapper");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut answered = None;
    while Instant::now() < deadline {
        answered = slipway_e2e::http_get(http, "nothing.localhost", "/").map(|(s, _)| s);
        if answered.is_some() || child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ssh_banner = {
        let mut s = TcpStream::connect(("127.0.0.1", ssh)).ok();
        let mut buf = [0u8; 7];
        s.as_mut()
            .and_then(|s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.read_exact(&mut buf).ok()
            })
            .map(|()| buf)
    };
    let _ = slipway_e2e::run(
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]),
    );
    let _ = child.wait();
    let log = std::fs::read_to_string(first.dir.path().join("activated.log")).unwrap_or_default();
    assert_eq!(answered, Some(404), "{log}");
    assert_eq!(
        ssh_banner.as_ref().map(|b| &b[..]),
        Some(&b"SSH-2.0"[..]),
        "{log}"
    );
}

/// An app whose `GET /ws` (with `Upgrade`) switches protocols and then echoes every
/// line it reads, prefixed with the build; `GET /` answers the build.
const ECHO_SERVER: &str = r#"import http.server, os
VERSION = open("build.txt").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            for line in self.rfile:
                self.wfile.write(VERSION.encode() + b":" + line)
                self.wfile.flush()
            return
        body = VERSION.encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
S(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// An upgraded connection through the router: sends a line, reads the echo.
struct Tunnel(BufReader<TcpStream>);

impl Tunnel {
    fn open(port: u16) -> Tunnel {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            s,
            "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        .expect("handshake");
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("handshake answer");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Tunnel(r)
    }

    /// The echo of `line`, or None when the connection ended.
    fn echo(&mut self, line: &str) -> Option<String> {
        self.0
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .ok()?;
        let mut answer = String::new();
        match self.0.read_line(&mut answer) {
            Ok(n) if n > 0 => Some(answer.trim_end().to_string()),
            _ => None,
        }
    }
}

#[test]
fn a_websocket_stays_up_through_an_upgrade_until_the_drain_timeout() {
    let mut server = Server::start_with(&[("SLIPWAY_DRAIN_TIMEOUT", "4")]);
    let app = App::demo(server.dir.path(), "app");
    app.write("server.py", ECHO_SERVER);
    app.commit("echo");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let mut ws = Tunnel::open(server.http_port);
    assert_eq!(ws.echo("a").as_deref(), Some("built-1:a"));

    let started = Instant::now();
    let mut during = None;
    let code = server.upgrade(Duration::from_secs(60), |s| {
        // The old server drains: the WebSocket it carries still works, and a new one is
        // carried by the new server.
        std::thread::sleep(Duration::from_millis(500));
        during = Some((ws.echo("b"), Tunnel::open(s.http_port).echo("c")));
    });
    let drained_in = started.elapsed();
    assert_eq!(code, Some(0), "{}", server.server_log());
    let (b, c) = during.expect("ran during the drain");
    assert_eq!(b.as_deref(), Some("built-1:b"), "{}", server.server_log());
    assert_eq!(c.as_deref(), Some("built-1:c"));
    assert!(
        drained_in >= Duration::from_secs(3),
        "the old server waited for the WebSocket (drain timeout 4 s): exited after {drained_in:?}"
    );
    // The drain timeout ended it with the old server.
    assert_eq!(ws.echo("d"), None);
}

#[test]
fn a_deploy_interrupted_by_a_crash_is_cleaned_up_and_the_live_release_stays() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let live = server.containers();

    // v2 builds for a long time: the server crashes in the middle of its deploy.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    sleep 60\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write("VERSION", "2\n");
    app.commit("v2");
    let pushing = push_in_background(&server, &app, "demo");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.server_log().contains("build") || server.containers().len() <= live.len() {
        assert!(
            Instant::now() < deadline,
            "the build did not start:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill9();
    let o = pushing.join().expect("push thread");
    assert!(!o.status.success(), "the push cannot succeed: {}", text(&o));

    server.serve();
    wait_ok(&server);
    assert_eq!(body(&server), "built-1\n");
    // What the interrupted deploy started is removed once the live release is routed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.containers() != live {
        assert!(
            Instant::now() < deadline,
            "left: {:?} (live: {live:?})\n{}",
            server.containers(),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The branch did not move: pushing v2 again deploys it.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("v2 quick");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(body(&server), "built-2\n");
}

#[test]
fn a_new_server_that_fails_before_ready_leaves_the_old_one_serving() {
    let mut server = Server::start();
    let old_pid = server.pid().expect("running");
    // A "new server" that takes the sockets and dies before saying `ready`.
    let fake = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"upgrade 1\n")
msg, fds, _, _ = socket.recv_fds(s, 256, 3)
print(msg.decode().strip(), len(fds))
s.close()
"#;
    let o = slipway_e2e::run(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(fake)
            .arg(server.data.join("serve.sock")),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("listeners {old_pid} 3")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.running(), "the old server still runs");
    assert_eq!(
        server.get("nothing.localhost", "/").map(|(s, _)| s),
        Some(404),
        "and still serves"
    );
    assert!(
        server.server_log().contains("the new server did not start"),
        "{}",
        server.server_log()
    );
    // A later upgrade is not refused as "under way".
    assert_eq!(server.upgrade(Duration::from_secs(60), |_| {}), Some(0));
    assert!(server.running());
    assert_ne!(server.pid(), Some(old_pid));
}

#[test]
fn upgrade_without_a_running_server_starts_as_usual() {
    let mut server = Server::start();
    server.stop();
    let (mut child, serving) = server.spawn_serve(&["--upgrade"]);
    let started = serving.recv_timeout(Duration::from_secs(60)).is_ok();
    let answered = server.get("nothing.localhost", "/").map(|(s, _)| s);
    let _ = slipway_e2e::run(
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]),
    );
    let status = child.wait().expect("wait");
    assert!(started, "{}", server.server_log());
    assert!(server.server_log().contains("no server runs on"));
    assert_eq!(answered, Some(404));
    assert_eq!(status.code(), Some(0));
}

/// A build hook that says it started (`/cache/building`) and waits until the test lets it
/// go on (`/cache/go`, at most 3 minutes): a push that blocks in its build.
const GATED_BUILD: &str = "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    touch /cache/building\n    n=0\n    while [ ! -e /cache/go ]; do sleep 0.2; n=$((n+1)); [ $n -lt 900 ] || exit 1; done\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n";

/// The demo app's plain configuration.
const PLAIN_BUILD: &str = "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n";

/// `git push REMOTE main` from `dir` in a thread, its output read as it comes: the
/// receiver gets a message once the server said the push waits for another deploy.
fn push_watching(
    server: &Server,
    dir: &std::path::Path,
) -> (
    JoinHandle<(bool, String)>,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = std::process::Command::new("git")
        .args(["push", &server.remote("demo"), "main"])
        .current_dir(dir)
        .env("GIT_SSH_COMMAND", server.ssh_command(&server.key))
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git push");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let handle = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).to_string();
            if line.contains("waiting:") {
                let _ = tx.send(line.clone());
            }
            out.push_str(&line);
            out.push('\n');
        }
        let status = child.wait().expect("git push");
        (status.success(), out)
    });
    (handle, rx)
}

/// The lines of `releases demo main`: (number, status, commit prefix).
fn releases(server: &Server) -> Vec<(u32, String, String)> {
    let o = server.ssh(&server.key, "git", "releases demo main");
    assert!(o.status.success(), "releases: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((
                f.next()?.parse().ok()?,
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

/// The commit `refs/heads/main` of the demo project's repository points at.
fn branch_head(server: &Server) -> String {
    let o = slipway_e2e::run(
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(slipway_e2e::repo_dir(server, "demo"))
            .args(["rev-parse", "refs/heads/main"]),
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A push of `main` blocks in its build on the old server; the server is upgraded; a
/// second push of `main` to the new server must wait for the first (the environment's
/// lock holds across the two processes), then deploys on top of it when it builds on it
/// (`descends`), else is refused. Either way the branch ends at the live release.
fn race_pushes_through_an_upgrade(descends: bool) {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(body(&server), "built-1\n");
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);
    let old_pid = server.pid().expect("running");

    // A: v2, whose build waits for the test.
    // The build's /cache, as the host writes into it while the build runs (its disk is
    // mounted there).
    let cache = server.data.join("cache/demo/main/hello/files");
    app.write(".platform.app.yaml", GATED_BUILD);
    app.write("VERSION", "2\n");
    let a = app.commit("v2 (gated build)");
    let (pushing_a, a_waits) = push_watching(&server, &app.dir);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !cache.join("building").exists() {
        assert!(
            Instant::now() < deadline,
            "the build of v2 did not start:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // B: v3, on top of A, or beside it (from v1).
    let other = App {
        dir: server.dir.path().join("other"),
    };
    let b_dir = if descends {
        app.dir.clone()
    } else {
        let o = slipway_e2e::run(
            std::process::Command::new("git")
                .arg("clone")
                .arg("-q")
                .arg(&app.dir)
                .arg(&other.dir),
        );
        assert!(o.status.success(), "{}", text(&o));
        other.git_ok(&["checkout", "-q", "-B", "main", &v1]);
        other.dir.clone()
    };
    let b_app = App { dir: b_dir };
    b_app.write(".platform.app.yaml", PLAIN_BUILD);
    b_app.write("VERSION", "3\n");
    let b = b_app.commit("v3");

    let mut b_push = None;
    let code = server.upgrade(Duration::from_secs(300), |s| {
        // The old server stops accepting once the new one said `ready`: from then on
        // every SSH connection reaches the new server.
        wait_until_the_old_server_stops_accepting(s);
        std::thread::sleep(Duration::from_millis(300));
        let (pushing_b, b_waits) = push_watching(s, &b_app.dir);
        // B waits for A, which still builds in the old server.
        let waiting = b_waits.recv_timeout(Duration::from_secs(120));
        let a_running = !pushing_a.is_finished();
        std::fs::write(cache.join("go"), "").expect("let the build of v2 go on");
        b_push = Some((pushing_b, waiting, a_running));
    });
    assert_the_old_server_exited(&server, code, old_pid);

    let (pushing_b, waiting, a_running) = b_push.expect("B pushed");
    let (a_ok, a_out) = pushing_a.join().expect("push A");
    let (b_ok, b_out) = pushing_b.join().expect("push B");
    assert!(a_ok, "A, the push in flight, completes: {a_out}");
    assert!(a_waits.try_recv().is_err(), "A waited for nothing: {a_out}");
    let waiting = waiting.unwrap_or_else(|_| {
        panic!(
            "B never said it waits for A:\n{b_out}\n{}",
            server.server_log()
        )
    });
    assert!(a_running, "A still ran when B waited");
    assert!(
        waiting.contains("in the other slipway server")
            && waiting.contains(&format!("pid {old_pid} ("))
            && waiting.contains("running a push by me to main of demo"),
        "B waited for the old server's deploy, and said whose: {waiting}"
    );
    let short = |id: &str| id[..12].to_string();
    if descends {
        assert!(b_ok, "B deploys after A: {b_out}\n{}", server.server_log());
        assert!(
            b_out.contains(&format!(
                "main moved to {} while this push waited",
                short(&a)
            )),
            "B deployed on top of A: {b_out}"
        );
    } else {
        assert!(!b_ok, "B is refused: {b_out}");
        assert!(
            b_out.contains("main changed while this push waited (fetch first, then push again)"),
            "{b_out}"
        );
    }

    // The branch ends at the live release, and the releases went in order: A's before B's.
    let (winner, version) = if descends { (&b, "3") } else { (&a, "2") };
    wait_ok(&server);
    assert_eq!(body(&server), format!("built-{version}\n"));
    assert_eq!(&branch_head(&server), winner);
    let rs = releases(&server);
    let live: Vec<_> = rs.iter().filter(|r| r.1 == "live").collect();
    assert_eq!(live.len(), 1, "{rs:?}");
    assert_eq!(live[0].2, short(winner), "{rs:?}");
    let number_of = |id: &str| rs.iter().find(|r| r.2 == short(id)).map(|r| r.0);
    let a_number = number_of(&a).expect("A's release");
    match number_of(&b) {
        Some(b_number) => {
            assert!(descends, "the refused B made no release: {rs:?}");
            assert!(a_number < b_number, "{rs:?}");
        }
        None => assert!(!descends, "B's release: {rs:?}"),
    }
}

#[test]
fn a_push_racing_one_in_the_old_server_through_an_upgrade_waits_then_deploys_on_top() {
    race_pushes_through_an_upgrade(true);
}

#[test]
fn a_push_racing_one_in_the_old_server_through_an_upgrade_waits_then_is_refused_if_it_does_not_build_on_it(
) {
    race_pushes_through_an_upgrade(false);
}

/// The `cron` activities of demo/main whose summary names `name`, oldest first.
fn cron_runs(server: &Server, name: &str) -> Vec<serde_json::Value> {
    let o = server.ssh(&server.key, "git", "activity demo main --json");
    assert!(o.status.success(), "activity: {}", text(&o));
    let all: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("activity json");
    let prefix = format!("cron {name}:");
    let mut runs: Vec<serde_json::Value> = all
        .into_iter()
        .filter(|a| a["kind"] == "cron" && a["summary"].as_str().unwrap_or("").starts_with(&prefix))
        .collect();
    runs.sort_by_key(|a| a["id"].as_i64());
    runs
}

#[test]
fn a_cron_run_going_at_an_upgrade_finishes_in_the_old_server_and_never_overlaps_the_new_ones() {
    // One schedule minute lasts 2 seconds; a run lasts 5.
    let mut server = Server::start_with(&[("SLIPWAY_CRON_TICK", "2")]);
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\ncrons:\n  slow:\n    spec: '* * * * *'\n    commands:\n      start: 'echo slow start; sleep 5; echo slow done'\n",
    );
    app.commit("a slow cron");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let going = loop {
        let runs = cron_runs(&server, "slow");
        if let Some(r) = runs.iter().find(|r| r["status"] == "running") {
            break r["id"].as_i64().expect("id");
        }
        assert!(
            Instant::now() < deadline,
            "no run of slow started:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let old_pid = server.pid().expect("running");
    let code = server.upgrade(Duration::from_secs(120), |_| {});
    assert_eq!(code, Some(0), "{}", server.server_log());
    assert_ne!(server.pid(), Some(old_pid));

    // The new server runs it from now on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = cron_runs(&server, "slow");
        let after = runs
            .iter()
            .filter(|r| r["id"].as_i64() > Some(going) && r["status"] == "success")
            .count();
        if after >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new server ran no slow run: {runs:?}\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let runs = cron_runs(&server, "slow");
    let run = runs
        .iter()
        .find(|r| r["id"].as_i64() == Some(going))
        .expect("the run going at the upgrade");
    assert_eq!(
        run["status"], "success",
        "the old server let it finish: {run}"
    );
    let o = server.ssh(&server.key, "git", &format!("activity log {going}"));
    assert!(text(&o).contains("slow done"), "{}", text(&o));
    // Never two at once, across the two servers: each run started once the one before
    // had finished.
    let finished: Vec<&serde_json::Value> =
        runs.iter().filter(|r| r["status"] != "running").collect();
    for pair in finished.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b["started_at"].as_i64() >= a["finished_at"].as_i64(),
            "runs overlap: {a} {b}"
        );
    }
}

/// A push waiting for its environment's deploy lock held by another process gives up after
/// the bound (`SLIPWAY_LOCK_WAIT_TIMEOUT`), naming the holder, and changes nothing: the
/// branch and the live release stay. Once the lock is free the same push deploys.
#[test]
fn a_push_waiting_for_a_lock_held_elsewhere_gives_up_naming_the_holder_and_changes_nothing() {
    let server = Server::start_with(&[("SLIPWAY_LOCK_WAIT_TIMEOUT", "3")]);
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let v1 = branch_head(&server);
    let releases_before = releases(&server);
    app.write("VERSION", "2\n");
    app.commit("v2");

    // Another process holds the lock, as a stuck server would.
    let lock = server.data.join("locks/demo/main/deploy.lock");
    assert!(lock.exists(), "the first push made its lock file");
    // `-o`: the lock stays flock's own, not its command's too.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["-c", "echo held; exec sleep 300"])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("flock");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("flock says it holds the lock");
    assert_eq!(line.trim(), "held");
    let holder_pid = holder.id();

    let (ok, out) = push(&server, &app);
    let _ = slipway_e2e::run(std::process::Command::new("kill").args([
        "-KILL",
        "--",
        &format!("-{holder_pid}"),
    ]));
    let _ = holder.wait();
    assert!(!ok, "the push gives up: {out}");
    assert!(
        out.contains(&format!(
            "waiting: another deploy of main is running in another process: pid {holder_pid} (flock "
        )),
        "it says it waits, and for whom: {out}"
    );
    assert!(out.contains("gives up after 3 s"), "{out}");
    assert!(
        out.contains("s waiting for the deploy lock of main, held by pid")
            && out.contains(&format!("held by pid {holder_pid} (flock "))
            && out.contains("nothing was changed"),
        "it gives up naming the holder: {out}"
    );
    assert_eq!(branch_head(&server), v1, "the branch did not move");
    assert_eq!(releases(&server), releases_before, "no release was made");
    assert_eq!(body(&server), "built-1\n");

    // The lock free, the same push deploys.
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(body(&server), "built-2\n");
    assert_ne!(branch_head(&server), v1);
}

/// The old server of an upgrade drains its open SSH sessions and its cron runs together,
/// under one grace period: with both still going when it stops accepting, it exits about
/// one grace later, not two.
#[test]
fn an_upgraded_server_drains_ssh_sessions_and_cron_runs_together_under_one_grace() {
    const GRACE: u64 = 6;
    let mut server = Server::start_with(&[
        ("SLIPWAY_CRON_TICK", "2"),
        ("SLIPWAY_UPGRADE_GRACE", &GRACE.to_string()),
    ]);
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\ncrons:\n  long:\n    spec: '* * * * *'\n    commands:\n      start: 'echo long start; sleep 300'\n",
    );
    app.commit("a cron that outlasts the grace");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cron_runs(&server, "long")
        .iter()
        .any(|r| r["status"] == "running")
    {
        assert!(
            Instant::now() < deadline,
            "no run of long started:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // An SSH session that never ends on its own.
    let mut session = std::process::Command::new("ssh");
    for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
        session.arg(a);
    }
    let mut session = session
        .arg("-p")
        .arg(server.ssh_port.to_string())
        .arg("git@127.0.0.1")
        .arg("logs demo main -f")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(session.try_wait(), Ok(None)),
        "the session is open"
    );

    let mut stopped_accepting = None;
    let code = server.upgrade(Duration::from_secs(120), |s| {
        wait_until_the_old_server_stops_accepting(s);
        stopped_accepting = Some(Instant::now());
    });
    let drained_in = stopped_accepting.expect("seen").elapsed();
    // The old server closed the session as it exited.
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(session.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = session.kill();
            let _ = session.wait();
            panic!("the SSH session outlived the old server");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code, Some(0), "{}", server.server_log());
    eprintln!("the old server drained in {drained_in:?} (grace {GRACE} s)");
    let log = server.server_log();
    assert!(
        log.contains("cron runs still going at exit are cut short"),
        "the cron run outlasted the grace: {log}"
    );
    // Both waited for, together: at least one grace, well under two.
    assert!(
        drained_in >= Duration::from_secs(GRACE - 1),
        "the old server waited for the session and the cron run: {drained_in:?}"
    );
    assert!(
        drained_in < Duration::from_secs(2 * GRACE - 1),
        "one grace for both, not one after the other: {drained_in:?}\n{log}"
    );
}

/// A `serve --upgrade` that fails after taking the sockets (here: an HTTPS address it
/// cannot listen on) leaves the old server serving every request, and says why it failed
/// and that the old one goes on; a later upgrade works.
#[test]
fn a_failed_upgrade_under_load_loses_no_request_and_says_why() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let old_pid = server.pid().expect("running");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load(server.http_port, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));

    // 192.0.2.1 (TEST-NET-1) is no address of this host.
    let o = slipway_e2e::run(
        std::process::Command::new(slipway_e2e::slipway_bin())
            .args(["serve", "--upgrade", "--data-dir"])
            .arg(&server.data)
            .arg("--ssh-listen")
            .arg(format!("127.0.0.1:{}", server.ssh_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", server.http_port))
            .args(["--https-listen", "192.0.2.1:8443"])
            .env("SLIPWAY_STACKS_DIR", slipway_e2e::test_stacks()),
    );
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "the upgrade failed; slipway serve (pid {old_pid}) goes on serving"
        )) && said.contains("listening for HTTPS on 192.0.2.1:8443"),
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.server_log().contains("the new server did not start") {
        assert!(Instant::now() < deadline, "{}", server.server_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    counts.wait_for_more_ok(50);
    assert!(server.running(), "the old server still runs");
    assert_eq!(server.pid(), Some(old_pid));

    // A later upgrade is not refused, and loses nothing either.
    assert_eq!(server.upgrade(Duration::from_secs(60), |_| {}), Some(0));
    assert_ne!(server.pid(), Some(old_pid));
    wait_ok(&server);
    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    eprintln!(
        "failed upgrade, then an upgrade: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    counts.assert_none_failed(&server);
}

/// Servers stopped (SIGTERM, then waited for) when dropped.
struct Stopped(Vec<u32>);

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = slipway_e2e::run(
                    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]),
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.0.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Install the binary `from` at `installed` as an operator does (a new file renamed over
/// the old one, which a running server keeps).
fn install_binary(installed: &std::path::Path, from: &std::path::Path) {
    std::fs::create_dir_all(installed.parent().expect("folder")).expect("bin folder");
    let tmp = installed.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp).expect("copy the binary");
    }
    std::fs::rename(&tmp, installed).expect("install");
}

/// An executable shell script at `path`.
fn write_script(path: &std::path::Path, script: &str) {
    std::fs::write(path, script).expect("script");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// `slipway reload` from a shell (what `contrib/slipway.service` runs as `ExecReload`)
/// waits for the new server and tells the truth: with no server it says so; onto a
/// broken binary at the server's path, or one whose server fails to start, it exits 1
/// saying why and that the old server goes on serving (which it does, holding the data
/// dir); onto a working binary it exits 0 naming the new server, which then serves and
/// holds the data dir while the old one exits 0.
#[test]
fn slipway_reload_waits_for_the_new_server_and_fails_when_it_fails() {
    let mut server = Server::start();
    server.stop();
    let o = server.slipway(&["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no slipway serve answers on"),
        "{}",
        text(&o)
    );

    let installed = server.dir.path().join("bin/slipway");
    install_binary(&installed, &slipway_e2e::slipway_bin());
    let (mut old, serving) = server.spawn_serve_from(&installed, &[]);
    let mut servers = Stopped(vec![old.id()]);
    assert!(
        serving.recv_timeout(Duration::from_secs(60)).is_ok(),
        "{}",
        server.server_log()
    );
    let serves =
        |server: &Server| server.get("nothing.localhost", "/").map(|(s, _)| s) == Some(404);
    let goes_on = format!("slipway serve (pid {}) goes on serving", old.id());

    // A binary that exits 1 at once.
    let broken = server.dir.path().join("broken");
    write_script(&broken, "#!/bin/sh\necho 'broken binary' >&2\nexit 1\n");
    install_binary(&installed, &broken);
    let o = server.slipway(&["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("exited with code 1 without serving") && text(&o).contains(&goes_on),
        "{}",
        text(&o)
    );
    assert!(matches!(old.try_wait(), Ok(None)), "the old server runs");
    assert_eq!(lock_pid(&server), old.id());
    assert!(serves(&server));

    // A binary whose server fails to start, saying why (here: no OCI runtime).
    write_script(
        &broken,
        &format!(
            "#!/bin/sh\n[ \"$1\" = serve ] && set -- \"$@\" --runtime /nonexistent/runc\nexec {} \"$@\"\n",
            slipway_e2e::slipway_bin().display()
        ),
    );
    install_binary(&installed, &broken);
    let o = server.slipway(&["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("the OCI runtime '/nonexistent/runc' was not found")
            && text(&o).contains(&goes_on),
        "{}",
        text(&o)
    );
    assert!(matches!(old.try_wait(), Ok(None)), "the old server runs");
    assert!(serves(&server));

    // A working binary: the reload succeeds once the new server serves.
    install_binary(&installed, &slipway_e2e::slipway_bin());
    let o = server.slipway(&["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    let new_pid = lock_pid(&server);
    servers.0.push(new_pid);
    assert_ne!(new_pid, old.id());
    assert!(
        text(&o).contains(&format!("reloaded: slipway serve (pid {new_pid}) serves")),
        "{}",
        text(&o)
    );
    assert!(serves(&server));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(st)) = old.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "{}", server.server_log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", server.server_log());
    assert!(serves(&server));
    drop(servers);
}

/// Upgrading from a server of before `slipway reload`, which closes `serve.sock` on a
/// `reload` request without a word (`SLIPWAY_TEST_AS_BEFORE_RELOAD` makes this one answer
/// so): the new `slipway reload` (the new unit's `ExecReload`) sends SIGHUP to the server
/// the data dir's lock names, and exits 0 once a new server took over and the old one
/// exited, with no request lost. A lock naming a process that is no server (a pid reused
/// after a crash) is refused, and that process is not signalled.
#[test]
fn slipway_reload_upgrades_a_server_of_before_reload_by_sighup() {
    let mut server = Server::start_with(&[("SLIPWAY_TEST_AS_BEFORE_RELOAD", "1")]);
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    let old_pid = server.pid().expect("running");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load(server.http_port, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));

    let o = server.slipway(&["reload"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    let new_pid = lock_pid(&server);
    let servers = Stopped(vec![new_pid]);
    assert_ne!(new_pid, old_pid);
    assert!(
        text(&o).contains("reloaded by SIGHUP")
            && text(&o).contains(&format!("slipway serve (pid {new_pid}) serves")),
        "{}",
        text(&o)
    );
    assert!(!server.running(), "the old server exited before reload did");
    assert_eq!(server.stop(), Some(0), "{}", server.server_log());
    assert!(alive(new_pid), "the new server runs");
    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    counts.assert_none_failed(&server);
    assert_eq!(body(&server), "built-1\n");
    drop(servers);

    // No server any more; the lock is held by a process that is no server, whose pid it
    // names, and something answers on serve.sock as an old server would.
    let lock = server.data.join("serve.lock");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo $$ > \"$0\" && exec sleep 60"])
        .arg(&lock)
        .spawn()
        .expect("flock");
    let deadline = Instant::now() + Duration::from_secs(10);
    let named = loop {
        let pid = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        match pid {
            Some(pid) if pid != new_pid => break pid,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the lock file names no new pid");
        std::thread::sleep(Duration::from_millis(20));
    };
    let sock = server.data.join("serve.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("serve.sock");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(conn).read_line(&mut line);
        }
    });
    let o = server.slipway(&["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("which is no running slipway serve"),
        "{}",
        text(&o)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive(named) && matches!(holder.try_wait(), Ok(None)),
        "the process the lock names was not signalled"
    );
    let _ = slipway_e2e::run(std::process::Command::new("kill").arg(named.to_string()));
    let _ = holder.wait();
}

/// `systemctl reload` (SIGHUP) when the binary installed at the server's path is broken
/// (exits 1): the old server goes on serving every request and logs why; once a working
/// binary is installed there, the next SIGHUP upgrades to it.
#[test]
fn a_reload_onto_a_broken_binary_leaves_the_old_server_serving() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    server.stop();
    // The server runs from a path of its own, as /usr/local/bin/slipway.
    let installed = server.dir.path().join("bin/slipway");
    let install = |from: &std::path::Path| install_binary(&installed, from);
    install(&slipway_e2e::slipway_bin());
    let (mut old, serving) = server.spawn_serve_from(&installed, &[]);
    // Servers that are no `Server`'s child: stopped whatever happens.
    let mut servers = Stopped(vec![old.id()]);
    assert!(
        serving.recv_timeout(Duration::from_secs(60)).is_ok(),
        "{}",
        server.server_log()
    );
    wait_ok(&server);

    let broken = server.dir.path().join("broken");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'broken binary: refusing to start' >&2\nexit 1\n",
    )
    .expect("script");
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    install(&broken);

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load(server.http_port, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));
    let hup = |pid: u32| {
        let o =
            slipway_e2e::run(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]));
        assert!(o.status.success(), "{}", text(&o));
    };
    hup(old.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.server_log().contains("SIGHUP: the upgrade failed") {
        assert!(Instant::now() < deadline, "{}", server.server_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.server_log();
    assert!(log.contains("broken binary: refusing to start"), "{log}");
    assert!(log.contains("exited with code 1 without serving"), "{log}");
    counts.wait_for_more_ok(50);
    assert!(matches!(old.try_wait(), Ok(None)), "the old server serves");
    assert_eq!(lock_pid(&server), old.id());

    // A working binary installed, the next reload upgrades.
    install(&slipway_e2e::slipway_bin());
    hup(old.id());
    let status = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = old.try_wait() {
                break st;
            }
            assert!(Instant::now() < deadline, "{}", server.server_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let new_pid = lock_pid(&server);
    servers.0.push(new_pid);
    wait_ok(&server);
    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    drop(servers);
    eprintln!(
        "reload onto a broken binary, then a working one: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    assert_eq!(status.code(), Some(0), "{}", server.server_log());
    assert_ne!(new_pid, old.id());
    counts.assert_none_failed(&server);
}

/// `contrib/slipway.service` and `.socket` pass `systemd-analyze verify` (which reads unit
/// files without a running systemd manager), with the built binary at `ExecStart`: keys,
/// values, the socket naming the service and the binary being executable. A unit with a
/// mistake fails the same check. Runs where `systemd-analyze` is installed (never skipped
/// on CI).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is missing (apt-get install systemd)"
        );
        eprintln!("SKIPPED systemd_units_pass_systemd_analyze_verify: no systemd-analyze");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = slipway_e2e::slipway_bin();
    let service = std::fs::read_to_string(root.join("contrib/slipway.service")).expect("unit");
    let socket = std::fs::read_to_string(root.join("contrib/slipway.socket")).expect("unit");
    for (key, what) in [
        ("Restart=on-failure", "restarted when it fails"),
        ("LimitNOFILE=", "a raised open-files limit"),
        ("ExecReload=", "reload upgrades"),
        ("Type=notify", "READY=1 from the server"),
        (
            "NotifyAccess=all",
            "MAINPID= from the new server of an upgrade",
        ),
    ] {
        assert!(
            service.lines().any(|l| l.starts_with(key)),
            "slipway.service: {key} ({what})"
        );
    }
    let verify = |service: &str| {
        let service_path = dir.path().join("slipway.service");
        let socket_path = dir.path().join("slipway.socket");
        std::fs::write(
            &service_path,
            service.replace("/usr/local/bin/slipway", &bin.display().to_string()),
        )
        .expect("unit");
        std::fs::write(&socket_path, &socket).expect("unit");
        slipway_e2e::run(
            std::process::Command::new(analyze)
                .args(["verify", "--man=no"])
                .arg(&service_path)
                .arg(&socket_path)
                .current_dir(dir.path()),
        )
    };
    let o = verify(&service);
    assert!(
        o.status.success() && text(&o).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&o)
    );
    // The check sees a mistake: a misspelled key (a warning only) and a missing binary.
    let o = verify(&service.replace("Restart=on-failure", "Restrat=on-failure"));
    assert!(text(&o).contains("Restrat"), "{}", text(&o));
    let o = verify(&service.replace("/usr/local/bin/slipway", "/nonexistent/slipway"));
    assert!(!o.status.success(), "{}", text(&o));
}

/// `front` answers `/` with what `http://back.internal/` answers (`failed: WHY` when the
/// call fails, answered 502); `back` answers `back` and its VERSION; `/probe/ADDR` says
/// whether port 80 of ADDR accepts a connection. `front`'s `/slow` answers what `back`'s
/// `/slow` does: it makes `/tmp/waiting`, then answers 200 once `back` got `/release` or
/// `/tmp/go` exists (504 if neither within 100 s);
/// `front`'s `/call/ADDR/PATH` answers what `http://ADDR/PATH` does (not through the
/// egress proxy).
const DUO_SERVER: &str = r#"import http.server, os, socket, threading, time, urllib.request
released = threading.Event()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        status = 200
        back = os.environ["PLATFORM_APPLICATION_NAME"] == "back"
        if self.path.startswith("/probe/"):
            try:
                socket.create_connection((self.path[7:], 80), timeout=5).close()
                body = b"reached"
            except OSError as e:
                body = ("unreachable: %s" % e).encode()
        elif back and self.path == "/slow":
            open("/tmp/waiting", "w").close()
            let_go = lambda: released.is_set() or os.path.exists("/tmp/go")
            deadline = time.time() + 100
            while not let_go() and time.time() < deadline:
                time.sleep(0.1)
            status, body = (200, b"released") if let_go() else (504, b"never released")
        elif back and self.path == "/release":
            released.set()
            body = b"released"
        elif back:
            body = ("back " + open("VERSION").read().strip()).encode()
        else:
            url, timeout, open_url = "http://back.internal/", 20, urllib.request.urlopen
            if self.path == "/slow":
                url, timeout = "http://back.internal/slow", 120
            elif self.path.startswith("/call/"):
                # Straight there: the egress proxy takes only what is outside.
                url = "http://" + self.path[6:]
                open_url = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
            try:
                body = open_url(url, timeout=timeout).read()
            except OSError as e:
                status, body = 502, ("failed: %s" % e).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The environment of [`duo_config`]'s project `duo`.
const DUO: &str = "main.duo.localhost";

/// GET `/slow` of [`DUO`] on a thread of its own (see [`DUO_SERVER`]); joining it gives
/// the status answered (`None`: no answer).
fn slow_request(port: u16) -> JoinHandle<Option<u16>> {
    std::thread::spawn(move || {
        let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(200)))
            .expect("timeout");
        match get_on(&mut BufReader::new(conn), DUO, "/slow") {
            Answer::Status(status, _) => Some(status),
            Answer::Nothing | Answer::Broken => None,
        }
    })
}

/// The path, seen from the host, of `path` in the running container `id` of `server`
/// (through its process's root: its `/tmp` is a tmpfs of its own).
fn in_container(server: &Server, id: &str, path: &str) -> std::path::PathBuf {
    let o = slipway_e2e::run(
        std::process::Command::new("runc")
            .arg("--root")
            .arg(server.data.join("runtime").join("state"))
            .args(["state", id]),
    );
    let state: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("runc state {id}: {e}: {}", text(&o)));
    let pid = state["pid"].as_u64().expect("a running container's pid");
    std::path::PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// Wait (at most 120 s) until `server` has no container of release 1 of [`DUO`].
fn wait_until_duo_release_1_stopped(server: &Server) {
    let release_1 = |id: &str| id.starts_with("duo.main.") && id.ends_with(".r1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.containers().iter().any(|(id, _)| release_1(id)) {
        assert!(
            Instant::now() < deadline,
            "release 1's containers still run: {:?}\n{}",
            server.containers(),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `front` relates to `back`; its deploy hook calls `back` (`BUILD` is `front`'s build
/// hook).
fn duo_config(build: &str) -> String {
    format!(
        "applications:
  front:
    type: python:3.11
    source: {{root: front}}
    relationships:
      back: 'back:http'
    hooks:
      build: |
{build}
      deploy: |
        set -e
        echo \"hook saw: $(python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://back.internal/\", timeout=20).read().decode())')\"
    web: {{commands: {{start: python3 server.py}}}}
  back:
    type: python:3.11
    source: {{root: back}}
    web: {{commands: {{start: python3 server.py}}}}
routes:
  'http://{{default}}/': {{type: upstream, upstream: 'front:http'}}
"
    )
}

/// Issue 18 with app relationships: the router's listeners on an environment's app
/// addresses (`back.internal:80`) are handed over in a graceful upgrade as the public
/// ones are. A caller loops on the relationship (`front` calls `back` for every request)
/// through `serve --upgrade`: no call fails. A push whose build is still running in the
/// old server when it stops accepting deploys there, after its workers stopped: the
/// listeners of its new release are made then, and its deploy hook's call to
/// `back.internal` is answered all the same (the old server serves what they accept
/// itself), so the push completes and `front` reaches the new `back`. Release 1, which that
/// deploy replaced, is stopped by the new server, which routed it last, once its own
/// requests to it finished: a request it had under way to release 1 (over the old
/// server's exit) is answered in full; then it stops listening on release 1's addresses.
#[test]
fn relationship_calls_lose_nothing_through_an_upgrade_and_a_deploy_in_flight_reaches_its_apps() {
    let mut server = Server::start();
    let plain = "        true";
    let duo = server.project(
        "duo",
        &[
            (".upsun/config.yaml", &duo_config(plain)),
            ("front/server.py", DUO_SERVER),
            ("back/server.py", DUO_SERVER),
            ("back/VERSION", "v1\n"),
        ],
    );
    let out = server.push_ok(&duo, "duo");
    assert!(out.contains("hook saw: back v1"), "{out}");
    assert_eq!(
        server.get(DUO, "/").map(|(_, b)| b).as_deref(),
        Some("back v1")
    );
    let old_pid = server.pid().expect("running");

    // v2: `back` changes; `front`'s build waits for the test.
    let cache = server.data.join("cache/duo/main/front/files");
    let gated = "        set -e\n        touch /cache/building\n        n=0\n        while [ ! -e /cache/go ]; do sleep 0.2; n=$((n+1)); [ $n -lt 900 ] || exit 1; done\n        rm -f /cache/go /cache/building";
    duo.write(".upsun/config.yaml", &duo_config(gated));
    duo.write("back/VERSION", "v2\n");
    duo.commit("back v2, a gated build");

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let loader = load_host(server.http_port, DUO, stop.clone(), counts.clone());
    std::thread::sleep(Duration::from_millis(300));

    let pushing = push_in_background(&server, &duo, "duo");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !cache.join("building").exists() {
        assert!(
            Instant::now() < deadline,
            "the build of v2 did not start:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut slow = None;
    let code = server.upgrade(Duration::from_secs(300), |s| {
        // Once the old server stopped accepting, a request reaches release 1 through the
        // new server and stays there until the test ends it; then the build goes on.
        wait_until_the_old_server_stops_accepting(s);
        slow = Some(slow_request(s.http_port));
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(cache.join("go"), b"").expect("let the build go on");
    });
    assert_the_old_server_exited(&server, code, old_pid);
    // The old server exited, its deploy having replaced release 1: release 1 still runs,
    // as the new server has a request under way to it (its `front` calling its `back`).
    // Its `back` is let go through its relationship address (from release 2's `front`),
    // and the request is answered in full. (The old server stopped release 1 8 s after
    // its switch, whatever the new server still sent it.)
    let [hi, lo] = 11_001u16.to_be_bytes(); // `back` of release 1: port 10000 + 1000 + 1
    let released = server.get(DUO, &format!("/call/127.4.{hi}.{lo}/release"));
    let slow = slow
        .expect("the slow request started")
        .join()
        .expect("slow request thread");
    assert_eq!(
        slow,
        Some(200),
        "a request to release 1 under way when the old server exited is answered in full (letting it go: {released:?})\n{}",
        server.server_log()
    );

    let o = pushing.join().expect("push thread");
    assert!(
        o.status.success() && text(&o).contains("hook saw: back v2"),
        "the push in flight deploys, its hook reaching the new back: {}\n{}",
        text(&o),
        server.server_log()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get(DUO, "/").map(|(_, b)| b).as_deref() != Some("back v2") {
        assert!(
            Instant::now() < deadline,
            "front does not reach back v2: {:?}\n{}",
            server.get(DUO, "/"),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Release 1's addresses, which the new server listened on since it took over, close
    // once its requests to release 1 finished, before it stops release 1's containers:
    // nothing stays listening there for a later release on the same ports (release 56)
    // to find.
    let old_back = format!("/probe/127.4.{hi}.{lo}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let probe = server
            .get(DUO, &old_back)
            .map(|(_, b)| b)
            .unwrap_or_default();
        if probe.starts_with("unreachable") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "release 1's back address still answers: {probe}\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // And the new server stops release 1's containers: nothing is left running.
    wait_until_duo_release_1_stopped(&server);
    counts.wait_for_more_ok(50);
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    eprintln!(
        "relationship calls through an upgrade: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    counts.assert_none_failed(&server);
}

/// A release retired in the old server before an upgrade, still draining a request when
/// the old server hands over (the new server restored its successor and never routed it),
/// is drained by the old server, left running and named to the new one, which stops it
/// once the old server exited: the request is answered in full and nothing of release 1
/// is left running.
#[test]
fn a_release_still_draining_in_the_old_server_at_an_upgrade_is_stopped_by_the_new_one() {
    let mut server = Server::start();
    let duo = server.project(
        "duo",
        &[
            (".upsun/config.yaml", &duo_config("        true")),
            ("front/server.py", DUO_SERVER),
            ("back/server.py", DUO_SERVER),
            ("back/VERSION", "v1\n"),
        ],
    );
    server.push_ok(&duo, "duo");
    // A request to release 1 (its `front` calling its `back`), held in `back`.
    let slow = slow_request(server.http_port);
    let waiting = in_container(&server, "duo.main.back.r1", "/tmp/waiting");
    let go = in_container(&server, "duo.main.back.r1", "/tmp/go");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting.exists() {
        assert!(
            Instant::now() < deadline,
            "the slow request did not reach back:\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Release 2 goes live: release 1 drains in this server.
    duo.write("back/VERSION", "v2\n");
    duo.commit("back v2");
    let out = server.push_ok(&duo, "duo");
    assert!(out.contains("hook saw: back v2"), "{out}");
    let old_pid = server.pid().expect("running");
    let code = server.upgrade(Duration::from_secs(300), |s| {
        wait_until_the_old_server_stops_accepting(s);
        std::fs::write(&go, b"").expect("let the slow request go");
    });
    assert_the_old_server_exited(&server, code, old_pid);
    let slow = slow.join().expect("slow request thread");
    assert_eq!(
        slow,
        Some(200),
        "the request to release 1 is answered in full\n{}",
        server.server_log()
    );
    wait_until_duo_release_1_stopped(&server);
    let log = server.server_log();
    assert!(
        log.contains("the new server stops it once this one exited")
            && log.contains("retiring release 1 for the old server"),
        "the new server stops release 1:\n{log}"
    );
    assert_eq!(
        server.get(DUO, "/").map(|(_, b)| b).as_deref(),
        Some("back v2")
    );
}
