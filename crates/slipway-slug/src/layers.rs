//! Images of any number of layers in the archive (stacks, imported images): a tar stream
//! stored as a tar+zstd layer blob, and a tagged image of such layers.
//!
//! The same rules as slugs: blobs are written atomically under their digest, and every
//! read of a manifest or config checks its digest.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType,
    Os, RootFsBuilder,
};

use crate::archive::Archive;
use crate::digest::{Digest, HashReader, HashWriter};
use crate::error::{IoContext, SlugError};
use crate::image::{canonical_json, tag_of, tagged_manifest};
use crate::pack::SlugInfo;
use crate::tag::validate_tag;

impl Archive {
    /// Compress the uncompressed tar stream `tar` with zstd at `level` into a layer blob
    /// (atomically; a failed read leaves nothing). Returns its digest, size and diff_id.
    pub fn put_layer(&self, tar: impl Read, level: i32) -> Result<SlugInfo, SlugError> {
        let tmp = self.temp_file()?;
        let file = tmp.as_file().try_clone().ctx(tmp.path())?;
        let hashed_out = HashWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        let mut encoder = zstd::Encoder::new(hashed_out, level).ctx(tmp.path())?;
        let mut input = HashReader::new(tar);
        io::copy(&mut input, &mut encoder).ctx(tmp.path())?;
        let (diff_id, _) = input.drain().ctx(tmp.path())?;
        let hashed_out = encoder.finish().ctx(tmp.path())?;
        let (mut out, digest, size) = hashed_out.finish();
        out.flush().ctx(tmp.path())?;
        drop(out);
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            self.persist(tmp, &dest)?;
        }
        Ok(SlugInfo {
            digest,
            size,
            diff_id,
        })
    }

    /// Write an image of `layers` (already in the archive, bottom first, tar+zstd) with
    /// `labels`, and add or replace `tag` in index.json. Returns the manifest digest.
    pub fn put_image(
        &self,
        tag: &str,
        layers: &[SlugInfo],
        labels: &BTreeMap<String, String>,
    ) -> Result<Digest, SlugError> {
        validate_tag(tag)?;
        for l in layers {
            match std::fs::metadata(self.blob_path(&l.digest)) {
                Ok(m) if m.len() == l.size => {}
                _ => return Err(SlugError::MissingBlob(l.digest.clone())),
            }
        }
        let spec_err = |what: &str, e: &dyn std::fmt::Display| SlugError::BadLayout {
            path: self.root().to_path_buf(),
            reason: format!("cannot build the {what}: {e}"),
        };
        let oci = |d: &Digest| d.as_str().parse::<oci_spec::image::Digest>();
        let mut config = ConfigBuilder::default();
        if !labels.is_empty() {
            config = config.labels(labels.clone().into_iter().collect::<HashMap<_, _>>());
        }
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::default())
            .os(Os::Linux)
            .config(config.build().map_err(|e| spec_err("image config", &e))?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(
                        layers
                            .iter()
                            .map(|l| l.diff_id.to_string())
                            .collect::<Vec<_>>(),
                    )
                    .build()
                    .map_err(|e| spec_err("image config", &e))?,
            )
            .build()
            .map_err(|e| spec_err("image config", &e))?;
        let config_json =
            canonical_json(&config, false).map_err(|e| spec_err("image config", &e))?;
        let (config_digest, config_size) = self.put_blob(&config_json)?;
        let mut descriptors = Vec::new();
        for l in layers {
            let d = oci(&l.digest).map_err(|e| spec_err("manifest", &e))?;
            descriptors.push(Descriptor::new(MediaType::ImageLayerZstd, l.size, d));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_size,
                oci(&config_digest).map_err(|e| spec_err("manifest", &e))?,
            ))
            .layers(descriptors)
            .build()
            .map_err(|e| spec_err("manifest", &e))?;
        let manifest_json =
            canonical_json(&manifest, false).map_err(|e| spec_err("manifest", &e))?;
        let (manifest_digest, manifest_size) = self.put_blob(&manifest_json)?;
        let entry = tagged_manifest(&manifest_digest, manifest_size, tag)
            .map_err(|e| spec_err("index entry", &e))?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut manifests: Vec<_> = index
            .manifests()
            .iter()
            .filter(|d| tag_of(d) != Some(tag))
            .cloned()
            .collect();
        manifests.push(entry);
        manifests.sort_by(|a, b| tag_of(a).cmp(&tag_of(b)));
        index.set_manifests(manifests);
        self.write_index(&index)?;
        tracing::info!(%tag, manifest = %manifest_digest, "stored image");
        Ok(manifest_digest)
    }

    /// The layers (bottom first) and labels of the image tagged `tag`; the manifest and
    /// config digests are verified, the layer blobs are not read.
    pub fn image_layers(
        &self,
        tag: &str,
    ) -> Result<(Vec<SlugInfo>, BTreeMap<String, String>), SlugError> {
        let (manifest, config, manifest_path) = self.tagged_image(tag)?;
        let bad = |reason: String| SlugError::BadLayout {
            path: manifest_path.clone(),
            reason,
        };
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let layers = self.layer_infos(&manifest, diff_ids)?;
        let labels = config
            .config()
            .as_ref()
            .and_then(|c| c.labels().clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok((layers, labels))
    }
}

impl Archive {
    /// Make blob `d` of archive `from` a blob of this archive too (a hard link when both
    /// are on one file system, else a copy whose digest is checked). A no-op if present.
    pub fn adopt_blob(&self, from: &Archive, d: &Digest) -> Result<(), SlugError> {
        let dest = self.blob_path(d);
        if dest.exists() {
            return Ok(());
        }
        let src = from.blob_path(d);
        if std::fs::hard_link(&src, &dest).is_ok() {
            return Ok(());
        }
        let mut tmp = self.temp_file()?;
        let file = std::fs::File::open(&src).ctx(&src)?;
        let mut reader = HashReader::new(io::BufReader::with_capacity(1 << 20, file));
        io::copy(&mut reader, tmp.as_file_mut()).ctx(tmp.path())?;
        let (actual, _) = reader.drain().ctx(&src)?;
        if actual != *d {
            return Err(SlugError::DigestMismatch {
                digest: d.clone(),
                actual,
            });
        }
        self.persist(tmp, &dest)
    }
}
