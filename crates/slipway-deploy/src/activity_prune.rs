//! Pruning old activity logs while the server runs: at start, then every
//! `--activity-prune-every` seconds, the logs [`slipway_state::ActivityRetention`] does
//! not keep (`--activity-keep` newest of each environment, and all that ended within
//! `--activity-keep-days` days, are kept; running activities never go) are deleted with
//! their rows marked, in one transaction per batch ([`slipway_state::State::prune_activity_logs`]).

use std::sync::Arc;
use std::time::Duration;

use slipway_state::ActivityRetention;

use crate::Platform;

/// The defaults of `slipway serve`: the newest this many activities of each environment
/// keep their logs...
pub const KEEP_NEWEST: usize = 200;
/// ...and every activity that ended less than this many days ago.
pub const KEEP_DAYS: u32 = 30;
/// How often the logs are pruned (seconds).
pub const PRUNE_EVERY: u64 = 3600;

/// Prune once now; returns how many logs went, or why it failed.
pub async fn prune_once(
    platform: &Arc<Platform>,
    retention: ActivityRetention,
) -> Result<usize, String> {
    let p = platform.clone();
    tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        p.state().prune_activity_logs(retention, now)
    })
    .await
    .map_err(|e| e.to_string())?
    .map(|ids| ids.len())
    .map_err(|e| e.to_string())
}

/// Prune at start and then every `every`, forever.
pub async fn prune_forever(platform: Arc<Platform>, retention: ActivityRetention, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match prune_once(&platform, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                logs = n,
                keep = retention.keep_newest,
                keep_days = retention.keep_days,
                "old activity logs pruned"
            ),
            Err(e) => tracing::warn!("pruning activity logs: {e}"),
        }
    }
}
