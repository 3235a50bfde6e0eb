//! A PostgreSQL service's endpoint roles in a backup: `pg_dumpall --roles-only
//! --no-role-passwords` (no password of any role, the superuser's included), filtered to the
//! roles Slipway made for the service ([`filter`]: its configured endpoints, and the roles
//! it marked with [`ROLE_COMMENT`], such as one a restore kept disabled), kept as one part
//! beside the databases' dumps. At restore they are made again before the data loads
//! ([`restore_sql`]), so the dumps' grants to them apply even when the configuration no
//! longer has them: such a role is kept, disabled (`NOLOGIN`, no password, its grants in
//! place and nobody able to log in as it), until a push configures the endpoint again
//! (which gives it back its login and password) or a push with `-o allow-data-loss`
//! drops it.

use std::collections::BTreeSet;

/// The comment Slipway puts on each endpoint role it makes, so a backup finds the roles it
/// made (also those no longer configured) among any others of the cluster.
pub const ROLE_COMMENT: &str = role_comment!();

/// [`ROLE_COMMENT`] as a literal, so [`MARKED_QUERY`] is made from the same text.
macro_rules! role_comment {
    () => {
        "slipway endpoint"
    };
}
use role_comment;

/// The query listing the roles marked with [`ROLE_COMMENT`], one name a line.
pub const MARKED_QUERY: &str = concat!(
    "SELECT rolname FROM pg_roles WHERE shobj_description(oid, 'pg_authid') = '",
    role_comment!(),
    "' AND NOT rolsuper ORDER BY 1"
);

/// A role as a backup keeps it: its name and whether it could log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role's name (a plain word, as endpoint names are).
    pub name: String,
    /// Whether it had `LOGIN` when the backup was taken.
    pub login: bool,
}

/// A roles part that is not what [`filter`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    /// A line that is no statement of a roles part.
    #[error("the backup's roles part has an unexpected line: {0:?}")]
    Line(String),
    /// A role name that is not a plain word.
    #[error("the backup's roles part names a role that is not a plain word: {0:?}")]
    Name(String),
}

/// An identifier at the start of `s` as `pg_dumpall` prints it (plain, or `"quoted"` with
/// `""` for a quote), and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if rest[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &rest[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// Whether `name` is a plain word (letters, digits, `_`), as endpoint names are.
fn plain(name: &str) -> bool {
    slipway_config::databases::plain_name(name)
}

/// The attribute words `ALTER ROLE ... WITH` may carry in a roles part.
const ATTRIBUTES: &[&str] = &[
    "SUPERUSER",
    "NOSUPERUSER",
    "INHERIT",
    "NOINHERIT",
    "CREATEROLE",
    "NOCREATEROLE",
    "CREATEDB",
    "NOCREATEDB",
    "LOGIN",
    "NOLOGIN",
    "REPLICATION",
    "NOREPLICATION",
    "BYPASSRLS",
    "NOBYPASSRLS",
];

/// The roles part of a backup: of `pg_dumpall --roles-only --no-role-passwords`'s output,
/// each role of `keep` (plain names only) as `CREATE ROLE "NAME";` and its `ALTER ROLE
/// "NAME" WITH ...;` attributes line (names quoted: PostgreSQL folds bare ones); everything else (other roles, memberships, settings,
/// comments) left out. Returns the part and the roles it holds.
pub fn filter(dumpall: &str, keep: &BTreeSet<String>) -> (String, Vec<String>) {
    let mut out = String::from("-- Slipway: the endpoint roles of the service\n");
    let mut kept = Vec::new();
    for line in dumpall.lines() {
        if let Some(rest) = line.strip_prefix("CREATE ROLE ") {
            if let Some((name, ";")) = identifier(rest) {
                if plain(&name) && keep.contains(&name) {
                    out.push_str(&format!("CREATE ROLE \"{name}\";\n"));
                    kept.push(name);
                }
            }
        } else if let Some(rest) = line.strip_prefix("ALTER ROLE ") {
            let Some((name, attrs)) = identifier(rest) else {
                continue;
            };
            let Some(attrs) = attrs
                .strip_prefix(" WITH ")
                .and_then(|a| a.strip_suffix(';'))
            else {
                continue;
            };
            let words: Vec<&str> = attrs
                .split(' ')
                .filter(|w| ATTRIBUTES.contains(w))
                .collect();
            if plain(&name) && keep.contains(&name) {
                out.push_str(&format!(
                    "ALTER ROLE \"{name}\" WITH {};\n",
                    words.join(" ")
                ));
            }
        }
    }
    (out, kept)
}

/// Read a roles part written by [`filter`]: every role it holds. Anything else in it is
/// an error (a part is never half understood).
pub fn parse(part: &str) -> Result<Vec<Role>, RolesError> {
    let mut roles: Vec<Role> = Vec::new();
    for line in part.lines() {
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        let bad = || RolesError::Line(line.to_string());
        if let Some(rest) = line.strip_prefix("CREATE ROLE ") {
            let name = match identifier(rest) {
                Some((name, ";")) => name,
                _ => return Err(bad()),
            };
            let name = name.as_str();
            if !plain(name) {
                return Err(RolesError::Name(name.to_string()));
            }
            if !roles.iter().any(|r| r.name == name) {
                roles.push(Role {
                    name: name.to_string(),
                    login: false,
                });
            }
        } else if let Some(rest) = line.strip_prefix("ALTER ROLE ") {
            let (name, attrs) = identifier(rest)
                .and_then(|(name, r)| {
                    let attrs = r.strip_prefix(" WITH ")?.strip_suffix(';')?;
                    Some((name, attrs))
                })
                .ok_or_else(bad)?;
            let words: Vec<&str> = attrs.split(' ').collect();
            if words.iter().any(|w| !ATTRIBUTES.contains(w)) {
                return Err(bad());
            }
            let role = roles.iter_mut().find(|r| r.name == name).ok_or_else(bad)?;
            role.login = words.contains(&"LOGIN");
        } else {
            return Err(bad());
        }
    }
    Ok(roles)
}

/// The `psql` script making `roles` again on the service being restored, before its
/// databases load: each created when missing, never more than an endpoint may be
/// (`NOSUPERUSER ...`), marked [`ROLE_COMMENT`]; those `configured` has not are disabled
/// (`NOLOGIN`, no password). The configured ones get their login and password from the
/// configuration right after. Returns the script and the disabled roles' names.
pub fn restore_sql(roles: &[Role], configured: &BTreeSet<String>) -> (String, Vec<String>) {
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    let mut disabled = Vec::new();
    for role in roles {
        let name = &role.name;
        sql.push_str(&format!(
            "SELECT 'CREATE ROLE \"{name}\"' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}')\\gexec\n\
             ALTER ROLE \"{name}\" WITH NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;\n\
             COMMENT ON ROLE \"{name}\" IS '{ROLE_COMMENT}';\n"
        ));
        if !configured.contains(name) {
            sql.push_str(&format!(
                "ALTER ROLE \"{name}\" WITH NOLOGIN PASSWORD NULL;\n\
                 SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{name}';\n"
            ));
            disabled.push(name.clone());
        }
    }
    (sql, disabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_dumpall --roles-only --no-role-passwords` of a PostgreSQL 15 service with two
    /// endpoints and a role an app made.
    const DUMPALL: &str = r#"--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE main;
ALTER ROLE main WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "Other one";
ALTER ROLE "Other one" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE reporter;
ALTER ROLE reporter WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE reporter IS 'slipway endpoint';
CREATE ROLE writer;
ALTER ROLE writer WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS VALID UNTIL 'infinity';
ALTER ROLE writer SET search_path TO 'x; DROP DATABASE main';

--
-- Role memberships
--

GRANT pg_read_all_data TO reporter WITH INHERIT TRUE GRANTED BY main;

--
-- PostgreSQL database cluster dump complete
--
"#;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_services_endpoint_roles_are_kept_without_passwords_or_settings() {
        let (part, kept) = filter(DUMPALL, &set(&["reporter", "writer", "main_x"]));
        assert_eq!(kept, ["reporter", "writer"]);
        assert!(!part.contains("main;"), "{part}");
        assert!(!part.contains("Other"), "{part}");
        assert!(!part.contains("search_path"), "{part}");
        assert!(!part.contains("GRANT"), "{part}");
        assert!(!part.contains("VALID"), "{part}");
        assert!(!part.to_lowercase().contains("password"), "{part}");
        let roles = parse(&part).unwrap();
        assert_eq!(
            roles,
            [
                Role {
                    name: "reporter".into(),
                    login: true
                },
                Role {
                    name: "writer".into(),
                    login: false
                }
            ]
        );
    }

    #[test]
    fn a_quoted_role_name_is_read_and_never_kept_when_not_plain() {
        assert_eq!(identifier("\"a\"\"b\";"), Some(("a\"b".to_string(), ";")));
        let (_, kept) = filter(DUMPALL, &set(&["Other one"]));
        assert!(kept.is_empty());
        let (part, kept) = filter(
            "CREATE ROLE \"Reporter\";\nALTER ROLE \"Reporter\" WITH LOGIN;\n",
            &set(&["Reporter"]),
        );
        assert_eq!(kept, ["Reporter"]);
        assert_eq!(
            parse(&part).unwrap(),
            [Role {
                name: "Reporter".into(),
                login: true
            }]
        );
    }

    #[test]
    fn a_part_with_anything_else_is_refused() {
        assert!(parse("CREATE ROLE a;\nDROP DATABASE main;\n").is_err());
        assert!(parse("CREATE ROLE \"a b\";\n").is_err());
        assert!(parse("CREATE ROLE a; DROP DATABASE main;\n").is_err());
        assert!(parse("CREATE ROLE a;\nALTER ROLE a WITH LOGIN PASSWORD 'x';\n").is_err());
        assert!(parse("ALTER ROLE a WITH LOGIN;\n").is_err());
    }

    #[test]
    fn roles_the_configuration_no_longer_has_are_kept_disabled() {
        let roles = parse(&filter(DUMPALL, &set(&["reporter", "writer"])).0).unwrap();
        let (sql, disabled) = restore_sql(&roles, &set(&["writer"]));
        assert_eq!(disabled, ["reporter"]);
        assert!(sql.contains("ALTER ROLE \"reporter\" WITH NOLOGIN PASSWORD NULL;"));
        assert!(!sql.contains("ALTER ROLE \"writer\" WITH NOLOGIN"));
        assert!(sql.contains("CREATE ROLE \"writer\""));
    }
}
