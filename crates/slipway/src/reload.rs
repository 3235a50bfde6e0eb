//! Reloading a running server: `slipway reload` (the `ExecReload` of
//! `contrib/slipway.service`) or SIGHUP. The server starts `slipway serve --upgrade`
//! with its own flags, from the binary at the path it was started from (so a new binary
//! installed there is picked up), and the new process takes over ([`crate::handover`]).
//! Under systemd the new process tells the service manager it is the service's main
//! process now (`MAINPID=`, with `NotifyAccess=all`), so the old one exiting does not
//! end the service.
//!
//! The outcome is known for sure: the new server gets the write end of a pipe (its
//! descriptor number in [`REPORT_FD_VAR`]) and writes `ready` on it once it serves, or
//! `failed` and why before it exits; a server that exits without a word (a broken
//! binary) is reported with its exit status. `slipway reload` asks the running server
//! through `serve.sock` (`reload`) and prints that outcome: it exits 0 only when the new
//! server serves. A server of before `slipway reload` (it closes the connection on
//! `reload`) is reloaded by SIGHUP instead ([`crate::reload_signal`]).

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The variable naming the descriptor a server started by a reload reports on.
pub const REPORT_FD_VAR: &str = "SLIPWAY_UPGRADE_REPORT_FD";

/// How to start this server again with `--upgrade`.
pub struct Relauncher {
    exe: PathBuf,
    args: Vec<OsString>,
}

/// A new server that serves: its pid.
pub struct Upgraded {
    /// The new server's pid.
    pub pid: u32,
}

impl Relauncher {
    /// The binary's path and this process's arguments, taken at start (once the binary
    /// is replaced, `/proc/self/exe` names the deleted file: then the path it was at,
    /// where the replacement now is, is the one taken).
    pub fn capture() -> Result<Relauncher> {
        let exe = std::env::current_exe().context("finding the slipway binary")?;
        let exe = match exe.to_str().and_then(|e| e.strip_suffix(" (deleted)")) {
            Some(was) => PathBuf::from(was),
            None => exe,
        };
        let mut args: Vec<OsString> = std::env::args_os()
            .skip(1)
            .filter(|a| a != "--upgrade")
            .collect();
        args.push("--upgrade".into());
        Ok(Relauncher { exe, args })
    }

    /// Start the new server (its output goes where this server's goes) and wait until
    /// it serves (`Ok`) or failed (`Err`, saying why); either way this server goes on
    /// until told to stop by the new one. Blocks (up to the new server's restore).
    pub fn upgrade(&self) -> Result<Upgraded> {
        let (mut report, writer) = std::io::pipe().context("making the upgrade's report pipe")?;
        let writer = OwnedFd::from(writer);
        let fd: RawFd = writer.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .env(REPORT_FD_VAR, fd.to_string())
            .stdin(Stdio::null());
        // SAFETY: between fork and exec only fcntl (async-signal-safe) runs: the report
        // pipe's write end, close-on-exec in this process, stays open in the new server
        // alone (other children of this server never get it).
        unsafe {
            cmd.pre_exec(move || {
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "the new server could not start: {} serve --upgrade",
                self.exe.display()
            )
        })?;
        drop(writer);
        let pid = child.id();
        let mut said = String::new();
        let _ = report.read_to_string(&mut said);
        if said.trim() == "ready" {
            // Reaped when it exits (this process may exit first: then init does).
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok(Upgraded { pid });
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for the new server (pid {pid})"))?;
        match said.trim().strip_prefix("failed") {
            Some(why) if !why.trim().is_empty() => {
                bail!("the new server (pid {pid}) failed: {}", why.trim())
            }
            _ => bail!(
                "the new server (pid {pid}) {} without serving",
                describe(status)
            ),
        }
    }
}

/// "exited with code 3" or "was killed by signal 9".
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}

/// The report descriptor of a server started by a reload, taken once at start.
static REPORT: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Take the report descriptor this process was started with, if a reload started it;
/// the variable is removed so that no child takes it for its own. Call at start, before
/// other threads run.
pub fn take_report() {
    let Some(value) = std::env::var_os(REPORT_FD_VAR) else {
        return;
    };
    std::env::remove_var(REPORT_FD_VAR);
    let Some(fd) = value.to_str().and_then(|v| v.parse::<RawFd>().ok()) else {
        return;
    };
    // Close-on-exec again, then owned here: a descriptor that is not open is ignored.
    if fd <= 2 || fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).is_err() {
        return;
    }
    // SAFETY: the server that started this process passed this descriptor for it to own
    // (REPORT_FD_VAR); it is open (checked just above) and nothing else here uses it.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Ok(mut slot) = REPORT.lock() {
        *slot = Some(file);
    }
}

/// Tell the server that started this one by a reload (if it did) how the start ended:
/// `Ok` when this server serves, else why it failed.
pub fn report(outcome: std::result::Result<(), &str>) {
    let Some(mut file) = REPORT.lock().ok().and_then(|mut slot| slot.take()) else {
        return;
    };
    let line = match outcome {
        Ok(()) => "ready\n".to_string(),
        Err(why) => format!("failed {why}\n"),
    };
    let _ = file.write_all(line.as_bytes());
}

/// `slipway reload`: ask the server running on `data_dir` to upgrade to the binary at
/// its path, wait for the outcome and print it; `Err` (saying why, and that the old
/// server goes on) when the new server did not start serving.
pub fn request(data_dir: &Path) -> Result<String> {
    let path = crate::handover::socket_path(data_dir);
    let mut conn = UnixStream::connect(&path).with_context(|| {
        format!(
            "no slipway serve answers on {} (is it running on the data dir {}?)",
            path.display(),
            data_dir.display()
        )
    })?;
    conn.write_all(b"reload\n")
        .context("asking the running server to reload")?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .context("waiting for the reload's outcome")?;
    let (first, rest) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    let mut words = first.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("upgraded"), Some(old), Some(new)) => Ok(format!(
            "reloaded: slipway serve (pid {new}) serves; the old one (pid {old}) drains and exits"
        )),
        (Some("failed"), Some(old), _) => Err(anyhow!(
            "{}; slipway serve (pid {old}) goes on serving",
            rest.trim()
        )),
        // A server of before `slipway reload` closes the connection on `reload`.
        _ if answer.trim().is_empty() => crate::reload_signal::reload(data_dir),
        _ => Err(anyhow!("the running server answered {:?}", answer.trim())),
    }
}

/// `reload` requests this server is answering: an upgraded server waits for them before
/// it exits ([`wait_answered`]), or the one that asked would get no answer.
static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// Counts one request in [`ANSWERING`] while it lives.
struct Answering;

impl Answering {
    fn start() -> Answering {
        ANSWERING.fetch_add(1, Ordering::SeqCst);
        Answering
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        ANSWERING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wait (at most `limit`) until every `reload` request was answered.
pub fn wait_answered(limit: Duration) {
    let deadline = Instant::now() + limit;
    while ANSWERING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The running server's side of `reload` on `serve.sock`: upgrade, then answer
/// `upgraded OLD NEW` or `failed OLD` and why on the next line.
pub fn answer(conn: &mut UnixStream, relauncher: &Relauncher) -> Result<()> {
    let _answering = Answering::start();
    conn.set_read_timeout(None)?;
    let me = std::process::id();
    tracing::info!("reload: starting the new server");
    let line = match relauncher.upgrade() {
        Ok(up) => {
            tracing::info!(pid = up.pid, "reload: the new server serves");
            format!("upgraded {me} {}\n", up.pid)
        }
        Err(e) => {
            tracing::warn!("reload failed: {e:#}; still serving");
            format!("failed {me}\n{e:#}\n")
        }
    };
    conn.write_all(line.as_bytes())?;
    Ok(())
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
