//! A refused first push leaves nothing behind.
//!
//! An environment is recorded in the diff phase, since its releases, services, recorded
//! parent and volumes are keyed by it; when its first deploy fails, everything that deploy
//! made for it goes again ([`discard_environment`]): its services and their data, its
//! volumes (copies of its parent's or new), its network namespace and its row (with its
//! failed releases). A project is made before its first push is received, since the
//! repository receives the pack; when no ref of that push landed, the project goes again
//! ([`discard_project`]), so its name is free for anyone allowed to make projects. The
//! pusher saw every line of the refused deploy as it ran; its activity goes with the project
//! (nobody could see it any more, and a project made later under the name must not show it).
//! Build caches of a discarded environment stay (a cache: the next push builds faster),
//! and lock files stay (a lock file is never removed, see [`crate::env_lock`]).

use std::sync::Arc;

use tracing::{info, warn};

use crate::output::Output;
use crate::{DeployError, Platform};

/// The name of the lock a project's first push holds (as an environment's lock: never an
/// environment's name, which is a DNS label).
const FIRST_PUSH_LOCK: &str = "_first-push";

/// Whether `env` of `project` exists and never went live: no current release, and every
/// release of it failed.
fn unborn(platform: &Platform, project: &str, env: &str) -> Result<bool, DeployError> {
    let state = platform.state();
    let Some(e) = state.environment(project, env)? else {
        return Ok(false);
    };
    if e.current_release.is_some() {
        return Ok(false);
    }
    Ok(state
        .releases(project, env)?
        .iter()
        .all(|r| r.status == "failed"))
}

/// After a deploy of `env` failed (its containers gone, its release marked failed): if the
/// environment never went live, remove it and what its deploys made: services (containers
/// and data), volumes, network namespace, its row with its failed releases. An
/// environment that served once is never touched. The caller holds the environment's lock.
pub async fn discard_environment(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    out: Option<&Output>,
) {
    match unborn(platform, project, env) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            warn!(project, env, "not checked for removal: {e}");
            return;
        }
    }
    crate::services::data::stop_environment(platform, project, env).await;
    let removed = crate::env_volumes::remove_stopped(platform, project, env).await;
    let ns = crate::environment::netns_name(platform.instance(), project, env);
    platform.forget_env_network(&ns);
    if slipway_runtime::netns::list(&ns).is_ok_and(|l| l.contains(&ns)) {
        if let Err(e) = slipway_runtime::netns::delete(&ns) {
            warn!(project, env, "network namespace {ns} not removed: {e}");
        }
    }
    match platform.state().remove_unborn_environment(project, env) {
        Ok(true) => {
            info!(project, env, volumes = ?removed, "environment that never went live removed");
            if let Some(out) = out {
                out.line(&format!(
                    "       environment {env} removed again: it never went live"
                ));
            }
        }
        Ok(false) => {}
        Err(e) => warn!(project, env, "environment not removed: {e}"),
    }
}

/// Held by a push to a project while the project's first push runs (in this server or
/// another on the data dir): that push may yet remove the project.
pub struct FirstPushLock(#[allow(dead_code)] crate::env_lock::EnvLock);

impl Platform {
    /// Take the lock a project's first push holds until it is over, so that a second push
    /// to the name waits for it and then finds the project made or gone again. `say` tells
    /// the user this one waits, once.
    pub async fn lock_first_push(
        &self,
        project: &str,
        say: impl FnOnce(&str),
    ) -> Result<FirstPushLock, crate::env_lock::LockError> {
        let lock = self
            .lock_env(project, FIRST_PUSH_LOCK, |_| {
                say(&format!(
                    "-----> waiting: the first push to {project} is running; this one starts when it is done"
                ))
            })
            .await?;
        Ok(FirstPushLock(lock))
    }
}

/// After the first push to `project` (the one that made it): when no ref of it landed
/// (the repository has no ref), remove the project: its environments that never went live
/// ([`discard_environment`]), its state (access, variables, domains, build records,
/// activity) and its folders (repository, build caches, logs, volumes). Returns whether it
/// was removed. The caller holds [`Platform::lock_first_push`].
pub async fn discard_project(platform: &Arc<Platform>, project: &str) -> Result<bool, DeployError> {
    let repo = slipway_git::Repo::open(&platform.repo_path(project))?;
    if !repo.refs()?.is_empty() {
        return Ok(false);
    }
    for e in platform.state().environments(Some(project))? {
        let _lock = platform
            .lock_env(project, &e.name, |_| {})
            .await
            .map_err(|l| DeployError::Io {
                what: format!("locking {project}/{}", e.name),
                source: std::io::Error::other(l.to_string()),
            })?;
        discard_environment(platform, project, &e.name, None).await;
    }
    if !platform.state().remove_unborn_project(project)? {
        return Ok(false);
    }
    let data = platform.data();
    for dir in data.project_dirs(project) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(project, "{} not removed: {e}", dir.display()),
        }
    }
    let _ = std::fs::remove_dir(data.volumes().root().join(project));
    info!(project, "project removed: no ref of its first push landed");
    Ok(true)
}
