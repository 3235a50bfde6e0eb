//! Phase **slug**: pack a built app folder into the archive as a
//! content-addressed, deterministic tar+zstd OCI layer (written atomically),
//! and remember its build key so the same build is never run twice.
//!
//! A slug over `Settings::slug_max_size` (compressed) fails the build with its
//! size and its biggest entries. A failed or cancelled pack (the deploy was
//! dropped) leaves nothing in the archive: the blob appears only once complete.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use slipway_slug::{PackOptions, SlugInfo};

use crate::build::CancelOnDrop;

use slipway_slug::human_size;

use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::Platform;

/// Where a slug comes from: what its record under the build key says besides the key.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// The project whose build made it.
    pub project: String,
    /// The environment whose build made it.
    pub environment: String,
    /// Whether a build cache held something when the build started.
    pub cache_fed: bool,
}

/// Pack `build_dir` of `app` into the archive and record it under `build_key`, for the
/// project and environment of `provenance`.
pub async fn run(
    platform: &Arc<Platform>,
    app: &str,
    build_dir: PathBuf,
    build_key: &str,
    provenance: &Provenance,
    out: &Output,
    started: Instant,
) -> Result<SlugInfo, PhaseError> {
    let p = platform.clone();
    let cancel = Arc::new(AtomicBool::new(false));
    // Dropping this future (a cancelled deploy) stops the packing thread.
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let options = PackOptions {
        level: platform.settings().slug_level,
        max_size: Some(platform.settings().slug_max_size),
        cancel: Some(cancel),
    };
    let info = tokio::task::spawn_blocking(move || p.archive().put_slug(&build_dir, &options))
        .await
        .map_err(|e| PhaseError::new("build", format!("packing the slug of {app}: {e}")))?
        .map_err(|e| match e {
            slipway_slug::SlugError::TooBig { .. } => {
                PhaseError::new("build", format!("{app}: {e}"))
            }
            e => PhaseError::new("build", format!("packing the slug of {app}: {e}")),
        })?;
    platform
        .state()
        .record_built_slug(&slipway_state::BuiltSlug {
            project: provenance.project.clone(),
            build_key: build_key.to_string(),
            environment: provenance.environment.clone(),
            cache_fed: provenance.cache_fed,
            slug: crate::build::encode_slug(&info),
        })
        .map_err(|e| PhaseError::new("build", e.to_string()))?;
    out.phase_done(
        &format!("build {app}"),
        &format!("built {} ({})", info.digest, human_size(info.size)),
        started,
    );
    Ok(info)
}
