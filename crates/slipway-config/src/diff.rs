//! The infrastructure diff of a push: the topology of the pushed commit against the one deployed
//! in the environment, as short readable lines, plus the changes that would lose data and are
//! therefore refused (each with its reason and how to proceed).
//!
//! Refused:
//! - removing a service that holds data (or changing its type to another kind);
//! - a service version downgrade;
//! - a major-version change of a service that holds data, unless
//!   [`DiffOptions::allow_service_upgrade`] (`git push -o allow-service-upgrade`);
//! - shrinking a disk (of a service, or of an app or worker whose `local` or `storage` mounts
//!   live on it; an unset `disk` is 512 MB). With
//!   `-o allow-data-loss` a disk shrinks when its data fits (checked at deploy);
//! - removing a persistent mount, or moving it to another source or folder (its data would no
//!   longer be there), and removing an app that has persistent mounts;
//! - removing a schema or an endpoint of a MariaDB or PostgreSQL service ([`crate::databases`]).
//!
//! Every refusal but the major upgrade's is lifted by [`DiffOptions::allow_data_loss`]
//! (`git push -o allow-data-loss`); the change is then listed with `(allowed by -o allow-data-loss)`.

use crate::catalog::{self, compare_versions, major};
use crate::model::{Application, Route, RouteKind, Service, Topology};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// What the pusher allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// `-o allow-service-upgrade`: major-version upgrades of services are allowed.
    pub allow_service_upgrade: bool,
    /// `-o allow-data-loss`: changes that would lose data go through.
    pub allow_data_loss: bool,
}

/// A change refused because it would lose data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// What would be lost and why.
    pub reason: String,
    /// What to do instead.
    pub how_to_proceed: String,
}

/// `REASON; HOW TO PROCEED`.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.reason, self.how_to_proceed)
    }
}

/// The differences between two topologies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyDiff {
    /// One readable line per change, apps first, then services, then routes.
    pub lines: Vec<String>,
    /// Changes that would lose data (empty: the push may go on).
    pub refusals: Vec<Refusal>,
}

impl TopologyDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Compare the deployed topology `old` with the pushed `new`.
pub fn diff(old: &Topology, new: &Topology, options: &DiffOptions) -> TopologyDiff {
    let mut d = TopologyDiff::default();
    apps(old, new, &mut d);
    services(old, new, options, &mut d);
    routes(old, new, &mut d);
    if options.allow_data_loss {
        // The major upgrade's refusal has its own option; every other one is about data loss.
        let (upgrades, lost): (Vec<Refusal>, Vec<Refusal>) = d
            .refusals
            .into_iter()
            .partition(|r| r.how_to_proceed.contains("allow-service-upgrade"));
        for r in lost {
            d.lines
                .push(format!("{} (allowed by -o allow-data-loss)", r.reason));
        }
        d.refusals = upgrades;
    }
    d
}

/// The persistent mounts of `a` that `b` no longer has at the same place with the same source.
fn lost_mounts(a: &Application, b: &Application) -> Vec<crate::mounts::Mount> {
    let new = crate::mounts::app_mounts(b);
    crate::mounts::app_mounts(a)
        .into_iter()
        .filter(|m| m.persistent() && !new.contains(m))
        .collect()
}

/// A refusal for the persistent mounts of app `app` that go away.
fn mount_refusal(app: &str, lost: &[crate::mounts::Mount], app_removed: bool) -> Refusal {
    let names: Vec<String> = lost
        .iter()
        .map(|m| format!("`{}` ({})", m.path, m.source))
        .collect();
    let reason = if app_removed {
        format!(
            "removing app `{app}` would lose the data of its mount{} {}",
            if lost.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    } else {
        format!(
            "removing or moving mount{} {} of app `{app}` would lose its data",
            if lost.len() == 1 { "" } else { "s" },
            names.join(", ")
        )
    };
    Refusal {
        reason,
        how_to_proceed: "keep the mounts as they are (with `git push -o allow-data-loss` the data stays on the volume, no longer mounted)".into(),
    }
}

fn apps(old: &Topology, new: &Topology, d: &mut TopologyDiff) {
    for a in &new.applications {
        match old.application(&a.name) {
            None => d.lines.push(format!("app {} added", a.name)),
            Some(o) => {
                let keys = changed_app_keys(o, a);
                if !keys.is_empty() {
                    d.lines
                        .push(format!("app {} changed: {}", a.name, keys.join(", ")));
                }
                let who = format!("app `{}`", a.name);
                if let Some(r) = volume_shrink(&who, o, a) {
                    d.refusals.push(r);
                }
                // A worker's own volume (its `disk`, else the app's).
                for (w, ow, nw) in worker_pairs(old, o, new, a) {
                    let who = format!("worker `{w}` of app `{}`", a.name);
                    if let Some(r) = volume_shrink(&who, &ow, &nw) {
                        d.refusals.push(r);
                    }
                }
                let lost = lost_mounts(o, a);
                if !lost.is_empty() {
                    d.refusals.push(mount_refusal(&a.name, &lost, false));
                }
            }
        }
    }
    for o in &old.applications {
        if new.application(&o.name).is_none() {
            d.lines.push(format!("app {} removed", o.name));
            let lost = lost_mounts(o, &Application::default());
            if !lost.is_empty() {
                d.refusals.push(mount_refusal(&o.name, &lost, true));
            }
        }
    }
}

/// The configuration keys of an app that differ (disk with its sizes).
fn changed_app_keys(o: &Application, a: &Application) -> Vec<String> {
    let mut keys = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            keys.push(name.to_string());
        }
    };
    check("type", o.r#type != a.r#type);
    check("source.root", o.source_root != a.source_root);
    check("build.flavor", o.build_flavor != a.build_flavor);
    check("build.caches", o.build_caches != a.build_caches);
    check("dependencies", o.dependencies != a.dependencies);
    check("hooks.build", o.hooks.build != a.hooks.build);
    check("hooks.deploy", o.hooks.deploy != a.hooks.deploy);
    check(
        "hooks.post_deploy",
        o.hooks.post_deploy != a.hooks.post_deploy,
    );
    check("web.commands.start", o.web.start != a.web.start);
    check("web.locations", o.web.locations != a.web.locations);
    check("variables", o.variables != a.variables);
    check("mounts", o.mounts != a.mounts);
    check("relationships", o.relationships != a.relationships);
    check("workers", o.workers != a.workers);
    check("crons", o.crons != a.crons);
    if o.disk != a.disk {
        keys.push(format!("disk ({} -> {})", mb(o.disk), mb(a.disk)));
    }
    keys
}

fn mb(disk: Option<u64>) -> String {
    match disk {
        Some(n) => format!("{n} MB"),
        None => "default".into(),
    }
}

/// The disk (MB) of an app or worker whose `disk` is not set.
pub const DEFAULT_APP_DISK_MB: u64 = 512;

/// A refusal when the disk of an app or worker (`who`: `` app `web` ``) that keeps data on
/// its volume (a `local` or `storage` mount) gets smaller; an unset `disk` is
/// [`DEFAULT_APP_DISK_MB`].
fn volume_shrink(who: &str, old: &Application, new: &Application) -> Option<Refusal> {
    let keeps_data = crate::mounts::app_mounts(old).iter().any(|m| {
        matches!(
            m.source,
            crate::mounts::MountSource::Local | crate::mounts::MountSource::Storage
        )
    });
    let old_mb = old.disk.unwrap_or(DEFAULT_APP_DISK_MB);
    let new_mb = new.disk.unwrap_or(DEFAULT_APP_DISK_MB);
    if !keeps_data || new_mb >= old_mb {
        return None;
    }
    Some(Refusal {
        reason: format!(
            "shrinking the disk of {who} from {old_mb} MB to {new_mb} MB could lose data (with -o allow-data-loss it shrinks when its data fits)"
        ),
        how_to_proceed: format!("keep `disk: {old_mb}` (or more) for {who}"),
    })
}

/// The workers app `o` of `old` and app `a` of `new` both have, by name, each as the app it is
/// in either topology ([`crate::background::worker_application`]).
fn worker_pairs(
    old: &Topology,
    o: &Application,
    new: &Topology,
    a: &Application,
) -> Vec<(String, Application, Application)> {
    let effective = |t: &Topology, app: &Application| -> Vec<(String, Application)> {
        crate::background::workers(app)
            .unwrap_or_default()
            .iter()
            .filter_map(|w| {
                crate::background::worker_application(app, w, t)
                    .ok()
                    .map(|e| (w.name.clone(), e))
            })
            .collect()
    };
    let before = effective(old, o);
    effective(new, a)
        .into_iter()
        .filter_map(|(name, n)| {
            let (_, b) = before.iter().find(|(m, _)| *m == name)?;
            Some((name, b.clone(), n))
        })
        .collect()
}

/// A refusal when a disk gets smaller (or loses its size).
fn disk_shrink(what: &str, name: &str, old: Option<u64>, new: Option<u64>) -> Option<Refusal> {
    let old_mb = old?;
    if new.is_some_and(|n| n >= old_mb) {
        return None;
    }
    Some(Refusal {
        reason: format!(
            "shrinking the disk of {what} `{name}` from {old_mb} MB to {} could lose data (with -o allow-data-loss it shrinks when its data fits)",
            mb(new)
        ),
        how_to_proceed: format!("keep `disk: {old_mb}` (or more) for {what} `{name}`"),
    })
}

fn holds_data(s: &Service) -> bool {
    catalog::holds_data(&s.r#type)
}

fn services(old: &Topology, new: &Topology, options: &DiffOptions, d: &mut TopologyDiff) {
    for s in &new.services {
        let Some(o) = old.service(&s.name) else {
            d.lines.push(format!(
                "service {} added ({}:{})",
                s.name, s.r#type, s.version
            ));
            continue;
        };
        if !catalog::same_family(&o.r#type, &s.r#type) {
            d.lines.push(format!(
                "service {} replaced: {}:{} -> {}:{}",
                s.name, o.r#type, o.version, s.r#type, s.version
            ));
            if holds_data(o) {
                d.refusals.push(Refusal {
                    reason: format!(
                        "changing service `{}` from {} to {} would delete its data",
                        s.name, o.r#type, s.r#type
                    ),
                    how_to_proceed: format!(
                        "keep `{}` as {}:{} and add the new service under another name",
                        s.name, o.r#type, o.version
                    ),
                });
            }
        } else {
            version_change(o, s, options, d);
            if holds_data(o) && !holds_data(s) {
                d.refusals.push(Refusal {
                    reason: format!(
                        "changing service `{}` from {} to {} would delete its data ({} keeps none)",
                        s.name, o.r#type, s.r#type, s.r#type
                    ),
                    how_to_proceed: format!(
                        "keep `{}` as {}:{} and add the new service under another name",
                        s.name, o.r#type, o.version
                    ),
                });
            }
        }
        if o.disk != s.disk {
            d.lines.push(format!(
                "service {} disk resized: {} -> {}",
                s.name,
                mb(o.disk),
                mb(s.disk)
            ));
            if holds_data(o) {
                if let Some(r) = disk_shrink("service", &s.name, o.disk, s.disk) {
                    d.refusals.push(r);
                }
            }
        }
        if o.configuration != s.configuration {
            d.lines.push(format!(
                "service {} configuration changed{}",
                s.name,
                vhost_changes(o, s)
            ));
            databases_removed(o, s, d);
        }
    }
    for o in &old.services {
        if new.service(&o.name).is_some() {
            continue;
        }
        d.lines.push(format!(
            "service {} removed ({}:{})",
            o.name, o.r#type, o.version
        ));
        if holds_data(o) {
            d.refusals.push(Refusal {
                reason: format!("removing service `{}` ({}:{}) would delete its data", o.name, o.r#type, o.version),
                how_to_proceed: format!("keep `{}` in the services (a push never deletes a service's data); drop only the relationships to it", o.name),
            });
        }
    }
}

/// The vhosts a RabbitMQ service's configuration gains and drops, as ` (vhost A added,
/// vhost B no longer configured)`; empty for another type or the same vhosts. A vhost no
/// longer configured is kept on the server with its messages (nothing deletes it).
fn vhost_changes(o: &Service, s: &Service) -> String {
    if s.r#type != "rabbitmq" || o.r#type != "rabbitmq" {
        return String::new();
    }
    let names = |svc: &Service| -> Vec<String> {
        svc.configuration
            .get("vhosts")
            .and_then(|v| v.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (names(o), names(s));
    let mut parts: Vec<String> = after
        .iter()
        .filter(|v| !before.contains(v))
        .map(|v| format!("vhost {v} added"))
        .collect();
    parts.extend(
        before
            .iter()
            .filter(|v| !after.contains(v))
            .map(|v| format!("vhost {v} no longer configured")),
    );
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// The schemas and endpoints of database service `o` that `s` no longer has: their data
/// (or the user, with its grants) would be dropped.
fn databases_removed(o: &Service, s: &Service, d: &mut TopologyDiff) {
    let (Some(Ok(old)), Some(Ok(new))) = (
        crate::databases::layout(&o.r#type, &o.configuration),
        crate::databases::layout(&s.r#type, &s.configuration),
    ) else {
        return;
    };
    let list = |names: Vec<String>| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let schemas = old.schemas_removed(&new);
    if !schemas.is_empty() {
        d.refusals.push(Refusal {
            reason: format!(
                "removing schema {} of service `{}` would delete its data",
                list(schemas),
                s.name
            ),
            how_to_proceed: format!("keep every schema in `{}`'s `schemas`", s.name),
        });
    }
    let endpoints = old.endpoints_removed(&new);
    if !endpoints.is_empty() {
        d.refusals.push(Refusal {
            reason: format!(
                "removing endpoint {} of service `{}` would drop its user and what it owns",
                list(endpoints),
                s.name
            ),
            how_to_proceed: format!(
                "keep every endpoint in `{}`'s `endpoints`; drop only the relationships to it",
                s.name
            ),
        });
    }
}

/// A version change of a service of the same kind.
fn version_change(o: &Service, s: &Service, options: &DiffOptions, d: &mut TopologyDiff) {
    let kind_note = if o.r#type == s.r#type {
        String::new()
    } else {
        format!(" ({} -> {})", o.r#type, s.r#type)
    };
    match compare_versions(&s.version, &o.version) {
        Ordering::Equal => {
            if !kind_note.is_empty() {
                d.lines
                    .push(format!("service {} type changed{kind_note}", s.name));
            }
        }
        Ordering::Less => {
            d.lines.push(format!(
                "service {} downgraded: {} {} -> {}{kind_note}",
                s.name, s.r#type, o.version, s.version
            ));
            if holds_data(o) {
                d.refusals.push(Refusal {
                    reason: format!(
                        "downgrading service `{}` from {} {} to {} is refused: an older version may not read its data",
                        s.name, o.r#type, o.version, s.version
                    ),
                    how_to_proceed: format!("keep `type: {}:{}` (or a newer version)", o.r#type, o.version),
                });
            }
        }
        Ordering::Greater => {
            let is_major = major(&o.version) != major(&s.version);
            let what = if is_major {
                "major upgrade"
            } else {
                "upgraded"
            };
            d.lines.push(format!(
                "service {} {what}: {} {} -> {}{kind_note}",
                s.name, s.r#type, o.version, s.version
            ));
            if is_major && holds_data(o) && !options.allow_service_upgrade {
                d.refusals.push(Refusal {
                    reason: format!(
                        "upgrading service `{}` from {} {} to {} changes the major version, which converts its data for good",
                        s.name, o.r#type, o.version, s.version
                    ),
                    how_to_proceed: "back up its data, then push again with `git push -o allow-service-upgrade`".into(),
                });
            }
        }
    }
}

/// Where a route goes, in words.
fn target(r: &Route) -> String {
    match &r.kind {
        RouteKind::Upstream { app, endpoint } => format!("upstream {app}:{endpoint}"),
        RouteKind::Redirect { to, code } => format!("redirect {code} to {to}"),
    }
}

fn routes(old: &Topology, new: &Topology, d: &mut TopologyDiff) {
    for r in &new.routes {
        match old.routes.iter().find(|o| o.url == r.url) {
            None => d
                .lines
                .push(format!("route {} added ({})", r.url, target(r))),
            Some(o) => {
                let mut what = Vec::new();
                if target(o) != target(r) {
                    what.push(format!("{} -> {}", target(o), target(r)));
                }
                if o.primary != r.primary {
                    what.push(if r.primary {
                        "now primary".to_string()
                    } else {
                        "no longer primary".to_string()
                    });
                }
                if o.id != r.id {
                    what.push(format!(
                        "id {} -> {}",
                        o.id.as_deref().unwrap_or("none"),
                        r.id.as_deref().unwrap_or("none")
                    ));
                }
                if o.attributes != r.attributes {
                    what.push("attributes".into());
                }
                if o.hsts != r.hsts {
                    what.push("tls.strict_transport_security".into());
                }
                if !what.is_empty() {
                    d.lines
                        .push(format!("route {} changed: {}", r.url, what.join(", ")));
                }
            }
        }
    }
    for o in &old.routes {
        if !new.routes.iter().any(|r| r.url == o.url) {
            d.lines.push(format!("route {} removed", o.url));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Hooks;

    fn svc(name: &str, ty: &str, version: &str, disk: Option<u64>) -> Service {
        Service {
            name: name.into(),
            r#type: ty.into(),
            version: version.into(),
            disk,
            configuration: serde_json::Value::Null,
            relationships: Default::default(),
        }
    }

    fn app(name: &str) -> Application {
        Application {
            name: name.into(),
            r#type: Some("python:3.12".into()),
            ..Default::default()
        }
    }

    fn route(url: &str, app: &str, primary: bool) -> Route {
        Route {
            url: url.into(),
            kind: RouteKind::Upstream {
                app: app.into(),
                endpoint: "http".into(),
            },
            primary,
            id: None,
            attributes: Default::default(),
            hsts: None,
            tls: Default::default(),
        }
    }

    fn topo(apps: Vec<Application>, services: Vec<Service>, routes: Vec<Route>) -> Topology {
        Topology {
            applications: apps,
            services,
            routes,
        }
    }

    #[test]
    fn removing_a_schema_or_endpoint_needs_allow_data_loss_and_adding_one_does_not() {
        let with = |conf: serde_json::Value| {
            let mut s = svc("db", "postgresql", "15", None);
            s.configuration = conf;
            topo(vec![], vec![s], vec![])
        };
        let old =
            with(serde_json::json!({"databases": ["main", "legacy"], "endpoints": {"ro": {}}}));
        let more = with(
            serde_json::json!({"databases": ["main", "legacy", "x"], "endpoints": {"ro": {}, "w": {}}}),
        );
        assert!(diff(&old, &more, &NO).refusals.is_empty());
        let fewer = with(serde_json::json!({"databases": ["main"]}));
        let d = diff(&old, &fewer, &NO);
        assert_eq!(d.refusals.len(), 2, "{d:?}");
        assert!(d.refusals[0]
            .reason
            .contains("removing schema `legacy` of service `db`"));
        assert!(d.refusals[1]
            .reason
            .contains("removing endpoint `ro` of service `db`"));
        let loss = DiffOptions {
            allow_data_loss: true,
            ..NO
        };
        assert!(diff(&old, &fewer, &loss).refusals.is_empty());
    }

    const NO: DiffOptions = DiffOptions {
        allow_service_upgrade: false,
        allow_data_loss: false,
    };
    const YES: DiffOptions = DiffOptions {
        allow_service_upgrade: true,
        allow_data_loss: false,
    };

    #[test]
    fn nothing_changed_is_empty() {
        let t = topo(
            vec![app("a")],
            vec![svc("db", "mariadb", "10.6", Some(1024))],
            vec![route("https://{default}/", "a", true)],
        );
        let d = diff(&t, &t, &NO);
        assert!(d.is_empty() && d.refusals.is_empty(), "{d:?}");
    }

    #[test]
    fn readable_lines_for_every_kind_of_change() {
        let old = topo(
            vec![
                app("web"),
                Application {
                    disk: Some(512),
                    ..app("gone")
                },
            ],
            vec![
                svc("db", "mariadb", "10.4", Some(1024)),
                svc("cache", "redis", "6.0", None),
                svc("mc", "memcached", "1.6", None),
            ],
            vec![
                route("https://{default}/", "web", true),
                route("https://old.{default}/", "web", false),
            ],
        );
        let mut web = app("web");
        web.hooks = Hooks {
            build: Some("make".into()),
            ..Default::default()
        };
        web.web.start = Some("./serve".into());
        web.disk = Some(2048);
        let new = topo(
            vec![web, app("api")],
            vec![
                svc("db", "mariadb", "10.6", Some(4096)),
                svc("cache", "redis", "7.2", None),
                svc("search", "opensearch", "2", Some(512)),
            ],
            vec![
                route("https://{default}/", "api", true),
                route("https://{default}/api", "api", false),
            ],
        );
        let d = diff(&old, &new, &NO);
        assert_eq!(
            d.lines,
            vec![
                "app web changed: hooks.build, web.commands.start, disk (default -> 2048 MB)",
                "app api added",
                "app gone removed",
                "service db upgraded: mariadb 10.4 -> 10.6",
                "service db disk resized: 1024 MB -> 4096 MB",
                "service cache major upgrade: redis 6.0 -> 7.2",
                "service search added (opensearch:2)",
                "service mc removed (memcached:1.6)",
                "route https://{default}/ changed: upstream web:http -> upstream api:http",
                "route https://{default}/api added (upstream api:http)",
                "route https://old.{default}/ removed",
            ]
        );
        // Minor upgrades, a volatile cache's major upgrade, growing disks, dropping memcached: all fine.
        assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    }

    #[test]
    fn a_rabbitmq_configuration_change_names_the_vhosts_added_and_dropped() {
        let mut old = svc("queue", "rabbitmq", "3.10", None);
        old.configuration = serde_json::json!({"vhosts": ["orders", "legacy"]});
        let mut new = svc("queue", "rabbitmq", "3.10", None);
        new.configuration = serde_json::json!({"vhosts": ["orders", "audit"]});
        let d = diff(
            &topo(vec![], vec![old], vec![]),
            &topo(vec![], vec![new], vec![]),
            &NO,
        );
        assert_eq!(
            d.lines,
            ["service queue configuration changed (vhost audit added, vhost legacy no longer configured)"]
        );
        assert!(d.refusals.is_empty(), "{:?}", d.refusals);
    }

    #[test]
    fn data_losing_changes_are_refused_with_a_way_forward() {
        // `a` and `c` keep data on their volumes, `b` has none; `a`'s worker has its own disk.
        let mounted = |name: &str, disk: Option<u64>, worker_disk: u64| Application {
            disk,
            mounts: serde_json::from_value(serde_json::json!({"up": {"source": "local"}})).unwrap(),
            workers: serde_json::from_value(serde_json::json!({
                "q": {"commands": {"start": "x"}, "disk": worker_disk}
            }))
            .unwrap(),
            ..app(name)
        };
        let old = topo(
            vec![
                mounted("a", Some(2048), 1024),
                Application {
                    disk: Some(2048),
                    ..app("b")
                },
                mounted("c", None, 512),
            ],
            vec![
                svc("db", "postgresql", "15", Some(2048)),
                svc("mysql", "mariadb", "10.11", Some(1024)),
                svc("files", "network-storage", "2.0", Some(1024)),
                svc("kv", "redis-persistent", "7.2", Some(512)),
                svc("q", "rabbitmq", "3.13", Some(512)),
            ],
            vec![],
        );
        let new = topo(
            vec![
                mounted("a", Some(1024), 256),
                Application {
                    disk: Some(1024),
                    ..app("b")
                },
                mounted("c", Some(256), 512),
            ],
            vec![
                svc("db", "postgresql", "16", Some(2048)),
                svc("mysql", "mariadb", "10.6", Some(512)),
                svc("kv", "postgresql", "16", Some(512)),
                svc("q", "rabbitmq", "3.13", None),
            ],
            vec![],
        );
        let d = diff(&old, &new, &NO);
        let reasons: Vec<String> = d.refusals.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            reasons,
            vec![
                "shrinking the disk of app `a` from 2048 MB to 1024 MB could lose data (with -o allow-data-loss it shrinks when its data fits); keep `disk: 2048` (or more) for app `a`",
                "shrinking the disk of worker `q` of app `a` from 1024 MB to 256 MB could lose data (with -o allow-data-loss it shrinks when its data fits); keep `disk: 1024` (or more) for worker `q` of app `a`",
                "shrinking the disk of app `c` from 512 MB to 256 MB could lose data (with -o allow-data-loss it shrinks when its data fits); keep `disk: 512` (or more) for app `c`",
                "upgrading service `db` from postgresql 15 to 16 changes the major version, which converts its data for good; back up its data, then push again with `git push -o allow-service-upgrade`",
                "downgrading service `mysql` from mariadb 10.11 to 10.6 is refused: an older version may not read its data; keep `type: mariadb:10.11` (or a newer version)",
                "shrinking the disk of service `mysql` from 1024 MB to 512 MB could lose data (with -o allow-data-loss it shrinks when its data fits); keep `disk: 1024` (or more) for service `mysql`",
                "changing service `kv` from redis-persistent to postgresql would delete its data; keep `kv` as redis-persistent:7.2 and add the new service under another name",
                "shrinking the disk of service `q` from 512 MB to default could lose data (with -o allow-data-loss it shrinks when its data fits); keep `disk: 512` (or more) for service `q`",
                "removing service `files` (network-storage:2.0) would delete its data; keep `files` in the services (a push never deletes a service's data); drop only the relationships to it",
            ]
        );
        // The push option lifts only the major-upgrade refusal.
        let allowed = diff(&old, &new, &YES);
        assert_eq!(allowed.refusals.len(), reasons.len() - 1);
        assert!(!allowed
            .refusals
            .iter()
            .any(|r| r.reason.contains("major version")));
    }

    #[test]
    fn mysql_and_mariadb_are_one_family() {
        let old = topo(vec![], vec![svc("db", "mysql", "10.6", Some(1024))], vec![]);
        let new = topo(
            vec![],
            vec![svc("db", "mariadb", "10.6", Some(1024))],
            vec![],
        );
        let d = diff(&old, &new, &NO);
        assert_eq!(d.lines, vec!["service db type changed (mysql -> mariadb)"]);
        assert!(d.refusals.is_empty());
    }

    #[test]
    fn a_persistent_redis_made_plain_is_refused_and_the_other_way_is_not() {
        let persistent = topo(
            vec![],
            vec![svc("cache", "redis-persistent", "7.0", Some(256))],
            vec![],
        );
        let plain = topo(
            vec![],
            vec![svc("cache", "redis", "7.0", Some(256))],
            vec![],
        );
        let d = diff(&persistent, &plain, &NO);
        assert_eq!(
            d.lines,
            vec!["service cache type changed (redis-persistent -> redis)"]
        );
        assert_eq!(
            d.refusals.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
            vec!["changing service `cache` from redis-persistent to redis would delete its data (redis keeps none)"]
        );
        assert!(diff(&plain, &persistent, &NO).refusals.is_empty());
    }

    #[test]
    fn a_new_environment_is_all_additions() {
        let new = topo(
            vec![app("a")],
            vec![svc("db", "mariadb", "10.6", Some(1024))],
            vec![route("https://{default}/", "a", true)],
        );
        let d = diff(&Topology::default(), &new, &NO);
        assert_eq!(
            d.lines,
            vec![
                "app a added",
                "service db added (mariadb:10.6)",
                "route https://{default}/ added (upstream a:http)"
            ]
        );
        assert!(d.refusals.is_empty());
    }

    #[test]
    fn removing_or_moving_a_persistent_mount_needs_allow_data_loss() {
        let with = |mounts: serde_json::Value| Topology {
            applications: vec![Application {
                name: "a".into(),
                mounts: serde_json::from_value(mounts).unwrap(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let old = with(serde_json::json!({"up": "shared:files/up", "t": {"source": "tmp"}}));
        // Same mount in the mapping form, and a tmp mount gone: nothing lost.
        let same = with(serde_json::json!({"up": {"source": "local", "source_path": "up"}}));
        assert!(diff(&old, &same, &NO).refusals.is_empty());
        let moved = with(serde_json::json!({"up": {"source": "local", "source_path": "other"}}));
        let d = diff(&old, &moved, &NO);
        assert_eq!(d.refusals.len(), 1);
        assert!(d.refusals[0].reason.contains("mount `up` (local)"), "{d:?}");
        let removed = diff(&old, &Topology::default(), &NO);
        assert!(removed.refusals[0]
            .reason
            .contains("removing app `a` would lose the data of its mount `up`"));
        let allowed = DiffOptions {
            allow_data_loss: true,
            ..NO
        };
        let d = diff(&old, &with(serde_json::json!({})), &allowed);
        assert!(d.refusals.is_empty());
        assert!(d
            .lines
            .iter()
            .any(|l| l.ends_with("(allowed by -o allow-data-loss)")));
    }
}
