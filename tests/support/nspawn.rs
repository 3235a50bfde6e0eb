//! A real systemd to test the shipped units under: `systemd-nspawn --boot` of a small
//! Debian root (systemd, dbus, runc, git), made once per machine by mmdebstrap and cached
//! beside the test stacks. The container boots with its own PID, mount, UTS, IPC and
//! network namespace (`--private-network`: loopback only) and a read-only root with a
//! throw-away tmpfs on top (`--volatile=overlay`), so nothing it does reaches the cached
//! root or the host. Where PID 1 of the host is not systemd, nspawn cannot ask it for a
//! scope: the container then runs in a cgroup of its own made here (`--keep-unit`),
//! removed when it stops.
//!
//! runc inside the container ([`Options::runc`]) needs two things nspawn refuses by
//! default (found by trying on a cgroup v1 "hybrid" host, systemd 252): the `@keyring`
//! system calls (runc gives each container a new session keyring; nspawn's filter
//! answers `keyctl` with EPERM, which runc only forgives as ENOSYS: "unable to join
//! session keyring: unable to create session key: operation not permitted"), and
//! writable cgroup v1 controllers (nspawn mounts them read-only when it uses no user
//! namespace: "unable to apply cgroup configuration: mkdir /sys/fs/cgroup/cpuset/ID:
//! read-only file system"). The first is `--system-call-filter=@keyring`; the second
//! has no flag: the controllers' mounts are remounted read-write inside the container
//! ([`WRITABLE_CGROUPS`], `mount -o remount,bind,rw`, a change of those mounts only),
//! which the container's root may do (it keeps `CAP_SYS_ADMIN`).

use std::io::Read as _;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{run, text};

/// What the root holds besides `--variant=minbase`: an init, a bus, and what
/// `slipway serve` checks for or runs at start.
pub const ROOT_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "runc",
    "tini",
    "git",
    "iproute2",
    "iptables",
];

/// Version of the root's recipe (packages, options): part of its folder's name.
const RECIPE: u32 = 3;

/// The Debian suite of the host (the slipway binary's glibc must be there): bookworm
/// unless the host is trixie.
fn suite() -> &'static str {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os.lines().any(|l| l.trim() == "VERSION_CODENAME=trixie") {
        "trixie"
    } else {
        "bookworm"
    }
}

/// The cached root (built here the first time: 3-4 minutes): a folder beside the shared
/// stacks, its name made from the suite and recipe. Concurrent callers wait on a lock.
pub fn systemd_root() -> Result<PathBuf, String> {
    let parent = crate::shared_stacks_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/slipway-test-stacks"));
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let name = format!("systemd-root-{}-{RECIPE}", suite());
    let root = parent.join(&name);
    let lock = std::fs::File::create(parent.join(format!(".{name}.test-lock")))
        .map_err(|e| format!("the systemd root's lock: {e}"))?;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err("locking the systemd root".into());
    }
    if root.join("sbin/init").exists() {
        return Ok(root);
    }
    let started = Instant::now();
    let partial = parent.join(format!("{name}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    let mirror = std::env::var("SLIPWAY_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    let out = run(Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
        ])
        .arg(format!("--include={}", ROOT_PACKAGES.join(",")))
        .arg(suite())
        .arg(&partial)
        .arg(format!("deb {mirror} {} main", suite())));
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(format!("mmdebstrap of the systemd root: {}", text(&out)));
    }
    std::fs::rename(&partial, &root).map_err(|e| format!("{}: {e}", root.display()))?;
    eprintln!("systemd root: built in {:.1?}", started.elapsed());
    Ok(root)
}

/// Whether the host's PID 1 is systemd (then nspawn asks it for a scope).
fn host_has_systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

/// The cgroup folders to run the container in where PID 1 is not systemd: under this
/// process's cgroup in the `name=systemd` hierarchy and in the unified one, each mounted
/// where the host mounts it; with `every_controller`, in each cgroup v1 controller's too (the
/// container's cgroup namespace then starts there, so what runc makes inside is below
/// them, apart from other machines' and removed with them).
fn own_cgroups(name: &str, every_controller: bool) -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let mount = match controllers {
            "name=systemd" => PathBuf::from("/sys/fs/cgroup/systemd"),
            "" if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() => {
                PathBuf::from("/sys/fs/cgroup/unified")
            }
            "" => PathBuf::from("/sys/fs/cgroup"),
            c if every_controller && !c.starts_with("name=") => Path::new("/sys/fs/cgroup").join(c),
            _ => continue,
        };
        if mount.join("cgroup.procs").exists() {
            dirs.push(mount.join(path.trim_start_matches('/')).join(name));
        }
    }
    dirs
}

/// Remove a cgroup folder and the ones systemd made below it, deepest first.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A booted container; powered off and its cgroups removed when dropped.
pub struct Machine {
    nspawn: Child,
    /// The container's PID 1 (systemd), as the host sees it.
    pub leader: u32,
    cgroups: Vec<PathBuf>,
    log: PathBuf,
}

/// A shell script remounting read-write each cgroup v1 controller nspawn mounted
/// read-only (nothing where the host has cgroup v2 only), for runc inside the container:
/// run by the container's root, e.g. as an `ExecStartPre=` of the unit starting runc.
pub const WRITABLE_CGROUPS: &str = r#"#!/bin/sh
set -e
for m in /sys/fs/cgroup/*/; do
    m=${m%/}
    if grep -q " $m cgroup ro," /proc/self/mounts; then
        mount -o remount,bind,rw "$m"
    fi
done
"#;

/// How to boot a [`Machine`].
#[derive(Default)]
pub struct Options<'a> {
    /// Each `(host path, container path)` is mounted read-only in the container.
    pub binds: &'a [(&'a Path, &'a str)],
    /// Let runc run containers inside: the `@keyring` system calls are allowed (the
    /// cgroup controllers stay read-only until [`WRITABLE_CGROUPS`] runs inside).
    pub runc: bool,
}

impl Machine {
    /// Boot `root` (see [`systemd_root`]) with each `(host path, container path)` of
    /// `binds` mounted read-only; waits until systemd finished booting. Nspawn's and the
    /// container's console output go to `log`.
    pub fn boot(root: &Path, binds: &[(&Path, &str)], log: &Path) -> Result<Machine, String> {
        Machine::boot_with(
            root,
            &Options {
                binds,
                ..Options::default()
            },
            log,
        )
    }

    /// [`Machine::boot`] with `options`.
    pub fn boot_with(root: &Path, options: &Options<'_>, log: &Path) -> Result<Machine, String> {
        let binds = options.binds;
        if !Path::new("/usr/bin/systemd-nspawn").exists() {
            return Err(
                "systemd-nspawn is not installed (apt-get install systemd-container; scripts/install-deps)"
                    .into(),
            );
        }
        let name = format!("slipway-e2e-{}", std::process::id());
        let mut args: Vec<String> = vec![
            "--quiet".into(),
            format!("--directory={}", root.display()),
            "--volatile=overlay".into(),
            "--register=no".into(),
            "--private-network".into(),
            format!("--machine={name}"),
            "--console=read-only".into(),
        ];
        for (host, inside) in binds {
            args.push(format!("--bind-ro={}:{inside}", host.display()));
        }
        if options.runc {
            args.push("--system-call-filter=@keyring".into());
        }
        let cgroups = if host_has_systemd() {
            Vec::new()
        } else {
            args.push("--keep-unit".into());
            own_cgroups(&format!("{name}.nspawn"), options.runc)
        };
        args.push("--boot".into());
        for dir in &cgroups {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            // A new cpuset cgroup takes no process before it has CPUs and memory nodes.
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if let Some(parent) = dir.parent().filter(|p| p.join(file).exists()) {
                    let value = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                    std::fs::write(dir.join(file), value.trim())
                        .map_err(|e| format!("{}/{file}: {e}", dir.display()))?;
                }
            }
        }
        // The shell moves itself into the container's cgroups, then becomes nspawn.
        let mut script = String::new();
        for dir in &cgroups {
            script.push_str(&format!("echo $$ > '{}/cgroup.procs' && ", dir.display()));
        }
        script.push_str("exec systemd-nspawn \"$@\"");
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let nspawn = Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting systemd-nspawn: {e}"))?;
        let mut machine = Machine {
            nspawn,
            leader: 0,
            cgroups,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = machine.nspawn.id();
        while machine.leader == 0 {
            if let Ok(Some(st)) = machine.nspawn.try_wait() {
                return Err(format!("systemd-nspawn {st}: {}", machine.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!("no container init: {}", machine.log_text()));
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            machine.leader = children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .find(|c| {
                    std::fs::read_to_string(format!("/proc/{c}/comm"))
                        .is_ok_and(|comm| comm.trim() == "systemd")
                })
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(100));
        }
        // `--wait` returns once booting ended: running, or degraded if a unit failed; it
        // says nothing while systemd does not listen yet.
        let deadline = Instant::now() + Duration::from_secs(90);
        let (o, state) = loop {
            let o = machine.sh("timeout 90 systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if !state.is_empty() || Instant::now() > deadline {
                break (o, state);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if state != "running" && state != "degraded" {
            return Err(format!(
                "the container's systemd is {state:?}: {} {}",
                text(&o),
                machine.log_text()
            ));
        }
        Ok(machine)
    }

    /// Run `script` with `sh -c` inside the container (all its namespaces, its root),
    /// as root with a plain environment.
    pub fn sh(&self, script: &str) -> Output {
        run(Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "/bin/sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8"))
    }

    /// Run `f` on a thread in the container's network namespace (processes it starts are
    /// there too): connections to 127.0.0.1 reach the container's loopback.
    pub fn in_network<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let network = self.network();
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_network(&network);
                f()
            })
            .join()
            .expect("the thread in the container's network namespace")
        })
    }

    /// The container's network namespace, for [`enter_network`].
    pub fn network(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.leader))
    }

    /// Nspawn's and the console's output so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

/// Move the calling thread (only it) into the network namespace at `path` (see
/// [`Machine::network`]).
pub fn enter_network(path: &Path) {
    let file = std::fs::File::open(path).expect("the container's network namespace");
    // SAFETY: setns on a descriptor we own; it moves the calling thread alone.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "entering the container's network namespace");
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM: nspawn asks the container's systemd to power off.
        // SAFETY: kill(2) of the nspawn process this value started.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
        for dir in &self.cgroups {
            remove_cgroup(dir);
        }
    }
}

/// Boot a container for test `test`, or say why it cannot boot here: then the test
/// skips, except under `CI=true`, where it fails.
pub fn boot_or_skip(test: &str, binds: &[(&Path, &str)], log: &Path) -> Option<Machine> {
    boot_or_skip_with(
        test,
        &Options {
            binds,
            ..Options::default()
        },
        log,
    )
}

/// [`boot_or_skip`] with `options`.
pub fn boot_or_skip_with(test: &str, options: &Options<'_>, log: &Path) -> Option<Machine> {
    let booted = systemd_root().and_then(|root| Machine::boot_with(&root, options, log));
    match booted {
        Ok(m) => Some(m),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: systemd-nspawn cannot boot systemd here (CI=true: no skip): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {test}: systemd-nspawn cannot boot systemd here: {why}");
            None
        }
    }
}
