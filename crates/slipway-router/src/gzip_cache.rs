//! A bounded cache of text files gzipped on the fly ([`crate::files`]: of
//! [`crate::files::GZIP_MIN`] to [`crate::files::GZIP_MAX`] bytes), one per router worker
//! thread (no lock), so that a second request for the same file does not compress it
//! again. Only files of a slug's root are cached (read-only: the release's unpacked slug);
//! a mount's files, which the app may change, have gzipped copies on disk instead
//! ([`crate::gzip_store`]).
//!
//! A gzipped body of [`SENDFILE_MIN`] bytes or more is kept in a sealed `memfd` (an
//! anonymous in-memory file that nobody, this process included, can write, grow or
//! shrink once made: `F_SEAL_WRITE`, `F_SEAL_GROW`, `F_SEAL_SHRINK`, `F_SEAL_SEAL`), made
//! once when the body is compressed, so that the router's own HTTP/1.1 path answers it
//! as a file, head then `sendfile(2)` ([`crate::sendfile`]), as nginx's `gzip_static`
//! does with a `.gz`: the kernel then references the body's pages instead of copying
//! the bytes into the socket at every answer. A shorter body (or one whose `memfd`
//! could not be made: no `memfd_create` in a sandbox, no descriptor to spare under
//! [`crate::file_cache::MAX_OPEN_FILES`]) is kept in memory and written beside its head.
//!
//! An entry is keyed by the file's identity: its root (the root's open-file cache, which
//! belongs to the release's compiled site), the release's tag, its path beneath the
//! root, its size and its change time. Entries go oldest first once the worker holds
//! more than [`MAX_BYTES`] of them or [`MAX_ENTRIES`] (a `memfd`'s bytes count as the
//! memory they are); a retired release's entries stay until they are pushed out (a
//! `memfd` holds nothing of the release's files open).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write as _};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};

use crate::file_cache::Held;
use crate::sendfile::SENDFILE_MIN;

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

/// A file's gzipped body.
#[derive(Debug, Clone)]
pub(crate) enum Gzipped {
    /// In memory: shorter than [`SENDFILE_MIN`], not kept, or kept where no sealed file
    /// could be made.
    Memory(Bytes),
    /// In a sealed `memfd`: all of its `len` bytes are the body, and no one can change
    /// them (see the module's documentation).
    Sealed {
        /// The `memfd`, open for reading.
        file: Arc<File>,
        /// Its length, the body's.
        len: u64,
    },
}

impl Gzipped {
    /// The body's length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Gzipped::Memory(bytes) => bytes.len() as u64,
            Gzipped::Sealed { len, .. } => *len,
        }
    }
}

/// A kept body, with its `memfd`'s share of the open-file caches' descriptors.
struct Kept {
    body: Gzipped,
    _held: Option<Held>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<FileIdentity, Kept>,
    /// Keys, oldest first.
    order: VecDeque<FileIdentity>,
    bytes: usize,
}

thread_local! {
    static CACHE: RefCell<Entries> = RefCell::default();
}

/// The gzipped body of the file `key` from this worker's cache, else made by `make` and
/// kept (in a sealed `memfd` if it is [`SENDFILE_MIN`] bytes or more and one can be
/// made, else in memory).
pub(crate) fn gzipped(
    key: FileIdentity,
    make: impl FnOnce() -> io::Result<Bytes>,
) -> io::Result<Gzipped> {
    if let Some(hit) = CACHE.with_borrow(|c| c.map.get(&key).map(|k| k.body.clone())) {
        return Ok(hit);
    }
    let gz = make()?;
    let len = gz.len();
    if len > MAX_BYTES {
        return Ok(Gzipped::Memory(gz));
    }
    let kept = match sealed(&gz) {
        Some((file, held)) => Kept {
            body: Gzipped::Sealed {
                file: Arc::new(file),
                len: len as u64,
            },
            _held: Some(held),
        },
        None => Kept {
            body: Gzipped::Memory(gz),
            _held: None,
        },
    };
    let body = kept.body.clone();
    CACHE.with_borrow_mut(|c| {
        c.bytes += len;
        c.order.push_back(key.clone());
        if let Some(old) = c.map.insert(key, kept) {
            c.bytes -= old.body.len() as usize;
        }
        while c.bytes > MAX_BYTES || c.map.len() > MAX_ENTRIES {
            let Some(oldest) = c.order.pop_front() else {
                break;
            };
            if let Some(gone) = c.map.remove(&oldest) {
                c.bytes -= gone.body.len() as usize;
            }
        }
    });
    Ok(body)
}

/// `gz` in a new sealed `memfd`, with the descriptor counted among the open-file caches'
/// ([`Held`]), if it is [`SENDFILE_MIN`] bytes or more; `None` if it is shorter, or
/// if no descriptor is to spare or the file could not be made (the body is then kept in
/// memory, which serves as well, with a copy per answer).
fn sealed(gz: &[u8]) -> Option<(File, Held)> {
    if (gz.len() as u64) < SENDFILE_MIN {
        return None;
    }
    let held = Held::take()?;
    let made = (|| -> io::Result<File> {
        let fd = rustix::fs::memfd_create(
            "slipway-gzip",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = File::from(fd);
        file.write_all(gz)?;
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
        )?;
        Ok(file)
    })();
    match made {
        Ok(file) => Some((file, held)),
        Err(e) => {
            tracing::debug!("a gzipped body stays in memory: no sealed memfd ({e})");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    fn key(path: &str, size: u64) -> FileIdentity {
        FileIdentity {
            root: 1,
            tag_and_path: format!("t\0{path}").into(),
            size,
            changed_ns: 7,
        }
    }

    /// Bytes that do not compress (a simple generator's), so a body's length is known.
    fn noise(len: usize) -> Bytes {
        let mut x = 99u32;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect::<Vec<u8>>()
            .into()
    }

    /// A body of SENDFILE_MIN bytes or more is made once per worker into a sealed
    /// memfd holding exactly its bytes, which no one can write, grow or shrink; a shorter
    /// one stays in memory.
    #[test]
    fn a_long_body_is_sealed_once_and_a_short_one_stays_in_memory() {
        let long = noise(SENDFILE_MIN as usize + 5);
        let mut made = 0;
        let first = gzipped(key("long", 1), || {
            made += 1;
            Ok(long.clone())
        })
        .expect("first");
        let second = gzipped(key("long", 1), || {
            made += 1;
            Ok(long.clone())
        })
        .expect("second");
        assert_eq!(made, 1, "made once");
        let (Gzipped::Sealed { file, len }, Gzipped::Sealed { file: again, .. }) =
            (&first, &second)
        else {
            panic!("not sealed: {first:?}");
        };
        assert!(Arc::ptr_eq(file, again), "the same memfd answers again");
        assert_eq!(*len, long.len() as u64);
        assert_eq!(file.metadata().expect("fstat").len(), long.len() as u64);
        let mut back = vec![0u8; long.len()];
        file.read_exact_at(&mut back, 0).expect("read");
        assert!(back[..] == long[..], "the body's bytes");
        let seals = rustix::fs::fcntl_get_seals(file.as_ref()).expect("seals");
        assert!(
            seals
                .contains(SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL),
            "{seals:?}"
        );
        // Sealed: not even a descriptor opened for writing can change it.
        let path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file.as_ref())
        );
        if let Ok(writer) = std::fs::OpenOptions::new().write(true).open(&path) {
            assert!(writer.write_at(b"x", 0).is_err(), "written");
            assert!(writer.set_len(1).is_err(), "shrunk");
            assert!(writer.set_len(long.len() as u64 + 1).is_err(), "grown");
        }
        assert_eq!(file.metadata().expect("fstat").len(), long.len() as u64);

        let short = noise(SENDFILE_MIN as usize - 1);
        let got = gzipped(key("short", 2), || Ok(short.clone())).expect("short");
        assert!(
            matches!(&got, Gzipped::Memory(b) if b[..] == short[..]),
            "{got:?}"
        );
        assert_eq!(got.len(), short.len() as u64);
    }
}
