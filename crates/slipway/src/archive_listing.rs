//! `slipway archive ls` (spec section 7): the slugs in the archive and which release of
//! which environment's app uses each, the releases the state knows and their slugs, the
//! stack images with their layers, the backups with their parts, and every tag with its
//! manifest; as tab-separated text or, with `--json`, one JSON object.

use std::collections::BTreeMap;

use serde::Serialize;
use slipway_slug::{Archive, Digest};

/// What `archive ls` lists.
#[derive(Debug, Serialize)]
pub(crate) struct Listing {
    /// Every slug a release uses or a release image holds, by digest.
    pub slugs: Vec<Slug>,
    /// Every release the state knows, oldest environment first, newest release first.
    pub releases: Vec<Release>,
    /// The stack images (`stack-*` tags) and their layers, bottom first.
    pub stacks: Vec<StackImage>,
    /// The backups the state knows, newest first.
    pub backups: Vec<Backup>,
    /// Every tag of the archive's index and the manifest it names.
    pub tags: Vec<Tag>,
}

/// One slug.
#[derive(Debug, Serialize)]
pub(crate) struct Slug {
    /// `sha256:...`.
    pub digest: String,
    /// Bytes of its blob (compressed), when it is in the archive.
    pub size: Option<u64>,
    /// Whether its blob is in the archive.
    pub in_archive: bool,
    /// The apps of releases that use it.
    pub used_by: Vec<SlugUser>,
}

/// An app of a release using a slug.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub(crate) struct SlugUser {
    /// The project.
    pub project: String,
    /// The environment.
    pub env: String,
    /// The app (or worker).
    pub app: String,
    /// The release number.
    pub release: i64,
}

/// One release.
#[derive(Debug, Serialize)]
pub(crate) struct Release {
    /// The project.
    pub project: String,
    /// The environment.
    pub env: String,
    /// Its number, as `releases` and `rollback` show it.
    pub number: i64,
    /// `pending`, `live`, `retired`, `failed`, ...
    pub status: String,
    /// Its apps' slugs, by app name.
    pub slugs: BTreeMap<String, String>,
    /// Why its stored spec could not be read (its slugs are then unknown).
    pub error: Option<String>,
}

/// A stack image.
#[derive(Debug, Serialize)]
pub(crate) struct StackImage {
    /// Its tag.
    pub tag: String,
    /// Its layers, bottom first.
    pub layers: Vec<Layer>,
    /// Bytes of its layers in the archive (compressed).
    pub size: u64,
}

/// A layer of an image.
#[derive(Debug, Serialize)]
pub(crate) struct Layer {
    /// `sha256:...`.
    pub digest: String,
    /// Bytes (compressed).
    pub size: u64,
}

/// A backup.
#[derive(Debug, Serialize)]
pub(crate) struct Backup {
    /// Its id (`backup restore` takes it).
    pub id: i64,
    /// The project.
    pub project: String,
    /// The environment.
    pub env: String,
    /// Its tag in the archive.
    pub tag: String,
    /// Whether its tag and every part's blob are in the archive.
    pub in_archive: bool,
    /// Bytes of its parts.
    pub size: u64,
    /// Its parts: name, digest, bytes.
    pub parts: Vec<BackupPart>,
}

/// A part of a backup.
#[derive(Debug, Serialize)]
pub(crate) struct BackupPart {
    /// What it holds (a service's dump, a mount's tar).
    pub name: String,
    /// `sha256:...`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

/// A tag of the index.
#[derive(Debug, Serialize)]
pub(crate) struct Tag {
    /// The tag.
    pub tag: String,
    /// The manifest digest it names.
    pub manifest: String,
    /// Why its image could not be read, if it could not.
    pub error: Option<String>,
}

/// Why the listing could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListError {
    /// The archive's index could not be read.
    #[error("reading the archive: {0}")]
    Archive(#[from] slipway_slug::SlugError),
    /// The state database could not be read.
    #[error("reading the state database: {0}")]
    State(#[from] slipway_state::StateError),
}

/// The listing of `archive`, with what `state` records of releases and backups.
pub(crate) fn list(archive: &Archive, state: &slipway_state::State) -> Result<Listing, ListError> {
    let blob_size = |d: &Digest| {
        std::fs::metadata(archive.blob_path(d))
            .ok()
            .map(|m| m.len())
    };
    let mut slugs: BTreeMap<String, Vec<SlugUser>> = BTreeMap::new();
    let mut releases = Vec::new();
    for env in state.environments(None)? {
        for r in state.releases(&env.project, &env.name)? {
            let mut release = Release {
                project: r.project.clone(),
                env: r.environment.clone(),
                number: r.number,
                status: r.status.clone(),
                slugs: BTreeMap::new(),
                error: None,
            };
            match slipway_deploy::release_record::spec_of(&r) {
                Ok(spec) => {
                    let workers = spec.workers.iter().map(|w| &w.instance);
                    for app in spec.apps.iter().chain(workers) {
                        release.slugs.insert(app.name.clone(), app.slug.clone());
                        slugs.entry(app.slug.clone()).or_default().push(SlugUser {
                            project: r.project.clone(),
                            env: r.environment.clone(),
                            app: app.name.clone(),
                            release: r.number,
                        });
                    }
                }
                Err(e) => release.error = Some(e.to_string()),
            }
            releases.push(release);
        }
    }

    let mut stacks = Vec::new();
    let mut tags = Vec::new();
    let entries = archive.list()?;
    for entry in &entries {
        let mut tag = Tag {
            tag: entry.tag.clone(),
            manifest: entry.manifest.to_string(),
            error: None,
        };
        if entry.tag.starts_with(slipway_deploy::backups::TAG_PREFIX) {
            tags.push(tag);
            continue;
        }
        match archive.image_layers(&entry.tag) {
            Err(e) => tag.error = Some(e.to_string()),
            Ok((layers, _)) if entry.tag.starts_with("stack-") => stacks.push(StackImage {
                tag: entry.tag.clone(),
                size: layers.iter().map(|l| l.size).sum(),
                layers: layers
                    .iter()
                    .map(|l| Layer {
                        digest: l.digest.to_string(),
                        size: l.size,
                    })
                    .collect(),
            }),
            // A release image: its stack's layers, then its slug. A slug no release
            // record names (its record gone) is listed, with no user.
            Ok((layers, _)) => {
                if let Some(slug) = layers.last() {
                    slugs.entry(slug.digest.to_string()).or_default();
                }
            }
        }
        tags.push(tag);
    }

    let slugs = slugs
        .into_iter()
        .map(|(digest, mut used_by)| {
            used_by.sort();
            let size = Digest::parse(&digest).ok().and_then(|d| blob_size(&d));
            Slug {
                in_archive: size.is_some(),
                size,
                digest,
                used_by,
            }
        })
        .collect();

    let backups = state
        .all_backups()?
        .into_iter()
        .map(|b| {
            let parts: Vec<BackupPart> = b
                .manifest
                .parts
                .iter()
                .map(|p| BackupPart {
                    name: p.name.clone(),
                    digest: p.digest.clone(),
                    size: p.size,
                })
                .collect();
            let in_archive = entries.iter().any(|t| t.tag == b.tag)
                && parts
                    .iter()
                    .all(|p| Digest::parse(&p.digest).is_ok_and(|d| archive.has_blob(&d)));
            Backup {
                id: b.id,
                project: b.project,
                env: b.environment,
                tag: b.tag,
                in_archive,
                size: b.size,
                parts,
            }
        })
        .collect();

    Ok(Listing {
        slugs,
        releases,
        stacks,
        backups,
        tags,
    })
}

impl Listing {
    /// The listing as text: a tab-separated table per kind, each with a header line.
    pub(crate) fn text(&self) -> String {
        let mut out = String::from("SLUG\tSIZE\tUSED BY\n");
        for s in &self.slugs {
            let users: Vec<String> = s
                .used_by
                .iter()
                .map(|u| format!("{}/{}/{} r{}", u.project, u.env, u.app, u.release))
                .collect();
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                s.digest,
                s.size
                    .map(slipway_slug::human_size)
                    .unwrap_or_else(|| "missing".into()),
                if users.is_empty() {
                    "no release".to_string()
                } else {
                    users.join(", ")
                }
            ));
        }
        out.push_str("\nRELEASE\tSTATUS\tSLUGS\n");
        for r in &self.releases {
            let slugs = match &r.error {
                Some(e) => format!("unreadable: {e}"),
                None => r
                    .slugs
                    .iter()
                    .map(|(app, slug)| format!("{app}={slug}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            out.push_str(&format!(
                "{}/{} r{}\t{}\t{slugs}\n",
                r.project, r.env, r.number, r.status
            ));
        }
        out.push_str("\nSTACK\tLAYERS\tSIZE\n");
        for s in &self.stacks {
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                s.tag,
                s.layers.len(),
                slipway_slug::human_size(s.size)
            ));
        }
        out.push_str("\nBACKUP\tENVIRONMENT\tSIZE\tPARTS\n");
        for b in &self.backups {
            let parts: Vec<&str> = b.parts.iter().map(|p| p.name.as_str()).collect();
            out.push_str(&format!(
                "{}\t{}/{}\t{}{}\t{}\n",
                b.id,
                b.project,
                b.env,
                slipway_slug::human_size(b.size),
                if b.in_archive {
                    ""
                } else {
                    " (missing from the archive)"
                },
                parts.join(", ")
            ));
        }
        out.push_str("\nTAG\tMANIFEST\n");
        for t in &self.tags {
            out.push_str(&format!("{}\t{}", t.tag, t.manifest));
            if let Some(e) = &t.error {
                out.push_str(&format!("\tunreadable: {e}"));
            }
            out.push('\n');
        }
        out
    }
}
