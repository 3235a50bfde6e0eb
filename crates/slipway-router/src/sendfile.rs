//! Zero-copy sending of a static file's bytes to a plain TCP client: `sendfile(2)` from
//! the open file to the client's socket, as nginx does with `sendfile on`, instead of
//! reading the file into user space and writing it out again.
//!
//! Only the router's own HTTP/1.1 path uses it, for a file body of at least
//! [`SENDFILE_MIN`] bytes, on a stream whose [`FileSink::plain_tcp`] gives the socket
//! (a plain TCP connection: over TLS the bytes must be encrypted in user space, so any
//! other stream keeps the copying path). The file was opened beneath the release's root
//! before the answer's head was written, and stays open until its last byte is sent:
//! the switch guarantee (one release's files per request) and the path checks are the
//! opening's, not changed here. Several ranges (`multipart/byteranges`) go the same
//! way, part by part ([`send_parts`]). A stored gzipped copy ([`crate::gzip_store`]) is
//! a file like any other, and so is a gzipped body of [`SENDFILE_MIN`] bytes or more that
//! a worker keeps in a sealed `memfd` ([`crate::gzip_cache`]); other bodies made in
//! memory (shorter gzip on the fly, the router's pages) never come here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncWrite, Interest};
use tokio::net::tcp::WriteHalf;
use tokio::net::TcpStream;

/// The smallest file body sent with `sendfile(2)`. A shorter one is read into the
/// buffer that holds the answer's head and goes out with it in one write, which costs
/// fewer system calls (and packets) than a head write and a `sendfile`.
pub(crate) const SENDFILE_MIN: u64 = 64 * 1024;

/// The most bytes one `sendfile(2)` call is asked for: the socket takes what fits in its
/// buffer anyway, and a bound keeps one large file from holding the worker's thread
/// while other connections wait (nginx's `sendfile_max_chunk` is 2 MiB).
const MAX_PER_CALL: usize = 512 * 1024;

/// A stream a static answer is written to. A plain TCP connection can take a file's
/// bytes straight from the page cache; any other stream (TLS) is written the usual way.
pub(crate) trait FileSink: AsyncWrite + Unpin {
    /// The TCP connection beneath this stream, if the bytes written to its socket reach
    /// the client as they are (no TLS or other framing in between). `None` (the
    /// default): the file is read and written through [`AsyncWrite`].
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl FileSink for WriteHalf<'_> {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl FileSink for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

/// Send an answer's `head` to `stream` with `MSG_MORE`: the kernel keeps it until the
/// file's first bytes follow (as nginx's `tcp_nopush` does), so head and body leave in
/// the same segments instead of the head going out alone (`TCP_NODELAY`) and waking the
/// client once more per answer. [`send_file`] right after pushes it all: its last
/// chunk is sent without `MSG_MORE`, and an error there closes the connection, which
/// sends what is queued.
pub(crate) async fn send_head(stream: &TcpStream, head: &[u8]) -> io::Result<()> {
    let mut sent_all = 0;
    while sent_all < head.len() {
        let sent = stream.try_io(Interest::WRITABLE, || {
            let rest = &head[sent_all..];
            // SAFETY: `rest` is a valid slice for the duration of the call and the
            // descriptor is the open socket `stream` owns.
            let n = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match sent {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent_all += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `TCP_CORK` on a socket while a file is sent (as nginx's `tcp_nopush`): the kernel
/// sends only full segments, where each `sendfile` call would otherwise push a short
/// one at its end (the socket's buffer full, or [`MAX_PER_CALL`] reached). Dropping it
/// takes the cork off, which sends what is left.
struct Cork<'s>(&'s TcpStream);

impl<'s> Cork<'s> {
    fn on(stream: &'s TcpStream) -> Cork<'s> {
        set_cork(stream, true);
        Cork(stream)
    }
}

impl Drop for Cork<'_> {
    fn drop(&mut self) {
        set_cork(self.0, false);
    }
}

/// Set `TCP_CORK` on `stream`; a failure only costs segments, so it is not reported.
fn set_cork(stream: &TcpStream, on: bool) {
    let value: libc::c_int = on.into();
    // SAFETY: the descriptor is the open socket `stream` owns, and `value` lives through
    // the call with the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Send `len` bytes of `file` from `offset` to `stream` with `sendfile(2)`, waiting for
/// the socket to take them. The file's own position is not used (the offset is passed),
/// so one open file could serve several answers.
///
/// Errors: the client went away (`EPIPE`, `ECONNRESET`, ...), or the file ended before
/// `len` bytes (truncated while being sent: `UnexpectedEof`). After an error part of the
/// body may have been sent; the caller must close the connection, the only way left to
/// tell the client the answer is incomplete.
pub(crate) async fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    let _cork = Cork::on(stream);
    let mut offset = offset;
    let mut left = len;
    while left > 0 {
        let want = left.min(MAX_PER_CALL as u64) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut at = offset;
            rustix::fs::sendfile(stream, file, Some(&mut at), want).map_err(io::Error::from)
        });
        match sent {
            // Nothing left at `offset`: the file is shorter than when it was opened.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                offset += n as u64;
                left -= n as u64;
            }
            // The socket's buffer is full (or readiness was stale): wait until it drains.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(test)]
    tests::SENT_LENGTHS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(len);
    Ok(())
}

/// Send a `multipart/byteranges` body (its answer's head is in `out`): the part heads
/// gathered in `out` and sent with `MSG_MORE` ([`send_head`]), each part's bytes of at
/// least [`SENDFILE_MIN`] with [`send_file`], shorter parts read into `out` with the
/// heads (fewer system calls and segments, as a single short range). What is left in
/// `out` at the end (the closing delimiter) is for the caller to write, which pushes
/// it all out. Errors as [`send_file`]'s: the caller must close the connection.
pub(crate) async fn send_parts(
    stream: &TcpStream,
    parts: crate::file_body::Parts,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use crate::file_body::{read_chunk, Piece};
    let (file, pieces) = parts.into_pieces();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(&text),
            Piece::File { offset, len } if len >= SENDFILE_MIN => {
                send_head(stream, out).await?;
                out.clear();
                send_file(stream, &file, offset, len).await?;
            }
            Piece::File { offset, len } => {
                let mut done = 0;
                while done < len {
                    let chunk = read_chunk(&file, offset + done, len - done)?;
                    done += chunk.len() as u64;
                    out.extend_from_slice(&chunk);
                }
                if out.len() >= crate::files::FILE_CHUNK {
                    send_head(stream, out).await?;
                    out.clear();
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write as _;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// The lengths of the bodies [`send_file`] sent whole, for the tests to see that an
    /// answer went this way.
    pub(crate) static SENT_LENGTHS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

    /// A connected pair: the router's side and the client's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    /// A temporary file of `len` bytes, each its offset modulo 251 (a prime: any
    /// misplaced range shows).
    fn numbered_file(len: usize) -> (File, Vec<u8>) {
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(&content).expect("write");
        (f, content)
    }

    /// Whether `TCP_CORK` is set on `stream`.
    fn corked(stream: &TcpStream) -> bool {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an open socket, and `value`/`len` live through the call.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt TCP_CORK");
        value != 0
    }

    #[tokio::test]
    async fn a_head_sent_with_more_arrives_before_the_file_or_at_the_close() {
        const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n";
        let (file, content) = numbered_file(200_000);
        let (server, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        send_head(&server, HEAD).await.expect("head");
        send_file(&server, &file, 0, content.len() as u64)
            .await
            .expect("file");
        assert!(!corked(&server), "the cork is off once the file is sent");
        drop(server);
        let got = reader.await.expect("reader");
        assert_eq!(&got[..HEAD.len()], HEAD);
        assert!(got[HEAD.len()..] == content[..], "the file after its head");

        // A head whose file never follows (the send failed) still reaches the client
        // when the connection closes, as the error path does.
        let (server, mut client) = pair().await;
        send_head(&server, HEAD).await.expect("head");
        drop(server);
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.read_to_end(&mut got),
        )
        .await
        .expect("not held")
        .expect("read");
        assert_eq!(got, HEAD);
    }

    #[tokio::test]
    async fn a_whole_file_and_a_range_arrive_byte_for_byte() {
        let (file, content) = numbered_file(3 * 1024 * 1024 + 17);
        let (server, mut client) = pair().await;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        send_file(&server, &file, 0, content.len() as u64)
            .await
            .expect("whole file");
        send_file(&server, &file, 1_000_001, 700_000)
            .await
            .expect("range");
        drop(server);
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), content.len() + 700_000);
        assert!(got[..content.len()] == content[..], "whole file differs");
        assert!(
            got[content.len()..] == content[1_000_001..1_700_001],
            "range differs"
        );
    }

    #[tokio::test]
    async fn a_file_truncated_while_sent_is_an_error_not_a_short_success() {
        // 1 MiB of numbered bytes, then zeros (sparse) to 64 MiB: far more than the
        // loopback socket buffers hold, so the send is still going when the file is cut.
        let (file, content) = numbered_file(1024 * 1024);
        let full_len = 64 * 1024 * 1024;
        file.set_len(full_len).expect("extend");
        let (server, mut client) = pair().await;
        let (cut_tx, cut_rx) = tokio::sync::oneshot::channel::<()>();
        // The client reads nothing until the file was cut: the socket fills, the
        // sender waits for it.
        let reader = tokio::spawn(async move {
            let _ = cut_rx.await;
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got).await;
            got.len()
        });
        let truncate = file.try_clone().expect("clone");
        let sending = send_file(&server, &file, 0, full_len);
        let cut = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            truncate.set_len(1024 * 1024).expect("truncate");
            let _ = cut_tx.send(());
        };
        let (sent, ()) = tokio::join!(sending, cut);
        let err = sent.expect_err("a truncated file cannot be sent whole");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(server);
        let received = reader.await.expect("reader");
        assert!(received < full_len as usize, "received {received} bytes");
        // Legitimate path: the shorter file is sent whole.
        let (server, mut client) = pair().await;
        send_file(&server, &file, 0, 1024 * 1024)
            .await
            .expect("the new length");
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert!(got == content);
    }

    #[tokio::test]
    async fn a_client_that_goes_away_mid_file_ends_the_send_with_an_error() {
        let (file, content) = numbered_file(1024 * 1024);
        let full_len = 64 * 1024 * 1024;
        file.set_len(full_len).expect("extend");
        let (server, mut client) = pair().await;
        let mut first = vec![0u8; 1024];
        let sending = send_file(&server, &file, 0, full_len);
        let leave = async {
            client.read_exact(&mut first).await.expect("first bytes");
            // Unread bytes in the receive buffer: closing sends a reset.
            drop(client);
        };
        let (sent, ()) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            tokio::join!(sending, leave)
        })
        .await
        .expect("the send ends when the client is gone");
        let err = sent.expect_err("the client left");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
        assert!(first[..] == content[..1024]);
    }

    #[tokio::test]
    async fn an_empty_range_sends_nothing() {
        let (file, _) = numbered_file(10);
        let (server, mut client) = pair().await;
        send_file(&server, &file, 10, 0).await.expect("nothing");
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        assert!(got.is_empty());
    }

    /// The router's own HTTP/1.1 path sends a large file with `sendfile(2)`: whole, as a
    /// range, not at all for HEAD and 304; a small file is copied with its head. All on
    /// one kept-alive connection, so a stray byte would break the next answer.
    #[tokio::test]
    async fn static_answers_of_the_router_go_out_zero_copy_with_ranges_head_and_304() {
        use crate::test_client::ask;
        let dir = tempfile::tempdir().expect("temp dir");
        let big: Vec<u8> = (0..2 * 1024 * 1024 + 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.bin"), &big).expect("write");
        std::fs::write(dir.path().join("small.txt"), "small file\n").expect("write");
        let (addr, stop_tx, serving) = crate::test_client::serve_site(
            "files.test",
            9,
            crate::test_client::static_site(dir.path()),
        )
        .await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let mut buf = Vec::new();
        let req = |extra: &str, method: &str, path: &str| {
            format!("{method} {path} HTTP/1.1\r\nHost: files.test\r\n{extra}\r\n")
        };

        let whole = ask(&mut conn, &mut buf, &req("", "GET", "/big.bin"), false).await;
        assert_eq!(whole.status, 200);
        assert_eq!(whole.field("content-length"), Some("2097155"));
        assert!(whole.body == big, "the whole file differs");
        let etag = whole.field("etag").expect("an etag").to_string();

        let range = ask(
            &mut conn,
            &mut buf,
            &req("Range: bytes=1000-600000\r\n", "GET", "/big.bin"),
            false,
        )
        .await;
        assert_eq!(range.status, 206);
        assert_eq!(
            range.field("content-range"),
            Some("bytes 1000-600000/2097155")
        );
        assert!(range.body[..] == big[1000..=600000], "the range differs");

        let suffix = ask(
            &mut conn,
            &mut buf,
            &req("Range: bytes=-70000\r\n", "GET", "/big.bin"),
            false,
        )
        .await;
        assert_eq!(suffix.status, 206);
        assert!(suffix.body[..] == big[big.len() - 70000..]);

        let head = ask(&mut conn, &mut buf, &req("", "HEAD", "/big.bin"), true).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.field("content-length"), Some("2097155"));

        let cached = ask(
            &mut conn,
            &mut buf,
            &req(&format!("If-None-Match: {etag}\r\n"), "GET", "/big.bin"),
            false,
        )
        .await;
        assert_eq!(cached.status, 304);

        let small = ask(&mut conn, &mut buf, &req("", "GET", "/small.txt"), false).await;
        assert_eq!(small.status, 200);
        assert_eq!(small.body, b"small file\n");
        // Nothing was left over on the connection after all of these.
        assert!(buf.is_empty(), "{} stray bytes", buf.len());

        let sent = SENT_LENGTHS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert!(sent.contains(&2_097_155), "the whole file: {sent:?}");
        assert!(sent.contains(&599_001), "the range: {sent:?}");
        assert!(sent.contains(&70_000), "the suffix range: {sent:?}");
        assert!(!sent.contains(&11), "a small file is copied: {sent:?}");
        drop(conn);
        let _ = stop_tx.send(());
        serving.await.expect("serve task").expect("serve");
    }
}
