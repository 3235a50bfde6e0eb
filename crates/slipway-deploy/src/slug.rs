//! Phase **slug**: pack a built app folder into the archive as a
//! content-addressed, deterministic tar+zstd OCI layer (written atomically),
//! and remember its build key so the same build is never run twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use slipway_slug::SlugInfo;

use crate::output::{format_size, Output};
use crate::pipeline::PhaseError;
use crate::Platform;

/// Pack `build_dir` of `app` into the archive and record `build_key`.
pub async fn run(
    platform: &Arc<Platform>,
    app: &str,
    build_dir: PathBuf,
    build_key: &str,
    out: &Output,
    started: Instant,
) -> Result<SlugInfo, PhaseError> {
    let p = platform.clone();
    let level = platform.settings().slug_level;
    let info = tokio::task::spawn_blocking(move || p.archive().put_slug_from_dir(&build_dir, level))
        .await
        .map_err(|e| PhaseError::new("build", format!("packing the slug of {app}: {e}")))?
        .map_err(|e| PhaseError::new("build", format!("packing the slug of {app}: {e}")))?;
    platform
        .state()
        .record_build(build_key, &crate::build::encode_slug(&info))
        .map_err(|e| PhaseError::new("build", e.to_string()))?;
    out.phase_done(
        &format!("build {app}"),
        &format!("built {} ({})", info.digest, format_size(info.size)),
        started,
    );
    Ok(info)
}
