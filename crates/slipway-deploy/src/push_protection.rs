//! Push protection, part of phase **validate** (issue 16): before anything is built,
//!
//! - the lockfiles of every app whose lockfiles changed since the branch's last deployed
//!   commit are checked against the advisory database of the data dir
//!   ([`slipway_advisories`]); a critical advisory refuses the push unless
//!   `-o allow-vulnerable=ID[,ID]` names it, lower ones print `warning:` lines. A push that
//!   changes no lockfile does no advisory work, and without a database nothing is looked up;
//! - the blobs the push adds or changes are scanned for committed secrets; one refuses the
//!   push naming `FILE:LINE` unless `-o allow-secret=FILE:LINE` names it. Only a masked
//!   prefix of a secret is ever printed (and so logged).

use std::time::{Duration, Instant};

use gix::objs::tree::EntryKind;
use gix::ObjectId;
use slipway_advisories::{lockfiles, secrets, Database, Lockfile};
use slipway_config::Topology;
use slipway_git::Repo;

use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::Platform;

/// Most blobs the secret scan reads in one push.
pub const MAX_SCANNED_FILES: usize = 200_000;
/// Most bytes the secret scan reads in one push.
pub const MAX_SCANNED_BYTES: u64 = 512 << 20;
/// Longest the secret scan runs in one push.
pub const MAX_SCAN_TIME: Duration = Duration::from_secs(20);

fn fail(reason: impl Into<String>) -> PhaseError {
    PhaseError::new("validate", reason)
}

/// Run both checks for `target`; `Err` refuses the push.
pub fn run(
    platform: &Platform,
    repo: &Repo,
    target: &DeployTarget,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    secrets_check(repo, target, out)?;
    advisories_check(platform, repo, target, topology, out)
}

/// The entries (name, kind, id) of tree `id`.
fn tree_entries(
    repo: &gix::Repository,
    id: ObjectId,
) -> Result<Vec<(String, EntryKind, ObjectId)>, PhaseError> {
    let tree = repo
        .find_tree(id)
        .map_err(|e| fail(format!("cannot read tree {id}: {e}")))?;
    let decoded = tree
        .decode()
        .map_err(|e| fail(format!("cannot decode tree {id}: {e}")))?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| {
            (
                String::from_utf8_lossy(e.filename).into_owned(),
                e.mode.kind(),
                e.oid.to_owned(),
            )
        })
        .collect())
}

fn blob(repo: &gix::Repository, id: ObjectId) -> Result<Vec<u8>, PhaseError> {
    repo.find_object(id)
        .map(|o| o.detach().data)
        .map_err(|e| fail(format!("cannot read blob {id}: {e}")))
}

/// The root tree of `commit`, `None` for the null id (a new branch).
fn root_tree(repo: &Repo, commit: ObjectId) -> Result<Option<ObjectId>, PhaseError> {
    if commit.is_null() {
        return Ok(None);
    }
    repo.tree_at(commit, "")
        .map_err(|e| fail(format!("cannot read commit {commit}: {e}")))
}

/// The lockfiles of the apps whose lockfiles differ between the branch's previous commit and
/// the pushed one (all of them on a new branch), as of the pushed commit.
fn changed_lockfiles(
    repo: &Repo,
    target: &DeployTarget,
    topology: &Topology,
) -> Result<Vec<Lockfile>, PhaseError> {
    let g = repo.gix();
    let lockfiles_of =
        |commit: ObjectId, root: &str| -> Result<Vec<(String, ObjectId)>, PhaseError> {
            if commit.is_null() {
                return Ok(Vec::new());
            }
            let Some(tree) = repo
                .tree_at(commit, root)
                .map_err(|e| fail(format!("cannot read commit {commit}: {e}")))?
            else {
                return Ok(Vec::new());
            };
            let mut found: Vec<(String, ObjectId)> = tree_entries(&g, tree)?
                .into_iter()
                .filter(|(name, kind, _)| {
                    matches!(kind, EntryKind::Blob | EntryKind::BlobExecutable)
                        && lockfiles::is_lockfile(name)
                })
                .map(|(name, _, id)| (name, id))
                .collect();
            found.sort();
            Ok(found)
        };
    let mut out = Vec::new();
    let mut seen_roots = std::collections::BTreeSet::new();
    for app in &topology.applications {
        let root = app.source_root.trim_matches('/').to_string();
        if !seen_roots.insert(root.clone()) {
            continue;
        }
        let new = lockfiles_of(target.new, &root)?;
        let old = lockfiles_of(target.old, &root)?;
        if new == old {
            continue;
        }
        for (name, id) in new {
            let path = if root.is_empty() || root == "." {
                name
            } else {
                format!("{root}/{name}")
            };
            out.push(Lockfile {
                path,
                bytes: blob(&g, id)?,
            });
        }
    }
    Ok(out)
}

fn advisories_check(
    platform: &Platform,
    repo: &Repo,
    target: &DeployTarget,
    topology: &Topology,
    out: &Output,
) -> Result<(), PhaseError> {
    let data_dir = platform.data().root();
    if !Database::exists_in(data_dir) {
        return Ok(());
    }
    let t = Instant::now();
    let files = changed_lockfiles(repo, target, topology)?;
    if files.is_empty() {
        return Ok(());
    }
    let db = Database::open(data_dir).map_err(|e| fail(e.to_string()))?;
    let allowed = slipway_advisories::allowed_ids(&target.options);
    let report =
        slipway_advisories::audit(&db, &files, &allowed).map_err(|e| fail(e.to_string()))?;
    for m in &report.malformed {
        out.line(&format!("       {m}"));
    }
    for f in &report.findings {
        out.line(&format!("       {}", f.line()));
    }
    let refusing: Vec<&slipway_advisories::Finding> =
        report.findings.iter().filter(|f| f.refuses()).collect();
    out.line(&format!(
        "-----> advisories: {} lockfile{}, {} package{}, {} finding{} ({} refusing) [{}]",
        report.lockfiles,
        plural(report.lockfiles),
        report.packages,
        plural(report.packages),
        report.findings.len(),
        plural(report.findings.len()),
        refusing.len(),
        crate::output::format_duration(t.elapsed())
    ));
    if let Some(first) = refusing.first() {
        let mut ids: Vec<&str> = refusing.iter().map(|f| f.advisory.as_str()).collect();
        ids.sort();
        ids.dedup();
        return Err(fail(format!(
            "{} critical advisor{} in the lockfiles ({} {} {}); push with -o allow-vulnerable={} to deploy anyway",
            ids.len(),
            if ids.len() == 1 { "y" } else { "ies" },
            first.package,
            first.version,
            first.advisory,
            ids.join(",")
        )));
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Budget of one push's secret scan.
struct Budget {
    files: usize,
    bytes: u64,
    started: Instant,
    stopped: Option<String>,
}

impl Budget {
    fn exhausted(&mut self) -> bool {
        if self.stopped.is_some() {
            return true;
        }
        if self.files >= MAX_SCANNED_FILES {
            self.stopped = Some(format!("{MAX_SCANNED_FILES} files"));
        } else if self.bytes >= MAX_SCANNED_BYTES {
            self.stopped = Some(format!("{} MiB", MAX_SCANNED_BYTES >> 20));
        } else if self.started.elapsed() >= MAX_SCAN_TIME {
            self.stopped = Some(format!("{}s", MAX_SCAN_TIME.as_secs()));
        }
        self.stopped.is_some()
    }
}

/// Scan the blobs under `new` that are not at the same path under `old` (subtrees with the
/// same id are skipped whole, so an unchanged folder costs nothing).
fn scan_tree(
    g: &gix::Repository,
    prefix: &str,
    new: ObjectId,
    old: Option<ObjectId>,
    budget: &mut Budget,
    found: &mut Vec<secrets::SecretFinding>,
) -> Result<(), PhaseError> {
    if old == Some(new) || budget.exhausted() {
        return Ok(());
    }
    let old_entries = match old {
        Some(o) => tree_entries(g, o)?,
        None => Vec::new(),
    };
    for (name, kind, id) in tree_entries(g, new)? {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let before = old_entries
            .iter()
            .find(|(n, k, _)| *n == name && (*k == EntryKind::Tree) == (kind == EntryKind::Tree))
            .map(|(_, _, id)| *id);
        if before == Some(id) {
            continue;
        }
        match kind {
            EntryKind::Tree => scan_tree(g, &path, id, before, budget, found)?,
            EntryKind::Blob | EntryKind::BlobExecutable => {
                if budget.exhausted() {
                    return Ok(());
                }
                let size = g.find_header(id).map(|h| h.size()).unwrap_or(u64::MAX);
                if size > secrets::MAX_SCANNED_FILE as u64 {
                    continue;
                }
                budget.files += 1;
                budget.bytes += size;
                found.extend(secrets::scan(&path, &blob(g, id)?));
            }
            EntryKind::Link | EntryKind::Commit => {}
        }
    }
    Ok(())
}

fn secrets_check(repo: &Repo, target: &DeployTarget, out: &Output) -> Result<(), PhaseError> {
    let Some(new) = root_tree(repo, target.new)? else {
        return Ok(());
    };
    let old = root_tree(repo, target.old)?;
    let mut budget = Budget {
        files: 0,
        bytes: 0,
        started: Instant::now(),
        stopped: None,
    };
    let mut found = Vec::new();
    scan_tree(&repo.gix(), "", new, old, &mut budget, &mut found)?;
    if let Some(limit) = &budget.stopped {
        out.line(&format!(
            "       warning: the secret scan stopped at its limit ({limit}); the rest of the push was not scanned"
        ));
    }
    if found.is_empty() {
        return Ok(());
    }
    let allowed = secrets::allowed_locations(&target.options);
    for f in &mut found {
        f.allowed = allowed.contains(&f.location());
    }
    for f in &found {
        out.line(&format!("       {}", f.message()));
    }
    let refusing: Vec<&secrets::SecretFinding> = found.iter().filter(|f| !f.allowed).collect();
    if let Some(first) = refusing.first() {
        return Err(fail(format!(
            "{} committed secret{} ({} at {}); remove {}, or push with -o allow-secret=FILE:LINE",
            refusing.len(),
            plural(refusing.len()),
            first.rule,
            first.location(),
            if refusing.len() == 1 { "it" } else { "them" },
        )));
    }
    Ok(())
}
