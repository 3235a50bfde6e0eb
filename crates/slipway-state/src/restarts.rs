//! How often the supervisor started each container again and how it last exited, per
//! (environment, kind, name), kept across server restarts so `envs` and `services` still
//! say it after one. An app's or worker's count belongs to the release it ran: a row of an
//! older release counts for nothing, and the next restart of the new one starts from 1. A
//! service's count is never reset by deploys.

use std::str::FromStr;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::{now, Result, State, StateError};

/// What kind of container was restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    /// An app of a release.
    App,
    /// A worker of a release.
    Worker,
    /// A service of an environment.
    Service,
}

impl ContainerKind {
    /// The stored name (`app`, `worker`, `service`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::App => "app",
            ContainerKind::Worker => "worker",
            ContainerKind::Service => "service",
        }
    }
}

impl FromStr for ContainerKind {
    type Err = StateError;
    fn from_str(s: &str) -> Result<ContainerKind> {
        Ok(match s {
            "app" => ContainerKind::App,
            "worker" => ContainerKind::Worker,
            "service" => ContainerKind::Service,
            other => {
                return Err(StateError::Invalid(format!(
                    "container kind `{other}` is none of app, worker, service"
                )))
            }
        })
    }
}

/// The restarts of one container, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartRecord {
    /// App, worker or service.
    pub kind: ContainerKind,
    /// The app's, worker's or service's name.
    pub name: String,
    /// The release whose container it is (None for a service).
    pub release: Option<i64>,
    /// How many times it was started again.
    pub restarts: u64,
    /// How it last exited ("code 1", "signal 9 (SIGKILL)"), when known.
    pub last_exit: Option<String>,
}

type Row = (String, String, Option<i64>, i64, Option<String>);

fn decode((kind, name, release, restarts, last_exit): Row) -> Result<RestartRecord> {
    let restarts = u64::try_from(restarts)
        .map_err(|_| StateError::Invalid(format!("restarts of {name}: {restarts}")))?;
    Ok(RestartRecord {
        kind: kind.parse()?,
        name,
        release,
        restarts,
        last_exit,
    })
}

impl State {
    /// Record that container (`kind`, `name`) of `project`/`env` (of `release`, None for a
    /// service) exited with `last_exit`, and, when `restarted`, that it was started again.
    /// A row of another release starts anew. Returns its restarts now.
    #[allow(clippy::too_many_arguments)]
    pub fn record_container_exit(
        &self,
        project: &str,
        env: &str,
        kind: ContainerKind,
        name: &str,
        release: Option<i64>,
        last_exit: &str,
        restarted: bool,
    ) -> Result<u64> {
        let db = self.db();
        let tx = db.unchecked_transaction()?;
        let before: Option<(Option<i64>, i64)> = tx
            .query_row(
                "SELECT release, restarts FROM container_restarts
                 WHERE project = ?1 AND environment = ?2 AND kind = ?3 AND name = ?4",
                params![project, env, kind.as_str(), name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let base = match before {
            Some((r, n)) if r == release => n,
            _ => 0,
        };
        let restarts = base + i64::from(restarted);
        tx.execute(
            "INSERT OR REPLACE INTO container_restarts(project, environment, kind, name, release, restarts, last_exit, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![project, env, kind.as_str(), name, release, restarts, last_exit, now()],
        )?;
        tx.commit()?;
        Ok(restarts as u64)
    }

    /// The restarts of container (`kind`, `name`) of `project`/`env` while it runs
    /// `release` (None for a service); None when it never exited (in that release).
    pub fn container_restarts(
        &self,
        project: &str,
        env: &str,
        kind: ContainerKind,
        name: &str,
        release: Option<i64>,
    ) -> Result<Option<RestartRecord>> {
        let row: Option<Row> = self
            .db()
            .query_row(
                "SELECT kind, name, release, restarts, last_exit FROM container_restarts
                 WHERE project = ?1 AND environment = ?2 AND kind = ?3 AND name = ?4",
                params![project, env, kind.as_str(), name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        Ok(row
            .map(decode)
            .transpose()?
            .filter(|r| r.release == release))
    }

    /// Forget the restarts of container (`kind`, `name`) of `project`/`env` (a service
    /// removed with its data).
    pub fn forget_container_restarts(
        &self,
        project: &str,
        env: &str,
        kind: ContainerKind,
        name: &str,
    ) -> Result<()> {
        self.db().execute(
            "DELETE FROM container_restarts
             WHERE project = ?1 AND environment = ?2 AND kind = ?3 AND name = ?4",
            params![project, env, kind.as_str(), name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_kept_per_container_and_an_apps_start_anew_with_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("s.db")).unwrap();
        st.add_user_key("alice", "ssh-ed25519 AAAA", false).unwrap();
        st.create_project("p", "alice").unwrap();
        st.ensure_environment("p", "main", "main").unwrap();
        let (app, svc) = (ContainerKind::App, ContainerKind::Service);
        assert_eq!(
            st.container_restarts("p", "main", app, "web", Some(1))
                .unwrap(),
            None
        );
        let rec = |kind, name, rel, exit, restarted| {
            st.record_container_exit("p", "main", kind, name, rel, exit, restarted)
                .unwrap()
        };
        assert_eq!(rec(app, "web", Some(1), "code 1", true), 1);
        assert_eq!(
            rec(app, "web", Some(1), "code 2", false),
            1,
            "a failed start"
        );
        assert_eq!(rec(app, "web", Some(1), "code 3", true), 2);
        assert_eq!(rec(svc, "db", None, "signal 9 (SIGKILL)", true), 1);
        let web = st
            .container_restarts("p", "main", app, "web", Some(1))
            .unwrap()
            .unwrap();
        assert_eq!(
            (web.restarts, web.last_exit.as_deref()),
            (2, Some("code 3"))
        );
        // A new release: the old count is not its own, and its first restart is 1.
        assert_eq!(
            st.container_restarts("p", "main", app, "web", Some(2))
                .unwrap(),
            None
        );
        assert_eq!(rec(app, "web", Some(2), "code 1", true), 1);
        assert_eq!(
            st.container_restarts("p", "main", svc, "db", None)
                .unwrap()
                .map(|r| r.restarts),
            Some(1)
        );
        // A row that does not decode is an error.
        st.db()
            .execute(
                "UPDATE container_restarts SET restarts = -1 WHERE name = 'db'",
                [],
            )
            .unwrap_err();
        st.db()
            .execute(
                "UPDATE container_restarts SET kind = 'job' WHERE name = 'db'",
                [],
            )
            .unwrap_err();
        st.forget_container_restarts("p", "main", svc, "db")
            .unwrap();
        assert_eq!(
            st.container_restarts("p", "main", svc, "db", None).unwrap(),
            None
        );
    }
}
