//! Per-environment locks that hold across processes.
//!
//! Deploys, syncs, backups and restores of one environment run one at a time
//! ([`Platform::lock_env`]); a cron never runs twice at once ([`Platform::try_lock_cron`]).
//! Within one server an in-process mutex queues them; across servers (the old and the new
//! one during `serve --upgrade`, which share the data dir) an flock(2) on a lock file in
//! the data dir does: `locks/PROJECT/ENV/deploy.lock` and
//! `locks/PROJECT/ENV/cron-HASH.lock`. A lock file is never removed; the kernel frees the
//! lock when its holder ends, so a crash leaves nothing held.
//!
//! A deploy lock file holds a one-line record of its holder while it is held (`PID SINCE
//! WHAT`, emptied when let go), so that a deploy waiting for another server can say who
//! holds it and what that runs; the pid the kernel names (`/proc/locks`) is the truth, the
//! record only adds what it runs. A wait for another server is bounded
//! ([`crate::Settings::lock_wait`]): then the deploy gives up, changing nothing.

use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::Platform;

/// How often a lock held by another server is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// How long a lock file may be held before a waiting deploy says it waits: longer than
/// [`Platform::env_locked`] holds it to look (a cron about to run).
const QUIET_WAIT: Duration = Duration::from_millis(50);

/// How long a wait goes on before it is said even when no holder can be named.
const UNNAMED_WAIT: Duration = Duration::from_secs(1);

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A project or environment name that cannot name a lock file.
    #[error("{0:?} is not a project or environment name")]
    Name(String),
    /// The lock file could not be made, opened or locked.
    #[error("locking {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process held the lock longer than this deploy may wait for it.
    #[error(
        "gave up after {} s waiting for the deploy lock of {env}, held by {holder}; nothing was changed: try again once it is done",
        waited.as_secs()
    )]
    Timeout {
        /// The environment.
        env: String,
        /// How long this one waited.
        waited: Duration,
        /// Who held it when this one gave up.
        holder: LockHolder,
    },
}

/// Who holds a lock file, as far as this process can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockHolder {
    /// The process holding it, as the kernel says (`/proc/locks`).
    pub pid: Option<u32>,
    /// That process's command line (shortened).
    pub command: Option<String>,
    /// What it runs under the lock, as its record in the lock file says (only when the
    /// record is that process's).
    pub doing: Option<String>,
    /// Since when it holds it (Unix seconds), as its record says.
    pub since: Option<i64>,
}

impl LockHolder {
    /// Whether the holder is a `slipway serve` process (another server on the data dir).
    pub fn is_slipway_server(&self) -> bool {
        self.command.as_deref().is_some_and(|c| {
            let mut words = c.split(' ');
            let program = words.next().unwrap_or_default();
            Path::new(program).file_name().and_then(|n| n.to_str()) == Some("slipway")
                && words.next() == Some("serve")
        })
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(command)) => write!(f, "pid {pid} ({command})")?,
            (Some(pid), None) if !Path::new(&format!("/proc/{pid}")).exists() => write!(
                f,
                "pid {pid} (no longer running: a process it started holds the lock)"
            )?,
            (Some(pid), None) => write!(f, "pid {pid}")?,
            (None, _) => write!(f, "a process this server cannot see")?,
        }
        if let Some(doing) = &self.doing {
            write!(f, ", running {doing}")?;
        }
        if let Some(since) = self.since {
            let held = unix_now().saturating_sub(since);
            write!(f, ", for {held} s")?;
        }
        Ok(())
    }
}

/// Held while a deploy, sync, backup or restore of an environment runs: the environment
/// is locked in this server and in any other on the same data dir until it is dropped.
pub struct EnvLock {
    // Declared first so it is dropped first: the file lock is free before the next waiter
    // in this server takes the mutex and tries it.
    file: Flock<File>,
    _in_process: OwnedMutexGuard<()>,
    since: i64,
}

impl EnvLock {
    /// The lock made of both its parts, its record (since now, doing `doing`) written.
    fn taken(file: Flock<File>, in_process: OwnedMutexGuard<()>, doing: Option<&str>) -> EnvLock {
        let since = unix_now();
        write_record(&file, since, doing);
        EnvLock {
            file,
            _in_process: in_process,
            since,
        }
    }

    /// Record what runs under the lock (e.g. `a push by alice to main of demo`), for a
    /// deploy of another server waiting for it to say.
    pub fn doing(&self, what: &str) {
        write_record(&self.file, self.since, Some(what));
    }
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        // Let go: the record goes first, while the lock is still held.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!("emptying a deploy lock's record: {e}");
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Write the holder's record into a held deploy lock file: `PID SINCE WHAT` (`-` for
/// nothing said yet). Only a diagnostic: a failure is logged, not raised.
fn write_record(file: &File, since: i64, doing: Option<&str>) {
    // One line: what a user named may hold anything.
    let doing: String = doing
        .unwrap_or("-")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let record = format!("{} {since} {doing}\n", std::process::id());
    let written = file
        .set_len(0)
        .and_then(|()| file.write_all_at(record.as_bytes(), 0));
    if let Err(e) = written {
        tracing::debug!("writing a deploy lock's record: {e}");
    }
}

/// A holder's record in a lock file: (pid, since, what it runs).
fn read_record(path: &Path) -> Option<(u32, i64, Option<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().next()?;
    let mut words = line.splitn(3, ' ');
    let pid = words.next()?.parse().ok()?;
    let since = words.next()?.parse().ok()?;
    let doing = words
        .next()
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "-")
        .map(str::to_string);
    Some((pid, since, doing))
}

/// The pid holding an flock(2) on `path`, as `/proc/locks` says (`N: FLOCK ADVISORY WRITE
/// PID MAJOR:MINOR:INODE 0 EOF`, major and minor in hex).
fn flock_holder_pid(path: &Path, proc_locks: &str) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    proc_locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line reads `N: -> FLOCK ...`: not a holder.
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

/// A process's command line, its arguments joined by spaces, shortened to 160 characters.
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        return None;
    }
    let line = words.join(" ");
    Some(if line.chars().count() > 160 {
        format!("{}...", line.chars().take(157).collect::<String>())
    } else {
        line
    })
}

/// Who holds the lock file at `path` now.
pub fn holder(path: &Path) -> LockHolder {
    let proc_locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = flock_holder_pid(path, &proc_locks);
    let record = read_record(path);
    // The record says what runs only if it is the holder's own (an earlier holder that
    // crashed left its record behind).
    let (doing, since) = match (pid, record) {
        (Some(pid), Some((rpid, since, doing))) if pid == rpid => (doing, Some(since)),
        _ => (None, None),
    };
    LockHolder {
        pid,
        command: pid.and_then(command_line),
        doing,
        since,
    }
}

/// Held while a run of a cron goes, in any server on the data dir.
pub struct CronLock {
    _file: Flock<File>,
}

/// Where the locks of an environment live: `locks/PROJECT/ENV/`.
fn env_dir(data_dir: &Path, project: &str, env: &str) -> Result<PathBuf, LockError> {
    for name in [project, env] {
        if !is_file_name(name) {
            return Err(LockError::Name(name.to_string()));
        }
    }
    Ok(data_dir.join("locks").join(project).join(env))
}

/// A name safe as one path component: ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.`.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The deploy lock file of an environment.
pub fn deploy_lock_path(data_dir: &Path, project: &str, env: &str) -> Result<PathBuf, LockError> {
    Ok(env_dir(data_dir, project, env)?.join("deploy.lock"))
}

/// The lock file of one cron (its app and name hashed: a cron's name is any YAML key).
pub fn cron_lock_path(
    data_dir: &Path,
    project: &str,
    env: &str,
    app: &str,
    cron: &str,
) -> Result<PathBuf, LockError> {
    let hash = hex::encode(&Sha256::digest(format!("{app}\0{cron}").as_bytes())[..8]);
    Ok(env_dir(data_dir, project, env)?.join(format!("cron-{hash}.lock")))
}

/// Open (creating it and its folder) a lock file.
fn open(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)
}

/// Lock `path` exclusively if no one holds it: `None` when someone does (this process
/// through another open file, or another process).
fn try_flock(path: &Path) -> Result<Option<Flock<File>>, LockError> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(LockError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(e),
        }),
    }
}

impl Platform {
    /// The in-process lock of one environment (made on first use), taken before its file.
    fn env_mutex(&self, project: &str, env: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.env_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(format!("{project}/{env}")).or_default().clone()
    }

    /// Take the lock serializing deploys (and syncs, backups, restores) of one
    /// environment, in this server and across servers on the data dir. When another one
    /// holds it, `say` tells the user this one waits, once. A wait for another process
    /// ends after [`crate::Settings::lock_wait`] with [`LockError::Timeout`].
    pub async fn lock_env(
        &self,
        project: &str,
        env: &str,
        say: impl FnOnce(&str),
    ) -> Result<EnvLock, LockError> {
        let path = deploy_lock_path(self.data().root(), project, env)?;
        let mutex = self.env_mutex(project, env);
        let mut say = Some(say);
        let in_process = match mutex.clone().try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(say) = say.take() {
                    say(&format!(
                        "-----> waiting: another deploy of {env} is running; this one starts when it is done"
                    ));
                }
                mutex.lock_owned().await
            }
        };
        let first_try = std::time::Instant::now();
        let bound = self.settings().lock_wait;
        loop {
            if let Some(file) = try_flock(&path)? {
                return Ok(EnvLock::taken(file, in_process, None));
            }
            let waited = first_try.elapsed();
            if waited < QUIET_WAIT {
                // Maybe only looked at (a cron checking for deploys): try again soon.
                tokio::time::sleep(QUIET_WAIT / 5).await;
                continue;
            }
            // Another server on this data dir (the one being upgraded, or the new one)
            // holds it: its deploy ends within its upgrade grace at the latest. Anything
            // else holding it (or a server stuck) is given up on after the bound.
            if waited >= bound {
                return Err(LockError::Timeout {
                    env: env.to_string(),
                    waited,
                    holder: holder(&path),
                });
            }
            if say.is_some() {
                let holder = holder(&path);
                // No holder to name: let go meanwhile, most likely; say nothing yet
                // unless it stays unnamed (a holder this process cannot see).
                let named = holder.pid.is_some() || waited >= UNNAMED_WAIT;
                if let Some(say) = say.take_if(|_| named) {
                    let place = if holder.is_slipway_server() {
                        "in the other slipway server (an upgrade is under way)"
                    } else {
                        "in another process"
                    };
                    say(&format!(
                        "-----> waiting: another deploy of {env} is running {place}: {holder}; this one starts when it is done, or gives up after {} s",
                        bound.as_secs()
                    ));
                }
            }
            tokio::time::sleep(RETRY.min(bound.saturating_sub(waited))).await;
        }
    }

    /// Whether a deploy (or sync, backup, restore) of the environment holds its lock now,
    /// in this server or another on the data dir.
    pub fn env_locked(&self, project: &str, env: &str) -> Result<bool, LockError> {
        let in_process = {
            let locks = self.env_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.get(&format!("{project}/{env}")).cloned()
        };
        if in_process.is_some_and(|l| l.try_lock().is_err()) {
            return Ok(true);
        }
        let path = deploy_lock_path(self.data().root(), project, env)?;
        // Taken and at once let go: a deploy trying it meanwhile waits one retry.
        Ok(try_flock(&path)?.is_none())
    }

    /// Take the environment's deploy lock only if no one holds it (in this server or
    /// another on the data dir): `None` when someone does. The supervisor's restarts
    /// ([`crate::supervise`]) use it, so that they skip a tick instead of waiting.
    pub fn try_lock_env(&self, project: &str, env: &str) -> Result<Option<EnvLock>, LockError> {
        let path = deploy_lock_path(self.data().root(), project, env)?;
        let mutex = self.env_mutex(project, env);
        let Ok(in_process) = mutex.try_lock_owned() else {
            return Ok(None);
        };
        Ok(try_flock(&path)?.map(|file| {
            EnvLock::taken(
                file,
                in_process,
                Some("a restart of a container that exited"),
            )
        }))
    }

    /// Lock one cron of an environment for a run, unless a run of it holds it (in this
    /// server or another on the data dir): then `None`.
    pub fn try_lock_cron(
        &self,
        project: &str,
        env: &str,
        app: &str,
        cron: &str,
    ) -> Result<Option<CronLock>, LockError> {
        let path = cron_lock_path(self.data().root(), project, env, app, cron)?;
        Ok(try_flock(&path)?.map(|file| CronLock { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_locks_folder_are_refused() {
        let root = Path::new("/data");
        for bad in ["", "..", ".x", "a/b", "a\0b", "é"] {
            assert!(
                matches!(deploy_lock_path(root, bad, "main"), Err(LockError::Name(_))),
                "{bad:?}"
            );
            assert!(
                matches!(deploy_lock_path(root, "demo", bad), Err(LockError::Name(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            deploy_lock_path(root, "demo", "main").ok(),
            Some(PathBuf::from("/data/locks/demo/main/deploy.lock"))
        );
    }

    #[test]
    fn a_file_lock_is_exclusive_between_open_files_and_freed_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path =
            cron_lock_path(dir.path(), "demo", "main", "app", "my cron/1").expect("a lock path");
        let first = try_flock(&path).expect("lock").expect("free");
        // Another open file of the same lock file, as another server has.
        assert!(try_flock(&path).expect("lock").is_none());
        drop(first);
        assert!(try_flock(&path).expect("lock").is_some());
    }

    #[test]
    fn the_holder_of_a_lock_is_named_by_the_kernel_and_its_record_only_if_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = deploy_lock_path(dir.path(), "demo", "main").expect("a lock path");
        let held = try_flock(&path).expect("lock").expect("free");
        write_record(&held, unix_now() - 5, Some("a push by me\nto main"));
        let h = holder(&path);
        assert_eq!(h.pid, Some(std::process::id()));
        assert!(h.command.is_some());
        assert_eq!(h.doing.as_deref(), Some("a push by me to main"));
        let said = h.to_string();
        assert!(
            said.starts_with(&format!("pid {} (", std::process::id())),
            "{said}"
        );
        assert!(
            said.contains(", running a push by me to main, for "),
            "{said}"
        );

        // A record left by another process (one that crashed) says nothing of this holder.
        std::fs::write(&path, "1 1700000000 a restore\n").expect("record");
        let h = holder(&path);
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!((h.doing, h.since), (None, None));

        // Not held: no one.
        drop(held);
        assert_eq!(holder(&path).pid, None);
    }

    #[test]
    fn proc_locks_lines_of_other_files_and_of_waiters_name_no_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deploy.lock");
        std::fs::write(&path, "").expect("file");
        let meta = std::fs::metadata(&path).expect("meta");
        let id = format!(
            "{:02x}:{:02x}:{}",
            nix::sys::stat::major(meta.dev()),
            nix::sys::stat::minor(meta.dev()),
            meta.ino()
        );
        let locks = format!(
            "1: POSIX  ADVISORY  WRITE 11 {id} 0 EOF\n2: FLOCK  ADVISORY  WRITE 22 00:01:1 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 33 {id} 0 EOF\n"
        );
        assert_eq!(flock_holder_pid(&path, &locks), None);
        let locks = format!("{locks}3: FLOCK  ADVISORY  WRITE 44 {id} 0 EOF\n");
        assert_eq!(flock_holder_pid(&path, &locks), Some(44));
    }

    #[test]
    fn a_slipway_server_is_told_from_other_holders() {
        let server = LockHolder {
            pid: Some(7),
            command: Some("/usr/local/bin/slipway serve --data-dir /x".into()),
            ..Default::default()
        };
        assert!(server.is_slipway_server());
        for other in [
            "flock /x -c sleep",
            "slipway user ls",
            "/bin/slipwayx serve",
        ] {
            let h = LockHolder {
                command: Some(other.into()),
                ..server.clone()
            };
            assert!(!h.is_slipway_server(), "{other}");
        }
    }
}
