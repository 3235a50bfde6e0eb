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

/// A working tree on disk, seen as git would commit it: every file `git add --all` would add
/// (hidden ones included; `.git` and what `.gitignore`, `.git/info/exclude` and the global
/// excludes leave out are not there, nor are folders holding no such file), so that
/// `slipway config check` reads the tree a push of it would carry. A file the repository
/// tracks although it is ignored is not seen (the index is not read).
///
/// The tree is walked once, at the first read; a path beneath a symbolic link the walk found
/// is read through the link, as a checkout presents it.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
    tree: std::sync::OnceLock<Result<CommittedTree, String>>,
}

/// What [`DirSource`]'s walk found: each folder's entries, and the links.
#[derive(Clone, Debug, Default)]
struct CommittedTree {
    /// Folder ("" = root) -> its entries, sorted by name.
    dirs: std::collections::BTreeMap<String, Vec<DirEntry>>,
    /// Every file (symbolic links included), sorted.
    files: std::collections::BTreeSet<String>,
    /// The symbolic links among `files`.
    links: std::collections::BTreeSet<String>,
}

impl CommittedTree {
    /// Walk `root` with the `ignore` crate as git would add it.
    fn walk(root: &Path) -> Result<Self, String> {
        let walk = ignore::WalkBuilder::new(root)
            .hidden(false)
            .parents(false)
            .ignore(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        let mut tree = CommittedTree::default();
        for entry in walk {
            let entry = entry.map_err(|e| e.to_string())?;
            let Some(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else {
                continue;
            };
            let Some(parts) = rel
                .components()
                .map(|c| c.as_os_str().to_str())
                .collect::<Option<Vec<&str>>>()
            else {
                // Not UTF-8: no config file or app folder is named so.
                continue;
            };
            if parts.is_empty() {
                continue;
            }
            let path = parts.join("/");
            if kind.is_symlink() {
                tree.links.insert(path.clone());
            }
            tree.files.insert(path);
            // The file in its folder, and each folder on its way in its parent.
            for i in (0..parts.len()).rev() {
                let dir = parts[..i].join("/");
                let is_dir = i + 1 < parts.len();
                let name = parts[i].to_string();
                let entries = tree.dirs.entry(dir).or_default();
                if entries.iter().any(|e| e.name == name) {
                    break;
                }
                entries.push(DirEntry { name, is_dir });
            }
        }
        for entries in tree.dirs.values_mut() {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(tree)
    }

    /// Whether `path` or one of the folders on its way is a symbolic link the walk found.
    fn through_link(&self, path: &str) -> bool {
        let mut at = 0;
        loop {
            let end = path[at..].find('/').map(|i| at + i).unwrap_or(path.len());
            if self.links.contains(&path[..end]) {
                return true;
            }
            if end == path.len() {
                return false;
            }
            at = end + 1;
        }
    }
}

impl DirSource {
    /// A source reading files below `root`.
    pub fn new(root: &Path) -> Self {
        DirSource {
            root: root.to_path_buf(),
            tree: std::sync::OnceLock::new(),
        }
    }

    /// Every file a push of this tree would carry (paths relative to the root, with `/`,
    /// sorted; symbolic links included): what `config check` scans for secrets.
    pub fn files(&self) -> io::Result<Vec<String>> {
        Ok(self.tree()?.files.iter().cloned().collect())
    }

    fn tree(&self) -> io::Result<&CommittedTree> {
        self.tree
            .get_or_init(|| CommittedTree::walk(&self.root))
            .as_ref()
            .map_err(|e| io::Error::other(format!("listing {}: {e}", self.root.display())))
    }

    /// The repository-relative path with `.` and empty parts dropped; None if it has `..`.
    fn clean(path: &str) -> Option<String> {
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return None,
                p => parts.push(p),
            }
        }
        Some(parts.join("/"))
    }
}

impl ConfigSource for DirSource {
    fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(rel) = Self::clean(path) else {
            return Ok(None);
        };
        let tree = self.tree()?;
        if !tree.files.contains(&rel) && !tree.through_link(&rel) {
            return Ok(None);
        }
        let p = self.root.join(&rel);
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => std::fs::read(&p).map(Some),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let Some(rel) = Self::clean(path) else {
            return Ok(Vec::new());
        };
        let tree = self.tree()?;
        let mut out = match tree.dirs.get(&rel) {
            Some(entries) => entries.clone(),
            None if !rel.is_empty() && tree.through_link(&rel) => {
                return list_linked_dir(&self.root.join(&rel))
            }
            None => return Ok(Vec::new()),
        };
        // A link to a folder is listed as a folder, as a checkout presents it.
        for e in &mut out {
            let full = if rel.is_empty() {
                e.name.clone()
            } else {
                format!("{rel}/{}", e.name)
            };
            if tree.links.contains(&full) {
                e.is_dir = std::fs::metadata(self.root.join(&full)).is_ok_and(|m| m.is_dir());
            }
        }
        Ok(out)
    }
}

/// The entries of a folder reached through a symbolic link (what git carries is the link; its
/// target's files are read as a checkout would show them).
fn list_linked_dir(p: &Path) -> io::Result<Vec<DirEntry>> {
    let rd = match std::fs::read_dir(p) {
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
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        out.push(DirEntry { name, is_dir });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
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
    fn a_dir_source_sees_what_git_would_commit() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "deploy/x",
            ".hidden",
            "vendor/x/.platform.app.yaml",
            "ignored.pem",
            ".git/key",
            ".ignore",
            "only-ignored/a.pem",
        ] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), "x").unwrap();
        }
        std::fs::create_dir_all(d.join("empty")).unwrap();
        std::fs::write(d.join(".gitignore"), "*.pem\n/vendor/\n").unwrap();
        // `.ignore` files are ripgrep's, not git's.
        std::fs::write(d.join(".ignore"), "deploy\n").unwrap();
        let s = DirSource::new(d);
        assert_eq!(
            s.files().unwrap(),
            [".gitignore", ".hidden", ".ignore", "deploy/x"]
        );
        let root: Vec<(String, bool)> = s
            .list_dir("")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.is_dir))
            .collect();
        assert_eq!(
            root,
            [
                (".gitignore".into(), false),
                (".hidden".into(), false),
                (".ignore".into(), false),
                ("deploy".into(), true)
            ]
        );
        assert_eq!(s.read_file("vendor/x/.platform.app.yaml").unwrap(), None);
        assert!(s.list_dir("vendor/x").unwrap().is_empty());
        assert_eq!(
            s.read_file("./deploy/x").unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(s.read_file("../deploy/x").unwrap(), None);
        assert_eq!(s.read_file("deploy").unwrap(), None);
    }

    #[test]
    fn a_linked_folder_is_read_through_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("src/app")).unwrap();
        std::fs::write(d.join("src/app/.platform.app.yaml"), "name: a").unwrap();
        std::os::unix::fs::symlink("src/app", d.join("app")).unwrap();
        let s = DirSource::new(d);
        assert!(s.list_dir("").unwrap().contains(&DirEntry {
            name: "app".into(),
            is_dir: true
        }));
        assert_eq!(
            s.read_file("app/.platform.app.yaml").unwrap().as_deref(),
            Some(&b"name: a"[..])
        );
        assert_eq!(s.list_dir("app").unwrap().len(), 1);
    }

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
