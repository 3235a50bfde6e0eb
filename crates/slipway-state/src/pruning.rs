//! Pruning old activity logs: of each environment's activities (and each project's
//! activities of no environment), the newest [`ActivityRetention::keep_newest`] keep
//! their logs, and so does every activity that ended less than
//! [`ActivityRetention::keep_days`] days ago; a running activity is never pruned. A
//! pruned activity keeps its row (kind, user, status, summary, times) with
//! `log_pruned_at` set, and its lines are deleted in the same transaction, so no row
//! ever points at a log that is half gone.

use rusqlite::{params, OptionalExtension};

use crate::{activity_row, Activity, Result, State, ACTIVITY_COLS};

/// How many activities do not go in one transaction (so that a first prune of a large
/// database does not hold the write lock for long).
const BATCH: i64 = 500;

/// Which activity logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityRetention {
    /// The newest this many activities of each environment keep their logs.
    pub keep_newest: usize,
    /// Every activity that ended less than this many days ago keeps its log.
    pub keep_days: u32,
}

impl State {
    /// Delete the logs of the activities `retention` does not keep at time `now` (unix
    /// seconds), each batch in one transaction; returns those activities, oldest first.
    pub fn prune_activity_logs(
        &self,
        retention: ActivityRetention,
        now: i64,
    ) -> Result<Vec<Activity>> {
        let mut pruned = Vec::new();
        loop {
            let mut db = self.db();
            let tx = db.transaction()?;
            let batch = prunable(&tx, retention, now, BATCH)?;
            for a in &batch {
                tx.execute("DELETE FROM activity_lines WHERE activity = ?1", [a.id])?;
                tx.execute(
                    "UPDATE activity SET log = '', log_pruned_at = ?2 WHERE id = ?1",
                    params![a.id, now],
                )?;
            }
            tx.commit()?;
            let last = (batch.len() as i64) < BATCH;
            pruned.extend(batch);
            if last {
                return Ok(pruned);
            }
        }
    }

    /// The activities whose logs [`State::prune_activity_logs`] would delete at time
    /// `now`, oldest first, deleting nothing (`activity prune --dry-run`).
    pub fn activity_logs_to_prune(
        &self,
        retention: ActivityRetention,
        now: i64,
    ) -> Result<Vec<Activity>> {
        prunable(&self.db(), retention, now, -1)
    }

    /// When the log of activity `id` was pruned (unix seconds), if it was.
    pub fn activity_log_pruned_at(&self, id: i64) -> Result<Option<i64>> {
        Ok(self
            .db()
            .query_row(
                "SELECT log_pruned_at FROM activity WHERE id = ?1",
                [id],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }
}

/// The activities (at most `limit`; -1: all) whose logs `retention` does not keep at
/// `now`, oldest first.
fn prunable(
    db: &rusqlite::Connection,
    retention: ActivityRetention,
    now: i64,
    limit: i64,
) -> Result<Vec<Activity>> {
    let cutoff = now - i64::from(retention.keep_days) * 86_400;
    let keep = i64::try_from(retention.keep_newest).unwrap_or(i64::MAX);
    let mut st = db.prepare(&format!(
        "SELECT {ACTIVITY_COLS} FROM (
             SELECT *, ROW_NUMBER() OVER (PARTITION BY project, environment ORDER BY id DESC) AS rank
             FROM activity)
         WHERE rank > ?1 AND status != 'running' AND log_pruned_at IS NULL
           AND COALESCE(finished_at, started_at) <= ?2
         ORDER BY id LIMIT ?3"
    ))?;
    let rows = st.query_map(params![keep, cutoff, limit], activity_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_the_young_and_the_running_keep_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(&dir.path().join("state.db")).unwrap();
        let mut ids = Vec::new();
        // main: a running one first, then four finished; feature: one finished.
        for (env, running) in [
            ("main", true),
            ("main", false),
            ("main", false),
            ("main", false),
            ("main", false),
            ("feature", false),
        ] {
            let id = st
                .start_activity("demo", Some(env), "push", Some("ann"), "a push")
                .unwrap();
            st.append_log(id, &format!("line of {id}\n")).unwrap();
            if !running {
                st.finish_activity(id, "success", "done").unwrap();
            }
            ids.push(id);
        }
        let now = crate::now();
        // Everything ended just now: a day's age keeps it all.
        let young = ActivityRetention {
            keep_newest: 2,
            keep_days: 1,
        };
        assert!(st.prune_activity_logs(young, now).unwrap().is_empty());
        let ids_of = |list: Vec<Activity>| list.iter().map(|a| a.id).collect::<Vec<_>>();
        let two = ActivityRetention {
            keep_newest: 2,
            keep_days: 0,
        };
        // The two oldest finished ones of main go; the running one and the newest two of
        // main, and feature's only one, stay.
        // A dry run names them and deletes nothing.
        assert_eq!(
            ids_of(st.activity_logs_to_prune(two, now).unwrap()),
            vec![ids[1], ids[2]]
        );
        assert!(st.activity_log_pruned_at(ids[1]).unwrap().is_none());
        assert_eq!(
            ids_of(st.prune_activity_logs(two, now).unwrap()),
            vec![ids[1], ids[2]]
        );
        for (i, id) in ids.iter().enumerate() {
            let (_, log) = st.activity(*id).unwrap().unwrap();
            let pruned = st.activity_log_pruned_at(*id).unwrap();
            if i == 1 || i == 2 {
                assert_eq!((log.as_str(), pruned), ("", Some(now)), "{id}");
            } else {
                assert_eq!((log, pruned), (format!("line of {id}\n"), None), "{id}");
            }
        }
        // Done once: a second prune finds nothing; once the running one ended, it goes.
        assert!(st.prune_activity_logs(two, now).unwrap().is_empty());
        st.finish_activity(ids[0], "failure", "interrupted")
            .unwrap();
        assert_eq!(
            ids_of(st.prune_activity_logs(two, crate::now()).unwrap()),
            vec![ids[0]]
        );
        assert_eq!(st.activity_log_pruned_at(999).unwrap(), None);
    }
}
