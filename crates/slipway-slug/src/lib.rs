//! Slugs and the slug archive.
//!
//! A *slug* is an app's built folder packed as a deterministic tar (see [`pack`] for the
//! exact format: entries under `app/`, sorted, fixed mtime, uid/gid 0, normalized modes,
//! symlinks kept), compressed with zstd, and named by the sha256 of the compressed bytes.
//! It is an OCI layer of media type [`SLUG_MEDIA_TYPE`].
//!
//! The *archive* ([`Archive`]) is a standard OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`): each release is an image (config + manifest + the app's stack
//! layers, if it runs on a stack, and its slug layer) tagged in index.json with
//! `org.opencontainers.image.ref.name`, so skopeo and umoci can read it (`skopeo inspect oci:ARCHIVE:TAG`, `umoci unpack --image ARCHIVE:TAG BUNDLE`
//! gives `BUNDLE/rootfs/app/...`). umoci reads zstd layers from version 0.5.0; older ones
//! (Debian's 0.4.7) list and stat the images but refuse to unpack a tar+zstd layer: the
//! tests then unpack the same image after `skopeo copy --dest-compress-format gzip`.
//!
//! Packing is a three-thread pipeline (walk and read, hash the tar, feed zstd's own worker
//! threads) with an optional size limit ([`SlugError::TooBig`] names the size and the
//! biggest entries) and cancel flag ([`PackOptions`]). Writes into the archive are atomic,
//! so a failed, oversized or cancelled pack leaves nothing in it.

#![warn(missing_docs)]

mod archive;
mod artifact;
mod digest;
mod error;
mod image;
mod layers;
mod maint;
pub mod pack;
mod tag;
mod unpack;

pub use archive::{hash_file, Archive, TagEntry};
pub use artifact::{ArtifactPart, PartFile};
pub use digest::Digest;
pub use error::SlugError;
pub use image::{ReleaseImage, SLUG_MEDIA_TYPE, WORKING_DIR};
pub use maint::{GcReport, VerifyProblem};
pub use pack::{
    human_size, pack_dir, pack_dir_with, PackOptions, SlugInfo, DEFAULT_LEVEL, DEFAULT_MAX_SIZE,
    LAYER_ROOT, SLUG_MTIME,
};
pub use tag::{validate_tag, MAX_TAG_LEN};

#[cfg(test)]
mod determinism_tests;
