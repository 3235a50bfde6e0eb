//! Phase **retire**: the old release keeps its containers until its in-flight
//! requests finished (or the drain timeout passed), then they stop. Runs in
//! the background so the push ends as soon as the new release is live.

use std::sync::Arc;

use slipway_router::Route;

use crate::environment::ReleaseSpec;
use crate::Platform;

/// Retire `old` (the spec of the release that was live) after draining `route`.
pub fn spawn(platform: Arc<Platform>, old: ReleaseSpec, route: Option<Arc<Route>>) {
    tokio::spawn(async move {
        if let Some(route) = route {
            let timeout = platform.settings().drain_timeout;
            if !route.drained(timeout).await {
                tracing::warn!(
                    release = %route.upstream().release,
                    "drain timeout: {} request(s) still in flight", route.in_flight()
                );
            }
        }
        crate::provision::remove_release(&platform, &old, std::time::Duration::from_secs(3)).await;
    });
}
