//! The accept loop: our own, so that it never ends on a transient error (out of file
//! descriptors: it backs off and retries), caps the connections that have not authenticated
//! yet (in total and per source address) and closes those that do not authenticate within
//! the login grace time.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::connections::Registered;
use crate::limits::SessionSlot;
use crate::Endpoint;

/// How long the loop waits before accepting again when the process is out of file descriptors.
const BACKOFF: Duration = Duration::from_millis(100);

/// The most often the same warning about refused connections is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How often connections whose user was removed (from the command line) are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The places an unauthenticated connection holds: one of all, one of its source address.
struct PreAuth {
    _total: SessionSlot,
    _per_address: SessionSlot,
}

/// Whether an accept error is about this one connection or a shortage that passes: the loop
/// goes on. Anything else means the listening socket itself is broken.
fn passes(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::EAGAIN
                | libc::ETIMEDOUT
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::ENONET
                | libc::EHOSTDOWN
                | libc::EOPNOTSUPP
        )
    )
}

/// Whether an accept error is a shortage of descriptors or memory: accepting again at once
/// would fail the same way.
fn shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Logs a warning at most every [`WARN_EVERY`].
#[derive(Default)]
struct Quiet(Option<Instant>);

impl Quiet {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if self.0.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        self.0 = Some(now);
        true
    }
}

/// The source address a cap counts by: IPv4-mapped IPv6 addresses count as IPv4.
fn source(peer: &SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// Accept connections until `stop` is set; an error only when the listening socket is
/// broken for good.
pub(crate) async fn run(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    endpoint: Arc<Endpoint>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let state = endpoint.platform.state();
                let closed = endpoint.connections.close_removed(state);
                if closed > 0 {
                    info!(closed, "closed the connections of removed users");
                }
            }
        }
    });
    let _sweeper = AbortOnDrop(sweeper);
    let mut stopped = stop.clone();
    let mut short = Quiet::default();
    let mut full = Quiet::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = until_stopped(&mut stopped) => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if shortage(&e) => {
                if short.due() {
                    warn!("accepting an SSH connection: {e}; retrying");
                }
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            Err(e) if passes(&e) => {
                debug!("accepting an SSH connection: {e}");
                continue;
            }
            Err(e) => {
                error!("the SSH listening socket failed: {e}");
                return Err(e);
            }
        };
        let Some(pre_auth) = admit(&endpoint, &peer) else {
            if full.due() {
                warn!(%peer, "too many unauthenticated SSH connections (in all or from this address): closing new ones");
            }
            continue;
        };
        let (stream, registered) = match register(&endpoint, stream, peer) {
            Ok(x) => x,
            Err(e) => {
                if short.due() {
                    warn!(%peer, "setting up an SSH connection: {e}; closed");
                }
                continue;
            }
        };
        tokio::spawn(supervise(
            config.clone(),
            endpoint.clone(),
            stream,
            registered,
            pre_auth,
            stop.clone(),
        ));
    }
}

/// Resolves once `stop` is set (or its sender is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Count a new connection as unauthenticated; None if a cap is reached.
fn admit(endpoint: &Endpoint, peer: &SocketAddr) -> Option<PreAuth> {
    let limits = &endpoint.limits;
    let total = endpoint
        .unauthenticated
        .acquire("", limits.max_unauthenticated)?;
    let per_address = endpoint.unauthenticated_per_address.acquire(
        &source(peer).to_string(),
        limits.max_unauthenticated_per_address,
    )?;
    Some(PreAuth {
        _total: total,
        _per_address: per_address,
    })
}

/// Register the connection, keeping a duplicate of its socket to end it with.
fn register(
    endpoint: &Arc<Endpoint>,
    stream: TcpStream,
    peer: SocketAddr,
) -> std::io::Result<(TcpStream, Registered)> {
    let socket = stream.into_std()?;
    let copy = socket.try_clone()?;
    let stream = TcpStream::from_std(socket)?;
    if let Err(e) = stream.set_nodelay(true) {
        debug!("set_nodelay: {e}");
    }
    Ok((stream, endpoint.connections.add(peer, copy)))
}

/// Run one connection: closed when the login grace time passes before it authenticated, or
/// when the server stops. Its unauthenticated places are given back once it authenticated.
async fn supervise(
    config: Arc<russh::server::Config>,
    endpoint: Arc<Endpoint>,
    stream: TcpStream,
    registered: Registered,
    pre_auth: PreAuth,
    mut stop: watch::Receiver<bool>,
) {
    let live = registered.live().clone();
    let peer = live.peer;
    let handler = endpoint.new_connection(live.clone());
    let grace = tokio::time::sleep(endpoint.limits.login_grace);
    tokio::pin!(grace);
    let mut pre_auth = Some(pre_auth);
    let session = tokio::select! {
        s = russh::server::run_stream(config, stream, handler) => match s {
            Ok(s) => s,
            Err(e) => {
                debug!(%peer, "SSH connection setup failed: {e}");
                return;
            }
        },
        _ = &mut grace => {
            info!(%peer, "login grace time over: closing the connection");
            return;
        }
        _ = until_stopped(&mut stop) => return,
    };
    let handle = session.handle();
    tokio::pin!(session);
    let result = loop {
        tokio::select! {
            r = &mut session => break Some(r),
            _ = live.authenticated(), if pre_auth.is_some() => {
                pre_auth = None;
            }
            _ = &mut grace, if pre_auth.is_some() => {
                info!(%peer, "login grace time over: closing the connection");
                break None;
            }
            _ = until_stopped(&mut stop) => {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "server shutting down".into(),
                        String::new(),
                    )
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut session).await;
                break None;
            }
        }
    };
    if let Some(Err(e)) = result {
        debug!(%peer, "SSH connection ended: {e}");
    }
    // Dropping `registered` shuts the socket down, whatever the session task still waits for.
    drop(registered);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_passes_a_broken_listener_does_not() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ECONNABORTED,
            libc::ENOBUFS,
        ] {
            assert!(passes(&std::io::Error::from_raw_os_error(code)), "{code}");
        }
        for code in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK] {
            assert!(!passes(&std::io::Error::from_raw_os_error(code)), "{code}");
        }
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let v6: SocketAddr = "[::ffff:127.0.0.2]:22".parse().expect("addr");
        let v4: SocketAddr = "127.0.0.2:22".parse().expect("addr");
        assert_eq!(source(&v6), source(&v4));
    }
}
