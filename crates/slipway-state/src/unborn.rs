//! What a refused first push made goes again: an environment none of whose releases ever
//! went live, and a project made by a first push none of whose refs landed. Nothing that
//! ever served is removed here: each removal checks that in the same transaction.

use rusqlite::params;

use crate::{Result, State};

impl State {
    /// Remove environment `env` of `project` if it never had a live release: no current
    /// release and every release of it failed (a first deploy that was refused). Its
    /// releases, services, recorded parent and restart counts go with it; its variables
    /// (set by a user, keyed by project) and its activity stay. Returns whether it was
    /// removed (false: missing, or it served once).
    pub fn remove_unborn_environment(&self, project: &str, env: &str) -> Result<bool> {
        let n = self.db().execute(
            "DELETE FROM environments
             WHERE project = ?1 AND name = ?2 AND current_release IS NULL
               AND NOT EXISTS (SELECT 1 FROM releases
                               WHERE project = ?1 AND environment = ?2 AND status != 'failed')",
            params![project, env],
        )?;
        Ok(n > 0)
    }

    /// Remove `project` if none of its environments exists (a first push none of whose
    /// deploys went live, its environments removed by
    /// [`State::remove_unborn_environment`]): its access, variables, domains, build records,
    /// entropy, activity with its logs, backups records and console actions go. Returns
    /// whether it was removed (false: missing, or it has an environment).
    pub fn remove_unborn_project(&self, project: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let envs: i64 = tx.query_row(
            "SELECT count(*) FROM environments WHERE project = ?1",
            [project],
            |r| r.get(0),
        )?;
        if envs > 0 {
            return Ok(false);
        }
        // Rows keyed by the project's name without a foreign key on it.
        tx.execute("DELETE FROM activity WHERE project = ?1", [project])?;
        tx.execute("DELETE FROM backups WHERE project = ?1", [project])?;
        tx.execute("DELETE FROM console_actions WHERE project = ?1", [project])?;
        let n = tx.execute("DELETE FROM projects WHERE name = ?1", [project])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ReleaseAuthor, State};

    fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("state.db")).unwrap();
        st.add_user_key("me", "ssh-ed25519 AAAA1", true).unwrap();
        st.create_project("demo", "me").unwrap();
        (dir, st)
    }

    fn release(st: &State, env: &str) -> crate::Release {
        st.create_release(
            "demo",
            env,
            "c0ffee",
            &serde_json::json!({}),
            &serde_json::json!({}),
            &ReleaseAuthor::user("me"),
        )
        .unwrap()
    }

    #[test]
    fn an_environment_whose_releases_all_failed_goes_with_its_releases() {
        let (_d, st) = state();
        st.ensure_environment("demo", "feature", "feature").unwrap();
        let r = release(&st, "feature");
        st.set_release_status(r.id, "failed").unwrap();
        st.record_environment_parent("demo", "feature", "main")
            .unwrap();
        assert!(st.remove_unborn_environment("demo", "feature").unwrap());
        assert!(st.environment("demo", "feature").unwrap().is_none());
        assert!(st.release(r.id).unwrap().is_none());
        assert_eq!(st.environment_parent("demo", "feature").unwrap(), None);
        assert!(!st.remove_unborn_environment("demo", "feature").unwrap());
    }

    #[test]
    fn an_environment_that_served_once_stays() {
        let (_d, st) = state();
        st.ensure_environment("demo", "main", "main").unwrap();
        let r = release(&st, "main");
        st.make_live(&r).unwrap();
        assert!(!st.remove_unborn_environment("demo", "main").unwrap());
        // Its branch deleted: no current release, but a retired one.
        st.deactivate_environment("demo", "main").unwrap();
        assert!(!st.remove_unborn_environment("demo", "main").unwrap());
        // A deploy under way (pending) is no refused one either.
        st.ensure_environment("demo", "next", "next").unwrap();
        release(&st, "next");
        assert!(!st.remove_unborn_environment("demo", "next").unwrap());
        assert!(st.environment("demo", "next").unwrap().is_some());
    }

    #[test]
    fn a_project_goes_with_its_rows_only_without_environments() {
        let (_d, st) = state();
        st.ensure_environment("demo", "main", "main").unwrap();
        let a = st
            .start_activity("demo", Some("main"), "push", Some("me"), "push x")
            .unwrap();
        st.append_log(a, "-----> refused").unwrap();
        assert!(!st.remove_unborn_project("demo").unwrap());
        assert!(st.project_exists("demo").unwrap());
        assert!(st.remove_unborn_environment("demo", "main").unwrap());
        assert!(st.remove_unborn_project("demo").unwrap());
        assert!(!st.project_exists("demo").unwrap());
        assert!(st.activities("demo", None, 10).unwrap().is_empty());
        assert!(st.activity(a).unwrap().is_none());
        // The name is free: another admin makes it anew, and the first one holds no role.
        st.add_user_key("other", "ssh-ed25519 AAAA2", true).unwrap();
        st.create_project("demo", "other").unwrap();
        assert_eq!(
            st.access("demo").unwrap(),
            vec![("other".to_string(), crate::Role::Admin)]
        );
    }
}
