//! The byte stream to an app: TCP to `127.0.0.1:PORT` in its network namespace, or its
//! unix socket (`web.upstream.socket_family: unix`, `$SOCKET` in the container), one type
//! for the upstream client, upgrades and probes alike.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::netns;
use crate::routes::Upstream;

/// A connection to an app, over TCP or a unix socket.
#[derive(Debug)]
pub(crate) enum UpstreamStream {
    /// TCP to `127.0.0.1:PORT` (inside the app's network namespace).
    Tcp(TcpStream),
    /// The app's unix socket, reached through its host path.
    Unix(UnixStream),
}

/// Connect to where `upstream` answers: its unix socket when it has one, else
/// `127.0.0.1:port` in its network namespace.
pub(crate) async fn dial(upstream: &Upstream) -> io::Result<UpstreamStream> {
    match &upstream.socket {
        Some(path) => Ok(UpstreamStream::Unix(connect_unix(path).await?)),
        None => Ok(UpstreamStream::Tcp(
            netns::connect(upstream.netns.as_deref(), upstream.port).await?,
        )),
    }
}

/// Connect to the unix socket at `path` without following a symbolic link there: the app
/// owns the socket's folder and could put a link to any socket of the host in its place,
/// which `connect(2)` by path would follow with the router's privileges. The path is
/// opened `O_PATH | O_NOFOLLOW`, must be a socket, and is connected to through that
/// descriptor (`/proc/self/fd/N`), so what was checked is what is connected to (and the
/// host path's length does not matter).
pub(crate) async fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Socket {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a unix socket (a symbolic link or another file)",
                path.display()
            ),
        ));
    }
    let through = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let stream = UnixStream::connect(&through).await;
    drop(fd);
    stream
}

impl UpstreamStream {
    /// Poll whether the stream is readable (readiness only, no system call).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            UpstreamStream::Tcp(s) => s.poll_read_ready(cx),
            UpstreamStream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Read what is there without waiting (`WouldBlock` when nothing is).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            UpstreamStream::Tcp(s) => s.try_read(buf),
            UpstreamStream::Unix(s) => s.try_read(buf),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Tcp(s) => s.is_write_vectored(),
            UpstreamStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn dials_a_unix_socket_and_echoes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let up = Upstream {
            release: "r1".into(),
            netns: None,
            port: 0,
            socket: Some(path.clone()),
        };
        let mut s = dial(&up).await.unwrap();
        assert!(matches!(s, UpstreamStream::Unix(_)));
        s.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        // A missing socket is a connect error, not a hang.
        let gone = Upstream {
            socket: Some(dir.path().join("missing.sock")),
            ..up
        };
        assert!(dial(&gone.clone()).await.is_err());
        // A symbolic link in the socket's place is never followed, even to a live socket.
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let linked = Upstream {
            socket: Some(link),
            ..gone.clone()
        };
        let err = dial(&linked).await.unwrap_err();
        assert!(err.to_string().contains("not a unix socket"), "{err}");
        // Nor is a plain file taken for one.
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"").unwrap();
        let plain = Upstream {
            socket: Some(file),
            ..gone
        };
        assert!(dial(&plain).await.is_err());
    }
}
