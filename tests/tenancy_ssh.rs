//! The SSH endpoint under attack by its own users and by strangers: connections that never
//! authenticate, running out of file descriptors, users removed or demoted while connected,
//! too many channels or shells, subsystem requests.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use slipway_e2e::{run, text, App, Server};

/// A TCP connection to the server's SSH port from the loopback address `source`, never
/// authenticating.
fn connect_from(server: &Server, source: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{source}:0").parse().expect("source address");
    socket
        .bind(&from.into())
        .expect("binding the source address");
    let to: SocketAddr = format!("127.0.0.1:{}", server.ssh_port)
        .parse()
        .expect("server address");
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .expect("connect");
    socket.into()
}

/// What a silent client sees within `wait`: `Some(true)` the server's version line (the
/// connection is served), `Some(false)` the connection closed without it, `None` nothing yet.
fn greeted(stream: &mut TcpStream, wait: Duration) -> Option<bool> {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => Some(false),
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).starts_with("SSH-2.0-")),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => Some(false),
    }
}

/// Whether the server closed a connection within `wait` (after its version line).
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

/// An SSH connection held open by an OpenSSH control master, for commands to share.
struct Master {
    child: Child,
    socket: PathBuf,
    /// What the master prints (channel open failures among others).
    log: PathBuf,
}

impl Master {
    fn start(server: &Server, key: &Path, name: &str) -> Master {
        let socket = server.dir.path().join(format!("{name}.mux"));
        let log = server.dir.path().join(format!("{name}.master.log"));
        // At level INFO the master logs why the server refused a channel.
        let args = server
            .ssh_args(key)
            .into_iter()
            .map(|a| a.replace("LogLevel=ERROR", "LogLevel=INFO"));
        let child = Command::new("ssh")
            .args(args)
            .args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
            .arg(&socket)
            .arg("git@127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("master log"))
            .spawn()
            .expect("ssh -M");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the control master did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Master { child, socket, log }
    }

    /// The `ssh` arguments that go through the master and never make a connection of their
    /// own: were the master to refuse, the client would fall back to port 1, where nothing
    /// listens.
    fn args(&self, server: &Server, key: &Path) -> Vec<String> {
        let mut args = server.ssh_args(key);
        let port = args.len() - 1;
        args[port] = "1".into();
        args.extend([
            "-o".into(),
            "ControlMaster=no".into(),
            "-S".into(),
            self.socket.display().to_string(),
        ]);
        args
    }

    /// `ssh` through the master.
    fn command(&self, server: &Server, key: &Path, command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.args(server, key))
            .args(["git@127.0.0.1", command]);
        cmd
    }

    fn ssh(&self, server: &Server, key: &Path, command: &str) -> Output {
        run(self.command(server, key, command).stdin(Stdio::null()))
    }

    /// Whether the master process ended within `wait`.
    fn ended_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository with one commit, pushed as project `demo` by the admin.
fn demo_project(server: &Server) -> App {
    let dir = server.dir.path().join("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let app = App { dir };
    app.write("README", "hello\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("first");
    let o = server.git(
        &app.dir,
        &["push", &server.remote("demo"), "main:refs/tags/base"],
    );
    assert!(o.status.success(), "push: {}", text(&o));
    app
}

#[test]
fn unauthenticated_connections_are_capped_and_cut_after_the_login_grace_time() {
    let server = Server::start_with(&[
        ("SLIPWAY_SSH_LOGIN_GRACE", "4"),
        ("SLIPWAY_SSH_MAX_UNAUTHENTICATED", "6"),
        ("SLIPWAY_SSH_MAX_UNAUTHENTICATED_PER_ADDRESS", "3"),
    ]);
    // Per address: three connections from 127.0.0.2 are served, the next two closed at once.
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..5 {
        let mut c = connect_from(&server, "127.0.0.2");
        let seen = greeted(&mut c, Duration::from_secs(3));
        if i < 3 {
            assert_eq!(seen, Some(true), "connection {i} from 127.0.0.2 is served");
            held.push(c);
        } else {
            assert_eq!(
                seen,
                Some(false),
                "connection {i} from 127.0.0.2 is over the cap"
            );
        }
    }
    // A real user (from 127.0.0.1) still gets in.
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success(), "{}", text(&o));
    // In all: three more from another address fill the cap of six, the seventh is closed.
    for i in 0..4 {
        let mut c = connect_from(&server, "127.0.0.3");
        let seen = greeted(&mut c, Duration::from_secs(3));
        if i < 3 {
            assert_eq!(seen, Some(true), "connection {i} from 127.0.0.3 is served");
            held.push(c);
        } else {
            assert_eq!(
                seen,
                Some(false),
                "a seventh connection is over the total cap"
            );
        }
    }
    // The login grace time (4 s) ends them all, and not long before.
    for c in &mut held {
        assert!(
            closed_within(c, Duration::from_secs(10)),
            "an unauthenticated connection outlived the grace time"
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(3500),
        "closed too early"
    );
    // Their places are free again.
    let mut c = connect_from(&server, "127.0.0.2");
    assert_eq!(greeted(&mut c, Duration::from_secs(3)), Some(true));
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_the_listener() {
    let mut server = Server::start_with(&[
        ("SLIPWAY_SSH_MAX_UNAUTHENTICATED", "100000"),
        ("SLIPWAY_SSH_MAX_UNAUTHENTICATED_PER_ADDRESS", "100000"),
    ]);
    let pid = server.pid().expect("server pid");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's fds")
        .count();
    let limit = open + 30;
    let o = run(Command::new("prlimit").args([
        "--pid",
        &pid.to_string(),
        &format!("--nofile={limit}:{limit}"),
    ]));
    assert!(o.status.success(), "prlimit: {}", text(&o));
    // Far more connections than the server has descriptors for.
    let flood: Vec<TcpStream> = (0..80)
        .map(|_| connect_from(&server, "127.0.0.4"))
        .collect();
    // The server accepts what it can, then runs out of descriptors.
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds() + 2 < limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    drop(flood);
    // Once the flood is gone, the listener serves again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = server.ssh(&server.key, "git", "projects");
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no login after the flood: {}\nserver log:\n{}",
            text(&o),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        server.server_log().contains("Too many open files"),
        "the server never ran out of descriptors; its log:\n{}",
        server.server_log()
    );
    assert!(server.running(), "the server stopped");
    assert_eq!(server.stop(), Some(0));
}

#[test]
fn removed_and_demoted_users_lose_their_rights_on_open_connections() {
    let server = Server::start();
    let app = demo_project(&server);
    let bob = server.add_user("bob");
    let o = server.ssh(&server.key, "git", "access grant demo bob contributor");
    assert!(o.status.success(), "{}", text(&o));

    let mut master = Master::start(&server, &bob, "bob");
    let o = master.ssh(&server, &bob, "projects");
    assert!(
        o.status.success() && text(&o).contains("demo"),
        "{}",
        text(&o)
    );
    // Demoted to viewer: a push over the open connection is refused; reading still works.
    let o = server.ssh(&server.key, "git", "access grant demo bob viewer");
    assert!(o.status.success(), "{}", text(&o));
    let ssh = format!("ssh {}", master.args(&server, &bob).join(" "));
    let o = run(Command::new("git")
        .args(["push", &server.remote("demo"), "main:refs/heads/from-bob"])
        .current_dir(&app.dir)
        .env("GIT_SSH_COMMAND", &ssh));
    assert!(!o.status.success(), "a viewer pushed: {}", text(&o));
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success());
    let o = run(Command::new("git")
        .args(["ls-remote", &server.remote("demo")])
        .current_dir(&app.dir)
        .env("GIT_SSH_COMMAND", &ssh));
    assert!(o.status.success(), "a viewer reads: {}", text(&o));
    assert!(!text(&o).contains("from-bob"), "{}", text(&o));
    // The master connection is still the same one.
    let o = run(Command::new("ssh").args(["-S"]).arg(&master.socket).args([
        "-O",
        "check",
        "git@127.0.0.1",
    ]));
    assert!(o.status.success(), "master gone: {}", text(&o));

    // Removed from the command line while connected: no new command runs, and the connection
    // is closed within a few seconds.
    let o = server.slipway(&["user", "rm", "bob"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = master.ssh(&server, &bob, "projects");
    assert!(
        !o.status.success() && !text(&o).contains("demo"),
        "a removed user ran a command: {}",
        text(&o)
    );
    assert!(
        master.ended_within(Duration::from_secs(15)),
        "the removed user's connection stayed open"
    );

    // Removed over SSH by an admin: the connection is closed at once.
    let carol = server.add_user("carol");
    let mut master = Master::start(&server, &carol, "carol");
    let o = master.ssh(&server, &carol, "projects");
    assert!(o.status.success(), "{}", text(&o));
    let o = server.ssh(&server.key, "git", "user rm carol");
    assert!(
        o.status.success() && text(&o).contains("its open connection closed"),
        "{}",
        text(&o)
    );
    assert!(
        master.ended_within(Duration::from_secs(3)),
        "carol's connection stayed open"
    );
    let o = server.ssh(&carol, "git", "projects");
    assert!(!o.status.success(), "{}", text(&o));
    // Removed from the command line while connected and idle: closed within a few seconds.
    let dave = server.add_user("dave");
    let mut master = Master::start(&server, &dave, "dave");
    let o = master.ssh(&server, &dave, "projects");
    assert!(o.status.success(), "{}", text(&o));
    let o = server.slipway(&["user", "rm", "dave"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        master.ended_within(Duration::from_secs(12)),
        "dave's idle connection stayed open"
    );
    // The admin is unaffected.
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn channels_per_connection_are_limited() {
    let server = Server::start_with(&[("SLIPWAY_SSH_MAX_CHANNELS", "3")]);
    demo_project(&server);
    let master = Master::start(&server, &server.key, "me");
    // Three upload-packs wait for their client: three channels in use.
    let mut waiting: Vec<Child> = (0..3)
        .map(|_| {
            master
                .command(&server, &server.key, "git-upload-pack '/demo.git'")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ssh")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let o = master.ssh(&server, &server.key, "projects");
    assert!(!o.status.success(), "a fourth channel ran: {}", text(&o));
    assert!(
        master
            .log()
            .contains("too many channels open on this connection (limit 3)"),
        "master log: {}",
        master.log()
    );
    // One ends: a channel is free again.
    let mut first = waiting.remove(0);
    drop(first.stdin.take());
    let _ = first.kill();
    let _ = first.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = master.ssh(&server, &server.key, "projects");
        if o.status.success() {
            assert!(text(&o).contains("demo"), "{}", text(&o));
            break;
        }
        assert!(Instant::now() < deadline, "no channel freed: {}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    for mut c in waiting {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn shells_count_as_sessions_and_are_limited_per_key() {
    let server = Server::start_with(&[
        ("SLIPWAY_MAX_SESSIONS_PER_KEY", "3"),
        ("SLIPWAY_SSH_MAX_SHELLS_PER_KEY", "2"),
    ]);
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let shell = |command: &str| {
        Command::new("ssh")
            .args(server.ssh_args(&server.key))
            .args(["main.demo@127.0.0.1", command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh")
    };
    // Three idle upload-packs hold the key's three sessions: a shell is refused too.
    let idle: Vec<Child> = (0..3)
        .map(|_| {
            Command::new("ssh")
                .args(server.ssh_args(&server.key))
                .args(["git@127.0.0.1", "git-upload-pack '/demo.git'"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ssh")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let o = server.ssh(&server.key, "main.demo", "echo over");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("too many open sessions for this key (limit 3)")
            && !text(&o).contains("over"),
        "{}",
        text(&o)
    );
    for mut c in idle {
        let _ = c.kill();
        let _ = c.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = server.ssh(&server.key, "main.demo", "echo free");
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions not freed: {}",
            text(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Two shells running: a third one is refused while they run, and runs once they ended.
    let started = Instant::now();
    let holders = [shell("sleep 6; echo held"), shell("sleep 6; echo held")];
    std::thread::sleep(Duration::from_secs(2));
    let o = server.ssh(&server.key, "main.demo", "echo third");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("too many shells open for this key (limit 2)")
            && !text(&o).contains("third"),
        "{}",
        text(&o)
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "too slow to tell"
    );
    for h in holders {
        let o = h.wait_with_output().expect("holder");
        assert!(
            o.status.success() && text(&o).contains("held"),
            "{}",
            text(&o)
        );
    }
    let o = server.ssh(&server.key, "main.demo", "echo again");
    assert!(
        o.status.success() && text(&o).contains("again"),
        "{}",
        text(&o)
    );
}

#[test]
fn subsystems_are_refused_at_once() {
    let server = Server::start();
    let started = Instant::now();
    let mut args = server.ssh_args(&server.key);
    // sftp takes -P for the port.
    let port = args.len() - 2;
    args[port] = "-P".into();
    let o = run(Command::new("timeout")
        .arg("20")
        .arg("sftp")
        .args(&args)
        .args(["-b", "/dev/null", "git@127.0.0.1"]));
    let took = started.elapsed();
    assert!(
        !o.status.success() && o.status.code() != Some(124),
        "{:?} {}",
        o.status,
        text(&o)
    );
    assert!(took < Duration::from_secs(8), "sftp took {took:?}");

    let started = Instant::now();
    let o = run(Command::new("timeout")
        .arg("20")
        .arg("ssh")
        .args(server.ssh_args(&server.key))
        .args(["-s", "git@127.0.0.1", "anything"]));
    assert!(
        !o.status.success() && o.status.code() != Some(124),
        "{:?} {}",
        o.status,
        text(&o)
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    // Commands still work.
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success(), "{}", text(&o));
}
