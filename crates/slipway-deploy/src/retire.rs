//! Phase **retire**: the old release keeps its containers until its in-flight
//! requests finished (or the drain timeout passed), then they stop. Runs in
//! the background so the push ends as soon as the new release is live.
//!
//! Its kept-alive upstream connections were closed by the switch (each after
//! its current request). Upgraded connections (WebSockets) stay open until the
//! drain timeout ends; then the router closes them in order, and the
//! containers stop.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slipway_router::LiveRelease;

use crate::environment::ReleaseSpec;
use crate::Platform;

/// How long closed upgraded connections may take to end before the containers stop.
const UPGRADE_CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Milliseconds a retired release's containers wait, after its drain, before they stop:
/// zero, except in a server that handed its sockets over to a new one (a graceful
/// upgrade). There a deploy that completes during the drain makes its release live in
/// the state, and the new server, which serves the requests now, needs a moment to route
/// it ([`crate::restore::follow`]) before the old release's containers go.
static REMOVAL_DELAY_MS: AtomicU64 = AtomicU64::new(0);

/// From now on, wait `delay` more before stopping a retired release's containers (see
/// `REMOVAL_DELAY_MS`).
pub fn delay_removals(delay: Duration) {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    REMOVAL_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// How many retirements started by [`spawn`] run now: the old server of an upgrade waits
/// for them ([`wait_idle`]) before it exits, so that the release a deploy completing
/// while it drained replaced stops too, instead of running on with nobody to stop it.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// One retirement, counted in [`RUNNING`] while it lives.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Retire `old` (the spec of the release that was live) after draining `release`.
pub fn spawn(platform: Arc<Platform>, old: ReleaseSpec, release: Option<Arc<LiveRelease>>) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let counted = Counted;
    tokio::spawn(async move {
        let _counted = counted;
        run(&platform, old, release).await
    });
}

/// Wait until no retirement started by [`spawn`] runs, at most `within`; returns how
/// many still run.
pub async fn wait_idle(within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let running = RUNNING.load(Ordering::Acquire);
        if running == 0 || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retire `old` after draining `release`, and return once its containers stopped.
pub async fn run(platform: &Platform, old: ReleaseSpec, release: Option<Arc<LiveRelease>>) {
    if let Some(release) = release {
        drain(&release, platform.settings().drain_timeout).await;
    }
    let delay = REMOVAL_DELAY_MS.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    crate::provision::remove_release(platform, &old, Duration::from_secs(3)).await;
}

/// Wait for `release`'s in-flight requests to finish, at most `timeout`; then close its
/// upgraded connections. Returns whether everything ended in time.
pub async fn drain(release: &LiveRelease, timeout: Duration) -> bool {
    if release.drained(timeout).await {
        return true;
    }
    tracing::info!(
        release = release.name(),
        in_flight = release.in_flight(),
        "drain timeout: closing what is left"
    );
    release.close_upgrades();
    let done = release.drained(UPGRADE_CLOSE_GRACE).await;
    if !done {
        tracing::warn!(
            release = release.name(),
            "drain timeout: {} request(s) still in flight",
            release.in_flight()
        );
    }
    done
}
