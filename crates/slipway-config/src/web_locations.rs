//! `web.locations`: the legacy keys (`document_root`, `passthru`, `index_files`,
//! `expires`, `whitelist`, `blacklist`) mapped onto a `/` location, the checks made at
//! validate (a root outside the app, a rule that does not compile or is too large, an
//! `expires` that is no duration, a passthru that is no path), and `expires` values.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::diag::Diagnostic;
use crate::files::normalize;
use crate::keypath::KeyPath;
use crate::yaml::{Kind, Node};

/// Largest compiled size of a rule's regular expression (the router's limit too).
pub const MAX_RULE_REGEX_SIZE: usize = 1 << 20;

/// A static file's cache lifetime, from `expires`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheLifetime {
    /// `-1`: Platform.sh's default, no caching headers.
    NoCache,
    /// Cached this many seconds.
    Seconds(u64),
}

/// Read an `expires` value: seconds as a number, or a duration like `30s`, `5m`, `1h`,
/// `2d`, `1w`, `1M` (30 days), `1y` (365 days), `1h30m`, `1500ms`; `-1` (Platform.sh's
/// default) means no caching headers.
pub fn expires_value(v: &Value) -> Result<CacheLifetime, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("`{other}` is not a duration")),
    };
    if text == "-1" || text == "-1s" {
        return Ok(CacheLifetime::NoCache);
    }
    let bad =
        || format!("expires `{text}` is not a duration (like `30s`, `5m`, `1h`, `7d`, or -1)");
    if text.is_empty() || text.starts_with('-') {
        return Err(bad());
    }
    if let Some(ms) = text
        .strip_suffix("ms")
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: u64 = ms.parse().map_err(|_| bad())?;
        return Ok(CacheLifetime::Seconds(n / 1000));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            'M' => 30 * 86_400,
            'y' => 365 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    Ok(CacheLifetime::Seconds(total))
}

/// How many backtracking steps one match of a rule may take before it counts as no match
/// (look-around and backreferences backtrack; this bounds a catastrophic pattern).
pub const RULE_BACKTRACK_LIMIT: usize = 100_000;

/// Compile a rule's regular expression as the router does. Platform.sh's rules are PCRE
/// (nginx's): look-around and backreferences are accepted (`fancy-regex`, which hands
/// everything else to the `regex` crate's automata), matching bounded by
/// [`RULE_BACKTRACK_LIMIT`].
pub fn rule_regex(pattern: &str) -> Result<fancy_regex::Regex, String> {
    // The size limit, checked by the `regex` crate itself (which fancy-regex builds lazily).
    if let Err(regex::Error::CompiledTooBig(_)) = regex::RegexBuilder::new(pattern)
        .size_limit(MAX_RULE_REGEX_SIZE)
        .build()
    {
        return Err(format!(
            "the regular expression `{pattern}` is too large (over {} KiB compiled)",
            MAX_RULE_REGEX_SIZE / 1024
        ));
    }
    fancy_regex::RegexBuilder::new(pattern)
        .delegate_size_limit(MAX_RULE_REGEX_SIZE)
        .backtrack_limit(RULE_BACKTRACK_LIMIT)
        .build()
        .map_err(|e| {
            let why = e.to_string();
            if why.contains("size limit") || why.contains("too big") {
                format!(
                    "the regular expression `{pattern}` is too large (over {} KiB compiled)",
                    MAX_RULE_REGEX_SIZE / 1024
                )
            } else {
                format!("`{pattern}` is not a valid regular expression: {why}")
            }
        })
}

/// Whether anything can send a request to `app`'s web process, so that it is expected to
/// listen (the health check probes `$PORT` or `$SOCKET`; otherwise it only checks that the
/// process keeps running, as Platform.sh expects nothing of a process nobody reaches):
/// another app's or a service's relationship names it (`APP:http`), or a route's
/// `upstream` is the app and its locations pass some request through to the process (it
/// has no locations, some path matches no location, or a location or one of its rules has
/// a `passthru`).
pub fn process_reached(topology: &crate::Topology, app: &crate::Application) -> bool {
    let names_app = |rels: &BTreeMap<String, String>| {
        rels.values()
            .any(|target| target.split(':').next() == Some(app.name.as_str()))
    };
    let related = topology
        .applications
        .iter()
        .filter(|a| a.name != app.name)
        .any(|a| names_app(&a.relationships))
        || topology
            .services
            .iter()
            .any(|s| names_app(&s.relationships));
    let routed = topology
        .routes
        .iter()
        .any(|r| matches!(&r.kind, crate::RouteKind::Upstream { app: to, .. } if *to == app.name));
    related || (routed && passes_through(&app.web.locations))
}

/// Whether some request reaches the app through `locations` (as [`locations`] gives them):
/// none at all, no `/` location (a path no location matches goes to the app), or a
/// `passthru` that is not `false` on a location or a rule.
fn passes_through(locations: &BTreeMap<String, Value>) -> bool {
    let passthru = |v: &Value| {
        v.get("passthru")
            .is_some_and(|p| !matches!(p, Value::Bool(false) | Value::Null))
    };
    locations.is_empty()
        || !locations.contains_key("/")
        || locations.values().any(|loc| {
            passthru(loc)
                || loc
                    .get("rules")
                    .and_then(Value::as_object)
                    .is_some_and(|rules| rules.values().any(passthru))
        })
}

/// The locations of an app's `web`: `web.locations` as written, or, without it, the legacy
/// keys as a `/` location; empty when there are neither.
pub(crate) fn locations(web: Option<&Node>) -> BTreeMap<String, Value> {
    let Some(web) = web else {
        return BTreeMap::new();
    };
    if let Some(locations) = web.get("locations") {
        return locations
            .entries()
            .iter()
            .map(|e| (e.key.clone(), e.value.to_json()))
            .collect();
    }
    let legacy = [
        "document_root",
        "passthru",
        "index_files",
        "expires",
        "whitelist",
        "blacklist",
    ];
    if !legacy.iter().any(|k| web.get(k).is_some()) {
        return BTreeMap::new();
    }
    let mut root = serde_json::Map::new();
    if let Some(dir) = web.get("document_root").and_then(Node::as_str) {
        root.insert("root".into(), json!(dir.trim_start_matches('/')));
    }
    for (from, to) in [
        ("passthru", "passthru"),
        ("index_files", "index"),
        ("expires", "expires"),
    ] {
        if let Some(v) = web.get(from) {
            root.insert(to.into(), v.to_json());
        }
    }
    let mut rules = serde_json::Map::new();
    let patterns = |key: &str| -> Vec<String> {
        match web.get(key).map(|n| &n.kind) {
            Some(Kind::Seq(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    if web.get("whitelist").is_some() {
        root.insert("allow".into(), json!(false));
        for p in patterns("whitelist") {
            rules.insert(p, json!({"allow": true}));
        }
    }
    for p in patterns("blacklist") {
        rules.insert(p, json!({"allow": false}));
    }
    if !rules.is_empty() {
        root.insert("rules".into(), Value::Object(rules));
    }
    BTreeMap::from([("/".to_string(), Value::Object(root))])
}

/// The patterns of each location's `rules` in the order written (legacy `whitelist`
/// then `blacklist` for the `/` location made from the legacy keys).
pub(crate) fn rule_order(web: Option<&Node>) -> BTreeMap<String, Vec<String>> {
    let Some(web) = web else {
        return BTreeMap::new();
    };
    let mut order = BTreeMap::new();
    if let Some(locations) = web.get("locations") {
        for e in locations.entries() {
            if let Some(rules) = e.value.get("rules") {
                let patterns: Vec<String> = rules.entries().iter().map(|r| r.key.clone()).collect();
                if !patterns.is_empty() {
                    order.insert(e.key.clone(), patterns);
                }
            }
        }
        return order;
    }
    let mut patterns = Vec::new();
    for key in ["whitelist", "blacklist"] {
        if let Some(Kind::Seq(items)) = web.get(key).map(|n| &n.kind) {
            patterns.extend(items.iter().filter_map(|i| i.as_str().map(str::to_string)));
        }
    }
    if !patterns.is_empty() {
        order.insert("/".to_string(), patterns);
    }
    order
}

/// Check an app's `web` node: its locations (or legacy keys), reporting at the values.
pub(crate) fn check(web: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    if let Some(locations) = web.get("locations") {
        let path = path.with("locations");
        for e in locations.entries() {
            let at = path.with(&e.key);
            if !e.key.starts_with('/') {
                diags.push(at.error(
                    &e.key_pos,
                    format!("location `{}` must be a URL path starting with /", e.key),
                ));
            }
            check_location(&e.value, &at, diags);
        }
    }
    if let Some(root) = web.get("document_root") {
        check_root(root, &path.with("document_root"), diags);
    }
    if let Some(v) = web.get("expires") {
        check_expires(v, &path.with("expires"), diags);
    }
    if let Some(v) = web.get("passthru") {
        check_passthru(v, &path.with("passthru"), diags);
    }
    for key in ["whitelist", "blacklist"] {
        if let Some(Kind::Seq(items)) = web.get(key).map(|n| &n.kind) {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = item.as_str() {
                    if let Err(why) = rule_regex(p) {
                        diags.push(path.with(key).with(&i.to_string()).error(&item.pos, why));
                    }
                }
            }
        }
    }
}

fn check_location(loc: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    if let Some(root) = loc.get("root") {
        check_root(root, &path.with("root"), diags);
    }
    check_overrides(loc, path, diags);
    if let Some(rules) = loc.get("rules") {
        for e in rules.entries() {
            let at = path.with("rules").with(&e.key);
            if let Err(why) = rule_regex(&e.key) {
                diags.push(at.error(&e.key_pos, why));
            }
            check_overrides(&e.value, &at, diags);
        }
    }
}

/// The keys a rule may override, checked where a location or a rule sets them.
fn check_overrides(node: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    if let Some(v) = node.get("expires") {
        check_expires(v, &path.with("expires"), diags);
    }
    if let Some(v) = node.get("passthru") {
        check_passthru(v, &path.with("passthru"), diags);
    }
    if let Some(headers) = node.get("headers") {
        for e in headers.entries() {
            let name_ok = !e.key.is_empty()
                && e.key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok {
                diags.push(
                    path.with("headers")
                        .with(&e.key)
                        .error(&e.key_pos, format!("`{}` is not a header name", e.key)),
                );
            }
        }
    }
}

fn check_root(root: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    let Some(r) = root.as_str() else {
        return;
    };
    if normalize("", r).is_none() {
        diags.push(path.error(
            &root.pos,
            format!("root `{r}` leaves the app; a location's root is a folder of the app"),
        ));
    }
}

fn check_expires(v: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    if let Err(why) = expires_value(&v.to_json()) {
        diags.push(path.error(&v.pos, why));
    }
}

fn check_passthru(v: &Node, path: &KeyPath, diags: &mut Vec<Diagnostic>) {
    if let Some(p) = v.as_str() {
        if !p.starts_with('/') || p.split('/').any(|s| s == "..") {
            diags.push(path.error(
                &v.pos,
                format!(
                    "passthru `{p}` must be true, false or a URL path of the app like /index.php"
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_values() {
        let e = |v: Value| expires_value(&v);
        assert_eq!(e(json!(-1)), Ok(CacheLifetime::NoCache));
        assert_eq!(e(json!("-1")), Ok(CacheLifetime::NoCache));
        assert_eq!(e(json!(300)), Ok(CacheLifetime::Seconds(300)));
        assert_eq!(e(json!("1h")), Ok(CacheLifetime::Seconds(3600)));
        assert_eq!(e(json!("2w")), Ok(CacheLifetime::Seconds(14 * 86_400)));
        assert_eq!(e(json!("1h30m")), Ok(CacheLifetime::Seconds(5400)));
        assert_eq!(e(json!("0")), Ok(CacheLifetime::Seconds(0)));
        assert_eq!(e(json!("2500ms")), Ok(CacheLifetime::Seconds(2)));
        assert!(e(json!("soon")).is_err());
        assert!(e(json!("-5m")).is_err());
        assert!(e(json!("1x")).is_err());
        assert!(e(json!(true)).is_err());
    }

    #[test]
    fn rule_regexes() {
        assert!(rule_regex(r"\.(css|js)$").is_ok());
        assert!(rule_regex("(").unwrap_err().contains("not a valid"));
        assert!(rule_regex(r"\w{1000}\w{1000}\w{1000}")
            .unwrap_err()
            .contains("too large"));
    }
}
