//! A Heroku `app.json` ([`slipway_config::app_json`]) at deploy time: the variables its
//! add-ons set (`DATABASE_URL`, ...) made from the app's relationships, its `required`
//! variables checked before anything changes, its generated secrets made once per
//! environment, and its `scripts.postdeploy` run once after the environment's first
//! successful deploy.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use slipway_config::app_json::AddonVariableForm;
use slipway_config::{Application, Topology};

use crate::environment::ReleaseSpec;
use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::Platform;

/// The variables `app`'s add-ons set, made from its `PLATFORM_RELATIONSHIPS` value once
/// the services' addresses and credentials are filled in.
pub fn addon_variables(app: &Application, relationships: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(manifest) = &app.heroku else {
        return out;
    };
    for (name, var) in &manifest.addon_variables {
        let Some(e) = relationships.pointer(&format!("/{}/0", var.relationship)) else {
            continue;
        };
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        let host = field("host");
        let port = e.get("port").and_then(Value::as_u64).unwrap_or_default();
        let value = match &var.form {
            AddonVariableForm::Servers => format!("{host}:{port}"),
            AddonVariableForm::Url { scheme } => {
                let auth = match (field("username"), field("password")) {
                    ("", "") => String::new(),
                    (u, "") => format!("{u}@"),
                    (u, p) => format!("{u}:{p}@"),
                };
                let path = match field("path") {
                    "" => String::new(),
                    p => format!("/{p}"),
                };
                format!("{scheme}://{auth}{host}:{port}{path}")
            }
        };
        out.insert(name.clone(), value);
    }
    out
}

/// Refuse a push whose `app.json` requires variables the environment has no value for,
/// naming each and the command that sets it. Runs before anything of the environment is
/// built or started.
pub fn check_required(
    platform: &Platform,
    target: &DeployTarget,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    let required: Vec<&String> = topology
        .applications
        .iter()
        .filter_map(|a| a.heroku.as_ref())
        .flat_map(|h| h.required.iter())
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let set = platform
        .state()
        .variables(&target.project, &target.env)
        .map_err(|e| PhaseError::new("validate", e.to_string()))?;
    let missing: Vec<&String> = required
        .into_iter()
        .filter(|k| !set.iter().any(|(n, _)| n == *k))
        .collect();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    // Nothing is recorded: `var set` works on an environment not deployed yet
    // ([`crate::access::check_variables`]), so the refused push leaves no environment
    // that would list, route or count without ever having run.
    let names = missing
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let why = format!(
        "app.json requires {names} (`required`, no `value`), which {} no value on {env}: set {} with `ssh -p PORT git@HOST var set {project} {env} {first}=VALUE` (or `--sensitive`), then push again; nothing was built or started",
        if missing.len() == 1 { "has" } else { "have" },
        if missing.len() == 1 { "it" } else { "each" },
        env = target.env,
        project = target.project,
    );
    out.line(&format!("       {why}"));
    Err(PhaseError::awaiting_input("validate", why))
}

/// Give each `generator: secret` variable of the topology's apps a value on the
/// environment, once: 32 random bytes from the kernel as 64 hex characters, stored as a
/// sensitive variable (`var set` replaces it; a value set before is kept).
pub fn generate_secrets(
    platform: &Platform,
    target: &DeployTarget,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    let failed = |e: String| PhaseError::new("validate", format!("generating a secret: {e}"));
    for name in topology
        .applications
        .iter()
        .filter_map(|a| a.heroku.as_ref())
        .flat_map(|h| h.generated_secrets.iter())
    {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| failed(e.to_string()))?;
        let made = platform
            .state()
            .generate_variable(&target.project, &target.env, name, &hex::encode(bytes))
            .map_err(|e| failed(e.to_string()))?;
        if made {
            out.line(&format!(
                "       app.json: {name} generated for {} (a sensitive variable; `var set` replaces it)",
                target.env
            ));
        }
    }
    Ok(())
}

/// Run the `scripts.postdeploy` of the live release's apps if the environment never ran
/// it, recording the release that did. A failing script is a warning (the release stays
/// live) and runs again after the next deploy.
pub async fn postdeploy(
    platform: &Arc<Platform>,
    target: &DeployTarget,
    release: i64,
    spec: &ReleaseSpec,
    topology: &Topology,
    out: &Output,
) {
    let (project, env) = (target.project.as_str(), target.env.as_str());
    for app in &spec.apps {
        let Some(script) = topology
            .application(&app.name)
            .and_then(|a| a.heroku.as_ref())
            .and_then(|h| h.postdeploy.as_deref())
        else {
            continue;
        };
        let phase = format!("postdeploy {}", app.name);
        match platform.state().postdeploy_ran(project, env) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                out.phase(&phase, &format!("warning: {e}; not run"));
                continue;
            }
        }
        let t = Instant::now();
        out.phase(
            &phase,
            "running app.json scripts.postdeploy (once per environment)",
        );
        match crate::hooks::exec_hook(
            platform,
            (project, env),
            app,
            script,
            "scripts.postdeploy",
            out,
        )
        .await
        {
            Ok(()) => {
                let _ = platform.state().record_postdeploy(project, env, release);
                out.phase_done(&phase, "done", t);
            }
            Err(m) => out.phase_done(
                &phase,
                &format!(
                    "warning: {m} (the release stays live; it runs again after the next deploy)"
                ),
                t,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_config::app_json::{AddonVariable, HerokuManifest};

    #[test]
    fn addon_variables_are_urls_and_servers_of_the_relationships() {
        let mut manifest = HerokuManifest::default();
        let var = |rel: &str, form: AddonVariableForm| AddonVariable {
            relationship: rel.into(),
            form,
        };
        let url = |s: &str| AddonVariableForm::Url { scheme: s.into() };
        manifest
            .addon_variables
            .insert("DATABASE_URL".into(), var("postgresql", url("postgres")));
        manifest
            .addon_variables
            .insert("REDIS_URL".into(), var("redis", url("redis")));
        manifest.addon_variables.insert(
            "MEMCACHIER_SERVERS".into(),
            var("memcached", AddonVariableForm::Servers),
        );
        let app = Application {
            heroku: Some(manifest),
            ..Default::default()
        };
        let rels = serde_json::json!({
            "postgresql": [{"host": "postgresql.internal", "port": 5432, "username": "main", "password": "pw", "path": "main"}],
            "redis": [{"host": "redis.internal", "port": 6379, "username": null, "password": null, "path": null}],
            "memcached": [{"host": "memcached.internal", "port": 11211}],
        });
        let env = addon_variables(&app, &rels);
        assert_eq!(
            env["DATABASE_URL"],
            "postgres://main:pw@postgresql.internal:5432/main"
        );
        assert_eq!(env["REDIS_URL"], "redis://redis.internal:6379");
        assert_eq!(env["MEMCACHIER_SERVERS"], "memcached.internal:11211");
    }
}
