//! Major upgrades of services (`git push -o allow-service-upgrade`, which the diff asks
//! for): a backup of the environment is taken first, then each upgraded service's data is
//! moved to the new version by dump and restore: the old server stops, its data folder is
//! kept aside (`NAME.pre-upgrade-OLDVERSION`), the new version starts on an empty folder
//! and the service's dumps of that backup are loaded into it. A failure puts the old
//! version back on its own data. Every step is a line of the push's output. A major
//! downgrade (`-o allow-data-loss`, which the diff asks for) goes the same way: the newer
//! server's dump is loaded into the older one, or, where the older cannot read it (a
//! PostgreSQL custom-format dump of a newer major), the push fails and the newer version
//! keeps running on its data.

use std::sync::Arc;
use std::time::Instant;

use slipway_config::catalog::compare_versions;
use slipway_config::{DiffOptions, Topology};
use slipway_state::{BackupPart, ServiceRecord, ServiceState};

use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::services;
use crate::Platform;

use super::parts;

/// The services of `topology` whose running version is an older major (and which hold
/// data), with the version they go to; with `-o allow-data-loss`, those whose running
/// version is a newer major too.
fn upgrades(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &Topology,
    options: DiffOptions,
) -> Result<Vec<(ServiceRecord, String)>, String> {
    let mut out = Vec::new();
    for svc in &topology.services {
        let Some(record) = platform
            .state()
            .service(project, env, &svc.name)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if record.service_type != svc.r#type {
            continue;
        }
        // From the stack it was made on to the one the pushed version resolves to.
        let from = services::stack::of_record(&record)?;
        let to = slipway_stack::resolve_service(&svc.r#type, &svc.version)
            .map_err(|e| format!("service {}: {e}", svc.name))?
            .stack;
        let software = from.language;
        if services::stack::major(software, from.version)
            != services::stack::major(software, to.version)
            && match compare_versions(to.version, from.version) {
                std::cmp::Ordering::Greater => options.allow_service_upgrade,
                std::cmp::Ordering::Less => options.allow_data_loss,
                std::cmp::Ordering::Equal => false,
            }
            && parts::has_data(&record)
        {
            out.push((record, svc.version.clone()));
        }
    }
    Ok(out)
}

/// Upgrade every service whose major version the pushed topology raises (the caller holds
/// the environment's deploy lock and the diff allowed it).
pub async fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    topology: &Topology,
    options: DiffOptions,
    out: &Output,
) -> Result<(), PhaseError> {
    let fail = |m: String| PhaseError::new("provision", m);
    let list = upgrades(platform, project, env, topology, options).map_err(fail)?;
    if list.is_empty() {
        return Ok(());
    }
    for (r, to) in &list {
        out.line(&format!(
            "-----> service upgrade: {} {} {} -> {}: a backup first",
            r.name, r.service_type, r.version, to
        ));
    }
    let backup = super::take(platform, project, env, "slipway", out)
        .await
        .map_err(fail)?;
    for (record, to) in &list {
        let t = Instant::now();
        let mine: Vec<&BackupPart> = backup
            .manifest
            .parts
            .iter()
            .filter(|p| p.name == record.name && p.kind != slipway_state::PartKind::MountTar)
            .collect();
        upgrade_one(platform, record, to, &mine, out)
            .await
            .map_err(fail)?;
        out.phase_done(
            &format!("service upgrade {}", record.name),
            &format!(
                "{} {} -> {} by dump and restore (backup {} holds the old data)",
                record.service_type, record.version, to, backup.id
            ),
            t,
        );
    }
    Ok(())
}

/// The running services of `topology` (holding data) whose stack changed since they
/// started on it, with the stack they start on now: the same catalog version built anew
/// (`slipway stack build` again, `slipway stack import` over it, or a newer Slipway whose
/// recipe or packages differ: another fingerprint), or another version of the same major
/// (`redis:7.0` gone from the catalog, `7.2` in its place).
fn restacked(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &Topology,
) -> Result<Vec<(ServiceRecord, slipway_state::ServiceStack)>, String> {
    let mut out = Vec::new();
    for svc in &topology.services {
        let Some(record) = platform
            .state()
            .service(project, env, &svc.name)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let Some(recorded) = &record.stack else {
            continue;
        };
        if record.service_type != svc.r#type
            || record.state != ServiceState::Running
            || !parts::has_data(&record)
        {
            continue;
        }
        let now = services::stack::made_on(services::stack::of_record(&record)?);
        if now != *recorded {
            out.push((record, now));
        }
    }
    Ok(out)
}

/// Before a deploy's services step: every running service whose stack changed under it
/// ([`restacked`]) is moved onto it now, a backup of the environment taken first (the
/// caller holds the environment's deploy lock): it stops, starts on the new stack and
/// its record names that stack. Every step is a line of the push's output. A service that
/// does not come back on it fails the push (its data as it was, in that backup).
pub async fn restack(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    let fail = |m: String| PhaseError::new("provision", m);
    let list = restacked(platform, project, env, topology).map_err(fail)?;
    if list.is_empty() {
        return Ok(());
    }
    let described = |s: &slipway_state::ServiceStack| format!("{s} (build {})", s.fingerprint);
    for (r, to) in &list {
        let was = r.stack.as_ref().map(described).unwrap_or_default();
        out.line(&format!(
            "-----> service upgrade: {} runs on {was}, its stack is {} now: a backup first",
            r.name,
            described(to)
        ));
    }
    let backup = super::take(platform, project, env, "slipway", out)
        .await
        .map_err(fail)?;
    let state = platform.state();
    for (record, to) in &list {
        let t = Instant::now();
        services::stop(platform, record).await;
        state
            .set_service_stack(project, env, &record.name, to)
            .map_err(|e| fail(e.to_string()))?;
        let mut moved = record.clone();
        moved.stack = Some(to.clone());
        let netns = crate::environment::netns_name(platform.instance(), project, env);
        services::start(platform, &moved, &netns)
            .await
            .map_err(|e| fail(format!("service {}: {e}", record.name)))?;
        services::wait_ready(
            platform,
            &moved,
            services::ready_timeout(&moved.service_type),
        )
        .await
        .map_err(|e| fail(format!("service {}: {e}", record.name)))?;
        state
            .set_service_state(project, env, &record.name, ServiceState::Running)
            .map_err(|e| fail(e.to_string()))?;
        out.phase_done(
            &format!("service upgrade {}", record.name),
            &format!(
                "restarted on {} (backup {} holds its data as it was)",
                described(to),
                backup.id
            ),
            t,
        );
    }
    Ok(())
}

async fn upgrade_one(
    platform: &Arc<Platform>,
    old: &ServiceRecord,
    to: &str,
    dumps: &[&BackupPart],
    out: &Output,
) -> Result<(), String> {
    let (project, env, name) = (&old.project, &old.environment, &old.name);
    let dir = services::data_dir(platform, project, env, name);
    let mut aside = dir.with_file_name(format!("{name}.pre-upgrade-{}", old.version));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = dir.with_file_name(format!("{name}.pre-upgrade-{}.{n}", old.version));
    }
    let netns = crate::environment::netns_name(platform.instance(), project, env);
    out.line(&format!(
        "       {name}: stopping {} {}",
        old.service_type, old.version
    ));
    services::stop(platform, old).await;
    std::fs::rename(&dir, &aside).map_err(|e| format!("{}: {e}", dir.display()))?;
    out.line(&format!(
        "       {name}: its data folder is kept as {}",
        aside.display()
    ));
    let mut new = old.clone();
    new.version = to.to_string();
    let made_on = slipway_stack::resolve_service(&old.service_type, to)
        .map(|r| services::stack::made_on(r.stack))
        .map_err(|e| format!("service {name}: {e}"))?;
    new.stack = Some(made_on.clone());
    let state = platform.state();
    let attempt = async {
        // The configured schemas and endpoints apply at the new server's first start too (a
        // MariaDB without them would make the default `main`).
        let init = aside.join(services::recipe::ENDPOINTS_FILE);
        if init.exists() {
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::copy(&init, dir.join(services::recipe::ENDPOINTS_FILE)))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        state
            .set_service_version(project, env, name, to)
            .and_then(|()| state.set_service_stack(project, env, name, &made_on))
            .map_err(|e| e.to_string())?;
        out.line(&format!(
            "       {name}: starting {} {to}",
            new.service_type
        ));
        services::start(platform, &new, &netns).await?;
        services::wait_ready(platform, &new, services::READY_TIMEOUT).await?;
        state
            .set_service_state(project, env, name, ServiceState::Running)
            .map_err(|e| e.to_string())?;
        out.line(&format!(
            "       {name}: loading {} dump(s) into {to}",
            dumps.len()
        ));
        for note in parts::load_service(platform, &new, dumps).await? {
            out.line(&format!("       {note}"));
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(e) = attempt {
        out.line(&format!(
            "       {name}: upgrade failed, {} {} comes back on its data",
            old.service_type, old.version
        ));
        services::stop(platform, &new).await;
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::rename(&aside, &dir);
        let _ = state.set_service_version(project, env, name, &old.version);
        if let Some(was) = &old.stack {
            let _ = state.set_service_stack(project, env, name, was);
        }
        if services::start(platform, old, &netns).await.is_ok()
            && services::wait_ready(platform, old, services::READY_TIMEOUT)
                .await
                .is_ok()
        {
            let _ = state.set_service_state(project, env, name, ServiceState::Running);
        }
        return Err(format!("service {name}: {e}"));
    }
    Ok(())
}
