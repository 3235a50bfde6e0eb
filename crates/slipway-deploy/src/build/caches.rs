//! `build.caches`: folders of an app (like `node_modules`) kept between builds, as
//! Platform.sh's build caches.
//!
//! Each cache is stored per project, environment, app and name (per project, environment
//! and name with `share_between_apps`: shared between the apps, never between environments,
//! so a branch build cannot change what `main` restores) under `DATA/build-caches/`
//! ([`crate::DataDir::build_caches`]), as entries `NANOS-KEY`: immutable folders, the
//! newest [`KEEP`] kept. Its key hashes the cache's name, its directory and the content of
//! its watched files in the checked-out tree. Copies in and out drop set-user-id and
//! set-group-id bits ([`copy_tree`]): a cache lives on the host.
//!
//! - Before the build steps ([`restore`]), the newest entry of the same key is copied into
//!   the app's directory; with `allow_stale` the newest entry of any key. A branch with no
//!   such entry of its own restores `main`'s (caches flow from the protected environment
//!   down to branches, never back: a branch saves only into its own store). Nothing is
//!   restored over a directory the source tree already has, or through a symbolic link.
//! - After a successful build ([`save`]), the directory is copied into a temporary folder
//!   that is then renamed into place, so a reader never sees half an entry.
//!
//! - A project's entries together are capped (`slipway serve --build-caches-size`, per
//!   project, so one project never evicts another's): after a save, the least recently
//!   used entries of the project (any environment, app or cache; restored or saved last
//!   longest ago) are dropped until the rest fit ([`enforce_cap`]), and the push says which.
//!   Each entry has a sidecar `NANOS-KEY.used` beside it holding its size, whose
//!   modification time is its last use; an entry without one (a server older than the cap)
//!   counts by its own time and is measured once.
//!
//! A cache only speeds builds up: it is not part of the build key, and a cache that cannot
//! be restored or saved is reported and skipped, never failing the build.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use slipway_config::{Application, BuildCache};

use crate::protection::PRODUCTION;
use crate::DataDir;

/// How many entries of one cache are kept (the newest).
pub const KEEP: usize = 3;

/// The default cap on one project's build cache entries, all environments (bytes):
/// `slipway serve --build-caches-size`.
pub const DEFAULT_PROJECT_CAP: u64 = 4 << 30;

/// The suffix of an entry's sidecar: its size, and its last use as its modification time.
const USED: &str = ".used";

/// Temporary folders of a save older than this are leftovers of an interrupted one.
const STALE_TEMP: Duration = Duration::from_secs(24 * 3600);

/// Why a cache could not be restored or saved.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The directory (or a folder above it) is a symbolic link or not a folder.
    #[error("{0} is not a plain folder of the app (a symbolic link or a file is in the way)")]
    NotAFolder(String),
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let what = what.into();
    move |source| CacheError::Io { what, source }
}

/// One cache of a build: where it is stored and the key of this build's tree.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The cache's name.
    pub name: String,
    /// As configured.
    pub cache: BuildCache,
    /// Where its entries are stored.
    pub store: PathBuf,
    /// A more trusted environment whose entries a build may restore when its own store has
    /// none that fits (never written by this build): the protected environment for a branch.
    pub inherit: Option<(String, PathBuf)>,
    /// The key of this build (hex sha256).
    pub key: String,
}

/// What [`restore`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Restored {
    /// The entry of this key was restored.
    Fresh,
    /// An entry of another key was restored (`allow_stale`).
    Stale,
    /// An entry of the more trusted environment named here was restored (of another key
    /// when `stale`).
    Inherited {
        /// The environment it comes from.
        from: String,
        /// Whether it was saved for other watched files.
        stale: bool,
    },
    /// Nothing saved yet (for this key, without `allow_stale`).
    Nothing,
    /// The directory is already in the source tree: left as it is.
    InTree,
}

/// What [`save`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    /// Saved, with the size of the files in bytes.
    Saved(u64),
    /// The build left no such directory.
    NoDirectory,
}

/// The caches of `app` built in `build_dir`, with their keys.
pub fn plan(
    data: &DataDir,
    project: &str,
    env: &str,
    app: &Application,
    build_dir: &Path,
) -> Vec<Planned> {
    app.build_caches
        .iter()
        .map(|(name, cache)| Planned {
            name: name.clone(),
            cache: cache.clone(),
            store: data.build_caches(project, env, &app.name, name, cache.share_between_apps),
            inherit: PRODUCTION
                .first()
                .filter(|trusted| !PRODUCTION.contains(&env) && **trusted != env)
                .map(|trusted| {
                    let store = data.build_caches(
                        project,
                        trusted,
                        &app.name,
                        name,
                        cache.share_between_apps,
                    );
                    (trusted.to_string(), store)
                }),
            key: key(name, cache, build_dir),
        })
        .collect()
}

/// The key of a cache for the tree in `build_dir`: its name, directory and the content of
/// each watched file (a missing one, a folder or a link count as such, never followed).
pub fn key(name: &str, cache: &BuildCache, build_dir: &Path) -> String {
    let watched: Vec<serde_json::Value> = cache
        .watch
        .iter()
        .map(|file| serde_json::json!([file, watched_content(build_dir, file)]))
        .collect();
    let doc = serde_json::json!({"name": name, "directory": cache.directory, "watch": watched});
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// What a watched file contributes to the key.
fn watched_content(build_dir: &Path, file: &str) -> String {
    let Ok(path) = inside(build_dir, file) else {
        return "unreachable".into();
    };
    match std::fs::symlink_metadata(&path) {
        Err(_) => "missing".into(),
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&path) {
            Ok(t) => format!("link:{}", t.display()),
            Err(_) => "link".into(),
        },
        Ok(m) if m.is_file() => match slipway_slug::hash_file(&path) {
            Ok((digest, _)) => digest.to_string(),
            Err(e) => format!("unreadable:{}", e.kind()),
        },
        Ok(_) => "not a file".into(),
    }
}

/// `root/rel` for a normalized relative path, if no folder on the way is a symbolic link
/// or a file (the last component may be anything, or missing).
fn inside(root: &Path, rel: &str) -> Result<PathBuf, CacheError> {
    let rel = Path::new(rel);
    let mut path = root.to_path_buf();
    let parts: Vec<Component<'_>> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        let Component::Normal(part) = c else {
            return Err(CacheError::NotAFolder(rel.display().to_string()));
        };
        path.push(part);
        if i + 1 < parts.len() {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(CacheError::NotAFolder(rel.display().to_string())),
                Err(_) => {} // missing: nothing below it exists either
            }
        }
    }
    Ok(path)
}

/// Entries of a cache, oldest first (`NANOS-KEY`, names sort by time).
fn entries(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| {
                    !n.starts_with('.')
                        && n.split_once('-')
                            .is_some_and(|(t, k)| t.len() == 20 && k.len() == 64)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Restore the cache into its directory of `build_dir`, through the temporary folder
/// `scratch` (on the same file system, removed in every case).
pub fn restore(p: &Planned, build_dir: &Path, scratch: &Path) -> Result<Restored, CacheError> {
    let own = entries(&p.store);
    let (inherited, from) = match &p.inherit {
        Some((env, store)) => (entries(store), Some((env.clone(), store))),
        None => (Vec::new(), None),
    };
    let fresh = |all: &[String]| all.iter().rev().find(|n| n.ends_with(&p.key)).cloned();
    let stale = |all: &[String]| all.last().filter(|_| p.cache.allow_stale).cloned();
    let inherited_as = |stale: bool| {
        from.as_ref().map(|(env, store)| {
            (
                store.to_path_buf(),
                Restored::Inherited {
                    from: env.clone(),
                    stale,
                },
            )
        })
    };
    // Own fresh, inherited fresh, own stale, inherited stale.
    let (entry, how) = if let Some(e) = fresh(&own) {
        (p.store.join(e), Restored::Fresh)
    } else if let (Some(e), Some((store, how))) = (fresh(&inherited), inherited_as(false)) {
        (store.join(e), how)
    } else if let Some(e) = stale(&own) {
        (p.store.join(e), Restored::Stale)
    } else if let (Some(e), Some((store, how))) = (stale(&inherited), inherited_as(true)) {
        (store.join(e), how)
    } else {
        return Ok(Restored::Nothing);
    };
    let target = inside(build_dir, &p.cache.directory)?;
    match std::fs::symlink_metadata(&target) {
        Err(_) => {}
        Ok(m) if m.is_dir() => {
            let empty = std::fs::read_dir(&target)
                .map_err(io(format!("reading {}", p.cache.directory)))?
                .next()
                .is_none();
            if !empty {
                return Ok(Restored::InTree);
            }
            std::fs::remove_dir(&target)
                .map_err(io(format!("removing the empty {}", p.cache.directory)))?;
        }
        Ok(_) => return Err(CacheError::NotAFolder(p.cache.directory.clone())),
    }
    let _cleanup = RemoveOnDrop(scratch.to_path_buf());
    let _ = std::fs::remove_dir_all(scratch);
    copy_tree(&entry, scratch)?;
    mark_used(&entry, None);
    // The build folder is gone when the build was cancelled meanwhile: never make it again.
    if !build_dir.is_dir() {
        return Err(CacheError::NotAFolder(build_dir.display().to_string()));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("creating the folder of {}", p.cache.directory)))?;
    }
    std::fs::rename(scratch, &target).map_err(io(format!(
        "moving the restored {} into place",
        p.cache.directory
    )))?;
    Ok(how)
}

/// Save the cache's directory of `build_dir` as a new entry, and drop all but the newest [`KEEP`].
pub fn save(p: &Planned, build_dir: &Path) -> Result<Saved, CacheError> {
    let source = inside(build_dir, &p.cache.directory)?;
    match std::fs::symlink_metadata(&source) {
        Err(_) => return Ok(Saved::NoDirectory),
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(CacheError::NotAFolder(p.cache.directory.clone())),
    }
    std::fs::create_dir_all(&p.store).map_err(io(format!("creating {}", p.store.display())))?;
    remove_stale_temps(&p.store);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let temp = p.store.join(format!(".tmp-{nanos}-{}", std::process::id()));
    let cleanup = RemoveOnDrop(temp.clone());
    let size = copy_tree(&source, &temp)?;
    let entry = p.store.join(format!("{nanos:020}-{}", p.key));
    std::fs::rename(&temp, &entry).map_err(io(format!(
        "moving the saved cache into {}",
        entry.display()
    )))?;
    drop(cleanup);
    mark_used(&entry, Some(size));
    let all = entries(&p.store);
    for old in all.iter().take(all.len().saturating_sub(KEEP)) {
        remove_entry(&p.store.join(old));
    }
    Ok(Saved::Saved(size))
}

/// The sidecar of an entry.
fn sidecar(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(USED);
    PathBuf::from(name)
}

/// Record that `entry` was used now: its sidecar's time, and its size when known (a
/// failure only leaves the entry counted as older).
fn mark_used(entry: &Path, size: Option<u64>) {
    let path = sidecar(entry);
    let done = match size {
        Some(size) => std::fs::write(&path, format!("{size}\n")),
        None => std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now())),
    };
    if let Err(e) = done {
        tracing::debug!(entry = %entry.display(), "recording the cache entry's use: {e}");
    }
}

/// Remove an entry and its sidecar (what is already gone is no error).
fn remove_entry(entry: &Path) {
    let _ = std::fs::remove_dir_all(entry);
    let _ = std::fs::remove_file(sidecar(entry));
}

/// An entry dropped by [`enforce_cap`].
#[derive(Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The environment whose entry it was.
    pub env: String,
    /// The app it was of; `None` for a cache shared between the apps.
    pub app: Option<String>,
    /// The cache's name.
    pub cache: String,
    /// Its size (bytes).
    pub size: u64,
}

/// One entry of a project, as [`enforce_cap`] weighs it.
struct Weighed {
    used: SystemTime,
    path: PathBuf,
    size: u64,
    dropped: Dropped,
}

/// Drop the least recently used entries of the project whose stores are under `root`
/// (`DATA/build-caches/PROJECT`, [`crate::DataDir::project_build_caches`]) until they hold
/// no more than `cap` bytes together. Returns what was dropped, least recently used first.
pub fn enforce_cap(root: &Path, cap: u64) -> Vec<Dropped> {
    let mut all = Vec::new();
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect()
    };
    for (env, env_dir) in dirs(root) {
        for (owner, owner_dir) in dirs(&env_dir) {
            for (cache, store) in dirs(&owner_dir) {
                for name in entries(&store) {
                    let path = store.join(&name);
                    let (size, used) = weigh(&path);
                    all.push(Weighed {
                        used,
                        path,
                        size,
                        dropped: Dropped {
                            env: env.clone(),
                            app: (owner != "_shared").then(|| owner.clone()),
                            cache: cache.clone(),
                            size,
                        },
                    });
                }
            }
        }
    }
    let mut total: u64 = all.iter().map(|w| w.size).sum();
    // Least recently used first; the entry's own name (its time) breaks ties.
    all.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    let mut dropped = Vec::new();
    for w in all {
        if total <= cap {
            break;
        }
        remove_entry(&w.path);
        total = total.saturating_sub(w.size);
        dropped.push(w.dropped);
    }
    dropped
}

/// An entry's size and last use, from its sidecar; without one (or with a bad one) the
/// entry is measured, the sidecar written with its own time, and that time is its last use.
fn weigh(entry: &Path) -> (u64, SystemTime) {
    let side = sidecar(entry);
    let recorded = std::fs::read_to_string(&side)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let (Some(size), Ok(used)) = (
        recorded,
        std::fs::metadata(&side).and_then(|m| m.modified()),
    ) {
        return (size, used);
    }
    let used = std::fs::symlink_metadata(entry)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    let size = tree_size(entry);
    if std::fs::write(&side, format!("{size}\n")).is_ok() {
        let _ = std::fs::File::options()
            .write(true)
            .open(&side)
            .and_then(|f| f.set_modified(used));
    }
    (size, used)
}

/// The bytes of the files under `dir` (links never followed), as [`copy_tree`] counts them.
fn tree_size(dir: &Path) -> u64 {
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => size += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    size
}

/// Remove every cache entry of `project`'s `env` (its branch was deleted). Returns the
/// bytes removed (`None` when it had none).
pub fn remove_env(data: &DataDir, project: &str, env: &str) -> Result<Option<u64>, CacheError> {
    let dir = data.project_build_caches(project).join(env);
    if !dir.is_dir() {
        return Ok(None);
    }
    let size = tree_size(&dir);
    std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
    Ok(Some(size))
}

/// Temporary folders of saves interrupted long ago.
fn remove_stale_temps(store: &Path) {
    let Ok(rd) = std::fs::read_dir(store) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if old && e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes a folder when dropped (if it still exists).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Permission bits that make a file run as its owner or group: never kept in a cache.
const SET_ID: u32 = 0o6000;

/// `perms` without the set-user-id and set-group-id bits.
fn without_set_id(perms: std::fs::Permissions) -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::Permissions::from_mode(perms.mode() & 0o7777 & !SET_ID)
}

/// Drop the set-user-id and set-group-id bits of every file and folder under `dir`
/// (symbolic links are never followed). Returns how many had one.
pub fn strip_set_id(dir: &Path) -> Result<usize, CacheError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut stripped = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(format!("reading {}", d.display())))? {
            let e = e.map_err(io(format!("reading {}", d.display())))?;
            let path = e.path();
            let m = std::fs::symlink_metadata(&path)
                .map_err(io(format!("reading {}", path.display())))?;
            if m.file_type().is_symlink() {
                continue;
            }
            if m.is_dir() {
                stack.push(path.clone());
            }
            if m.permissions().mode() & SET_ID != 0 {
                std::fs::set_permissions(&path, without_set_id(m.permissions())).map_err(io(
                    format!("dropping the set-id bits of {}", path.display()),
                ))?;
                stripped += 1;
            }
        }
    }
    Ok(stripped)
}

/// Copy the folder `from` to `to` (which must not exist): folders, files with their
/// permissions less any set-user-id or set-group-id bit, symbolic links as links (never
/// followed); other kinds are skipped. Returns the bytes of the files copied.
pub fn copy_tree(from: &Path, to: &Path) -> Result<u64, CacheError> {
    let mut size = 0;
    let mut stack = vec![(from.to_path_buf(), to.to_path_buf())];
    let mut dirs = Vec::new();
    while let Some((src, dst)) = stack.pop() {
        std::fs::create_dir(&dst).map_err(io(format!("creating {}", dst.display())))?;
        let perms = std::fs::symlink_metadata(&src)
            .map_err(io(format!("reading {}", src.display())))?
            .permissions();
        dirs.push((dst.clone(), without_set_id(perms)));
        for e in std::fs::read_dir(&src).map_err(io(format!("reading {}", src.display())))? {
            let e = e.map_err(io(format!("reading {}", src.display())))?;
            let (s, d) = (e.path(), dst.join(e.file_name()));
            let ft = e
                .file_type()
                .map_err(io(format!("reading {}", s.display())))?;
            if ft.is_dir() {
                stack.push((s, d));
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(&s).map_err(io(format!("reading {}", s.display())))?;
                std::os::unix::fs::symlink(target, &d)
                    .map_err(io(format!("creating {}", d.display())))?;
            } else if ft.is_file() {
                size += std::fs::copy(&s, &d).map_err(io(format!("copying {}", s.display())))?;
                // `copy` kept the mode, set-id bits included.
                let perms = std::fs::symlink_metadata(&d)
                    .map_err(io(format!("reading {}", d.display())))?
                    .permissions();
                if std::os::unix::fs::PermissionsExt::mode(&perms) & SET_ID != 0 {
                    std::fs::set_permissions(&d, without_set_id(perms))
                        .map_err(io(format!("setting the permissions of {}", d.display())))?;
                }
            }
        }
    }
    // Folder permissions last: a read-only folder could not have been filled.
    for (d, perms) in dirs.into_iter().rev() {
        std::fs::set_permissions(&d, perms)
            .map_err(io(format!("setting the permissions of {}", d.display())))?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn cache(directory: &str, watch: &[&str], allow_stale: bool) -> BuildCache {
        BuildCache {
            directory: directory.into(),
            watch: watch.iter().map(|s| s.to_string()).collect(),
            allow_stale,
            share_between_apps: false,
        }
    }

    fn planned(store: &Path, c: BuildCache, build: &Path) -> Planned {
        Planned {
            name: "deps".into(),
            key: key("deps", &c, build),
            cache: c,
            store: store.to_path_buf(),
            inherit: None,
        }
    }

    #[test]
    fn keys_follow_the_watched_files_name_and_directory() {
        let t = tempfile::tempdir().unwrap();
        let c = cache("node_modules", &["package.json", "missing.lock"], false);
        std::fs::write(t.path().join("package.json"), "{}").unwrap();
        let k = key("deps", &c, t.path());
        assert_eq!(k.len(), 64);
        assert_eq!(key("deps", &c, t.path()), k, "stable");
        assert_ne!(key("other", &c, t.path()), k);
        assert_ne!(
            key(
                "deps",
                &cache("vendor", &["package.json", "missing.lock"], false),
                t.path()
            ),
            k
        );
        std::fs::write(t.path().join("unwatched"), "x").unwrap();
        assert_eq!(
            key("deps", &c, t.path()),
            k,
            "an unwatched file changed the key"
        );
        std::fs::write(t.path().join("package.json"), "{\"a\":1}").unwrap();
        assert_ne!(key("deps", &c, t.path()), k);
        // A link is never followed: its target's content does not matter.
        std::os::unix::fs::symlink("/etc/hostname", t.path().join("missing.lock")).unwrap();
        assert_eq!(
            watched_content(t.path(), "missing.lock"),
            "link:/etc/hostname"
        );
    }

    #[test]
    fn save_then_restore_round_trips_and_keeps_the_newest() {
        let t = tempfile::tempdir().unwrap();
        let store = t.path().join("store");
        let b1 = t.path().join("b1");
        std::fs::create_dir_all(b1.join("deps/sub")).unwrap();
        std::fs::write(b1.join("deps/sub/file.txt"), "cached").unwrap();
        std::fs::write(b1.join("deps/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            b1.join("deps/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/file.txt", b1.join("deps/link")).unwrap();
        let p = planned(&store, cache("deps", &["lock"], false), &b1);
        assert_eq!(save(&p, &b1).unwrap(), Saved::Saved(16));

        // Same watched files: restored, with modes and links.
        let b2 = t.path().join("b2");
        std::fs::create_dir_all(&b2).unwrap();
        let p2 = planned(&store, cache("deps", &["lock"], false), &b2);
        assert_eq!(p2.key, p.key);
        assert_eq!(
            restore(&p2, &b2, &t.path().join("scratch")).unwrap(),
            Restored::Fresh
        );
        assert_eq!(
            std::fs::read_to_string(b2.join("deps/sub/file.txt")).unwrap(),
            "cached"
        );
        assert_eq!(
            std::fs::metadata(b2.join("deps/run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read_link(b2.join("deps/link")).unwrap(),
            Path::new("sub/file.txt")
        );
        assert!(!t.path().join("scratch").exists());

        // A watched file changed: nothing, unless stale content is allowed.
        let b3 = t.path().join("b3");
        std::fs::create_dir_all(&b3).unwrap();
        std::fs::write(b3.join("lock"), "v2").unwrap();
        let p3 = planned(&store, cache("deps", &["lock"], false), &b3);
        assert_ne!(p3.key, p.key);
        assert_eq!(
            restore(&p3, &b3, &t.path().join("scratch")).unwrap(),
            Restored::Nothing
        );
        assert!(!b3.join("deps").exists());
        let p3 = planned(&store, cache("deps", &["lock"], true), &b3);
        assert_eq!(
            restore(&p3, &b3, &t.path().join("scratch")).unwrap(),
            Restored::Stale
        );
        assert!(b3.join("deps/sub/file.txt").is_file());

        // The source tree's own folder is never overwritten.
        let b4 = t.path().join("b4");
        std::fs::create_dir_all(b4.join("deps")).unwrap();
        std::fs::write(b4.join("deps/mine"), "x").unwrap();
        assert_eq!(
            restore(&p2, &b4, &t.path().join("scratch")).unwrap(),
            Restored::InTree
        );
        assert!(!b4.join("deps/sub").exists());

        // Only the newest KEEP entries stay.
        for _ in 0..KEEP + 2 {
            save(&p, &b1).unwrap();
        }
        assert_eq!(entries(&store).len(), KEEP);
        assert!(std::fs::read_dir(&store)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".tmp")));
        // No directory after the build: nothing saved.
        let p5 = planned(&store, cache("nothing", &[], false), &b1);
        assert_eq!(save(&p5, &b1).unwrap(), Saved::NoDirectory);
    }

    #[test]
    fn caches_are_per_app_and_environment_unless_shared() {
        let data = DataDir::new(PathBuf::from("/data"));
        let mut app = Application {
            name: "web".into(),
            ..Default::default()
        };
        app.build_caches
            .insert("own".into(), cache("node_modules", &[], false));
        let mut shared = cache("vendor", &[], false);
        shared.share_between_apps = true;
        app.build_caches.insert("common".into(), shared);
        let b = Path::new("/nonexistent");
        let stores: Vec<PathBuf> = plan(&data, "demo", "main", &app, b)
            .into_iter()
            .map(|p| p.store)
            .collect();
        assert_eq!(
            stores,
            vec![
                PathBuf::from("/data/build-caches/demo/main/_shared/common"),
                PathBuf::from("/data/build-caches/demo/main/web/own")
            ]
        );
        let mut api = app.clone();
        api.name = "api".into();
        let other: Vec<PathBuf> = plan(&data, "demo", "staging", &api, b)
            .into_iter()
            .map(|p| p.store)
            .collect();
        assert_eq!(
            other[0],
            PathBuf::from("/data/build-caches/demo/staging/_shared/common"),
            "a shared cache is one for every app of an environment, never across environments"
        );
        let mut web_staging = plan(&data, "demo", "staging", &app, b);
        web_staging.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(web_staging[0].store, other[0], "shared between the apps");
        assert_eq!(
            other[1],
            PathBuf::from("/data/build-caches/demo/staging/api/own")
        );
    }

    #[test]
    fn links_on_the_way_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("x")).unwrap();
        let b = t.path().join("b");
        std::fs::create_dir_all(&b).unwrap();
        std::os::unix::fs::symlink(&outside, b.join("deps")).unwrap();
        std::os::unix::fs::symlink(&outside, b.join("up")).unwrap();
        let store = t.path().join("store");
        // Saving a linked folder would copy what it points to: refused.
        let p = planned(&store, cache("deps", &[], false), &b);
        assert!(matches!(save(&p, &b), Err(CacheError::NotAFolder(_))));
        let p = planned(&store, cache("up/x", &[], false), &b);
        assert!(matches!(save(&p, &b), Err(CacheError::NotAFolder(_))));
        // Restoring through a link would write outside the app: refused.
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("x/y")).unwrap();
        let good = planned(&store, cache("x", &[], false), &src);
        save(&good, &src).unwrap();
        let mut via_link = good.clone();
        via_link.cache.directory = "up/x".into();
        via_link.key = good.key.clone();
        assert!(matches!(
            restore(&via_link, &b, &t.path().join("scratch")),
            Err(CacheError::NotAFolder(_))
        ));
        assert!(!outside.join("x/y").exists());
    }

    #[test]
    fn set_id_bits_never_reach_or_leave_a_cache() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("b");
        std::fs::create_dir_all(b.join("deps/dir")).unwrap();
        std::fs::write(b.join("deps/root-shell"), "x").unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&b.join("deps/root-shell"), 0o4755);
        set(&b.join("deps/dir"), 0o2775);
        let store = t.path().join("store");
        let p = planned(&store, cache("deps", &[], false), &b);
        save(&p, &b).unwrap();
        let entry = store.join(&entries(&store)[0]);
        assert_eq!(mode(&entry.join("root-shell")), 0o755);
        assert_eq!(mode(&entry.join("dir")), 0o775);
        // An entry planted before this rule (or by hand) loses them on the way back.
        set(&entry.join("root-shell"), 0o6755);
        let b2 = t.path().join("b2");
        std::fs::create_dir_all(&b2).unwrap();
        restore(&p, &b2, &t.path().join("scratch")).unwrap();
        assert_eq!(mode(&b2.join("deps/root-shell")), 0o755);
        // The persistent cache folder is cleaned in place, links untouched.
        std::os::unix::fs::symlink("/usr/bin/passwd", b.join("deps/link")).unwrap();
        assert_eq!(strip_set_id(&b).unwrap(), 2);
        assert_eq!(mode(&b.join("deps/root-shell")), 0o755);
        assert_eq!(mode(&b.join("deps/dir")), 0o775);
        assert_eq!(strip_set_id(&b).unwrap(), 0);
    }

    #[test]
    fn a_branch_restores_main_entries_but_never_saves_there() {
        let data = DataDir::new(PathBuf::from("/data"));
        let mut app = Application {
            name: "web".into(),
            ..Default::default()
        };
        app.build_caches
            .insert("deps".into(), cache("deps", &[], false));
        let b = Path::new("/nonexistent");
        assert_eq!(plan(&data, "demo", "main", &app, b)[0].inherit, None);
        assert_eq!(
            plan(&data, "demo", "dev", &app, b)[0].inherit,
            Some((
                "main".to_string(),
                PathBuf::from("/data/build-caches/demo/main/web/deps")
            ))
        );

        let t = tempfile::tempdir().unwrap();
        let (main_store, dev_store) = (t.path().join("main"), t.path().join("dev"));
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("deps")).unwrap();
        std::fs::write(src.join("deps/who"), "main").unwrap();
        save(&planned(&main_store, cache("deps", &[], false), &src), &src).unwrap();
        let mut dev = planned(&dev_store, cache("deps", &[], false), &src);
        dev.inherit = Some(("main".into(), main_store.clone()));
        let restore_into = |p: &Planned, name: &str| {
            let dir = t.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let how = restore(p, &dir, &t.path().join("scratch")).unwrap();
            (how, std::fs::read_to_string(dir.join("deps/who")).ok())
        };
        // Nothing of its own: main's entry.
        assert_eq!(
            restore_into(&dev, "b1"),
            (
                Restored::Inherited {
                    from: "main".into(),
                    stale: false
                },
                Some("main".into())
            )
        );
        // Its own entry wins, and saving never touches main's store.
        std::fs::write(src.join("deps/who"), "dev").unwrap();
        save(&dev, &src).unwrap();
        assert_eq!(entries(&main_store).len(), 1);
        assert_eq!(
            restore_into(&dev, "b2"),
            (Restored::Fresh, Some("dev".into()))
        );
    }

    /// An entry of `size` bytes in `store`, last used `age` seconds ago.
    fn aged_entry(store: &Path, n: u32, size: usize, age: u64) -> PathBuf {
        let entry = store.join(format!("{n:020}-{}", "a".repeat(64)));
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("blob"), vec![0u8; size]).unwrap();
        mark_used(&entry, Some(size as u64));
        let when = SystemTime::now() - Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(sidecar(&entry))
            .unwrap()
            .set_modified(when)
            .unwrap();
        entry
    }

    #[test]
    fn the_cap_drops_the_least_recently_used_entries_of_the_project() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("build-caches/demo");
        // Oldest by name, used last: kept.
        let old_used = aged_entry(&root.join("main/web/deps"), 1, 400, 10);
        // Newer by name, unused for long: dropped first.
        let stale = aged_entry(&root.join("dev/_shared/pip"), 2, 400, 1000);
        let middle = aged_entry(&root.join("main/web/deps"), 3, 400, 100);
        // An entry of an older server: no sidecar, measured, counted by its own time.
        let unmeasured = root
            .join("main/web/deps")
            .join(format!("{:020}-{}", 4, "b".repeat(64)));
        std::fs::create_dir_all(&unmeasured).unwrap();
        std::fs::write(unmeasured.join("blob"), vec![0u8; 400]).unwrap();

        assert_eq!(enforce_cap(&root, 1600), Vec::new(), "all fit");
        let dropped = enforce_cap(&root, 1000);
        assert_eq!(
            dropped,
            vec![
                Dropped {
                    env: "dev".into(),
                    app: None,
                    cache: "pip".into(),
                    size: 400
                },
                Dropped {
                    env: "main".into(),
                    app: Some("web".into()),
                    cache: "deps".into(),
                    size: 400
                }
            ]
        );
        assert!(!stale.exists() && !sidecar(&stale).exists());
        assert!(!middle.exists());
        assert!(old_used.exists() && unmeasured.exists());
        assert_eq!(
            std::fs::read_to_string(sidecar(&unmeasured)).unwrap(),
            "400\n"
        );
    }

    #[test]
    fn a_restore_counts_as_a_use() {
        let t = tempfile::tempdir().unwrap();
        let build = t.path().join("build");
        std::fs::create_dir_all(&build).unwrap();
        let store = t.path().join("store");
        let p = planned(&store, cache("deps", &[], false), &build);
        let entry = store.join(format!("{:020}-{}", 1, p.key));
        std::fs::create_dir_all(&entry).unwrap();
        mark_used(&entry, Some(0));
        let long_ago = SystemTime::now() - Duration::from_secs(1000);
        std::fs::File::options()
            .write(true)
            .open(sidecar(&entry))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        assert_eq!(
            restore(&p, &build, &t.path().join("scratch")).unwrap(),
            Restored::Fresh
        );
        let used = std::fs::metadata(sidecar(&entry))
            .unwrap()
            .modified()
            .unwrap();
        assert!(used > long_ago + Duration::from_secs(500));
    }
}
