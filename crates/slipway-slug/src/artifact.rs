//! Artifacts other than releases kept in the archive (backups): a tagged OCI manifest whose
//! config blob describes the artifact and whose layers are its parts, each a blob named by
//! its sha256. Being ordinary manifests in index.json, `verify` checks their blobs and `gc`
//! keeps them exactly while their tag is kept.
//!
//! Parts are written by streaming into a temp file of the archive ([`Archive::part_file`])
//! and then stored atomically under their digest ([`Archive::put_part`]).

use std::collections::HashMap;
use std::fs;
use std::io;

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};

use crate::archive::{hash_file, Archive};
use crate::digest::Digest;
use crate::error::{IoContext, SlugError};
use crate::image::{canonical_json, tag_of, tagged_manifest};
use crate::tag::validate_tag;

/// One part of an artifact: a blob with its media type and annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPart {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type, e.g. `application/vnd.slipway.backup.pg-dump`.
    pub media_type: String,
    /// What it is, as `org.opencontainers.image.title`.
    pub title: String,
}

/// A temp file in the archive's root that becomes a blob with [`Archive::put_part`]
/// (removed when dropped otherwise).
pub struct PartFile(tempfile::NamedTempFile);

impl PartFile {
    /// The open file (to hand to a child process as its stdout).
    pub fn file(&self) -> &fs::File {
        self.0.as_file()
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Archive {
    /// A new temp file in the archive to write a part into.
    pub fn part_file(&self) -> Result<PartFile, SlugError> {
        Ok(PartFile(self.temp_file()?))
    }

    /// Hash `part` and store it as a blob (fsync, rename, atomically; dropped when the blob
    /// is there already). Returns its digest and size.
    pub fn put_part(&self, part: PartFile) -> Result<(Digest, u64), SlugError> {
        let (digest, size) = hash_file(part.path()).ctx(part.path())?;
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            self.persist(part.0, &dest)?;
        }
        Ok((digest, size))
    }

    /// Check that blob `d` exists and hashes to its name, reading it as a stream.
    pub fn check_blob(&self, d: &Digest) -> Result<(), SlugError> {
        let path = self.blob_path(d);
        let (actual, _) = match hash_file(&path) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SlugError::MissingBlob(d.clone()))
            }
            Err(e) => return Err(SlugError::Io { path, source: e }),
        };
        if actual != *d {
            return Err(SlugError::DigestMismatch {
                digest: d.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Write an artifact: `config` as its config blob (media type `config_media_type`), a
    /// manifest listing `parts` as layers (each must be in the archive), and `tag` in
    /// index.json (added or replaced). Returns the manifest's digest.
    pub fn put_artifact(
        &self,
        tag: &str,
        config_media_type: &str,
        config: &[u8],
        parts: &[ArtifactPart],
    ) -> Result<Digest, SlugError> {
        validate_tag(tag)?;
        let spec_err = |e: &dyn std::fmt::Display| SlugError::BadLayout {
            path: self.root().to_path_buf(),
            reason: format!("cannot build the artifact manifest: {e}"),
        };
        let oci = |d: &Digest| d.as_str().parse::<oci_spec::image::Digest>();
        let (config_digest, config_size) = self.put_blob(config)?;
        let config_desc = Descriptor::new(
            MediaType::Other(config_media_type.to_string()),
            config_size,
            oci(&config_digest).map_err(|e| spec_err(&e))?,
        );
        let mut layers = Vec::new();
        for p in parts {
            if !self.has_blob(&p.digest) {
                return Err(SlugError::MissingBlob(p.digest.clone()));
            }
            let mut d = Descriptor::new(
                MediaType::Other(p.media_type.clone()),
                p.size,
                oci(&p.digest).map_err(|e| spec_err(&e))?,
            );
            let mut ann = HashMap::new();
            ann.insert(
                oci_spec::image::ANNOTATION_TITLE.to_string(),
                p.title.clone(),
            );
            d.set_annotations(Some(ann));
            layers.push(d);
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers)
            .build()
            .map_err(|e| spec_err(&e))?;
        let json = canonical_json(&manifest, false).map_err(|e| spec_err(&e))?;
        let (manifest_digest, manifest_size) = self.put_blob(&json)?;
        let entry =
            tagged_manifest(&manifest_digest, manifest_size, tag).map_err(|e| spec_err(&e))?;
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
        tracing::info!(tag, manifest = %manifest_digest, "stored artifact");
        Ok(manifest_digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn parts_are_stored_by_digest_verified_and_kept_by_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path()).unwrap();
        let part = archive.part_file().unwrap();
        part.file().write_all(b"a dump").unwrap();
        let (d, size) = archive.put_part(part).unwrap();
        assert_eq!(d, Digest::of_bytes(b"a dump"));
        assert_eq!(size, 6);
        archive.check_blob(&d).unwrap();
        let parts = [ArtifactPart {
            digest: d.clone(),
            size,
            media_type: "application/x-test".into(),
            title: "db/main".into(),
        }];
        archive
            .put_artifact("backup.p.main.1", "application/x-cfg", b"{}", &parts)
            .unwrap();
        assert!(archive.verify().unwrap().is_empty());
        // Kept by its tag; collected with it.
        archive.gc(&|t| t.starts_with("backup.")).unwrap();
        archive.check_blob(&d).unwrap();
        archive.gc(&|_| false).unwrap();
        assert!(matches!(
            archive.check_blob(&d),
            Err(SlugError::MissingBlob(_))
        ));
        // A corrupt blob is named.
        let part = archive.part_file().unwrap();
        part.file().write_all(b"other").unwrap();
        let (d, _) = archive.put_part(part).unwrap();
        fs::write(archive.blob_path(&d), b"changed").unwrap();
        assert!(matches!(
            archive.check_blob(&d),
            Err(SlugError::DigestMismatch { .. })
        ));
    }
}
