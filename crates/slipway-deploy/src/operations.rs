//! Operations on an environment outside a push: **rollback** to an earlier
//! release and **redeploy** of the live one. Both reuse the slugs of an
//! existing release (nothing is built) and go through the same tail of the
//! pipeline as a push ([`pipeline::activate`]): new containers beside the old
//! ones, deploy hook, health, then the branch ref and the routes switch.
//! A rollback moves the branch back to the release's commit, so the branch
//! still says what is live.

use std::sync::Arc;
use std::time::Instant;

use slipway_git::{ObjectId, Repo};
use slipway_state::{Release, ReleaseAuthor};

use crate::build::{decode_slug, BuiltApp};
use crate::failure::OpError;
use crate::output::{Output, Watch};
use crate::pipeline::{self, DeployTarget, PhaseError};
use crate::release_record;
use crate::{tenancy, Platform};

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Back to an earlier release (the previous live one by default).
    Rollback(Option<i64>),
    /// The live release again, in fresh containers (e.g. after variables changed).
    Redeploy,
}

impl Operation {
    /// The role the operation needs on a project (raised further on production
    /// environments by [`crate::protection::role_needed`]): a rollback is an admin's, a
    /// redeploy a contributor's.
    pub fn role(self) -> slipway_state::Role {
        match self {
            Operation::Rollback(_) => slipway_state::Role::Admin,
            Operation::Redeploy => slipway_state::Role::Contributor,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Operation::Rollback(_) => "rollback",
            Operation::Redeploy => "redeploy",
        }
    }
}

/// Run `op` on environment `env` of `project` for `author` (the acting user, or the
/// server), streaming its output to `watch` (told the activity's id once recorded). The
/// new release records `author`. Returns the number of the new live release; Err is a
/// refusal (no such release, nothing to roll back to, the app fails its deploy hook or
/// health check) or an internal failure ([`OpError`]).
pub async fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    op: Operation,
    author: &ReleaseAuthor,
    watch: impl Into<Watch>,
) -> Result<i64, OpError> {
    let watch: Watch = watch.into();
    let state = platform.state();
    let _guard = platform
        .lock_env(project, env, |l| watch.say(l))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?;
    _guard.doing(&format!("a {} of {env} of {project}", op.kind()));
    let environment = state.environment(project, env)?.ok_or_else(|| {
        OpError::not_found(format!(
            "environment '{env}' of project '{project}' not found"
        ))
    })?;
    let current = environment
        .current_release
        .map(|id| state.release(id))
        .transpose()?
        .flatten()
        .ok_or_else(|| OpError::refused(format!("environment '{env}' has no live release")))?;
    let source = match op {
        Operation::Redeploy => current.clone(),
        Operation::Rollback(Some(n)) => {
            state.release_by_number(project, env, n)?.ok_or_else(|| {
                OpError::not_found(format!(
                    "release {n} of {env} not found (`releases {project} {env}` lists them)"
                ))
            })?
        }
        Operation::Rollback(None) => state
            .releases(project, env)?
            .into_iter()
            .find(|r| r.number < current.number && r.status == "retired")
            .ok_or_else(|| {
                OpError::refused(format!("{env} has no earlier release to roll back to"))
            })?,
    };
    if matches!(op, Operation::Rollback(_)) && source.id == current.id {
        return Err(OpError::refused(format!(
            "release {} is already live",
            source.number
        )));
    }
    if source.status == "failed" || source.status == "pending" {
        return Err(OpError::refused(format!(
            "release {} never went live ({}); only releases that were live can be rolled back to",
            source.number, source.status
        )));
    }
    let summary = match op {
        Operation::Rollback(_) => format!("rollback of {env} to release {}", source.number),
        Operation::Redeploy => format!("redeploy of {env} (release {})", source.number),
    };
    let activity =
        state.start_activity(project, Some(env), op.kind(), author.user_name(), &summary)?;
    watch.activity_started(activity);
    let out = Output::with_sink(platform.clone(), activity, watch.lines);
    out.line(&format!("-----> {summary} (activity {activity})"));
    let started = Instant::now();
    let result = activate_release(
        platform,
        (project, &environment.branch, env),
        &source,
        &current,
        author,
        &out,
    )
    .await;
    crate::metrics::deploy_ended(op.kind(), result.is_ok(), started.elapsed());
    if let Err(e) = &result {
        out.failed(&summary, &e.to_string());
    }
    out.flush();
    match &result {
        Ok(n) => {
            let _ =
                state.finish_activity(activity, "success", &format!("{summary}: release {n} live"));
        }
        Err(e) => {
            let _ = state.finish_activity(
                activity,
                "failure",
                &crate::output::failed_summary(&summary, &e.to_string()),
            );
        }
    }
    result
}

/// A failed phase of an operation's deploy as an [`OpError`]: the app's own failures
/// (its deploy hook, health check or post_deploy hook, a route whose host changed owner,
/// a slug gone from the archive) are refusals; a failure to start containers or switch
/// routes is internal.
fn phase_failure(e: PhaseError) -> OpError {
    match e.phase {
        "provision" | "switch routes" => OpError::Internal(e.to_string()),
        _ => OpError::refused(e.to_string()),
    }
}

async fn activate_release(
    platform: &Arc<Platform>,
    (project, branch, env): (&str, &str, &str),
    source: &Release,
    current: &Release,
    author: &ReleaseAuthor,
    out: &Output,
) -> Result<i64, OpError> {
    let t0 = Instant::now();
    // A stored record that does not decode, the repository: internal.
    let fail = |m: String| OpError::Internal(format!("validate failed: {m}"));
    let topology = release_record::topology_of(source).map_err(|e| fail(e.to_string()))?;
    let spec = release_record::spec_of(source).map_err(|e| fail(e.to_string()))?;
    // Hosts may have changed owners since the release was pushed (`domain rm`).
    match tenancy::refused_route(platform, project, env, &topology) {
        Ok(None) => {}
        Ok(Some((url, why))) => {
            return Err(phase_failure(PhaseError::new(
                "validate",
                format!("route `{url}`: {why}"),
            )))
        }
        Err(e) => return Err(fail(e.to_string())),
    }
    let mut built = Vec::new();
    for app in &spec.apps {
        // The release ran in this environment: its slug, whichever of the project's
        // builds recorded it.
        let slug = platform
            .state()
            .built_slugs(project, &app.build_key)
            .map_err(|e| fail(e.to_string()))?
            .iter()
            .filter_map(|b| {
                decode_slug(&b.slug)
                    .map_err(|e| tracing::warn!(app = %app.name, "{e}"))
                    .ok()
            })
            .find(|s| s.digest.as_str() == app.slug && platform.archive().has_blob(&s.digest))
            .ok_or_else(|| {
                OpError::refused(format!(
                    "build failed: the slug of {} in release {} is no longer in the archive",
                    app.name, source.number
                ))
            })?;
        out.phase(
            &format!("build {}", app.name),
            &format!("reused {}", slug.digest),
        );
        built.push(BuiltApp {
            name: app.name.clone(),
            slug,
            tree: app.tree.clone(),
            build_key: app.build_key.clone(),
            reused: true,
            stack_root: app.stack_root.clone(),
            stack_layers: app.stack_layers.clone(),
        });
    }
    let repo = Repo::open(&platform.repo_path(project)).map_err(|e| fail(e.to_string()))?;
    let refname = format!("refs/heads/{branch}");
    let parse = |hex: &str| {
        ObjectId::from_hex(hex.as_bytes()).map_err(|e| fail(format!("commit {hex}: {e}")))
    };
    let old = match repo.ref_target(&refname).map_err(|e| fail(e.to_string()))? {
        Some(id) => id,
        None => parse(&current.commit)?,
    };
    let target = DeployTarget {
        project: project.to_string(),
        env: env.to_string(),
        branch: branch.to_string(),
        refname,
        old,
        new: parse(&source.commit)?,
        options: Vec::new(),
        author: author.clone(),
    };
    pipeline::activate(
        platform,
        &repo,
        &target,
        &topology,
        &built,
        Some(current),
        out,
        t0,
    )
    .await
    .map_err(phase_failure)
}
