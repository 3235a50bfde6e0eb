//! The deploy pipeline of Slipway, and the [`Platform`] that holds what it works on.
//!
//! A push flows through the phases in this order, one module each:
//!
//! | phase | module | what it does |
//! |---|---|---|
//! | validate | [`validate`] | reads the config from the pushed commit, checks it; [`push_protection`]: vulnerable lockfiles, committed secrets |
//! | diff | [`diff`] | compares the topology with the live release |
//! | build | [`build`] | builds the apps whose build key changed (runc container) |
//! | slug | [`slug`] | packs a build into the archive (or reuses a slug) |
//! | provision | [`provision`] | starts the new release's containers beside the old ones |
//! | deploy hook | [`hooks`] | runs `hooks.deploy` in the new containers |
//! | health | [`health`] | waits until every app answers HTTP on `$PORT` |
//! | switch routes | [`switch`] | moves the branch ref (compare-and-swap), then the routes |
//! | post_deploy | [`hooks`] | runs `hooks.post_deploy` |
//! | retire | [`retire`] | drains and stops the old release |
//!
//! [`tenancy`] says which project a host belongs to; [`protection`] is the one policy of which environments are production (protected,
//! explicit hosts as written); [`pipeline`] strings them together ([`operations`] reuses its tail for rollback
//! and redeploy); [`push`] receives a push and runs the
//! pipeline for each branch; [`restore`] brings environments back at start;
//! [`supervise`] starts again the containers that exit while serving.
//!
//! Invariants kept here: a failed or interrupted deploy never touches the
//! running cluster or its routes; a branch ref moves only when its deploy
//! succeeded; service data is never lost by a deploy.

#![warn(missing_docs)]

pub mod access;
pub mod activity_log;
pub mod activity_prune;
pub mod app_json;
pub mod app_logs;
pub mod backups;
pub mod build;
pub mod build_disk;
pub mod crons;
pub mod diff;
pub mod domain_admin;
pub mod egress;
pub mod env_lock;
pub mod env_volumes;
pub mod environment;
pub mod failure;
pub mod health;
pub mod hooks;
pub mod https;
pub mod isolation;
pub mod metrics;
pub mod mounts;
pub mod operations;
pub mod output;
pub mod php;
pub mod pipeline;
pub mod private;
pub mod project_access;
pub mod protection;
pub mod provision;
pub mod push;
pub mod push_options;
pub mod push_protection;
pub mod release_record;
pub mod restore;
pub mod retire;
pub mod services;
pub mod slug;
pub mod sockets;
pub mod supervise;
pub mod switch;
pub mod sync;
pub mod tenancy;
pub mod unborn;
pub mod validate;
pub mod variable_changes;
pub mod variables;
pub mod volume_shrink;
pub mod volumes;
pub mod web;
pub mod workers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_router::Router;
use slipway_runtime::Runtime;
use slipway_slug::Archive;
use slipway_state::{State, User};

pub use push::PushPipeline;

/// Errors opening the platform or running a deploy step outside a push.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] slipway_state::StateError),
    /// The slug archive failed.
    #[error(transparent)]
    Slug(#[from] slipway_slug::SlugError),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] slipway_runtime::RuntimeError),
    /// A git repository failed.
    #[error(transparent)]
    Git(#[from] slipway_git::GitError),
    /// A volume failed.
    #[error(transparent)]
    Volume(#[from] volumes::VolumeError),
    /// A new project's name gives it the unprivileged user another project has.
    #[error("project `{project}` would run as the same unprivileged user as project `{other}`; choose another name")]
    UserTaken {
        /// The new project.
        project: String,
        /// The project that has that user.
        other: String,
    },
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Settings of a platform, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data dir; everything lives below it.
    pub data_dir: PathBuf,
    /// The domain environments are served under (`ENV.PROJECT.DOMAIN`).
    pub domain: String,
    /// The HTTP port users reach the router on (for the URLs shown).
    pub http_port: u16,
    /// The HTTPS port users reach the router on, when it serves HTTPS: `https://` routes
    /// and redirects to them use it.
    pub https_port: Option<u16>,
    /// The OCI runtime CLI.
    pub runtime: PathBuf,
    /// How long an app may take to answer on `$PORT` after start.
    pub health_timeout: Duration,
    /// How long a build may take.
    pub build_timeout: Duration,
    /// How long a deploy hook may take.
    pub hook_timeout: Duration,
    /// How long requests on a retired release may take to finish.
    pub drain_timeout: Duration,
    /// How long a deploy (or sync, backup, restore) waits for its environment's lock held
    /// by another process on the data dir (the other server of an upgrade) before it gives
    /// up, changing nothing.
    pub lock_wait: Duration,
    /// zstd level of slugs.
    pub slug_level: i32,
    /// Largest compressed slug a build may produce (bytes).
    pub slug_max_size: u64,
    /// The size of a build's disk, its writable `/app` (bytes; see [`build_disk`]).
    pub build_disk: u64,
    /// The size of an app's build cache disk, its builds' `/cache` (bytes).
    pub build_cache_disk: u64,
    /// The cap on one project's `build.caches` entries, all environments together (bytes;
    /// the least recently used go first, see [`build::caches::enforce_cap`]).
    pub build_caches_size: u64,
    /// An app log bigger than this is rotated (bytes; see [`app_logs`]).
    pub app_log_max_size: u64,
    /// Where builds and environments may connect through their egress proxy besides
    /// public addresses on ports 80 and 443 ([`egress`]).
    pub egress: egress::EgressPolicy,
    /// Apps build and run on the stacks their `type` names; `None`: on the host stack.
    pub stacks: Option<StackSettings>,
    /// Which activity logs the server keeps (`--activity-keep`, `--activity-keep-days`):
    /// the hourly pruning and `activity prune` without flags go by it.
    pub activity_retention: slipway_state::ActivityRetention,
}

/// Where stacks are kept and built from, when apps run on them.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// A folder holding `archive/` (the stack images) and `stacks/` (unpacked); normally
    /// the data dir itself.
    pub store: PathBuf,
    /// Mirrors a missing stack is built from during a push.
    pub build: slipway_stack::BuildOptions,
}

impl Settings {
    /// Defaults for a data dir.
    pub fn new(data_dir: PathBuf) -> Settings {
        Settings {
            data_dir,
            domain: "localhost".into(),
            http_port: 8080,
            https_port: None,
            runtime: PathBuf::from("runc"),
            health_timeout: Duration::from_secs(30),
            build_timeout: Duration::from_secs(3600),
            hook_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(30),
            lock_wait: Duration::from_secs(660),
            slug_level: 3,
            slug_max_size: slipway_slug::DEFAULT_MAX_SIZE,
            build_disk: build_disk::DEFAULT_BUILD_DISK,
            build_cache_disk: build_disk::DEFAULT_CACHE_DISK,
            build_caches_size: build::caches::DEFAULT_PROJECT_CAP,
            stacks: None,
            app_log_max_size: 10 << 20,
            egress: egress::EgressPolicy::host_default(),
            activity_retention: slipway_state::ActivityRetention {
                keep_newest: activity_prune::KEEP_NEWEST,
                keep_days: activity_prune::KEEP_DAYS,
            },
        }
    }
}

/// Where things live under the data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data dir at `root`.
    pub fn new(root: PathBuf) -> DataDir {
        DataDir { root }
    }
    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }
    /// The SSH host key.
    pub fn host_key(&self) -> PathBuf {
        self.root.join("ssh_host_ed25519_key")
    }
    /// The bare git repository of a project.
    pub fn repo(&self, project: &str) -> PathBuf {
        self.root.join("git").join(format!("{project}.git"))
    }
    /// The slug archive (an OCI image layout).
    pub fn archive(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// Slugs unpacked once each, read-only, by digest.
    pub fn unpacked_slugs(&self) -> PathBuf {
        self.root.join("slugs")
    }
    /// Stacks unpacked once each, read-only, by layer digest (`stacks/HEX/`).
    pub fn stacks(&self) -> PathBuf {
        self.root.join("stacks")
    }
    /// Build folders of builds in progress.
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }
    /// The persistent build cache of an app in an environment (kept between builds).
    pub fn build_cache(&self, project: &str, env: &str, app: &str) -> PathBuf {
        self.build_cache_env(project, env).join(app)
    }
    /// The persistent build caches of every app of an environment (`cache/PROJECT/ENV`).
    pub fn build_cache_env(&self, project: &str, env: &str) -> PathBuf {
        self.root.join("cache").join(project).join(env)
    }
    /// Where the entries of one build cache (`build.caches.NAME`) of an app are kept: per
    /// project, environment and app, or per project and environment when `shared`
    /// (`share_between_apps`: shared by the apps, never by environments).
    pub fn build_caches(
        &self,
        project: &str,
        env: &str,
        app: &str,
        name: &str,
        shared: bool,
    ) -> PathBuf {
        let env = self.project_build_caches(project).join(env);
        if shared {
            // App names start with a letter or digit: `_shared` is never one.
            env.join("_shared").join(name)
        } else {
            env.join(app).join(name)
        }
    }
    /// Every `build.caches` entry of a project, all environments (`build-caches/PROJECT`):
    /// what `slipway serve --build-caches-size` caps.
    pub fn project_build_caches(&self, project: &str) -> PathBuf {
        self.root.join("build-caches").join(project)
    }
    /// The volumes of environments (`volumes/PROJECT/ENV/NAME.img`, mounted at
    /// `volumes/PROJECT/ENV/NAME/`; see [`volumes`]).
    pub fn volumes(&self) -> volumes::VolumeStore {
        volumes::VolumeStore::new(self.root.join("volumes"))
    }
    /// The `/run` folders of app containers with a unix socket (`run/CONTAINER/app.sock`;
    /// see [`sockets`]).
    pub fn app_sockets(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The folders holding only `project`'s things besides its volumes (its repository,
    /// build caches and logs): what goes with a project removed again
    /// ([`unborn::discard_project`]).
    pub fn project_dirs(&self, project: &str) -> Vec<PathBuf> {
        vec![
            self.repo(project),
            self.root.join("cache").join(project),
            self.project_build_caches(project),
            self.root.join("logs").join(project),
        ]
    }
    /// The output of an app's containers.
    pub fn app_log(&self, project: &str, env: &str, app: &str) -> PathBuf {
        self.root
            .join("logs")
            .join(project)
            .join(env)
            .join(format!("{app}.log"))
    }
}

/// Everything a deploy works on: state, archive, runtime, router.
pub struct Platform {
    settings: Settings,
    data: DataDir,
    state: State,
    archive: Archive,
    runtime: Runtime,
    router: Arc<Router>,
    /// One lock per environment ("project/env"): deploys of one environment run one at a
    /// time; [`env_lock`] adds a file lock so they do across servers too.
    env_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// A short tag of the data dir, in network namespace names.
    instance: String,
    /// Crons running now ([`crons`]).
    crons: crons::Running,
    /// The environments' egress proxies ([`Platform::env_network`]).
    egress: egress::EnvProxies,
}

impl Platform {
    /// Open the data dir (creating what is missing) and the router's table.
    pub fn open(mut settings: Settings, router: Arc<Router>) -> Result<Arc<Platform>, DeployError> {
        // Container mounts and runtime state need absolute paths.
        private::make_private(&settings.data_dir).map_err(|source| DeployError::Io {
            what: format!("creating {} (private)", settings.data_dir.display()),
            source,
        })?;
        settings.data_dir = settings
            .data_dir
            .canonicalize()
            .map_err(|source| DeployError::Io {
                what: format!("resolving {}", settings.data_dir.display()),
                source,
            })?;
        let data = DataDir::new(settings.data_dir.clone());
        for dir in [
            data.root().to_path_buf(),
            data.root().join("git"),
            data.unpacked_slugs(),
            data.builds(),
            data.root().join("logs"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| DeployError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let state = State::open(&data.state_db())?;
        let archive = Archive::open(&data.archive())?;
        let runtime = Runtime::new(&settings.runtime, data.root())?;
        let instance = environment::instance_tag(data.root());
        Ok(Arc::new(Platform {
            settings,
            data,
            state,
            archive,
            runtime,
            router,
            env_locks: Mutex::new(HashMap::new()),
            instance,
            crons: crons::Running::default(),
            egress: egress::EnvProxies::default(),
        }))
    }

    /// The stacks apps build and run on, or `None` when they use the host stack. The
    /// versions imported there (`slipway stack import`, maybe by another process since this
    /// one started) are registered for resolution each time.
    pub fn stack_store(
        &self,
    ) -> Result<Option<slipway_stack::StackStore>, slipway_slug::SlugError> {
        let Some(s) = &self.settings.stacks else {
            return Ok(None);
        };
        let archive = Archive::open(&s.store.join("archive"))?;
        let store = slipway_stack::StackStore::new(archive, &s.store.join("stacks"));
        store.register_imported()?;
        Ok(Some(store))
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The data dir layout.
    pub fn data(&self) -> &DataDir {
        &self.data
    }
    /// The state database.
    pub fn state(&self) -> &State {
        &self.state
    }
    /// The slug archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }
    /// The container runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    /// The HTTP router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The bare repository of a project.
    pub fn repo_path(&self, project: &str) -> PathBuf {
        self.data.repo(project)
    }

    /// Create a project (state and bare repository); `owner` becomes its admin.
    pub fn create_project(&self, project: &str, owner: &str) -> Result<(), DeployError> {
        if let Some(other) = isolation::user_taken_by(project, &self.state.projects()?) {
            return Err(DeployError::UserTaken {
                project: project.to_string(),
                other: other.to_string(),
            });
        }
        slipway_git::init_bare(&self.repo_path(project))?;
        self.state.create_project(project, owner)?;
        Ok(())
    }

    /// The host name of an environment: `ENV.PROJECT.DOMAIN`.
    pub fn env_host(&self, project: &str, env: &str) -> String {
        format!("{env}.{project}.{}", self.settings.domain)
    }

    /// The URL users open for an environment.
    pub fn env_url(&self, project: &str, env: &str) -> String {
        let host = self.env_host(project, env);
        if self.settings.http_port == 80 {
            format!("http://{host}/")
        } else {
            format!("http://{host}:{}/", self.settings.http_port)
        }
    }

    /// The handler for one push to `project` by `user`.
    pub fn push_handler(self: &Arc<Self>, project: &str, user: &User) -> PushPipeline {
        PushPipeline::new(self.clone(), project.to_string(), user.clone())
    }

    /// Limits applied to received packs (defaults, or the `SLIPWAY_MAX_*` environment variables).
    pub fn receive_limits(&self) -> slipway_git::receive::Limits {
        slipway_git::receive::Limits::from_env()
    }

    /// The tag of this data dir used in network namespace names.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}
