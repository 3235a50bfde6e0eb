//! All-or-nothing restores: before a restore touches anything, each volume it writes to
//! (each restored service's, each restored mount's) is copied aside with
//! [`Volume::snapshot_to`] (`NAME.img.pre-restore`, consistent while the service keeps
//! running). When a part fails to load, every volume is put back from its copy (its
//! service stopped, the image swapped, the service started again and waited for), so the
//! environment holds exactly what it held before; when all parts load, the copies go.

use std::path::PathBuf;
use std::sync::Arc;

use slipway_state::{ServiceRecord, ServiceState};

use crate::output::Output;
use crate::services;
use crate::volumes::Volume;
use crate::Platform;

/// The copy of `volume` a restore keeps until it is done.
fn copy_path(volume: &Volume) -> PathBuf {
    volume.image.with_extension("img.pre-restore")
}

/// The copies of the volumes a restore writes to, each with the service running on it
/// (None: a mount's volume, its apps stopped for the restore).
#[derive(Default)]
pub struct Snapshots {
    taken: Vec<(Volume, Option<ServiceRecord>)>,
}

impl Snapshots {
    /// Copy `volume` aside (its service `record`, if any, keeps running).
    pub async fn take(
        &mut self,
        volume: Volume,
        record: Option<ServiceRecord>,
    ) -> Result<(), String> {
        let v = volume.clone();
        tokio::task::spawn_blocking(move || {
            let dest = copy_path(&v);
            let _ = std::fs::remove_file(&dest);
            v.snapshot_to(&dest)
                .map_err(|e| format!("copying volume {} aside: {e}", v.name))
        })
        .await
        .map_err(|e| e.to_string())??;
        self.taken.push((volume, record));
        Ok(())
    }

    /// The restore loaded every part: the copies go.
    pub fn discard(self) {
        for (v, _) in &self.taken {
            let _ = std::fs::remove_file(copy_path(v));
        }
    }

    /// A part failed: every volume back as it was, its service started again on it.
    /// Returns what could not be put back (empty: all of it was).
    pub async fn put_back(self, platform: &Arc<Platform>, out: &Output) -> Vec<String> {
        let mut failed = Vec::new();
        for (volume, record) in &self.taken {
            if let Some(r) = record {
                services::stop(platform, r).await;
            }
            let v = volume.clone();
            let swapped = tokio::task::spawn_blocking(move || {
                v.unmount().map_err(|e| e.to_string())?;
                std::fs::rename(copy_path(&v), &v.image)
                    .map_err(|e| format!("putting {} back: {e}", v.image.display()))?;
                v.mount().map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            let started = match (swapped, record) {
                (Err(e), _) => Err(e),
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(r)) => start_again(platform, r).await,
            };
            match started {
                Ok(()) => out.line(&format!(
                    "       {} put back as it was before the restore",
                    volume.name
                )),
                Err(e) => failed.push(format!("{}: {e}", volume.name)),
            }
        }
        failed
    }
}

/// Start service `r` again on its volume and wait until it answers.
async fn start_again(platform: &Arc<Platform>, r: &ServiceRecord) -> Result<(), String> {
    let netns = crate::environment::netns_name(platform.instance(), &r.project, &r.environment);
    services::start(platform, r, &netns).await?;
    services::wait_ready(platform, r, services::ready_timeout(&r.service_type)).await?;
    platform
        .state()
        .set_service_state(&r.project, &r.environment, &r.name, ServiceState::Running)
        .map_err(|e| e.to_string())
}
