//! Keeping a process's environment off the disk and out of command lines: its variables
//! can hold secrets (`var set`). A started container's `config.json` keeps no variable but
//! `PATH` ([`forget_env`]); commands run in a container get their whole process
//! (arguments, variables) from an anonymous memory file that `runc exec --process` reads
//! as `/proc/self/fd/3` ([`ProcessFile`]), never from `--env K=V` arguments that `ps` shows.

use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use crate::error::RuntimeError;

/// The file descriptor a [`ProcessFile`] has in the runtime CLI.
const PROCESS_FD: i32 = 3;

fn parse_err(what: String, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Parse {
        command: what,
        message: e.to_string(),
    }
}

/// Writes `bytes` to `path`, readable by the owner only (through a temporary file renamed
/// into place, so a reader never sees half of it).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    let io = |e| RuntimeError::io(format!("writing {}", path.display()), e);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

fn load(bundle: &Path) -> Result<(std::path::PathBuf, Spec), RuntimeError> {
    let file = bundle.join("config.json");
    if !file.exists() {
        let id = bundle.file_name().unwrap_or_default().to_string_lossy();
        return Err(RuntimeError::Runtime {
            command: format!("exec {id}"),
            message: format!("container {id} does not exist (it has no bundle)"),
        });
    }
    let spec =
        Spec::load(&file).map_err(|e| parse_err(format!("reading {}", file.display()), e))?;
    Ok((file, spec))
}

/// Drops every variable but `PATH` from the process of a bundle's `config.json`, once its
/// container runs (the runtime read it at the start). Keeps `PATH` so an operator's own
/// `runc exec` still finds commands.
pub(crate) fn forget_env(bundle: &Path) -> Result<(), RuntimeError> {
    let (file, mut spec) = load(bundle)?;
    if let Some(p) = spec.process_mut() {
        let kept: Vec<String> = p
            .env()
            .iter()
            .flatten()
            .filter(|kv| kv.starts_with("PATH="))
            .cloned()
            .collect();
        p.set_env(Some(kept));
    }
    let json = serde_json::to_vec_pretty(&spec)
        .map_err(|e| parse_err(format!("writing {}", file.display()), e))?;
    write_private(&file, &json)
}

/// The process of a command run in a running container: the container's own process (user,
/// capabilities, limits, as `runc exec` would take from the bundle) with these arguments,
/// exactly these variables (plus a default `PATH` when they have none), `cwd` (empty: the
/// container's) and a terminal or not.
pub(crate) fn exec_process(
    bundle: &Path,
    args: &[String],
    env: &[(String, String)],
    cwd: &str,
    tty: bool,
) -> Result<Process, RuntimeError> {
    let (file, spec) = load(bundle)?;
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| parse_err(format!("reading {}", file.display()), "it has no process"))?;
    let mut vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        vars.extend(
            p.env()
                .iter()
                .flatten()
                .filter(|kv| kv.starts_with("PATH="))
                .cloned(),
        );
    }
    p.set_args(Some(args.to_vec()));
    p.set_env(Some(vars));
    if !cwd.is_empty() {
        p.set_cwd(cwd.into());
    }
    p.set_terminal(Some(tty));
    Ok(p)
}

/// A process spec in an anonymous memory file (never on disk), handed to the runtime CLI
/// as its file descriptor 3.
#[derive(Debug)]
pub(crate) struct ProcessFile {
    fd: OwnedFd,
}

impl ProcessFile {
    /// The process spec as JSON in a new memory file.
    pub(crate) fn new(process: &Process) -> Result<ProcessFile, RuntimeError> {
        let json = serde_json::to_vec(process)
            .map_err(|e| parse_err("writing the exec process".into(), e))?;
        let fd = nix::sys::memfd::memfd_create(
            c"slipway-process",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(|e| RuntimeError::io("creating a memory file", e.into()))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(&json)
            .and_then(|()| file.rewind())
            .map_err(|e| RuntimeError::io("writing a memory file", e))?;
        Ok(ProcessFile {
            fd: OwnedFd::from(file),
        })
    }

    /// Adds `--process /proc/self/fd/3` to `cmd` and makes the memory file the child's
    /// descriptor 3. The command keeps the file open until it is dropped.
    pub(crate) fn attach(self, cmd: &mut tokio::process::Command) {
        cmd.arg("--process")
            .arg(format!("/proc/self/fd/{PROCESS_FD}"));
        let fd = self.fd;
        // SAFETY: between fork and exec only dup2 and fcntl run, both async-signal-safe; the
        // closure owns the descriptor, which lives as long as the command.
        unsafe {
            cmd.pre_exec(move || {
                let raw = fd.as_raw_fd();
                if raw == PROCESS_FD {
                    // Already in place: only keep it open across exec.
                    if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, PROCESS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_file_is_read_by_the_child_as_fd_3_and_never_named_in_argv() {
        let process = Process::default();
        let mut p = process.clone();
        p.set_env(Some(vec!["TOKEN=s3cret-value".into()]));
        let file = ProcessFile::new(&p).unwrap();
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", "cat \"$2\"", "sh"]);
        file.attach(&mut cmd);
        let argv: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!argv.iter().any(|a| a.contains("s3cret")), "{argv:?}");
        // `cat "$2"` reads the path given after --process.
        let std_cmd = cmd.as_std_mut();
        let out = std_cmd.output().unwrap();
        let read: Process = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(read.env(), &Some(vec!["TOKEN=s3cret-value".to_string()]));
    }
}
