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
        DirSource { root: root.to_path_buf() }
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
        let Some(p) = self.resolve(path) else { return Ok(None) };
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => std::fs::read(&p).map(Some),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let Some(p) = self.resolve(path) else { return Ok(Vec::new()) };
        let rd = match std::fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            // Follow symlinks the way a checkout would present them to a reader.
            let is_dir = std::fs::metadata(entry.path()).map(|m| m.is_dir()).unwrap_or(false);
            out.push(DirEntry { name, is_dir });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}
