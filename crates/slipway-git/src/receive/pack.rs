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

/// Reads the pack from `input` and stores it in `repo` (thin packs completed from the existing
/// objects). Nothing is left in the repository unless the whole pack was valid.
pub async fn receive<R: AsyncRead + Unpin>(
    repo: &Repo,
    input: &mut R,
    max_bytes: u64,
    max_object_bytes: usize,
) -> Result<PackStats, PackError> {
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
    let result = loop {
        tokio::select! {
            biased;
            joined = &mut task => break joined,
            read = input.read(&mut buf), if tx.is_some() => match read {
                Ok(0) => {
                    tx = None;
                    stop = Some(PackError::Truncated);
                }
                Ok(n) => {
                    total += n as u64;
                    if total > max_bytes {
                        tx = None;
                        interrupt.store(true, Ordering::Relaxed);
                        stop = Some(PackError::TooLarge(max_bytes));
                    } else if let Some(sender) = &tx {
                        // Fails only when the indexer is done; its result follows.
                        let _ = sender.send(Bytes::copy_from_slice(&buf[..n])).await;
                    }
                }
                Err(e) => {
                    tx = None;
                    interrupt.store(true, Ordering::Relaxed);
                    stop = Some(PackError::Read(e));
                }
            },
        }
    };
    match result {
        Ok(Ok(objects)) => Ok(PackStats {
            objects,
            bytes: total,
        }),
        Ok(Err(message)) => Err(match stop {
            // The indexer failed because the input ended or was cut: report the cause.
            Some(cause) => cause,
            None => PackError::Invalid(message),
        }),
        Err(join) => Err(PackError::Invalid(format!(
            "the pack indexer failed: {join}"
        ))),
    }
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

/// Indexes the pack from `input` into a quarantine directory, then moves the `.pack` and `.idx`
/// into `objects/pack`. Returns the number of objects. Runs on a blocking thread.
fn store_pack(
    repo: &Repo,
    input: ChannelReader,
    interrupt: &AtomicBool,
    max_object_bytes: usize,
) -> Result<u32, String> {
    let objects_dir = repo.path().join("objects");
    let pack_dir = objects_dir.join("pack");
    let quarantine = Quarantine(quarantine_path(&objects_dir));
    std::fs::create_dir_all(&quarantine.0)
        .map_err(|e| format!("cannot create {}: {e}", quarantine.0.display()))?;
    std::fs::create_dir_all(&pack_dir)
        .map_err(|e| format!("cannot create {}: {e}", pack_dir.display()))?;

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
        Some(&quarantine.0),
        &mut gix::progress::Discard,
        interrupt,
        Some(gix_repo.objects.clone()),
        gix::hash::Kind::Sha1,
        options,
    )
    .map_err(|e| one_line(&format!("{e:#}")))?;
    let objects = outcome.index.num_objects;
    if let (Some(data), Some(index)) = (outcome.data_path, outcome.index_path) {
        install(&data, &pack_dir)?;
        install(&index, &pack_dir)?;
        sync_dir(&pack_dir);
    }
    Ok(objects)
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
