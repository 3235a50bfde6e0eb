//! Where a service keeps its data: a volume of its own, `service-NAME` of its environment
//! (an ext4 image sized from the service's `disk`, see [`crate::volumes`]), so the kernel
//! enforces the size and a full disk is the service's own `No space left on device`, never
//! the host's. The volume's `data/` folder is the service container's `/app`.
//!
//! - [`prepare`], before each start: the volume is made (refused when the host's disk
//!   cannot hold it), copied from the parent environment's at a branch's first deploy,
//!   mounted and grown to the service's `disk`; data an older Slipway kept in a plain
//!   folder (`DATA/volumes/PROJECT/ENV/services/NAME`) is moved onto it first.
//! - [`remove`]: a service removed from the config (one holding data: with
//!   `-o allow-data-loss`), once the deploy that removed it is live.
//! - [`stop_environment`]: a deleted branch; its services stop and its volumes are
//!   unmounted, their data kept (as the environment's record and releases are).

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_state::ServiceRecord;
use tracing::warn;

use crate::volumes::{Ensured, Volume, VolumeError, DEFAULT_DISK_MB, MIN_DISK_MB};
use crate::Platform;

const MIB: u64 = 1024 * 1024;

/// Errors of a service's data volume.
#[derive(Debug, thiserror::Error)]
pub enum ServiceDataError {
    /// The volume itself failed (made, mounted, grown, copied, ...).
    #[error("service {service}: {source}")]
    Volume {
        /// The service.
        service: String,
        /// The cause.
        source: VolumeError,
    },
    /// The host's disk has less room than the service's `disk`.
    #[error("service {service}: the host's disk has {free_mb} MB free, less than its disk of {size_mb} MB; free space on the host or ask for a smaller `disk`")]
    HostFull {
        /// The service.
        service: String,
        /// Its disk (MB).
        size_mb: u64,
        /// What the host has free (MB).
        free_mb: u64,
    },
    /// Data found in a plain folder is larger than the service's `disk`.
    #[error("service {service}: its data ({used_mb} MB) does not fit its disk of {size_mb} MB; ask for `disk: {needed_mb}` or more")]
    DoesNotFit {
        /// The service.
        service: String,
        /// The data there (MB).
        used_mb: u64,
        /// The disk asked for (MB).
        size_mb: u64,
        /// A disk it fits in (MB).
        needed_mb: u64,
    },
}

/// The volume of service `name` of an environment (it may not exist yet).
pub fn volume(
    platform: &Platform,
    project: &str,
    env: &str,
    name: &str,
) -> Result<Volume, VolumeError> {
    platform
        .data()
        .volumes()
        .volume(project, env, &format!("service-{name}"))
}

/// The plain folder older releases of Slipway kept a service's data in:
/// `DATA/volumes/PROJECT/ENV/services/NAME`. Moved onto the service's volume by [`prepare`].
pub fn legacy_dir(platform: &Platform, project: &str, env: &str, name: &str) -> PathBuf {
    platform
        .data()
        .volumes()
        .env_dir(project, env)
        .join("services")
        .join(name)
}

/// The size of a service's volume (MB) for its `disk` (MB, unset: the default).
pub fn size_mb(disk: Option<u64>) -> u64 {
    disk.unwrap_or(DEFAULT_DISK_MB).max(MIN_DISK_MB)
}

/// Make the service's volume ready before its container starts; returns what was done, one
/// line each, for the deploy's output. `parent`: the volume of the same service in the
/// parent environment (same type and version), copied while frozen when this one does not
/// exist yet. A volume already there is grown to `disk`, never shrunk (refused, naming the
/// data it holds). The service must not be running when a plain folder is migrated.
pub fn prepare(
    platform: &Platform,
    record: &ServiceRecord,
    disk: Option<u64>,
    parent: Option<(&str, &Volume)>,
) -> Result<Vec<String>, ServiceDataError> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    let fail = |source: VolumeError| ServiceDataError::Volume {
        service: name.clone(),
        source,
    };
    let size = size_mb(disk);
    let v = volume(platform, project, env, name).map_err(fail)?;
    let legacy = legacy_dir(platform, project, env, name);
    let has_legacy = legacy.is_dir();
    let mut notes = Vec::new();
    if !v.exists() && !has_legacy {
        if let Some((from, pv)) = parent.filter(|(_, pv)| pv.exists()) {
            let parent_mb = pv.size_mb().map_err(fail)?;
            if parent_mb <= size {
                let mb = v.copy_from(pv).map_err(fail)?;
                notes.push(format!("data copied from {from} ({mb} MB disk)"));
            } else {
                notes.push(format!(
                    "data not copied from {from}: its disk is {parent_mb} MB there, more than {size} MB here"
                ));
            }
        }
    }
    if !v.exists() {
        let free_mb = v.host_free_mb().map_err(fail)?;
        if free_mb < size {
            return Err(ServiceDataError::HostFull {
                service: name.clone(),
                size_mb: size,
                free_mb,
            });
        }
        if has_legacy {
            let used_mb = slipway_stack::dir_size(&legacy).div_ceil(MIB);
            // ext4's own metadata takes some of the disk.
            let needed_mb = used_mb + used_mb / 10 + MIN_DISK_MB;
            if needed_mb > size {
                return Err(ServiceDataError::DoesNotFit {
                    service: name.clone(),
                    used_mb,
                    size_mb: size,
                    needed_mb,
                });
            }
        }
    }
    match v.ensure(size).map_err(fail)? {
        Ensured::Created if notes.is_empty() && !has_legacy => {
            notes.push(format!("{size} MB disk, new"))
        }
        Ensured::Created | Ensured::Unchanged => {}
        Ensured::Grown(from) => notes.push(format!("disk grown online {from} MB -> {size} MB")),
        Ensured::GrowsAtNextMount(from) => notes.push(format!(
            "disk grown {from} MB -> {size} MB; its file system grows when next mounted (this server cannot grow a mounted volume: no CAP_SYS_RESOURCE)"
        )),
    }
    if has_legacy {
        let mb = migrate(&v, &legacy).map_err(fail)?;
        notes.push(format!(
            "data moved from its folder onto a {size} MB volume ({mb} MB used)"
        ));
    }
    v.service_data(crate::isolation::run_as(project))
        .map_err(fail)?;
    Ok(notes)
}

/// Move the data of a plain folder onto the mounted volume `v` (its `data/`): copied to
/// `data.migrating`, flushed, renamed, and only then is the folder removed, so a crash at
/// any point leaves one whole copy (the next [`prepare`] finishes the move). Returns the
/// volume's use (MB).
fn migrate(v: &Volume, legacy: &Path) -> Result<u64, VolumeError> {
    let data = v.dir.join("data");
    let partial = v.dir.join("data.migrating");
    let run = |what: String, cmd: &mut Command| -> Result<(), VolumeError> {
        let out = cmd.output().map_err(|source| VolumeError::Io {
            what: format!("running {what}"),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(VolumeError::Tool {
                what,
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    if !data.exists() {
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|source| VolumeError::Io {
                what: format!("removing {}", partial.display()),
                source,
            })?;
        }
        run(
            format!("copying {} onto its volume", legacy.display()),
            Command::new("cp")
                .args(["-a", "--sparse=always", "-T"])
                .arg(legacy)
                .arg(&partial),
        )?;
        run(
            format!("flushing {}", v.dir.display()),
            Command::new("sync").arg("-f").arg(&partial),
        )?;
        std::fs::rename(&partial, &data).map_err(|source| VolumeError::Io {
            what: format!("renaming {}", partial.display()),
            source,
        })?;
    }
    std::fs::remove_dir_all(legacy).map_err(|source| VolumeError::Io {
        what: format!("removing {}", legacy.display()),
        source,
    })?;
    if let Some(services) = legacy.parent() {
        // Gone once its last service moved (fails harmlessly while others remain).
        let _ = std::fs::remove_dir(services);
    }
    Ok(v.used_bytes()?.div_ceil(MIB))
}

/// The disk a service's data uses and its size (bytes, MB), from its volume while mounted.
pub fn disk(platform: &Platform, record: &ServiceRecord) -> Option<(u64, u64)> {
    let v = volume(platform, &record.project, &record.environment, &record.name).ok()?;
    volume_disk(&v)
}

/// The bytes volume `v` uses and its size (MB); None while it is not mounted.
pub fn volume_disk(v: &Volume) -> Option<(u64, u64)> {
    if !v.exists() || !v.is_mounted().ok()? {
        return None;
    }
    Some((v.used_bytes().ok()?, v.size_mb().ok()?))
}

/// A service removed from the config (one holding data: with `-o allow-data-loss`), once
/// that deploy is live:
/// its container stops, its record goes, and its volume (its data) is deleted.
pub async fn remove(platform: &Platform, record: &ServiceRecord) -> Result<(), String> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    super::stop(platform, record).await;
    platform
        .state()
        .remove_service(project, env, name)
        .map_err(|e| e.to_string())?;
    volume(platform, project, env, name)
        .and_then(|v| v.remove())
        .map_err(|e| format!("service {name}: {e}"))?;
    let legacy = legacy_dir(platform, project, env, name);
    if legacy.exists() {
        std::fs::remove_dir_all(&legacy).map_err(|e| format!("{}: {e}", legacy.display()))?;
    }
    Ok(())
}

/// A deleted branch: the services of its environment stop cleanly and its volumes (services'
/// and mounts') are unmounted. Their data stays, as the environment's record and releases
/// do: pushing the branch again brings them back. Call once its apps are stopped.
pub async fn stop_environment(platform: &Platform, project: &str, env: &str) {
    match platform.state().services(project, env) {
        Ok(records) => {
            for r in &records {
                super::stop(platform, r).await;
            }
        }
        Err(e) => warn!(project, env, "services not stopped: {e}"),
    }
    match platform.data().volumes().volumes(project, env) {
        Ok(volumes) => {
            for v in volumes {
                if let Err(e) = v.unmount() {
                    warn!(project, env, volume = %v.name, "not unmounted: {e}");
                }
            }
        }
        Err(e) => warn!(project, env, "volumes not unmounted: {e}"),
    }
}
