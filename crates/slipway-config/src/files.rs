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
/// How many folders are looked at, at most, when searching for app files; a tree with more
/// is refused (an app beyond could be missed), the same in `config check` and a push.
pub(crate) const MAX_DIRS: usize = 50_000;

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

/// Every file named `name` in the tree (root first, then sorted by path), skipping dependency
/// folders, at any depth; an error if the tree has more than [`MAX_DIRS`] folders to search.
pub(crate) fn find_files(src: &dyn ConfigSource, name: &str) -> Result<Vec<String>, Diagnostic> {
    let mut found = Vec::new();
    let mut queue = vec![String::new()];
    let mut visited = 0usize;
    while let Some(dir) = queue.pop() {
        visited += 1;
        if visited > MAX_DIRS {
            return Err(Diagnostic::error(
                "",
                0,
                0,
                "",
                format!(
                    "the tree has more than {MAX_DIRS} folders to search for {name} files \
                     (node_modules, vendor and the config folders not counted); an app beyond \
                     could be missed, so it is refused: commit fewer folders (build output, \
                     dependencies)"
                ),
            ));
        }
        let entries = src.list_dir(&dir).map_err(|e| {
            Diagnostic::error(&dir, 0, 0, "", format!("cannot list the folder: {e}"))
        })?;
        for e in entries {
            if e.is_dir {
                if !SKIP_DIRS.contains(&e.name.as_str()) {
                    queue.push(join(&dir, &e.name));
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
    fn app_files_are_found_at_any_depth_and_a_huge_tree_is_refused() {
        let mut m = crate::MemSource::new();
        m.insert("a/b/c/d/e/f/g/h/.platform.app.yaml", "x");
        m.insert(".platform.app.yaml", "x");
        m.insert("node_modules/p/.platform.app.yaml", "x");
        assert_eq!(
            find_files(&m, ".platform.app.yaml").unwrap(),
            [".platform.app.yaml", "a/b/c/d/e/f/g/h/.platform.app.yaml"]
        );
        // A root with MAX_DIRS folders: with the root, one more than may be searched.
        struct Wide;
        impl ConfigSource for Wide {
            fn read_file(&self, _: &str) -> std::io::Result<Option<Vec<u8>>> {
                Ok(None)
            }
            fn list_dir(&self, path: &str) -> std::io::Result<Vec<crate::DirEntry>> {
                Ok(if path.is_empty() {
                    (0..MAX_DIRS)
                        .map(|i| crate::DirEntry {
                            name: format!("d{i}"),
                            is_dir: true,
                        })
                        .collect()
                } else {
                    Vec::new()
                })
            }
        }
        let big = Wide;
        let e = find_files(&big, ".platform.app.yaml").unwrap_err();
        assert!(
            e.message.contains("more than 50000 folders"),
            "{}",
            e.message
        );
    }

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
