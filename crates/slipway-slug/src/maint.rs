//! Archive maintenance: verify every digest, garbage-collect what no kept release needs.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::archive::{fsync_dir, hash_file, Archive, TMP_PREFIX};
use crate::digest::Digest;
use crate::error::{IoContext, SlugError};
use crate::image::tag_of;

/// Temp files older than this are leftovers of a crash; `gc` removes them.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

/// One problem found by [`Archive::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifyProblem {
    /// A blob's content does not hash to its name.
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A blob referenced by index.json or a manifest is not in the archive.
    Missing {
        /// The missing blob.
        digest: Digest,
        /// Who refers to it: `index.json (tag T)` or `manifest sha256:...`.
        referenced_by: String,
    },
    /// A file that should be JSON of some kind, or a blob name, is not valid.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyProblem::Corrupt { digest, actual } => {
                write!(
                    f,
                    "blob {digest} is corrupt: its content hashes to {actual}"
                )
            }
            VerifyProblem::Missing {
                digest,
                referenced_by,
            } => {
                write!(
                    f,
                    "blob {digest} is missing (referenced by {referenced_by})"
                )
            }
            VerifyProblem::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

/// What [`Archive::gc`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Tags dropped from index.json.
    pub tags_removed: Vec<String>,
    /// Number of blobs deleted.
    pub blobs_removed: usize,
    /// Bytes freed (deleted blobs plus stale temp files).
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period (a build or
    /// a release being written right now).
    pub young_blobs_kept: usize,
}

impl Archive {
    /// Every blob the given index entries refer to (manifests, their configs and layers);
    /// unreadable manifests are skipped.
    fn referenced_by(&self, entries: &[oci_spec::image::Descriptor]) -> HashSet<Digest> {
        let mut out = HashSet::new();
        for desc in entries {
            let Ok(m) = self.descriptor_digest(desc.digest()) else {
                continue;
            };
            if let Ok(manifest) = self.read_manifest(&m) {
                for child in std::iter::once(manifest.config()).chain(manifest.layers()) {
                    if let Ok(c) = self.descriptor_digest(child.digest()) {
                        out.insert(c);
                    }
                }
            }
            out.insert(m);
        }
        out
    }

    /// Re-check every blob's digest, and that every blob referenced by index.json or by a
    /// manifest exists. Returns the problems found (empty: all good). Only I/O failures on
    /// the archive itself are errors.
    pub fn verify(&self) -> Result<Vec<VerifyProblem>, SlugError> {
        let mut problems = Vec::new();
        let mut corrupt = HashSet::new();
        let blobs = self.blobs_dir();
        let mut names: Vec<_> = fs::read_dir(&blobs)
            .ctx(&blobs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(&blobs)?;
        names.sort();
        for name in names {
            let path = blobs.join(&name);
            let Some(d) = name
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
            else {
                problems.push(VerifyProblem::Invalid {
                    path,
                    reason: "not a sha256 blob name".into(),
                });
                continue;
            };
            let (actual, _) = hash_file(&path).ctx(&path)?;
            if actual != d {
                corrupt.insert(d.clone());
                problems.push(VerifyProblem::Corrupt { digest: d, actual });
            }
        }

        let index = match self.read_index() {
            Ok(i) => i,
            Err(SlugError::BadLayout { path, reason }) => {
                problems.push(VerifyProblem::Invalid { path, reason });
                return Ok(problems);
            }
            Err(e) => return Err(e),
        };
        for desc in index.manifests() {
            let by = format!("index.json (tag {})", tag_of(desc).unwrap_or("<none>"));
            let m = match self.descriptor_digest(desc.digest()) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(VerifyProblem::Invalid {
                        path: self.root().join("index.json"),
                        reason: format!("{by}: {e}"),
                    });
                    continue;
                }
            };
            if !self.has_blob(&m) {
                problems.push(VerifyProblem::Missing {
                    digest: m,
                    referenced_by: by,
                });
                continue;
            }
            if corrupt.contains(&m) {
                continue;
            }
            let manifest = match self.read_manifest(&m) {
                Ok(x) => x,
                Err(SlugError::BadLayout { path, reason }) => {
                    problems.push(VerifyProblem::Invalid { path, reason });
                    continue;
                }
                Err(e) => return Err(e),
            };
            for child in std::iter::once(manifest.config()).chain(manifest.layers()) {
                match self.descriptor_digest(child.digest()) {
                    Ok(c) if !self.has_blob(&c) => problems.push(VerifyProblem::Missing {
                        digest: c,
                        referenced_by: format!("manifest {m}"),
                    }),
                    Ok(_) => {}
                    Err(e) => problems.push(VerifyProblem::Invalid {
                        path: self.blob_path(&m),
                        reason: e.to_string(),
                    }),
                }
            }
        }
        Ok(problems)
    }

    /// Drop the tags for which `keep(tag)` is false (entries without a tag are kept), then
    /// delete every blob that no remaining manifest refers to, and temp files older than an
    /// hour. Refuses (error, nothing deleted) if a remaining manifest is corrupt or unreadable,
    /// since what it refers to cannot be known.
    ///
    /// Do not run it between `put_slug_from_dir` and the `put_release` that tags that slug:
    /// the slug is unreferenced in that window.
    pub fn gc(&self, keep: &dyn Fn(&str) -> bool) -> Result<GcReport, SlugError> {
        self.gc_with(keep, Duration::ZERO)
    }

    /// [`Archive::gc`], except that a blob no tag referred to even before this gc (a slug
    /// just built whose release is not written yet, or a config or manifest being written)
    /// is kept while it is younger than `grace`. Blobs of dropped tags go at once. Safe to
    /// run while deploys run, given a grace longer than a build's packing and provisioning.
    pub fn gc_with(
        &self,
        keep: &dyn Fn(&str) -> bool,
        grace: Duration,
    ) -> Result<GcReport, SlugError> {
        let _lock = self.lock()?;
        let referenced_before = if grace.is_zero() {
            HashSet::new()
        } else {
            self.referenced_by(self.read_index()?.manifests())
        };
        let mut report = GcReport::default();
        let mut index = self.read_index()?;
        let (kept, dropped): (Vec<_>, Vec<_>) = index
            .manifests()
            .iter()
            .cloned()
            .partition(|d| tag_of(d).is_none_or(keep));
        if !dropped.is_empty() {
            report.tags_removed = dropped
                .iter()
                .filter_map(|d| tag_of(d).map(String::from))
                .collect();
            index.set_manifests(kept);
            self.write_index(&index)?;
        }

        let mut live = HashSet::new();
        for desc in index.manifests() {
            let m = self.descriptor_digest(desc.digest())?;
            let manifest = match self.read_manifest(&m) {
                Ok(x) => x,
                Err(SlugError::MissingBlob(_)) => continue,
                Err(e) => return Err(e),
            };
            live.insert(m);
            for child in std::iter::once(manifest.config()).chain(manifest.layers()) {
                live.insert(self.descriptor_digest(child.digest())?);
            }
        }

        let blobs = self.blobs_dir();
        for entry in fs::read_dir(&blobs).ctx(&blobs)? {
            let entry = entry.ctx(&blobs)?;
            let name = entry.file_name();
            let Some(d) = name
                .to_str()
                .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
            else {
                continue; // not ours: leave it alone
            };
            if live.contains(&d) {
                continue;
            }
            let path = entry.path();
            let meta = entry.metadata().ctx(&path)?;
            let size = meta.len();
            if !grace.is_zero() && !referenced_before.contains(&d) {
                let young = meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_none_or(|age| age < grace);
                if young {
                    report.young_blobs_kept += 1;
                    continue;
                }
            }
            fs::remove_file(&path).ctx(&path)?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
            tracing::info!(digest = %d, size, "gc removed blob");
        }
        fsync_dir(&blobs)?;

        let now = SystemTime::now();
        for entry in fs::read_dir(self.root()).ctx(self.root())? {
            let entry = entry.ctx(self.root())?;
            if !entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if old && meta.is_file() && fs::remove_file(&path).is_ok() {
                report.bytes_freed += meta.len();
            }
        }
        Ok(report)
    }
}
