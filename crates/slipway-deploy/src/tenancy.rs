//! Which project a host belongs to (spec section 2), and the check of a push's routes
//! against it at the validate phase.
//!
//! A host belongs to one environment of one project:
//!
//! - hosts under `PROJECT.DOMAIN` (and `PROJECT.DOMAIN` itself) belong to that project by
//!   name, whether or not it exists yet;
//! - the server's own names (`DOMAIN`, `console.DOMAIN`) belong to nobody and are never
//!   routed;
//! - any other host belongs to the project a server admin assigned it to (`domain add
//!   PROJECT HOST`, the state's domains table), or to nobody yet.
//!
//! Explicit hosts of a non-production environment are rewritten under the environment's
//! own host (`HOST.ENV.PROJECT.DOMAIN`, [`crate::switch`]), so they always belong to the
//! project. Within a project, a host routed by one environment is refused to the others
//! until the first lets it go. Hosts compare case-insensitively, without a trailing dot
//! and without a port.

use slipway_config::{ConfigSource, Diagnostic, Format, Topology};
use slipway_state::StateError;

use crate::{switch, Platform};

/// The server's own names under its domain, routed for no project (`NAME.DOMAIN`).
pub const RESERVED_LABELS: &[&str] = &["console"];

/// Who a host belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOwner {
    /// Under `PROJECT.DOMAIN`: that project's, by name.
    Project(String),
    /// Assigned to this project by a server admin.
    Assigned(String),
    /// One of the server's own names: nobody's.
    Reserved,
    /// Outside the domain and assigned to no project.
    Unassigned,
}

/// Why a host name typed by a user cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Not a DNS name.
    #[error("'{0}' is not a host name: use letters, digits and '-' in dot-separated labels, without a port (e.g. www.example.com)")]
    Invalid(String),
}

/// `host` as hosts are compared: lowercase, without a trailing dot (and, for a host sent
/// by a client, without a port).
pub fn normalize(host: &str) -> String {
    slipway_router::normalize_host(host)
}

/// A host name typed by a user (`domain add`): normalized, and refused unless it is a DNS
/// name (labels of letters, digits and `-`, at most 253 characters, no port).
pub fn parse_host(host: &str) -> Result<String, HostError> {
    let invalid = || HostError::Invalid(host.chars().take(80).collect());
    let trimmed = host.trim();
    let lower = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if lower.is_empty() || lower.len() > 253 || !lower.split('.').all(label_ok) {
        return Err(invalid());
    }
    Ok(lower)
}

/// The owner of a (normalized) host that the server's `domain` decides by name alone:
/// None when the host is outside the domain.
pub fn owner_by_name(domain: &str, host: &str) -> Option<HostOwner> {
    let domain = normalize(domain);
    if host == domain {
        return Some(HostOwner::Reserved);
    }
    let under = host.strip_suffix(domain.as_str())?.strip_suffix('.')?;
    let project = under.rsplit('.').next().unwrap_or(under);
    if under == project && RESERVED_LABELS.contains(&project) {
        return Some(HostOwner::Reserved);
    }
    Some(HostOwner::Project(project.to_string()))
}

/// Who a (normalized) host belongs to on this server.
pub fn owner(platform: &Platform, host: &str) -> Result<HostOwner, StateError> {
    if let Some(owner) = owner_by_name(&platform.settings().domain, host) {
        return Ok(owner);
    }
    Ok(match platform.state().domain_owner(host)? {
        Some(project) => HostOwner::Assigned(project),
        None => HostOwner::Unassigned,
    })
}

/// Why `project` may not route `host` (normalized) now; None when it may.
pub fn refusal(
    platform: &Platform,
    project: &str,
    host: &str,
) -> Result<Option<String>, StateError> {
    Ok(match owner(platform, host)? {
        HostOwner::Project(p) | HostOwner::Assigned(p) if p == project => None,
        HostOwner::Project(p) => Some(format!(
            "{host} belongs to project {p} (hosts under {p}.{} are its own)",
            platform.settings().domain
        )),
        HostOwner::Assigned(p) => Some(format!(
            "{host} belongs to project {p} (a server admin assigned it)"
        )),
        HostOwner::Reserved => Some(format!("{host} is reserved for the server itself")),
        HostOwner::Unassigned => Some(format!(
            "{host} is not assigned to project {project}: a server admin assigns it with `domain add {project} {host}`"
        )),
    })
}

/// Why environment `env` of `project` may not take `host` (normalized) from the router's
/// table now: another environment routes it. None when nobody else does.
pub fn routed_elsewhere(
    platform: &Platform,
    project: &str,
    env: &str,
    host: &str,
) -> Option<String> {
    let owner = platform.router().owner(host)?;
    if owner == switch::env_key(project, env) {
        return None;
    }
    Some(match owner.split_once('/') {
        Some((p, e)) if p == project => {
            format!("{host} is routed by environment {e} of this project: remove it there first")
        }
        Some((p, e)) => format!("{host} belongs to project {p} (its environment {e} routes it)"),
        None => format!("{host} is routed by {owner}"),
    })
}

/// The file, key path and position of route `url` in the configuration of `format`, as
/// far as a text search finds it.
fn locate(source: &dyn ConfigSource, format: Format, url: &str) -> Diagnostic {
    let (file, key_path) = match format {
        Format::Slipway => (".slipway/config.yaml", format!("routes.\"{url}\"")),
        Format::Upsun => (".upsun/config.yaml", format!("routes.\"{url}\"")),
        Format::PlatformSh => (".platform/routes.yaml", format!("\"{url}\"")),
        Format::MagentoCloud => (".magento/routes.yaml", format!("\"{url}\"")),
        Format::Procfile => ("", String::new()),
    };
    let text = source
        .read_file(file)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // The line where the URL is a key (followed by `:`), else the first that has it.
    let found = |key: bool| {
        text.lines().enumerate().find_map(|(i, line)| {
            let at = line.find(url)?;
            let after = line[at + url.len()..].trim_start_matches(['"', '\'']);
            if key && !after.trim_start().starts_with(':') {
                return None;
            }
            let quoted = line[..at].ends_with(['"', '\'']);
            Some((i + 1, line[..at].chars().count() + usize::from(!quoted)))
        })
    };
    let position = found(true).or_else(|| found(false));
    let (line, column) = position.unwrap_or((0, 0));
    Diagnostic::error(file, line, column, &key_path, String::new())
}

/// The first route of `topology` that environment `env` of `project` may not route now,
/// with why: its host is not the project's, or another environment routes it.
pub fn refused_route<'t>(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &'t Topology,
) -> Result<Option<(&'t str, String)>, StateError> {
    for (url, host) in switch::route_hosts(platform, project, env, topology) {
        let host = normalize(&host);
        let why = match refusal(platform, project, &host)? {
            None => routed_elsewhere(platform, project, env, &host),
            why => why,
        };
        if let Some(why) = why {
            return Ok(Some((url, why)));
        }
    }
    Ok(None)
}

/// The validate phase's check of a push's routes ([`refused_route`]); Err is the
/// refusal, `FILE:LINE:COL: error: route `URL`: WHY (at KEY.PATH)`.
pub fn check_routes(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &Topology,
    format: Format,
    source: &dyn ConfigSource,
) -> Result<(), String> {
    match refused_route(platform, project, env, topology) {
        Ok(None) => Ok(()),
        Ok(Some((url, why))) => {
            let mut d = locate(source, format, url);
            d.message = format!("route `{url}`: {why}");
            Err(d.to_string())
        }
        Err(e) => Err(format!("checking the owners of the routes' hosts: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_under_the_domain_belong_to_their_project() {
        let p = |s: &str| Some(HostOwner::Project(s.to_string()));
        assert_eq!(owner_by_name("localhost", "main.b.localhost"), p("b"));
        assert_eq!(owner_by_name("localhost", "x.y.main.b.localhost"), p("b"));
        assert_eq!(owner_by_name("localhost", "b.localhost"), p("b"));
        assert_eq!(owner_by_name("Example.COM.", "www.a.example.com"), p("a"));
        assert_eq!(
            owner_by_name("localhost", "localhost"),
            Some(HostOwner::Reserved)
        );
        assert_eq!(
            owner_by_name("localhost", "console.localhost"),
            Some(HostOwner::Reserved)
        );
        assert_eq!(
            owner_by_name("localhost", "main.console.localhost"),
            p("console")
        );
        assert_eq!(owner_by_name("localhost", "www.example.com"), None);
        assert_eq!(owner_by_name("localhost", "notlocalhost"), None);
        assert_eq!(owner_by_name("localhost", "b.notlocalhost"), None);
    }

    #[test]
    fn routes_are_located_by_their_key() {
        let mut src = slipway_config::MemSource::new();
        src.insert(
            ".slipway/config.yaml",
            "applications: {}\nroutes:\n  \"https://{default}/\":\n    type: redirect\n    to: \"http://www.x.test/\"\n  http://www.x.test/:\n    type: upstream\n",
        );
        let d = locate(&src, Format::Slipway, "http://www.x.test/");
        assert_eq!(
            (d.file.as_str(), d.line, d.column, d.key_path.as_str()),
            (
                ".slipway/config.yaml",
                6,
                3,
                "routes.\"http://www.x.test/\""
            )
        );
        let d = locate(&src, Format::Slipway, "https://{default}/");
        assert_eq!((d.line, d.column), (3, 3));
        let d = locate(&src, Format::PlatformSh, "http://www.x.test/");
        assert_eq!(
            (d.file.as_str(), d.line, d.key_path.as_str()),
            (".platform/routes.yaml", 0, "\"http://www.x.test/\"")
        );
    }

    #[test]
    fn host_names_typed_by_users() {
        assert_eq!(parse_host("WWW.Example.com.").unwrap(), "www.example.com");
        assert_eq!(parse_host("a-1.example").unwrap(), "a-1.example");
        for bad in [
            "",
            ".",
            "www.example.com:8080",
            "*.example.com",
            "a..b",
            "-a.b",
            "a_b.c",
            "http://x",
            "a b",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_host(&"a".repeat(64)).is_err());
    }
}
