//! The immutable route table: host name -> target, environment -> its hosts and route.
//!
//! A table is never changed in place: the router builds a modified copy and swaps it in.

use std::collections::HashMap;
use std::sync::Arc;

use crate::route::{Route, Upstream};

/// What a host name currently leads to.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// The environment's live release.
    Live(Arc<Route>),
    /// The environment is being deployed for the first time: 503 + Retry-After.
    Deploying,
}

/// One environment's entry.
#[derive(Clone, Debug)]
struct EnvEntry {
    hosts: Vec<String>,
    target: Target,
}

/// A snapshot of all routes.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteTable {
    hosts: HashMap<String, Target>,
    envs: HashMap<String, EnvEntry>,
}

impl RouteTable {
    /// The target of a host name as sent by a client (port and case are ignored).
    pub(crate) fn lookup(&self, host: &str) -> Option<&Target> {
        self.hosts.get(normalize_host(host).as_str())
    }

    /// The live route of an environment.
    pub(crate) fn route_of(&self, env: &str) -> Option<&Arc<Route>> {
        match self.envs.get(env).map(|e| &e.target) {
            Some(Target::Live(route)) => Some(route),
            _ => None,
        }
    }

    /// A copy of this table where `env` owns `hosts` and leads to `target`.
    /// A host owned by another environment moves to `env` (the other keeps its other hosts).
    pub(crate) fn with_env(&self, env: &str, hosts: Vec<String>, target: Target) -> RouteTable {
        let mut next = self.without_env(env);
        let mut hosts: Vec<String> = hosts.iter().map(|h| normalize_host(h)).collect();
        hosts.retain(|h| !h.is_empty());
        hosts.sort();
        hosts.dedup();
        for host in &hosts {
            let owner = next
                .envs
                .iter()
                .find(|(_, e)| e.hosts.contains(host))
                .map(|(name, _)| name.clone());
            if let Some(owner) = owner {
                tracing::warn!(host = %host, from = %owner, to = %env, "host moves to another environment");
                if let Some(entry) = next.envs.get_mut(&owner) {
                    entry.hosts.retain(|h| h != host);
                }
            }
            next.hosts.insert(host.clone(), target.clone());
        }
        next.envs
            .insert(env.to_string(), EnvEntry { hosts, target });
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

    /// The hosts currently owned by `env`.
    #[cfg(test)]
    pub(crate) fn hosts_of(&self, env: &str) -> Vec<String> {
        self.envs
            .get(env)
            .map(|e| e.hosts.clone())
            .unwrap_or_default()
    }

    /// Whether `upstream` equals the live upstream of `env`.
    pub(crate) fn is_live(&self, env: &str, upstream: &Upstream) -> bool {
        self.route_of(env).is_some_and(|r| r.upstream() == upstream)
    }
}

/// Lowercase host name without port and without a trailing dot.
/// `Example.COM:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
pub(crate) fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(release: &str, port: u16) -> Upstream {
        Upstream {
            release: release.into(),
            netns: None,
            port,
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
    fn switching_replaces_hosts_and_moves_shared_ones() {
        let t = RouteTable::default();
        let t = t.with_env(
            "demo/main",
            vec!["A.example".into(), "b.example:80".into(), "".into()],
            Target::Live(Route::new(up("r1", 1))),
        );
        assert_eq!(t.hosts_of("demo/main"), vec!["a.example", "b.example"]);
        assert!(
            matches!(t.lookup("a.EXAMPLE:1234"), Some(Target::Live(r)) if r.upstream().port == 1)
        );
        // Hosts dropped from an environment stop routing.
        let t = t.with_env(
            "demo/main",
            vec!["a.example".into()],
            Target::Live(Route::new(up("r2", 2))),
        );
        assert!(t.lookup("b.example").is_none());
        // A host claimed by another env moves there.
        let t = t.with_env("demo/dev", vec!["a.example".into()], Target::Deploying);
        assert!(matches!(t.lookup("a.example"), Some(Target::Deploying)));
        assert!(t.hosts_of("demo/main").is_empty());
        assert!(t.route_of("demo/main").is_some());
        let t = t.without_env("demo/dev");
        assert!(t.lookup("a.example").is_none());
        assert!(t.route_of("demo/dev").is_none());
    }
}
