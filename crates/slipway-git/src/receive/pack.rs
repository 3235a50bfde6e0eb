//! Receiving the pack: streamed from the async input into gix's pack indexer on a blocking
//! thread, written into a quarantine directory and moved into `objects/pack` only when complete.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::Repo;

/// Size of the chunks read from the client.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the async reader and the indexer.
const CHANNEL_DEPTH: usize = 16;

/// What the stored pack contained.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackStats {
    /// Objects in the stored pack (thin-pack bases included).
    pub objects: u32,
    /// Bytes read from the client for the pack.
    pub bytes: u64,
}

/// Why a pack was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The client closed the stream before the pack was complete.
    #[error("the pack is truncated (the client stopped sending)")]
    Truncated,
    /// Reading from the client failed.
    #[error("cannot read the pack from the client: {0}")]
    Read(std::io::Error),
    /// The pack is larger than allowed.
    #[error("the pack exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// An object of the pack (or a delta base or result) is larger than allowed: a big file or
    /// a delta or zlib bomb.
    #[error("an object of the pack expands beyond the limit of {0} bytes")]
    ObjectTooLarge(usize),
    /// The pack is invalid (corrupt data, missing delta bases, ...) or could not be stored.
    #[error("{0}")]
    Invalid(String),
}

/// Sets the interrupt flag when dropped, so an abandoned indexer stops early.
struct InterruptOnDrop(Arc<AtomicBool>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A blocking reader over chunks sent from the async side; end of stream when the sender is gone.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A pack indexed into a quarantine object directory (`objects/incoming-slipway-*`, with the
/// repository's objects as its alternate), not yet part of the repository.
///
/// [`StoredPack::repo`] sees the quarantined objects and the repository's; [`StoredPack::install`]
/// moves the pack into `objects/pack`. Dropping it without installing removes the quarantine.
pub struct StoredPack {
    quarantine: Quarantine,
    data: Option<PathBuf>,
    index: Option<PathBuf>,
    /// What the pack contained.
    pub stats: PackStats,
}

impl std::fmt::Debug for StoredPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPack")
            .field("quarantine", &self.quarantine.0)
            .field("stats", &self.stats)
            .finish()
    }
}

impl StoredPack {
    /// The pack index, if the pack held any object.
    pub fn index_path(&self) -> Option<&Path> {
        self.index.as_deref()
    }

    /// A handle on `repo` whose object database is the quarantine (with the repository's objects
    /// as alternate): sees the received objects before they are installed.
    pub fn repo(&self, repo: &Repo) -> Result<gix::Repository, String> {
        let mut handle = repo.gix();
        let odb = gix::odb::at(&self.quarantine.0, gix::hash::Kind::Sha1)
            .map_err(|e| format!("cannot open the quarantine: {e}"))?;
        handle.objects = odb.into();
        Ok(handle)
    }

    /// Moves the pack into the repository's `objects/pack` (the quarantine is then removed).
    pub fn install(self, repo: &Repo) -> Result<(), String> {
        let pack_dir = repo.path().join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir)
            .map_err(|e| format!("cannot create {}: {e}", pack_dir.display()))?;
        if let (Some(data), Some(index)) = (&self.data, &self.index) {
            // The pack before its index: a reader finding the index always finds the pack.
            install(data, &pack_dir)?;
            install(index, &pack_dir)?;
            sync_dir(&pack_dir);
        }
        Ok(())
    }
}

/// Reads the pack from `input` and indexes it into a quarantine (thin packs completed from the
/// existing objects). Nothing is in the repository until [`StoredPack::install`].
pub async fn receive<R: AsyncRead + Unpin>(
    repo: &Repo,
    input: &mut R,
    max_bytes: u64,
    max_object_bytes: usize,
) -> Result<StoredPack, PackError> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let _interrupt_guard = InterruptOnDrop(interrupt.clone());
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let task = {
        let repo = repo.clone();
        let interrupt = interrupt.clone();
        tokio::task::spawn_blocking(move || {
            store_pack(
                &repo,
                ChannelReader {
                    rx,
                    current: Bytes::new(),
                },
                &interrupt,
                max_object_bytes,
            )
        })
    };
    tokio::pin!(task);

    let mut tx = Some(tx);
    let mut buf = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    let mut stop: Option<PackError> = None;
    let mut eof = false;
    let result = loop {
        tokio::select! {
            biased;
            joined = &mut task => break joined,
            read = input.read(&mut buf), if tx.is_some() => match read {
                Ok(0) => {
                    // The end of the input: fine after a complete pack (a client may close its
                    // side right after it); the indexer tells whether the pack was complete.
                    tx = None;
                    eof = true;
                }
                Ok(n) => {
                    total += n as u64;
                    if total > max_bytes {
                        // Ending the indexer's input stops it (interrupting it while it reads
                        // makes gix panic).
                        tx = None;
                        stop = Some(PackError::TooLarge(max_bytes));
                    } else if let Some(sender) = &tx {
                        // Fails only when the indexer is done; its result follows.
                        let _ = sender.send(Bytes::copy_from_slice(&buf[..n])).await;
                    }
                }
                Err(e) => {
                    tx = None;
                    stop = Some(PackError::Read(e));
                }
            },
        }
    };
    match result {
        Ok(Ok(mut stored)) => {
            stored.stats.bytes = total;
            Ok(stored)
        }
        Ok(Err(message)) => Err(match stop {
            // The indexer failed because the input was cut or too large: report the cause.
            Some(cause) => cause,
            None if eof && looks_truncated(&message) => PackError::Truncated,
            None if message.contains("AllocationLimit")
                || message.contains("too large to fit in memory") =>
            {
                PackError::ObjectTooLarge(max_object_bytes)
            }
            None => PackError::Invalid(readable(&message)),
        }),
        Err(join) => Err(match stop {
            Some(cause) => cause,
            None => PackError::Invalid(format!("the pack indexer failed: {join}")),
        }),
    }
}

/// Whether an indexer error means its input ended early.
fn looks_truncated(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("fill whole buffer")
        || m.contains("end of file")
        || m.contains("unexpectedeof")
        || m.contains("pack is incomplete")
}

/// The readable part of a gix error rendered as `Message { message: "...", class: ... }`.
fn readable(text: &str) -> String {
    if let Some(start) = text.find("message: \"") {
        let rest = &text[start + "message: \"".len()..];
        if let Some(end) = rest.find("\", class") {
            return rest[..end].replace("\\\"", "\"");
        }
    }
    text.to_string()
}

/// A directory removed (with its contents) when dropped.
struct Quarantine(PathBuf);

impl Drop for Quarantine {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), "cannot remove the pack quarantine: {e}");
            }
        }
    }
}

/// A unique quarantine directory name inside `objects/`.
fn quarantine_path(objects: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    objects.join(format!(
        "incoming-slipway-{}-{nanos}-{n}",
        std::process::id()
    ))
}

/// Indexes the pack from `input` into a new quarantine directory. Runs on a blocking thread.
fn store_pack(
    repo: &Repo,
    input: ChannelReader,
    interrupt: &AtomicBool,
    max_object_bytes: usize,
) -> Result<StoredPack, String> {
    let objects_dir = repo.path().join("objects");
    let quarantine = Quarantine(quarantine_path(&objects_dir));
    let q_pack = quarantine.0.join("pack");
    let q_info = quarantine.0.join("info");
    for dir in [&q_pack, &q_info] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let objects_abs = objects_dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", objects_dir.display()))?;
    let alternates = q_info.join("alternates");
    std::fs::write(&alternates, format!("{}\n", objects_abs.display()))
        .map_err(|e| format!("cannot write {}: {e}", alternates.display()))?;

    let gix_repo = repo.gix();
    let mut reader = std::io::BufReader::with_capacity(CHUNK, input);
    let options = gix::odb::pack::bundle::write::Options {
        thread_limit: None,
        iteration_mode: gix::odb::pack::data::input::Mode::Verify,
        index_version: gix::odb::pack::index::Version::default(),
        alloc_limit_bytes: Some(max_object_bytes),
        compression: Default::default(),
    };
    let outcome = gix::odb::pack::Bundle::write_to_directory(
        &mut reader,
        Some(&q_pack),
        &mut gix::progress::Discard,
        interrupt,
        Some(gix_repo.objects.clone()),
        gix::hash::Kind::Sha1,
        options,
    )
    .map_err(|e| one_line(&format!("{e:#}")))?;
    if let Some(keep) = &outcome.keep_path {
        let _ = std::fs::remove_file(keep);
    }
    Ok(StoredPack {
        quarantine,
        data: outcome.data_path,
        index: outcome.index_path,
        stats: PackStats {
            objects: outcome.index.num_objects,
            bytes: 0,
        },
    })
}

/// Moves a finished pack file into `pack_dir` (after syncing it), unless it is already there.
fn install(file: &Path, pack_dir: &Path) -> Result<(), String> {
    let Some(name) = file.file_name() else {
        return Err(format!("unexpected pack path {}", file.display()));
    };
    let target = pack_dir.join(name);
    if target.exists() {
        return Ok(());
    }
    if let Ok(f) = std::fs::File::open(file) {
        let _ = f.sync_all();
    }
    std::fs::rename(file, &target).map_err(|e| format!("cannot move the pack into place: {e}"))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Makes an error message fit on one report-status line.
pub fn one_line(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
