//! Pruning old activity logs: of each environment's activities (and each project's
//! activities of no environment), the newest [`ActivityRetention::keep_newest`] keep
//! their logs, and so does every activity that ended less than
//! [`ActivityRetention::keep_days`] days ago; a running activity is never pruned. A
//! pruned activity keeps its row (kind, user, status, summary, times) with
//! `log_pruned_at` set, and its lines are deleted in the same transaction, so no row
//! ever points at a log that is half gone.

use rusqlite::{params, OptionalExtension};

use crate::{Result, State};

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
    /// seconds), each batch in one transaction; returns the ids pruned.
    pub fn prune_activity_logs(&self, retention: ActivityRetention, now: i64) -> Result<Vec<i64>> {
        let cutoff = now - i64::from(retention.keep_days) * 86_400;
        let keep = i64::try_from(retention.keep_newest).unwrap_or(i64::MAX);
        let mut pruned = Vec::new();
        loop {
            let mut db = self.db();
            let tx = db.transaction()?;
            let ids: Vec<i64> = {
                let mut st = tx.prepare(
                    "SELECT id FROM (
                         SELECT id, status, finished_at, started_at, log_pruned_at,
                                ROW_NUMBER() OVER (PARTITION BY project, environment ORDER BY id DESC) AS rank
                         FROM activity)
                     WHERE rank > ?1 AND status != 'running' AND log_pruned_at IS NULL
                       AND COALESCE(finished_at, started_at) <= ?2
                     ORDER BY id LIMIT ?3",
                )?;
                let rows = st.query_map(params![keep, cutoff, BATCH], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.execute("DELETE FROM activity_lines WHERE activity = ?1", [id])?;
                tx.execute(
                    "UPDATE activity SET log = '', log_pruned_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
            }
            tx.commit()?;
            let last = (ids.len() as i64) < BATCH;
            pruned.extend(ids);
            if last {
                return Ok(pruned);
            }
        }
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
        let two = ActivityRetention {
            keep_newest: 2,
            keep_days: 0,
        };
        // The two oldest finished ones of main go; the running one and the newest two of
        // main, and feature's only one, stay.
        assert_eq!(
            st.prune_activity_logs(two, now).unwrap(),
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
            st.prune_activity_logs(two, crate::now()).unwrap(),
            vec![ids[0]]
        );
        assert_eq!(st.activity_log_pruned_at(999).unwrap(), None);
    }
}
