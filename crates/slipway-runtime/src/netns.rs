//! Named persistent network namespaces (`/run/netns/NAME`, as `ip netns` manages them),
//! one per environment.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::RuntimeError;
use crate::spec::is_simple_name;

/// Where `ip netns` keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// Longest accepted namespace name.
pub const MAX_NAME_LEN: usize = 200;

fn validate(name: &str) -> Result<PathBuf, RuntimeError> {
    if is_simple_name(name, MAX_NAME_LEN) {
        Ok(Path::new(NETNS_DIR).join(name))
    } else {
        Err(RuntimeError::InvalidNetnsName(name.to_string()))
    }
}

/// Whether `path` is a mounted network namespace (an nsfs bind mount).
fn is_netns(path: &Path) -> bool {
    matches!(nix::sys::statfs::statfs(path), Ok(s) if s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Runs `ip ARGS`, returning its error message on failure.
fn ip(name: &str, args: &[&str]) -> Result<(), RuntimeError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| RuntimeError::Netns {
            name: name.to_string(),
            message: format!("cannot run `ip` (install iproute2): {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(RuntimeError::Netns {
        name: name.to_string(),
        message: format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Ensures a named persistent network namespace exists (`ip netns add NAME`, i.e.
/// `/run/netns/NAME`) with loopback up. Idempotent. Returns its path.
pub fn ensure(name: &str) -> Result<PathBuf, RuntimeError> {
    let path = validate(name)?;
    if !is_netns(&path) {
        if path.exists() {
            // A leftover file that is no namespace any more (nothing mounted on it).
            let _ = std::fs::remove_file(&path);
        }
        if let Err(e) = ip(name, &["netns", "add", name]) {
            // Someone else may have created it meanwhile.
            if !is_netns(&path) {
                return Err(e);
            }
        }
        tracing::info!(netns = name, "created network namespace");
    }
    ip(name, &["-n", name, "link", "set", "lo", "up"])?;
    Ok(path)
}

/// Deletes a named network namespace. Ok if it does not exist. Processes still inside keep it
/// alive until they exit.
pub fn delete(name: &str) -> Result<(), RuntimeError> {
    let path = validate(name)?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(());
    }
    match ip(name, &["netns", "delete", name]) {
        Ok(()) => {
            tracing::info!(netns = name, "deleted network namespace");
            Ok(())
        }
        Err(_) if std::fs::symlink_metadata(&path).is_err() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Names under `/run/netns` starting with `prefix`, sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, RuntimeError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io(format!("reading {NETNS_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RuntimeError::io(format!("reading {NETNS_DIR}"), e))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.starts_with(prefix) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}
