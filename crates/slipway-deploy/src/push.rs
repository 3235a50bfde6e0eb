//! A push, as the deploy side sees it: for each ref the client updates,
//! decide, deploy, and move the ref only when its deploy succeeded.

use std::sync::Arc;

use slipway_git::receive::{Progress, Push, PushHandler, RefUpdate};
use slipway_git::Repo;
use slipway_state::{Role, User};
use tracing::info;

use crate::environment::{env_name_of_branch, ReleaseSpec};
use crate::output::Output;
use crate::pipeline::{self, DeployTarget};
use crate::{provision, switch, Platform};

/// Environments only project admins may push to.
pub const PROTECTED: &[&str] = &["main"];

/// Handles one push to one project.
pub struct PushPipeline {
    platform: Arc<Platform>,
    project: String,
    user: User,
}

impl PushPipeline {
    /// The handler for a push by `user` to `project`.
    pub fn new(platform: Arc<Platform>, project: String, user: User) -> PushPipeline {
        PushPipeline {
            platform,
            project,
            user,
        }
    }

    fn role(&self) -> Option<Role> {
        self.platform.state().role(&self.project, &self.user).ok().flatten()
    }

    async fn one(&self, repo: &Repo, update: &RefUpdate, push: &Push, progress: &Progress) -> Result<(), String> {
        let role = self.role();
        if role.is_none() || role == Some(Role::Viewer) {
            return Err("permission denied: you may not push to this project".into());
        }
        let Some(branch) = update.branch().map(str::to_string) else {
            if update.refname.starts_with("refs/tags/") {
                // Tags are stored, never deployed.
                let expected = (!update.is_create()).then_some(update.old);
                let new = (!update.is_delete()).then_some(update.new);
                return repo
                    .update_ref(&update.refname, expected, new, "slipway: push tag")
                    .map_err(|e| format!("{e}"));
            }
            return Err("only branches and tags can be pushed".into());
        };
        let (env, mapped) = env_name_of_branch(&branch);
        if mapped {
            progress.line(&format!(
                "-----> branch '{branch}' is not a DNS label: it deploys as environment '{env}'"
            ));
        }
        if PROTECTED.contains(&env.as_str()) && role != Some(Role::Admin) {
            return Err(format!(
                "{env} is a protected environment: only project admins may push to it"
            ));
        }

        let lock = self.platform.env_lock(&self.project, &env);
        let _guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                progress.line(&format!(
                    "-----> waiting: another deploy of {env} is running; this one starts when it is done"
                ));
                lock.lock().await
            }
        };
        // The branch may have moved while this push waited for the lock.
        let current = repo.ref_target(&update.refname).map_err(|e| e.to_string())?;
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
                    return Err(format!(
                        "{branch} changed while this push waited (fetch first, then push again)"
                    ))
                }
            }
        }
        let update = &update;
        if update.is_delete() {
            return self.delete_branch(repo, update, &env).await;
        }
        let state = self.platform.state();
        let options = if push.options.is_empty() {
            String::new()
        } else {
            format!(" (options: {})", push.options.join(", "))
        };
        let activity = state
            .start_activity(
                &self.project,
                Some(&env),
                "push",
                Some(&self.user.name),
                &format!("push {} to {branch}{options}", short(&update.new.to_string())),
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
        let target = DeployTarget {
            project: self.project.clone(),
            env: env.clone(),
            branch: branch.clone(),
            refname: update.refname.clone(),
            old: update.old,
            new: update.new,
            options: push.options.clone(),
        };
        match pipeline::deploy(&self.platform, repo, &target, &out).await {
            Ok(number) => {
                let _ = state.finish_activity(
                    activity,
                    "success",
                    &format!("release {number} of {env} live ({})", short(&update.new.to_string())),
                );
                Ok(())
            }
            Err(e) => {
                let _ = state.finish_activity(activity, "failure", &e.to_string());
                let mut reason = e.to_string().replace('\n', " ");
                if reason.len() > 300 {
                    let mut cut = 300;
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                    reason.push_str("...");
                }
                Err(reason)
            }
        }
    }

    /// A deleted branch: its environment stops serving (data and releases stay).
    async fn delete_branch(&self, repo: &Repo, update: &RefUpdate, env: &str) -> Result<(), String> {
        let state = self.platform.state();
        if let Ok(Some(e)) = state.environment(&self.project, env) {
            if let Some(r) = e.current_release.and_then(|id| state.release(id).ok().flatten()) {
                self.platform.router().remove(&switch::env_key(&self.project, env));
                if let Some(spec) = ReleaseSpec::from_json(&r.spec) {
                    provision::remove_release(&self.platform, &spec, std::time::Duration::from_secs(3)).await;
                }
                let _ = state.set_release_status(r.id, "retired");
            }
        }
        repo.update_ref(&update.refname, Some(update.old), None, "slipway: branch deleted")
            .map_err(|e| e.to_string())
    }
}

/// Whether `commit` has `ancestor` in its history (a fast-forward from it).
fn descends_from(repo: &Repo, commit: slipway_git::ObjectId, ancestor: slipway_git::ObjectId) -> bool {
    let g = repo.gix();
    matches!(g.merge_base(commit, ancestor), Ok(Some(base)) if base.detach() == ancestor)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl PushHandler for PushPipeline {
    async fn handle(&self, repo: &Repo, push: &Push, progress: Progress) -> Vec<Result<(), String>> {
        // The SSH layer opened the push's span; every line below belongs to it.
        let mut results = Vec::with_capacity(push.updates.len());
        for update in &push.updates {
            info!(refname = %update.refname, new = %update.new, "ref update");
            results.push(self.one(repo, update, push, &progress).await);
        }
        results
    }
}
