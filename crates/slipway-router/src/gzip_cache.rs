//! A bounded cache of text files gzipped on the fly ([`crate::files`]: of
//! [`crate::files::GZIP_MIN`] to [`crate::files::GZIP_MAX`] bytes), one per router worker
//! thread (no lock), so that a second request for the same file does not compress it
//! again. Only files of a slug's root are cached (read-only: the release's unpacked slug);
//! a mount's files, which the app may change, have gzipped copies on disk instead
//! ([`crate::gzip_store`]).
//!
//! An entry is keyed by the file's identity: its root (the root's open-file cache, which
//! belongs to the release's compiled site), the release's tag, its path beneath the
//! root, its size and its change time. Entries go oldest first once the worker holds
//! more than [`MAX_BYTES`] of them or [`MAX_ENTRIES`]; a retired release's entries stay
//! until they are pushed out.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;

use bytes::Bytes;

/// Most bytes of gzipped bodies one worker keeps.
pub(crate) const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Most gzipped bodies one worker keeps.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// Which file a gzipped body is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileIdentity {
    /// The root's open-file cache (its address: one per root of a compiled site).
    pub(crate) root: usize,
    /// The release's tag, then the path beneath the root.
    pub(crate) tag_and_path: Box<str>,
    /// The file's size in bytes.
    pub(crate) size: u64,
    /// The later of its mtime and ctime (nanoseconds since the epoch).
    pub(crate) changed_ns: i128,
}

#[derive(Default)]
struct Entries {
    map: HashMap<FileIdentity, Bytes>,
    /// Keys, oldest first.
    order: VecDeque<FileIdentity>,
    bytes: usize,
}

thread_local! {
    static CACHE: RefCell<Entries> = RefCell::default();
}

/// The gzipped body of the file `key` from this worker's cache, else made by `make` and
/// kept.
pub(crate) fn gzipped(
    key: FileIdentity,
    make: impl FnOnce() -> io::Result<Bytes>,
) -> io::Result<Bytes> {
    if let Some(hit) = CACHE.with_borrow(|c| c.map.get(&key).cloned()) {
        return Ok(hit);
    }
    let gz = make()?;
    if gz.len() <= MAX_BYTES {
        CACHE.with_borrow_mut(|c| {
            c.bytes += gz.len();
            c.order.push_back(key.clone());
            if let Some(old) = c.map.insert(key, gz.clone()) {
                c.bytes -= old.len();
            }
            while c.bytes > MAX_BYTES || c.map.len() > MAX_ENTRIES {
                let Some(oldest) = c.order.pop_front() else {
                    break;
                };
                if let Some(gone) = c.map.remove(&oldest) {
                    c.bytes -= gone.len();
                }
            }
        });
    }
    Ok(gz)
}
