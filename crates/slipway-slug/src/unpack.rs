//! Unpacking a slug layer into a folder, refusing hostile entries.
//!
//! Accepted: entries under `app/` (an optional leading `./` is tolerated), of type
//! directory, regular file or symlink. Refused: absolute paths, `..` components, entries
//! outside `app/`, hard links, device nodes, fifos and other types, duplicate entries,
//! symlinks whose relative target climbs out of the app folder, and any entry whose path
//! passes through a symlink or a file (nothing is ever written through a symlink).
//! Modes are applied masked to 0o777 (no setuid/setgid/sticky), owner is whoever unpacks.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{IoContext, SlugError};
use crate::pack::{check_symlink_target, LAYER_ROOT};

/// Unpack the uncompressed tar `reader` into `dest` (an existing empty folder that becomes
/// the app folder). `digest` only names the slug in errors.
pub(crate) fn unpack_tar<R: Read>(
    reader: R,
    dest: &Path,
    digest: &Digest,
) -> Result<(), SlugError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().ctx(dest)?;
    // Directories get their final mode and mtime last, deepest first, so that
    // read-only directories do not block their own children.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in entries {
        let mut entry = entry.ctx(dest)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason: &str| SlugError::BadEntry {
            digest: digest.clone(),
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let rel = layer_path(&raw).map_err(|r| bad(&r))?;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|_| bad("unreadable mode"))? & 0o777;
        let mtime = header.mtime().map_err(|_| bad("unreadable mtime"))?;
        let target = dest.join(&rel);

        if rel.as_os_str().is_empty() {
            if !kind.is_dir() {
                return Err(bad("the app/ root must be a directory"));
            }
            dirs.push((dest.to_path_buf(), mode, mtime));
            continue;
        }
        ensure_parents(dest, &rel, &mut dirs).map_err(|e| match e {
            ParentError::Io(e) => SlugError::Io {
                path: target.clone(),
                source: e,
            },
            ParentError::NotADir => bad("its path passes through a symlink or a file"),
        })?;

        match kind {
            tar::EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => dirs.push((target, mode, mtime)),
                Ok(_) => return Err(bad("duplicate entry")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&target).ctx(&target)?;
                    dirs.push((target, mode, mtime));
                }
                Err(e) => {
                    return Err(SlugError::Io {
                        path: target,
                        source: e,
                    })
                }
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(bad("duplicate entry"))
                    }
                    Err(e) => {
                        return Err(SlugError::Io {
                            path: target,
                            source: e,
                        })
                    }
                };
                io::copy(&mut entry, &mut file).ctx(&target)?;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .ctx(&target)?;
                file.set_modified(time(mtime)).ctx(&target)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| PathBuf::from(OsStr::from_bytes(&l)))
                    .ok_or_else(|| bad("symlink without a target"))?;
                check_symlink_target(&rel, &link).map_err(|r| bad(&r))?;
                match std::os::unix::fs::symlink(&link, &target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(bad("duplicate entry"))
                    }
                    Err(e) => {
                        return Err(SlugError::Io {
                            path: target,
                            source: e,
                        })
                    }
                }
            }
            tar::EntryType::Link => return Err(bad("hard links are not allowed in a slug")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(bad("device nodes are not allowed in a slug"))
            }
            tar::EntryType::Fifo => return Err(bad("fifos are not allowed in a slug")),
            other => return Err(bad(&format!("unsupported entry type {other:?}"))),
        }
    }
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
    for (dir, mode, mtime) in dirs {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).ctx(&dir)?;
        File::open(&dir)
            .and_then(|f| f.set_modified(time(mtime)))
            .ctx(&dir)?;
    }
    Ok(())
}

fn time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Map a tar path to a path relative to the app folder ("" for `app/` itself).
fn layer_path(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let raw = raw.strip_suffix(b"/").unwrap_or(raw);
    let mut parts = raw.split(|b| *b == b'/').peekable();
    if parts.peek() == Some(&&b"."[..]) {
        parts.next();
    }
    if parts.next() != Some(LAYER_ROOT.as_bytes()) {
        return Err(format!("outside {LAYER_ROOT}/"));
    }
    let mut rel = PathBuf::new();
    for p in parts {
        match p {
            b"" => return Err("empty path component".into()),
            b"." => return Err("\".\" path component".into()),
            b".." => return Err("\"..\" path component".into()),
            p => rel.push(OsStr::from_bytes(p)),
        }
    }
    Ok(rel)
}

enum ParentError {
    Io(io::Error),
    NotADir,
}

/// Make sure every parent of `dest/rel` is a real directory (creating missing ones, 0755).
fn ensure_parents(
    dest: &Path,
    rel: &Path,
    dirs: &mut Vec<(PathBuf, u32, u64)>,
) -> Result<(), ParentError> {
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(ParentError::NotADir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(ParentError::Io)?;
                dirs.push((cur.clone(), 0o755, crate::pack::SLUG_MTIME));
            }
            Err(e) => return Err(ParentError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_paths() {
        assert_eq!(layer_path(b"app").unwrap(), PathBuf::new());
        assert_eq!(layer_path(b"app/").unwrap(), PathBuf::new());
        assert_eq!(layer_path(b"app/a/b.py").unwrap(), PathBuf::from("a/b.py"));
        assert_eq!(layer_path(b"./app/x/").unwrap(), PathBuf::from("x"));
        for bad in [
            &b"/app/x"[..],
            b"app/../x",
            b"app/a/../../x",
            b"etc/passwd",
            b"x",
            b"app//x",
            b"app/./x",
            b"",
            b"..",
            b"apps/x",
        ] {
            assert!(
                layer_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
