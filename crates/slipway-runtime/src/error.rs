//! The error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running containers or managing network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The OCI runtime CLI could not be found (not a file, not on PATH).
    #[error("OCI runtime {0:?} not found (install runc or pass --runtime PATH)")]
    RuntimeNotFound(PathBuf),
    /// The container init (`tini-static`, Debian package `tini`) is not installed.
    #[error("the container init is missing: install tini (/usr/bin/tini-static)")]
    InitNotFound,
    /// A container id that is not `[a-zA-Z0-9][a-zA-Z0-9_.-]*` of at most 128 characters.
    #[error("invalid container id {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters")]
    InvalidId(String),
    /// A network namespace name that is not acceptable.
    #[error("invalid network namespace name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 200 characters")]
    InvalidNetnsName(String),
    /// A container spec that cannot be run as given (bad mount, missing folder, bad env...).
    #[error("invalid container spec for {id}: {reason}")]
    InvalidSpec {
        /// The container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The runtime already knows a container with this id.
    #[error("a container with id {0:?} already exists")]
    AlreadyExists(String),
    /// The OCI runtime CLI reported an error (its own message).
    #[error("{command} failed: {message}")]
    Runtime {
        /// What was run, e.g. `runc run app-1`.
        command: String,
        /// The runtime's own error message.
        message: String,
    },
    /// The container or command did not finish in time and was killed.
    #[error("timed out after {0:?} (killed)")]
    Timeout(Duration),
    /// A network namespace operation failed.
    #[error("network namespace {name}: {message}")]
    Netns {
        /// The namespace name.
        name: String,
        /// What went wrong (the `ip` command's message).
        message: String,
    },
    /// The runtime printed something this crate cannot understand.
    #[error("unexpected output from {command}: {message}")]
    Parse {
        /// What was run.
        command: String,
        /// What could not be parsed.
        message: String,
    },
    /// A bind mount's source below a folder a tenant can write holds a symbolic link (or
    /// something that is not a folder, or another file system) on the way: never bound.
    #[error("{} in {}: {reason}; refusing to mount it", relative.display(), root.display())]
    UnsafeBindSource {
        /// The folder the source was resolved from (a volume's root).
        root: PathBuf,
        /// The source, relative to `root`.
        relative: PathBuf,
        /// What was found on the way.
        reason: String,
    },
    /// A file system or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Wraps an I/O error with a short description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}
