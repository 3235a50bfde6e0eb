//! The stack each service was made on (`postgresql:15` and the stack's fingerprint), so
//! that it starts on that stack from then on, whatever the version its config asks for
//! resolves to in a newer catalog: a data folder made by one major of PostgreSQL or
//! MariaDB is refused by another.
//!
//! Records made before this was kept (migration `service_stacks`) have none until their
//! next start fills it from their data (`PG_VERSION`, `mysql_upgrade_info`) or, for types
//! whose data names no version, the version resolved then (see
//! `slipway_deploy::services::stack`).

use std::fmt;
use std::str::FromStr;

use rusqlite::params;
use serde::Serialize;

use crate::{Result, State, StateError};

/// The stack a service runs on: its software and catalog version, and the fingerprint of
/// the stack's recipe it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStack {
    /// The software, as the stack catalog names it (`postgresql`, `mariadb`, `redis` ...).
    pub software: String,
    /// The catalog version (`15`, `10.11`).
    pub version: String,
    /// The fingerprint of the stack it was made on (hex).
    pub fingerprint: String,
}

impl fmt::Display for ServiceStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.software, self.version)
    }
}

/// `SOFTWARE:VERSION` as stored in `services.stack` (the fingerprint is its own column).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StackName {
    software: String,
    version: String,
}

impl FromStr for StackName {
    type Err = StateError;
    fn from_str(s: &str) -> Result<StackName> {
        match s.split_once(':') {
            Some((software, version)) if !software.is_empty() && !version.is_empty() => {
                Ok(StackName {
                    software: software.to_string(),
                    version: version.to_string(),
                })
            }
            _ => Err(StateError::Invalid(format!(
                "service stack `{s}` is not SOFTWARE:VERSION"
            ))),
        }
    }
}

/// Decode the `stack` and `stack_fingerprint` columns: both NULL (made before they were
/// kept), or both set.
pub(crate) fn decode(
    what: &str,
    stack: Option<String>,
    fingerprint: Option<String>,
) -> Result<Option<ServiceStack>> {
    match (stack, fingerprint) {
        (None, None) => Ok(None),
        (Some(s), Some(fingerprint)) if !fingerprint.is_empty() => {
            let StackName { software, version } = s
                .parse()
                .map_err(|e| StateError::Invalid(format!("{what}: {e}")))?;
            Ok(Some(ServiceStack {
                software,
                version,
                fingerprint,
            }))
        }
        (s, f) => Err(StateError::Invalid(format!(
            "{what}: stack {s:?} with fingerprint {f:?} (both or neither)"
        ))),
    }
}

impl State {
    /// Record the stack service `name` of `project`/`environment` runs on (filled at the
    /// first start of a record made before stacks were kept, or moved by a service upgrade).
    pub fn set_service_stack(
        &self,
        project: &str,
        environment: &str,
        name: &str,
        stack: &ServiceStack,
    ) -> Result<()> {
        let n = self.db().execute(
            "UPDATE services SET stack = ?4, stack_fingerprint = ?5
             WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![
                project,
                environment,
                name,
                stack.to_string(),
                stack.fingerprint
            ],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "service {name} of {project}/{environment}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_is_both_columns_or_neither() {
        assert_eq!(decode("s", None, None).unwrap(), None);
        let s = decode("s", Some("postgresql:15".into()), Some("abc".into()))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.to_string(), s.fingerprint.as_str()),
            ("postgresql:15".into(), "abc")
        );
        for (stack, fp) in [
            (Some("postgresql:15"), None),
            (None, Some("abc")),
            (Some("postgresql"), Some("abc")),
            (Some(":15"), Some("abc")),
            (Some("postgresql:15"), Some("")),
        ] {
            assert!(matches!(
                decode("s", stack.map(Into::into), fp.map(Into::into)),
                Err(StateError::Invalid(_))
            ));
        }
    }
}
