//! A pool of kept-alive HTTP/1.1 connections to one upstream (one app of one release).
//!
//! Idle connections are kept LIFO (the warmest first) up to a limit, and dropped when they
//! were idle longer than the pool's idle timeout (shorter than the usual keep-alive
//! timeouts of app servers, so the app rarely closes one just as it is reused). A retired
//! pool keeps no connection: each is closed once its current request is done.
//!
//! The pooled connections are those of the router's own client ([`crate::upstream`]).
//! A protocol upgrade gets a connection of its own, through hyper's client
//! ([`Pool::connect_upgrade`]), which is never pooled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::routes::Upstream;
use crate::upstream::Conn;
use crate::upstream_stream::{self, UpstreamStream};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

/// The sending half of an upstream connection opened for a protocol upgrade.
pub(crate) type UpgradeSender = SendRequest<Incoming>;

/// Why no connection to an upstream could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Connecting (TCP or unix socket) failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// Connecting took too long.
    #[error("connect timed out")]
    Timeout,
    /// The HTTP/1.1 handshake failed.
    #[error("handshake: {0}")]
    Http(#[from] hyper::Error),
}

/// An idle connection and since when it is idle. Connections are boxed: they move between
/// the pool, the request and the response body, a pointer instead of a few hundred bytes.
struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

std::thread_local! {
    /// The index of the router worker thread running on this thread (0 elsewhere).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark the current thread as router worker `index`: its requests use their own slot of
/// every pool, so that a connection is only ever used by the thread that drives it.
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The kept-alive connections to one upstream, one slot per router worker thread.
pub(crate) struct Pool {
    upstream: Upstream,
    slots: Box<[Mutex<Vec<Idle>>]>,
    max_idle: usize,
    idle_timeout: Duration,
    retired: AtomicBool,
}

impl Pool {
    /// An empty pool for `upstream`.
    pub(crate) fn new(
        upstream: Upstream,
        workers: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            upstream,
            slots: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            max_idle,
            idle_timeout,
            retired: AtomicBool::new(false),
        })
    }

    /// The upstream this pool connects to.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// How many idle connections the pool holds.
    pub(crate) fn idle_count(&self) -> usize {
        self.slots.iter().map(|slot| lock(slot).len()).sum()
    }

    /// A kept-alive connection ready for a request, if one is idle.
    pub(crate) fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if now.duration_since(entry.since) >= self.idle_timeout {
                // The most recently used connection is too old: all others are older.
                idle.clear();
                return None;
            }
            if entry.conn.is_reusable() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Give back a connection whose response was read to its end (unless the pool is
    /// retired; when full, the coldest connection is closed).
    pub(crate) fn checkin(&self, conn: Box<Conn>) {
        let mut idle = self.lock();
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Open a new connection (pooled once given back with [`Pool::checkin`]).
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<Box<Conn>, ConnectError> {
        Ok(Box::new(Conn::new(self.dial(timeout).await?)))
    }

    /// An idle connection if there is one, else a new one; and whether it was reused.
    pub(crate) async fn checkout_or_connect(
        &self,
        timeout: Duration,
    ) -> Result<(Box<Conn>, bool), ConnectError> {
        match self.checkout() {
            Some(conn) => Ok((conn, true)),
            None => Ok((self.connect(timeout).await?, false)),
        }
    }

    /// Open a connection for a request that asks for a protocol upgrade: hyper's client,
    /// which hands over the connection on `101 Switching Protocols`. Never pooled.
    pub(crate) async fn connect_upgrade(
        &self,
        timeout: Duration,
    ) -> Result<UpgradeSender, ConnectError> {
        let stream = self.dial(timeout).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Connect to the upstream: its unix socket, or TCP inside its network namespace.
    async fn dial(&self, timeout: Duration) -> Result<UpstreamStream, ConnectError> {
        let stream = tokio::time::timeout(timeout, upstream_stream::dial(&self.upstream))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        Ok(stream)
    }

    /// Keep no connection from now on; close the idle ones.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        for slot in self.slots.iter() {
            let idle = std::mem::take(&mut *lock(slot));
            drop(idle);
        }
    }

    /// The idle connections of the current worker thread.
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        let index = WORKER.with(|w| w.get()) % self.slots.len();
        lock(&self.slots[index])
    }
}

fn lock(slot: &Mutex<Vec<Idle>>) -> MutexGuard<'_, Vec<Idle>> {
    // A panic while holding the lock cannot leave the Vec inconsistent.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}
