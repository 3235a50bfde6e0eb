//! An activity's log on its way into the state database: lines are written in batches
//! (every [`BATCH_LINES`] lines, [`BATCH_BYTES`] bytes or [`BATCH_AGE`], and at each phase
//! headline; a timer task writes lines that waited that long with nothing after them), so a chatty build costs a few inserts a second instead of one per line; and
//! the stored log is capped: the first [`HEAD_BYTES`] are kept, then only the last
//! [`TAIL_BYTES`], written at the end after a marker line `... N lines (M bytes) cut ...`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Platform;

/// Most lines held before a write.
pub const BATCH_LINES: usize = 1000;
/// Most bytes held before a write.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Longest time a line is held before a write.
pub const BATCH_AGE: Duration = Duration::from_millis(100);
/// Bytes of the beginning of a log that are always kept.
pub const HEAD_BYTES: usize = 256 * 1024;
/// Bytes of the end of a log kept once the head is full.
pub const TAIL_BYTES: usize = 256 * 1024;

/// The marker line between the head and the tail of a capped log.
pub fn cut_marker(lines: u64, bytes: u64) -> String {
    format!("... {lines} lines ({bytes} bytes) cut ...\n")
}

/// Where the batches go (the state database, or a test's buffer).
trait Store: Send + Sync {
    fn append(&self, activity: i64, text: &str);
}

impl Store for Arc<Platform> {
    fn append(&self, activity: i64, text: &str) {
        if let Err(e) = self.state().append_log(activity, text) {
            tracing::warn!("activity log: {e}");
        }
    }
}

/// The log of one activity, shared by the clones of its [`crate::output::Output`];
/// whatever is held is written when the last clone goes.
pub struct ActivityLog {
    activity: i64,
    store: Box<dyn Store>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Lines of the head not written yet.
    pending: String,
    pending_lines: usize,
    since: Option<Instant>,
    /// Bytes of the head accepted so far.
    head: usize,
    /// Once the head is full: the last lines, written at the end.
    tail: VecDeque<String>,
    tail_bytes: usize,
    cut_lines: u64,
    cut_bytes: u64,
}

impl ActivityLog {
    /// The log of `activity`, written to the platform's state database.
    pub fn new(platform: Arc<Platform>, activity: i64) -> ActivityLog {
        ActivityLog::with_store(Box::new(platform), activity)
    }

    /// [`ActivityLog::new`], shared, with a task (when a tokio runtime runs) that writes
    /// held lines once they are [`BATCH_AGE`] old; it ends with the last reference.
    pub fn shared(platform: Arc<Platform>, activity: i64) -> Arc<ActivityLog> {
        let log = Arc::new(ActivityLog::new(platform, activity));
        log.spawn_timer();
        log
    }

    fn spawn_timer(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(BATCH_AGE);
            loop {
                tick.tick().await;
                let Some(log) = weak.upgrade() else {
                    return;
                };
                let mut h = log.held();
                if h.since.is_some_and(|t| t.elapsed() >= BATCH_AGE) {
                    log.write_pending(&mut h);
                }
            }
        });
    }

    fn with_store(store: Box<dyn Store>, activity: i64) -> ActivityLog {
        ActivityLog {
            activity,
            store,
            held: Mutex::new(Held::default()),
        }
    }

    /// The activity id.
    pub fn activity(&self) -> i64 {
        self.activity
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One line (without its newline).
    pub fn line(&self, line: &str) {
        let mut h = self.held();
        let len = line.len() + 1;
        if h.tail.is_empty() && h.head + len <= HEAD_BYTES {
            h.head += len;
            h.pending.push_str(line);
            h.pending.push('\n');
            h.pending_lines += 1;
            h.since.get_or_insert_with(Instant::now);
            let due = h.pending_lines >= BATCH_LINES
                || h.pending.len() >= BATCH_BYTES
                || h.since.is_some_and(|t| t.elapsed() >= BATCH_AGE);
            if due {
                self.write_pending(&mut h);
            }
            return;
        }
        // The head is full: keep the last TAIL_BYTES, count what falls out.
        h.head = HEAD_BYTES;
        h.tail.push_back(format!("{line}\n"));
        h.tail_bytes += len;
        while h.tail_bytes > TAIL_BYTES {
            let Some(old) = h.tail.pop_front() else {
                break;
            };
            h.tail_bytes -= old.len();
            h.cut_lines += 1;
            h.cut_bytes += old.len() as u64;
        }
    }

    fn write_pending(&self, h: &mut Held) {
        if !h.pending.is_empty() {
            self.store.append(self.activity, &h.pending);
        }
        h.pending.clear();
        h.pending_lines = 0;
        h.since = None;
    }

    /// Writes the head's held lines (not the tail of a capped log).
    pub fn flush_pending(&self) {
        let mut h = self.held();
        self.write_pending(&mut h);
    }

    /// Writes everything held: the head's lines, then for a capped log the marker and
    /// the tail. Lines that come later start a new tail.
    pub fn flush(&self) {
        let mut h = self.held();
        self.write_pending(&mut h);
        if h.tail.is_empty() {
            return;
        }
        let mut text = String::with_capacity(h.tail_bytes + 64);
        if h.cut_lines > 0 {
            text.push_str(&cut_marker(h.cut_lines, h.cut_bytes));
        }
        for l in h.tail.drain(..) {
            text.push_str(&l);
        }
        h.tail_bytes = 0;
        h.cut_lines = 0;
        h.cut_bytes = 0;
        self.store.append(self.activity, &text);
    }
}

impl Drop for ActivityLog {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<String>>>);

    impl Store for Buffer {
        fn append(&self, _activity: i64, text: &str) {
            self.0.lock().unwrap().push(text.to_string());
        }
    }

    #[test]
    fn a_million_lines_keep_head_marker_and_tail_in_few_writes() {
        let buf = Buffer::default();
        let log = ActivityLog::with_store(Box::new(buf.clone()), 1);
        let n = 1_000_000u64;
        let mut total = 0u64;
        for i in 0..n {
            let l = format!("line {i}");
            total += l.len() as u64 + 1;
            log.line(&l);
        }
        log.line("-----> done");
        total += "-----> done\n".len() as u64;
        drop(log);
        let writes = buf.0.lock().unwrap().clone();
        assert!(writes.len() < 100, "{} writes", writes.len());
        let text = writes.concat();
        assert!(text.starts_with("line 0\nline 1\n"), "the head is kept");
        assert!(
            text.ends_with("line 999999\n-----> done\n"),
            "the tail is kept"
        );
        assert!(
            text.len() <= HEAD_BYTES + TAIL_BYTES + 100,
            "{}",
            text.len()
        );
        let marker = text
            .lines()
            .find(|l| l.starts_with("... "))
            .expect("a marker");
        // The marker says exactly what is missing.
        let kept_lines = text.lines().count() as u64 - 1;
        let kept_bytes = text.len() as u64 - marker.len() as u64 - 1;
        assert_eq!(
            format!("{marker}\n"),
            cut_marker(n + 1 - kept_lines, total - kept_bytes)
        );
    }

    #[tokio::test]
    async fn a_quiet_line_is_written_by_the_timer() {
        let buf = Buffer::default();
        let log = Arc::new(ActivityLog::with_store(Box::new(buf.clone()), 1));
        log.spawn_timer();
        log.line("alone");
        tokio::time::sleep(BATCH_AGE * 4).await;
        assert_eq!(buf.0.lock().unwrap().concat(), "alone\n");
    }

    #[test]
    fn short_logs_are_whole_and_flushed_at_phases_and_the_end() {
        let buf = Buffer::default();
        let log = ActivityLog::with_store(Box::new(buf.clone()), 1);
        log.line("a");
        log.line("b");
        assert!(buf.0.lock().unwrap().is_empty(), "held for a batch");
        log.flush_pending();
        assert_eq!(buf.0.lock().unwrap().concat(), "a\nb\n");
        log.line("c");
        std::thread::sleep(BATCH_AGE);
        log.line("d");
        assert_eq!(
            buf.0.lock().unwrap().concat(),
            "a\nb\nc\nd\n",
            "old lines go"
        );
        log.line("e");
        log.flush();
        log.flush();
        drop(log);
        assert_eq!(buf.0.lock().unwrap().concat(), "a\nb\nc\nd\ne\n");
    }
}
