//! `systemctl reload slipway` (SIGHUP to the server): the server starts
//! `slipway serve --upgrade` with its own flags, from the binary at the path it was
//! started from (so a new binary installed there is picked up), and the new process
//! takes over ([`crate::handover`]). Under systemd the new process tells the service
//! manager it is the service's main process now (`MAINPID=`, with
//! `NotifyAccess=all`), so the old one exiting does not end the service.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

/// How to start this server again with `--upgrade`.
pub struct Relauncher {
    exe: PathBuf,
    args: Vec<OsString>,
}

impl Relauncher {
    /// The binary's path and this process's arguments, taken at start (once the binary
    /// is replaced, `/proc/self/exe` names the deleted file).
    pub fn capture() -> Result<Relauncher> {
        let exe = std::env::current_exe().context("finding the slipway binary")?;
        let mut args: Vec<OsString> = std::env::args_os()
            .skip(1)
            .filter(|a| a != "--upgrade")
            .collect();
        args.push("--upgrade".into());
        Ok(Relauncher { exe, args })
    }

    /// Start the new server (its output goes where this server's goes). Its end is
    /// logged: a failed upgrade leaves this server serving.
    pub fn spawn(&self) -> Result<u32> {
        let mut child = Command::new(&self.exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} serve --upgrade", self.exe.display()))?;
        let pid = child.id();
        std::thread::spawn(move || match child.wait() {
            Ok(st) if st.success() => {
                tracing::info!(pid, "the server started by the reload stopped")
            }
            Ok(st) => tracing::warn!(
                pid,
                "the upgrade started by the reload failed ({st}); still serving"
            ),
            Err(e) => tracing::warn!(pid, "the upgrade started by the reload: {e}"),
        });
        Ok(pid)
    }
}

/// Tell systemd (when it started this process with `NOTIFY_SOCKET`) that the server
/// serves; `main` also says this process is now the service's main process (after an
/// upgrade). Nothing happens outside systemd.
pub fn notify_ready(main: bool) {
    let pid = std::process::id();
    let states = if main {
        vec![
            sd_notify::NotifyState::MainPid(pid),
            sd_notify::NotifyState::Ready,
        ]
    } else {
        vec![sd_notify::NotifyState::Ready]
    };
    // The variable stays: a server started by a later reload needs it too.
    if let Err(e) = sd_notify::notify(false, &states) {
        tracing::warn!("telling systemd the server is ready: {e}");
    }
}
