//! The container's boundary: who its processes run as ([`RunAs`]), what the kernel lets them
//! use ([`Limits`]), the seccomp filter, the `web` user's `/etc/passwd`, and the init (pid 1).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};

use crate::error::RuntimeError;

/// The name of the user every container process runs as, inside the container.
pub const WEB_USER: &str = "web";
/// Lowest host uid (and gid) given to a project (`0x7000_0000`): far above any distribution's
/// or `/etc/subuid`'s usual ranges and above systemd's container range (which ends at
/// `0x6FFF_FFFF`), yet below 2^31, since software that keeps a uid or gid in a signed 32-bit
/// int breaks above it (gunicorn before 22 masks the gid with `0x7FFF_FFFF` and its workers
/// then fail `setgid`).
pub const FIRST_PROJECT_UID: u32 = 0x7000_0000;
/// How many distinct project uids there are (`FIRST_PROJECT_UID..FIRST_PROJECT_UID + this`,
/// all below `0x7800_0000`).
pub const PROJECT_UIDS: u32 = 1 << 27;
/// Where the init (tini, statically linked) appears inside every container.
pub const INIT_PATH: &str = "/.slipway/init";
/// Where the init is looked for on the host, in order (Debian's `tini` package).
const INIT_CANDIDATES: &[&str] = &["/usr/bin/tini-static", "/usr/local/bin/tini-static"];

/// The unprivileged host user (and group) a container's processes run as. Inside the
/// container it is called `web`; on the host it is a uid of its own per project, never 0,
/// with no capabilities, so processes of two projects cannot touch each other's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunAs {
    /// Host (and container) uid.
    pub uid: u32,
    /// Host (and container) gid.
    pub gid: u32,
}

impl RunAs {
    /// The user of a project: `FIRST_PROJECT_UID + hash(project) % PROJECT_UIDS` (uid = gid).
    pub fn for_project(project: &str) -> RunAs {
        // FNV-1a, 64 bits: stable across versions and machines.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in project.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let uid = FIRST_PROJECT_UID + (h % u64::from(PROJECT_UIDS)) as u32;
        RunAs { uid, gid: uid }
    }

    /// Gives `path` and everything below it to this user (and group); returns how many
    /// entries changed owner. For folders a container writes to, also while another
    /// container of the project runs and changes them: the walk goes through descriptors
    /// (`openat` with `O_NOFOLLOW | O_DIRECTORY`, `fchownat` with `AT_SYMLINK_NOFOLLOW`), so a
    /// folder swapped for a symbolic link meanwhile is never followed and nothing outside
    /// `path` is touched (a symbolic link itself is given, never what it points to). Entries
    /// already owned are left as they are, and each folder is given after what it holds, so
    /// a walk cut short (a crash, an error) leaves `path` under its old owner and is finished
    /// by the next one. For the same reason a walk of an owned tree only reads it.
    pub fn own_tree(&self, path: &Path) -> Result<u64, RuntimeError> {
        use rustix::fs::{Mode, OFlags};
        let failed = |what: &str, at: &Path, e: rustix::io::Errno| {
            RuntimeError::io(
                format!("{what} {}", at.display()),
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )
        };
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(self.uid),
            rustix::fs::Gid::from_raw(self.gid),
        );
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let top = match rustix::fs::open(path, dir_flags, Mode::empty()) {
            Ok(fd) => fd,
            // Not a folder (or a link to one): the entry itself only.
            Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => {
                return self
                    .give_entry(rustix::fs::CWD, path)
                    .map_err(|(what, e)| failed(what, path, e));
            }
            Err(e) => return Err(failed("opening", path, e)),
        };
        let mut changed = 0;
        // Each open folder with the path it is known by (for messages) and its entries.
        let mut stack = vec![(
            path.to_path_buf(),
            rustix::fs::Dir::new(top).map_err(|e| failed("reading", path, e))?,
        )];
        while let Some((at, dir)) = stack.last_mut() {
            let next = dir.read();
            let fd = dir.fd().map_err(|e| failed("reading", at, e))?;
            let Some(entry) = next else {
                // Every entry is given: now the folder itself.
                let st = rustix::fs::fstat(fd).map_err(|e| failed("reading", at, e))?;
                if (st.st_uid, st.st_gid) != (self.uid, self.gid) {
                    rustix::fs::fchown(fd, Some(uid), Some(gid))
                        .map_err(|e| failed("changing owner of", at, e))?;
                    changed += 1;
                }
                stack.pop();
                continue;
            };
            let entry = entry.map_err(|e| failed("reading", at, e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let child_path = at.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
            match rustix::fs::openat(fd, name, dir_flags, Mode::empty()) {
                Ok(child) => {
                    let d = rustix::fs::Dir::new(child)
                        .map_err(|e| failed("reading", &child_path, e))?;
                    stack.push((child_path, d));
                }
                Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => {
                    match self.give_entry(fd, name) {
                        Ok(n) => changed += n,
                        // Removed meanwhile by a running container: nothing to give.
                        Err((_, rustix::io::Errno::NOENT)) => {}
                        Err((what, e)) => return Err(failed(what, &child_path, e)),
                    }
                }
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(failed("opening", &child_path, e)),
            }
        }
        Ok(changed)
    }

    /// Give the entry `name` of the folder `dir` that is not a folder (a file, or a link
    /// itself, never what it points to) to the project: 1 if it was given, 0 if it was the
    /// project's already; an error with what was being done.
    fn give_entry<P: rustix::path::Arg + Copy>(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        name: P,
    ) -> Result<u64, (&'static str, rustix::io::Errno)> {
        use rustix::fs::AtFlags;
        let st =
            rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| ("reading", e))?;
        if (st.st_uid, st.st_gid) == (self.uid, self.gid) {
            return Ok(0);
        }
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(self.uid)),
            Some(rustix::fs::Gid::from_raw(self.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ("changing owner of", e))?;
        Ok(1)
    }

    /// The container's `/etc/passwd`: `root`, `nobody` and `web` (home `/tmp`).
    pub(crate) fn passwd(&self) -> String {
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             {WEB_USER}:x:{}:{}:{WEB_USER}:/tmp:/bin/sh\n",
            self.uid, self.gid
        )
    }

    /// The container's `/etc/group`.
    pub(crate) fn group(&self) -> String {
        format!("root:x:0:\nnogroup:x:65534:\n{WEB_USER}:x:{}:\n", self.gid)
    }
}

/// What the kernel lets one container use (its cgroup and its `/tmp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tasks (processes and threads) at once.
    pub pids: u32,
    /// Memory in bytes, page cache and `/tmp` included; no swap beyond it.
    pub memory_bytes: u64,
    /// CPU in thousandths of a CPU (`500` = half a CPU): the hard quota and the share.
    pub cpu_millis: u32,
    /// Size of the `/tmp` tmpfs in bytes (its pages also count against `memory_bytes`).
    pub tmp_bytes: u64,
}

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

impl Default for Limits {
    /// 1 CPU, 1 GiB of memory, 1024 tasks, a 256 MiB `/tmp` (Slipway's `size: M`).
    fn default() -> Self {
        Limits {
            pids: 1024,
            memory_bytes: 1024 * MIB,
            cpu_millis: 1000,
            tmp_bytes: 256 * MIB,
        }
    }
}

/// The CFS period used for the CPU quota, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

impl Limits {
    /// The CFS quota per [`CPU_PERIOD_US`] (at least 1 ms).
    pub(crate) fn cpu_quota_us(&self) -> i64 {
        (u64::from(self.cpu_millis) * CPU_PERIOD_US / 1000).max(1000) as i64
    }

    /// The cgroup v1 `cpu.shares` (1024 per CPU, at least 2).
    pub(crate) fn cpu_shares(&self) -> u64 {
        (u64::from(self.cpu_millis) * 1024 / 1000).max(2)
    }
}

/// Finds the statically linked init on the host.
pub(crate) fn find_init() -> Result<PathBuf, RuntimeError> {
    INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or(RuntimeError::InitNotFound)
}

/// Syscalls no tenant needs and that widen the kernel's attack surface (the usual container
/// engines' default profile denies them too): mounts and namespaces, kernel keyrings, BPF,
/// perf, userfaultfd, kernel modules and kexec, tracing other processes, clock and system
/// settings, handle-based opens, io_uring. They fail with `EPERM`.
const DENIED_SYSCALLS: &[&str] = &[
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "personality",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vhangup",
    "vm86",
    "vm86old",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// `clone` flag asking for a new user namespace.
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// The architectures the filter covers: the native one and its compat ABIs (so a 32-bit call
/// cannot go around it); any other architecture is refused by the runtime.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn oci_err(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Parse {
        command: "building the seccomp profile".into(),
        message: e.to_string(),
    }
}

/// The seccomp filter of every container: everything allowed except [`DENIED_SYSCALLS`]
/// (`EPERM`), `clone` with `CLONE_NEWUSER` (`EPERM`) and `clone3` (`ENOSYS`, whose flags a
/// filter cannot see, so the C library falls back to `clone`).
pub(crate) fn seccomp() -> Result<LinuxSeccomp, RuntimeError> {
    let eperm = libc::EPERM as u32;
    let syscalls = vec![
        LinuxSyscallBuilder::default()
            .names(
                DENIED_SYSCALLS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(eperm)
            .build()
            .map_err(oci_err)?,
        LinuxSyscallBuilder::default()
            .names(vec!["clone".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(eperm)
            .args(vec![LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(CLONE_NEWUSER)
                .value_two(CLONE_NEWUSER)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .map_err(oci_err)?])
            .build()
            .map_err(oci_err)?,
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(libc::ENOSYS as u32)
            .build()
            .map_err(oci_err)?,
    ];
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
        .map_err(oci_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_users_are_unprivileged_stable_and_distinct() {
        let a = RunAs::for_project("shop");
        assert_eq!(a, RunAs::for_project("shop"));
        assert_ne!(a.uid, RunAs::for_project("blog").uid);
        for p in ["a", "shop", "blog", &"x".repeat(200)] {
            let u = RunAs::for_project(p);
            assert!(u.uid >= FIRST_PROJECT_UID && u.uid < FIRST_PROJECT_UID + PROJECT_UIDS);
            assert_eq!(u.uid, u.gid);
            // A signed 32-bit int holds it (software masking with 0x7FFF_FFFF sees the same id).
            assert!(i32::try_from(u.uid).is_ok(), "{}", u.uid);
            assert_eq!(u.gid & 0x7FFF_FFFF, u.gid);
        }
        assert!(a.passwd().contains(&format!("web:x:{}:{}:", a.uid, a.gid)));
        assert!(a.group().contains(&format!("web:x:{}:", a.gid)));
    }

    /// A tree left under another uid is given whole, links themselves and never what they
    /// point to; an owned tree is only read.
    #[test]
    fn own_tree_gives_what_another_uid_owns_and_never_follows_a_link() {
        use std::os::unix::fs::MetadataExt;
        if !crate::testing::root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
        std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(tree.join("a/b/c/kept.txt"), "kept").unwrap();
        std::fs::write(outside.join("host.txt"), "host").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/to-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("host.txt"), tree.join("a/b/to-file")).unwrap();
        let old = 3_000_000_007;
        for p in [
            "",
            "a",
            "a/b",
            "a/b/c",
            "a/b/c/kept.txt",
            "a/to-dir",
            "a/b/to-file",
        ] {
            std::os::unix::fs::lchown(tree.join(p), Some(old), Some(old)).unwrap();
        }
        let user = RunAs::for_project("owntree");
        assert_eq!(user.own_tree(&tree).unwrap(), 7);
        for p in [
            "",
            "a",
            "a/b",
            "a/b/c",
            "a/b/c/kept.txt",
            "a/to-dir",
            "a/b/to-file",
        ] {
            let m = std::fs::symlink_metadata(tree.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (user.uid, user.gid), "{p}");
        }
        for p in [outside.clone(), outside.join("host.txt")] {
            assert_eq!(std::fs::metadata(&p).unwrap().uid(), 0, "{}", p.display());
        }
        assert_eq!(
            std::fs::read_to_string(tree.join("a/b/c/kept.txt")).unwrap(),
            "kept"
        );
        // Owned: nothing to change. A link given as the top is given itself only.
        assert_eq!(user.own_tree(&tree).unwrap(), 0);
        std::os::unix::fs::lchown(tree.join("a/to-dir"), Some(old), Some(old)).unwrap();
        assert_eq!(user.own_tree(&tree.join("a/to-dir")).unwrap(), 1);
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0);
    }

    #[test]
    fn cpu_limits() {
        let l = Limits {
            cpu_millis: 250,
            ..Limits::default()
        };
        assert_eq!(l.cpu_quota_us(), 25_000);
        assert_eq!(l.cpu_shares(), 256);
        let tiny = Limits {
            cpu_millis: 0,
            ..Limits::default()
        };
        assert_eq!(tiny.cpu_quota_us(), 1000);
        assert_eq!(tiny.cpu_shares(), 2);
    }

    #[test]
    fn seccomp_denies_the_dangerous_calls() {
        let json = serde_json::to_string(&seccomp().unwrap()).unwrap();
        for name in [
            "\"mount\"",
            "\"unshare\"",
            "\"bpf\"",
            "\"ptrace\"",
            "\"clone3\"",
        ] {
            assert!(json.contains(name), "{name} missing: {json}");
        }
        assert!(json.contains("SCMP_CMP_MASKED_EQ"), "{json}");
    }
}
