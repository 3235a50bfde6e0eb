//! `sync PROJECT ENV`: the environment's data (its mounts' and its services') replaced by a
//! fresh copy of its parent's ([`crate::mounts::recorded_parent`]: the environment its
//! branch was made from, recorded at its first deploy, else `main`), under the
//! environment's deploy lock. A production environment has no parent and is refused.
//!
//! The parent's volumes are copied first, each frozen only while its image is copied (see
//! [`crate::volumes::Volume::snapshot_to`]), so the parent never stops; a service's copy is
//! crash-consistent, which PostgreSQL, MariaDB and Redis recover from at start. A service's
//! volume is copied only into the same service (name, type and version) of the
//! environment. A parent's volume bigger than the environment's disk for it refuses the
//! sync, naming it, before anything is copied (volumes never shrink; a sync is a whole
//! copy or nothing). Then the environment's apps and those services stop, its volumes are
//! swapped for the copies, and its services and live release start again on them (the
//! apps are down for that restart), each service with the environment's own credentials
//! and configuration, not the parent's the copy holds
//! ([`services::write_start_files`] before its start, PostgreSQL's endpoints after).
//!
//! A sync is an activity (kind `sync`, by its user) with its log, as a push is.

use std::sync::Arc;

use crate::failure::OpError;
use crate::mounts::PARENT_ENV;
use crate::output::{Output, Watch};
use crate::{provision, restore, services, Platform};

/// Copy the parent's volumes over `env`'s for `user`, recorded as an activity whose log
/// `watch` also gets (told the activity's id once recorded); returns a summary line; Err
/// is a refusal (production, a parent without data) or an internal failure.
pub async fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    user: &str,
    watch: impl Into<Watch>,
) -> Result<String, OpError> {
    // Production has no parent: its data is never replaced by a copy of a branch's.
    if env == PARENT_ENV || crate::protection::is_production(env) {
        return Err(OpError::refused(format!(
            "{env} is a production environment; sync copies a parent's data into a branch's environment, never into production"
        )));
    }
    crate::backups::with_activity(
        platform,
        project,
        env,
        ("sync", &format!("sync of {env} from its parent")),
        user,
        watch.into(),
        |out| async move {
            let summary = copy_parent(platform, project, env, &out).await?;
            Ok((summary.clone(), summary))
        },
    )
    .await
}

/// The sync itself (the caller holds the deploy lock), saying each step on `out`.
async fn copy_parent(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    out: &Output,
) -> Result<String, OpError> {
    let say = |l: &str| out.line(l);
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
    let parent = match (head, state.environment_parent(project, env)) {
        (Some(commit), _) => crate::mounts::recorded_parent(platform, project, env, commit),
        (None, Ok(Some(parent))) => parent,
        (None, _) => PARENT_ENV.to_string(),
    };
    let store = platform.data().volumes();
    let parents = store.volumes(project, &parent).map_err(|e| e.to_string())?;
    if parents.is_empty() {
        return Err(OpError::refused(format!(
            "{parent} has no mount data to copy"
        )));
    }

    let (live, spec) = crate::release_record::live_with_spec(state, project, env)?;
    let mut sizes = spec.as_ref().map(|s| s.volumes.clone()).unwrap_or_default();
    // The services both environments have alike, with this one's disk.
    let topology = live
        .as_ref()
        .map(crate::release_record::topology_of)
        .transpose()
        .map_err(|e| e.to_string())?;
    let mut services = Vec::new();
    for r in state.services(project, env).map_err(|e| e.to_string())? {
        let same = state
            .service(project, &parent, &r.name)
            .map_err(|e| e.to_string())?
            .is_some_and(|p| p.service_type == r.service_type && p.version == r.version);
        if same {
            let disk = topology
                .as_ref()
                .and_then(|t| t.service(&r.name))
                .and_then(|s| s.disk);
            sizes.push(crate::mounts::VolumeSize {
                name: format!("service-{}", r.name),
                size_mb: services::data::size_mb(disk),
            });
            services.push((r, disk));
        }
    }
    let parent_services: Vec<String> = state
        .services(project, &parent)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| format!("service-{}", r.name))
        .collect();

    // Copies of the parent's volumes, beside the environment's own. Volumes never shrink:
    // a parent's volume bigger than this environment's disk for it refuses the sync before
    // anything is copied or stopped (a sync is a whole copy or nothing).
    let p = platform.clone();
    let (proj, e) = (project.to_string(), env.to_string());
    let wanted = sizes.clone();
    let from = parent.clone();
    let copied = tokio::task::spawn_blocking(move || {
        let store = p.data().volumes();
        let mut sources = Vec::new();
        let mut too_big = Vec::new();
        for pv in store.volumes(&proj, &from)? {
            let ours = wanted.iter().find(|w| w.name == pv.name);
            if parent_services.contains(&pv.name) && ours.is_none() {
                // A service this environment does not have alike.
                continue;
            }
            let parent_mb = pv.size_mb()?;
            match ours {
                Some(w) if w.size_mb < parent_mb => too_big.push(format!(
                    "{} ({parent_mb} MB, {} MB here)",
                    pv.name, w.size_mb
                )),
                _ => sources.push(pv),
            }
        }
        if !too_big.is_empty() {
            return Ok(Err(too_big));
        }
        let mut copies = Vec::new();
        for pv in sources {
            let child = store.volume(&proj, &e, &pv.name)?;
            let tmp = child.image.with_extension("img.sync");
            if let Err(err) = pv.snapshot_to(&tmp) {
                for (_, t) in &copies {
                    let _ = std::fs::remove_file(t);
                }
                let _ = std::fs::remove_file(&tmp);
                return Err(err);
            }
            copies.push((child, tmp));
        }
        Ok::<_, crate::volumes::VolumeError>(Ok(copies))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let copies = copied.map_err(|too_big| {
        OpError::refused(format!(
            "nothing copied: {parent}'s data does not fit this environment's disks: {}; give {env} a `disk` at least as big as {parent}'s and push, then sync again",
            too_big.join(", ")
        ))
    })?;
    say(&format!(
        "-----> copied {} volume(s) of {parent}",
        copies.len()
    ));

    // Stop the apps and the services copied, swap the volumes, start them again.
    if let Some(spec) = &spec {
        say("-----> stopping the apps of this environment");
        provision::remove_release(platform, spec, std::time::Duration::from_secs(5)).await;
    }
    let copied = |r: &slipway_state::ServiceRecord| {
        copies
            .iter()
            .any(|(c, _)| c.name == format!("service-{}", r.name))
    };
    for (r, _) in services.iter().filter(|(r, _)| copied(r)) {
        say(&format!("-----> stopping service {}", r.name));
        services::stop(platform, r).await;
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
    let netns = crate::environment::netns_name(platform.instance(), project, env);
    for (r, disk) in services.iter().filter(|(r, _)| copied(r)) {
        say(&format!("-----> starting service {} on its copy", r.name));
        let (p, rec, disk) = (platform.clone(), r.clone(), *disk);
        tokio::task::spawn_blocking(move || services::data::prepare(&p, &rec, disk, None))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        platform.env_network(&netns).await?;
        if r.service_type == "varnish" {
            // The copy's VCL points at the parent's apps: this environment's instead.
            services::varnish::write_for_live(platform, r)?;
        }
        // The copy's start files hold the parent's credentials: this environment's instead.
        let configuration = topology
            .as_ref()
            .and_then(|t| t.service(&r.name))
            .map(|s| s.configuration.clone())
            .unwrap_or_default();
        services::write_start_files(platform, r, &configuration)
            .map_err(|m| format!("service {}: {m}", r.name))?;
        services::start(platform, r, &netns).await?;
        services::wait_ready(platform, r, services::ready_timeout(&r.service_type)).await?;
        if r.service_type == "postgresql" {
            // Its own user's and its endpoints' passwords are the parent's in the copy.
            services::endpoints::apply(platform, r, &configuration)
                .await
                .map_err(|m| format!("service {}: {m}", r.name))?;
        }
        state
            .set_service_state(project, env, &r.name, slipway_state::ServiceState::Running)
            .map_err(|e| e.to_string())?;
    }
    if let (Some(release), Some(spec)) = (&live, &spec) {
        say("-----> starting the apps again");
        restore::bring_up(platform, release, spec, &Default::default()).await?;
    }
    Ok(format!(
        "{env} now has a copy of {parent}'s mount data and service data ({} volume(s))",
        copies.len()
    ))
}
