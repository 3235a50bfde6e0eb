//! systemd socket activation (sd_listen_fds(3)): listening sockets passed from
//! descriptor 3 on, announced by `LISTEN_PID` (this process) and `LISTEN_FDS` (how
//! many). `contrib/slipway.socket` passes the HTTP and SSH sockets this way; each is
//! recognized by the address it listens on.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The first descriptor systemd passes.
const LISTEN_FDS_START: RawFd = 3;

/// The listening sockets systemd passed to this process, if it did. The variables are
/// removed from the environment so that no child takes them for its own.
pub fn systemd_listeners() -> Result<Vec<TcpListener>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(Vec::new());
    }
    let count: RawFd = count
        .trim()
        .parse()
        .with_context(|| format!("LISTEN_FDS={count:?} is not a number"))?;
    if !(0..=64).contains(&count) {
        bail!("LISTEN_FDS={count}: expected the HTTP and SSH sockets");
    }
    let mut listeners = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .with_context(|| format!("descriptor {fd} passed by systemd"))?;
        // SAFETY: sd_listen_fds(3): descriptors 3..3+LISTEN_FDS are passed to this process
        // for it to own; nothing else in this process uses them.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        listeners.push(TcpListener::from(owned));
    }
    Ok(listeners)
}

/// Take the listener bound to `addr` out of `listeners`.
pub fn take(listeners: &mut Vec<TcpListener>, addr: SocketAddr) -> Option<TcpListener> {
    let i = listeners
        .iter()
        .position(|l| l.local_addr().ok() == Some(addr))?;
    Some(listeners.swap_remove(i))
}
