//! Phase **switch routes**: move the branch ref (compare-and-swap: only if it
//! still points where the push said), then swap the route table so new
//! requests go to the new release, then record it as live. The ref moves
//! first so that what the branch says is what is live; if the ref moved
//! under us, nothing is switched.

use std::sync::Arc;
use std::time::Instant;

use slipway_git::Repo;
use slipway_router::{Route, Upstream};
use slipway_state::Release;

use crate::environment::ReleaseSpec;
use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::provision::netns_path;
use crate::Platform;

/// The router key of an environment.
pub fn env_key(project: &str, env: &str) -> String {
    format!("{project}/{env}")
}

/// The upstream of a release: its routed app.
pub fn upstream(spec: &ReleaseSpec) -> Option<Upstream> {
    let app = spec
        .apps
        .iter()
        .find(|a| Some(&a.name) == spec.routed_app.as_ref())
        .or_else(|| spec.apps.first())?;
    Some(Upstream {
        release: app.container.clone(),
        netns: Some(netns_path(&spec.netns)),
        port: app.port,
    })
}

/// Point the routes of an environment at a release (no ref involved: restore, rollback).
pub fn route(platform: &Platform, project: &str, env: &str, spec: &ReleaseSpec) -> Option<Arc<Route>> {
    let up = upstream(spec)?;
    platform
        .router()
        .switch(&env_key(project, env), spec.hosts.clone(), up)
}

/// Move the ref, switch the routes, record the release as live.
/// Returns the route of the previous release, to drain.
pub fn run(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    release: &Release,
    spec: &ReleaseSpec,
    out: &Output,
) -> Result<Option<Arc<Route>>, PhaseError> {
    let t = Instant::now();
    let expected = if target.old.is_null() { None } else { Some(target.old) };
    repo.update_ref(
        &target.refname,
        expected,
        Some(target.new),
        &format!("slipway: deploy release {}", release.number),
    )
    .map_err(|e| {
        PhaseError::new(
            "switch routes",
            format!("{} changed while deploying ({e}): fetch first, then push again", target.refname),
        )
    })?;
    let old = route(platform, &target.project, &target.env, spec);
    if let Err(e) = platform.state().make_live(release) {
        // The ref and the routes are switched; the state catches up at the next start.
        tracing::error!("recording release {} as live: {e}", release.number);
    }
    out.phase_done(
        "switch routes",
        &format!("{} -> release {}", spec.hosts.join(", "), release.number),
        t,
    );
    Ok(old)
}
