//! What an app reads about its environment, in Platform.sh's shapes, so an app written for
//! Platform.sh finds its routes and services unchanged (spec section 4):
//!
//! - [`routes_json`]: `PLATFORM_ROUTES`, routes keyed by their expanded URL, each with `primary`,
//!   `id`, `type`, `upstream` or `to`, `original_url`, `production_url`, `attributes`, ...
//! - [`relationships_json`]: `PLATFORM_RELATIONSHIPS`, relationship name -> list of endpoints
//!   `{host, hostname, port, scheme, username, password, path, query, rel, service, type, url, ...}`.
//! - [`variables_json`]: `PLATFORM_VARIABLES`, `prefix:name` -> value.
//!
//! The deploy layer base64-encodes the JSON texts.
//!
//! Host names: as on Platform.sh, a relationship's host is `RELATIONSHIP.internal` (e.g.
//! `database.internal`). Services are not provisioned yet: until they are, these names do not
//! resolve, and user names, passwords and paths are the catalog's defaults (Platform.sh's:
//! `user` with an empty password and database `main` for MariaDB, `main`/`main` for PostgreSQL).
//!
//! URLs: Slipway serves plain HTTP on its HTTP port, so a route's `{default}` (and `{all}`) host
//! becomes the environment's host with the scheme and port users really reach; `https://` and
//! `http://` versions of one route then share a URL, and the upstream (or the first) one is kept.

use crate::catalog;
use crate::model::{Application, Route, RouteKind, Topology};
use serde_json::{json, Map, Value};

/// Names an app's environment gets from the platform (`PORT`, `SOCKET`, `PATH`, `HOME`,
/// `PLATFORM_*`, `SLIPWAY_*`), which variables set by users never replace: a config's
/// `variables.env` entry of one is warned about, `var set` refuses one.
pub fn is_reserved_variable(name: &str) -> bool {
    matches!(name, "PORT" | "SOCKET" | "PATH" | "HOME")
        || name.starts_with("SLIPWAY_")
        || name.starts_with("PLATFORM_")
}

/// Where the environment is reached: what `{default}` expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlBase {
    /// `http` (Slipway serves plain HTTP) or `https`.
    pub scheme: String,
    /// The environment's host, e.g. `main.demo.localhost`.
    pub host: String,
    /// The port, when not the scheme's default.
    pub port: Option<u16>,
    /// Whether this is the production environment, where explicit hosts
    /// (`https://www.example.com/`) are used as written; elsewhere they become
    /// `HOST.ENV-HOST` (`www.example.com.dev.demo.localhost`), as on Platform.sh
    /// and as the router serves them.
    pub production: bool,
}

impl UrlBase {
    /// Parse the environment's URL (`http://main.demo.localhost:8080/`).
    pub fn from_url(url: &str) -> Option<UrlBase> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split('/').next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
            None => (authority, None),
        };
        if host.is_empty() {
            return None;
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        Some(UrlBase {
            scheme: scheme.to_string(),
            host: host.to_string(),
            port: port.filter(|p| *p != default_port),
            production: true,
        })
    }
}

/// Expand a route URL pattern: `{default}` and `{all}` become the environment's host, with the
/// scheme and port it is served on. URLs naming a literal host are kept as written.
pub fn expand_url(pattern: &str, base: &UrlBase) -> String {
    let Some((_, rest)) = pattern.split_once("://") else {
        return pattern.to_string();
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = if host.contains("{default}") || host.contains("{all}") {
        host.replace("{default}", &base.host)
            .replace("{all}", &base.host)
    } else if base.production {
        return pattern.to_string();
    } else {
        let bare = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        format!("{bare}.{}", base.host)
    };
    // A port written in the pattern is dropped: the environment has one port.
    let host = host.split(':').next().unwrap_or(&host).to_string();
    match base.port {
        Some(p) => format!("{}://{host}:{p}{path}", base.scheme),
        None => format!("{}://{host}{path}", base.scheme),
    }
}

/// `PLATFORM_ROUTES`: every route keyed by its expanded URL.
pub fn routes_json(topology: &Topology, base: &UrlBase) -> Value {
    let mut out: Map<String, Value> = Map::new();
    let mut kept: Vec<(String, &Route)> = Vec::new();
    for r in &topology.routes {
        let url = expand_url(&r.url, base);
        if let RouteKind::Redirect { to, .. } = &r.kind {
            // An http -> https redirect points at itself once both are served the same way.
            if expand_url(to, base) == url {
                continue;
            }
        }
        match kept.iter_mut().find(|(u, _)| *u == url) {
            Some(slot) => {
                let replace = matches!(r.kind, RouteKind::Upstream { .. })
                    && !matches!(slot.1.kind, RouteKind::Upstream { .. });
                if replace {
                    slot.1 = r;
                }
            }
            None => kept.push((url, r)),
        }
    }
    let primary_url = topology
        .routes
        .iter()
        .find(|r| r.primary)
        .map(|r| expand_url(&r.url, base));
    for (url, r) in kept {
        let mut v = json!({
            "primary": primary_url.as_deref() == Some(url.as_str()),
            "id": r.id,
            "production_url": url,
            "attributes": r.attributes,
            "original_url": r.url,
            "restrict_robots": false,
            "cache": {"enabled": false},
            "ssi": {"enabled": false},
            "tls": r.tls.to_json(),
        });
        if let Value::Object(m) = &mut v {
            match &r.kind {
                RouteKind::Upstream { app, .. } => {
                    m.insert("type".into(), json!("upstream"));
                    m.insert("upstream".into(), json!(app));
                }
                RouteKind::Redirect { to, code } => {
                    m.insert("type".into(), json!("redirect"));
                    m.insert("to".into(), json!(expand_url(to, base)));
                    m.insert("redirects".into(), json!({"expires": "-1s", "paths": {}}));
                    m.insert("code".into(), json!(code));
                }
            }
        }
        out.insert(url, v);
    }
    Value::Object(out)
}

/// `PLATFORM_RELATIONSHIPS` of one app: relationship name -> list of endpoint descriptions.
pub fn relationships_json(topology: &Topology, app: &Application) -> Value {
    let mut out = Map::new();
    for (rel, target) in &app.relationships {
        let (svc, endpoint) = target.split_once(':').unwrap_or((target.as_str(), ""));
        let host = format!("{rel}.internal");
        let entry = if let Some(s) = topology.service(svc) {
            let kind = catalog::service_kind(&s.r#type);
            let ep = if endpoint.is_empty() {
                kind.map(|k| k.endpoint).unwrap_or("")
            } else {
                endpoint
            };
            let custom = s.configuration.get("endpoints").and_then(|e| e.get(ep));
            let scheme = kind.map(|k| k.scheme).unwrap_or("tcp");
            let port = kind.map(|k| k.port).unwrap_or(0);
            let (mut username, password, mut path) = (
                kind.and_then(|k| k.username).map(str::to_string),
                kind.and_then(|k| k.password).map(str::to_string),
                kind.and_then(|k| k.path).map(str::to_string),
            );
            if let Some(c) = custom {
                // A configured endpoint of a database: its own user (named after it) and
                // its default schema as `path`, `null` when it has none (as on Platform.sh).
                if matches!(scheme, "mysql" | "pgsql") {
                    username = Some(ep.to_string());
                    path = c
                        .get("default_schema")
                        .or_else(|| c.get("default_database"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
                if let Some(core) = c.get("core").and_then(Value::as_str) {
                    path = Some(format!("solr/{core}"));
                }
            }
            let query = if matches!(scheme, "mysql" | "pgsql") {
                json!({"is_master": true})
            } else {
                json!({})
            };
            describe(
                &host,
                scheme,
                port,
                username,
                password,
                path,
                query,
                svc,
                ep,
                &format!("{}:{}", s.r#type, s.version),
            )
        } else if let Some(other) = topology.application(svc) {
            let ep = if endpoint.is_empty() {
                "http"
            } else {
                endpoint
            };
            describe(
                &host,
                "http",
                80,
                None,
                None,
                None,
                json!({}),
                &other.name,
                ep,
                other.r#type.as_deref().unwrap_or(""),
            )
        } else {
            continue;
        };
        out.insert(rel.clone(), Value::Array(vec![entry]));
    }
    Value::Object(out)
}

/// One endpoint description in Platform.sh's shape.
#[allow(clippy::too_many_arguments)]
fn describe(
    host: &str,
    scheme: &str,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    path: Option<String>,
    query: Value,
    service: &str,
    rel: &str,
    ty: &str,
) -> Value {
    let auth = match (&username, &password) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (Some(u), None) => format!("{u}@"),
        _ => String::new(),
    };
    let url_path = path.as_deref().map(|p| format!("/{p}")).unwrap_or_default();
    json!({
        "username": username,
        "password": password,
        "scheme": scheme,
        "host": host,
        "hostname": host,
        "port": port,
        "path": path,
        "query": query,
        "fragment": null,
        "public": false,
        "host_mapped": false,
        "ip": null,
        "epoch": 0,
        "instance_ips": [],
        "rel": rel,
        "service": service,
        "type": ty,
        "url": format!("{scheme}://{auth}{host}:{port}{url_path}"),
    })
}

/// `PLATFORM_VARIABLES`: every variable of the app as `prefix:name` -> value.
pub fn variables_json(app: &Application) -> Value {
    let mut out = Map::new();
    for (prefix, vars) in &app.variables {
        for (name, value) in vars {
            out.insert(format!("{prefix}:{name}"), value.clone());
        }
    }
    Value::Object(out)
}

/// `PLATFORM_APPLICATION`: the app's definition in Platform.sh's shape (its config file as a
/// nested object: `name`, `type`, `hooks`, `web`, `relationships`, `mounts`, `variables`,
/// ...), which libraries such as `platformshconfig` return from `application()`.
pub fn application_json(app: &Application) -> Value {
    serde_json::json!({
        "name": app.name,
        "type": app.r#type,
        "source": {"root": if app.source_root.is_empty() { None } else { Some(&app.source_root) }},
        "build": {"flavor": app.build_flavor},
        "dependencies": app.dependencies,
        "hooks": {
            "build": app.hooks.build,
            "deploy": app.hooks.deploy,
            "post_deploy": app.hooks.post_deploy,
        },
        "web": {
            "commands": {"start": app.web.start},
            "locations": app.web.locations,
        },
        "relationships": app.relationships,
        "mounts": app.mounts,
        "variables": app.variables,
        "disk": app.disk,
        "workers": app.workers,
        "crons": app.crons,
        "timezone": app.timezone,
        "app_dir": "/app",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Service;

    fn base() -> UrlBase {
        UrlBase::from_url("http://main.demo.localhost:8080/").unwrap()
    }

    fn route(url: &str, kind: RouteKind, primary: bool) -> Route {
        Route {
            url: url.into(),
            kind,
            primary,
            id: None,
            attributes: Default::default(),
            hsts: None,
            tls: Default::default(),
        }
    }

    fn up(app: &str) -> RouteKind {
        RouteKind::Upstream {
            app: app.into(),
            endpoint: "http".into(),
        }
    }

    #[test]
    fn url_base_and_expansion() {
        assert_eq!(
            base(),
            UrlBase {
                scheme: "http".into(),
                host: "main.demo.localhost".into(),
                port: Some(8080),
                production: true
            }
        );
        let dev = UrlBase {
            host: "dev.demo.localhost".into(),
            production: false,
            ..base()
        };
        assert_eq!(
            expand_url("https://www.example.com/blog", &dev),
            "http://www.example.com.dev.demo.localhost:8080/blog"
        );
        assert_eq!(
            expand_url("https://www.example.com/blog", &base()),
            "https://www.example.com/blog"
        );
        assert_eq!(UrlBase::from_url("http://x.y/").unwrap().port, None);
        assert_eq!(UrlBase::from_url("http://x.y:80/").unwrap().port, None);
        assert_eq!(UrlBase::from_url("nonsense"), None);
        assert_eq!(
            expand_url("https://{default}/", &base()),
            "http://main.demo.localhost:8080/"
        );
        assert_eq!(
            expand_url("https://www.{default}/api", &base()),
            "http://www.main.demo.localhost:8080/api"
        );
        assert_eq!(
            expand_url("https://{all}", &base()),
            "http://main.demo.localhost:8080/"
        );
        assert_eq!(
            expand_url("https://example.com/", &base()),
            "https://example.com/"
        );
    }

    #[test]
    fn routes_in_platform_shape() {
        let mut main = route("https://{default}/", up("app"), true);
        main.id = Some("main".into());
        main.attributes.insert("team".into(), json!("web"));
        let t = Topology {
            applications: vec![],
            services: vec![],
            routes: vec![
                main,
                route(
                    "http://{default}/",
                    RouteKind::Redirect {
                        to: "https://{default}/".into(),
                        code: 301,
                    },
                    false,
                ),
                route(
                    "https://www.{default}/",
                    RouteKind::Redirect {
                        to: "https://{default}/".into(),
                        code: 301,
                    },
                    false,
                ),
                route("https://{default}/api", up("api"), false),
            ],
        };
        let v = routes_json(&t, &base());
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), 3, "{v:#}");
        let main = &v["http://main.demo.localhost:8080/"];
        assert_eq!(main["primary"], true);
        assert_eq!(main["id"], "main");
        assert_eq!(main["type"], "upstream");
        assert_eq!(main["upstream"], "app");
        assert_eq!(main["original_url"], "https://{default}/");
        assert_eq!(main["attributes"]["team"], "web");
        assert_eq!(main["restrict_robots"], false);
        let www = &v["http://www.main.demo.localhost:8080/"];
        assert_eq!(www["type"], "redirect");
        assert_eq!(www["to"], "http://main.demo.localhost:8080/");
        assert_eq!(www["primary"], false);
        assert_eq!(v["http://main.demo.localhost:8080/api"]["upstream"], "api");
    }

    #[test]
    fn each_route_has_its_tls_in_platform_shape() {
        let mut files = crate::source::MemSource::default();
        files.insert(
            ".platform.app.yaml",
            "name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 app.py\n",
        );
        files.insert(
            ".platform/routes.yaml",
            "\"https://{default}/\":\n  type: upstream\n  upstream: app:http\n  tls:\n    min_version: TLSv1.3\n    strict_transport_security:\n      enabled: true\n      preload: false\n    client_authentication: require\n    client_certificate_authorities:\n      - \"-----BEGIN CERTIFICATE-----\"\n\"https://www.{default}/\":\n  type: redirect\n  to: \"https://{default}/\"\n",
        );
        let loaded = crate::load(&files).expect("loads");
        let v = routes_json(&loaded.topology, &base());
        let main = &v["http://main.demo.localhost:8080/"];
        assert_eq!(
            main["tls"],
            json!({
                "client_authentication": "require",
                "min_version": "TLSv1.3",
                "client_certificate_authorities": ["-----BEGIN CERTIFICATE-----"],
                "strict_transport_security": {"enabled": true, "include_subdomains": null, "preload": false},
            }),
            "{v:#}"
        );
        // A route without `tls` has every key, null or empty, as on Platform.sh.
        assert_eq!(
            v["http://www.main.demo.localhost:8080/"]["tls"],
            json!({
                "client_authentication": null,
                "min_version": null,
                "client_certificate_authorities": [],
                "strict_transport_security": {"enabled": null, "include_subdomains": null, "preload": null},
            }),
            "{v:#}"
        );
    }

    #[test]
    fn relationships_in_platform_shape() {
        let mut app = Application {
            name: "app".into(),
            ..Default::default()
        };
        for (rel, target) in [
            ("database", "db:mysql"),
            ("admin", "db:admin"),
            ("pg", "pg:postgresql"),
            ("cache", "cache:redis"),
            ("api", "api:http"),
            ("ghost", "nope:x"),
        ] {
            app.relationships.insert(rel.into(), target.into());
        }
        let svc = |name: &str, ty: &str, version: &str, conf: Value| Service {
            name: name.into(),
            r#type: ty.into(),
            version: version.into(),
            disk: None,
            configuration: conf,
            relationships: Default::default(),
        };
        let t = Topology {
            applications: vec![
                app.clone(),
                Application {
                    name: "api".into(),
                    r#type: Some("nodejs:20".into()),
                    ..Default::default()
                },
            ],
            services: vec![
                svc(
                    "db",
                    "mariadb",
                    "10.6",
                    json!({"schemas": ["main", "stats"], "endpoints": {"admin": {"default_schema": "stats"}}}),
                ),
                svc("pg", "postgresql", "16", Value::Null),
                svc("cache", "redis", "7.2", Value::Null),
            ],
            routes: vec![],
        };
        let v = relationships_json(&t, &app);
        let db = &v["database"][0];
        assert_eq!(db["host"], "database.internal");
        assert_eq!(db["scheme"], "mysql");
        assert_eq!(db["port"], 3306);
        assert_eq!(db["username"], "user");
        assert_eq!(db["password"], "");
        assert_eq!(db["path"], "main");
        assert_eq!(db["rel"], "mysql");
        assert_eq!(db["service"], "db");
        assert_eq!(db["type"], "mariadb:10.6");
        assert_eq!(db["query"]["is_master"], true);
        assert_eq!(db["url"], "mysql://user:@database.internal:3306/main");
        assert_eq!(v["admin"][0]["username"], "admin");
        assert_eq!(v["admin"][0]["path"], "stats");
        assert_eq!(v["pg"][0]["url"], "pgsql://main:main@pg.internal:5432/main");
        assert_eq!(v["cache"][0]["url"], "redis://cache.internal:6379");
        assert_eq!(v["cache"][0]["username"], Value::Null);
        assert_eq!(v["api"][0]["type"], "nodejs:20");
        assert_eq!(v["api"][0]["scheme"], "http");
        assert!(v.get("ghost").is_none());
    }

    #[test]
    fn an_endpoint_without_a_default_schema_has_a_null_path() {
        let mut app = Application::default();
        for (rel, target) in [
            ("maria", "db:reporter"),
            ("maria_main", "db:admin"),
            ("pg", "pg:reporter"),
            ("pg_main", "pg:admin"),
        ] {
            app.relationships.insert(rel.into(), target.into());
        }
        let endpoints = |key: &str| {
            json!({"endpoints": {
                "admin": {key: "main", "privileges": {"main": "admin"}},
                "reporter": {"privileges": {"main": "ro"}},
            }})
        };
        let svc = |name: &str, ty: &str, conf: Value| Service {
            name: name.into(),
            r#type: ty.into(),
            version: "1".into(),
            disk: None,
            configuration: conf,
            relationships: Default::default(),
        };
        let t = Topology {
            applications: vec![app.clone()],
            services: vec![
                svc("db", "mariadb", endpoints("default_schema")),
                svc("pg", "postgresql", endpoints("default_database")),
            ],
            routes: vec![],
        };
        let v = relationships_json(&t, &app);
        for (rel, scheme, port) in [("maria", "mysql", 3306), ("pg", "pgsql", 5432)] {
            let e = &v[rel][0];
            assert_eq!(e["path"], Value::Null, "{e}");
            assert_eq!(e["username"], "reporter");
            let url = e["url"].as_str().unwrap();
            assert!(
                url.starts_with(&format!("{scheme}://reporter:"))
                    && url.ends_with(&format!("@{rel}.internal:{port}")),
                "no path in the URL either: {url}"
            );
            assert_eq!(v[format!("{rel}_main")][0]["path"], "main");
        }
    }

    #[test]
    fn variables_by_prefix() {
        let mut app = Application::default();
        app.variables
            .entry("env".into())
            .or_default()
            .insert("DEBUG".into(), json!(false));
        app.variables
            .entry("php".into())
            .or_default()
            .insert("memory_limit".into(), json!("256M"));
        assert_eq!(
            variables_json(&app),
            json!({"env:DEBUG": false, "php:memory_limit": "256M"})
        );
    }

    #[test]
    fn application_in_platform_shape() {
        let mut app = Application {
            name: "app".into(),
            r#type: Some("python:3.11".into()),
            ..Default::default()
        };
        app.hooks.build = Some("pip install -r requirements.txt".into());
        app.web.start = Some("gunicorn myapp.wsgi".into());
        app.relationships
            .insert("database".into(), "db:postgresql".into());
        let a = application_json(&app);
        assert_eq!(a["name"], "app");
        assert_eq!(a["type"], "python:3.11");
        assert_eq!(a["hooks"]["build"], "pip install -r requirements.txt");
        assert_eq!(a["hooks"]["deploy"], Value::Null);
        assert_eq!(a["web"]["commands"]["start"], "gunicorn myapp.wsgi");
        assert_eq!(a["relationships"]["database"], "db:postgresql");
        assert_eq!(a["source"]["root"], Value::Null);
    }
}
