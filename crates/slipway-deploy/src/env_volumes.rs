//! The volumes of a deleted environment (its branch was deleted): removed once nothing uses
//! them. The push that deletes the branch says which go ([`removal_notice`]); once the
//! environment's apps retired and its services stopped, [`remove`] deletes them under the
//! environment's lock, unless a push brought the environment back meanwhile. Backups of the
//! environment stay in the archive (and its releases in the state), so what the user may want
//! back is restored from there.

use tracing::{info, warn};

use crate::Platform;

const MIB: u64 = 1024 * 1024;

/// The lines a branch deletion prints about its environment's volumes (none when it has
/// none).
pub fn removal_notice(platform: &Platform, project: &str, env: &str) -> Vec<String> {
    let volumes = match platform.data().volumes().volumes(project, env) {
        Ok(v) => v,
        Err(e) => return vec![format!("-----> volumes of {env} not listed: {e}")],
    };
    if volumes.is_empty() {
        return Vec::new();
    }
    let described: Vec<String> = volumes
        .iter()
        .map(|v| {
            let used = v
                .is_mounted()
                .ok()
                .filter(|m| *m)
                .and_then(|_| v.used_bytes().ok());
            match (used, v.size_mb()) {
                (Some(b), Ok(size)) => {
                    format!("{} ({} of {size} MB used)", v.name, b.div_ceil(MIB))
                }
                (None, Ok(size)) => format!("{} ({size} MB)", v.name),
                _ => v.name.clone(),
            }
        })
        .collect();
    vec![
        format!(
            "-----> {env} deleted: its volumes are removed once its apps and services stop: {}",
            described.join(", ")
        ),
        format!("       backups of {env} stay in the archive (`backup ls {project} {env}`)"),
    ]
}

/// Remove every volume of a deleted environment (its apps and services stopped), under the
/// environment's lock; nothing is removed when a push made it live again meanwhile. Returns
/// the names of the volumes removed.
pub async fn remove(platform: &std::sync::Arc<Platform>, project: &str, env: &str) -> Vec<String> {
    let _lock = match platform.lock_env(project, env, |_| {}).await {
        Ok(lock) => lock,
        Err(e) => {
            warn!(project, env, "volumes kept: {e}");
            return Vec::new();
        }
    };
    match platform.state().environment(project, env) {
        Ok(Some(e)) if e.current_release.is_some() => {
            info!(project, env, "pushed again: its volumes are kept");
            return Vec::new();
        }
        Ok(_) => {}
        Err(e) => {
            warn!(project, env, "volumes kept: {e}");
            return Vec::new();
        }
    }
    let (p, project, env) = (platform.clone(), project.to_string(), env.to_string());
    tokio::task::spawn_blocking(move || {
        let store = p.data().volumes();
        let mut removed = Vec::new();
        match store.volumes(&project, &env) {
            Ok(volumes) => {
                for v in volumes {
                    match v.remove() {
                        Ok(()) => removed.push(v.name.clone()),
                        Err(e) => warn!(project, env, volume = %v.name, "not removed: {e}"),
                    }
                }
            }
            Err(e) => warn!(project, env, "volumes not removed: {e}"),
        }
        // The environment's folder goes when nothing is left in it.
        let _ = std::fs::remove_dir(store.env_dir(&project, &env));
        info!(project, env, volumes = ?removed, "volumes of a deleted environment removed");
        removed
    })
    .await
    .unwrap_or_default()
}
