//! Domains: hosts outside the server's own domain that a server admin assigned to one
//! project (`domain add PROJECT HOST`). A host belongs to at most one project; hosts
//! under `PROJECT.DOMAIN` belong to their project by name and are not stored here.
//!
//! Hosts are stored as given; callers normalize them first (lowercase, no trailing dot,
//! no port).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::{now, Result, State, StateError};

/// A host assigned to a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// The host name (lowercase, no trailing dot, no port).
    pub host: String,
    /// The project it belongs to.
    pub project: String,
    /// The server admin who assigned it.
    pub assigned_by: String,
    /// When (unix seconds).
    pub assigned_at: i64,
}

fn domain_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Domain> {
    Ok(Domain {
        host: r.get(0)?,
        project: r.get(1)?,
        assigned_by: r.get(2)?,
        assigned_at: r.get(3)?,
    })
}

impl State {
    /// Assign `host` to `project` (by server admin `by`). Assigning it again to the same
    /// project changes nothing and returns false; a host of another project is a
    /// [`StateError::Conflict`] naming that project; a missing project is
    /// [`StateError::NotFound`].
    pub fn assign_domain(&self, host: &str, project: &str, by: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM projects WHERE name = ?1", [project], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if !exists {
            return Err(StateError::NotFound(format!("project '{project}'")));
        }
        let owner: Option<String> = tx
            .query_row("SELECT project FROM domains WHERE host = ?1", [host], |r| {
                r.get(0)
            })
            .optional()?;
        match owner {
            Some(owner) if owner == project => return Ok(false),
            Some(owner) => {
                return Err(StateError::Conflict(format!(
                    "{host} belongs to project {owner}"
                )))
            }
            None => {}
        }
        tx.execute(
            "INSERT INTO domains(host, project, assigned_by, assigned_at) VALUES (?1, ?2, ?3, ?4)",
            params![host, project, by, now()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Remove the assignment of `host`; returns the project it belonged to, if any.
    pub fn unassign_domain(&self, host: &str) -> Result<Option<String>> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let owner: Option<String> = tx
            .query_row("SELECT project FROM domains WHERE host = ?1", [host], |r| {
                r.get(0)
            })
            .optional()?;
        tx.execute("DELETE FROM domains WHERE host = ?1", [host])?;
        tx.commit()?;
        Ok(owner)
    }

    /// The project `host` is assigned to, if any.
    pub fn domain_owner(&self, host: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT project FROM domains WHERE host = ?1", [host], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Assigned hosts, of one project or of all, ordered by project then host.
    pub fn domains(&self, project: Option<&str>) -> Result<Vec<Domain>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT host, project, assigned_by, assigned_at FROM domains
             WHERE ?1 IS NULL OR project = ?1 ORDER BY project, host",
        )?;
        let rows = st.query_map([project], domain_of)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_belongs_to_one_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "ssh-ed25519 AAAA1", true).unwrap();
        st.create_project("a", "ann").unwrap();
        st.create_project("b", "ann").unwrap();

        assert!(matches!(
            st.assign_domain("www.example.com", "nope", "ann"),
            Err(StateError::NotFound(_))
        ));
        assert!(st.assign_domain("www.example.com", "a", "ann").unwrap());
        assert!(!st.assign_domain("www.example.com", "a", "ann").unwrap());
        match st.assign_domain("www.example.com", "b", "ann") {
            Err(StateError::Conflict(m)) => assert!(m.contains("project a"), "{m}"),
            other => panic!("second project got the host: {other:?}"),
        }
        assert_eq!(
            st.domain_owner("www.example.com").unwrap().as_deref(),
            Some("a")
        );
        st.assign_domain("api.example.com", "b", "ann").unwrap();
        let all = st.domains(None).unwrap();
        assert_eq!(
            all.iter()
                .map(|d| (d.host.as_str(), d.project.as_str()))
                .collect::<Vec<_>>(),
            vec![("www.example.com", "a"), ("api.example.com", "b")]
        );
        assert_eq!(st.domains(Some("b")).unwrap().len(), 1);
        assert_eq!(st.domains(Some("b")).unwrap()[0].assigned_by, "ann");

        assert_eq!(
            st.unassign_domain("www.example.com").unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(st.unassign_domain("www.example.com").unwrap(), None);
        assert_eq!(st.domain_owner("www.example.com").unwrap(), None);
        assert!(st.assign_domain("www.example.com", "b", "ann").unwrap());
    }
}
