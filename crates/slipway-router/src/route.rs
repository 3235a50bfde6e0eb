//! A routed upstream and its in-flight request accounting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Where a release answers: `127.0.0.1:port` inside the network namespace at `netns`
/// (`None` = the host namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// An identifier of the release, used in logs only.
    pub release: String,
    /// Path of the network namespace file (e.g. `/run/netns/NAME`); `None` for the host.
    pub netns: Option<PathBuf>,
    /// TCP port the release listens on, on 127.0.0.1.
    pub port: u16,
}

/// A routed upstream plus its in-flight request counter.
///
/// A request counts as in flight from the moment the router picked this route until the
/// response body was completely sent to the client (or the client went away).
#[derive(Debug)]
pub struct Route {
    upstream: Upstream,
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Route {
    /// A new route with no request in flight.
    pub(crate) fn new(upstream: Upstream) -> Arc<Route> {
        Arc::new(Route {
            upstream,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        })
    }

    /// The upstream this route sends requests to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// How many requests are currently in flight on this route.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Wait until no request is in flight on this route, or `timeout` passes.
    /// Returns true if the route drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Register before checking the counter so a release between the check and the
            // wait is not missed.
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Count one more request in flight; the returned guard counts it out when dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            route: Arc::clone(self),
        }
    }
}

/// Holds one in-flight request on a [`Route`]; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct InFlightGuard {
    route: Arc<Route>,
}

impl InFlightGuard {
    /// The route this guard counts on.
    pub(crate) fn route(&self) -> &Arc<Route> {
        &self.route
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.route.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.route.idle.notify_waiters();
        }
    }
}
