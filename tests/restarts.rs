//! Restarting and upgrading `slipway serve` (issue 18, spec section 1): a live host is
//! never answered 404 while a server starts, a graceful upgrade loses no request and
//! lets a push in flight complete, and one data dir has one server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, Server};

const HOST: &str = "main.demo.localhost";

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

/// One GET on a kept-alive connection: the status, and whether the server closes it.
fn get_on(conn: &mut BufReader<TcpStream>) -> Answer {
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: slipway-e2e\r\n\r\n");
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
    std::thread::spawn(move || {
        let mut conn: Option<(BufReader<TcpStream>, bool)> = None;
        while !stop.load(Ordering::SeqCst) {
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
            match get_on(&mut c) {
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
    })
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

#[test]
fn restart_and_crash_never_answer_404_for_a_live_host() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app);
    assert!(ok, "{out}");
    assert_eq!(body(&server), "built-1\n");

    for crash in [false, true] {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let loader = load(server.http_port, stop.clone(), counts.clone());
        std::thread::sleep(Duration::from_millis(300));
        if crash {
            server.kill9();
        } else {
            assert_eq!(server.stop(), Some(0), "{}", server.server_log());
        }
        server.serve();
        wait_ok(&server);
        let ok_after = counts.ok.load(Ordering::SeqCst);
        while counts.ok.load(Ordering::SeqCst) < ok_after + 50 {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
        loader.join().expect("load thread");
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

    let pushing = {
        let dir = app.dir.clone();
        let remote = server.remote("demo");
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
    };
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
    assert_eq!(
        code,
        Some(0),
        "the old server exits 0\n{}",
        server.server_log()
    );
    assert_ne!(server.pid(), Some(old_pid));

    let o = pushing.join().expect("push thread");
    assert!(
        o.status.success(),
        "the push in flight completes: {}",
        text(&o)
    );
    wait_ok(&server);
    assert_eq!(body(&server), "built-2\n", "{}", server.server_log());

    let ok_after = counts.ok.load(Ordering::SeqCst);
    while counts.ok.load(Ordering::SeqCst) < ok_after + 50 {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    eprintln!(
        "graceful upgrade: {} ({} failed)",
        counts.report(),
        counts.failed()
    );
    assert_eq!(
        counts.failed(),
        0,
        "{}\n{}",
        counts.report(),
        server.server_log()
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
