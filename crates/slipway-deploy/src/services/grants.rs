//! The privileges of a MariaDB service's accounts: those its configuration wants
//! ([`wanted`]), those the running server holds ([`Held`], read by [`HELD_QUERY`]), and the
//! SQL taking the one to the other without a gap ([`changes_sql`]).
//!
//! MariaDB's `GRANT` and `REVOKE` are not transactional: revoking everything and granting
//! it again refuses a query landing between the two. So a running server gets only what is
//! new, granted first, then only what was removed, revoked; a deploy that changes no
//! endpoint changes no privilege. (At the server's start its init file sets them from
//! scratch: no client is served before it ran.)

use std::collections::{BTreeMap, BTreeSet};

use slipway_config::databases::{Layout, Privilege};

/// The service's own account (apps' default endpoint, `mysql`).
pub const OWN_USER: &str = "user";

/// What MariaDB's `ALL PRIVILEGES` on a schema holds (10.11 and 11.8 alike, besides
/// 11.8's `SHOW CREATE ROUTINE`, which `GRANT ALL` gives too): `admin`.
const ADMIN: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
    "DELETE HISTORY",
];

/// `rw`: reads and writes rows, no schema change.
const RW: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "SHOW VIEW",
];

/// `ro`: reads.
const RO: &[&str] = &["SELECT", "SHOW VIEW"];

/// The privilege an account may hand on; never wanted.
const GRANT_OPTION: &str = "GRANT OPTION";

/// The privileges `level` gives on a schema.
fn privileges(level: Privilege) -> &'static [&'static str] {
    match level {
        Privilege::Admin => ADMIN,
        Privilege::Rw => RW,
        Privilege::Ro => RO,
    }
}

/// The `GRANT` list giving `level` on a schema.
pub fn grant_list(level: Privilege) -> String {
    match level {
        Privilege::Admin => "ALL PRIVILEGES".to_string(),
        l => privileges(l).join(", "),
    }
}

/// A schema name as a privilege's database pattern: `_` (and `%`) stand for any character
/// in `GRANT ... ON db.*` unless escaped, so a grant on `my_app` would open `myXapp` too.
pub fn pattern(schema: &str) -> String {
    schema.replace('_', "\\_").replace('%', "\\%")
}

/// The accounts `layout` wants, each with its privilege per schema [`pattern`]: one per
/// configured endpoint, and the service's own [`OWN_USER`] with the default endpoint's
/// privileges when it is configured, else `admin` on every schema (it owns the service,
/// as PostgreSQL's `main` does).
pub fn wanted(layout: &Layout) -> BTreeMap<String, BTreeMap<String, Privilege>> {
    let patterns = |privileges: &BTreeMap<String, Privilege>| -> BTreeMap<String, Privilege> {
        privileges.iter().map(|(s, l)| (pattern(s), *l)).collect()
    };
    let own = match &layout.own {
        Some(ep) => patterns(&ep.privileges),
        None => layout
            .schemas
            .iter()
            .map(|s| (pattern(s), Privilege::Admin))
            .collect(),
    };
    let mut out: BTreeMap<_, _> = layout
        .endpoints
        .iter()
        .map(|(name, ep)| (name.clone(), patterns(&ep.privileges)))
        .collect();
    out.insert(OWN_USER.to_string(), own);
    out
}

/// The query listing every account's privileges, one line each as `mariadb -N -B` prints
/// them: grantee, schema (`*`: global), privilege, whether it may be handed on.
pub const HELD_QUERY: &str = "SELECT GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES UNION ALL SELECT GRANTEE, '*', PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.USER_PRIVILEGES";

/// A line of [`HELD_QUERY`]'s output that is not what it prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected line in the server's privileges: {0:?}")]
pub struct HeldError(String);

/// The privileges the server holds, by account (user name, host `%` only) and schema
/// (`*`: global); `GRANT OPTION` among them when one may be handed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    accounts: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Held {
    /// Read [`HELD_QUERY`]'s output.
    pub fn parse(out: &str) -> Result<Held, HeldError> {
        let mut held = Held::default();
        for line in out.lines().filter(|l| !l.is_empty()) {
            let bad = || HeldError(line.to_string());
            let mut fields = line.split('\t');
            let (Some(grantee), Some(schema), Some(privilege), Some(grantable), None) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                return Err(bad());
            };
            let (user, host) = grantee
                .strip_prefix('\'')
                .and_then(|g| g.strip_suffix('\''))
                .and_then(|g| g.rsplit_once("'@'"))
                .ok_or_else(bad)?;
            if host != "%" {
                // The server's own accounts (root, the backup account): never changed here.
                continue;
            }
            if !privilege
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '_')
            {
                return Err(bad());
            }
            let schemas = held.accounts.entry(user.to_string()).or_default();
            if privilege == "USAGE" {
                continue;
            }
            let set = schemas.entry(unescape(schema)).or_default();
            set.insert(privilege.to_string());
            if grantable == "YES" {
                set.insert(GRANT_OPTION.to_string());
            }
        }
        Ok(held)
    }
}

/// A value as `mariadb -B` prints it, its escapes (`\\`, `\t`, `\n`, `\0`) undone.
fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `'name'@'%'` (a plain name).
fn account(name: &str) -> String {
    format!("'{name}'@'%'")
}

/// `pattern.*` (a schema [`pattern`]), or `*.*` for the global level.
fn target(schema: &str) -> String {
    if schema == "*" {
        "*.*".to_string()
    } else {
        format!("`{}`.*", schema.replace('`', "``"))
    }
}

/// The SQL taking the accounts `layout` wants from what the server holds (`held`) to
/// exactly their privileges: every `GRANT` of what is missing first, then every `REVOKE`
/// of what is no longer wanted (a lowered privilege, a schema no longer theirs, anything
/// global, the grant option). Empty when nothing changes. Accounts the layout does not
/// want (a removed endpoint, dropped once its push is live) are left alone.
pub fn changes_sql(layout: &Layout, held: &Held) -> String {
    let none = BTreeMap::new();
    let (mut grants, mut revokes) = (String::new(), String::new());
    for (name, want) in wanted(layout) {
        let have = held.accounts.get(&name).unwrap_or(&none);
        let acct = account(&name);
        for (schema, level) in &want {
            let has = |p: &str| have.get(schema).is_some_and(|s| s.contains(p));
            let missing: Vec<&str> = privileges(*level)
                .iter()
                .copied()
                .filter(|p| !has(p))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let list = match level {
                Privilege::Admin => "ALL PRIVILEGES".to_string(),
                _ => missing.join(", "),
            };
            grants.push_str(&format!("GRANT {list} ON {} TO {acct};\n", target(schema)));
        }
        for (schema, has) in have {
            let surplus: Vec<&str> = has
                .iter()
                .map(String::as_str)
                .filter(|p| match want.get(schema) {
                    Some(Privilege::Admin) => *p == GRANT_OPTION,
                    Some(level) => !privileges(*level).contains(p),
                    None => true,
                })
                .collect();
            if !surplus.is_empty() {
                revokes.push_str(&format!(
                    "REVOKE {} ON {} FROM {acct};\n",
                    surplus.join(", "),
                    target(schema)
                ));
            }
        }
    }
    grants + &revokes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(conf: serde_json::Value) -> Layout {
        slipway_config::databases::layout("mariadb", &conf)
            .unwrap()
            .unwrap()
    }

    /// What the server holds once `sql` (grants only) ran on empty accounts.
    fn held_after(sql: &str) -> Held {
        let mut out = String::new();
        for line in sql.lines() {
            let rest = line.strip_prefix("GRANT ").unwrap();
            let (list, rest) = rest.split_once(" ON ").unwrap();
            let (on, rest) = rest.split_once(" TO ").unwrap();
            let schema = on.trim_start_matches('`').trim_end_matches("`.*");
            let user = rest.trim_start_matches('\'').split('\'').next().unwrap();
            let list: Vec<&str> = if list == "ALL PRIVILEGES" {
                ADMIN.to_vec()
            } else {
                list.split(", ").collect()
            };
            for p in list {
                out.push_str(&format!("'{user}'@'%'\t{schema}\t{p}\tNO\n"));
            }
        }
        Held::parse(&out).unwrap()
    }

    #[test]
    fn a_deploy_that_changes_no_endpoint_changes_no_privilege() {
        let l = layout(
            serde_json::json!({"schemas": ["main", "extra"], "endpoints": {
                "admin": {"privileges": {"main": "admin", "extra": "admin"}},
                "reader": {"privileges": {"extra": "ro"}},
            }}),
        );
        let first = changes_sql(&l, &Held::default());
        assert!(
            first.contains("GRANT SELECT, SHOW VIEW ON `extra`.* TO 'reader'@'%';"),
            "{first}"
        );
        assert!(first.contains("GRANT ALL PRIVILEGES ON `main`.* TO 'admin'@'%';"));
        // The service's own user owns every schema when `mysql` is not configured.
        assert!(first.contains("GRANT ALL PRIVILEGES ON `extra`.* TO 'user'@'%';"));
        assert!(!first.contains("REVOKE"), "{first}");
        assert_eq!(changes_sql(&l, &held_after(&first)), "");
    }

    #[test]
    fn new_privileges_are_granted_before_old_ones_are_revoked() {
        let before = layout(
            serde_json::json!({"schemas": ["main", "extra"], "endpoints": {
                "mysql": {"privileges": {"main": "admin"}},
                "app": {"privileges": {"main": "ro", "extra": "rw"}},
            }}),
        );
        let held = held_after(&changes_sql(&before, &Held::default()));
        let after = layout(
            serde_json::json!({"schemas": ["main", "extra"], "endpoints": {
                "mysql": {"privileges": {"main": "admin"}},
                "app": {"privileges": {"main": "rw", "extra": "ro"}},
            }}),
        );
        let sql = changes_sql(&after, &held);
        assert_eq!(
            sql,
            "GRANT INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE ON `main`.* TO 'app'@'%';\n\
             REVOKE CREATE TEMPORARY TABLES, DELETE, EXECUTE, INSERT, LOCK TABLES, UPDATE ON `extra`.* FROM 'app'@'%';\n"
        );
        // A schema no longer theirs, a global privilege and the grant option go.
        let odd = Held::parse(
            "'app'@'%'\tgone\tSELECT\tNO\n'app'@'%'\t*\tPROCESS\tNO\n'app'@'%'\t*\tUSAGE\tNO\n\
             'user'@'%'\tmain\tSELECT\tYES\n'user'@'localhost'\tmain\tSELECT\tNO\n\
             'root'@'localhost'\t*\tREAD_ONLY ADMIN\tYES\n",
        )
        .unwrap();
        let sql = changes_sql(&after, &odd);
        assert!(
            sql.contains("REVOKE SELECT ON `gone`.* FROM 'app'@'%';"),
            "{sql}"
        );
        assert!(
            sql.contains("REVOKE PROCESS ON *.* FROM 'app'@'%';"),
            "{sql}"
        );
        assert!(
            sql.contains("REVOKE GRANT OPTION ON `main`.* FROM 'user'@'%';"),
            "{sql}"
        );
        let first_revoke = sql.find("REVOKE").unwrap();
        assert!(!sql[first_revoke..].contains("GRANT ALL"), "{sql}");
        assert!(Held::parse("x\ty\n").is_err());
        assert!(Held::parse("'a'@'%'\tmain\tSELECT; DROP\tNO\n").is_err());
        assert!(Held::parse("'a'@'%'\t*\tREAD_ONLY ADMIN\tNO\n").is_ok());
    }

    #[test]
    fn an_underscore_in_a_schema_name_matches_only_itself() {
        let l = layout(serde_json::json!({"schemas": ["my_app"], "endpoints": {
            "reader": {"privileges": {"my_app": "ro"}},
        }}));
        let sql = changes_sql(&l, &Held::default());
        assert!(
            sql.contains("GRANT SELECT, SHOW VIEW ON `my\\_app`.* TO 'reader'@'%';"),
            "{sql}"
        );
        // As the server prints it back (`mariadb -B` escapes the backslash): no change.
        let held = Held::parse(
            "'reader'@'%'\tmy\\\\_app\tSELECT\tNO\n'reader'@'%'\tmy\\\\_app\tSHOW VIEW\tNO\n\
             'user'@'%'\tmy\\\\_app\tSELECT\tNO\n",
        )
        .unwrap();
        let sql = changes_sql(&l, &held);
        assert!(!sql.contains("reader"), "{sql}");
        // A grant of an older Slipway, unescaped: the escaped one first, then it goes.
        let old =
            Held::parse("'reader'@'%'\tmy_app\tSELECT\tNO\n'reader'@'%'\tmy_app\tSHOW VIEW\tNO\n")
                .unwrap();
        let sql = changes_sql(&l, &old);
        let (grant, revoke) = (
            sql.find("GRANT SELECT, SHOW VIEW ON `my\\_app`.* TO 'reader'@'%';")
                .unwrap(),
            sql.find("REVOKE SELECT, SHOW VIEW ON `my_app`.* FROM 'reader'@'%';")
                .unwrap(),
        );
        assert!(grant < revoke, "{sql}");
    }
}
