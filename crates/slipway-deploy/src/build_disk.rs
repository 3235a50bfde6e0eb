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
//! A build holds an exclusive `flock` on `DATA/builds/ID.lock` from before its image is made
//! until after it is deleted. A build whose server died (`kill -9`, a power cut) left its
//! image, folder and lock file but holds the lock no more: [`sweep_builds`] at every start
//! removes exactly those, so a start during an `--upgrade` handover never touches an image
//! the old server still builds in. An image without a lock file (of a server older than the
//! lock) is swept only at a start that is no upgrade, when no other server runs.
//!
//! An environment removed (its branch deleted) takes its build cache images with it
//! ([`remove_env_caches`]).
//!
//! Where the kernel refuses loop mounts (inside `systemd-nspawn`, say), both fall back to
//! plain folders at the same paths, as before, and the log says so once: the build is never
//! failed for it, but is not capped either.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
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
    /// A build's lock, held until its disk is deleted ([`sweep_builds`]).
    lock: Option<(PathBuf, File)>,
}

impl BuildDisk {
    /// The folder of the build `id` (made empty now), on a disk of `size` bytes.
    pub fn build(data: &DataDir, id: &str, size: u64) -> Result<BuildDisk, VolumeError> {
        let lock = lock_build(&data.builds(), id)?;
        let volume = build_volume(data, id);
        // Whatever a crash left under this id goes first.
        volume.unmount()?;
        remove_plain(&volume)?;
        let mut disk = BuildDisk::open(volume, Kind::Build, size)?;
        disk.lock = Some(lock);
        Ok(disk)
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
                lock: None,
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
            Ok(_) => {
                // A mount a killed server made may lack it (killed before it was made).
                let files = volume.dir.join("files");
                std::fs::create_dir_all(&files).map_err(|source| VolumeError::Io {
                    what: format!("creating {}", files.display()),
                    source,
                })?;
                Some(volume.size_mb()? * MIB)
            }
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
            lock: None,
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
            Kind::Build => remove_build(&self.volume).and_then(|()| match &self.lock {
                // The lock file goes last; the lock itself when its file closes, after.
                Some((path, _)) => remove_file(path),
                None => Ok(()),
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

/// The disk of the build `id`.
fn build_volume(data: &DataDir, id: &str) -> Volume {
    Volume {
        name: "build".into(),
        image: data.builds().join(format!("{id}.img")),
        dir: data.builds().join(id),
    }
}

/// Unmount and delete a build's disk: its folder, then its image.
fn remove_build(volume: &Volume) -> Result<(), VolumeError> {
    volume.unmount()?;
    remove_plain(volume)?;
    remove_file(&volume.image)
}

/// The lock file of the build `id`, made locked: it appears under its name already locked
/// (made and locked under a name of this process first), so a sweep that opens it never
/// finds it free while the build lives.
fn lock_build(builds: &Path, id: &str) -> Result<(PathBuf, File), VolumeError> {
    let path = builds.join(format!("{id}{LOCK}"));
    let temp = builds.join(format!("{id}{LOCK}.{}", std::process::id()));
    let io = |what: String| move |source| VolumeError::Io { what, source };
    let file = File::create(&temp).map_err(io(format!("creating {}", temp.display())))?;
    file.try_lock()
        .map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
        })
        .map_err(io(format!("locking {}", temp.display())))?;
    std::fs::rename(&temp, &path).map_err(io(format!("moving {} into place", temp.display())))?;
    Ok((path, file))
}

/// The suffix of a build's lock file.
const LOCK: &str = ".lock";

/// Remove what builds of dead servers left in `DATA/builds/`: each build whose lock no live
/// process holds (its disk unmounted and deleted, then its lock file), and a lock file a
/// build was making; with `unlocked_too` (a start that is no upgrade: no other server runs)
/// also what has no lock file at all. A build a live server runs is never touched. Returns
/// the ids of the builds removed.
pub fn sweep_builds(data: &DataDir, unlocked_too: bool) -> Result<Vec<String>, VolumeError> {
    let builds = data.builds();
    let names: Vec<String> = match std::fs::read_dir(&builds) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(VolumeError::Io {
                what: format!("reading {}", builds.display()),
                source,
            })
        }
    };
    let mut ids = BTreeSet::new();
    let mut removed = BTreeSet::new();
    for name in &names {
        if let Some((id, _pid)) = name.split_once(&format!("{LOCK}.")) {
            // A lock being made: free only when its maker died before it was in place (it
            // made nothing else yet).
            if held(&builds.join(name))? == Some(false) {
                remove_file(&builds.join(name))?;
                removed.insert(id.to_string());
            }
            continue;
        }
        let id = name
            .strip_suffix(LOCK)
            .or_else(|| name.strip_suffix(".img"))
            .or_else(|| name.strip_suffix(".img.new"))
            .unwrap_or(name);
        ids.insert(id.to_string());
    }
    for id in ids {
        let lock = builds.join(format!("{id}{LOCK}"));
        // Held by the lock while it is removed: a build of this id cannot start meanwhile.
        let file = match File::options().write(true).open(&lock) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(VolumeError::Io {
                    what: format!("opening {}", lock.display()),
                    source,
                })
            }
        };
        match &file {
            Some(f) => match f.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(VolumeError::Io {
                        what: format!("locking {}", lock.display()),
                        source,
                    })
                }
            },
            None if !unlocked_too => continue,
            None => {}
        }
        remove_build(&build_volume(data, &id))?;
        if file.is_some() {
            remove_file(&lock)?;
        }
        removed.insert(id);
    }
    Ok(removed.into_iter().collect())
}

/// Whether another open file holds the lock of `path` (`None`: the file is gone).
fn held(path: &Path) -> Result<Option<bool>, VolumeError> {
    let file = match File::options().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(VolumeError::Io {
                what: format!("opening {}", path.display()),
                source,
            })
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(false)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Some(true)),
        Err(std::fs::TryLockError::Error(source)) => Err(VolumeError::Io {
            what: format!("locking {}", path.display()),
            source,
        }),
    }
}

/// Remove the build cache images of `project`'s `env` (its branch was deleted; no build of
/// it runs, the caller holds its lock). Returns the bytes they held (`None` when it had
/// none).
pub fn remove_env_caches(
    data: &DataDir,
    project: &str,
    env: &str,
) -> Result<Option<u64>, VolumeError> {
    let env_dir = data.build_cache_env(project, env);
    let names: Vec<String> = match std::fs::read_dir(&env_dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(VolumeError::Io {
                what: format!("reading {}", env_dir.display()),
                source,
            })
        }
    };
    let apps: BTreeSet<&str> = names
        .iter()
        .map(|n| n.strip_suffix(".img").unwrap_or(n))
        .filter(|n| !n.contains('.'))
        .collect();
    let mut bytes = 0;
    for app in apps {
        let dir = data.build_cache(project, env, app);
        let volume = Volume {
            name: "build-cache".into(),
            image: dir.with_extension("img"),
            dir,
        };
        if volume.exists() {
            // What the image holds on the host's disk (it is sparse).
            bytes += std::fs::metadata(&volume.image)
                .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                .unwrap_or(0);
        }
        volume.unmount()?;
        // A plain folder where loop mounts are refused.
        remove_plain(&volume)?;
        volume.remove()?;
    }
    match std::fs::remove_dir(&env_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(VolumeError::Io {
                what: format!("removing {}", env_dir.display()),
                source,
            })
        }
    }
    Ok(Some(bytes))
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
    fn a_sweep_removes_only_builds_no_live_process_holds() {
        let t = tempfile::tempdir().unwrap();
        let data = DataDir::new(t.path().to_path_buf());
        let builds = data.builds();
        std::fs::create_dir_all(&builds).unwrap();
        let leave = |id: &str| {
            std::fs::write(builds.join(format!("{id}.img")), "image").unwrap();
            std::fs::create_dir_all(builds.join(id).join("files")).unwrap();
        };
        // A live build (its lock held by an open file), a dead one, one made before locks.
        let (_, live) = lock_build(&builds, "1-live").unwrap();
        leave("1-live");
        drop(lock_build(&builds, "2-dead").unwrap());
        leave("2-dead");
        leave("3-old");
        // A lock its maker died making.
        std::fs::write(builds.join("4-half.lock.999999"), "").unwrap();

        assert_eq!(
            sweep_builds(&data, false).unwrap(),
            vec!["2-dead".to_string(), "4-half".to_string()]
        );
        assert!(builds.join("1-live.img").exists() && builds.join("1-live.lock").exists());
        assert!(!builds.join("2-dead.img").exists() && !builds.join("2-dead").exists());
        assert!(!builds.join("2-dead.lock").exists());
        assert!(
            builds.join("3-old.img").exists(),
            "no upgrade may remove it"
        );
        assert!(!builds.join("4-half.lock.999999").exists());

        // A start that is no upgrade also removes what has no lock; never a live build.
        assert_eq!(
            sweep_builds(&data, true).unwrap(),
            vec!["3-old".to_string()]
        );
        assert!(builds.join("1-live.img").exists());
        drop(live);
        assert_eq!(
            sweep_builds(&data, true).unwrap(),
            vec!["1-live".to_string()]
        );
        assert_eq!(std::fs::read_dir(&builds).unwrap().count(), 0);
    }

    #[test]
    fn sizes_read_as_in_the_flags() {
        assert_eq!(human_size(DEFAULT_BUILD_DISK), "8 GiB");
        assert_eq!(human_size(64 * MIB), "64 MiB");
        assert_eq!(human_size(1536 * MIB), "1536 MiB");
    }
}
