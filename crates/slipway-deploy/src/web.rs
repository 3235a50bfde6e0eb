//! The router's view of an app's `web.locations` ([`slipway_router::Site`]): its files
//! are the release's unpacked slug (`DATA/slugs/HEX/`, read-only, what the container
//! sees as `/app`), its locations typed from the topology (legacy keys were already
//! mapped onto a `/` location by the config crate).

use serde_json::Value;
use slipway_config::web_locations::{expires_value, CacheLifetime};
use slipway_config::Application;
use slipway_router::{Expires, Location, LocationRule, Passthru, Site, SiteMount};

use crate::environment::AppInstance;
use crate::Platform;

/// The site of `app` (running as `instance` in the environment `env` of `project`), if it
/// has locations, is PHP-FPM or runs no web process (then the router answers every request
/// itself: a static site with no locations answers 404, never a dead upstream's 502).
pub fn site_of(
    platform: &Platform,
    (project, env): (&str, &str),
    app: &Application,
    instance: &AppInstance,
) -> Option<Site> {
    let fastcgi = instance.fastcgi;
    if app.web.locations.is_empty() && !fastcgi && !instance.no_web_process {
        return None;
    }
    let digest = match slipway_slug::Digest::parse(&instance.slug) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(app = %app.name, slug = %instance.slug, "the app's slug is not a digest ({e}); its locations are not served");
            return None;
        }
    };
    let tag: String = digest.hex().chars().take(12).collect();
    Some(Site {
        app_dir: platform.data().unpacked_slugs().join(digest.hex()),
        tag,
        locations: if app.web.locations.is_empty() && fastcgi {
            vec![default_php_location()]
        } else {
            app.web
                .locations
                .iter()
                .map(|(prefix, value)| {
                    let mut loc = location(&app.name, prefix, value);
                    if let Some(order) = app.web.rule_order.get(prefix) {
                        in_written_order(&mut loc.rules, order);
                    }
                    loc
                })
                .collect()
        },
        fastcgi,
        no_web_process: instance.no_web_process,
        mounts: site_mounts(platform, (project, env), instance),
    })
}

/// The persistent mounts of `instance` as the router reaches them: the `files` folder of
/// each volume (mounted on the host while the environment runs) and the mount's folder in
/// it. `tmp` mounts are per container, not one folder: a root there serves the slug's.
fn site_mounts(
    platform: &Platform,
    (project, env): (&str, &str),
    instance: &AppInstance,
) -> Vec<SiteMount> {
    let store = platform.data().volumes();
    instance
        .mounts
        .iter()
        .filter(|m| !m.tmp)
        .filter_map(|m| match store.volume(project, env, &m.volume) {
            Ok(v) => Some(SiteMount {
                path: normalize_root(&m.path),
                volume_files: v.dir.join("files"),
                folder: m.folder.clone(),
            }),
            Err(e) => {
                tracing::warn!(project, env, mount = %m.path, "a mount's volume: {e}; a location root there serves the slug's folder");
                None
            }
        })
        .collect()
}

/// The location of a PHP-FPM app that configures none: every request runs the app's
/// `.php` files (from the app's folder) or `/index.php`; no file is served as it is.
fn default_php_location() -> Location {
    let mut loc = Location::new("/");
    loc.root = Some(String::new());
    loc.passthru = Passthru::Script("/index.php".into());
    loc.scripts = true;
    loc.allow = false;
    loc
}

/// One location from its configured value (checked at validate; a value of another
/// shape is logged and left at its default).
fn location(app: &str, prefix: &str, value: &Value) -> Location {
    let mut loc = Location::new(prefix);
    let odd = |key: &str| {
        tracing::warn!(
            app,
            location = prefix,
            key,
            "a location value of an unexpected shape is ignored"
        )
    };
    if let Some(v) = value.get("root") {
        match v {
            Value::String(root) => loc.root = Some(normalize_root(root)),
            Value::Null => {}
            _ => odd("root"),
        }
    }
    if let Some(v) = value.get("passthru") {
        match passthru(v) {
            Some(p) => loc.passthru = p,
            None => odd("passthru"),
        }
    }
    if let Some(v) = value.get("index") {
        match v {
            Value::Array(items) => {
                loc.index = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect();
            }
            Value::Null => {}
            _ => odd("index"),
        }
    }
    if let Some(v) = value.get("expires") {
        match expires(v) {
            Some(e) => loc.expires = e,
            None => odd("expires"),
        }
    }
    if let Some(v) = value.get("allow").and_then(Value::as_bool) {
        loc.allow = v;
    }
    if let Some(v) = value.get("scripts").and_then(Value::as_bool) {
        loc.scripts = v;
    }
    if let Some(v) = value.get("headers") {
        loc.headers = headers(v);
    }
    if let Some(Value::Object(rules)) = value.get("rules") {
        loc.rules = rules
            .iter()
            .map(|(pattern, rule)| LocationRule {
                pattern: pattern.clone(),
                allow: rule.get("allow").and_then(Value::as_bool),
                expires: rule.get("expires").and_then(expires),
                passthru: rule.get("passthru").and_then(passthru),
                scripts: rule.get("scripts").and_then(Value::as_bool),
                headers: rule.get("headers").map(headers),
            })
            .collect();
    }
    loc
}

/// Put `rules` in the order their patterns were written (`order`); patterns it does not
/// name keep their place after those it does.
fn in_written_order(rules: &mut [LocationRule], order: &[String]) {
    rules.sort_by_key(|r| {
        order
            .iter()
            .position(|p| *p == r.pattern)
            .unwrap_or(usize::MAX)
    });
}

/// A root relative to the app's folder: no leading slash, no `.` or empty segments.
fn normalize_root(root: &str) -> String {
    root.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn passthru(v: &Value) -> Option<Passthru> {
    match v {
        Value::Bool(true) => Some(Passthru::App),
        Value::Bool(false) | Value::Null => Some(Passthru::Off),
        Value::String(p) => Some(Passthru::Script(p.clone())),
        _ => None,
    }
}

fn expires(v: &Value) -> Option<Expires> {
    match expires_value(v).ok()? {
        // Platform.sh's default: "-1" means no caching headers are added at all.
        CacheLifetime::NoCache => Some(Expires::Unset),
        CacheLifetime::Seconds(s) => Some(Expires::Seconds(s)),
    }
}

fn headers(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locations_are_typed() {
        let loc = location(
            "app",
            "/",
            &json!({
                "root": "/web/./public/",
                "passthru": "/index.php",
                "index": ["index.html"],
                "expires": "1h",
                "allow": false,
                "scripts": true,
                "headers": {"X-Frame-Options": "DENY"},
                "rules": {"\\.css$": {"allow": true, "expires": -1}}
            }),
        );
        assert_eq!(loc.root.as_deref(), Some("web/public"));
        assert_eq!(loc.passthru, Passthru::Script("/index.php".into()));
        assert_eq!(loc.index, vec!["index.html"]);
        assert_eq!(loc.expires, Expires::Seconds(3600));
        assert!(!loc.allow && loc.scripts);
        assert_eq!(loc.headers, vec![("X-Frame-Options".into(), "DENY".into())]);
        assert_eq!(loc.rules[0].allow, Some(true));
        assert_eq!(loc.rules[0].expires, Some(Expires::Unset));
        let mut rules = location("app", "/", &json!({"rules": {"a": {}, "b": {}, "c": {}}})).rules;
        in_written_order(&mut rules, &["c".into(), "a".into()]);
        let patterns: Vec<&str> = rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(patterns, vec!["c", "a", "b"]);
        let loc = location("app", "/", &json!({"passthru": true}));
        assert_eq!(loc.passthru, Passthru::App);
        assert_eq!(loc.root, None);
        assert!(loc.allow);
    }
}
