//! `sync PROJECT ENV`: the environment's mount data replaced by a fresh copy of its parent's
//! ([`crate::mounts::parent_env`] of its branch head: the branch it was made from, else
//! `main`), under the environment's deploy lock.
//!
//! The parent's volumes are copied first, each frozen only while its image is copied (see
//! [`crate::volumes::Volume::snapshot_to`]), so the parent never stops. Then the
//! environment's apps stop, its volumes are swapped for the copies, and its live release
//! starts again on them (the apps are down for that restart).

use std::sync::Arc;

use crate::mounts::PARENT_ENV;
use crate::output::Sink;
use crate::{provision, restore, Platform};

/// Copy the parent's volumes over `env`'s; returns a summary line, or a message for the user.
pub async fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    sink: Option<Sink>,
) -> Result<String, String> {
    let say = |l: &str| {
        if let Some(s) = &sink {
            s(l);
        }
    };
    if env == PARENT_ENV {
        return Err(format!(
            "{env} is the parent environment; sync copies a parent's data into a branch's"
        ));
    }
    let _guard = platform.lock_env(project, env, &say).await;
    let state = platform.state();
    let branch = state
        .environment(project, env)
        .map_err(|e| e.to_string())?
        .map(|e| e.branch)
        .unwrap_or_else(|| env.to_string());
    let head = slipway_git::Repo::open(&platform.repo_path(project))
        .and_then(|r| r.ref_target(&format!("refs/heads/{branch}")))
        .ok()
        .flatten();
    let parent = match head {
        Some(commit) => crate::mounts::parent_env(platform, project, env, commit),
        None => PARENT_ENV.to_string(),
    };
    let store = platform.data().volumes();
    let parents = store.volumes(project, &parent).map_err(|e| e.to_string())?;
    if parents.is_empty() {
        return Err(format!("{parent} has no mount data to copy"));
    }

    let live = state
        .environment(project, env)
        .map_err(|e| e.to_string())?
        .and_then(|en| en.current_release)
        .map(|id| state.release(id))
        .transpose()
        .map_err(|e| e.to_string())?
        .flatten();
    let spec = live
        .as_ref()
        .map(crate::release_record::spec_of)
        .transpose()
        .map_err(|e| e.to_string())?;
    let sizes = spec.as_ref().map(|s| s.volumes.clone()).unwrap_or_default();

    // Copies of the parent's volumes, beside the environment's own (not those bigger than
    // this environment's disk: volumes never shrink).
    let p = platform.clone();
    let (proj, e) = (project.to_string(), env.to_string());
    let wanted = sizes.clone();
    let from = parent.clone();
    let copies = tokio::task::spawn_blocking(move || {
        let store = p.data().volumes();
        let mut copies = Vec::new();
        for pv in store.volumes(&proj, &from)? {
            let parent_mb = pv.size_mb()?;
            if wanted
                .iter()
                .any(|w| w.name == pv.name && w.size_mb < parent_mb)
            {
                continue;
            }
            let child = store.volume(&proj, &e, &pv.name)?;
            let tmp = child.image.with_extension("img.sync");
            pv.snapshot_to(&tmp)?;
            copies.push((child, tmp));
        }
        Ok::<_, crate::volumes::VolumeError>(copies)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    say(&format!(
        "-----> copied {} volume(s) of {parent}",
        copies.len()
    ));

    // Stop the apps, swap the volumes, start the live release again.
    if let Some(spec) = &spec {
        say("-----> stopping the apps of this environment");
        provision::remove_release(platform, spec, std::time::Duration::from_secs(5)).await;
    }
    for (child, tmp) in &copies {
        child.unmount().map_err(|e| e.to_string())?;
        std::fs::rename(tmp, &child.image)
            .map_err(|e| format!("replacing {}: {e}", child.image.display()))?;
        let _ = std::fs::remove_file(child.image.with_extension("grow"));
        if let Some(w) = sizes.iter().find(|w| w.name == child.name) {
            child.ensure(w.size_mb).map_err(|e| e.to_string())?;
        }
    }
    if let (Some(release), Some(spec)) = (&live, &spec) {
        say("-----> starting the apps again");
        restore::bring_up(platform, release, spec, &Default::default()).await?;
    }
    Ok(format!(
        "{env} now has a copy of {parent}'s mount data ({} volume(s))",
        copies.len()
    ))
}
