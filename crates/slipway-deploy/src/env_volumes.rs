//! The volumes of a deleted environment (its branch was deleted): removed once nothing uses
//! them. The push that deletes the branch says which go ([`removal_notice`]) and leaves a
//! marker beside them ([`mark_for_removal`], `VOLUMES/PROJECT/ENV/.removing`) before
//! anything is stopped; once the environment's apps retired and its services stopped,
//! [`remove`] deletes them under the environment's lock, unless a push brought the
//! environment back meanwhile, and the marker goes last. A server stopped or killed in
//! between finds the marker at its next start and finishes the removal
//! ([`finish_removals`]); a marker of an environment that is live (pushed again) is
//! dropped and its volumes kept. Backups of the environment stay in the archive (and its
//! releases in the state), so what the user may want back is restored from there.
//!
//! The environment's build caches go with its volumes ([`remove_stopped`]): its apps'
//! `/cache` images (`DATA/cache/PROJECT/ENV/`) and its `build.caches` entries
//! (`DATA/build-caches/PROJECT/ENV/`); the push deleting the branch says so too.

use tracing::{info, warn};

use crate::Platform;

const MIB: u64 = 1024 * 1024;

/// The marker of an environment whose volumes are to be removed, in its volumes' folder
/// (no volume name starts with `.`).
const MARKER: &str = ".removing";

/// The test hook holding a removal before its first volume goes while the file it names
/// exists (a test kills the server there).
const HOLD_HOOK: &str = "SLIPWAY_TEST_HOLD_VOLUME_REMOVAL";

/// The marker file of `env`'s volumes.
fn marker(platform: &Platform, project: &str, env: &str) -> std::path::PathBuf {
    platform.data().volumes().env_dir(project, env).join(MARKER)
}

/// Record that `env`'s volumes are to be removed (its branch was deleted), before anything
/// is stopped: a removal a stop or crash interrupts is finished at the next start. Nothing
/// to record when it has no volumes.
pub fn mark_for_removal(platform: &Platform, project: &str, env: &str) -> std::io::Result<()> {
    let dir = platform.data().volumes().env_dir(project, env);
    if !dir.is_dir() {
        return Ok(());
    }
    let path = dir.join(MARKER);
    let tmp = dir.join(format!("{MARKER}.new"));
    std::fs::write(
        &tmp,
        format!("the branch of {project}/{env} was deleted: its volumes are removed\n"),
    )?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// At `serve` start, after the live environments came back: finish every removal of a
/// deleted environment's volumes that a stop or crash interrupted (its marker still
/// there); an environment pushed again since keeps its volumes. Returns how many
/// environments' volumes were removed.
pub async fn finish_removals(platform: &std::sync::Arc<Platform>) -> usize {
    let root = platform.data().volumes().root().to_path_buf();
    let mut marked = Vec::new();
    for project in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for env in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if env.path().join(MARKER).is_file() {
                marked.push((
                    project.file_name().to_string_lossy().into_owned(),
                    env.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    let mut n = 0;
    for (project, env) in marked {
        info!(
            project,
            env, "finishing the removal of a deleted environment's volumes"
        );
        if !remove(platform, &project, &env).await.is_empty() {
            n += 1;
        }
    }
    n
}

/// The lines a branch deletion prints about its environment's volumes and build caches
/// (none when it has neither).
pub fn removal_notice(platform: &Platform, project: &str, env: &str) -> Vec<String> {
    let mut lines = volumes_notice(platform, project, env);
    let data = platform.data();
    let caches = [
        data.build_cache_env(project, env),
        data.project_build_caches(project).join(env),
    ];
    if caches.iter().any(|d| d.exists()) {
        lines.push(format!(
            "-----> {env} deleted: its build caches are removed with it"
        ));
    }
    lines
}

/// [`removal_notice`]'s lines about the volumes.
fn volumes_notice(platform: &Platform, project: &str, env: &str) -> Vec<String> {
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
    if let Some(hold) = std::env::var_os(HOLD_HOOK) {
        let hold = std::path::PathBuf::from(hold);
        if hold.exists() {
            info!(project, env, "volume removal held by {HOLD_HOOK}");
        }
        while hold.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
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
            let _ = std::fs::remove_file(marker(platform, project, env));
            return Vec::new();
        }
        Ok(_) => {}
        Err(e) => {
            warn!(project, env, "volumes kept: {e}");
            return Vec::new();
        }
    }
    // Nothing of it runs on them any more (again, after a start that found the marker).
    crate::services::data::stop_environment(platform, project, env).await;
    let removed = remove_stopped(platform, project, env).await;
    info!(project, env, volumes = ?removed, "volumes of a deleted environment removed");
    removed
}

/// Remove every volume of `env` (its services stopped and its volumes unmounted,
/// [`crate::services::data::stop_environment`]), then its removal marker when all went, then
/// its folder when nothing is left in it; and its build caches (no build of it runs: the
/// caller holds the environment's lock). Returns the names of the volumes removed.
pub async fn remove_stopped(
    platform: &std::sync::Arc<Platform>,
    project: &str,
    env: &str,
) -> Vec<String> {
    let (p, project, env) = (platform.clone(), project.to_string(), env.to_string());
    tokio::task::spawn_blocking(move || {
        let store = p.data().volumes();
        let mut removed = Vec::new();
        let mut all = true;
        match store.volumes(&project, &env) {
            Ok(volumes) => {
                for v in volumes {
                    match v.remove() {
                        Ok(()) => removed.push(v.name.clone()),
                        Err(e) => {
                            all = false;
                            warn!(project, env, volume = %v.name, "not removed: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                all = false;
                warn!(project, env, "volumes not removed: {e}");
            }
        }
        // The marker last (the next start tries again while it is there), then the
        // environment's folder when nothing is left in it.
        if all {
            let _ = std::fs::remove_file(marker(&p, &project, &env));
        }
        let _ = std::fs::remove_dir(store.env_dir(&project, &env));
        remove_build_caches(&p, &project, &env);
        removed
    })
    .await
    .unwrap_or_default()
}

/// Remove the build caches of a removed environment: its apps' `/cache` images and its
/// `build.caches` entries (what fails is logged; the next removal of the name tries again).
fn remove_build_caches(platform: &Platform, project: &str, env: &str) {
    let data = platform.data();
    match crate::build_disk::remove_env_caches(data, project, env) {
        Ok(Some(bytes)) => info!(
            project,
            env,
            mib = bytes.div_ceil(MIB),
            "build cache disks of a removed environment removed"
        ),
        Ok(None) => {}
        Err(e) => warn!(project, env, "build cache disks not removed: {e}"),
    }
    match crate::build::caches::remove_env(data, project, env) {
        Ok(Some(bytes)) => info!(
            project,
            env,
            mib = bytes.div_ceil(MIB),
            "build.caches entries of a removed environment removed"
        ),
        Ok(None) => {}
        Err(e) => warn!(project, env, "build.caches entries not removed: {e}"),
    }
}
