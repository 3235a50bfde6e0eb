//! Connectivity check: every object reachable from a new ref tip must exist.

use std::collections::HashSet;

use gix::objs::tree::EntryKind;
use gix::ObjectId;

/// The reason given to the client when objects are missing.
pub const MISSING: &str = "missing necessary objects";

/// Commits of the refs that existed before the push (tags peeled). Everything reachable from
/// them is known to be complete, so walks stop there.
pub fn complete_tips(
    repo: &gix::Repository,
    targets: impl IntoIterator<Item = ObjectId>,
) -> Vec<ObjectId> {
    let mut out = Vec::new();
    for mut id in targets {
        for _ in 0..10 {
            let Ok(object) = repo.find_object(id) else {
                break;
            };
            match object.kind {
                gix::object::Kind::Commit => {
                    out.push(id);
                    break;
                }
                gix::object::Kind::Tag => match object.into_tag().target_id() {
                    Ok(target) => id = target.detach(),
                    Err(_) => break,
                },
                _ => break,
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Checks that `tip` and everything reachable from it exists, walking commits until `complete`
/// ones. `seen` carries trees and blobs already checked (completely, with success) across the
/// tips of one push; it only grows when the whole check of `tip` succeeds.
pub fn check(
    repo: &gix::Repository,
    tip: ObjectId,
    complete: &[ObjectId],
    seen: &mut HashSet<ObjectId>,
) -> Result<(), String> {
    let mut checked = Checked {
        done: seen,
        new: HashSet::new(),
    };
    check_inner(repo, tip, complete, &mut checked)?;
    let new = checked.new;
    seen.extend(new);
    Ok(())
}

/// Objects checked by earlier tips (`done`) and by the current one (`new`).
struct Checked<'a> {
    done: &'a HashSet<ObjectId>,
    new: HashSet<ObjectId>,
}

impl Checked<'_> {
    /// Marks `id` as visited; false if it was already.
    fn insert(&mut self, id: ObjectId) -> bool {
        !self.done.contains(&id) && self.new.insert(id)
    }
}

fn check_inner(
    repo: &gix::Repository,
    tip: ObjectId,
    complete: &[ObjectId],
    seen: &mut Checked<'_>,
) -> Result<(), String> {
    let mut id = tip;
    // Peel annotated tags; each tag's target must exist.
    for _ in 0..10 {
        let object = repo.find_object(id).map_err(|_| MISSING.to_string())?;
        match object.kind {
            gix::object::Kind::Tag => {
                id = object
                    .into_tag()
                    .target_id()
                    .map_err(|_| MISSING.to_string())?
                    .detach();
            }
            gix::object::Kind::Blob => return Ok(()),
            gix::object::Kind::Tree => return check_tree(repo, id, seen),
            gix::object::Kind::Commit => return check_commits(repo, id, complete, seen),
        }
    }
    Err("tag chain too deep".to_string())
}

fn check_commits(
    repo: &gix::Repository,
    tip: ObjectId,
    complete: &[ObjectId],
    seen: &mut Checked<'_>,
) -> Result<(), String> {
    let walk = repo
        .rev_walk([tip])
        .with_hidden(complete.iter().copied())
        .all()
        .map_err(|e| {
            tracing::debug!(%tip, "connectivity walk failed: {e:#}");
            MISSING.to_string()
        })?;
    for info in walk {
        let info = info.map_err(|e| {
            tracing::debug!(%tip, "connectivity walk failed: {e:#}");
            MISSING.to_string()
        })?;
        let commit = repo.find_commit(info.id).map_err(|_| MISSING.to_string())?;
        let tree = commit.tree_id().map_err(|_| MISSING.to_string())?.detach();
        check_tree(repo, tree, seen)?;
    }
    Ok(())
}

fn check_tree(
    repo: &gix::Repository,
    root: ObjectId,
    seen: &mut Checked<'_>,
) -> Result<(), String> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let tree = repo.find_tree(id).map_err(|_| {
            tracing::debug!(%id, "connectivity: tree missing");
            MISSING.to_string()
        })?;
        let decoded = tree.decode().map_err(|_| format!("corrupt tree {id}"))?;
        for entry in &decoded.entries {
            let oid = entry.oid.to_owned();
            match entry.mode.kind() {
                EntryKind::Tree => stack.push(oid),
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    if seen.insert(oid) && !repo.has_object(oid) {
                        tracing::debug!(id = %oid, "connectivity: blob missing");
                        return Err(MISSING.to_string());
                    }
                }
                EntryKind::Commit => {}
            }
        }
    }
    Ok(())
}
