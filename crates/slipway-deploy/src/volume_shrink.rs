//! Shrinking the volume of an app's mounts (a smaller `disk` pushed with
//! `-o allow-data-loss`) while the live release keeps running on it.
//!
//! An ext4 image does not shrink in place, so the volume's `files/` are copied (frozen, so the
//! copy is consistent) onto a new smaller image, both trees checksummed, and the images swapped
//! before the new release starts: `NAME.img` becomes `NAME.img.old` and the new image takes its
//! name and mount point. The live release's containers keep their own mounts of the old file
//! system, so they run on, untouched, until they retire; what they write after the copy is not
//! in the new volume (the loss `-o allow-data-loss` accepts).
//!
//! A marker, `NAME.shrinking`, names the release the shrink is for, written before the swap:
//! - the release goes live: [`finish`] deletes the old image and the marker;
//! - the deploy fails: [`undo`] puts the old image back at its name and mount point;
//! - the server dies in between: at the next start [`recover`] does one or the other, by
//!   whether the marker's release is the environment's live one.
//!
//! Refused, with nothing changed, when the data does not fit the new size (naming the
//! volume's mounts, the data they hold and the size asked for).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::services::shrink::{needed_mb, tree_digest};
use crate::volumes::{Volume, VolumeError};
use crate::Platform;

const MIB: u64 = 1024 * 1024;

/// Why an app's volume was not shrunk (it is left as it was).
#[derive(Debug, thiserror::Error)]
pub enum VolumeShrinkError {
    /// Its data does not fit the size asked.
    #[error("{mounts} on volume {name} hold {used_mb} MB, which needs about {needed_mb} MB: the volume cannot shrink from {size_mb} MB to {wanted_mb} MB; nothing was changed (keep `disk: {needed_mb}` or more, or delete data first)")]
    DoesNotFit {
        /// The volume.
        name: String,
        /// Its mounts, in words (`` mount `data` of app `web` ``).
        mounts: String,
        /// Its size now (MB).
        size_mb: u64,
        /// The data it holds (MB).
        used_mb: u64,
        /// A size the data fits in (MB).
        needed_mb: u64,
        /// The size asked for (MB).
        wanted_mb: u64,
    },
    /// A smaller size without `-o allow-data-loss`.
    #[error("{mounts} on volume {name}: its disk would shrink from {size_mb} MB to {wanted_mb} MB, which could lose data; push with -o allow-data-loss to shrink it (refused when the data does not fit)")]
    NotAllowed {
        /// The volume.
        name: String,
        /// Its mounts, in words.
        mounts: String,
        /// Its size now (MB).
        size_mb: u64,
        /// The size asked for (MB).
        wanted_mb: u64,
    },
    /// The copy's checksum differs from the original's (the original is kept).
    #[error("the copy of volume {name} does not match it (checksum {before} before, {after} after); the volume was not shrunk")]
    Mismatch {
        /// The volume.
        name: String,
        /// The original's checksum.
        before: String,
        /// The copy's checksum.
        after: String,
    },
    /// Making, mounting or measuring a volume failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// Checksumming a tree failed.
    #[error(transparent)]
    Checksum(#[from] crate::services::shrink::ShrinkError),
    /// A tool (mkfs.ext4, cp, sync) or file operation failed.
    #[error("{what}: {output}")]
    Tool {
        /// What was being done.
        what: String,
        /// Its error output.
        output: String,
    },
}

/// A volume shrunk for a release by [`shrink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk {
    /// Its size before (MB).
    pub from_mb: u64,
    /// The data it holds (MB).
    pub used_mb: u64,
}

/// The files of a shrink beside volume `v`.
struct Files {
    /// The new, smaller image while it is made.
    next_image: PathBuf,
    /// Where the new image is mounted while it is filled.
    next_dir: PathBuf,
    /// The old image once the new one took its name.
    old_image: PathBuf,
    /// The marker naming the release the shrink is for.
    marker: PathBuf,
}

fn files(v: &Volume) -> Files {
    let dir = v.image.parent().unwrap_or(Path::new("/"));
    Files {
        next_image: dir.join(format!("{}.img.shrink", v.name)),
        next_dir: dir.join(format!("{}.shrink", v.name)),
        old_image: dir.join(format!("{}.img.old", v.name)),
        marker: dir.join(format!("{}.shrinking", v.name)),
    }
}

fn fail(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeShrinkError {
    let what = what.into();
    move |e| VolumeShrinkError::Tool {
        what,
        output: e.to_string(),
    }
}

fn tool(what: &str, cmd: &mut Command) -> Result<(), VolumeShrinkError> {
    let out = cmd.output().map_err(fail(what))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(VolumeShrinkError::Tool {
            what: what.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn remove_if_there(p: &Path) -> Result<(), VolumeShrinkError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(format!("removing {}", p.display()))(e)),
    }
}

/// The volume made aside while a shrink fills it.
fn next_volume(v: &Volume) -> Volume {
    let f = files(v);
    Volume {
        name: v.name.clone(),
        image: f.next_image,
        dir: f.next_dir,
    }
}

/// Remove what a shrink interrupted before its swap left aside (the half-made image).
fn remove_next(v: &Volume) -> Result<(), VolumeShrinkError> {
    let next = next_volume(v);
    next.unmount()?;
    remove_if_there(&next.image)?;
    match std::fs::remove_dir(&next.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(format!("removing {}", next.dir.display()))(e)),
    }
}

/// Refuse a shrink of mounted volume `v` to `size_mb` unless `allowed`, or when its data does
/// not fit; `mounts` names its mounts for the messages.
pub fn check(
    v: &Volume,
    size_mb: u64,
    allowed: bool,
    mounts: &str,
) -> Result<(), VolumeShrinkError> {
    v.mount()?;
    let from_mb = v.size_mb()?;
    if !allowed {
        return Err(VolumeShrinkError::NotAllowed {
            name: v.name.clone(),
            mounts: mounts.to_string(),
            size_mb: from_mb,
            wanted_mb: size_mb,
        });
    }
    let used_mb = v.used_bytes()?.div_ceil(MIB);
    let needed = needed_mb(used_mb);
    if needed > size_mb {
        return Err(VolumeShrinkError::DoesNotFit {
            name: v.name.clone(),
            mounts: mounts.to_string(),
            size_mb: from_mb,
            used_mb,
            needed_mb: needed,
            wanted_mb: size_mb,
        });
    }
    Ok(())
}

/// Shrink mounted volume `v` to `size_mb` for release `release` (see the module doc): its
/// `files/` copied while frozen onto a new image and checksummed, then the images swapped.
/// On an error before the swap nothing changed; after it, the old image is put back.
pub fn shrink(
    v: &Volume,
    size_mb: u64,
    release: i64,
    mounts: &str,
) -> Result<Shrunk, VolumeShrinkError> {
    check(v, size_mb, true, mounts)?;
    let from_mb = v.size_mb()?;
    let used_mb = v.used_bytes()?.div_ceil(MIB);
    let f = files(v);
    remove_next(v)?;
    let next = next_volume(v);
    let made = (|| {
        let img = std::fs::File::create(&next.image)
            .map_err(fail(format!("creating {}", next.image.display())))?;
        img.set_len(size_mb * MIB)
            .map_err(fail(format!("sizing {}", next.image.display())))?;
        drop(img);
        tool(
            &format!("mkfs.ext4 {}", next.image.display()),
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L"])
                .arg(v.name.chars().take(16).collect::<String>())
                .arg(&next.image),
        )?;
        next.mount()?;
        let (from, to) = (v.dir.join("files"), next.dir.join("files"));
        // Frozen while copied and checksummed: both trees are the same moment's.
        v.while_frozen(|| -> Result<(), VolumeShrinkError> {
            tool(
                &format!("copying {} onto a smaller volume", from.display()),
                Command::new("cp")
                    .args(["-a", "--sparse=always", "-T"])
                    .arg(&from)
                    .arg(&to),
            )?;
            tool(
                &format!("flushing {}", next.dir.display()),
                Command::new("sync").arg("-f").arg(&next.dir),
            )?;
            let (before, after) = (tree_digest(&from)?, tree_digest(&to)?);
            if before != after {
                return Err(VolumeShrinkError::Mismatch {
                    name: v.name.clone(),
                    before,
                    after,
                });
            }
            Ok(())
        })??;
        next.unmount()?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = remove_next(v);
        return Err(e);
    }
    let _ = std::fs::remove_dir(&next.dir);
    // The marker before the swap: from here a crash is finished or undone by `recover`.
    let tmp = f.marker.with_extension("shrinking.new");
    std::fs::write(&tmp, format!("{release}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &f.marker))
        .map_err(fail(format!("writing {}", f.marker.display())))?;
    let swapped = (|| {
        std::fs::rename(&v.image, &f.old_image)
            .map_err(fail(format!("renaming {}", v.image.display())))?;
        // Only the host's mount goes: the live release's containers keep theirs.
        v.unmount()?;
        std::fs::rename(&f.next_image, &v.image)
            .map_err(fail(format!("renaming {}", f.next_image.display())))?;
        v.mount()?;
        Ok(())
    })();
    if let Err(e) = swapped {
        let _ = put_back(v);
        return Err(e);
    }
    Ok(Shrunk { from_mb, used_mb })
}

/// The release a volume's shrink is for, from its marker (None: no shrink pending).
fn pending_release(v: &Volume) -> Result<Option<i64>, VolumeShrinkError> {
    let marker = files(v).marker;
    match std::fs::read_to_string(&marker) {
        Ok(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| VolumeShrinkError::Tool {
                what: format!("reading {}", marker.display()),
                output: format!("not a release id: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(fail(format!("reading {}", marker.display()))(e)),
    }
}

/// The release went live: the old image goes (the retiring release's containers keep their
/// mounts of it until they stop; its space is freed then).
fn keep_new(v: &Volume) -> Result<(), VolumeShrinkError> {
    let f = files(v);
    remove_if_there(&f.old_image)?;
    remove_next(v)?;
    remove_if_there(&f.marker)
}

/// The release did not go live: the old image back at its name and mount point, the new
/// one deleted. Safe to run again after a crash at any step.
fn put_back(v: &Volume) -> Result<(), VolumeShrinkError> {
    let f = files(v);
    if f.old_image.exists() {
        v.unmount()?;
        remove_if_there(&v.image)?;
        std::fs::rename(&f.old_image, &v.image)
            .map_err(fail(format!("renaming {}", f.old_image.display())))?;
    }
    remove_next(v)?;
    v.mount()?;
    remove_if_there(&f.marker)
}

/// The shrinks of an environment's volumes pending for `release`, each finished (`live`) or
/// undone; returns the volumes' names.
fn settle(
    platform: &Platform,
    (project, env): (&str, &str),
    release: Option<i64>,
    live: bool,
) -> Vec<String> {
    let mut done = Vec::new();
    let volumes = match platform.data().volumes().volumes(project, env) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(project, env, "volumes not listed: {e}");
            return done;
        }
    };
    for v in volumes {
        let r = match pending_release(&v) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(project, env, volume = %v.name, "shrink left as it is: {e}");
                continue;
            }
        };
        if release.is_some_and(|id| id != r) {
            continue;
        }
        let result = if live { keep_new(&v) } else { put_back(&v) };
        match result {
            Ok(()) => done.push(v.name.clone()),
            Err(e) => tracing::warn!(project, env, volume = %v.name, "shrink not settled: {e}"),
        }
    }
    done
}

/// Release `release` is live: the old images of the volumes shrunk for it are deleted.
pub fn finish(platform: &Platform, project: &str, env: &str, release: i64) -> Vec<String> {
    settle(platform, (project, env), Some(release), true)
}

/// Release `release` will not go live: the volumes shrunk for it get their old images back.
pub fn undo(platform: &Platform, project: &str, env: &str, release: i64) -> Vec<String> {
    settle(platform, (project, env), Some(release), false)
}

/// At a start after a stop or a crash, before any container starts: every shrink left
/// pending is finished when its release is its environment's live one, else undone; a
/// half-made image of a shrink interrupted before its swap is deleted. Returns how many
/// volumes were settled.
pub fn recover(platform: &Platform) -> usize {
    let store = platform.data().volumes();
    let mut n = 0;
    let Ok(projects) = std::fs::read_dir(store.root()) else {
        return 0;
    };
    for p in projects.flatten() {
        let project = p.file_name().to_string_lossy().into_owned();
        let Ok(envs) = std::fs::read_dir(p.path()) else {
            continue;
        };
        for e in envs.flatten() {
            let env = e.file_name().to_string_lossy().into_owned();
            let live = platform
                .state()
                .environment(&project, &env)
                .ok()
                .flatten()
                .and_then(|e| e.current_release);
            for v in store.volumes(&project, &env).unwrap_or_default() {
                let pending = match pending_release(&v) {
                    Ok(p) => p,
                    Err(err) => {
                        tracing::warn!(project, env, volume = %v.name, "shrink left as it is: {err}");
                        continue;
                    }
                };
                let result = match pending {
                    Some(r) if Some(r) == live => keep_new(&v),
                    Some(_) => put_back(&v),
                    None if next_volume(&v).image.exists() || next_volume(&v).dir.exists() => {
                        remove_next(&v)
                    }
                    None => continue,
                };
                match result {
                    Ok(()) => n += 1,
                    Err(err) => {
                        tracing::warn!(project, env, volume = %v.name, "shrink not settled: {err}")
                    }
                }
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::VolumeStore;
    use slipway_runtime::RunAs;

    use slipway_runtime::testing::root;

    /// Shrunk while mounted: the new image has the data and takes the name; undone, the
    /// old one is back with what was written after the copy; a shrink that does not fit
    /// changes nothing.
    #[test]
    fn a_mounted_volume_shrinks_and_a_shrink_is_undone() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(tmp.path().join("volumes"));
        let owner = RunAs::for_project("shrinktest");
        let v = store.volume("p", "main", "app-web").unwrap();
        v.ensure(64).unwrap();
        let data = v.folder("data", owner).unwrap();
        std::fs::write(data.join("a.txt"), "kept").unwrap();
        std::fs::write(data.join("big"), vec![1u8; 20 << 20]).unwrap();

        // Does not fit: refused, nothing changed.
        let e = shrink(&v, 16, 7, "mount `data` of app `web`").unwrap_err();
        assert!(
            e.to_string().contains("mount `data` of app `web`")
                && e.to_string().contains("to 16 MB"),
            "{e}"
        );
        assert_eq!(v.size_mb().unwrap(), 64);
        assert!(!files(&v).next_image.exists() && !files(&v).marker.exists());

        // Fits: swapped; undone, the old image is back with a later write.
        std::fs::remove_file(data.join("big")).unwrap();
        assert_eq!(shrink(&v, 16, 7, "m").unwrap().from_mb, 64);
        assert_eq!(v.size_mb().unwrap(), 16);
        assert_eq!(
            std::fs::read_to_string(v.dir.join("files/data/a.txt")).unwrap(),
            "kept"
        );
        assert_eq!(pending_release(&v).unwrap(), Some(7));
        put_back(&v).unwrap();
        assert_eq!(v.size_mb().unwrap(), 64);
        assert!(v.is_mounted().unwrap());
        assert_eq!(pending_release(&v).unwrap(), None);

        // Again, and kept.
        shrink(&v, 16, 8, "m").unwrap();
        keep_new(&v).unwrap();
        assert_eq!(v.size_mb().unwrap(), 16);
        assert!(!files(&v).old_image.exists() && !files(&v).marker.exists());
        assert_eq!(
            std::fs::read_to_string(v.dir.join("files/data/a.txt")).unwrap(),
            "kept"
        );
        store.unmount_all().unwrap();
    }
}
