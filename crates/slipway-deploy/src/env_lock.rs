//! Per-environment locks that hold across processes.
//!
//! Deploys, syncs, backups and restores of one environment run one at a time
//! ([`Platform::lock_env`]); a cron never runs twice at once ([`Platform::try_lock_cron`]).
//! Within one server an in-process mutex queues them; across servers (the old and the new
//! one during `serve --upgrade`, which share the data dir) an flock(2) on a lock file in
//! the data dir does: `locks/PROJECT/ENV/deploy.lock` and
//! `locks/PROJECT/ENV/cron-HASH.lock`. A lock file is only ever locked, never removed or
//! written; the kernel frees the lock when its holder ends, so a crash leaves nothing held.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
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
}

/// Held while a deploy, sync, backup or restore of an environment runs: the environment
/// is locked in this server and in any other on the same data dir until it is dropped.
pub struct EnvLock {
    // Declared first so it is dropped first: the file lock is free before the next waiter
    // in this server takes the mutex and tries it.
    _file: Flock<File>,
    _in_process: OwnedMutexGuard<()>,
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
    /// Take the lock serializing deploys (and syncs, backups, restores) of one
    /// environment, in this server and across servers on the data dir. When another one
    /// holds it, `say` tells the user this one waits, once.
    pub async fn lock_env(
        &self,
        project: &str,
        env: &str,
        say: impl FnOnce(&str),
    ) -> Result<EnvLock, LockError> {
        let path = deploy_lock_path(self.data().root(), project, env)?;
        let mutex = {
            let mut locks = self.env_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(format!("{project}/{env}")).or_default().clone()
        };
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
        loop {
            if let Some(file) = try_flock(&path)? {
                return Ok(EnvLock {
                    _file: file,
                    _in_process: in_process,
                });
            }
            if first_try.elapsed() < QUIET_WAIT {
                // Maybe only looked at (a cron checking for deploys): try again soon.
                tokio::time::sleep(QUIET_WAIT / 5).await;
                continue;
            }
            // Another server on this data dir (the one being upgraded, or the new one)
            // holds it: its deploy ends within its upgrade grace at the latest.
            if let Some(say) = say.take() {
                say(&format!(
                    "-----> waiting: another deploy of {env} is running in the other slipway server (an upgrade is under way); this one starts when it is done"
                ));
            }
            tokio::time::sleep(RETRY).await;
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
        let mutex = {
            let mut locks = self.env_locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(format!("{project}/{env}")).or_default().clone()
        };
        let Ok(in_process) = mutex.try_lock_owned() else {
            return Ok(None);
        };
        Ok(try_flock(&path)?.map(|file| EnvLock {
            _file: file,
            _in_process: in_process,
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
}
