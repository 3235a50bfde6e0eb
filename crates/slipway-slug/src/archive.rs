//! The slug archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`).
//!
//! Every write is atomic: content goes to a temp file in the archive root
//! (`.slipway-tmp-*`), is fsynced, then renamed into place, and the folder is fsynced.
//! Changes to index.json (put_release, gc) hold an exclusive `flock` on the archive root,
//! so concurrent writers (threads or processes) never lose each other's tags.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{
    ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashReader};
use crate::error::{IoContext, SlugError};
use crate::image::{
    canonical_json, image_config, image_manifest, tag_of, tagged_manifest, ReleaseImage,
};
use crate::pack::{pack_dir_with, PackOptions, SlugInfo};
use crate::tag::validate_tag;
use crate::unpack::unpack_tar;

/// Prefix of the archive's temp files (left behind only by a crash; `gc` removes old ones).
pub(crate) const TMP_PREFIX: &str = ".slipway-tmp-";
const OCI_LAYOUT_FILE: &str = "oci-layout";
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";
const INDEX_FILE: &str = "index.json";

/// One tag of index.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagEntry {
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// The digest of the image manifest it names.
    pub manifest: Digest,
}

/// An OCI image layout folder holding slugs and release images.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

/// An exclusive `flock` on the archive root, released on drop (when the fd closes).
pub(crate) struct LayoutLock(#[allow(dead_code)] File);

impl Archive {
    /// Open the archive at `root`, creating the layout (folders, `oci-layout`, an empty
    /// `index.json`) if missing. Refuses a folder whose `oci-layout` is not version 1.x.
    pub fn open(root: &Path) -> Result<Archive, SlugError> {
        let archive = Archive {
            root: root.to_path_buf(),
        };
        let blobs = archive.blobs_dir();
        fs::create_dir_all(&blobs).ctx(&blobs)?;
        let layout = root.join(OCI_LAYOUT_FILE);
        match fs::read(&layout) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| SlugError::BadLayout {
                        path: layout.clone(),
                        reason: e.to_string(),
                    })?;
                let version = v
                    .get("imageLayoutVersion")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                if !version.starts_with("1.") {
                    return Err(SlugError::BadLayout {
                        path: layout,
                        reason: format!("unsupported imageLayoutVersion {version:?}"),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                archive.write_atomic(&layout, OCI_LAYOUT.as_bytes())?;
            }
            Err(e) => {
                return Err(SlugError::Io {
                    path: layout,
                    source: e,
                })
            }
        }
        let index = root.join(INDEX_FILE);
        if !index.exists() {
            let _lock = archive.lock()?;
            if !index.exists() {
                let empty = ImageIndexBuilder::default()
                    .schema_version(2u32)
                    .media_type(MediaType::ImageIndex)
                    .manifests(Vec::new())
                    .build()
                    .map_err(|e| SlugError::BadLayout {
                        path: index.clone(),
                        reason: e.to_string(),
                    })?;
                archive.write_index(&empty)?;
            }
        }
        Ok(archive)
    }

    /// The archive's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob `d` lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Pack `dir` straight into the archive (temp file in the archive root, fsync, rename to
    /// `blobs/sha256/<hex>`). If that blob already exists the temp file is dropped: nothing
    /// new is written.
    pub fn put_slug_from_dir(&self, dir: &Path, level: i32) -> Result<SlugInfo, SlugError> {
        self.put_slug(dir, &PackOptions::level(level))
    }

    /// [`Archive::put_slug_from_dir`] with a size limit and a cancel flag: a slug over the
    /// limit ([`SlugError::TooBig`]) or a cancelled pack leaves nothing in the archive.
    pub fn put_slug(&self, dir: &Path, options: &PackOptions) -> Result<SlugInfo, SlugError> {
        let tmp = self.temp_file()?;
        let info = pack_dir_with(dir, tmp.as_file(), options)?;
        let dest = self.blob_path(&info.digest);
        if dest.exists() {
            tracing::debug!(digest = %info.digest, "slug already in the archive");
            return Ok(info);
        }
        self.persist(tmp, &dest)?;
        tracing::info!(digest = %info.digest, size = info.size, "stored slug");
        Ok(info)
    }

    /// Whether the blob `d` is present (its content is not checked).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Read a blob, verifying its digest ([`SlugError::DigestMismatch`] names the blob).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, SlugError> {
        let path = self.blob_path(d);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SlugError::MissingBlob(d.clone()))
            }
            Err(e) => return Err(SlugError::Io { path, source: e }),
        };
        let actual = Digest::of_bytes(&bytes);
        if actual != *d {
            return Err(SlugError::DigestMismatch {
                digest: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Store `bytes` as a blob (atomically; a no-op if present). Returns its digest and size.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<(Digest, u64), SlugError> {
        let d = Digest::of_bytes(bytes);
        let dest = self.blob_path(&d);
        if !dest.exists() {
            self.write_atomic(&dest, bytes)?;
        }
        Ok((d, bytes.len() as u64))
    }

    /// Write a release image: the image config blob (host architecture, linux, Cmd, Env,
    /// WorkingDir `/app`, Labels, `rootfs.diff_ids = [slug.diff_id]`), the manifest blob
    /// (one layer: the slug, [`crate::SLUG_MEDIA_TYPE`]), and add or replace `release.tag`
    /// in index.json (rewritten atomically). Returns the manifest digest. The slug must
    /// already be in the archive, with the size `release.slug` says.
    pub fn put_release(&self, release: &ReleaseImage) -> Result<Digest, SlugError> {
        validate_tag(&release.tag)?;
        let slug_path = self.blob_path(&release.slug.digest);
        match fs::metadata(&slug_path) {
            Ok(m) if m.len() == release.slug.size => {}
            Ok(m) => {
                return Err(SlugError::BadLayout {
                    path: slug_path,
                    reason: format!(
                        "slug is {} bytes, the release says {}",
                        m.len(),
                        release.slug.size
                    ),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SlugError::MissingBlob(release.slug.digest.clone()))
            }
            Err(e) => {
                return Err(SlugError::Io {
                    path: slug_path,
                    source: e,
                })
            }
        }
        let spec_err = |what: &str, e: &dyn std::fmt::Display| SlugError::BadLayout {
            path: self.root.clone(),
            reason: format!("cannot build the {what}: {e}"),
        };
        let config = image_config(release).map_err(|e| spec_err("image config", &e))?;
        let config_json =
            canonical_json(&config, false).map_err(|e| spec_err("image config", &e))?;
        let (config_digest, config_size) = self.put_blob(&config_json)?;
        for l in &release.base {
            if !self.has_blob(&l.digest) {
                return Err(SlugError::MissingBlob(l.digest.clone()));
            }
        }
        let manifest = image_manifest(&config_digest, config_size, &release.base, &release.slug)
            .map_err(|e| spec_err("manifest", &e))?;
        let manifest_json =
            canonical_json(&manifest, false).map_err(|e| spec_err("manifest", &e))?;
        let (manifest_digest, manifest_size) = self.put_blob(&manifest_json)?;
        let entry = tagged_manifest(&manifest_digest, manifest_size, &release.tag)
            .map_err(|e| spec_err("index entry", &e))?;

        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut manifests: Vec<_> = index
            .manifests()
            .iter()
            .filter(|d| tag_of(d) != Some(release.tag.as_str()))
            .cloned()
            .collect();
        manifests.push(entry);
        manifests.sort_by(|a, b| tag_of(a).cmp(&tag_of(b)));
        index.set_manifests(manifests);
        self.write_index(&index)?;
        tracing::info!(tag = %release.tag, manifest = %manifest_digest, "stored release");
        Ok(manifest_digest)
    }

    /// The tags and manifest digests in index.json (entries without a tag are skipped).
    pub fn list(&self) -> Result<Vec<TagEntry>, SlugError> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for d in index.manifests() {
            if let Some(tag) = tag_of(d) {
                out.push(TagEntry {
                    tag: tag.to_string(),
                    manifest: self.descriptor_digest(d.digest())?,
                });
            }
        }
        Ok(out)
    }

    /// Read back the release stored under `tag` (manifest and config digests are verified).
    pub fn get_release(&self, tag: &str) -> Result<ReleaseImage, SlugError> {
        let (manifest, config, manifest_path) = self.tagged_image(tag)?;
        let bad = |reason: String| SlugError::BadLayout {
            path: manifest_path.clone(),
            reason,
        };
        let diff_ids = config.rootfs().diff_ids();
        if manifest.layers().is_empty() || diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "a slipway release has its stack's layers and its slug, with one diff_id each; \
                 this one has {} layers and {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = self.layer_infos(&manifest, diff_ids)?;
        let slug = layers.pop().ok_or_else(|| bad("no slug layer".into()))?;
        let run = config.config().clone().unwrap_or_default();
        Ok(ReleaseImage {
            tag: tag.to_string(),
            base: layers,
            slug,
            cmd: run.cmd().clone().unwrap_or_default(),
            env: run.env().clone().unwrap_or_default(),
            labels: run
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    /// Unpack slug `d` into `cache_root/<hex>/` once (cached by digest): unpack into a temp
    /// folder next to it while hashing the compressed stream, check the digest, sync, then
    /// rename into place. Hostile entries are refused ([`SlugError::BadEntry`]): absolute
    /// paths, `..`, entries outside `app/`, hard links, devices, fifos, symlinks climbing out
    /// of the app folder, paths through symlinks, duplicates. Returns the folder, whose
    /// contents are the app files (the folder to mount at `/app`).
    pub fn unpack_slug(&self, d: &Digest, cache_root: &Path) -> Result<PathBuf, SlugError> {
        let final_dir = cache_root.join(d.hex());
        if fs::symlink_metadata(&final_dir)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            return Ok(final_dir);
        }
        fs::create_dir_all(cache_root).ctx(cache_root)?;
        let blob = self.blob_path(d);
        let file = match File::open(&blob) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SlugError::MissingBlob(d.clone()))
            }
            Err(e) => {
                return Err(SlugError::Io {
                    path: blob,
                    source: e,
                })
            }
        };
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(cache_root)
            .ctx(cache_root)?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).ctx(tmp.path())?;
        let mut hashing = HashReader::new(file);
        let result = zstd::stream::read::Decoder::new(&mut hashing)
            .ctx(&blob)
            .and_then(|dec| unpack_tar(dec, tmp.path(), d));
        // Hash whatever the decoder did not read: the digest covers the whole blob, and a
        // corrupt blob is reported as such even when it first broke the decoder.
        let (actual, _) = hashing.drain().ctx(&blob)?;
        if actual != *d {
            return Err(SlugError::DigestMismatch {
                digest: d.clone(),
                actual,
            });
        }
        result?;
        sync_fs(tmp.path())?;
        let unpacked = tmp.keep();
        match fs::rename(&unpacked, &final_dir) {
            Ok(()) => {
                fsync_dir(cache_root)?;
                tracing::info!(digest = %d, dir = %final_dir.display(), "unpacked slug");
                Ok(final_dir)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&unpacked);
                if final_dir.is_dir() {
                    Ok(final_dir) // another unpack of the same slug won the race
                } else {
                    Err(SlugError::Io {
                        path: final_dir,
                        source: e,
                    })
                }
            }
        }
    }

    // ---- internals shared with maint.rs ----

    pub(crate) fn descriptor_digest(
        &self,
        d: &oci_spec::image::Digest,
    ) -> Result<Digest, SlugError> {
        Digest::parse(d.as_ref())
    }

    /// The manifest and config of the image tagged `tag`, and the manifest's blob path (for
    /// errors); both digests are verified.
    pub(crate) fn tagged_image(
        &self,
        tag: &str,
    ) -> Result<(ImageManifest, ImageConfiguration, PathBuf), SlugError> {
        let entry = self
            .list()?
            .into_iter()
            .find(|e| e.tag == tag)
            .ok_or_else(|| SlugError::UnknownTag(tag.to_string()))?;
        let manifest = self.read_manifest(&entry.manifest)?;
        let manifest_path = self.blob_path(&entry.manifest);
        let config_digest = self.descriptor_digest(manifest.config().digest())?;
        let config: ImageConfiguration = serde_json::from_slice(&self.read_blob(&config_digest)?)
            .map_err(|e| SlugError::BadLayout {
            path: manifest_path.clone(),
            reason: format!("image config {config_digest}: {e}"),
        })?;
        Ok((manifest, config, manifest_path))
    }

    /// The manifest's layers (bottom first) with their `diff_ids`, paired in order; the
    /// caller has checked that the counts agree.
    pub(crate) fn layer_infos(
        &self,
        manifest: &ImageManifest,
        diff_ids: &[String],
    ) -> Result<Vec<SlugInfo>, SlugError> {
        manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| {
                Ok(SlugInfo {
                    digest: self.descriptor_digest(layer.digest())?,
                    size: layer.size(),
                    diff_id: Digest::parse(diff_id)?,
                })
            })
            .collect()
    }

    pub(crate) fn read_manifest(&self, d: &Digest) -> Result<ImageManifest, SlugError> {
        let bytes = self.read_blob(d)?;
        serde_json::from_slice(&bytes).map_err(|e| SlugError::BadLayout {
            path: self.blob_path(d),
            reason: format!("not an image manifest: {e}"),
        })
    }

    pub(crate) fn read_index(&self) -> Result<ImageIndex, SlugError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = fs::read(&path).ctx(&path)?;
        serde_json::from_slice(&bytes).map_err(|e| SlugError::BadLayout {
            path,
            reason: e.to_string(),
        })
    }

    /// Rewrite index.json atomically. Callers hold [`Archive::lock`].
    pub(crate) fn write_index(&self, index: &ImageIndex) -> Result<(), SlugError> {
        let path = self.root.join(INDEX_FILE);
        let json = canonical_json(index, true).map_err(|e| SlugError::BadLayout {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.write_atomic(&path, &json)
    }

    /// Take the archive's exclusive lock (blocks until it is free).
    pub(crate) fn lock(&self) -> Result<LayoutLock, SlugError> {
        let f = File::open(&self.root).ctx(&self.root)?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LayoutLock(f));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(SlugError::Io {
                    path: self.root.clone(),
                    source: e,
                });
            }
        }
    }

    pub(crate) fn temp_file(&self) -> Result<tempfile::NamedTempFile, SlugError> {
        tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.root)
            .ctx(&self.root)
    }

    /// fsync `tmp`, make it 0644, rename it to `dest`, fsync `dest`'s folder.
    pub(crate) fn persist(
        &self,
        tmp: tempfile::NamedTempFile,
        dest: &Path,
    ) -> Result<(), SlugError> {
        tmp.as_file().sync_all().ctx(tmp.path())?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .ctx(tmp.path())?;
        tmp.persist(dest).map_err(|e| SlugError::Io {
            path: dest.to_path_buf(),
            source: e.error,
        })?;
        if let Some(parent) = dest.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), SlugError> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes).ctx(tmp.path())?;
        self.persist(tmp, dest)
    }
}

/// The digest and size of a file's content, read in a streaming way.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let f = File::open(path)?;
    HashReader::new(io::BufReader::with_capacity(256 * 1024, f).take(u64::MAX)).drain()
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), SlugError> {
    File::open(dir).and_then(|f| f.sync_all()).ctx(dir)
}

/// Flush the whole file system holding `path` (one syscall instead of an fsync per file).
fn sync_fs(path: &Path) -> Result<(), SlugError> {
    let f = File::open(path).ctx(path)?;
    // SAFETY: syncfs on a file descriptor we own.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(SlugError::Io {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}
