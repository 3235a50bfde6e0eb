//! Bringing environments back at start, and `slipway down`.
//!
//! At start: activities left running are marked interrupted, containers of
//! interrupted deploys are removed, the environments' services are adopted or
//! started again (before any app), containers of live releases still running
//! are adopted (routes pointed at them at once), and live releases whose
//! containers are gone are started again from their slugs. Service containers
//! are never removed here: they belong to the environment, not to a release.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::environment::{netns_prefix, ReleaseSpec};
use crate::{health, provision, services, switch, DeployError, Platform};

/// Bring every environment that was live back up. Returns once every
/// environment is routed (or failed to come back, which is logged).
pub async fn restore(platform: &Arc<Platform>) -> Result<(), DeployError> {
    let state = platform.state();
    let n = state.abort_running_activities()?;
    if n > 0 {
        info!("{n} activit(y/ies) interrupted by the last stop marked as failed");
    }
    for r in state.pending_releases()? {
        if let Some(spec) = ReleaseSpec::from_json(&r.spec) {
            provision::remove_release(platform, &spec, std::time::Duration::from_secs(1)).await;
        }
        state.set_release_status(r.id, "failed")?;
    }
    // Services first: they outlive releases, and apps expect them to answer.
    let services = services::restore(platform).await;
    let live = state.live_releases()?;
    let mut keep: HashSet<String> = live
        .iter()
        .filter_map(|r| ReleaseSpec::from_json(&r.spec))
        .flat_map(|s| s.apps.into_iter().map(|a| a.container))
        .collect();
    keep.extend(services);
    for c in platform.runtime().list().await? {
        if !keep.contains(&c.id) {
            info!(container = %c.id, "removing a container no live release or service needs");
            let _ = platform
                .runtime()
                .remove(&c.id, Duration::from_secs(5))
                .await;
        }
    }
    let mut tasks = Vec::new();
    for r in live {
        let Some(spec) = ReleaseSpec::from_json(&r.spec) else {
            warn!(project = %r.project, env = %r.environment, "release {} has no readable spec", r.number);
            continue;
        };
        let p = platform.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = bring_up(&p, &r, &spec).await {
                warn!(project = %r.project, env = %r.environment, "could not bring release {} back: {e}", r.number);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn bring_up(
    platform: &Arc<Platform>,
    release: &slipway_state::Release,
    spec: &ReleaseSpec,
) -> Result<(), String> {
    let (project, env) = (release.project.as_str(), release.environment.as_str());
    slipway_runtime::netns::ensure(&spec.netns).map_err(|e| e.to_string())?;
    let mut adopted = true;
    for app in &spec.apps {
        let running = matches!(
            platform.runtime().state(&app.container).await,
            Ok(Some(s)) if s.status == slipway_runtime::Status::Running
        );
        if !running {
            adopted = false;
            provision::start_app(platform, project, env, spec, app)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if !adopted {
        for app in &spec.apps {
            let log = platform.data().app_log(project, env, &app.name);
            health::wait_app(
                platform,
                spec,
                app,
                platform.settings().health_timeout,
                &log,
            )
            .await?;
        }
    }
    switch::route(platform, release, spec);
    info!(project, env, adopted, "environment up");
    Ok(())
}

/// Stop every container and network namespace this data dir started. Data stays.
pub async fn down(platform: &Platform) -> Result<usize, DeployError> {
    let containers = platform.runtime().list().await?;
    let n = containers.len();
    // Apps first, so no client holds a service up; then each service shuts down cleanly.
    for c in containers.iter().filter(|c| !c.id.ends_with(".service")) {
        platform
            .runtime()
            .remove(&c.id, Duration::from_secs(10))
            .await?;
    }
    services::stop_all(platform).await;
    for c in platform.runtime().list().await? {
        platform
            .runtime()
            .remove(&c.id, Duration::from_secs(10))
            .await?;
    }
    for ns in slipway_runtime::netns::list(&netns_prefix(platform.instance()))? {
        slipway_runtime::netns::delete(&ns)?;
    }
    Ok(n)
}
