//! Errors of building, importing and unpacking stacks.

use std::path::PathBuf;

use slipway_slug::SlugError;

/// Why a stack could not be built, imported, found or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The stack is not in the archive yet.
    #[error("stack {stack} is not built; build it with `slipway stack build {stack}`")]
    NotBuilt {
        /// `LANGUAGE:VERSION`.
        stack: String,
    },
    /// An imported stack (a version the catalog lacks) is not in the archive: it has no
    /// Debian recipe to build it from.
    #[error("stack {stack} was imported and has no Debian recipe; import it again with `slipway stack import {stack} IMAGE`")]
    ImportedOnly {
        /// `LANGUAGE:VERSION`.
        stack: String,
    },
    /// A package the catalog names is not in the suite.
    #[error("building stack {stack}: Debian {suite} has no package `{package}`")]
    PackageMissing {
        /// `LANGUAGE:VERSION`.
        stack: String,
        /// The Debian suite.
        suite: String,
        /// The missing package.
        package: String,
    },
    /// mmdebstrap failed for another reason (mirror unreachable, a maintainer script failed).
    #[error("building stack {stack}: {cause}")]
    BuildFailed {
        /// `LANGUAGE:VERSION`.
        stack: String,
        /// What went wrong, from mmdebstrap's and apt's error lines.
        cause: String,
    },
    /// A suite's package lists could not be fetched to check stacks against.
    #[error("fetching Debian {suite}'s package lists: {cause}")]
    IndexFetch {
        /// The Debian suite.
        suite: String,
        /// apt's error lines.
        cause: String,
    },
    /// A tool a build needs is missing.
    #[error("`{tool}` is not installed: {hint}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// What to do.
        hint: String,
    },
    /// A download failed.
    #[error("downloading {url}: {cause}")]
    Download {
        /// What was downloaded.
        url: String,
        /// Why it failed.
        cause: String,
    },
    /// A download's sha512 is not the pinned one.
    #[error("downloading {url}: sha512 is {actual}, expected {expected}")]
    Checksum {
        /// What was downloaded.
        url: String,
        /// The pinned sha512.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// An image to import is not an OCI image layout this server can use.
    #[error("importing {path}: {reason}")]
    Import {
        /// The image layout folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A stack layer's content is not what its digests say, or holds a hostile entry.
    #[error("unpacking stack layer {layer}: {reason}")]
    Unpack {
        /// The layer digest.
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The archive refused or failed.
    #[error(transparent)]
    Archive(#[from] SlugError),
}

impl StackError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StackError {
        let path = path.into();
        move |source| StackError::Io { path, source }
    }
}
