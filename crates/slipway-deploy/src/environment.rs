//! What an environment is made of: its name (from the branch), its network
//! namespace, its releases' containers and ports, and what each app sees in
//! its environment variables (spec section 4).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use slipway_config::{Application, RouteKind, Topology};

/// The environment name of a branch: the branch itself when it is a DNS
/// label, else a mapped one (lowercase, other characters to '-', trimmed,
/// at most 63 characters, and a short hash when anything was changed so two
/// branches never map to one name). Returns (name, was_mapped).
pub fn env_name_of_branch(branch: &str) -> (String, bool) {
    if is_dns_label(branch) {
        return (branch.to_string(), false);
    }
    let mut s: String = branch
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s = s.trim_matches('-');
    let hash = hex::encode(&Sha256::digest(branch.as_bytes())[..3]);
    let mut base: String = s.chars().take(63 - 7).collect();
    while base.ends_with('-') {
        base.pop();
    }
    let name = if base.is_empty() {
        format!("env-{hash}")
    } else {
        format!("{base}-{hash}")
    };
    (name, true)
}

/// The host name a container of the app, worker or service `name` gets: the name with
/// each character a host name cannot hold (`_` of demo-js's `main_app`) as `-`, at most 63
/// characters.
pub fn host_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect()
}

/// Whether `s` is a DNS label.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A short tag of a data dir, so network namespaces of two data dirs never collide.
pub fn instance_tag(data_dir: &Path) -> String {
    let canon = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    hex::encode(&Sha256::digest(canon.as_os_str().as_encoded_bytes())[..3])
}

/// The network namespace name of an environment.
pub fn netns_name(instance: &str, project: &str, env: &str) -> String {
    // Short and unique: names are files under /run/netns.
    let h = hex::encode(&Sha256::digest(format!("{project}/{env}").as_bytes())[..5]);
    format!("slipway-{instance}-{h}")
}

/// The prefix of every network namespace of a data dir.
pub fn netns_prefix(instance: &str) -> String {
    format!("slipway-{instance}-")
}

/// The container id of one app of one release.
pub fn container_id(project: &str, env: &str, app: &str, release: i64) -> String {
    format!("{project}.{env}.{app}.r{release}")
}

/// The port an app of a release listens on inside the environment's network
/// namespace: `10000 + (release mod 55) * 1000 + app index` (mod 55000). The apps of one
/// release never share a port, and 55 releases in a row (of up to 1000 apps each) never
/// share one, so old and new (and one still draining) run side by side.
pub fn port_for(release_number: i64, app_index: usize) -> u16 {
    let slot = release_number.rem_euclid(55) as u64 * 1000 + app_index as u64;
    (10000 + slot % 55000) as u16
}

/// The port an app-to-app relationship reaches the target app's web layer on, as on
/// Platform.sh (`http://REL.internal/`): the router's listener there.
pub const APP_RELATIONSHIP_PORT: u16 = slipway_router::APP_LISTENER_PORT;

/// The address `REL.internal` resolves to for a relationship to the app of a release that
/// listens on `port` ([`port_for`]): `127.4.(port / 256).(port % 256)` in the environment's
/// network namespace, on whose port [`APP_RELATIONSHIP_PORT`] the router answers with that
/// app's web layer (`provision::listen_related`). The address is a function of
/// the port, and the port of the release: a release's apps reach the apps of the same
/// release, old ones the old, new ones the new, while both run.
pub fn app_address(port: u16) -> std::net::Ipv4Addr {
    let [hi, lo] = port.to_be_bytes();
    std::net::Ipv4Addr::new(127, 4, hi, lo)
}

/// One app of a release, as stored in the release's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppInstance {
    /// App name.
    pub name: String,
    /// The slug running at /app.
    pub slug: String,
    /// The release image (OCI manifest digest) in the archive.
    pub manifest: Option<String>,
    /// The container id.
    pub container: String,
    /// `$PORT`.
    pub port: u16,
    /// The start command.
    pub start: String,
    /// The environment variables the container sees.
    pub env: BTreeMap<String, String>,
    /// The git tree id of the app's source.
    pub tree: String,
    /// The build key its slug was built under.
    pub build_key: String,
    /// The unpacked stack that is its root (`stacks/HEX/`); absent: the host stack
    /// (releases made before stacks, or a server running apps on the host stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_root: Option<PathBuf>,
    /// The stack's layers, below the slug in the release image (empty: the host stack).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack_layers: Vec<slipway_slug::SlugInfo>,
    /// The app's `size` (its container's limits); absent in releases made before sizes
    /// were acted on, which ran with the default (`AUTO`).
    #[serde(default)]
    pub size: Option<slipway_config::ContainerSize>,
    /// The app's `resources` (absent in older releases, as when not configured).
    #[serde(default)]
    pub resources: Option<slipway_config::Resources>,
    /// Its writable mounts, on the environment's volumes (absent in releases made before
    /// mounts were acted on, which had none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::mounts::AppMount>,
    /// What its `/etc/hosts` resolves: `REL.internal` -> the address of the service a
    /// relationship names, or of the app of the same release it names ([`app_address`])
    /// (absent in releases made before services ran).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, std::net::IpAddr>,
    /// Whether the app is PHP-FPM ([`crate::php`]): the router speaks FastCGI to it and
    /// the health check asks for FastCGI values (`FCGI_GET_VALUES`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fastcgi: bool,
    /// No web process: a static site (no start command, not PHP: only `web.locations`, which
    /// the router serves) or an app of workers and crons only. Its container only holds the
    /// release's place (hooks, crons, shells, retire, restore); no health probe, and the
    /// router answers what would go to it ([`slipway_router::Site::no_web_process`]: a
    /// passthru path is a rewrite to that file, `passthru: true` is 404).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_web_process: bool,
    /// A web process that nothing reaches (no route's locations pass a request through to
    /// it and no relationship names it, [`slipway_config::web_locations::process_reached`]),
    /// e.g. `start: sleep infinity` beside a static `root`: it need not listen, and the
    /// health check only checks that it keeps running. Absent (false) in releases made
    /// before, which were probed on `$PORT`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unreached: bool,
    /// The host path of its unix socket (`web.upstream.socket_family: unix`,
    /// [`crate::sockets`]): it listens on `$SOCKET` instead of `$PORT`, and the router and
    /// the health check connect there. Absent for TCP apps and in releases made before
    /// unix sockets were acted on (all TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

/// The spec of a release: its apps and how they are reached.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ReleaseSpec {
    /// The apps.
    pub apps: Vec<AppInstance>,
    /// The environment's network namespace name.
    pub netns: String,
    /// The app those hosts go to.
    pub routed_app: Option<String>,
    /// The workers (absent in releases made before workers ran).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<crate::workers::WorkerInstance>,
    /// The environment's volumes its apps mount, with their sizes (absent in releases made
    /// before mounts were acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::mounts::VolumeSize>,
}

impl ReleaseSpec {
    /// Read a spec back from the state database; a record that does not decode is an error
    /// (callers holding the release use [`crate::release_record::spec_of`], which names it).
    pub fn from_json(v: &serde_json::Value) -> Result<ReleaseSpec, serde_json::Error> {
        ReleaseSpec::deserialize(v)
    }
    /// The spec as JSON for the state database.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Which app `http://{default}/` goes to: the upstream of the route whose URL
/// is the default host, else the only app.
pub fn routed_app(topology: &Topology) -> Option<String> {
    for route in &topology.routes {
        if let RouteKind::Upstream { app, .. } = &route.kind {
            let u = route.url.as_str();
            let after_scheme = u.split_once("://").map(|(_, r)| r).unwrap_or(u);
            if after_scheme.starts_with("{default}") {
                return Some(app.clone());
            }
        }
    }
    for route in &topology.routes {
        if let RouteKind::Upstream { app, .. } = &route.kind {
            return Some(app.clone());
        }
    }
    topology.applications.first().map(|a| a.name.clone())
}

pub use slipway_config::platform_env::is_reserved_variable;

/// What an app's container sees (spec section 4).
pub struct EnvContext<'a> {
    /// Project name.
    pub project: &'a str,
    /// Environment name.
    pub env: &'a str,
    /// Branch name.
    pub branch: &'a str,
    /// The app's source tree id.
    pub tree_id: &'a str,
    /// `$PORT`.
    pub port: u16,
    /// The environment's URL.
    pub url: &'a str,
    /// The whole topology (for routes).
    pub topology: &'a Topology,
    /// The environment's services (addresses and credentials for relationships).
    pub services: &'a [slipway_state::ServiceRecord],
    /// The project's `PLATFORM_PROJECT_ENTROPY` ([`slipway_state::State::project_entropy`]).
    pub entropy: &'a str,
}

/// The environment variables of an app's container: `container_env`'s, then the
/// environment's (port, names, URL, routes, relationships). `PLATFORM_RELATIONSHIPS`,
/// `PLATFORM_ROUTES` and `PLATFORM_VARIABLES` are base64 JSON in Platform.sh's shapes
/// (see [`slipway_config::platform_env`]); `SLIPWAY_RELATIONSHIPS` and `SLIPWAY_ROUTES` are the same.
pub fn app_env(app: &Application, cx: &EnvContext<'_>) -> BTreeMap<String, String> {
    use slipway_config::platform_env;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD.encode(v.to_string().as_bytes())
    };
    let mut relationships = platform_env::relationships_json(cx.topology, app);
    crate::services::fill_relationships(&mut relationships, cx.services);
    let mut base =
        platform_env::UrlBase::from_url(cx.url).unwrap_or_else(|| platform_env::UrlBase {
            scheme: "http".into(),
            host: cx
                .url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            port: None,
            production: true,
        });
    // Explicit hosts mean the same here as to the router.
    base.production = crate::switch::is_production(cx.env);
    let mut routes = platform_env::routes_json(cx.topology, &base);
    if routes.as_object().is_none_or(|m| m.is_empty()) {
        routes = serde_json::json!({
            cx.url: {"type": "upstream", "upstream": app.name, "original_url": "http://{default}/", "primary": true, "id": null, "attributes": {}},
        });
    }
    let variables = platform_env::variables_json(app);
    let mut env = container_env(app, cx.tree_id, cx.entropy);
    // A Heroku app.json's add-ons: `DATABASE_URL` and the like, from the same relationships.
    env.extend(crate::app_json::addon_variables(app, &relationships));
    let fixed = [
        ("PORT", cx.port.to_string()),
        ("SLIPWAY_ENVIRONMENT", cx.env.to_string()),
        ("SLIPWAY_BRANCH", cx.branch.to_string()),
        ("SLIPWAY_PROJECT", cx.project.to_string()),
        ("SLIPWAY_RELATIONSHIPS", b64(&relationships)),
        ("SLIPWAY_ROUTES", b64(&routes)),
        ("SLIPWAY_URL", cx.url.to_string()),
        ("PLATFORM_BRANCH", cx.branch.to_string()),
        ("PLATFORM_ENVIRONMENT", cx.env.to_string()),
        (
            "PLATFORM_ENVIRONMENT_TYPE",
            if crate::switch::is_production(cx.env) {
                "production"
            } else {
                "development"
            }
            .to_string(),
        ),
        ("PLATFORM_PROJECT", cx.project.to_string()),
        ("PLATFORM_RELATIONSHIPS", b64(&relationships)),
        ("PLATFORM_ROUTES", b64(&routes)),
        ("PLATFORM_VARIABLES", b64(&variables)),
        ("PLATFORM_DIR", "/app".to_string()),
        ("PLATFORM_DOCUMENT_ROOT", document_root(app)),
        // No outgoing mail relay: empty, as Platform.sh sets it where outgoing email is off.
        ("PLATFORM_SMTP_HOST", String::new()),
        // A running app's /app is read-only; its home is the private, writable /tmp.
        ("HOME", "/tmp".to_string()),
    ];
    for (k, v) in fixed {
        env.insert(k.to_string(), v);
    }
    env
}

/// Where pip's user installs of an app without global Python dependencies go (`~/.local` of
/// the build, whose `HOME` is `/app`).
pub const USER_SITE: &str = "/app/.local";

/// Where pipenv makes a project's virtualenv (`WORKON_HOME`): its default under the build's
/// `HOME` (`/app`), named the same at run time, whose `HOME` is `/tmp`, so `pipenv run` of a
/// start command, deploy hook or shell finds what `pipenv install` of the build made.
pub const PIPENV_VIRTUALENVS: &str = "/app/.local/share/virtualenvs";

/// Where Poetry makes a project's virtualenv when it is not in the project
/// (`POETRY_VIRTUALENVS_PATH`): its default under the build's `HOME`, named the same at run
/// time, for the same reason as [`PIPENV_VIRTUALENVS`].
pub const POETRY_VIRTUALENVS: &str = "/app/.cache/pypoetry/virtualenvs";

/// Where corepack keeps the yarn or pnpm it fetched (`COREPACK_HOME`): its default under the
/// build's `HOME`, so in the slug, named the same at run time, so that `corepack yarn start`
/// or a deploy hook's `corepack yarn build` runs what the build fetched, without the network.
pub const COREPACK_HOME: &str = "/app/.cache/node/corepack";

/// Where bundler installs an app's gems (`BUNDLE_PATH`) unless the app says otherwise: in
/// the slug, below `/app`, where the build (`HOME=/app`) can write and the app's containers
/// find them, since the stack's own gem folder is read-only (bundler 2.2 on ruby:2.7 even
/// refuses a plain `bundle install` there, for the lock it takes in that folder).
pub const BUNDLE_PATH: &str = "/app/vendor/bundle";

/// `PLATFORM_DOCUMENT_ROOT`: the folder the `/` location serves (`/app` joined with its
/// `root`), `/app` when it has none.
pub fn document_root(app: &Application) -> String {
    match app
        .web
        .locations
        .get("/")
        .and_then(|l| l.get("root"))
        .and_then(|r| r.as_str())
        .map(|r| r.trim_matches('/'))
    {
        Some(root) if !root.is_empty() => format!("/app/{root}"),
        _ => "/app".to_string(),
    }
}

/// The project's `PLATFORM_PROJECT_ENTROPY`: stored at its first deploy (32 random bytes
/// from the kernel, hex) and the same ever after.
pub fn project_entropy(
    platform: &crate::Platform,
    project: &str,
) -> Result<String, crate::DeployError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| crate::DeployError::Io {
            what: "reading random bytes for the project's entropy".into(),
            source,
        })?;
    Ok(platform
        .state()
        .project_entropy(project, &hex::encode(bytes))?)
}

/// `command` run as a shell command after sourcing the app's `.environment` file, when it
/// has one (as Platform.sh does for start commands, deploy hooks, workers, crons and SSH
/// commands; not for the build hook). The command is `exec`ed by a fresh shell, so the
/// process tree is the same as `sh -c COMMAND`'s and signals reach the command.
pub fn sourcing_environment(command: &str) -> String {
    format!(
        "[ ! -f /app/.environment ] || . /app/.environment\nexec /bin/sh -c {}",
        crate::build::sh_quote(command)
    )
}

/// While this file exists in an app's container, its start command is started again when it
/// exits ([`restarted_until_deployed`]); the deploy hook phase removes it when the app's
/// hook is done. In the container's own `/tmp` (a tmpfs per container), which `web` writes.
pub const DEPLOY_HOOK_RUNNING: &str = "/tmp/.slipway-deploy-hook-running";

/// The start script of an app that has a deploy hook, at its deploy: the app's start
/// script ([`sourcing_environment`]) started again 1 s after it exits for as long as
/// [`DEPLOY_HOOK_RUNNING`] exists. Platform.sh runs the start command and the deploy hook
/// side by side and starts the command again when it exits, so a start command that
/// reads what the hook writes (the nextjs template's `.next` copied into a mount) exits
/// the first time and runs the next; here the container would end with it, and the hook
/// running in it too. Once the hook is done an exit ends the container as before (the
/// health check reports it, or the supervisor starts it again with backoff). `SIGTERM` and
/// `SIGINT` reach the app (the init signals the whole process group) and end the loop;
/// the app's exit status is the container's.
pub fn restarted_until_deployed(start_script: &str) -> String {
    format!(
        ": > {marker}\n\
         trap 'stop=1' TERM INT\n\
         while :; do\n\
         /bin/sh -c {script}\n\
         code=$?\n\
         if [ -n \"$stop\" ] || [ ! -e {marker} ]; then exit $code; fi\n\
         echo \"----- slipway: the start command exited with status $code while the deploy hook runs; starting it again in 1 s\"\n\
         sleep 1\n\
         if [ -n \"$stop\" ]; then exit $code; fi\n\
         done\n",
        marker = DEPLOY_HOOK_RUNNING,
        script = crate::build::sh_quote(start_script),
    )
}

/// The variables every container of `app` sees, build and run alike, later ones winning:
/// what the app's global packages need ([`crate::build::dependencies::env`]), the app's
/// `variables.env`, then the platform's own (`PATH` with the global packages first,
/// `HOME`, `LANG`, the app's name, definition and folder, the source tree id, the
/// project's entropy), which the config cannot override.
///
/// Python: pip installs of the build hook (`pip install -r requirements.txt`, as Platform.sh
/// apps do them) go to the user site `/app/.local` (`PYTHONUSERBASE`, unless global
/// dependencies moved it to `/app/.global`), past Debian's PEP 668 guard
/// (`PIP_BREAK_SYSTEM_PACKAGES`): the stack's own packages stay untouched. pipenv's and
/// Poetry's virtualenvs are where the build made them ([`PIPENV_VIRTUALENVS`],
/// [`POETRY_VIRTUALENVS`]) though `HOME` differs at run time; `variables.env` may move them.
///
/// Ruby: `bundle install` of the build hook installs into the slug ([`BUNDLE_PATH`]), where
/// `bundle exec` of the start command, deploy hooks and shells finds the gems.
///
/// Node.js: corepack's downloads are where the build made them ([`COREPACK_HOME`]), and a
/// project without `packageManager` gets the version corepack pins, checked against its
/// hash (`COREPACK_DEFAULT_TO_LATEST=0`), not whatever the registry calls latest: the build
/// and the containers agree, with no registry query.
pub(crate) fn container_env(
    app: &Application,
    tree_id: &str,
    entropy: &str,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("PYTHONUSERBASE".into(), USER_SITE.into());
    env.insert("PIP_BREAK_SYSTEM_PACKAGES".into(), "1".into());
    env.insert("WORKON_HOME".into(), PIPENV_VIRTUALENVS.into());
    env.insert("POETRY_VIRTUALENVS_PATH".into(), POETRY_VIRTUALENVS.into());
    env.insert("COREPACK_HOME".into(), COREPACK_HOME.into());
    env.insert("COREPACK_DEFAULT_TO_LATEST".into(), "0".into());
    env.insert("BUNDLE_PATH".into(), BUNDLE_PATH.into());
    env.extend(crate::build::dependencies::env(app));
    env.extend(app.env_vars());
    let application = slipway_config::platform_env::application_json(app);
    env.insert(
        "PLATFORM_APPLICATION".into(),
        base64::engine::general_purpose::STANDARD.encode(application.to_string().as_bytes()),
    );
    env.insert("PLATFORM_PROJECT_ENTROPY".into(), entropy.to_string());
    env.extend(
        [
            ("PATH", crate::build::dependencies::PATH.to_string()),
            ("HOME", "/app".to_string()),
            ("LANG", "C.UTF-8".to_string()),
            ("SLIPWAY_APPLICATION", app.name.clone()),
            ("PLATFORM_APPLICATION_NAME", app.name.clone()),
            ("PLATFORM_APP_DIR", "/app".to_string()),
            ("SLIPWAY_TREE_ID", tree_id.to_string()),
            ("PLATFORM_TREE_ID", tree_id.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_host_names_hold_only_host_name_characters() {
        assert_eq!(host_name("main_app"), "main-app");
        assert_eq!(host_name("build-in-app_clamav"), "build-in-app-clamav");
        assert_eq!(host_name(&"a".repeat(80)).len(), 63);
    }

    #[test]
    fn branch_names_map_to_dns_labels() {
        assert_eq!(env_name_of_branch("main"), ("main".into(), false));
        let (n, mapped) = env_name_of_branch("feature/Login_Page");
        assert!(mapped);
        assert!(n.starts_with("feature-login-page-"), "{n}");
        assert!(is_dns_label(&n));
        let (a, _) = env_name_of_branch("a/b");
        let (b, _) = env_name_of_branch("a_b");
        assert_ne!(a, b, "two branches never share an environment");
        let (long, _) = env_name_of_branch(&"X".repeat(300));
        assert!(is_dns_label(&long), "{long}");
        let (sym, _) = env_name_of_branch("___");
        assert!(is_dns_label(&sym), "{sym}");
    }

    #[test]
    fn app_env_has_platform_shaped_routes_and_relationships() {
        let mut app = Application {
            name: "app".into(),
            ..Default::default()
        };
        app.relationships
            .insert("database".into(), "db:postgresql".into());
        app.variables
            .entry("env".into())
            .or_default()
            .insert("MODE".into(), serde_json::json!("x"));
        let topology = Topology {
            applications: vec![app.clone()],
            services: vec![slipway_config::Service {
                name: "db".into(),
                r#type: "postgresql".into(),
                version: "16".into(),
                disk: Some(1024),
                configuration: serde_json::Value::Null,
                relationships: Default::default(),
            }],
            routes: vec![slipway_config::Route {
                url: "https://{default}/".into(),
                kind: RouteKind::Upstream {
                    app: "app".into(),
                    endpoint: "http".into(),
                },
                primary: true,
                id: None,
                attributes: Default::default(),
                hsts: None,
                tls: Default::default(),
            }],
        };
        let cx = EnvContext {
            project: "demo",
            env: "main",
            branch: "main",
            tree_id: "abc",
            port: 10001,
            url: "http://main.demo.localhost:8080/",
            topology: &topology,
            services: &[],
            entropy: "e",
        };
        let env = app_env(&app, &cx);
        let decode = |k: &str| -> serde_json::Value {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&env[k])
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let routes = decode("PLATFORM_ROUTES");
        let r = &routes["http://main.demo.localhost:8080/"];
        assert_eq!(r["upstream"], "app");
        assert_eq!(r["primary"], true);
        assert_eq!(r["original_url"], "https://{default}/");
        let rels = decode("PLATFORM_RELATIONSHIPS");
        assert_eq!(rels["database"][0]["host"], "database.internal");
        assert_eq!(rels["database"][0]["scheme"], "pgsql");
        assert_eq!(rels["database"][0]["port"], 5432);
        assert_eq!(decode("SLIPWAY_RELATIONSHIPS"), rels);
        assert_eq!(decode("PLATFORM_VARIABLES")["env:MODE"], "x");
        assert_eq!(env["MODE"], "x");
        assert_eq!(env["PORT"], "10001");
        assert_eq!(env["PLATFORM_APPLICATION_NAME"], "app");
        // Global packages' commands are on PATH; no language variables without dependencies.
        assert!(
            env["PATH"].starts_with("/app/.global/bin:"),
            "{}",
            env["PATH"]
        );
        // pip's user installs of the build hook are found at run time.
        assert_eq!(env["PYTHONUSERBASE"], "/app/.local");
        assert!(env["PATH"].contains(":/app/.local/bin:"));
        assert_eq!(env["PLATFORM_PROJECT_ENTROPY"], "e");
        assert_eq!(env["PLATFORM_DOCUMENT_ROOT"], "/app");
        assert_eq!(env["PLATFORM_SMTP_HOST"], "");
        assert_eq!(decode("PLATFORM_APPLICATION")["name"], "app");
        let mut with_deps = app.clone();
        with_deps
            .dependencies
            .insert("python3".into(), serde_json::json!({"pipenv": "*"}));
        assert_eq!(app_env(&with_deps, &cx)["PYTHONUSERBASE"], "/app/.global");
        // pipenv's and Poetry's virtualenvs: where the build (HOME=/app) made them, though
        // HOME is /tmp at run time; the same in the build's variables.
        assert_eq!(env["HOME"], "/tmp");
        let build = container_env(&app, "t", "e");
        assert_eq!(build["HOME"], "/app");
        for e in [&env, &build] {
            assert_eq!(e["WORKON_HOME"], "/app/.local/share/virtualenvs");
            assert_eq!(
                e["POETRY_VIRTUALENVS_PATH"],
                "/app/.cache/pypoetry/virtualenvs"
            );
            assert_eq!(e["COREPACK_HOME"], "/app/.cache/node/corepack");
            assert_eq!(e["COREPACK_DEFAULT_TO_LATEST"], "0");
            assert_eq!(e["BUNDLE_PATH"], "/app/vendor/bundle");
        }
        let mut moved = app.clone();
        moved
            .variables
            .entry("env".into())
            .or_default()
            .insert("WORKON_HOME".into(), serde_json::json!("/app/venvs"));
        assert_eq!(app_env(&moved, &cx)["WORKON_HOME"], "/app/venvs");
    }

    #[test]
    fn the_environment_file_is_sourced_before_the_command_which_is_execed() {
        let dir = tempfile::tempdir().unwrap();
        let script = sourcing_environment("echo \"$GREETING it's $$\"");
        let script = script.replace(
            "/app/.environment",
            &dir.path().join(".environment").display().to_string(),
        );
        let run = || {
            let o = std::process::Command::new("/bin/sh")
                .args(["-c", &script])
                .output()
                .unwrap();
            assert!(o.status.success());
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        assert!(run().starts_with(" it's "), "no file: nothing sourced");
        std::fs::write(dir.path().join(".environment"), "export GREETING=hi\n").unwrap();
        assert!(run().starts_with("hi it's "), "{}", run());
        assert!(sourcing_environment("gunicorn app").contains("exec /bin/sh -c 'gunicorn app'"));
    }

    #[test]
    fn a_start_command_is_started_again_until_the_deploy_hook_is_done_and_stops_on_sigterm() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("hook-running");
        let count = dir.path().join("count");
        let wrapped = |start: &str| {
            restarted_until_deployed(&sourcing_environment(start))
                .replace(DEPLOY_HOOK_RUNNING, &marker.display().to_string())
        };
        // Exits at once while the hook runs: started again each second, until the hook is
        // done; then its exit is the script's.
        let script = wrapped(&format!("echo run >> {}; exit 3", count.display()));
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2500));
        std::fs::remove_file(&marker).unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(3));
        let runs = std::fs::read_to_string(&count).unwrap().lines().count();
        assert!(runs >= 3, "started {runs} times");
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            said.contains("exited with status 3 while the deploy hook runs"),
            "{said}"
        );

        // SIGTERM to the process group (as the init sends it) ends the app and the loop,
        // though the hook still runs.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", &wrapped("sleep 30")])
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let pgid = nix::unistd::Pid::from_raw(-(child.id() as i32));
        nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = std::time::Instant::now();
        let status = child.wait().unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert!(!status.success());
        assert!(marker.exists(), "the hook was still running");
    }

    #[test]
    fn document_root_is_the_root_location_folder() {
        let mut app = Application::default();
        assert_eq!(document_root(&app), "/app");
        app.web.locations.insert(
            "/".into(),
            serde_json::json!({"root": "web/", "passthru": "/index.php"}),
        );
        assert_eq!(document_root(&app), "/app/web");
    }

    #[test]
    fn consecutive_releases_use_other_ports() {
        assert_ne!(port_for(1, 0), port_for(2, 0));
        assert_ne!(port_for(1, 0), port_for(1, 1));
        assert!(port_for(i64::MAX, 15) >= 10000);
        // The 17th app of a release used to get the port of the first.
        let mut seen = std::collections::HashSet::new();
        for release in [7, 8, 9] {
            for app in 0..1000 {
                let port = port_for(release, app);
                assert!(port >= 10000, "{port}");
                assert!(
                    seen.insert(port),
                    "release {release} app {app}: {port} twice"
                );
            }
        }
        assert!(port_for(-1, 999) >= 10000 && port_for(i64::MIN, 0) >= 10000);
    }
}
