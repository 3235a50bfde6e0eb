//! The databases and endpoints of a MariaDB or PostgreSQL service, as Platform.sh reads
//! them from its `configuration`: `schemas` (PostgreSQL also `databases`, default `[main]`)
//! and `endpoints`, each with a `default_schema` (PostgreSQL also `default_database`) and
//! its `privileges` per schema (`admin`, `rw`, `ro`).
//!
//! One typed [`Layout`] for both database kinds, read by the infrastructure diff (a schema
//! or endpoint removed loses data) and by the services that create them.

use std::collections::BTreeMap;

/// What an endpoint may do in one schema, as on Platform.sh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    /// Read only (`SELECT`).
    Ro,
    /// Read and write data (`SELECT`, `INSERT`, `UPDATE`, `DELETE`), no schema changes.
    Rw,
    /// Everything, schema changes (`CREATE TABLE`, `DROP TABLE`, ...) included.
    Admin,
}

impl Privilege {
    /// The word used in the configuration (`ro`, `rw`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Privilege::Ro => "ro",
            Privilege::Rw => "rw",
            Privilege::Admin => "admin",
        }
    }
}

/// One configured endpoint: its own user, named after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// The schema its relationship's `path` names (None: not set).
    pub default_schema: Option<String>,
    /// Its privileges, by schema.
    pub privileges: BTreeMap<String, Privilege>,
}

/// The schemas (databases) and configured endpoints of a database service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The schemas the service holds, in configured order (`main` when none is configured).
    pub schemas: Vec<String>,
    /// The configured endpoints by name (the default endpoint, `mysql` or `postgresql`,
    /// is the service's own user and is not among them).
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The default endpoint (`mysql` or `postgresql`: the service's own user) when it is
    /// configured, with its privileges.
    pub own: Option<Endpoint>,
}

/// Why a database service's `configuration` does not describe a [`Layout`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A schema or endpoint name that is not a plain word (letters, digits, `_`; at most
    /// 63 characters).
    #[error("{what} name `{name}` is not a plain word (letters, digits and _, at most 63)")]
    NotPlain {
        /// `schema` or `endpoint`.
        what: &'static str,
        /// The name as configured.
        name: String,
    },
    /// A key whose value has the wrong shape.
    #[error("`{key}` must be {expected}")]
    Shape {
        /// The key, e.g. `schemas`.
        key: String,
        /// What it must be.
        expected: &'static str,
    },
    /// An endpoint with privileges on (or defaulting to) a schema not in `schemas`.
    #[error("endpoint `{endpoint}` names schema `{schema}`, which is not in `schemas` ({known})")]
    UnknownSchema {
        /// The endpoint.
        endpoint: String,
        /// The schema it names.
        schema: String,
        /// The configured schemas, comma-separated.
        known: String,
    },
    /// A privilege other than `admin`, `rw` or `ro`.
    #[error("endpoint `{endpoint}`: the privilege on `{schema}` must be admin, rw or ro")]
    BadPrivilege {
        /// The endpoint.
        endpoint: String,
        /// The schema.
        schema: String,
    },
    /// An endpoint named like a user the service keeps for itself.
    #[error("endpoint name `{0}` is the service's own user; choose another name")]
    Reserved(String),
}

/// Whether `s` is taken by MariaDB and PostgreSQL as written (schema, user or role name).
pub fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The default endpoint of a database service type (`mysql` or `postgresql`), which is
/// the service's own user; None for other types.
pub fn default_endpoint(service_type: &str) -> Option<&'static str> {
    match service_type {
        t if crate::catalog::runs_mariadb(t) => Some("mysql"),
        "postgresql" => Some("postgresql"),
        _ => None,
    }
}

/// The users a database service type keeps for itself, which no endpoint may be named.
fn reserved(service_type: &str) -> &'static [&'static str] {
    match service_type {
        "postgresql" => &["main", "postgres", "public"],
        t if crate::catalog::runs_mariadb(t) => &["user", "slipway", "root", "mysql"],
        _ => &[],
    }
}

/// The layout of a database service of `service_type` from its `configuration` (None:
/// not a MariaDB or PostgreSQL service).
pub fn layout(
    service_type: &str,
    configuration: &serde_json::Value,
) -> Option<Result<Layout, LayoutError>> {
    let default = default_endpoint(service_type)?;
    Some(read(service_type, default, configuration))
}

fn read(
    service_type: &str,
    default: &str,
    configuration: &serde_json::Value,
) -> Result<Layout, LayoutError> {
    let pg = service_type == "postgresql";
    let shape = |key: &str, expected| LayoutError::Shape {
        key: key.to_string(),
        expected,
    };
    let list = configuration
        .get("schemas")
        .or_else(|| configuration.get("databases").filter(|_| pg));
    let mut schemas = Vec::new();
    match list {
        None => schemas.push("main".to_string()),
        Some(v) => {
            let v = v
                .as_array()
                .ok_or_else(|| shape("schemas", "a list of names"))?;
            for s in v {
                let s = s
                    .as_str()
                    .ok_or_else(|| shape("schemas", "a list of names"))?;
                if !plain_name(s) {
                    return Err(LayoutError::NotPlain {
                        what: "schema",
                        name: s.to_string(),
                    });
                }
                if !schemas.iter().any(|x| x == s) {
                    schemas.push(s.to_string());
                }
            }
        }
    }
    let mut endpoints = BTreeMap::new();
    let configured = match configuration.get("endpoints") {
        None => None,
        Some(v) => Some(
            v.as_object()
                .ok_or_else(|| shape("endpoints", "a mapping of endpoint names"))?,
        ),
    };
    let mut own = None;
    for (name, ep) in configured.into_iter().flatten() {
        if name != default && !plain_name(name) {
            return Err(LayoutError::NotPlain {
                what: "endpoint",
                name: name.clone(),
            });
        }
        if name != default
            && (reserved(service_type).contains(&name.as_str()) || name.starts_with("pg_"))
        {
            return Err(LayoutError::Reserved(name.clone()));
        }
        let unknown = |schema: &str| LayoutError::UnknownSchema {
            endpoint: name.clone(),
            schema: schema.to_string(),
            known: schemas.join(", "),
        };
        let default_schema = ep
            .get("default_schema")
            .or_else(|| ep.get("default_database").filter(|_| pg))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if let Some(s) = &default_schema {
            if !schemas.contains(s) {
                return Err(unknown(s));
            }
        }
        let mut privileges = BTreeMap::new();
        let configured = match ep.get("privileges") {
            None => None,
            Some(v) => Some(v.as_object().ok_or_else(|| {
                shape(
                    &format!("endpoints.{name}.privileges"),
                    "a mapping of schema to admin, rw or ro",
                )
            })?),
        };
        for (schema, level) in configured.into_iter().flatten() {
            if !schemas.contains(schema) {
                return Err(unknown(schema));
            }
            let p = match level.as_str() {
                Some("admin") => Privilege::Admin,
                Some("rw") => Privilege::Rw,
                Some("ro") => Privilege::Ro,
                _ => {
                    return Err(LayoutError::BadPrivilege {
                        endpoint: name.clone(),
                        schema: schema.clone(),
                    })
                }
            };
            privileges.insert(schema.clone(), p);
        }
        let endpoint = Endpoint {
            default_schema,
            privileges,
        };
        if name == default {
            own = Some(endpoint);
        } else {
            endpoints.insert(name.clone(), endpoint);
        }
    }
    Ok(Layout {
        schemas,
        endpoints,
        own,
    })
}

impl Layout {
    /// The schemas of `self` that `newer` no longer has.
    pub fn schemas_removed(&self, newer: &Layout) -> Vec<String> {
        let gone = self.schemas.iter().filter(|s| !newer.schemas.contains(s));
        gone.cloned().collect()
    }

    /// The endpoints of `self` that `newer` no longer has.
    pub fn endpoints_removed(&self, newer: &Layout) -> Vec<String> {
        let gone = self
            .endpoints
            .keys()
            .filter(|e| !newer.endpoints.contains_key(*e));
        gone.cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn postgresql_reads_platform_sh_databases_and_default_database() {
        let conf = json!({"databases": ["main", "legacy"], "endpoints": {
            "postgresql": {"privileges": {"main": "admin"}},
            "reporter": {"default_database": "main", "privileges": {"main": "ro"}},
            "importer": {"default_schema": "legacy", "privileges": {"legacy": "rw"}},
        }});
        let l = layout("postgresql", &conf).unwrap().unwrap();
        assert_eq!(l.schemas, ["main", "legacy"]);
        assert_eq!(
            l.endpoints.len(),
            2,
            "the default endpoint is the service's user"
        );
        assert_eq!(
            l.endpoints["reporter"].default_schema.as_deref(),
            Some("main")
        );
        assert_eq!(l.endpoints["importer"].privileges["legacy"], Privilege::Rw);
        let own = l.own.expect("the default endpoint, configured");
        assert_eq!(own.privileges["main"], Privilege::Admin);
        assert!(layout("postgresql", &serde_json::Value::Null)
            .unwrap()
            .unwrap()
            .own
            .is_none());
        assert_eq!(
            layout("postgresql", &serde_json::Value::Null)
                .unwrap()
                .unwrap()
                .schemas,
            ["main"]
        );
        assert!(layout("redis", &conf).is_none());
    }

    #[test]
    fn bad_layouts_are_refused_with_what_is_wrong() {
        let e = |c: serde_json::Value| layout("postgresql", &c).unwrap().unwrap_err();
        assert!(matches!(
            e(json!({"schemas": ["x'; DROP"]})),
            LayoutError::NotPlain { .. }
        ));
        assert!(matches!(
            e(json!({"endpoints": {"e": {"privileges": {"nope": "ro"}}}})),
            LayoutError::UnknownSchema { .. }
        ));
        assert!(matches!(
            e(json!({"endpoints": {"e": {"privileges": {"main": "owner"}}}})),
            LayoutError::BadPrivilege { .. }
        ));
        assert!(matches!(
            e(json!({"endpoints": {"main": {}}})),
            LayoutError::Reserved(_)
        ));
        assert!(matches!(
            e(json!({"endpoints": {"pg_signal": {}}})),
            LayoutError::Reserved(_)
        ));
    }

    #[test]
    fn removed_schemas_and_endpoints_are_named() {
        let old = layout(
            "mariadb",
            &json!({"schemas": ["main", "old"], "endpoints": {"a": {}, "b": {}}}),
        )
        .unwrap()
        .unwrap();
        let new = layout(
            "mariadb",
            &json!({"schemas": ["main"], "endpoints": {"a": {}}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(old.schemas_removed(&new), ["old"]);
        assert_eq!(old.endpoints_removed(&new), ["b"]);
        assert!(new.schemas_removed(&old).is_empty());
    }
}
