//! Reloading a server of before `slipway reload`: such a server closes `serve.sock` on a
//! `reload` request without a word, but it already took SIGHUP as "upgrade to the binary
//! on disk" (starting `slipway serve --upgrade` with its own flags). So `slipway reload`
//! sends SIGHUP to the server named by the data dir's lock and watches the outcome from
//! outside, as that server cannot report it: the new server writes its pid into the lock
//! file once it has the listening sockets, and the old one exits once the new one
//! serves and it drained. This makes the first `systemctl reload` after installing a new
//! binary and the new unit files (`ExecReload=slipway reload`) work on an old server.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// How long the new server gets to take the listening sockets over (it asks for them
/// before it restores anything).
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the whole reload may take: the new server's restore, then the old server's
/// drain (the unit's `TimeoutStartSec` bounds `ExecReload` too).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether `pid` runs (a zombie, exited but not yet reaped, does not). A thread-group
/// leader shows `Z` as soon as its own thread exited, while the process's other threads
/// may still be exiting (its parent cannot reap it yet): it runs until they are gone.
fn running(pid: u32) -> bool {
    let leader_runs = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false);
    leader_runs
        || std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| tasks.count() > 1)
            .unwrap_or(false)
}

/// The command line of `pid`, its arguments separated by spaces.
fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The pid the data dir's lock file names.
fn lock_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(crate::lock::lock_path(data_dir))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The running server of `data_dir`: its lock is held and the pid it names runs
/// `slipway serve`. Anything else (a lock file left by a crash, a pid reused since) is
/// refused, so that no other process is ever signalled.
fn running_server(data_dir: &Path) -> Result<u32> {
    let path = crate::lock::lock_path(data_dir);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("no slipway serve runs on {}", data_dir.display()))?;
    // Taken (and released at once) only when no server holds it.
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(_unlocked_when_dropped) => bail!(
            "no slipway serve runs on {} (its lock is not held)",
            data_dir.display()
        ),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {}
        Err((_, e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    let Some(pid) = lock_pid(data_dir) else {
        bail!("{} names no pid", path.display());
    };
    let cmd = command_line(pid);
    if !running(pid) || !cmd.split(' ').any(|a| a == "serve") {
        bail!(
            "{} names pid {pid}, which is no running slipway serve ({cmd:?})",
            path.display()
        );
    }
    Ok(pid)
}

/// `slipway serve --upgrade` processes started by `parent`.
fn upgrades_started_by(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .filter(|pid| command_line(*pid).split(' ').any(|a| a == "--upgrade"))
        .collect()
}

/// Reload the server of `data_dir`, which did not answer `reload`, by SIGHUP; wait until
/// a new server took over and the old one exited. `Err` when no new server took over
/// (the old server's log says why) or when it failed after taking the sockets.
pub fn reload(data_dir: &Path) -> Result<String> {
    let old = running_server(data_dir)?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(old).context("a pid out of range")?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
        .with_context(|| format!("sending SIGHUP to slipway serve (pid {old})"))?;
    let goes_on = |why: String| {
        anyhow::anyhow!(
            "{why}; slipway serve (pid {old}), a server of before `slipway reload` reloaded by SIGHUP, goes on serving (its log says why)"
        )
    };
    // The new server takes the listening sockets (and the lock file) over.
    let started = Instant::now();
    let mut seen: Vec<u32> = Vec::new();
    let new = loop {
        match lock_pid(data_dir) {
            Some(new) if new != old => break new,
            _ => {}
        }
        if !running(old) {
            bail!("slipway serve (pid {old}) exited after SIGHUP, and no server took over");
        }
        let now = upgrades_started_by(old);
        if let Some(gone) = seen.iter().find(|p| !now.contains(p) && !running(**p)) {
            if lock_pid(data_dir) == Some(old) {
                return Err(goes_on(format!(
                    "the new server (pid {gone}) exited without taking over"
                )));
            }
        }
        for pid in now {
            if !seen.contains(&pid) {
                seen.push(pid);
            }
        }
        if started.elapsed() > TAKEOVER_TIMEOUT {
            return Err(goes_on(format!(
                "no new server took the listening sockets over within {}s",
                TAKEOVER_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // It restores, says `ready`, and the old server drains and exits.
    loop {
        if !running(new) {
            return Err(goes_on(format!(
                "the new server (pid {new}) exited without serving"
            )));
        }
        if !running(old) {
            return Ok(format!(
                "reloaded by SIGHUP (slipway serve pid {old} is of before `slipway reload`): slipway serve (pid {new}) serves; the old one drained and exited"
            ));
        }
        if started.elapsed() > RELOAD_TIMEOUT {
            return Err(goes_on(format!(
                "the new server (pid {new}) did not take over within {}s",
                RELOAD_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
