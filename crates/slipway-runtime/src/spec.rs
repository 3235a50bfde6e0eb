//! What a container should be ([`ContainerSpec`]) and its validation.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::RuntimeError;
use crate::tenancy::{Limits, RunAs};

/// Longest accepted container id.
pub const MAX_ID_LEN: usize = 128;

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (file or folder); must exist.
    pub source: PathBuf,
    /// Absolute path inside the container; not `/`, not under the host stack
    /// (`/usr`, `/etc`, `/proc`, `/sys`, `/dev`, `/bin`...), not `/app` or `/tmp` themselves.
    pub destination: String,
    /// Whether the container may write to it.
    pub writable: bool,
}

/// The root file system of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootFs {
    /// The host's `/usr`, `/etc` and library folders, bound read-only.
    Host,
    /// An unpacked stack folder (`stacks/HEX/`), the read-only root itself: nothing of the
    /// host's file system is visible. Every mount point outside `/app` must exist in it.
    Stack(PathBuf),
}

/// Everything needed to run one container: its root file system, process and mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The root file system: the host stack or an unpacked stack.
    pub root: RootFs,
    /// Container id: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
    pub id: String,
    /// The process: program and arguments, e.g. `["/bin/sh", "-c", "python3 server.py"]`.
    pub args: Vec<String>,
    /// Environment variables. `PATH` and `HOME` get defaults when absent.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (absolute), e.g. `/app`.
    pub cwd: String,
    /// Host folder mounted at `/app`.
    pub app_dir: PathBuf,
    /// `/app` writable (builds) or read-only (apps).
    pub app_writable: bool,
    /// Extra declared bind mounts.
    pub mounts: Vec<BindMount>,
    /// Network namespace to join (e.g. `/run/netns/NAME`); `None` = host network.
    pub netns: Option<PathBuf>,
    /// Host name inside the container (empty = `slipway`).
    pub hostname: String,
    /// Names the container resolves through its own `/etc/hosts` (besides `localhost`),
    /// e.g. `database.internal` -> a service's address; empty: the root's `/etc/hosts`.
    pub hosts: Vec<(String, std::net::IpAddr)>,
    /// Stored in the bundle's `config.json`; returned by `state()` and `list()`.
    pub annotations: BTreeMap<String, String>,
    /// The unprivileged user (`web`) the process and every `exec` in the container run as.
    pub run_as: RunAs,
    /// Processes, memory, CPU and `/tmp` size the kernel allows the container.
    pub limits: Limits,
}

/// Checks a container id: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters.
pub fn validate_id(id: &str) -> Result<(), RuntimeError> {
    if is_simple_name(id, MAX_ID_LEN) {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*` of at most `max` bytes.
pub(crate) fn is_simple_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() <= max && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Top-level folders of the container that belong to the host stack; no declared mount may go there.
pub(crate) const RESERVED_TOP: &[&str] = &[
    "proc", "sys", "dev", "usr", "etc", "bin", "sbin", "lib", "lib64", "lib32", "libx32",
];

impl ContainerSpec {
    /// Checks everything that can be checked before asking the runtime.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        validate_id(&self.id)?;
        let bad = |reason: String| RuntimeError::InvalidSpec {
            id: self.id.clone(),
            reason,
        };
        if self.args.is_empty() || self.args[0].is_empty() {
            return Err(bad("no command given".into()));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return Err(bad("an argument contains a NUL byte".into()));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(bad(format!(
                    "invalid environment variable name or value {k:?}"
                )));
            }
        }
        if !self.cwd.starts_with('/') || self.cwd.contains('\0') {
            return Err(bad(format!(
                "working directory {:?} is not an absolute path",
                self.cwd
            )));
        }
        let hostname_ok = self.hostname.len() <= 63
            && self
                .hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !hostname_ok {
            return Err(bad(format!("invalid host name {:?}", self.hostname)));
        }
        for (name, _) in &self.hosts {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name
                    .split('.')
                    .all(|l| is_simple_name(l, 63) && !l.contains('_'));
            if !ok {
                return Err(bad(format!("invalid name {name:?} for /etc/hosts")));
            }
        }
        if !self.app_dir.is_dir() {
            return Err(bad(format!(
                "app folder {} does not exist",
                self.app_dir.display()
            )));
        }
        if let RootFs::Stack(dir) = &self.root {
            if !dir.join("usr").is_dir() {
                return Err(bad(format!(
                    "stack folder {} holds no root file system",
                    dir.display()
                )));
            }
        }
        if let Some(ns) = &self.netns {
            if !ns.exists() {
                return Err(bad(format!(
                    "network namespace {} does not exist",
                    ns.display()
                )));
            }
        }
        if self.run_as.uid == 0 || self.run_as.gid == 0 {
            return Err(bad("containers never run as root (uid or gid 0)".into()));
        }
        let l = &self.limits;
        if l.pids == 0 || l.memory_bytes < 4 * 1024 * 1024 || l.tmp_bytes == 0 {
            return Err(bad(format!("limits too small to start anything: {l:?}")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.mounts {
            let parts = destination_parts(&m.destination).ok_or_else(|| {
                bad(format!(
                    "mount destination {:?} is not a clean absolute path",
                    m.destination
                ))
            })?;
            if RESERVED_TOP.contains(&parts[0].as_str())
                || (parts.len() == 1 && (parts[0] == "app" || parts[0] == "tmp"))
            {
                return Err(bad(format!(
                    "mount destination {:?} is reserved for the host stack",
                    m.destination
                )));
            }
            if !seen.insert(parts.join("/")) {
                return Err(bad(format!(
                    "mount destination {:?} is used twice",
                    m.destination
                )));
            }
            if std::fs::symlink_metadata(&m.source).is_err() {
                return Err(bad(format!(
                    "mount source {} does not exist",
                    m.source.display()
                )));
            }
        }
        Ok(())
    }
}

/// Splits a clean absolute container path into its components (`None` if it is not one).
pub(crate) fn destination_parts(dest: &str) -> Option<Vec<String>> {
    if !dest.starts_with('/') || dest.contains('\0') || dest.len() > 1024 {
        return None;
    }
    let mut parts = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            _ => return None,
        }
    }
    if parts.is_empty() || dest.split('/').skip(1).any(|s| s.is_empty() || s == ".") {
        return None;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "A1", "app-1.main_x", &"x".repeat(128)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(129),
            "../x",
        ] {
            assert!(
                matches!(validate_id(bad), Err(RuntimeError::InvalidId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn destinations() {
        assert_eq!(destination_parts("/data"), Some(vec!["data".to_string()]));
        assert_eq!(
            destination_parts("/app/var/x"),
            Some(vec!["app".to_string(), "var".to_string(), "x".to_string()])
        );
        for bad in ["", "/", "data", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\0"] {
            assert_eq!(destination_parts(bad), None, "{bad:?}");
        }
    }
}
