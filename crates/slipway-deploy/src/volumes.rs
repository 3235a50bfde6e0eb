//! Volumes: per-environment disks whose size the kernel enforces.
//!
//! A volume is an ext4 file system in a sparse image file, `DATA/volumes/PROJECT/ENV/NAME.img`,
//! loop-mounted `nosuid,nodev` at `DATA/volumes/PROJECT/ENV/NAME/`. A write past its size fails
//! inside the container with the app's own `ENOSPC`; the host's disk is not the limit (the image
//! is sparse, so the host must have room for what is really written). Volumes are made with no
//! reserved blocks (`-m 0`), grow online (the file grows, then `resize2fs` on the mounted loop
//! device) and never shrink in place (an app's volume shrinks by a copy onto a smaller one, see
//! [`crate::volume_shrink`]; a service's, see [`crate::services::shrink`]). Mounting and unmounting are idempotent, so `serve` can remount
//! after a restart or a reboot and `down` can unmount whatever is mounted.
//!
//! Inside a volume, `files/FOLDER` holds the data of the mounts whose `source_path` is FOLDER,
//! and `tmp/CONTAINER/FOLDER` the `tmp` mounts of one container (removed with it).
//!
//! A service that keeps its data on a volume asks [`VolumeStore::volume`] for one named
//! `service-NAME`, calls [`Volume::ensure`] with its `disk` and its user, and bind-mounts
//! [`Volume::dir`] (or a folder below it) into its container.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_runtime::RunAs;

/// One mebibyte: `disk` is in MB as on Platform.sh (MiB).
const MIB: u64 = 1024 * 1024;

/// The size of a volume whose `disk` is not set (MB).
pub const DEFAULT_DISK_MB: u64 = 512;

/// The smallest volume Slipway makes (MB): ext4 needs room for its own metadata.
pub const MIN_DISK_MB: u64 = 8;

/// Held while a volume is frozen ([`Volume::while_frozen`]) or removed: two deploys copying
/// one volume must not freeze it twice (the second freeze fails) nor thaw it under the other's
/// copy, and a volume being copied is not removed under the copy.
static FREEZING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Errors of volumes.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool (`mkfs.ext4`, `mount`, `resize2fs`, ...) failed.
    #[error("{what} failed: {output}")]
    Tool {
        /// The command, in words.
        what: String,
        /// What it printed.
        output: String,
    },
    /// A smaller size was asked for.
    #[error("volume {name} is {size_mb} MB and holds {used_mb} MB: it does not shrink in place to {wanted_mb} MB (a push with -o allow-data-loss copies it onto a smaller one)")]
    Shrink {
        /// The volume.
        name: String,
        /// Its size now.
        size_mb: u64,
        /// The data it holds.
        used_mb: u64,
        /// The size asked for.
        wanted_mb: u64,
    },
    /// A folder of a mount is a symbolic link (or not a folder): never followed on the host.
    #[error("{0} is not a plain folder (a symbolic link?); refusing to mount it")]
    NotAFolder(PathBuf),
    /// A mount's folder could not be pinned for its container (a symbolic link on the way,
    /// see [`crate::mounts::bind_mounts`]).
    #[error("mount `{mount}` (volume {volume}): {reason}")]
    UnsafeMount {
        /// The mount's path below `/app`.
        mount: String,
        /// The volume holding it.
        volume: String,
        /// Why.
        reason: String,
    },
    /// A name that cannot be a file name.
    #[error("bad volume or folder name {0:?}")]
    BadName(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let what = what.into();
    move |source| VolumeError::Io { what, source }
}

/// Run a tool; its output is the error when it fails.
fn tool(what: &str, cmd: &mut Command) -> Result<String, VolumeError> {
    let out = cmd.output().map_err(io(format!("running {what}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(VolumeError::Tool {
            what: what.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_string(),
        })
    }
}

/// Unmount `point`, trying again for up to two seconds while the kernel says it is busy: a
/// process that has just let go of a file on it (a tool that exited, a child forked by
/// another thread before its `exec` closed the inherited descriptors) can hold it for a
/// moment.
fn umount(point: &Path) -> Result<String, VolumeError> {
    let what = format!("unmounting {}", point.display());
    let mut tries = 0;
    loop {
        match tool(&what, Command::new("umount").arg(point)) {
            Err(VolumeError::Tool { output, .. }) if output.contains("busy") && tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
                tracing::debug!(point = %point.display(), output, "busy, unmounting again");
            }
            other => return other,
        }
    }
}

/// Where volumes live: `DATA/volumes/`.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
}

impl VolumeStore {
    /// The store below `root` (`DATA/volumes`).
    pub fn new(root: PathBuf) -> VolumeStore {
        VolumeStore { root }
    }

    /// Where the store is (`DATA/volumes`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of an environment's volumes.
    pub fn env_dir(&self, project: &str, env: &str) -> PathBuf {
        self.root.join(project).join(env)
    }

    /// The volume `name` of an environment (it may not exist yet).
    pub fn volume(&self, project: &str, env: &str, name: &str) -> Result<Volume, VolumeError> {
        check_name(name)?;
        Ok(Volume::in_env_dir(&self.env_dir(project, env), name))
    }

    /// The volumes an environment has (one per image file), by name.
    pub fn volumes(&self, project: &str, env: &str) -> Result<Vec<Volume>, VolumeError> {
        let dir = self.env_dir(project, env);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".img") {
                if check_name(name).is_ok() {
                    out.push(self.volume(project, env, name)?);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Thaw every volume mounted below the store: a copy interrupted by a crash of the
    /// server could have left its parent frozen. Volumes that are not frozen are left as
    /// they are.
    pub fn thaw_all(&self) -> Result<usize, VolumeError> {
        let mut n = 0;
        for p in mount_points()?
            .into_iter()
            .filter(|p| p.starts_with(&self.root) && p != &self.root)
        {
            // `fsfreeze -u` fails on a file system that is not frozen (EINVAL): nothing to do.
            if Command::new("fsfreeze")
                .arg("-u")
                .arg(&p)
                .output()
                .map_err(io("running fsfreeze"))?
                .status
                .success()
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Unmount every volume mounted below the store (`slipway down`); returns how many.
    pub fn unmount_all(&self) -> Result<usize, VolumeError> {
        let mut n = 0;
        // Deepest first, should anything be mounted inside a volume.
        let mut points: Vec<PathBuf> = mount_points()?
            .into_iter()
            .filter(|p| p.starts_with(&self.root) && p != &self.root)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            umount(&p)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Volume and folder names: plain file names, no `/`, not `.`/`..`, nothing hidden.
fn check_name(name: &str) -> Result<(), VolumeError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VolumeError::BadName(name.to_string()))
    }
}

/// What [`Volume::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// Made now (empty).
    Created,
    /// Was there; grown online from this size (MB).
    Grown(u64),
    /// Was there; its image grew from this size (MB), but its file system grows only when it
    /// is next mounted: growing a mounted ext4 needs `CAP_SYS_RESOURCE`, which this server
    /// lacks (as in a container without that capability).
    GrowsAtNextMount(u64),
    /// Was there at the right size.
    Unchanged,
}

/// One volume of an environment.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Its name in the environment (`app-web`, `storage`, `service-files`).
    pub name: String,
    /// The image file.
    pub image: PathBuf,
    /// Where it is mounted on the host.
    pub dir: PathBuf,
}

impl Volume {
    /// Whether its image exists.
    pub fn exists(&self) -> bool {
        self.image.is_file()
    }

    /// Its size (MB), from the image file.
    pub fn size_mb(&self) -> Result<u64, VolumeError> {
        let meta = std::fs::metadata(&self.image)
            .map_err(io(format!("reading {}", self.image.display())))?;
        Ok(meta.len() / MIB)
    }

    /// The data it holds (bytes), while mounted.
    pub fn used_bytes(&self) -> Result<u64, VolumeError> {
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(|e| VolumeError::Io {
            what: format!("measuring {}", self.dir.display()),
            source: e.into(),
        })?;
        let frsize = st.fragment_size() as u64;
        Ok((st.blocks() as u64 - st.blocks_free() as u64) * frsize)
    }

    /// Make the volume if it does not exist, mount it, and grow it to `size_mb` if it is
    /// smaller. The file system's root and `files/` belong to root (0755); what `owner` writes
    /// to are the folders [`Volume::folder`] makes.
    pub fn ensure(&self, size_mb: u64) -> Result<Ensured, VolumeError> {
        let size_mb = size_mb.max(MIN_DISK_MB);
        let mut result = Ensured::Unchanged;
        if !self.exists() {
            self.create(size_mb)?;
            result = Ensured::Created;
        }
        self.mount()?;
        let now = self.size_mb()?;
        if size_mb > now || (size_mb == now && self.pending_growth().exists()) {
            // A growth an interrupted deploy left half done is finished here too.
            result = if self.grow(size_mb)? {
                Ensured::Grown(now)
            } else {
                Ensured::GrowsAtNextMount(now)
            };
        } else if size_mb < now {
            return Err(VolumeError::Shrink {
                name: self.name.clone(),
                size_mb: now,
                used_mb: self.used_bytes()?.div_ceil(MIB),
                wanted_mb: size_mb,
            });
        }
        Ok(result)
    }

    fn create(&self, size_mb: u64) -> Result<(), VolumeError> {
        let parent = self.image.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        // Made aside and renamed: an image file is always a whole file system.
        let tmp = self.image.with_extension("img.new");
        let f = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.set_len(size_mb * MIB)
            .map_err(io(format!("sizing {}", tmp.display())))?;
        drop(f);
        tool(
            &format!("mkfs.ext4 {}", tmp.display()),
            Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0", "-L"])
                .arg(self.name.chars().take(16).collect::<String>())
                .arg(&tmp),
        )?;
        std::fs::rename(&tmp, &self.image).map_err(io(format!("renaming {}", tmp.display())))
    }

    /// Whether it is mounted at [`Volume::dir`].
    pub fn is_mounted(&self) -> Result<bool, VolumeError> {
        Ok(mount_points()?.iter().any(|p| p == &self.dir))
    }

    /// Mount it (nothing to do when it is mounted already).
    pub fn mount(&self) -> Result<(), VolumeError> {
        if self.is_mounted()? {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(io(format!("creating {}", self.dir.display())))?;
        let pending = self.pending_growth();
        if pending.exists() {
            // Growth that could not happen online: offline now, before mounting.
            let checked = Command::new("e2fsck")
                .args(["-f", "-p"])
                .arg(&self.image)
                .output()
                .map_err(io("running e2fsck"))?;
            // 0: clean, 1: errors corrected; anything else stops here.
            if !matches!(checked.status.code(), Some(0 | 1)) {
                return Err(VolumeError::Tool {
                    what: format!("e2fsck {}", self.image.display()),
                    output: String::from_utf8_lossy(&checked.stdout).into_owned(),
                });
            }
            tool(
                &format!("resize2fs {}", self.image.display()),
                Command::new("resize2fs").arg(&self.image),
            )?;
            std::fs::remove_file(&pending)
                .map_err(io(format!("removing {}", pending.display())))?;
        }
        tool(
            &format!("mounting {}", self.image.display()),
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,nosuid,nodev"])
                .arg(&self.image)
                .arg(&self.dir),
        )?;
        let files = self.dir.join("files");
        std::fs::create_dir_all(&files).map_err(io(format!("creating {}", files.display())))?;
        Ok(())
    }

    /// Volume `name` of the environment whose folder is `env_dir`: its image `NAME.img` and
    /// its mount point `NAME` there.
    fn in_env_dir(env_dir: &Path, name: &str) -> Volume {
        Volume {
            name: name.to_string(),
            image: env_dir.join(format!("{name}.img")),
            dir: env_dir.join(name),
        }
    }

    /// Unmount it and give it the name `to` of the same environment (its image and a
    /// pending growth move; its data stays as it is), returning the volume by its new name.
    /// Refused when a volume `to` exists.
    pub fn rename(&self, to: &str) -> Result<Volume, VolumeError> {
        check_name(to)?;
        let moved = Volume::in_env_dir(self.dir.parent().unwrap_or(&self.dir), to);
        if moved.exists() {
            return Err(VolumeError::Io {
                what: format!("renaming {} to {}", self.name, moved.image.display()),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        let _not_while_copied = FREEZING.lock().unwrap_or_else(|e| e.into_inner());
        self.unmount()?;
        std::fs::rename(&self.image, &moved.image)
            .map_err(io(format!("renaming {}", self.image.display())))?;
        match std::fs::rename(self.pending_growth(), moved.pending_growth()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io(format!("renaming {}", self.pending_growth().display()))(
                    e,
                ))
            }
        }
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => Ok(moved),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(moved),
            Err(e) => Err(io(format!("removing {}", self.dir.display()))(e)),
        }
    }

    /// Unmount it (nothing to do when it is not mounted).
    pub fn unmount(&self) -> Result<(), VolumeError> {
        if !self.is_mounted()? {
            return Ok(());
        }
        umount(&self.dir).map(drop)
    }

    /// The loop device it is mounted from.
    fn loop_device(&self) -> Result<String, VolumeError> {
        let out = tool(
            &format!("finding the loop device of {}", self.image.display()),
            Command::new("losetup").arg("-j").arg(&self.image),
        )?;
        out.lines()
            .filter_map(|l| l.split(':').next())
            .find(|d| d.starts_with("/dev/loop"))
            .map(str::to_string)
            .ok_or_else(|| VolumeError::Tool {
                what: format!("finding the loop device of {}", self.image.display()),
                output: "not attached".into(),
            })
    }

    /// Whether its file system grows at its next mount (its image grew while it was mounted
    /// and this server could not grow it online).
    pub fn grows_at_next_mount(&self) -> bool {
        self.pending_growth().exists()
    }

    /// The marker of a growth left for the next mount.
    fn pending_growth(&self) -> PathBuf {
        self.image.with_extension("grow")
    }

    /// Grow the mounted volume to `size_mb`: online (true), or, when the kernel refuses that
    /// for want of `CAP_SYS_RESOURCE`, at its next mount (false; the image file is grown now).
    fn grow(&self, size_mb: u64) -> Result<bool, VolumeError> {
        // The marker first: a crash between growing the file and its file system leaves it,
        // and the next `ensure` or mount finishes the growth.
        let pending = self.pending_growth();
        std::fs::write(&pending, format!("{size_mb}\n"))
            .map_err(io(format!("writing {}", pending.display())))?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .map_err(io(format!("opening {}", self.image.display())))?;
        if f.metadata()
            .map_err(io(format!("reading {}", self.image.display())))?
            .len()
            < size_mb * MIB
        {
            f.set_len(size_mb * MIB)
                .map_err(io(format!("growing {}", self.image.display())))?;
        }
        drop(f);
        let dev = self.loop_device()?;
        tool(
            &format!("losetup -c {dev}"),
            Command::new("losetup").arg("-c").arg(&dev),
        )?;
        match tool(
            &format!("resize2fs {dev}"),
            Command::new("resize2fs").arg(&dev),
        ) {
            Ok(_) => {
                std::fs::remove_file(&pending)
                    .map_err(io(format!("removing {}", pending.display())))?;
                Ok(true)
            }
            Err(VolumeError::Tool { output, .. }) if output.contains("Permission denied") => {
                tracing::warn!(volume = %self.name, "no CAP_SYS_RESOURCE: the file system grows to {size_mb} MB at its next mount");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The folder `files/RELATIVE` of the mounted volume, made if missing: the parts made here
    /// belong to root, the last one to `owner`. Every existing part must be a plain folder (a
    /// symbolic link an app made is never followed on the host).
    pub fn folder(&self, relative: &str, owner: RunAs) -> Result<PathBuf, VolumeError> {
        self.folder_below("files", relative, owner)
    }

    /// The folder `data` at the root of the mounted volume, made if missing and then owned by
    /// `owner`: where a service (PostgreSQL, MariaDB, Redis, ...) keeps its data, its
    /// container's `/app`.
    pub fn service_data(&self, owner: RunAs) -> Result<PathBuf, VolumeError> {
        self.folder_below("", "data", owner)
    }

    /// The room left on the host's disk below the volume's folder (MB): a volume is a
    /// sparse file, so the host must have room for what will be written to it.
    pub fn host_free_mb(&self) -> Result<u64, VolumeError> {
        let mut at = self.image.parent().unwrap_or(Path::new("/")).to_path_buf();
        while !at.exists() {
            match at.parent() {
                Some(p) => at = p.to_path_buf(),
                None => break,
            }
        }
        let st = nix::sys::statvfs::statvfs(&at).map_err(|e| VolumeError::Io {
            what: format!("measuring {}", at.display()),
            source: e.into(),
        })?;
        Ok(st.blocks_available() as u64 * st.fragment_size() as u64 / MIB)
    }

    /// Unmount the volume and delete it (its image, its folder, a pending growth): its data
    /// is gone. Nothing to do when it does not exist.
    pub fn remove(&self) -> Result<(), VolumeError> {
        let _not_while_copied = FREEZING.lock().unwrap_or_else(|e| e.into_inner());
        self.unmount()?;
        for f in [
            self.image.clone(),
            self.pending_growth(),
            self.image.with_extension("img.new"),
        ] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", f.display()))(e)),
            }
        }
        match std::fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("removing {}", self.dir.display()))(e)),
        }
    }

    /// Like [`Volume::folder`], below `tmp/CONTAINER/`: a `tmp` mount of one container.
    pub fn tmp_folder(
        &self,
        container: &str,
        relative: &str,
        owner: RunAs,
    ) -> Result<PathBuf, VolumeError> {
        check_name(container)?;
        self.folder_below(&format!("tmp/{container}"), relative, owner)
    }

    /// Remove the `tmp` folders of every container but those in `keep`.
    pub fn remove_tmp_except(&self, keep: &[String]) -> Result<(), VolumeError> {
        let dir = self.dir.join("tmp");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let p = entry.path();
                std::fs::remove_dir_all(&p).map_err(io(format!("removing {}", p.display())))?;
            }
        }
        Ok(())
    }

    fn folder_below(
        &self,
        base: &str,
        relative: &str,
        owner: RunAs,
    ) -> Result<PathBuf, VolumeError> {
        let mut path = self.dir.clone();
        let parts: Vec<&str> = base
            .split('/')
            .chain(relative.split('/'))
            .filter(|p| !p.is_empty())
            .collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == "." || *part == ".." {
                return Err(VolumeError::BadName(relative.to_string()));
            }
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    // What is in it under another uid (left by a Slipway whose project uids
                    // were in another range, or written by a container of the project still
                    // running under its old uid while the folder was given) is given to the
                    // project's user: the whole tree, at every open, changing only what
                    // another uid owns.
                    if i + 1 == parts.len() {
                        owner.own_tree(&path).map_err(|e| VolumeError::Io {
                            what: format!("giving {} to the project", path.display()),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                    }
                }
                Ok(_) => return Err(VolumeError::NotAFolder(path)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&path)
                        .map_err(io(format!("creating {}", path.display())))?;
                    if i + 1 == parts.len() {
                        owner.own_tree(&path).map_err(|e| VolumeError::Io {
                            what: format!("giving {} to the project", path.display()),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                    }
                }
                Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
            }
        }
        Ok(path)
    }

    /// Replace this volume's content with a copy of `parent`'s, made while `parent` stays
    /// mounted and in use (see [`Volume::snapshot_to`]). This volume must not be mounted.
    /// Returns the copy's size (MB).
    pub fn copy_from(&self, parent: &Volume) -> Result<u64, VolumeError> {
        if self.is_mounted()? {
            return Err(VolumeError::Tool {
                what: format!("copying into {}", self.name),
                output: "it is mounted".into(),
            });
        }
        let tmp = self.image.with_extension("img.new");
        if parent.pending_growth().exists() {
            // The parent's file system is smaller than its image: the copy grows it too.
            std::fs::copy(parent.pending_growth(), self.pending_growth())
                .map_err(io(format!("writing {}", self.pending_growth().display())))?;
        }
        parent.snapshot_to(&tmp)?;
        std::fs::rename(&tmp, &self.image).map_err(io(format!("renaming {}", tmp.display())))?;
        self.size_mb()
    }

    /// Copy this volume's image to `dest`, consistent while it stays mounted and in use: it is
    /// frozen (`fsfreeze`: its file system is flushed and consistent on disk; reads go on,
    /// writes wait) for as long as the image is copied (`cp --reflink=auto --sparse=always`: a
    /// moment on a host file system with reflinks, the time to copy the data otherwise), then
    /// thawed, also when the copy failed. A crash in between leaves it frozen until the next
    /// `serve` ([`VolumeStore::thaw_all`]).
    pub fn snapshot_to(&self, dest: &Path) -> Result<(), VolumeError> {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        self.while_frozen(|| {
            tool(
                &format!("copying {}", self.image.display()),
                Command::new("cp")
                    .args(["--reflink=auto", "--sparse=always"])
                    .arg(&self.image)
                    .arg(dest),
            )
            .map(drop)
        })?
    }

    /// Run `f` while the volume is frozen (when it is mounted: its file system flushed and
    /// consistent on disk; reads go on, writes wait), and thaw it after, also when `f`
    /// failed. A crash in between leaves it frozen until the next `serve`
    /// ([`VolumeStore::thaw_all`]).
    pub fn while_frozen<T>(&self, f: impl FnOnce() -> T) -> Result<T, VolumeError> {
        let _one_at_a_time = FREEZING.lock().unwrap_or_else(|e| e.into_inner());
        let frozen = self.is_mounted()?;
        if frozen {
            tool(
                &format!("freezing {}", self.dir.display()),
                Command::new("fsfreeze").arg("-f").arg(&self.dir),
            )?;
        }
        let result = f();
        if frozen {
            tool(
                &format!("thawing {}", self.dir.display()),
                Command::new("fsfreeze").arg("-u").arg(&self.dir),
            )?;
        }
        Ok(result)
    }
}

/// The mount points of this process's mount namespace (octal escapes of
/// `/proc/self/mountinfo` decoded).
fn mount_points() -> Result<Vec<PathBuf>, VolumeError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io("reading /proc/self/mountinfo"))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect())
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use slipway_runtime::testing::root;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/x\"), r"/x\");
    }

    #[test]
    fn names_are_plain() {
        assert!(check_name("app-web").is_ok());
        for bad in ["", ".", "..", "a/b", ".hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    /// Create, mount, write, grow online, refuse a shrink, fill up (ENOSPC), copy while in use.
    #[test]
    fn a_volume_lives_grows_fills_and_copies() {
        if !root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(tmp.path().join("volumes"));
        let owner = RunAs::for_project("voltest");
        let v = store.volume("p", "main", "app-web").unwrap();
        assert_eq!(v.ensure(16).unwrap(), Ensured::Created);
        assert_eq!(v.ensure(16).unwrap(), Ensured::Unchanged);
        assert!(v.is_mounted().unwrap());
        let data = v.folder("uploads", owner).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&data).unwrap().uid(), owner.uid);
        assert_eq!(std::fs::metadata(v.dir.join("files")).unwrap().uid(), 0);
        std::fs::write(data.join("a.txt"), "hello").unwrap();
        // A mount folder left by another uid (an older project uid range) is given back.
        std::os::unix::fs::chown(&data, Some(4_000_000_000), Some(4_000_000_000)).unwrap();
        std::os::unix::fs::chown(data.join("a.txt"), Some(4_000_000_000), None).unwrap();
        v.folder("uploads", owner).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().uid(), owner.uid);
        assert_eq!(
            std::fs::metadata(data.join("a.txt")).unwrap().uid(),
            owner.uid
        );

        // A symlink in place of a folder is refused, never followed.
        std::os::unix::fs::symlink("/etc", data.join("evil")).unwrap();
        assert!(matches!(
            v.folder("uploads/evil", owner),
            Err(VolumeError::NotAFolder(_))
        ));

        // Full: ENOSPC inside, nothing outside.
        let big = vec![7u8; 1024 * 1024];
        let mut f = std::fs::File::create(data.join("fill")).unwrap();
        use std::io::Write;
        let err = loop {
            if let Err(e) = f.write_all(&big) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc_enospc()));
        drop(f);

        // Grown (online, or at the next mount without CAP_SYS_RESOURCE): room again, the
        // data still there.
        match v.ensure(32).unwrap() {
            Ensured::Grown(16) => {}
            Ensured::GrowsAtNextMount(16) => {
                v.unmount().unwrap();
                v.mount().unwrap();
                assert!(!v.pending_growth().exists());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v.size_mb().unwrap(), 32);
        std::fs::write(data.join("b.txt"), vec![1u8; 4 * 1024 * 1024]).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("a.txt")).unwrap(),
            "hello"
        );
        assert!(matches!(v.ensure(16), Err(VolumeError::Shrink { .. })));

        // A copy while the parent is mounted; the copy is independent.
        let child = store.volume("p", "dev", "app-web").unwrap();
        assert_eq!(child.copy_from(&v).unwrap(), 32);
        child.ensure(32).unwrap();
        let cdata = child.folder("uploads", owner).unwrap();
        assert_eq!(
            std::fs::read_to_string(cdata.join("a.txt")).unwrap(),
            "hello"
        );
        std::fs::write(cdata.join("a.txt"), "child").unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("a.txt")).unwrap(),
            "hello"
        );
        std::fs::write(data.join("after.txt"), "written after the copy").unwrap();

        // Unmount everything, then mount again: idempotent, data kept.
        assert_eq!(store.unmount_all().unwrap(), 2);
        assert!(!v.is_mounted().unwrap());
        v.unmount().unwrap();
        v.mount().unwrap();
        v.mount().unwrap();
        assert_eq!(
            std::fs::read_to_string(v.dir.join("files/uploads/a.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            store
                .volumes("p", "main")
                .unwrap()
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["app-web"]
        );
        store.unmount_all().unwrap();
    }

    fn libc_enospc() -> i32 {
        nix::errno::Errno::ENOSPC as i32
    }
}
