//! Checks across files: unique names, routes and relationships that point at something, source roots that exist.

use crate::convert::{AppRecord, RouteRecord, ServiceRecord};
use crate::diag::Diagnostic;
use crate::files::dir_exists;
use crate::keypath::KeyPath;
use crate::model::{Route, RouteKind, Topology};
use crate::source::ConfigSource;
use crate::suggest::closest;
use crate::yaml::Pos;
use std::collections::HashMap;

/// Where the parts of a configuration live, for messages.
pub(crate) struct Files<'a> {
    /// The file apps are declared in (or the first app file), for "no app" errors.
    pub apps: &'a str,
    /// The file services are declared in.
    pub services: &'a str,
    /// The file routes are declared in.
    pub routes: &'a str,
}

/// Whether an app name is acceptable: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub(crate) fn valid_app_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63
}

/// The endpoint a relationship without one uses, by service kind.
fn default_endpoint(service_type: &str) -> &str {
    crate::catalog::service_kind(service_type)
        .map(|k| k.endpoint)
        .unwrap_or(service_type)
}

/// Run the cross-file checks and assemble the topology.
pub(crate) fn finish(
    src: &dyn ConfigSource,
    files: Files<'_>,
    mut apps: Vec<AppRecord>,
    mut services: Vec<ServiceRecord>,
    routes: Option<Vec<RouteRecord>>,
    diags: &mut Vec<Diagnostic>,
) -> Topology {
    if apps.is_empty() && !diags.iter().any(Diagnostic::is_error) {
        diags.push(Diagnostic::error(
            files.apps,
            0,
            0,
            "",
            "no application is defined",
        ));
    }
    // Unique, well-formed names.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, rec) in apps.iter().enumerate() {
        let name = &rec.app.name;
        let p = &rec.name_pos;
        let kp = rec.name_path.render();
        if !valid_app_name(name) {
            diags.push(Diagnostic::error(
                &p.file,
                p.line,
                p.col,
                &kp,
                format!("app name `{name}` must be lowercase letters, digits, `-` or `_`"),
            ));
        }
        if let Some(&first) = seen.get(name) {
            let f = &apps[first].name_pos;
            diags.push(Diagnostic::error(
                &p.file,
                p.line,
                p.col,
                &kp,
                format!("app name `{name}` is already used at {}:{}", f.file, f.line),
            ));
        } else {
            seen.insert(name.clone(), i);
        }
    }
    // A worker's name is its log file and its shell login (`WORKER.ENV.PROJECT`): no app
    // and no other worker of the environment may have it.
    let mut names: HashMap<String, String> = apps
        .iter()
        .map(|a| (a.app.name.clone(), format!("app `{}`", a.app.name)))
        .collect();
    for rec in &apps {
        for worker in rec.app.workers.keys() {
            let p = &rec.name_pos;
            let kp = rec.path.with("workers").with(worker).render();
            match names.get(worker) {
                Some(other) => diags.push(Diagnostic::error(
                    &p.file,
                    p.line,
                    p.col,
                    &kp,
                    format!(
                        "worker name `{worker}` of app `{}` is already the name of {other}; \
                         workers are named in logs and shell logins, so names must differ",
                        rec.app.name
                    ),
                )),
                None => {
                    names.insert(
                        worker.clone(),
                        format!("a worker of app `{}`", rec.app.name),
                    );
                }
            }
        }
    }
    // Source roots exist in the tree.
    for rec in &apps {
        let Some(pos) = &rec.source_root_pos else {
            continue;
        };
        match dir_exists(src, &rec.app.source_root) {
            Ok(true) => {}
            Ok(false) => diags.push(Diagnostic::error(
                &pos.file,
                pos.line,
                pos.col,
                &rec.path.with("source").with("root").render(),
                format!(
                    "source root `{}` is not a folder of the repository",
                    rec.app.source_root
                ),
            )),
            Err(d) => diags.push(d),
        }
    }
    // Relationships name a service or an app.
    let app_names: Vec<String> = apps.iter().map(|a| a.app.name.clone()).collect();
    let unix_apps: Vec<String> = apps
        .iter()
        .filter(|a| a.app.web.socket_family == crate::model::SocketFamily::Unix)
        .map(|a| a.app.name.clone())
        .collect();
    for rec in &mut apps {
        for (rel, pos, target) in &rec.relationships {
            let (svc, endpoint) = match target {
                None => (rel.clone(), None),
                Some(t) => match t.split_once(':') {
                    Some((s, e)) if !e.is_empty() => (s.to_string(), Some(e.to_string())),
                    Some((s, _)) => (s.to_string(), None),
                    None => (t.clone(), None),
                },
            };
            let kp = rec.path.with("relationships").with(rel).render();
            let endpoint = if let Some(s) = services.iter().find(|s| s.service.name == svc) {
                let kind = crate::catalog::service_kind(&s.service.r#type);
                if kind.is_some_and(|k| !k.relatable) {
                    diags.push(Diagnostic::error(
                        &pos.file,
                        pos.line,
                        pos.col,
                        &kp,
                        format!("relationship `{rel}` names `{svc}`, a {} service, which apps use through a mount (`source: service`), not a relationship", s.service.r#type),
                    ));
                    continue;
                }
                match (endpoint, kind) {
                    (Some(ep), Some(k)) => {
                        let known = crate::catalog::endpoints(k, &s.service.configuration);
                        if !known.contains(&ep) {
                            let hint = match closest(&ep, known.iter().map(String::as_str)) {
                                Some(c) => format!("did you mean `{svc}:{c}`?"),
                                None => format!("its endpoints: {}", known.join(", ")),
                            };
                            diags.push(Diagnostic::error(
                                &pos.file,
                                pos.line,
                                pos.col,
                                &kp,
                                format!("relationship `{rel}` names endpoint `{ep}` of `{svc}` ({}), which has no such endpoint; {hint}", s.service.r#type),
                            ));
                            continue;
                        }
                        ep
                    }
                    (Some(ep), None) => ep,
                    (None, _) => default_endpoint(&s.service.r#type).to_string(),
                }
            } else if app_names.contains(&svc) {
                match endpoint {
                    Some(ep) if ep != "http" => {
                        diags.push(Diagnostic::error(
                            &pos.file,
                            pos.line,
                            pos.col,
                            &kp,
                            format!("relationship `{rel}` names endpoint `{ep}` of app `{svc}`; an app's endpoint is `http`: did you mean `{svc}:http`?"),
                        ));
                        continue;
                    }
                    _ => "http".to_string(),
                }
            } else {
                let names = services
                    .iter()
                    .map(|s| s.service.name.as_str())
                    .chain(app_names.iter().map(String::as_str));
                let hint = match closest(&svc, names) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!("; define it in {}", files.services),
                };
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp,
                    format!("relationship `{rel}` names `{svc}`, which is no service or app{hint}"),
                ));
                continue;
            };
            rec.app
                .relationships
                .insert(rel.clone(), format!("{svc}:{endpoint}"));
        }
    }
    // Relationships between apps are not circular (as on Platform.sh): an app's deploy hook
    // may call the apps it has a relationship to, which deploy first.
    let app_edges: Vec<(String, Vec<String>)> = apps
        .iter()
        .map(|rec| {
            let targets = rec
                .app
                .relationships
                .values()
                .filter_map(|t| t.split_once(':').map(|(n, _)| n.to_string()))
                .filter(|n| {
                    app_names.contains(n)
                        && *n != rec.app.name
                        && !services.iter().any(|s| &s.service.name == n)
                })
                .collect();
            (rec.app.name.clone(), targets)
        })
        .collect();
    for rec in &apps {
        for (rel, pos, _) in &rec.relationships {
            let Some(target) = rec
                .app
                .relationships
                .get(rel)
                .and_then(|t| t.split_once(':').map(|(n, _)| n))
            else {
                continue;
            };
            let back = app_path(&app_edges, target, &rec.app.name);
            if let (Some(path), true) = (back, target != rec.app.name) {
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &rec.path.with("relationships").with(rel).render(),
                    format!(
                        "relationship `{rel}` of app `{}` names app `{target}`, which has a relationship back to it ({} -> {}); relationships between apps cannot be circular (share data through a service instead)",
                        rec.app.name,
                        rec.app.name,
                        path.join(" -> ")
                    ),
                ));
            }
        }
    }
    // Network storage mounts name a network-storage service.
    for rec in &apps {
        for (mount, pos, name) in &rec.service_mounts {
            let kp = rec.path.with("mounts").with(mount).with("service").render();
            match services.iter().find(|s| &s.service.name == name) {
                Some(s) if s.service.r#type == "network-storage" => {}
                Some(s) => diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp,
                    format!("mount `{mount}` uses service `{name}`, a {} service; `source: service` needs a network-storage service", s.service.r#type),
                )),
                None => {
                    let hint = match closest(name, services.iter().map(|s| s.service.name.as_str())) {
                        Some(c) => format!("; did you mean `{c}`?"),
                        None => format!("; define a network-storage service in {}", files.services),
                    };
                    diags.push(Diagnostic::error(&pos.file, pos.line, pos.col, &kp, format!("mount `{mount}` uses service `{name}`, which is not defined{hint}")));
                }
            }
        }
    }
    // A varnish service's relationships name apps (its backends).
    for rec in &mut services {
        let kp = |rel: &str| format!("{}.relationships.{rel}", rec.service.name);
        for (rel, pos, target) in &rec.relationships {
            let (app, endpoint) = target.split_once(':').unwrap_or((target, "http"));
            if !app_names.iter().any(|a| a == app) {
                let hint = match closest(app, app_names.iter().map(String::as_str)) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!(" (apps: {})", app_names.join(", ")),
                };
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp(rel),
                    format!("relationship `{rel}` of service `{}` names `{app}`, which is no application{hint}", rec.service.name),
                ));
                continue;
            }
            if endpoint != "http" {
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp(rel),
                    format!("relationship `{rel}` of service `{}` names endpoint `{endpoint}` of app `{app}`; an app's endpoint is `http`", rec.service.name),
                ));
                continue;
            }
            if unix_apps.iter().any(|a| a == app) {
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp(rel),
                    format!("relationship `{rel}` of service `{}` names app `{app}`, which listens on a unix socket (`socket_family: unix`); a service reaches apps over TCP: use `socket_family: tcp` for `{app}`", rec.service.name),
                ));
                continue;
            }
            rec.service
                .relationships
                .insert(rel.clone(), format!("{app}:{endpoint}"));
        }
    }
    // Routes lead to an app or to a service in front of the apps (varnish).
    let routable: Vec<String> = services
        .iter()
        .filter(|s| crate::model::ROUTABLE_SERVICE_TYPES.contains(&s.service.r#type.as_str()))
        .map(|s| s.service.name.clone())
        .collect();
    let routes = match routes.filter(|r| !r.is_empty()) {
        Some(routes) => check_routes(routes, &app_names, &routable, files.routes, diags),
        None => {
            if apps.len() > 1 {
                let p = &apps[1].name_pos;
                diags.push(Diagnostic::error(
                    &p.file,
                    p.line,
                    p.col,
                    "",
                    format!("{} applications ({}) but no routes: add {} to say which app answers which URL", apps.len(), app_names.join(", "), files.routes),
                ));
                Vec::new()
            } else if let Some(only) = apps.first() {
                vec![Route {
                    url: "http://{default}/".into(),
                    kind: RouteKind::Upstream {
                        app: only.app.name.clone(),
                        endpoint: "http".into(),
                    },
                    primary: true,
                    id: None,
                    attributes: Default::default(),
                    hsts: None,
                    tls: Default::default(),
                }]
            } else {
                Vec::new()
            }
        }
    };
    let places: Vec<(Pos, KeyPath)> = apps
        .iter()
        .map(|a| (a.name_pos.clone(), a.path.clone()))
        .collect();
    let topology = Topology {
        applications: apps.into_iter().map(|a| a.app).collect(),
        services: services.into_iter().map(|s| s.service).collect(),
        routes,
    };
    worker_relationships(&topology, &places, diags);
    passthru_to_no_process(&topology, &places, diags);
    topology
}

/// A worker's own relationships name a service or an app, as the app's do (reported at the
/// app's name: a worker's keys keep no positions).
fn worker_relationships(
    topology: &Topology,
    places: &[(Pos, KeyPath)],
    diags: &mut Vec<Diagnostic>,
) {
    for (app, (pos, path)) in topology.applications.iter().zip(places) {
        for w in crate::background::workers(app).unwrap_or_default() {
            if let Err(crate::background::BackgroundError::WorkerRelationship {
                relationship,
                target,
                ..
            }) = crate::background::worker_application(app, &w, topology)
            {
                let kp = path
                    .with("workers")
                    .with(&w.name)
                    .with("relationships")
                    .with(&relationship)
                    .render();
                diags.push(Diagnostic::error(
                    &pos.file,
                    pos.line,
                    pos.col,
                    &kp,
                    format!("relationship `{relationship}` of worker `{}` names `{target}`, which is no service or app", w.name),
                ));
            }
        }
    }
}

/// A warning at each `passthru: true` (of a location or one of its rules) of an app that runs
/// no web process (no start command, not PHP): a static site has no app to pass requests to,
/// so they get 404 (a `passthru` path is a rewrite to that file there, as on Platform.sh).
/// Reported at the app's name (locations keep no positions). Only for a configuration refused
/// for nothing else: a start command of the wrong shape is refused at its key.
fn passthru_to_no_process(
    topology: &Topology,
    places: &[(Pos, KeyPath)],
    diags: &mut Vec<Diagnostic>,
) {
    if diags.iter().any(Diagnostic::is_error) {
        return;
    }
    let on = |v: &serde_json::Value| v.get("passthru") == Some(&serde_json::Value::Bool(true));
    for (app, (pos, path)) in topology.applications.iter().zip(places) {
        if !crate::php::no_web_process(app) {
            continue;
        }
        for (prefix, location) in &app.web.locations {
            let at = path.with("web").with("locations").with(prefix);
            let rules = location.get("rules").and_then(serde_json::Value::as_object);
            let keys = on(location).then(|| at.with("passthru")).into_iter().chain(
                rules
                    .into_iter()
                    .flatten()
                    .filter(|(_, r)| on(r))
                    .map(|(pattern, _)| at.with("rules").with(pattern).with("passthru")),
            );
            for key in keys {
                diags.push(key.warning(
                    pos,
                    format!(
                        "app `{}` has no start command and is not PHP: no process answers \
                         what `passthru: true` passes to it, so those requests get 404; set \
                         web.commands.start, or name a file to serve instead (`passthru: \
                         /index.html`)",
                        app.name
                    ),
                ));
            }
        }
    }
}

fn check_routes(
    mut routes: Vec<RouteRecord>,
    app_names: &[String],
    routable: &[String],
    file: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Route> {
    for r in &routes {
        if let RouteKind::Upstream { app, .. } = &r.route.kind {
            if !app_names.contains(app) && !routable.contains(app) {
                let names = app_names.iter().chain(routable).map(String::as_str);
                let hint = match closest(app, names) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!(
                        " (apps: {}{})",
                        app_names.join(", "),
                        if routable.is_empty() {
                            String::new()
                        } else {
                            format!("; varnish services: {}", routable.join(", "))
                        }
                    ),
                };
                diags.push(r.path.with("upstream").error(
                    &r.upstream_pos,
                    format!("route upstream `{app}` is no application or varnish service{hint}"),
                ));
            }
        }
    }
    let primaries: Vec<usize> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.route.primary)
        .map(|(i, _)| i)
        .collect();
    if primaries.len() > 1 {
        for &i in &primaries[1..] {
            let r = &routes[i];
            diags.push(r.path.with("primary").error(
                &r.primary_pos,
                format!(
                    "only one route may be primary; `{}` is already",
                    routes[primaries[0]].route.url
                ),
            ));
        }
    }
    if primaries.is_empty() {
        let first = routes
            .iter()
            .position(|r| matches!(r.route.kind, RouteKind::Upstream { .. }) && !r.explicit_primary)
            .or(if routes.is_empty() { None } else { Some(0) });
        if let Some(i) = first {
            routes[i].route.primary = true;
        }
    }
    let _ = file;
    routes.into_iter().map(|r| r.route).collect()
}

/// The path of app relationships from app `from` to app `to` (`edges`: each app's related
/// apps), both named, when there is one.
fn app_path(edges: &[(String, Vec<String>)], from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = vec![from.to_string()];
    let mut stack = vec![vec![from.to_string()]];
    while let Some(path) = stack.pop() {
        let last = path.last().map(String::as_str).unwrap_or_default();
        if last == to {
            return Some(path);
        }
        let next = edges.iter().find(|(n, _)| n == last).map(|(_, t)| t);
        for n in next.into_iter().flatten() {
            if !seen.contains(n) || n == to {
                seen.push(n.clone());
                let mut p = path.clone();
                p.push(n.clone());
                stack.push(p);
            }
        }
    }
    None
}
