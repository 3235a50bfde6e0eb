//! Phase **retire**: the old release keeps its containers until its in-flight
//! requests finished (or the drain timeout passed), then they stop. Runs in
//! the background so the push ends as soon as the new release is live.
//!
//! Its kept-alive upstream connections were closed by the switch (each after
//! its current request). Upgraded connections (WebSockets) stay open until the
//! drain timeout ends; then the router closes them in order, and the
//! containers stop.
//!
//! In a graceful upgrade the containers of a release retired here are stopped by the
//! server that routed it last ([`Stopper`]): once this server handed its sockets to a
//! new one, which may route the release still (and call its apps through their
//! relationship addresses), a retirement here drains what this server sends the release
//! and then leaves it to the new server, naming it ([`hand_over`]); the new server drains
//! its own requests to it and stops it once this server exited
//! ([`crate::restore::retire_for_old_server`]). No timed wait decides when.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use slipway_router::LiveRelease;
use tokio::sync::watch;

use crate::environment::ReleaseSpec;
use crate::Platform;

/// How long closed upgraded connections may take to end before the containers stop.
const UPGRADE_CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Who stops the containers of a release retired in this server, once they drained here.
#[derive(Clone)]
enum Stopper {
    /// This server: no upgrade is under way.
    Here,
    /// Not known yet: this server handed its sockets to a new one, which restores and
    /// then says `ready` (it stops them: [`Stopper::Successor`]) or fails (this server
    /// does: [`Stopper::Here`]).
    Undecided,
    /// The new server of an upgrade, told each release's id; it stops them once this
    /// server exited.
    Successor(Arc<dyn Fn(i64) + Send + Sync>),
}

/// Who stops retired releases now (see [`Stopper`]).
static STOPPER: LazyLock<watch::Sender<Stopper>> =
    LazyLock::new(|| watch::Sender::new(Stopper::Here));

/// This server handed its listening sockets to a new server, which restores now: until
/// that one is ready ([`hand_over`]) or failed ([`stop_here`]), retirements that drained
/// wait before stopping anything, as the new server may route their release.
pub fn handing_over() {
    STOPPER.send_replace(Stopper::Undecided);
}

/// The new server of an upgrade serves: every release retired here from now on (and any
/// that waited for the upgrade's outcome) is left to it once it drained here, and `tell`
/// names it (its release id) to the new server.
pub fn hand_over(tell: impl Fn(i64) + Send + Sync + 'static) {
    STOPPER.send_replace(Stopper::Successor(Arc::new(tell)));
}

/// The upgrade failed: this server stops the releases it retires again.
pub fn stop_here() {
    STOPPER.send_replace(Stopper::Here);
}

/// Who stops a release retired now, once the upgrade under way (if any) is decided.
async fn stopper() -> Stopper {
    let mut decided = STOPPER.subscribe();
    decided
        .wait_for(|s| !matches!(s, Stopper::Undecided))
        .await
        .map(|s| s.clone())
        // The sender is a static, never dropped.
        .unwrap_or(Stopper::Here)
}

/// How many retirements started by [`spawn`] run now: the old server of an upgrade waits
/// for them ([`wait_idle`]) before it exits, so that what it still sends a release it
/// retired has drained before it leaves that release to the new server.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// One retirement, counted in [`RUNNING`] while it lives.
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Retire `old` (the spec of release `id`, which was live) after draining `release`.
pub fn spawn(
    platform: Arc<Platform>,
    id: i64,
    old: ReleaseSpec,
    release: Option<Arc<LiveRelease>>,
) {
    RUNNING.fetch_add(1, Ordering::AcqRel);
    let counted = Counted;
    tokio::spawn(async move {
        let _counted = counted;
        run(&platform, id, old, release).await
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

/// Retire `old` (release `id`) after draining `release`: once its requests here and the
/// calls under way on its relationship addresses here finished, stop its containers, or,
/// when this server handed over to a new one, leave them to that one ([`Stopper`]).
/// Returns once that is done.
pub async fn run(
    platform: &Platform,
    id: i64,
    old: ReleaseSpec,
    release: Option<Arc<LiveRelease>>,
) {
    if let Some(release) = release {
        drain(&release, platform.settings().drain_timeout).await;
    }
    crate::provision::unlisten_release(platform, &old).await;
    match stopper().await {
        Stopper::Successor(tell) => {
            tracing::info!(
                release = id,
                "retired release drained here; the new server stops it once this one exited"
            );
            tell(id);
        }
        Stopper::Here | Stopper::Undecided => {
            crate::provision::stop_release(platform, &old, Duration::from_secs(3)).await
        }
    }
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
