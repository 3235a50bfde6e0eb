//! The SSH endpoint of Slipway: the only door users knock on besides HTTP.
//!
//! - Authentication is by public key only; keys are looked up in the state
//!   database, unknown keys are refused at the SSH layer.
//! - `git-upload-pack` (clone, fetch) runs the `git upload-pack` binary on the
//!   project's repository; `git-receive-pack` (push) is received natively by
//!   [`slipway_git::receive`] and handed to the deploy pipeline.
//! - Anything else is an admin command (`admin`).

#![warn(missing_docs)]

pub(crate) mod admin;
mod backups;
pub mod command;
mod connections;
mod git_service;
pub mod limits;
mod listener;
mod ops;
mod pipe;
mod session;
pub mod shell;
mod variables;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use slipway_deploy::Platform;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub use admin::users::valid_user_name;
pub use limits::SshLimits;
pub use session::ConnectionError;

/// Errors of the SSH endpoint's setup.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Reading or writing the host key file failed.
    #[error("host key {path}: {source}")]
    HostKeyIo {
        /// The key file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The host key file is not a valid OpenSSH private key.
    #[error("host key {path}: {message}")]
    HostKey {
        /// The key file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A public key line is not acceptable.
    #[error("{0}")]
    PublicKey(String),
}

/// Load the ed25519 host key at `path`, creating it on first start.
/// Returns the key and whether it was created.
pub fn load_or_create_host_key(path: &Path) -> Result<(PrivateKey, bool), SshError> {
    let shown = path.display().to_string();
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| SshError::HostKeyIo {
            path: shown.clone(),
            source,
        })?;
        let key = PrivateKey::from_openssh(text.as_bytes()).map_err(|e| SshError::HostKey {
            path: shown,
            message: e.to_string(),
        })?;
        return Ok((key, false));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| {
        SshError::HostKey {
            path: shown.clone(),
            message: e.to_string(),
        }
    })?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| SshError::HostKey {
            path: shown.clone(),
            message: e.to_string(),
        })?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).map(|_| f))
            .map_err(|source| SshError::HostKeyIo {
                path: shown.clone(),
                source,
            })?;
        f.sync_all().map_err(|source| SshError::HostKeyIo {
            path: shown.clone(),
            source,
        })?;
        let _ = f.flush();
    }
    std::fs::rename(&tmp, path).map_err(|source| SshError::HostKeyIo {
        path: shown,
        source,
    })?;
    Ok((key, true))
}

/// Raise the soft limit of open files to the hard limit: every SSH connection holds file
/// descriptors (two sockets, and pipes or a terminal while a command runs). Returns the
/// limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// The SHA256 fingerprint of a host key, as `ssh` prints it.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The form a public key is stored in: `TYPE BASE64`, without comment.
pub fn normalize_key(key: &PublicKey) -> Result<String, SshError> {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh()
        .map(|s| s.trim().to_string())
        .map_err(|e| SshError::PublicKey(e.to_string()))
}

/// Parse an OpenSSH public key line (`ssh-ed25519 AAAA... comment`) as users
/// give it to `slipway user add`; ed25519, ecdsa and rsa >= 2048 bits are accepted.
pub fn parse_public_key_line(line: &str) -> Result<String, SshError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(SshError::PublicKey("the key file is empty".into()));
    }
    if line.contains("PRIVATE KEY") {
        return Err(SshError::PublicKey(
            "this is a private key: give the .pub file".into(),
        ));
    }
    let key = PublicKey::from_openssh(line)
        .map_err(|e| SshError::PublicKey(format!("not an OpenSSH public key line ({e})")))?;
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } => {}
        Algorithm::Rsa { .. } => {
            let bits = key
                .key_data()
                .rsa()
                .map(|r| r.n().as_positive_bytes().map(|b| b.len() * 8).unwrap_or(0))
                .unwrap_or(0);
            if bits < 2048 {
                return Err(SshError::PublicKey(format!(
                    "RSA keys need at least 2048 bits, this one has {bits}"
                )));
            }
        }
        other => {
            return Err(SshError::PublicKey(format!(
                "key type {other} is not accepted: use ed25519, ecdsa or rsa (>= 2048 bits)"
            )))
        }
    }
    normalize_key(&key)
}

/// Write text to a channel stream, ignoring a client that went away.
pub(crate) async fn say<W: AsyncWrite + Unpin>(w: &mut W, text: &str) {
    let _ = w.write_all(text.as_bytes()).await;
    let _ = w.flush().await;
}

/// What every connection of the endpoint shares.
pub(crate) struct Endpoint {
    platform: Arc<Platform>,
    limits: SshLimits,
    /// Open connections per key.
    sessions: limits::SessionCounter,
    /// Running container shells per key.
    shells: limits::SessionCounter,
    /// Unauthenticated connections (all under one key).
    unauthenticated: limits::SessionCounter,
    /// Unauthenticated connections per source address.
    unauthenticated_per_address: limits::SessionCounter,
    /// The live connections.
    connections: Arc<connections::Connections>,
}

impl Endpoint {
    /// The handler of a newly accepted connection.
    fn new_connection(&self, live: Arc<connections::Live>) -> session::Connection {
        session::Connection {
            platform: self.platform.clone(),
            peer: Some(live.peer),
            live,
            connections: self.connections.clone(),
            limits: self.limits.clone(),
            sessions: self.sessions.clone(),
            shells: self.shells.clone(),
            slot: None,
            over_limit: false,
            user: None,
            key: None,
            open_channels: Arc::new(tokio::sync::Semaphore::new(
                self.limits.max_channels_per_connection,
            )),
            channels: HashMap::new(),
            git_protocol: HashMap::new(),
            login: String::new(),
            ptys: HashMap::new(),
            resizes: HashMap::new(),
        }
    }
}

/// Whether the CPU has AES and carry-less multiplication instructions (AES-GCM in hardware).
fn has_aes_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The algorithms offered. The client picks the first of its own list that the server offers,
/// and OpenSSH lists chacha20-poly1305 first: with AES in hardware only AES-GCM is offered, so
/// that clients use it (much faster than chacha20 there); otherwise chacha20 comes first.
fn preferred_algorithms() -> russh::Preferred {
    use russh::cipher::{AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305};
    static HARDWARE: &[russh::cipher::Name] = &[AES_128_GCM, AES_256_GCM];
    static SOFTWARE: &[russh::cipher::Name] = &[CHACHA20_POLY1305, AES_128_GCM, AES_256_GCM];
    let cipher = match std::env::var("SLIPWAY_SSH_CIPHERS").ok().as_deref() {
        Some("chacha20") => SOFTWARE,
        Some("aes-gcm") => HARDWARE,
        _ if has_aes_hardware() => HARDWARE,
        _ => SOFTWARE,
    };
    russh::Preferred {
        cipher: std::borrow::Cow::Borrowed(cipher),
        ..russh::Preferred::default()
    }
}

/// Serve SSH on `listener` until `shutdown` resolves, with the limits of
/// [`SshLimits::from_env`].
pub async fn serve(
    listener: TcpListener,
    host_key: PrivateKey,
    platform: Arc<Platform>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_with(
        listener,
        host_key,
        platform,
        SshLimits::from_env(),
        shutdown,
    )
    .await
}

/// Serve SSH on `listener` with `limits` until `shutdown` resolves. Returns an error only
/// when the listening socket failed for good (the endpoint no longer listens).
pub async fn serve_with(
    listener: TcpListener,
    host_key: PrivateKey,
    platform: Arc<Platform>,
    limits: SshLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let shutdown = async {
        shutdown.await;
        Duration::ZERO
    };
    serve_until(listener, host_key, platform, limits, shutdown).await
}

/// Once connections were told the server stops, how long they may take to say goodbye
/// before they are closed.
const GOODBYE_GRACE: Duration = Duration::from_secs(3);

/// Serve SSH on `listener` with `limits` until `shutdown` resolves to a grace period:
/// then stop accepting, let the open connections (pushes and their deploys, shells)
/// end on their own for up to that long (a graceful upgrade gives running pushes time
/// to complete while the new server accepts), then tell those left that the server
/// stops and close them a few seconds later. Returns an error only when the listening
/// socket failed for good.
pub async fn serve_until(
    listener: TcpListener,
    host_key: PrivateKey,
    platform: Arc<Platform>,
    limits: SshLimits,
    shutdown: impl std::future::Future<Output = Duration> + Send,
) -> std::io::Result<()> {
    let config = russh::server::Config {
        keys: vec![host_key],
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        // Server keepalives would count as traffic and keep idle connections open forever:
        // the idle timeout alone ends idle and dead connections. Long deploys send progress
        // or git keepalives every few seconds, which is traffic.
        inactivity_timeout: Some(limits.idle_timeout),
        keepalive_interval: None,
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 256,
        nodelay: true,
        preferred: preferred_algorithms(),
        ..Default::default()
    };
    let endpoint = Arc::new(Endpoint {
        platform,
        limits,
        sessions: limits::SessionCounter::default(),
        shells: limits::SessionCounter::default(),
        unauthenticated: limits::SessionCounter::default(),
        unauthenticated_per_address: limits::SessionCounter::default(),
        connections: Arc::default(),
    });
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let accepting = listener::run(listener, Arc::new(config), endpoint.clone(), stop);
    tokio::pin!(accepting);
    tokio::pin!(shutdown);
    let grace = tokio::select! {
        r = &mut accepting => return r,
        grace = &mut shutdown => grace,
    };
    // No more accepting (the future is no longer polled); open connections may end on
    // their own during the grace period.
    let deadline = tokio::time::Instant::now() + grace;
    while endpoint.connections.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each connection says goodbye; those still open after a few seconds are closed.
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + GOODBYE_GRACE;
    while endpoint.connections.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    endpoint.connections.close_all();
    Ok(())
}
