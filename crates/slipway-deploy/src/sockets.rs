//! Unix sockets of apps with `web.upstream.socket_family: unix` (spec section 4), and of
//! PHP-FPM ([`crate::php`], always on a socket; the app's `$PORT` is left as it was).
//!
//! Such an app listens on `$SOCKET` = [`SOCKET`] (`/run/app.sock`, as on Platform.sh) instead
//! of `$PORT`. The container's `/run` is a folder of its own on the host,
//! `DATA/run/CONTAINER/` ([`crate::DataDir::app_sockets`]): made afresh at each start, a
//! tmpfs of its own mounted there ([`RUN_BYTES`], so the container's mount table shows
//! `/`, not the folder's host path; an overlay would not do: a socket made through one
//! cannot be reached by its host path), owned by the project's user (`web` inside) with
//! mode 0700, bound at `/run` of that container only. The router connects to `DATA/run/CONTAINER/app.sock` from the host, never
//! following a symbolic link the app may put there (`slipway_router`'s `connect_unix`); no
//! other container sees the folder (another tenant cannot reach the socket), and the
//! container sees nothing of the host there. What the app writes to `/run` never fills the
//! host's disk (the tmpfs is capped, its pages count against the container's memory).
//! Retiring (or failing) the release unmounts and removes the folder.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use slipway_runtime::{BindMount, RunAs};

/// `$SOCKET`: where in its container an app with `socket_family: unix` must listen.
pub const SOCKET: &str = "/run/app.sock";

/// The container folder bound from the host: the folder of [`SOCKET`].
pub const SOCKET_DIR: &str = "/run";

/// Room on a container's `/run` tmpfs (memory, counted to the container that writes it).
pub const RUN_BYTES: u64 = 16 * 1024 * 1024;

/// The socket's file name in its folder.
const SOCKET_NAME: &str = "app.sock";

/// Why an app's socket folder could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket path has no folder.
    #[error("the unix socket path {} has no folder", .0.display())]
    NoFolder(PathBuf),
    /// Mounting or unmounting the folder's tmpfs failed.
    #[error(transparent)]
    Mount(#[from] slipway_runtime::RuntimeError),
    /// Making, clearing or owning the folder failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The host path of the socket of `container`, below `sockets` (`DATA/run`).
pub fn host_socket(sockets: &Path, container: &str) -> PathBuf {
    sockets.join(container).join(SOCKET_NAME)
}

/// Make the socket folder of `socket` (a [`host_socket`] path) afresh, empty, owned by
/// `owner` with mode 0700 (its parent, `DATA/run`, root's 0700), and return its bind
/// mount at [`SOCKET_DIR`].
pub fn prepare(socket: &Path, owner: RunAs) -> Result<BindMount, SocketError> {
    let Some(dir) = socket.parent() else {
        return Err(SocketError::NoFolder(socket.to_path_buf()));
    };
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| SocketError::Io { what, path, source }
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
            .map_err(io("setting the mode of", parent))?;
    }
    // A folder left by an earlier start of this container (a crash, a restart) may hold a
    // stale socket, which would look like an app that listens.
    slipway_runtime::unmount_all(dir)?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("clearing", dir)(e)),
    }
    std::fs::create_dir(dir).map_err(io("creating", dir))?;
    std::os::unix::fs::chown(dir, Some(owner.uid), Some(owner.gid)).map_err(io("owning", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("setting the mode of", dir))?;
    slipway_runtime::mount_private_tmpfs(dir, owner, RUN_BYTES)?;
    Ok(BindMount {
        source: dir.to_path_buf(),
        destination: SOCKET_DIR.to_string(),
        writable: true,
    })
}

/// Remove the socket folder of `socket` (a retired or failed container's); a missing one
/// is fine.
pub fn remove(socket: &Path) {
    if let Some(dir) = socket.parent() {
        if let Err(e) = slipway_runtime::unmount_all(dir) {
            tracing::warn!(dir = %dir.display(), "unmounting a socket folder: {e}");
            return;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), "removing a socket folder: {e}"),
        }
    }
}

/// Remove the socket folders below `sockets` (`DATA/run`) of containers that `needed` does
/// not name (left by a crash or a `kill -9` between a container's end and its retire).
pub fn remove_leftovers(sockets: &Path, needed: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(sockets) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !needed(&name.to_string_lossy()) {
            remove(&entry.path().join(SOCKET_NAME));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The file system type mounted at `dir`, if any (this process's mount namespace).
    fn mounted_at(dir: &Path) -> Option<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = dir.display().to_string();
        info.lines()
            .filter(|l| l.split(' ').nth(4) == Some(dir.as_str()))
            .filter_map(|l| l.split_once(" - ")?.1.split(' ').next().map(String::from))
            .next_back()
    }

    /// Needs root (a tmpfs is mounted): not skipped, the crate's tests run as root.
    #[test]
    fn prepares_a_private_folder_afresh_and_removes_it() {
        let data = tempfile::tempdir().unwrap();
        let sockets = data.path().join("run");
        let socket = host_socket(&sockets, "demo.main.app.r1");
        assert!(socket.ends_with("run/demo.main.app.r1/app.sock"));
        let me = RunAs::for_project("sockets-tests");
        let mount = prepare(&socket, me).unwrap();
        assert_eq!(mount.destination, "/run");
        assert!(mount.writable);
        let dir = socket.parent().unwrap();
        assert_eq!(mount.source, dir);
        let meta = std::fs::metadata(dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), me.uid);
        // A tmpfs of its own: the container's mount table shows its root, not this path.
        assert_eq!(mounted_at(dir).as_deref(), Some("tmpfs"));
        assert_eq!(
            std::fs::metadata(&sockets).unwrap().mode() & 0o777,
            0o700,
            "DATA/run is private"
        );
        // A stale socket of an earlier start is gone after the next prepare.
        std::fs::write(&socket, b"stale").unwrap();
        prepare(&socket, me).unwrap();
        assert!(!socket.exists());
        remove(&socket);
        assert!(!dir.exists());
        assert_eq!(mounted_at(dir), None);
        remove(&socket);
        // Leftovers: only the folders of needed containers stay.
        let kept = host_socket(&sockets, "demo.main.app.r2");
        prepare(&socket, me).unwrap();
        prepare(&kept, me).unwrap();
        remove_leftovers(&sockets, |c| c == "demo.main.app.r2");
        assert!(!dir.exists());
        assert!(kept.parent().unwrap().exists());
        remove(&kept);
        assert_eq!(mounted_at(kept.parent().unwrap()), None);
    }
}
