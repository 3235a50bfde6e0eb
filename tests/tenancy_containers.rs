//! The container is a tenancy boundary (issue 13, spec section 8), checked through `git push`
//! and `ssh` as a user would: the build hook, the deploy hook, the app and an SSH shell run as
//! `web` (not uid 0 on the host), with no capabilities, `no_new_privs` and a seccomp filter,
//! cannot read the host's secrets, and the kernel holds their processes and memory.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use slipway_e2e::{text, App, Server};

/// Prints what a process of the container is: `WHO uid=... user=...`, its seccomp mode,
/// effective capabilities and no_new_privs, and whether host secrets are readable.
const PROBE: &str = r#"who=$1
echo "$who uid=$(id -u) user=$(id -un) home-writable=$(touch "$HOME/.probe" 2>/dev/null && echo yes || echo no)"
grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed "s/^/$who /"
grep -q '^root:' /etc/shadow 2>/dev/null && echo "$who shadow=readable" || echo "$who shadow=denied"
ls /etc/ssh/ 2>/dev/null | grep -q key && echo "$who ssh-keys=visible" || echo "$who ssh-keys=hidden"
ls "$HOST_DATA_DIR" >/dev/null 2>&1 && echo "$who data-dir=readable" || echo "$who data-dir=denied"
unshare -r true 2>/dev/null && echo "$who unshare=allowed" || echo "$who unshare=denied"
"#;

/// The demo app with probes in its build hook, deploy hook and start command.
fn probing_app(server: &Server) -> App {
    let app = App::demo(server.dir.path(), "app");
    app.write("probe.sh", PROBE);
    app.write(
        ".platform.app.yaml",
        &format!(
            "name: hello\ntype: python:3.11\nvariables:\n  env:\n    HOST_DATA_DIR: {data}\n\
             hooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n    \
             sh probe.sh build\n    echo cached > $PLATFORM_CACHE_DIR/from-build\n  \
             deploy: sh probe.sh deploy\n\
             web:\n  commands:\n    start: sh probe.sh app > /tmp/app-probe.txt 2>&1; exec python3 server.py\n",
            data = server.data.display()
        ),
    );
    app.commit("probes");
    app
}

/// Checks one probe's lines in `out` and returns the uid it ran as.
fn assert_unprivileged(out: &str, who: &str) -> u32 {
    let line = out
        .lines()
        .find(|l| l.contains(&format!("{who} uid=")))
        .unwrap_or_else(|| panic!("no {who} probe in:\n{out}"));
    let uid: u32 = line
        .split("uid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_ne!(uid, 0, "{who} runs as root:\n{out}");
    for want in [
        "user=web",
        "home-writable=yes",
        "Seccomp:2",
        "CapEff:0000000000000000",
        "NoNewPrivs:1",
        "shadow=denied",
        "ssh-keys=hidden",
        "data-dir=denied",
        "unshare=denied",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{who} ")) && l.contains(want)),
            "{who}: missing {want} in:\n{out}"
        );
    }
    uid
}

#[test]
fn builds_hooks_apps_and_shells_run_as_web_without_privileges() {
    let server = Server::start();
    let app = probing_app(&server);
    let out = server.push_ok(&app, "demo");

    let build = assert_unprivileged(&out, "build");
    let deploy = assert_unprivileged(&out, "deploy");
    assert_eq!(build, deploy, "one user per project");

    // The app itself: its probe (written at start) and its host uid.
    let o = server.ssh(&server.key, "main.demo", "cat /tmp/app-probe.txt");
    assert!(o.status.success(), "{}", text(&o));
    let app_out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(assert_unprivileged(&app_out, "app"), build);
    let pid = server.container_pid("demo.main.hello.r1");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let host_uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|u| u.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>();
    assert_eq!(host_uid, vec![build; 4], "host uid of the app: {status}");

    // An SSH shell.
    let o = server.ssh(&server.key, "main.demo", "sh /app/probe.sh shell");
    assert!(o.status.success(), "{}", text(&o));
    let shell_out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(assert_unprivileged(&shell_out, "shell"), build);

    // What the build wrote on the host belongs to that user, not to root.
    let cache = server.build_cache("demo", "main", "hello");
    let meta = std::fs::metadata(cache.path.join("from-build")).expect("the build wrote its cache");
    assert_eq!((meta.uid(), meta.gid()), (build, build));
    drop(cache);

    // The default size (M): 1 CPU, 1 GiB, 1024 tasks, as the kernel sees them.
    let limits =
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/pids/pids.max";
    let o = server.ssh(&server.key, "main.demo", limits);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["100000", "1073741824", "1024"],
        "{}",
        text(&o)
    );

    // Another project gets another user; its `size: S` gives it half of that, and its
    // `resources` make its memory 100 + 200 x 0.5 CPU = 200 MiB.
    let other = App::demo(&server.dir.path().join("other"), "app");
    other.write("probe.sh", PROBE);
    other.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nsize: S\nresources:\n  base_memory: 100\n  memory_ratio: 200\nhooks:\n  build: echo built-1 > build.txt\n\
         web:\n  commands:\n    start: python3 server.py\n",
    );
    other.commit("probe");
    let o = server.git(&other.dir, &["push", &server.remote("other"), "main"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("`size`") && !text(&o).contains("`resources`"),
        "size and resources are acted on: {}",
        text(&o)
    );
    let o = server.ssh(&server.key, "main.other", "sh /app/probe.sh other");
    let other_uid = assert_unprivileged(&String::from_utf8_lossy(&o.stdout), "other");
    assert_ne!(other_uid, build, "projects share a host uid");
    let o = server.ssh(&server.key, "main.other", limits);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["50000", "209715200", "512"],
        "{}",
        text(&o)
    );

    // An unknown size is refused with the list of sizes.
    other.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nsize: XXL\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    other.commit("bad size");
    let o = server.git(&other.dir, &["push", &server.remote("other"), "main"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("unknown size `XXL`; use one of: S, M, L, XL, 2XL, 4XL, AUTO"),
        "{}",
        text(&o)
    );
}

/// A bounded fork bomb: forks sleepers until refused (at most 2000), says how many, kills them.
const FORK_BOMB: &str = "import os, signal, time
kids = []
for i in range(2000):
    try:
        pid = os.fork()
    except OSError as e:
        print('refused:', e, flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
print('FORKED=%d' % len(kids), flush=True)
for k in kids:
    os.kill(k, signal.SIGKILL)
for k in kids:
    os.waitpid(k, 0)
";

#[test]
fn a_fork_bomb_and_a_memory_hog_hit_their_limits_and_the_neighbours_keep_serving() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write("bomb.py", FORK_BOMB);
    app.commit("bomb");
    server.push_ok(&app, "demo");
    let neighbour = App::demo(&server.dir.path().join("n"), "app");
    let o = server.git(&neighbour.dir, &["push", &server.remote("other"), "main"]);
    assert!(o.status.success(), "{}", text(&o));

    // The fork bomb stops at the pids limit (1024 by default).
    let t0 = Instant::now();
    let o = server.ssh(&server.key, "main.demo", "python3 /app/bomb.py");
    let out = text(&o);
    let forked: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("FORKED="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(forked < 1024, "{forked} processes: {out}");
    assert!(out.contains("refused:"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(120));
    // ...and the app, its neighbour and the host still serve.
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into()))
    );
    assert_eq!(
        server.get("main.other.localhost", "/"),
        Some((200, "built-1\n".into()))
    );
    let o = server.ssh(&server.key, "git", "activity demo main");
    assert!(o.status.success(), "{}", text(&o));

    // A memory hog in a shell is killed by the kernel (1 GiB by default); the app lives on.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "python3 -c 'b = bytearray(b\"x\") * (1536 * 1024 * 1024); print(len(b))'",
    );
    assert_eq!(o.status.code(), Some(137), "{}", text(&o));
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into()))
    );

    // A memory hog in a build is killed, and the push says why.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    \
         echo \"built-$(cat VERSION)\" > build.txt\n    \
         python3 -c 'b = bytearray(b\"x\") * (3 * 1024 * 1024 * 1024); print(len(b))'\n\
         web:\n  commands:\n    start: python3 server.py\n",
    );
    app.write("VERSION", "2\n");
    app.commit("hog");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("slipway: out of memory"), "{out}");
    assert!(out.contains("2048 MiB"), "{out}");
    assert!(out.contains("exited with status 137"), "{out}");
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into())),
        "the old release keeps serving"
    );

    // An app that goes over its memory limit as it starts (`size: S`: 512 MiB) is killed,
    // and the push's health phase says so (before: "exited at start" after a bare
    // `Killed`, the cause left to guess).
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nsize: S\nweb:\n  commands:\n    \
         start: python3 -c 'b = bytearray(b\"x\") * (1024 * 1024 * 1024); print(len(b))'\n",
    );
    app.write("VERSION", "3\n");
    app.commit("hog at start");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("health check failed")
            && out.contains("app hello ran out of memory at start")
            && out.contains("memory limit of 512 MiB"),
        "{out}"
    );
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into())),
        "the old release keeps serving"
    );
}

/// What a build can reach: the host's listeners directly, the router and an allowed
/// registry through the build's proxy.
const NET_PROBE: &str = r#"import socket, urllib.error, urllib.request
def tcp(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "open"
    except OSError:
        return "closed"
def get(url):
    try:
        return str(urllib.request.urlopen(url, timeout=20).status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except Exception as e:
        return "error-" + type(e).__name__
print("net direct-ssh", tcp(SSH_PORT), flush=True)
print("net direct-router", tcp(HTTP_PORT), flush=True)
print("net proxy-router", get("http://127.0.0.1:%d/" % HTTP_PORT), flush=True)
print("net proxy-ssh", get("http://127.0.0.1:%d/" % SSH_PORT), flush=True)
print("net proxy-registry", get(REGISTRY + "slipway-hello-js"), flush=True)
"#;

#[test]
fn builds_reach_allowed_registries_but_not_the_hosts_services() {
    let registry = slipway_e2e::NpmRegistry::start(&[slipway_e2e::NpmPackage {
        name: "slipway-hello-js",
        version: "1.0.0",
        files: &[(
            "package.json",
            "{\"name\": \"slipway-hello-js\", \"version\": \"1.0.0\"}\n",
        )],
    }]);
    let allow = registry
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let server = Server::start_with(&[("SLIPWAY_BUILD_EGRESS_ALLOW", allow.as_str())]);
    let app = App::demo(server.dir.path(), "app");
    let probe = format!(
        "SSH_PORT = {}\nHTTP_PORT = {}\nREGISTRY = {:?}\n{NET_PROBE}",
        server.ssh_port, server.http_port, registry.url
    );
    app.write("net.py", &probe);
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    \
         echo \"built-$(cat VERSION)\" > build.txt\n    python3 net.py\n\
         web:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("net probe");
    let out = server.push_ok(&app, "demo");
    for want in [
        "net direct-ssh closed",
        "net direct-router closed",
        "net proxy-router 403",
        "net proxy-ssh 403",
        "net proxy-registry 200",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    // The legitimate path still works: the app was built and serves.
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into()))
    );
}

/// Project users come from a hash of the name: a project whose name would give it the user
/// of an existing project is refused at its first push (naming the other), so no two
/// projects ever share a user; the first project keeps working.
#[test]
fn a_project_name_sharing_a_user_with_another_project_is_refused() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "shop");
    // These two names hash to the same uid (see isolation::tests).
    let o = server.git(&app.dir, &["push", &server.remote("shop-193-69"), "main"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = server.git(&app.dir, &["push", &server.remote("shop-304-74"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("project `shop-304-74` would run as the same unprivileged user as project `shop-193-69`; choose another name"),
        "{out}"
    );
    let o = server.git(&app.dir, &["push", &server.remote("shop-193-69"), "main"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// Prints, each line prefixed with `WHO FILE`, what a process learns of where it runs: its
/// mounts, its mount table with roots, its cgroup and its environment (`env`).
const WHERE_PROBE: &str = r#"who=$1
for f in /proc/self/mounts /proc/self/mountinfo /proc/1/mountinfo /proc/self/cgroup /proc/self/maps; do
  sed "s|^|$who $f |" $f
done
for l in /proc/self/cwd /proc/self/root /proc/self/exe /proc/self/fd/*; do
  echo "$who links $l -> $(readlink $l)"
done
env | sed "s|^|$who environ |"
"#;

/// Lines of `out` printed by `who`'s probe from `file` (at least one).
fn probe_lines<'o>(out: &'o str, who: &str, file: &str) -> Vec<&'o str> {
    let prefix = format!("{who} {file} ");
    let lines: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(&prefix).map(|(_, rest)| rest))
        .collect();
    assert!(!lines.is_empty(), "no {file} from {who} in:\n{out}");
    lines
}

/// What a build, an app and a shell read in their mount table (`/proc/self/mounts`,
/// `/proc/self/mountinfo` and `/proc/1/mountinfo`: every mount's root in its file system
/// and its super options), `/proc/self/cgroup`, `maps`, the `cwd`, `root`, `exe` and `fd`
/// links and their environment names nothing of the host's data dir or stacks folder,
/// nor the host's `/usr` or `/etc` as a mount's root (ARCHITECTURE's "The container's
/// boundary"): a mount of the app's volume shows only its path inside that volume, and a
/// build's writable `/app` and `/cache` their folder on their own disks.
#[test]
fn a_container_reads_no_host_path_in_its_mounts_cgroup_or_environment() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write("where.sh", WHERE_PROBE);
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nmounts:\n  uploads: {source: local, source_path: uploads}\n\
         hooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n    sh where.sh build\n\
         web:\n  commands:\n    start: sh where.sh app > /tmp/where.txt 2>&1; exec python3 server.py\n",
    );
    app.commit("where probe");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let build = text(&o);
    assert!(o.status.success(), "{build}\n{}", server.server_log());
    let o = server.ssh(&server.key, "main.demo", "cat /tmp/where.txt");
    assert!(o.status.success(), "{}", text(&o));
    let app_out = String::from_utf8_lossy(&o.stdout).to_string();
    let o = server.ssh(&server.key, "main.demo", "sh /app/where.sh shell");
    assert!(o.status.success(), "{}", text(&o));
    let shell = String::from_utf8_lossy(&o.stdout).to_string();

    let host = [
        server.data.display().to_string(),
        server.dir.path().display().to_string(),
        slipway_e2e::shared_stacks_dir().display().to_string(),
    ];
    for (who, out) in [("build", &build), ("app", &app_out), ("shell", &shell)] {
        for file in [
            "/proc/self/mounts",
            "/proc/self/mountinfo",
            "/proc/1/mountinfo",
            "/proc/self/cgroup",
            "/proc/self/maps",
            "links",
            "environ",
        ] {
            for line in probe_lines(out, who, file) {
                for path in &host {
                    assert!(
                        !line.contains(path.as_str()),
                        "{who} reads the host path {path} in {file}: {line}"
                    );
                }
            }
        }
        for file in ["/proc/self/mountinfo", "/proc/1/mountinfo"] {
            for line in probe_lines(out, who, file) {
                assert!(!line.contains(".img"), "{who} sees a volume image: {line}");
                // The root of the mount in its file system: never a host folder.
                let root = line.split(' ').nth(3).unwrap_or("");
                assert!(
                    !root.starts_with("/usr/") && !root.starts_with("/etc/") && root != "/usr",
                    "{who} sees a host folder in {file}: {line}"
                );
            }
        }
        // The root, /app (read-only: not a build's), and the generated files come from
        // file systems of their own.
        // A build's /app and /cache: the folder of the files on their disks.
        let own = if who == "build" {
            vec![
                ("/", "/"),
                ("/app", "/files"),
                ("/cache", "/files"),
                ("/etc/passwd", "/passwd"),
            ]
        } else {
            vec![("/", "/"), ("/app", "/"), ("/etc/passwd", "/passwd")]
        };
        for (point, root) in own {
            assert!(
                probe_lines(out, who, "/proc/self/mountinfo")
                    .iter()
                    .any(
                        |l| l.split(' ').nth(4) == Some(point) && l.split(' ').nth(3) == Some(root)
                    ),
                "{who}: no {point} mount with root {root}:\n{out}"
            );
        }
    }
    // The app's mount shows where it is on its volume, nothing above it.
    for (who, out) in [("app", &app_out), ("shell", &shell)] {
        let line = probe_lines(out, who, "/proc/self/mountinfo")
            .into_iter()
            .find(|l| l.split(' ').nth(4) == Some("/app/uploads"))
            .unwrap_or_else(|| panic!("no /app/uploads mount for {who}:\n{out}"));
        assert_eq!(line.split(' ').nth(3), Some("/files/uploads"), "{line}");
    }
    // The legitimate path still works.
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-1\n".into()))
    );
}

/// Run by the live release of [`a_nested_mount_swapped_for_a_link_during_a_deploy_binds_no_host_folder`]:
/// makes `/app/x/y` (a folder of the `x` mount), waits for the host to open it twice (the
/// next deploy walks `x`, then checks `x/y`: its `lstat` saw a folder), then swaps it for a
/// link to `/etc` at once (`renameat2(RENAME_EXCHANGE)`): after the host's check, before
/// runc binds it.
const SWAP_ON_OPEN: &str = r#"import ctypes, os, struct, sys
if open("/app/VERSION").read().strip() != "1":
    sys.exit()  # only the release that mounts x alone attacks
libc = ctypes.CDLL(None, use_errno=True)
x = "/app/x"
y = x + "/y"
os.makedirs(y, exist_ok=True)
fd = libc.inotify_init1(0)
# IN_OPEN | IN_CLOSE_NOWRITE: opens alternate with closes, so none is merged with the last.
assert libc.inotify_add_watch(fd, y.encode(), 0x20 | 0x10) >= 0
open(x + "/armed", "w").write("armed\n")
opens = 0
while opens < 2:
    buf = os.read(fd, 4096)
    at = 0
    while at < len(buf):
        _, mask, _, size = struct.unpack_from("iIII", buf, at)
        opens += 1 if mask & 0x20 else 0
        at += 16 + size
os.symlink("/etc", x + "/y.lnk")
r = libc.renameat2(-100, (x + "/y.lnk").encode(), -100, y.encode(), 2)  # RENAME_EXCHANGE
open(x + "/swapped", "w").write("swapped %d %d\n" % (r, ctypes.get_errno()))
"#;

/// Invariant 6, mounts: a live container of the project swaps the folder of a nested mount
/// (`x/y`, inside the `x` mount's folder) for a link to the host's `/etc` while the next
/// deploy starts its container. The new container never sees the host's `/etc` there: the
/// deploy refuses naming the mount, or binds the folder it resolved. Nested mounts still
/// keep what the app writes across deploys.
#[test]
fn a_nested_mount_swapped_for_a_link_during_a_deploy_binds_no_host_folder() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write("swap.py", SWAP_ON_OPEN);
    let config = |mounts: &str| {
        format!(
            "name: hello\ntype: python:3.11\nmounts:\n{mounts}\
             hooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n\
             web:\n  commands:\n    start: python3 swap.py > /tmp/swap.txt 2>&1 & exec python3 server.py\n"
        )
    };
    let x = "  x: {source: local, source_path: x}\n";
    let xy = "  x/y: {source: local, source_path: x/y}\n";
    app.write(".platform.app.yaml", &config(x));
    app.commit("mount x");
    server.push_ok(&app, "demo");
    let armed = Instant::now();
    loop {
        let o = server.ssh(&server.key, "main.demo", "cat /app/x/armed");
        if String::from_utf8_lossy(&o.stdout).contains("armed") {
            break;
        }
        assert!(armed.elapsed() < Duration::from_secs(30), "{}", text(&o));
        std::thread::sleep(Duration::from_millis(300));
    }

    // The attack: the next release mounts x/y, and the live one swaps it as it starts.
    app.write(".platform.app.yaml", &config(&format!("{x}{xy}")));
    app.write("VERSION", "2\n");
    app.commit("mount x/y too");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    let folder = server.data.join("volumes/demo/main/app-hello/files/x");
    // The swap may land after the new container was pinned: wait for it, or for the old
    // release to be gone (retired before it swapped).
    let waited = Instant::now();
    let swapped = loop {
        let swapped = std::fs::read_to_string(folder.join("swapped")).unwrap_or_default();
        let r1_runs = server
            .containers()
            .iter()
            .any(|(id, _)| id == "demo.main.hello.r1");
        if !swapped.is_empty() || !r1_runs || waited.elapsed() > Duration::from_secs(20) {
            break swapped;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if o.status.success() {
        // Pinned before the swap: the new container binds the folder resolved then.
        let o = server.ssh(
            &server.key,
            "main.demo",
            "test -e /app/x/y/shadow && echo HOST-ETC; ls /app/x/y",
        );
        let seen = text(&o);
        assert!(
            !seen.contains("HOST-ETC") && !seen.contains("passwd"),
            "the host's /etc is bound at /app/x/y:\n{seen}\npush:\n{out}"
        );
    } else {
        // Refused, naming the mount; the new container does not run.
        assert!(
            out.contains("mount `x/y`") && out.contains("symbolic link"),
            "{out}\n{}",
            server.server_log()
        );
        assert!(
            !server
                .containers()
                .iter()
                .any(|(id, status)| id == "demo.main.hello.r2" && status == "running"),
            "{:?}",
            server.containers()
        );
    }
    eprintln!(
        "swap: {swapped}; deploy {}",
        if o.status.success() {
            "went on"
        } else {
            "refused"
        }
    );

    // Undo the swap on the host (whichever release is live), then the legitimate path.
    if std::fs::symlink_metadata(folder.join("y")).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(folder.join("y")).expect("remove the link");
        std::fs::rename(folder.join("y.lnk"), folder.join("y")).expect("put y back");
    }
    let o = server.ssh(
        &server.key,
        "main.demo",
        "echo kept > /app/x/y/kept.txt && echo top > /app/x/top.txt",
    );
    assert!(o.status.success(), "{}", text(&o));
    app.write("VERSION", "3\n");
    app.commit("v3");
    server.push_ok(&app, "demo");
    let o = server.ssh(
        &server.key,
        "main.demo",
        "cat /app/x/y/kept.txt /app/x/top.txt; test -e /app/x/y/shadow && echo HOST-ETC",
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "kept\ntop\n",
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("y/kept.txt")).unwrap_or_default(),
        "kept\n"
    );
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "built-3\n".into()))
    );
    // No staging mount stays once the containers started.
    let binds = server.data.join("runtime/binds");
    let left: Vec<_> = std::fs::read_dir(&binds)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mountinfo.contains(&binds.display().to_string()),
        "{mountinfo}"
    );
}
