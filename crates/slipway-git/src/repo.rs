//! An open bare repository: refs, trees, commits.

use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};
use gix::ObjectId;

use crate::{CommitSource, GitError};

/// The identity written into reflogs of ref updates made by Slipway.
const REFLOG_NAME: &str = "Slipway";
/// The e-mail written into reflogs of ref updates made by Slipway.
const REFLOG_EMAIL: &str = "slipway@localhost";

/// An open bare repository. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Repo {
    inner: gix::ThreadSafeRepository,
    path: PathBuf,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("path", &self.path).finish()
    }
}

impl Repo {
    /// Opens the repository at `path` (its git dir), ignoring global and system git configuration.
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        let inner =
            gix::ThreadSafeRepository::open_opts(path, gix::open::Options::isolated()).map_err(
                GitError::gix(format!("cannot open repository {}", path.display())),
            )?;
        Ok(Repo {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The path the repository was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A thread-local gix handle on the repository, for operations this type does not wrap.
    pub fn gix(&self) -> gix::Repository {
        self.inner.to_thread_local()
    }

    /// Target of a full ref name like `refs/heads/main`; `None` if it does not exist.
    /// Symbolic refs (like `HEAD`) are followed; annotated tags are not peeled.
    pub fn ref_target(&self, name: &str) -> Result<Option<ObjectId>, GitError> {
        let repo = self.gix();
        let mut name = name.to_string();
        for _ in 0..5 {
            let Some(reference) = repo
                .try_find_reference(name.as_str())
                .map_err(GitError::gix(format!("cannot read reference {name}")))?
            else {
                return Ok(None);
            };
            match reference.target() {
                gix::refs::TargetRef::Object(id) => return Ok(Some(id.to_owned())),
                gix::refs::TargetRef::Symbolic(next) => {
                    name = next.as_bstr().to_str_lossy().into_owned()
                }
            }
        }
        Err(GitError::InvalidRefName {
            name,
            reason: "symbolic reference chain too deep".into(),
        })
    }

    /// All refs pointing directly at an object (full name, target), sorted by name.
    /// Symbolic refs are left out.
    pub fn refs(&self) -> Result<Vec<(String, ObjectId)>, GitError> {
        let repo = self.gix();
        let platform = repo
            .references()
            .map_err(GitError::gix("cannot list references"))?;
        let iter = platform
            .all()
            .map_err(GitError::gix("cannot list references"))?;
        let mut out = Vec::new();
        for reference in iter {
            let reference = reference.map_err(GitError::gix("cannot read a reference"))?;
            if let gix::refs::TargetRef::Object(id) = reference.target() {
                out.push((
                    reference.name().as_bstr().to_str_lossy().into_owned(),
                    id.to_owned(),
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Tree id of `path` (`""` = root, `"a/b"` = subfolder) in `commit`; `None` if the path is
    /// missing or not a tree. Errors if `commit` is not a commit of this repository.
    pub fn tree_at(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>, GitError> {
        let repo = self.gix();
        let root = commit_tree(&repo, commit)?;
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Ok(Some(root));
        }
        let tree = repo.find_tree(root).map_err(|_| GitError::MissingObject {
            id: root,
            expected: "tree",
        })?;
        let entry = tree
            .lookup_entry_by_path(path)
            .map_err(GitError::gix(format!("cannot look up {path} in {commit}")))?;
        Ok(entry.filter(|e| e.mode().is_tree()).map(|e| e.object_id()))
    }

    /// A [`slipway_config::ConfigSource`] reading files and folders of `commit`'s tree
    /// (never the disk).
    pub fn config_source(&self, commit: ObjectId) -> Result<CommitSource, GitError> {
        let root = commit_tree(&self.gix(), commit)?;
        Ok(CommitSource::new(self.clone(), commit, root))
    }

    /// Writes the files of `tree` into `dest` (created if missing; it must not contain any of
    /// the tree's paths yet). Regular files get mode 0644 or 0755, symlinks stay symlinks,
    /// submodule (commit) entries are skipped. Hostile entry names (`..`, `.`, names
    /// containing `/` or NUL, `.git` in any case) are refused with [`GitError::HostileEntry`].
    pub fn checkout(&self, tree: ObjectId, dest: &Path) -> Result<(), GitError> {
        crate::checkout::checkout(&self.gix(), tree, dest)
    }

    /// Compare-and-swap ref update: succeeds only if the ref `name` currently points at
    /// `expected` (`None`: it must not exist). `new = None` deletes the ref. Fails with
    /// [`GitError::RefConflict`] on a mismatch. The reflog gets `reflog_message`.
    pub fn update_ref(
        &self,
        name: &str,
        expected: Option<ObjectId>,
        new: Option<ObjectId>,
        reflog_message: &str,
    ) -> Result<(), GitError> {
        let full_name = FullName::try_from(name).map_err(|e| GitError::InvalidRefName {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        if !name.starts_with("refs/") {
            return Err(GitError::InvalidRefName {
                name: name.to_string(),
                reason: "not under refs/".into(),
            });
        }
        let conflict = |actual| GitError::RefConflict {
            name: name.to_string(),
            expected,
            actual,
        };
        let actual = self.ref_target(name)?;
        if actual != expected {
            return Err(conflict(actual));
        }
        let previous = match expected {
            Some(id) => PreviousValue::MustExistAndMatch(Target::Object(id)),
            None => PreviousValue::MustNotExist,
        };
        let change = match new {
            Some(new) => Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: reflog_message.replace('\n', " ").into(),
                },
                expected: previous,
                new: Target::Object(new),
            },
            None if expected.is_none() => return Ok(()),
            None => Change::Delete {
                expected: previous,
                log: RefLog::AndReference,
            },
        };
        let edit = RefEdit {
            change,
            name: full_name,
            deref: false,
        };
        let signature = gix::actor::Signature {
            name: REFLOG_NAME.into(),
            email: REFLOG_EMAIL.into(),
            time: gix::date::Time::now_utc(),
        };
        let mut time_buf = gix::date::parse::TimeBuf::default();
        let repo = self.gix();
        match repo.edit_references_as(Some(edit), Some(signature.to_ref(&mut time_buf))) {
            Ok(_) => Ok(()),
            Err(err) => {
                let now = self.ref_target(name)?;
                if now != expected {
                    Err(conflict(now))
                } else {
                    Err(GitError::gix(format!("cannot update reference {name}"))(
                        err,
                    ))
                }
            }
        }
    }

    /// One line describing `commit` for display: `<summary> (<author name>)`.
    pub fn commit_summary(&self, commit: ObjectId) -> Result<String, GitError> {
        let repo = self.gix();
        let c = repo
            .find_commit(commit)
            .map_err(|_| GitError::MissingObject {
                id: commit,
                expected: "commit",
            })?;
        let summary = c
            .message()
            .map(|m| m.summary().to_str_lossy().into_owned())
            .unwrap_or_default();
        let author = c
            .author()
            .map(|a| a.name.to_str_lossy().trim().to_string())
            .unwrap_or_default();
        Ok(if author.is_empty() {
            summary
        } else {
            format!("{summary} ({author})")
        })
    }
}

/// The root tree id of `commit`.
fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, GitError> {
    let c = repo
        .find_commit(commit)
        .map_err(|_| GitError::MissingObject {
            id: commit,
            expected: "commit",
        })?;
    c.tree_id()
        .map(|id| id.detach())
        .map_err(GitError::gix(format!("cannot decode commit {commit}")))
}
