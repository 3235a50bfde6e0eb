//! Hostile tenants (invariant 6, issues 13 and 14): a project's code, pushed by someone who
//! also gets a shell, tries from each kind of process it runs (build hook, deploy hook, app,
//! worker, cron, SSH shell) to reach the host, the server's data and other projects, and
//! fails. One server serves many checks; each probe prints `WHO CHECK=RESULT` lines.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};

use slipway_e2e::{free_port, text, App, Server};

/// What a hostile process tries; run as `python3 attack.py WHO`. Reads the targets from
/// `/app/targets.txt` (`NAME=HOST:PORT` lines, `abstract=NAME`, `data=DIR`, `secret=WORD`).
const ATTACK: &str = r#"import ctypes, errno, os, socket, stat, sys
who = sys.argv[1]
def say(check, result):
    print("%s %s=%s" % (who, check, result), flush=True)
tcp, abstract, data, secrets = [], [], "/nonexistent", []
for line in open("/app/targets.txt").read().split():
    k, v = line.split("=", 1)
    if k == "abstract": abstract.append(v)
    elif k == "data": data = v
    elif k == "secret": secrets.append(v)
    else: tcp.append((k, v))

# The network: host listeners, other projects' apps and services, other environments.
for name, target in tcp:
    host, port = target.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
    except OSError:
        say("tcp-" + name, "closed"); continue
    got = b""
    try:
        s.settimeout(2)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        while len(got) < 65536:
            b = s.recv(4096)
            if not b: break
            got += b
    except OSError:
        pass
    s.close()
    say("tcp-" + name, "open-secret" if any(w.encode() in got for w in secrets) else "open")
for name in abstract:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + name); say("abstract-socket", "open")
    except OSError:
        say("abstract-socket", "closed")
    s.close()

# Descriptors inherited from the server (or runc) by this process and by the container's init.
def fds(pid):
    out = []
    try:
        names = os.listdir("/proc/%s/fd" % pid)
    except OSError as e:
        return "unreadable"
    for fd in sorted(names, key=int):
        try:
            t = os.readlink("/proc/%s/fd/%s" % (pid, fd))
        except OSError:
            continue
        if int(fd) > 2 and not t.startswith("/proc/"):
            out.append("%s:%s" % (fd, t))
    return ";".join(out) or "none"
say("fds", fds("self"))
say("init-fds", fds(1))

# Other processes: none of another user (the host's, another project's) is visible; the
# data dir is not reachable through any process's root or working directory.
me = os.getuid()
foreign, via = [], []
for pid in os.listdir("/proc"):
    if not pid.isdigit(): continue
    try:
        uid = int([l for l in open("/proc/%s/status" % pid) if l.startswith("Uid:")][0].split()[1])
        # `runc init` (root, for a moment) is the start of a `runc exec` into this
        # container (a shell, a cron, a hook), not a process of the host or another
        # project: it leaves as it becomes the exec's command, as this project's user.
        argv = open("/proc/%s/cmdline" % pid).read().split("\0")
        if uid != me and argv[:2] != ["runc", "init"] and not (argv[0].endswith("/runc") and argv[1:2] == ["init"]):
            foreign.append(pid)
    except (OSError, IndexError):
        pass
    for link in ("root", "cwd"):
        p = "/proc/%s/%s%s" % (pid, link, data)
        try:
            os.listdir(p); via.append(p)
        except OSError:
            pass
say("foreign-procs", ",".join(foreign) or "none")
try:
    os.listdir(data); via.append(data)
except OSError:
    pass
say("data-dir", ",".join(via) or "denied")

# Kernel interfaces: syscalls the seccomp filter refuses (x86_64 numbers), device nodes, mounts.
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sys_call(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and nr == 56:
        os._exit(0)  # the child of a clone that went through
    e = ctypes.get_errno()
    return "allowed" if r >= 0 else (errno.errorcode.get(e, str(e)))
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x20000, 17
say("unshare-user", sys_call(272, CLONE_NEWUSER))
say("clone-newuser", sys_call(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0))
say("setns", sys_call(308, 0, 0))
say("keyctl", sys_call(250, 1, 0, 0, 0, 0))
say("add-key", sys_call(248, 0, 0, 0, 0, 0))
say("perf-event-open", sys_call(298, 0, 0, -1, -1, 0))
say("bpf", sys_call(321, 0, 0, 0))
say("userfaultfd", sys_call(323, 0))
say("io-uring-setup", sys_call(425, 1, 0))
say("open-by-handle-at", sys_call(304, 0, 0, 0))
say("ptrace-init", sys_call(101, 16, 1, 0, 0))
say("mount-tmpfs", "allowed" if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
for name, kind, dev in (("mknod-block", stat.S_IFBLK, os.makedev(8, 0)), ("mknod-mem", stat.S_IFCHR, os.makedev(1, 1))):
    try:
        os.mknod("/tmp/.attack-" + name, kind | 0o666, dev); say(name, "allowed")
    except OSError as e:
        say(name, errno.errorcode.get(e.errno, "?"))
ok = {"null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"}
extra = []
for root, dirs, files in os.walk("/dev"):
    for f in files:
        p = os.path.join(root, f)
        try:
            m = os.lstat(p).st_mode
        except OSError:
            continue
        if (stat.S_ISCHR(m) or stat.S_ISBLK(m)) and f not in ok and not root.startswith("/dev/pts"):
            extra.append(p)
say("dev-nodes", ",".join(sorted(extra)) or "none")

# Writes that would change the host: sysctls, sysrq, the uevent helper, cgroup release
# agents and the container's own limits, and the slug (read only but in a build).
def write(path, value="1"):
    try:
        with open(path, "w") as f:
            f.write(value)
        return "written"
    except OSError as e:
        return errno.errorcode.get(e.errno, "?")
say("write-core-pattern", write("/proc/sys/kernel/core_pattern", "|/tmp/x"))
say("write-sysrq", write("/proc/sysrq-trigger", "h"))
say("write-uevent-helper", write("/sys/kernel/uevent_helper", "/tmp/x"))
cg = []
if os.path.isdir("/sys/fs/cgroup"):
    for c in sorted(os.listdir("/sys/fs/cgroup")):
        d = "/sys/fs/cgroup/" + c
        for f in ("release_agent", "notify_on_release", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "pids.max", "cpu.cfs_quota_us", "cgroup.procs", "memory.max"):
            if os.path.exists(d + "/" + f):
                r = write(d + "/" + f, "-1" if "limit" in f or f.endswith("max") else "1")
                if r == "written": cg.append(d + "/" + f)
        try:
            os.mkdir(d + "/attack"); cg.append(d + "/attack")
        except OSError:
            pass
say("cgroup-writes", ",".join(cg) or "denied")
for p in ("/proc/kcore", "/proc/kmsg", "/dev/kmsg", "/sys/firmware/efi", "/proc/1/root/etc/shadow"):
    try:
        say("read-" + p, "read" if open(p, "rb").read(1) else "empty")
    except OSError as e:
        say("read-" + p, errno.errorcode.get(e.errno, "?"))
try:
    os.link("/etc/passwd", "/tmp/.attack-passwd"); say("hardlink-etc", "allowed")
except OSError as e:
    say("hardlink-etc", errno.errorcode.get(e.errno, "?"))
say("write-app", write("/app/.attack-write", "x"))
"#;

/// The hostile project's app: answers with its environment's name and a word only it knows.
const EVIL_SERVER: &str = slipway_e2e::py_app!(
    "",
    "        body = (\"app-of-\" + os.environ[\"PLATFORM_BRANCH\"] + \"-\" + open(\"/app/secret.txt\").read()).encode()\n"
);

/// The hostile project's configuration: every kind of process runs the attack; the app,
/// the worker and the deploy hook leave what they saw on the `out` mount.
const EVIL_YAML: &str = "name: evil\ntype: python:3.11\n\
mounts:\n  out: {source: local, source_path: out}\n\
hooks:\n  build: python3 attack.py build\n  deploy: python3 attack.py deploy > /app/out/deploy.txt 2>&1\n\
web:\n  commands:\n    start: python3 attack.py app > /app/out/app.txt 2>&1; exec python3 server.py\n\
workers:\n  w:\n    commands:\n      start: python3 attack.py worker > /app/out/worker.txt 2>&1; exec sleep infinity\n\
crons:\n  probe:\n    spec: '0 0 1 1 *'\n    cmd: python3 attack.py cron\n";

/// The checks every process must see fail, with the result each one must print.
fn refused(who: &str, out: &str, build: bool) -> Vec<String> {
    let get = |check: &str| -> String {
        let prefix = format!("{who} {check}=");
        out.lines()
            .find_map(|l| l.split_once(&prefix).map(|(_, r)| r.trim_end()))
            .unwrap_or_else(|| panic!("no {check} from {who} in:\n{out}"))
            .to_string()
    };
    let mut holes = Vec::new();
    let mut want = |check: &str, ok: &[&str]| {
        let got = get(check);
        if !ok.contains(&got.as_str()) {
            holes.push(format!("{who} {check}={got} (want one of {ok:?})"));
        }
    };
    for check in ["fds", "init-fds", "foreign-procs", "dev-nodes"] {
        want(check, &["none"]);
    }
    want("data-dir", &["denied"]);
    want("cgroup-writes", &["denied"]);
    want("abstract-socket", &["closed"]);
    for check in [
        "unshare-user",
        "clone-newuser",
        "setns",
        "keyctl",
        "add-key",
        "perf-event-open",
        "bpf",
        "userfaultfd",
        "io-uring-setup",
        "open-by-handle-at",
        "ptrace-init",
        "mount-tmpfs",
    ] {
        want(check, &["EPERM"]);
    }
    for check in ["mknod-block", "mknod-mem"] {
        want(check, &["EPERM"]);
    }
    for check in ["write-core-pattern", "write-sysrq", "write-uevent-helper"] {
        want(check, &["EROFS", "EACCES", "ENOENT", "EPERM"]);
    }
    for p in [
        "/proc/kcore",
        "/proc/kmsg",
        "/dev/kmsg",
        "/sys/firmware/efi",
        "/proc/1/root/etc/shadow",
    ] {
        want(
            &format!("read-{p}"),
            &["EACCES", "ENOENT", "EPERM", "EISDIR", "empty"],
        );
    }
    want("hardlink-etc", &["EXDEV", "EPERM"]);
    if !build {
        want("write-app", &["EROFS", "EACCES"]);
    }
    // Every host or foreign address is closed (or, for another environment's port that
    // this one also happens to use, open without the other's secret).
    for line in out.lines() {
        if let Some((_, rest)) = line.split_once(&format!("{who} tcp-")) {
            let (name, result) = rest.split_once('=').unwrap_or((rest, ""));
            let result = result.trim_end();
            let ok: &[&str] = if name.starts_with("host-") {
                &["closed"]
            } else {
                &["closed", "open"]
            };
            if !ok.contains(&result) {
                holes.push(format!("{who} reaches {name}: {result}"));
            }
        }
    }
    holes
}

/// A TCP listener on all the host's addresses and one on an abstract unix socket, both
/// answering `HOST-SECRET` to whoever connects, for as long as the test runs.
fn host_listeners() -> (u16, String) {
    let tcp = TcpListener::bind("0.0.0.0:0").expect("host listener");
    let port = tcp.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut c in tcp.incoming().flatten() {
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nHOST-SECRET\n");
        }
    });
    let name = format!("slipway-redteam-{}-{port}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let unix = UnixListener::bind_addr(&addr).expect("abstract listener");
    std::thread::spawn(move || {
        for mut c in unix.incoming().flatten() {
            let _ = c.write_all(b"HOST-SECRET\n");
        }
    });
    (port, name)
}

/// The host's IPv4 addresses other than loopback (`ip -o -4 addr`).
fn host_addresses() -> Vec<String> {
    let o = slipway_e2e::run(std::process::Command::new("ip").args(["-o", "-4", "addr"]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next())
        .filter(|a| !a.starts_with("127."))
        .map(str::to_string)
        .collect()
}

/// A shell's stdout in `ENV.PROJECT` (failing the test if the command fails).
fn shell(server: &Server, env_project: &str, command: &str) -> String {
    let o = server.ssh(&server.key, env_project, command);
    assert!(o.status.success(), "{command}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Invariant 6 from every kind of process: a build hook, a deploy hook, the app, a worker,
/// a cron and an SSH shell of a hostile project, and a shell of its other environment, try
/// the host's listeners (its SSH port, router, metrics, a TCP service on every host address,
/// an abstract unix socket), another project's app and service, the production
/// environment's app from a branch, descriptors inherited from the server, other
/// processes' roots, the data dir, refused syscalls, device nodes, sysctls, cgroup files,
/// and the read-only slug. All fail, and the victim keeps serving.
#[test]
fn hostile_code_in_every_kind_of_process_reaches_nothing_of_the_host_or_other_projects() {
    let (host_port, abstract_name) = host_listeners();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let server = Server::start_with(&[("SLIPWAY_METRICS_LISTEN", &metrics)]);

    // The victim: an app and a Redis service in another project.
    let victim = server.project(
        "victim",
        &[
            (
                ".platform.app.yaml",
                "name: site\ntype: python:3.11\nrelationships:\n  cache: 'cache:redis'\n\
                 web:\n  commands:\n    start: python3 server.py\n",
            ),
            (".platform/services.yaml", "cache:\n  type: redis:7.0\n"),
            (
                "server.py",
                slipway_e2e::py_app!("", "        body = b\"VICTIM-SECRET\"\n"),
            ),
        ],
    );
    server.push_ok(&victim, "victim");
    let port_of = |env_project: &str| -> String {
        shell(&server, env_project, "echo $PORT").trim().to_string()
    };
    let victim_port = port_of("main.victim");
    let rels = shell(
        &server,
        "main.victim",
        "echo $PLATFORM_RELATIONSHIPS | base64 -d",
    );
    let field = |name: &str| -> String {
        let at = rels
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("{rels}"));
        rels[at + name.len() + 3..]
            .trim_start()
            .trim_start_matches('"')
            .split(['"', ',', '}'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let victim_redis = format!("{}:{}", field("ip"), field("port"));

    let mut targets = format!(
        "data={data}\nabstract={abstract_name}\nsecret=HOST-SECRET\nsecret=VICTIM-SECRET\n\
         host-listener=127.0.0.1:{host_port}\n\
         host-ssh=127.0.0.1:{ssh}\nhost-router=127.0.0.1:{http}\nhost-metrics={metrics}\n\
         victim-app=127.0.0.1:{victim_port}\nvictim-redis={victim_redis}\n",
        data = server.data.display(),
        ssh = server.ssh_port,
        http = server.http_port,
    );
    for (i, a) in host_addresses().iter().enumerate() {
        targets.push_str(&format!(
            "host-listener-{i}={a}:{host_port}\nhost-ssh-{i}={a}:{}\n",
            server.ssh_port
        ));
    }
    let evil = server.project(
        "evil",
        &[
            (".platform.app.yaml", EVIL_YAML),
            ("attack.py", ATTACK),
            ("server.py", EVIL_SERVER),
            ("secret.txt", "EVIL\n"),
            ("targets.txt", &targets),
        ],
    );
    let pushed = server.push_ok(&evil, "evil");
    let main_port = port_of("main.evil");

    // What each process of production saw.
    let runtime = shell(
        &server,
        "main.evil",
        "cat /app/out/app.txt /app/out/worker.txt /app/out/deploy.txt",
    );
    let shell_out = shell(&server, "main.evil", "python3 /app/attack.py shell");
    let o = server.ssh(&server.key, "git", "cron run evil main probe");
    assert!(o.status.success(), "{}", text(&o));
    let cron = text(&o);

    // A branch of the same project tries production's app.
    evil.write(
        "targets.txt",
        &format!("{targets}secret=app-of-main\nevil-main-app=127.0.0.1:{main_port}\n"),
    );
    evil.git_ok(&["checkout", "-q", "-b", "dev"]);
    evil.commit("attack production");
    let o = server.git(&evil.dir, &["push", &server.remote("evil"), "dev"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    let dev_build = text(&o).replace(" build ", " devbuild ");
    let dev_shell = shell(&server, "dev.evil", "python3 /app/attack.py devshell");

    let mut holes = Vec::new();
    for (who, out, build) in [
        ("build", &pushed, true),
        ("deploy", &runtime, false),
        ("app", &runtime, false),
        ("worker", &runtime, false),
        ("cron", &cron, false),
        ("shell", &shell_out, false),
        ("devbuild", &dev_build, true),
        ("devshell", &dev_shell, false),
    ] {
        holes.extend(refused(who, out, build));
    }
    for out in [&dev_build, &dev_shell] {
        for line in out.lines().filter(|l| l.contains("tcp-evil-main-app=")) {
            assert!(
                !line.ends_with("open-secret"),
                "a branch reaches production: {line}"
            );
        }
    }
    assert!(
        holes.is_empty(),
        "holes:\n{}\n\nbuild:\n{pushed}\nruntime:\n{runtime}\ncron:\n{cron}\nshell:\n{shell_out}\ndev:\n{dev_build}\n{dev_shell}",
        holes.join("\n")
    );

    // The victim and the host's services still serve.
    assert_eq!(
        server.get("main.victim.localhost", "/"),
        Some((200, "VICTIM-SECRET".into()))
    );
    let mut c = std::net::TcpStream::connect(("127.0.0.1", host_port)).expect("host listener");
    let mut got = String::new();
    let _ = c.read_to_string(&mut got);
    assert!(got.contains("HOST-SECRET"), "{got}");
}

/// An app on a unix socket (as every PHP app is): answers `GET /headers` with the request's
/// `X-Forwarded-*` fields (one per line), anything else with `hog`.
const HOG_SERVER: &str = slipway_e2e::py_socket_app!(
    concat!(
        "path = os.environ[\"SOCKET\"]\n",
        "if os.path.exists(path):\n",
        "    os.unlink(path)\n",
    ),
    concat!(
        "        if self.path == \"/headers\":\n",
        "            body = \"\".join(\"%s: %s\\n\" % (k.lower(), v) for k, v in self.headers.items() if k.lower().startswith(\"x-forwarded\")).encode()\n",
        "        else:\n",
        "            body = b\"hog\"\n",
    )
);

/// What `dd` of `mib` MiB into `path` did in `ENV.PROJECT`'s shell: `full` when the file
/// system ran out of space, `written` when all went in.
fn fill(server: &Server, env_project: &str, path: &str, mib: u32) -> String {
    let o = server.ssh(
        &server.key,
        env_project,
        &format!(
            "dd if=/dev/zero of={path} bs=1M count={mib} 2>&1 | grep -q 'No space left' && echo full || echo written; \
             rm -f {path}"
        ),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Exhausting the host and spoofing: an app fills its `/run` (on unix sockets, as every PHP
/// app) and its `/tmp` and hits their caps, not the host's disk; forwarding headers a
/// client sends are never passed on as the router's own; a contributor of one project
/// cannot push into another through repository path forms. The neighbour keeps serving.
#[test]
fn filling_run_and_tmp_spoofed_forwarding_and_other_repo_paths_are_contained() {
    let server = Server::start();
    let victim = App::demo(server.dir.path(), "victim");
    server.push_ok(&victim, "victim");
    let hog = server.project(
        "hog",
        &[
            (
                ".platform.app.yaml",
                "name: hog\ntype: python:3.11\nweb:\n  upstream:\n    socket_family: unix\n  \
                 commands:\n    start: python3 server.py\n",
            ),
            ("server.py", HOG_SERVER),
        ],
    );
    server.push_ok(&hog, "hog");

    // /run is a small tmpfs, /tmp is capped (256 MiB at size M): both fill, the host's disk
    // does not.
    assert_eq!(
        fill(&server, "main.hog", "/run/fill", 64),
        "full",
        "{}",
        shell(
            &server,
            "main.hog",
            "grep ' /run ' /proc/self/mountinfo; df /run"
        )
    );
    assert_eq!(fill(&server, "main.hog", "/tmp/fill", 320), "full");
    let run = server.data.join("run/hog.main.hog.r1");
    let o = slipway_e2e::run(
        std::process::Command::new("findmnt")
            .args(["-n", "-o", "FSTYPE"])
            .arg(&run),
    );
    assert_eq!(text(&o).trim(), "tmpfs", "{}", text(&o));
    assert_eq!(
        server.get("main.hog.localhost", "/"),
        Some((200, "hog".into()))
    );
    assert_eq!(
        server.get("main.victim.localhost", "/"),
        Some((200, "built-1\n".into()))
    );

    // Forwarding headers from the client: the router's own proto and host replace them, and
    // its peer address is the last of X-Forwarded-For; on the own HTTP/1.1 path (a GET) and
    // on hyper's (HTTP/1.0).
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let request = format!(
            "GET /headers {version}\r\nHost: main.hog.localhost\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: main.victim.localhost\r\nX-Forwarded-For: 203.0.113.7\r\n\
             Connection: close\r\n\r\n"
        );
        let (status, head, body) = slipway_e2e::raw_http(server.http_port, &request);
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 200, "{head}{body}");
        assert!(
            body.contains("x-forwarded-proto: http\n"),
            "{version}: {body}"
        );
        assert!(!body.contains("https"), "{version}: {body}");
        assert!(
            body.contains("x-forwarded-host: main.hog.localhost"),
            "{version}: {body}"
        );
        assert!(!body.contains("victim"), "{version}: {body}");
        let xff = body
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
            .unwrap_or_else(|| panic!("{version}: {body}"));
        assert!(xff.ends_with("127.0.0.1"), "{version}: {xff}");
    }

    // A contributor of hog pushes to victim through path forms: all refused, victim's
    // branch stays.
    let key = server.add_user_with_role("mallory", "hog", "contributor");
    let before = slipway_e2e::run(
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(slipway_e2e::repo_dir(&server, "victim"))
            .args(["rev-parse", "main"]),
    );
    victim.write("VERSION", "pwned\n");
    victim.commit("pwned");
    for path in [
        "../victim.git",
        "hog/../victim.git",
        "%2e%2e/victim.git",
        "hog/../../victim",
        "./victim.git",
        "/victim.git",
        "hog.git/../victim.git",
    ] {
        let url = format!("ssh://git@127.0.0.1:{}/{path}", server.ssh_port);
        let o = server.git_as(&key, &victim.dir, &["push", &url, "main:dev"]);
        assert!(!o.status.success(), "{path}: {}", text(&o));
        let o = server.git_as(&key, &victim.dir, &["push", &url, "main"]);
        assert!(!o.status.success(), "{path}: {}", text(&o));
    }
    let after = slipway_e2e::run(
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(slipway_e2e::repo_dir(&server, "victim"))
            .args(["rev-parse", "main"]),
    );
    assert_eq!(text(&before), text(&after));
    assert_eq!(
        server.get("main.victim.localhost", "/"),
        Some((200, "built-1\n".into()))
    );
    assert_eq!(
        server.get("dev.victim.localhost", "/").map(|a| a.0),
        Some(404)
    );
}
