//! The immutable route table: host name -> (environment, rules by path prefix), and
//! environment -> its hosts and live release.
//!
//! A table is never changed in place: the router builds a modified copy and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::header::HeaderValue;
use hyper::StatusCode;

use crate::gate::Gate;
use crate::locations::WebSite;
use crate::release::LiveRelease;
use crate::routes::{EnvRoutes, RouteAction, RouteScheme};

/// What a rule does with a matching request.
#[derive(Debug)]
pub(crate) enum Action {
    /// Proxy to the release's pool at this index.
    Upstream(usize),
    /// An app with locations: its files first, else the release's pool at this index.
    Site(usize, Arc<WebSite>),
    /// Redirect to `to` + the rest of the path + the query.
    Redirect {
        /// The target URL.
        to: String,
        /// The status.
        code: StatusCode,
    },
}

/// One path prefix of a host.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) prefix: Box<str>,
    pub(crate) action: Action,
    pub(crate) scheme: RouteScheme,
    /// `Strict-Transport-Security` of the rule's answers over TLS.
    pub(crate) hsts: Option<HeaderValue>,
}

/// What a host leads to.
#[derive(Debug)]
pub(crate) enum HostTarget {
    /// The environment is being deployed for the first time: 503 + Retry-After.
    Deploying,
    /// The live release, with the host's rules, longest prefix first.
    Live {
        release: Arc<LiveRelease>,
        rules: Box<[Rule]>,
    },
}

/// One host's entry.
#[derive(Debug)]
pub(crate) struct HostEntry {
    /// Closed while the environment's routes are being switched.
    pub(crate) gate: Arc<Gate>,
    pub(crate) target: HostTarget,
}

impl HostEntry {
    /// The rule for `path` (longest matching prefix), if any, on a connection that is
    /// TLS or not: of rules with that prefix, the one whose scheme the connection has
    /// ([`RouteScheme::prefers`]), else the first.
    pub(crate) fn rule_for(&self, path: &str, tls: bool) -> Option<&Rule> {
        let HostTarget::Live { rules, .. } = &self.target else {
            return None;
        };
        let mut matching = rules.iter().filter(|r| path_matches(&r.prefix, path));
        let first = matching.next()?;
        if first.scheme.prefers(tls) {
            return Some(first);
        }
        matching
            .take_while(|r| r.prefix == first.prefix)
            .find(|r| r.scheme.prefers(tls))
            .or(Some(first))
    }
}

impl RouteTable {
    /// The `Strict-Transport-Security` value of the rule a request over TLS for `path`
    /// on `host` gets, if that rule has HSTS.
    pub(crate) fn hsts_for(&self, host: &str, path: &str) -> Option<&HeaderValue> {
        self.lookup(host)?.rule_for(path, true)?.hsts.as_ref()
    }
}

/// Whether `path` is under `prefix`: `/api` matches `/api` and `/api/x`, not `/apiary`.
pub(crate) fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/')
}

/// One environment's entry.
#[derive(Clone, Debug)]
struct EnvEntry {
    hosts: Vec<String>,
    release: Option<Arc<LiveRelease>>,
}

/// A snapshot of all routes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTable {
    hosts: HashMap<String, Arc<HostEntry>>,
    envs: HashMap<String, EnvEntry>,
}

impl RouteTable {
    /// The entry of a host name as sent by a client (port, case and a trailing dot are
    /// ignored). Allocates only for hosts that need lowercasing.
    pub(crate) fn lookup(&self, host: &str) -> Option<&Arc<HostEntry>> {
        let bare = strip_port(host.trim()).trim_end_matches('.');
        if bare.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(bare.to_ascii_lowercase().as_str())
        } else {
            self.hosts.get(bare)
        }
    }

    /// The live release of an environment.
    pub(crate) fn release_of(&self, env: &str) -> Option<&Arc<LiveRelease>> {
        self.envs.get(env).and_then(|e| e.release.as_ref())
    }

    /// The hosts currently owned by `env`.
    pub(crate) fn hosts_of(&self, env: &str) -> Vec<String> {
        self.envs
            .get(env)
            .map(|e| e.hosts.clone())
            .unwrap_or_default()
    }

    /// The hosts with a live rule of a route written `https://` (unsorted).
    pub(crate) fn https_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter(|(_, entry)| match &entry.target {
                HostTarget::Live { rules, .. } => {
                    rules.iter().any(|r| r.scheme == RouteScheme::Https)
                }
                HostTarget::Deploying => false,
            })
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// The environment that routes `host` (normalized), live or being deployed.
    pub(crate) fn owner_of(&self, host: &str) -> Option<&str> {
        self.envs
            .iter()
            .find(|(_, e)| e.hosts.iter().any(|h| h == host))
            .map(|(name, _)| name.as_str())
    }

    /// A copy where `env`'s hosts are those of `routes`, leading to `release`.
    /// `routes` must have been validated against `release`.
    pub(crate) fn with_live(
        &self,
        env: &str,
        gate: &Arc<Gate>,
        release: &Arc<LiveRelease>,
        routes: &EnvRoutes,
        sites: &[(String, Arc<WebSite>)],
    ) -> RouteTable {
        let mut by_host: Vec<(String, Vec<Rule>)> = Vec::new();
        for rule in &routes.rules {
            let host = normalize_host(&rule.host);
            let action = match &rule.action {
                RouteAction::Upstream(app) => match release.index_of(app) {
                    Some(i) => match sites.iter().find(|(name, _)| name == app) {
                        Some((_, site)) => Action::Site(i, Arc::clone(site)),
                        None => Action::Upstream(i),
                    },
                    None => continue,
                },
                RouteAction::Redirect { to, code } => Action::Redirect {
                    to: to.clone(),
                    code: StatusCode::from_u16(*code).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                },
            };
            let slot = match by_host.iter().position(|(h, _)| *h == host) {
                Some(i) => i,
                None => {
                    by_host.push((host, Vec::new()));
                    by_host.len() - 1
                }
            };
            let rules = &mut by_host[slot].1;
            if !rules
                .iter()
                .any(|r| *r.prefix == *rule.path && r.scheme == rule.scheme)
            {
                let hsts = rule.hsts.as_deref().and_then(|v| {
                    HeaderValue::from_str(v)
                        .map_err(|_| tracing::warn!(host = %rule.host, value = v, "an HSTS value that is no header value: not sent"))
                        .ok()
                });
                rules.push(Rule {
                    prefix: rule.path.clone().into_boxed_str(),
                    action,
                    scheme: rule.scheme,
                    hsts,
                });
            }
        }
        let entries = by_host
            .into_iter()
            .map(|(host, mut rules)| {
                // Longest prefix first; a stable sort keeps the given order otherwise.
                rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
                let entry = HostEntry {
                    gate: Arc::clone(gate),
                    target: HostTarget::Live {
                        release: Arc::clone(release),
                        rules: rules.into_boxed_slice(),
                    },
                };
                (host, entry)
            })
            .collect();
        self.with_entries(env, entries, Some(Arc::clone(release)))
    }

    /// A copy where `env`'s `hosts` answer 503 (first deploy in progress).
    pub(crate) fn with_deploying(
        &self,
        env: &str,
        gate: &Arc<Gate>,
        hosts: &[String],
    ) -> RouteTable {
        let entries = hosts
            .iter()
            .map(|h| normalize_host(h))
            .filter(|h| !h.is_empty())
            .map(|h| {
                let entry = HostEntry {
                    gate: Arc::clone(gate),
                    target: HostTarget::Deploying,
                };
                (h, entry)
            })
            .collect();
        self.with_entries(env, entries, None)
    }

    fn with_entries(
        &self,
        env: &str,
        entries: Vec<(String, HostEntry)>,
        release: Option<Arc<LiveRelease>>,
    ) -> RouteTable {
        let mut next = self.without_env(env);
        let mut hosts = Vec::new();
        for (host, entry) in entries {
            if hosts.contains(&host) {
                continue;
            }
            // A host belongs to the environment that routes it until that one lets it
            // go: a second claimant never takes it (the deploy refuses such a claim first).
            if let Some(owner) = next.owner_of(&host) {
                tracing::warn!(host = %host, owner = %owner, claimant = %env, "host kept by the environment that routes it");
                continue;
            }
            next.hosts.insert(host.clone(), Arc::new(entry));
            hosts.push(host);
        }
        hosts.sort();
        next.envs
            .insert(env.to_string(), EnvEntry { hosts, release });
        next
    }

    /// A copy of this table without `env` and its hosts.
    pub(crate) fn without_env(&self, env: &str) -> RouteTable {
        let mut next = self.clone();
        if let Some(entry) = next.envs.remove(env) {
            for host in &entry.hosts {
                next.hosts.remove(host);
            }
        }
        next
    }
}

/// `host` without a `:port` suffix (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    }
}

/// Lowercase host name without port and without a trailing dot.
/// `Example.COM:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub fn normalize_host(host: &str) -> String {
    strip_port(host.trim())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The `Location` of a redirect: `to`, then what follows the rule's `prefix` in `path`,
/// then `?query`.
pub(crate) fn redirect_location(
    to: &str,
    prefix: &str,
    path: &str,
    query: Option<&str>,
) -> Option<HeaderValue> {
    let rest = path.strip_prefix(prefix).unwrap_or("");
    let mut location = String::with_capacity(to.len() + rest.len() + 2);
    if rest.is_empty() {
        location.push_str(to);
    } else {
        location.push_str(to.trim_end_matches('/'));
        location.push('/');
        location.push_str(rest.trim_start_matches('/'));
    }
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    HeaderValue::from_str(&location).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouterConfig;
    use crate::routes::{RouteRule, Upstream};

    fn up(release: &str, port: u16) -> Upstream {
        Upstream {
            release: release.into(),
            netns: None,
            port,
            socket: None,
        }
    }

    fn live(t: &RouteTable, host: &str) -> Option<(Arc<LiveRelease>, Vec<String>)> {
        match &t.lookup(host)?.target {
            HostTarget::Live { release, rules } => Some((
                Arc::clone(release),
                rules.iter().map(|r| r.prefix.to_string()).collect(),
            )),
            HostTarget::Deploying => None,
        }
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(
            normalize_host("Main.Demo.LOCALHOST:8080"),
            "main.demo.localhost"
        );
        assert_eq!(
            normalize_host("main.demo.localhost."),
            "main.demo.localhost"
        );
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1"), "[::1");
        assert_eq!(normalize_host(""), "");
        assert_eq!(normalize_host(":80"), "");
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_matches("/", "/anything"));
        assert!(path_matches("/api", "/api"));
        assert!(path_matches("/api", "/api/v1"));
        assert!(!path_matches("/api", "/apiary"));
        assert!(!path_matches("/api", "/"));
        assert!(path_matches("/api/", "/api/v1"));
        assert!(!path_matches("/api/", "/api"));
    }

    #[test]
    fn redirect_keeps_the_rest_of_the_path_and_the_query() {
        let loc = |to, prefix, path, q| {
            redirect_location(to, prefix, path, q)
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default()
        };
        assert_eq!(loc("http://www.x/", "/", "/", None), "http://www.x/");
        assert_eq!(
            loc("http://www.x/", "/", "/a/b", Some("q=1")),
            "http://www.x/a/b?q=1"
        );
        assert_eq!(loc("http://x/new", "/old", "/old", None), "http://x/new");
        assert_eq!(loc("http://x/new", "/old", "/old/", None), "http://x/new/");
        assert_eq!(
            loc("http://x/new/", "/old", "/old/a", None),
            "http://x/new/a"
        );
        assert_eq!(
            loc("http://x/new", "/old/", "/old/a", None),
            "http://x/new/a"
        );
        assert!(redirect_location("http://x/", "/", "/\u{7f}", None).is_none());
    }

    #[test]
    fn each_scheme_gets_its_rule_and_falls_back_to_the_other() {
        let config = RouterConfig::default();
        let gate = Arc::new(Gate::default());
        let r1 = LiveRelease::new("r1".into(), &[("web".into(), up("r1", 1))], &config);
        let rule = |path: &str, action: RouteAction, scheme: RouteScheme| RouteRule {
            host: "a.example".into(),
            path: path.into(),
            action,
            scheme,
            // HSTS on the https:// rule of `/` only.
            hsts: (path == "/" && scheme == RouteScheme::Https)
                .then(|| "max-age=31536000; includeSubDomains".to_string()),
        };
        let web = || RouteAction::Upstream("web".into());
        let to_https = RouteAction::Redirect {
            to: "https://a.example/".into(),
            code: 301,
        };
        let routes = EnvRoutes {
            release: "r1".into(),
            upstreams: vec![],
            sites: vec![],
            rules: vec![
                rule("/", web(), RouteScheme::Https),
                rule("/", to_https, RouteScheme::Http),
                rule("/api", web(), RouteScheme::Https),
            ],
        };
        let t = RouteTable::default().with_live("demo/main", &gate, &r1, &routes, &[]);
        let entry = t.lookup("a.example").expect("entry");
        let is_redirect = |tls: bool, path: &str| {
            matches!(
                entry.rule_for(path, tls).map(|r| &r.action),
                Some(Action::Redirect { .. })
            )
        };
        // `/`: TLS gets the https:// rule, plain HTTP the http:// redirect.
        assert!(!is_redirect(true, "/x"));
        assert!(is_redirect(false, "/x"));
        // `/api` has an https:// rule only: plain HTTP gets it too (no redirect).
        assert!(!is_redirect(false, "/api/x"));
        assert!(!is_redirect(true, "/api/x"));
        // HSTS is the TLS rule's: `/` has it, `/api` (another rule) not, nor another host.
        assert_eq!(
            t.hsts_for("A.example:443", "/x")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000; includeSubDomains")
        );
        assert_eq!(t.hsts_for("a.example", "/api/x"), None);
        assert_eq!(t.hsts_for("b.example", "/x"), None);
    }

    #[test]
    fn longest_prefix_first_and_hosts_stay_with_their_owner() {
        let config = RouterConfig::default();
        let gate = Arc::new(Gate::default());
        let r1 = LiveRelease::new(
            "r1".into(),
            &[("web".into(), up("r1", 1)), ("api".into(), up("r1", 2))],
            &config,
        );
        let rule = |host: &str, path: &str, app: &str| RouteRule {
            host: host.into(),
            path: path.into(),
            action: RouteAction::Upstream(app.into()),
            scheme: RouteScheme::Any,
            hsts: None,
        };
        let routes = EnvRoutes {
            release: "r1".into(),
            upstreams: vec![],
            sites: vec![],
            rules: vec![
                rule("A.example", "/", "web"),
                rule("a.example:80", "/api", "api"),
                rule("a.example", "/api", "web"),
                rule("b.example", "/", "web"),
            ],
        };
        let t = RouteTable::default().with_live("demo/main", &gate, &r1, &routes, &[]);
        assert_eq!(t.hosts_of("demo/main"), vec!["a.example", "b.example"]);
        let (rel, prefixes) = live(&t, "a.EXAMPLE:1234").expect("a routed");
        assert!(Arc::ptr_eq(&rel, &r1));
        assert_eq!(
            prefixes,
            vec!["/api", "/"],
            "longest first, first duplicate wins"
        );
        let entry = t.lookup("a.example").expect("entry");
        assert!(matches!(
            entry.rule_for("/api/x", false).map(|r| &r.action),
            Some(Action::Upstream(1))
        ));
        assert!(matches!(
            entry.rule_for("/apiary", false).map(|r| &r.action),
            Some(Action::Upstream(0))
        ));

        // A host claimed by another env stays with its owner; once the owner lets it go,
        // the next claim gets it.
        let t = t.with_deploying(
            "other/main",
            &gate,
            &["b.example".into(), "c.example".into()],
        );
        let (rel, _) = live(&t, "b.example").expect("b stays with its owner");
        assert!(Arc::ptr_eq(&rel, &r1));
        assert_eq!(t.owner_of("b.example"), Some("demo/main"));
        assert_eq!(t.hosts_of("demo/main"), vec!["a.example", "b.example"]);
        assert_eq!(t.hosts_of("other/main"), vec!["c.example"]);
        assert!(matches!(
            t.lookup("c.example").map(|e| &e.target),
            Some(HostTarget::Deploying)
        ));
        assert!(t.release_of("demo/main").is_some());
        assert!(t.release_of("other/main").is_none());
        let t = t.without_env("other/main");
        assert!(t.lookup("c.example").is_none());
        assert!(t.lookup("b.example").is_some());
        let t = t.without_env("demo/main");
        assert!(t.lookup("a.example").is_none());
        assert_eq!(t.owner_of("b.example"), None);
        let t = t.with_deploying("other/main", &gate, &["b.example".into()]);
        assert_eq!(t.owner_of("b.example"), Some("other/main"));
    }
}
