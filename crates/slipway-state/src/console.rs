//! The web console's one-time login links and sessions. Only hashes of their secrets are
//! stored (the console crate makes and hashes them); rows go with their user, so a removed
//! user's links and sessions stop working at once.

use rusqlite::{params, OptionalExtension};

use crate::{Result, State, User};

/// What became of a one-time login link that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleLogin {
    /// Valid: it is used up now, for this user.
    Valid(User),
    /// It existed but its time had passed (it is used up now too).
    Expired,
    /// Unknown: never issued, already used, or its user was removed.
    Unknown,
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Its user, as the users table says now.
    pub user: User,
    /// The session's CSRF token (sent back in every form).
    pub csrf: String,
    /// When it ends (unix seconds).
    pub expires_at: i64,
}

impl State {
    /// Record a one-time login link for `user` (by the hash of its token), valid until
    /// `expires_at`; links whose time passed are forgotten on the way.
    pub fn add_console_login(&self, token_hash: &str, user: &str, expires_at: i64) -> Result<()> {
        let db = self.db();
        db.execute(
            "DELETE FROM console_logins WHERE expires_at <= ?1",
            [crate::now()],
        )?;
        db.execute(
            "INSERT INTO console_logins(token_hash, user, expires_at) VALUES (?1, ?2, ?3)",
            params![token_hash, user, expires_at],
        )?;
        Ok(())
    }

    /// Use up the login link with this token hash at time `now` (unix seconds): it can
    /// be presented once.
    pub fn take_console_login(&self, token_hash: &str, now: i64) -> Result<ConsoleLogin> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let taken: Option<(String, bool, i64)> = tx
            .query_row(
                "SELECT u.name, u.admin, l.expires_at FROM console_logins l
                 JOIN users u ON u.name = l.user WHERE l.token_hash = ?1",
                [token_hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        tx.execute(
            "DELETE FROM console_logins WHERE token_hash = ?1",
            [token_hash],
        )?;
        tx.commit()?;
        Ok(match taken {
            None => ConsoleLogin::Unknown,
            Some((_, _, expires_at)) if expires_at <= now => ConsoleLogin::Expired,
            Some((name, admin, _)) => ConsoleLogin::Valid(User { name, admin }),
        })
    }

    /// Record a session of `user` (by the hash of its id) with its CSRF token.
    pub fn add_console_session(
        &self,
        id_hash: &str,
        user: &str,
        csrf: &str,
        expires_at: i64,
    ) -> Result<()> {
        let db = self.db();
        db.execute(
            "DELETE FROM console_sessions WHERE expires_at <= ?1",
            [crate::now()],
        )?;
        db.execute(
            "INSERT INTO console_sessions(id_hash, user, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![id_hash, user, csrf, expires_at],
        )?;
        Ok(())
    }

    /// The session with this id hash, if it exists and has not ended at `now`.
    pub fn console_session(&self, id_hash: &str, now: i64) -> Result<Option<ConsoleSession>> {
        Ok(self
            .db()
            .query_row(
                "SELECT u.name, u.admin, s.csrf, s.expires_at FROM console_sessions s
                 JOIN users u ON u.name = s.user
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
                params![id_hash, now],
                |r| {
                    Ok(ConsoleSession {
                        user: User {
                            name: r.get(0)?,
                            admin: r.get(1)?,
                        },
                        csrf: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// End a session (logout).
    pub fn remove_console_session(&self, id_hash: &str) -> Result<()> {
        self.db()
            .execute("DELETE FROM console_sessions WHERE id_hash = ?1", [id_hash])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        state
            .add_user_key("ann", "ssh-ed25519 AAAA", false)
            .unwrap();
        (dir, state)
    }

    #[test]
    fn a_login_link_works_once_and_not_after_its_time() {
        let (_d, state) = state();
        let now = crate::now();
        state.add_console_login("h1", "ann", now + 600).unwrap();
        match state.take_console_login("h1", now).unwrap() {
            ConsoleLogin::Valid(u) => assert_eq!(u.name, "ann"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            state.take_console_login("h1", now).unwrap(),
            ConsoleLogin::Unknown
        );
        state.add_console_login("h2", "ann", now + 600).unwrap();
        assert_eq!(
            state.take_console_login("h2", now + 601).unwrap(),
            ConsoleLogin::Expired
        );
        assert_eq!(
            state.take_console_login("forged", now).unwrap(),
            ConsoleLogin::Unknown
        );
    }

    #[test]
    fn sessions_end_with_their_time_their_logout_and_their_user() {
        let (_d, state) = state();
        let now = crate::now();
        state
            .add_console_session("s1", "ann", "c1", now + 60)
            .unwrap();
        let s = state.console_session("s1", now).unwrap().unwrap();
        assert_eq!((s.user.name.as_str(), s.csrf.as_str()), ("ann", "c1"));
        assert!(state.console_session("s1", now + 60).unwrap().is_none());
        state.remove_console_session("s1").unwrap();
        assert!(state.console_session("s1", now).unwrap().is_none());
        state
            .add_console_session("s2", "ann", "c2", now + 60)
            .unwrap();
        state.add_console_login("l", "ann", now + 60).unwrap();
        state.remove_user("ann").unwrap();
        assert!(state.console_session("s2", now).unwrap().is_none());
        assert_eq!(
            state.take_console_login("l", now).unwrap(),
            ConsoleLogin::Unknown
        );
    }
}
