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

fn hook_of<'a>(topology: &'a Topology, app: &str, post: bool) -> Option<&'a str> {
    let a = topology.applications.iter().find(|a| a.name == app)?;
    let h = if post {
        &a.hooks.post_deploy
    } else {
        &a.hooks.deploy
    };
    h.as_deref().filter(|s| !s.trim().is_empty())
}

/// Run `hooks.deploy` of every app that has one.
pub async fn deploy(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    spec: &ReleaseSpec,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    for app in &spec.apps {
        if let Some(script) = hook_of(topology, &app.name, false) {
            let t = Instant::now();
            let phase = format!("deploy hook {}", app.name);
            out.phase(&phase, "running hooks.deploy");
            exec_hook(platform, (project, env), app, script, "hooks.deploy", out)
                .await
                .map_err(|m| PhaseError::new("deploy hook", m))?;
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
