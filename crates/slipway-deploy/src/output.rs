//! What a deploy tells the user: each line goes live to the pusher's terminal
//! (as `remote:` lines) and into the activity log in the state database, so
//! `activity log ID` replays what the pusher saw. The log is written in batches
//! ([`crate::activity_log`]) and capped: a build printing a million lines keeps
//! its head and tail, with a marker saying how much was cut between them.

use std::sync::Arc;
use std::time::Instant;

use slipway_git::receive::Progress;

use crate::activity_log::ActivityLog;
use crate::Platform;

/// Where live lines go besides the activity log.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Told the id of an operation's activity as soon as it is recorded, before its first line.
pub type ActivityStarted = Arc<dyn Fn(i64) + Send + Sync>;

/// Who follows an operation (rollback, redeploy, sync, backup create and restore): its
/// live lines, and its activity's id once it exists, so a caller that answers before the
/// operation ends (the web console) goes to exactly that activity. `Some(sink)` converts
/// into a watch of the lines only (the SSH commands, whose lines name the activity).
#[derive(Clone, Default)]
pub struct Watch {
    /// Where its lines go live, also those said before its activity exists (e.g. that it
    /// waits for another deploy).
    pub lines: Option<Sink>,
    /// Told its activity's id once recorded.
    pub started: Option<ActivityStarted>,
}

impl Watch {
    /// Say `line` to the watcher (a line of no activity: e.g. while waiting for the lock).
    pub fn say(&self, line: &str) {
        if let Some(s) = &self.lines {
            s(line);
        }
    }

    /// Tell the watcher the operation recorded activity `id`.
    pub fn activity_started(&self, id: i64) {
        if let Some(s) = &self.started {
            s(id);
        }
    }
}

impl From<Option<Sink>> for Watch {
    fn from(lines: Option<Sink>) -> Watch {
        Watch {
            lines,
            started: None,
        }
    }
}

/// The output of one activity.
#[derive(Clone)]
pub struct Output {
    log: Arc<ActivityLog>,
    sink: Option<Sink>,
}

impl Output {
    /// Output of activity `activity`, live to `progress` if a client listens.
    pub fn new(platform: Arc<Platform>, activity: i64, progress: Option<Progress>) -> Output {
        let sink = progress.map(|p| Arc::new(move |l: &str| p.line(l)) as Sink);
        Output::with_sink(platform, activity, sink)
    }

    /// Output of activity `activity`, live to any sink (an SSH channel for admin commands).
    pub fn with_sink(platform: Arc<Platform>, activity: i64, sink: Option<Sink>) -> Output {
        Output {
            log: ActivityLog::shared(platform, activity),
            sink,
        }
    }

    /// The activity id.
    pub fn activity(&self) -> i64 {
        self.log.activity()
    }

    /// One line of text (no trailing newline needed).
    pub fn line(&self, text: &str) {
        for l in text.lines() {
            if let Some(sink) = &self.sink {
                sink(l);
            }
            self.log.line(l);
        }
    }

    /// Writes every line so far to the activity log (with the kept tail of a capped log);
    /// called before the activity is marked finished. Also done when the last clone goes.
    pub fn flush(&self) {
        self.log.flush();
    }

    /// A phase headline: `-----> PHASE: TEXT`.
    pub fn phase(&self, phase: &str, text: &str) {
        self.line(&format!("-----> {phase}: {text}"));
        self.log.flush_pending();
    }

    /// A phase headline with the time since `since`.
    pub fn phase_done(&self, phase: &str, text: &str, since: Instant) {
        self.line(&format!(
            "-----> {phase}: {text} [{}]",
            format_duration(since.elapsed())
        ));
        self.log.flush_pending();
    }

    /// The end of an activity that failed: `what` (the activity's summary, e.g. "rollback
    /// of main to release 3") failed with `error`, all of it, into the log and the sink;
    /// the activity's summary is the short line [`failed_summary`] makes of it.
    pub fn failed(&self, what: &str, error: &str) {
        self.line(&format!("-----> {what} failed: {error}"));
    }

    /// A line of an app's own output (build, hooks), indented and prefixed with the app.
    pub fn app_line(&self, app: &str, text: &str) {
        self.line(&format!("       {app} | {text}"));
    }
}

/// How many characters of a failure an activity's summary carries ([`failed_summary`]).
const SUMMARY_CAUSE: usize = 100;

/// The summary of an activity `what` (e.g. "rollback of main to release 3") that failed
/// with `error`: one short line saying what failed and the start of why ("rollback of
/// main to release 3 failed: provision failed: ..."), cut at [`SUMMARY_CAUSE`]
/// characters; the whole failure goes into the activity's log ([`Output::failed`]).
pub fn failed_summary(what: &str, error: &str) -> String {
    format!("{what} failed: {}", one_line(error, SUMMARY_CAUSE))
}

/// `s` on one line (its line breaks as spaces) of at most `max` characters, cut at a
/// word where it can be, "..." marking the cut.
pub fn one_line(s: &str, max: usize) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut = line
        .char_indices()
        .nth(max)
        .map_or(line.len(), |(at, _)| at);
    let kept = &line[..cut];
    // At the last space of the second half, so no word is cut in two.
    let kept = match kept.rfind(' ') {
        Some(space) if space >= cut / 2 => &kept[..space],
        _ => kept,
    };
    format!("{}...", kept.trim_end_matches([' ', ',', ';', ':']))
}

/// `0.42s`, `12.3s`, `2m05s`.
pub fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_activity_is_summed_up_in_one_short_line() {
        let detail = format!(
            "provision failed: unpacking the slug of hello: sha256:{} is damaged:\nits blob hashes to sha256:{}; nothing was changed",
            "a".repeat(64),
            "b".repeat(64)
        );
        let summary = failed_summary("rollback of main to release 3", &detail);
        assert!(
            summary.starts_with("rollback of main to release 3 failed: provision failed: "),
            "{summary}"
        );
        assert!(!summary.contains('\n'), "{summary}");
        assert!(summary.ends_with("..."), "{summary}");
        assert!(
            summary.chars().count() <= "rollback of main to release 3 failed: ".len() + 103,
            "{summary}"
        );
        // A short failure is told whole.
        assert_eq!(
            failed_summary("backup of main", "pg_dump exited 1"),
            "backup of main failed: pg_dump exited 1"
        );
        // A cut falls between words, and never inside a character.
        assert_eq!(one_line("aaa bbb ccc", 9), "aaa bbb...");
        assert_eq!(one_line("ééééé", 3), "ééé...");
    }
}
