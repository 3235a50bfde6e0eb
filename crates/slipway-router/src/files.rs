//! Static files: opened beneath a location's root (never outside it), answered with a
//! content type, validators (`ETag`, `Last-Modified`) and conditional requests (304),
//! byte ranges (206/416; several as `multipart/byteranges`), `expires` as
//! `Cache-Control`/`Expires`, the location's `headers`, and a precompressed `.br`/`.gz`
//! sibling when the client accepts it, else gzip on the fly for text of [`GZIP_MIN`]
//! bytes and more (in memory up to [`GZIP_MAX`], streamed and chunked above), or from a
//! gzipped copy kept on disk for a mount's file or one over [`GZIP_MAX`]
//! ([`crate::gzip_store`]).
//!
//! Ranges are of the file as it is (identity encoding), or of its stored gzipped copy
//! for a client that accepts gzip. Several ranges in one
//! `Range` field get a `multipart/byteranges` answer (RFC 9110 14.6) when they are at
//! most [`MAX_RANGES`], in ascending order and do not overlap; otherwise the whole file,
//! 200 (RFC 9110 14.2 lets a server ignore such requests, which make it do much work for
//! a short request; nginx bounds them with `max_ranges`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::StatusCode;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::file_body::{self, GzipStream, Produced};
use crate::file_cache::{KeptCopy, OpenFileCache};
use crate::gzip_cache::Gzipped;
use crate::locations::{Ask, Effective};
use crate::site::Expires;

/// How much of a file is read at once when it is sent.
pub(crate) const FILE_CHUNK: usize = 64 * 1024;

/// The smallest file compressed on the fly: below it gzip's header and the work cost more
/// than the bytes saved.
pub const GZIP_MIN: u64 = 1024;

/// The largest file compressed on the fly in memory: it is read and compressed whole, on
/// the router's worker, before the answer starts (at [`GZIP_LEVEL`]: a few ms for the
/// largest), and sent with its length. Larger files are
/// compressed a chunk at a time while they are sent ([`crate::file_body::GzipStream`]),
/// chunked.
pub const GZIP_MAX: u64 = 1024 * 1024;

/// The deflate level of every gzipped body the router makes: on the fly, streamed, and
/// the copies it keeps on disk ([`crate::gzip_store`]). Level 2 of `flate2`'s backend
/// (miniz_oxide): its level 1 is a special fast path whose output is 4 to 15 % longer
/// than zlib's level 1 (nginx's `gzip_comp_level` default, and `gzip -1`) on text and
/// scripts, so each answer carried that many more bytes than nginx's; level 2 is at or
/// below zlib's level 1 in length, at about its speed.
pub(crate) const GZIP_LEVEL: u32 = 2;

/// What a path beneath a root is.
#[derive(Clone, Debug)]
pub(crate) enum Opened {
    /// A regular file, open for reading.
    File(OpenFile),
    /// A folder.
    Dir,
    /// Nothing that may be served: missing, not readable, a link out of the root, or
    /// neither a file nor a folder.
    Missing,
}

/// Which version of which file: device, inode, size, and mtime and ctime to the
/// nanosecond, as its metadata said when it was opened. What its `ETag` is made of, and
/// the key of its gzipped copy ([`crate::gzip_store`]). Any change of the file (written,
/// truncated, renamed over, `touch`ed) sets its ctime to the current time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    /// mtime in nanoseconds since the epoch.
    pub(crate) mtime_ns: i128,
    /// ctime in nanoseconds since the epoch.
    pub(crate) ctime_ns: i128,
}

impl Identity {
    /// The identity of an open file, from its metadata now.
    pub(crate) fn of(file: &File) -> io::Result<Identity> {
        Ok(Identity::of_metadata(&file.metadata()?))
    }

    /// The identity `meta` gives.
    pub(crate) fn of_metadata(meta: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The later of its mtime and ctime, in nanoseconds since the epoch. Slugs give every
    /// file one fixed mtime (reproducible packing), so the mtime alone would call a file
    /// of a new release unmodified since the old one; the ctime is set when the slug is
    /// unpacked (a folder per content).
    pub(crate) fn changed_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }

    /// [`Identity::changed_ns`] in whole seconds (`Last-Modified` is an HTTP date).
    pub(crate) fn changed_secs(&self) -> u64 {
        u64::try_from(self.changed_ns().div_euclid(1_000_000_000)).unwrap_or(0)
    }
}

/// A regular file opened beneath a root, with what its answers need of its metadata.
/// Cloned out of the open-file cache ([`crate::file_cache`]): the descriptor is shared.
#[derive(Clone, Debug)]
pub(crate) struct OpenFile {
    /// The open file.
    pub(crate) file: Arc<File>,
    /// Its identity when it was opened (its size is `id.size`).
    pub(crate) id: Identity,
    /// Where the open-file cache keeps the file's gzipped copy with its entry (the same
    /// slot in every clone of the entry); `None` for a file opened without the cache.
    pub(crate) kept_gzip: Option<Arc<std::sync::OnceLock<KeptCopy>>>,
}

/// A location's root folder for one request, and how files are opened beneath it:
/// through its open-file cache (a slug's root) or at each request (a mount's).
#[derive(Clone, Copy)]
pub(crate) struct Beneath<'a> {
    /// The root folder (`O_PATH`).
    pub(crate) dir: &'a OwnedFd,
    /// The root's open-file cache, if it has one.
    pub(crate) cache: Option<&'a OpenFileCache>,
    /// Whether the root is a slug's: read-only, a file there never changes once
    /// unpacked (a mount's files may change at any time, twice within one second too).
    pub(crate) read_only: bool,
}

impl Beneath<'_> {
    /// What `rel` is beneath the root (see [`open_beneath`]).
    pub(crate) fn open(&self, rel: &str) -> Opened {
        match self.cache {
            Some(cache) => cache.open(self.dir, rel),
            None => open_beneath(self.dir, rel),
        }
    }
}

/// Open the folder `path` (`O_PATH`), the app's folder from which roots are opened.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the folder `rel` beneath `dir` (`O_PATH`); `Ok(None)` if it does not exist.
pub(crate) fn open_dir_beneath(dir: &OwnedFd, rel: &str) -> io::Result<Option<OwnedFd>> {
    match openat2_beneath(dir, rel, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn openat2_beneath(dir: &OwnedFd, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let flags = flags | OFlags::CLOEXEC;
    loop {
        match rustix::fs::openat2(dir.as_fd(), rel, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// Open `rel` beneath the root `dir`. Symbolic links are followed only while they stay
/// beneath it; `..` never leaves it (the kernel refuses with `EXDEV`).
pub(crate) fn open_beneath(dir: &OwnedFd, rel: &str) -> Opened {
    let Ok(fd) = openat2_beneath(dir, rel, OFlags::RDONLY | OFlags::NONBLOCK) else {
        return Opened::Missing;
    };
    let file = File::from(fd);
    match file.metadata() {
        Ok(meta) if meta.is_file() => Opened::File(OpenFile {
            id: Identity::of_metadata(&meta),
            file: Arc::new(file),
            kept_gzip: None,
        }),
        Ok(meta) if meta.is_dir() => Opened::Dir,
        _ => Opened::Missing,
    }
}

/// The body of a [`StaticAnswer`].
#[derive(Debug)]
pub(crate) enum StaticBody {
    /// No body (304, HEAD).
    Empty,
    /// A body in memory: a short text of the router's, or a gzipped body made in
    /// memory ([`crate::gzip_cache::Gzipped::Memory`]).
    Text(Bytes),
    /// Made while it is sent (gzip of a large file, several ranges).
    Produced(Produced),
    /// `len` bytes of `file` from `offset`: a file beneath a root, its stored gzipped
    /// copy, or a gzipped body kept in a sealed `memfd`
    /// ([`crate::gzip_cache::Gzipped::Sealed`]).
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

/// An answer the router makes from files (or a short page of its own).
#[derive(Debug)]
pub(crate) struct StaticAnswer {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The `Content-Length` (also for HEAD, where the body is not sent); `None`: not
    /// known before the body is made (a streamed gzip: chunked).
    pub(crate) length: Option<u64>,
    pub(crate) body: StaticBody,
}

impl StaticAnswer {
    /// A short plain-text answer.
    pub(crate) fn page(status: StatusCode, text: &'static str) -> StaticAnswer {
        StaticAnswer {
            status,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            length: Some(text.len() as u64),
            body: StaticBody::Text(Bytes::from_static(text.as_bytes())),
        }
    }

    /// The page for a file that is missing (404) or not allowed (403).
    pub(crate) fn status_page(status: StatusCode) -> StaticAnswer {
        if status == StatusCode::FORBIDDEN {
            StaticAnswer::page(status, "403 Forbidden: this file is not served.\n")
        } else {
            StaticAnswer::page(StatusCode::NOT_FOUND, "404 Not Found: no such file.\n")
        }
    }

    /// 405 to a method other than GET and HEAD where only files are served.
    pub(crate) fn not_allowed() -> StaticAnswer {
        let mut answer = StaticAnswer::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed: only GET and HEAD are served here.\n",
        );
        answer
            .headers
            .push((header::ALLOW, HeaderValue::from_static("GET, HEAD")));
        answer
    }

    /// 301 to the folder `decoded` with a trailing slash (relative links in its index
    /// file resolve against the folder), the query kept.
    pub(crate) fn to_folder(decoded: &str, query: Option<&str>) -> StaticAnswer {
        let mut location = String::with_capacity(decoded.len() + 8);
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            location.push('/');
            push_encoded(&mut location, segment);
        }
        location.push('/');
        if let Some(q) = query {
            location.push('?');
            location.push_str(q);
        }
        let mut answer = StaticAnswer::page(StatusCode::MOVED_PERMANENTLY, "Moved.\n");
        if let Ok(value) = HeaderValue::from_str(&location) {
            answer.headers.push((header::LOCATION, value));
        }
        answer
    }

    /// Drop the body (the answer to a HEAD request); the length stays.
    fn without_body(mut self) -> StaticAnswer {
        self.body = StaticBody::Empty;
        self
    }
}

/// Percent-encode what is not a safe path character.
fn push_encoded(out: &mut String, segment: &str) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The answer for the file `rel` (open as `file`) of the root `root`, for `ask`, with
/// the settings `eff`.
pub(crate) fn answer(
    root: Beneath<'_>,
    rel: &str,
    file: OpenFile,
    ask: &Ask<'_>,
    eff: &Effective<'_>,
) -> StaticAnswer {
    let content_type = content_type(rel);
    let accepts_gzip = || {
        ask.accept_encoding
            .and_then(|a| std::str::from_utf8(a).ok())
            .is_some_and(|a| accepts(a, "gzip"))
    };
    // A range is of the file as it is (identity): never of an encoding.
    let (file, mut encoding) = match ask.range {
        Some(_) => (file, None),
        None => match precompressed(root, rel, ask.accept_encoding) {
            Some((f, enc)) => (f, Some(enc)),
            None => (file, None),
        },
    };
    let wants_gzip = encoding.is_none()
        && compressible(content_type)
        && file.id.size >= GZIP_MIN
        && accepts_gzip();
    // A text file the per-worker memory cache does not hold (a mount's, or over
    // GZIP_MAX): its gzipped copy on disk ([`crate::gzip_store`]), whole or ranges of it,
    // if the router keeps copies and has (or now made) one of this version; the one the
    // open-file cache keeps with the file's entry, if it does.
    let stored = match eff.gzip_store {
        Some(store) if wants_gzip && (root.cache.is_none() || file.id.size > GZIP_MAX) => {
            crate::file_cache::gzipped_copy(&file, store)
        }
        _ => None,
    };
    // On the fly: text the client takes gzipped, whole (a range is not), in memory up to
    // GZIP_MAX, streamed above.
    let on_the_fly = stored.is_none() && wants_gzip && ask.range.is_none();
    if on_the_fly || stored.is_some() {
        encoding = Some("gzip");
    }
    let size = file.id.size;
    let changed_secs = file.id.changed_secs();
    // To the nanosecond, with the inode (as Caddy's, where nginx's has whole seconds): a
    // mount's file written twice within one second at the same size gets a new one.
    let etag = format!(
        "\"{}-{:x}-{:x}-{size:x}{}\"",
        eff.tag,
        file.id.ino,
        file.id.changed_ns(),
        match encoding {
            None => "",
            Some("br") => "-br",
            Some(_) if on_the_fly => "-gzip",
            // The stored copy's bytes (ranges are of them): its own validator.
            Some(_) if stored.is_some() => "-gzs",
            Some(_) => "-gz",
        }
    );
    let last_modified = last_modified_value(changed_secs);
    // Whether the file is unchanged since the HTTP date `since` (whole seconds). A
    // slug's file never changes: its second says. A mount's may have changed twice
    // within that second, after the client's copy: only if it changed at or before the
    // date's very instant (its `ETag`, to the nanosecond, is the exact validator).
    let unchanged_since = |since: u64| {
        if root.read_only {
            changed_secs <= since
        } else {
            file.id.changed_ns() <= i128::from(since) * 1_000_000_000
        }
    };

    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(10);
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    headers.push((header::ETAG, value(&etag)));
    headers.push((header::LAST_MODIFIED, last_modified.clone()));
    headers.push((header::VARY, HeaderValue::from_static("Accept-Encoding")));
    if let Some((cache_control, expires)) = expires_values(eff.expires) {
        headers.push((header::CACHE_CONTROL, cache_control));
        headers.push((header::EXPIRES, expires));
    }
    for (name, v) in eff.headers {
        headers.push((name.clone(), v.clone()));
    }

    // Conditional requests: If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    let not_modified = match ask.if_none_match {
        Some(list) => etag_listed(list, etag.as_bytes()),
        None => ask
            .if_modified_since
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|since| unchanged_since(since.as_secs())),
    };
    if not_modified {
        return StaticAnswer {
            status: StatusCode::NOT_MODIFIED,
            headers,
            length: Some(0),
            body: StaticBody::Empty,
        };
    }

    if let Some(enc) = encoding {
        headers.push((header::CONTENT_ENCODING, HeaderValue::from_static(enc)));
    }
    headers.push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
    if on_the_fly {
        headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
        let answer = if size > GZIP_MAX {
            StaticAnswer {
                status: StatusCode::OK,
                headers,
                length: None,
                body: StaticBody::Produced(Produced::Gzip(GzipStream::new(file.file, size))),
            }
        } else {
            let gz = match root.cache {
                // A slug's file: compressed once per worker ([`crate::gzip_cache`]), a
                // long body kept in a sealed memfd.
                Some(cache) => {
                    let key = crate::gzip_cache::FileIdentity {
                        root: std::ptr::from_ref(cache) as usize,
                        tag_and_path: format!("{}\0{rel}", eff.tag).into(),
                        size,
                        changed_ns: file.id.changed_ns(),
                    };
                    crate::gzip_cache::gzipped(key, || gzip_file(&file.file, size))
                }
                None => gzip_file(&file.file, size).map(Gzipped::Memory),
            };
            match gz {
                Ok(Gzipped::Memory(gz)) => StaticAnswer {
                    status: StatusCode::OK,
                    headers,
                    length: Some(gz.len() as u64),
                    body: StaticBody::Text(gz),
                },
                // Kept in a sealed memfd: answered as a file (`sendfile(2)` on the
                // router's own path over plain TCP).
                Ok(Gzipped::Sealed { file, len }) => StaticAnswer {
                    status: StatusCode::OK,
                    headers,
                    length: Some(len),
                    body: StaticBody::File {
                        file,
                        offset: 0,
                        len,
                    },
                },
                Err(e) => {
                    tracing::warn!(file = rel, "compressing a file: {e}");
                    return StaticAnswer::page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 Internal Server Error: the file could not be read.\n",
                    );
                }
            }
        };
        return if ask.head {
            answer.without_body()
        } else {
            answer
        };
    }
    // From here on the representation is the stored copy's bytes, if there is one.
    let (body, size) = match stored {
        Some(copy) => (copy.file, copy.len),
        None => (file.file, size),
    };
    // A date names this version only if it is the file's whole change time.
    let range_applies = match ask.if_range {
        None => true,
        Some(v) => {
            v == etag.as_bytes() || (v == last_modified.as_bytes() && unchanged_since(changed_secs))
        }
    };
    let range = ask
        .range
        .filter(|_| range_applies)
        .map(|r| parse_range(r, size));
    let answer = match range {
        Some(Range::Unsatisfiable) => {
            let mut answer = StaticAnswer::page(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "416 Range Not Satisfiable\n",
            );
            answer
                .headers
                .push((header::CONTENT_RANGE, value(&format!("bytes */{size}"))));
            answer.headers.extend(
                headers
                    .into_iter()
                    .filter(|(n, _)| *n == header::ETAG || *n == header::LAST_MODIFIED),
            );
            answer
        }
        Some(Range::Bytes(start, end)) => {
            headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
            headers.push((
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{end}/{size}")),
            ));
            StaticAnswer {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                length: Some(end - start + 1),
                body: StaticBody::File {
                    file: body,
                    offset: start,
                    len: end - start + 1,
                },
            }
        }
        Some(Range::Several(ranges)) => {
            let (boundary, length, parts) =
                file_body::byteranges(body, size, content_type, &ranges);
            headers.push((
                header::CONTENT_TYPE,
                value(&format!("multipart/byteranges; boundary={boundary}")),
            ));
            StaticAnswer {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                length: Some(length),
                body: StaticBody::Produced(Produced::Parts(parts)),
            }
        }
        Some(Range::Whole) | None => {
            headers.push((header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
            StaticAnswer {
                status: StatusCode::OK,
                headers,
                length: Some(size),
                body: StaticBody::File {
                    file: body,
                    offset: 0,
                    len: size,
                },
            }
        }
    };
    if ask.head {
        answer.without_body()
    } else {
        answer
    }
}

/// The `Last-Modified` value of a file modified at `mtime` (seconds since the epoch),
/// formatted once per worker thread for consecutive answers of the same time: a slug's
/// files share one (its unpacking), so most answers reuse the last one.
fn last_modified_value(mtime: u64) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((at, value)) if *at == mtime => value.clone(),
        _ => {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(mtime));
            let value = HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""));
            *last = Some((mtime, value.clone()));
            value
        }
    })
}

/// The `Cache-Control` and `Expires` values of `expires` for an answer made now (none
/// for [`Expires::Unset`]), formatted once per second and setting on each worker thread,
/// as the `Date` field is.
fn expires_values(expires: Expires) -> Option<(HeaderValue, HeaderValue)> {
    type Cached = Option<(u64, Expires, HeaderValue, HeaderValue)>;
    thread_local! {
        static LAST: std::cell::RefCell<Cached> = const { std::cell::RefCell::new(None) };
    }
    if matches!(expires, Expires::Unset) {
        return None;
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|last| {
        if let Some((at, of, cache_control, expires_at)) = last.as_ref() {
            if *at == second && *of == expires {
                return Some((cache_control.clone(), expires_at.clone()));
            }
        }
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
        let (cache_control, at) = match expires {
            Expires::Unset => return None,
            Expires::NoCache => (
                HeaderValue::from_static("no-cache"),
                now - Duration::from_secs(1),
            ),
            Expires::Seconds(secs) => (
                value(&format!("max-age={secs}")),
                now + Duration::from_secs(secs),
            ),
        };
        let expires_at = value(&httpdate::fmt_http_date(at));
        *last = Some((second, expires, cache_control.clone(), expires_at.clone()));
        Some((cache_control, expires_at))
    })
}

/// Whether files of `content_type` are compressed on the fly: text, and the text formats
/// of `application/` and `image/svg+xml` (what nginx's and Platform.sh's `gzip_types`
/// name); images, fonts, media and archives are compressed already.
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(
            content_type,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/bmp"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// The first `size` bytes of `file`, gzipped (at [`GZIP_LEVEL`]).
fn gzip_file(file: &File, size: u64) -> io::Result<Bytes> {
    use std::io::Write as _;
    use std::os::unix::fs::FileExt as _;
    let mut content = vec![0u8; size as usize];
    file.read_exact_at(&mut content, 0)?;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(content.len() / 3 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    gz.write_all(&content)?;
    Ok(Bytes::from(gz.finish()?))
}

/// The `.br` or `.gz` sibling of `rel`, if the client accepts that encoding and it exists.
fn precompressed(
    root: Beneath<'_>,
    rel: &str,
    accept: Option<&[u8]>,
) -> Option<(OpenFile, &'static str)> {
    let accept = std::str::from_utf8(accept?).ok()?;
    for (enc, ext) in [("br", ".br"), ("gzip", ".gz")] {
        if accepts(accept, enc) {
            if let Opened::File(f) = root.open(&format!("{rel}{ext}")) {
                return Some((f, enc));
            }
        }
    }
    None
}

/// Whether an `Accept-Encoding` value accepts `coding` (named, or `*`, with q > 0).
fn accepts(accept: &str, coding: &str) -> bool {
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .or_else(|| p.strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (name.eq_ignore_ascii_case(coding) || name == "*") && !q_zero
    })
}

/// Whether an `If-None-Match` list names `etag` (weak comparison) or is `*`.
fn etag_listed(list: &[u8], etag: &[u8]) -> bool {
    let Ok(list) = std::str::from_utf8(list) else {
        return false;
    };
    let etag = std::str::from_utf8(etag).unwrap_or("");
    list.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag.strip_prefix("W/").unwrap_or(tag) == etag.strip_prefix("W/").unwrap_or(etag)
    })
}

/// The most ranges one `Range` field may ask for; more get the whole file (nginx's
/// `max_ranges`, RFC 9110 14.2: many small ranges cost the server far more than the
/// request did).
pub(crate) const MAX_RANGES: usize = 16;

/// The outcome of a `Range` field.
#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// Not ranges the router serves (another unit, not valid, more than [`MAX_RANGES`],
    /// overlapping or not in ascending order): the whole file (RFC 9110 lets a server
    /// ignore `Range`).
    Whole,
    /// Bytes `start..=end`.
    Bytes(u64, u64),
    /// Several ranges `start..=end`, ascending, not overlapping: `multipart/byteranges`.
    Several(Vec<(u64, u64)>),
    /// No range starts within the file.
    Unsatisfiable,
}

fn parse_range(value: &[u8], size: u64) -> Range {
    let Some(specs) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Whole;
    };
    let mut ranges = Vec::new();
    for (i, spec) in specs.split(',').enumerate() {
        if i == MAX_RANGES {
            return Range::Whole;
        }
        match one_range(spec, size) {
            None => return Range::Whole,
            Some(None) => {}
            Some(Some(range)) => ranges.push(range),
        }
    }
    if ranges.windows(2).any(|pair| pair[1].0 <= pair[0].1) {
        return Range::Whole;
    }
    match ranges.len() {
        0 => Range::Unsatisfiable,
        1 => Range::Bytes(ranges[0].0, ranges[0].1),
        _ => Range::Several(ranges),
    }
}

/// One range of a `Range` field on a file of `size` bytes: `None` if it is not valid,
/// `Some(None)` if it is valid but starts beyond the file.
fn one_range(spec: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let (first, last) = spec.trim().split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix)? {
            0 => Some(None),
            n if size > 0 => Some(Some((size.saturating_sub(n), size - 1))),
            _ => Some(None),
        },
        (start, end) => {
            let start = number(start)?;
            let end = if end.is_empty() {
                u64::MAX
            } else {
                number(end)?
            };
            if end < start {
                None
            } else if start >= size {
                Some(None)
            } else {
                Some(Some((start, end.min(size - 1))))
            }
        }
    }
}

/// The content type of a file, by its extension (nginx's `mime.types`, the common part);
/// unknown: `application/octet-stream`.
pub(crate) fn content_type(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.contains('/') => ext.to_ascii_lowercase(),
        _ => return "application/octet-stream",
    };
    match ext.as_str() {
        "html" | "htm" | "shtml" => "text/html",
        "css" => "text/css",
        "xml" => "text/xml",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "js" | "mjs" => "application/javascript",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "rss" => "application/rss+xml",
        "atom" => "application/atom+xml",
        "gif" => "image/gif",
        "jpeg" | "jpg" => "image/jpeg",
        "png" => "image/png",
        "svg" | "svgz" => "image/svg+xml",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

/// The fuzz check of the request fields a file answer reads: a byte range is always
/// within the file; nothing panics.
pub(crate) fn check_fields(data: &[u8]) {
    for size in [0u64, 1, 10, u64::MAX] {
        let ranges = match parse_range(data, size) {
            Range::Bytes(start, end) => vec![(start, end)],
            Range::Several(ranges) => {
                assert!((2..=MAX_RANGES).contains(&ranges.len()), "{data:?}");
                ranges
            }
            Range::Whole | Range::Unsatisfiable => Vec::new(),
        };
        for &(start, end) in &ranges {
            assert!(
                start <= end && end < size,
                "{data:?} on {size}: {start}-{end}"
            );
        }
        for pair in ranges.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{data:?} on {size}: {pair:?}");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = accepts(text, "gzip");
    }
    let _ = etag_listed(data, b"\"abc-1-2\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_validators_and_expiry_follow_their_inputs() {
        let epoch = last_modified_value(0);
        assert_eq!(epoch, "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(last_modified_value(86_400), "Fri, 02 Jan 1970 00:00:00 GMT");
        assert_eq!(last_modified_value(0), epoch, "not the previous file's");

        assert!(expires_values(Expires::Unset).is_none());
        for _ in 0..2 {
            for secs in [60, 3600] {
                let before = SystemTime::now();
                let (cache_control, expires) =
                    expires_values(Expires::Seconds(secs)).expect("values");
                assert_eq!(cache_control, format!("max-age={secs}").as_str());
                let at = httpdate::parse_http_date(expires.to_str().expect("ascii"))
                    .expect("an HTTP date");
                let ahead = at.duration_since(before).unwrap_or_default().as_secs_f64();
                assert!(
                    (secs as f64 - 2.0..=secs as f64 + 1.0).contains(&ahead),
                    "{secs}: {ahead}"
                );
            }
            let (cache_control, expires) = expires_values(Expires::NoCache).expect("values");
            assert_eq!(cache_control, "no-cache");
            let at = httpdate::parse_http_date(expires.to_str().expect("ascii")).expect("date");
            assert!(at < SystemTime::now(), "in the past");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(b"bytes=0-99", 1000), Range::Bytes(0, 99));
        assert_eq!(parse_range(b"bytes=900-", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range(b"bytes=-100", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range(b"bytes=-5000", 1000), Range::Bytes(0, 999));
        assert_eq!(parse_range(b"bytes=0-5000", 1000), Range::Bytes(0, 999));
        assert_eq!(parse_range(b"bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-0", 1000), Range::Unsatisfiable);
        // Several: ascending and apart, at most MAX_RANGES; else the whole file.
        assert_eq!(
            parse_range(b"bytes=0-1, 5-6,-10", 1000),
            Range::Several(vec![(0, 1), (5, 6), (990, 999)])
        );
        assert_eq!(
            parse_range(b"bytes=0-1,2-3", 1000),
            Range::Several(vec![(0, 1), (2, 3)])
        );
        assert_eq!(
            parse_range(b"bytes=0-5,5-6", 1000),
            Range::Whole,
            "overlapping"
        );
        assert_eq!(parse_range(b"bytes=0-999,0-999", 1000), Range::Whole);
        assert_eq!(
            parse_range(b"bytes=5-6,0-1", 1000),
            Range::Whole,
            "descending"
        );
        assert_eq!(
            parse_range(b"bytes=0-1,x", 1000),
            Range::Whole,
            "one not valid"
        );
        assert_eq!(parse_range(b"bytes=0-1,", 1000), Range::Whole);
        let many = |n: u64| {
            let list: Vec<String> = (0..n)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect();
            format!("bytes={}", list.join(","))
        };
        assert!(matches!(
            parse_range(many(MAX_RANGES as u64).as_bytes(), 1000),
            Range::Several(r) if r.len() == MAX_RANGES
        ));
        assert_eq!(
            parse_range(many(MAX_RANGES as u64 + 1).as_bytes(), 1000),
            Range::Whole
        );
        // Ranges beyond the end are left out; none left: 416.
        assert_eq!(
            parse_range(b"bytes=0-1,2000-3000", 1000),
            Range::Bytes(0, 1)
        );
        assert_eq!(
            parse_range(b"bytes=2000-,3000-", 1000),
            Range::Unsatisfiable
        );
        assert_eq!(parse_range(b"bytes=5-1", 1000), Range::Whole);
        assert_eq!(parse_range(b"items=0-1", 1000), Range::Whole);
        assert_eq!(parse_range(b"bytes=+1-2", 1000), Range::Whole);
        assert_eq!(parse_range(b"bytes=0-", 0), Range::Unsatisfiable);
    }

    #[test]
    fn encodings_and_etags() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(accepts("*", "gzip"));
        assert!(!accepts("identity", "gzip"));
        assert!(etag_listed(b"\"a\", \"b\"", b"\"b\""));
        assert!(etag_listed(b"W/\"b\"", b"\"b\""));
        assert!(etag_listed(b"*", b"\"b\""));
        assert!(!etag_listed(b"\"c\"", b"\"b\""));
    }

    #[test]
    fn gzip_on_the_fly_is_for_text() {
        assert!(compressible("text/html"));
        assert!(compressible("application/javascript"));
        assert!(compressible("image/svg+xml"));
        assert!(!compressible("image/png"));
        assert!(!compressible("application/octet-stream"));
        assert!(!compressible("application/gzip"));
        let mut f = tempfile::tempfile().expect("temp file");
        let text = "hello static world\n".repeat(200);
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        let gz = gzip_file(&f, text.len() as u64).expect("gzip");
        assert!(gz.len() < text.len() / 4, "{} bytes", gz.len());
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .expect("gunzip");
        assert_eq!(back, text);
    }

    #[test]
    fn gzip_is_as_short_as_nginxs_level_1() {
        // bench/static.sh's 2 MiB text file: `gzip -1` (what nginx's `gzip_static`
        // serves there) makes 138,363 bytes of it; miniz_oxide's level 1 made 144,381.
        let text: String = (0..52429)
            .map(|i| format!("line {i:07} of a text file served gzipped\n"))
            .collect();
        let mut f = tempfile::tempfile().expect("temp file");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        let gz = gzip_file(&f, text.len() as u64).expect("gzip");
        assert!(gz.len() <= 138_363, "{} bytes", gz.len());
        // The streamed body and the stored copy are made at the same level.
        let mut streamed = Vec::new();
        let mut stream = Produced::Gzip(GzipStream::new(Arc::new(f), text.len() as u64));
        while let Some(chunk) = stream.next_chunk() {
            streamed.extend_from_slice(&chunk.expect("chunk"));
        }
        assert!(
            streamed.len() <= 138_363,
            "{} bytes streamed",
            streamed.len()
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.CSS"), "text/css");
        assert_eq!(content_type("index.html"), "text/html");
        assert_eq!(content_type("a.b/c"), "application/octet-stream");
        assert_eq!(content_type("README"), "application/octet-stream");
    }
}
