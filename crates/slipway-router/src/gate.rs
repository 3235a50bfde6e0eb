//! Holding an environment's new requests while its routes are being switched.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The gate of one environment: closed while at least one [`Hold`] exists.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    holds: AtomicUsize,
    opened: Notify,
}

impl Gate {
    /// Whether requests must wait (cheap: one atomic load).
    pub(crate) fn is_closed(&self) -> bool {
        self.holds.load(Ordering::Acquire) > 0
    }

    /// Wait until the gate opens, at most `limit`. Returns false on timeout.
    pub(crate) async fn wait_open(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.opened.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_closed() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return !self.is_closed();
            }
        }
    }

    /// Close the gate until the returned hold is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        self.holds.fetch_add(1, Ordering::AcqRel);
        Hold {
            gate: Arc::clone(self),
        }
    }
}

/// While this value lives, new requests for its environment wait (up to the router's
/// `hold_timeout`) instead of being routed. Dropping it lets them go on, with the routes
/// as they are then.
#[derive(Debug)]
pub struct Hold {
    gate: Arc<Gate>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.gate.holds.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.gate.opened.notify_waiters();
        }
    }
}
