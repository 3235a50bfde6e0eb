//! The error type of repository operations.

use std::path::PathBuf;

use gix::ObjectId;

/// Errors of repository operations ([`crate::Repo`], [`crate::init_bare`]).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A gix operation failed; `context` says which.
    #[error("{context}: {source:#}")]
    Gix {
        /// What was being done.
        context: String,
        /// The underlying gix error.
        #[source]
        source: gix::Error,
    },
    /// A file system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An object does not exist or is not of the expected kind.
    #[error("object {id} not found or not a {expected}")]
    MissingObject {
        /// The object id.
        id: ObjectId,
        /// The expected kind ("commit", "tree", ...).
        expected: &'static str,
    },
    /// A reference name is not a valid full reference name.
    #[error("invalid reference name {name:?}: {reason}")]
    InvalidRefName {
        /// The refused name.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A compare-and-swap ref update found the ref at another value than expected.
    #[error("reference {name} is at {}, expected {}", fmt_opt(.actual), fmt_opt(.expected))]
    RefConflict {
        /// The full reference name.
        name: String,
        /// The value the caller expected (None: must not exist).
        expected: Option<ObjectId>,
        /// The value found (None: does not exist).
        actual: Option<ObjectId>,
    },
    /// A tree entry has a name that must never be written to disk ("..", ".git", ...).
    #[error("refusing hostile tree entry {path:?}")]
    HostileEntry {
        /// The path of the entry inside the tree (lossy UTF-8).
        path: String,
    },
    /// The destination of a checkout has something in the way (an existing file or a symlink).
    #[error("checkout destination {path} already exists or is not a directory")]
    CheckoutConflict {
        /// The path in the way.
        path: PathBuf,
    },
}

fn fmt_opt(id: &Option<ObjectId>) -> String {
    match id {
        Some(id) => id.to_string(),
        None => "nothing (absent)".to_string(),
    }
}

impl GitError {
    /// Wraps a gix error with a context string.
    pub(crate) fn gix(context: impl Into<String>) -> impl FnOnce(gix::Error) -> GitError {
        let context = context.into();
        move |source| GitError::Gix { context, source }
    }

    /// Wraps an io error with a context and a path.
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> GitError {
        let path = path.into();
        move |source| GitError::Io {
            context,
            path,
            source,
        }
    }
}
