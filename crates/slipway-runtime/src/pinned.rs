//! Bind sources pinned by descriptor: what a tenant can write is never resolved by runc.
//!
//! runc resolves a bind mount's source path on the host and follows symbolic links. A mount
//! folder of a project lies in a volume the project's running containers write to; when one
//! mount's folder is inside another's (`x` and `x/y`), a live container can swap `y` for a
//! link (to `/`, `/etc`, another project's folder) between any check Slipway makes and the
//! moment runc binds the path, and runc would bind what the link names into the new
//! container. So Slipway resolves such a source itself, from the volume's root, with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
//! (a link anywhere on the way, a way out of the root or onto another file system is
//! refused), clones the folder it opened as a detached mount (`open_tree(OPEN_TREE_CLONE)`)
//! and attaches that onto a staging folder only root reaches
//! (`DATA/runtime/binds/CONTAINER/N`, see [`crate::Runtime::pin_bind_source`]): runc is
//! handed the staging folder, which no tenant can change. The staging mounts are removed
//! once the container started (it holds its own bind by then), when it is removed, and at
//! `serve` start ([`crate::Runtime::unpin_stale`]). Not under `DATA/run/CONTAINER/`: that
//! folder is bound into the container as its `/run` and is cleared with a recursive remove,
//! which must never walk into a volume.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{OpenTreeFlags, UnmountFlags};

use crate::error::RuntimeError;
use crate::ownfs::errno_io;

/// Open the folder `relative` below `root` without following any link: `root` itself is
/// the host's (a volume's mount point), everything below it may have been written by a
/// tenant.
pub(crate) fn open_beneath(root: &Path, relative: &Path) -> Result<OwnedFd, RuntimeError> {
    let unsafe_source = |reason: String| RuntimeError::UnsafeBindSource {
        root: root.to_path_buf(),
        relative: relative.to_path_buf(),
        reason,
    };
    if relative.is_absolute() || relative.as_os_str().is_empty() {
        return Err(unsafe_source("not a path below the folder".into()));
    }
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::io(format!("opening {}", root.display()), errno_io(e)))?;
    crate::open_folder_at(
        &dir,
        relative,
        // No O_NOFOLLOW: RESOLVE_NO_SYMLINKS refuses a link as the last part too (ELOOP).
        OFlags::PATH,
        ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| match e {
        Errno::LOOP => unsafe_source("a symbolic link is on the way".into()),
        Errno::NOTDIR => unsafe_source("something on the way is not a folder".into()),
        Errno::XDEV => unsafe_source("it leaves the folder or its file system".into()),
        e => RuntimeError::io(
            format!("opening {} below {}", relative.display(), root.display()),
            errno_io(e),
        ),
    })
}

/// Bind the folder `relative` below `root`, resolved by [`open_beneath`], at `staging` (a
/// new folder, made here), and return `staging`: a path naming exactly that folder
/// whatever is renamed or linked below `root` afterwards.
pub(crate) fn pin(root: &Path, relative: &Path, staging: &Path) -> Result<PathBuf, RuntimeError> {
    let folder = open_beneath(root, relative)?;
    let tree = rustix::mount::open_tree(
        &folder,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| {
        RuntimeError::io(
            format!("cloning {} below {}", relative.display(), root.display()),
            errno_io(e),
        )
    })?;
    crate::ownfs::attach(&tree, staging, &relative.display().to_string())
}

/// Unmount and remove every staging folder in `dir`, then `dir` itself; a missing `dir` is
/// fine. Only ever `rmdir`: a staging folder still mounted is never walked into.
pub(crate) fn unpin_all(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RuntimeError::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        match rustix::mount::unmount(&path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            // EINVAL: not a mount point (a staging folder left before its mount was attached).
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("unmounting {}", path.display()),
                    errno_io(e),
                ))
            }
        }
        match std::fs::remove_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::io(format!("removing {}", path.display()), e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::root;

    /// A link anywhere on the way is refused (never followed); a plain folder is opened.
    #[test]
    fn a_symlinked_component_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(vol.join("files/x/real")).unwrap();
        std::fs::write(vol.join("files/x/real/kept.txt"), "kept").unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("files/x/y")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("files/x/rel")).unwrap();
        std::os::unix::fs::symlink(vol.join("files/x"), vol.join("files/lx")).unwrap();
        std::fs::write(vol.join("files/x/file"), "").unwrap();
        for bad in ["files/x/y", "files/x/rel", "files/lx/real", "files/x/y/ssh"] {
            let err = open_beneath(&vol, Path::new(bad)).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{bad}: {err}");
        }
        for bad in ["files/x/file", "files/x/../../..", "/etc", "../vol/files"] {
            assert!(open_beneath(&vol, Path::new(bad)).is_err(), "{bad}");
        }
        let fd = open_beneath(&vol, Path::new("files/x/real")).unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        let want = rustix::fs::stat(vol.join("files/x/real")).unwrap();
        assert_eq!((st.st_dev, st.st_ino), (want.st_dev, want.st_ino));
    }

    /// The staging folder shows the folder that was opened, even after the tenant swaps its
    /// path for a link; unpinning unmounts it and leaves the data.
    #[test]
    fn a_pinned_folder_stays_the_folder_that_was_opened() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(vol.join("files/x/y")).unwrap();
        std::fs::write(vol.join("files/x/y/kept.txt"), "kept").unwrap();
        let binds = tmp.path().join("binds/c1");
        std::fs::create_dir_all(&binds).unwrap();
        let staged = pin(&vol, Path::new("files/x/y"), &binds.join("0")).unwrap();
        // The tenant swaps the folder for a link to the host's /etc.
        std::fs::rename(vol.join("files/x/y"), vol.join("files/x/moved")).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("files/x/y")).unwrap();
        assert_eq!(
            std::fs::read_to_string(staged.join("kept.txt")).unwrap(),
            "kept"
        );
        assert!(!staged.join("passwd").exists());
        // And now the path is refused.
        assert!(pin(&vol, Path::new("files/x/y"), &binds.join("1")).is_err());
        unpin_all(&binds).unwrap();
        assert!(!binds.exists());
        assert_eq!(
            std::fs::read_to_string(vol.join("files/x/moved/kept.txt")).unwrap(),
            "kept"
        );
        unpin_all(&binds).unwrap();
    }
}
