//! A push, as the deploy side sees it: for each ref the client updates,
//! decide, deploy, and move the ref only when its deploy succeeded.
//!
//! Refs are handled one after the other, each on its own. With
//! `git push --atomic`, every branch is first staged (built, started beside
//! its live release, healthy) while all their environments are locked; only
//! when every one of them is ready do they all switch, else none does.

use std::sync::Arc;

use slipway_git::receive::{Progress, Push, PushHandler, RefUpdate};
use slipway_git::Repo;
use slipway_state::{Role, User};
use tracing::info;

use crate::env_lock::EnvLock;
use crate::environment::env_name_of_branch;
use crate::output::Output;
use crate::pipeline::{self, DeployTarget, PhaseError, Staged};
use crate::{protection, retire, switch, tenancy, Platform};

/// Handles one push to one project.
pub struct PushPipeline {
    platform: Arc<Platform>,
    project: String,
    user: User,
    /// Set when a deploy of this push was refused asking the pusher to set something on
    /// the server first ([`PhaseError::awaits_input`]).
    awaits_input: std::sync::atomic::AtomicBool,
}

/// What one ref update asks for, once checked.
#[derive(Debug, Clone)]
enum Plan {
    /// A tag: stored, never deployed.
    Tag(RefUpdate),
    /// A deleted branch: its environment stops serving.
    Delete {
        update: RefUpdate,
        env: String,
        branch: String,
    },
    /// A branch to deploy.
    Deploy {
        update: RefUpdate,
        env: String,
        branch: String,
    },
}

impl Plan {
    fn env(&self) -> Option<&str> {
        match self {
            Plan::Tag(_) => None,
            Plan::Delete { env, .. } | Plan::Deploy { env, .. } => Some(env),
        }
    }
}

/// A deploy under way: its activity, output and target.
struct Attempt {
    activity: i64,
    out: Output,
    target: DeployTarget,
    /// When the deploy started (for the duration metric).
    started: std::time::Instant,
}

impl PushPipeline {
    /// The handler for a push by `user` to `project`.
    pub fn new(platform: Arc<Platform>, project: String, user: User) -> PushPipeline {
        PushPipeline {
            platform,
            project,
            user,
            awaits_input: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a deploy of this push was refused asking the pusher to set something on the
    /// server (a variable) before pushing again: the first push of a project refused so
    /// keeps the project, where that is set.
    pub fn awaits_input(&self) -> bool {
        self.awaits_input.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Permission, ref kind and environment of one update.
    fn plan(&self, update: &RefUpdate, progress: &Progress) -> Result<Plan, String> {
        let role = self
            .platform
            .state()
            .role(&self.project, &self.user)
            .ok()
            .flatten();
        if role.is_none() || role == Some(Role::Viewer) {
            return Err(refused(
                "permission denied: you may not push to this project",
            ));
        }
        let Some(branch) = update.branch().map(str::to_string) else {
            if update.refname.starts_with("refs/tags/") {
                return Ok(Plan::Tag(update.clone()));
            }
            return Err(refused("only branches and tags can be pushed"));
        };
        let (env, mapped) = env_name_of_branch(&branch);
        if mapped {
            progress.line(&format!(
                "-----> branch '{branch}' is not a DNS label: it deploys as environment '{env}'"
            ));
        }
        if role < Some(protection::role_needed(&env, Role::Contributor)) {
            return Err(refused(&format!(
                "{env} is a protected environment: only project admins may push to it"
            )));
        }
        Ok(if update.is_delete() {
            Plan::Delete {
                update: update.clone(),
                env,
                branch,
            }
        } else {
            Plan::Deploy {
                update: update.clone(),
                env,
                branch,
            }
        })
    }

    /// The environment's lock; says so when another deploy holds it.
    async fn lock(&self, env: &str, progress: &Progress) -> Result<EnvLock, String> {
        let lock = self
            .platform
            .lock_env(&self.project, env, |l| progress.line(l))
            .await
            .map_err(|e| e.to_string())?;
        lock.doing(&format!(
            "a push by {} to {env} of {}",
            self.user.name, self.project
        ));
        Ok(lock)
    }

    /// The branch may have moved while this push waited for the lock: go on
    /// only if the pushed commit builds on where it is now.
    fn reconcile(
        repo: &Repo,
        update: &RefUpdate,
        branch: &str,
        progress: &Progress,
    ) -> Result<RefUpdate, String> {
        let current = repo
            .ref_target(&update.refname)
            .map_err(|e| e.to_string())?;
        let expected = (!update.is_create()).then_some(update.old);
        let mut update = update.clone();
        if current != expected {
            match current {
                Some(now) if !update.is_delete() && descends_from(repo, update.new, now) => {
                    progress.line(&format!(
                        "-----> {branch} moved to {} while this push waited; {} builds on it, deploying",
                        short(&now.to_string()),
                        short(&update.new.to_string())
                    ));
                    update.old = now;
                }
                _ => {
                    return Err(refused(&format!(
                        "{branch} changed while this push waited (fetch first, then push again)"
                    )))
                }
            }
        }
        Ok(update)
    }

    /// Start the activity and output of a deploy.
    fn begin(
        &self,
        update: &RefUpdate,
        env: &str,
        branch: &str,
        push: &Push,
        progress: &Progress,
    ) -> Result<Attempt, String> {
        let activity = self
            .platform
            .state()
            .start_activity(
                &self.project,
                Some(env),
                "push",
                Some(&self.user.name),
                &format!("push {} to {branch}", short(&update.new.to_string())),
            )
            .map_err(|e| e.to_string())?;
        let out = Output::new(self.platform.clone(), activity, Some(progress.clone()));
        out.line(&format!(
            "-----> deploying {} to environment {env} of {} (activity {activity})",
            short(&update.new.to_string()),
            self.project
        ));
        if !push.options.is_empty() {
            out.line(&format!("-----> push options: {}", push.options.join(", ")));
        }
        Ok(Attempt {
            activity,
            out,
            started: std::time::Instant::now(),
            target: DeployTarget {
                project: self.project.clone(),
                env: env.to_string(),
                branch: branch.to_string(),
                refname: update.refname.clone(),
                old: update.old,
                new: update.new,
                options: push.options.clone(),
                author: slipway_state::ReleaseAuthor::user(&self.user.name),
            },
        })
    }

    /// Record how a deploy ended; the error becomes the one-line `ng` reason.
    fn finish(&self, attempt: &Attempt, result: Result<i64, PhaseError>) -> Result<(), String> {
        let state = self.platform.state();
        let t = &attempt.target;
        attempt.out.flush();
        crate::metrics::deploy_ended("push", result.is_ok(), attempt.started.elapsed());
        match result {
            Ok(number) => {
                let _ = state.finish_activity(
                    attempt.activity,
                    "success",
                    &format!(
                        "release {number} of {} live ({})",
                        t.env,
                        short(&t.new.to_string())
                    ),
                );
                Ok(())
            }
            Err(e) => {
                if e.awaits_input {
                    self.awaits_input
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let _ = state.finish_activity(attempt.activity, "failure", &e.to_string());
                Err(crate::output::one_line(&e.to_string(), 300))
            }
        }
    }

    /// One update on its own.
    async fn one(
        &self,
        repo: &Repo,
        update: &RefUpdate,
        push: &Push,
        progress: &Progress,
    ) -> Result<(), String> {
        match self.plan(update, progress)? {
            Plan::Tag(u) => store_tag(repo, &u),
            Plan::Delete {
                update,
                env,
                branch,
            } => {
                let _guard = self.lock(&env, progress).await?;
                let update = Self::reconcile(repo, &update, &branch, progress)?;
                self.data_loss_allowed(&env, &branch, push)?;
                self.delete_branch(repo, &update, &env, progress).await
            }
            Plan::Deploy {
                update,
                env,
                branch,
            } => {
                let _guard = self.lock(&env, progress).await?;
                let update = Self::reconcile(repo, &update, &branch, progress)?;
                let attempt = self.begin(&update, &env, &branch, push, progress)?;
                let result =
                    pipeline::deploy(&self.platform, repo, &attempt.target, &attempt.out).await;
                self.finish(&attempt, result)
            }
        }
    }

    /// `git push --atomic`: all refs or none.
    async fn atomic(
        &self,
        repo: &Repo,
        push: &Push,
        progress: &Progress,
    ) -> Vec<Result<(), String>> {
        let n = push.updates.len();
        let refused = |i: usize, why: &str| -> Vec<Result<(), String>> {
            (0..n)
                .map(|j| {
                    Err(if i == j {
                        why.to_string()
                    } else {
                        format!("atomic push refused: {} failed", push.updates[i].refname)
                    })
                })
                .collect()
        };
        let mut plans = Vec::with_capacity(n);
        for (i, u) in push.updates.iter().enumerate() {
            match self.plan(u, progress) {
                Ok(p) => plans.push(p),
                Err(e) => return refused(i, &e),
            }
        }
        // Every environment of the push, locked in one order (no deadlock with another atomic push).
        let mut envs: Vec<&str> = plans.iter().filter_map(Plan::env).collect();
        envs.sort_unstable();
        envs.dedup();
        let mut _guards = Vec::with_capacity(envs.len());
        for env in envs {
            match self.lock(env, progress).await {
                Ok(guard) => _guards.push(guard),
                Err(e) => {
                    let i = plans.iter().position(|p| p.env() == Some(env)).unwrap_or(0);
                    return refused(i, &e);
                }
            }
        }
        for (i, p) in plans.iter_mut().enumerate() {
            if let Plan::Delete { update, branch, .. } | Plan::Deploy { update, branch, .. } = p {
                match Self::reconcile(repo, update, branch, progress) {
                    Ok(u) => *update = u,
                    Err(e) => return refused(i, &e),
                }
            }
            if let Plan::Delete { env, branch, .. } = p {
                if let Err(e) = self.data_loss_allowed(env, branch, push) {
                    return refused(i, &e);
                }
            }
        }
        // Stage every deploy; the first failure aborts them all.
        let mut staged: Vec<(usize, Attempt, Staged)> = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            let Plan::Deploy {
                update,
                env,
                branch,
            } = p
            else {
                continue;
            };
            let attempt = match self.begin(update, env, branch, push, progress) {
                Ok(a) => a,
                Err(e) => {
                    self.abort_all(staged, &format!("atomic push: {} failed", update.refname))
                        .await;
                    return refused(i, &e);
                }
            };
            match pipeline::stage_push(&self.platform, repo, &attempt.target, &attempt.out).await {
                Ok(s) => staged.push((i, attempt, s)),
                Err(e) => {
                    let why = self.finish(&attempt, Err(e)).err().unwrap_or_default();
                    self.abort_all(staged, &format!("atomic push: {} failed", update.refname))
                        .await;
                    return refused(i, &why);
                }
            }
        }
        // A host belongs to one environment: two branches of this push may not both route it.
        if let Some((i, why)) = self.shared_host(&staged) {
            self.abort_all(
                staged,
                &format!("atomic push: {} failed", push.updates[i].refname),
            )
            .await;
            return refused(i, &why);
        }
        // Everything is ready: switch them all, then the deletes and tags.
        let mut results: Vec<Result<(), String>> = (0..n).map(|_| Ok(())).collect();
        for (i, attempt, s) in staged {
            let r = pipeline::commit(&self.platform, repo, &attempt.target, s, &attempt.out).await;
            results[i] = self.finish(&attempt, r);
        }
        for (i, p) in plans.iter().enumerate() {
            match p {
                Plan::Delete { update, env, .. } => {
                    results[i] = self.delete_branch(repo, update, env, progress).await
                }
                Plan::Tag(u) => results[i] = store_tag(repo, u),
                Plan::Deploy { .. } => {}
            }
        }
        results
    }

    /// The first staged deploy (its update's index) that routes a host another staged
    /// deploy of the same push routes too, with why.
    fn shared_host(&self, staged: &[(usize, Attempt, Staged)]) -> Option<(usize, String)> {
        let mut claimed: Vec<(String, &str)> = Vec::new();
        for (i, attempt, s) in staged {
            let env = attempt.target.env.as_str();
            for host in switch::hosts(&self.platform, &self.project, env, &s.topology) {
                let host = tenancy::normalize(&host);
                match claimed.iter().find(|(h, e)| *h == host && *e != env) {
                    Some((_, other)) => {
                        return Some((
                            *i,
                            refused(&format!("{host} is routed by both {other} and {env} in this push: a host belongs to one environment")),
                        ))
                    }
                    None => claimed.push((host, env)),
                }
            }
        }
        None
    }

    /// Drop every staged release of an atomic push that will not go live.
    async fn abort_all(&self, staged: Vec<(usize, Attempt, Staged)>, why: &str) {
        for (_, attempt, s) in staged {
            let e = PhaseError::new("switch routes", why.to_string());
            pipeline::abort(&self.platform, &attempt.target, &s, &attempt.out, &e).await;
            let _ = self.finish(&attempt, Err(e));
        }
    }

    /// Deleting `branch` deletes its environment's volumes (its services' data and its
    /// mounts): refused, with nothing changed, unless the push carries `-o
    /// allow-data-loss` or the environment has none (the caller holds its lock).
    fn data_loss_allowed(&self, env: &str, branch: &str, push: &Push) -> Result<(), String> {
        if pipeline::has_option(&push.options, "allow-data-loss") {
            return Ok(());
        }
        let volumes = self
            .platform
            .data()
            .volumes()
            .volumes(&self.project, env)
            .map_err(|e| {
                format!("the volumes of {env} are not listed: {e}; nothing was deleted")
            })?;
        if volumes.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        Err(format!(
            "deleting branch {branch} would delete the data of environment {env} ({}); nothing was deleted. Take a backup first if you may want it back (`backup create {} {env}`), then delete the branch with: git push -o allow-data-loss REMOTE :{branch}",
            names.join(", "),
            self.project
        ))
    }

    /// A deleted branch: its environment stops serving; once its apps stopped, its services
    /// stop and its volumes (mounts' and services' data) are removed, as the output says
    /// (releases and backups in the archive stay).
    async fn delete_branch(
        &self,
        repo: &Repo,
        update: &RefUpdate,
        env: &str,
        progress: &Progress,
    ) -> Result<(), String> {
        let state = self.platform.state();
        if let Ok(Some(e)) = state.environment(&self.project, env) {
            let mut old = None;
            if let Some(r) = e
                .current_release
                .and_then(|id| state.release(id).ok().flatten())
            {
                // Requests in flight finish before the containers stop, as for any retired release.
                let routed = self
                    .platform
                    .router()
                    .remove(&switch::env_key(&self.project, env));
                match crate::release_record::spec_of(&r) {
                    Ok(spec) => old = Some((r.id, spec, routed)),
                    Err(e) => tracing::warn!("its containers are left running: {e}"),
                }
            }
            let _ = state.deactivate_environment(&self.project, env);
            if let Err(e) = crate::env_volumes::mark_for_removal(&self.platform, &self.project, env)
            {
                tracing::warn!("the removal of its volumes is not recorded: {e}");
            }
            for line in crate::env_volumes::removal_notice(&self.platform, &self.project, env) {
                progress.line(&line);
            }
            let (platform, project, env) =
                (self.platform.clone(), self.project.clone(), env.to_string());
            tokio::spawn(async move {
                if let Some((id, spec, routed)) = old {
                    retire::run(&platform, id, spec, routed).await;
                }
                crate::services::data::stop_environment(&platform, &project, &env).await;
                crate::env_volumes::remove(&platform, &project, &env).await;
            });
        }
        repo.update_ref(
            &update.refname,
            Some(update.old),
            None,
            "slipway: branch deleted",
        )
        .map_err(|e| e.to_string())
    }
}

/// Tags are stored, never deployed.
fn store_tag(repo: &Repo, u: &RefUpdate) -> Result<(), String> {
    let expected = (!u.is_create()).then_some(u.old);
    let new = (!u.is_delete()).then_some(u.new);
    repo.update_ref(&u.refname, expected, new, "slipway: push tag")
        .map_err(|e| format!("{e}"))
}

/// Whether `commit` has `ancestor` in its history (a fast-forward from it).
fn descends_from(
    repo: &Repo,
    commit: slipway_git::ObjectId,
    ancestor: slipway_git::ObjectId,
) -> bool {
    let g = repo.gix();
    matches!(g.merge_base(commit, ancestor), Ok(Some(base)) if base.detach() == ancestor)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl PushHandler for PushPipeline {
    async fn handle(
        &self,
        repo: &Repo,
        push: &Push,
        progress: Progress,
    ) -> Vec<Result<(), String>> {
        crate::metrics::push_received();
        // The SSH layer opened the push's span; every line below belongs to it.
        for update in &push.updates {
            info!(refname = %update.refname, new = %update.new, atomic = push.atomic, "ref update");
        }
        if push.atomic && push.updates.len() > 1 {
            return self.atomic(repo, push, &progress).await;
        }
        let mut results = Vec::with_capacity(push.updates.len());
        for update in &push.updates {
            results.push(self.one(repo, update, push, &progress).await);
        }
        results
    }
}

/// A refusal before anything of the pipeline ran (roles, ref kinds, a branch moved, a host
/// two branches route): the `validate failed: WHY` reason of the spec's rejections.
fn refused(why: &str) -> String {
    PhaseError::new("validate", why).to_string()
}
