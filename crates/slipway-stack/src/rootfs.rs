//! Changing the root file system an import assembles without ever following its links.
//!
//! The layers of an imported image are written by whoever made the image, and the import
//! runs as root: a folder a lower layer made a link (Debian images ship `var/run -> /run`)
//! must not carry a whiteout, an opaque marker or the `web` user's lines to the host. So
//! every path removed or written here is resolved from the root's descriptor with
//! `openat2(RESOLVE_IN_ROOT)`: a link is followed as the image's own containers would see
//! it, never out of the root (an absolute target or `..` stays inside it). The last part of
//! a path, what is removed or written, is never followed (`unlinkat`, `O_NOFOLLOW`,
//! `O_CREAT | O_EXCL`), and a folder is emptied through its descriptor.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::StackError;

/// How every path below the root is resolved: links inside it, never out of it, no
/// `/proc` magic links, no other file system.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

const FOLDER: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// A root file system folder being assembled, opened once.
pub(crate) struct RootFs {
    fd: OwnedFd,
    path: PathBuf,
    /// The image it is made from, named in refusals.
    image: PathBuf,
}

fn io_err(path: &Path, e: Errno) -> StackError {
    StackError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(e.raw_os_error()),
    }
}

/// `name` as one path part: not empty, no `/`, not `.` or `..`.
pub(crate) fn one_part(name: &OsStr) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(n)), None) if n == name
    )
}

impl RootFs {
    /// Open the folder `path` (made by the import, empty or being filled) that the image
    /// `image` is applied to.
    pub(crate) fn open(path: &Path, image: &Path) -> Result<RootFs, StackError> {
        let fd = rustix::fs::open(path, FOLDER | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| io_err(path, e))?;
        Ok(RootFs {
            fd,
            path: path.to_path_buf(),
            image: image.to_path_buf(),
        })
    }

    /// The image refused: its `rel` is not what a stack needs.
    fn refuse(&self, rel: &Path, what: &str) -> StackError {
        StackError::Import {
            path: self.image.clone(),
            reason: format!("its {} {what}", rel.display()),
        }
    }

    fn shown(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// The folder `rel` as the image sees it, `None` if there is none.
    fn folder(&self, rel: &Path) -> Result<Option<OwnedFd>, StackError> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match slipway_runtime::open_folder_at(&self.fd, rel, OFlags::RDONLY, IN_ROOT) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(io_err(&self.shown(rel), e)),
        }
    }

    /// A whiteout: remove `name` (a file, a link itself or a whole folder) from folder
    /// `parent`, if both are there.
    pub(crate) fn remove(&self, parent: &Path, name: &OsStr) -> Result<(), StackError> {
        if !one_part(name) {
            return Err(self.refuse(&parent.join(name), "is no file name"));
        }
        match self.folder(parent)? {
            Some(dir) => remove_at(&dir, name, &self.shown(parent)),
            None => Ok(()),
        }
    }

    /// An opaque whiteout: empty folder `rel`, if it is there.
    pub(crate) fn empty(&self, rel: &Path) -> Result<(), StackError> {
        match self.folder(rel)? {
            Some(dir) => empty_at(&dir, &self.shown(rel)),
            None => Ok(()),
        }
    }

    /// The folder `rel`, made (mode 755) with its missing parents.
    pub(crate) fn make_folder(&self, rel: &Path) -> Result<OwnedFd, StackError> {
        let mut so_far = PathBuf::new();
        let mut dir = self
            .fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| StackError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        for part in rel.components() {
            let Component::Normal(part) = part else {
                return Err(io_err(&self.shown(rel), Errno::INVAL));
            };
            so_far.push(part);
            if self.folder(&so_far)?.is_none() {
                match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                    // A link whose target is missing (or not a folder): the image's own.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(&self.shown(&so_far), e)),
                }
            }
            dir = self.folder(&so_far)?.ok_or_else(|| {
                self.refuse(
                    &so_far,
                    "is not a folder (or a link to none); a stack needs one",
                )
            })?;
        }
        Ok(dir)
    }

    /// Make the empty file `rel` (mode 644, its folder made) unless something, a link
    /// included, is there.
    pub(crate) fn create_missing(&self, rel: &Path) -> Result<(), StackError> {
        let (dir, name) = self.parent_of(rel)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)) {
            Ok(_) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(io_err(&self.shown(rel), e)),
        }
    }

    /// Append `line` to the file `rel` (made, mode 644, if missing) unless a line of it
    /// starts with `prefix`. A link there refuses the image, it is not followed.
    pub(crate) fn append_unless(
        &self,
        rel: &Path,
        prefix: &str,
        line: &str,
    ) -> Result<(), StackError> {
        let (dir, name) = self.parent_of(rel)?;
        let path = self.shown(rel);
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)).map_err(
            |e| match e {
                Errno::LOOP => self.refuse(rel, "is a symbolic link; a stack needs a file"),
                e => io_err(&path, e),
            },
        )?;
        let mut file = File::from(fd);
        let stat = rustix::fs::fstat(&file).map_err(|e| io_err(&path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(self.refuse(rel, "is not a regular file"));
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(StackError::io(&path))?;
        if text
            .split(|b| *b == b'\n')
            .any(|l| l.starts_with(prefix.as_bytes()))
        {
            return Ok(());
        }
        let sep = if text.is_empty() || text.ends_with(b"\n") {
            ""
        } else {
            "\n"
        };
        file.write_all(format!("{sep}{line}").as_bytes())
            .map_err(StackError::io(&path))
    }

    /// The folder of file `rel` (made if missing) and its name.
    fn parent_of<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), StackError> {
        match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) => Ok((self.make_folder(parent)?, name)),
            _ => Err(io_err(&self.shown(rel), Errno::INVAL)),
        }
    }
}

/// Remove `name` in folder `dir`, not following it: a folder is emptied through its own
/// descriptor first.
fn remove_at(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<(), StackError> {
    let path = shown.join(name);
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err(&path, e)),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(dir, name, FOLDER | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| io_err(&path, e))?;
        empty_at(&sub, &path)?;
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| io_err(&path, e))
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| io_err(&path, e))
    }
}

/// Remove everything in folder `dir`.
fn empty_at(dir: &OwnedFd, shown: &Path) -> Result<(), StackError> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(|e| io_err(shown, e))? {
        let entry = entry.map_err(|e| io_err(shown, e))?;
        let name: &CStr = entry.file_name();
        if name != c"." && name != c".." {
            names.push(OsStr::from_bytes(name.to_bytes()).to_os_string());
        }
    }
    for name in names {
        remove_at(dir, &name, shown)?;
    }
    Ok(())
}
