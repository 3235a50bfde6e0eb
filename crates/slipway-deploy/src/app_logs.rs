//! App logs (`logs/PROJECT/ENV/APP.log`) rotated by size: a container writes its output
//! straight into `APP.log` and outlives the server, so the file cannot be swapped under
//! it; instead, when it grows past the limit, its content is copied to `APP.log.1` (older
//! ones move to `APP.log.2`; [`KEEP`] are kept) and `APP.log` is truncated in place
//! (logrotate's copytruncate). A follower that finds the file shorter than where it was
//! reads the rest from `APP.log.1` ([`rotated`]) and goes on from the start.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::Platform;

/// How many rotated files of each app log are kept (`APP.log.1` .. `APP.log.N`).
pub const KEEP: usize = 2;
/// How often the logs are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The `n`th rotated file of an app log (`APP.log.N`).
pub fn rotated(log: &Path, n: usize) -> PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `log` when it is bigger than `max` bytes; true when it did.
pub fn rotate_if_bigger(log: &Path, max: u64) -> io::Result<bool> {
    let len = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    for n in (1..KEEP).rev() {
        match std::fs::rename(rotated(log, n), rotated(log, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let tmp = rotated(log, 0);
    let mut src = File::open(log)?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // Copy until caught up with the writers (a few rounds at most), so the window in
    // which a line can be lost is only between the last check and the truncation.
    for _ in 0..4 {
        io::copy(&mut src, &mut dst)?;
        if std::fs::metadata(log)?.len() <= src.stream_position()? {
            break;
        }
    }
    // In place before the truncation: a follower that sees the file shrink finds it.
    std::fs::rename(&tmp, rotated(log, 1))?;
    OpenOptions::new().write(true).open(log)?.set_len(0)?;
    Ok(true)
}

/// Every app log under `logs` (`PROJECT/ENV/APP.log`).
fn app_logs(logs: &Path) -> Vec<PathBuf> {
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    dirs(logs)
        .iter()
        .flat_map(|project| dirs(project))
        .flat_map(|env| dirs(&env))
        .filter(|f| f.extension().is_some_and(|x| x == "log"))
        .collect()
}

/// Checks every app log each [`CHECK_EVERY`] and rotates those bigger than the
/// platform's `app_log_max_size`; runs until dropped.
pub async fn rotate_forever(platform: Arc<Platform>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        let p = platform.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let max = p.settings().app_log_max_size;
            for log in app_logs(&p.data().root().join("logs")) {
                if let Err(e) = rotate_if_bigger(&log, max) {
                    tracing::warn!("rotating {}: {e}", log.display());
                }
            }
        })
        .await;
    }
}

/// Where a follower at `pos` of `log` continues: `None` when the file did not shrink;
/// else it was rotated, and the follower reads `APP.log.1` from `pos` to its end (the
/// part it had not seen yet), then `log` from its start.
pub fn after_rotation(log: &Path, pos: u64) -> io::Result<Option<File>> {
    if std::fs::metadata(log)?.len() >= pos {
        return Ok(None);
    }
    let mut old = File::open(rotated(log, 1))?;
    old.seek(SeekFrom::Start(pos))?;
    Ok(Some(old))
}

/// The last whole lines of at most `want` bytes of `APP.log.1` (empty when there is none),
/// for showing the end of a log that was just rotated.
pub fn rotated_tail(log: &Path, want: u64) -> Vec<u8> {
    let Ok(mut f) = File::open(rotated(log, 1)) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(want);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || io::Read::read_to_end(&mut f, &mut bytes).is_err()
    {
        return Vec::new();
    }
    if start > 0 {
        // Start at a line boundary.
        let cut = bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..cut);
    }
    bytes
}

/// Append `line` to the log file `log`, making its folder first (the `----- slipway:`
/// lines a start or a restart writes into an app's or a service's log).
pub(crate) fn append_line(log: &Path, line: &str) -> Result<(), String> {
    use std::io::Write;
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let _ = writeln!(f, "{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn rotation_keeps_the_writer_and_a_follower_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        // The container's file: opened once for appending, never reopened.
        let mut writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut follower = File::open(&log).unwrap();
        let mut seen = String::new();
        let mut written = String::new();
        for round in 0..5 {
            for i in 0..100 {
                let l = format!("round {round} line {i}\n");
                writer.write_all(l.as_bytes()).unwrap();
                written.push_str(&l);
            }
            // The follower reads part of it, then the file is rotated.
            let mut buf = vec![0u8; 700];
            let n = follower.read(&mut buf).unwrap();
            seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            assert!(rotate_if_bigger(&log, 1000).unwrap());
            assert!(!rotate_if_bigger(&log, 1000).unwrap(), "small now");
            let pos = follower.stream_position().unwrap();
            let mut rest = after_rotation(&log, pos).unwrap().expect("shrunk");
            rest.read_to_string(&mut seen).unwrap();
            follower.seek(SeekFrom::Start(0)).unwrap();
        }
        writer.write_all(b"last\n").unwrap();
        written.push_str("last\n");
        follower.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, written);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "last\n");
        assert!(rotated(&log, 1).exists() && rotated(&log, 2).exists());
        assert!(!rotated(&log, 3).exists(), "only {KEEP} are kept");
        assert!(std::fs::read_to_string(rotated(&log, 1))
            .unwrap()
            .starts_with("round 4 line 0\n"));
        assert_eq!(app_logs(dir.path()), Vec::<PathBuf>::new());
        let tail = String::from_utf8(rotated_tail(&log, 20)).unwrap();
        assert_eq!(tail, "round 4 line 99\n");
        assert!(rotated_tail(&dir.path().join("none.log"), 50).is_empty());
    }
}
