//! Unpacking a stack layer into a root file system folder, once.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use slipway_slug::{hash_file, Archive, Digest, SlugInfo};

use crate::error::StackError;

/// A reader hashing what goes through it (the uncompressed tar, for its diff_id).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpack `layer` into `stacks_dir/HEX/` unless it is there: the blob's digest is checked
/// first, the tar's diff_id while unpacking, into a temp folder renamed into place, so a
/// failed or interrupted unpack leaves no folder under its final name. Owners, modes,
/// hard links and symlinks are kept (it is a root file system); device nodes and fifos are
/// skipped (the runtime provides `/dev`); an entry leaving the folder (`..`, a path through
/// a symlink pointing out) fails the unpack.
pub fn unpack_layer(
    archive: &Archive,
    layer: &SlugInfo,
    stacks_dir: &Path,
) -> Result<PathBuf, StackError> {
    let dest = stacks_dir.join(layer.digest.hex());
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(stacks_dir).map_err(StackError::io(stacks_dir))?;
    let blob = archive.blob_path(&layer.digest);
    let bad = |reason: String| StackError::Unpack {
        layer: layer.digest.to_string(),
        reason,
    };
    let (actual, _) = hash_file(&blob).map_err(StackError::io(&blob))?;
    if actual != layer.digest {
        return Err(bad(format!("the blob's digest is {actual}")));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(stacks_dir)
        .map_err(StackError::io(stacks_dir))?;
    let file = fs::File::open(&blob).map_err(StackError::io(&blob))?;
    let decoder = zstd::Decoder::new(file).map_err(StackError::io(&blob))?;
    let mut hashing = Hashing {
        inner: decoder,
        hasher: Sha256::new(),
    };
    {
        let mut tar = tar::Archive::new(&mut hashing);
        tar.set_preserve_permissions(true);
        tar.set_preserve_ownerships(true);
        tar.set_preserve_mtime(true);
        tar.set_unpack_xattrs(false);
        tar.set_overwrite(true);
        for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
            let mut entry = entry.map_err(|e| bad(e.to_string()))?;
            let kind = entry.header().entry_type();
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                continue;
            }
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            match entry.unpack_in(tmp.path()) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(bad(format!(
                        "entry {} leaves the root file system",
                        path.display()
                    )))
                }
                Err(e) => return Err(bad(format!("entry {}: {e}", path.display()))),
            }
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| bad(e.to_string()))?;
    let diff_id = Digest::parse(&format!(
        "sha256:{}",
        hex::encode(hashing.hasher.finalize())
    ))?;
    if diff_id != layer.diff_id {
        return Err(bad(format!(
            "its tar's digest is {diff_id}, the image says {}",
            layer.diff_id
        )));
    }
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
        .map_err(StackError::io(tmp.path()))?;
    let kept = tmp.keep();
    match fs::rename(&kept, &dest) {
        Ok(()) => Ok(dest),
        // Another process unpacked it meanwhile.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&kept);
            Ok(dest)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&kept);
            Err(StackError::Io {
                path: dest,
                source: e,
            })
        }
    }
}

/// The bytes of the regular files below `dir` (symlinks not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}
