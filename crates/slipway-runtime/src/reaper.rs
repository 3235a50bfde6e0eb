//! Host helpers that may leave daemons behind (a stack build's `mmdebstrap` starts a
//! `gpg-agent`) run under a small reaper: `slipway serve` is a child subreaper, so
//! anything orphaned below it becomes its child, and it only waits for the container
//! processes it knows ([`crate::Runtime::reap_exited`]) and for the children std's
//! `Command` waits for: any other orphan would stay a zombie. The reaper (the hidden
//! `slipway reap-run -- PROGRAM ARGS...`, see [`run_reaped`]) makes itself a child
//! subreaper, runs the program, and before it exits ends (SIGTERM, then SIGKILL) and
//! waits for every process left below it, so nothing reaches the server.
//!
//! A library that spawns such a helper builds its command with [`host_command`], which
//! wraps it in the reaper once the server registered one ([`use_reaper`]).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The reaper command (program and the arguments before `PROGRAM`), once registered.
static REAPER: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// From now on, [`host_command`] runs its program under `program args... PROGRAM ...`
/// (`slipway reap-run --`). Only the first registration counts.
pub fn use_reaper(program: PathBuf, args: Vec<OsString>) {
    let _ = REAPER.set((program, args));
}

/// A command running `program`, under the registered reaper if there is one.
pub fn host_command(program: impl AsRef<OsStr>) -> Command {
    match REAPER.get() {
        Some((reaper, args)) => {
            let mut cmd = Command::new(reaper);
            cmd.args(args).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// How long processes left behind get after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// The pids whose parent is `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Wait (without blocking) for every child that ended; true when none is left.
fn reap_all() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) => continue,
            Err(Errno::ECHILD) => return true,
            Err(Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// Run `program args` as a child subreaper and return its exit code (128 + N when killed
/// by signal N); processes it left behind are ended and waited for first.
pub fn run_reaped(program: &OsStr, args: &[OsString]) -> std::io::Result<i32> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    let status = Command::new(program).args(args).status()?;
    let me = std::process::id();
    let mut signal = Signal::SIGTERM;
    let mut deadline = Instant::now() + TERM_GRACE;
    while !reap_all() {
        for pid in children_of(me) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
        if Instant::now() >= deadline {
            signal = Signal::SIGKILL;
            deadline = Instant::now() + TERM_GRACE;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
