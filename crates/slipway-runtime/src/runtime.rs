//! [`Runtime`]: containers under an OCI runtime CLI whose state root is inside Slipway's data dir.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::bundle::{write_bundle, BundlePaths};
use crate::cli::{message, messages, resolve_runtime, short_hash};
use crate::error::RuntimeError;
use crate::exits::{become_subreaper, Exit, Exits};
use crate::output::stream_lines;
use crate::ownfs::Staging;
use crate::process::{exec_process, forget_env, ProcessFile};
use crate::spec::{validate_id, ContainerSpec};
use crate::state::{parse_list, parse_state, ContainerState, Status};
use crate::tenancy::find_init;

/// The start of the line [`Runtime::run`] adds to a container's output when the kernel's OOM
/// killer killed one of its processes.
pub const OOM_LINE: &str = "slipway: out of memory";
/// How long `runc run -d` may take to create and start a container.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for the runtime CLI to exit after its container was killed.
const AFTER_KILL_WAIT: Duration = Duration::from_secs(10);
/// How often to poll a stopping container's state.
const POLL: Duration = Duration::from_millis(50);

/// Runs containers with an OCI runtime CLI (runc, crun, youki...), keeping the runtime's state,
/// the bundles and the root file systems under `DATA_DIR/runtime/`.
#[derive(Debug)]
pub struct Runtime {
    runtime: PathBuf,
    state_root: PathBuf,
    bundles: PathBuf,
    /// Mount points of containers' roots, one folder per container.
    rootfs: PathBuf,
    /// An empty folder only root writes: the other layer of read-only overlays (`ownfs`).
    empty: PathBuf,
    scratch: PathBuf,
    /// Staging folders of pinned bind sources and of the file systems of a container's own
    /// (`ownfs`), one folder per container ([`Runtime::pin_bind_source`]).
    binds: PathBuf,
    cgroup_parent: String,
    /// The host's statically linked tini, bound into every container as its pid 1.
    init: PathBuf,
    counter: AtomicU64,
    /// The detached containers this process is the parent of, and how ended ones ended.
    exits: Exits,
}

fn mkdirs(path: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(path)
        .map_err(|e| RuntimeError::io(format!("creating {}", path.display()), e))
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Checks what `exec` and `exec_command` run: a command (not starting with '-', no NUL
/// bytes), valid variables, an absolute (or empty) working directory.
fn check_exec(
    id: &str,
    args: &[String],
    env: &[(String, String)],
    cwd: &str,
) -> Result<(), RuntimeError> {
    let bad = |reason: &str| RuntimeError::InvalidSpec {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if args.is_empty()
        || args[0].is_empty()
        || args[0].starts_with('-')
        || args.iter().any(|a| a.contains('\0'))
    {
        return Err(bad(
            "exec needs a command (not starting with '-', no NUL bytes)",
        ));
    }
    if env
        .iter()
        .any(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0'))
    {
        return Err(bad("invalid environment variable for exec"));
    }
    if !cwd.is_empty() && !cwd.starts_with('/') {
        return Err(bad("exec working directory must be absolute"));
    }
    Ok(())
}

fn not_exist(msg: &str) -> bool {
    msg.contains("does not exist") || msg.contains("not found") || msg.contains("No such file")
}

/// Variables systemd gives the server (`Type=notify`) that the OCI runtime must not see:
/// with `NOTIFY_SOCKET` set, runc bind-mounts that socket into the container (at
/// `/run/notify`, which fails on a read-only stack) and passes the container's
/// `READY=1` on to the service manager with the container's pid as `MAINPID=`.
const SERVICE_MANAGER_VARS: [&str; 1] = ["NOTIFY_SOCKET"];

/// Added to the OCI runtime CLI's `GODEBUG`: no asynchronous preemption in a runtime written in
/// Go (runc). Go preempts its own threads with SIGURG, and a foreground `runc run` (builds) or
/// `runc exec` (hooks, shells) forwards every signal it receives to the container's process:
/// runc releases before opencontainers/runc#3368 (Debian 12's 1.1.5 among them) forward
/// SIGURG too, one to three per build, which tini passes on to the app's process group. SBCL
/// interrupts its own threads with SIGURG, and one arriving while `save-lisp-and-die` stops
/// them aborts the save ("interrupt already pending when sig23 received"): the lisp
/// template's `program-op` build. Docker and Podman never forward it (containerd's shim and
/// conmon do not); Delve sets the same for the programs it debugs.
const RUNTIME_GODEBUG: &str = "asyncpreemptoff=1";

/// The OCI runtime CLI's environment: the server's, without [`SERVICE_MANAGER_VARS`], with
/// [`RUNTIME_GODEBUG`] after any `GODEBUG` of the server's own.
fn runtime_env(cmd: &mut Command) {
    for var in SERVICE_MANAGER_VARS {
        cmd.env_remove(var);
    }
    let godebug = match std::env::var("GODEBUG") {
        Ok(own) if !own.is_empty() => format!("{own},{RUNTIME_GODEBUG}"),
        _ => RUNTIME_GODEBUG.to_string(),
    };
    cmd.env("GODEBUG", godebug);
}

/// Deletes a container synchronously if dropped while armed (a cancelled `run`/`start`).
struct Guard<'a> {
    runtime: &'a Runtime,
    id: String,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::warn!(container = %self.id, "cancelled: deleting container");
        let _ = std::process::Command::new(&self.runtime.runtime)
            .arg("--root")
            .arg(&self.runtime.state_root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.runtime.paths(&self.id).remove();
        self.runtime.unpin(&self.id);
    }
}

impl Runtime {
    /// `runtime` = path or name of the OCI runtime CLI; `data_dir` = Slipway's data dir
    /// (uses `data_dir/runtime/{state,bundles,rootfs,binds,empty,tmp}`).
    pub fn new(runtime: &Path, data_dir: &Path) -> Result<Runtime, RuntimeError> {
        let runtime = resolve_runtime(runtime)?;
        let init = find_init()?;
        let base = data_dir.join("runtime");
        mkdirs(&base)?;
        let base = base
            .canonicalize()
            .map_err(|e| RuntimeError::io(format!("resolving {}", base.display()), e))?;
        let rt = Runtime {
            runtime,
            state_root: base.join("state"),
            bundles: base.join("bundles"),
            rootfs: base.join("rootfs"),
            empty: base.join("empty"),
            scratch: base.join("tmp"),
            binds: base.join("binds"),
            cgroup_parent: format!(
                "slipway-{}",
                short_hash(base.as_os_str().as_encoded_bytes())
            ),
            init,
            counter: AtomicU64::new(0),
            exits: Exits::default(),
        };
        for dir in [
            &rt.state_root,
            &rt.bundles,
            &rt.rootfs,
            &rt.empty,
            &rt.scratch,
            &rt.binds,
        ] {
            mkdirs(dir)?;
        }
        Ok(rt)
    }

    /// Pin the bind source `relative` below `root` (a folder a tenant can write, such as a
    /// volume) for container `id`: resolved from `root` without following any link and
    /// bound at a staging folder `DATA_DIR/runtime/binds/ID/N` that only root reaches; give
    /// the returned path to the container's [`crate::BindMount`] instead of
    /// `root/relative`, so runc binds exactly the folder resolved here (see
    /// the `pinned` module). The staging mounts go once the container started, when it is
    /// removed, or at the next [`Runtime::unpin_stale`].
    pub fn pin_bind_source(
        &self,
        id: &str,
        root: &Path,
        relative: &Path,
    ) -> Result<PathBuf, RuntimeError> {
        validate_id(id)?;
        crate::pinned::pin(root, relative, &self.staging(id).next()?)
    }

    /// Container `id`'s staging mounts (pinned sources, file systems of its own).
    fn staging(&self, id: &str) -> Staging<'_> {
        Staging {
            dir: self.binds.join(id),
            empty: &self.empty,
            counter: &self.counter,
        }
    }

    /// Remove the staging mounts of container `id`'s pinned bind sources and file systems
    /// of its own, and unmount its root's mount point (logged on error).
    fn unpin(&self, id: &str) {
        if validate_id(id).is_err() {
            return;
        }
        if let Err(e) = crate::pinned::unpin_all(&self.binds.join(id)) {
            tracing::warn!(container = id, "removing pinned bind sources: {e}");
        }
        if let Err(e) = self.paths(id).unmount_root() {
            tracing::warn!(container = id, "unmounting its root: {e}");
        }
    }

    /// Remove the staging mounts every container's pinned bind sources and file systems of
    /// its own left, and unmount roots still mounted (`serve` start, before it starts any
    /// container: a crash between a pin and its container's start).
    pub fn unpin_stale(&self) -> Result<(), RuntimeError> {
        let entries = std::fs::read_dir(&self.binds)
            .map_err(|e| RuntimeError::io(format!("reading {}", self.binds.display()), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| RuntimeError::io(format!("reading {}", self.binds.display()), e))?;
            crate::pinned::unpin_all(&entry.path())?;
        }
        // A started container holds its own root: what is still mounted was never started.
        let entries = std::fs::read_dir(&self.rootfs)
            .map_err(|e| RuntimeError::io(format!("reading {}", self.rootfs.display()), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| RuntimeError::io(format!("reading {}", self.rootfs.display()), e))?;
            crate::ownfs::unmount_all(&entry.path())?;
        }
        Ok(())
    }

    /// The runtime's state root (`DATA_DIR/runtime/state`).
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn paths(&self, id: &str) -> BundlePaths {
        BundlePaths {
            bundle: self.bundles.join(id),
            rootfs: self.rootfs.join(id),
        }
    }

    /// `RUNTIME --root STATE` with JSON logging, in the environment of [`runtime_env`].
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(&self.state_root)
            .args(["--log-format", "json"]);
        runtime_env(&mut cmd);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The `runc exec` command line for an interactive session inside a running
    /// container (`ssh ENV.PROJECT@HOST`): the caller attaches stdio (a pty when
    /// `tty`), spawns and waits. `args` run with exactly the variables `env` (the
    /// container's own are not kept to inherit from) in `cwd`. The process (arguments,
    /// variables) reaches runc through a memory file, never on its command line.
    pub fn exec_command(
        &self,
        id: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &str,
        tty: bool,
    ) -> Result<Command, RuntimeError> {
        validate_id(id)?;
        check_exec(id, args, env, cwd)?;
        let process = exec_process(&self.paths(id).bundle, args, env, cwd, tty)?;
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root").arg(&self.state_root).arg("exec");
        runtime_env(&mut cmd);
        ProcessFile::new(&process)?.attach(&mut cmd);
        cmd.arg(id);
        Ok(cmd)
    }

    /// The container's cgroup path (relative to each hierarchy's root).
    fn cgroups_path(&self, id: &str) -> String {
        format!("/{}-{}", self.cgroup_parent, id)
    }

    /// How many processes the kernel's OOM killer killed in the container's memory cgroup
    /// (cgroup v1 `memory.oom_control` or v2 `memory.events`); `None` if it cannot be read
    /// (the container was deleted, or the kernel does not say).
    pub fn oom_kills(&self, id: &str) -> Option<u64> {
        let rel = self.cgroups_path(id);
        let rel = rel.trim_start_matches('/');
        let candidates = [
            (
                Path::new("/sys/fs/cgroup/memory").join(rel),
                "memory.oom_control",
            ),
            (Path::new("/sys/fs/cgroup").join(rel), "memory.events"),
        ];
        candidates.iter().find_map(|(dir, file)| {
            let text = std::fs::read_to_string(dir.join(file)).ok()?;
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
        })
    }

    /// A fresh scratch file path for a `--log` or `--pid-file`.
    fn scratch_file(&self, id: &str, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.scratch
            .join(format!("{id}.{what}.{}.{n}", std::process::id()))
    }

    fn describe(&self, args: &[&str]) -> String {
        let name = self
            .runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{name} {}", args.join(" "))
    }

    /// Runs the runtime with `args`, capturing stdout; `Err(message)` when it fails.
    async fn capture(&self, args: &[&str]) -> Result<Result<Vec<u8>, String>, RuntimeError> {
        let out = self
            .command()
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| RuntimeError::io(format!("running {}", self.runtime.display()), e))?;
        if out.status.success() {
            Ok(Ok(out.stdout))
        } else {
            Ok(Err(message(&out.stderr, out.status)))
        }
    }

    /// Error-level messages of a `--log` file (which is removed).
    fn take_log(path: &Path) -> Vec<String> {
        let text = std::fs::read(path).unwrap_or_default();
        let _ = std::fs::remove_file(path);
        messages(&text, true)
    }

    fn spawn(&self, cmd: &mut Command) -> Result<Child, RuntimeError> {
        cmd.spawn()
            .map_err(|e| RuntimeError::io(format!("running {}", self.runtime.display()), e))
    }

    async fn ensure_new(&self, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        spec.validate()?;
        if self.state(&spec.id).await?.is_some() {
            return Err(RuntimeError::AlreadyExists(spec.id.clone()));
        }
        let paths = self.paths(&spec.id);
        let written = write_bundle(
            spec,
            &paths,
            &self.staging(&spec.id),
            &self.cgroups_path(&spec.id),
            &self.init,
        );
        if written.is_err() {
            self.unpin(&spec.id);
            let _ = paths.remove();
        }
        written
    }

    /// Run to completion in the foreground (builds): stdout and stderr streamed line by line to
    /// `on_line` as they come (merged, in order as far as possible); bundle and container removed
    /// afterwards in every case. `timeout`: kill after it ([`RuntimeError::Timeout`]).
    /// When the kernel killed a process for going over the memory limit, a last line says so
    /// ([`OOM_LINE`]). Returns the exit code (128 + signal number when killed by a signal).
    pub async fn run(
        &self,
        spec: &ContainerSpec,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i32, RuntimeError> {
        self.ensure_new(spec).await?;
        let id = spec.id.as_str();
        let mut guard = Guard {
            runtime: self,
            id: id.to_string(),
            armed: true,
        };
        let log = self.scratch_file(id, "run-log");
        let paths = self.paths(id);
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(&log)
            .arg("run")
            // Kept after it exits, so that its cgroup can still say whether it ran out of memory.
            .arg("--keep")
            .arg("--bundle")
            .arg(&paths.bundle)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        tracing::info!(container = id, args = ?spec.args, "running container");
        let result = match self.spawn(&mut cmd) {
            Ok(child) => self.wait_streaming(child, id, timeout, on_line, None).await,
            Err(e) => Err(e),
        };
        let errors = Self::take_log(&log);
        if let Some(n) = self.oom_kills(id).filter(|n| *n > 0) {
            on_line(&format!(
                "{OOM_LINE}: {n} process(es) killed by the kernel for going over the memory \
                 limit of {} MiB",
                spec.limits.memory_bytes / (1024 * 1024)
            ));
        }
        let cleanup = self.destroy(id).await;
        guard.armed = false;
        let code = result?;
        if code != 0 && !errors.is_empty() {
            return Err(RuntimeError::Runtime {
                command: self.describe(&["run", id]),
                message: errors.join("; "),
            });
        }
        cleanup?;
        tracing::info!(container = id, code, "container exited");
        Ok(code)
    }

    /// Streams the child's output until it exits; on timeout kills the container (or, for
    /// `exec`, the process whose host pid is in `pid_file`) and returns `Timeout`.
    async fn wait_streaming(
        &self,
        mut child: Child,
        id: &str,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
        pid_file: Option<&Path>,
    ) -> Result<i32, RuntimeError> {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let waited = tokio::time::timeout(timeout, async {
            if let (Some(out), Some(err)) = (stdout, stderr) {
                stream_lines(out, err, on_line).await;
            }
            child.wait().await
        })
        .await;
        match waited {
            Ok(status) => {
                let status = status.map_err(|e| RuntimeError::io("waiting for the runtime", e))?;
                Ok(exit_code(status))
            }
            Err(_) => {
                tracing::warn!(container = id, ?timeout, "timed out: killing");
                match pid_file {
                    Some(pid_file) => {
                        let pid = std::fs::read_to_string(pid_file)
                            .ok()
                            .and_then(|s| s.trim().parse::<i32>().ok());
                        if let Some(pid) = pid.filter(|p| *p > 0) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                    None => {
                        let _ = self.capture(&["kill", id, "KILL"]).await;
                        let _ = self.delete_force(id).await;
                    }
                }
                if tokio::time::timeout(AFTER_KILL_WAIT, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                }
                Err(RuntimeError::Timeout(timeout))
            }
        }
    }

    /// Start detached (apps): `runc run -d`; the container's stdout/stderr are appended to
    /// `log_file`. Returns once the container process runs; the container outlives this process.
    pub async fn start(&self, spec: &ContainerSpec, log_file: &Path) -> Result<(), RuntimeError> {
        let id = spec.id.as_str();
        if let Err(e) = self.ensure_new(spec).await {
            self.unpin(id);
            return Err(e);
        }
        let mut guard = Guard {
            runtime: self,
            id: id.to_string(),
            armed: true,
        };
        let result = self.start_inner(spec, log_file).await;
        if result.is_err() {
            let _ = self.destroy(id).await;
        }
        // Started: the container holds its own binds of the pinned sources.
        self.unpin(id);
        guard.armed = false;
        result
    }

    async fn start_inner(&self, spec: &ContainerSpec, log_file: &Path) -> Result<(), RuntimeError> {
        let id = spec.id.as_str();
        if let Some(parent) = log_file.parent().filter(|p| !p.as_os_str().is_empty()) {
            mkdirs(parent)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(|e| RuntimeError::io(format!("opening {}", log_file.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| RuntimeError::io(format!("opening {}", log_file.display()), e))?;
        let log = self.scratch_file(id, "start-log");
        let pid_file = self.scratch_file(id, "start-pid");
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(&log)
            .args(["run", "--detach", "--pid-file"])
            .arg(&pid_file)
            .arg("--bundle")
            .arg(self.paths(id).bundle)
            .arg(id)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        tracing::info!(container = id, args = ?spec.args, "starting container");
        let mut child = self.spawn(&mut cmd)?;
        let status = match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
            Ok(status) => status.map_err(|e| RuntimeError::io("waiting for the runtime", e))?,
            Err(_) => {
                let _ = child.start_kill();
                let _ = std::fs::remove_file(&log);
                let _ = std::fs::remove_file(&pid_file);
                return Err(RuntimeError::Timeout(START_TIMEOUT));
            }
        };
        let errors = Self::take_log(&log);
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        let _ = std::fs::remove_file(&pid_file);
        if let Some(pid) = pid.filter(|_| status.success()) {
            self.exits.started(id, pid);
        }
        if status.success() {
            // Its variables were read at the start: they do not stay on disk.
            forget_env(&self.paths(id).bundle)?;
        } else {
            let message = if errors.is_empty() {
                format!("exited with {status}")
            } else {
                errors.join("; ")
            };
            return Err(RuntimeError::Runtime {
                command: self.describe(&["run", "--detach", id]),
                message,
            });
        }
        Ok(())
    }

    /// From now on, containers this process starts detached stay its children once the
    /// runtime CLI exits (a child subreaper), so that [`Runtime::reap_exited`] learns how
    /// they end. For a long-running server (`slipway serve`), before it starts any.
    pub fn collect_exits(&self) -> Result<(), RuntimeError> {
        become_subreaper()
    }

    /// Reap (without blocking) the first processes of detached containers this process
    /// started that ended since the last call; returns how many. Containers started
    /// before [`Runtime::collect_exits`] (or by another process) are not reaped here.
    /// Also reaps the ended processes of containers that a killed `runc exec` left to
    /// this subreaper: unreaped, they would keep their container from ever stopping.
    pub fn reap_exited(&self) -> usize {
        self.exits.reap()
    }

    /// How container `id` ended, when [`Runtime::reap_exited`] reaped it since it last
    /// started; asked once (taken).
    pub fn take_exit(&self, id: &str) -> Option<Exit> {
        self.exits.take(id)
    }

    /// Forget how containers that `keep` does not name ended (ones retired meanwhile).
    pub fn forget_exits(&self, keep: &dyn Fn(&str) -> bool) {
        self.exits.retain(keep);
    }

    /// The state of one container (`None` if unknown to the runtime).
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        validate_id(id)?;
        match self.capture(&["state", id]).await? {
            Ok(json) => parse_state(&self.describe(&["state", id]), &json).map(Some),
            Err(msg) if not_exist(&msg) || !self.state_root.join(id).exists() => Ok(None),
            Err(message) => Err(RuntimeError::Runtime {
                command: self.describe(&["state", id]),
                message,
            }),
        }
    }

    /// Every container under this state root (for adoption after a restart, and `slipway down`).
    pub async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let args = ["list", "--format", "json"];
        match self.capture(&args).await? {
            Ok(json) => parse_list(&self.describe(&args), &json),
            Err(message) => Err(RuntimeError::Runtime {
                command: self.describe(&args),
                message,
            }),
        }
    }

    /// Run a command inside a running container (deploy hooks), as the container's user:
    /// output streamed to `on_line` (with a last [`OOM_LINE`] when the kernel killed a process
    /// of the container for memory meanwhile); `env` is the command's whole environment (the
    /// container's own variables are not kept to inherit from); an empty `cwd` keeps the
    /// container's. Arguments and variables reach runc through a memory file, never on its
    /// command line.
    /// Returns the exit code. On timeout the command is killed ([`RuntimeError::Timeout`]).
    pub async fn exec(
        &self,
        id: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: &str,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i32, RuntimeError> {
        validate_id(id)?;
        check_exec(id, args, env, cwd)?;
        let process = exec_process(&self.paths(id).bundle, args, env, cwd, false)?;
        let log = self.scratch_file(id, "exec-log");
        let pid_file = self.scratch_file(id, "exec-pid");
        let mut cmd = self.command();
        cmd.arg("--log").arg(&log).arg("exec");
        ProcessFile::new(&process)?.attach(&mut cmd);
        cmd.arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        tracing::info!(container = id, ?args, "exec");
        let oom_before = self.oom_kills(id);
        let child = self.spawn(&mut cmd)?;
        let result = self
            .wait_streaming(child, id, timeout, on_line, Some(&pid_file))
            .await;
        if let (Some(before), Some(after)) = (oom_before, self.oom_kills(id)) {
            if after > before {
                on_line(&format!(
                    "{OOM_LINE}: {} process(es) killed by the kernel for going over the \
                     container's memory limit",
                    after - before
                ));
            }
        }
        let _ = std::fs::remove_file(&pid_file);
        let errors = Self::take_log(&log);
        let code = result?;
        if code != 0 && !errors.is_empty() {
            return Err(RuntimeError::Runtime {
                command: self.describe(&["exec", id]),
                message: errors.join("; "),
            });
        }
        Ok(code)
    }

    /// Stop (SIGTERM to every process, wait up to `grace`, then SIGKILL) and delete the container
    /// and its bundle. Ok if it does not exist.
    pub async fn remove(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        validate_id(id)?;
        if let Some(state) = self.state(id).await? {
            tracing::info!(container = id, status = ?state.status, "removing container");
            if state.status == Status::Running {
                if self.capture(&["kill", "--all", id, "TERM"]).await?.is_err() {
                    let _ = self.capture(&["kill", id, "TERM"]).await?;
                }
                let deadline = tokio::time::Instant::now() + grace;
                while tokio::time::Instant::now() < deadline {
                    match self.state(id).await? {
                        Some(s) if s.status == Status::Running => tokio::time::sleep(POLL).await,
                        _ => break,
                    }
                }
            }
            if let Some(s) = self.state(id).await? {
                if s.status != Status::Stopped {
                    let _ = self.capture(&["kill", id, "KILL"]).await?;
                }
            }
        }
        self.destroy(id).await
    }

    /// `delete --force` (missing is fine), then removes the bundle and root folders.
    async fn destroy(&self, id: &str) -> Result<(), RuntimeError> {
        self.delete_force(id).await?;
        self.unpin(id);
        self.paths(id).remove()
    }

    async fn delete_force(&self, id: &str) -> Result<(), RuntimeError> {
        match self.capture(&["delete", "--force", id]).await? {
            Ok(_) => Ok(()),
            Err(msg) if not_exist(&msg) || !self.state_root.join(id).exists() => Ok(()),
            Err(message) => Err(RuntimeError::Runtime {
                command: self.describe(&["delete", "--force", id]),
                message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime CLI runs without Go's preemption signals (which a foreground runc forwards
    /// into the container) and without systemd's notify socket.
    #[test]
    fn the_runtime_cli_never_preempts_by_signal() {
        let mut cmd = Command::new("runc");
        runtime_env(&mut cmd);
        let envs: Vec<_> = cmd.as_std().get_envs().collect();
        let godebug = envs
            .iter()
            .find(|(k, _)| *k == "GODEBUG")
            .and_then(|(_, v)| *v)
            .and_then(|v| v.to_str());
        assert!(
            godebug.is_some_and(|v| v.ends_with(RUNTIME_GODEBUG)),
            "{envs:?}"
        );
        assert!(
            envs.iter()
                .any(|(k, v)| *k == "NOTIFY_SOCKET" && v.is_none()),
            "{envs:?}"
        );
    }
}
