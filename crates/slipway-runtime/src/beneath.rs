//! Opening a folder below a folder descriptor with `openat2`, confined as the caller says:
//! the one wrapper of the crates that resolve paths a tenant or an image wrote (bind
//! sources here, an imported image's root file system in slipway-stack).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Open the folder `rel` below the folder `dir` with `openat2(2)`: resolved as `resolve`
/// says (`RESOLVE_BENEATH`, `RESOLVE_IN_ROOT`, ... : the caller's confinement), opened with
/// `O_DIRECTORY | O_CLOEXEC` and `flags` (`O_PATH`, `O_RDONLY`). The kernel's error as it
/// is: `ENOENT`, `ENOTDIR`, `ELOOP` (a link where links are refused), `EXDEV` (a way out).
pub fn open_folder_at(
    dir: impl AsFd,
    rel: &Path,
    flags: OFlags,
    resolve: ResolveFlags,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat2(
        dir,
        rel,
        flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )
}
