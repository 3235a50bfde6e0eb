//! The actions started from the web console (backup, restore, sync, rollback, redeploy),
//! kept so that an action's waiting page (`/started/N`) answers from any server on the
//! data dir: the one that started it, and the one that took over from it by
//! `serve --upgrade` or after a restart. Each row says who started it (the only user who
//! sees it), what it said while it waited, and its activity once it recorded one (or its
//! outcome if it ended before it began). Rows are forgotten once expired.

use rusqlite::{params, OptionalExtension};

use crate::{Result, State, StateError};

/// Where a console action is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionProgress {
    /// No activity yet and not ended: it waits (e.g. for another deploy of its environment).
    Waiting,
    /// It recorded this activity.
    Activity(i64),
    /// It ended well without an activity (its summary).
    Done(String),
    /// It was refused before it began (what kind of refusal, why).
    Refused(Refusal, String),
    /// It failed inside before it began (an internal failure, which the server's log
    /// tells; the user is told no more).
    Failed,
}

/// Why a request was refused: what the web console's status code is made from (403, 404,
/// 400 or 409, in one place there); over SSH every refusal exits 1. Kept here for a
/// console action refused before it began; `slipway_deploy::failure` says which errors
/// are which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user lacks the role it needs ("permission denied: ...").
    Forbidden,
    /// No such project (or one the user may not see), environment, release, backup,
    /// app, cron or variable.
    NotFound,
    /// The request itself is malformed: not a variable name, an unknown role, a bad
    /// domain.
    Invalid,
    /// The operation does not apply to the environment as it is: nothing to roll back
    /// to, production has no parent, a backup of services it no longer has, an app that
    /// fails its deploy hook or health check, a cron already running.
    Conflict,
}

impl Refusal {
    /// As the state stores it.
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Forbidden => "forbidden",
            Refusal::NotFound => "not-found",
            Refusal::Invalid => "invalid",
            Refusal::Conflict => "conflict",
        }
    }

    /// From how the state stores it.
    fn parse(s: &str) -> Option<Refusal> {
        [
            Refusal::Forbidden,
            Refusal::NotFound,
            Refusal::Invalid,
            Refusal::Conflict,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// How a console action ended ([`State::console_action_ended`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// Well (its summary).
    Done(String),
    /// Refused (what kind of refusal, why, for the user).
    Refused(Refusal, String),
    /// An internal failure (the server's log tells).
    Failed,
}

/// One action started from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleAction {
    /// Its number (`/started/N`).
    pub id: i64,
    /// The user who started it.
    pub user: String,
    /// Its project.
    pub project: String,
    /// Its environment.
    pub environment: String,
    /// What it is, for its pages ("the backup").
    pub what: String,
    /// The process id of the server running it.
    pub server_pid: u32,
    /// What it said before its activity existed, one line each.
    pub early: Vec<String>,
    /// Where it is.
    pub progress: ActionProgress,
    /// When it started (unix seconds).
    pub started_at: i64,
}

impl State {
    /// Record an action `what` on `env` of `project` started by `user` and run by the
    /// server with pid `server_pid`, remembered until `expires_at`; returns its number.
    /// Expired actions are forgotten on the way.
    pub fn start_console_action(
        &self,
        user: &str,
        (project, env): (&str, &str),
        what: &str,
        server_pid: u32,
        expires_at: i64,
    ) -> Result<i64> {
        let db = self.db();
        let now = crate::now();
        db.execute("DELETE FROM console_actions WHERE expires_at <= ?1", [now])?;
        db.execute(
            "INSERT INTO console_actions(user, project, environment, what, server_pid, started_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![user, project, env, what, server_pid, now, expires_at],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// Add a line the action `id` said while it had no activity.
    pub fn console_action_line(&self, id: i64, line: &str) -> Result<()> {
        self.db().execute(
            "UPDATE console_actions SET early = early || ?2 || char(10)
             WHERE id = ?1 AND activity IS NULL",
            params![id, line],
        )?;
        Ok(())
    }

    /// Record that action `id` recorded activity `activity`.
    pub fn console_action_activity(&self, id: i64, activity: i64) -> Result<()> {
        self.db().execute(
            "UPDATE console_actions SET activity = ?2 WHERE id = ?1",
            params![id, activity],
        )?;
        Ok(())
    }

    /// Record how action `id` ended (shown only if it recorded no activity, which then
    /// says it all).
    pub fn console_action_ended(&self, id: i64, outcome: &ActionOutcome) -> Result<()> {
        let (kind, refused_as, message) = match outcome {
            ActionOutcome::Done(m) => ("done", None, Some(m)),
            ActionOutcome::Refused(r, m) => ("refused", Some(r.as_str()), Some(m)),
            ActionOutcome::Failed => ("failed", None, None),
        };
        self.db().execute(
            "UPDATE console_actions SET outcome = ?2, refused_as = ?3, message = ?4 WHERE id = ?1",
            params![id, kind, refused_as, message],
        )?;
        Ok(())
    }

    /// Action `id` if `user` started it and it has not expired.
    pub fn console_action(&self, id: i64, user: &str) -> Result<Option<ConsoleAction>> {
        let row = self
            .db()
            .query_row(
                "SELECT id, user, project, environment, what, server_pid, early, activity,
                        outcome, message, started_at, refused_as
                 FROM console_actions WHERE id = ?1 AND user = ?2 AND expires_at > ?3",
                params![id, user, crate::now()],
                |r| {
                    Ok((
                        (
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ),
                        (
                            r.get::<_, String>(6)?,
                            r.get::<_, Option<i64>>(7)?,
                            r.get::<_, Option<String>>(8)?,
                            r.get::<_, Option<String>>(9)?,
                            r.get::<_, i64>(10)?,
                            r.get::<_, Option<String>>(11)?,
                        ),
                    ))
                },
            )
            .optional()?;
        let Some(((id, user, project, environment, what, pid), rest)) = row else {
            return Ok(None);
        };
        let (early, activity, outcome, message, started_at, refused_as) = rest;
        let refused_as = refused_as.as_deref().map(Refusal::parse);
        let progress = match (activity, outcome.as_deref(), message, refused_as) {
            (Some(a), _, _, _) => ActionProgress::Activity(a),
            (None, None, _, None) => ActionProgress::Waiting,
            (None, Some("done"), Some(m), None) => ActionProgress::Done(m),
            (None, Some("refused"), Some(m), Some(Some(r))) => ActionProgress::Refused(r, m),
            (None, Some("failed"), None, None) => ActionProgress::Failed,
            (None, other, message, refused_as) => {
                return Err(StateError::Invalid(format!(
                    "console action {id} has outcome {other:?} (refused as {refused_as:?}) with message {message:?}"
                )))
            }
        };
        let server_pid = u32::try_from(pid).map_err(|_| {
            StateError::Invalid(format!("console action {id} has server pid {pid}"))
        })?;
        Ok(Some(ConsoleAction {
            id,
            user,
            project,
            environment,
            what,
            server_pid,
            early: early.lines().map(str::to_string).collect(),
            progress,
            started_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bob's action `id`, its row changed by `set` (an SQL `SET` list), does not decode.
    fn assert_undecodable(st: &State, id: i64, set: &str) {
        st.db()
            .execute(
                &format!("UPDATE console_actions SET {set} WHERE id = ?1"),
                [id],
            )
            .unwrap();
        assert!(
            matches!(st.console_action(id, "bob"), Err(StateError::Invalid(_))),
            "{set}"
        );
    }

    #[test]
    fn the_refusals_of_an_older_server_read_as_conflicts_after_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let before = crate::schema::MIGRATIONS.len() - 1;
        {
            // A database as it was before the refusal kinds, with a refused action.
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &crate::schema::MIGRATIONS[..before] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", before as i64)
                .unwrap();
            conn.execute_batch(&format!(
                "INSERT INTO users(name) VALUES ('ann');
                 INSERT INTO console_actions(user, project, environment, what, server_pid,
                     outcome, message, started_at, expires_at)
                 VALUES ('ann', 'demo', 'main', 'the sync', 42, 'refused', 'busy', 0, {});",
                crate::now() + 3600
            ))
            .unwrap();
        }
        let st = State::open(&path).expect("migrating");
        let a = st.console_action(1, "ann").unwrap().unwrap();
        assert_eq!(
            a.progress,
            ActionProgress::Refused(Refusal::Conflict, "busy".into())
        );
    }

    #[test]
    fn an_action_is_its_starters_only_and_says_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("state.db")).unwrap();
        st.add_user_key("ann", "ssh-ed25519 AAAA1", false).unwrap();
        st.add_user_key("bob", "ssh-ed25519 AAAA2", false).unwrap();
        let later = crate::now() + 3600;
        let id = st
            .start_console_action("ann", ("demo", "main"), "the backup", 42, later)
            .unwrap();
        assert_eq!(st.console_action(id, "bob").unwrap(), None);
        let a = st.console_action(id, "ann").unwrap().unwrap();
        assert_eq!(a.progress, ActionProgress::Waiting);
        assert_eq!((a.server_pid, a.what.as_str()), (42, "the backup"));
        st.console_action_line(id, "waiting: another deploy")
            .unwrap();
        st.console_action_activity(id, 7).unwrap();
        st.console_action_line(id, "not kept: the activity has it")
            .unwrap();
        st.console_action_ended(id, &ActionOutcome::Failed).unwrap();
        let a = st.console_action(id, "ann").unwrap().unwrap();
        assert_eq!(a.early, vec!["waiting: another deploy".to_string()]);
        assert_eq!(a.progress, ActionProgress::Activity(7));

        let refused = st
            .start_console_action("bob", ("demo", "main"), "the sync", 42, later)
            .unwrap();
        st.console_action_ended(
            refused,
            &ActionOutcome::Refused(Refusal::Conflict, "main is the parent".into()),
        )
        .unwrap();
        assert_eq!(
            st.console_action(refused, "bob").unwrap().unwrap().progress,
            ActionProgress::Refused(Refusal::Conflict, "main is the parent".into())
        );
        // Each kind of refusal comes back as it went in.
        for kind in [
            Refusal::Forbidden,
            Refusal::NotFound,
            Refusal::Invalid,
            Refusal::Conflict,
        ] {
            let n = st
                .start_console_action("bob", ("demo", "main"), "the rollback", 42, later)
                .unwrap();
            st.console_action_ended(n, &ActionOutcome::Refused(kind, "no".into()))
                .unwrap();
            assert_eq!(
                st.console_action(n, "bob").unwrap().unwrap().progress,
                ActionProgress::Refused(kind, "no".into())
            );
        }
        let failed = st
            .start_console_action("bob", ("demo", "main"), "the redeploy", 42, later)
            .unwrap();
        st.console_action_ended(failed, &ActionOutcome::Failed)
            .unwrap();
        assert_eq!(
            st.console_action(failed, "bob").unwrap().unwrap().progress,
            ActionProgress::Failed
        );
        // Expired: gone, and forgotten when the next one starts.
        let old = st
            .start_console_action("ann", ("demo", "main"), "the sync", 42, crate::now() - 1)
            .unwrap();
        assert_eq!(st.console_action(old, "ann").unwrap(), None);
        // A record that does not decode is an error, never a default.
        assert_undecodable(&st, refused, "outcome = 'done', message = NULL");
        // A refusal without its kind does not decode either.
        let kindless = st
            .start_console_action("bob", ("demo", "main"), "the sync", 42, later)
            .unwrap();
        assert_undecodable(&st, kindless, "outcome = 'refused', message = 'no'");
        // An internal failure keeps no message; one that has one does not decode.
        assert_undecodable(&st, failed, "message = 'detail'");
    }
}
