//! The state of a Slipway server, in one SQLite database under the data dir.
//!
//! What lives here: users and their public keys, projects and who may do what
//! with them, the hosts server admins assigned to projects (`domains`),
//! environments (one per branch), releases (what was deployed, where it runs,
//! which one is live) and activity (every push and deploy, with its
//! whole log). Git objects, slugs and service data live elsewhere in the data
//! dir; this database only points at them.
//!
//! The database is opened in WAL mode so `slipway user add` works while
//! `slipway serve` runs. Every write is one transaction.

#![warn(missing_docs)]

mod app_json;
mod backups;
mod built_slugs;
mod console;
mod console_actions;
mod domains;
mod entropy;
mod parents;
mod pruning;
mod release_author;
mod release_variables;
mod restarts;
mod schema;
mod service_stacks;
mod services;
mod unborn;
mod variables;

pub use backups::{Backup, BackupManifest, BackupPart, PartKind};
pub use built_slugs::BuiltSlug;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

pub use console::{ConsoleLogin, ConsoleSession};
pub use console_actions::{ActionOutcome, ActionProgress, ConsoleAction, Refusal};
pub use domains::Domain;
pub use pruning::ActivityRetention;
pub use release_author::ReleaseAuthor;
pub use restarts::{ContainerKind, RestartRecord};
pub use service_stacks::ServiceStack;
pub use services::{ServiceRecord, ServiceState};
pub use variables::{Variable, VariableValue};

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite itself failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON value could not be read back.
    #[error("state database holds invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Something the caller asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// A stored record does not decode (never replaced by a default).
    #[error("state database holds an invalid record: {0}")]
    Invalid(String),
}

/// Result alias of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// A user, identified by name, with one or more keys.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// A server admin is admin of every project and may create projects.
    pub admin: bool,
}

/// A role a user holds on a project (spec section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Clone, fetch, read logs and activity.
    Viewer,
    /// Also push to every environment except protected ones.
    Contributor,
    /// Everything.
    Admin,
}

impl Role {
    /// The role's name as users type it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Contributor => "contributor",
            Role::Admin => "admin",
        }
    }
    /// Parse a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "contributor" => Some(Role::Contributor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An environment: one branch of a project, with its live release.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// Project name.
    pub project: String,
    /// Environment name (a DNS label).
    pub name: String,
    /// The git branch it follows.
    pub branch: String,
    /// The live release, if any.
    pub current_release: Option<i64>,
}

/// A release: one deployed state of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// Unique id.
    pub id: i64,
    /// Project name.
    pub project: String,
    /// Environment name.
    pub environment: String,
    /// Sequence number within the environment (1, 2, ...), as users see it.
    pub number: i64,
    /// The deployed commit (hex).
    pub commit: String,
    /// `pending`, `live`, `failed`, `retired`.
    pub status: String,
    /// The release's apps, containers and ports, as the deploy crate writes them.
    pub spec: serde_json::Value,
    /// The normalized topology deployed.
    pub topology: serde_json::Value,
    /// When it was created (unix seconds).
    pub created_at: i64,
    /// Who caused it (`unknown` for releases recorded before authors were kept).
    pub author: ReleaseAuthor,
}

/// One push or deploy, with its log.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    /// Unique id (used by `activity log ID`).
    pub id: i64,
    /// Project name.
    pub project: String,
    /// Environment name, if the activity belongs to one.
    pub environment: Option<String>,
    /// `push`, `deploy`, `rollback`, `redeploy`, `restore`.
    pub kind: String,
    /// Who started it.
    pub user: Option<String>,
    /// `running`, `success`, `failure`.
    pub status: String,
    /// One-line description.
    pub summary: String,
    /// Start, unix seconds.
    pub started_at: i64,
    /// End, unix seconds.
    pub finished_at: Option<i64>,
}

/// The state database.
pub struct State {
    conn: Mutex<Connection>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    /// Open (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<State> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        schema::migrate(&conn)?;
        Ok(State {
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; SQLite
        // rolled back its transaction, so the connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---------------------------------------------------------------- users

    /// Add a user with one key, or add the key to an existing user.
    /// `key` is the key's `TYPE BASE64` part (no comment); it must not belong to another user.
    pub fn add_user_key(&self, name: &str, key: &str, admin: bool) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let owner: Option<String> = tx
            .query_row("SELECT user FROM keys WHERE key = ?1", [key], |r| r.get(0))
            .optional()?;
        if let Some(owner) = owner {
            if owner != name {
                return Err(StateError::Conflict(format!(
                    "this key already belongs to user {owner}"
                )));
            }
        }
        tx.execute(
            "INSERT INTO users(name, admin) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET admin = max(admin, excluded.admin)",
            params![name, admin],
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO keys(key, user) VALUES (?1, ?2)",
            params![key, name],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Remove a user, its keys and its access grants.
    pub fn remove_user(&self, name: &str) -> Result<()> {
        let n = self
            .db()
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StateError::NotFound(format!("user {name}")));
        }
        Ok(())
    }

    /// All users with their number of keys.
    pub fn users(&self) -> Result<Vec<(User, usize)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT u.name, u.admin, (SELECT count(*) FROM keys k WHERE k.user = u.name)
             FROM users u ORDER BY u.name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                User {
                    name: r.get(0)?,
                    admin: r.get(1)?,
                },
                r.get::<_, i64>(2)? as usize,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The user owning `key` (`TYPE BASE64`), if any.
    pub fn user_by_key(&self, key: &str) -> Result<Option<User>> {
        Ok(self
            .db()
            .query_row(
                "SELECT u.name, u.admin FROM keys k JOIN users u ON u.name = k.user WHERE k.key = ?1",
                [key],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        admin: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .db()
            .query_row(
                "SELECT name, admin FROM users WHERE name = ?1",
                [name],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        admin: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    // ------------------------------------------------------------- projects

    /// Whether a project exists.
    pub fn project_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .db()
            .query_row("SELECT 1 FROM projects WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Create a project; `owner` becomes its admin.
    pub fn create_project(&self, name: &str, owner: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO projects(name, created_at) VALUES (?1, ?2)",
            params![name, now()],
        )?;
        tx.execute(
            "INSERT INTO access(project, user, role) VALUES (?1, ?2, 'admin')",
            params![name, owner],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// All project names.
    pub fn projects(&self) -> Result<Vec<String>> {
        let db = self.db();
        let mut st = db.prepare("SELECT name FROM projects ORDER BY name")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The role `user` holds on `project` (server admins are admin everywhere).
    pub fn role(&self, project: &str, user: &User) -> Result<Option<Role>> {
        if user.admin {
            return Ok(Some(Role::Admin));
        }
        let role: Option<String> = self
            .db()
            .query_row(
                "SELECT role FROM access WHERE project = ?1 AND user = ?2",
                params![project, user.name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    /// Grant (or change) a role.
    pub fn grant(&self, project: &str, user: &str, role: Role) -> Result<()> {
        self.db().execute(
            "INSERT INTO access(project, user, role) VALUES (?1, ?2, ?3)
             ON CONFLICT(project, user) DO UPDATE SET role = excluded.role",
            params![project, user, role.as_str()],
        )?;
        Ok(())
    }

    /// Revoke a user's access to a project.
    pub fn revoke(&self, project: &str, user: &str) -> Result<()> {
        self.db().execute(
            "DELETE FROM access WHERE project = ?1 AND user = ?2",
            params![project, user],
        )?;
        Ok(())
    }

    /// Who has which role on a project.
    pub fn access(&self, project: &str) -> Result<Vec<(String, Role)>> {
        let db = self.db();
        let mut st =
            db.prepare("SELECT user, role FROM access WHERE project = ?1 ORDER BY user")?;
        let rows = st.query_map([project], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (u, r) = row?;
            if let Some(role) = Role::parse(&r) {
                out.push((u, role));
            }
        }
        Ok(out)
    }

    // --------------------------------------------------------- environments

    /// Create the environment if missing; returns it.
    pub fn ensure_environment(
        &self,
        project: &str,
        name: &str,
        branch: &str,
    ) -> Result<Environment> {
        self.db().execute(
            "INSERT OR IGNORE INTO environments(project, name, branch) VALUES (?1, ?2, ?3)",
            params![project, name, branch],
        )?;
        self.environment(project, name)?
            .ok_or_else(|| StateError::NotFound(format!("environment {project}/{name}")))
    }

    /// One environment.
    pub fn environment(&self, project: &str, name: &str) -> Result<Option<Environment>> {
        Ok(self
            .db()
            .query_row(
                "SELECT project, name, branch, current_release FROM environments
                 WHERE project = ?1 AND name = ?2",
                params![project, name],
                env_row,
            )
            .optional()?)
    }

    /// Environments of a project (all projects when `project` is None).
    pub fn environments(&self, project: Option<&str>) -> Result<Vec<Environment>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT project, name, branch, current_release FROM environments
             WHERE ?1 IS NULL OR project = ?1 ORDER BY project, name",
        )?;
        let rows = st.query_map([project], env_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ------------------------------------------------------------- releases

    /// Record a new pending release caused by `author`; returns it (with its number in
    /// the environment).
    pub fn create_release(
        &self,
        project: &str,
        environment: &str,
        commit: &str,
        spec: &serde_json::Value,
        topology: &serde_json::Value,
        author: &ReleaseAuthor,
    ) -> Result<Release> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let number: i64 = tx.query_row(
            "SELECT coalesce(max(number), 0) + 1 FROM releases WHERE project = ?1 AND environment = ?2",
            params![project, environment],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO releases(project, environment, number, commit_id, status, spec, topology, created_at, author)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8)",
            params![
                project,
                environment,
                number,
                commit,
                serde_json::to_string(spec)?,
                serde_json::to_string(topology)?,
                now(),
                author.to_column()
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        drop(db);
        self.release(id)?
            .ok_or_else(|| StateError::NotFound(format!("release {id}")))
    }

    /// Replace a release's spec (containers, ports) as the deploy progresses.
    pub fn set_release_spec(&self, id: i64, spec: &serde_json::Value) -> Result<()> {
        self.db().execute(
            "UPDATE releases SET spec = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(spec)?],
        )?;
        Ok(())
    }

    /// Set a release's status.
    pub fn set_release_status(&self, id: i64, status: &str) -> Result<()> {
        self.db().execute(
            "UPDATE releases SET status = ?2 WHERE id = ?1",
            params![id, status],
        )?;
        Ok(())
    }

    /// Make `release` the live release of its environment: it becomes `live`,
    /// the previous live one `retired`. One transaction.
    pub fn make_live(&self, release: &Release) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "UPDATE releases SET status = 'retired'
             WHERE project = ?1 AND environment = ?2 AND status = 'live' AND id != ?3",
            params![release.project, release.environment, release.id],
        )?;
        tx.execute(
            "UPDATE releases SET status = 'live' WHERE id = ?1",
            [release.id],
        )?;
        tx.execute(
            "UPDATE environments SET current_release = ?3 WHERE project = ?1 AND name = ?2",
            params![release.project, release.environment, release.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// An environment stops serving (its branch was deleted): no release is
    /// live, so nothing brings it back at the next start. Releases stay.
    pub fn deactivate_environment(&self, project: &str, env: &str) -> Result<()> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "UPDATE releases SET status = 'retired' WHERE project = ?1 AND environment = ?2 AND status = 'live'",
            params![project, env],
        )?;
        tx.execute(
            "UPDATE environments SET current_release = NULL WHERE project = ?1 AND name = ?2",
            params![project, env],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One release by id.
    pub fn release(&self, id: i64) -> Result<Option<Release>> {
        Ok(self
            .db()
            .query_row(
                &format!("SELECT {RELEASE_COLS} FROM releases WHERE id = ?1"),
                [id],
                release_row,
            )
            .optional()?)
    }

    /// One release by its number within an environment.
    pub fn release_by_number(
        &self,
        project: &str,
        env: &str,
        number: i64,
    ) -> Result<Option<Release>> {
        Ok(self
            .db()
            .query_row(
                &format!(
                    "SELECT {RELEASE_COLS} FROM releases WHERE project = ?1 AND environment = ?2 AND number = ?3"
                ),
                params![project, env, number],
                release_row,
            )
            .optional()?)
    }

    /// Releases of an environment, newest first.
    pub fn releases(&self, project: &str, env: &str) -> Result<Vec<Release>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {RELEASE_COLS} FROM releases WHERE project = ?1 AND environment = ?2 ORDER BY number DESC"
        ))?;
        let rows = st.query_map(params![project, env], release_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The live release of every environment (to bring them back up at start).
    pub fn live_releases(&self) -> Result<Vec<Release>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {RELEASE_COLS} FROM releases r WHERE r.id IN
             (SELECT current_release FROM environments WHERE current_release IS NOT NULL)
             ORDER BY project, environment"
        ))?;
        let rows = st.query_map([], release_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Releases left `pending` by an interrupted deploy.
    pub fn pending_releases(&self) -> Result<Vec<Release>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {RELEASE_COLS} FROM releases WHERE status = 'pending'"
        ))?;
        let rows = st.query_map([], release_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ------------------------------------------------------------ variables

    /// Set an environment variable of an environment (seen by its apps from the next deploy on).
    pub fn set_variable(&self, project: &str, env: &str, name: &str, value: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO variables(project, environment, name, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(project, environment, name) DO UPDATE SET value = excluded.value",
            params![project, env, name, value],
        )?;
        Ok(())
    }

    /// Remove a variable; false if it was not set.
    pub fn unset_variable(&self, project: &str, env: &str, name: &str) -> Result<bool> {
        Ok(self.db().execute(
            "DELETE FROM variables WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, env, name],
        )? > 0)
    }

    /// The variables of an environment, by name.
    pub fn variables(&self, project: &str, env: &str) -> Result<Vec<(String, String)>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT name, value FROM variables WHERE project = ?1 AND environment = ?2 ORDER BY name",
        )?;
        let rows = st.query_map(params![project, env], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ------------------------------------------------------------- activity

    /// Start an activity; returns its id.
    pub fn start_activity(
        &self,
        project: &str,
        environment: Option<&str>,
        kind: &str,
        user: Option<&str>,
        summary: &str,
    ) -> Result<i64> {
        let db = self.db();
        db.execute(
            "INSERT INTO activity(project, environment, kind, user, status, summary, log, started_at)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, '', ?6)",
            params![project, environment, kind, user, summary, now()],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// Append text to an activity's log.
    pub fn append_log(&self, id: i64, text: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO activity_lines(activity, text) VALUES (?1, ?2)",
            params![id, text],
        )?;
        Ok(())
    }

    /// Finish an activity with `success` or `failure` and a final summary.
    pub fn finish_activity(&self, id: i64, status: &str, summary: &str) -> Result<()> {
        self.db().execute(
            "UPDATE activity SET status = ?2, summary = ?3, finished_at = ?4 WHERE id = ?1",
            params![id, status, summary, now()],
        )?;
        Ok(())
    }

    /// Mark activities still `running` (the server was interrupted) as failed.
    pub fn abort_running_activities(&self) -> Result<usize> {
        Ok(self.db().execute(
            "UPDATE activity SET status = 'failure', summary = summary || ' (interrupted)', finished_at = ?1
             WHERE status = 'running'",
            [now()],
        )?)
    }

    /// Activities of a project (optionally one environment), newest first.
    pub fn activities(
        &self,
        project: &str,
        env: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Activity>> {
        let db = self.db();
        let mut st = db.prepare(&format!(
            "SELECT {ACTIVITY_COLS} FROM activity WHERE project = ?1 AND (?2 IS NULL OR environment = ?2)
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let rows = st.query_map(params![project, env, limit as i64], activity_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One activity and its whole log.
    pub fn activity(&self, id: i64) -> Result<Option<(Activity, String)>> {
        let db = self.db();
        // `log` holds what databases from before the activity_lines table recorded.
        let Some((activity, mut log)) = db
            .query_row(
                &format!("SELECT {ACTIVITY_COLS}, log FROM activity WHERE id = ?1"),
                [id],
                |r| Ok((activity_row(r)?, r.get::<_, String>(9)?)),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut st =
            db.prepare("SELECT text FROM activity_lines WHERE activity = ?1 ORDER BY seq")?;
        for text in st.query_map([id], |r| r.get::<_, String>(0))? {
            log.push_str(&text?);
        }
        Ok(Some((activity, log)))
    }
}

const RELEASE_COLS: &str =
    "id, project, environment, number, commit_id, status, spec, topology, created_at, author";
const ACTIVITY_COLS: &str =
    "id, project, environment, kind, user, status, summary, started_at, finished_at";

fn env_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Environment> {
    Ok(Environment {
        project: r.get(0)?,
        name: r.get(1)?,
        branch: r.get(2)?,
        current_release: r.get(3)?,
    })
}

fn json_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<serde_json::Value> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: r.get(0)?,
        project: r.get(1)?,
        environment: r.get(2)?,
        number: r.get(3)?,
        commit: r.get(4)?,
        status: r.get(5)?,
        spec: json_col(r, 6)?,
        topology: json_col(r, 7)?,
        created_at: r.get(8)?,
        author: release_author::author_col(r, 9)?,
    })
}

fn activity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Activity> {
    Ok(Activity {
        id: r.get(0)?,
        project: r.get(1)?,
        environment: r.get(2)?,
        kind: r.get(3)?,
        user: r.get(4)?,
        status: r.get(5)?,
        summary: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests;
