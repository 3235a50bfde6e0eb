//! The environment each branch's environment was made from: its data was copied from there
//! at its first deploy, and `sync` copies from there again.

use rusqlite::{params, OptionalExtension};

use crate::{now, Result, State};

impl State {
    /// The parent recorded for `env` of `project`, if one was.
    pub fn environment_parent(&self, project: &str, env: &str) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row(
                "SELECT parent FROM environment_parents WHERE project = ?1 AND environment = ?2",
                params![project, env],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Record `parent` as the parent of `env` of `project` unless one is recorded already;
    /// returns the one recorded (the first one wins).
    pub fn record_environment_parent(
        &self,
        project: &str,
        env: &str,
        parent: &str,
    ) -> Result<String> {
        self.db().execute(
            "INSERT INTO environment_parents(project, environment, parent, recorded_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT(project, environment) DO NOTHING",
            params![project, env, parent, now()],
        )?;
        Ok(self
            .environment_parent(project, env)?
            .unwrap_or_else(|| parent.to_string()))
    }
}
