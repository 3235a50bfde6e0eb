//! A file system of its own for the pieces of a container that only it uses, so that its
//! mount table names no host path.
//!
//! The fourth field of `/proc/self/mountinfo` is a mount's root *inside the file system it
//! comes from*: a bind of `DATA/slugs/HEX` shows `DATA/slugs/HEX`, whatever bind, mount
//! namespace or `open_tree` clone is between (measured on this kernel: an `open_tree` clone
//! attached into a tmpfs still shows the folder's path); only a new superblock starts at
//! `/`. So a source that is a plain host folder or file is given one
//! ([`Staging::source`]):
//! - a read-only folder (the stack that is the root, the slug at `/app`, a branch's
//!   read-only cache, the init's folder): an overlay of it and an empty folder (an overlay
//!   without an upper layer needs two lower ones). Where the kernel refuses the overlay
//!   (`EINVAL` or `EPERM`: a data dir on an overlay, as inside `systemd-nspawn`, or no
//!   overlay support) the folder is bound as it is and the log says so once: a start never
//!   fails for this;
//! - a read-only file (the generated `/etc/passwd`, `/etc/group` and `/etc/hosts`, the
//!   host's `resolv.conf`): copied onto the container's own small tmpfs ([`Staging::tmpfs`]);
//! - the root of a mount (a pinned volume folder, a socket folder's tmpfs): bound as it is,
//!   it shows only its path inside that file system;
//! - a writable folder or file (a build's `/app` and `/cache`, a volume's folder): bound as
//!   it is. The host writes into a build's cache while the build runs, which an overlay
//!   with the folder as upper layer would not show, and the data dir cannot be an upper
//!   layer everywhere; a build's `/app` and `/cache` still show their data-dir path.
//!
//! Overlay layers are named `.` by a thread with a working directory of its own
//! (`unshare(CLONE_FS)`, then `fchdir` to each layer before naming it; the process's stays
//! as it was), so the overlay's options read `lowerdir+=.,lowerdir+=.` (a layer given by
//! descriptor is shown by its full path). Every such file system is made detached
//! (`fsopen`, `fsmount`) and attached on a staging folder `DATA/runtime/binds/ID/N` (only
//! root reaches it), which runc binds and which goes once the container started, like a
//! pinned source (`pinned`). The root is attached at `DATA/runtime/rootfs/ID` instead and
//! unmounted once the container started, the folder left: `runc exec` starts in it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, StatxAttributes, StatxFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use crate::error::RuntimeError;
use crate::tenancy::RunAs;

/// Room on a container's tmpfs of generated files (they are a few KiB; a CA bundle ~200 KiB).
const FILES_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// The `errno` a libc call left.
fn last_errno() -> Errno {
    Errno::from_raw_os_error(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL),
    )
}

/// Attach the detached mount `mount` on `staging` (a new folder, made here) and return
/// `staging`.
pub(crate) fn attach(mount: &OwnedFd, staging: &Path, what: &str) -> Result<PathBuf, RuntimeError> {
    std::fs::create_dir(staging)
        .map_err(|e| RuntimeError::io(format!("creating {}", staging.display()), e))?;
    if let Err(e) = rustix::mount::move_mount(
        mount,
        "",
        rustix::fs::CWD,
        staging,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    ) {
        let _ = std::fs::remove_dir(staging);
        return Err(RuntimeError::io(
            format!("attaching {what} at {}", staging.display()),
            errno_io(e),
        ));
    }
    Ok(staging.to_path_buf())
}

/// Whether `path` is the root of a mount (not following a link as its last part).
pub(crate) fn is_mount_root(path: &Path) -> Result<bool, RuntimeError> {
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::empty(),
    )
    .map_err(|e| RuntimeError::io(format!("reading {}", path.display()), errno_io(e)))?;
    Ok(st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT))
}

/// A new tmpfs (`nosuid`, `nodev`) of at most `bytes`, its root of mode `mode` owned by
/// `owner` (root when `None`), made detached; [`attach`] it.
pub(crate) fn new_tmpfs(mode: u32, owner: Option<RunAs>, bytes: u64) -> Result<OwnedFd, Errno> {
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    rustix::mount::fsconfig_set_string(&fs, "source", "tmpfs")?;
    rustix::mount::fsconfig_set_string(&fs, "size", bytes.to_string())?;
    rustix::mount::fsconfig_set_string(&fs, "mode", format!("{mode:o}"))?;
    if let Some(owner) = owner {
        rustix::mount::fsconfig_set_string(&fs, "uid", owner.uid.to_string())?;
        rustix::mount::fsconfig_set_string(&fs, "gid", owner.gid.to_string())?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
}

/// Mount a new tmpfs of at most `bytes` on the folder `dir` (mode 0700, owned by `owner`):
/// a folder whose content a container makes and the host reads by path (a socket folder),
/// bound into the container as the root of a file system of its own. [`unmount_all`] it.
pub fn mount_private_tmpfs(dir: &Path, owner: RunAs, bytes: u64) -> Result<(), RuntimeError> {
    let what = || format!("mounting a tmpfs on {}", dir.display());
    let fs =
        new_tmpfs(0o700, Some(owner), bytes).map_err(|e| RuntimeError::io(what(), errno_io(e)))?;
    rustix::mount::move_mount(
        &fs,
        "",
        rustix::fs::CWD,
        dir,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| RuntimeError::io(what(), errno_io(e)))
}

/// Detach every mount on `dir` (a [`mount_private_tmpfs`] folder); none, or a missing
/// `dir`, is fine.
pub fn unmount_all(dir: &Path) -> Result<(), RuntimeError> {
    loop {
        match rustix::mount::unmount(
            dir,
            rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW,
        ) {
            Ok(()) => {}
            // EINVAL: not a mount point (any more).
            Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("unmounting {}", dir.display()),
                    errno_io(e),
                ))
            }
        }
    }
}

/// Makes one container's staging mounts: `dir/N` for `N` from `counter`.
pub(crate) struct Staging<'a> {
    /// `DATA/runtime/binds/ID` (root's 0700 parent).
    pub dir: PathBuf,
    /// An empty folder only root can write (`DATA/runtime/empty`): an overlay's other layer.
    pub empty: &'a Path,
    /// Numbers staging folders (shared with pinned sources of the same container).
    pub counter: &'a AtomicU64,
}

impl Staging<'_> {
    /// A new staging path `dir/N` (its parent made; the path itself not).
    pub fn next(&self) -> Result<PathBuf, RuntimeError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", self.dir.display()), e))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(self.dir.join(n.to_string()))
    }

    /// A tmpfs of the container's own (mode `mode`, owned by root), attached at `at` (a
    /// new folder, made here; a new staging folder when `None`), which is returned.
    pub fn tmpfs(&self, mode: u32, at: Option<&Path>) -> Result<PathBuf, RuntimeError> {
        let at = match at {
            Some(at) => at.to_path_buf(),
            None => self.next()?,
        };
        let fs = new_tmpfs(mode, None, FILES_BYTES)
            .map_err(|e| RuntimeError::io("making a tmpfs", errno_io(e)))?;
        attach(&fs, &at, "a tmpfs")
    }

    /// A read-only overlay of the folder `dir` (and an empty one), attached at `at` (a new
    /// folder, made here; a new staging folder when `None`), which is returned: the same
    /// files, in a file system of its own. Where the kernel refuses the overlay, `dir`
    /// itself is returned (bound as it is; logged once, see the module).
    pub fn read_only(&self, dir: &Path, at: Option<&Path>) -> Result<PathBuf, RuntimeError> {
        let mount = match overlay(&[("lowerdir+", dir), ("lowerdir+", self.empty)]) {
            Ok(mount) => mount,
            Err(e) => {
                overlay_refused(dir, e);
                return Ok(dir.to_path_buf());
            }
        };
        let at = match at {
            Some(at) => at.to_path_buf(),
            None => self.next()?,
        };
        attach(&mount, &at, &dir.display().to_string())
    }

    /// What runc should bind for the host `source` so that the container's mount shows no
    /// host path where it can (see the module): `source` itself (a mount's root, anything
    /// writable), a staging overlay of a folder, or a copy of a file on the tmpfs `files`,
    /// named `name` there.
    pub fn source(
        &self,
        source: &Path,
        writable: bool,
        files: &Path,
        name: &str,
    ) -> Result<PathBuf, RuntimeError> {
        // Writable: the host may write into it while the container runs (a build's cache).
        if writable || is_mount_root(source)? {
            return Ok(source.to_path_buf());
        }
        let meta = std::fs::metadata(source)
            .map_err(|e| RuntimeError::io(format!("reading {}", source.display()), e))?;
        if meta.is_dir() {
            return self.read_only(source, None);
        }
        let copy = files.join(name);
        std::fs::copy(source, &copy).map_err(|e| {
            RuntimeError::io(
                format!("copying {} to {}", source.display(), copy.display()),
                e,
            )
        })?;
        Ok(copy)
    }
}

/// Whether a refused overlay was logged already (once per process: it is the kernel's or
/// the data dir's file system's, the same for every container).
static OVERLAY_REFUSED: AtomicBool = AtomicBool::new(false);

/// Log, once, that an overlay of `dir` was refused with `e` and the folder is bound as it
/// is.
fn overlay_refused(dir: &Path, e: Errno) {
    if !OVERLAY_REFUSED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            folder = %dir.display(),
            "the kernel refused a read-only overlay ({}): containers' roots and /app are bound \
             from their folders, whose data-dir paths their mount tables show",
            errno_io(e)
        );
    }
}

/// A detached read-only overlay of `layers` (`key`, folder), each named `.` from a thread
/// whose working directory is that folder (see the module).
fn overlay(layers: &[(&str, &Path)]) -> Result<OwnedFd, Errno> {
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<OwnedFd, Errno> {
            // SAFETY: unshare(CLONE_FS) only gives this thread its own root, working
            // directory and umask; it touches no memory of ours.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(last_errno());
            }
            let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
            rustix::mount::fsconfig_set_string(&fs, "source", "overlay")?;
            for (key, dir) in layers {
                let fd = rustix::fs::open(
                    *dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                // SAFETY: fchdir on a descriptor we own; affects only this thread (above).
                if unsafe { libc::fchdir(fd.as_raw_fd()) } != 0 {
                    return Err(last_errno());
                }
                rustix::mount::fsconfig_set_string(&fs, *key, ".")?;
            }
            rustix::mount::fsconfig_create(&fs)?;
            rustix::mount::fsmount(
                &fs,
                FsMountFlags::FSMOUNT_CLOEXEC,
                MountAttrFlags::MOUNT_ATTR_NOSUID
                    | MountAttrFlags::MOUNT_ATTR_NODEV
                    | MountAttrFlags::MOUNT_ATTR_RDONLY,
            )
        })
        .join()
    });
    made.unwrap_or(Err(Errno::INVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::root;

    /// The mountinfo line of the mount at `point` (this process's mount namespace).
    fn mountinfo_line(point: &Path) -> String {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let point = point.display().to_string();
        info.lines()
            .find(|l| l.split(' ').nth(4) == Some(point.as_str()))
            .unwrap_or_else(|| panic!("no mount at {point} in:\n{info}"))
            .to_string()
    }

    /// Each read-only source is staged in a file system of its own whose mountinfo line
    /// names no host path (root `/`, layers `.`), with the source's content; a writable one
    /// and a mount's root are bound as they are; the process's working directory is left as
    /// it was.
    #[test]
    fn staged_sources_show_no_host_path() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let (ro, rw, empty) = (base.join("ro"), base.join("rw"), base.join("empty"));
        for d in [&ro, &rw, &empty] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(ro.join("a.txt"), "a").unwrap();
        std::fs::write(base.join("passwd"), "web:x:1:1::/tmp:/bin/sh\n").unwrap();
        let counter = AtomicU64::new(0);
        let stage = Staging {
            dir: base.join("binds/c1"),
            empty: &empty,
            counter: &counter,
        };
        let cwd = std::env::current_dir().unwrap();
        let files = stage.tmpfs(0o755, None).unwrap();
        let ro_at = stage.source(&ro, false, &files, "ro").unwrap();
        let passwd = stage
            .source(&base.join("passwd"), false, &files, "passwd")
            .unwrap();
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert_eq!(stage.source(&rw, true, &files, "rw").unwrap(), rw);
        assert_eq!(stage.source(&files, false, &files, "x").unwrap(), files);
        assert_eq!(std::fs::read_to_string(ro_at.join("a.txt")).unwrap(), "a");
        assert!(std::fs::write(ro_at.join("new"), "x").is_err());
        assert_eq!(passwd, files.join("passwd"));
        assert!(std::fs::read_to_string(&passwd)
            .unwrap()
            .starts_with("web:"));
        let host = base.display().to_string();
        for at in [&files, &ro_at] {
            let line = mountinfo_line(at);
            let (mount, fs) = line.split_once(" - ").unwrap();
            assert_eq!(mount.split(' ').nth(3), Some("/"), "{line}");
            assert!(!fs.contains(&host), "{line}");
        }
        crate::pinned::unpin_all(&stage.dir).unwrap();
        assert!(!stage.dir.exists());
    }

    /// Where the kernel refuses the overlay (here: an overlay of an overlay of an overlay,
    /// deeper than file systems stack), the folder itself is bound, not an error.
    #[test]
    fn a_refused_overlay_falls_back_to_the_folder() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let (ro, empty) = (base.join("ro"), base.join("empty"));
        for d in [&ro, &empty] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(ro.join("a.txt"), "a").unwrap();
        let counter = AtomicU64::new(0);
        let stage = Staging {
            dir: base.join("binds/c1"),
            empty: &empty,
            counter: &counter,
        };
        let once = stage.read_only(&ro, None).unwrap();
        let twice = stage.read_only(&once, None).unwrap();
        assert_ne!(twice, once);
        let thrice = stage.read_only(&twice, None).unwrap();
        assert_eq!(thrice, twice);
        assert_eq!(std::fs::read_to_string(thrice.join("a.txt")).unwrap(), "a");
        crate::pinned::unpin_all(&stage.dir).unwrap();
        assert!(!stage.dir.exists());
    }

    /// A socket folder's tmpfs: owned by the project, 0700, on the folder itself; unmounting
    /// twice is fine.
    #[test]
    fn a_private_tmpfs_is_mounted_and_unmounted() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        let owner = RunAs::for_project("ownfs-tests");
        mount_private_tmpfs(&dir, owner, 1 << 20).unwrap();
        assert!(is_mount_root(&dir).unwrap());
        let meta = std::fs::metadata(&dir).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (owner.uid, 0o700));
        unmount_all(&dir).unwrap();
        unmount_all(&dir).unwrap();
        assert!(!is_mount_root(&dir).unwrap());
        std::fs::remove_dir(&dir).unwrap();
        unmount_all(&dir).unwrap();
    }
}
