//! Pruning old activity logs while the server runs: at start, then every
//! `--activity-prune-every` seconds, the logs [`slipway_state::ActivityRetention`] does
//! not keep (`--activity-keep` newest of each environment, and all that ended within
//! `--activity-keep-days` days, are kept; running activities never go) are deleted with
//! their rows marked, in one transaction per batch ([`slipway_state::State::prune_activity_logs`]).
//! Server admins prune on demand with `activity prune` over SSH (`slipway-ssh`'s
//! `admin/activity_prune.rs`), by the same rules.

use std::sync::Arc;
use std::time::Duration;

use slipway_state::{Activity, ActivityRetention};

use crate::Platform;

/// The defaults of `slipway serve`: the newest this many activities of each environment
/// keep their logs...
pub const KEEP_NEWEST: usize = 200;
/// ...and every activity that ended less than this many days ago.
pub const KEEP_DAYS: u32 = 30;
/// How often the logs are pruned (seconds).
pub const PRUNE_EVERY: u64 = 3600;

/// Prune once now (or, with `dry_run`, only list): the activities whose logs went (or
/// would go), oldest first, or why it failed.
pub async fn prune_once(
    platform: &Arc<Platform>,
    retention: ActivityRetention,
    dry_run: bool,
) -> Result<Vec<Activity>, String> {
    let p = platform.clone();
    tokio::task::spawn_blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if dry_run {
            p.state().activity_logs_to_prune(retention, now)
        } else {
            p.state().prune_activity_logs(retention, now)
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// Prune at start and then every `every`, forever (`retention`: the server's
/// [`crate::Settings::activity_retention`]).
pub async fn prune_forever(platform: Arc<Platform>, retention: ActivityRetention, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match prune_once(&platform, retention, false).await {
            Ok(pruned) if pruned.is_empty() => {}
            Ok(pruned) => tracing::info!(
                logs = pruned.len(),
                keep = retention.keep_newest,
                keep_days = retention.keep_days,
                "old activity logs pruned"
            ),
            Err(e) => tracing::warn!("pruning activity logs: {e}"),
        }
    }
}
