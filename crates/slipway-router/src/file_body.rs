//! Bodies of static answers made while they are sent, chunk by chunk, on both of the
//! router's HTTP/1.1 paths (its own, [`crate::h1`], and hyper's, [`crate::proxy`]):
//! - [`GzipStream`]: a text file above [`crate::files::GZIP_MAX`] gzipped on the fly, a
//!   chunk of the file at a time (its compressed length is not known before the end, so
//!   the answer is chunked);
//! - [`Parts`]: a `multipart/byteranges` answer to several ranges (RFC 9110 14.6): each
//!   part's head, then its bytes read from the file, then the closing delimiter; its
//!   length is known before the first byte. On a plain TCP connection of the router's
//!   own path each part's bytes go with `sendfile(2)` instead
//!   ([`crate::sendfile::send_parts`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::files::FILE_CHUNK;

/// A body made while it is sent.
#[derive(Debug)]
pub(crate) enum Produced {
    /// A file gzipped on the fly.
    Gzip(GzipStream),
    /// Several ranges of a file, as `multipart/byteranges`.
    Parts(Parts),
}

impl Produced {
    /// The next piece of the body; `None` after the last. A file that became shorter
    /// than its length at opening is an error (the answer's length or end was promised).
    pub(crate) fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        match self {
            Produced::Gzip(gz) => gz.next_chunk(),
            Produced::Parts(parts) => parts.next_chunk(),
        }
    }
}

/// Read up to [`FILE_CHUNK`] bytes of `file` at `offset`, at most `left`; an error if
/// the file ends first.
pub(crate) fn read_chunk(file: &File, offset: u64, left: u64) -> io::Result<Vec<u8>> {
    let want = left.min(FILE_CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    let n = file.read_at(&mut buf, offset)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file became shorter while it was sent",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}

/// The first `len` bytes of a file, gzipped (at [`crate::files::GZIP_LEVEL`]) one
/// [`FILE_CHUNK`] at a time: memory stays at the encoder's state and one
/// chunk, whatever the file's size.
pub(crate) struct GzipStream {
    file: Arc<File>,
    offset: u64,
    left: u64,
    /// `None` once the gzip trailer was given.
    encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl std::fmt::Debug for GzipStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipStream")
            .field("offset", &self.offset)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl GzipStream {
    /// The first `len` bytes of `file`, to be gzipped as they are sent.
    pub(crate) fn new(file: Arc<File>, len: u64) -> GzipStream {
        GzipStream {
            file,
            offset: 0,
            left: len,
            encoder: Some(flate2::write::GzEncoder::new(
                Vec::with_capacity(FILE_CHUNK / 2),
                flate2::Compression::new(crate::files::GZIP_LEVEL),
            )),
        }
    }

    fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.left == 0 {
                let encoder = self.encoder.take()?;
                return Some(encoder.finish().map(Bytes::from));
            }
            let encoder = self.encoder.as_mut()?;
            let read = read_chunk(&self.file, self.offset, self.left)
                .and_then(|chunk| encoder.write_all(&chunk).map(|()| chunk.len() as u64));
            match read {
                Ok(n) => {
                    self.offset += n;
                    self.left -= n;
                }
                Err(e) => {
                    self.encoder = None;
                    return Some(Err(e));
                }
            }
            let out = std::mem::take(encoder.get_mut());
            if !out.is_empty() {
                return Some(Ok(Bytes::from(out)));
            }
        }
    }
}

/// One piece of a [`Parts`] body.
#[derive(Debug)]
pub(crate) enum Piece {
    /// A part's head, or the closing delimiter.
    Text(Bytes),
    /// A part's bytes: `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

/// A `multipart/byteranges` body: part heads and the parts' bytes of one file.
#[derive(Debug)]
pub(crate) struct Parts {
    file: Arc<File>,
    pieces: VecDeque<Piece>,
}

impl Parts {
    /// The file and the pieces, in order, for a sender that sends the file's bytes
    /// itself ([`crate::sendfile::send_parts`]).
    pub(crate) fn into_pieces(self) -> (Arc<File>, VecDeque<Piece>) {
        (self.file, self.pieces)
    }

    fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        match self.pieces.pop_front()? {
            Piece::Text(text) => Some(Ok(text)),
            Piece::File { offset, len } => match read_chunk(&self.file, offset, len) {
                Ok(chunk) => {
                    let n = chunk.len() as u64;
                    if n < len {
                        self.pieces.push_front(Piece::File {
                            offset: offset + n,
                            len: len - n,
                        });
                    }
                    Some(Ok(Bytes::from(chunk)))
                }
                Err(e) => {
                    self.pieces.clear();
                    Some(Err(e))
                }
            },
        }
    }
}

/// A `multipart/byteranges` answer's body of `ranges` (inclusive, within the file) of
/// `file` (`size` bytes, of `content_type`): its boundary, its length and the body.
pub(crate) fn byteranges(
    file: Arc<File>,
    size: u64,
    content_type: &str,
    ranges: &[(u64, u64)],
) -> (String, u64, Parts) {
    let boundary = new_boundary();
    let mut pieces = VecDeque::with_capacity(ranges.len() * 2 + 1);
    let mut length = 0u64;
    for &(start, end) in ranges {
        let head = format!(
            "\r\n--{boundary}\r\ncontent-type: {content_type}\r\ncontent-range: bytes {start}-{end}/{size}\r\n\r\n"
        );
        length += head.len() as u64 + (end - start + 1);
        pieces.push_back(Piece::Text(Bytes::from(head)));
        pieces.push_back(Piece::File {
            offset: start,
            len: end - start + 1,
        });
    }
    let tail = format!("\r\n--{boundary}--\r\n");
    length += tail.len() as u64;
    pieces.push_back(Piece::Text(Bytes::from(tail)));
    (boundary, length, Parts { file, pieces })
}

/// A boundary no file is likely to hold: a random number of the process and a count.
fn new_boundary() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        h.finish()
    });
    format!(
        "slipway-{seed:016x}{:08x}",
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut body: Produced) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next_chunk() {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// Letters of a simple generator from `seed`: text that gzips to about 60 %, so
    /// that a body's gzipped length is roughly known.
    fn letters(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefghijklmnopqrstuvwxyz \n"[(x >> 16) as usize % 28]
            })
            .collect()
    }

    fn temp_file(content: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(content).expect("write");
        Arc::new(f)
    }

    #[test]
    fn a_large_file_is_gzipped_in_chunks_and_a_short_one_fails() {
        // Text that compresses to about half (letters of a simple generator), so that
        // the encoder gives output all along.
        let text = letters(12345, 3 * 1024 * 1024 + 17);
        let file = temp_file(&text);
        let mut stream = Produced::Gzip(GzipStream::new(Arc::clone(&file), text.len() as u64));
        let mut chunks = 0;
        let mut gz = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            let chunk = chunk.expect("a chunk");
            assert!(!chunk.is_empty());
            assert!(chunk.len() <= 2 * FILE_CHUNK, "{}", chunk.len());
            gz.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(chunks > 2, "streamed, not whole: {chunks}");
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .expect("gunzip");
        assert!(back == text, "the same bytes back");

        // A file shorter than its length at opening: an error, not a short success.
        let stream = Produced::Gzip(GzipStream::new(file, text.len() as u64 + 10));
        assert!(drain(stream).is_err());
    }

    #[test]
    fn byteranges_have_each_part_and_the_promised_length() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let file = temp_file(&content);
        let ranges = [(0, 9), (100, 199), (100_000, 199_999)];
        let (boundary, length, parts) =
            byteranges(Arc::clone(&file), 200_000, "text/plain", &ranges);
        let body = drain(Produced::Parts(parts)).expect("body");
        assert_eq!(body.len() as u64, length);
        let delimiter = format!("\r\n--{boundary}");
        let mut pieces = body;
        for &(start, end) in &ranges {
            let head = format!(
                "{delimiter}\r\ncontent-type: text/plain\r\ncontent-range: bytes {start}-{end}/200000\r\n\r\n"
            );
            assert!(pieces.starts_with(head.as_bytes()), "part {start}-{end}");
            pieces.drain(..head.len());
            let len = (end - start + 1) as usize;
            assert!(pieces[..len] == content[start as usize..=end as usize]);
            pieces.drain(..len);
        }
        assert_eq!(pieces, format!("{delimiter}--\r\n").into_bytes());
        let (other, _, _) = byteranges(file, 200_000, "text/plain", &ranges);
        assert_ne!(other, boundary, "a new boundary per answer");
    }

    /// The parts of a `multipart/byteranges` body: (content-range, bytes).
    fn split_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .expect("multipart");
        let delimiter = format!("\r\n--{boundary}");
        let text = body.to_vec();
        let mut parts = Vec::new();
        let mut rest = &text[..];
        loop {
            assert!(rest.starts_with(delimiter.as_bytes()), "a delimiter");
            rest = &rest[delimiter.len()..];
            if rest == b"--\r\n" {
                return parts;
            }
            let head_end = rest
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a part head");
            let head = String::from_utf8(rest[..head_end].to_vec()).expect("ascii");
            let range = head
                .lines()
                .find_map(|l| l.strip_prefix("content-range: bytes "))
                .expect("content-range")
                .to_string();
            let (span, _) = range.split_once('/').expect("size");
            let (a, b) = span.split_once('-').expect("span");
            let len = b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1;
            rest = &rest[head_end + 4..];
            parts.push((range, rest[..len].to_vec()));
            rest = &rest[len..];
        }
    }

    /// Many ranges, as `multipart/byteranges` on the router's own path over plain TCP:
    /// each part byte for byte, the long parts sent with `sendfile(2)`, short ones with
    /// the heads; overlapping, descending or too many ranges keep today's whole file,
    /// none within the file 416, one within it a single range.
    #[tokio::test]
    async fn many_ranges_go_out_part_by_part_with_sendfile_byte_for_byte() {
        use crate::test_client::ask;
        let dir = tempfile::tempdir().expect("temp dir");
        let content: Vec<u8> = (0..3 * 1024 * 1024 + 11u32)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("big.bin"), &content).expect("write");
        let (addr, stop_tx, serving) = crate::test_client::serve_site(
            "files.test",
            9,
            crate::test_client::static_site(dir.path()),
        )
        .await;
        let size = content.len() as u64;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let get = |range: &str| {
            format!("GET /big.bin HTTP/1.1\r\nHost: files.test\r\nRange: bytes={range}\r\n\r\n")
        };
        // 16 ranges (the most served): short and long ones (distinct lengths, to find
        // them among the lengths sent with sendfile), a suffix, one to the end.
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for i in 0..14u64 {
            let start = i * 200_000 + i;
            let len = if i % 2 == 0 {
                10 + i
            } else {
                70_000 + i * 1000
            };
            ranges.push((start, start + len - 1));
        }
        ranges.push((2_900_000, 2_990_000));
        ranges.push((size - 99_999, size - 1));
        let spec: Vec<String> = ranges[..15]
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .chain(std::iter::once("-99999".to_string()))
            .collect();
        for round in 0..2 {
            let several = ask(&mut conn, &mut buf, &get(&spec.join(",")), false).await;
            assert_eq!(several.status, 206, "round {round}");
            let parts = split_parts(several.field("content-type").expect("type"), &several.body);
            assert_eq!(parts.len(), ranges.len());
            for ((range, bytes), (start, end)) in parts.iter().zip(&ranges) {
                assert_eq!(range, &format!("{start}-{end}/{size}"));
                assert!(
                    bytes[..] == content[*start as usize..=*end as usize],
                    "part {start}-{end} differs"
                );
            }
            assert_eq!(
                several.field("content-length"),
                Some(several.body.len().to_string().as_str())
            );
        }
        let sent = crate::sendfile::tests::SENT_LENGTHS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (start, end) in &ranges {
            let len = end - start + 1;
            if len >= crate::sendfile::SENDFILE_MIN {
                assert!(sent.contains(&len), "part of {len} with sendfile: {sent:?}");
            } else {
                assert!(!sent.contains(&len), "short part of {len} copied: {sent:?}");
            }
        }

        // Overlapping, descending, too many: the whole file, 200, as before.
        let too_many: Vec<String> = (0..=crate::files::MAX_RANGES as u64)
            .map(|i| format!("{}-{}", i * 1000, i * 1000 + 1))
            .collect();
        for spec in [
            "0-70000,60000-140000".to_string(),
            "140000-210000,0-70000".to_string(),
            too_many.join(","),
        ] {
            let whole = ask(&mut conn, &mut buf, &get(&spec), false).await;
            assert_eq!(whole.status, 200, "{spec}");
            assert!(whole.body == content, "{spec}");
        }
        // None within the file: 416; one within it: that range alone.
        let beyond = ask(&mut conn, &mut buf, &get("9000000-,9100000-9200000"), false).await;
        assert_eq!(beyond.status, 416);
        assert_eq!(
            beyond.field("content-range"),
            Some(format!("bytes */{size}").as_str())
        );
        let one = ask(&mut conn, &mut buf, &get("100-80099,9000000-"), false).await;
        assert_eq!(one.status, 206);
        assert_eq!(
            one.field("content-range"),
            Some(format!("bytes 100-80099/{size}").as_str())
        );
        assert!(one.body[..] == content[100..80100]);
        assert!(buf.is_empty(), "{} stray bytes", buf.len());
        drop(conn);
        let _ = stop_tx.send(());
        serving.await.expect("serve task").expect("serve");
    }

    /// A text file gzipped on the fly (up to `GZIP_MAX`, with its length) whose gzipped
    /// body is `SENDFILE_MIN` or more: kept by the worker in a sealed memfd and sent
    /// after its head with `sendfile(2)` on the router's own path, whole and byte for
    /// byte (gunzip gives the file), twice on one kept-alive connection; then its HEAD
    /// and 304 (the same length and ETag, no body), a range of it (the identity encoding,
    /// sendfile of the file itself), a shorter gzipped body (written beside its head, from
    /// memory) and the same body on hyper's path (read from the memfd). A stray or
    /// missing byte would break the next answer.
    #[tokio::test]
    async fn a_long_gzipped_body_goes_out_with_sendfile_from_its_sealed_memfd() {
        use crate::test_client::ask;
        let dir = tempfile::tempdir().expect("temp dir");
        let text = letters(11, 600 * 1024);
        let mid = letters(13, 24 * 1024);
        std::fs::write(dir.path().join("big.txt"), &text).expect("write");
        std::fs::write(dir.path().join("mid.txt"), &mid).expect("write");
        std::fs::write(dir.path().join("small.txt"), "small\n").expect("write");
        let (addr, stop_tx, serving) = crate::test_client::serve_site(
            "files.test",
            9,
            crate::test_client::static_site(dir.path()),
        )
        .await;
        let req = |path: &str, extra: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: files.test\r\n{extra}\r\n")
        };
        let gunzip = |gz: &[u8]| {
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut back)
                .expect("gunzip");
            back
        };
        let sent = || {
            crate::sendfile::tests::SENT_LENGTHS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let beside = || {
            crate::h1::BESIDE_LENGTHS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let mut first: Option<(Vec<u8>, String)> = None;
        for round in 0..2 {
            let gz = ask(
                &mut conn,
                &mut buf,
                &req("/big.txt", "Accept-Encoding: gzip\r\n"),
                false,
            )
            .await;
            assert_eq!(gz.status, 200, "{round}");
            assert_eq!(gz.field("content-encoding"), Some("gzip"), "{round}");
            assert_eq!(gz.field("vary"), Some("Accept-Encoding"), "{round}");
            assert_eq!(gz.field("transfer-encoding"), None, "{round}");
            assert_eq!(
                gz.field("content-length"),
                Some(gz.body.len().to_string().as_str()),
                "{round}"
            );
            let etag = gz.field("etag").expect("an etag").to_string();
            assert!(etag.ends_with("-gzip\""), "{round}: {etag}");
            assert!(
                gz.body.len() as u64 >= crate::sendfile::SENDFILE_MIN,
                "{round}: {} bytes",
                gz.body.len()
            );
            assert!(gunzip(&gz.body) == text, "{round}: the same text back");
            assert!(
                sent().contains(&(gz.body.len() as u64)),
                "{round}: sent with sendfile: {:?}",
                sent()
            );
            assert!(
                !beside().contains(&gz.body.len()),
                "{round}: not written from memory"
            );
            match &first {
                None => first = Some((gz.body.clone(), etag)),
                Some((body, tag)) => {
                    assert!(*body == gz.body, "the same bytes each time");
                    assert_eq!(*tag, etag);
                }
            }
        }
        let (gz_body, etag) = first.expect("answered");
        // HEAD: the same head, no body.
        let head = ask(
            &mut conn,
            &mut buf,
            "HEAD /big.txt HTTP/1.1\r\nHost: files.test\r\nAccept-Encoding: gzip\r\n\r\n",
            true,
        )
        .await;
        assert_eq!(head.status, 200);
        assert_eq!(head.field("content-encoding"), Some("gzip"));
        assert_eq!(head.field("etag"), Some(etag.as_str()));
        assert_eq!(
            head.field("content-length"),
            Some(gz_body.len().to_string().as_str())
        );
        assert!(head.body.is_empty());
        // Conditional: 304, no body.
        let cached = ask(
            &mut conn,
            &mut buf,
            &req(
                "/big.txt",
                &format!("Accept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n"),
            ),
            false,
        )
        .await;
        assert_eq!(cached.status, 304);
        assert!(cached.body.is_empty());
        // A range: of the identity encoding, as before (the file's own bytes, sent with
        // sendfile from the file).
        let range = ask(
            &mut conn,
            &mut buf,
            &req(
                "/big.txt",
                "Accept-Encoding: gzip\r\nRange: bytes=1000-81234\r\n",
            ),
            false,
        )
        .await;
        assert_eq!(range.status, 206);
        assert_eq!(range.field("content-encoding"), None);
        assert_eq!(
            range.field("content-range"),
            Some(format!("bytes 1000-81234/{}", text.len()).as_str())
        );
        assert!(range.body[..] == text[1000..81235]);
        assert!(sent().contains(&80_235), "{:?}", sent());
        // A gzipped body shorter than SENDFILE_MIN: from memory, beside its head.
        let short = ask(
            &mut conn,
            &mut buf,
            &req("/mid.txt", "Accept-Encoding: gzip\r\n"),
            false,
        )
        .await;
        assert_eq!(short.status, 200);
        assert_eq!(short.field("content-encoding"), Some("gzip"));
        assert!((4096..crate::sendfile::SENDFILE_MIN as usize).contains(&short.body.len()));
        assert!(gunzip(&short.body) == mid);
        assert!(beside().contains(&short.body.len()), "{:?}", beside());
        let small = ask(&mut conn, &mut buf, &req("/small.txt", ""), false).await;
        assert_eq!(small.status, 200);
        assert_eq!(&small.body[..], b"small\n");
        assert!(buf.is_empty(), "{} stray bytes", buf.len());

        // hyper's path (after another method): the same bytes, read from the memfd.
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let post = "POST /big.txt HTTP/1.1\r\nHost: files.test\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(ask(&mut conn, &mut buf, post, false).await.status, 405);
        let gz = ask(
            &mut conn,
            &mut buf,
            &req("/big.txt", "Accept-Encoding: gzip\r\n"),
            false,
        )
        .await;
        assert_eq!(gz.status, 200);
        assert_eq!(gz.field("content-encoding"), Some("gzip"));
        assert_eq!(
            gz.field("content-length"),
            Some(gz_body.len().to_string().as_str())
        );
        assert!(gz.body == gz_body, "the same bytes on hyper's path");
        assert!(buf.is_empty(), "{} stray bytes", buf.len());
        drop(conn);
        let _ = stop_tx.send(());
        serving.await.expect("serve task").expect("serve");
    }

    /// A large text file gzipped on the fly (chunked), ranges of it on the identity
    /// encoding, several ranges as `multipart/byteranges`, too many or overlapping ones
    /// the whole file: on the router's own HTTP/1.1 path and on hyper's, each on one
    /// kept-alive connection (a stray byte would break the next answer).
    #[tokio::test]
    async fn large_gzip_and_several_ranges_on_both_paths() {
        use crate::test_client::ask;
        let dir = tempfile::tempdir().expect("temp dir");
        let text = letters(7, 3 * 1024 * 1024 + 5);
        std::fs::write(dir.path().join("big.txt"), &text).expect("write");
        std::fs::write(dir.path().join("small.txt"), "small\n").expect("write");
        let (addr, stop_tx, serving) = crate::test_client::serve_site(
            "files.test",
            9,
            crate::test_client::static_site(dir.path()),
        )
        .await;
        let req = |method: &str, path: &str, extra: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: files.test\r\n{extra}\r\n")
        };
        for hyper_path in [false, true] {
            let on = if hyper_path { "hyper" } else { "own" };
            let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let mut buf = Vec::new();
            if hyper_path {
                // Another method hands the connection to hyper for good.
                let post = req("POST", "/big.txt", "Content-Length: 0\r\n");
                assert_eq!(ask(&mut conn, &mut buf, &post, false).await.status, 405);
            }
            let gz = ask(
                &mut conn,
                &mut buf,
                &req("GET", "/big.txt", "Accept-Encoding: gzip\r\n"),
                false,
            )
            .await;
            assert_eq!(gz.status, 200, "{on}");
            assert_eq!(gz.field("content-encoding"), Some("gzip"), "{on}");
            assert_eq!(gz.field("vary"), Some("Accept-Encoding"), "{on}");
            assert_eq!(gz.field("transfer-encoding"), Some("chunked"), "{on}");
            assert_eq!(gz.field("content-length"), None, "{on}");
            assert!(gz.body.len() < text.len() * 3 / 4, "{on}: compressed");
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut back)
                .expect("gunzip");
            assert!(back == text, "{on}: the same text back");

            let head = ask(
                &mut conn,
                &mut buf,
                &req("HEAD", "/big.txt", "Accept-Encoding: gzip\r\n"),
                true,
            )
            .await;
            assert_eq!(head.status, 200, "{on}");
            assert_eq!(head.field("content-encoding"), Some("gzip"), "{on}");
            assert_eq!(head.field("etag"), gz.field("etag"), "{on}");
            // Not known without compressing: no length (never a false one).
            assert_eq!(head.field("content-length"), None, "{on}");

            // A range: of the identity encoding, whatever the client accepts.
            let range = ask(
                &mut conn,
                &mut buf,
                &req(
                    "GET",
                    "/big.txt",
                    "Accept-Encoding: gzip\r\nRange: bytes=100-199\r\n",
                ),
                false,
            )
            .await;
            assert_eq!(range.status, 206, "{on}");
            assert_eq!(range.field("content-encoding"), None, "{on}");
            assert!(range.body[..] == text[100..200], "{on}");

            let several = ask(
                &mut conn,
                &mut buf,
                &req("GET", "/big.txt", "Range: bytes=0-9, 1000-1999,-5\r\n"),
                false,
            )
            .await;
            assert_eq!(several.status, 206, "{on}");
            let size = text.len();
            let parts = split_parts(several.field("content-type").expect("type"), &several.body);
            assert_eq!(
                parts.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
                [
                    format!("0-9/{size}"),
                    format!("1000-1999/{size}"),
                    format!("{}-{}/{size}", size - 5, size - 1)
                ],
                "{on}"
            );
            assert!(parts[0].1 == text[..10], "{on}");
            assert!(parts[1].1 == text[1000..2000], "{on}");
            assert!(parts[2].1 == text[size - 5..], "{on}");

            // Overlapping, or too many: the whole file.
            let many: Vec<String> = (0..=crate::files::MAX_RANGES)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect();
            for ranges in ["0-50,40-60".to_string(), many.join(",")] {
                let whole = ask(
                    &mut conn,
                    &mut buf,
                    &req("GET", "/big.txt", &format!("Range: bytes={ranges}\r\n")),
                    false,
                )
                .await;
                assert_eq!(whole.status, 200, "{on} {ranges}");
                assert!(whole.body == text, "{on}");
            }
            let beyond = ask(
                &mut conn,
                &mut buf,
                &req("GET", "/big.txt", "Range: bytes=9000000-,9100000-\r\n"),
                false,
            )
            .await;
            assert_eq!(beyond.status, 416, "{on}");

            // Short text stays as it is.
            let small = ask(
                &mut conn,
                &mut buf,
                &req("GET", "/small.txt", "Accept-Encoding: gzip\r\n"),
                false,
            )
            .await;
            assert_eq!(small.field("content-encoding"), None, "{on}");
            assert_eq!(small.body, b"small\n", "{on}");
            assert!(buf.is_empty(), "{on}: {} stray bytes", buf.len());
        }
        let _ = stop_tx.send(());
        serving.await.expect("serve task").expect("serve");
    }
}
