//! Packing a folder into a deterministic tar+zstd slug layer.
//!
//! Layer format (what makes the bytes depend on the folder's content only):
//! - every entry lives under [`LAYER_ROOT`] (`app/`): the layer is the image's `/app`, so
//!   `umoci unpack` yields `rootfs/app/...`. The first entry is the `app` directory itself.
//! - entries sorted by path (component-wise, byte order), directories included (empty ones too);
//! - GNU tar headers, long names through GNU long-name records, no PAX records, no xattrs;
//! - mtime [`SLUG_MTIME`] everywhere, uid/gid 0, empty uname/gname;
//! - modes normalized: directories 0755, files 0755 if any exec bit is set else 0644,
//!   symlinks 0777 (git only records these two file modes, so umask never leaks in);
//! - symlinks are kept as symlinks, target unchanged. Absolute targets are allowed (they
//!   name a path inside the container, e.g. `cache -> /tmp/cache`); relative targets that
//!   climb out of the app folder are refused (they would point into the build host's tree);
//! - hard-linked files are stored as separate regular files; fifos, sockets and devices are refused;
//! - zstd as a series of independent frames, one per MiB of tar stream (RFC 8878 allows
//!   any number of frames; zstd, skopeo and containerd read them as one stream, as
//!   `pzstd` and zstd:chunked layers rely on). Frames compress in parallel, and their
//!   bytes do not depend on the number of threads (a test checks it). Each frame states
//!   its content size and carries no XXH64 checksum: the layer's sha256 digest is checked
//!   on every read and `diff_id` covers the tar, so it would check the same bytes a third
//!   time.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zstd::stream::raw::CParameter;

use crate::digest::{Digest, HashWriter};
use crate::error::{IoContext, SlugError};

/// The folder every layer entry lives under; the image's `WorkingDir` is `/app`.
pub const LAYER_ROOT: &str = "app";
/// The modification time stored for every entry: 1980-01-01T00:00:00Z (the earliest
/// time ZIP can hold, so tools that re-zip app files never choke on it).
pub const SLUG_MTIME: u64 = 315_532_800;
/// The default zstd level.
pub const DEFAULT_LEVEL: i32 = 3;
/// The default largest compressed slug a build may produce: 2 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 2 << 30;
/// Most compressing threads used for one slug.
const MAX_WORKERS: u32 = 8;
/// Size of the chunks of tar stream handed from the reading thread to the hashing and
/// compressing threads: each becomes one zstd frame, so this is part of the slug format.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between two threads of the pipeline.
const QUEUE: usize = 4;
/// Batches of entries found by the walk and not yet packed, at most.
const WALK_QUEUE: usize = 16;
/// Entries per batch from the walk.
const WALK_BATCH: usize = 256;
/// How many of the biggest entries a [`SlugError::TooBig`] names.
const BIGGEST_SHOWN: usize = 5;

/// A packed slug: digest and size of the compressed layer, and `diff_id` (sha256 of the uncompressed tar).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlugInfo {
    /// Digest of the compressed layer: the blob's name in the archive.
    pub digest: Digest,
    /// Size of the compressed layer in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

/// How to pack: zstd level, size limit, cancellation.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// zstd level (1 to 22; [`DEFAULT_LEVEL`] is 3).
    pub level: i32,
    /// Largest compressed size accepted; bigger fails with [`SlugError::TooBig`] (which says
    /// how big the slug is and what is biggest in it). `None`: no limit.
    pub max_size: Option<u64>,
    /// Set it to stop packing as soon as possible ([`SlugError::Cancelled`]).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl PackOptions {
    /// Level `level`, no limit, not cancellable.
    pub fn level(level: i32) -> PackOptions {
        PackOptions {
            level,
            max_size: None,
            cancel: None,
        }
    }
}

impl Default for PackOptions {
    fn default() -> PackOptions {
        PackOptions::level(DEFAULT_LEVEL)
    }
}

/// Pack `dir` into `out` deterministically: same content, same bytes (see the module docs).
/// `level` is the zstd level ([`DEFAULT_LEVEL`] is 3).
pub fn pack_dir(dir: &Path, out: impl Write + Send, level: i32) -> Result<SlugInfo, SlugError> {
    pack_dir_with(dir, out, &PackOptions::level(level))
}

/// [`pack_dir`] with a size limit and a cancel flag. When the slug is over the limit, what
/// was written to `out` is garbage (the compression goes on without writing, to tell the
/// exact size): the caller drops it.
pub fn pack_dir_with(
    dir: &Path,
    out: impl Write + Send,
    options: &PackOptions,
) -> Result<SlugInfo, SlugError> {
    pack_dir_with_workers(dir, out, options, default_workers())
}

fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| (n.get() as u32).min(MAX_WORKERS))
        .unwrap_or(1)
}

/// One thing found in the folder to pack.
enum Source {
    Dir,
    /// A regular file; `exec` and `size` are filled in when it is opened to be packed.
    File {
        exec: bool,
        size: u64,
    },
    Symlink(PathBuf),
}

/// A chunk of the tar stream: `data[..len]`. Buffers go round: reader -> hasher ->
/// compressor -> back to the reader, so the steady state allocates nothing.
struct Chunk {
    data: Vec<u8>,
    len: usize,
}

/// [`pack_dir_with`] with an explicit number of compressing threads (at least one).
///
/// A pipeline of threads: this one writes the tar stream in 1 MiB chunks (file contents
/// read straight into the chunk) as a walking thread lists the folder; a hashing thread
/// hashes the tar (`diff_id`) and numbers the chunks; `workers` threads compress one chunk
/// each into a zstd frame; a writing thread puts the frames back in order, hashes them (the
/// layer digest) and writes them. Buffers go round, so the steady state allocates nothing.
/// The bytes do not depend on `workers`.
pub(crate) fn pack_dir_with_workers(
    dir: &Path,
    out: impl Write + Send,
    options: &PackOptions,
    workers: u32,
) -> Result<SlugInfo, SlugError> {
    let level = options.level;
    check_level(level)?;
    let meta = fs::metadata(dir).ctx(dir)?;
    if !meta.is_dir() {
        return Err(SlugError::Unsupported {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    // What was packed, for the message of a slug over the limit.
    let mut entries: Vec<(PathBuf, Source)> = Vec::new();
    let cancelled = || {
        options
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };

    let (to_hash, hash_rx) = sync_channel::<Chunk>(QUEUE);
    let (to_zstd, zstd_rx) = sync_channel::<(u64, Chunk)>(QUEUE);
    // Owned by the workers only: when the last one stops, the hashing stage's sends fail.
    let jobs = Arc::new(Mutex::new(zstd_rx));
    let (done, written) = sync_channel::<io::Result<Frame>>(QUEUE);
    let frames: FramePool = Mutex::new(Vec::new());
    let (recycle, pool) = channel::<Chunk>();
    let max_size = options.max_size;

    std::thread::scope(|s| {
        // The walk runs beside the packing: the first file is packed while the folder is
        // still being listed. Entries arrive in layer order.
        // Entries travel in batches: one per entry would wake this thread (and the walker,
        // once the queue is full) for every file, two futex calls each.
        let (found, to_pack) = sync_channel::<Vec<(PathBuf, Source)>>(WALK_QUEUE);
        let walker = s.spawn(move || {
            let mut batch = Vec::with_capacity(WALK_BATCH);
            walk(dir, Path::new(""), &mut |entry| {
                batch.push(entry);
                if batch.len() < WALK_BATCH {
                    return true;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(WALK_BATCH));
                found.send(full).is_ok()
            })?;
            if !batch.is_empty() {
                let _ = found.send(batch);
            }
            Ok(())
        });
        let hasher = s.spawn(move || hash_stage(hash_rx, to_zstd));
        let frames = &frames;
        let compressors: Vec<_> = (0..workers.max(1))
            .map(|_| {
                let (jobs, done, recycle) = (jobs.clone(), done.clone(), recycle.clone());
                s.spawn(move || compress_worker(&jobs, done, recycle, frames, level))
            })
            .collect();
        drop((jobs, done, recycle));
        let writer = s.spawn(move || write_stage(written, frames, out, max_size));

        let produced = (|| -> Result<(), SlugError> {
            let mut sink = ChunkSink {
                chunk: None,
                next: to_hash,
                pool,
            };
            let mut tar = tar::Builder::new(&mut sink);
            append_dir(&mut tar, Path::new(LAYER_ROOT)).ctx(dir)?;
            for (found, mut src) in to_pack.into_iter().flatten() {
                let rel: &Path = &found;
                if cancelled() {
                    return Err(SlugError::Cancelled);
                }
                let full = dir.join(rel);
                let in_layer = Path::new(LAYER_ROOT).join(rel);
                match &mut src {
                    Source::Dir => append_dir(&mut tar, &in_layer).ctx(&full)?,
                    Source::Symlink(target) => {
                        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                        tar.append_link(&mut h, &in_layer, &*target).ctx(&full)?;
                    }
                    Source::File { exec, size } => {
                        // The walk read no metadata (the directory entry's type is enough
                        // there): the open file says its size and mode, one fstat instead of
                        // a path lookup. No symlink is followed if the file was swapped.
                        let mut file = fs::OpenOptions::new()
                            .read(true)
                            .custom_flags(libc::O_NOFOLLOW)
                            .open(&full)
                            .ctx(&full)?;
                        let meta = file.metadata().ctx(&full)?;
                        if !meta.is_file() {
                            return Err(SlugError::Unsupported {
                                path: full,
                                reason: "changed from a regular file while being packed".into(),
                            });
                        }
                        (*exec, *size) = (meta.permissions().mode() & 0o111 != 0, meta.len());
                        let mode = if *exec { 0o755 } else { 0o644 };
                        let mut h = header(tar::EntryType::Regular, mode, *size);
                        // The header (and a long-name record if needed) through the builder,
                        // then the content straight into the chunks, then the padding.
                        tar.append_data(&mut h, &in_layer, io::empty()).ctx(&full)?;
                        tar.get_mut().copy_file(&mut file, *size).ctx(&full)?;
                    }
                }
                entries.push((found, src));
            }
            // The walk ended: completely, or with an error that is the packing's.
            match walker.join() {
                Ok(walked) => walked?,
                Err(_) => {
                    return Err(SlugError::Io {
                        path: dir.to_path_buf(),
                        source: io::Error::other("the slug walking thread panicked"),
                    })
                }
            }
            tar.into_inner().ctx(dir)?;
            sink.finish().ctx(dir)
        })();
        // On failure the senders are gone: the other stages stop; their errors (a full disk,
        // say) explain a broken pipe here better than the pipe does.
        let diff_id = hasher.join();
        // Every worker joined (a panicked one left unjoined would panic the scope).
        let workers_ok = compressors
            .into_iter()
            .map(|w| w.join().is_ok())
            .fold(true, |all, ok| all & ok);
        let compressed = writer.join();
        let (diff_id, compressed) = match (diff_id, compressed) {
            (Ok(d), Ok(c)) if workers_ok => (d, c),
            _ => {
                return Err(SlugError::Io {
                    path: dir.to_path_buf(),
                    source: io::Error::other("a slug packing thread panicked"),
                })
            }
        };
        let compressed = match (produced, compressed) {
            (Err(SlugError::Io { source, .. }), Err(e))
                if source.kind() == io::ErrorKind::BrokenPipe =>
            {
                return Err(e.into_slug_error(dir))
            }
            (Err(e), _) => return Err(e),
            (Ok(()), Err(e)) => return Err(e.into_slug_error(dir)),
            (Ok(()), Ok(c)) => c,
        };
        let diff_id = diff_id.ok_or_else(|| SlugError::Io {
            path: dir.to_path_buf(),
            source: io::Error::other("the tar hashing stage stopped early"),
        })?;
        if let Some(limit) = max_size.filter(|l| compressed.size > *l) {
            return Err(too_big(compressed.size, limit, &entries));
        }
        tracing::debug!(dir = %dir.display(), digest = %compressed.digest, size = compressed.size, "packed slug");
        Ok(SlugInfo {
            digest: compressed.digest,
            size: compressed.size,
            diff_id,
        })
    })
}

/// Hash the tar stream, number the chunks and hand them to the compressing workers. `None`
/// if the workers stopped early.
fn hash_stage(rx: Receiver<Chunk>, next: SyncSender<(u64, Chunk)>) -> Option<Digest> {
    let mut h = Sha256::new();
    for (seq, chunk) in (0u64..).zip(rx) {
        h.update(&chunk.data[..chunk.len]);
        if next.send((seq, chunk)).is_err() {
            return None;
        }
    }
    Some(Digest::from_hasher(h))
}

/// One chunk of tar stream compressed: a complete zstd frame, and where it goes in the layer.
struct Frame {
    seq: u64,
    bytes: Vec<u8>,
}

/// Compressed-frame buffers going round between the workers and the writer.
type FramePool = Mutex<Vec<Vec<u8>>>;

/// A compressing worker: takes numbered chunks, compresses each into a frame of its own,
/// gives the chunk back to the reader and the frame to the writer.
fn compress_worker(
    jobs: &Mutex<Receiver<(u64, Chunk)>>,
    done: SyncSender<io::Result<Frame>>,
    recycle: Sender<Chunk>,
    frames: &FramePool,
    level: i32,
) {
    let mut zstd = match frame_compressor(level) {
        Ok(z) => z,
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    loop {
        // The lock is held only while waiting for the next chunk, not while compressing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, chunk)) = job else { return };
        let mut bytes = frames
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        bytes.clear();
        bytes.reserve(zstd::zstd_safe::compress_bound(chunk.len));
        let frame = zstd
            .compress_to_buffer(&chunk.data[..chunk.len], &mut bytes)
            .map(|_| Frame { seq, bytes });
        let _ = recycle.send(chunk);
        let failed = frame.is_err();
        if done.send(frame).is_err() || failed {
            return;
        }
    }
}

/// The zstd context of one worker: `level`, no frame checksum (see the module docs).
fn frame_compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut z = zstd::bulk::Compressor::new(level)?;
    z.set_parameter(CParameter::ChecksumFlag(false))?;
    z.set_parameter(CParameter::ContentSizeFlag(true))?;
    Ok(z)
}

/// What the compressing stage made.
struct Compressed {
    digest: Digest,
    size: u64,
}

/// A failure of the compressing stage, with the file it was writing when it has one.
struct StageError(io::Error);

impl StageError {
    fn into_slug_error(self, dir: &Path) -> SlugError {
        SlugError::Io {
            path: dir.to_path_buf(),
            source: self.0,
        }
    }
}

/// Write the frames in layer order (workers finish out of order), hashing them: the
/// layer's digest and size.
fn write_stage(
    rx: Receiver<io::Result<Frame>>,
    frames: &FramePool,
    out: impl Write,
    max_size: Option<u64>,
) -> Result<Compressed, StageError> {
    let limited = LimitWriter {
        inner: BufWriter::with_capacity(256 * 1024, out),
        limit: max_size.unwrap_or(u64::MAX),
        written: 0,
    };
    let mut hashed = HashWriter::new(limited);
    let mut next = 0u64;
    let mut early: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for frame in rx {
        let frame = frame.map_err(StageError)?;
        early.insert(frame.seq, frame.bytes);
        while let Some(bytes) = early.remove(&next) {
            hashed.write_all(&bytes).map_err(StageError)?;
            if let Ok(mut pool) = frames.lock() {
                pool.push(bytes);
            }
            next += 1;
        }
    }
    if !early.is_empty() {
        return Err(StageError(io::Error::other(format!(
            "slug frame {next} never came from the compressing threads"
        ))));
    }
    let (mut limited, digest, size) = hashed.finish();
    limited.flush().map_err(StageError)?;
    Ok(Compressed { digest, size })
}

/// Passes bytes on until `limit` is crossed, then only counts them (so an oversized slug's
/// exact size is known without writing it all).
struct LimitWriter<W: Write> {
    inner: W,
    limit: u64,
    written: u64,
}

impl<W: Write> Write for LimitWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written.saturating_add(buf.len() as u64) <= self.limit {
            let n = self.inner.write(buf)?;
            self.written += n as u64;
            return Ok(n);
        }
        self.written = self.written.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.written <= self.limit {
            self.inner.flush()
        } else {
            Ok(())
        }
    }
}

/// The tar stream's writer: fills 1 MiB chunks and hands them to the hashing stage.
struct ChunkSink {
    chunk: Option<Chunk>,
    next: SyncSender<Chunk>,
    pool: Receiver<Chunk>,
}

impl ChunkSink {
    /// The chunk being filled (a recycled one if any came back, else a new one).
    fn current(&mut self) -> &mut Chunk {
        let pool = &self.pool;
        self.chunk.get_or_insert_with(|| match pool.try_recv() {
            Ok(mut c) => {
                c.len = 0;
                c
            }
            Err(_) => Chunk {
                data: vec![0; CHUNK],
                len: 0,
            },
        })
    }

    fn send_full(&mut self) -> io::Result<()> {
        if self.chunk.as_ref().is_some_and(|c| c.len == CHUNK) {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        if let Some(c) = self.chunk.take() {
            if c.len > 0 {
                self.next.send(c).map_err(|_| {
                    io::Error::new(io::ErrorKind::BrokenPipe, "slug compression stopped")
                })?;
            }
        }
        Ok(())
    }

    /// Exactly `size` bytes of `file` then the tar padding. A file that shrinks while being
    /// packed is an error (its header already promised the size).
    fn copy_file(&mut self, file: &mut File, size: u64) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            self.send_full()?;
            let c = self.current();
            let room = (CHUNK - c.len).min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut c.data[c.len..c.len + room]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being packed",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            c.len += n;
            left -= n as u64;
        }
        let pad = (512 - (size % 512)) % 512;
        self.write_all(&[0u8; 512][..pad as usize])
    }

    /// Send what is left.
    fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.send_full()?;
        let c = self.current();
        let n = (CHUNK - c.len).min(buf.len());
        c.data[c.len..c.len + n].copy_from_slice(&buf[..n]);
        c.len += n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error for a slug over the limit: its size, and the biggest top-level entries and files.
fn too_big(size: u64, limit: u64, entries: &[(PathBuf, Source)]) -> SlugError {
    let mut top: HashMap<PathBuf, (u64, bool)> = HashMap::new();
    let mut files: Vec<(String, u64)> = Vec::new();
    let mut total = 0u64;
    for (rel, src) in entries {
        let first = rel
            .components()
            .next()
            .map(|c| PathBuf::from(c.as_os_str()));
        let Some(first) = first else { continue };
        let is_dir_entry = rel.components().count() > 1 || matches!(src, Source::Dir);
        let e = top.entry(first).or_insert((0, false));
        e.1 |= is_dir_entry;
        if let Source::File { size, .. } = src {
            e.0 += size;
            total += size;
            files.push((rel.display().to_string(), *size));
        }
    }
    let mut top: Vec<(String, u64)> = top
        .into_iter()
        .map(|(p, (n, dir))| (format!("{}{}", p.display(), if dir { "/" } else { "" }), n))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(BIGGEST_SHOWN);
    files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    files.truncate(BIGGEST_SHOWN);
    SlugError::TooBig {
        size,
        limit,
        uncompressed: total,
        biggest: top,
        biggest_files: files,
    }
}

/// A size as people read it: `1.50 GiB`, `12.0 MiB`, `800 B`.
pub fn human_size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K {
        format!("{bytes} B")
    } else if b < K * K {
        format!("{:.1} KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MiB", b / K / K)
    } else {
        format!("{:.2} GiB", b / K / K / K)
    }
}

/// Accept the levels 1 to zstd's maximum (22).
pub(crate) fn check_level(level: i32) -> Result<(), SlugError> {
    let max = *zstd::compression_level_range().end();
    if !(1..=max).contains(&level) {
        return Err(SlugError::InvalidLevel { level, min: 1, max });
    }
    Ok(())
}

/// A header with everything host-specific zeroed.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(SLUG_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, io::empty())
}

/// Collect everything under `root/rel`, sorted: a depth-first walk over sorted names
/// yields exactly the component-wise path order.
/// List `root/rel` recursively in layer order (each folder's names sorted, a folder before
/// its content), handing each entry to `found`; stops early (without error) when `found`
/// returns false.
fn walk(
    root: &Path,
    rel: &Path,
    found: &mut dyn FnMut((PathBuf, Source)) -> bool,
) -> Result<(), SlugError> {
    let here = root.join(rel);
    let mut children = Vec::new();
    for entry in fs::read_dir(&here).ctx(&here)? {
        let entry = entry.ctx(&here)?;
        // The type comes with the directory entry (d_type): no stat per file here.
        let ft = entry.file_type().ctx(&entry.path())?;
        children.push((entry.file_name(), ft));
    }
    children.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ft) in children {
        let rel = rel.join(&name);
        if ft.is_dir() {
            if !found((rel.clone(), Source::Dir)) {
                return Ok(());
            }
            walk(root, &rel, found)?;
        } else if ft.is_file() {
            // Mode and size are read from the open file when it is packed.
            if !found((
                rel,
                Source::File {
                    exec: false,
                    size: 0,
                },
            )) {
                return Ok(());
            }
        } else if ft.is_symlink() {
            let full = root.join(&rel);
            let target = fs::read_link(&full).ctx(&full)?;
            check_symlink_target(&rel, &target).map_err(|reason| SlugError::Unsupported {
                path: full.clone(),
                reason,
            })?;
            if !found((rel, Source::Symlink(target))) {
                return Ok(());
            }
        } else {
            return Err(SlugError::Unsupported {
                path: root.join(&rel),
                reason: "only regular files, directories and symlinks can go into a slug \
                         (this is a fifo, socket or device node): remove it from the build output"
                    .into(),
            });
        }
    }
    Ok(())
}

/// A symlink at `link` (relative to the app root) pointing at `target` is acceptable if the
/// target is absolute (a container path) or, resolved lexically, stays inside the app root.
pub(crate) fn check_symlink_target(link: &Path, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("symlink with an empty target".into());
    }
    if target.is_absolute() {
        return Ok(());
    }
    // Depth of the folder holding the link, then walk the target's components.
    let mut depth: i64 = link.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Ok(()),
        }
        if depth < 0 {
            return Err(format!(
                "symlink target {:?} points outside the app folder: use a path inside it, \
                 or an absolute container path",
                target
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        let ok = [
            ("a", "b"),
            ("d/a", "../b"),
            ("d/e/a", "../../x/y"),
            ("a", "/tmp/cache"),
            ("a", "./b"),
        ];
        for (l, t) in ok {
            check_symlink_target(Path::new(l), Path::new(t)).unwrap();
        }
        let bad = [
            ("a", "../b"),
            ("d/a", "../../b"),
            ("d/a", "x/../../../y"),
            ("a", ""),
        ];
        for (l, t) in bad {
            assert!(
                check_symlink_target(Path::new(l), Path::new(t)).is_err(),
                "{l} -> {t}"
            );
        }
    }

    #[test]
    fn levels() {
        check_level(3).unwrap();
        check_level(19).unwrap();
        assert!(check_level(0).is_err());
        assert!(check_level(-1).is_err());
        assert!(check_level(23).is_err());
    }
}
