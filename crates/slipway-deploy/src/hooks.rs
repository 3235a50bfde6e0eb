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

/// Whether the app's container has stopped (its start command exited).
async fn app_stopped(platform: &Platform, app: &AppInstance) -> bool {
    matches!(
        platform.runtime().state(&app.container).await,
        Ok(Some(s)) if s.status == slipway_runtime::Status::Stopped
    )
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
            let mut ran =
                exec_hook(platform, (project, env), app, script, "hooks.deploy", out).await;
            if app_stopped(platform, app).await {
                // The start command exited while the hook ran, as a start command that
                // reads what the hook writes (a build id copied into a mount) does when it
                // comes first. Platform.sh starts such a command again; here the exit took
                // the container, and a hook still running in it, down: start the app
                // again, and run a hook that was cut short once more.
                let cut_short = ran.is_err();
                out.phase(
                    &phase,
                    &if cut_short {
                        format!("{} exited while hooks.deploy ran, cutting it short: starting the app again and running hooks.deploy again", app.name)
                    } else {
                        format!("{} exited while hooks.deploy ran: starting it again now that the hook is done", app.name)
                    },
                );
                crate::provision::start_app(platform, project, env, spec, app).await?;
                if cut_short {
                    ran =
                        exec_hook(platform, (project, env), app, script, "hooks.deploy", out).await;
                }
            }
            ran.map_err(|m| PhaseError::new("deploy hook", m))?;
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
