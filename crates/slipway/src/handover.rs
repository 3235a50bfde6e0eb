//! The graceful upgrade handshake: a new `slipway serve --upgrade` takes the listening
//! sockets over from the running server through `serve.sock`, a unix socket in the
//! data dir.
//!
//! 1. The new server connects and sends `upgrade PID named`.
//! 2. The running server answers `busy` if another upgrade is under way; otherwise
//!    `listeners PID lock http ssh [https] [metrics]` with those descriptors, in that
//!    order (SCM_RIGHTS): the data dir's lock file, the HTTP and SSH listening sockets,
//!    and the HTTPS and metrics ones when it listens there. It goes on serving. (A hello
//!    without `named`, from a server of before the HTTPS and metrics sockets were handed
//!    over, gets `listeners PID` and the first three.)
//! 3. The new server restores every environment (adopting the running containers),
//!    starts accepting on the same sockets, and sends `ready`.
//! 4. The old server answers `stopping`, stops accepting and drains: in-flight HTTP
//!    requests and WebSockets up to the drain timeout, SSH sessions (running pushes and
//!    their deploys) up to the upgrade grace. A release it retires meanwhile (a deploy
//!    completing there replaced it) it drains of its own requests and leaves running,
//!    writing `retired ID` (the release id) on the connection: the new server, which
//!    may route it still, stops it ([`slipway_deploy::retire`]). Then it exits 0, which
//!    closes the connection: the new server retires what it was told and what its own
//!    routes moved on from ([`slipway_deploy::restore::retire_for_old_server`]), and
//!    serves `serve.sock` itself.
//!
//! If the new server fails before `ready` (the connection closes), the old one keeps
//! serving and accepts a later upgrade.
//!
//! `slipway reload` connects and sends `reload` instead: the running server starts the
//! new server itself and answers with the outcome ([`crate::reload`]).

use std::io::{BufRead as _, IoSlice, IoSliceMut, Read as _, Write as _};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

use crate::reload::Relauncher;

/// The handover socket of a data dir.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("serve.sock")
}

/// How long the first exchange may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest time the new server may take to restore before it says `ready`.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

/// The word of the hello asking for the named list of descriptors.
const NAMED: &str = "named";

/// What the running server hands over (its own copies of the descriptors).
pub struct Sockets {
    /// The data dir's lock file.
    pub lock: OwnedFd,
    /// The HTTP listening socket.
    pub http: OwnedFd,
    /// The SSH listening socket.
    pub ssh: OwnedFd,
    /// The HTTPS listening socket, when the server listens for HTTPS.
    pub https: Option<OwnedFd>,
    /// The metrics listening socket, when the server serves metrics.
    pub metrics: Option<OwnedFd>,
}

/// The descriptors a server listens on, borrowed, for [`Sockets::copy`].
pub struct Listening<'a> {
    /// The data dir's lock file.
    pub lock: BorrowedFd<'a>,
    /// The HTTP listening socket.
    pub http: BorrowedFd<'a>,
    /// The SSH listening socket.
    pub ssh: BorrowedFd<'a>,
    /// The HTTPS listening socket, if any.
    pub https: Option<BorrowedFd<'a>>,
    /// The metrics listening socket, if any.
    pub metrics: Option<BorrowedFd<'a>>,
}

impl Sockets {
    /// Copies of the descriptors.
    pub fn copy(listening: Listening<'_>) -> Result<Sockets> {
        Ok(Sockets {
            lock: listening.lock.try_clone_to_owned()?,
            http: listening.http.try_clone_to_owned()?,
            ssh: listening.ssh.try_clone_to_owned()?,
            https: listening
                .https
                .map(|fd| fd.try_clone_to_owned())
                .transpose()?,
            metrics: listening
                .metrics
                .map(|fd| fd.try_clone_to_owned())
                .transpose()?,
        })
    }

    /// The names and descriptors to send: all of them to a server that asked for named
    /// ones, else the first three.
    fn to_send(&self, named: bool) -> (Vec<&'static str>, Vec<RawFd>) {
        let mut names = vec!["lock", "http", "ssh"];
        let mut fds = vec![
            self.lock.as_raw_fd(),
            self.http.as_raw_fd(),
            self.ssh.as_raw_fd(),
        ];
        if named {
            if let Some(fd) = &self.https {
                names.push("https");
                fds.push(fd.as_raw_fd());
            }
            if let Some(fd) = &self.metrics {
                names.push("metrics");
                fds.push(fd.as_raw_fd());
            }
        }
        (names, fds)
    }
}

/// Serve upgrade and reload requests on `serve.sock` (a stale socket file from a crash
/// is replaced: the caller holds the data dir's lock). `handed_over` is notified once a
/// new server said `ready`: then this server must stop accepting and drain. A reload
/// starts the new server with `relauncher`.
pub fn listen(
    data_dir: &Path,
    sockets: Sockets,
    handed_over: Arc<tokio::sync::Notify>,
    relauncher: Arc<Relauncher>,
) -> Result<()> {
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
    let busy = Arc::new(AtomicBool::new(false));
    let sockets = Arc::new(sockets);
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let busy = busy.clone();
                let handed_over = handed_over.clone();
                let sockets = sockets.clone();
                let relauncher = relauncher.clone();
                let spawned = std::thread::Builder::new()
                    .name("handover-conn".into())
                    .spawn(move || {
                        let asked = Asked {
                            sockets: &sockets,
                            busy: &busy,
                            handed_over: &handed_over,
                            relauncher: &relauncher,
                        };
                        if let Err(e) = answer(conn, asked) {
                            tracing::warn!("upgrade request: {e:#}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("upgrade request: {e}");
                }
            }
        })
        .context("starting the upgrade listener")?;
    Ok(())
}

/// Set (to anything) in a test's server environment: `reload` is answered as a server of
/// before `slipway reload` answered it (the connection closed without a word), so that a
/// test can reload such a server ([`crate::reload_signal`]).
const AS_BEFORE_RELOAD_HOOK: &str = "SLIPWAY_TEST_AS_BEFORE_RELOAD";

/// What the running server answers requests with.
struct Asked<'a> {
    sockets: &'a Sockets,
    /// An upgrade is under way or done.
    busy: &'a AtomicBool,
    handed_over: &'a tokio::sync::Notify,
    relauncher: &'a Relauncher,
}

/// The running server's side of one connection.
fn answer(mut conn: UnixStream, asked: Asked<'_>) -> Result<()> {
    let Asked {
        sockets,
        busy,
        handed_over,
        relauncher,
    } = asked;
    conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
    let hello = read_line(&mut conn)?;
    if hello == "reload" && std::env::var_os(AS_BEFORE_RELOAD_HOOK).is_none() {
        if busy.load(Ordering::Acquire) {
            let why = "another upgrade of this server is under way (or it was upgraded and drains)";
            conn.write_all(format!("failed {}\n{why}\n", std::process::id()).as_bytes())?;
            return Ok(());
        }
        return crate::reload::answer(&mut conn, relauncher);
    }
    let Some(words) = hello.strip_prefix("upgrade ") else {
        bail!("unexpected {hello:?}");
    };
    let mut words = words.split_whitespace();
    let new_pid = words.next().unwrap_or_default().to_string();
    let named = words.any(|w| w == NAMED);
    if busy.swap(true, Ordering::AcqRel) {
        tracing::warn!(new_pid, "upgrade refused: another upgrade is under way");
        conn.write_all(b"busy\n")?;
        return Ok(());
    }
    tracing::info!(new_pid, "upgrade: handing the listening sockets over");
    let (names, fds) = sockets.to_send(named);
    let message = if named {
        format!("listeners {} {}\n", std::process::id(), names.join(" "))
    } else {
        format!("listeners {}\n", std::process::id())
    };
    let sent = sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(message.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    );
    if let Err(e) = sent {
        busy.store(false, Ordering::Release);
        bail!("sending the listening sockets: {e}");
    }
    // The new server may route a release retired here from now on: who stops it waits
    // for the outcome.
    slipway_deploy::retire::handing_over();
    let ready = conn
        .set_read_timeout(Some(RESTORE_TIMEOUT))
        .and_then(|()| read_line(&mut conn));
    match ready {
        Ok(line) if line == "ready" => {
            tracing::info!(new_pid, "upgrade: the new server is ready; stopping");
            handed_over.notify_one();
            if let Err(e) = conn.write_all(b"stopping\n") {
                // The new server is gone: nobody else would stop what retires here.
                slipway_deploy::retire::stop_here();
                return Err(e.into());
            }
            // The releases this server retires from now on are stopped by the new one,
            // which routed them last, once this one exited: each is named to it.
            let tell = std::sync::Mutex::new(conn.try_clone()?);
            slipway_deploy::retire::hand_over(move |id| {
                let told = match tell.lock() {
                    Ok(mut conn) => conn.write_all(format!("{RETIRED} {id}\n").as_bytes()),
                    Err(_) => Err(std::io::Error::other("poisoned")),
                };
                if let Err(e) = told {
                    tracing::warn!(
                        release = id,
                        "telling the new server to stop a retired release: {e}; it is removed at the next start"
                    );
                }
            });
            // The connection stays open until this process exits: the new server waits
            // for its end.
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest);
            std::mem::forget(conn);
            Ok(())
        }
        other => {
            slipway_deploy::retire::stop_here();
            busy.store(false, Ordering::Release);
            let why = match other {
                Ok(line) if line.is_empty() => "it stopped".to_string(),
                Ok(line) => format!("it said {line:?}"),
                Err(e) => e.to_string(),
            };
            tracing::warn!(
                new_pid,
                "upgrade: the new server did not start ({why}); still serving"
            );
            Ok(())
        }
    }
}

/// The new server's end of the handshake, until it says `ready`.
pub struct Handshake {
    conn: UnixStream,
}

/// What a new server took over: its handshake and the descriptors.
pub struct TakenOver {
    /// The handshake, to say `ready` once restored.
    pub handshake: Handshake,
    /// The old server's pid.
    pub old_pid: u32,
    /// The data dir's lock file.
    pub lock: OwnedFd,
    /// The HTTP listening socket.
    pub http: std::net::TcpListener,
    /// The SSH listening socket.
    pub ssh: std::net::TcpListener,
    /// The HTTPS listening socket, if the old server listened for HTTPS.
    pub https: Option<std::net::TcpListener>,
    /// The metrics listening socket, if the old server served metrics.
    pub metrics: Option<std::net::TcpListener>,
}

/// The most descriptors a running server sends.
const MOST_SOCKETS: usize = 5;

/// The new server's side: connect to the running server and take its sockets over.
pub fn take_over(data_dir: &Path) -> Result<TakenOver> {
    let path = socket_path(data_dir);
    let mut conn = UnixStream::connect(&path)
        .with_context(|| format!("connecting to the running server on {}", path.display()))?;
    conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
    conn.write_all(format!("upgrade {} {NAMED}\n", std::process::id()).as_bytes())?;
    let mut buf = [0u8; 256];
    let mut space = nix::cmsg_space!([RawFd; MOST_SOCKETS]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("receiving the listening sockets")?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs().context("receiving the listening sockets")? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: descriptors received with SCM_RIGHTS are new and ours alone.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let reply = String::from_utf8_lossy(&buf[..len]).trim().to_string();
    if reply == "busy" {
        bail!("another upgrade of this server is under way; try again when it finished");
    }
    let Some(words) = reply.strip_prefix("listeners ") else {
        bail!("the running server answered {reply:?}");
    };
    let mut words = words.split_whitespace();
    let Some(old_pid) = words.next().and_then(|p| p.parse::<u32>().ok()) else {
        bail!("the running server answered {reply:?}");
    };
    let mut names: Vec<&str> = words.collect();
    if names.is_empty() {
        // A server of before the names: the first three.
        names = vec!["lock", "http", "ssh"];
    }
    if names.len() != fds.len() {
        bail!(
            "the running server named {} descriptors ({}) but sent {}",
            names.len(),
            names.join(" "),
            fds.len()
        );
    }
    let mut lock = None;
    let mut http = None;
    let mut ssh = None;
    let mut https = None;
    let mut metrics = None;
    for (name, fd) in names.into_iter().zip(fds) {
        let slot = match name {
            "lock" => &mut lock,
            "http" => &mut http,
            "ssh" => &mut ssh,
            "https" => &mut https,
            "metrics" => &mut metrics,
            other => bail!("the running server sent an unknown descriptor {other:?}"),
        };
        if slot.replace(fd).is_some() {
            bail!("the running server sent the {name} descriptor twice");
        }
    }
    let missing = |name: &str| anyhow!("the running server did not send its {name} descriptor");
    Ok(TakenOver {
        handshake: Handshake { conn },
        old_pid,
        lock: lock.ok_or_else(|| missing("lock"))?,
        http: std::net::TcpListener::from(http.ok_or_else(|| missing("http"))?),
        ssh: std::net::TcpListener::from(ssh.ok_or_else(|| missing("ssh"))?),
        https: https.map(std::net::TcpListener::from),
        metrics: metrics.map(std::net::TcpListener::from),
    })
}

impl Handshake {
    /// Tell the old server this one serves: it stops accepting and drains. Returns a
    /// future that resolves when the old server exited (its end of the connection
    /// closed), with the ids of the releases it retired meanwhile and left to this server
    /// to stop (`retired ID` lines).
    pub fn ready(self) -> Result<tokio::task::JoinHandle<Vec<i64>>> {
        let mut conn = self.conn;
        conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
        conn.write_all(b"ready\n")?;
        let answer = read_line(&mut conn)?;
        if answer != "stopping" {
            bail!("the old server answered {answer:?} to ready");
        }
        conn.set_read_timeout(None)?;
        Ok(tokio::task::spawn_blocking(move || {
            let mut left = Vec::new();
            for line in std::io::BufReader::new(conn).lines() {
                let Ok(line) = line else { break };
                match parse_retired(&line) {
                    Some(id) => left.push(id),
                    None => tracing::warn!("the old server said {line:?}: ignored"),
                }
            }
            left
        }))
    }
}

/// The word of the old server naming a release it retired and left to the new server.
const RETIRED: &str = "retired";

/// The release id of a `retired ID` line.
fn parse_retired(line: &str) -> Option<i64> {
    line.strip_prefix(RETIRED)?.strip_prefix(' ')?.parse().ok()
}

/// One line (without its newline); empty at the end of the stream.
fn read_line(conn: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 256 {
        if conn.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}
