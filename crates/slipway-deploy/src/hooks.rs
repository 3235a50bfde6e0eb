//! Phases **deploy hook** and **post_deploy**: `hooks.deploy` runs in each new
//! container before it gets traffic (a failure fails the deploy);
//! `hooks.post_deploy` runs after the switch (a failure is reported, the
//! release stays live, as on Platform.sh).

use std::sync::Arc;
use std::time::Instant;

use slipway_config::Topology;

use crate::environment::{AppInstance, ReleaseSpec};
use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::Platform;

pub(crate) async fn exec_hook(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    app: &AppInstance,
    script: &str,
    phase: &str,
    out: &Output,
) -> Result<(), String> {
    let o = out.clone();
    let name = app.name.clone();
    let mut on_line = move |l: &str| o.app_line(&name, l);
    let env = crate::variables::with_environment_variables(platform, project, env, &app.env)
        .map_err(|e| format!("{phase} of {}: variables of {env}: {e}", app.name))?;
    let code = platform
        .runtime()
        .exec(
            &app.container,
            &[
                "/bin/sh".into(),
                "-c".into(),
                crate::environment::sourcing_environment(script),
            ],
            &env,
            "/app",
            platform.settings().hook_timeout,
            &mut on_line,
        )
        .await
        .map_err(|e| format!("{phase} of {}: {e}", app.name))?;
    if code == 0 {
        Ok(())
    } else {
        Err(format!("{phase} of {} exited with status {code}", app.name))
    }
}

/// The apps of `topology` that have a deploy hook.
pub(crate) fn with_deploy_hook(topology: &Topology) -> Vec<&str> {
    topology
        .applications
        .iter()
        .filter(|a| hook_of(topology, &a.name, false).is_some())
        .map(|a| a.name.as_str())
        .collect()
}

/// Tell the app's container that its deploy hook is done: remove
/// [`crate::environment::DEPLOY_HOOK_RUNNING`].
async fn hook_done(platform: &Platform, app: &AppInstance) -> Result<(), String> {
    let marker = crate::environment::DEPLOY_HOOK_RUNNING;
    let code = platform
        .runtime()
        .exec(
            &app.container,
            &["/bin/rm".into(), "-f".into(), marker.into()],
            &[],
            "/app",
            std::time::Duration::from_secs(30),
            &mut |_| {},
        )
        .await
        .map_err(|e| format!("{}: ending its deploy hook: {e}", app.name))?;
    if code == 0 {
        Ok(())
    } else {
        Err(format!(
            "{}: ending its deploy hook: rm {marker} exited with status {code}",
            app.name
        ))
    }
}

fn hook_of<'a>(topology: &'a Topology, app: &str, post: bool) -> Option<&'a str> {
    let a = topology.applications.iter().find(|a| a.name == app)?;
    let h = if post {
        &a.hooks.post_deploy
    } else {
        &a.hooks.deploy
    };
    h.as_deref().filter(|s| !s.trim().is_empty())
}

/// The apps of `topology` that app `name` has a relationship to (not services).
fn related_apps<'a>(topology: &'a Topology, name: &str) -> Vec<&'a str> {
    let Some(app) = topology.application(name) else {
        return Vec::new();
    };
    app.relationships
        .values()
        .map(|t| t.split_once(':').map_or(t.as_str(), |(n, _)| n))
        .filter(|n| topology.service(n).is_none() && topology.application(n).is_some())
        .filter_map(|n| topology.application(n).map(|a| a.name.as_str()))
        .collect()
}

/// The release's apps in the order their deploy hooks run: an app after the apps it has a
/// relationship to (their hooks first), otherwise in the configuration's order. A cycle
/// (which Platform.sh refuses) keeps the configuration's order for the apps on it.
fn hook_order<'a>(spec: &'a ReleaseSpec, topology: &Topology) -> Vec<&'a AppInstance> {
    let mut done: Vec<&AppInstance> = Vec::new();
    let mut left: Vec<&AppInstance> = spec.apps.iter().collect();
    while !left.is_empty() {
        let ready = left.iter().position(|a| {
            related_apps(topology, &a.name)
                .iter()
                .all(|n| !left.iter().any(|l| l.name == *n) || *n == a.name)
        });
        done.push(left.remove(ready.unwrap_or(0)));
    }
    done
}

/// Run `hooks.deploy` of every app that has one, an app's after those of the apps it has a
/// relationship to, once those answer (a deploy hook may call them at `REL.internal`).
pub async fn deploy(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    spec: &ReleaseSpec,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    for app in hook_order(spec, topology) {
        if let Some(script) = hook_of(topology, &app.name, false) {
            let t = Instant::now();
            let phase = format!("deploy hook {}", app.name);
            for name in related_apps(topology, &app.name) {
                let Some(other) = spec
                    .apps
                    .iter()
                    .find(|a| a.name == name && a.name != app.name)
                else {
                    continue;
                };
                out.phase(&phase, &format!("waiting for {name} to answer"));
                let log = platform.data().app_log(project, env, name);
                crate::health::wait_app(
                    platform,
                    spec,
                    other,
                    platform.settings().health_timeout,
                    &log,
                )
                .await
                .map_err(|m| {
                    for l in m.lines().skip(1) {
                        out.app_line(name, l);
                    }
                    PhaseError::new(
                        "health check",
                        m.lines().next().unwrap_or_default().to_string(),
                    )
                })?;
            }
            out.phase(&phase, "running hooks.deploy");
            exec_hook(platform, (project, env), app, script, "hooks.deploy", out)
                .await
                .map_err(|m| PhaseError::new("deploy hook", m))?;
            // From now on an exit of the start command ends the container (see
            // `environment::restarted_until_deployed`).
            // A container that ended meanwhile is the health check's to report.
            if let Err(e) = hook_done(platform, app).await {
                tracing::warn!("{e}");
            }
            out.phase_done(&phase, "done", t);
        }
    }
    Ok(())
}

/// Run `hooks.post_deploy` of every app that has one; failures are warnings.
pub async fn post_deploy(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    spec: &ReleaseSpec,
    topology: &Topology,
    out: &Output,
) {
    for app in &spec.apps {
        if let Some(script) = hook_of(topology, &app.name, true) {
            let t = Instant::now();
            let phase = format!("post_deploy {}", app.name);
            out.phase(&phase, "running hooks.post_deploy");
            match exec_hook(
                platform,
                (project, env),
                app,
                script,
                "hooks.post_deploy",
                out,
            )
            .await
            {
                Ok(()) => out.phase_done(&phase, "done", t),
                Err(m) => {
                    out.phase_done(&phase, &format!("warning: {m} (the release stays live)"), t)
                }
            }
        }
    }
}
