//! Services: the PostgreSQL, MariaDB, Redis, ... servers of one environment. They belong to
//! the environment, not to a release: a deploy that changes no service keeps them running.
//! Each has a loopback address of its own in the environment's network namespace and
//! credentials generated once at its first start.

use std::net::Ipv4Addr;
use std::str::FromStr;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::service_stacks::{self, ServiceStack};
use crate::{now, Result, State, StateError};

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Being started (first start, or a start after a stop); not yet ready.
    Starting,
    /// Started and ready.
    Running,
    /// Stopped cleanly (`slipway down`); its data is kept.
    Stopped,
    /// Its last start failed.
    Failed,
}

impl ServiceState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        }
    }
}

impl FromStr for ServiceState {
    type Err = StateError;
    fn from_str(s: &str) -> Result<ServiceState> {
        Ok(match s {
            "starting" => ServiceState::Starting,
            "running" => ServiceState::Running,
            "stopped" => ServiceState::Stopped,
            "failed" => ServiceState::Failed,
            other => {
                return Err(StateError::Invalid(format!(
                    "service state `{other}` is none of starting, running, stopped, failed"
                )))
            }
        })
    }
}

/// One service of one environment, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRecord {
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// The service's name (the key in `services`).
    pub name: String,
    /// Its type as configured, e.g. `mariadb`.
    pub service_type: String,
    /// Its version as configured, e.g. `10.11`.
    pub version: String,
    /// The loopback address it listens on in the environment's network namespace.
    pub address: Ipv4Addr,
    /// The user apps connect as (empty: the type has no authentication).
    pub username: String,
    /// That user's generated password (empty: no authentication).
    #[serde(skip)]
    pub password: String,
    /// Where it is in its life.
    pub state: ServiceState,
    /// The stack it was made on and starts on (None: made before stacks were recorded,
    /// filled at its next start; see [`crate::ServiceStack`]).
    pub stack: Option<ServiceStack>,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn decode(r: Row) -> Result<ServiceRecord> {
    let (
        project,
        environment,
        name,
        service_type,
        version,
        address,
        username,
        password,
        state,
        stack,
        fingerprint,
    ) = r;
    let stack = service_stacks::decode(
        &format!("service {project}/{environment}/{name}"),
        stack,
        fingerprint,
    )?;
    let address = address.parse::<Ipv4Addr>().map_err(|e| {
        StateError::Invalid(format!(
            "service {project}/{environment}/{name}: address `{address}`: {e}"
        ))
    })?;
    Ok(ServiceRecord {
        state: state.parse()?,
        project,
        environment,
        name,
        service_type,
        version,
        address,
        username,
        password,
        stack,
    })
}

const COLUMNS: &str = "project, environment, name, type, version, address, username, password, state, stack, stack_fingerprint";

impl State {
    /// Record a new service of an environment (its first start). A service of that name
    /// already there, or an address already used in the environment, is a
    /// [`StateError::Conflict`].
    pub fn add_service(&self, s: &ServiceRecord) -> Result<()> {
        let n = self.db().execute(
            "INSERT OR IGNORE INTO services(project, environment, name, type, version, address, username, password, state, created_at, stack, stack_fingerprint)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                s.project,
                s.environment,
                s.name,
                s.service_type,
                s.version,
                s.address.to_string(),
                s.username,
                s.password,
                s.state.as_str(),
                now(),
                s.stack.as_ref().map(ToString::to_string),
                s.stack.as_ref().map(|k| k.fingerprint.clone()),
            ],
        )?;
        if n == 0 {
            return Err(StateError::Conflict(format!(
                "service {} of {}/{} (or its address {}) exists",
                s.name, s.project, s.environment, s.address
            )));
        }
        Ok(())
    }

    /// The services of an environment, by name.
    pub fn services(&self, project: &str, env: &str) -> Result<Vec<ServiceRecord>> {
        let rows: Vec<Row> = {
            let db = self.db();
            let mut st = db.prepare(&format!(
                "SELECT {COLUMNS} FROM services WHERE project = ?1 AND environment = ?2 ORDER BY name"
            ))?;
            let v = st
                .query_map([project, env], row_of)?
                .collect::<rusqlite::Result<_>>()?;
            v
        };
        rows.into_iter().map(decode).collect()
    }

    /// Every service of every environment (restore at start, `slipway down`).
    pub fn all_services(&self) -> Result<Vec<ServiceRecord>> {
        self.every_record_of("services")
    }

    /// Every record of `table` (`services` or `replaced_services`, of the same columns).
    fn every_record_of(&self, table: &str) -> Result<Vec<ServiceRecord>> {
        let rows: Vec<Row> = {
            let db = self.db();
            let mut st = db.prepare(&format!(
                "SELECT {COLUMNS} FROM {table} ORDER BY project, environment, name"
            ))?;
            let v = st.query_map([], row_of)?.collect::<rusqlite::Result<_>>()?;
            v
        };
        rows.into_iter().map(decode).collect()
    }

    /// One service, if it exists.
    pub fn service(&self, project: &str, env: &str, name: &str) -> Result<Option<ServiceRecord>> {
        let row = self
            .db()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM services WHERE project = ?1 AND environment = ?2 AND name = ?3"
                ),
                [project, env, name],
                row_of,
            )
            .optional()?;
        row.map(decode).transpose()
    }

    /// Set where a service is in its life.
    pub fn set_service_state(
        &self,
        project: &str,
        env: &str,
        name: &str,
        state: ServiceState,
    ) -> Result<()> {
        let n = self.db().execute(
            "UPDATE services SET state = ?4 WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name, state.as_str()],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "service {name} of {project}/{env}"
            )));
        }
        Ok(())
    }

    /// Set a service aside, as a push replaces it by one of another type: its record moves
    /// to the replaced services, where it waits until the push is live
    /// ([`State::forget_replaced_service`]) or failed ([`State::restore_replaced_service`]).
    /// A service of that name that is not there is a [`StateError::NotFound`].
    pub fn set_service_aside(&self, project: &str, env: &str, name: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let n = tx.execute(
            "INSERT OR REPLACE INTO replaced_services SELECT * FROM services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "service {name} of {project}/{env}"
            )));
        }
        tx.execute(
            "DELETE FROM services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every service set aside by a push that is neither live nor failed yet.
    pub fn replaced_services(&self) -> Result<Vec<ServiceRecord>> {
        self.every_record_of("replaced_services")
    }

    /// Put a service set aside back in place of the one that replaced it (whose record
    /// goes): the push that replaced it failed. Whether one was set aside.
    pub fn restore_replaced_service(&self, project: &str, env: &str, name: &str) -> Result<bool> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let aside = tx
            .query_row(
                "SELECT 1 FROM replaced_services WHERE project = ?1 AND environment = ?2 AND name = ?3",
                params![project, env, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !aside {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        tx.execute(
            "INSERT INTO services SELECT * FROM replaced_services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        tx.execute(
            "DELETE FROM replaced_services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Forget a service set aside: the push that replaced it is live.
    pub fn forget_replaced_service(&self, project: &str, env: &str, name: &str) -> Result<()> {
        self.db().execute(
            "DELETE FROM replaced_services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        Ok(())
    }

    /// Forget a service (its first start failed, so it holds no data anyone wrote).
    pub fn remove_service(&self, project: &str, env: &str, name: &str) -> Result<()> {
        self.db().execute(
            "DELETE FROM services WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, last: u8) -> ServiceRecord {
        ServiceRecord {
            project: "p".into(),
            environment: "main".into(),
            name: name.into(),
            service_type: "redis".into(),
            version: "7.0".into(),
            address: Ipv4Addr::new(127, 1, 0, last),
            username: String::new(),
            password: "secret".into(),
            state: ServiceState::Starting,
            stack: Some(ServiceStack {
                software: "redis".into(),
                version: "7.0".into(),
                fingerprint: "0123456789ab".into(),
            }),
        }
    }

    #[test]
    fn a_service_set_aside_comes_back_in_place_of_its_replacement_or_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("s.db")).unwrap();
        st.add_user_key("alice", "ssh-ed25519 AAAA", false).unwrap();
        st.create_project("p", "alice").unwrap();
        st.ensure_environment("p", "main", "main").unwrap();
        let old = record("cache", 2);
        st.add_service(&old).unwrap();
        st.set_service_aside("p", "main", "cache").unwrap();
        assert_eq!(st.service("p", "main", "cache").unwrap(), None);
        assert_eq!(st.replaced_services().unwrap(), vec![old.clone()]);
        // Its replacement takes its name and address.
        let mut new = record("cache", 2);
        new.service_type = "memcached".into();
        new.password = String::new();
        st.add_service(&new).unwrap();
        assert!(st.restore_replaced_service("p", "main", "cache").unwrap());
        assert_eq!(st.service("p", "main", "cache").unwrap(), Some(old.clone()));
        assert!(st.replaced_services().unwrap().is_empty());
        assert!(!st.restore_replaced_service("p", "main", "cache").unwrap());
        // Set aside again, then the push is live: forgotten, the replacement stays.
        st.set_service_aside("p", "main", "cache").unwrap();
        st.add_service(&new).unwrap();
        st.forget_replaced_service("p", "main", "cache").unwrap();
        assert!(st.replaced_services().unwrap().is_empty());
        assert_eq!(st.service("p", "main", "cache").unwrap(), Some(new));
        assert!(matches!(
            st.set_service_aside("p", "main", "nothing"),
            Err(StateError::NotFound(_))
        ));
    }

    #[test]
    fn services_are_stored_per_environment_and_decoded_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("s.db")).unwrap();
        st.add_user_key("alice", "ssh-ed25519 AAAA", false).unwrap();
        st.create_project("p", "alice").unwrap();
        st.ensure_environment("p", "main", "main").unwrap();
        st.add_service(&record("cache", 2)).unwrap();
        assert!(matches!(
            st.add_service(&record("cache", 3)),
            Err(StateError::Conflict(_))
        ));
        assert!(matches!(
            st.add_service(&record("other", 2)),
            Err(StateError::Conflict(_))
        ));
        st.set_service_state("p", "main", "cache", ServiceState::Running)
            .unwrap();
        let all = st.services("p", "main").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].state, ServiceState::Running);
        assert_eq!(all[0].password, "secret");
        assert_eq!(st.all_services().unwrap(), all);
        assert!(st.services("p", "dev").unwrap().is_empty());
        // A record that does not decode is an error, never a default.
        st.db()
            .execute("UPDATE services SET state = 'sleeping'", [])
            .unwrap();
        assert!(matches!(
            st.services("p", "main"),
            Err(StateError::Invalid(_))
        ));
        st.db()
            .execute("UPDATE services SET state = 'running', address = 'x'", [])
            .unwrap();
        assert!(matches!(
            st.service("p", "main", "cache"),
            Err(StateError::Invalid(_))
        ));
        // Made before stacks were kept: none until its next start records it.
        st.db()
            .execute(
                "UPDATE services SET address = '127.1.0.2', stack = NULL, stack_fingerprint = NULL",
                [],
            )
            .unwrap();
        let old = st.service("p", "main", "cache").unwrap().unwrap();
        assert_eq!(old.stack, None);
        let pg = ServiceStack {
            software: "postgresql".into(),
            version: "15".into(),
            fingerprint: "abcdef".into(),
        };
        st.set_service_stack("p", "main", "cache", &pg).unwrap();
        assert_eq!(
            st.service("p", "main", "cache").unwrap().unwrap().stack,
            Some(pg)
        );
        st.db()
            .execute("UPDATE services SET stack_fingerprint = NULL", [])
            .unwrap();
        assert!(matches!(
            st.service("p", "main", "cache"),
            Err(StateError::Invalid(_))
        ));
        st.remove_service("p", "main", "cache").unwrap();
        assert!(st.service("p", "main", "cache").unwrap().is_none());
    }
}
