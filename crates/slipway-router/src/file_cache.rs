//! The open-file cache of a release's static files (nginx's `open_file_cache`): per
//! router worker and per location root of one compiled site, what opening a path
//! beneath the root found (a file with its descriptor and metadata, a folder, nothing),
//! so that a file asked for again is answered without `openat2`, `statx` and `close`.
//!
//! What it keeps of the file path's guarantees, and how:
//! - Paths never leave the root: an entry is only ever made from the answer of
//!   [`files::open_beneath`] (`openat2(RESOLVE_BENEATH)` from the root's descriptor), keyed
//!   by the request path already decoded and checked ([`crate::locations`]); a hit hands
//!   out the descriptor that opening gave, never a path to follow again.
//! - Only slug roots are cached. A slug is read-only and content-addressed, so what a
//!   path names there never changes. A root in a persistent mount is writable by the app
//!   (a file renamed over, a symbolic link swapped in) and an open descriptor would keep
//!   its volume busy (no unmount): mount roots keep opening at each request.
//! - One release's files per request: the cache belongs to the site compiled for one
//!   switch ([`crate::locations::WebSite`]), which a request holds from its routing to its
//!   last byte; a new release gets a new, empty cache.
//! - No descriptor outlives its release: the cache is dropped with the site, once the
//!   route table no longer has it and its last request ended, closing every descriptor
//!   of every worker.
//! - A file's gzipped copy ([`crate::gzip_store`]) is kept with its entry once the store
//!   gave it ([`gzipped_copy`]): it is of the version the entry opened (a slug's file
//!   never changes) and goes with the entry, so it is validated as the file is.
//! - Bounded: an entry is used for [`VALID`] after the opening it came from, then the
//!   path is opened again (and its copy asked of the store again); at most [`MAX_ENTRIES`] per worker and root, and at most
//!   [`MAX_OPEN_FILES`] descriptors in all caches of the process, files' and copies',
//!   and the sealed gzipped bodies of [`crate::gzip_cache`] (beyond, files are served
//!   without caching, and gzipped bodies from memory).

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;

use crate::files::{self, OpenFile, Opened};
use crate::gzip_store::{Copy, GzipStore};

/// How long an entry answers for its path before the path is opened again.
pub(crate) const VALID: Duration = Duration::from_secs(1);

/// The most entries one worker keeps for one root.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// The most descriptors all open-file caches of the process hold at once: far below the
/// descriptor limit `serve` runs with, so client connections always find descriptors.
pub(crate) const MAX_OPEN_FILES: usize = 16 * 1024;

/// Descriptors held by open-file caches now (see [`MAX_OPEN_FILES`]).
static OPEN_FILES: AtomicUsize = AtomicUsize::new(0);

/// The open-file cache of one root of one compiled site: one map per router worker
/// thread (no lock, no sharing between workers).
#[derive(Debug, Default)]
pub(crate) struct OpenFileCache {
    workers: ThreadLocal<RefCell<Entries>>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Box<str>, Entry>,
    /// When expired entries were last removed from a full map.
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    opened: Opened,
    /// When the path was opened.
    at: Instant,
    /// The entry's share of [`OPEN_FILES`], for a file.
    _held: Option<Held>,
}

/// One descriptor counted in [`OPEN_FILES`], uncounted when dropped: a cached file's,
/// its gzipped copy's, or a sealed gzipped body's ([`crate::gzip_cache`]).
#[derive(Debug)]
pub(crate) struct Held;

impl Held {
    /// Count one more descriptor, unless the process-wide bound is reached.
    pub(crate) fn take() -> Option<Held> {
        let before = OPEN_FILES.fetch_add(1, Ordering::Relaxed);
        if before >= MAX_OPEN_FILES {
            OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        OPEN_FILES.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OpenFileCache {
    /// What `rel` (decoded and checked, relative to the root) is beneath the root `dir`:
    /// from this worker's entry if it is younger than [`VALID`], else opened now (and
    /// kept).
    pub(crate) fn open(&self, dir: &OwnedFd, rel: &str) -> Opened {
        let now = Instant::now();
        let mut entries = self.workers.get_or(Default::default).borrow_mut();
        if let Some(entry) = entries.map.get(rel) {
            if now.saturating_duration_since(entry.at) < VALID {
                return entry.opened.clone();
            }
        }
        let mut opened = files::open_beneath(dir, rel);
        if let Opened::File(file) = &mut opened {
            file.kept_gzip = Some(Arc::default());
        }
        entries.keep(rel, &opened, now);
        opened
    }

    /// How many entries this worker (the calling thread) holds.
    #[cfg(test)]
    pub(crate) fn len_here(&self) -> usize {
        self.workers.get().map_or(0, |e| e.borrow().map.len())
    }
}

/// A file's gzipped copy kept with its open-file cache entry (in
/// [`OpenFile::kept_gzip`]): found in the store once, then answered from here, without
/// the store's lock, `open`, `fstat` and `close`, until the entry is opened again.
#[derive(Debug)]
pub(crate) struct KeptCopy {
    copy: Copy,
    /// The copy's descriptor's share of [`OPEN_FILES`].
    _held: Held,
}

/// The gzipped copy of `file` (see [`GzipStore::copy_of`]): the one kept with its
/// open-file cache entry, else the store's, then kept with the entry if it has one and
/// a descriptor is to spare. The entry is of this version of the file for as long as it
/// lives (a slug's file never changes; a mount's has no entry), so its copy is too.
pub(crate) fn gzipped_copy(file: &OpenFile, store: &GzipStore) -> Option<Copy> {
    if let Some(kept) = file.kept_gzip.as_ref().and_then(|slot| slot.get()) {
        return Some(kept.copy.clone());
    }
    let copy = store.copy_of(&file.file, file.id)?;
    if let Some(slot) = &file.kept_gzip {
        if let Some(held) = Held::take() {
            // Another request of this worker may have kept one first: either serves.
            let _ = slot.set(KeptCopy {
                copy: copy.clone(),
                _held: held,
            });
        }
    }
    Some(copy)
}

impl Entries {
    /// Keep what opening `rel` found at `now`, making room if the map is full.
    fn keep(&mut self, rel: &str, opened: &Opened, now: Instant) {
        let held = match opened {
            Opened::File(_) => match Held::take() {
                Some(held) => Some(held),
                None => {
                    // No descriptor to spare: serve uncached, and drop an older entry.
                    self.map.remove(rel);
                    return;
                }
            },
            Opened::Dir | Opened::Missing => None,
        };
        if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(rel) {
            self.make_room(now);
        }
        let entry = Entry {
            opened: opened.clone(),
            at: now,
            _held: held,
        };
        if let Some(old) = self.map.get_mut(rel) {
            *old = entry;
        } else {
            self.map.insert(rel.into(), entry);
        }
    }

    /// Remove the expired entries (at most once per [`VALID`]), and one more entry if
    /// none had expired (the map's order is its hasher's: random per process).
    fn make_room(&mut self, now: Instant) {
        if self
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= VALID)
        {
            self.swept = Some(now);
            self.map
                .retain(|_, e| now.saturating_duration_since(e.at) < VALID);
        }
        if self.map.len() >= MAX_ENTRIES {
            if let Some(key) = self.map.keys().next().cloned() {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_text(opened: &Opened) -> Option<String> {
        use std::os::unix::fs::FileExt;
        match opened {
            Opened::File(f) => {
                let mut buf = vec![0; f.id.size as usize];
                f.file.read_exact_at(&mut buf, 0).ok()?;
                String::from_utf8(buf).ok()
            }
            _ => None,
        }
    }

    #[test]
    fn entries_are_reused_then_opened_again_and_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.txt"), "first").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let root = files::open_dir(dir.path()).expect("open root");
        let cache = OpenFileCache::default();

        let first = cache.open(&root, "a.txt");
        assert_eq!(file_text(&first).as_deref(), Some("first"));
        assert!(matches!(cache.open(&root, "sub"), Opened::Dir));
        assert!(matches!(cache.open(&root, "none"), Opened::Missing));
        assert_eq!(cache.len_here(), 3);

        // Within VALID the same descriptor answers (the path is not opened again).
        std::fs::remove_file(dir.path().join("a.txt")).expect("rm");
        std::fs::write(dir.path().join("a.txt"), "second").expect("write");
        let again = cache.open(&root, "a.txt");
        let (Opened::File(a), Opened::File(b)) = (&first, &again) else {
            panic!("not files");
        };
        assert!(std::sync::Arc::ptr_eq(&a.file, &b.file), "a hit");
        // Another worker has its own entries.
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(cache.len_here(), 0);
                assert_eq!(
                    file_text(&cache.open(&root, "a.txt")).as_deref(),
                    Some("second")
                );
            });
        });
        // After VALID the path is opened again.
        std::thread::sleep(VALID + Duration::from_millis(50));
        assert_eq!(
            file_text(&cache.open(&root, "a.txt")).as_deref(),
            Some("second")
        );

        // Bounded: a flood of distinct paths keeps at most MAX_ENTRIES.
        for i in 0..MAX_ENTRIES + 50 {
            let _ = cache.open(&root, &format!("missing-{i}"));
        }
        assert!(cache.len_here() <= MAX_ENTRIES, "{}", cache.len_here());
    }

    /// The descriptors of this process that name something beneath `dir`.
    fn fds_beneath(dir: &std::path::Path) -> usize {
        let dir = dir.canonicalize().expect("canonical");
        std::fs::read_dir("/proc/self/fd")
            .expect("fds")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&dir))
            .count()
    }

    fn site(app_dir: &std::path::Path, tag: &str, mounts: Vec<crate::SiteMount>) -> crate::Site {
        let mut root = crate::Location::new("/");
        root.root = Some(String::new());
        let mut uploads = crate::Location::new("/uploads");
        uploads.root = Some("uploads".into());
        crate::Site {
            app_dir: app_dir.into(),
            tag: tag.into(),
            locations: vec![root, uploads],
            fastcgi: false,
            no_web_process: false,
            mounts,
        }
    }

    fn served(site: &crate::locations::WebSite, path: &str) -> Option<Vec<u8>> {
        use crate::files::StaticBody;
        use crate::locations::{Ask, Resolved};
        use std::os::unix::fs::FileExt;
        let ask = Ask {
            path,
            readable: true,
            ..Ask::default()
        };
        match site.resolve(&ask) {
            Resolved::Answer(a) if a.status == hyper::StatusCode::OK => match a.body {
                StaticBody::File { file, offset, len } => {
                    let mut buf = vec![0; len as usize];
                    file.read_exact_at(&mut buf, offset).expect("read");
                    Some(buf)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Attack: the app swaps a symbolic link out of the root in place of a file it served
    /// before (a mount is writable by the app; a slug is not, but the cache must not
    /// rely on it). The link is never followed: not from a cached entry, not after it
    /// expired; the legitimate files keep being served.
    #[test]
    fn a_symlink_swapped_in_after_a_request_is_not_followed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let app = tmp.path().join("app");
        let volume_files = tmp.path().join("volume/files");
        std::fs::create_dir_all(app.join("uploads")).expect("mkdir");
        std::fs::create_dir_all(volume_files.join("uploads")).expect("mkdir");
        std::fs::write(tmp.path().join("secret.txt"), "secret").expect("write");
        std::fs::write(volume_files.join("other-secret.txt"), "secret").expect("write");
        std::fs::write(app.join("page.txt"), "page").expect("write");
        std::fs::write(volume_files.join("uploads/pic.txt"), "picture").expect("write");
        std::fs::write(volume_files.join("uploads/keep.txt"), "kept").expect("write");
        let mounts = vec![crate::SiteMount {
            path: "uploads".into(),
            volume_files: volume_files.clone(),
            folder: "uploads".into(),
        }];
        let site = crate::locations::WebSite::compile("app", &site(&app, "t1", mounts), true)
            .expect("site");
        assert_eq!(
            served(&site, "/uploads/pic.txt").as_deref(),
            Some(&b"picture"[..])
        );
        assert_eq!(served(&site, "/page.txt").as_deref(), Some(&b"page"[..]));

        let swap = |file: &std::path::Path, target: &str| {
            std::fs::remove_file(file).expect("rm");
            std::os::unix::fs::symlink(target, file).expect("symlink");
        };
        swap(&volume_files.join("uploads/pic.txt"), "../other-secret.txt");
        swap(&app.join("page.txt"), "../secret.txt");
        let secret = Some(b"secret".to_vec());
        for round in ["at once", "after the cache's validity"] {
            assert_ne!(served(&site, "/uploads/pic.txt"), secret, "mount, {round}");
            assert_ne!(served(&site, "/page.txt"), secret, "slug, {round}");
            assert_eq!(
                served(&site, "/uploads/keep.txt").as_deref(),
                Some(&b"kept"[..]),
                "{round}"
            );
            std::thread::sleep(VALID + Duration::from_millis(50));
        }
        // A mount is read at each request: the swapped link answers nothing at once.
        assert_eq!(served(&site, "/uploads/pic.txt"), None);
        assert_eq!(served(&site, "/page.txt"), None, "expired: opened again");
    }

    /// A deploy and the retire of the old release close every descriptor the old
    /// release's cache held, on every worker; the new release serves its own files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retired_release_leaves_no_descriptor_open() {
        use crate::test_client::ask;
        use crate::{EnvRoutes, Router, RouterConfig, Upstream};
        let old = tempfile::tempdir().expect("temp dir");
        let new = tempfile::tempdir().expect("temp dir");
        for (dir, text) in [(&old, "old"), (&new, "new")] {
            for name in ["a.txt", "b.txt", "c.css"] {
                std::fs::write(dir.path().join(name), text).expect("write");
            }
        }
        let routes = |release: &str, dir: &std::path::Path| {
            let mut routes = EnvRoutes::single(
                vec!["files.test".into()],
                Upstream {
                    release: release.into(),
                    netns: None,
                    port: 9,
                    socket: None,
                },
            );
            routes.sites = vec![("app".into(), site(dir, release, Vec::new()))];
            routes
        };
        let config = RouterConfig {
            workers: Some(2),
            ..RouterConfig::default()
        };
        let router = Router::new(config);
        let baseline = fds_beneath(old.path());
        assert_eq!(baseline, 0);
        router
            .switch("p/main", routes("r1", old.path()))
            .expect("switch");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn({
            let router = std::sync::Arc::clone(&router);
            async move {
                router
                    .serve(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await
            }
        });
        let get_all = |want: &'static str| async move {
            // Several connections: the workers take them in turn, so each caches.
            for _ in 0..4 {
                let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let mut buf = Vec::new();
                for name in ["a.txt", "b.txt", "c.css", "a.txt"] {
                    let req = format!("GET /{name} HTTP/1.1\r\nHost: files.test\r\n\r\n");
                    let answer = ask(&mut conn, &mut buf, &req, false).await;
                    assert_eq!(answer.status, 200);
                    assert_eq!(answer.body, want.as_bytes(), "{name}");
                }
            }
        };
        get_all("old").await;
        // The cache holds the old release's files open (and its root).
        assert!(fds_beneath(old.path()) >= 4, "{}", fds_beneath(old.path()));

        let previous = router
            .switch("p/main", routes("r2", new.path()))
            .expect("switch")
            .expect("a previous release");
        get_all("new").await;
        assert!(previous.drained(Duration::from_secs(5)).await);
        drop(previous);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fds_beneath(old.path()) > baseline && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(fds_beneath(old.path()), baseline, "descriptors left open");
        assert!(fds_beneath(new.path()) >= 4);
        let _ = stop_tx.send(());
        serving.await.expect("serve task").expect("serve");
        drop(router);
        assert_eq!(fds_beneath(new.path()), 0, "closed with the router");
    }
}
