//! Project entropy: one random value per project, made at its first use and kept for the
//! project's life, that its apps see as `PLATFORM_PROJECT_ENTROPY` (Django and Drupal
//! templates derive their secret keys from it, so it must never change between deploys).

use rusqlite::{params, OptionalExtension};

use crate::{Result, State, StateError};

impl State {
    /// The entropy of `project`: the stored one, or `fresh` stored now when it has none yet
    /// (`fresh` must be at least 32 characters; the first caller's value wins). A missing
    /// project is [`StateError::NotFound`].
    pub fn project_entropy(&self, project: &str, fresh: &str) -> Result<String> {
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
        tx.execute(
            "INSERT OR IGNORE INTO project_entropy(project, entropy) VALUES (?1, ?2)",
            params![project, fresh],
        )?;
        let entropy: String = tx.query_row(
            "SELECT entropy FROM project_entropy WHERE project = ?1",
            [project],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_keeps_its_first_entropy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "ssh-ed25519 AAAA1", true).unwrap();
        st.create_project("a", "ann").unwrap();
        st.create_project("b", "ann").unwrap();
        let first = "a".repeat(40);
        assert_eq!(st.project_entropy("a", &first).unwrap(), first);
        assert_eq!(st.project_entropy("a", &"c".repeat(40)).unwrap(), first);
        assert_eq!(
            st.project_entropy("b", &"b".repeat(40)).unwrap(),
            "b".repeat(40)
        );
        assert!(matches!(
            st.project_entropy("nope", &first),
            Err(StateError::NotFound(_))
        ));
        assert!(
            st.project_entropy("a", "short").is_ok(),
            "a stored one wins"
        );
    }
}
