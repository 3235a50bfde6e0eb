//! Per-format loaders: which files make up a configuration and how they are read.

use crate::checks::{finish, Files};
use crate::convert::{self, AppRecord, RouteRecord, ServiceRecord};
use crate::diag::Diagnostic;
use crate::files::{find_files, parent, read_text};
use crate::include;
use crate::keypath::KeyPath;
use crate::model::{Format, Topology};
use crate::shape::{check, Shape};
use crate::source::ConfigSource;
use crate::tables;
use crate::validate::{self, FileKind};
use crate::yaml::{self, Kind, Node};

/// Read, parse and resolve includes in one YAML file. None when missing or broken (reported).
pub(crate) fn read_yaml(
    src: &dyn ConfigSource,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Node> {
    let text = match read_text(src, path) {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    match yaml::parse(path, &text, diags) {
        Ok(mut node) => {
            include::resolve(
                &mut node,
                src,
                parent(path),
                0,
                &mut include::Budget::new(),
                diags,
            );
            Some(node)
        }
        Err(d) => {
            diags.push(d);
            None
        }
    }
}

/// Report a missing required key of the mapping `node`.
fn require(
    node: &Node,
    key: &str,
    example: &str,
    path: &KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if node.get(key).is_some_and(|v| !v.is_null()) {
        return true;
    }
    if matches!(node.kind, Kind::Map(_)) {
        diags.push(path.with(key).error(
            &node.pos,
            format!("missing required key `{key}` (e.g. `{key}: {example}`)"),
        ));
    }
    false
}

/// A whole-file root that must be a mapping (or a list for applications.yaml).
fn root_is(node: &Node, shape: &Shape, what: &str, diags: &mut Vec<Diagnostic>) -> bool {
    if node.is_null() {
        return false;
    }
    let ok = container_matches(shape, &node.kind);
    if !ok {
        let p = &node.pos;
        diags.push(Diagnostic::error(
            &p.file,
            p.line,
            p.col,
            "",
            format!(
                "{what} must be {}, found {}",
                crate::shape::describe(shape),
                node.type_name()
            ),
        ));
    }
    ok
}

/// Whether a node's container kind fits a shape.
fn container_matches(shape: &Shape, kind: &Kind) -> bool {
    match (shape, kind) {
        (Shape::Seq(..), Kind::Seq(_)) => true,
        (Shape::Obj(_) | Shape::Map(..), Kind::Map(_)) => true,
        (Shape::OneOf(opts), k) => opts.iter().any(|o| container_matches(o, k)),
        _ => false,
    }
}

/// The structural checks of one Platform.sh-style app definition (a `.platform.app.yaml` or an `applications.yaml` item).
fn platform_app_structure(node: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    check(node, &tables::APP, &mut path.clone(), diags);
    require(node, "name", "app", path, diags);
    require(node, "type", "python:3.13", path, diags);
}

/// The app of a structurally checked Platform.sh-style definition (None without a name).
fn platform_app(
    node: &Node,
    default_root: &str,
    path: KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> Option<AppRecord> {
    let name_node = node.get("name")?;
    let name = name_node.as_str()?.to_string();
    Some(convert::application(
        node,
        name,
        name_node.pos.clone(),
        default_root,
        path,
        diags,
    ))
}

/// Services and routes files of the Platform.sh / Magento layouts.
fn services_and_routes(
    src: &dyn ConfigSource,
    dir: &str,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<ServiceRecord>, Option<Vec<RouteRecord>>) {
    let mut services = Vec::new();
    if let Some(node) = read_yaml(src, &format!("{dir}/services.yaml"), diags) {
        let mut structural = Vec::new();
        let ok = root_is(&node, &tables::SERVICES, "services.yaml", &mut structural);
        if ok {
            check(
                &node,
                &tables::SERVICES,
                &mut KeyPath::new(),
                &mut structural,
            );
        }
        validate::merge(FileKind::Services, &node, structural, diags);
        if ok {
            services = convert::services(&node, &KeyPath::new(), diags);
        }
    }
    let mut routes = None;
    if let Some(node) = read_yaml(src, &format!("{dir}/routes.yaml"), diags) {
        let mut structural = Vec::new();
        let ok = root_is(&node, &tables::ROUTES, "routes.yaml", &mut structural);
        if ok {
            check(&node, &tables::ROUTES, &mut KeyPath::new(), &mut structural);
        }
        validate::merge(FileKind::Routes, &node, structural, diags);
        if ok {
            routes = Some(convert::routes(&node, &KeyPath::new(), diags));
        }
    }
    (services, routes)
}

/// Platform.sh (`dir` = ".platform", `app_file` = ".platform.app.yaml") or Magento Cloud.
pub(crate) fn load_platform(
    src: &dyn ConfigSource,
    dir: &str,
    app_file: &str,
    diags: &mut Vec<Diagnostic>,
) -> Topology {
    let mut apps = Vec::new();
    let app_files = match find_files(src, app_file) {
        Ok(f) => f,
        Err(d) => {
            diags.push(d);
            Vec::new()
        }
    };
    for f in &app_files {
        let Some(node) = read_yaml(src, f, diags) else {
            continue;
        };
        if node.is_null() {
            diags.push(Diagnostic::error(
                f,
                1,
                1,
                "",
                "the file is empty; an app needs at least `name` and `type`",
            ));
            continue;
        }
        let mut structural = Vec::new();
        let ok = root_is(&node, &tables::APP, app_file, &mut structural);
        if ok {
            platform_app_structure(&node, &KeyPath::new(), &mut structural);
        }
        validate::merge(FileKind::App, &node, structural, diags);
        if ok {
            apps.extend(platform_app(&node, parent(f), KeyPath::new(), diags));
        }
    }
    let apps_yaml = format!("{dir}/applications.yaml");
    if let Some(node) = read_yaml(src, &apps_yaml, diags) {
        let mut structural = Vec::new();
        if root_is(
            &node,
            &tables::APPLICATIONS,
            "applications.yaml",
            &mut structural,
        ) {
            match &node.kind {
                Kind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let mut p = KeyPath::new();
                        p.push_index(i);
                        if !matches!(item.kind, Kind::Map(_)) {
                            structural.push(p.error(
                                &item.pos,
                                format!(
                                    "an application must be a mapping, found {}",
                                    item.type_name()
                                ),
                            ));
                            continue;
                        }
                        platform_app_structure(item, &p, &mut structural);
                    }
                }
                Kind::Map(entries) => {
                    for e in entries {
                        let p = KeyPath::of(&[&e.key]);
                        if !matches!(e.value.kind, Kind::Map(_)) {
                            structural.push(p.error(
                                &e.key_pos,
                                format!(
                                    "app `{}` must be a mapping, found {}",
                                    e.key,
                                    e.value.type_name()
                                ),
                            ));
                            continue;
                        }
                        check(&e.value, &tables::APP, &mut p.clone(), &mut structural);
                        require(&e.value, "type", "python:3.13", &p, &mut structural);
                    }
                }
                _ => {}
            }
        }
        validate::merge(FileKind::Applications, &node, structural, diags);
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut p = KeyPath::new();
                    p.push_index(i);
                    if matches!(item.kind, Kind::Map(_)) {
                        apps.extend(platform_app(item, "", p, diags));
                    }
                }
            }
            Kind::Map(entries) => {
                for e in entries {
                    let p = KeyPath::of(&[&e.key]);
                    if !matches!(e.value.kind, Kind::Map(_)) {
                        continue;
                    }
                    if let Some(n) = e
                        .value
                        .get("name")
                        .and_then(Node::as_str)
                        .filter(|n| *n != e.key)
                    {
                        let pos = &e
                            .value
                            .get("name")
                            .map(|n| n.pos.clone())
                            .unwrap_or_else(|| e.key_pos.clone());
                        diags.push(p.with("name").error(pos, format!("`name: {n}` differs from the app's key `{}`; drop `name` or make them equal", e.key)));
                    }
                    apps.push(convert::application(
                        &e.value,
                        e.key.clone(),
                        e.key_pos.clone(),
                        "",
                        p,
                        diags,
                    ));
                }
            }
            _ => {}
        }
    }
    let (services, routes) = services_and_routes(src, dir, diags);
    let apps_file = app_files.first().cloned().unwrap_or(apps_yaml);
    let files = Files {
        apps: &apps_file,
        services: &format!("{dir}/services.yaml"),
        routes: &format!("{dir}/routes.yaml"),
    };
    finish(src, files, apps, services, routes, diags)
}

/// `.upsun/config.yaml` or `.slipway/config.yaml`.
pub(crate) fn load_single_file(
    src: &dyn ConfigSource,
    file: &str,
    diags: &mut Vec<Diagnostic>,
) -> Topology {
    let mut apps = Vec::new();
    let mut services = Vec::new();
    let mut routes = None;
    if let Some(root) = read_yaml(src, file, diags) {
        if root.is_null() {
            diags.push(Diagnostic::error(file, 1, 1, "", "the file is empty; it needs `applications` (and optionally `services` and `routes`)"));
        } else {
            let mut structural = Vec::new();
            let ok = root_is(&root, &tables::UPSUN_CONFIG, file, &mut structural);
            if ok {
                check(
                    &root,
                    &tables::UPSUN_CONFIG,
                    &mut KeyPath::new(),
                    &mut structural,
                );
                match root.get("applications") {
                    Some(a) => {
                        for e in a.entries() {
                            let path = KeyPath::of(&["applications", &e.key]);
                            if e.value.is_null() {
                                structural.push(path.error(
                                    &e.key_pos,
                                    format!("app `{}` is empty; it needs at least `type`", e.key),
                                ));
                            } else if matches!(e.value.kind, Kind::Map(_))
                                && e.value.get("stack").is_none()
                            {
                                require(&e.value, "type", "python:3.13", &path, &mut structural);
                            }
                        }
                    }
                    None => structural.push(Diagnostic::error(
                        file,
                        root.pos.line,
                        root.pos.col,
                        "applications",
                        "missing required key `applications`",
                    )),
                }
            }
            validate::merge(FileKind::SingleFile, &root, structural, diags);
            if ok {
                if let Some(a) = root.get("applications") {
                    for e in a.entries() {
                        if matches!(e.value.kind, Kind::Map(_)) {
                            let path = KeyPath::of(&["applications", &e.key]);
                            apps.push(convert::application(
                                &e.value,
                                e.key.clone(),
                                e.key_pos.clone(),
                                "",
                                path,
                                diags,
                            ));
                        }
                    }
                }
                if let Some(s) = root.get("services") {
                    services = convert::services(s, &KeyPath::of(&["services"]), diags);
                }
                if let Some(r) = root.get("routes") {
                    routes = Some(convert::routes(r, &KeyPath::of(&["routes"]), diags));
                }
            }
        }
    }
    let files = Files {
        apps: file,
        services: file,
        routes: file,
    };
    finish(src, files, apps, services, routes, diags)
}

/// Which format a tree uses (first match wins); None when there is no configuration at all.
pub(crate) fn detect(src: &dyn ConfigSource) -> Result<Option<Format>, Diagnostic> {
    let exists = |p: &str| -> Result<bool, Diagnostic> {
        src.read_file(p)
            .map(|b| b.is_some())
            .map_err(|e| Diagnostic::error(p, 0, 0, "", format!("cannot read the file: {e}")))
    };
    if exists(".slipway/config.yaml")? {
        return Ok(Some(Format::Slipway));
    }
    if exists(".upsun/config.yaml")? {
        return Ok(Some(Format::Upsun));
    }
    if exists(".platform.app.yaml")?
        || exists(".platform/applications.yaml")?
        || !find_files(src, ".platform.app.yaml")?.is_empty()
    {
        return Ok(Some(Format::PlatformSh));
    }
    if exists(".magento.app.yaml")? || !find_files(src, ".magento.app.yaml")?.is_empty() {
        return Ok(Some(Format::MagentoCloud));
    }
    if exists("Procfile")? {
        return Ok(Some(Format::Procfile));
    }
    if crate::files::dir_exists(src, ".platform")? {
        return Ok(Some(Format::PlatformSh));
    }
    Ok(None)
}

/// The files of layouts after `used` in the order of spec section 4 that the tree holds
/// too: they are not read, so each gets a warning naming the layout read instead (no key
/// dropped silently, invariant 7). A `.platform.app.yaml` (or `.magento.app.yaml`) is
/// found in any folder, as detection finds it.
pub(crate) fn ignored_layouts(src: &dyn ConfigSource, used: Format) -> Vec<Diagnostic> {
    let exists = |p: &str| matches!(src.read_file(p), Ok(Some(_)));
    let found_anywhere = |name: &str| find_files(src, name).unwrap_or_default();
    let mut ignored = Vec::new();
    for format in Format::ALL.into_iter().skip_while(|f| *f != used).skip(1) {
        let files: Vec<String> = match format {
            Format::Slipway => Vec::new(),
            Format::Upsun => vec![".upsun/config.yaml".to_string()],
            Format::PlatformSh => {
                let mut f = found_anywhere(".platform.app.yaml");
                f.extend(
                    [
                        ".platform/applications.yaml",
                        ".platform/services.yaml",
                        ".platform/routes.yaml",
                    ]
                    .map(String::from),
                );
                f
            }
            Format::MagentoCloud => {
                let mut f = found_anywhere(".magento.app.yaml");
                f.extend([".magento/services.yaml", ".magento/routes.yaml"].map(String::from));
                f
            }
            Format::Procfile => vec!["Procfile".to_string()],
        };
        for file in files.into_iter().filter(|f| exists(f)) {
            ignored.push(Diagnostic::file_warning(
                &file,
                format!(
                    "ignored: the configuration is read from the {used} layout, which comes first; move what this file says there, or remove it"
                ),
            ));
        }
    }
    ignored
}

#[cfg(test)]
mod layout_tests {
    use crate::source::MemSource;

    const UPSUN: &str = "applications:\n  app:\n    type: python:3.11\n    web:\n      commands:\n        start: python3 app.py\n";
    const APP: &str =
        "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 app.py\n";

    fn warnings(files: &[(&str, &str)]) -> Vec<String> {
        let mut src = MemSource::default();
        for (p, c) in files {
            src.insert(p, *c);
        }
        let loaded = crate::load(&src).expect("loads");
        loaded
            .warnings
            .iter()
            .filter(|d| d.scope == crate::Scope::File)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn a_layout_not_read_is_a_warning_naming_the_one_read() {
        let w = warnings(&[
            (".upsun/config.yaml", UPSUN),
            (".platform.app.yaml", APP),
            ("api/.platform.app.yaml", APP),
            (".platform/routes.yaml", "{}\n"),
        ]);
        assert_eq!(w.len(), 3, "{w:?}");
        for f in [
            ".platform.app.yaml",
            "api/.platform.app.yaml",
            ".platform/routes.yaml",
        ] {
            assert!(
                w.iter()
                    .any(|l| l.starts_with(&format!("{f}:1:1: warning: ignored"))
                        && l.contains("Upsun (.upsun/config.yaml)")),
                "{f}: {w:?}"
            );
        }
        let w = warnings(&[
            (".platform.app.yaml", APP),
            ("Procfile", "web: python3 app.py\n"),
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("Procfile:1:1: warning: ignored"), "{w:?}");
        assert!(warnings(&[(".platform.app.yaml", APP)]).is_empty());
    }
}
