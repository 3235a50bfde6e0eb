//! Dialing `127.0.0.1:PORT` inside a network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, forever. So
//! each namespace gets one dedicated OS thread that entered it (`setns(CLONE_NEWNET)`)
//! and creates non-blocking sockets on request; tokio then connects them asynchronously
//! from any thread. The thread is created on first use and kept, keyed by the identity
//! (device, inode) of the namespace, so a namespace deleted and re-created under the same
//! path gets a fresh thread. A thread idle for [`WORKER_IDLE`] exits, so it does not keep
//! a deleted namespace alive forever; [`forget_netns`] ends it at once.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// How long a namespace thread waits for work before it exits.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// A request to a namespace thread: create one socket (to listen on, or to connect) and
/// send it back.
type Job = (Purpose, oneshot::Sender<io::Result<OwnedFd>>);

/// What a namespace thread's socket is for.
#[derive(Clone, Copy)]
enum Purpose {
    Connect,
    /// A listening socket: the namespace also gets `net.ipv4.tcp_migrate_req` (what a
    /// closing `SO_REUSEPORT` listener has queued moves to another one of the group).
    Listen,
}

/// A live namespace thread.
struct Worker {
    /// (st_dev, st_ino) of the namespace the thread entered.
    id: (u64, u64),
    jobs: mpsc::Sender<Job>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Worker>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Worker>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Open a TCP connection to `127.0.0.1:port` inside the network namespace whose file is
/// `netns` (e.g. `/run/netns/NAME`); `None` connects in the host namespace.
///
/// Cheap per call: the socket is made by a kept per-namespace thread and connected
/// asynchronously. `TCP_NODELAY` is set on the returned stream.
pub async fn connect(netns: Option<&Path>, port: u16) -> io::Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = match netns {
        None => TcpStream::connect(addr).await?,
        Some(path) => {
            let fd = socket_in(path, Purpose::Connect).await?;
            let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
            socket.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// End the thread kept for the namespace at `netns`, if any (call it when the namespace
/// is deleted so that the thread does not keep it alive until it idles out).
pub fn forget_netns(netns: &Path) {
    let removed = lock_registry().remove(netns);
    // Dropping the job sender makes the thread exit.
    drop(removed);
}

/// How many namespace threads are currently registered (for tests and diagnostics).
pub fn netns_threads() -> usize {
    lock_registry().len()
}

fn lock_registry() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Worker>> {
    // A panic while holding this lock cannot leave the map inconsistent: keep going.
    registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A TCP listener on `addr` inside the namespace at `path`, with `SO_REUSEADDR` and
/// `SO_REUSEPORT`: during `serve --upgrade` the new server listens beside the old one, and
/// the namespace migrates a closed listener's queued connections to another listener of
/// its `SO_REUSEPORT` group (`net.ipv4.tcp_migrate_req`). The router's app listeners and
/// the environments' egress proxy (slipway-deploy) listen through it.
pub async fn listen_in(path: &Path, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let fd = socket_in(path, Purpose::Listen).await?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A new non-blocking, close-on-exec TCP socket created inside the namespace at `path`.
async fn socket_in(path: &Path, purpose: Purpose) -> io::Result<OwnedFd> {
    let meta = std::fs::metadata(path)?;
    let id = (meta.dev(), meta.ino());
    // A thread may have exited (idle, or its set-up failed) between lookup and send:
    // then try once more with a fresh thread.
    for _ in 0..2 {
        let jobs = worker_for(path, id)?;
        let (tx, rx) = oneshot::channel();
        if jobs.send((purpose, tx)).is_err() {
            drop_worker(path, id);
            continue;
        }
        match rx.await {
            Ok(result) => return result,
            Err(_) => drop_worker(path, id),
        }
    }
    Err(io::Error::other(format!(
        "no socket thread for network namespace {}",
        path.display()
    )))
}

/// The job queue of the thread for namespace `id` at `path`, started if needed.
fn worker_for(path: &Path, id: (u64, u64)) -> io::Result<mpsc::Sender<Job>> {
    let mut workers = lock_registry();
    if let Some(worker) = workers.get(path) {
        if worker.id == id {
            return Ok(worker.jobs.clone());
        }
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let thread_path = path.to_path_buf();
    let name = format!(
        "netns-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    std::thread::Builder::new()
        .name(name)
        .spawn(move || worker_main(&thread_path, rx))?;
    workers.insert(
        path.to_path_buf(),
        Worker {
            id,
            jobs: tx.clone(),
        },
    );
    Ok(tx)
}

/// Forget the thread of namespace `id` at `path` (if it is still the registered one).
fn drop_worker(path: &Path, id: (u64, u64)) {
    let mut workers = lock_registry();
    if workers.get(path).is_some_and(|w| w.id == id) {
        workers.remove(path);
    }
}

/// Body of a namespace thread: enter the namespace, then make sockets until idle.
fn worker_main(path: &Path, jobs: mpsc::Receiver<Job>) {
    if let Err(err) = enter_netns(path) {
        tracing::warn!(netns = %path.display(), error = %err, "cannot enter network namespace");
        // Answer every job with the error until idle, like a working thread answers with
        // sockets: a caller whose job arrives just after the queue was drained would
        // otherwise find it closed, with no word of the cause.
        while let Ok((_, job)) = jobs.recv_timeout(WORKER_IDLE) {
            let _ = job.send(Err(io::Error::new(err.kind(), err.to_string())));
        }
        return;
    }
    tracing::debug!(netns = %path.display(), "network namespace thread started");
    while let Ok((purpose, job)) = jobs.recv_timeout(WORKER_IDLE) {
        if let Purpose::Listen = purpose {
            // This thread's /proc/sys/net is its namespace's.
            if let Err(err) = std::fs::write("/proc/sys/net/ipv4/tcp_migrate_req", "1") {
                tracing::debug!(netns = %path.display(), error = %err, "tcp_migrate_req not set");
            }
        }
        let _ = job.send(new_socket());
    }
    tracing::debug!(netns = %path.display(), "network namespace thread exits");
}

fn enter_netns(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!("setns({}): {errno}", path.display()),
        )
    })
}

fn new_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is checked and then owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
