//! Where configuration files come from: the [`ConfigSource`] abstraction and a disk implementation.

use std::io;
use std::path::{Path, PathBuf};

/// Where config files come from: a working tree on disk, or a pushed commit's tree (implemented by slipway-git).
pub trait ConfigSource {
    /// Bytes of the file at a slash-separated path relative to the repository root; Ok(None) if missing (or a directory).
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// Entries of a directory ("" = root); Ok(empty) if missing.
    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>>;
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (no slashes).
    pub name: String,
    /// Whether the entry is a directory (a tree).
    pub is_dir: bool,
}

/// A working tree on disk.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A source reading files below `root`.
    pub fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
        }
    }

    /// The disk path of a repository-relative path, refusing anything that could leave the root.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let mut out = self.root.clone();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return None,
                p => out.push(p),
            }
        }
        Some(out)
    }
}

impl ConfigSource for DirSource {
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(p) = self.resolve(path) else {
            return Ok(None);
        };
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => std::fs::read(&p).map(Some),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let Some(p) = self.resolve(path) else {
            return Ok(Vec::new());
        };
        let rd = match std::fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Follow symlinks the way a checkout would present them to a reader.
            let is_dir = std::fs::metadata(entry.path())
                .map(|m| m.is_dir())
                .unwrap_or(false);
            out.push(DirEntry { name, is_dir });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Files held in memory (tests, fuzzing, or a tree already read from elsewhere).
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    /// An empty tree.
    pub fn new() -> Self {
        MemSource::default()
    }

    /// Add (or replace) a file at a slash-separated path; its folders exist implicitly.
    pub fn insert(&mut self, path: &str, content: impl Into<Vec<u8>>) {
        let clean: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        self.files.insert(clean.join("/"), content.into());
    }
}

impl ConfigSource for MemSource {
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(path.trim_matches('/')).cloned())
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let dir = path.trim_matches('/');
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: Vec<DirEntry> = Vec::new();
        for p in self.files.keys() {
            let Some(rest) = p.strip_prefix(&prefix) else {
                continue;
            };
            let (name, is_dir) = match rest.split_once('/') {
                Some((first, _)) => (first, true),
                None => (rest, false),
            };
            if name.is_empty() || out.iter().any(|e| e.name == name) {
                continue;
            }
            out.push(DirEntry {
                name: name.to_string(),
                is_dir,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_source_lists_files_and_implicit_folders() {
        let mut m = MemSource::new();
        m.insert(".platform/routes.yaml", "a");
        m.insert("api/.platform.app.yaml", "b");
        m.insert("Procfile", "c");
        assert_eq!(m.read_file("Procfile").unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(m.read_file("missing").unwrap(), None);
        let root: Vec<(String, bool)> = m
            .list_dir("")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.is_dir))
            .collect();
        assert_eq!(
            root,
            vec![
                (".platform".into(), true),
                ("Procfile".into(), false),
                ("api".into(), true)
            ]
        );
        assert_eq!(
            m.list_dir("api").unwrap(),
            vec![DirEntry {
                name: ".platform.app.yaml".into(),
                is_dir: false
            }]
        );
        assert!(m.list_dir("nope").unwrap().is_empty());
    }
}
