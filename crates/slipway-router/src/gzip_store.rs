//! Gzipped copies of static files kept on disk (nginx's `gzip_static`, made by the
//! router itself): for the text files the per-worker memory cache ([`crate::gzip_cache`])
//! does not hold, a mount's files (the app may change them) and files over
//! [`crate::files::GZIP_MAX`], which were compressed again at every request.
//!
//! - Keyed by the file's identity ([`Identity`]): device, inode, size, and mtime and
//!   ctime to the nanosecond, read from the descriptor the request opened when it was
//!   opened (at each request for a mount's file). Any change
//!   of the file (written, truncated, renamed over, `touch`ed) sets its ctime to the
//!   current time, so it gets a new key: a changed file is never answered from an old
//!   copy.
//! - Only a settled file is copied: one whose ctime is at least [`SETTLE`] in the past.
//!   The kernel's timestamps are coarse (a clock tick), so two writes of the same size
//!   within one tick could share a key; a file changed that recently is compressed for
//!   its request as before ([`crate::files`]), and any change after the copy was made
//!   comes at least [`SETTLE`] later, with a later ctime. The file's identity is read
//!   again once it was compressed: a file changed meanwhile leaves no copy.
//! - Written atomically: compressed into a temporary file of the store's folder, then
//!   renamed to its key's name; a reader finds a whole copy or none. The folder
//!   (`DATA/router/gzip`, root's, 0700) is emptied when the router starts, so a copy
//!   torn by a crash is never served.
//! - Bounded: at most `max_bytes` of copies (counted in 4 KiB blocks); beyond, the least
//!   recently used go. A copy of an older version of a file (same device and inode) is
//!   removed as soon as a newer one is made. A file over half the bound is not copied.
//! - Small files (up to [`crate::files::GZIP_MAX`]) are compressed on the request that
//!   misses ([`crate::files::GZIP_LEVEL`]: a few ms); larger ones by one background thread of the
//!   store, while their request is compressed on the fly as before.
//!
//! A copy found for a slug's file is kept, descriptor and length, with the file's entry
//! in the open-file cache ([`crate::file_cache::gzipped_copy`]): later requests within
//! the entry's life are answered from it without the store (its lock, `open`, `fstat`,
//! `close`), as nginx's `gzip_static` with `open_file_cache` opens only the `.gz`.
//!
//! A copy is served as any file: its length known, with `sendfile(2)` on a plain TCP
//! connection, and byte ranges of the compressed bytes (RFC 9110: a range is of the
//! selected representation; its `ETag` names the encoding).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::files::{Identity, FILE_CHUNK, GZIP_LEVEL, GZIP_MAX};

/// How long ago a file's last change must be for a copy of it to be kept.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

/// The default bound on the copies' bytes.
pub(crate) const DEFAULT_GZIP_STORE_BYTES: u64 = 256 * 1024 * 1024;

/// Files waiting for the background thread at most; more are not copied (yet).
const QUEUE: usize = 64;

/// Whether the file of `id` last changed at least [`SETTLE`] before `now`.
fn settled(id: &Identity, now: SystemTime) -> bool {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    id.ctime_ns + SETTLE.as_nanos() as i128 <= now_ns
}

/// The name of the copy of `id` in the store's folder.
fn file_name(id: &Identity) -> String {
    format!(
        "{:x}-{:x}-{:x}-{:x}-{:x}.gz",
        id.dev, id.ino, id.size, id.mtime_ns, id.ctime_ns
    )
}

/// A copy found or made: the open compressed file and its length.
#[derive(Clone, Debug)]
pub(crate) struct Copy {
    /// The gzipped bytes.
    pub(crate) file: Arc<File>,
    /// Their length.
    pub(crate) len: u64,
}

#[derive(Debug)]
struct Entry {
    id: Identity,
    /// Bytes counted against the bound (whole blocks).
    blocks_bytes: u64,
    /// When last used (the index's clock).
    used: u64,
}

#[derive(Debug, Default)]
struct Index {
    /// The copy of each file (device, inode): only of its latest version.
    entries: HashMap<(u64, u64), Entry>,
    bytes: u64,
    clock: u64,
}

/// What the store and its background thread share.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// Files queued for or being copied by the background thread.
    building: Mutex<HashSet<Identity>>,
}

/// The store of gzipped copies of one router (see the module's documentation).
#[derive(Debug)]
pub(crate) struct GzipStore {
    shared: Arc<Shared>,
    /// The background thread's queue (it ends when this is dropped).
    queue: SyncSender<(Identity, Arc<File>)>,
}

impl GzipStore {
    /// The store in `dir`, emptied (made if missing, root's only), keeping at most
    /// `max_bytes` of copies.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<GzipStore> {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::default(),
            building: Mutex::default(),
        });
        let (queue, jobs) = sync_channel::<(Identity, Arc<File>)>(QUEUE);
        let background = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("router-gzip".into())
            .spawn(move || {
                while let Ok((id, file)) = jobs.recv() {
                    if let Err(e) = background.make(id, &file) {
                        tracing::warn!("making a gzipped copy of a static file: {e}");
                    }
                    lock(&background.building).remove(&id);
                }
            })?;
        Ok(GzipStore { shared, queue })
    }

    /// The gzipped copy of `file` (open, of identity `id` at its opening) if the store
    /// has it or makes it now; `None`: compress it for this request (the file is not
    /// settled, too large, changed while read, or its copy is being made in the
    /// background).
    pub(crate) fn copy_of(&self, file: &Arc<File>, id: Identity) -> Option<Copy> {
        let size = id.size;
        if !settled(&id, SystemTime::now()) || size > self.shared.max_bytes / 2 {
            return None;
        }
        if let Some(copy) = self.shared.get(&id) {
            return Some(copy);
        }
        if size <= GZIP_MAX {
            return match self.shared.make(id, file) {
                Ok(made) => made,
                Err(e) => {
                    tracing::warn!("making a gzipped copy of a static file: {e}");
                    None
                }
            };
        }
        if lock(&self.shared.building).insert(id) {
            match self.queue.try_send((id, Arc::clone(file))) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    lock(&self.shared.building).remove(&id);
                }
            }
        }
        None
    }

    /// The bytes of copies the store counts now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        lock(&self.shared.index).bytes
    }

    /// The copies' file names in the folder now.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.shared.dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The copy of `id`, if there is one.
    fn get(&self, id: &Identity) -> Option<Copy> {
        {
            let mut index = lock(&self.index);
            index.clock += 1;
            let clock = index.clock;
            let entry = index.entries.get_mut(&(id.dev, id.ino))?;
            if entry.id != *id {
                return None;
            }
            entry.used = clock;
        }
        match File::open(self.dir.join(file_name(id))) {
            Ok(file) => {
                let len = file.metadata().ok()?.len();
                Some(Copy {
                    file: Arc::new(file),
                    len,
                })
            }
            Err(_) => {
                // Removed beneath the index (evicted meanwhile): forget it.
                let mut index = lock(&self.index);
                if index
                    .entries
                    .get(&(id.dev, id.ino))
                    .is_some_and(|e| e.id == *id)
                {
                    if let Some(gone) = index.entries.remove(&(id.dev, id.ino)) {
                        index.bytes -= gone.blocks_bytes;
                    }
                }
                None
            }
        }
    }

    /// Compress `file` (of identity `id`) into a new copy and keep it; `Ok(None)` if the
    /// file changed while it was read.
    fn make(&self, id: Identity, file: &File) -> io::Result<Option<Copy>> {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut gz = flate2::write::GzEncoder::new(
                io::BufWriter::with_capacity(FILE_CHUNK, out),
                flate2::Compression::new(GZIP_LEVEL),
            );
            let mut buf = vec![0u8; FILE_CHUNK];
            let mut offset = 0u64;
            loop {
                let n = file.read_at(&mut buf, offset)?;
                if n == 0 {
                    break;
                }
                gz.write_all(&buf[..n])?;
                offset += n as u64;
            }
            let out = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
            Ok::<_, io::Error>((offset, out))
        })();
        let (read, out) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // Changed while it was read: no copy (the next request tries again).
        if read != id.size || Identity::of(file)? != id {
            let _ = std::fs::remove_file(&tmp);
            return Ok(None);
        }
        let path = self.dir.join(file_name(&id));
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let len = out.metadata()?.len();
        self.keep(id, len);
        // Reopened read-only: the copy served is the one of the name.
        let file = Arc::new(File::open(&path)?);
        Ok(Some(Copy { file, len }))
    }

    /// Count the new copy of `id` (`len` bytes), remove the copy of an older version of
    /// the same file, and the least recently used copies while over the bound.
    fn keep(&self, id: Identity, len: u64) {
        let blocks_bytes = len.div_ceil(4096).max(1) * 4096;
        let mut remove = Vec::new();
        {
            let mut index = lock(&self.index);
            index.clock += 1;
            let used = index.clock;
            let old = index.entries.insert(
                (id.dev, id.ino),
                Entry {
                    id,
                    blocks_bytes,
                    used,
                },
            );
            index.bytes += blocks_bytes;
            if let Some(old) = old {
                index.bytes -= old.blocks_bytes;
                if old.id != id {
                    remove.push(old.id);
                }
            }
            if index.bytes > self.max_bytes {
                // Down to three quarters at once, least recently used first.
                let mut by_use: Vec<((u64, u64), u64)> =
                    index.entries.iter().map(|(k, e)| (*k, e.used)).collect();
                by_use.sort_by_key(|(_, used)| *used);
                for (key, _) in by_use {
                    if index.bytes <= self.max_bytes / 4 * 3 {
                        break;
                    }
                    if let Some(gone) = index.entries.remove(&key) {
                        index.bytes -= gone.blocks_bytes;
                        remove.push(gone.id);
                    }
                }
            }
        }
        for gone in remove {
            let _ = std::fs::remove_file(self.dir.join(file_name(&gone)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `text`, written now (its ctime is now: tests wait for [`SETTLE`]).
    fn text_file(path: &Path, text: &str) -> Arc<File> {
        std::fs::write(path, text).expect("write");
        Arc::new(File::open(path).expect("open"))
    }

    /// The identity of `file` now (as a request opening it now sees it).
    fn now_id(file: &File) -> Identity {
        Identity::of(file).expect("identity")
    }

    fn gunzip(copy: &Copy) -> String {
        let mut bytes = vec![0u8; copy.len as usize];
        copy.file.read_exact_at(&mut bytes, 0).expect("read copy");
        let mut back = String::new();
        io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut back)
            .expect("gunzip");
        back
    }

    #[test]
    fn a_settled_file_is_copied_once_and_a_changed_one_never_answered_from_the_old_copy() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = GzipStore::open(&tmp.path().join("store"), 1024 * 1024).expect("store");
        let path = tmp.path().join("page.html");
        let first = "first version\n".repeat(200);
        let file = text_file(&path, &first);

        // Just written: not settled, no copy (compressed per request by the caller).
        let first_id = now_id(&file);
        assert!(store.copy_of(&file, first_id).is_none());
        assert!(store.names().is_empty(), "{:?}", store.names());

        std::thread::sleep(SETTLE + Duration::from_millis(100));
        let made = store.copy_of(&file, now_id(&file)).expect("made");
        assert_eq!(gunzip(&made), first);
        assert_eq!(store.names().len(), 1, "{:?}", store.names());
        let again = store.copy_of(&file, now_id(&file)).expect("found");
        assert_eq!(gunzip(&again), first);
        assert_eq!(store.names().len(), 1, "not made twice");

        // Changed in place, same size, right away: a new identity (ctime now), not
        // settled: no copy answers, the old one is not used.
        let second = "other version\n".repeat(200);
        assert_eq!(second.len(), first.len());
        std::fs::write(&path, &second).expect("rewrite");
        assert!(store.copy_of(&file, now_id(&file)).is_none());
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        let made = store.copy_of(&file, now_id(&file)).expect("made");
        assert_eq!(gunzip(&made), second);
        // The older version's copy was removed with it.
        assert_eq!(store.names().len(), 1, "{:?}", store.names());

        // The identity the request saw is of an older version (changed since its
        // opening): no copy, neither the newer one nor one made now.
        assert!(store.copy_of(&file, first_id).is_none());
        assert_eq!(store.names().len(), 1, "{:?}", store.names());

        // A new store empties the folder (a copy torn by a crash is never served).
        std::fs::write(tmp.path().join("store/.tmp-1-1"), "torn").expect("write");
        drop(store);
        let store = GzipStore::open(&tmp.path().join("store"), 1024 * 1024).expect("store");
        assert!(store.names().is_empty(), "{:?}", store.names());
    }

    #[test]
    fn the_store_keeps_to_its_bound_least_recently_used_first() {
        let tmp = tempfile::tempdir().expect("temp dir");
        // Room for 8 blocks: each copy below takes one or two.
        let store = GzipStore::open(&tmp.path().join("store"), 8 * 4096).expect("store");
        let mut files = Vec::new();
        let mut x = 99u32;
        for i in 0..12 {
            // Text that does not compress well (a copy of about 5 KiB: two blocks).
            let text: String = (0..9000)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x >> 16) as usize % 36])
                })
                .collect();
            let path = tmp.path().join(format!("f{i}.txt"));
            files.push((text_file(&path, &text), text));
        }
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        for (file, _) in &files[..3] {
            assert!(store.copy_of(file, now_id(file)).is_some());
        }
        for (file, text) in &files[3..] {
            // The first stays in use all along.
            assert!(store.copy_of(&files[0].0, now_id(&files[0].0)).is_some());
            let copy = store.copy_of(file, now_id(file)).expect("made");
            assert_eq!(&gunzip(&copy), text);
            assert!(store.bytes() <= 8 * 4096, "{}", store.bytes());
            assert!(store.names().len() <= 8, "{:?}", store.names());
        }
        let names = store.names();
        let first = file_name(&now_id(&files[0].0));
        let second = file_name(&now_id(&files[1].0));
        assert!(names.contains(&first), "recently used stays: {names:?}");
        assert!(
            !names.contains(&second),
            "least recently used went: {names:?}"
        );
        // A file over half the bound is not copied.
        let big = "0123456789abcdef".repeat(2048 + 1);
        let big_file = text_file(&tmp.path().join("big.txt"), &big);
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        assert!(store.copy_of(&big_file, now_id(&big_file)).is_none());
    }

    #[test]
    fn a_large_file_is_copied_in_the_background() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = GzipStore::open(&tmp.path().join("store"), 64 * 1024 * 1024).expect("store");
        let text = "a large text file line\n".repeat(100_000);
        assert!(text.len() as u64 > GZIP_MAX);
        let file = text_file(&tmp.path().join("large.txt"), &text);
        std::thread::sleep(SETTLE + Duration::from_millis(100));
        assert!(
            store.copy_of(&file, now_id(&file)).is_none(),
            "not made on the request"
        );
        let mut copy = None;
        for _ in 0..100 {
            copy = store.copy_of(&file, now_id(&file));
            if copy.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let copy = copy.expect("made in the background");
        assert_eq!(gunzip(&copy), text);
    }
}
