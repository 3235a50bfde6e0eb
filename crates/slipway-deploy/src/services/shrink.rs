//! Shrinking a service's disk (pushed with `-o allow-data-loss`, which the infrastructure
//! diff asks for): ext4 images do not shrink in place, so a new smaller volume is made,
//! the data copied onto it (the service stopped), both trees checksummed (paths, types,
//! modes, owners, contents) and, only when they match, the new image renamed over the
//! old one. Refused, nothing changed, when the data does not fit, naming the data held and
//! the size asked.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::volumes::{Volume, VolumeError, MIN_DISK_MB};

const MIB: u64 = 1024 * 1024;

/// Why a volume was not shrunk (it is left as it was).
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// Its data does not fit in the size asked.
    #[error("volume {name} is {size_mb} MB and holds {used_mb} MB, which needs about {needed_mb} MB: it cannot become {wanted_mb} MB")]
    DoesNotFit {
        /// The volume.
        name: String,
        /// Its size now (MB).
        size_mb: u64,
        /// The data it holds (MB).
        used_mb: u64,
        /// A size the data fits in (MB), with the file system's own share.
        needed_mb: u64,
        /// The size asked for (MB).
        wanted_mb: u64,
    },
    /// Mounting, measuring or unmounting a volume failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A tool (mkfs.ext4, cp, sync) or file operation failed.
    #[error("{what}: {output}")]
    Tool {
        /// What was being done.
        what: String,
        /// Its error output.
        output: String,
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
}

/// A volume shrunk by [`shrink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shrunk {
    /// Its size before (MB).
    pub from_mb: u64,
    /// The data it holds (MB).
    pub used_mb: u64,
    /// The checksum of its data, the same before and after.
    pub checksum: String,
}

/// The disk (MB) data of `used_mb` needs: ext4's own metadata takes some of it.
pub fn needed_mb(used_mb: u64) -> u64 {
    used_mb + used_mb / 10 + MIN_DISK_MB
}

/// Check that the data of mounted volume `v` fits in `size_mb` (while its service runs).
pub fn check_fits(v: &Volume, size_mb: u64) -> Result<(), ShrinkError> {
    v.mount()?;
    let used_mb = v.used_bytes()?.div_ceil(MIB);
    let needed = needed_mb(used_mb);
    if needed > size_mb {
        return Err(ShrinkError::DoesNotFit {
            name: v.name.clone(),
            size_mb: v.size_mb()?,
            used_mb,
            needed_mb: needed,
            wanted_mb: size_mb,
        });
    }
    Ok(())
}

fn tool(what: &str, cmd: &mut Command) -> Result<(), ShrinkError> {
    let out = cmd.output().map_err(|e| ShrinkError::Tool {
        what: what.to_string(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ShrinkError::Tool {
            what: what.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Shrink volume `v` (nothing may be using it) to `size_mb`: a new image, the data copied
/// and checksummed, the new image renamed over the old one, mounted again.
pub fn shrink(v: &Volume, size_mb: u64) -> Result<Shrunk, ShrinkError> {
    check_fits(v, size_mb)?;
    let from_mb = v.size_mb()?;
    let used_mb = v.used_bytes()?.div_ceil(MIB);
    let before = tree_digest(&v.dir)?;
    let new = Volume {
        name: v.name.clone(),
        image: v.image.with_extension("img.shrink"),
        dir: v.dir.with_extension("shrink"),
    };
    let _ = new.unmount();
    let _ = std::fs::remove_file(&new.image);
    let made = (|| {
        let f = std::fs::File::create(&new.image).map_err(|e| ShrinkError::Tool {
            what: format!("creating {}", new.image.display()),
            output: e.to_string(),
        })?;
        f.set_len(size_mb * MIB).map_err(|e| ShrinkError::Tool {
            what: format!("sizing {}", new.image.display()),
            output: e.to_string(),
        })?;
        drop(f);
        tool(
            &format!("mkfs.ext4 {}", new.image.display()),
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L"])
                .arg(v.name.chars().take(16).collect::<String>())
                .arg(&new.image),
        )?;
        new.mount()?;
        tool(
            &format!("copying {} onto its smaller volume", v.dir.display()),
            Command::new("cp")
                .args(["-a", "--sparse=always", "-T"])
                .arg(&v.dir)
                .arg(&new.dir),
        )?;
        tool(
            &format!("flushing {}", new.dir.display()),
            Command::new("sync").arg("-f").arg(&new.dir),
        )?;
        let after = tree_digest(&new.dir)?;
        new.unmount()?;
        if after != before {
            return Err(ShrinkError::Mismatch {
                name: v.name.clone(),
                before: before.clone(),
                after,
            });
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = new.unmount();
        let _ = std::fs::remove_file(&new.image);
        let _ = std::fs::remove_dir(&new.dir);
        return Err(e);
    }
    let _ = std::fs::remove_dir(&new.dir);
    v.unmount()?;
    // One rename: the volume is the old image or the new one, whole, at every moment.
    std::fs::rename(&new.image, &v.image).map_err(|e| ShrinkError::Tool {
        what: format!("renaming {}", new.image.display()),
        output: e.to_string(),
    })?;
    v.mount()?;
    Ok(Shrunk {
        from_mb,
        used_mb,
        checksum: before,
    })
}

/// A SHA-256 of the tree under `root` (`lost+found` aside): each entry's relative path,
/// type, mode, owner and group, and a file's contents or a link's target, in path order.
pub fn tree_digest(root: &Path) -> Result<String, ShrinkError> {
    let fail = |p: &Path, e: std::io::Error| ShrinkError::Tool {
        what: format!("reading {}", p.display()),
        output: e.to_string(),
    };
    let mut h = Sha256::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| fail(&dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| fail(&dir, e))?;
        names.sort();
        // Pushed in reverse: popped (and hashed) in path order.
        let mut subdirs = Vec::new();
        for name in names {
            if rel.as_os_str().is_empty() && name == "lost+found" {
                continue;
            }
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&path, e))?;
            let r = rel.join(&name);
            h.update(r.as_os_str().as_encoded_bytes());
            h.update(format!("\0{:o}:{}:{}\0", meta.mode(), meta.uid(), meta.gid()).as_bytes());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| fail(&path, e))?;
                h.update(target.as_os_str().as_encoded_bytes());
            } else if meta.is_file() {
                h.update(meta.len().to_le_bytes());
                let mut f = std::fs::File::open(&path).map_err(|e| fail(&path, e))?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).map_err(|e| fail(&path, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            } else if meta.is_dir() {
                subdirs.push(r);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_digest_sees_contents_names_and_modes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), "one").unwrap();
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        let d0 = tree_digest(dir.path()).unwrap();
        std::fs::write(dir.path().join("lost+found/x"), "ignored").unwrap();
        assert_eq!(tree_digest(dir.path()).unwrap(), d0);
        std::fs::write(dir.path().join("a/f"), "two").unwrap();
        let d1 = tree_digest(dir.path()).unwrap();
        assert_ne!(d1, d0);
        std::fs::set_permissions(
            dir.path().join("a/f"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(tree_digest(dir.path()).unwrap(), d1);
        assert_eq!(needed_mb(100), 118);
    }
}
