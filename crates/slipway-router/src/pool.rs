//! A pool of kept-alive HTTP/1.1 connections to one upstream (one app of one release).
//!
//! Idle connections are kept LIFO (the warmest first) up to a limit, and dropped when they
//! were idle longer than the pool's idle timeout (shorter than the usual keep-alive
//! timeouts of app servers, so the app rarely closes one just as it is reused). A retired
//! pool keeps no connection: each is closed once its current request is done.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use crate::netns;
use crate::routes::Upstream;

/// The body of a request sent upstream: the client's, streamed, or none.
pub(crate) enum ReqBody {
    /// The client's request body, streamed as it arrives.
    Stream(Incoming),
    /// No body (a retried bodiless request).
    Empty,
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Stream(body) => Pin::new(body).poll_frame(cx),
            ReqBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Stream(body) => body.is_end_stream(),
            ReqBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Stream(body) => body.size_hint(),
            ReqBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// The sending half of an upstream connection.
pub(crate) type Sender = SendRequest<ReqBody>;

/// Why no connection to an upstream could be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    /// TCP connect took too long.
    #[error("connect timed out")]
    Timeout,
    /// The HTTP/1.1 handshake failed.
    #[error("handshake: {0}")]
    Http(#[from] hyper::Error),
}

struct Idle {
    sender: Sender,
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
            slots: (0..workers.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
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
    pub(crate) fn checkout(&self) -> Option<Sender> {
        let now = Instant::now();
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if conn.sender.is_closed() || !conn.sender.is_ready() {
                continue;
            }
            if now.duration_since(conn.since) >= self.idle_timeout {
                // The most recently used connection is too old: all others are older.
                idle.clear();
                return None;
            }
            return Some(conn.sender);
        }
        None
    }

    /// Give back a connection whose response was completely read. It joins the pool once
    /// it is ready for the next request (unless the pool is retired or full).
    pub(crate) fn checkin(self: &Arc<Self>, mut sender: Sender) {
        if self.retired.load(Ordering::Acquire) || sender.is_closed() {
            return;
        }
        if sender.is_ready() {
            self.put(sender);
            return;
        }
        // The connection task has not yet noticed that the response ended: wait for it,
        // briefly, off the request's path.
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(Ok(())) =
                tokio::time::timeout(Duration::from_secs(5), sender.ready()).await
            {
                pool.put(sender);
            }
        });
    }

    fn put(&self, sender: Sender) {
        let mut idle = self.lock();
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        if idle.len() >= self.max_idle {
            // Drop the coldest one.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Open a new connection (not pooled until [`Pool::checkin`]). With `upgrades`, the
    /// connection can be taken over by a protocol upgrade (and is never pooled).
    pub(crate) async fn connect(&self, timeout: Duration, upgrades: bool) -> Result<Sender, ConnectError> {
        let stream = tokio::time::timeout(
            timeout,
            netns::connect(self.upstream.netns.as_deref(), self.upstream.port),
        )
        .await
        .map_err(|_| ConnectError::Timeout)??;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        if upgrades {
            tokio::spawn(async move {
                if let Err(err) = conn.with_upgrades().await {
                    tracing::debug!(error = %err, "upstream connection ended with an error");
                }
            });
        } else {
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(error = %err, "upstream connection ended with an error");
                }
            });
        }
        Ok(sender)
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
