//! Small helpers around invoking the OCI runtime CLI: locating it, reading its messages.

use std::path::{Path, PathBuf};

use crate::error::RuntimeError;

/// Folders searched after `PATH` (runc usually lives in `/usr/sbin`, often not on a user's PATH).
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves `runtime` (a path, or a name looked up on `PATH`) to an absolute executable path.
pub(crate) fn resolve_runtime(runtime: &Path) -> Result<PathBuf, RuntimeError> {
    let not_found = || RuntimeError::RuntimeNotFound(runtime.to_path_buf());
    let s = runtime.as_os_str();
    if s.is_empty() {
        return Err(not_found());
    }
    if runtime.components().count() > 1 || runtime.is_absolute() {
        let abs = std::path::absolute(runtime).map_err(|_| not_found())?;
        return if is_executable(&abs) {
            Ok(abs)
        } else {
            Err(not_found())
        };
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(runtime))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

/// The runtime's messages from its JSON log (`--log-format json`), as found in `text`
/// (stderr or a `--log` file). Only error-level entries when `errors_only`; lines that are no
/// JSON are kept as they are.
pub(crate) fn messages(text: &[u8], errors_only: bool) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|line| match serde_json::from_str::<Entry>(line) {
            Ok(e) if !errors_only || matches!(e.level.as_str(), "error" | "fatal" | "panic") => {
                Some(e.msg)
            }
            Ok(_) => None,
            Err(_) => Some(line.to_string()),
        })
        .collect()
}

/// One message out of the runtime's stderr (or a fallback when it said nothing).
pub(crate) fn message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let msgs = messages(stderr, false);
    if msgs.is_empty() {
        format!("exited with {status} and no message")
    } else {
        msgs.join("; ")
    }
}

/// A short stable hash (FNV-1a, 32 bits, hex) of some bytes.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_runtime() {
        assert!(resolve_runtime(Path::new("sh")).unwrap().is_absolute());
        assert!(matches!(
            resolve_runtime(Path::new("no-such-runtime-xyz")),
            Err(RuntimeError::RuntimeNotFound(_))
        ));
        let plain = tempfile::NamedTempFile::new().unwrap();
        assert!(resolve_runtime(plain.path()).is_err(), "not executable");
        assert!(resolve_runtime(Path::new("/usr")).is_err(), "a folder");
        assert!(resolve_runtime(Path::new("")).is_err());
    }

    #[test]
    fn reads_messages() {
        let log = br#"{"level":"warning","msg":"w"}
{"level":"error","msg":"runc run failed: boom","time":"x"}
plain text
"#;
        assert_eq!(
            messages(log, true),
            vec!["runc run failed: boom", "plain text"]
        );
        assert_eq!(messages(log, false).len(), 3);
        assert_ne!(short_hash(b"/a"), short_hash(b"/b"));
    }
}
