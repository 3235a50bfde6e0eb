//! What the deploy side hands the router for one environment: the release's upstreams and
//! the rules (host + path prefix -> upstream or redirect) that lead to them.

use crate::site::Site;
use crate::table::normalize_host;

/// Where one app of a release answers: `127.0.0.1:port` inside the network namespace at
/// `netns` (`None` = the host namespace), or its unix socket at `socket` when it has one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// An identifier of the release (or app instance), used in logs only.
    pub release: String,
    /// Path of the network namespace file (e.g. `/run/netns/NAME`); `None` for the host.
    pub netns: Option<std::path::PathBuf>,
    /// TCP port the app listens on, on 127.0.0.1.
    pub port: u16,
    /// The host path of the unix socket the app listens on (`web.upstream.socket_family:
    /// unix`); when set, the router connects there instead of to `port`.
    pub socket: Option<std::path::PathBuf>,
}

/// What a matching request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Proxied to the upstream of this app (a key of [`EnvRoutes::upstreams`]).
    Upstream(String),
    /// Answered with a redirect to `to` (an absolute URL). The part of the request path
    /// after the rule's prefix, and the query, are appended to `to`.
    Redirect {
        /// The target URL, e.g. `http://www.main.demo.localhost:8080/`.
        to: String,
        /// The status code: 301, 302, 303, 307 or 308.
        code: u16,
    },
}

/// Which client connections a rule is for: the scheme its route URL was written with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteScheme {
    /// Plain HTTP and HTTPS alike.
    #[default]
    Any,
    /// Written `http://`: plain HTTP first; over HTTPS only when no `https://` rule has
    /// the same host and path.
    Http,
    /// Written `https://`: HTTPS first; over plain HTTP only when no `http://` rule has
    /// the same host and path (e.g. the usual redirect to `https://`).
    Https,
}

impl RouteScheme {
    /// Whether this rule is the first choice on a connection that is (or is not) TLS.
    pub fn prefers(self, tls: bool) -> bool {
        match self {
            RouteScheme::Any => true,
            RouteScheme::Http => !tls,
            RouteScheme::Https => tls,
        }
    }
}

/// One rule: requests for `host` whose path is under `path` get `action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// Host name (port, case and a trailing dot are ignored).
    pub host: String,
    /// Path prefix, starting with `/`. `/api` matches `/api`, `/api/...` and `/api?...`,
    /// not `/apiary`; `/` matches everything. The longest matching prefix of a host wins.
    pub path: String,
    /// What matching requests get.
    pub action: RouteAction,
    /// The connections the rule is for.
    pub scheme: RouteScheme,
    /// The `Strict-Transport-Security` value sent on the rule's answers over TLS (never
    /// on plain HTTP), e.g. `max-age=31536000; includeSubDomains`; `None`: no HSTS.
    pub hsts: Option<String>,
}

/// The complete routes of one environment, pointing at one release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvRoutes {
    /// A name of the release, for logs and [`crate::LiveRelease::name`].
    pub release: String,
    /// The release's apps that rules may lead to: (app name, where it answers).
    pub upstreams: Vec<(String, Upstream)>,
    /// The rules. Rules with the same host and path: the first one wins.
    pub rules: Vec<RouteRule>,
    /// The apps with `web.locations`: (app name, its files and locations). Requests
    /// routed to such an app are served from its files first ([`Site`]).
    pub sites: Vec<(String, Site)>,
}

impl EnvRoutes {
    /// Every path of every host in `hosts` to the one `upstream` (an app named `app`).
    pub fn single(hosts: Vec<String>, upstream: Upstream) -> EnvRoutes {
        let app = "app".to_string();
        EnvRoutes {
            release: upstream.release.clone(),
            rules: hosts
                .into_iter()
                .map(|host| RouteRule {
                    host,
                    path: "/".into(),
                    action: RouteAction::Upstream(app.clone()),
                    scheme: RouteScheme::Any,
                    hsts: None,
                })
                .collect(),
            upstreams: vec![(app, upstream)],
            sites: Vec::new(),
        }
    }

    /// The distinct host names of the rules, normalized, in order of first appearance.
    pub fn hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in &self.rules {
            let host = normalize_host(&rule.host);
            if !host.is_empty() && !out.contains(&host) {
                out.push(host);
            }
        }
        out
    }

    /// Check the rules: paths start with `/`, upstream rules name a known app, redirect
    /// codes are redirect codes, hosts are not empty.
    pub fn validate(&self) -> Result<(), RouteError> {
        for rule in &self.rules {
            if normalize_host(&rule.host).is_empty() {
                return Err(RouteError::EmptyHost);
            }
            if !rule.path.starts_with('/') {
                return Err(RouteError::BadPath(rule.path.clone()));
            }
            match &rule.action {
                RouteAction::Upstream(app) => {
                    if !self.upstreams.iter().any(|(name, _)| name == app) {
                        return Err(RouteError::UnknownApp(app.clone()));
                    }
                }
                RouteAction::Redirect { to, code } => {
                    if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                        return Err(RouteError::BadRedirectCode(*code));
                    }
                    if hyper::header::HeaderValue::from_str(to).is_err() || to.is_empty() {
                        return Err(RouteError::BadRedirectTarget(to.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why an [`EnvRoutes`] was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// A rule's host is empty.
    #[error("a route has an empty host")]
    EmptyHost,
    /// A rule's path does not start with `/`.
    #[error("route path `{0}` does not start with /")]
    BadPath(String),
    /// An upstream rule names an app the release does not have.
    #[error("a route leads to app `{0}`, which the release does not have")]
    UnknownApp(String),
    /// A redirect code that is no redirect.
    #[error("redirect code {0} is not one of 301, 302, 303, 307, 308")]
    BadRedirectCode(u16),
    /// A redirect target that cannot be a `Location` header.
    #[error("redirect target `{0}` is not a valid URL")]
    BadRedirectTarget(String),
    /// An app's location that cannot be served.
    #[error("app `{app}`, location `{prefix}`: {why}")]
    BadLocation {
        /// The app.
        app: String,
        /// The location's path.
        prefix: String,
        /// What is wrong.
        why: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(port: u16) -> Upstream {
        Upstream {
            release: "r1".into(),
            netns: None,
            port,
            socket: None,
        }
    }

    #[test]
    fn validates_rules() {
        let mut r = EnvRoutes::single(vec!["A.example:80".into(), "a.example".into()], up(1));
        assert_eq!(r.hosts(), vec!["a.example"]);
        assert_eq!(r.validate(), Ok(()));
        r.rules[0].path = "api".into();
        assert_eq!(r.validate(), Err(RouteError::BadPath("api".into())));
        r.rules[0].path = "/api".into();
        r.rules[0].action = RouteAction::Upstream("nope".into());
        assert_eq!(r.validate(), Err(RouteError::UnknownApp("nope".into())));
        r.rules[0].action = RouteAction::Redirect {
            to: "http://x/".into(),
            code: 200,
        };
        assert_eq!(r.validate(), Err(RouteError::BadRedirectCode(200)));
        r.rules[0].action = RouteAction::Redirect {
            to: "http://x/\n".into(),
            code: 302,
        };
        assert!(matches!(
            r.validate(),
            Err(RouteError::BadRedirectTarget(_))
        ));
        r.rules[0].action = RouteAction::Redirect {
            to: "http://x/".into(),
            code: 302,
        };
        assert_eq!(r.validate(), Ok(()));
        r.rules[1].host = ":80".into();
        assert_eq!(r.validate(), Err(RouteError::EmptyHost));
    }
}
