//! Support for the end-to-end tests: a real `slipway serve` in a temporary
//! data dir on free loopback ports, a user with a fresh ed25519 key, and the
//! real `git` and `ssh` clients pointed at it. Its apps build and run on the stacks of
//! [`TEST_STACKS`], kept in one folder shared by every test run on the machine.
//!
//! Needs: root (runc, network namespaces), `runc`, `git`, `ssh`, `ssh-keygen`,
//! `python3` (wheels and the loopback npm registry), `ip` (iproute2), `mmdebstrap`
//! (the first build of each stack). `scripts/install-deps` installs them.

#![warn(missing_docs)]

pub mod nspawn;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `slipway` binary, built once per test run.
pub fn slipway_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // The e2e crate's `acme` feature (tests/acme.rs) builds the binary with ACME.
        let features: &[&str] = if cfg!(feature = "acme") {
            &["--features", "acme"]
        } else {
            &[]
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "slipway"])
            .args(features)
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build -p slipway failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("slipway")
    })
    .clone()
}

/// `slipway config check DIR` (the push's validation of a source tree, run locally).
pub fn config_check(dir: &Path) -> Output {
    run(Command::new(slipway_bin())
        .args(["config", "check"])
        .arg(dir))
}

/// [`config_check`] of `dir`, which must pass: its output.
pub fn config_check_ok(dir: &Path) -> String {
    let o = config_check(dir);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// The stacks every test server runs its apps on (`Server` builds them once per machine,
/// see [`cached_stack`]); a test app's `type` must name one of these.
pub const TEST_STACKS: &[&str] = &[
    "python:3.11",
    "nodejs:22",
    "postgresql:15",
    "mariadb:10.11",
    "redis:7.0",
    "php:8.4",
    // tests/more_services.rs (built here once: 3-7 minutes each on a busy 2-core machine).
    "rabbitmq:3.10",
    "chrome-headless:156",
    "influxdb:1.6",
    // tests/languages.rs (5-8 minutes each on a busy 2-core machine).
    "golang:1.24",
    "ruby:3.3",
    "java:21",
    // tests/languages.rs: a second Python (trixie's) beside python:3.11 (bookworm's); 3.7
    // minutes to build on a busy 2-core machine.
    "python:3.13",
    // tests/languages.rs: a second PHP (bookworm's) beside php:8.4 (trixie's).
    "php:8.2",
];

/// The stacks folder shared by every test run on this machine (`SLIPWAY_STACKS_DIR` of
/// every test server): one store holding every stack the tests use. `SLIPWAY_TEST_STACKS_DIR`
/// names another one (a work tree that changes a stack's recipe tests it there, without
/// rebuilding the copy other work trees share).
pub fn shared_stacks_dir() -> PathBuf {
    std::env::var_os("SLIPWAY_TEST_STACKS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/tmp/slipway-test-stacks/shared").to_path_buf())
}

/// The shared stacks folder ([`shared_stacks_dir`]) with stack `type_name` (e.g.
/// `python:3.11`) built in it. The first caller builds it (`slipway stack build`,
/// minutes); concurrent callers, in this process or others, wait on a lock; later ones
/// reuse it. A marker file holds the catalog entry's fingerprint: a changed entry builds
/// anew (`--force`).
pub fn cached_stack(type_name: &str) -> PathBuf {
    let stack = slipway_stack::resolve_any(type_name)
        .unwrap_or_else(|e| panic!("{e}"))
        .stack;
    let dir = shared_stacks_dir();
    std::fs::create_dir_all(&dir).expect("creating the shared stacks folder");
    let lock = std::fs::File::create(dir.join(format!(".{}.test-lock", stack.tag())))
        .expect("creating the shared stack's lock");
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    let locked = unsafe { flock(std::os::fd::AsRawFd::as_raw_fd(&lock), 2) };
    assert_eq!(locked, 0, "locking the shared stack {type_name}");
    let marker = dir.join(format!(".{}.fingerprint", stack.tag()));
    let fresh = std::fs::read_to_string(&marker).is_ok_and(|f| f.trim() == stack.fingerprint());
    let started = Instant::now();
    let mut cmd = Command::new(slipway_bin());
    cmd.args(["stack", "build", type_name, "--data-dir"])
        .arg(&dir);
    if !fresh && dir.join("archive").exists() {
        cmd.arg("--force");
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "building stack {type_name}: {}",
        text(&out)
    );
    std::fs::write(&marker, stack.fingerprint()).expect("writing the stack's marker");
    if !fresh {
        // Built anew: its old layer and unpacked folder are garbage (gigabytes a stack).
        let out = run(Command::new(slipway_bin())
            .args(["archive", "gc", "--data-dir"])
            .arg(&dir));
        assert!(
            out.status.success(),
            "archive gc of {}: {}",
            dir.display(),
            text(&out)
        );
    }
    drop(lock);
    eprintln!("stack {type_name}: ready in {:.1?}", started.elapsed());
    dir
}

/// [`shared_stacks_dir`] with every stack of [`TEST_STACKS`] built (once per process).
pub fn test_stacks() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        for s in TEST_STACKS {
            cached_stack(s);
        }
        shared_stacks_dir()
    })
    .clone()
}

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Not one the kernel picks (`bind(0)`): those come from the ephemeral range, which the
/// kernel also hands to every outgoing connection on loopback (the tests' own git, ssh
/// and HTTP clients), so between this call and the server's bind another test's client
/// could take it. These come from below that range (20000-32767), each handed out once
/// per process (a counter seeded from the pid, so two test binaries start apart), and
/// checked free by binding.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20000;
    const COUNT: u32 = 12768;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next =
        NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(2654435761) % COUNT));
    for _ in 0..COUNT {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + COUNT - 1)
}

/// Run a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// The Prometheus exposition of `serve --metrics-listen 127.0.0.1:PORT`, scraped with curl,
/// its HTTP head included (the samples follow it).
pub fn scrape_metrics(port: u16) -> String {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-i"])
        .arg(format!("http://127.0.0.1:{port}/metrics")));
    assert!(o.status.success(), "scrape: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The value of the sample `name{labels}` (exactly as written) in an exposition, if
/// present.
pub fn metric_sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// stdout+stderr of an output as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A running Slipway server with its own data dir, ports and user key.
pub struct Server {
    /// The temporary folder holding everything.
    pub dir: tempfile::TempDir,
    /// The data dir.
    pub data: PathBuf,
    /// SSH port.
    pub ssh_port: u16,
    /// HTTP port.
    pub http_port: u16,
    /// The admin user's private key.
    pub key: PathBuf,
    /// Extra environment for `slipway serve`.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    /// What the server printed on stdout and stderr.
    pub log: PathBuf,
}

impl Server {
    /// A server with an admin user `me`, started.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// A server with extra environment variables for `slipway serve`.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("slipway-e2e-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        let key = new_key(dir.path(), "me");
        let o = run(Command::new(slipway_bin())
            .args(["user", "add", "me", "--admin", "--key"])
            .arg(key.with_extension("pub"))
            .arg("--data-dir")
            .arg(&data));
        assert!(o.status.success(), "user add: {}", text(&o));
        let mut s = Server {
            log: dir.path().join("serve.log"),
            dir,
            data,
            ssh_port: free_port(),
            http_port: free_port(),
            key,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        s.serve();
        s
    }

    /// Start `slipway serve` (again) and wait until it listens.
    ///
    /// If a port was taken between [`free_port`] and the server's bind (by a process
    /// outside this test run), the server is started again on fresh ports, at most
    /// three times.
    pub fn serve(&mut self) {
        assert!(self.child.is_none(), "already serving");
        for attempt in 1..=3 {
            let before = self.server_log().len();
            let (mut child, serving) = self.spawn_serve(&[]);
            if serving.recv_timeout(Duration::from_secs(60)).is_ok() {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = self.server_log();
            let this_start = log.get(before..).unwrap_or(&log);
            if attempt < 3 && this_start.contains("Address already in use") {
                self.ssh_port = free_port();
                self.http_port = free_port();
                continue;
            }
            panic!("slipway serve did not start; its log:\n{log}");
        }
    }

    /// Stop the server with SIGTERM and wait for it; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("slipway serve did not stop within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of `slipway serve`, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether `slipway serve` still runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `slipway ARGS --data-dir DATA`.
    pub fn slipway(&self, args: &[&str]) -> Output {
        run(Command::new(slipway_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&self.data))
    }

    /// The SSH command git should use for `key`.
    pub fn ssh_command(&self, key: &Path) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            key.display()
        )
    }

    /// The git remote URL of a project.
    pub fn remote(&self, project: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{project}.git", self.ssh_port)
    }

    /// Run git in `dir` as the admin user.
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        self.git_as(&self.key, dir, args)
    }

    /// Run git in `dir` with `key`.
    pub fn git_as(&self, key: &Path, dir: &Path, args: &[&str]) -> Output {
        run(&mut self.git_command(key, dir, args))
    }

    /// `git ARGS` in `dir` reaching this server with `key`, to run or spawn.
    pub fn git_command(&self, key: &Path, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(dir)
            .env("GIT_SSH_COMMAND", self.ssh_command(key))
            .env("GIT_TERMINAL_PROMPT", "0");
        cmd
    }

    /// The `ssh` arguments reaching this server with `key` ([`Server::ssh_command`]'s
    /// options and `-p PORT`), without the destination and command.
    pub fn ssh_args(&self, key: &Path) -> Vec<String> {
        let mut args: Vec<String> = self
            .ssh_command(key)
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        args.extend(["-p".into(), self.ssh_port.to_string()]);
        args
    }

    /// `ssh -p PORT git@127.0.0.1 COMMAND` with `key`.
    pub fn ssh(&self, key: &Path, user: &str, command: &str) -> Output {
        run(Command::new("ssh")
            .args(self.ssh_args(key))
            .arg(format!("{user}@127.0.0.1"))
            .arg(command))
    }

    /// The admin command `command` (`ssh git@HOST COMMAND`) as the admin user.
    pub fn admin(&self, command: &str) -> Output {
        self.ssh(&self.key, "git", command)
    }

    /// [`Server::admin`], which must succeed: its stdout and stderr (on failure, the
    /// server's log too).
    pub fn admin_ok(&self, command: &str) -> String {
        let o = self.admin(command);
        assert!(
            o.status.success(),
            "{command}: {}\n{}",
            text(&o),
            self.server_log()
        );
        text(&o)
    }

    /// [`Server::admin`], which must succeed: its stdout.
    pub fn admin_stdout(&self, command: &str) -> String {
        let o = self.admin(command);
        assert!(o.status.success(), "{command}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The body of GET `path` with `Host: host` through the router, which must answer 200
    /// (else the test fails with the answer and the server's log).
    pub fn page(&self, host: &str, path: &str) -> String {
        let (status, head, body) = http_request(self.http_port, "GET", host, path, b"");
        assert_eq!(
            status,
            200,
            "GET {host}{path}: {head}\n{body}\nserver log:\n{}",
            self.server_log()
        );
        body
    }

    /// GET `path` with `Host: host` through the router ([`http_request`]): (status, head,
    /// body).
    pub fn get_with_head(&self, host: &str, path: &str) -> (u16, String, String) {
        http_request(self.http_port, "GET", host, path, b"")
    }

    /// The body of GET `path` on `host` once the router answers it with 200 (asked every
    /// 200 ms, e.g. while apps start again after a restart, a restore or a sync); the test
    /// fails with the last answer and the server's log if that takes longer than `within`.
    pub fn wait_for_page(&self, host: &str, path: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.get(host, path) {
                Some((200, body)) => return body,
                other => assert!(
                    Instant::now() < deadline,
                    "GET {host}{path} did not answer 200 within {within:?}: {other:?}\n{}",
                    self.server_log()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path` with `Host: host` through the router; (status, body).
    pub fn get(&self, host: &str, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, host, path)
    }

    /// The commit branch `branch` of project `project` is at on this server (`git ls-remote`
    /// run in `dir`, which must succeed), or "" when the project has no such branch.
    pub fn branch_head(&self, dir: &Path, project: &str, branch: &str) -> String {
        let o = self.git(
            dir,
            &[
                "ls-remote",
                &self.remote(project),
                &format!("refs/heads/{branch}"),
            ],
        );
        assert!(o.status.success(), "ls-remote: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// `runc --root DATA/runtime/state`: a runc command on this server's containers, to
    /// which the caller adds the subcommand (`exec ID ...`, `state ID`, `kill ID KILL`).
    pub fn runc(&self) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root")
            .arg(self.data.join("runtime").join("state"));
        cmd
    }

    /// `args` run in container `container` (`runc exec`, as the container's own user) with
    /// the variables `env`, which must succeed: its stdout, trimmed.
    pub fn in_container(&self, container: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = self.runc();
        cmd.arg("exec");
        for (k, v) in env {
            cmd.args(["--env", &format!("{k}={v}")]);
        }
        let o = run(cmd.arg(container).args(args));
        assert!(o.status.success(), "{args:?} in {container}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// The host pid of container `id`'s first process, from `runc state` (which must
    /// succeed).
    pub fn container_pid(&self, id: &str) -> i32 {
        let o = run(self.runc().args(["state", id]));
        assert!(o.status.success(), "runc state {id}: {}", text(&o));
        let state: serde_json::Value = serde_json::from_slice(&o.stdout).expect("runc state JSON");
        let pid = state["pid"].as_i64().expect("a pid") as i32;
        assert!(pid > 0, "{state}");
        pid
    }

    /// The containers of this data dir, as `runc list` shows them: (id, status).
    pub fn containers(&self) -> Vec<(String, String)> {
        let o = run(self.runc().args(["list", "-q"]));
        let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ids.into_iter()
            .map(|id| {
                let o = run(self.runc().args(["state", &id]));
                let st = String::from_utf8_lossy(&o.stdout);
                let status = st
                    .split("\"status\": \"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("?")
                    .to_string();
                (id, status)
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // Leave no container or network namespace behind.
        let _ = self.slipway(&["down"]);
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
    fn flock(fd: i32, operation: i32) -> i32;
}

/// A new ed25519 key pair `dir/NAME` (+ `.pub`).
pub fn new_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let o = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key));
    assert!(o.status.success(), "ssh-keygen: {}", text(&o));
    key
}

/// A minimal HTTP/1.1 GET over a fresh connection; None if the connection failed.
pub fn http_get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: slipway-e2e\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A git working tree of the demo app of the end-to-end issue.
pub struct App {
    /// The folder (inside the server's temp dir or its own).
    pub dir: PathBuf,
}

impl App {
    /// Create the demo app in `parent/name`, committed on `main` with VERSION=1.
    pub fn demo(parent: &Path, name: &str) -> App {
        let dir = parent.join(name);
        std::fs::create_dir_all(&dir).expect("app dir");
        let app = App { dir };
        app.write(
            ".platform.app.yaml",
            "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py     # listens on $PORT\n",
        );
        app.write("server.py", DEMO_SERVER);
        app.write("VERSION", "1\n");
        app.git_ok(&["init", "-q", "-b", "main"]);
        app.commit("v1");
        app
    }

    /// [`App::demo`] `app` in `parent` with `app_yaml` as its `.platform.app.yaml`, the
    /// services file `services` and the route `http://{default}/` to the app `hello`, not
    /// committed yet.
    pub fn with_services(parent: &Path, app_yaml: &str, services: &str) -> App {
        let app = App::demo(parent, "app");
        app.write(".platform.app.yaml", app_yaml);
        app.write(".platform/services.yaml", services);
        app.write(
            ".platform/routes.yaml",
            "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
        );
        app
    }

    /// Write a file (creating folders).
    pub fn write(&self, path: &str, content: &str) {
        let p = self.dir.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(p, content).expect("write");
    }

    /// Run a local git command that must succeed.
    pub fn git_ok(&self, args: &[&str]) -> String {
        let o = run(Command::new("git").args(args).current_dir(&self.dir));
        assert!(o.status.success(), "git {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Commit everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git_ok(&["add", "-A"]);
        self.git_ok(&[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-q",
            "-m",
            message,
        ]);
        self.git_ok(&["rev-parse", "HEAD"])
    }
}

/// The source of a python3 test app (a `&'static str`): an HTTP/1.1 server on
/// 127.0.0.1:$PORT that answers every GET with the bytes its handler leaves in `body`, with
/// the status it leaves in `status` (200 unless it sets another). `$answer` is the
/// handler's python lines, indented by 8 spaces, with `self` the request; `$prelude`
/// (top-level python lines) runs once first. base64, json, os, shutil,
/// subprocess and sys are imported. Both are string literals or macros making one
/// ([`py_relationships!`], [`py_redis!`], [`py_dburl!`], or `concat!` of them).
/// [`py_socket_app!`] is the same app on a unix socket.
#[macro_export]
macro_rules! py_app {
    ($prelude:expr, $answer:expr) => {
        $crate::py_app!(
            @serve $prelude,
            $answer,
            "http.server.ThreadingHTTPServer((\"127.0.0.1\", int(os.environ[\"PORT\"])), H).serve_forever()\n"
        )
    };
    // The app whose handler class `H` the python lines `$serve` serve.
    (@serve $prelude:expr, $answer:expr, $serve:expr) => {
        concat!(
            "import base64, http.server, json, os, shutil, subprocess, sys\n",
            $prelude,
            "class H(http.server.BaseHTTPRequestHandler):\n",
            "    protocol_version = \"HTTP/1.1\"\n",
            "    def do_GET(self):\n",
            "        status = 200\n",
            $answer,
            "        self.send_response(status)\n",
            "        self.send_header(\"Content-Length\", str(len(body)))\n",
            "        self.end_headers()\n",
            "        self.wfile.write(body)\n",
            "    def log_message(self, *a):\n",
            "        pass\n",
            $serve,
        )
    };
}

/// [`py_app!`] on the unix socket `$SOCKET` (an app with `upstream: {socket_family: unix}`)
/// instead of a port: the same `$prelude` and `$answer`, served by a threaded
/// `socketserver.ThreadingUnixStreamServer`.
#[macro_export]
macro_rules! py_socket_app {
    ($prelude:expr, $answer:expr) => {
        $crate::py_app!(
            @serve $prelude,
            $answer,
            concat!(
                "import socketserver\n",
                "class S(socketserver.ThreadingUnixStreamServer):\n",
                "    daemon_threads = True\n",
                "S(os.environ[\"SOCKET\"], H).serve_forever()\n",
            )
        )
    };
}

/// The `manage.py` of a Django test project (a `&'static str`) whose settings module is
/// `$project.settings`, as `django-admin startproject` writes it.
#[macro_export]
macro_rules! django_manage {
    ($project:literal) => {
        concat!(
            "#!/usr/bin/env python\n",
            "import os\n",
            "import sys\n",
            "\n",
            "if __name__ == \"__main__\":\n",
            "    os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"",
            $project,
            ".settings\")\n",
            "    from django.core.management import execute_from_command_line\n",
            "    execute_from_command_line(sys.argv)\n",
        )
    };
}

/// The `$project/wsgi.py` of a Django test project (a `&'static str`): the WSGI
/// `application` of the settings module `$project.settings`.
#[macro_export]
macro_rules! django_wsgi {
    ($project:literal) => {
        concat!(
            "import os\n",
            "\n",
            "from django.core.wsgi import get_wsgi_application\n",
            "\n",
            "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"",
            $project,
            ".settings\")\n",
            "application = get_wsgi_application()\n",
        )
    };
}

/// The source of the deploy-under-load tests' python3 app (a `&'static str`), a release
/// named by its `build.txt` (`release-N`): `GET /` answers `release-N|` repeated over about
/// `$page` bytes (`GET /slow` too, after 0.4 s), `GET /env` its `PORT`, `SOCKET` and what
/// `/run` holds (JSON), `POST` `release-N:` and the body, and a `GET` asking
/// `Upgrade: websocket` is a WebSocket answering each text or binary frame with
/// `release-N:` and its payload, a ping with a pong. Keep-alive HTTP/1.1 with
/// Content-Length. `$serve` is the python lines that serve the handler class `H` (on
/// `$PORT` or on a unix socket).
#[macro_export]
macro_rules! py_release_app {
    ($page:literal, $serve:expr) => {
        concat!(
            r#"import base64, hashlib, http.server, json, os, socketserver, struct, time
VERSION = open("build.txt").read().strip()
UNIT = (VERSION + "|").encode()
PAGE = UNIT * ("#,
            $page,
            r#" // len(UNIT))
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def frame(op, data):
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | op, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | op, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | op, 127, n)
    return head + data

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if self.path == "/env":
            return self.answer(json.dumps({"PORT": os.environ.get("PORT"), "SOCKET": os.environ.get("SOCKET"), "run": sorted(os.listdir("/run"))}).encode())
        if self.path == "/slow":
            time.sleep(0.4)
        self.answer(PAGE)
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer(VERSION.encode() + b":" + data)
    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        r, w = self.rfile, self.wfile
        while True:
            head = r.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 15, head[1] & 127
            if n == 126:
                n = struct.unpack("!H", r.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", r.read(8))[0]
            mask = r.read(4) if head[1] & 128 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if op == 8:
                w.write(frame(8, data[:2]))
                return
            if op == 9:
                w.write(frame(10, data))
            elif op in (1, 2):
                w.write(frame(op, VERSION.encode() + b":" + data))
            w.flush()
    def log_message(self, *a):
        pass

"#,
            $serve,
        )
    };
}

/// Top-level python lines for [`py_app!`]: `rels`, the app's relationships (decoded
/// `PLATFORM_RELATIONSHIPS`).
#[macro_export]
macro_rules! py_relationships {
    () => {
        "rels = json.loads(base64.b64decode(os.environ[\"PLATFORM_RELATIONSHIPS\"]))\n"
    };
}

/// Top-level python lines for [`py_app!`]: `rels` ([`py_relationships!`]) and
/// `redis(*args)`, which sends one command to the `cache` relationship's Redis over a
/// socket and returns its reply (a bulk string's value, or an integer's or status's text).
#[macro_export]
macro_rules! py_redis {
    () => {
        concat!(
            $crate::py_relationships!(),
            "import socket\n",
            "def redis(*args):\n",
            "    c = rels[\"cache\"][0]\n",
            "    s = socket.create_connection((c[\"host\"], c[\"port\"]), timeout=5)\n",
            "    cmd = \"*%d\\r\\n\" % len(args) + \"\".join(\"$%d\\r\\n%s\\r\\n\" % (len(a), a) for a in args)\n",
            "    s.sendall(cmd.encode())\n",
            "    reply = s.recv(4096).decode()\n",
            "    s.close()\n",
            "    lines = reply.split(\"\\r\\n\")\n",
            "    return lines[1] if lines[0].startswith(\"$\") else lines[0].lstrip(\":+\")\n",
        )
    };
}

/// Top-level python lines for [`py_app!`], after [`py_relationships!`]: `dburl()`, the
/// `database` relationship as `postgresql://USER:PASSWORD@IP:PORT/PATH`.
#[macro_export]
macro_rules! py_dburl {
    () => {
        concat!(
            "def dburl():\n",
            "    d = rels[\"database\"][0]\n",
            "    return \"postgresql://%s:%s@%s:%d/%s\" % (d[\"username\"], d[\"password\"], d[\"ip\"], d[\"port\"], d[\"path\"])\n",
        )
    };
}

/// The demo app: answers with the content of build.txt (made by the build hook).
pub const DEMO_SERVER: &str = py_app!(
    "print(\"hello listening on\", os.environ[\"PORT\"], flush=True)\n",
    "        body = open(\"build.txt\").read().encode()\n"
);

/// The stored bare repository of `project`.
pub fn repo_dir(server: &Server, project: &str) -> PathBuf {
    server.data.join("git").join(format!("{project}.git"))
}

/// An app's build cache as the host holds it between builds: its disk mounted read-only
/// in a folder of its own (unmounted when this is dropped), or the plain folder of a server
/// whose kernel refused loop mounts. Only between builds: a build mounts that disk itself.
pub struct BuildCache {
    /// Where the cache's files are (what builds see as `/cache`).
    pub path: PathBuf,
    mounted: Option<tempfile::TempDir>,
}

impl Drop for BuildCache {
    fn drop(&mut self) {
        if let Some(at) = &self.mounted {
            let o = run(Command::new("umount").arg(at.path()));
            if !o.status.success() {
                eprintln!("unmounting {}: {}", at.path().display(), text(&o));
            }
        }
    }
}

impl Server {
    /// The build cache of `app` in `project`'s `env` (see [`BuildCache`]).
    pub fn build_cache(&self, project: &str, env: &str, app: &str) -> BuildCache {
        let dir = self.data.join("cache").join(project).join(env).join(app);
        let image = dir.with_extension("img");
        if !image.exists() {
            return BuildCache {
                path: dir.join("files"),
                mounted: None,
            };
        }
        let at = tempfile::tempdir().expect("tempdir");
        let o = run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,ro,noload"])
            .arg(&image)
            .arg(at.path()));
        assert!(
            o.status.success(),
            "mounting {}: {}",
            image.display(),
            text(&o)
        );
        BuildCache {
            path: at.path().join("files"),
            mounted: Some(at),
        }
    }
}

impl Server {
    /// A project in this server's folder with `files`, committed on `main`.
    pub fn project(&self, name: &str, files: &[(&str, &str)]) -> App {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("project dir");
        let app = App { dir };
        for (path, content) in files {
            app.write(path, content);
        }
        app.git_ok(&["init", "-q", "-b", "main"]);
        app.commit("template");
        app
    }

    /// `git push [-o OPTION]... REMOTE REFSPEC` of `app` to project `project` as the admin
    /// user, each of `options` a push option (`allow-data-loss`, `key=value`).
    pub fn push_with(&self, app: &App, project: &str, refspec: &str, options: &[&str]) -> Output {
        run(&mut self.push_command(app, project, refspec, options))
    }

    /// `git push` of `app`'s `main` to project `project` in a thread of its own (the test
    /// goes on while the server builds and deploys): join it for the push's output.
    pub fn push_in_background(&self, app: &App, project: &str) -> std::thread::JoinHandle<Output> {
        let mut push = self.push_command(app, project, "main", &[]);
        std::thread::spawn(move || run(&mut push))
    }

    /// [`Server::push_with`]'s command, to spawn (a push in the background).
    pub fn push_command(
        &self,
        app: &App,
        project: &str,
        refspec: &str,
        options: &[&str],
    ) -> Command {
        let remote = self.remote(project);
        let mut args = vec!["push"];
        for o in options {
            args.extend(["-o", o]);
        }
        args.extend([remote.as_str(), refspec]);
        self.git_command(&self.key, &app.dir, &args)
    }

    /// Push `app`'s `main` to project `name`; the push output, failing with the server's log.
    pub fn push_ok(&self, app: &App, name: &str) -> String {
        let o = self.push_with(app, name, "main", &[]);
        let out = text(&o);
        assert!(
            o.status.success(),
            "push failed:\n{out}\nserver log:\n{}",
            self.server_log()
        );
        out
    }

    /// Adds a user `name` with a fresh key through `ssh git@HOST user add NAME` (by the
    /// server admin); returns the key.
    pub fn add_user(&self, name: &str) -> PathBuf {
        let key = new_key(self.dir.path(), name);
        let pubkey = std::fs::read(key.with_extension("pub")).expect("pub key");
        let o = self.ssh_with_input(&self.key, "git", &format!("user add {name}"), &pubkey);
        assert!(o.status.success(), "user add {name}: {}", text(&o));
        key
    }

    /// [`Server::add_user`], then `access grant PROJECT NAME ROLE`; returns the key.
    pub fn add_user_with_role(&self, name: &str, project: &str, role: &str) -> PathBuf {
        let key = self.add_user(name);
        let o = self.ssh(
            &self.key,
            "git",
            &format!("access grant {project} {name} {role}"),
        );
        assert!(o.status.success(), "access grant: {}", text(&o));
        key
    }

    /// `ssh -p PORT USER@127.0.0.1 COMMAND` with `key`, feeding `input` on stdin.
    pub fn ssh_with_input(&self, key: &Path, user: &str, command: &str, input: &[u8]) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args(key))
            .arg(format!("{user}@127.0.0.1"))
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        child.wait_with_output().expect("waiting for ssh")
    }

    /// Speaks the push protocol by hand: `git-receive-pack` on `project` with `key`, reads the
    /// ref advertisement, sends `commands` (each `OLD NEW REF`; capabilities are added to the
    /// first), a flush, then `pack` as it is (may be empty, truncated or corrupt).
    /// Returns ssh's output (stdout holds the server's pkt-lines, stderr its messages).
    pub fn raw_receive_pack(
        &self,
        key: &Path,
        project: &str,
        commands: &[String],
        pack: &[u8],
    ) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args(key))
            .arg("git@127.0.0.1")
            .arg(format!("git-receive-pack '/{project}.git'"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        let mut stdout = child.stdout.take().expect("stdout");
        // Read the advertisement up to its flush.
        let mut advert = Vec::new();
        loop {
            let mut len = [0u8; 4];
            if stdout.read_exact(&mut len).is_err() {
                break;
            }
            let n =
                usize::from_str_radix(std::str::from_utf8(&len).unwrap_or("0000"), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut data = vec![0u8; n.saturating_sub(4)];
            if stdout.read_exact(&mut data).is_err() {
                break;
            }
            advert.extend_from_slice(&data);
        }
        let mut input = Vec::new();
        for (i, c) in commands.iter().enumerate() {
            let line = if i == 0 {
                format!("{c}\0report-status side-band-64k agent=slipway-e2e\n")
            } else {
                format!("{c}\n")
            };
            input.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
            input.extend_from_slice(line.as_bytes());
        }
        input.extend_from_slice(b"0000");
        input.extend_from_slice(pack);
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
            // Dropping stdin closes it: the server sees the end of the stream.
        });
        let mut rest = Vec::new();
        let _ = stdout.read_to_end(&mut rest);
        let _ = writer.join();
        let mut out = child.wait_with_output().expect("waiting for ssh");
        out.stdout = rest;
        out
    }
}

/// `git pack-objects --stdout` of exactly the objects `ids` (no walk) from the repository `dir`.
pub fn pack_of(dir: &Path, ids: &[&str]) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(["pack-objects", "--stdout", "-q"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git pack-objects");
    let list: String = ids.iter().map(|i| format!("{i}\n")).collect();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(list.as_bytes()).expect("writing ids");
    }
    let o = child.wait_with_output().expect("git pack-objects");
    assert!(o.status.success(), "git pack-objects failed");
    o.stdout
}

/// `git fsck --full` of a repository must pass.
pub fn assert_fsck(repo: &Path) {
    let o = run(Command::new("git")
        .args(["fsck", "--full", "--no-dangling"])
        .current_dir(repo));
    assert!(
        o.status.success(),
        "git fsck --full in {}: {}",
        repo.display(),
        text(&o)
    );
}

/// A wheel `dir/NAME-VERSION-py3-none-any.whl` (made with python3's zipfile): the package
/// `NAME` holding `files` (path inside the package, content), and `console_scripts` lines
/// (`command = module:function`).
pub fn write_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    files: &[(&str, &str)],
    console_scripts: &[&str],
) -> PathBuf {
    std::fs::create_dir_all(dir).expect("wheel folder");
    let files = files
        .iter()
        .map(|(p, c)| format!("[{p:?}, {c:?}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let scripts = console_scripts
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let dir_text = dir.display().to_string();
    let spec = format!(
        "{{\"dir\": {dir_text:?}, \"name\": {name:?}, \"version\": {version:?}, \"files\": [{files}], \"scripts\": [{scripts}]}}"
    );
    let mut child = Command::new("python3")
        .args(["-c", WHEEL_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(spec.as_bytes())
        .expect("writing the wheel spec");
    let o = child.wait_with_output().expect("python3");
    assert!(o.status.success(), "making the wheel: {}", text(&o));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

const WHEEL_PY: &str = r#"
import base64, hashlib, json, os, sys, zipfile
spec = json.load(sys.stdin)
name, version = spec["name"], spec["version"]
info = f"{name}-{version}.dist-info"
files = [(f"{name}/{p}", c) for p, c in spec["files"]]
files.append((f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"))
files.append((f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: slipway-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
files.append((f"{info}/entry_points.txt", "[console_scripts]\n" + "".join(s + "\n" for s in spec["scripts"])))
path = os.path.join(spec["dir"], f"{name}-{version}-py3-none-any.whl")
record = []
with zipfile.ZipFile(path, "w") as z:
    for p, c in files:
        data = c.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{p},sha256={digest},{len(data)}")
        z.writestr(p, data)
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
print(path)
"#;

/// A tiny npm registry on 127.0.0.1 (python3's http.server): serves the package documents
/// and tarballs of the packages it was given. Stopped when dropped.
pub struct NpmRegistry {
    /// Its URL, `http://127.0.0.1:PORT/`.
    pub url: String,
    child: Child,
}

/// One package version for [`NpmRegistry`]: its name, version and files (`package.json` among them).
pub struct NpmPackage<'a> {
    /// Package name (unscoped).
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Files of the package (path inside it, content); `bin` files are made executable by npm.
    pub files: &'a [(&'a str, &'a str)],
}

impl NpmRegistry {
    /// Start serving `packages`.
    pub fn start(packages: &[NpmPackage<'_>]) -> NpmRegistry {
        let spec = format!(
            "[{}]",
            packages
                .iter()
                .map(|p| format!(
                    "{{\"name\": {:?}, \"version\": {:?}, \"files\": [{}]}}",
                    p.name,
                    p.version,
                    p.files
                        .iter()
                        .map(|(f, c)| format!("[{f:?}, {c:?}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut child = Command::new("python3")
            .args(["-c", REGISTRY_PY, &spec])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut first)
            .expect("reading the registry's port");
        let port: u16 = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("registry said {first:?}"));
        // Keep draining its output so it never blocks.
        std::thread::spawn(move || for _ in reader.lines() {});
        NpmRegistry {
            url: format!("http://127.0.0.1:{port}/"),
            child,
        }
    }
}

impl Drop for NpmRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const REGISTRY_PY: &str = r#"
import base64, hashlib, http.server, io, json, sys, tarfile
packages = json.loads(sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
port = server.server_address[1]
docs, tarballs = {}, {}
for p in packages:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, content in p["files"]:
            data = content.encode()
            info = tarfile.TarInfo("package/" + path)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    tgz = buf.getvalue()
    name, version = p["name"], p["version"]
    tar_path = f"/{name}/-/{name}-{version}.tgz"
    tarballs[tar_path] = tgz
    manifest = dict(json.loads(dict(p["files"])["package.json"]))
    manifest["dist"] = {
        "tarball": f"http://127.0.0.1:{port}{tar_path}",
        "shasum": hashlib.sha1(tgz).hexdigest(),
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
    }
    doc = docs.setdefault(f"/{name}", {"name": name, "versions": {}, "dist-tags": {}})
    doc["versions"][version] = manifest
    doc["dist-tags"]["latest"] = version
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        if path in docs:
            body, kind = json.dumps(docs[path]).encode(), "application/json"
        elif path in tarballs:
            body, kind = tarballs[path], "application/octet-stream"
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server.RequestHandlerClass = H
print(port, flush=True)
server.serve_forever()
"#;

/// Restarts and upgrades of `slipway serve` (issue 18).
impl Server {
    /// `slipway serve` with this server's flags (and the shared test stacks) and `extra`
    /// ones, spawned; resolves the receiver once it printed that it serves. Its output goes
    /// to the server's log. [`Server::serve`] and [`Server::upgrade`] use it.
    pub fn spawn_serve(&self, extra: &[&str]) -> (Child, std::sync::mpsc::Receiver<()>) {
        self.spawn_serve_from(&slipway_bin(), extra)
    }

    /// [`Server::spawn_serve`] from the binary at `bin` (e.g. a link to the built one that
    /// a test replaces, as an operator installing a new binary does).
    pub fn spawn_serve_from(
        &self,
        bin: &Path,
        extra: &[&str],
    ) -> (Child, std::sync::mpsc::Receiver<()>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--ssh-listen")
            .arg(format!("127.0.0.1:{}", self.ssh_port))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .args(extra)
            .env("SLIPWAY_LOG", "info")
            .env("SLIPWAY_STACKS_DIR", test_stacks())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning slipway serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = self.log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            let mut log = std::fs::OpenOptions::new().append(true).open(log_path).ok();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if !sent && line.contains("slipway serving") {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        (child, rx)
    }

    /// `slipway serve --upgrade`: waits until the new server serves and the old one
    /// exited (at most `within`); the new one becomes this server's. Returns the old
    /// one's exit code.
    /// `during` runs once the new server serves, while the old one drains.
    pub fn upgrade(&mut self, within: Duration, during: impl FnOnce(&Server)) -> Option<i32> {
        let (child, serving) = self.spawn_serve(&["--upgrade"]);
        if serving.recv_timeout(within).is_err() {
            panic!(
                "slipway serve --upgrade did not serve; log:\n{}",
                self.server_log()
            );
        }
        during(self);
        let mut old = self.child.replace(child).expect("a server ran");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = old.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = old.kill();
                let _ = old.wait();
                panic!(
                    "the old server did not exit after the upgrade; log:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill `slipway serve` with SIGKILL (a crash) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `curl` over HTTPS to `https://HOST:PORT{path}`, `host` resolved to 127.0.0.1 and only
/// `ca` trusted, with `args` before the URL (`--http2`, `-w FORMAT`, ...): (success, stdout,
/// stderr).
pub fn curl_https(
    port: u16,
    host: &str,
    path: &str,
    ca: &Path,
    args: &[&str],
) -> (bool, String, String) {
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(args)
        .arg(format!("https://{host}:{port}{path}")));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

impl Server {
    /// A server that also serves HTTPS (`SLIPWAY_HTTPS_LISTEN` on a free port, certificates
    /// of its local CA, `DATA/ca/ca.pem`), with `env` besides; returns it and the HTTPS port.
    pub fn start_https(env: &[(&str, &str)]) -> (Server, u16) {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![("SLIPWAY_HTTPS_LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        (Server::start_with(&all), port)
    }
}

/// One raw HTTP request to the router on 127.0.0.1:`port` (bytes as given, no
/// normalization), read to the end; (status, head, body).
pub fn raw_http(port: u16, request: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, buf[end + 4..].to_vec())
}

/// The number after `visit ` in a page (the visit counters of the template tests' apps);
/// the test fails when there is none.
pub fn visit_number(body: &str) -> u32 {
    body.split("visit ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no visit number in {body:?}"))
}

/// `method` `path` on `host` with `body`, one request to the router on 127.0.0.1:`port`:
/// (status, head, body as text, a chunked body joined).
pub fn http_request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let (status, head, answer) = raw_http(port, &String::from_utf8_lossy(&raw));
    let answer = if header_field(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked"))
    {
        dechunk(&answer)
    } else {
        answer
    };
    (status, head, String::from_utf8_lossy(&answer).to_string())
}

/// A chunked body's bytes.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || raw.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[(end + 4 + size).min(raw.len())..];
    }
    out
}

/// The value of header `name` in `head`.
pub fn header_field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl Server {
    /// A request to the web console (Host `console.localhost:PORT`), as `cookie` when
    /// given, with `form` as an urlencoded body when given: (status, head, body as text).
    pub fn console(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> (u16, String, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: console.localhost:{}\r\nConnection: close\r\n",
            self.http_port
        );
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        match form {
            Some(body) => req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => req.push_str("\r\n"),
        }
        let (status, head, body) = raw_http(self.http_port, &req);
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }

    /// `ssh git@HOST console` as `key` (it must succeed): the path of the one-time login
    /// URL it prints (`/login/TOKEN`).
    pub fn console_login_path(&self, key: &Path) -> String {
        let o = self.ssh(key, "git", "console");
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let prefix = format!("http://console.localhost:{}", self.http_port);
        let url = out
            .split_whitespace()
            .find(|w| w.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no login URL in {out}"));
        url[prefix.len()..].to_string()
    }

    /// Logs in to the console as `key` through a fresh one-time link, which must answer
    /// `303` to `/` with a session cookie: the answer's whole `Set-Cookie` field (the cookie
    /// to send is its part before the first `;`).
    pub fn console_log_in(&self, key: &Path) -> String {
        let path = self.console_login_path(key);
        let (status, head, body) = self.console("GET", &path, None, None);
        assert_eq!(status, 303, "{head}\n{body}");
        assert_eq!(header_field(&head, "location"), Some("/"));
        header_field(&head, "set-cookie")
            .expect("a session cookie")
            .to_string()
    }
}

/// What the load threads of a deploy-under-load test saw (shared behind an `Arc`): the
/// answers that were whole, the failures, the releases that answered and what their
/// WebSockets did.
#[derive(Default)]
pub struct LoadTally {
    /// Answers that were whole and from one release.
    pub ok: std::sync::atomic::AtomicUsize,
    /// What went wrong, one line each.
    pub failures: std::sync::Mutex<Vec<String>>,
    /// The releases that answered.
    pub releases: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    /// WebSocket messages echoed as they should be.
    pub ws_messages: std::sync::atomic::AtomicUsize,
    /// WebSocket connections the router closed in order (a retired release's drain timeout).
    pub ws_closed_by_server: std::sync::atomic::AtomicUsize,
}

impl LoadTally {
    /// Counts a failure, `what` saying which.
    pub fn fail(&self, what: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// Counts a whole answer from `release`.
    pub fn saw(&self, release: u32) {
        self.ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.releases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(release);
    }

    /// Asserts that nothing failed (the message shows the first ten failures): the number
    /// of whole answers.
    pub fn assert_none_failed(&self) -> usize {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let ok = self.ok.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {} requests failed; first ones: {:#?}",
            failures.len(),
            ok + failures.len(),
            &failures[..failures.len().min(10)]
        );
        ok
    }

    /// The releases that answered.
    pub fn releases_seen(&self) -> std::collections::BTreeSet<u32> {
        self.releases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A minimal WebSocket client through the router (text frames, masked as clients must).
pub struct Ws {
    stream: TcpStream,
}

impl Ws {
    /// Opens `GET /ws` on `host` through the router on 127.0.0.1:`port` (30 s read
    /// timeout); an error unless the answer is a `101` with the right accept key.
    pub fn connect(port: u16, host: &str) -> std::io::Result<Ws> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )?;
        // Read the head byte by byte so that no frame byte is consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            if stream.read(&mut b)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed in the handshake",
                ));
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !head.starts_with("http/1.1 101")
            || !head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=")
        {
            return Err(std::io::Error::other(format!("bad handshake: {head}")));
        }
        Ok(Ws { stream })
    }

    /// Sends `payload` as one text frame.
    pub fn send(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut f = vec![0x81u8];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f)
    }

    /// The next frame, (opcode, payload): `Ok(None)` on an orderly end of stream at a frame
    /// boundary.
    pub fn recv(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        let mut head = [0u8; 2];
        match self.stream.read(&mut head[..1])? {
            0 => return Ok(None),
            _ => self.stream.read_exact(&mut head[1..])?,
        }
        let mut n = (head[1] & 127) as usize;
        if n == 126 {
            let mut b = [0u8; 2];
            self.stream.read_exact(&mut b)?;
            n = u16::from_be_bytes(b) as usize;
        } else if n == 127 {
            let mut b = [0u8; 8];
            self.stream.read_exact(&mut b)?;
            n = u64::from_be_bytes(b) as usize;
        }
        let mut data = vec![0u8; n];
        self.stream.read_exact(&mut data)?;
        Ok(Some((head[0] & 15, data)))
    }
}
