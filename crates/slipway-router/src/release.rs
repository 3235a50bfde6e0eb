//! A routed release: its upstreams (one connection pool each), its in-flight requests,
//! and its upgraded (WebSocket) connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::RouterConfig;
use crate::metrics::EnvStats;
use crate::pool::Pool;
use crate::routes::Upstream;

/// A release the router sends requests to, with the accounting a switch needs.
///
/// A request counts as in flight from the moment the router picked this release until
/// the response body was completely sent to the client (or the client went away); an
/// upgraded connection (WebSocket) counts until it is closed.
pub struct LiveRelease {
    name: String,
    pools: Vec<(String, Arc<Pool>)>,
    in_flight: AtomicUsize,
    idle: Notify,
    retired: AtomicBool,
    upgrades_closed: AtomicBool,
    close_upgrades: Notify,
    stats: Arc<EnvStats>,
}

impl std::fmt::Debug for LiveRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRelease")
            .field("name", &self.name)
            .field("upstreams", &self.upstreams())
            .field("in_flight", &self.in_flight())
            .field("retired", &self.is_retired())
            .finish()
    }
}

impl LiveRelease {
    /// A new release with an empty pool per upstream.
    #[cfg(test)]
    pub(crate) fn new(
        name: String,
        upstreams: &[(String, Upstream)],
        config: &RouterConfig,
    ) -> Arc<LiveRelease> {
        LiveRelease::with_stats(name, upstreams, config, Arc::default())
    }

    /// A new release with an empty pool per upstream, counting its requests in `stats`
    /// (its environment's).
    pub(crate) fn with_stats(
        name: String,
        upstreams: &[(String, Upstream)],
        config: &RouterConfig,
        stats: Arc<EnvStats>,
    ) -> Arc<LiveRelease> {
        Arc::new(LiveRelease {
            stats,
            name,
            pools: upstreams
                .iter()
                .map(|(app, up)| {
                    (
                        app.clone(),
                        Pool::new(
                            up.clone(),
                            // A slot per worker of the HTTP and of the HTTPS listener.
                            config.worker_count() * 2,
                            config.pool_max_idle,
                            config.pool_idle_timeout,
                        ),
                    )
                })
                .collect(),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            retired: AtomicBool::new(false),
            upgrades_closed: AtomicBool::new(false),
            close_upgrades: Notify::new(),
        })
    }

    /// The request counters of the release's environment.
    pub(crate) fn stats(&self) -> &Arc<EnvStats> {
        &self.stats
    }

    /// The release's name (as given in [`crate::EnvRoutes::release`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The release's upstreams, in the order they were given.
    pub fn upstreams(&self) -> Vec<Upstream> {
        self.pools
            .iter()
            .map(|(_, p)| p.upstream().clone())
            .collect()
    }

    /// The upstream of app `app`.
    pub fn upstream_of(&self, app: &str) -> Option<&Upstream> {
        self.pools
            .iter()
            .find(|(name, _)| name == app)
            .map(|(_, p)| p.upstream())
    }

    /// How many kept-alive upstream connections are idle in the release's pools.
    pub fn idle_connections(&self) -> usize {
        self.pools.iter().map(|(_, p)| p.idle_count()).sum()
    }

    /// Whether the upstreams equal `upstreams` (same apps, same places).
    pub(crate) fn same_upstreams(&self, upstreams: &[(String, Upstream)]) -> bool {
        self.pools.len() == upstreams.len()
            && self
                .pools
                .iter()
                .zip(upstreams)
                .all(|((a, p), (b, u))| a == b && p.upstream() == u)
    }

    /// The index of app `app` among the pools.
    pub(crate) fn index_of(&self, app: &str) -> Option<usize> {
        self.pools.iter().position(|(name, _)| name == app)
    }

    /// The pool at `index`.
    pub(crate) fn pool(&self, index: usize) -> Option<&Arc<Pool>> {
        self.pools.get(index).map(|(_, p)| p)
    }

    /// How many requests (and upgraded connections) are currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether the router switched away from this release (it gets no new requests).
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::SeqCst)
    }

    /// Wait until nothing is in flight on this release, or `timeout` passes.
    /// Returns true if the release drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking the counter so that a release between the check
            // and the wait is not missed.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Close the upgraded (WebSocket) connections of this release: both sides get an
    /// orderly end of stream. Call it when the drain timeout passed, before stopping
    /// the release. Upgrades that start later are closed at once.
    pub fn close_upgrades(&self) {
        self.upgrades_closed.store(true, Ordering::SeqCst);
        self.close_upgrades.notify_waiters();
    }

    /// Resolves once [`LiveRelease::close_upgrades`] was called.
    pub(crate) async fn upgrades_closing(&self) {
        loop {
            let notified = self.close_upgrades.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.upgrades_closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Stop giving this release new requests: mark it retired and close its idle
    /// upstream connections; busy ones close after their current request.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        for (_, pool) in &self.pools {
            pool.retire();
        }
    }

    /// Count one more request in flight; the returned guard counts it out when dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            release: Arc::clone(self),
        }
    }
}

/// Holds one in-flight request on a [`LiveRelease`]; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    release: Arc<LiveRelease>,
}

impl InFlightGuard {
    /// The release this guard counts on.
    pub(crate) fn release(&self) -> &Arc<LiveRelease> {
        &self.release
    }

    /// The request counters of the release's environment.
    pub(crate) fn stats(&self) -> &Arc<EnvStats> {
        &self.release.stats
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.release.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.release.idle.notify_waiters();
        }
    }
}
