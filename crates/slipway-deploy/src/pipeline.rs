//! The deploy pipeline: one environment to one commit, phase after phase.
//!
//! validate -> diff -> build (+ slug) -> provision (services, volumes, containers) -> deploy
//! hook -> health check -> switch routes -> post_deploy -> retire; a failure names one of
//! [`PHASES`]. Until the switch, nothing of the
//! running cluster or its routes is touched; a failure on the way removes
//! every container the attempt started and every service it added, removes an
//! environment that never went live ([`crate::unborn`]), and leaves the branch where it
//! was.

use std::sync::Arc;
use std::time::Instant;

use slipway_git::{ObjectId, Repo};
use tracing::{info, info_span, Instrument};

use crate::environment::ReleaseSpec;
use crate::output::{format_duration, Output};
use crate::release_record::{self, ReleaseRecordError};
use crate::{build, diff, health, hooks, provision, retire, services, switch, validate, Platform};

/// Why a deploy failed: the phase and a one-line reason. Shown to the pusher
/// as `! [remote rejected] BRANCH -> BRANCH (<phase> failed: <reason>)`.
#[derive(Debug, Clone)]
pub struct PhaseError {
    /// The phase that failed.
    pub phase: &'static str,
    /// Why.
    pub reason: String,
    /// Whether the refusal asks the pusher to set something on the server (a variable of
    /// the environment) before pushing again: a first push refused so keeps its project,
    /// where that is set ([`crate::unborn`]).
    pub awaits_input: bool,
}

/// The phases of spec section 5, the only ones a rejection names.
pub const PHASES: &[&str] = &[
    "validate",
    "diff",
    "build",
    "provision",
    "deploy hook",
    "health check",
    "switch routes",
    "post_deploy",
];

impl PhaseError {
    /// A failure of `phase`, one of [`PHASES`].
    pub fn new(phase: &'static str, reason: impl Into<String>) -> PhaseError {
        debug_assert!(
            PHASES.contains(&phase),
            "`{phase}` is not a phase of a push"
        );
        PhaseError {
            phase,
            reason: reason.into(),
            awaits_input: false,
        }
    }

    /// A refusal of `phase` that asks the pusher to set something on the server first
    /// ([`PhaseError::awaits_input`]).
    pub fn awaiting_input(phase: &'static str, reason: impl Into<String>) -> PhaseError {
        PhaseError {
            awaits_input: true,
            ..PhaseError::new(phase, reason)
        }
    }
}

impl std::fmt::Display for PhaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.phase, self.reason)
    }
}

/// What to deploy where.
#[derive(Debug, Clone)]
pub struct DeployTarget {
    /// Project name.
    pub project: String,
    /// Environment name.
    pub env: String,
    /// Branch name.
    pub branch: String,
    /// Full ref name (`refs/heads/BRANCH`).
    pub refname: String,
    /// Where the branch pointed when the push started (null id: new branch).
    pub old: ObjectId,
    /// The commit to deploy.
    pub new: ObjectId,
    /// Push options (`git push -o KEY[=VALUE]`), e.g. `allow-service-upgrade`.
    pub options: Vec<String>,
    /// Who causes the deploy, recorded in its release.
    pub author: slipway_state::ReleaseAuthor,
}

impl DeployTarget {
    /// Whether the push carried option `name` (`-o name` or `-o name=true`).
    pub fn has_option(&self, name: &str) -> bool {
        has_option(&self.options, name)
    }
}

/// Whether push options `options` hold `name` (`-o name` or `-o name=true`).
pub fn has_option(options: &[String], name: &str) -> bool {
    options.iter().any(|o| {
        o == name || o.strip_prefix(name).and_then(|r| r.strip_prefix('=')) == Some("true")
    })
}

/// A release started beside the live one and healthy, not yet switched to.
pub struct Staged {
    /// The new release (status `pending`).
    pub release: slipway_state::Release,
    /// Its containers and ports.
    pub spec: ReleaseSpec,
    /// Its topology.
    pub topology: slipway_config::Topology,
    /// The release live now, if any.
    pub live: Option<slipway_state::Release>,
    /// When the deploy started.
    pub t0: Instant,
    /// The services this deploy added: removed again if it does not go live.
    pub added_services: Vec<services::Added>,
}

/// Deploy `target.new` to the environment. The caller holds the environment's lock.
pub async fn deploy(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    out: &Output,
) -> Result<i64, PhaseError> {
    let staged = stage_push(platform, repo, target, out).await?;
    commit(platform, repo, target, staged, out).await
}

/// validate -> diff -> build -> stage: everything of a push's deploy up to
/// the switch. The caller holds the environment's lock.
pub async fn stage_push(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    out: &Output,
) -> Result<Staged, PhaseError> {
    let span =
        info_span!("deploy", project = %target.project, env = %target.env, commit = %target.new);
    let staged = stage_push_inner(platform, repo, target, out)
        .instrument(span)
        .await;
    if staged.is_err() {
        // A refused first deploy leaves no environment.
        crate::unborn::discard_environment(platform, &target.project, &target.env, Some(out)).await;
    }
    staged
}

async fn stage_push_inner(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    out: &Output,
) -> Result<Staged, PhaseError> {
    let t0 = Instant::now();
    let state = platform.state();
    let internal = |e: slipway_state::StateError| PhaseError::new("diff", e.to_string());

    // validate
    let loaded = validate::run(platform, repo, target, out)?;
    let topology = loaded.topology;
    // A Heroku app.json: its required variables are set, its secrets made once.
    crate::app_json::check_required(platform, target, &topology, out)?;
    crate::app_json::generate_secrets(platform, target, &topology, out)?;

    // diff
    let env = state
        .ensure_environment(&target.project, &target.env, &target.branch)
        .map_err(internal)?;
    let live = match env.current_release {
        Some(id) => state.release(id).map_err(internal)?,
        None => None,
    };
    let live_topology = live
        .as_ref()
        .map(release_record::topology_of)
        .transpose()
        .map_err(|e| PhaseError::new("diff", refused_over(e)))?;
    let options = slipway_config::DiffOptions {
        allow_service_upgrade: target.has_option("allow-service-upgrade"),
        allow_data_loss: target.has_option("allow-data-loss"),
    };
    diff::run(&topology, live_topology.as_ref(), options, out)?;
    for note in
        crate::services::stack::notes(platform, &target.project, &target.env, &topology, options)
    {
        out.line(&format!("       {note}"));
    }

    // build (+ slug): the changed apps, in parallel
    let build_started = Instant::now();
    let built = build::run_all(platform, repo, target, &topology.applications, out).await;
    crate::metrics::build_ended(built.is_ok(), build_started.elapsed());
    let built = built?;

    // service upgrade: a backup, then each raised major version (or, with
    // `-o allow-data-loss`, each lowered one) by dump and restore
    if options.allow_service_upgrade || options.allow_data_loss {
        crate::backups::upgrade::run(
            platform,
            &target.project,
            &target.env,
            &topology,
            options,
            out,
        )
        .await?;
    }
    // A service whose stack changed under it (rebuilt, imported, another minor): a backup,
    // then a restart on it.
    crate::backups::upgrade::restack(platform, &target.project, &target.env, &topology, out)
        .await?;

    stage(platform, target, topology, &built, live, out, t0).await
}

/// From built apps to a live release: [`stage`] then [`commit`]. Shared by
/// rollbacks and redeploys. `live` is the release live now, if any.
#[allow(clippy::too_many_arguments)]
pub async fn activate(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    topology: &slipway_config::Topology,
    built: &[build::BuiltApp],
    live: Option<&slipway_state::Release>,
    out: &Output,
    t0: Instant,
) -> Result<i64, PhaseError> {
    let staged = stage(
        platform,
        target,
        topology.clone(),
        built,
        live.cloned(),
        out,
        t0,
    )
    .await?;
    commit(platform, repo, target, staged, out).await
}

/// provision -> deploy hook -> health: the new release runs beside the live
/// one and answers, and nothing of the live one was touched. On failure the
/// attempt's containers are removed.
#[allow(clippy::too_many_arguments)]
pub async fn stage(
    platform: &Arc<Platform>,
    target: &DeployTarget,
    topology: slipway_config::Topology,
    built: &[build::BuiltApp],
    live: Option<slipway_state::Release>,
    out: &Output,
    t0: Instant,
) -> Result<Staged, PhaseError> {
    let state = platform.state();
    let internal = |e: slipway_state::StateError| PhaseError::new("provision", e.to_string());
    let live_spec = live
        .as_ref()
        .map(release_record::spec_of)
        .transpose()
        .map_err(|e| PhaseError::new("provision", refused_over(e)))?;
    // variables: those changed since the live release (set without a redeploy) are named.
    let variables = crate::variable_changes::current(platform, &target.project, &target.env)
        .map_err(internal)?;
    if let Some(note) =
        crate::variable_changes::note(platform, &target.env, live.as_ref(), &variables)
            .map_err(internal)?
    {
        out.line(&format!("       {note}"));
    }

    // services: the topology's services run and answer before any app of it starts; a new
    // environment's start on a copy of its parent's data, as its mounts do.
    let netns = provision::ensure_netns(platform, target).await?;
    let parent = match live {
        Some(_) => None,
        None => {
            let (p, project, env, commit) = (
                platform.clone(),
                target.project.clone(),
                target.env.clone(),
                target.new,
            );
            tokio::task::spawn_blocking(move || {
                crate::mounts::recorded_parent(&p, &project, &env, commit)
            })
            .await
            .ok()
        }
    };
    let (services, added_services) = services::converge(
        platform,
        (&target.project, &target.env),
        parent.as_deref(),
        &netns,
        &topology,
        target.has_option("allow-data-loss"),
        out,
    )
    .await?;

    // provision
    let planned = (|| {
        let topo_json = serde_json::to_value(&topology)
            .map_err(|e| PhaseError::new("provision", format!("recording the topology: {e}")))?;
        let release = state
            .create_release(
                &target.project,
                &target.env,
                &target.new.to_string(),
                &serde_json::json!({}),
                &topo_json,
                &target.author,
            )
            .map_err(internal)?;
        state
            .record_release_variables(release.id, &variables)
            .map_err(internal)?;
        let entropy = crate::environment::project_entropy(platform, &target.project)
            .map_err(|e| PhaseError::new("provision", e.to_string()))?;
        let spec = provision::plan(
            platform, target, &release, built, &topology, netns, &services, &entropy,
        );
        // Recorded before anything starts, so an interrupted deploy can be cleaned up.
        state
            .set_release_spec(release.id, &spec.to_json())
            .map_err(internal)?;
        Ok((release, spec))
    })();
    let (release, mut spec) = match planned {
        Ok(p) => p,
        Err(e) => {
            services::remove_added(platform, &added_services).await;
            return Err(e);
        }
    };
    if live.is_none() {
        switch::mark_deploying(platform, &target.project, &target.env, &topology);
    }

    let result = async {
        // volumes: a new environment starts with a copy of its parent's.
        let live_containers: Vec<String> = live_spec
            .map(|s| {
                s.apps
                    .into_iter()
                    .map(|a| a.container)
                    .chain(s.workers.into_iter().map(|w| w.instance.container))
                    .collect()
            })
            .unwrap_or_default();
        let p = platform.clone();
        let (project, env) = (target.project.clone(), target.env.clone());
        let parent = parent.clone();
        let sizes = spec.volumes.clone();
        let shrinks = crate::mounts::Shrinks {
            allowed: target.has_option("allow-data-loss"),
            release: release.id,
            users: crate::mounts::volume_users(&topology),
        };
        let o = out.clone();
        tokio::task::spawn_blocking(move || {
            crate::mounts::prepare(
                &p,
                (&project, &env),
                parent.as_deref(),
                &sizes,
                &live_containers,
                &shrinks,
                &o,
            )
        })
        .await
        .map_err(|e| PhaseError::new("provision", e.to_string()))??;
        let hooked = hooks::with_deploy_hook(&topology);
        provision::run(platform, target, &release, &mut spec, built, &hooked, out).await?;
        let _ = state.set_release_spec(release.id, &spec.to_json());
        provision::listen_related(platform, &release, &spec)
            .await
            .map_err(|e| PhaseError::new("provision", e))?;
        hooks::deploy(
            platform,
            (&target.project, &target.env),
            &spec,
            &topology,
            out,
        )
        .await?;
        health::run(platform, &target.project, &target.env, &spec, out).await?;
        // Workers start once the apps answer (after the deploy hook), before the switch.
        spec.workers =
            crate::workers::plan(target, release.number, &topology, &spec.apps, &services)?;
        let _ = state.set_release_spec(release.id, &spec.to_json());
        crate::workers::start_all(platform, target, &spec, out).await
    }
    .await;
    let staged = Staged {
        release,
        spec,
        topology,
        live,
        t0,
        added_services,
    };
    match result {
        Ok(()) => Ok(staged),
        Err(e) => {
            abort(platform, target, &staged, out, &e).await;
            Err(e)
        }
    }
}

/// Drop a staged release that will not go live: its containers go, the services its deploy
/// added go, it is marked failed, and the live release and every service that was there
/// before are left exactly as they were. An environment that never went live goes
/// ([`crate::unborn::discard_environment`]).
pub async fn abort(
    platform: &Arc<Platform>,
    target: &DeployTarget,
    staged: &Staged,
    out: &Output,
    why: &PhaseError,
) {
    out.line(&format!("-----> {why}"));
    out.line("       cleaning up: the running release was not touched");
    provision::remove_release(platform, &staged.spec, std::time::Duration::from_secs(1)).await;
    // A volume shrunk for this release gets its old disk back, as the live release has it.
    let (p, project, env, id) = (
        platform.clone(),
        target.project.clone(),
        target.env.clone(),
        staged.release.id,
    );
    if let Ok(undone) =
        tokio::task::spawn_blocking(move || crate::volume_shrink::undo(&p, &project, &env, id))
            .await
    {
        for v in undone {
            out.line(&format!("       volume {v}: its shrink was undone"));
        }
    }
    let _ = platform
        .state()
        .set_release_status(staged.release.id, "failed");
    if staged.live.is_none() {
        platform
            .router()
            .remove(&switch::env_key(&target.project, &target.env));
    }
    if !staged.added_services.is_empty() {
        services::remove_added(platform, &staged.added_services).await;
        let names: Vec<&str> = staged
            .added_services
            .iter()
            .map(|a| a.record.name.as_str())
            .collect();
        out.line(&format!(
            "       services this push added were removed: {}",
            names.join(", ")
        ));
    }
    crate::unborn::discard_environment(platform, &target.project, &target.env, Some(out)).await;
}

/// switch routes -> post_deploy -> retire: the staged release goes live.
pub async fn commit(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    staged: Staged,
    out: &Output,
) -> Result<i64, PhaseError> {
    // Varnish services in front of the apps point at the new release first: from the
    // router's swap on, every request they get is one the new release can answer.
    let followed = match services::varnish::follow(
        platform,
        (&target.project, &target.env),
        &staged.spec,
        &staged.topology,
        out,
    )
    .await
    {
        Ok(f) => f,
        Err(e) => {
            abort(platform, target, &staged, out, &e).await;
            return Err(e);
        }
    };
    let old_route = match switch::run(platform, repo, target, &staged.release, &staged.spec, out) {
        Ok(r) => r,
        Err(e) => {
            services::varnish::undo(platform, followed).await;
            abort(platform, target, &staged, out, &e).await;
            return Err(e);
        }
    };
    let Staged {
        release,
        spec,
        topology,
        live,
        t0,
        added_services,
    } = staged;
    // Live: the old disks of volumes shrunk for it go.
    let (p, project, env, id) = (
        platform.clone(),
        target.project.clone(),
        target.env.clone(),
        release.id,
    );
    let _ =
        tokio::task::spawn_blocking(move || crate::volume_shrink::finish(&p, &project, &env, id))
            .await;

    // post_deploy
    hooks::post_deploy(
        platform,
        (&target.project, &target.env),
        &spec,
        &topology,
        out,
    )
    .await;
    // A Heroku app.json's scripts.postdeploy: once per environment.
    crate::app_json::postdeploy(platform, target, release.number, &spec, &topology, out).await;

    // retire
    match live.as_ref().map(release_record::spec_of).transpose() {
        Err(e) => out.phase("retire", &format!("nothing retired: {e}")),
        Ok(Some(old)) => {
            let (id, number) = live.as_ref().map(|r| (r.id, r.number)).unwrap_or_default();
            out.phase(
                "retire",
                &format!("release {number} stops once its in-flight requests are done"),
            );
            retire::spawn(platform.clone(), id, old, old_route);
        }
        Ok(None) => out.phase("retire", "nothing to retire"),
    }
    services::forget_replaced(platform, &added_services, out).await;
    services::remove_dropped(
        platform,
        live.as_ref(),
        &topology,
        target.has_option("allow-data-loss"),
        out,
    )
    .await;
    info!(release = release.number, "live");
    out.line(&format!(
        "-----> live: {} (release {}, {})",
        crate::https::env_url(platform, &target.project, &target.env, &topology),
        release.number,
        format_duration(t0.elapsed())
    ));
    Ok(release.number)
}

/// Why a deploy over a live release whose record does not decode is refused: nothing
/// could be compared with it, nor retired.
fn refused_over(e: ReleaseRecordError) -> String {
    format!("{e}; the deploy is refused, as the live release could be neither compared nor retired")
}
