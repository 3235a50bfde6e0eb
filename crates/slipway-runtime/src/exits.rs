//! How a detached container ended: its exit code or the signal that killed it.
//!
//! `runc run --detach` leaves the container's first process (tini) without a parent once
//! runc exits; the kernel gives it to the nearest ancestor that is a child subreaper. A
//! server that calls [`Runtime::collect_exits`](crate::Runtime::collect_exits) is one, so
//! the containers it starts become its children: [`Exits`] remembers their pids, and
//! [`Runtime::reap_exited`](crate::Runtime::reap_exited) waits for the ones that ended
//! (without blocking), which both keeps them from staying zombies and tells how they
//! ended. Containers started by another process (an earlier server) are not its children:
//! how they ended is unknown.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::RuntimeError;

/// How a container's first process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code (tini passes on its command's; 128 + N when the command
    /// was killed by signal N).
    Code(i32),
    /// It was killed by this signal (e.g. `kill -9` of the container's process).
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signal_name = |n: i32| {
            nix::sys::signal::Signal::try_from(n)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {n}"))
        };
        match *self {
            Exit::Code(code) if code > 128 && code < 128 + 65 => {
                write!(f, "code {code} ({})", signal_name(code - 128))
            }
            Exit::Code(code) => write!(f, "code {code}"),
            Exit::Signal(n) => write!(f, "signal {n} ({})", signal_name(n)),
        }
    }
}

/// The containers this process is the parent of, and how the ended ones ended.
#[derive(Debug, Default)]
pub(crate) struct Exits {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pid of a container's first process -> container id, until it is reaped.
    children: HashMap<i32, String>,
    /// Container id -> how it ended, until taken.
    ended: HashMap<String, Exit>,
}

impl Exits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember that container `id` runs as `pid` (read from runc's pid file).
    pub(crate) fn started(&self, id: &str, pid: i32) {
        let mut inner = self.lock();
        inner.ended.remove(id);
        inner.children.insert(pid, id.to_string());
    }

    /// Wait (without blocking) for every remembered container process that ended;
    /// returns how many did.
    pub(crate) fn reap(&self) -> usize {
        // runc's leftovers first, without the lock (a scan of `/proc`): never a container's
        // first process, whose exit is told below.
        for pid in ended_orphans() {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        let mut inner = self.lock();
        let pids: Vec<i32> = inner.children.keys().copied().collect();
        let mut n = 0;
        for pid in pids {
            let exit = match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(Exit::Signal(signal as i32)),
                Ok(_) => continue,
                // Not this process's child (no subreaper, or started by another server).
                Err(Errno::ECHILD) => None,
                Err(_) => continue,
            };
            if let Some(id) = inner.children.remove(&pid) {
                if let Some(exit) = exit {
                    n += 1;
                    inner.ended.insert(id, exit);
                }
            }
        }
        n
    }

    /// How container `id` ended, if it was reaped since it started (taken: asked once).
    pub(crate) fn take(&self, id: &str) -> Option<Exit> {
        self.lock().ended.remove(id)
    }

    /// Forget how containers that `keep` does not name ended.
    pub(crate) fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.lock().ended.retain(|id, _| keep(id));
    }
}

/// The zombie children of this process that are runc's leftovers: processes of a
/// container that are not its first process (pid 1 there), and runc's own setup stages.
/// A process `runc exec` started is given to this subreaper when its runc dies first (an
/// exec given up on, a console whose connection dropped, an exec racing its container's
/// exit), and so is runc's `runc:[1:CHILD]` stage when the exec fails that way. Left a
/// zombie, a container's process keeps the container's first process from ever finishing
/// its exit (the kernel waits until every process of a pid namespace is reaped): the
/// container looks running for good; and every such zombie holds a pid. The server's own
/// children (the runtime CLI, git) run in its pid namespace under their own names and are
/// never among them: whoever spawned them waits for them.
fn ended_orphans() -> Vec<i32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            zombie_parent(&stat) == Some(me)
                && (command_name(&stat).is_some_and(|c| c.starts_with(RUNC_STAGE))
                    || std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .is_ok_and(|status| a_containers_later_process(&status)))
        })
        .collect()
}

/// How runc names the stages of its container setup (`runc:[0:PARENT]`, `runc:[1:CHILD]`,
/// `runc:[2:INIT]`).
const RUNC_STAGE: &str = "runc:[";

/// The parent pid of a process whose `/proc/PID/stat` is `stat`, when it is a zombie.
fn zombie_parent(stat: &str) -> Option<u32> {
    // `pid (comm) state ppid ...`; the command name may hold spaces and parentheses.
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    (state == "Z").then_some(ppid)
}

/// The command name of a process whose `/proc/PID/stat` is `stat`.
fn command_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// Whether a process whose `/proc/PID/status` is `status` runs in a container, and is not
/// its first process: it has a pid in a namespace below this one (its `NSpid` line names
/// more than one) and that pid is not 1. A container's first process is never taken
/// here, not even in the moment between runc starting it and [`Exits::started`]
/// remembering it: how it ends is for [`Exits::reap`] to tell.
fn a_containers_later_process(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|pids| pids.split_ascii_whitespace().collect::<Vec<_>>())
        .is_some_and(|pids| pids.len() > 1 && pids.last() != Some(&"1"))
}

/// Make this process a child subreaper: containers it starts detached stay its children.
pub(crate) fn become_subreaper() -> Result<(), RuntimeError> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| RuntimeError::io("becoming a child subreaper", e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_and_its_parent_are_read_from_its_stat() {
        assert_eq!(zombie_parent("41 (sleep) Z 7 41 41 0 -1"), Some(7));
        assert_eq!(zombie_parent("41 (a) (b) Z 9 41 0"), Some(9));
        assert_eq!(zombie_parent("41 (a) Z (b) S 9 41 0"), None);
        assert_eq!(zombie_parent("41 (sleep) S 7 41 41 0 -1"), None);
        assert_eq!(zombie_parent("41 (sleep"), None);
        assert_eq!(zombie_parent("41 (sleep) Z x"), None);
    }

    #[test]
    fn a_command_name_is_read_from_its_stat() {
        assert_eq!(
            command_name("41 (runc:[1:CHILD]) Z 7 41"),
            Some("runc:[1:CHILD]")
        );
        assert_eq!(command_name("41 (a) (b) Z 7 41"), Some("a) (b"));
        assert_eq!(command_name("41 runc Z 7"), None);
    }

    #[test]
    fn a_process_in_a_container_has_two_pids_and_its_first_is_pid_1_there() {
        assert!(a_containers_later_process(
            "Name:\tsleep\nNSpid:\t4127\t7\nNSpgid:\t1\n"
        ));
        assert!(!a_containers_later_process(
            "Name:\ttini-static\nNSpid:\t4120\t1\n"
        ));
        assert!(!a_containers_later_process("Name:\trunc\nNSpid:\t4127\n"));
        assert!(!a_containers_later_process("Name:\trunc\n"));
    }

    #[test]
    fn exits_say_the_code_or_the_signal() {
        assert_eq!(Exit::Code(3).to_string(), "code 3");
        assert_eq!(Exit::Code(137).to_string(), "code 137 (SIGKILL)");
        assert_eq!(Exit::Signal(9).to_string(), "signal 9 (SIGKILL)");
    }

    #[test]
    // Reaped by `Exits::reap` (waitpid), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    fn a_child_that_ended_is_reaped_once_and_its_exit_taken_once() {
        let exits = Exits::default();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh");
        let pid = i32::try_from(child.id()).expect("pid");
        exits.started("c1", pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while exits.reap() == 0 {
            assert!(std::time::Instant::now() < deadline, "never reaped");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(exits.take("c1"), Some(Exit::Code(7)));
        assert_eq!(exits.take("c1"), None);
        // A pid that is not a child is forgotten, with nothing recorded.
        exits.started("c2", 1);
        assert_eq!(exits.reap(), 0);
        assert_eq!(exits.take("c2"), None);
    }
}
