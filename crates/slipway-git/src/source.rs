//! [`CommitSource`]: configuration files read from a commit's tree.

use std::io;

use gix::objs::tree::EntryKind;
use gix::ObjectId;
use slipway_config::{ConfigSource, DirEntry};

use crate::{GitError, Repo};

/// How many symlinks a single path lookup may follow.
const MAX_SYMLINK_HOPS: usize = 16;

/// Reads files and folders of one commit's tree (never the disk). Implements
/// [`slipway_config::ConfigSource`]. Symlinks inside the tree are followed like a checkout
/// would present them, but never out of the tree (absolute targets or too many `..` read as missing).
#[derive(Clone, Debug)]
pub struct CommitSource {
    repo: Repo,
    commit: ObjectId,
    root: ObjectId,
}

/// What a path resolved to.
enum Resolved {
    Tree(ObjectId),
    Blob(ObjectId),
}

impl CommitSource {
    pub(crate) fn new(repo: Repo, commit: ObjectId, root: ObjectId) -> Self {
        CommitSource { repo, commit, root }
    }

    /// The commit this source reads.
    pub fn commit(&self) -> ObjectId {
        self.commit
    }

    /// The root tree of the commit.
    pub fn root_tree(&self) -> ObjectId {
        self.root
    }

    /// The entries (name, kind, id) of tree `id`.
    fn entries(
        repo: &gix::Repository,
        id: ObjectId,
    ) -> io::Result<Vec<(Vec<u8>, EntryKind, ObjectId)>> {
        let tree = repo.find_tree(id).map_err(|_| {
            io::Error::other(GitError::MissingObject {
                id,
                expected: "tree",
            })
        })?;
        let decoded = tree
            .decode()
            .map_err(|e| io::Error::other(GitError::gix(format!("cannot decode tree {id}"))(e)))?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| (e.filename.to_vec(), e.mode.kind(), e.oid.to_owned()))
            .collect())
    }

    fn blob(repo: &gix::Repository, id: ObjectId) -> io::Result<Vec<u8>> {
        let object = repo.find_object(id).map_err(|_| {
            io::Error::other(GitError::MissingObject {
                id,
                expected: "blob",
            })
        })?;
        Ok(object.detach().data)
    }

    /// Resolves a slash-separated path inside the tree, following symlinks within the tree.
    fn resolve(&self, repo: &gix::Repository, path: &str) -> io::Result<Option<Resolved>> {
        let mut pending: std::collections::VecDeque<Vec<u8>> =
            path.split('/').map(|p| p.as_bytes().to_vec()).collect();
        let mut dirs: Vec<ObjectId> = vec![self.root];
        let mut hops = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if dirs.len() == 1 {
                        return Ok(None);
                    }
                    dirs.pop();
                    continue;
                }
                _ => {}
            }
            let Some(current) = dirs.last().copied() else {
                return Ok(None);
            };
            let entries = Self::entries(repo, current)?;
            let Some((_, kind, id)) = entries.into_iter().find(|(name, _, _)| *name == part) else {
                return Ok(None);
            };
            match kind {
                EntryKind::Tree => dirs.push(id),
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    return Ok(if pending.iter().all(|p| p.is_empty() || p == b".") {
                        Some(Resolved::Blob(id))
                    } else {
                        None
                    });
                }
                EntryKind::Link => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Ok(None);
                    }
                    let target = Self::blob(repo, id)?;
                    if target.starts_with(b"/") {
                        return Ok(None);
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        pending.push_front(part.to_vec());
                    }
                }
                EntryKind::Commit => return Ok(None),
            }
        }
        Ok(dirs.last().map(|id| Resolved::Tree(*id)))
    }
}

impl ConfigSource for CommitSource {
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let repo = self.repo.gix();
        match self.resolve(&repo, path)? {
            Some(Resolved::Blob(id)) => Self::blob(&repo, id).map(Some),
            _ => Ok(None),
        }
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let repo = self.repo.gix();
        let Some(Resolved::Tree(tree)) = self.resolve(&repo, path)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (name, kind, _) in Self::entries(&repo, tree)? {
            let Ok(name) = String::from_utf8(name) else {
                continue;
            };
            let is_dir = match kind {
                EntryKind::Tree => true,
                EntryKind::Blob | EntryKind::BlobExecutable => false,
                EntryKind::Link => {
                    let full = if path.trim_matches('/').is_empty() {
                        name.clone()
                    } else {
                        format!("{}/{name}", path.trim_end_matches('/'))
                    };
                    matches!(self.resolve(&repo, &full)?, Some(Resolved::Tree(_)))
                }
                EntryKind::Commit => continue,
            };
            out.push(DirEntry { name, is_dir });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
