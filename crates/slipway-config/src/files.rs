//! Reading text files from a [`ConfigSource`] with the size and encoding rules, and finding files in the tree.

use crate::diag::Diagnostic;
use crate::source::ConfigSource;

/// Config files larger than this are refused.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// Folders never searched for app files.
const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "vendor",
    ".platform",
    ".upsun",
    ".magento",
    ".slipway",
];
/// How deep app files are searched for.
const MAX_DEPTH: usize = 6;
/// How many folders are looked at, at most.
const MAX_DIRS: usize = 5_000;

/// The UTF-8 text of a file, None if missing; an error diagnostic if unreadable, too large or not UTF-8.
pub(crate) fn read_text(src: &dyn ConfigSource, path: &str) -> Result<Option<String>, Diagnostic> {
    let bytes = match src.read_file(path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(Diagnostic::error(
                path,
                0,
                0,
                "",
                format!("cannot read the file: {e}"),
            ))
        }
    };
    if bytes.len() > MAX_FILE_SIZE {
        return Err(Diagnostic::error(
            path,
            0,
            0,
            "",
            format!(
                "the file is {} bytes; config files may be at most 1 MiB",
                bytes.len()
            ),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.remove(0);
            }
            Ok(Some(s))
        }
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let line = text.matches('\n').count() + 1;
            let col = text
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0)
                + 1;
            Err(Diagnostic::error(
                path,
                line,
                col,
                "",
                "the file is not valid UTF-8; save it as UTF-8",
            ))
        }
    }
}

/// Whether a directory exists (has entries: git trees are never empty).
pub(crate) fn dir_exists(src: &dyn ConfigSource, path: &str) -> Result<bool, Diagnostic> {
    if path.is_empty() {
        return Ok(true);
    }
    src.list_dir(path)
        .map(|e| !e.is_empty())
        .map_err(|e| Diagnostic::error(path, 0, 0, "", format!("cannot list the folder: {e}")))
}

/// Join a directory and a name with a slash.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory part of a path ("" for the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// Normalize a user-written relative path: strip `./`, duplicate and trailing slashes; refuse `..` above the root.
/// A leading slash means the repository root; otherwise the path is relative to `base`.
pub(crate) fn normalize(base: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = if path.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Every file named `name` in the tree (root first, then sorted by path), skipping dependency folders.
pub(crate) fn find_files(src: &dyn ConfigSource, name: &str) -> Result<Vec<String>, Diagnostic> {
    let mut found = Vec::new();
    let mut queue = vec![(String::new(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = queue.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            break;
        }
        let entries = src.list_dir(&dir).map_err(|e| {
            Diagnostic::error(&dir, 0, 0, "", format!("cannot list the folder: {e}"))
        })?;
        for e in entries {
            if e.is_dir {
                if depth < MAX_DEPTH && !SKIP_DIRS.contains(&e.name.as_str()) {
                    queue.push((join(&dir, &e.name), depth + 1));
                }
            } else if e.name == name {
                found.push(join(&dir, &e.name));
            }
        }
    }
    found.sort_by(|a, b| (a.matches('/').count(), a).cmp(&(b.matches('/').count(), b)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize("api", "scripts/x.sh").as_deref(),
            Some("api/scripts/x.sh")
        );
        assert_eq!(normalize("api", "../x.sh").as_deref(), Some("x.sh"));
        assert_eq!(normalize("", "../x.sh"), None);
        assert_eq!(normalize("a", "/b/./c/").as_deref(), Some("b/c"));
    }
}
