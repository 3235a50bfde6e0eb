//! `services PROJECT ENV` over SSH: the services of an environment with their type, state
//! and the disk their data uses on its volume, of its size (every role of the project may
//! look, as with `envs`).

use std::sync::Arc;

use slipway_deploy::Platform;

use super::Refusal;

/// Runs `services PROJECT ENV` for a user who can see the project.
pub(crate) fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    json: bool,
) -> Result<String, Refusal> {
    // As the console's services page: an environment that does not exist is said so,
    // not shown as one without services.
    let environment = match platform.state().environment(project, env) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Err((
                1,
                format!("slipway: environment '{env}' of project '{project}' not found\n"),
            ))
        }
        Err(e) => return Err(crate::ops::failure(e)),
    };
    let records = platform
        .state()
        .services(project, env)
        .map_err(crate::ops::failure)?;
    let rows = records
        .iter()
        .map(|s| {
            let disk = slipway_deploy::services::data::disk(platform, s);
            let health = slipway_deploy::supervise::service_health(platform, project, env, &s.name);
            // Down and waiting to be started again; once started it is `starting` (its
            // record's state) until it answers.
            let restarting = s.state == slipway_state::ServiceState::Running
                && health.as_ref().is_some_and(|h| {
                    h.condition == slipway_deploy::supervise::Condition::Restarting
                });
            serde_json::json!({
                "name": s.name,
                "type": format!("{}:{}", s.service_type, s.version),
                // The stack it was made on and runs on (null: not started since it is
                // recorded).
                "stack": s.stack.as_ref().map(ToString::to_string),
                // Crashed and being started again by the supervisor.
                "state": if restarting { serde_json::json!("restarting") } else { serde_json::json!(s.state) },
                "restarts": health.as_ref().map_or(0, |h| h.restarts),
                "last_exit": health.and_then(|h| h.last_exit),
                "address": s.address.to_string(),
                "disk_used": disk.map_or(0, |(used, _)| used),
                "disk_size_mb": disk.map(|(_, size)| size),
            })
        })
        .collect::<Vec<_>>();
    let rows = [rows, network_storage(platform, &environment)?].concat();
    if json {
        return Ok(crate::admin::pretty(&rows));
    }
    if rows.is_empty() {
        return Ok(format!("{env} has no services\n"));
    }
    Ok(rows
        .iter()
        .map(|r| {
            let mib = r["disk_used"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0);
            let disk = match r["disk_size_mb"].as_u64() {
                Some(size) => format!("{mib:.1} MiB used of {size} MiB"),
                None => "disk not mounted".to_string(),
            };
            let restarts = match r["restarts"].as_u64().unwrap_or(0) {
                0 => String::new(),
                n => format!(
                    "\trestarted {n} time(s), last after it exited with {}",
                    r["last_exit"].as_str().unwrap_or("an unknown status")
                ),
            };
            // A version this server lacks runs on the nearest it has (config check
            // warned so): say which, as `postgresql:16 (runs 17)`.
            let ty = r["type"].as_str().unwrap_or_default();
            let version = |t: &str| t.split_once(':').map(|(_, v)| v.to_string());
            let ty = match r["stack"].as_str().and_then(version) {
                Some(runs) if Some(&runs) != version(ty).as_ref() => format!("{ty} (runs {runs})"),
                _ => ty.to_string(),
            };
            format!(
                "{}\t{ty}\t{}\t{disk}{restarts}\n",
                r["name"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
            )
        })
        .collect())
}

/// The network-storage services of the environment's live release: no container, only
/// their volume `service-NAME` (state `ready` while it is mounted, else `not mounted`).
fn network_storage(
    platform: &Arc<Platform>,
    environment: &slipway_state::Environment,
) -> Result<Vec<serde_json::Value>, Refusal> {
    let Some(id) = environment.current_release else {
        return Ok(Vec::new());
    };
    let Some(release) = platform.state().release(id).map_err(crate::ops::failure)? else {
        return Ok(Vec::new());
    };
    let topology = slipway_deploy::release_record::topology_of(&release)
        .map_err(|e| crate::ops::failure(slipway_deploy::failure::OpError::from(e.to_string())))?;
    Ok(topology
        .services
        .iter()
        .filter(|s| s.r#type == "network-storage")
        .map(|s| {
            let disk = slipway_deploy::services::data::volume(
                platform,
                &environment.project,
                &environment.name,
                &s.name,
            )
            .ok()
            .and_then(|v| slipway_deploy::services::data::volume_disk(&v));
            serde_json::json!({
                "name": s.name,
                "type": format!("{}:{}", s.r#type, s.version),
                "stack": null,
                "state": if disk.is_some() { "ready" } else { "not mounted" },
                "restarts": 0,
                "last_exit": null,
                "address": null,
                "disk_used": disk.map_or(0, |(used, _)| used),
                "disk_size_mb": disk.map(|(_, size)| size),
            })
        })
        .collect())
}
