//! Packing a folder into a deterministic tar+zstd slug layer.
//!
//! Layer format (what makes the bytes depend on the folder's content only):
//! - every entry lives under [`LAYER_ROOT`] (`app/`): the layer is the image's `/app`, so
//!   `umoci unpack` yields `rootfs/app/...`. The first entry is the `app` directory itself.
//! - entries sorted by path (component-wise, byte order), directories included (empty ones too);
//! - GNU tar headers, long names through GNU long-name records, no PAX records, no xattrs;
//! - mtime [`SLUG_MTIME`] everywhere, uid/gid 0, empty uname/gname;
//! - modes normalized: directories 0755, files 0755 if any exec bit is set else 0644,
//!   symlinks 0777 (git only records these two file modes, so umask never leaks in);
//! - symlinks are kept as symlinks, target unchanged. Absolute targets are allowed (they
//!   name a path inside the container, e.g. `cache -> /tmp/cache`); relative targets that
//!   climb out of the app folder are refused (they would point into the build host's tree);
//! - hard-linked files are stored as separate regular files; fifos, sockets and devices are refused;
//! - zstd with the checksum flag, multithreaded (zstd's output does not depend on the
//!   number of worker threads; a test checks it).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashWriter};
use crate::error::{IoContext, SlugError};

/// The folder every layer entry lives under; the image's `WorkingDir` is `/app`.
pub const LAYER_ROOT: &str = "app";
/// The modification time stored for every entry: 1980-01-01T00:00:00Z (the earliest
/// time ZIP can hold, so tools that re-zip app files never choke on it).
pub const SLUG_MTIME: u64 = 315_532_800;
/// The default zstd level.
pub const DEFAULT_LEVEL: i32 = 3;
/// Most zstd worker threads used for one slug.
const MAX_WORKERS: u32 = 8;

/// A packed slug: digest and size of the compressed layer, and `diff_id` (sha256 of the uncompressed tar).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlugInfo {
    /// Digest of the compressed layer: the blob's name in the archive.
    pub digest: Digest,
    /// Size of the compressed layer in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

/// Pack `dir` into `out` deterministically: same content, same bytes (see the module docs).
/// `level` is the zstd level ([`DEFAULT_LEVEL`] is 3).
pub fn pack_dir(dir: &Path, out: impl Write, level: i32) -> Result<SlugInfo, SlugError> {
    let workers = std::thread::available_parallelism()
        .map(|n| (n.get() as u32).min(MAX_WORKERS))
        .unwrap_or(1);
    pack_dir_with_workers(dir, out, level, workers)
}

/// One thing found in the folder to pack.
enum Source {
    Dir,
    File { exec: bool, size: u64 },
    Symlink(PathBuf),
}

/// [`pack_dir`] with an explicit number of zstd worker threads (0 = single-threaded mode).
pub(crate) fn pack_dir_with_workers(
    dir: &Path,
    out: impl Write,
    level: i32,
    workers: u32,
) -> Result<SlugInfo, SlugError> {
    check_level(level)?;
    let meta = fs::metadata(dir).ctx(dir)?;
    if !meta.is_dir() {
        return Err(SlugError::Unsupported {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let mut entries = Vec::new();
    walk(dir, Path::new(""), &mut entries)?;

    let compressed = HashWriter::new(BufWriter::with_capacity(256 * 1024, out));
    let mut enc = zstd::stream::write::Encoder::new(compressed, level).ctx(dir)?;
    enc.include_checksum(true).ctx(dir)?;
    enc.multithread(workers).ctx(dir)?;
    let mut tar = tar::Builder::new(HashWriter::new(enc));

    append_dir(&mut tar, Path::new(LAYER_ROOT)).ctx(dir)?;
    for (rel, src) in &entries {
        let full = dir.join(rel);
        let in_layer = Path::new(LAYER_ROOT).join(rel);
        match src {
            Source::Dir => append_dir(&mut tar, &in_layer).ctx(&full)?,
            Source::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, &in_layer, target).ctx(&full)?;
            }
            Source::File { exec, size } => {
                let mode = if *exec { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, *size);
                let file = File::open(&full).ctx(&full)?;
                let reader = ExactReader {
                    inner: file.take(*size),
                    left: *size,
                };
                tar.append_data(&mut h, &in_layer, reader).ctx(&full)?;
            }
        }
    }
    let tar_hash = tar.into_inner().ctx(dir)?;
    let (enc, diff_id, _) = tar_hash.finish();
    let compressed = enc.finish().ctx(dir)?;
    let (mut out, digest, size) = compressed.finish();
    out.flush().ctx(dir)?;
    tracing::debug!(dir = %dir.display(), %digest, size, "packed slug");
    Ok(SlugInfo {
        digest,
        size,
        diff_id,
    })
}

/// Accept the levels 1 to zstd's maximum (22).
pub(crate) fn check_level(level: i32) -> Result<(), SlugError> {
    let max = *zstd::compression_level_range().end();
    if !(1..=max).contains(&level) {
        return Err(SlugError::InvalidLevel { level, min: 1, max });
    }
    Ok(())
}

/// A header with everything host-specific zeroed.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(SLUG_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, io::empty())
}

/// Collect everything under `root/rel`, sorted: a depth-first walk over sorted names
/// yields exactly the component-wise path order.
fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Source)>) -> Result<(), SlugError> {
    let here = root.join(rel);
    let mut names = Vec::new();
    for entry in fs::read_dir(&here).ctx(&here)? {
        names.push(entry.ctx(&here)?.file_name());
    }
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).ctx(&full)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            out.push((rel.clone(), Source::Dir));
            walk(root, &rel, out)?;
        } else if ft.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            out.push((
                rel,
                Source::File {
                    exec,
                    size: meta.len(),
                },
            ));
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).ctx(&full)?;
            check_symlink_target(&rel, &target).map_err(|reason| SlugError::Unsupported {
                path: full.clone(),
                reason,
            })?;
            out.push((rel, Source::Symlink(target)));
        } else {
            return Err(SlugError::Unsupported {
                path: full,
                reason: "only regular files, directories and symlinks can go into a slug \
                         (this is a fifo, socket or device node): remove it from the build output"
                    .into(),
            });
        }
    }
    Ok(())
}

/// A symlink at `link` (relative to the app root) pointing at `target` is acceptable if the
/// target is absolute (a container path) or, resolved lexically, stays inside the app root.
pub(crate) fn check_symlink_target(link: &Path, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("symlink with an empty target".into());
    }
    if target.is_absolute() {
        return Ok(());
    }
    // Depth of the folder holding the link, then walk the target's components.
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Ok(()),
        }
        if depth < 0 {
            return Err(format!(
                "symlink target {:?} points outside the app folder: use a path inside it, \
                 or an absolute container path",
                target
            ));
        }
    }
    Ok(())
}

/// Yields exactly `left` bytes or fails: a file that shrinks while being packed must not
/// produce a corrupt tar (the header already promised its size).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being packed",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        let ok = [
            ("a", "b"),
            ("d/a", "../b"),
            ("d/e/a", "../../x/y"),
            ("a", "/tmp/cache"),
            ("a", "./b"),
        ];
        for (l, t) in ok {
            check_symlink_target(Path::new(l), Path::new(t)).unwrap();
        }
        let bad = [
            ("a", "../b"),
            ("d/a", "../../b"),
            ("d/a", "x/../../../y"),
            ("a", ""),
        ];
        for (l, t) in bad {
            assert!(
                check_symlink_target(Path::new(l), Path::new(t)).is_err(),
                "{l} -> {t}"
            );
        }
    }

    #[test]
    fn levels() {
        check_level(3).unwrap();
        check_level(19).unwrap();
        assert!(check_level(0).is_err());
        assert!(check_level(-1).is_err());
        assert!(check_level(23).is_err());
    }
}
