//! Phase **build**: build the apps whose build key changed.
//!
//! An app's build key is the git tree id of its source root, its normalized
//! build-relevant config (name, type, build flavor, dependencies, build hook, the
//! variables the build sees), the stack it builds on and the slug format. Same
//! key: the slug is reused and no build runs. Otherwise the tree is checked out
//! of the pushed commit into a build folder and `hooks.build` runs in a runc
//! container whose root is the host stack, with the build folder writable at
//! `/app`; its output streams live to the pusher, each line prefixed with the app.
//!
//! The apps to build are built in parallel, at most as many at once as the host
//! has cores ([`run_all`]). Each app of each environment has a persistent build
//! cache folder, mounted at [`CACHE_MOUNT`] (`$PLATFORM_CACHE_DIR`) and kept
//! between builds; it is not part of the build key. A build that outlives
//! `Settings::build_timeout` is killed; a failed, timed out or cancelled build
//! leaves nothing in the archive (see [`crate::slug`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use slipway_config::Application;
use slipway_git::{ObjectId, Repo};
use slipway_runtime::{BindMount, ContainerSpec, RuntimeError};
use slipway_slug::{Digest, SlugInfo};

use crate::output::{format_duration, Output};
use crate::pipeline::{DeployTarget, PhaseError};
use crate::Platform;

/// Where the app's persistent build cache is mounted in the build container.
pub const CACHE_MOUNT: &str = "/cache";

/// Version of the slug layout; part of every build key.
pub const SLUG_FORMAT: u32 = 1;
/// The stack apps build and run on: the host's /usr, /lib*, /bin, /sbin, /etc.
pub const STACK: &str = "host";

/// An app ready to run: its slug and where it came from.
#[derive(Debug, Clone)]
pub struct BuiltApp {
    /// App name.
    pub name: String,
    /// The slug.
    pub slug: SlugInfo,
    /// The git tree id of its source.
    pub tree: String,
    /// Its build key.
    pub build_key: String,
    /// Whether the slug was reused rather than built.
    pub reused: bool,
}

/// The build key of an app whose source tree is `tree`.
pub fn build_key(app: &Application, tree: &ObjectId) -> String {
    let relevant = serde_json::json!({
        "slug_format": SLUG_FORMAT,
        "stack": STACK,
        "tree": tree.to_string(),
        // The build sees its app's name ($PLATFORM_APPLICATION_NAME): two apps with the
        // same tree and config still build differently.
        "app": app.name,
        "type": app.r#type,
        "build_flavor": app.build_flavor,
        "dependencies": app.dependencies,
        "build_hook": app.hooks.build,
        "variables": app.variables,
    });
    format!("sha256:{}", hex::encode(Sha256::digest(relevant.to_string().as_bytes())))
}

/// How a slug is remembered under its build key.
pub(crate) fn encode_slug(s: &SlugInfo) -> String {
    serde_json::json!({"digest": s.digest.as_str(), "size": s.size, "diff_id": s.diff_id.as_str()}).to_string()
}

/// Read back what [`encode_slug`] stored.
pub(crate) fn decode_slug(s: &str) -> Option<SlugInfo> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(SlugInfo {
        digest: Digest::parse(v.get("digest")?.as_str()?).ok()?,
        size: v.get("size")?.as_u64()?,
        diff_id: Digest::parse(v.get("diff_id")?.as_str()?).ok()?,
    })
}

/// What to do for one app: reuse a slug, or build.
enum Plan {
    Reuse(BuiltApp),
    Build { tree: ObjectId, key: String },
}

/// Work out an app's build key and whether its slug can be reused.
fn plan(platform: &Platform, repo: &Repo, commit: ObjectId, app: &Application) -> Result<Plan, PhaseError> {
    let fail = |msg: String| PhaseError::new("build", msg);
    let tree = repo
        .tree_at(commit, &app.source_root)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| {
            fail(format!(
                "source.root '{}' of app {} is not a folder in the pushed commit",
                app.source_root, app.name
            ))
        })?;
    let key = build_key(app, &tree);
    let state = platform.state();
    if let Some(prev) = state.slug_for_build(&key).map_err(|e| fail(e.to_string()))? {
        match decode_slug(&prev) {
            Some(slug) if platform.archive().has_blob(&slug.digest) => {
                return Ok(Plan::Reuse(BuiltApp {
                    name: app.name.clone(),
                    slug,
                    tree: tree.to_string(),
                    build_key: key,
                    reused: true,
                }));
            }
            _ => {
                let _ = state.forget_build(&key);
            }
        }
    }
    Ok(Plan::Build { tree, key })
}

/// How many builds run at once: the number of cores.
pub fn parallel_builds() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Build (or reuse) every app of `target.new`, the changed ones in parallel (at most
/// [`parallel_builds`] at once). Returns the apps in the order given. The first failure
/// cancels the builds still running (their containers are killed, their build folders
/// removed, nothing of them reaches the archive) and is returned.
pub async fn run_all(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    apps: &[Application],
    out: &Output,
) -> Result<Vec<BuiltApp>, PhaseError> {
    let t = Instant::now();
    let mut done: Vec<Option<BuiltApp>> = vec![None; apps.len()];
    let mut to_build = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        match plan(platform, repo, target.new, app)? {
            Plan::Reuse(b) => {
                out.phase_done(&format!("build {}", app.name), &format!("reused {}", b.slug.digest), t);
                done[i] = Some(b);
            }
            Plan::Build { tree, key } => to_build.push((i, tree, key)),
        }
    }
    if to_build.len() > 1 {
        let names: Vec<&str> = to_build.iter().map(|(i, ..)| apps[*i].name.as_str()).collect();
        out.phase(
            "build",
            &format!(
                "building {} in parallel (at most {} at once)",
                names.join(", "),
                parallel_builds()
            ),
        );
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel_builds()));
    let mut set = tokio::task::JoinSet::new();
    for (i, tree, key) in to_build {
        let (platform, repo, out, app, permits) = (
            platform.clone(),
            repo.clone(),
            out.clone(),
            apps[i].clone(),
            permits.clone(),
        );
        let (project, env) = (target.project.clone(), target.env.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = build_one(&platform, &repo, &project, &env, &app, tree, &key, &out).await;
            (i, r)
        });
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(b))) => done[i] = Some(b),
            Ok((_, Err(e))) => {
                // Dropping the set aborts the other builds; their guards clean up.
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(e);
            }
            Err(e) => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                return Err(PhaseError::new("build", format!("a build task failed: {e}")));
            }
        }
    }
    Ok(done.into_iter().flatten().collect())
}

/// Build (or reuse) one app of `target.new`.
pub async fn run(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    app: &Application,
    out: &Output,
) -> Result<BuiltApp, PhaseError> {
    let mut built = run_all(platform, repo, target, std::slice::from_ref(app), out).await?;
    built
        .pop()
        .ok_or_else(|| PhaseError::new("build", format!("{} was not built", app.name)))
}

/// Removes a build folder when dropped (success, failure, or a cancelled build).
struct BuildDir(PathBuf);

impl Drop for BuildDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), "removing a build folder: {e}");
            }
        }
    }
}

/// Sets a flag when dropped: tells a packing thread its build was cancelled.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn build_one(
    platform: &Arc<Platform>,
    repo: &Repo,
    project: &str,
    env: &str,
    app: &Application,
    tree: ObjectId,
    key: &str,
    out: &Output,
) -> Result<BuiltApp, PhaseError> {
    let t = Instant::now();
    let phase = format!("build {}", app.name);
    let fail = |msg: String| {
        out.phase(&phase, &format!("failed: {msg}"));
        PhaseError::new("build", msg)
    };
    let dir = platform
        .data()
        .builds()
        .join(format!("{}-{}", out.activity(), app.name));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = BuildDir(dir.clone());

    let (r, d) = (repo.clone(), dir.clone());
    tokio::task::spawn_blocking(move || r.checkout(tree, &d))
        .await
        .map_err(|e| fail(format!("checking out {}: {e}", app.name)))?
        .map_err(|e| fail(format!("checking out {}: {e}", app.name)))?;

    if let Some(hook) = app.hooks.build.as_deref().filter(|h| !h.trim().is_empty()) {
        let cache = platform.data().build_cache(project, env, &app.name);
        std::fs::create_dir_all(&cache)
            .map_err(|e| fail(format!("creating the build cache {}: {e}", cache.display())))?;
        out.phase(&phase, "running hooks.build");
        let spec = build_spec(out.activity(), app, tree, hook, &dir, &cache);
        let o = out.clone();
        let name = app.name.clone();
        let mut on_line = move |l: &str| o.app_line(&name, l);
        let timeout = platform.settings().build_timeout;
        let code = match platform.runtime().run(&spec, timeout, &mut on_line).await {
            Ok(code) => code,
            Err(RuntimeError::Timeout(_)) => {
                return Err(fail(format!(
                    "hooks.build of {} did not finish within the build timeout ({}) and was killed; \
                     make the build faster or raise the timeout (slipway serve --build-timeout SECONDS)",
                    app.name,
                    format_duration(timeout)
                )))
            }
            Err(e) => return Err(fail(format!("hooks.build of {}: {e}", app.name))),
        };
        if code != 0 {
            return Err(fail(format!(
                "hooks.build of {} exited with status {code}",
                app.name
            )));
        }
    }
    let slug = crate::slug::run(platform, &app.name, dir.clone(), key, out, t)
        .await
        .inspect_err(|e| out.phase(&phase, &format!("failed: {}", e.reason)))?;
    Ok(BuiltApp {
        name: app.name.clone(),
        slug,
        tree: tree.to_string(),
        build_key: key.to_string(),
        reused: false,
    })
}

/// The build container: host stack, the build folder writable at `/app`, the cache at
/// [`CACHE_MOUNT`], host network (to fetch dependencies).
fn build_spec(
    activity: i64,
    app: &Application,
    tree: ObjectId,
    hook: &str,
    dir: &Path,
    cache: &Path,
) -> ContainerSpec {
    let mut env: Vec<(String, String)> = app.env_vars().into_iter().collect();
    env.extend([
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ("HOME".into(), "/app".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("SLIPWAY_APPLICATION".into(), app.name.clone()),
        ("PLATFORM_APPLICATION_NAME".into(), app.name.clone()),
        ("PLATFORM_APP_DIR".into(), "/app".into()),
        ("PLATFORM_TREE_ID".into(), tree.to_string()),
        ("SLIPWAY_TREE_ID".into(), tree.to_string()),
        ("PLATFORM_CACHE_DIR".into(), CACHE_MOUNT.into()),
        ("SLIPWAY_CACHE_DIR".into(), CACHE_MOUNT.into()),
    ]);
    ContainerSpec {
        id: format!("build.{activity}.{}", app.name),
        args: vec!["/bin/sh".into(), "-c".into(), hook.to_string()],
        env,
        cwd: "/app".into(),
        app_dir: dir.to_path_buf(),
        app_writable: true,
        mounts: vec![BindMount {
            source: cache.to_path_buf(),
            destination: CACHE_MOUNT.into(),
            writable: true,
        }],
        netns: None,
        hostname: format!("build-{}", app.name),
        annotations: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> Application {
        let mut a = Application {
            name: "web".into(),
            r#type: Some("python:3.11".into()),
            ..Default::default()
        };
        a.hooks.build = Some("make".into());
        a.web.start = Some("python3 server.py".into());
        a
    }

    fn tree(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.repeat(40).as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn build_key_changes_with_what_the_build_sees_only() {
        let base = build_key(&app(), &tree("a"));
        assert!(base.starts_with("sha256:") && base.len() == 71, "{base}");
        assert_eq!(build_key(&app(), &tree("a")), base, "not stable");

        // What the build does not see: the start command, mounts, relationships.
        let mut a = app();
        a.web.start = Some("gunicorn app".into());
        a.relationships.insert("db".into(), "db:postgresql".into());
        assert_eq!(build_key(&a, &tree("a")), base);

        // What it sees: each one changes the key.
        let mut changed = Vec::new();
        changed.push(build_key(&app(), &tree("b")));
        let mut a = app();
        a.name = "api".into();
        changed.push(build_key(&a, &tree("a")));
        let mut a = app();
        a.r#type = Some("python:3.12".into());
        changed.push(build_key(&a, &tree("a")));
        let mut a = app();
        a.hooks.build = Some("make all".into());
        changed.push(build_key(&a, &tree("a")));
        let mut a = app();
        a.build_flavor = Some("none".into());
        changed.push(build_key(&a, &tree("a")));
        let mut a = app();
        a.dependencies.insert("python3".into(), serde_json::json!({"poetry": "*"}));
        changed.push(build_key(&a, &tree("a")));
        let mut a = app();
        a.variables
            .entry("env".into())
            .or_default()
            .insert("DEBUG".into(), serde_json::json!(true));
        changed.push(build_key(&a, &tree("a")));
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "change {i} kept the key");
        }
        let unique: std::collections::HashSet<_> = changed.iter().collect();
        assert_eq!(unique.len(), changed.len());
    }

    #[test]
    fn slug_records_round_trip_and_bad_ones_are_refused() {
        let s = SlugInfo {
            digest: Digest::of_bytes(b"slug"),
            size: 42,
            diff_id: Digest::of_bytes(b"tar"),
        };
        assert_eq!(decode_slug(&encode_slug(&s)), Some(s));
        for bad in ["", "{}", "not json", r#"{"digest":"sha256:xyz","size":1,"diff_id":"sha256:xyz"}"#] {
            assert_eq!(decode_slug(bad), None, "{bad}");
        }
    }
}
