//! What an app sees of HTTPS when `serve --https-listen` is on: the `https://` routes
//! of `PLATFORM_ROUTES` / `SLIPWAY_ROUTES` are keyed by their `https://` URL on the HTTPS
//! port (the router serves them there), the others stay `http://`; an environment whose
//! default host is routed `https://` has its URL ([`env_url`]: `SLIPWAY_URL`, the push
//! output) on the HTTPS port too.

use std::collections::BTreeMap;

use slipway_config::Topology;

use crate::Platform;

/// The URL users open for environment `env` of `project` deployed with `topology`:
/// `https://HOST[:PORT]/` when the router serves HTTPS and a route of `topology` is
/// `https://{default}...`, else [`Platform::env_url`] (`http://`).
pub fn env_url(platform: &Platform, project: &str, env: &str, topology: &Topology) -> String {
    let https_default = topology
        .routes
        .iter()
        .any(|r| r.url.starts_with("https://{default}"));
    match platform.settings().https_port {
        Some(port) if https_default => {
            let host = platform.env_host(project, env);
            if port == 443 {
                format!("https://{host}/")
            } else {
                format!("https://{host}:{port}/")
            }
        }
        _ => platform.env_url(project, env),
    }
}

/// The URL of `env` as its live release `live` routes it (`https://` when its default host
/// is routed so and the server serves HTTPS), else the plain one: what `envs` and the
/// console show.
pub fn live_env_url(
    platform: &Platform,
    project: &str,
    env: &str,
    live: Option<&slipway_state::Release>,
) -> String {
    live.and_then(|r| crate::release_record::topology_of(r).ok())
        .map(|t| env_url(platform, project, env, &t))
        .unwrap_or_else(|| platform.env_url(project, env))
}

use base64::Engine as _;
use serde_json::{Map, Value};

/// Rewrite the routes variables of an app's environment `env` for a router serving
/// HTTPS on `https_port`. A variable that does not decode is left as it is.
pub fn apply(env: &mut BTreeMap<String, String>, https_port: u16) {
    for name in ["PLATFORM_ROUTES", "SLIPWAY_ROUTES"] {
        let Some(value) = env.get(name) else { continue };
        let engine = base64::engine::general_purpose::STANDARD;
        let Some(routes) = engine
            .decode(value)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        else {
            continue;
        };
        let rewritten = routes_over_https(routes, https_port);
        env.insert(name.to_string(), engine.encode(rewritten.to_string()));
    }
}

/// `routes` (URL -> route) with the URL of each route written `https://` made
/// `https://HOST[:PORT]/PATH`.
pub fn routes_over_https(routes: Value, https_port: u16) -> Value {
    let Value::Object(map) = routes else {
        return routes;
    };
    let out: Map<String, Value> = map
        .into_iter()
        .map(|(url, route)| {
            let https = route
                .get("original_url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.starts_with("https://"));
            let url = match url.strip_prefix("http://") {
                Some(rest) if https => {
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let host = authority.split(':').next().unwrap_or(authority);
                    let path = if path.is_empty() { "/" } else { path };
                    if https_port == 443 {
                        format!("https://{host}{path}")
                    } else {
                        format!("https://{host}:{https_port}{path}")
                    }
                }
                _ => url,
            };
            (url, route)
        })
        .collect();
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_routes_get_the_https_url_and_port() {
        let routes = serde_json::json!({
            "http://main.demo.localhost:8080/": {"original_url": "https://{default}/"},
            "http://main.demo.localhost:8080/old": {"original_url": "http://{default}/old"},
        });
        let out = routes_over_https(routes.clone(), 8443);
        assert!(
            out.get("https://main.demo.localhost:8443/").is_some(),
            "{out}"
        );
        assert!(
            out.get("http://main.demo.localhost:8080/old").is_some(),
            "{out}"
        );
        let out = routes_over_https(routes, 443);
        assert!(out.get("https://main.demo.localhost/").is_some(), "{out}");
        let mut env = BTreeMap::new();
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(r#"{"http://h:80/":{"original_url":"https://{default}/"}}"#);
        env.insert("PLATFORM_ROUTES".to_string(), b64);
        apply(&mut env, 8443);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&env["PLATFORM_ROUTES"])
            .expect("base64");
        let routes: Value = serde_json::from_slice(&bytes).expect("json");
        assert!(routes.get("https://h:8443/").is_some(), "{routes}");
    }
}
