//! Real containers under the real runc (needs root). These never skip when `CI=true`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use slipway_runtime::{
    netns, BindMount, ContainerSpec, Limits, RootFs, RunAs, Runtime, RuntimeError, Status, OOM_LINE,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this test process.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the root-only tests can run; with `CI=true` they must (a missing runc or root fails).
fn can_run() -> bool {
    if !slipway_runtime::testing::root() {
        return false;
    }
    if !Path::new("/usr/sbin/runc").exists() && std::env::var("CI").as_deref() != Ok("true") {
        eprintln!("skipping: needs runc");
        return false;
    }
    true
}

struct Fixture {
    _data: tempfile::TempDir,
    data_dir: PathBuf,
    app: tempfile::TempDir,
    rt: Runtime,
    run_as: RunAs,
}

fn fixture() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_path_buf();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("hello.txt"), "hello from app\n").unwrap();
    let rt = Runtime::new(Path::new("runc"), &data_dir).unwrap();
    // What Slipway does with a build folder: the container's user owns it.
    let run_as = RunAs::for_project("runtime-tests");
    run_as.own_tree(app.path()).unwrap();
    Fixture {
        _data: data,
        data_dir,
        app,
        rt,
        run_as,
    }
}

fn spec(f: &Fixture, args: &[&str]) -> ContainerSpec {
    slipway_runtime::testing::spec(RootFs::Host, "testbox", args, f.app.path(), f.run_as)
}

async fn run_lines(rt: &Runtime, spec: &ContainerSpec) -> (Result<i32, RuntimeError>, Vec<String>) {
    let mut lines = Vec::new();
    let r = rt
        .run(spec, Duration::from_secs(60), &mut |l: &str| {
            lines.push(l.to_string())
        })
        .await;
    (r, lines)
}

fn sh(script: &str) -> Vec<&str> {
    vec!["/bin/sh", "-c", script]
}

/// Removes the netns when dropped.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// The deploy crate spawns these futures on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(rt: &Runtime, s: &ContainerSpec, cb: &mut (dyn FnMut(&str) + Send)) {
    fn send<T: Send>(_: T) {}
    send(rt.run(s, Duration::ZERO, cb));
    send(rt.start(s, Path::new("x")));
    send(rt.state("x"));
    send(rt.list());
    send(rt.remove("x", Duration::ZERO));
}

#[tokio::test]
async fn run_streams_output_and_returns_exit_code() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let s = spec(&f, &sh("echo hi; echo err >&2; echo two; exit 3"));
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 3, "{lines:?}");
    for want in ["hi", "err", "two"] {
        assert!(lines.iter().any(|l| l == want), "missing {want}: {lines:?}");
    }
    let hi = lines.iter().position(|l| l == "hi").unwrap();
    let two = lines.iter().position(|l| l == "two").unwrap();
    assert!(hi < two);
    // Removed afterwards.
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);
    assert!(!f.data_dir.join("runtime/bundles").join(&s.id).exists());
    assert!(!f.data_dir.join("runtime/rootfs").join(&s.id).exists());
    assert!(!f.data_dir.join("runtime/binds").join(&s.id).exists());
    // A clean exit.
    let (r, _) = run_lines(&f.rt, &spec(&f, &["/bin/true"])).await;
    assert_eq!(r.unwrap(), 0);
}

#[tokio::test]
async fn file_system_rules_env_and_cwd() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let rw = tempfile::tempdir().unwrap();
    f.run_as.own_tree(rw.path()).unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("r.txt"), "ro data\n").unwrap();
    f.run_as.own_tree(ro.path()).unwrap();
    let script = "touch /x && echo ROOT-RW; touch /usr/x && echo USR-RW; touch /etc/x && echo ETC-RW; \
                  touch /app/new && echo APP-RW; touch /tmp/z && echo TMP-RW; \
                  echo data > /data/w.txt && echo DATA-RW; touch /ro/x && echo RO-RW; cat /ro/r.txt; \
                  echo s > /app/storage/s.txt && echo STORAGE-RW; \
                  cat /app/hello.txt; echo FOO=$FOO; pwd; hostname; id -u; ls /bin/sh >/dev/null && echo BIN-OK; \
                  test -d /proc/self && echo PROC-OK; test -c /dev/null && echo DEV-OK; \
                  touch /sys/x 2>/dev/null || echo SYS-RO";
    let mut s = spec(&f, &sh(script));
    s.env = vec![("FOO".into(), "bar baz".into())];
    s.cwd = "/tmp".into();
    s.mounts = vec![
        BindMount {
            source: rw.path().into(),
            destination: "/data".into(),
            writable: true,
        },
        BindMount {
            source: ro.path().into(),
            destination: "/ro".into(),
            writable: false,
        },
        BindMount {
            source: rw.path().into(),
            destination: "/app/storage".into(),
            writable: true,
        },
    ];
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    let has = |w: &str| lines.iter().any(|l| l == w);
    for absent in ["ROOT-RW", "USR-RW", "ETC-RW", "APP-RW", "RO-RW"] {
        assert!(!has(absent), "{absent} should have failed: {lines:?}");
    }
    for present in [
        "TMP-RW",
        "DATA-RW",
        "STORAGE-RW",
        "ro data",
        "hello from app",
        "FOO=bar baz",
        "/tmp",
        "testbox",
        &f.run_as.uid.to_string(),
        "BIN-OK",
        "PROC-OK",
        "DEV-OK",
        "SYS-RO",
    ] {
        assert!(has(present), "missing {present}: {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );
    assert!(!f.app.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.path().join("w.txt")).unwrap(),
        "data\n"
    );
    assert!(!ro.path().join("x").exists());
    assert!(
        rw.path().join("s.txt").exists(),
        "mount below a read-only /app"
    );

    // Build mode: /app writable, and the default cwd /app.
    let mut b = spec(
        &f,
        &sh("touch /app/built && echo APP-RW; pwd; touch /tmp/t && echo TMP-RW"),
    );
    b.app_writable = true;
    let (r, lines) = run_lines(&f.rt, &b).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    assert!(lines.iter().any(|l| l == "APP-RW"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "/app"), "{lines:?}");
    assert!(f.app.path().join("built").exists());
    // /tmp is private: the earlier container's file is not there.
    let (r, lines) = run_lines(&f.rt, &spec(&f, &sh("ls /tmp | wc -l"))).await;
    assert_eq!(r.unwrap(), 0);
    assert_eq!(lines, vec!["0"]);
}

/// Every read-only mount of a container comes from a file system of its own: no line of its
/// mount table (`/proc/self/mountinfo`, `/proc/1/mountinfo`, `/proc/self/mounts`), root
/// field or super options alike, names the data dir, the app folder or a read-only
/// declared mount's folder or file, for a build (`/app` writable) and an app. Writable
/// folders (a build's `/app`, `/data` here) are bound as they are and are the only lines
/// that may name their folder.
#[tokio::test]
async fn the_mount_table_names_no_data_app_or_mount_folder() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let rw = tempfile::tempdir().unwrap();
    f.run_as.own_tree(rw.path()).unwrap();
    let ro = tempfile::tempdir().unwrap();
    let file = ro.path().join("ca.crt");
    std::fs::write(&file, "certificate\n").unwrap();
    let script = "cat /proc/self/mountinfo /proc/1/mountinfo /proc/self/mounts; \
                  cat /ro.crt; echo w > /data/w.txt && echo DATA-RW";
    for app_writable in [false, true] {
        let mut s = spec(&f, &sh(script));
        s.app_writable = app_writable;
        s.hosts = vec![("db.internal".into(), "10.0.0.2".parse().unwrap())];
        s.mounts = vec![
            BindMount {
                source: rw.path().into(),
                destination: "/data".into(),
                writable: true,
            },
            BindMount {
                source: ro.path().into(),
                destination: "/app/ro".into(),
                writable: false,
            },
            BindMount {
                source: file.clone(),
                destination: "/ro.crt".into(),
                writable: false,
            },
        ];
        let (r, lines) = run_lines(&f.rt, &s).await;
        assert_eq!(r.unwrap(), 0, "{lines:?}");
        for want in ["certificate", "DATA-RW"] {
            assert!(lines.iter().any(|l| l == want), "{want}: {lines:?}");
        }
        let host: Vec<String> = [f.data_dir.as_path(), f.app.path(), rw.path(), ro.path()]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut roots = 0;
        for line in &lines {
            // The mount point: `/proc/self/mountinfo`'s fifth field, `/proc/self/mounts`' second.
            let point = line
                .split(' ')
                .nth(if line.contains(" - ") { 4 } else { 1 });
            if point == Some("/data") || (app_writable && point == Some("/app")) {
                continue;
            }
            for path in &host {
                assert!(!line.contains(path.as_str()), "{path} in: {line}");
            }
            roots += usize::from(line.split(' ').nth(3) == Some("/"));
        }
        // The root, /app/ro, the generated files' tmpfs, /proc and /dev at least.
        assert!(roots >= 5, "{lines:#?}");
        assert_eq!(
            std::fs::read_to_string(rw.path().join("w.txt")).unwrap(),
            "w\n"
        );
    }
    // Nothing staged stays behind.
    let binds = f.data_dir.join("runtime/binds");
    assert_eq!(std::fs::read_dir(&binds).unwrap().count(), 0);
}

#[tokio::test]
async fn runtime_errors_surface() {
    if !can_run() {
        return;
    }
    let f = fixture();
    // The runtime's own failures surface as errors: here a working directory that is a file.
    let mut s = spec(&f, &["true"]);
    s.cwd = "/app/hello.txt".into();
    let (r, _lines) = run_lines(&f.rt, &s).await;
    assert!(matches!(r, Err(RuntimeError::Runtime { .. })), "{r:?}");
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);

    // A missing program is the init's to report: status 127 and the reason.
    let s = spec(&f, &["/no/such/binary"]);
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 127, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("/no/such/binary")),
        "{lines:?}"
    );
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);
    assert!(!f.data_dir.join("runtime/bundles").join(&s.id).exists());
}

#[tokio::test]
async fn invalid_inputs_are_refused() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let log = f.data_dir.join("x.log");
    let bad_spec =
        |s: &ContainerSpec| matches!(s.validate(), Err(RuntimeError::InvalidSpec { .. }));
    let mut s = spec(&f, &["/bin/true"]);
    s.id = "../evil".into();
    assert!(matches!(
        f.rt.start(&s, &log).await,
        Err(RuntimeError::InvalidId(_))
    ));
    assert!(matches!(
        f.rt.state("a/b").await,
        Err(RuntimeError::InvalidId(_))
    ));
    assert!(matches!(
        f.rt.remove("", Duration::ZERO).await,
        Err(RuntimeError::InvalidId(_))
    ));
    for dest in [
        "/etc/passwd",
        "relative",
        "/",
        "/app",
        "/tmp",
        "/a/../etc",
        "/usr/lib/x",
        "/proc/1",
    ] {
        let mut s = spec(&f, &["/bin/true"]);
        s.mounts = vec![BindMount {
            source: f.app.path().into(),
            destination: dest.into(),
            writable: true,
        }];
        assert!(bad_spec(&s), "{dest} accepted");
    }
    let mut s = spec(&f, &["/bin/true"]);
    s.mounts = vec![BindMount {
        source: "/no/such/source".into(),
        destination: "/data".into(),
        writable: false,
    }];
    assert!(bad_spec(&s));
    let mut s = spec(&f, &["/bin/true"]);
    s.app_dir = "/no/such/app".into();
    assert!(matches!(
        run_lines(&f.rt, &s).await.0,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    let mut s = spec(&f, &["/bin/true"]);
    s.netns = Some("/run/netns/no-such-netns-slipway".into());
    assert!(bad_spec(&s));
    let mut s = spec(&f, &["/bin/true"]);
    s.env = vec![("A=B".into(), "x".into())];
    assert!(bad_spec(&s));
    let mut s = spec(&f, &["/bin/true"]);
    s.hostname = "bad host!".into();
    assert!(bad_spec(&s));
    let mut s = spec(&f, &["/bin/true"]);
    s.cwd = "app".into();
    assert!(bad_spec(&s));
    let s = spec(&f, &[]);
    assert!(bad_spec(&s));
    assert!(matches!(
        Runtime::new(Path::new("/no/such/runc"), &f.data_dir),
        Err(RuntimeError::RuntimeNotFound(_))
    ));
    for name in ["", "a/b", "../x", "-x", "a b"] {
        assert!(
            matches!(netns::ensure(name), Err(RuntimeError::InvalidNetnsName(_))),
            "{name}"
        );
        assert!(netns::delete(name).is_err());
    }
    // exec in a container that does not exist: the runtime's message.
    let mut sink = |_: &str| {};
    match f
        .rt
        .exec(
            "no-such-container-x",
            &["true".into()],
            &[],
            "",
            Duration::from_secs(10),
            &mut sink,
        )
        .await
    {
        Err(RuntimeError::Runtime { message, .. }) => {
            assert!(message.contains("does not exist"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(f
        .rt
        .exec("x", &[], &[], "", Duration::from_secs(1), &mut sink)
        .await
        .is_err());
}

/// Connects to `127.0.0.1:port` from inside the network namespace at `ns` and sends a GET.
fn http_get_in_netns(ns: &Path, port: u16) -> std::io::Result<String> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /hello.txt HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        stream.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")))
}

#[tokio::test]
async fn detached_app_in_netns_state_list_exec_remove() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let name = unique("slwt");
    let _guard = NetnsGuard(name.clone());
    let ns = netns::ensure(&name).unwrap();
    assert_eq!(netns::ensure(&name).unwrap(), ns, "idempotent");
    assert!(netns::list("slwt-").unwrap().contains(&name));

    let port: u16 = 20000 + (std::process::id() % 20000) as u16;
    let mut s = spec(
        &f,
        &sh("python3 -m http.server $PORT --bind 127.0.0.1 & wait"),
    );
    let secret = format!("tok-{}", unique("secret"));
    s.env = vec![
        ("PORT".into(), port.to_string()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("SECRET_TOKEN".into(), secret.clone()),
    ];
    s.netns = Some(ns.clone());
    s.annotations.insert("slipway.app".into(), "web".into());
    let log = f.data_dir.join("logs/web.log");
    f.rt.start(&s, &log).await.unwrap();
    // The variables were passed at the start and are on no file of the runtime's any more
    // (bundle, runc's state); the bundle's config.json is the owner's only.
    let leaks = std::process::Command::new("grep")
        .args(["-rl", &secret])
        .arg(f.data_dir.join("runtime"))
        .output()
        .unwrap();
    assert!(
        leaks.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&leaks.stdout)
    );
    let config = f
        .data_dir
        .join("runtime/bundles")
        .join(&s.id)
        .join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.contains("PYTHONUNBUFFERED") && text.contains("PATH="),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(matches!(
        f.rt.start(&s, &log).await,
        Err(RuntimeError::AlreadyExists(_))
    ));

    let st = f.rt.state(&s.id).await.unwrap().expect("known");
    assert_eq!(st.status, Status::Running);
    assert!(st.pid.is_some_and(|p| p > 0));
    assert_eq!(
        st.annotations.get("slipway.app").map(String::as_str),
        Some("web")
    );
    let listed = f.rt.list().await.unwrap();
    let me = listed.iter().find(|c| c.id == s.id).expect("listed");
    assert_eq!(
        me.annotations.get("slipway.app").map(String::as_str),
        Some("web")
    );

    // Reachable inside the netns.
    let started = Instant::now();
    let response = loop {
        match tokio::task::spawn_blocking({
            let ns = ns.clone();
            move || http_get_in_netns(&ns, port)
        })
        .await
        .unwrap()
        {
            Ok(r) => break r,
            Err(e) if started.elapsed() < Duration::from_secs(15) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!(
                "no answer in the netns: {e}; log: {:?}",
                std::fs::read_to_string(&log)
            ),
        }
    };
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(response.contains("hello from app"), "{response}");
    // ...and not on the host's loopback.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    // exec: output, exit code, env, cwd.
    let mut lines = Vec::new();
    let code =
        f.rt.exec(
            &s.id,
            &[
                "/bin/sh".into(),
                "-c".into(),
                "echo out; echo E=$EXTRA >&2; pwd; exit 7".into(),
            ],
            &[("EXTRA".into(), "yes".into())],
            "/tmp",
            Duration::from_secs(30),
            &mut |l: &str| lines.push(l.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(code, 7);
    for want in ["out", "E=yes", "/tmp"] {
        assert!(lines.iter().any(|l| l == want), "missing {want}: {lines:?}");
    }
    // exec sees exactly the variables it is given (the container's are not kept on disk to
    // inherit from), PATH by default, and keeps the container's cwd when empty. The
    // variables are not on the runtime's command line: a `ps` while it runs shows no value.
    let mut lines = Vec::new();
    let watch = {
        let secret = secret.clone();
        std::thread::spawn(move || {
            let mut seen_exec = false;
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(20) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    assert!(
                        !cmdline.contains(&secret),
                        "a command line shows it: {cmdline}"
                    );
                    seen_exec |= cmdline.contains(" exec ") && cmdline.contains("--process");
                }
                if seen_exec {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        })
    };
    let code =
        f.rt.exec(
            &s.id,
            &[
                "/bin/sh".into(),
                "-c".into(),
                "sleep 2; echo P=$PORT S=$SECRET_TOKEN; echo $PATH; pwd".into(),
            ],
            &[("SECRET_TOKEN".into(), secret.clone())],
            "",
            Duration::from_secs(30),
            &mut |l: &str| lines.push(l.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(
        watch.join().unwrap(),
        "the runc exec was never seen running"
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], format!("P= S={secret}"));
    assert!(lines[1].contains("/usr/bin"), "{lines:?}");
    assert_eq!(lines[2], "/app");
    // exec timeout.
    let t0 = Instant::now();
    let r =
        f.rt.exec(
            &s.id,
            &["sleep".into(), "100".into()],
            &[],
            "",
            Duration::from_secs(1),
            &mut |_: &str| {},
        )
        .await;
    assert!(matches!(r, Err(RuntimeError::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(
        f.rt.state(&s.id).await.unwrap().unwrap().status,
        Status::Running
    );

    // The app's output went to the log file.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("GET /hello.txt"), "{text}");

    // A second server with another data dir sees none of it.
    let other = fixture();
    assert!(other.rt.list().await.unwrap().iter().all(|c| c.id != s.id));
    assert_eq!(other.rt.state(&s.id).await.unwrap(), None);
    other
        .rt
        .remove(&s.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        f.rt.state(&s.id).await.unwrap().unwrap().status,
        Status::Running
    );

    let t0 = Instant::now();
    f.rt.remove(&s.id, Duration::from_secs(10)).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "SIGTERM reaches python (not PID 1) through `kill --all`"
    );
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);
    assert!(f.rt.list().await.unwrap().iter().all(|c| c.id != s.id));
    assert!(!f.data_dir.join("runtime/bundles").join(&s.id).exists());
    f.rt.remove(&s.id, Duration::from_secs(1)).await.unwrap();

    netns::delete(&name).unwrap();
    netns::delete(&name).unwrap();
    assert!(!netns::list("slwt-").unwrap().contains(&name));
}

#[tokio::test]
async fn exiting_app_reports_stopped_and_stubborn_app_is_killed() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let log = f.data_dir.join("logs/crash.log");
    let s = spec(&f, &sh("echo crashing; exit 1"));
    f.rt.start(&s, &log).await.unwrap();
    let t0 = Instant::now();
    loop {
        let st =
            f.rt.state(&s.id)
                .await
                .unwrap()
                .expect("still known until removed");
        if st.status == Status::Stopped {
            assert_eq!(st.pid, None);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "not stopped: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("crashing"));
    f.rt.remove(&s.id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);

    // Ignores SIGTERM: killed after the grace period.
    let s = spec(&f, &sh("trap '' TERM; while true; do sleep 0.1; done"));
    f.rt.start(&s, &log).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    f.rt.remove(&s.id, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "grace not honoured"
    );
    assert!(t0.elapsed() < Duration::from_secs(8));
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);
}

#[tokio::test]
async fn timeout_kills_the_container() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let s = spec(&f, &["sleep", "100"]);
    let t0 = Instant::now();
    let r =
        f.rt.run(&s, Duration::from_secs(1), &mut |_: &str| {})
            .await;
    assert!(matches!(r, Err(RuntimeError::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(f.rt.state(&s.id).await.unwrap(), None);
    assert!(!f.data_dir.join("runtime/bundles").join(&s.id).exists());
}

/// The value of `field` (e.g. `Uid`) in a `/proc/PID/status`-style text.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

#[tokio::test]
async fn processes_run_as_web_without_privileges() {
    if !can_run() {
        return;
    }
    let f = fixture();
    // The attacks: read host secrets, gain namespaces or mounts, ptrace, bind a low port.
    let script = "id -u; id -un; id -g; echo HOME=$HOME; touch $HOME/h && echo HOME-RW; \
                  grep -E '^(Seccomp|CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status; \
                  cat /etc/shadow | head -c 1 | wc -c | sed 's/^/SHADOW-BYTES=/'; \
                  ls /etc/ssh | wc -l | sed 's/^/SSH-ENTRIES=/'; \
                  unshare -r true 2>/dev/null && echo UNSHARE-OK; \
                  unshare -U true 2>/dev/null && echo USERNS-OK; \
                  mount -t tmpfs none /tmp 2>/dev/null && echo MOUNT-OK; \
                  python3 -c 'import socket; socket.socket().bind((\"127.0.0.1\", 81))' 2>/dev/null \
                      && echo LOWPORT-OK; \
                  python3 -c 'import ctypes; l = ctypes.CDLL(None); print(\"PTRACE=%d\" % l.ptrace(16, 1, 0, 0))'; \
                  cat /proc/1/cmdline | tr '\\0' ' '; echo";
    let (r, lines) = run_lines(&f.rt, &spec(&f, &sh(script))).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    let has = |w: &str| lines.iter().any(|l| l == w);
    let uid = f.run_as.uid.to_string();
    for want in [
        uid.as_str(),
        "web",
        "HOME=/tmp",
        "HOME-RW",
        "Seccomp:\t2",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "SHADOW-BYTES=0",
        "SSH-ENTRIES=0",
        "PTRACE=-1",
    ] {
        assert!(has(want), "missing {want}: {lines:?}");
    }
    for absent in ["0", "UNSHARE-OK", "USERNS-OK", "MOUNT-OK", "LOWPORT-OK"] {
        assert!(!has(absent), "{absent} should have failed: {lines:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("/.slipway/init -g -- ")),
        "tini is pid 1: {lines:?}"
    );

    // A detached app: its host uid is the project's, and so is an exec's (a hook or a shell).
    let log = f.data_dir.join("logs/web.log");
    let s = spec(&f, &sh("exec sleep 1000"));
    f.rt.start(&s, &log).await.unwrap();
    let pid = f.rt.state(&s.id).await.unwrap().and_then(|st| st.pid);
    let pid = pid.expect("running");
    let host = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let want = format!("{uid}\t{uid}\t{uid}\t{uid}");
    assert_eq!(status_field(&host, "Uid"), Some(want.as_str()), "{host}");
    let mut lines = Vec::new();
    let code =
        f.rt.exec(
            &s.id,
            &sh("id -un; id -u; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status")
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            &[],
            "",
            Duration::from_secs(30),
            &mut |l: &str| lines.push(l.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(code, 0, "{lines:?}");
    for want in [
        "web",
        uid.as_str(),
        "CapEff:\t0000000000000000",
        "Seccomp:\t2",
        "NoNewPrivs:\t1",
    ] {
        assert!(lines.iter().any(|l| l == want), "exec: {want}: {lines:?}");
    }
    f.rt.remove(&s.id, Duration::from_secs(1)).await.unwrap();

    // Root is refused outright.
    let mut root = spec(&f, &["true"]);
    root.run_as = RunAs { uid: 0, gid: 0 };
    assert!(matches!(
        f.rt.run(&root, Duration::from_secs(5), &mut |_: &str| {})
            .await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
}

#[tokio::test]
async fn kernel_enforces_pids_memory_and_tmp_limits() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let limits = Limits {
        pids: 32,
        memory_bytes: 64 * 1024 * 1024,
        cpu_millis: 500,
        tmp_bytes: 8 * 1024 * 1024,
    };
    // A (bounded) fork bomb: 100 sleepers, at most 32 tasks fit.
    let bomb = "import os, time\n\
                n = 0\n\
                for i in range(100):\n\
                \x20   try:\n\
                \x20       if os.fork() == 0:\n\
                \x20           time.sleep(30)\n\
                \x20           os._exit(0)\n\
                \x20       n += 1\n\
                \x20   except OSError as e:\n\
                \x20       print('refused:', e, flush=True)\n\
                \x20       break\n\
                print('FORKED=%d' % n, flush=True)\n\
                os.killpg(0, 9)\n";
    let mut s = spec(&f, &["python3", "-c", bomb]);
    s.limits = limits;
    let (_, lines) = run_lines(&f.rt, &s).await;
    let forked: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("FORKED="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(forked < 32, "the pids limit held: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("refused:")),
        "forks were refused: {lines:?}"
    );

    // A memory hog is killed by the kernel, and that is said.
    let mut s = spec(
        &f,
        &sh("python3 -c 'b = bytearray(b\"x\") * (256 * 1024 * 1024); print(len(b))'"),
    );
    s.limits = limits;
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 137, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(OOM_LINE) && l.contains("64 MiB")),
        "{lines:?}"
    );
    // Under the limit, the same works.
    let mut s = spec(
        &f,
        &sh("python3 -c 'b = bytearray(b\"x\") * (16 * 1024 * 1024); print(len(b))'"),
    );
    s.limits = limits;
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with(OOM_LINE)), "{lines:?}");

    // /tmp is capped.
    let mut s = spec(
        &f,
        &sh("dd if=/dev/zero of=/tmp/big bs=1M count=20 2>&1; du -m /tmp/big | cut -f1 | sed 's/^/MB=/'"),
    );
    s.limits = limits;
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("No space left")),
        "{lines:?}"
    );
    let mb: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("MB="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(mb <= 8, "{lines:?}");
}

#[tokio::test]
async fn init_reaps_orphans_and_forwards_signals() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let log = f.data_dir.join("logs/zombies.log");
    // Orphans that exit at once: without an init that reaps, they stay zombies.
    let s = spec(
        &f,
        &sh("for i in 1 2 3 4 5; do (sleep 0.1 &); done; \
             trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.1; done"),
    );
    f.rt.start(&s, &log).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut lines = Vec::new();
    let code =
        f.rt.exec(
            &s.id,
            &[
                "/bin/sh".into(),
                "-c".into(),
                "echo ZOMBIES=$(cat /proc/[0-9]*/stat 2>/dev/null | grep -c ') Z ')".into(),
            ],
            &[],
            "",
            Duration::from_secs(30),
            &mut |l: &str| lines.push(l.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(lines.iter().any(|l| l == "ZOMBIES=0"), "{lines:?}");
    // SIGTERM reaches the app through the init: it exits on its own, well within the grace.
    let t0 = Instant::now();
    f.rt.remove(&s.id, Duration::from_secs(10)).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("got TERM"), "{text}");
}

/// A pinned bind source is the folder resolved when it was pinned: swapped for a link to
/// the host's `/etc` before the container starts, the container still sees that folder;
/// the staging mounts go with the container, and [`Runtime::unpin_stale`] removes leftovers.
#[tokio::test]
async fn a_pinned_bind_source_is_the_folder_resolved_at_pin_time() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let vol = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(vol.path().join("files/x/y")).unwrap();
    std::fs::write(vol.path().join("files/x/y/kept.txt"), "kept\n").unwrap();
    let mut s = spec(
        &f,
        &sh("cat /data/kept.txt; test -e /data/passwd && echo HOST-ETC; true"),
    );
    let pinned =
        f.rt.pin_bind_source(&s.id, vol.path(), Path::new("files/x/y"))
            .unwrap();
    let binds = f.data_dir.join("runtime/binds");
    assert!(pinned.starts_with(&binds), "{}", pinned.display());
    // The tenant swaps the folder for a link after the pin.
    let x = vol.path().join("files/x");
    std::fs::rename(x.join("y"), x.join("moved")).unwrap();
    std::os::unix::fs::symlink("/etc", x.join("y")).unwrap();
    s.mounts = vec![BindMount {
        source: pinned,
        destination: "/data".into(),
        writable: true,
    }];
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    assert_eq!(lines, ["kept"]);
    assert!(!binds.join(&s.id).exists());
    // A link is refused at pin time, naming the path.
    let err =
        f.rt.pin_bind_source("other", vol.path(), Path::new("files/x/y"))
            .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // A pin whose container never started is removed at the next serve start.
    let left =
        f.rt.pin_bind_source("left", vol.path(), Path::new("files/x/moved"))
            .unwrap();
    f.rt.unpin_stale().unwrap();
    assert!(!left.exists());
    assert!(std::fs::read_dir(&binds).unwrap().next().is_none());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&binds.display().to_string()));
    assert_eq!(
        std::fs::read_to_string(x.join("moved/kept.txt")).unwrap(),
        "kept\n"
    );
}

/// A container has its own cgroup namespace: `/proc/self/cgroup` shows its cgroup as `/`
/// in every hierarchy (v1 controllers and the v2 one alike), not the host's path to it;
/// its `/sys/fs/cgroup` still shows its own limits.
#[tokio::test]
async fn a_container_sees_its_own_cgroup_as_the_root() {
    if !can_run() {
        return;
    }
    let f = fixture();
    let mut s = spec(
        &f,
        &sh("cat /proc/self/cgroup; \
            echo pids.max=$(cat /sys/fs/cgroup/pids/pids.max || cat /sys/fs/cgroup/pids.max)"),
    );
    s.limits.pids = 48;
    let (r, lines) = run_lines(&f.rt, &s).await;
    assert_eq!(r.unwrap(), 0, "{lines:?}");
    let (limit, cgroups) = lines.split_last().expect("output");
    assert_eq!(limit, "pids.max=48", "{lines:?}");
    assert!(!cgroups.is_empty());
    for l in cgroups {
        assert!(l.ends_with(":/"), "a host cgroup path shows: {lines:?}");
    }
}
