//! The crate's error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::pack::human_size;

/// Everything that can go wrong while packing, storing or unpacking slugs.
#[derive(Debug, thiserror::Error)]
pub enum SlugError {
    /// A string that should be a `sha256:<64 lowercase hex>` digest is not one.
    #[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    InvalidDigest(String),
    /// A release tag does not follow the OCI `org.opencontainers.image.ref.name` grammar.
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag {
        /// The refused tag.
        tag: String,
        /// Why it was refused.
        reason: String,
    },
    /// A zstd compression level outside the range zstd supports.
    #[error("invalid zstd compression level {level}: use {min}..={max}")]
    InvalidLevel {
        /// The refused level.
        level: i32,
        /// Smallest accepted level.
        min: i32,
        /// Largest accepted level.
        max: i32,
    },
    /// A file system or stream operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder being worked on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The folder to pack contains something a slug cannot hold.
    #[error("cannot pack {}: {reason}", path.display())]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// A blob's content does not hash to its name: the archive is corrupt.
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest the blob is stored (or referenced) under.
        digest: Digest,
        /// The digest of the bytes actually found.
        actual: Digest,
    },
    /// A blob that is needed is not in the archive.
    #[error("blob {0} is not in the archive")]
    MissingBlob(Digest),
    /// A slug contains an entry that could escape or damage the unpack folder, or is malformed.
    #[error("slug {digest} has a refused entry {entry:?}: {reason}")]
    BadEntry {
        /// The slug being unpacked.
        digest: Digest,
        /// The entry's path as stored in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The archive's files (oci-layout, index.json, a manifest or config) are not what they should be.
    #[error("invalid OCI image layout at {}: {reason}", path.display())]
    BadLayout {
        /// The file that is wrong.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No release with this tag is in the archive.
    #[error("no release tagged {0:?} in the archive")]
    UnknownTag(String),
    /// The slug is bigger (compressed) than the limit.
    #[error(
        "the slug is {} compressed ({} of files), over the limit of {}; biggest in it: {}; \
         biggest files: {}. Leave build leftovers out of the app folder (keep them in the \
         build cache, $PLATFORM_CACHE_DIR) or raise the limit",
        human_size(*size), human_size(*uncompressed), human_size(*limit),
        list(biggest), list(biggest_files)
    )]
    TooBig {
        /// Compressed size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
        /// Total size of the files (uncompressed).
        uncompressed: u64,
        /// The biggest top-level entries (folders end with `/`) with their total file size.
        biggest: Vec<(String, u64)>,
        /// The biggest files with their size.
        biggest_files: Vec<(String, u64)>,
    },
    /// Packing was cancelled.
    #[error("packing the slug was cancelled")]
    Cancelled,
}

fn list(items: &[(String, u64)]) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    items
        .iter()
        .map(|(p, n)| format!("{p} ({})", human_size(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Map the error to [`SlugError::Io`] naming `path`.
    fn ctx(self, path: &Path) -> Result<T, SlugError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, path: &Path) -> Result<T, SlugError> {
        self.map_err(|source| SlugError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
