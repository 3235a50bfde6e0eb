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

/// A rule's regular expression as validate checks it: it compiles as the router compiles
/// it ([`rule_regex`]), and it cannot take exponential time in a backtracking engine
/// (issue 17: "a regular expression that ... could be catastrophic" is refused). Platform.sh
/// runs rules with PCRE, which backtracks on every pattern; the router's engine backtracks
/// only where look-around or backreferences need it (and stops at
/// [`RULE_BACKTRACK_LIMIT`], counting the rule as not matching), so a pattern refused here
/// is one that a crafted path could make slow on Platform.sh or skip here. Refused: an
/// unbounded repetition of something that itself repeats without bound where one run of
/// text can be split between iterations in several ways (`(a+)+`, `(.*)*`, but not
/// `([a-z]+/)*`) or of alternatives that can begin with the same character (`(a|aa)+`, `(\w|\d)*`).
pub fn check_rule_pattern(pattern: &str) -> Result<(), String> {
    rule_regex(pattern)?;
    let tree = fancy_regex::Expr::parse_tree(pattern)
        .map_err(|e| format!("`{pattern}` is not a valid regular expression: {e}"))?;
    match catastrophic(&tree.expr, false) {
        Some(why) => Err(format!(
            "the regular expression `{pattern}` could take exponential time on a crafted path ({why}): a backtracking engine (PCRE on Platform.sh) tries every way of splitting the input; write it without the nested or ambiguous repetition"
        )),
        None => Ok(()),
    }
}

/// Why `expr` could backtrack catastrophically, if it could; `in_unbounded` says whether an
/// enclosing repetition is unbounded.
fn catastrophic(expr: &fancy_regex::Expr, in_unbounded: bool) -> Option<&'static str> {
    use fancy_regex::Expr;
    match expr {
        Expr::Repeat { child, hi, .. } if *hi == usize::MAX => {
            if ambiguous_iteration(child) {
                return Some(
                    "an unbounded repetition inside another whose iterations can split the same text in several ways, like `(a+)+`",
                );
            }
            catastrophic(child, true)
        }
        Expr::Alt(branches) if in_unbounded => {
            let firsts: Vec<FirstChars> = branches.iter().map(first_chars).collect();
            for (i, a) in firsts.iter().enumerate() {
                if firsts[i + 1..].iter().any(|b| a.overlaps(b)) {
                    return Some(
                        "a repeated choice whose alternatives can begin with the same character, like `(a|aa)+`",
                    );
                }
            }
            branches.iter().find_map(|b| catastrophic(b, true))
        }
        // A look-around is matched on its own, whatever repeats around it.
        Expr::LookAround(child, _) => catastrophic(child, false),
        e => e
            .children_iter()
            .find_map(|c| catastrophic(c, in_unbounded)),
    }
}

/// Whether the body of an unbounded repetition holds an unbounded repetition that what
/// follows it (the rest of the body, or the next iteration) can continue: `(a+)+`,
/// `(.*)*`, `([a-z]+/?)+` can split one run of text between iterations in exponentially
/// many ways; `([a-z]+/)*` cannot, as each iteration ends at a `/` the inner one never eats.
fn ambiguous_iteration(body: &fancy_regex::Expr) -> bool {
    tail_conflict(body, &first_chars(body))
}

/// Whether an unbounded repetition in `expr` can match a character that `follow` (what
/// may come right after `expr`) can begin with.
fn tail_conflict(expr: &fancy_regex::Expr, follow: &FirstChars) -> bool {
    use fancy_regex::Expr;
    match expr {
        Expr::Group(child) => tail_conflict(child, follow),
        Expr::Repeat { child, hi, .. } if *hi == usize::MAX => first_chars(child).overlaps(follow),
        Expr::Alt(branches) => branches.iter().any(|b| tail_conflict(b, follow)),
        Expr::Concat(items) => (0..items.len()).any(|i| {
            let mut after = FirstChars::none();
            let mut open = true;
            for item in &items[i + 1..] {
                after.add(&first_chars(item));
                if !nullable(item) {
                    open = false;
                    break;
                }
            }
            if open {
                after.add(follow);
            }
            tail_conflict(&items[i], &after)
        }),
        _ => false,
    }
}

/// The characters a match of an expression can begin with: each ASCII character, and
/// whether any other (a non-ASCII one, or one this analysis cannot tell) can.
#[derive(Clone)]
struct FirstChars {
    ascii: [bool; 128],
    other: bool,
}

impl FirstChars {
    fn none() -> Self {
        FirstChars {
            ascii: [false; 128],
            other: false,
        }
    }
    fn all() -> Self {
        FirstChars {
            ascii: [true; 128],
            other: true,
        }
    }
    fn add(&mut self, o: &FirstChars) {
        for (a, b) in self.ascii.iter_mut().zip(o.ascii.iter()) {
            *a |= *b;
        }
        self.other |= o.other;
    }
    fn overlaps(&self, o: &FirstChars) -> bool {
        (self.other && o.other) || self.ascii.iter().zip(o.ascii.iter()).any(|(a, b)| *a && *b)
    }
}

/// [`FirstChars`] of `expr` (a superset where it cannot tell).
fn first_chars(expr: &fancy_regex::Expr) -> FirstChars {
    use fancy_regex::Expr;
    match expr {
        Expr::Empty | Expr::Assertion(_) | Expr::LookAround(..) => FirstChars::none(),
        Expr::Literal { val, casei } => {
            let mut f = FirstChars::none();
            match val.chars().next() {
                Some(c) if c.is_ascii() => {
                    f.ascii[c as usize] = true;
                    if *casei {
                        f.ascii[c.to_ascii_lowercase() as usize] = true;
                        f.ascii[c.to_ascii_uppercase() as usize] = true;
                    }
                }
                Some(_) => f.other = true,
                None => {}
            }
            f
        }
        Expr::Delegate { inner, casei } => {
            let re = regex::RegexBuilder::new(&format!("^(?:{inner})$"))
                .case_insensitive(*casei)
                .build();
            match re {
                Ok(re) => {
                    let mut f = FirstChars::none();
                    let mut buf = [0u8; 4];
                    for c in 0u8..128 {
                        f.ascii[c as usize] = re.is_match((c as char).encode_utf8(&mut buf));
                    }
                    // Whether it can match a non-ASCII character: assume so unless it is
                    // a class of ASCII only, which a sample of common letters cannot tell.
                    f.other = ["é", "ß", "ж", "中", "\u{1F600}"]
                        .iter()
                        .any(|c| re.is_match(c));
                    f
                }
                Err(_) => FirstChars::all(),
            }
        }
        Expr::Concat(items) => {
            let mut f = FirstChars::none();
            for item in items {
                f.add(&first_chars(item));
                if !nullable(item) {
                    break;
                }
            }
            f
        }
        Expr::Alt(branches) => {
            let mut f = FirstChars::none();
            for b in branches {
                f.add(&first_chars(b));
            }
            f
        }
        Expr::Group(child) => first_chars(child),
        Expr::Repeat { child, .. } => first_chars(child),
        e => {
            // Anything else (`.`, backreferences, atomic groups, conditionals): a
            // superset, from its children where it has any.
            let mut children = e.children_iter().peekable();
            if children.peek().is_none() {
                return FirstChars::all();
            }
            let mut f = FirstChars::none();
            for c in children {
                f.add(&first_chars(c));
            }
            f
        }
    }
}

/// Whether `expr` can match the empty string (a superset where it cannot tell: `false`
/// only when it surely consumes a character).
fn nullable(expr: &fancy_regex::Expr) -> bool {
    use fancy_regex::Expr;
    match expr {
        Expr::Literal { val, .. } => val.is_empty(),
        Expr::Delegate { .. } | Expr::Any { .. } => false,
        Expr::Concat(items) => items.iter().all(nullable),
        Expr::Alt(branches) => branches.iter().any(nullable),
        Expr::Group(child) => nullable(child),
        Expr::Repeat { child, lo, .. } => *lo == 0 || nullable(child),
        _ => true,
    }
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
                    if let Err(why) = check_rule_pattern(p) {
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
            if let Err(why) = check_rule_pattern(&e.key) {
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
    fn catastrophic_patterns_are_refused_and_ordinary_ones_pass() {
        for p in [
            r"^/(a+)+$",
            r"^/(a|aa)+(?=\.env)",
            r"(.*)*x",
            r"^/(\w|\d)*\.php$",
            r"^/([a-z]+/?)+$",
            r"(?i)(A|ab)*$",
        ] {
            let e = check_rule_pattern(p).expect_err(p);
            assert!(e.contains("could take exponential time"), "{p}: {e}");
        }
        for p in [
            r"\.(jpe?g|png|gif|svgz?|css|js|map|ico|bmp|eot|woff2?|otf|ttf)$",
            r"^/wp-content/cache/",
            r"^/(foo|bar)+$",
            r"^/(\w|-)*\.php$",
            r"^/sites/[^/]+/files/(css|js)/",
            r"/\.(?!well-known)",
            r"^/([a-z]+/)*index\.php$",
            r"(?:[^/]+/)*[^/]+\.(?:ini|log|conf)$",
        ] {
            assert_eq!(check_rule_pattern(p), Ok(()), "{p}");
        }
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
