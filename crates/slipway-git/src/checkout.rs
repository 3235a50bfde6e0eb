//! Writing the files of a tree to disk, refusing hostile names.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::objs::tree::EntryKind;
use gix::ObjectId;

use crate::GitError;

/// One thing to write, relative to the destination.
enum Item {
    Dir(BString),
    File {
        path: BString,
        id: ObjectId,
        executable: bool,
    },
    Link {
        path: BString,
        id: ObjectId,
    },
}

/// Whether a single tree entry name must never be written to disk.
pub(crate) fn is_hostile_name(name: &BStr) -> bool {
    name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(&b'/')
        || name.contains(&0)
        || name.eq_ignore_ascii_case(b".git")
}

/// Checks every entry of `tree` first (so a hostile tree writes nothing), then writes it to `dest`.
pub(crate) fn checkout(
    repo: &gix::Repository,
    tree: ObjectId,
    dest: &Path,
) -> Result<(), GitError> {
    let items = collect(repo, tree)?;
    std::fs::create_dir_all(dest).map_err(GitError::io("cannot create", dest))?;
    for item in items {
        match item {
            Item::Dir(path) => {
                let target = join(dest, path.as_ref());
                match std::fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let meta = std::fs::symlink_metadata(&target)
                            .map_err(GitError::io("cannot stat", &target))?;
                        if !meta.is_dir() {
                            return Err(GitError::CheckoutConflict { path: target });
                        }
                    }
                    Err(e) => return Err(GitError::io("cannot create", target)(e)),
                }
            }
            Item::File {
                path,
                id,
                executable,
            } => {
                let target = join(dest, path.as_ref());
                let data = blob(repo, id)?;
                let mode = if executable { 0o755 } else { 0o644 };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&target)
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            GitError::CheckoutConflict {
                                path: target.clone(),
                            }
                        } else {
                            GitError::io("cannot create", &target)(e)
                        }
                    })?;
                file.write_all(&data)
                    .map_err(GitError::io("cannot write", &target))?;
                // The umask may have removed bits: set the mode explicitly.
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(GitError::io("cannot chmod", &target))?;
            }
            Item::Link { path, id } => {
                let target = join(dest, path.as_ref());
                let data = blob(repo, id)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&data), &target).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        GitError::CheckoutConflict {
                            path: target.clone(),
                        }
                    } else {
                        GitError::io("cannot create symlink", &target)(e)
                    }
                })?;
            }
        }
    }
    Ok(())
}

fn join(dest: &Path, rel: &BStr) -> PathBuf {
    dest.join(OsStr::from_bytes(rel))
}

fn blob(repo: &gix::Repository, id: ObjectId) -> Result<Vec<u8>, GitError> {
    let object = repo.find_object(id).map_err(|_| GitError::MissingObject {
        id,
        expected: "blob",
    })?;
    if object.kind != gix::object::Kind::Blob {
        return Err(GitError::MissingObject {
            id,
            expected: "blob",
        });
    }
    Ok(object.detach().data)
}

/// Walks `tree` depth-first and lists directories before their contents.
fn collect(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<Item>, GitError> {
    let mut items = Vec::new();
    let mut stack: Vec<(BString, ObjectId)> = vec![(BString::default(), tree)];
    while let Some((prefix, id)) = stack.pop() {
        let tree = repo.find_tree(id).map_err(|_| GitError::MissingObject {
            id,
            expected: "tree",
        })?;
        let decoded = tree
            .decode()
            .map_err(GitError::gix(format!("cannot decode tree {id}")))?;
        let mut subtrees = Vec::new();
        for entry in &decoded.entries {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push_byte(b'/');
            }
            path.push_str(entry.filename);
            if is_hostile_name(entry.filename) {
                return Err(GitError::HostileEntry {
                    path: path.to_str_lossy().into_owned(),
                });
            }
            let id = entry.oid.to_owned();
            match entry.mode.kind() {
                EntryKind::Tree => {
                    items.push(Item::Dir(path.clone()));
                    subtrees.push((path, id));
                }
                EntryKind::Blob => items.push(Item::File {
                    path,
                    id,
                    executable: false,
                }),
                EntryKind::BlobExecutable => items.push(Item::File {
                    path,
                    id,
                    executable: true,
                }),
                EntryKind::Link => items.push(Item::Link { path, id }),
                EntryKind::Commit => {}
            }
        }
        // Reverse so that the stack pops subtrees in tree order.
        stack.extend(subtrees.into_iter().rev());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::is_hostile_name;
    use gix::bstr::BStr;

    #[test]
    fn hostile_names() {
        for bad in ["", ".", "..", "a/b", "a\0b", ".git", ".GIT", ".Git"] {
            assert!(is_hostile_name(BStr::new(bad)), "{bad:?} must be refused");
        }
        for good in ["a", ".gitignore", "...", "git", "..a", ".github"] {
            assert!(
                !is_hostile_name(BStr::new(good)),
                "{good:?} must be accepted"
            );
        }
    }
}
