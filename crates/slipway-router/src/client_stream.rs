//! The client connections the router's own HTTP/1.1 path serves: plain TCP, or TLS over
//! TCP (the HTTPS listener after its handshake, when ALPN did not choose h2).
//!
//! While an answer is written, the path also watches the client's socket for its going
//! away (a `peek`, which reads nothing). [`ClientStream::answer_halves`] gives both at
//! once: the TCP socket's read half, and a writer of the answer. Over TLS the writer
//! encrypts into the connection's rustls state and writes the records straight to the
//! socket's write half: what one `write` gets goes out as whole records (up to 16 KiB of
//! plaintext each) in one vectored `write`, and a write is done only once all of it is
//! on the socket, as on plain TCP (the path never flushes).
//!
//! A request body for a PHP script is read through the writer too
//! ([`BodyRead::read_body`]), before its answer is written: on plain TCP straight from the
//! read half, over TLS by feeding the read half's records to the connection's rustls
//! state and taking the plaintext (so such a body stays on this path over TLS too).

use std::io::{self, Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client connection of the router's own HTTP/1.1 path.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin {
    /// The writer of answers while the read half is watched.
    type Writer<'a>: crate::sendfile::FileSink + BodyRead
    where
        Self: 'a;

    /// The TCP socket's read half (to see the client go away) and a writer of answers.
    fn answer_halves(&mut self) -> (ReadHalf<'_>, Self::Writer<'_>);
}

impl ClientStream for TcpStream {
    type Writer<'a> = WriteHalf<'a>;

    fn answer_halves(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        self.split()
    }
}

impl ClientStream for TlsStream<TcpStream> {
    type Writer<'a> = TlsWriter<'a>;

    fn answer_halves(&mut self) -> (ReadHalf<'_>, TlsWriter<'_>) {
        let (tcp, tls) = self.get_mut();
        let (read, write) = tcp.split();
        (
            read,
            TlsWriter {
                io: write,
                tls,
                accepted: None,
            },
        )
    }
}

/// Reads a request body's bytes from the client (plaintext).
pub(crate) trait BodyRead {
    /// Read body bytes into `buf` from the connection whose read half is `tcp`: how many,
    /// 0 at the end of the client's side.
    async fn read_body(&mut self, tcp: &mut ReadHalf<'_>, buf: &mut [u8]) -> io::Result<usize>;
}

impl BodyRead for WriteHalf<'_> {
    async fn read_body(&mut self, tcp: &mut ReadHalf<'_>, buf: &mut [u8]) -> io::Result<usize> {
        tokio::io::AsyncReadExt::read(tcp, buf).await
    }
}

impl BodyRead for TlsWriter<'_> {
    async fn read_body(&mut self, tcp: &mut ReadHalf<'_>, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| loop {
            // Plaintext rustls holds already (read with the head, or just decrypted).
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut socket = SyncReader { io: &mut *tcp, cx };
            match self.tls.read_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        })
        .await
    }
}

/// The socket's read half as a blocking-style reader for rustls: `WouldBlock` when
/// nothing is there (the task is woken when there is).
struct SyncReader<'a, 'b, 'c> {
    io: &'a mut ReadHalf<'b>,
    cx: &'a mut Context<'c>,
}

impl io::Read for SyncReader<'_, '_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut read = tokio::io::ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut read) {
            Poll::Ready(Ok(())) => Ok(read.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// Writes plaintext into a TLS connection and its records to the socket: a write is
/// ready once every record is on the socket.
pub(crate) struct TlsWriter<'a> {
    io: WriteHalf<'a>,
    tls: &'a mut ServerConnection,
    /// Plaintext bytes of the current write already taken by rustls, whose records are
    /// not all on the socket yet. The caller repeats a write that was pending with the
    /// same bytes (`write_all` does), and then hears that they were taken.
    accepted: Option<usize>,
}

impl TlsWriter<'_> {
    /// Write the connection's pending records to the socket.
    fn poll_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut socket = SyncSocket {
                io: &mut self.io,
                cx,
            };
            match self.tls.write_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// TLS frames every byte: a file's bytes are encrypted, never sent with `sendfile(2)`.
impl crate::sendfile::FileSink for TlsWriter<'_> {}

impl AsyncWrite for TlsWriter<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let taken = match this.accepted {
            Some(taken) => taken,
            None => {
                // Records of an earlier write first: rustls takes only so much.
                std::task::ready!(this.poll_records(cx))?;
                let taken = this.tls.writer().write(buf)?;
                this.accepted = Some(taken);
                taken
            }
        };
        std::task::ready!(this.poll_records(cx))?;
        this.accepted = None;
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_records(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_records(cx)
    }
}

/// The socket's write half as a blocking-style writer for rustls: `WouldBlock` when the
/// socket is full (the task is woken when it is writable again).
struct SyncSocket<'a, 'b, 'c> {
    io: &'a mut WriteHalf<'b>,
    cx: &'a mut Context<'c>,
}

impl io::Write for SyncSocket<'_, '_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tls::LocalCa;

    #[derive(Debug)]
    struct One(Arc<CertifiedKey>);

    impl ResolvesServerCert for One {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    /// An answer written in pieces of every size through the TLS writer reaches a client
    /// that reads slowly (so the socket fills and writes wait) whole and in order, and
    /// the connection goes on afterwards.
    #[tokio::test]
    async fn the_tls_writer_delivers_every_byte_to_a_slow_reader() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(dir.path()).unwrap();
        let key = Arc::new(ca.issue("writer.localhost").unwrap());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(One(key)));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca.cert_path()).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = answer.clone();
        let serving = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap();
            let mut request = [0u8; 5];
            tls.read_exact(&mut request).await.unwrap();
            assert_eq!(&request, b"hello");
            {
                let (_read, mut writer) = tls.answer_halves();
                let mut at = 0;
                let mut size = 1;
                while at < answer.len() {
                    let end = (at + size).min(answer.len());
                    writer.write_all(&answer[at..end]).await.unwrap();
                    at = end;
                    size = size * 3 % 200_003 + 1;
                }
            }
            // The stream goes on after the writer: an answer through it arrives too.
            tls.write_all(b"after").await.unwrap();
            tls.flush().await.unwrap();
            tls.shutdown().await.unwrap();
        });

        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("writer.localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"hello").await.unwrap();
        // The socket buffers fill (8 MB is more than they hold) before anything is read.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 8192];
        while got.len() < expected.len() + 5 {
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
            if got.len() % 7 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        assert_eq!(got.len(), expected.len() + 5);
        assert!(got[..expected.len()] == expected[..], "bytes differ");
        assert_eq!(&got[expected.len()..], b"after");
        serving.await.unwrap();
    }
}
