//! Operations on a running environment over SSH (spec section 6): rollback,
//! redeploy, variables, logs, and shells into the running container.

use std::io::Write;
use std::process::{Command, Stdio};

use slipway_e2e::{text, App, Server};

const HOST: &str = "main.demo.localhost";

fn body(server: &Server) -> String {
    server.get(HOST, "/").map(|(_, b)| b).unwrap_or_default()
}

#[test]
fn rollback_and_redeploy_reuse_slugs_and_move_the_branch() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);
    app.write("VERSION", "2\n");
    let v2 = app.commit("v2");
    server.push_ok(&app, "demo");
    assert_eq!(body(&server), "built-2\n");

    // Back to the previous release: no build, the branch says what is live.
    let o = server.admin("rollback demo main");
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("rollback of main to release 1"), "{out}");
    assert!(out.contains("reused sha256:"), "{out}");
    assert!(!out.contains("running hooks.build"), "{out}");
    assert!(out.contains("-----> live:"), "{out}");
    assert_eq!(body(&server), "built-1\n");
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), v1);

    // Forward again to a named release.
    let o = server.admin("rollback demo main 2");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(body(&server), "built-2\n");
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), v2);

    // Bad requests change nothing.
    for (cmd, msg) in [
        ("rollback demo main 99", "release 99 of main not found"),
        (
            "rollback demo nope",
            "environment 'nope' of project 'demo' not found",
        ),
        ("rollback other main", "project 'other' not found"),
        ("rollback demo main x", "usage: rollback"),
    ] {
        let o = server.admin(cmd);
        assert!(!o.status.success(), "{cmd}");
        assert!(text(&o).contains(msg), "{cmd}: {}", text(&o));
    }
    assert_eq!(body(&server), "built-2\n");

    // Redeploy: a new release of the same slug.
    let o = server.admin("redeploy demo main");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("release 5"), "{}", text(&o));
    assert_eq!(body(&server), "built-2\n");
    let o = server.admin("releases demo main");
    let listing = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        listing.lines().next().unwrap_or("").starts_with("5\tlive"),
        "{listing}"
    );

    // The next push builds on the branch as it is now.
    app.write("VERSION", "3\n");
    app.commit("v3");
    server.push_ok(&app, "demo");
    assert_eq!(body(&server), "built-3\n");
}

#[test]
fn variables_shells_and_logs() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    // Sourced before commands and shells alike.
    app.write(
        ".environment",
        "export FROM_ENVIRONMENT=sourced\nexport PATH=\"/app/bin:$PATH\"\n",
    );
    app.commit("with an .environment");
    server.push_ok(&app, "demo");

    // A command in the container: its output and exit status come back.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "ls /app; echo $SLIPWAY_ENVIRONMENT $PLATFORM_APPLICATION_NAME; exit 7",
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("server.py") && out.contains("build.txt"),
        "{out}"
    );
    assert!(out.contains("main hello"), "{out}");
    // /app and the root are read-only; /tmp is writable.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "touch /app/x || echo app-ro; touch /x || echo root-ro; touch /tmp/x && echo tmp-rw",
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("app-ro") && out.contains("root-ro") && out.contains("tmp-rw"),
        "{}",
        text(&o)
    );
    // Another app name or environment: a clear refusal.
    let o = server.ssh(&server.key, "web.main.demo", "true");
    assert!(text(&o).contains("no app 'web' in main"), "{}", text(&o));
    let o = server.ssh(&server.key, "dev.demo", "true");
    assert!(
        text(&o).contains("environment 'dev' of project 'demo' not found"),
        "{}",
        text(&o)
    );

    // A real terminal: `ssh -tt` allocates one; the shell sees a pty and exits with its status.
    let mut cmd = Command::new("ssh");
    for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
        cmd.arg(a);
    }
    let mut child = cmd
        .args([
            "-tt",
            "-p",
            &server.ssh_port.to_string(),
            "main.demo@127.0.0.1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    if let Some(mut stdin) = child.stdin.take() {
        let _ =
            stdin.write_all(b"tty; echo \"PATH=$PATH\"; echo \"ENV=$FROM_ENVIRONMENT\"; exit 5\n");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let o = child.wait_with_output().expect("ssh output");
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let shell = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(shell.contains("/dev/pts/"), "{}", text(&o));
    // The interactive shell has exactly the PATH and variables a command gets: the
    // container's PATH with `.environment` sourced once, not the stack's /etc/profile one.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "echo \"PATH=$PATH\"; echo \"ENV=$FROM_ENVIRONMENT\"",
    );
    let command = String::from_utf8_lossy(&o.stdout).to_string();
    let line = |out: &str, prefix: &str| {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    };
    let path = line(&command, "PATH=/app/bin:").unwrap_or_else(|| panic!("{command}"));
    assert_eq!(line(&shell, "PATH=/"), Some(path), "{shell}");
    assert_eq!(
        line(&command, "ENV="),
        Some("ENV=sourced".into()),
        "{command}"
    );
    assert_eq!(line(&shell, "ENV=s"), Some("ENV=sourced".into()), "{shell}");

    // Shells need the contributor role, and admin on a protected environment.
    let bob = slipway_e2e::new_key(server.dir.path(), "bob");
    let o = server.slipway(&[
        "user",
        "add",
        "bob",
        "--key",
        bob.with_extension("pub").to_str().unwrap_or(""),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for (role, refusal) in [
        (
            "viewer",
            "needs the admin role on demo (main is protected); you are viewer",
        ),
        (
            "contributor",
            "needs the admin role on demo (main is protected); you are contributor",
        ),
    ] {
        let o = server.admin(&format!("access grant demo bob {role}"));
        assert!(o.status.success(), "{}", text(&o));
        let o = server.ssh(&bob, "main.demo", "echo inside");
        assert!(!o.status.success(), "{role}: {}", text(&o));
        assert!(text(&o).contains(refusal), "{role}: {}", text(&o));
        assert!(!String::from_utf8_lossy(&o.stdout).contains("inside"));
    }

    // Variables: set one, the environment redeploys, the app sees it.
    let o = server.admin("var set demo main GREETING=hello-there");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("redeploy of main"), "{}", text(&o));
    let o = server.ssh(&server.key, "main.demo", "echo $GREETING");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello-there");
    let o = server.admin("var ls demo main");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "GREETING=hello-there"
    );
    let o = server.admin("var set demo main PORT=1");
    assert!(
        !o.status.success() && text(&o).contains("belong to the platform"),
        "{}",
        text(&o)
    );
    let o = server.admin("var unset demo main GREETING");
    assert!(o.status.success(), "{}", text(&o));
    let o = server.ssh(&server.key, "main.demo", "echo \"[$GREETING]\"");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");

    // Logs: what the app printed.
    let o = server.admin("logs demo main");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello listening on"),
        "{}",
        text(&o)
    );
}

/// Spec section 7's exit codes for operations (issue 15): a refused operation (an unknown
/// release or backup, nothing to roll back to) exits 1, bad usage 2, and a failure inside
/// the operation, here a backup whose parts cannot be stored because the archive's blob
/// folder is not a folder, exits 3 with its message on stderr; once the folder is back the
/// same command works. The failed backup's activity sums it up in one line, its log has
/// the whole failure.
#[test]
fn operations_exit_1_refused_2_bad_usage_3_internal_failure() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nhooks:\n  build: echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("a mount");
    server.push_ok(&app, "demo");

    for (command, code) in [
        ("rollback demo main", 1),
        ("rollback demo main 9", 1),
        ("backup restore demo main 9", 1),
        ("sync demo main", 1),
        ("backup restore demo main nine", 2),
        ("rollback demo main nine", 2),
        ("backup frobnicate", 2),
    ] {
        let o = server.admin(command);
        assert_eq!(o.status.code(), Some(code), "{command}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("slipway: "),
            "{command}: {}",
            text(&o)
        );
    }

    // The archive cannot store the backup's parts: an internal failure, not a refusal.
    let blobs = server.data.join("archive/blobs/sha256");
    let aside = server.data.join("archive/blobs/sha256.aside");
    std::fs::rename(&blobs, &aside).expect("move the blobs aside");
    std::fs::write(&blobs, b"not a folder").expect("a file in its place");
    let o = server.admin("backup create demo main");
    std::fs::remove_file(&blobs).expect("remove the file");
    std::fs::rename(&aside, &blobs).expect("the blobs back");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("slipway: ") && err.contains("sha256"),
        "{}",
        text(&o)
    );
    // Its activity sums it up in one line; its log has the whole failure (issue 15).
    let whole = err
        .lines()
        .find_map(|l| l.strip_prefix("slipway: "))
        .unwrap()
        .to_string();
    let o = server.admin("activity demo main --json");
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let backup = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "backup")
        .unwrap_or_else(|| panic!("a backup in {list}"));
    assert_eq!(backup["status"], "failure", "{backup}");
    let summary = backup["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("backup of main failed: ")
            && !summary.contains('\n')
            && summary.chars().count() <= 150,
        "{summary}"
    );
    let log = server.admin_ok(&format!("activity log {}", backup["id"]));
    assert!(log.contains(&whole), "{log}");

    let o = server.admin("backup create demo main");
    assert!(o.status.success(), "{}", text(&o));
}

/// Runs `ssh ARGS...` on a pseudo-terminal of 30x100 and drives it as a user at a terminal
/// does: the size, a resize of the window, Ctrl-C on a running command. Prints what the
/// remote shell printed, with `=== STEP` lines between the steps.
const TERMINAL_DRIVER: &str = r#"
import fcntl, os, pty, select, struct, sys, termios, time
def size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid, fd = pty.fork()
if pid == 0:
    os.execvp("ssh", ["ssh"] + sys.argv[1:])
size(fd, 30, 100)
out = bytearray()
def read_until(marker, seconds):
    end = time.time() + seconds
    while marker not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out.extend(os.read(fd, 4096))
            except OSError:
                return
def step(name, data, marker, seconds=20):
    out.extend(("\n=== " + name + "\n").encode())
    os.write(fd, data)
    read_until(marker.encode(), seconds)
step("size", b"stty size; echo size-done-$((40+2))\n", "size-done-42")
size(fd, 40, 120)
time.sleep(1)
step("resized", b"stty size; echo resized-done-$((40+2))\n", "resized-done-42")
step("sleep", b"echo sleeping-$((1+1)); sleep 300\n", "sleeping-2")
time.sleep(1)
step("interrupt", b"\x03", "xx-never", 2)
step("alive", b"echo alive-$((1+1))\n", "alive-2", 10)
step("exit", b"exit 0\n", "xx-never", 3)
sys.stdout.write(out.decode(errors="replace"))
"#;

#[test]
fn a_terminal_shell_follows_window_resizes_and_ctrl_c_interrupts_a_command() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let mut args: Vec<String> = server
        .ssh_command(&server.key)
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    args.extend([
        "-tt".into(),
        "-p".into(),
        server.ssh_port.to_string(),
        "main.demo@127.0.0.1".into(),
    ]);
    let o = slipway_e2e::run(
        Command::new("python3")
            .arg("-c")
            .arg(TERMINAL_DRIVER)
            .args(&args),
    );
    let shell = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let section = |name: &str| {
        shell
            .split(&format!("=== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n=== ").next())
            .unwrap_or_default()
            .to_string()
    };
    // The terminal's size when the shell opened, then after the window grew.
    assert!(
        section("size")
            .lines()
            .any(|l| l.trim().ends_with(" 30 100") || l.trim() == "30 100"),
        "{shell}"
    );
    assert!(
        section("resized")
            .lines()
            .any(|l| l.trim().ends_with(" 40 120") || l.trim() == "40 120"),
        "{shell}"
    );
    // Ctrl-C stopped `sleep 300`: the next command ran at once.
    assert!(
        section("alive").lines().any(|l| l.trim() == "alive-2"),
        "{shell}"
    );
}
