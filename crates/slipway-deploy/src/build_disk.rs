//! Build disks: the folders a build writes to, its `/app` and its `/cache`, are file systems
//! of their own whose size the kernel enforces, so a build cannot fill the host's disk.
//!
//! A build's folder is a sparse ext4 image made for that build, `DATA/builds/ID.img`,
//! loop-mounted at `DATA/builds/ID/` (the build writes into its `files/`), unmounted and
//! deleted when the build ends. An app's build cache is a persistent image per project,
//! environment and app, `DATA/cache/PROJECT/ENV/APP.img`, mounted at
//! `DATA/cache/PROJECT/ENV/APP/` for a build (its `/cache` is `files/`) and unmounted after.
//! Both are [`Volume`]s: made, mounted and grown by the one image manager. The host writes
//! into a mounted cache through its folder (the toolchains' preparation, the set-id strip).
//!
//! Where the kernel refuses loop mounts (inside `systemd-nspawn`, say), both fall back to
//! plain folders at the same paths, as before, and the log says so once: the build is never
//! failed for it, but is not capped either.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::volumes::{Volume, VolumeError};
use crate::DataDir;

/// The default size of a build's disk (bytes): `slipway serve --build-disk`.
pub const DEFAULT_BUILD_DISK: u64 = 8 << 30;

/// The default size of an app's build cache disk (bytes): `slipway serve --build-cache-disk`.
pub const DEFAULT_CACHE_DISK: u64 = 4 << 30;

const MIB: u64 = 1 << 20;

/// A disk with less room left than this (bytes) is full: what a failed write leaves.
const FULL_BELOW: u64 = 2 * MIB;

/// Whether the log has said that build disks are plain folders on this host.
static SAID_UNCAPPED: AtomicBool = AtomicBool::new(false);

/// How many builds of this server use each mounted build cache (by its folder): the last
/// one to end unmounts it.
static CACHE_USERS: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

/// Which disk of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The build's folder, its `/app`: deleted with the build.
    Build,
    /// The app's build cache, its `/cache`: kept.
    Cache,
}

/// A disk a build writes to, mounted (or a plain folder where loop mounts are refused) until
/// dropped: a build's folder is then deleted, a build cache unmounted.
#[derive(Debug)]
pub struct BuildDisk {
    volume: Volume,
    kind: Kind,
    /// Its size (bytes); `None` when it is a plain folder, with no cap.
    capped: Option<u64>,
}

impl BuildDisk {
    /// The folder of the build `id` (made empty now), on a disk of `size` bytes.
    pub fn build(data: &DataDir, id: &str, size: u64) -> Result<BuildDisk, VolumeError> {
        let volume = Volume {
            name: "build".into(),
            image: data.builds().join(format!("{id}.img")),
            dir: data.builds().join(id),
        };
        // Whatever a crash left under this id goes first.
        volume.unmount()?;
        remove_plain(&volume)?;
        BuildDisk::open(volume, Kind::Build, size)
    }

    /// The build cache of `app` in `project`'s `env`, on a disk of `size` bytes (kept; a
    /// smaller size than it has makes it anew, empty: it is only a cache).
    pub fn cache(
        data: &DataDir,
        project: &str,
        env: &str,
        app: &str,
        size: u64,
    ) -> Result<BuildDisk, VolumeError> {
        let dir = data.build_cache(project, env, app);
        let volume = Volume {
            name: "build-cache".into(),
            image: dir.with_extension("img"),
            dir,
        };
        // A cache of an older server: a plain folder holding the cache itself.
        if !volume.exists() && volume.dir.is_dir() && !volume.dir.join("files").is_dir() {
            remove_plain(&volume)?;
        }
        let mut users = CACHE_USERS.lock().unwrap_or_else(|e| e.into_inner());
        let n = users.get(&volume.dir).copied().unwrap_or(0);
        let disk = if n > 0 && volume.is_mounted()? {
            // Another build of this server uses it now: no growth under it.
            BuildDisk {
                volume,
                kind: Kind::Cache,
                capped: Some(size),
            }
        } else {
            match BuildDisk::open(volume.clone(), Kind::Cache, size) {
                Err(VolumeError::Shrink { .. }) => {
                    volume.remove()?;
                    BuildDisk::open(volume, Kind::Cache, size)?
                }
                other => other?,
            }
        };
        *users.entry(disk.volume.dir.clone()).or_insert(0) += 1;
        Ok(disk)
    }

    /// Empty a full build cache (the size in words; `None`, nothing done, when it is not
    /// full): a build that filled it would leave every later one no room.
    pub fn empty_if_full(&self) -> Result<Option<String>, VolumeError> {
        let Some(size) = self.full() else {
            return Ok(None);
        };
        let files = self.folder();
        let entries = std::fs::read_dir(&files).map_err(|source| VolumeError::Io {
            what: format!("reading {}", files.display()),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| VolumeError::Io {
                    what: format!("reading {}", files.display()),
                    source,
                })?
                .path();
            // Never followed: a link the build made is removed as a link.
            let removed = if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|source| VolumeError::Io {
                what: format!("removing {}", path.display()),
                source,
            })?;
        }
        Ok(Some(size))
    }

    /// Make, mount and size the volume, or fall back to a plain folder when the kernel
    /// refuses to mount it.
    fn open(volume: Volume, kind: Kind, size: u64) -> Result<BuildDisk, VolumeError> {
        let size_mb = size.div_ceil(MIB);
        let capped = match volume.ensure(size_mb) {
            Ok(_) => Some(volume.size_mb()? * MIB),
            Err(VolumeError::Tool { what, output }) if what.starts_with("mounting") => {
                if !SAID_UNCAPPED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "this host refuses loop mounts ({output}): builds write to plain folders of the data dir, with no cap on their size"
                    );
                }
                if kind == Kind::Build {
                    remove_file(&volume.image)?;
                }
                let files = volume.dir.join("files");
                std::fs::create_dir_all(&files).map_err(|source| VolumeError::Io {
                    what: format!("creating {}", files.display()),
                    source,
                })?;
                None
            }
            Err(e) => return Err(e),
        };
        Ok(BuildDisk {
            volume,
            kind,
            capped,
        })
    }

    /// The folder the build writes to (its `/app` or `/cache`).
    pub fn folder(&self) -> PathBuf {
        self.volume.dir.join("files")
    }

    /// Its size in words (`8 GiB`, `64 MiB`) when it is capped and full (a write failed for
    /// want of room), `None` otherwise.
    pub fn full(&self) -> Option<String> {
        let size = self.capped?;
        let st = nix::sys::statvfs::statvfs(&self.volume.dir).ok()?;
        let left = st.blocks_available() as u64 * st.fragment_size() as u64;
        (left < FULL_BELOW).then(|| human_size(size))
    }
}

impl Drop for BuildDisk {
    fn drop(&mut self) {
        let result = match self.kind {
            Kind::Build => self.volume.unmount().and_then(|()| {
                remove_plain(&self.volume)?;
                remove_file(&self.volume.image)
            }),
            Kind::Cache => {
                let mut users = CACHE_USERS.lock().unwrap_or_else(|e| e.into_inner());
                let left = users
                    .get(&self.volume.dir)
                    .map_or(0, |n| n.saturating_sub(1));
                if left == 0 {
                    users.remove(&self.volume.dir);
                    self.volume.unmount()
                } else {
                    users.insert(self.volume.dir.clone(), left);
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(dir = %self.volume.dir.display(), "ending a build's disk: {e}");
        }
    }
}

/// Remove the volume's folder, unmounted (nothing to do when it is missing).
fn remove_plain(volume: &Volume) -> Result<(), VolumeError> {
    match std::fs::remove_dir_all(&volume.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VolumeError::Io {
            what: format!("removing {}", volume.dir.display()),
            source,
        }),
    }
}

fn remove_file(path: &Path) -> Result<(), VolumeError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VolumeError::Io {
            what: format!("removing {}", path.display()),
            source,
        }),
    }
}

/// `8 GiB`, `64 MiB`: whole GiB when it is, MiB otherwise.
fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_in_the_flags() {
        assert_eq!(human_size(DEFAULT_BUILD_DISK), "8 GiB");
        assert_eq!(human_size(64 * MIB), "64 MiB");
        assert_eq!(human_size(1536 * MIB), "1536 MiB");
    }
}
