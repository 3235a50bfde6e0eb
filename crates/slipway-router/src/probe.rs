//! A one-shot health probe of a release's app: HTTP on its port or its unix socket, or
//! FastCGI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header::{self, HeaderValue};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::netns;

/// Why a probe got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No TCP connection to the port.
    #[error("cannot connect to 127.0.0.1:{port}: {source}")]
    Connect {
        /// The probed port.
        port: u16,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The connection opened but no valid HTTP response came.
    #[error("no valid HTTP response from 127.0.0.1:{port}: {source}")]
    Http {
        /// The probed port.
        port: u16,
        /// The HTTP error.
        #[source]
        source: hyper::Error,
    },
    /// The connection opened but no FastCGI answer came.
    #[error("no FastCGI answer from 127.0.0.1:{port}: {why}")]
    FastCgi {
        /// The probed port.
        port: u16,
        /// What came instead.
        why: String,
    },
    /// Nothing came within the timeout.
    #[error("no response from 127.0.0.1:{port} within {timeout:?}")]
    Timeout {
        /// The probed port.
        port: u16,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// No connection to the unix socket (not created yet, or nothing listens on it).
    #[error("cannot connect to the unix socket {}: {source}", socket.display())]
    SocketConnect {
        /// The probed socket's host path.
        socket: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// The unix socket accepted but no valid HTTP response came.
    #[error("no valid HTTP response on the unix socket {}: {source}", socket.display())]
    SocketHttp {
        /// The probed socket's host path.
        socket: PathBuf,
        /// The HTTP error.
        #[source]
        source: hyper::Error,
    },
    /// The unix socket accepted but no FastCGI answer came.
    #[error("no FastCGI answer on the unix socket {}: {why}", socket.display())]
    SocketFastCgi {
        /// The probed socket's host path.
        socket: PathBuf,
        /// What came instead.
        why: String,
    },
    /// Nothing came from the unix socket within the timeout.
    #[error("no response on the unix socket {} within {timeout:?}", socket.display())]
    SocketTimeout {
        /// The probed socket's host path.
        socket: PathBuf,
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// Connect to `127.0.0.1:port` in `netns` and send `GET /` (HTTP/1.1, `Host: localhost`);
/// return the response status. The whole probe is bounded by `timeout`.
pub async fn probe_http(
    netns: Option<&Path>,
    port: u16,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    match tokio::time::timeout(timeout, probe(netns, port)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout { port, timeout }),
    }
}

async fn probe(netns: Option<&Path>, port: u16) -> Result<u16, ProbeError> {
    let stream = netns::connect(netns, port)
        .await
        .map_err(|source| ProbeError::Connect { port, source })?;
    get_root(stream)
        .await
        .map_err(|source| ProbeError::Http { port, source })
}

/// Connect to the unix socket at `socket` (a host path) and send `GET /` as
/// [`probe_http`] does; return the response status. Bounded by `timeout`.
pub async fn probe_http_unix(socket: &Path, timeout: Duration) -> Result<u16, ProbeError> {
    on_unix_socket(socket, timeout, get_root, |socket, source| {
        ProbeError::SocketHttp { socket, source }
    })
    .await
}

/// Connect to the unix socket at `socket` (never followed if it is a symbolic link) and
/// run `talk` on it, all bounded by `timeout`; a failure of `talk` becomes the probe's
/// error through `failed`.
async fn on_unix_socket<T, E, Talk, Fut>(
    socket: &Path,
    timeout: Duration,
    talk: Talk,
    failed: impl FnOnce(PathBuf, E) -> ProbeError,
) -> Result<T, ProbeError>
where
    Talk: FnOnce(tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let probe = async {
        let stream = crate::upstream_stream::connect_unix(socket)
            .await
            .map_err(|source| ProbeError::SocketConnect {
                socket: socket.to_path_buf(),
                source,
            })?;
        talk(stream)
            .await
            .map_err(|e| failed(socket.to_path_buf(), e))
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::SocketTimeout {
            socket: socket.to_path_buf(),
            timeout,
        }),
    }
}

/// Send the health probe's `GET /` on `stream`; the answer's status.
async fn get_root<S>(stream: S) -> Result<u16, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(conn);
    let mut req = Request::new(Empty::<Bytes>::new());
    let headers = req.headers_mut();
    headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("slipway-health-check"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let result = sender.send_request(req).await;
    connection.abort();
    Ok(result?.status().as_u16())
}

/// Ask the FastCGI server on `127.0.0.1:port` in `netns` for its `FCGI_MPXS_CONNS` value
/// (`FCGI_GET_VALUES`): the health check of a PHP-FPM app, which speaks no HTTP. Ok once
/// a `FCGI_GET_VALUES_RESULT` record comes back. Bounded by `timeout`.
pub async fn probe_fastcgi(
    netns: Option<&Path>,
    port: u16,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match tokio::time::timeout(timeout, fastcgi_values(netns, port)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout { port, timeout }),
    }
}

async fn fastcgi_values(netns: Option<&Path>, port: u16) -> Result<(), ProbeError> {
    let stream = netns::connect(netns, port)
        .await
        .map_err(|source| ProbeError::Connect { port, source })?;
    get_values(stream)
        .await
        .map_err(|why| ProbeError::FastCgi { port, why })
}

/// Ask the FastCGI server on the unix socket at `socket` (a host path, never followed
/// if it is a symbolic link) as [`probe_fastcgi`] does. Bounded by `timeout`.
pub async fn probe_fastcgi_unix(socket: &Path, timeout: Duration) -> Result<(), ProbeError> {
    on_unix_socket(socket, timeout, get_values, |socket, why| {
        ProbeError::SocketFastCgi { socket, why }
    })
    .await
}

/// Send `FCGI_GET_VALUES` on `stream`; `Err`: what came instead of its result.
async fn get_values<S>(mut stream: S) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(&crate::fastcgi::get_values_request())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = bytes::BytesMut::with_capacity(256);
    loop {
        if let Some(rec) = crate::fastcgi::parse_record(&mut buf) {
            return if rec.kind == crate::fastcgi::GET_VALUES_RESULT {
                Ok(())
            } else {
                Err(format!("answered a record of type {}", rec.kind))
            };
        }
        if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed without answering FCGI_GET_VALUES".into());
        }
    }
}
