//! Phase **build**: build the apps whose build key changed.
//!
//! An app's build key is the git tree id of its source root, its normalized
//! build-relevant config (type, build flavor, dependencies, build hook, the
//! variables the build sees), the stack it builds on and the slug format. Same
//! key: the slug is reused and no build runs. Otherwise the tree is checked out
//! of the pushed commit into a build folder and `hooks.build` runs in a runc
//! container whose root is the host stack, with the build folder writable at
//! `/app`; its output streams live to the pusher.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use slipway_config::Application;
use slipway_git::{ObjectId, Repo};
use slipway_runtime::ContainerSpec;
use slipway_slug::{Digest, SlugInfo};

use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::Platform;

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

fn decode_slug(s: &str) -> Option<SlugInfo> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(SlugInfo {
        digest: Digest::parse(v.get("digest")?.as_str()?).ok()?,
        size: v.get("size")?.as_u64()?,
        diff_id: Digest::parse(v.get("diff_id")?.as_str()?).ok()?,
    })
}

/// Build (or reuse) one app of `commit`.
pub async fn run(
    platform: &Arc<Platform>,
    repo: &Repo,
    commit: ObjectId,
    app: &Application,
    out: &Output,
) -> Result<BuiltApp, PhaseError> {
    let t = Instant::now();
    let phase = format!("build {}", app.name);
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
                out.phase_done(&phase, &format!("reused {}", slug.digest), t);
                return Ok(BuiltApp {
                    name: app.name.clone(),
                    slug,
                    tree: tree.to_string(),
                    build_key: key,
                    reused: true,
                });
            }
            _ => {
                let _ = state.forget_build(&key);
            }
        }
    }

    let dir = platform
        .data()
        .builds()
        .join(format!("{}-{}", out.activity(), app.name));
    let _ = std::fs::remove_dir_all(&dir);
    let result = build_in(platform, repo, tree, app, &dir, out, &phase, &key, t).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_arguments)]
async fn build_in(
    platform: &Arc<Platform>,
    repo: &Repo,
    tree: ObjectId,
    app: &Application,
    dir: &PathBuf,
    out: &Output,
    phase: &str,
    key: &str,
    t: Instant,
) -> Result<BuiltApp, PhaseError> {
    let fail = |msg: String| PhaseError::new("build", msg);
    repo.checkout(tree, dir)
        .map_err(|e| fail(format!("checking out {}: {e}", app.name)))?;
    if let Some(hook) = app.hooks.build.as_deref().filter(|h| !h.trim().is_empty()) {
        out.phase(phase, "running hooks.build");
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
        ]);
        let spec = ContainerSpec {
            id: format!("build.{}.{}", out.activity(), app.name),
            args: vec!["/bin/sh".into(), "-c".into(), hook.to_string()],
            env,
            cwd: "/app".into(),
            app_dir: dir.clone(),
            app_writable: true,
            mounts: vec![],
            netns: None,
            hostname: format!("build-{}", app.name),
            annotations: Default::default(),
        };
        let o = out.clone();
        let name = app.name.clone();
        let mut on_line = move |l: &str| o.app_line(&name, l);
        let code = platform
            .runtime()
            .run(&spec, platform.settings().build_timeout, &mut on_line)
            .await
            .map_err(|e| fail(format!("hooks.build of {}: {e}", app.name)))?;
        if code != 0 {
            return Err(fail(format!(
                "hooks.build of {} exited with status {code}",
                app.name
            )));
        }
    }
    let slug = crate::slug::run(platform, &app.name, dir.clone(), key, out, t).await?;
    Ok(BuiltApp {
        name: app.name.clone(),
        slug,
        tree: tree.to_string(),
        build_key: key.to_string(),
        reused: false,
    })
}
