//! Who caused a release (console-more): the user whose push, rollback, redeploy or
//! variable change made it, or the server itself. Releases recorded before authors were
//! kept read back as [`ReleaseAuthor::Unknown`], never as someone who did not make them.
//!
//! Stored in `releases.author`: `user:NAME`, `server`, or NULL (not recorded); any other
//! value is an invalid record.

use serde::Serialize;

/// Who caused a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ReleaseAuthor {
    /// A user: the pusher, or who ran the rollback, redeploy or variable change.
    User {
        /// The user's name.
        name: String,
    },
    /// The server itself, with no user behind it.
    Server,
    /// Not recorded: the release was made before Slipway kept its author.
    Unknown,
}

impl ReleaseAuthor {
    /// The author that is user `name`.
    pub fn user(name: &str) -> ReleaseAuthor {
        ReleaseAuthor::User {
            name: name.to_string(),
        }
    }

    /// The user's name, if a user caused the release.
    pub fn user_name(&self) -> Option<&str> {
        match self {
            ReleaseAuthor::User { name } => Some(name),
            _ => None,
        }
    }

    /// The stored form: `user:NAME`, `server`, or NULL when not recorded.
    pub(crate) fn to_column(&self) -> Option<String> {
        match self {
            ReleaseAuthor::User { name } => Some(format!("user:{name}")),
            ReleaseAuthor::Server => Some("server".to_string()),
            ReleaseAuthor::Unknown => None,
        }
    }

    /// Read the stored form back; Err names a value that is none of them.
    pub(crate) fn from_column(column: Option<&str>) -> Result<ReleaseAuthor, String> {
        match column {
            None => Ok(ReleaseAuthor::Unknown),
            Some("server") => Ok(ReleaseAuthor::Server),
            Some(s) => match s.strip_prefix("user:") {
                Some(name) if !name.is_empty() => Ok(ReleaseAuthor::user(name)),
                _ => Err(format!(
                    "release author '{s}' is neither user:NAME nor server"
                )),
            },
        }
    }
}

impl std::fmt::Display for ReleaseAuthor {
    /// The user's name, `server` or `unknown`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseAuthor::User { name } => f.write_str(name),
            ReleaseAuthor::Server => f.write_str("server"),
            ReleaseAuthor::Unknown => f.write_str("unknown"),
        }
    }
}

/// Decode column `i` of a release row.
pub(crate) fn author_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<ReleaseAuthor> {
    let s: Option<String> = r.get(i)?;
    ReleaseAuthor::from_column(s.as_deref()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            Box::new(crate::StateError::Invalid(e)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_round_trip_and_odd_values_are_errors() {
        for a in [
            ReleaseAuthor::user("ann"),
            ReleaseAuthor::Server,
            ReleaseAuthor::Unknown,
        ] {
            assert_eq!(
                ReleaseAuthor::from_column(a.to_column().as_deref()).unwrap(),
                a
            );
        }
        // A user named "server" stays a user.
        assert_eq!(
            ReleaseAuthor::from_column(Some("user:server")).unwrap(),
            ReleaseAuthor::user("server")
        );
        for bad in ["", "ann", "user:", "Server"] {
            assert!(ReleaseAuthor::from_column(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(ReleaseAuthor::user("ann")).unwrap(),
            serde_json::json!({"kind": "user", "name": "ann"})
        );
        assert_eq!(
            serde_json::to_value(ReleaseAuthor::Unknown).unwrap(),
            serde_json::json!({"kind": "unknown"})
        );
    }
}
