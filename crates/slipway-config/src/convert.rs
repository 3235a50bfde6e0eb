//! From validated YAML nodes to topology values. Shape errors were already reported by
//! [`crate::shape::check`]; here values of the wrong shape are skipped silently.

use crate::diag::Diagnostic;
use crate::files::normalize;
use crate::keypath::KeyPath;
use crate::model::{
    Application, BuildCache, Hooks, Hsts, Route, RouteKind, RouteTls, Service,
    StrictTransportSecurity, Web, BUILD_FLAVORS,
};
use crate::yaml::{Kind, Node, Pos};
use std::collections::BTreeMap;

/// An application plus where its parts were written, for the semantic checks.
#[derive(Debug)]
pub(crate) struct AppRecord {
    pub app: Application,
    /// Where the name was written (the `name:` value or the key under `applications:`).
    pub name_pos: Pos,
    /// The key path of the name: `name`, or the app's own key when it has no `name:` (an
    /// Upsun app, named by its key under `applications:`).
    pub name_path: KeyPath,
    /// Key path of the app's root in its file ("" for a `.platform.app.yaml`).
    pub path: KeyPath,
    /// Relationship name -> (position, target as written; None for a null relationship).
    pub relationships: Vec<(String, Pos, Option<String>)>,
    /// Where `source.root` was written, if it was.
    pub source_root_pos: Option<Pos>,
    /// Mounts of `source: service`: (mount path, position of `service`, service name).
    pub service_mounts: Vec<(String, Pos, String)>,
}

/// A route plus where its parts were written.
#[derive(Debug)]
pub(crate) struct RouteRecord {
    pub route: Route,
    pub path: KeyPath,
    /// Whether `primary` was written.
    pub explicit_primary: bool,
    /// Where `upstream` was written (else the route's key).
    pub upstream_pos: Pos,
    /// Where `primary` was written (else the route's key).
    pub primary_pos: Pos,
}

/// A service as read.
#[derive(Debug)]
pub(crate) struct ServiceRecord {
    pub service: Service,
    /// Its `relationships`: (name, position, target `APP[:ENDPOINT]`).
    pub relationships: Vec<(String, Pos, String)>,
}

fn str_at<'a>(node: &'a Node, keys: &[&str]) -> Option<&'a str> {
    let mut n = node;
    for k in keys {
        n = n.get(k)?;
    }
    n.as_str()
}

fn json_map(node: Option<&Node>) -> BTreeMap<String, serde_json::Value> {
    node.map(|n| {
        n.entries()
            .iter()
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect()
    })
    .unwrap_or_default()
}

/// Build an app from its (validated) node. `default_root` is the folder of its `.platform.app.yaml`, or "".
pub(crate) fn application(
    node: &Node,
    name: String,
    name_pos: Pos,
    default_root: &str,
    path: KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> AppRecord {
    let mut app = Application {
        name,
        r#type: str_at(node, &["type"]).map(str::to_string),
        ..Default::default()
    };
    if let Some(tnode) = node.get("type") {
        check_stack(tnode, &path.with("type"), diags);
    }
    if let Some(list) = node.get("stack") {
        stack_list(list, &mut app, &path.with("stack"), diags);
    }
    let mut source_root_pos = None;
    app.source_root = default_root.to_string();
    if let Some(root) = node.get("source").and_then(|s| s.get("root")) {
        if let Some(r) = root.as_str() {
            source_root_pos = Some(root.pos.clone());
            match normalize("", r) {
                Some(r) => app.source_root = r,
                None => diags.push(
                    path.with("source")
                        .with("root")
                        .error(&root.pos, format!("`{r}` leaves the repository")),
                ),
            }
        }
    }
    if let Some(v) = node.get("size") {
        if let Some(s) = v.as_str() {
            match crate::model::ContainerSize::parse(s) {
                Some(size) => app.size = Some(size),
                None => diags.push(path.with("size").error(
                    &v.pos,
                    format!(
                        "unknown size `{s}`; use one of: {}",
                        crate::model::ContainerSize::NAMES.join(", ")
                    ),
                )),
            }
        }
    }
    app.build_flavor = str_at(node, &["build", "flavor"]).map(str::to_string);
    if let (Some(flavor), Some(f)) = (
        app.build_flavor.as_deref(),
        node.get("build").and_then(|b| b.get("flavor")),
    ) {
        if !BUILD_FLAVORS.contains(&flavor) {
            let hint = match crate::suggest::closest(flavor, BUILD_FLAVORS.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("use one of: {}", BUILD_FLAVORS.join(", ")),
            };
            diags.push(
                path.with("build")
                    .with("flavor")
                    .error(&f.pos, format!("unknown build flavor `{flavor}`; {hint}")),
            );
        }
    }
    if let Some(caches) = node.get("build").and_then(|b| b.get("caches")) {
        app.build_caches = build_caches(caches, &path.with("build").with("caches"), diags);
    }
    app.dependencies = json_map(node.get("dependencies"));
    if let Some(deps) = node.get("dependencies") {
        check_dependencies(deps, &path.with("dependencies"), diags);
    }
    app.hooks = Hooks {
        build: str_at(node, &["hooks", "build"]).map(str::to_string),
        deploy: str_at(node, &["hooks", "deploy"]).map(str::to_string),
        post_deploy: str_at(node, &["hooks", "post_deploy"]).map(str::to_string),
    };
    app.web = Web {
        start: str_at(node, &["web", "commands", "start"]).map(str::to_string),
        locations: crate::web_locations::locations(node.get("web")),
        rule_order: crate::web_locations::rule_order(node.get("web")),
        socket_family: crate::SocketFamily::Tcp,
    };
    if let Some(web) = node.get("web") {
        crate::web_locations::check(web, &path.with("web"), diags);
    }
    if let Some(up) = node.get("web").and_then(|w| w.get("upstream")) {
        // A PHP app without a start command is PHP-FPM: FastCGI on TCP is what runs.
        let fpm = crate::php::served_by_fpm(&app);
        if let Some(v) = up.get("socket_family") {
            if let Some(s) = v.as_str() {
                match crate::SocketFamily::parse(s) {
                    // PHP-FPM is Slipway's own pool, on TCP; the app cannot tell.
                    Some(family) if !fpm => app.web.socket_family = family,
                    Some(_) => {}
                    None => diags.push(
                        path.with("web")
                            .with("upstream")
                            .with("socket_family")
                            .error(&v.pos, format!("unknown socket_family `{s}`; use `tcp` (the app listens on $PORT) or `unix` (on the unix socket $SOCKET)")),
                    ),
                }
            }
        }
        if let Some(v) = up.get("protocol") {
            if let Some(s) = v
                .as_str()
                .filter(|s| *s != "http" && !(fpm && *s == "fastcgi"))
            {
                let p = path.with("web").with("upstream").with("protocol");
                diags.push(p.warning(&v.pos, format!("Slipway only supports `protocol: http`; `{s}` is ignored and the app must speak HTTP")));
            }
        }
    }
    if let Some(vars) = node.get("variables") {
        for e in vars.entries() {
            if let Kind::Map(_) = e.value.kind {
                app.variables
                    .insert(e.key.clone(), json_map(Some(&e.value)));
            }
            if e.key == "env" {
                for v in e.value.entries() {
                    if crate::platform_env::is_reserved_variable(&v.key) {
                        let p = path.with("variables").with("env").with(&v.key);
                        diags.push(p.warning(
                            &v.key_pos,
                            format!(
                                "`{}` is set by the platform for every app; this value is ignored",
                                v.key
                            ),
                        ));
                    }
                }
            }
        }
    }
    app.mounts = json_map(node.get("mounts"));
    let mut mounts = Vec::new();
    if let Some(m) = node.get("mounts") {
        for e in m.entries() {
            check_mount(e, &path.with("mounts").with(&e.key), diags);
            if let Some(svc) = e
                .value
                .get("service")
                .filter(|_| e.value.get("source").and_then(Node::as_str) == Some("service"))
            {
                if let Some(name) = svc.as_str() {
                    mounts.push((e.key.clone(), svc.pos.clone(), name.to_string()));
                }
            }
        }
    }
    if let Some(c) = node.get("crons") {
        for e in c.entries() {
            if let Some(spec) = e.value.get("spec") {
                if let Some(text) = spec.as_str() {
                    if let Err(why) = crate::cron::check(text) {
                        diags.push(
                            path.with("crons")
                                .with(&e.key)
                                .with("spec")
                                .error(&spec.pos, why),
                        );
                    }
                }
            } else if matches!(e.value.kind, Kind::Map(_)) {
                diags.push(path.with("crons").with(&e.key).error(
                    &e.key_pos,
                    format!(
                        "cron `{}` has no `spec` (e.g. `spec: '*/5 * * * *'`)",
                        e.key
                    ),
                ));
            }
            let command = str_at(&e.value, &["commands", "start"])
                .or_else(|| e.value.get("cmd").and_then(Node::as_str));
            if matches!(e.value.kind, Kind::Map(_)) && command.is_none_or(|c| c.trim().is_empty()) {
                diags.push(path.with("crons").with(&e.key).error(
                    &e.key_pos,
                    format!(
                        "cron `{}` has no command (`commands.start`, or `cmd`)",
                        e.key
                    ),
                ));
            }
        }
    }
    if let Some(w) = node.get("workers") {
        for e in w.entries() {
            if !crate::checks::valid_app_name(&e.key) {
                diags.push(path.with("workers").with(&e.key).error(
                    &e.key_pos,
                    format!(
                        "worker name `{}` must be lowercase letters, digits, `-` or `_`",
                        e.key
                    ),
                ));
            }
            let start = str_at(&e.value, &["commands", "start"]);
            if start.is_none_or(|c| c.trim().is_empty()) {
                diags.push(path.with("workers").with(&e.key).error(
                    &e.key_pos,
                    format!("worker `{}` has no start command (`commands.start`)", e.key),
                ));
            }
        }
    }
    if let Some(r) = node
        .get("resources")
        .filter(|r| matches!(r.kind, Kind::Map(_)))
    {
        let mut resources = crate::model::Resources::default();
        for (key, field) in [
            ("base_memory", &mut resources.base_memory),
            ("memory_ratio", &mut resources.memory_ratio),
        ] {
            if let Some(Kind::Int(i)) = r.get(key).map(|v| &v.kind) {
                if *i >= 0 {
                    *field = *i as u64;
                }
            }
        }
        app.resources = Some(resources);
    }
    app.disk = match node.get("disk").map(|d| &d.kind) {
        Some(Kind::Int(i)) if *i >= 0 => Some(*i as u64),
        _ => None,
    };
    let mut rels = Vec::new();
    if let Some(r) = node.get("relationships") {
        for e in r.entries() {
            let target = match &e.value.kind {
                Kind::Str(s) => Some(s.clone()),
                Kind::Null => None,
                Kind::Map(_) => {
                    let svc = e
                        .value
                        .get("service")
                        .and_then(Node::as_str)
                        .unwrap_or(&e.key);
                    match e.value.get("endpoint").and_then(Node::as_str) {
                        Some(ep) => Some(format!("{svc}:{ep}")),
                        None => Some(svc.to_string()),
                    }
                }
                _ => continue,
            };
            rels.push((e.key.clone(), e.key_pos.clone(), target));
        }
    }
    if let Some(tz) = node.get("timezone") {
        if let Some(name) = tz.as_str() {
            match jiff::tz::TimeZone::get(name) {
                Ok(_) => app.timezone = Some(name.to_string()),
                Err(_) => diags.push(path.with("timezone").error(
                    &tz.pos,
                    format!("unknown time zone `{name}` (an IANA name such as `Europe/Paris`, or `UTC`)"),
                )),
            }
        }
    }
    app.workers = json_map(node.get("workers"));
    app.crons = json_map(node.get("crons"));
    app.runtime = crate::php::runtime(node.get("runtime"), &path.with("runtime"), diags);
    if let Some(d) = crate::php::missing_start(&app, node, &name_pos, &path) {
        diags.push(d);
    }
    let name_path = if node.get("name").is_some() {
        path.with("name")
    } else {
        path.clone()
    };
    AppRecord {
        app,
        name_pos,
        name_path,
        path,
        relationships: rels,
        source_root_pos,
        service_mounts: mounts,
    }
}

/// Whether a build cache name is usable as a folder name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 bytes.
fn valid_cache_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A path inside the app, written relative to its root: normalized (no `.`, empty segments or
/// trailing slash), or why it is refused (absolute, `..`, control characters, the root itself).
pub(crate) fn app_relative(path: &str) -> Result<String, String> {
    if path.chars().any(char::is_control) {
        return Err(format!(
            "`{}` contains control characters",
            path.escape_debug()
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` must be relative to the app's root (no leading `/`)"
        ));
    }
    if path.split('/').any(|p| p == "..") {
        return Err(format!("`{path}` must stay inside the app (no `..`)"));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return Err(format!(
            "`{path}` is the app's root itself; name something inside it"
        ));
    }
    Ok(parts.join("/"))
}

/// `build.caches`: every cache has a usable name and a `directory` inside the app; `watch` files too.
fn build_caches(
    node: &Node,
    path: &KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, BuildCache> {
    let mut out = BTreeMap::new();
    for e in node.entries() {
        let p = path.with(&e.key);
        if !valid_cache_name(&e.key) {
            diags.push(p.error(&e.key_pos, format!("build cache name `{}` must be letters, digits, `-`, `_` or `.` (starting with a letter or digit, at most 64)", e.key)));
            continue;
        }
        if !matches!(e.value.kind, Kind::Map(_) | Kind::Null) {
            continue; // a shape error already
        }
        let mut cache = BuildCache::default();
        // Every problem of the cache is reported; a cache with one is left out.
        let mut ok = true;
        match e.value.get("directory") {
            None => {
                diags.push(p.error(
                    &e.key_pos,
                    format!(
                        "build cache `{}` has no `directory` (e.g. `directory: node_modules`)",
                        e.key
                    ),
                ));
                ok = false;
            }
            Some(d) => match d.as_str().map(app_relative) {
                Some(Ok(dir)) => cache.directory = dir,
                Some(Err(why)) => {
                    diags.push(
                        p.with("directory")
                            .error(&d.pos, format!("build cache directory {why}")),
                    );
                    ok = false;
                }
                None => ok = false,
            },
        }
        if let Some(w) = e.value.get("watch") {
            if let Kind::Seq(items) = &w.kind {
                for (i, item) in items.iter().enumerate() {
                    let Some(file) = item.as_str() else { continue };
                    match app_relative(file) {
                        Ok(f) => cache.watch.push(f),
                        Err(why) => {
                            let mut ip = p.with("watch");
                            ip.push_index(i);
                            diags.push(ip.error(&item.pos, format!("watched file {why}")));
                            ok = false;
                        }
                    }
                }
            }
        }
        cache.allow_stale = matches!(
            e.value.get("allow_stale").map(|n| &n.kind),
            Some(Kind::Bool(true))
        );
        cache.share_between_apps = matches!(
            e.value.get("share_between_apps").map(|n| &n.kind),
            Some(Kind::Bool(true))
        );
        if ok {
            out.insert(e.key.clone(), cache);
        }
    }
    out
}

/// `dependencies`: package names a package manager cannot take for an option.
fn check_dependencies(node: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    for lang in node.entries() {
        for pkg in lang.value.entries() {
            let name = pkg.key.as_str();
            let why = if name.starts_with('-') {
                Some("starts with `-`")
            } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Some("contains white space")
            } else {
                None
            };
            if let Some(why) = why {
                diags.push(path.with(&lang.key).with(name).error(
                    &pkg.key_pos,
                    format!("package name `{}` {why}", name.escape_debug()),
                ));
            }
            if let Some(v) = pkg
                .value
                .as_str()
                .filter(|v| v.chars().any(char::is_control))
            {
                diags.push(path.with(&lang.key).with(name).error(
                    &pkg.value.pos,
                    format!("version `{}` contains control characters", v.escape_debug()),
                ));
            }
        }
    }
}

/// Mount sources Platform.sh and Upsun know.
const MOUNT_SOURCES: &[&str] = &["local", "storage", "service", "tmp", "instance"];

/// Why a mount's `source_path` is refused, if it is: it must name a folder inside the mount's
/// source, so it is relative, never climbs out with `..`, and has no control characters.
fn source_path_problem(source_path: &str) -> Option<&'static str> {
    if source_path.starts_with('/') {
        Some("is absolute; a source_path is a folder inside the mount's source, relative to it")
    } else if source_path.chars().any(char::is_control) {
        Some("contains control characters")
    } else if normalize("", source_path).is_none() {
        Some("leaves the mount's source with `..`; name a folder inside it")
    } else {
        None
    }
}

/// A mount's path stays inside the app (relative to its root; a leading `/` means that root too),
/// its source is a known one, and its `source_path` stays inside that source.
fn check_mount(e: &crate::yaml::Entry, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    let key = e.key.as_str();
    match normalize("", key.trim_start_matches('/')) {
        None => diags.push(path.error(
            &e.key_pos,
            format!(
                "mount path `{key}` leaves the app; mount paths are relative to the app's root"
            ),
        )),
        Some(p) if p.is_empty() => diags.push(path.error(
            &e.key_pos,
            format!("mount path `{key}` would cover the whole app; name a folder inside it"),
        )),
        Some(_) => {}
    }
    if let Some(src) = e.value.get("source") {
        if let Some(s) = src.as_str().filter(|s| !MOUNT_SOURCES.contains(s)) {
            let hint = match crate::suggest::closest(s, MOUNT_SOURCES.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("expected one of: {}", MOUNT_SOURCES.join(", ")),
            };
            diags.push(
                path.with("source")
                    .error(&src.pos, format!("unknown mount source `{s}`; {hint}")),
            );
        }
    }
    if let Some(src_path) = e.value.get("source_path") {
        if let Some(why) = src_path.as_str().and_then(source_path_problem) {
            diags.push(path.with("source_path").error(
                &src_path.pos,
                format!(
                    "mount source_path `{}` {why}",
                    src_path.as_str().unwrap_or("").escape_debug()
                ),
            ));
        }
    }
    if let Some(legacy) = e.value.as_str() {
        if !legacy.starts_with("shared:files") {
            diags.push(path.error(&e.value.pos, format!("mount `{legacy}` must be `shared:files/FOLDER` or a mapping like `{{source: local, source_path: FOLDER}}`")));
        }
    }
}

/// Build the services of a `services` mapping.
pub(crate) fn services(
    node: &Node,
    path: &KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> Vec<ServiceRecord> {
    let mut out = Vec::new();
    for e in node.entries() {
        let p = path.with(&e.key);
        if !matches!(e.value.kind, Kind::Map(_)) {
            continue;
        }
        let Some(tnode) = e.value.get("type") else {
            diags.push(p.error(
                &e.key_pos,
                format!(
                    "service `{}` has no `type` (e.g. `type: mariadb:10.6`)",
                    e.key
                ),
            ));
            continue;
        };
        let Some(t) = tnode.as_str() else { continue };
        let (kind, version) = match t.split_once(':') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => (k.to_string(), v.to_string()),
            _ => {
                diags.push(p.with("type").error(
                    &tnode.pos,
                    format!("service type `{t}` must be NAME:VERSION, e.g. `mariadb:10.6`"),
                ));
                continue;
            }
        };
        check_catalog(&kind, &version, &p.with("type"), &tnode.pos, diags);
        if let Some(c) = e.value.get("configuration") {
            check_service_configuration(&kind, &version, c, &p.with("configuration"), diags);
        }
        let disk = match e.value.get("disk").map(|d| &d.kind) {
            Some(Kind::Int(i)) if *i >= 0 => Some(*i as u64),
            _ => None,
        };
        let configuration = e
            .value
            .get("configuration")
            .map(Node::to_json)
            .unwrap_or(serde_json::Value::Null);
        let mut relationships = Vec::new();
        if let Some(r) = e.value.get("relationships") {
            for rel in r.entries() {
                let target = match &rel.value.kind {
                    Kind::Str(t) => t.clone(),
                    Kind::Map(_) => {
                        let svc = rel
                            .value
                            .get("service")
                            .and_then(Node::as_str)
                            .unwrap_or(&rel.key);
                        match rel.value.get("endpoint").and_then(Node::as_str) {
                            Some(ep) => format!("{svc}:{ep}"),
                            None => svc.to_string(),
                        }
                    }
                    _ => continue,
                };
                relationships.push((rel.key.clone(), rel.key_pos.clone(), target));
            }
            if !relationships.is_empty() && kind != "varnish" {
                diags.push(p.with("relationships").warning(
                    &r.pos,
                    format!("Slipway acts on a service's `relationships` for varnish only; those of a {kind} service are ignored"),
                ));
                relationships.clear();
            }
        }
        out.push(ServiceRecord {
            service: Service {
                name: e.key.clone(),
                r#type: kind,
                version,
                disk,
                configuration,
                relationships: Default::default(),
            },
            relationships,
        });
    }
    out
}

/// An app's `type: LANGUAGE:VERSION` names a stack the server has (spec section 8): an
/// exact version, or a substitute with a warning naming both; else an error with the
/// versions there are and a did-you-mean. Upsun's `composable` images are not stacks.
fn check_stack(tnode: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    let Some(t) = tnode.as_str() else { return };
    if t.starts_with("composable:") {
        return;
    }
    match slipway_stack::resolve_type(t) {
        Ok(_) => {
            // The substitutes of each language (one, or several joined by `+`).
            for r in slipway_stack::resolve::resolve_parts(t).unwrap_or_default() {
                if let Some(w) = r.warning() {
                    diags.push(path.warning(&tnode.pos, w));
                }
            }
        }
        Err(e) => diags.push(path.error(&tnode.pos, e.to_string())),
    }
}

/// Upsun's `stack:` list (composable images): its `LANGUAGE@VERSION` entries (a string,
/// or the key of a one-key mapping holding its options) are the app's stack when `type` is
/// absent or `composable:*`, each resolved like `type:`, the first the app's language: one
/// stack with them all, typed `LANGUAGE:VERSION+LANGUAGE:VERSION...` (refused at the entry
/// that cannot share it). Entries that name no language are Nix packages: those of the
/// table ([`slipway_stack::catalog::PACKAGES`]: `clamav`, `imagemagick`, ...) are Debian
/// packages added to the stack (`+clamav` after the languages; a list of packages only
/// runs on the base stack, `base:13+clamav`); any other is refused at its entry with a
/// did-you-mean, never dropped. Nix packages that are a language's runtime (`deno`,
/// `sbcl`) are that language's newest stack. `bun@1` (or `bun`), `nodePackages.npm` and
/// `nodePackages.yarn` are a Node.js stack's, as every one carries them: the list's
/// `nodejs@VERSION`, else the newest Node.js stack. A language named without a version
/// (`python`) is ignored with a warning; when nothing else gives the app a stack it is
/// refused there, in config check and push alike, never a push failing mid-build.
fn stack_list(list: &Node, app: &mut Application, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    use slipway_stack::{catalog, Language};
    let Kind::Seq(items) = &list.kind else { return };
    let takes_type = app
        .r#type
        .as_deref()
        .is_none_or(|t| t.starts_with("composable:"));
    let newest = |l: Language| {
        catalog::versions(l)
            .last()
            .map(|s| s.version)
            .unwrap_or_default()
    };
    let mut chosen: Option<String> = None;
    let mut packages: Vec<&'static str> = Vec::new();
    // The first language named without a version: (its index in `diags`, the refusal it
    // becomes when no entry gives the app a stack).
    let mut first_ignored: Option<(usize, Diagnostic)> = None;
    for (i, item) in items.iter().enumerate() {
        let (name, pos) = match (&item.kind, item.entries()) {
            (Kind::Str(s), _) => (s.as_str(), &item.pos),
            (Kind::Map(_), [one]) => (one.key.as_str(), &one.key_pos),
            _ => continue,
        };
        let p = path.with(&i.to_string());
        // Tools every Node.js stack carries (bun 1.x, npm, yarn): a Node.js stack's, the
        // list's own `nodejs@VERSION` when it has one, else the newest.
        let runtime;
        let name = match name.strip_prefix("bun") {
            Some(v) if v.is_empty() || v.starts_with('@') => {
                let version = v.trim_start_matches('@');
                if !version.is_empty() && version.split('.').next() != Some(catalog::BUN_MAJOR) {
                    diags.push(p.error(
                        pos,
                        format!(
                            "`{name}`: the Node.js stacks carry bun {}.x (`bun@{0}`)",
                            catalog::BUN_MAJOR
                        ),
                    ));
                    return;
                }
                "nodePackages.npm"
            }
            _ => name,
        };
        let name = match name {
            "nodePackages.npm" | "nodePackages.yarn" => {
                let with_node = items.iter().any(|item| {
                    matches!(&item.kind, Kind::Str(s) if s.starts_with("nodejs@"))
                        || matches!(item.entries(), [one] if one.key.starts_with("nodejs@"))
                });
                let typed_node = app
                    .r#type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("nodejs:"));
                if with_node || typed_node {
                    continue;
                }
                runtime = format!("nodejs@{}", newest(Language::Nodejs));
                runtime.as_str()
            }
            // Nix packages that are a language's runtime.
            "deno" => {
                runtime = format!("deno@{}", newest(Language::Deno));
                runtime.as_str()
            }
            "sbcl" => {
                runtime = format!("lisp@{}", newest(Language::Lisp));
                runtime.as_str()
            }
            _ => name,
        };
        let language = name
            .split_once('@')
            .filter(|(l, _)| Language::from_name(l).is_some());
        let Some((language, version)) = language else {
            if let Some(l) = Language::from_name(name) {
                let example = format!("{name}@{}", newest(l));
                if first_ignored.is_none() {
                    let refusal = p.error(
                        pos,
                        format!("`{name}` names no version (e.g. `{example}`), and no other entry of `stack` names a language or a package: app {} has no stack to run on", app.name),
                    );
                    first_ignored = Some((diags.len(), refusal));
                }
                diags.push(p.warning(
                    pos,
                    format!("`{name}` names no version (e.g. `{example}`); it is ignored"),
                ));
                continue;
            }
            // Nix names that are no package here: PHP extensions (the php entry's
            // `extensions` and the PHP stacks' own), the Upsun CLI (for Upsun's API).
            let php_extension = name.strip_prefix("php").is_some_and(|r| {
                r.split_once("Extensions.")
                    .is_some_and(|(v, _)| v.bytes().all(|b| b.is_ascii_digit()))
            });
            if php_extension || name == "upsun" {
                let why = if php_extension {
                    "a PHP extension is the PHP stack's (its `extensions`)"
                } else {
                    "the Upsun CLI manages projects on Upsun, not here"
                };
                diags.push(p.warning(pos, format!("`{name}` is ignored: {why}")));
                continue;
            }
            // LANGUAGE@VERSION of a language there is not: refused as an unknown `type` is.
            if let Some((l, v)) = name.split_once('@') {
                if let Err(e) = slipway_stack::resolve(l, v) {
                    diags.push(p.error(pos, e.to_string()));
                    return;
                }
            }
            match slipway_stack::resolve::package(name) {
                Ok(package) if takes_type => packages.push(package.name),
                Ok(_) => diags.push(p.warning(
                    pos,
                    format!("`{name}` is ignored: the app runs on the stack its `type` names"),
                )),
                Err(e) => {
                    diags.push(p.error(pos, e.to_string()));
                    return;
                }
            }
            continue;
        };
        if !takes_type {
            diags.push(p.warning(
                pos,
                format!("`{name}` is ignored: the app runs on the stack its `type` names"),
            ));
            continue;
        }
        match slipway_stack::resolve(language, version) {
            Ok(r) => {
                if let Some(w) = r.warning() {
                    diags.push(p.warning(pos, w));
                }
                let part = format!("{language}:{version}");
                let joined = match chosen.take() {
                    Some(before) => format!("{before}{}{part}", slipway_stack::compose::SEPARATOR),
                    None => part,
                };
                // Several languages are one stack: they must be able to share it.
                if let Err(e) = slipway_stack::resolve_type(&joined) {
                    diags.push(p.error(pos, e.to_string()));
                    return;
                }
                chosen = Some(joined);
            }
            Err(e) => {
                diags.push(p.error(pos, e.to_string()));
                return;
            }
        }
    }
    // Packages only: the base stack carries them.
    if chosen.is_none() && !packages.is_empty() {
        chosen = Some(format!("{}:{}", Language::Base, newest(Language::Base)));
    }
    match (chosen, first_ignored) {
        (Some(t), _) => {
            let mut t = t;
            for package in packages {
                t.push(slipway_stack::compose::SEPARATOR);
                t.push_str(package);
            }
            app.r#type = Some(t);
        }
        // No language nor package among the entries: the app would have no stack.
        (None, Some((at, refusal))) if takes_type => diags[at] = refusal,
        (None, _) => {}
    }
}

/// A service type and version are in the catalog (spec: the supported service types), or
/// the version is a stack imported into the server's stacks.
fn check_catalog(
    kind: &str,
    version: &str,
    path: &KeyPath,
    pos: &Pos,
    diags: &mut Vec<Diagnostic>,
) {
    match crate::catalog::service_kind(kind) {
        None => {
            let hint = match crate::suggest::closest(
                kind,
                crate::catalog::SERVICES.iter().map(|k| k.name),
            ) {
                Some(c) => format!("; did you mean `{c}`?"),
                None => format!(
                    " (known: {})",
                    crate::catalog::SERVICES
                        .iter()
                        .map(|k| k.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            diags.push(path.error(pos, format!("unknown service type `{kind}`{hint}")));
        }
        Some(k) if !k.versions.contains(&version) && !imported_version(kind, version) => {
            let imported = imported_versions(kind, k.versions);
            diags.push(path.error(
                pos,
                format!(
                    "{kind} version `{version}` is not supported; use one of: {}{}",
                    k.versions.join(", "),
                    if imported.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (or one imported into this server: {})",
                            imported.join(", ")
                        )
                    }
                ),
            ));
        }
        Some(_) => runs_here(kind, version, path, pos, diags),
    }
}

/// Whether `version` of service type `kind` is a stack imported into the server's stacks
/// (`slipway stack import postgresql:16 IMAGE`), registered for this process.
fn imported_version(kind: &str, version: &str) -> bool {
    slipway_stack::service_software(kind)
        .is_some_and(|l| slipway_stack::imported::find(l, version).is_some())
}

/// The versions of service type `kind` imported into the server's stacks that Platform.sh's
/// `versions` lack, ascending.
fn imported_versions(kind: &str, versions: &[&str]) -> Vec<&'static str> {
    let Some(software) = slipway_stack::service_software(kind) else {
        return Vec::new();
    };
    slipway_stack::imported::versions(software)
        .into_iter()
        .filter(|s| slipway_stack::imported::is_imported(s) && !versions.contains(&s.version))
        .map(|s| s.version)
        .collect()
}

/// The keys of a service's `configuration` that Slipway acts on, by service type
/// (`slipway-deploy/src/services/recipe.rs` reads them); every other key is reported as
/// ignored, so none is silently dropped.
fn acted_configuration(kind: &str) -> &'static [&'static str] {
    match kind {
        t if crate::catalog::runs_mariadb(t) => &["schemas", "endpoints"],
        "postgresql" => &["extensions", "schemas", "databases", "endpoints"],
        "rabbitmq" => &["vhosts"],
        "varnish" => &["vcl"],
        _ => &[],
    }
}

/// Warn at each key of a service's `configuration` that Slipway does not act on (only for
/// services this server runs: for the others the whole service is warned about already).
fn check_service_configuration(
    kind: &str,
    version: &str,
    node: &Node,
    path: &KeyPath,
    diags: &mut Vec<Diagnostic>,
) {
    if kind == "network-storage" || slipway_stack::resolve_service(kind, version).is_err() {
        return;
    }
    if let Some(Err(e)) = crate::databases::layout(kind, &node.to_json()) {
        diags.push(path.error(&node.pos, e.to_string()));
    }
    let acted = acted_configuration(kind);
    for e in node.entries() {
        if !acted.contains(&e.key.as_str()) {
            diags.push(path.with(&e.key).warning(
                &e.key_pos,
                format!(
                    "Slipway does not act on `configuration.{}` of a {kind} service; it is ignored",
                    e.key
                ),
            ));
        }
    }
}

/// A service type Platform.sh knows but no stack of this server provides is refused (spec
/// section 9), naming the types this server runs; `oracle-mysql` runs on MariaDB with a
/// warning saying so, and a version the server lacks names the one used, in config check
/// and push alike.
fn runs_here(kind: &str, version: &str, path: &KeyPath, pos: &Pos, diags: &mut Vec<Diagnostic>) {
    if kind == "network-storage" {
        return;
    }
    match slipway_stack::resolve_service(kind, version) {
        Ok(r) if kind == "oracle-mysql" => diags.push(path.warning(
            pos,
            format!(
                "this server runs `oracle-mysql:{version}` on MariaDB ({}): the same wire protocol, clients and dump tools, and apps see it as written (`scheme: mysql`), but what only Oracle's MySQL has is missing or behaves as MariaDB's",
                r.stack.type_name()
            ),
        )),
        Ok(r) => {
            if let Some(w) = r.warning() {
                diags.push(path.warning(pos, w));
            }
        }
        Err(e @ slipway_stack::ResolveError::IncompatibleMajor { .. }) => {
            diags.push(path.error(pos, e.to_string()))
        }
        Err(_) => diags.push(path.error(
            pos,
            format!(
                "this server cannot run `{kind}` services; it runs {}, network-storage: remove this service and the relationships to it, or use one of those",
                slipway_stack::resolve::SERVICE_TYPES.join(", ")
            ),
        )),
    }
}

/// A route's `tls.strict_transport_security`, when `enabled: true` (its types are checked
/// by the route's shape), warning where it cannot do what it says.
fn hsts(route: &Node, url: &str, path: &KeyPath, diags: &mut Vec<Diagnostic>) -> Option<Hsts> {
    let sts = route.get("tls")?.get("strict_transport_security")?;
    let flag = |k: &str| matches!(sts.get(k).map(|n| &n.kind), Some(Kind::Bool(true)));
    if !flag("enabled") {
        return None;
    }
    let p = path.with("tls").with("strict_transport_security");
    if !url.starts_with("https://") {
        diags.push(p.warning(
            &sts.pos,
            "HSTS is sent on HTTPS answers only, and this route is `http://`: write it on the `https://` route",
        ));
    }
    let hsts = Hsts {
        include_subdomains: flag("include_subdomains"),
        preload: flag("preload"),
    };
    if hsts.preload && !hsts.include_subdomains {
        diags.push(p.warning(
            &sts.pos,
            "`preload` without `include_subdomains: true`: browsers' preload lists refuse such a site",
        ));
    }
    Some(hsts)
}

/// A route's `tls` as written, for `PLATFORM_ROUTES` (its types are checked by the route's
/// shape; a value of another type reads as unset).
fn route_tls(route: &Node) -> RouteTls {
    let Some(tls) = route.get("tls") else {
        return RouteTls::default();
    };
    let flag = |k: &str| match tls.get("strict_transport_security").and_then(|s| s.get(k)) {
        Some(Node {
            kind: Kind::Bool(b),
            ..
        }) => Some(*b),
        _ => None,
    };
    let authorities = match tls.get("client_certificate_authorities").map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    RouteTls {
        strict_transport_security: StrictTransportSecurity {
            enabled: flag("enabled"),
            include_subdomains: flag("include_subdomains"),
            preload: flag("preload"),
        },
        min_version: str_at(tls, &["min_version"]).map(str::to_string),
        client_authentication: str_at(tls, &["client_authentication"]).map(str::to_string),
        client_certificate_authorities: authorities,
    }
}

/// Build the routes of a `routes` mapping.
pub(crate) fn routes(node: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) -> Vec<RouteRecord> {
    let mut out = Vec::new();
    for e in node.entries() {
        let p = path.with(&e.key);
        let url = e.key.clone();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            diags.push(p.error(&e.key_pos, format!("route `{url}` must start with http:// or https:// (e.g. `https://{{default}}/`)")));
            continue;
        }
        if !matches!(e.value.kind, Kind::Map(_)) {
            continue;
        }
        let v = &e.value;
        let ty = match str_at(v, &["type"]) {
            Some(t) => t,
            None if v.get("to").is_some() => "redirect",
            None => "upstream",
        };
        let kind = match ty {
            "upstream" => match v.get("upstream") {
                Some(up) => match up.as_str() {
                    Some(s) => {
                        let (app, ep) = s.split_once(':').unwrap_or((s, "http"));
                        if app.is_empty() {
                            diags.push(
                                p.with("upstream")
                                    .error(&up.pos, "`upstream` must be `APP:http`"),
                            );
                            continue;
                        }
                        RouteKind::Upstream {
                            app: app.to_string(),
                            endpoint: if ep.is_empty() {
                                "http".into()
                            } else {
                                ep.to_string()
                            },
                        }
                    }
                    None => continue,
                },
                None => {
                    diags.push(p.error(&e.key_pos, "an upstream route needs `upstream: APP:http`"));
                    continue;
                }
            },
            "redirect" => match v.get("to") {
                Some(to) => match to.as_str() {
                    Some(s) => RouteKind::Redirect {
                        to: s.to_string(),
                        code: 301,
                    },
                    None => continue,
                },
                None => {
                    diags.push(p.error(&e.key_pos, "a redirect route needs `to: URL`"));
                    continue;
                }
            },
            other => {
                let pos = v
                    .get("type")
                    .map(|t| t.pos.clone())
                    .unwrap_or_else(|| e.key_pos.clone());
                diags.push(p.with("type").error(
                    &pos,
                    format!("route type `{other}` is not `upstream` or `redirect`"),
                ));
                continue;
            }
        };
        let primary = matches!(v.get("primary").map(|n| &n.kind), Some(Kind::Bool(true)));
        let hsts = hsts(v, &url, &p, diags);
        out.push(RouteRecord {
            route: Route {
                url,
                kind,
                primary,
                id: str_at(v, &["id"]).map(str::to_string),
                attributes: json_map(v.get("attributes")),
                hsts,
                tls: route_tls(v),
            },
            path: p,
            explicit_primary: v.get("primary").is_some(),
            upstream_pos: v
                .get("upstream")
                .map_or_else(|| e.key_pos.clone(), |n| n.pos.clone()),
            primary_pos: v
                .get("primary")
                .map_or_else(|| e.key_pos.clone(), |n| n.pos.clone()),
        });
    }
    out
}
