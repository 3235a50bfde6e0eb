//! Phase **switch routes**: move the branch ref (compare-and-swap: only if it
//! still points where the push said), then swap the route table so new
//! requests go to the new release, then record it as live. The ref moves
//! first so that what the branch says is what is live; if the ref moved
//! under us, nothing is switched. New requests of the environment are held
//! (bounded) while this happens.
//!
//! The routes of an environment come from the topology's routes (spec section 4):
//!
//! - `{default}` and `{all}` are the environment's host `ENV.PROJECT.DOMAIN` (Slipway
//!   has one domain, so `{all}` is `{default}`); `https://www.{default}/` is
//!   `www.ENV.PROJECT.DOMAIN`.
//! - An explicit host (`https://www.example.com/`) is routed as written in the
//!   production environments (`main` and `master`, [`crate::protection`]) only.
//!   Elsewhere it becomes `www.example.com.ENV.PROJECT.DOMAIN`, as Platform.sh does, so
//!   that a branch never takes production's domain and every host it routes is under its
//!   own project's domain.
//! - A host belongs to one environment of one project ([`crate::tenancy`]): the validate
//!   phase refuses routes to another project's host, and the switch refuses a host that
//!   another environment routes now; the router's table keeps a host with its owner.
//! - Without `--https-listen` the router serves plain HTTP only: an `https://` route is
//!   served on `http://`; when both `http://` and `https://` routes exist for one host and
//!   path, the `https://` one wins (the usual `http -> https` redirect would loop), and a
//!   redirect to itself is dropped. With it, each rule keeps its scheme
//!   ([`RouteScheme`]): `https://` routes are served on TLS, `http://` ones on plain
//!   HTTP (each also on the other when it has no rule of its own for the host and path),
//!   so the usual `http://` redirect to `https://` answers on plain HTTP.
//! - A route path is a prefix (`/api` takes `/api` and `/api/...`); the longest wins.
//! - A redirect (`type: redirect`, `to`, code 301 unless configured) keeps the rest of
//!   the path and the query. A target host that the environment serves gets `http://`
//!   and the router's port (`https://` and the HTTPS port for an `https://` target when
//!   the router serves HTTPS); other targets are used as written.

use std::sync::Arc;
use std::time::Instant;

use slipway_config::{RouteKind, Topology};
use slipway_git::Repo;
use slipway_router::{EnvRoutes, LiveRelease, RouteAction, RouteRule, RouteScheme, Upstream};
use slipway_state::Release;

use crate::environment::ReleaseSpec;
use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::provision::netns_path;
use crate::release_record;
use crate::{tenancy, Platform};

/// The router key of an environment.
pub fn env_key(project: &str, env: &str) -> String {
    format!("{project}/{env}")
}

/// Whether an environment is production ([`crate::protection`]): its explicit hosts apply as written.
pub use crate::protection::is_production;

/// The parts of a route URL pattern: scheme, host pattern, path (starting with `/`).
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // A port in a pattern means nothing to the router: it listens where it listens.
    let host = match host.rfind(':') {
        Some(i) if !host.ends_with('}') => &host[..i],
        _ => host,
    };
    (!host.is_empty()).then_some((scheme, host, path))
}

/// How route URL patterns resolve for one environment.
struct Resolver<'a> {
    default_host: String,
    production: bool,
    platform: &'a Platform,
}

impl Resolver<'_> {
    /// The host a host pattern stands for in this environment.
    fn host(&self, pattern: &str) -> String {
        let pattern = pattern.to_ascii_lowercase();
        if pattern.contains("{default}") || pattern.contains("{all}") {
            pattern
                .replace("{default}", &self.default_host)
                .replace("{all}", &self.default_host)
        } else if self.production {
            pattern
        } else {
            format!("{pattern}.{}", self.default_host)
        }
    }

    /// The absolute URL a redirect target pattern stands for; `served` are the hosts
    /// this environment serves.
    fn target(&self, to: &str, served: &[String]) -> String {
        let Some((scheme, host, path)) = split_url(to) else {
            // A relative target (`/elsewhere`) is used as written.
            return to.to_string();
        };
        let placeholder = host.contains('{');
        let resolved = self.host(host);
        if placeholder || served.contains(&resolved) {
            let settings = self.platform.settings();
            match settings.https_port {
                Some(443) if scheme == "https" => format!("https://{resolved}{path}"),
                Some(port) if scheme == "https" => format!("https://{resolved}:{port}{path}"),
                _ if settings.http_port == 80 => format!("http://{resolved}{path}"),
                _ => format!("http://{resolved}:{}{path}", settings.http_port),
            }
        } else {
            format!("{scheme}://{host}{path}")
        }
    }
}

/// The routes of an environment running the release `spec`, from its topology.
/// Without a topology (or without routes), every path of `ENV.PROJECT.DOMAIN` goes to
/// the release's routed app.
pub fn env_routes(
    platform: &Platform,
    project: &str,
    env: &str,
    release_name: &str,
    spec: &ReleaseSpec,
    topology: Option<&Topology>,
) -> EnvRoutes {
    let mut upstreams: Vec<(String, Upstream)> = spec
        .apps
        .iter()
        .map(|app| {
            (
                app.name.clone(),
                Upstream {
                    release: app.container.clone(),
                    netns: Some(netns_path(&spec.netns)),
                    port: app.port,
                    socket: app.socket.clone(),
                },
            )
        })
        .collect();
    upstreams.extend(service_upstreams(
        platform, project, env, spec, topology, &upstreams,
    ));
    let resolver = Resolver {
        default_host: platform.env_host(project, env),
        production: is_production(env),
        platform,
    };
    let routes = topology.map(|t| t.routes.as_slice()).unwrap_or_default();
    // https:// routes first: for one host and path, they win over http:// ones.
    let mut ordered: Vec<&slipway_config::Route> = routes.iter().collect();
    ordered.sort_by_key(|r| !r.url.starts_with("https://"));
    let https = platform.settings().https_port.is_some();
    let parsed: Vec<(String, String, &slipway_config::Route, RouteScheme)> = ordered
        .iter()
        .filter_map(|r| {
            let (scheme, host, path) = split_url(&r.url)?;
            let scheme = match scheme {
                _ if !https => RouteScheme::Any,
                "https" => RouteScheme::Https,
                _ => RouteScheme::Http,
            };
            Some((resolver.host(host), path.to_string(), *r, scheme))
        })
        .collect();
    let served: Vec<String> = parsed.iter().map(|(h, _, _, _)| h.clone()).collect();
    let mut rules = Vec::new();
    for (host, path, route, scheme) in parsed {
        let action = match &route.kind {
            RouteKind::Upstream { app, .. } => {
                if !upstreams.iter().any(|(name, _)| name == app) {
                    tracing::warn!(project, env, app = %app, "route to an app or service the release does not have: skipped");
                    continue;
                }
                RouteAction::Upstream(app.clone())
            }
            RouteKind::Redirect { to, code } => {
                let to = resolver.target(to, &served);
                let own = format!("{host}{path}");
                // With HTTPS, `http://` to `https://` of the same host is no loop.
                let same = split_url(&to).is_some_and(|(s, h, p)| {
                    format!("{}{p}", h.to_ascii_lowercase()) == own
                        && (!https || (s == "https") == (scheme == RouteScheme::Https))
                });
                if same {
                    tracing::info!(project, env, host = %host, "a redirect to itself is not routed (the router serves http only)");
                    continue;
                }
                RouteAction::Redirect { to, code: *code }
            }
        };
        rules.push(RouteRule {
            host,
            path,
            action,
            scheme,
            hsts: route.hsts.map(|h| h.header_value()),
        });
    }
    if rules.is_empty() {
        let routed = spec
            .apps
            .iter()
            .find(|a| Some(&a.name) == spec.routed_app.as_ref())
            .or_else(|| spec.apps.first());
        if let Some(app) = routed {
            rules.push(RouteRule {
                host: resolver.default_host.clone(),
                path: "/".into(),
                action: RouteAction::Upstream(app.name.clone()),
                scheme: RouteScheme::Any,
                hsts: None,
            });
        }
    }
    // Apps with `web.locations`: the router serves their files from the release's slug.
    let sites = spec
        .apps
        .iter()
        .filter_map(|instance| {
            let app = topology?
                .applications
                .iter()
                .find(|a| a.name == instance.name)?;
            Some((
                instance.name.clone(),
                crate::web::site_of(platform, (project, env), app, instance)?,
            ))
        })
        .collect();
    EnvRoutes {
        release: release_name.to_string(),
        upstreams,
        rules,
        sites,
    }
}

/// The services routes may lead to (`upstream: "SERVICE:http"`, varnish): each listens
/// on `127.0.0.1:`[`crate::services::varnish::route_port`] in the environment's network
/// namespace, dialed like an app. A name an app has already is the app's.
fn service_upstreams(
    platform: &Platform,
    project: &str,
    env: &str,
    spec: &ReleaseSpec,
    topology: Option<&Topology>,
    apps: &[(String, Upstream)],
) -> Vec<(String, Upstream)> {
    let Some(topology) = topology else {
        return Vec::new();
    };
    let routable = |s: &&slipway_config::Service| {
        slipway_config::ROUTABLE_SERVICE_TYPES.contains(&s.r#type.as_str())
    };
    if !topology.services.iter().any(|s| routable(&s)) {
        // The common case costs no state query.
        return Vec::new();
    }
    let records = match platform.state().services(project, env) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(project, env, "routes to services: {e}");
            return Vec::new();
        }
    };
    topology
        .services
        .iter()
        .filter(routable)
        .filter(|s| !apps.iter().any(|(name, _)| *name == s.name))
        .filter_map(|s| {
            let record = records.iter().find(|r| r.name == s.name)?;
            Some((
                s.name.clone(),
                Upstream {
                    release: crate::services::container_id(project, env, &s.name),
                    netns: Some(netns_path(&spec.netns)),
                    port: crate::services::varnish::route_port(record.address),
                    socket: None,
                },
            ))
        })
        .collect()
}

/// Each route URL of a topology with the host it stands for in environment `env`, in
/// the topology's order (the URLs the router cannot use are left out).
pub fn route_hosts<'t>(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &'t Topology,
) -> Vec<(&'t str, String)> {
    let resolver = Resolver {
        default_host: platform.env_host(project, env),
        production: is_production(env),
        platform,
    };
    topology
        .routes
        .iter()
        .filter_map(|route| {
            let (_, host, _) = split_url(&route.url)?;
            Some((route.url.as_str(), resolver.host(host)))
        })
        .collect()
}

/// The hosts of an environment's routes, for the "being deployed" answer of a first deploy.
pub fn hosts(platform: &Platform, project: &str, env: &str, topology: &Topology) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    for (_, host) in route_hosts(platform, project, env, topology) {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        hosts.push(platform.env_host(project, env));
    }
    hosts
}

/// Mark the hosts of an environment deployed for the first time: 503 until it is live.
pub fn mark_deploying(platform: &Platform, project: &str, env: &str, topology: &Topology) {
    platform.router().set_deploying(
        &env_key(project, env),
        hosts(platform, project, env, topology),
    );
}

/// Point the routes of an environment at a release (no ref involved: restore, rollback).
/// Returns the previously live release, to drain and retire. A release whose stored
/// topology does not decode is not routed (logged).
pub fn route(
    platform: &Platform,
    release: &Release,
    spec: &ReleaseSpec,
) -> Option<Arc<LiveRelease>> {
    let topology = match release_record::topology_of(release) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(project = %release.project, env = %release.environment, "not routed: {e}");
            return None;
        }
    };
    let routes = env_routes(
        platform,
        &release.project,
        &release.environment,
        &format!("release {}", release.number),
        spec,
        Some(&topology),
    );
    match platform
        .router()
        .switch(&env_key(&release.project, &release.environment), routes)
    {
        Ok(old) => old,
        Err(e) => {
            tracing::error!(project = %release.project, env = %release.environment, "routing release {}: {e}", release.number);
            None
        }
    }
}

/// Move the ref, switch the routes, record the release as live.
/// Returns the previously live release, to drain.
pub fn run(
    platform: &Arc<Platform>,
    repo: &Repo,
    target: &DeployTarget,
    release: &Release,
    spec: &ReleaseSpec,
    out: &Output,
) -> Result<Option<Arc<LiveRelease>>, PhaseError> {
    let t = Instant::now();
    let topology = release_record::topology_of(release)
        .map_err(|e| PhaseError::new("switch routes", e.to_string()))?;
    let routes = env_routes(
        platform,
        &target.project,
        &target.env,
        &format!("release {}", release.number),
        spec,
        Some(&topology),
    );
    routes
        .validate()
        .map_err(|e| PhaseError::new("switch routes", e.to_string()))?;
    let key = env_key(&target.project, &target.env);
    // New requests wait while the ref and the routes move (bounded by the router).
    let hold = platform.router().hold(&key);
    // The validate phase refused hosts routed elsewhere; one may have been taken since.
    for host in routes.hosts() {
        if let Some(why) = tenancy::routed_elsewhere(platform, &target.project, &target.env, &host)
        {
            return Err(PhaseError::new("switch routes", why));
        }
    }
    let expected = if target.old.is_null() {
        None
    } else {
        Some(target.old)
    };
    repo.update_ref(
        &target.refname,
        expected,
        Some(target.new),
        &format!("slipway: deploy release {}", release.number),
    )
    .map_err(|e| {
        PhaseError::new(
            "switch routes",
            format!(
                "{} changed while deploying ({e}): fetch first, then push again",
                target.refname
            ),
        )
    })?;
    let hosts = routes.hosts();
    let old = platform
        .router()
        .switch(&key, routes)
        .map_err(|e| PhaseError::new("switch routes", e.to_string()))?;
    if let Err(e) = platform.state().make_live(release) {
        // The ref and the routes are switched; the state catches up at the next start.
        tracing::error!("recording release {} as live: {e}", release.number);
    }
    drop(hold);
    out.phase_done(
        "switch routes",
        &format!("{} -> release {}", hosts.join(", "), release.number),
        t,
    );
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_route_urls() {
        assert_eq!(
            split_url("https://{default}/"),
            Some(("https", "{default}", "/"))
        );
        assert_eq!(
            split_url("http://www.{default}/api/v1"),
            Some(("http", "www.{default}", "/api/v1"))
        );
        assert_eq!(
            split_url("https://example.com"),
            Some(("https", "example.com", "/"))
        );
        assert_eq!(
            split_url("https://example.com:8443/x"),
            Some(("https", "example.com", "/x"))
        );
        assert_eq!(split_url("https:///x"), None);
        assert_eq!(split_url("/relative"), None);
    }
}
