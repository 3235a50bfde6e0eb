//! One server per data dir: `serve.lock` in the data dir, locked with flock(2) by the
//! running server and holding its pid.
//!
//! The lock belongs to the open file, not to a process: a graceful upgrade passes the
//! file to the new server with the listening sockets, so the data dir stays locked
//! across the upgrade, and the lock ends when the last server holding it exits. A
//! crash ends it too (the kernel closes the file): a lock file left by a crash is
//! simply locked again by the next server.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// The lock file of a data dir.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("serve.lock")
}

/// The data dir's lock, held by this server.
pub struct ServeLock {
    // Never unlocked explicitly: after an upgrade the new server holds the same lock
    // through its copy of the file; unlocking here would unlock it for both.
    file: ManuallyDrop<Flock<File>>,
}

/// What [`ServeLock::acquire`] found.
pub enum Acquired {
    /// The data dir is now locked by this process.
    Locked(ServeLock),
    /// Another server holds it; its pid, as its lock file says.
    HeldBy(Option<u32>),
}

impl ServeLock {
    /// Lock the data dir for this server, writing its pid into the lock file.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Acquired> {
        let path = lock_path(data_dir);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => {
                let lock = ServeLock {
                    file: ManuallyDrop::new(locked),
                };
                lock.write_pid()?;
                Ok(Acquired::Locked(lock))
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Acquired::HeldBy(
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok()),
            )),
            Err((_, e)) => Err(std::io::Error::from(e)),
        }
    }

    /// The lock handed over by the server being upgraded (the same open file, so the
    /// same lock); this server's pid is written into it.
    pub fn handed_over(fd: OwnedFd) -> std::io::Result<ServeLock> {
        // Locking again through the same open file keeps the lock it already holds.
        let locked = Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        let lock = ServeLock {
            file: ManuallyDrop::new(locked),
        };
        lock.write_pid()?;
        Ok(lock)
    }

    /// The lock file's descriptor, to hand over.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn write_pid(&self) -> std::io::Result<()> {
        let file: &File = &self.file;
        file.set_len(0)?;
        std::os::unix::fs::FileExt::write_all_at(
            file,
            format!("{}\n", std::process::id()).as_bytes(),
            0,
        )
    }
}
