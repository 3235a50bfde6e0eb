//! Backups of an environment (spec section 9): `backup create` takes a consistent,
//! service-native dump of every service and a tar of every mount ([`parts`]) while
//! everything keeps running, stores each part in the archive under its sha256 (written
//! atomically) and the whole under one archive tag (`backup_PROJECT.ENV.TIME-HASH`, HASH of
//! the manifest and the moment, an OCI
//! manifest whose layers are the parts, so `archive verify` checks them and `archive gc`
//! keeps them by [`retained`]), and records its typed manifest in the state DB.
//!
//! `backup restore` runs under the environment's deploy lock: every blob is verified first
//! (a corrupt or missing one refuses the restore before anything changes), the services
//! must still be of the types the backup has, then the apps stop, each service's data and
//! each mount is replaced, and the live release starts again.

pub mod parts;
pub mod pg_roles;
pub mod rollback;
pub mod upgrade;
pub mod words;

pub use words::{none_yet, overwritten, part_names, size, taken};

use std::sync::Arc;
use std::time::Instant;

use slipway_slug::{ArtifactPart, Digest};
use slipway_state::{Backup, BackupManifest, BackupPart, PartKind};

use crate::failure::OpError;
use crate::output::{Output, Watch};
use crate::{provision, restore, Platform};

/// The media type of a backup's config blob (its manifest, as JSON).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.slipway.backup.manifest.v1+json";

/// The prefix of backup tags in the archive (`_` is in no project name, so no release tag
/// `PROJECT.ENV.rN.APP` starts with it).
pub const TAG_PREFIX: &str = "backup_";

/// `archive gc` keeps this many newest backups of each environment...
pub const KEEP_NEWEST: usize = 7;
/// ...and every backup younger than this many days.
pub const KEEP_DAYS: i64 = 30;

/// Whether the retention rule keeps `backup` (one of its environment's, `rank` 0 the newest)
/// at time `now` (unix seconds): the [`KEEP_NEWEST`] newest of each environment, and any
/// younger than [`KEEP_DAYS`] days.
pub fn retained(
    backup: &Backup,
    rank: usize,
    now: i64,
    keep_newest: usize,
    keep_days: i64,
) -> bool {
    rank < keep_newest || now - backup.created_at < keep_days * 86_400
}

/// Take `env`'s deploy lock (saying on `watch` while it waits for a deploy that runs now),
/// then run `f` with an activity `(kind, summary)` recorded for it (its id told to
/// `watch`), its lines streamed to `watch` (backups, restores, and `sync`'s).
pub(crate) async fn with_activity<T, F, Fut>(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    (kind, summary): (&str, &str),
    user: &str,
    watch: Watch,
    f: F,
) -> Result<T, OpError>
where
    F: FnOnce(Output) -> Fut,
    Fut: std::future::Future<Output = Result<(T, String), OpError>>,
{
    let _guard = platform
        .lock_env(project, env, |l| watch.say(l))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?;
    _guard.doing(&format!("{summary} by {user}"));
    let activity =
        platform
            .state()
            .start_activity(project, Some(env), kind, Some(user), summary)?;
    watch.activity_started(activity);
    let out = Output::with_sink(platform.clone(), activity, watch.lines);
    let result = f(out.clone()).await;
    if let Err(e) = &result {
        out.failed(summary, &e.to_string());
    }
    out.flush();
    let state = platform.state();
    match result {
        Ok((v, done)) => {
            let _ = state.finish_activity(activity, "success", &done);
            Ok(v)
        }
        Err(e) => {
            let summary = crate::output::failed_summary(summary, &e.to_string());
            let _ = state.finish_activity(activity, "failure", &summary);
            Err(e)
        }
    }
}

/// `backup create PROJECT ENV`: take a backup (waiting for a deploy of the environment
/// that runs now). Returns it; every failure of a backup is internal (a service that
/// fails to dump, I/O, the archive).
pub async fn create(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    user: &str,
    watch: impl Into<Watch>,
) -> Result<Backup, OpError> {
    with_activity(
        platform,
        project,
        env,
        ("backup", &format!("backup of {env}")),
        user,
        watch.into(),
        |out| async move {
            let b = take(platform, project, env, user, &out).await?;
            let done = format!("backup {} of {env}", b.id);
            Ok((b, done))
        },
    )
    .await
}

/// Take a backup of `env` (the caller holds its deploy lock), saying each step on `out`.
pub async fn take(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    user: &str,
    out: &Output,
) -> Result<Backup, String> {
    let t0 = Instant::now();
    let state = platform.state();
    let mut manifest = BackupManifest::default();
    let mut files = Vec::new();
    let services = state.services(project, env).map_err(|e| e.to_string())?;
    // Each service's own volume (`service-NAME`) is kept by its native dump, not as a tar
    // of the files a running server is writing; network-storage volumes have no service
    // record and are kept as mounts.
    let service_volumes: Vec<String> = services
        .iter()
        .map(|r| format!("service-{}", r.name))
        .collect();
    for record in services {
        if !parts::has_data(&record) {
            out.line(&format!(
                "       service {} ({}): holds no data to keep; skipped",
                record.name, record.service_type
            ));
            manifest.skipped.push(record.name.clone());
            continue;
        }
        let t = Instant::now();
        let taken = parts::take_service(platform, &record).await?;
        let n = taken.len();
        for note in taken.iter().filter_map(|t| t.note.as_deref()) {
            out.line(&format!("       service {}: {note}", record.name));
        }
        files.extend(taken);
        out.phase_done(
            &format!("backup {}", record.name),
            &format!("{}:{}, {n} part(s)", record.service_type, record.version),
            t,
        );
    }
    let store = platform.data().volumes();
    for volume in store.volumes(project, env).map_err(|e| e.to_string())? {
        if service_volumes.contains(&volume.name) {
            continue;
        }
        let t = Instant::now();
        let file = platform.archive().part_file().map_err(|e| e.to_string())?;
        let v = volume.clone();
        let f = file.file().try_clone().map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || parts::take_mount(&v, &f))
            .await
            .map_err(|e| e.to_string())??;
        files.push(parts::Taken {
            part: BackupPart {
                kind: PartKind::MountTar,
                name: volume.name.clone(),
                service: String::new(),
                database: None,
                digest: String::new(),
                size: 0,
            },
            file,
            note: None,
        });
        out.phase_done(&format!("backup mount {}", volume.name), "tar", t);
    }
    // Each part under its digest, then the manifest and the tag.
    let archive = platform.archive().clone();
    let (manifest, artifact_parts) = tokio::task::spawn_blocking(move || {
        let mut artifact_parts = Vec::new();
        for parts::Taken { mut part, file, .. } in files {
            let (digest, size) = archive.put_part(file).map_err(|e| e.to_string())?;
            if size == 0 {
                return Err(format!(
                    "service {}: its dump is empty; no backup was recorded",
                    part.name
                ));
            }
            part.digest = digest.to_string();
            part.size = size;
            artifact_parts.push(ArtifactPart {
                digest,
                size,
                media_type: part.kind.media_type().to_string(),
                title: match &part.database {
                    Some(db) => format!("{}/{db}", part.name),
                    None => part.name.clone(),
                },
            });
            manifest.parts.push(part);
        }
        Ok::<_, String>((manifest, artifact_parts))
    })
    .await
    .map_err(|e| e.to_string())??;
    let json = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // The hash covers the moment too: two backups of unchanged data within one second
    // (taken one after the other under the environment's lock) get tags of their own.
    let mut named = json.clone();
    named.extend_from_slice(&now.as_nanos().to_le_bytes());
    let tag = format!(
        "{TAG_PREFIX}{project}.{env}.{}-{}",
        now.as_secs(),
        &Digest::of_bytes(&named).hex()[..12]
    );
    platform
        .archive()
        .put_artifact(&tag, MANIFEST_MEDIA_TYPE, &json, &artifact_parts)
        .map_err(|e| e.to_string())?;
    let id = state
        .add_backup(project, env, &tag, &manifest, user)
        .map_err(|e| e.to_string())?;
    let backup = state
        .backup(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("backup {id} is not in the state database"))?;
    out.phase_done(
        "backup",
        &format!(
            "backup {id}: {} part(s), {}",
            backup.manifest.parts.len(),
            slipway_slug::human_size(backup.size)
        ),
        t0,
    );
    Ok(backup)
}

/// Check every blob of `backup`: each must be in the archive and hash to its digest.
pub fn verify(platform: &Platform, backup: &Backup) -> Result<(), String> {
    for p in &backup.manifest.parts {
        let what = match &p.database {
            Some(db) => format!("{} ({db})", p.name),
            None => p.name.clone(),
        };
        let d = Digest::parse(&p.digest)
            .map_err(|e| format!("backup {}: part {what}: {e}", backup.id))?;
        platform.archive().check_blob(&d).map_err(|e| {
            format!(
                "backup {} is damaged: part {what}: {e}; nothing was changed",
                backup.id
            )
        })?;
    }
    Ok(())
}

/// Backup `id` if it is one of any environment of `project` (a backup of `main` restores
/// into `dev` too: each service of the backup must be in the environment restored, of
/// the same type and version); Err is the message for the user. `backup restore` and the
/// console's "Restore" both take it.
pub fn of_project(platform: &Platform, project: &str, id: i64) -> Result<Backup, OpError> {
    platform
        .state()
        .backup(id)?
        .filter(|b| b.project == project)
        .ok_or_else(|| {
            OpError::not_found(format!(
                "backup {id} is not a backup of project {project} (`backup ls {project} ENV` lists them); nothing was changed"
            ))
        })
}

/// `backup restore PROJECT ENV ID`: put `env`'s services and mounts back as backup `id`
/// (of `env` or of another environment of the project) has them. Returns a summary line;
/// Err is a refusal (no such backup of the project, services it no longer has alike) or an
/// internal failure (a damaged backup, a part that fails to load).
pub async fn restore(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    id: i64,
    user: &str,
    watch: impl Into<Watch>,
) -> Result<String, OpError> {
    let backup = of_project(platform, project, id)?;
    let from = if backup.environment == env {
        String::new()
    } else {
        format!(" of {}", backup.environment)
    };
    with_activity(
        platform,
        project,
        env,
        (
            "restore",
            &format!("restore of {env} from backup {id}{from}"),
        ),
        user,
        watch.into(),
        |out| async move {
            let summary = restore_locked(platform, project, env, &backup, &out).await?;
            Ok((summary.clone(), summary))
        },
    )
    .await
}

async fn restore_locked(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    backup: &Backup,
    out: &Output,
) -> Result<String, OpError> {
    let t0 = Instant::now();
    let state = platform.state();
    let p = platform.clone();
    let b = backup.clone();
    tokio::task::spawn_blocking(move || verify(&p, &b))
        .await
        .map_err(|e| e.to_string())??;
    out.phase_done(
        "verify",
        &format!(
            "{} part(s) match their digests",
            backup.manifest.parts.len()
        ),
        t0,
    );
    // Every service of the backup is still there, of the same type and version.
    let services = state.services(project, env).map_err(|e| e.to_string())?;
    let mut by_service: Vec<(slipway_state::ServiceRecord, Vec<&BackupPart>)> = Vec::new();
    for part in backup
        .manifest
        .parts
        .iter()
        .filter(|p| p.kind != PartKind::MountTar)
    {
        let record = services
            .iter()
            .find(|s| s.name == part.name)
            .ok_or_else(|| {
                OpError::refused(format!(
                    "backup {} has service {} ({}), which {env} no longer has; nothing was changed",
                    backup.id, part.name, part.service
                ))
            })?;
        let now = format!("{}:{}", record.service_type, record.version);
        if now != part.service {
            return Err(OpError::refused(format!(
                "service {} is {now} now, backup {} holds {}: a backup restores into the same type and version; nothing was changed",
                part.name, backup.id, part.service
            )));
        }
        match by_service.iter_mut().find(|(r, _)| r.name == record.name) {
            Some((_, list)) => list.push(part),
            None => by_service.push((record.clone(), vec![part])),
        }
    }

    let (live, spec) = crate::release_record::live_with_spec(state, project, env)?;
    if let Some(spec) = &spec {
        out.line("-----> stopping the apps of this environment");
        provision::remove_release(platform, spec, std::time::Duration::from_secs(5)).await;
    }
    // Each volume the restore writes to, copied aside first: a part that fails to load
    // puts every one back (all or nothing).
    let mut snapshots = rollback::Snapshots::default();
    let taken = async {
        for (record, _) in &by_service {
            let v = crate::services::data::volume(platform, project, env, &record.name)
                .map_err(|e| e.to_string())?;
            if v.exists() {
                snapshots.take(v, Some(record.clone())).await?;
            }
        }
        let store = platform.data().volumes();
        for part in backup
            .manifest
            .parts
            .iter()
            .filter(|p| p.kind == PartKind::MountTar)
        {
            let v = store
                .volume(project, env, &part.name)
                .map_err(|e| e.to_string())?;
            if v.exists() {
                snapshots.take(v, None).await?;
            }
        }
        Ok::<_, String>(())
    }
    .await;
    let taken_ok = taken.is_ok();
    let result = match taken {
        Err(e) => Err(e),
        Ok(()) => load_all(platform, project, env, backup, &by_service, out).await,
    };
    let result = match (result, taken_ok) {
        (Ok(()), _) => {
            snapshots.discard();
            Ok(())
        }
        (Err(e), false) => {
            snapshots.discard();
            Err(format!("{e}; nothing was changed"))
        }
        (Err(e), true) => {
            out.line(&format!("       restore failed: {e}"));
            let failed = snapshots.put_back(platform, out).await;
            if failed.is_empty() {
                Err(format!(
                    "{e}; every service and mount was put back as it was before the restore"
                ))
            } else {
                Err(format!("{e}; NOT put back: {}", failed.join("; ")))
            }
        }
    };
    if let (Some(release), Some(spec)) = (&live, &spec) {
        out.line("-----> starting the apps again");
        restore::bring_up(platform, release, spec, &Default::default()).await?;
    }
    result?;
    Ok(format!(
        "{env} restored from backup {} ({} part(s))",
        backup.id,
        backup.manifest.parts.len()
    ))
}

/// Load every part of `backup`: each service's, then each mount's.
async fn load_all(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    backup: &Backup,
    by_service: &[(slipway_state::ServiceRecord, Vec<&BackupPart>)],
    out: &Output,
) -> Result<(), String> {
    {
        for (record, parts) in by_service {
            let t = Instant::now();
            let notes = parts::load_service(platform, record, parts).await?;
            for note in notes {
                out.line(&format!("       {note}"));
            }
            out.phase_done(
                &format!("restore {}", record.name),
                &format!("{}:{}", record.service_type, record.version),
                t,
            );
        }
        let store = platform.data().volumes();
        for part in backup
            .manifest
            .parts
            .iter()
            .filter(|p| p.kind == PartKind::MountTar)
        {
            let t = Instant::now();
            let volume = store
                .volume(project, env, &part.name)
                .map_err(|e| e.to_string())?;
            let blob = platform
                .archive()
                .blob_path(&Digest::parse(&part.digest).map_err(|e| e.to_string())?);
            tokio::task::spawn_blocking(move || parts::load_mount(&volume, &blob))
                .await
                .map_err(|e| e.to_string())??;
            out.phase_done(&format!("restore mount {}", part.name), "tar", t);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(created_at: i64) -> Backup {
        Backup {
            id: 1,
            project: "p".into(),
            environment: "main".into(),
            tag: "backup.p.main.1".into(),
            manifest: BackupManifest::default(),
            size: 0,
            created_by: "u".into(),
            created_at,
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let now = 100 * 86_400;
        let old = backup(now - 40 * 86_400);
        let young = backup(now - 2 * 86_400);
        assert!(retained(&old, 0, now, 7, 30));
        assert!(retained(&old, 6, now, 7, 30));
        assert!(!retained(&old, 7, now, 7, 30));
        assert!(retained(&young, 50, now, 7, 30));
        assert!(!retained(&young, 50, now, 7, 1));
    }
}
