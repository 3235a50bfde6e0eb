//! Bringing environments back at start, and `slipway down`.
//!
//! A start restores in two steps:
//!
//! 1. [`hold_live_routes`], before the router and the SSH endpoint accept: every
//!    environment with a live release gets its hosts in the route table, held (as
//!    during a switch), so that a request for a live site waits instead of being
//!    answered "nothing is deployed here". After a stop or a crash, activities left
//!    running are marked interrupted and the releases left pending are noted. A few
//!    state queries; no container is looked at.
//! 2. [`restore`]: with one `runc list` for all containers, the containers of live
//!    releases still running are adopted (routes pointed at them at once) and live
//!    releases whose containers are gone are started again from their slugs, all
//!    environments in parallel; each environment's hold is released as soon as it is
//!    routed (or failed to come back: then its hosts answer 503, never 404). After a
//!    stop or a crash ([`RestoreMode::Start`]), the releases noted in step 1 and the
//!    containers no live release needs are removed once the live ones are routed
//!    (never those of a push that started since). During a graceful upgrade
//!    ([`RestoreMode::Upgrade`]) the old server still runs its pushes: nothing is
//!    cleaned up, containers are only adopted; [`follow`] then routes what the old
//!    server's deploys make live, and once it exited [`retire_for_old_server`] retires
//!    the releases those replaced.
//!
//! Services belong to the environment, not to a release: step 2 first adopts every
//! service still running and starts the others (before any app), and their containers
//! are never removed as leftovers.
//!
//! Workers of live releases are adopted or started again like apps (never removed as
//! orphans), after their environment is routed.
//!
//! Volumes: step 1 thaws any volume an interrupted copy left frozen and settles the volume
//! shrinks a stop left pending ([`crate::volume_shrink::recover`]); starting a release
//! mounts its volumes again first (mounting is idempotent: after a restart they are still
//! mounted, after a reboot not); `down` unmounts them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::environment::{netns_prefix, ReleaseSpec};
use crate::release_record;
use crate::switch::env_key;
use crate::{health, provision, services, switch, DeployError, Platform};
use slipway_router::LiveRelease;

/// Why the server starts: what [`restore`] may clean up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// After a stop or a crash: no other server runs on the data dir.
    Start,
    /// A graceful upgrade: the old server still runs (and may be deploying).
    Upgrade,
}

/// A live environment whose routes are held until it is restored.
pub struct Restoring {
    release: slipway_state::Release,
    spec: ReleaseSpec,
    hold: slipway_router::Hold,
}

impl Restoring {
    /// The router key of the environment (`PROJECT/ENV`).
    pub fn env(&self) -> String {
        env_key(&self.release.project, &self.release.environment)
    }
}

/// What a start found before accepting: the environments to restore, their routes
/// held, and (after a stop or a crash) the releases an interrupted deploy left pending.
pub struct Held {
    envs: Vec<Restoring>,
    interrupted: Vec<slipway_state::Release>,
}

/// Step one of a start, before the router and the SSH endpoint accept: put the hosts of
/// every live environment in the route table, held, so that their requests wait for
/// [`restore`]; after a stop or a crash ([`RestoreMode::Start`]) also mark the
/// activities the last run left running as interrupted, and note the releases it left
/// pending, so that what a push starts once the server accepts is never taken for a
/// leftover. A live release whose spec cannot be read is logged and left out (its hosts
/// answer 404, as nothing can be routed for it).
pub fn hold_live_routes(platform: &Platform, mode: RestoreMode) -> Result<Held, DeployError> {
    let router = platform.router();
    let state = platform.state();
    let mut interrupted = Vec::new();
    if mode == RestoreMode::Start {
        match platform.data().volumes().thaw_all() {
            Ok(0) => {}
            Ok(n) => warn!("{n} volume(s) left frozen by an interrupted copy thawed"),
            Err(e) => warn!("thawing volumes: {e}"),
        }
        // Before any container starts: staging mounts of mount folders a crash left pinned.
        if let Err(e) = platform.runtime().unpin_stale() {
            warn!("removing pinned bind sources: {e}");
        }
        // Before any container starts on them: volume shrinks a stop or crash interrupted.
        let settled = crate::volume_shrink::recover(platform);
        if settled > 0 {
            info!("{settled} volume shrink(s) left by the last stop finished or undone");
        }
        let n = state.abort_running_activities()?;
        if n > 0 {
            info!("{n} activit(y/ies) interrupted by the last stop marked as failed");
        }
        interrupted = state.pending_releases()?;
    }
    let mut held = Vec::new();
    for release in platform.state().live_releases()? {
        let (spec, topology) = match release_record::spec_of(&release)
            .and_then(|spec| Ok((spec, release_record::topology_of(&release)?)))
        {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(project = %release.project, env = %release.environment, "not restored: {e}");
                continue;
            }
        };
        let (project, env) = (release.project.as_str(), release.environment.as_str());
        let hosts = switch::hosts(platform, project, env, &topology);
        let key = env_key(project, env);
        let hold = router.hold(&key);
        router.set_deploying(&key, hosts);
        held.push(Restoring {
            release,
            spec,
            hold,
        });
    }
    Ok(Held {
        envs: held,
        interrupted,
    })
}

/// Step two: bring every held environment back up (see the module doc). Returns once
/// every environment is routed (or failed to come back, which is logged).
pub async fn restore(
    platform: &Arc<Platform>,
    held: Held,
    mode: RestoreMode,
) -> Result<(), DeployError> {
    let started = std::time::Instant::now();
    let Held {
        envs: held,
        interrupted,
    } = held;
    let environments = held.len();
    let state = platform.state();
    // The versions imported into the server's stacks, before any service made on one
    // looks its stack up ([`crate::services::stack::catalog_stack`]).
    if let Err(e) = platform.stack_store() {
        warn!("reading the server's stacks: {e}");
    }
    // One `runc list` for every container, instead of one `runc state` per container.
    let containers: HashMap<String, slipway_runtime::Status> = platform
        .runtime()
        .list()
        .await?
        .into_iter()
        .map(|c| (c.id, c.status))
        .collect();
    let listed = started.elapsed();
    let running: Arc<HashSet<String>> = Arc::new(
        containers
            .iter()
            .filter(|(_, s)| **s == slipway_runtime::Status::Running)
            .map(|(id, _)| id.clone())
            .collect(),
    );
    // Services first: they outlive releases, and apps expect them to answer.
    let services = services::restore(platform, &running).await;
    let mut keep: HashSet<String> = held.iter().flat_map(|r| containers_of(&r.spec)).collect();
    keep.extend(services);
    let mut tasks = Vec::new();
    for r in held {
        let p = platform.clone();
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let Restoring {
                release,
                spec,
                hold,
            } = r;
            if let Err(e) = bring_up(&p, &release, &spec, &running).await {
                warn!(project = %release.project, env = %release.environment, "could not bring release {} back: {e}", release.number);
            }
            drop(hold);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    info!(
        environments,
        ms = started.elapsed().as_millis() as u64,
        containers_listed_ms = listed.as_millis() as u64,
        "every environment restored"
    );
    if mode == RestoreMode::Start {
        let interrupted_ids: HashSet<i64> = interrupted.iter().map(|r| r.id).collect();
        for r in interrupted {
            match release_record::spec_of(&r) {
                Ok(spec) => {
                    provision::remove_release(platform, &spec, Duration::from_secs(1)).await
                }
                Err(e) => warn!("its containers are left as they are: {e}"),
            }
            state.set_release_status(r.id, "failed")?;
        }
        // Containers of deploys started since this server accepts are no leftovers.
        let deploying: HashSet<String> = state
            .pending_releases()?
            .iter()
            .filter(|r| !interrupted_ids.contains(&r.id))
            .filter_map(|r| {
                release_record::spec_of(r)
                    .map_err(|e| warn!("its containers count as leftovers: {e}"))
                    .ok()
            })
            .flat_map(|s| containers_of(&s))
            .collect();
        for id in containers
            .keys()
            .filter(|id| !keep.contains(*id) && !deploying.contains(*id))
        {
            info!(container = %id, "removing a container no live release needs");
            let _ = platform.runtime().remove(id, Duration::from_secs(5)).await;
        }
        crate::sockets::remove_leftovers(&platform.data().app_sockets(), |id| {
            keep.contains(id) || deploying.contains(id)
        });
        let removed = crate::env_volumes::finish_removals(platform).await;
        if removed > 0 {
            info!("the volumes of {removed} deleted environment(s) a stop left removed");
        }
    }
    // Disks of builds a dead server left; an upgrade leaves the old server's own (locked)
    // and those it cannot tell from them (made before build locks).
    let data = platform.data().clone();
    let unlocked_too = mode == RestoreMode::Start;
    match tokio::task::spawn_blocking(move || crate::build_disk::sweep_builds(&data, unlocked_too))
        .await
    {
        Ok(Ok(ids)) if !ids.is_empty() => {
            info!(builds = ?ids, "removed the disks of builds a stopped or killed server left")
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => warn!("disks of builds a stopped or killed server left: {e}"),
        Err(e) => warn!("disks of builds a stopped or killed server left: {e}"),
    }
    Ok(())
}

/// The container ids of a release: its apps' and its workers'.
fn containers_of(spec: &ReleaseSpec) -> Vec<String> {
    let workers = spec.workers.iter().map(|w| &w.instance);
    spec.apps
        .iter()
        .chain(workers)
        .map(|a| a.container.clone())
        .collect()
}

/// Start what of a live release does not run (`running`: the containers running now),
/// wait until it answers, and route to it.
pub(crate) async fn bring_up(
    platform: &Arc<Platform>,
    release: &slipway_state::Release,
    spec: &ReleaseSpec,
    running: &HashSet<String>,
) -> Result<(), String> {
    let (project, env) = (release.project.as_str(), release.environment.as_str());
    // A release built on the host's root (before stacks, or under --unsafe-host-root) is
    // neither adopted nor started when apps run on stacks.
    if platform.settings().stacks.is_some() {
        if let Some(app) = spec.apps.iter().find(|a| a.stack_root.is_none()) {
            for a in spec
                .apps
                .iter()
                .chain(spec.workers.iter().map(|w| &w.instance))
            {
                let _ = platform
                    .runtime()
                    .remove(&a.container, std::time::Duration::from_secs(2))
                    .await;
            }
            return Err(format!(
                "{} was built on the host's root, not on a stack: stopped; push again to build it on the stack its type names",
                app.name
            ));
        }
    }
    let adopted = spec.apps.iter().all(|a| running.contains(&a.container));
    // Running containers keep their namespace alive, but this server's egress proxy
    // listens in it anew.
    platform.env_network(&spec.netns).await?;
    if !adopted {
        for app in spec.apps.iter().filter(|a| !running.contains(&a.container)) {
            provision::start_app(platform, project, env, spec, app)
                .await
                .map_err(|e| e.to_string())?;
        }
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
    provision::listen_related(platform, release, spec).await?;
    switch::route(platform, release, spec);
    // Workers: adopted when running, started again otherwise (their supervisor restarts
    // their command from then on).
    for w in spec
        .workers
        .iter()
        .filter(|w| !running.contains(&w.instance.container))
    {
        provision::start_app(platform, project, env, spec, &w.instance)
            .await
            .map_err(|e| e.to_string())?;
    }
    info!(project, env, adopted, "environment up");
    Ok(())
}

/// A release that a deploy completing in the old server of an upgrade replaced, which this
/// server routed until [`follow`] routed the new one: its routes here, to drain.
pub struct Replaced {
    release: slipway_state::Release,
    routed: Option<Arc<LiveRelease>>,
}

/// During a graceful upgrade, while the old server drains: route the releases that its
/// running deploys make live (it records them in the state), so that this server, which
/// now gets the requests, sends them to the new release. Checks every 100 ms; resolves
/// when `until` does, after one last pass, with `until`'s output and the releases it
/// replaced so, which this server retires once the old one exited
/// ([`retire_for_old_server`]).
pub async fn follow<T>(
    platform: &Arc<Platform>,
    until: impl std::future::Future<Output = T>,
) -> (T, Vec<Replaced>) {
    tokio::pin!(until);
    let mut replaced = Vec::new();
    loop {
        let done = tokio::select! {
            out = &mut until => Some(out),
            () = tokio::time::sleep(Duration::from_millis(100)) => None,
        };
        if let Err(e) = follow_once(platform, &mut replaced).await {
            warn!("following the old server's deploys: {e}");
        }
        if let Some(out) = done {
            return (out, replaced);
        }
    }
}

/// Route every live release newer than the one the router has for its environment;
/// what it replaces goes to `replaced`.
async fn follow_once(
    platform: &Arc<Platform>,
    replaced: &mut Vec<Replaced>,
) -> Result<(), DeployError> {
    for release in platform.state().live_releases()? {
        let key = env_key(&release.project, &release.environment);
        // Only newer: a deploy of this server may have switched its routes already and
        // not yet recorded its release as live.
        let routed = platform
            .router()
            .current(&key)
            .and_then(|r| r.name().strip_prefix("release ")?.parse::<i64>().ok());
        if routed.is_some_and(|n| n >= release.number) {
            continue;
        }
        let spec = match release_record::spec_of(&release) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(project = %release.project, env = %release.environment, "not routed: {e}");
                continue;
            }
        };
        info!(project = %release.project, env = %release.environment, "routing release {} made live by the old server", release.number);
        // Its apps' relationship addresses too: the old server's listeners close when it
        // stops.
        if let Err(e) = provision::listen_related(platform, &release, &spec).await {
            warn!(project = %release.project, env = %release.environment, "relationship addresses of release {}: {e}", release.number);
        }
        let routes = switch::route(platform, &release, &spec);
        let previous = match routed {
            Some(n) => {
                platform
                    .state()
                    .release_by_number(&release.project, &release.environment, n)?
            }
            None => None,
        };
        if let Some(previous) = previous {
            replaced.push(Replaced {
                release: previous,
                routed: routes,
            });
        }
    }
    Ok(())
}

/// Once the old server of an upgrade exited: retire, as a deploy's retire phase does
/// ([`crate::retire::spawn`]: drain, then stop), every release its deploys replaced
/// (`replaced`, which this server routed until [`follow`] moved their routes on) and every
/// release it retired and left to this server (`left`, release ids: it drained what it
/// sent them and stopped no container, [`crate::retire::hand_over`]). The old server is
/// gone, so nothing but this server's own requests and relationship calls can still use
/// them. A release named twice is retired once; one the state says is live is left alone.
/// The routes of an environment the old server deleted (its branch) go too, drained first.
pub fn retire_for_old_server(platform: &Arc<Platform>, replaced: Vec<Replaced>, left: Vec<i64>) {
    let mut routes: HashMap<i64, Arc<LiveRelease>> = HashMap::new();
    let mut ids = Vec::new();
    for r in replaced {
        if let Some(routed) = r.routed {
            routes.insert(r.release.id, routed);
        }
        ids.push(r.release.id);
    }
    ids.extend(left);
    let mut seen = HashSet::new();
    for id in ids.into_iter().filter(|id| seen.insert(*id)) {
        let release = match platform.state().release(id) {
            Ok(Some(release)) => release,
            Ok(None) => {
                warn!(
                    release = id,
                    "the old server left a release the state does not know"
                );
                continue;
            }
            Err(e) => {
                warn!(release = id, "a release the old server left: {e}");
                continue;
            }
        };
        if release.status == "live" {
            continue;
        }
        let spec = match release_record::spec_of(&release) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(project = %release.project, env = %release.environment, "release {} left running: {e}", release.number);
                continue;
            }
        };
        let mut routed = routes.remove(&id);
        if routed.is_none() {
            routed = unroute_deleted(platform, &release);
        }
        info!(project = %release.project, env = %release.environment, "retiring release {} for the old server, which exited", release.number);
        crate::retire::spawn(Arc::clone(platform), id, spec, routed);
    }
}

/// The routes of `release`'s environment, taken out of the router, if the router routes
/// that release and the environment has no live release any more (the old server deleted
/// its branch).
fn unroute_deleted(
    platform: &Platform,
    release: &slipway_state::Release,
) -> Option<Arc<LiveRelease>> {
    let key = env_key(&release.project, &release.environment);
    let name = format!("release {}", release.number);
    if platform.router().current(&key)?.name() != name {
        return None;
    }
    match platform
        .state()
        .environment(&release.project, &release.environment)
    {
        Ok(Some(e)) if e.current_release.is_some() => None,
        Ok(_) => platform.router().remove(&key),
        Err(e) => {
            warn!(project = %release.project, env = %release.environment, "its routes stay: {e}");
            None
        }
    }
}

/// Stop every container and network namespace this data dir started, and unmount its
/// volumes and its containers' socket folders. Data stays.
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
        platform.forget_env_network(&ns);
        slipway_runtime::netns::delete(&ns)?;
    }
    crate::sockets::remove_leftovers(&platform.data().app_sockets(), |_| false);
    platform.data().volumes().unmount_all()?;
    Ok(n)
}
