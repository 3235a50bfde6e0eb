//! Phase **build**: build the apps whose build key changed.
//!
//! An app's build key is its project, the git tree id of its source root, its normalized
//! build-relevant config (name, type, build flavor, dependencies, build hook, the
//! variables the build sees), the stack it builds on and the slug format. Same
//! key and a slug the target environment may trust ([`reusable_in`]): the slug is
//! reused and no build runs. Otherwise the tree is checked out
//! of the pushed commit into a build folder, and these steps run, each in a runc
//! container whose root is the app's stack (the one its `type` names), with the build folder writable at
//! `/app`; their output streams live to the pusher, each line prefixed with the app:
//!
//! 1. `build.caches` are restored ([`caches`]);
//! 2. `dependencies` are installed into `/app/.global` ([`dependencies`]);
//! 3. the build flavor's default steps run ([`flavor`]: `composer install` for php,
//!    `npm install` for nodejs, unless `build.flavor: none`);
//! 4. `hooks.build` runs;
//! 5. the folder is packed into a slug ([`crate::slug`]), then `build.caches` are saved.
//!
//! A step whose command is missing from the app's stack fails the build with a message
//! naming the app, what needs it and the command; a step that exits non-zero fails it like
//! a failing hook does.
//!
//! The apps to build are built in parallel, at most as many at once as the host
//! has cores ([`run_all`]). Each app of each environment has a persistent build
//! cache folder, mounted at [`CACHE_MOUNT`] (`$PLATFORM_CACHE_DIR`) and kept
//! between builds; Slipway's own steps keep the package managers' downloads there, and so
//! does `hooks.build` for the languages [`toolchains`] names (pip, pipenv, npm, yarn, Go,
//! Bundler, Maven).
//! Neither it nor `build.caches` is part of the build key: caches should only make
//! builds faster, but a build may write anything there, so a slug whose build found a
//! cache non-empty is recorded as cache-fed and reused only where that cache is
//! trusted (issue 12). Set-id bits never stay in a cache on the host. A build (all its steps) that
//! outlives `Settings::build_timeout` is killed; a failed, timed out or cancelled build
//! leaves nothing in the archive (see [`crate::slug`]) and no build folder.

pub mod caches;
pub mod dependencies;
pub mod flavor;
pub mod toolchains;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use slipway_config::Application;
use slipway_git::{ObjectId, Repo};
use slipway_runtime::{BindMount, ContainerSpec, RunAs, RuntimeError};
use slipway_slug::{Digest, SlugInfo};

use crate::build_disk::BuildDisk;
use crate::output::{format_duration, Output};
use crate::pipeline::{DeployTarget, PhaseError};
use crate::protection::PRODUCTION;
use crate::Platform;

/// Where the app's persistent build cache is mounted in the build container.
pub const CACHE_MOUNT: &str = "/cache";

/// Version of the slug layout; part of every build key. 2: zstd as one frame per MiB of
/// tar (1 was one multithreaded frame with a checksum).
pub const SLUG_FORMAT: u32 = 2;
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
    /// The unpacked stack it was built on and runs on; `None`: the host's root (only with
    /// `serve --unsafe-host-root`).
    pub stack_root: Option<PathBuf>,
    /// The stack's layers (in the platform's archive), below the slug in its release image.
    pub stack_layers: Vec<SlugInfo>,
}

/// The stack an app builds and runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStack {
    /// Its identity in build keys: `LANGUAGE:VERSION@LAYER-DIGEST`, or [`STACK`].
    pub id: String,
    /// Its unpacked root file system; `None`: the host's root (`--unsafe-host-root`).
    pub root: Option<PathBuf>,
    /// Its layers, in the platform's archive (empty for the host stack).
    pub layers: Vec<SlugInfo>,
}

impl AppStack {
    /// The host's own root (`serve --unsafe-host-root` only).
    pub fn host() -> AppStack {
        AppStack {
            id: STACK.to_string(),
            root: None,
            layers: Vec::new(),
        }
    }

    fn root_fs(&self) -> slipway_runtime::RootFs {
        match &self.root {
            Some(dir) => slipway_runtime::RootFs::Stack(dir.clone()),
            None => slipway_runtime::RootFs::Host,
        }
    }
}

/// The stack of each app (by app name), building missing stacks once each with their
/// progress in the push output. All apps get the host's root only when the server runs with
/// `--unsafe-host-root`.
async fn app_stacks(
    platform: &Arc<Platform>,
    apps: &[Application],
    out: &Output,
) -> Result<BTreeMap<String, AppStack>, PhaseError> {
    let fail = |msg: String| PhaseError::new("build", msg);
    let mut by_app = BTreeMap::new();
    let store = platform.stack_store().map_err(|e| fail(e.to_string()))?;
    let Some(store) = store else {
        for a in apps {
            by_app.insert(a.name.clone(), AppStack::host());
        }
        return Ok(by_app);
    };
    let options = platform
        .settings()
        .stacks
        .as_ref()
        .map(|s| s.build.clone())
        .unwrap_or_default();
    let mut done: BTreeMap<String, AppStack> = BTreeMap::new();
    for a in apps {
        let ty = a.r#type.as_deref().ok_or_else(|| {
            fail(format!(
                "app {} has no `type`: name its stack, e.g. `type: python:3.11`",
                a.name
            ))
        })?;
        let resolved = slipway_stack::resolve_type(ty).map_err(|e| fail(e.to_string()))?;
        let name = resolved.stack.type_name();
        if !done.contains_key(&name) {
            let t = Instant::now();
            let phase = format!("stack {name}");
            let (store, options, o, ph) =
                (store.clone(), options.clone(), out.clone(), phase.clone());
            let stack = resolved.stack;
            let p = platform.clone();
            let (built, root) = tokio::task::spawn_blocking(move || {
                let (built, root) =
                    store.ensure(stack, &options, &mut |line| o.phase(&ph, line))?;
                // Release images hold the stack's layers: the platform's archive needs them.
                for l in &built.layers {
                    p.archive().adopt_blob(store.archive(), &l.digest)?;
                }
                Ok::<_, slipway_stack::StackError>((built, root))
            })
            .await
            .map_err(|e| fail(format!("building stack {name}: {e}")))?
            .map_err(|e| {
                out.phase(&phase, &format!("failed: {e}"));
                fail(e.to_string())
            })?;
            let digest = built
                .layers
                .first()
                .map(|l| l.digest.to_string())
                .unwrap_or_default();
            out.phase_done(&phase, &format!("ready ({digest})"), t);
            done.insert(
                name.clone(),
                AppStack {
                    id: format!("{name}@{digest}"),
                    root: Some(root),
                    layers: built.layers.clone(),
                },
            );
        }
        by_app.insert(a.name.clone(), done[&name].clone());
    }
    Ok(by_app)
}

/// The build key of an app of `project` whose source tree is `tree`, built on the host
/// stack. The project is part of it: no project ever reuses a slug another project built
/// (issue 12).
pub fn build_key(project: &str, app: &Application, tree: &ObjectId) -> String {
    build_key_on(project, app, tree, STACK)
}

/// The build key of an app of `project` whose source tree is `tree`, built on stack
/// `stack` (an [`AppStack::id`]).
pub fn build_key_on(project: &str, app: &Application, tree: &ObjectId, stack: &str) -> String {
    let relevant = serde_json::json!({
        "slug_format": SLUG_FORMAT,
        "stack": stack,
        "project": project,
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
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(relevant.to_string().as_bytes()))
    )
}

/// How a slug is remembered under its build key.
pub(crate) fn encode_slug(s: &SlugInfo) -> String {
    serde_json::json!({"digest": s.digest.as_str(), "size": s.size, "diff_id": s.diff_id.as_str()})
        .to_string()
}

/// A build's recorded slug (see `encode_slug`) that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("the recorded slug `{record}` does not decode: {why}")]
pub struct SlugRecordError {
    /// The record as stored.
    pub record: String,
    /// What is wrong with it.
    pub why: String,
}

/// Read back what [`encode_slug`] stored.
pub(crate) fn decode_slug(s: &str) -> Result<SlugInfo, SlugRecordError> {
    let bad = |why: String| SlugRecordError {
        record: s.to_string(),
        why,
    };
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
    let digest = |field: &str| {
        let text = v
            .get(field)
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("no {field}")))?;
        Digest::parse(text).map_err(|e| bad(format!("{field}: {e}")))
    };
    Ok(SlugInfo {
        digest: digest("digest")?,
        size: v
            .get("size")
            .and_then(|n| n.as_u64())
            .ok_or_else(|| bad("no size".into()))?,
        diff_id: digest("diff_id")?,
    })
}

/// What to do for one app: reuse a slug, or build.
enum Plan {
    Reuse(BuiltApp),
    Build { tree: ObjectId, key: String },
}

/// Whether a slug that `built` records may be deployed to environment `env` of its project
/// without building: when no build cache fed its build, or when the caches that fed it
/// belong to `env` itself or to a protected environment (caches only ever flow from more
/// trusted environments to less trusted ones, never back).
pub fn reusable_in(built: &slipway_state::BuiltSlug, env: &str) -> bool {
    !built.cache_fed || built.environment == env || PRODUCTION.contains(&built.environment.as_str())
}

/// Work out an app's build key and whether its slug can be reused in `target`'s environment.
fn plan(
    platform: &Platform,
    repo: &Repo,
    target: &DeployTarget,
    app: &Application,
    stack: &AppStack,
) -> Result<Plan, PhaseError> {
    let commit = target.new;
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
    let key = build_key_on(&target.project, app, &tree, &stack.id);
    let state = platform.state();
    let known = state
        .built_slugs(&target.project, &key)
        .map_err(|e| fail(e.to_string()))?;
    for prev in known.iter().filter(|b| reusable_in(b, &target.env)) {
        match decode_slug(&prev.slug) {
            Ok(slug) if platform.archive().has_blob(&slug.digest) => {
                return Ok(Plan::Reuse(BuiltApp {
                    name: app.name.clone(),
                    slug,
                    tree: tree.to_string(),
                    build_key: key,
                    reused: true,
                    stack_root: stack.root.clone(),
                    stack_layers: stack.layers.clone(),
                }));
            }
            Ok(_) => {
                let _ = state.forget_built_slug(prev);
            }
            Err(e) => {
                tracing::warn!(app = %app.name, "forgotten, the app is built again: {e}");
                let _ = state.forget_built_slug(prev);
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
    let stacks = app_stacks(platform, apps, out).await?;
    for (i, app) in apps.iter().enumerate() {
        let stack = stacks
            .get(&app.name)
            .cloned()
            .unwrap_or_else(AppStack::host);
        match plan(platform, repo, target, app, &stack)? {
            Plan::Reuse(b) => {
                out.phase_done(
                    &format!("build {}", app.name),
                    &format!("reused {}", b.slug.digest),
                    t,
                );
                done[i] = Some(b);
            }
            Plan::Build { tree, key } => to_build.push((i, tree, key, stack)),
        }
    }
    if to_build.len() > 1 {
        let names: Vec<&str> = to_build
            .iter()
            .map(|(i, ..)| apps[*i].name.as_str())
            .collect();
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
    for (i, tree, key, stack) in to_build {
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
            let r = build_one(
                &platform, &repo, &project, &env, &app, tree, &key, &stack, &out,
            )
            .await;
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
                return Err(PhaseError::new(
                    "build",
                    format!("a build task failed: {e}"),
                ));
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

/// Sets a flag when dropped: tells a packing thread its build was cancelled.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A command Slipway runs in the build container before `hooks.build` (dependencies, flavor).
pub(crate) struct Step {
    /// Suffix of the container id (`deps-python3`, `flavor`).
    pub id: String,
    /// The phase line printed when it starts.
    pub headline: String,
    /// What it is, in failure messages: `installing the python3 dependencies of web`.
    pub what: String,
    /// Commands that must exist in the build container.
    pub tools: Vec<&'static str>,
    /// What needs those commands, in the missing-command message: `dependencies.python3`.
    pub needer: String,
    /// What the user can do when a command is missing.
    pub remedy: String,
    /// The shell script.
    pub script: String,
}

/// Printed by a step's preamble (and kept from the pusher) when a command it needs is missing.
const MISSING_TOOL: &str = "@@slipway-missing-tool@@ ";

/// `s` as one shell word.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Step {
    /// The script with its preamble: stop at the first error, and say which needed command is missing.
    fn full_script(&self) -> String {
        let mut script = String::from("set -e\n");
        for tool in &self.tools {
            script.push_str(&format!(
                "command -v {t} >/dev/null 2>&1 || {{ echo {m}; exit 127; }}\n",
                t = sh_quote(tool),
                m = sh_quote(&format!("{MISSING_TOOL}{tool}")),
            ));
        }
        script.push_str(&self.script);
        script.push('\n');
        script
    }
}

/// Everything a build's containers share.
struct BuildContext<'a> {
    platform: &'a Arc<Platform>,
    app: &'a Application,
    tree: ObjectId,
    dir: &'a Path,
    cache: &'a Path,
    /// The disks of `dir` and `cache`: a step that fails with one full says so.
    disks: [&'a BuildDisk; 2],
    /// The project's user, who owns `dir` and `cache` while the build runs.
    run_as: RunAs,
    /// The build's own network namespace (its proxy runs there).
    netns: &'a Path,
    out: &'a Output,
    phase: &'a str,
    /// When the build started (its timeout covers every step).
    started: Instant,
    /// The stack it builds on.
    stack: &'a AppStack,
    /// The project's `PLATFORM_PROJECT_ENTROPY`.
    entropy: &'a str,
}

impl BuildContext<'_> {
    fn fail(&self, msg: String) -> PhaseError {
        self.out.phase(self.phase, &format!("failed: {msg}"));
        PhaseError::new("build", msg)
    }

    /// Run `script` in a build container; `what` names it in messages. A command missing
    /// for `step` (printed by [`Step::full_script`]'s preamble) is reported as such.
    async fn run(
        &self,
        id: String,
        script: String,
        extra_env: Vec<(String, String)>,
        what: &str,
        step: Option<&Step>,
    ) -> Result<(), PhaseError> {
        let mut spec = build_spec(
            id,
            self.app,
            self.tree,
            &script,
            (self.dir, self.cache),
            (self.run_as, self.netns),
            extra_env,
            self.entropy,
        );
        spec.root = self.stack.root_fs();
        let egress = &self.platform.settings().egress;
        if let Some(ca) = egress.ca_mount() {
            spec.mounts.push(ca);
            // What the app's variables set wins.
            for (k, v) in egress.ca_env() {
                if !spec.env.iter().any(|(have, _)| *have == k) {
                    spec.env.push((k, v));
                }
            }
        }
        let found_missing: Arc<Mutex<Option<String>>> = Arc::default();
        let (o, name, fm) = (
            self.out.clone(),
            self.app.name.clone(),
            found_missing.clone(),
        );
        // Only Slipway's steps have the preamble; the build hook's output is passed on as is.
        let preamble = step.is_some();
        let mut on_line = move |l: &str| match l.strip_prefix(MISSING_TOOL).filter(|_| preamble) {
            Some(tool) => {
                if let Ok(mut m) = fm.lock() {
                    *m = Some(tool.trim().to_string());
                }
            }
            None => o.app_line(&name, l),
        };
        let timeout = self.platform.settings().build_timeout;
        let left = timeout
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_millis(1));
        let code = match self.platform.runtime().run(&spec, left, &mut on_line).await {
            Ok(code) => code,
            Err(RuntimeError::Timeout(_)) => {
                return Err(self.fail(format!(
                    "{what} did not finish within the build timeout ({}) and was killed; \
                     make the build faster or raise the timeout (slipway serve --build-timeout SECONDS)",
                    format_duration(timeout)
                )))
            }
            Err(e) => return Err(self.fail(format!("{what}: {e}"))),
        };
        let tool = found_missing.lock().ok().and_then(|m| m.clone());
        if let (Some(tool), Some(step)) = (tool, step) {
            return Err(self.fail(format!(
                "app {}: {} needs `{tool}`, which is not on the stack of {}; {}",
                self.app.name,
                step.needer,
                self.app.r#type.as_deref().unwrap_or("its type"),
                step.remedy
            )));
        }
        if code != 0 {
            if let Some(size) = self.disks[0].full() {
                return Err(self.fail(format!(
                    "the build's disk ({size}) is full: {what} exited with status {code}; \
                     write less into /app or raise the limit (slipway serve --build-disk SIZE)"
                )));
            }
            if let Some(size) = self.disks[1].full() {
                return Err(self.fail(format!(
                    "the build cache's disk ({size}) is full: {what} exited with status {code}; \
                     write less into /cache or raise the limit (slipway serve --build-cache-disk SIZE)"
                )));
            }
            return Err(self.fail(format!("{what} exited with status {code}")));
        }
        Ok(())
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
    stack: &AppStack,
    out: &Output,
) -> Result<BuiltApp, PhaseError> {
    let t = Instant::now();
    let phase = format!("build {}", app.name);
    let fail = |msg: String| {
        out.phase(&phase, &format!("failed: {msg}"));
        PhaseError::new("build", msg)
    };
    // The build writes into a disk of its own, deleted when it ends (whatever happens).
    let (data, id, size) = (
        platform.data().clone(),
        format!("{}-{}", out.activity(), app.name),
        platform.settings().build_disk,
    );
    let build_disk = tokio::task::spawn_blocking(move || BuildDisk::build(&data, &id, size))
        .await
        .map_err(|e| fail(format!("making the build's disk: {e}")))?
        .map_err(|e| fail(format!("making the build's disk: {e}")))?;
    let dir = build_disk.folder();

    let (r, d) = (repo.clone(), dir.clone());
    tokio::task::spawn_blocking(move || r.checkout(tree, &d))
        .await
        .map_err(|e| fail(format!("checking out {}: {e}", app.name)))?
        .map_err(|e| fail(format!("checking out {}: {e}", app.name)))?;

    let stack_composer = stack
        .root
        .as_deref()
        .and_then(|root| dependencies::stack_package_version(root, "composer"));
    let (mut steps, notes) = dependencies::steps(app, stack_composer.as_ref()).map_err(fail)?;
    for note in &notes {
        out.phase(&phase, note);
    }
    steps.extend(flavor::steps(app, &dir).map_err(fail)?);
    steps.extend(pipenv_stand_in(app, stack, &dir));
    let hook = app.hooks.build.as_deref().filter(|h| !h.trim().is_empty());
    let (planned, mut cache_fed) =
        restore_caches(platform, project, env, app, &dir, out, &phase).await;
    // After the caches: a `.global` made here first would read as part of the source tree
    // and keep a `.global` cache from being restored.
    python_aliases(app, stack, &dir)
        .map_err(|e| fail(format!("adding the python commands: {e}")))?;
    python_user_scheme(app, stack, &dir)
        .map_err(|e| fail(format!("preparing the python user site: {e}")))?;

    if !steps.is_empty() || hook.is_some() {
        let (data, p, e, a, size) = (
            platform.data().clone(),
            project.to_string(),
            env.to_string(),
            app.name.clone(),
            platform.settings().build_cache_disk,
        );
        let cache_disk =
            tokio::task::spawn_blocking(move || BuildDisk::cache(&data, &p, &e, &a, size))
                .await
                .map_err(|e| fail(format!("mounting the build cache: {e}")))?
                .map_err(|e| fail(format!("mounting the build cache: {e}")))?;
        let cache = cache_disk.folder();
        if let Some(size) = cache_disk
            .empty_if_full()
            .map_err(|e| fail(format!("emptying the full build cache: {e}")))?
        {
            out.phase(
                &phase,
                &format!("the build cache's disk ({size}) was full: emptied"),
            );
        }
        // What an earlier build left there may shape this one.
        cache_fed |= std::fs::read_dir(&cache)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
        toolchains::prepare_cache(app, &cache).map_err(|e| {
            fail(format!(
                "preparing the build cache {}: {e}",
                cache.display()
            ))
        })?;
        let entropy = crate::environment::project_entropy(platform, project)
            .map_err(|e| fail(e.to_string()))?;
        // The build runs as the project's user: it owns what it may write.
        let run_as = crate::isolation::run_as(project);
        let (d, c) = (dir.clone(), cache.clone());
        tokio::task::spawn_blocking(move || {
            run_as.own_tree(&d)?;
            run_as.own_tree(&c)
        })
        .await
        .map_err(|e| fail(format!("preparing the build folder: {e}")))?
        .map_err(|e| fail(format!("preparing the build folder: {e}")))?;
        // Off the host's network: its own namespace, the registries through a proxy.
        let netns = format!(
            "{}b-{}",
            crate::environment::netns_prefix(platform.instance()),
            hex::encode(&Sha256::digest(format!("{}/{}", out.activity(), app.name))[..5])
        );
        let network =
            crate::egress::BuildNetwork::create(&netns, platform.settings().egress.clone())
                .await
                .map_err(|e| fail(format!("the build's network: {e}")))?;
        let cx = BuildContext {
            platform,
            app,
            tree,
            dir: &dir,
            cache: &cache,
            disks: [&build_disk, &cache_disk],
            run_as,
            netns: &network.path,
            out,
            phase: &phase,
            started: t,
            stack,
            entropy: &entropy,
        };
        let ran = async {
            for step in &steps {
                out.phase(&phase, &step.headline);
                let id = format!("build.{}.{}.{}", out.activity(), app.name, step.id);
                let mut env = dependencies::step_env();
                env.extend(toolchains::env(app));
                cx.run(id, step.full_script(), env, &step.what, Some(step))
                    .await?;
            }
            if let Some(hook) = hook {
                out.phase(&phase, "running hooks.build");
                let id = format!("build.{}.{}", out.activity(), app.name);
                let what = format!("hooks.build of {}", app.name);
                cx.run(id, hook.to_string(), toolchains::env(app), &what, None)
                    .await?;
            }
            Ok::<(), PhaseError>(())
        }
        .await;
        // The cache stays on the host: no set-user-id or set-group-id file may stay in it,
        // whether the build succeeded or not.
        let c = cache.clone();
        match tokio::task::spawn_blocking(move || caches::strip_set_id(&c)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(cache = %cache.display(), "{e}"),
            Err(e) => tracing::warn!(cache = %cache.display(), "{e}"),
        }
        ran?;
    }
    let provenance = crate::slug::Provenance {
        project: project.to_string(),
        environment: env.to_string(),
        cache_fed,
    };
    let slug = crate::slug::run(platform, &app.name, dir.clone(), key, &provenance, out, t)
        .await
        .inspect_err(|e| out.phase(&phase, &format!("failed: {}", e.reason)))?;
    save_caches(platform, project, planned, &dir, out, &phase).await;
    Ok(BuiltApp {
        name: app.name.clone(),
        slug,
        tree: tree.to_string(),
        build_key: key.to_string(),
        stack_root: stack.root.clone(),
        stack_layers: stack.layers.clone(),
        reused: false,
    })
}

/// The Python commands Platform.sh's Python images have and Debian's `python3` lacks, as
/// symlinks in the slug's `.global/bin` (on `PATH` in builds and containers): `python`
/// (templates run `python manage.py ...`) and, when the app asked for a version its stack
/// stands in for (`python:3.10` on the 3.11 stack), `python3.10` (templates run
/// `python3.10 -m pip ...`). Nothing for other languages, or where the stack has them.
fn python_aliases(app: &Application, stack: &AppStack, dir: &Path) -> std::io::Result<()> {
    let Some(asked) = app
        .r#type
        .as_deref()
        .and_then(|t| t.strip_prefix("python:"))
    else {
        return Ok(());
    };
    let Some(root) = &stack.root else {
        return Ok(());
    };
    let mut aliases = vec!["python".to_string()];
    if asked.starts_with("3.") && asked.chars().all(|c| c.is_ascii_digit() || c == '.') {
        aliases.push(format!("python{asked}"));
    }
    let aliases: Vec<String> = aliases
        .into_iter()
        .filter(|alias| {
            !["usr/bin", "usr/local/bin"]
                .iter()
                .any(|d| root.join(d).join(alias).exists())
        })
        .collect();
    if aliases.is_empty() {
        return Ok(());
    }
    // The tree is the user's: a `.global` or `.global/bin` that is a link (to `/`, say)
    // must not make this host-side step write outside it.
    let Some(bin) = plain_folders(dir, Path::new(".global/bin"))? else {
        return Ok(());
    };
    for alias in aliases {
        if bin.join(&alias).symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink("/usr/bin/python3", bin.join(&alias))?;
    }
    Ok(())
}

/// pipenv makes a project's virtualenv with the Python its Pipfile asks for
/// (`[requires] python_version`), and `pipenv install --deploy` refuses a virtualenv of any
/// other (a `DeployException` after "Your Pipfile requires python_version 3.10"); but it
/// takes a virtualenv that is already there as it is, `.venv` next to the Pipfile first.
/// So when the app's type asks for a Python its stack stands in for (`python:3.10` on the
/// 3.11 stack, which the type's warning says) and its Pipfile asks for that same version,
/// a step before the build hook makes `.venv` with the stack's Python (`python3 -m venv`,
/// with pip), where `pipenv install` and every later `pipenv run` (`/app/.venv` at run
/// time) find it, without the user's files changed. Nothing when the tree has a `.venv`,
/// the Pipfile asks for another version or is not a plain TOML file.
fn pipenv_stand_in(app: &Application, stack: &AppStack, dir: &Path) -> Option<Step> {
    let asked = app.r#type.as_deref()?.strip_prefix("python:")?;
    let root = stack.root.as_deref()?;
    let used = std::fs::read_link(root.join("usr/bin/python3")).ok()?;
    let used = used
        .file_name()?
        .to_str()?
        .strip_prefix("python")?
        .to_string();
    if used == asked || root.join("usr/bin").join(format!("python{asked}")).exists() {
        return None;
    }
    let pipfile = dir.join("Pipfile");
    if !pipfile.symlink_metadata().ok()?.is_file() || dir.join(".venv").symlink_metadata().is_ok() {
        return None;
    }
    let parsed: toml::Table = std::fs::read_to_string(&pipfile).ok()?.parse().ok()?;
    let requires = parsed.get("requires")?.as_table()?;
    let wants = requires
        .get("python_full_version")
        .or_else(|| requires.get("python_version"))?
        .as_str()?;
    if wants != asked && !wants.starts_with(&format!("{asked}.")) {
        return None;
    }
    Some(Step {
        id: "pipenv-venv".into(),
        headline: format!(
            "warning: the Pipfile asks for python_version {wants}, which this server stands in \
             for with Python {used}: its virtualenv .venv is made with Python {used}, where \
             pipenv installs and runs"
        ),
        what: format!("making the pipenv virtualenv of {}", app.name),
        tools: vec!["python3"],
        needer: "the Pipfile's virtualenv".into(),
        remedy: "use a `type` whose stack has it".into(),
        script: "python3 -m venv .venv".into(),
    })
}

/// The folder `rel` under `dir`, where every folder on the way is a plain folder of the
/// tree or missing (then made here); `None` when one of them is a link or not a folder,
/// so a host-side step never follows a link the user committed out of the tree.
fn plain_folders(dir: &Path, rel: &Path) -> std::io::Result<Option<std::path::PathBuf>> {
    let mut at = dir.to_path_buf();
    for part in rel.components() {
        let std::path::Component::Normal(part) = part else {
            return Ok(None);
        };
        at.push(part);
        match at.symlink_metadata() {
            Ok(m) if !m.is_dir() => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(at))
}

/// Debian's Python imports `--user` packages from `lib/python3.N/site-packages` under
/// `PYTHONUSERBASE`, but tools that derive the user scheme from Debian's own `posix_local`
/// one write to `lib/python3.N/dist-packages` there (Poetry with
/// `POETRY_VIRTUALENVS_CREATE: false`, as django4's Poetry variant sets it), which that
/// Python never imports. Before the build, that `dist-packages` becomes a link to the user
/// site, so both land in the one folder Python imports. Nothing for other types, where the
/// stack's `python3` names no version, where the folder exists, or where a folder on the way
/// is a link (the checked-out tree is the user's).
fn python_user_scheme(app: &Application, stack: &AppStack, dir: &Path) -> std::io::Result<()> {
    if !app
        .r#type
        .as_deref()
        .is_some_and(|t| t.starts_with("python:"))
    {
        return Ok(());
    }
    let Some(root) = &stack.root else {
        return Ok(());
    };
    let Ok(python) = std::fs::read_link(root.join("usr/bin/python3")) else {
        return Ok(());
    };
    let Some(version) = python
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("python3."))
    else {
        return Ok(());
    };
    let env = crate::environment::container_env(app, "", "");
    let Some(base) = env
        .get("PYTHONUSERBASE")
        .and_then(|b| b.strip_prefix("/app/"))
    else {
        return Ok(());
    };
    let lib = Path::new(base).join("lib").join(version);
    let Some(at) = plain_folders(dir, &lib)? else {
        return Ok(());
    };
    let dist = at.join("dist-packages");
    if dist.symlink_metadata().is_ok() {
        return Ok(());
    }
    let site = at.join("site-packages");
    match site.symlink_metadata() {
        Ok(m) if !m.is_dir() => return Ok(()),
        Ok(_) => {}
        Err(_) => std::fs::create_dir(&site)?,
    }
    std::os::unix::fs::symlink("site-packages", dist)
}

/// Work out the keys of the app's `build.caches` and restore them into `dir`. A cache that
/// cannot be restored is reported and skipped: caches only speed builds up. Also says
/// whether any cache was restored (then the slug may depend on what it held).
async fn restore_caches(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    app: &Application,
    dir: &Path,
    out: &Output,
    phase: &str,
) -> (Vec<caches::Planned>, bool) {
    if app.build_caches.is_empty() {
        return (Vec::new(), false);
    }
    let (data, project, env, app2, dir2) = (
        platform.data().clone(),
        project.to_string(),
        env.to_string(),
        app.clone(),
        dir.to_path_buf(),
    );
    let done = tokio::task::spawn_blocking(move || {
        caches::plan(&data, &project, &env, &app2, &dir2)
            .into_iter()
            .map(|p| {
                let scratch = dir2.with_file_name(format!(
                    "{}.restore-{}",
                    dir2.file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    p.name
                ));
                let r = caches::restore(&p, &dir2, &scratch);
                (p, r)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            out.phase(phase, &format!("build caches not restored: {e}"));
            return (Vec::new(), false);
        }
    };
    let mut planned = Vec::new();
    let mut restored = false;
    for (p, r) in done {
        let (name, d) = (&p.name, &p.cache.directory);
        restored |= matches!(
            r,
            Ok(caches::Restored::Fresh
                | caches::Restored::Stale
                | caches::Restored::Inherited { .. })
        );
        let line = match r {
            Ok(caches::Restored::Fresh) => format!("restored build cache {name} ({d})"),
            Ok(caches::Restored::Stale) => {
                format!("restored build cache {name} ({d}; stale: the watched files changed)")
            }
            Ok(caches::Restored::Inherited { from, stale: false }) => {
                format!("restored build cache {name} ({d}) from {from}")
            }
            Ok(caches::Restored::Inherited { from, stale: true }) => {
                format!("restored build cache {name} ({d}; stale: the watched files changed) from {from}")
            }
            Ok(caches::Restored::Nothing) => {
                format!("build cache {name}: nothing saved yet for these watched files")
            }
            Ok(caches::Restored::InTree) => {
                format!("build cache {name} not restored: {d} is already in the source tree")
            }
            Err(e) => format!("build cache {name} not restored: {e}"),
        };
        out.phase(phase, &line);
        planned.push(p);
    }
    (planned, restored)
}

/// Save the app's `build.caches` from `dir` after a successful build, then keep the
/// project's entries under `--build-caches-size` (each entry dropped is named); problems
/// are reported, never fatal.
async fn save_caches(
    platform: &Arc<Platform>,
    project: &str,
    planned: Vec<caches::Planned>,
    dir: &Path,
    out: &Output,
    phase: &str,
) {
    if planned.is_empty() {
        return;
    }
    let dir = dir.to_path_buf();
    let root = platform.data().project_build_caches(project);
    let cap = platform.settings().build_caches_size;
    let done = tokio::task::spawn_blocking(move || {
        let saved = planned
            .into_iter()
            .map(|p| {
                let r = caches::save(&p, &dir);
                (p, r)
            })
            .collect::<Vec<_>>();
        (saved, caches::enforce_cap(&root, cap))
    })
    .await;
    let Ok((done, dropped)) = done else {
        out.phase(phase, "build caches not saved: the saving task failed");
        return;
    };
    for (p, r) in done {
        let (name, d) = (&p.name, &p.cache.directory);
        out.phase(
            phase,
            &match r {
                Ok(caches::Saved::Saved(size)) => {
                    format!(
                        "saved build cache {name} ({d}, {})",
                        slipway_slug::human_size(size)
                    )
                }
                Ok(caches::Saved::NoDirectory) => {
                    format!("build cache {name}: the build made no {d}; nothing saved")
                }
                Err(e) => format!("build cache {name} not saved: {e}"),
            },
        );
    }
    for d in dropped {
        let of = d
            .app
            .map_or_else(|| "shared by the apps".to_string(), |a| format!("of {a}"));
        out.phase(
            phase,
            &format!(
                "dropped an entry of build cache {} {of} in {} ({}, the least recently used): the project's build caches are capped at {} (slipway serve --build-caches-size)",
                d.cache,
                d.env,
                slipway_slug::human_size(d.size),
                slipway_slug::human_size(cap)
            ),
        );
    }
}

/// A build container: host stack, the build folder (`dirs.0`) writable at `/app`, the cache
/// (`dirs.1`) at [`CACHE_MOUNT`], in its own network namespace (`who.1`) whose proxy reaches
/// the package registries ([`crate::egress`]), run as the project's user (`who.0`) with
/// [`crate::isolation::build_limits`]. Its variables, later ones
/// winning: `extra_env` (Slipway's step defaults), those of the app's dependencies
/// ([`dependencies::env`]), the app's `variables.env`, then the platform's own.
#[allow(clippy::too_many_arguments)]
fn build_spec(
    id: String,
    app: &Application,
    tree: ObjectId,
    script: &str,
    (dir, cache): (&Path, &Path),
    (run_as, netns): (RunAs, &Path),
    extra_env: Vec<(String, String)>,
    entropy: &str,
) -> ContainerSpec {
    let mut env: BTreeMap<String, String> = extra_env.into_iter().collect();
    env.extend(crate::environment::container_env(
        app,
        &tree.to_string(),
        entropy,
    ));
    env.extend(
        [
            ("PLATFORM_CACHE_DIR", CACHE_MOUNT.into()),
            ("SLIPWAY_CACHE_DIR", CACHE_MOUNT.into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env.extend(crate::egress::BuildNetwork::env());
    ContainerSpec {
        root: slipway_runtime::RootFs::Host,
        id,
        args: vec!["/bin/sh".into(), "-c".into(), script.to_string()],
        env: env.into_iter().collect(),
        cwd: "/app".into(),
        app_dir: dir.to_path_buf(),
        app_writable: true,
        mounts: vec![BindMount {
            source: cache.to_path_buf(),
            destination: CACHE_MOUNT.into(),
            writable: true,
        }],
        netns: Some(netns.to_path_buf()),
        hostname: crate::environment::host_name(&format!("build-{}", app.name)),
        hosts: Vec::new(),
        annotations: Default::default(),
        run_as,
        limits: crate::isolation::build_limits(),
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
        let base = build_key("demo", &app(), &tree("a"));
        assert!(base.starts_with("sha256:") && base.len() == 71, "{base}");
        assert_eq!(build_key("demo", &app(), &tree("a")), base, "not stable");

        // What the build does not see: the start command, mounts, relationships; and the
        // build caches, which only make it faster.
        let mut a = app();
        a.web.start = Some("gunicorn app".into());
        a.relationships.insert("db".into(), "db:postgresql".into());
        a.build_caches.insert(
            "deps".into(),
            slipway_config::BuildCache {
                directory: "node_modules".into(),
                ..Default::default()
            },
        );
        assert_eq!(build_key("demo", &a, &tree("a")), base);

        // What it sees: each one changes the key.
        let mut changed = Vec::new();
        changed.push(build_key("demo", &app(), &tree("b")));
        // Another project: never the same key, whatever else is equal.
        changed.push(build_key("other", &app(), &tree("a")));
        let mut a = app();
        a.name = "api".into();
        changed.push(build_key("demo", &a, &tree("a")));
        let mut a = app();
        a.r#type = Some("python:3.12".into());
        changed.push(build_key("demo", &a, &tree("a")));
        let mut a = app();
        a.hooks.build = Some("make all".into());
        changed.push(build_key("demo", &a, &tree("a")));
        let mut a = app();
        a.build_flavor = Some("none".into());
        changed.push(build_key("demo", &a, &tree("a")));
        let mut a = app();
        a.dependencies
            .insert("python3".into(), serde_json::json!({"poetry": "*"}));
        changed.push(build_key("demo", &a, &tree("a")));
        let mut a = app();
        a.variables
            .entry("env".into())
            .or_default()
            .insert("DEBUG".into(), serde_json::json!(true));
        changed.push(build_key("demo", &a, &tree("a")));
        for (i, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "change {i} kept the key");
        }
        let unique: std::collections::HashSet<_> = changed.iter().collect();
        assert_eq!(unique.len(), changed.len());
    }

    #[test]
    fn slugs_fed_by_a_cache_are_reused_only_where_the_cache_is_trusted() {
        let built = |env: &str, cache_fed: bool| slipway_state::BuiltSlug {
            project: "demo".into(),
            build_key: "sha256:k".into(),
            environment: env.into(),
            cache_fed,
            slug: String::new(),
        };
        // No cache fed it: any environment of the project.
        assert!(reusable_in(&built("dev", false), "main"));
        assert!(reusable_in(&built("main", false), "dev"));
        // A cache fed it: its own environment, and from main down to the branches.
        assert!(reusable_in(&built("dev", true), "dev"));
        assert!(!reusable_in(&built("dev", true), "main"));
        assert!(!reusable_in(&built("dev", true), "other"));
        assert!(reusable_in(&built("main", true), "dev"));
    }

    #[test]
    fn python_aliases_never_follow_a_link_the_user_committed_out_of_the_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        let stack = AppStack {
            id: "python:3.11@x".into(),
            root: Some(root.path().to_path_buf()),
            layers: Vec::new(),
        };
        let outside = tempfile::tempdir().unwrap();
        let mut a = app();
        a.r#type = Some("python:3.10".into());
        // `.global` a link out of the tree, then `.global/bin` one.
        let slug = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), slug.path().join(".global")).unwrap();
        python_aliases(&a, &stack, slug.path()).unwrap();
        let slug = tempfile::tempdir().unwrap();
        std::fs::create_dir(slug.path().join(".global")).unwrap();
        std::os::unix::fs::symlink(outside.path(), slug.path().join(".global/bin")).unwrap();
        python_aliases(&a, &stack, slug.path()).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn python_commands_templates_run_are_added_where_the_stack_lacks_them() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/python3.11"), "").unwrap();
        let stack = AppStack {
            id: "python:3.11@x".into(),
            root: Some(root.path().to_path_buf()),
            layers: Vec::new(),
        };
        let slug = tempfile::tempdir().unwrap();
        let mut a = app();
        a.r#type = Some("python:3.10".into());
        python_aliases(&a, &stack, slug.path()).unwrap();
        let bin = slug.path().join(".global/bin");
        for alias in ["python", "python3.10"] {
            assert_eq!(
                std::fs::read_link(bin.join(alias)).unwrap(),
                Path::new("/usr/bin/python3")
            );
        }
        // Asked for the stack's own version: nothing but `python`; again: no error.
        let slug = tempfile::tempdir().unwrap();
        a.r#type = Some("python:3.11".into());
        python_aliases(&a, &stack, slug.path()).unwrap();
        python_aliases(&a, &stack, slug.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(slug.path().join(".global/bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["python"]);
        // Not python: nothing.
        let slug = tempfile::tempdir().unwrap();
        a.r#type = Some("nodejs:22".into());
        python_aliases(&a, &stack, slug.path()).unwrap();
        assert!(!slug.path().join(".global").exists());
    }

    #[test]
    fn debians_user_dist_packages_is_the_user_site() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("python3.11", root.path().join("usr/bin/python3")).unwrap();
        let stack = AppStack {
            id: "python:3.11@x".into(),
            root: Some(root.path().to_path_buf()),
            layers: Vec::new(),
        };
        let mut a = app();
        a.r#type = Some("python:3.10".into());
        let slug = tempfile::tempdir().unwrap();
        python_user_scheme(&a, &stack, slug.path()).unwrap();
        python_user_scheme(&a, &stack, slug.path()).unwrap();
        let lib = slug.path().join(".local/lib/python3.11");
        assert_eq!(
            std::fs::read_link(lib.join("dist-packages")).unwrap(),
            Path::new("site-packages")
        );
        assert!(lib.join("site-packages").is_dir());
        // With global Python dependencies, the user base is /app/.global.
        a.dependencies
            .insert("python3".into(), serde_json::json!({"pipenv": "*"}));
        let slug = tempfile::tempdir().unwrap();
        python_user_scheme(&a, &stack, slug.path()).unwrap();
        assert!(slug
            .path()
            .join(".global/lib/python3.11/dist-packages")
            .symlink_metadata()
            .unwrap()
            .is_symlink());
        // A link on the way (the tree is the user's): nothing is made through it.
        let outside = tempfile::tempdir().unwrap();
        let slug = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), slug.path().join(".global")).unwrap();
        python_user_scheme(&a, &stack, slug.path()).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Not python: nothing.
        a.r#type = Some("nodejs:22".into());
        let slug = tempfile::tempdir().unwrap();
        python_user_scheme(&a, &stack, slug.path()).unwrap();
        assert_eq!(std::fs::read_dir(slug.path()).unwrap().count(), 0);
    }

    #[test]
    fn build_containers_see_dependencies_variables_and_the_platform_wins() {
        let mut a = app();
        a.dependencies
            .insert("python3".into(), serde_json::json!({"pipenv": "*"}));
        let vars = a.variables.entry("env".into()).or_default();
        vars.insert("PIP_NO_INDEX".into(), serde_json::json!("1"));
        vars.insert("PATH".into(), serde_json::json!("/nowhere"));
        vars.insert("PIP_CACHE_DIR".into(), serde_json::json!("/mine"));
        let spec = build_spec(
            "build.1.web.deps-python3".into(),
            &a,
            tree("a"),
            "true",
            (Path::new("/b"), Path::new("/c")),
            (crate::isolation::run_as("p"), Path::new("/run/netns/b")),
            dependencies::step_env(),
            "entropy-of-p",
        );
        let env: BTreeMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env.len(), spec.env.len(), "a variable twice");
        assert_eq!(env["PATH"], dependencies::PATH, "the platform's PATH wins");
        assert_eq!(env["PLATFORM_PROJECT_ENTROPY"], "entropy-of-p");
        assert!(env.contains_key("PLATFORM_APPLICATION"));
        assert!(
            !env.contains_key("PLATFORM_ENVIRONMENT"),
            "runtime only: templates test it to know they are past the build"
        );
        assert_eq!(env["PYTHONUSERBASE"], "/app/.global");
        assert_eq!(env["PIP_NO_INDEX"], "1", "variables.env reaches the build");
        assert_eq!(
            env["PIP_CACHE_DIR"], "/mine",
            "the app's variables win over step defaults"
        );
        assert_eq!(env["PIP_BREAK_SYSTEM_PACKAGES"], "1");
        assert_eq!(
            spec.netns.as_deref(),
            Some(Path::new("/run/netns/b")),
            "builds have their own network"
        );
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(spec.args, vec!["/bin/sh", "-c", "true"]);
    }

    #[test]
    fn steps_say_which_command_is_missing() {
        let step = Step {
            id: "deps-php".into(),
            headline: String::new(),
            what: String::new(),
            tools: vec!["composer"],
            needer: String::new(),
            remedy: String::new(),
            script: "composer global require 'a/b:^2'".into(),
        };
        let script = step.full_script();
        assert!(script.starts_with("set -e\ncommand -v 'composer' >/dev/null 2>&1 || { echo '@@slipway-missing-tool@@ composer'; exit 127; }\n"), "{script}");
        assert!(script.ends_with("composer global require 'a/b:^2'\n"));
        // Run it for real in a shell without composer: the marker names it.
        let o = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(127));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{MISSING_TOOL}composer").trim()
        );
        assert_eq!(sh_quote("it's"), r#"'it'\''s'"#);
    }

    #[test]
    fn slug_records_round_trip_and_bad_ones_are_refused() {
        let s = SlugInfo {
            digest: Digest::of_bytes(b"slug"),
            size: 42,
            diff_id: Digest::of_bytes(b"tar"),
        };
        assert_eq!(decode_slug(&encode_slug(&s)).unwrap(), s);
        for bad in [
            "",
            "{}",
            "not json",
            r#"{"digest":"sha256:xyz","size":1,"diff_id":"sha256:xyz"}"#,
        ] {
            let e = decode_slug(bad).unwrap_err();
            assert!(e.to_string().contains("does not decode"), "{bad}: {e}");
        }
    }
}
