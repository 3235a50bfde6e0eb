//! The normalized topology every configuration format is read into.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The languages of `dependencies` (the keys under it), each with its package manager.
pub const DEPENDENCY_LANGUAGES: &[&str] =
    &["php", "python", "python2", "python3", "nodejs", "ruby"];

/// The values of `build.flavor`.
pub const BUILD_FLAVORS: &[&str] = &["default", "composer", "none"];

/// An app's `size`: how much CPU, memory and how many processes its containers get (the
/// limits of each are in the README).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerSize {
    /// `S`.
    S,
    /// `M` (also what `AUTO` and no `size` get).
    M,
    /// `L`.
    L,
    /// `XL`.
    XL,
    /// `2XL`.
    #[serde(rename = "2XL")]
    XL2,
    /// `4XL`.
    #[serde(rename = "4XL")]
    XL4,
    /// `AUTO`: Slipway's default, `M`.
    #[serde(rename = "AUTO")]
    Auto,
}

impl ContainerSize {
    /// Every size, as written in the configuration.
    pub const NAMES: &'static [&'static str] = &["S", "M", "L", "XL", "2XL", "4XL", "AUTO"];

    /// The size written `name` (case-insensitive), if it is one.
    pub fn parse(name: &str) -> Option<ContainerSize> {
        let all = [
            ContainerSize::S,
            ContainerSize::M,
            ContainerSize::L,
            ContainerSize::XL,
            ContainerSize::XL2,
            ContainerSize::XL4,
            ContainerSize::Auto,
        ];
        Self::NAMES
            .iter()
            .zip(all)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, s)| s)
    }
}

/// An app's `resources` (Platform.sh): its memory is `base_memory + memory_ratio x CPUs`
/// (in MB), the CPUs coming from its `size`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resources {
    /// MB every container gets whatever its CPUs (Platform.sh's default: 64).
    pub base_memory: u64,
    /// MB per CPU (Platform.sh's default: 128).
    pub memory_ratio: u64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            base_memory: 64,
            memory_ratio: 128,
        }
    }
}

/// Which configuration layout a repository uses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `.slipway/config.yaml`.
    Slipway,
    /// `.upsun/config.yaml`.
    Upsun,
    /// `.platform.app.yaml` files and/or `.platform/applications.yaml`, with `.platform/{services,routes}.yaml`.
    PlatformSh,
    /// `.magento.app.yaml` with `.magento/{services,routes}.yaml`.
    MagentoCloud,
    /// A bare `Procfile`.
    Procfile,
}

impl Format {
    /// Every format, in detection priority order.
    pub const ALL: [Format; 5] = [
        Format::Slipway,
        Format::Upsun,
        Format::PlatformSh,
        Format::MagentoCloud,
        Format::Procfile,
    ];
}

impl std::fmt::Display for Format {
    /// The layout's name as its users know it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Slipway => "Slipway (.slipway/config.yaml)",
            Format::Upsun => "Upsun (.upsun/config.yaml)",
            Format::PlatformSh => "Platform.sh",
            Format::MagentoCloud => "Magento Cloud",
            Format::Procfile => "Procfile",
        })
    }
}

/// Every app, service and route of one environment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Topology {
    /// The applications, in configuration order.
    pub applications: Vec<Application>,
    /// The services (databases, caches, ...), in configuration order.
    pub services: Vec<Service>,
    /// The HTTP routes, in configuration order.
    pub routes: Vec<Route>,
}

impl Topology {
    /// The application of that name.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    /// The service of that name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One application: code built into a slug and run as containers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Application {
    /// Unique name within the project.
    pub name: String,
    /// Runtime and version, e.g. `python:3.11`; None for a bare Procfile (or an Upsun `stack`-only app).
    pub r#type: Option<String>,
    /// Folder holding the app's code: "" = repository root; slash-separated, no leading/trailing slash.
    pub source_root: String,
    /// `build.flavor`: `default` (or absent: the type's default steps), `composer` or `none`.
    pub build_flavor: Option<String>,
    /// `build.caches`: folders kept between builds, by cache name.
    #[serde(default)]
    pub build_caches: BTreeMap<String, BuildCache>,
    /// Global packages by language: `dependencies.python3.poetry: "*"`.
    pub dependencies: BTreeMap<String, serde_json::Value>,
    /// Build, deploy and post-deploy hook scripts.
    pub hooks: Hooks,
    /// How the app serves HTTP.
    pub web: Web,
    /// Variables by prefix ("env", "php", ...) then name.
    pub variables: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Writable mounts by path, as written in the configuration.
    pub mounts: BTreeMap<String, serde_json::Value>,
    /// Persistent disk in MB.
    pub disk: Option<u64>,
    /// `size`: the CPU, memory and process limits of its containers (`None`: `AUTO`).
    #[serde(default)]
    pub size: Option<ContainerSize>,
    /// `resources`: how its memory follows its CPUs (`None`: the size's own memory).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Relationship name -> `service:endpoint`.
    pub relationships: BTreeMap<String, String>,
    /// Background workers by name, as written.
    pub workers: BTreeMap<String, serde_json::Value>,
    /// Cron jobs by name, as written.
    pub crons: BTreeMap<String, serde_json::Value>,
    /// `timezone`: the IANA time zone its crons' schedules are in (`None`: UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `runtime`: PHP extensions and pool sizing (read for PHP apps only).
    #[serde(default)]
    pub runtime: crate::php::PhpRuntime,
    /// What a Heroku `app.json` beside a Procfile asks of the environment (add-on
    /// variables, generated secrets, required variables, `postdeploy`); None elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heroku: Option<crate::app_json::HerokuManifest>,
}

impl Application {
    /// `variables.env` as strings (numbers and booleans rendered as YAML would, null as "").
    pub fn env_vars(&self) -> BTreeMap<String, String> {
        let Some(env) = self.variables.get("env") else {
            return BTreeMap::new();
        };
        env.iter()
            .map(|(k, v)| (k.clone(), render_scalar(v)))
            .collect()
    }
}

/// A JSON value as a shell-friendly string: strings raw, scalars as YAML writes them, structures as JSON.
fn render_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// One entry of `build.caches`: a folder of the app restored before its build and saved after it,
/// under a key made of the watched files' content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct BuildCache {
    /// The folder, relative to the app's root, normalized (slash-separated, no `.`, `..`, leading or trailing slash).
    pub directory: String,
    /// Files (relative to the app's root, normalized like `directory`) whose content keys the cache.
    #[serde(default)]
    pub watch: Vec<String>,
    /// Restore the newest saved content even when the watched files changed.
    #[serde(default)]
    pub allow_stale: bool,
    /// One cache per project and name for every app naming it, instead of one per app and environment.
    #[serde(default)]
    pub share_between_apps: bool,
}

/// The hook scripts of an app (shell scripts run with `sh -e`... by the deploy layer).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Hooks {
    /// Runs while building the slug, without services.
    pub build: Option<String>,
    /// Runs once per deploy, with services, before the app takes traffic.
    pub deploy: Option<String>,
    /// Runs after the routes switched to the new release.
    pub post_deploy: Option<String>,
}

/// How an app serves HTTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Web {
    /// `web.commands.start`: the command that starts the server listening on `$PORT`.
    pub start: Option<String>,
    /// `web.locations`: per-path static file and passthru rules, as written.
    pub locations: BTreeMap<String, serde_json::Value>,
    /// The patterns of each location's `rules`, in the order written (the first that
    /// matches wins; `locations` keeps them sorted). Absent in older releases.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rule_order: BTreeMap<String, Vec<String>>,
    /// `web.upstream.socket_family`: how the app listens. Absent in releases made before it
    /// was acted on, which all listened on TCP.
    #[serde(default, skip_serializing_if = "SocketFamily::is_tcp")]
    pub socket_family: SocketFamily,
}

/// `web.upstream.socket_family`: where the app's web server listens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SocketFamily {
    /// TCP on `127.0.0.1:$PORT` (the default).
    #[default]
    Tcp,
    /// The unix socket `$SOCKET`.
    Unix,
}

impl SocketFamily {
    /// The family a `socket_family` value names (`tcp` or `unix`), if any.
    pub fn parse(value: &str) -> Option<SocketFamily> {
        match value {
            "tcp" => Some(SocketFamily::Tcp),
            "unix" => Some(SocketFamily::Unix),
            _ => None,
        }
    }

    /// Whether this is TCP (the default).
    pub fn is_tcp(&self) -> bool {
        *self == SocketFamily::Tcp
    }
}

/// A managed service (database, cache, search engine, ...).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Service {
    /// Unique name, used on the left of `service:endpoint` in relationships.
    pub name: String,
    /// Service kind, e.g. `mysql` (from `type: mysql:10.4`).
    pub r#type: String,
    /// Version, e.g. `10.4`.
    pub version: String,
    /// Persistent disk in MB.
    pub disk: Option<u64>,
    /// The `configuration` mapping as written (Null when absent).
    pub configuration: serde_json::Value,
    /// The service's own `relationships` (`REL: "APP:ENDPOINT"`): the apps a `varnish`
    /// service sends requests to, a backend named `REL` each. Empty for other types.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub relationships: BTreeMap<String, String>,
}

/// Service types that routes may lead to (`upstream: "SERVICE:http"`): an HTTP server in
/// front of the apps.
pub const ROUTABLE_SERVICE_TYPES: &[&str] = &["varnish"];

/// One HTTP route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Route {
    /// URL pattern, e.g. `https://{default}/` or `https://www.{default}/`.
    pub url: String,
    /// Where the route goes.
    pub kind: RouteKind,
    /// The primary route (exactly one per topology).
    pub primary: bool,
    /// `id`, for apps that look routes up by id.
    pub id: Option<String>,
    /// `attributes`: free-form values passed to the app in `PLATFORM_ROUTES`.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// `tls.strict_transport_security` with `enabled: true`: the
    /// `Strict-Transport-Security` header on the route's HTTPS answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// `tls` as written, passed to the app in `PLATFORM_ROUTES` in Platform.sh's shape.
    #[serde(default, skip_serializing_if = "RouteTls::is_unset")]
    pub tls: RouteTls,
}

/// A route's `tls` as written (unset keys `null`, as Platform.sh gives them to apps in
/// `PLATFORM_ROUTES`); only its HSTS is acted on ([`Route::hsts`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteTls {
    /// `strict_transport_security`.
    #[serde(default)]
    pub strict_transport_security: StrictTransportSecurity,
    /// `min_version`, e.g. `TLSv1.2`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// `client_authentication`: `request` or `require`.
    #[serde(default)]
    pub client_authentication: Option<String>,
    /// `client_certificate_authorities`: the CAs' certificates (PEM) as written.
    #[serde(default)]
    pub client_certificate_authorities: Vec<String>,
}

/// A route's `tls.strict_transport_security` as written.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StrictTransportSecurity {
    /// `enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `include_subdomains`.
    #[serde(default)]
    pub include_subdomains: Option<bool>,
    /// `preload`.
    #[serde(default)]
    pub preload: Option<bool>,
}

impl RouteTls {
    /// Whether nothing of it was written (every route without `tls`).
    pub fn is_unset(&self) -> bool {
        *self == RouteTls::default()
    }

    /// Its `PLATFORM_ROUTES` value: every key present, `null` where unset.
    pub fn to_json(&self) -> serde_json::Value {
        let sts = &self.strict_transport_security;
        serde_json::json!({
            "client_authentication": self.client_authentication,
            "min_version": self.min_version,
            "client_certificate_authorities": self.client_certificate_authorities,
            "strict_transport_security": {
                "enabled": sts.enabled,
                "include_subdomains": sts.include_subdomains,
                "preload": sts.preload,
            },
        })
    }
}

/// A route's HSTS (`tls.strict_transport_security`, Platform.sh's shape), when enabled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// `include_subdomains`: the policy covers the host's subdomains too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// `preload`: the site asks to be on browsers' preload lists.
    #[serde(default)]
    pub preload: bool,
}

impl Hsts {
    /// How long browsers keep to HTTPS after an answer: one year, as Platform.sh sends.
    pub const MAX_AGE: u64 = 31_536_000;

    /// The header's value, e.g. `max-age=31536000; includeSubDomains; preload`.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", Self::MAX_AGE);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// Where a route goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum RouteKind {
    /// To an application's endpoint (`upstream: app:http`).
    Upstream {
        /// The application's name.
        app: String,
        /// The endpoint, normally `http`.
        endpoint: String,
    },
    /// A redirect to another URL pattern.
    Redirect {
        /// Target URL pattern.
        to: String,
        /// HTTP status code.
        code: u16,
    },
}
