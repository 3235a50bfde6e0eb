//! What a Heroku `app.json` leaves in an environment: its generated secrets (kept as the
//! environment's sensitive variables, so `var set` replaces them and `var ls` hides them)
//! and whether its `scripts.postdeploy` ran (once per environment, after its first
//! successful deploy).

use rusqlite::{params, OptionalExtension};

use crate::{now, Result, State};

impl State {
    /// Give the environment's variable `name` the sensitive value `candidate` unless it
    /// already has a value (generated before, or set with `var set`). Returns whether the
    /// candidate was stored.
    pub fn generate_variable(
        &self,
        project: &str,
        env: &str,
        name: &str,
        candidate: &str,
    ) -> Result<bool> {
        let n = self.db().execute(
            "INSERT INTO variables(project, environment, name, value, sensitive) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(project, environment, name) DO NOTHING",
            params![project, env, name, candidate],
        )?;
        Ok(n == 1)
    }

    /// The release number whose deploy ran the environment's `postdeploy` script, if it ran.
    pub fn postdeploy_ran(&self, project: &str, env: &str) -> Result<Option<i64>> {
        Ok(self
            .db()
            .query_row(
                "SELECT release FROM postdeploy_runs WHERE project = ?1 AND environment = ?2",
                params![project, env],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record that the deploy of release `release` ran the environment's `postdeploy`
    /// script. Returns false (and changes nothing) when one was already recorded.
    pub fn record_postdeploy(&self, project: &str, env: &str, release: i64) -> Result<bool> {
        let n = self.db().execute(
            "INSERT INTO postdeploy_runs(project, environment, release, ran_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(project, environment) DO NOTHING",
            params![project, env, release, now()],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::State;

    #[test]
    fn a_generated_variable_is_kept_and_postdeploy_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("state.db")).unwrap();
        s.add_user_key("owner", "ssh-ed25519 AAAA1", true).unwrap();
        s.create_project("p", "owner").unwrap();
        s.ensure_environment("p", "main", "main").unwrap();
        assert!(s.generate_variable("p", "main", "SECRET_KEY", "a").unwrap());
        assert!(!s.generate_variable("p", "main", "SECRET_KEY", "b").unwrap());
        let vars = s.variable_list("p", "main").unwrap();
        assert_eq!(vars.len(), 1);
        assert_eq!(vars[0].value.for_containers(), "a");
        assert!(vars[0].value.is_sensitive());
        assert_eq!(s.postdeploy_ran("p", "main").unwrap(), None);
        assert!(s.record_postdeploy("p", "main", 1).unwrap());
        assert!(!s.record_postdeploy("p", "main", 2).unwrap());
        assert_eq!(s.postdeploy_ran("p", "main").unwrap(), Some(1));
    }
}
