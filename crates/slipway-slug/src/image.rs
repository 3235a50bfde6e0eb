//! Release images: the OCI image config and manifest for one slug, as canonical JSON.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfiguration, ImageConfigurationBuilder, ImageManifest,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::pack::SlugInfo;

/// Media type of slug layers.
pub const SLUG_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The image's working directory, where the slug's `app/` lands.
pub const WORKING_DIR: &str = "/app";

/// What [`crate::Archive::put_release`] stores: the app's stack layers and its slug plus
/// how to run it, under a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseImage {
    /// The tag in index.json (`org.opencontainers.image.ref.name`), e.g. `demo.main.r3.hello`.
    pub tag: String,
    /// The layers below the slug (the app's stack), bottom first, already in the archive;
    /// empty for an app on the host stack.
    #[serde(default)]
    pub base: Vec<SlugInfo>,
    /// The slug (must already be in the archive).
    pub slug: SlugInfo,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Env`, `KEY=VALUE` strings.
    pub env: Vec<String>,
    /// `config.Labels`.
    pub labels: BTreeMap<String, String>,
}

/// Serialize with every object's keys sorted, so the same value always gives the same bytes
/// (oci-spec keeps labels and annotations in `HashMap`s).
pub(crate) fn canonical_json<T: Serialize>(
    v: &T,
    pretty: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(v)?;
    value.sort_all_objects();
    if pretty {
        let mut out = serde_json::to_vec_pretty(&value)?;
        out.push(b'\n');
        Ok(out)
    } else {
        serde_json::to_vec(&value)
    }
}

/// The image config for `release`: host architecture, linux, Cmd/Env/Labels, WorkingDir
/// `/app`, one diff_id. No `created` time, so the same release gives the same config digest.
pub(crate) fn image_config(
    release: &ReleaseImage,
) -> Result<ImageConfiguration, oci_spec::OciSpecError> {
    let mut config = ConfigBuilder::default().working_dir(WORKING_DIR);
    if !release.cmd.is_empty() {
        config = config.cmd(release.cmd.clone());
    }
    if !release.env.is_empty() {
        config = config.env(release.env.clone());
    }
    if !release.labels.is_empty() {
        let labels: HashMap<String, String> = release.labels.clone().into_iter().collect();
        config = config.labels(labels);
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            release
                .base
                .iter()
                .chain(std::iter::once(&release.slug))
                .map(|l| l.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?;
    ImageConfigurationBuilder::default()
        .architecture(Arch::default())
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(rootfs)
        .build()
}

fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest, oci_spec::OciSpecError> {
    d.as_str().parse()
}

/// The manifest: the config blob and the one slug layer.
pub(crate) fn image_manifest(
    config: &Digest,
    config_size: u64,
    base: &[SlugInfo],
    slug: &SlugInfo,
) -> Result<ImageManifest, oci_spec::OciSpecError> {
    let config = Descriptor::new(MediaType::ImageConfig, config_size, oci_digest(config)?);
    let mut layers = Vec::new();
    for l in base.iter().chain(std::iter::once(slug)) {
        layers.push(Descriptor::new(
            MediaType::ImageLayerZstd,
            l.size,
            oci_digest(&l.digest)?,
        ));
    }
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
}

/// A descriptor for an index.json entry, with the tag as `org.opencontainers.image.ref.name`.
pub(crate) fn tagged_manifest(
    manifest: &Digest,
    size: u64,
    tag: &str,
) -> Result<Descriptor, oci_spec::OciSpecError> {
    let mut d = Descriptor::new(MediaType::ImageManifest, size, oci_digest(manifest)?);
    let mut ann = HashMap::new();
    ann.insert(
        oci_spec::image::ANNOTATION_REF_NAME.to_string(),
        tag.to_string(),
    );
    d.set_annotations(Some(ann));
    Ok(d)
}

/// The tag of an index.json entry, if it has one.
pub(crate) fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(oci_spec::image::ANNOTATION_REF_NAME))
        .map(String::as_str)
}
