//! The server's stacks: built ones in the archive, unpacked once under `stacks/`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use slipway_slug::{Archive, SlugError, SlugInfo};

use crate::build::{build_tar, BuildOptions, RECIPE, SOURCE_DATE_EPOCH};
use crate::catalog::{Stack, CATALOG};
use crate::error::StackError;
use crate::unpack::{dir_size, unpack_layer};

/// zstd level of stack layers.
const LAYER_LEVEL: i32 = 3;
/// The label naming an image's stack (`LANGUAGE:VERSION`).
pub const STACK_LABEL: &str = "org.slipway.stack";

/// A stack that is in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltStack {
    /// The catalog entry.
    pub stack: &'static Stack,
    /// Its layers, bottom first (one for a built stack; an imported image may have more).
    pub layers: Vec<SlugInfo>,
    /// Its image's labels (`org.slipway.stack`, `org.slipway.source`, ...).
    pub labels: BTreeMap<String, String>,
}

impl BuiltStack {
    /// Compressed size of its layers in the archive.
    pub fn archive_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// The stacks of one data dir: `archive/` holds their images, `stacks/HEX/` the unpacked
/// root file systems (one per layer, shared read-only by every container using it).
#[derive(Debug, Clone)]
pub struct StackStore {
    archive: Archive,
    dir: PathBuf,
}

/// An exclusive `flock`, released when dropped.
struct BuildLock(#[allow(dead_code)] File);

impl StackStore {
    /// The stacks of the data dir whose archive is `archive`; `dir` is its `stacks/` folder.
    pub fn new(archive: Archive, dir: &Path) -> StackStore {
        StackStore {
            archive,
            dir: dir.to_path_buf(),
        }
    }

    /// The archive holding the stack images.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// The `stacks/` folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `stack` as stored in the archive, or `None` if it is not built.
    pub fn built(&self, stack: &'static Stack) -> Result<Option<BuiltStack>, StackError> {
        match self.archive.image_layers(&stack.tag()) {
            Ok((layers, labels)) => Ok(Some(BuiltStack {
                stack,
                layers,
                labels,
            })),
            Err(SlugError::UnknownTag(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stack of the catalog with what is built of it, then the imported stacks of
    /// versions the catalog lacks (registered, see [`StackStore::register_imported`]).
    /// Last, the built stacks of several languages (an Upsun `stack:` list's).
    pub fn list(&self) -> Result<Vec<(&'static Stack, Option<BuiltStack>)>, StackError> {
        let imported = self.register_imported()?;
        let composed = self.composed()?;
        CATALOG
            .iter()
            .chain(imported)
            .chain(composed)
            .map(|s| Ok((s, self.built(s)?)))
            .collect()
    }

    /// The stacks of several languages or with packages this archive has (tags
    /// `stack-LANGUAGE-VERSION+...` that still resolve).
    fn composed(&self) -> Result<Vec<&'static Stack>, SlugError> {
        Ok(self
            .archive
            .list()?
            .iter()
            .filter_map(|t| {
                let rest = t.tag.strip_prefix("stack-")?;
                if !rest.contains(crate::compose::SEPARATOR) {
                    return None;
                }
                let base = [crate::catalog::Language::Base];
                crate::catalog::Language::ALL
                    .into_iter()
                    .chain(base)
                    .find_map(|l| {
                        let version = rest.strip_prefix(l.name())?.strip_prefix('-')?;
                        crate::resolve_type(&format!("{l}:{version}"))
                            .ok()
                            .map(|r| r.stack)
                            .filter(|s| s.tag() == t.tag)
                    })
            })
            .collect())
    }

    /// Register, for this process's resolution ([`crate::imported`]), every stack of this
    /// archive whose version the catalog lacks (imported by `slipway stack import`), and
    /// return them. Config validation and builds then know them beside the catalog.
    pub fn register_imported(&self) -> Result<Vec<&'static Stack>, SlugError> {
        Ok(self
            .archive
            .list()?
            .iter()
            .filter_map(|t| crate::imported::parse_tag(&t.tag))
            .map(|(language, version)| crate::imported::register(language, version))
            .collect())
    }

    /// The unpacked root file system of `stack` (unpacking it if needed), or
    /// [`StackError::NotBuilt`].
    pub fn rootfs(&self, stack: &'static Stack) -> Result<PathBuf, StackError> {
        let built = self.built(stack)?.ok_or_else(|| StackError::NotBuilt {
            stack: stack.type_name(),
        })?;
        self.unpack(&built)
    }

    /// The root file system folder of `built`, unpacking it once. An image of several
    /// layers is not unpacked here (imports are flattened into one layer).
    pub fn unpack(&self, built: &BuiltStack) -> Result<PathBuf, StackError> {
        match built.layers.as_slice() {
            [layer] => unpack_layer(&self.archive, layer, &self.dir),
            other => Err(StackError::Unpack {
                layer: built.stack.tag(),
                reason: format!("a stack image has one layer, this one has {}", other.len()),
            }),
        }
    }

    /// Bytes of the unpacked root file system of `built`, if it is unpacked.
    pub fn unpacked_size(&self, built: &BuiltStack) -> Option<u64> {
        let [layer] = built.layers.as_slice() else {
            return None;
        };
        let d = self.dir.join(layer.digest.hex());
        d.is_dir().then(|| dir_size(&d))
    }

    /// Take the build lock of `stack` (one build of a stack at a time, across processes);
    /// says so through `progress` when it has to wait.
    fn lock(&self, stack: &Stack, progress: &mut dyn FnMut(&str)) -> Result<BuildLock, StackError> {
        fs::create_dir_all(&self.dir).map_err(StackError::io(&self.dir))?;
        let path = self.dir.join(format!(".{}.lock", stack.tag()));
        let f = File::create(&path).map_err(StackError::io(&path))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(BuildLock(f));
        }
        progress(&format!("waiting for another build of stack {stack}"));
        loop {
            // SAFETY: as above.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(BuildLock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(StackError::Io { path, source: e });
            }
        }
    }

    /// `stack`, built if it is not (once: concurrent callers wait for one build), and
    /// unpacked. Returns it and its root file system folder.
    pub fn ensure(
        &self,
        stack: &'static Stack,
        options: &BuildOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(BuiltStack, PathBuf), StackError> {
        if let Some(b) = self.built(stack)? {
            let root = self.unpack(&b)?;
            return Ok((b, root));
        }
        Self::refuse_imported(stack)?;
        let _lock = self.lock(stack, progress)?;
        if let Some(b) = self.built(stack)? {
            let root = self.unpack(&b)?;
            return Ok((b, root));
        }
        self.build_locked(stack, options, progress)
    }

    /// An imported stack has no Debian recipe: it can only be imported again.
    fn refuse_imported(stack: &Stack) -> Result<(), StackError> {
        if crate::imported::is_imported(stack) {
            return Err(StackError::ImportedOnly {
                stack: stack.type_name(),
            });
        }
        Ok(())
    }

    /// Build `stack` again (replacing its tag) and unpack it.
    pub fn build(
        &self,
        stack: &'static Stack,
        options: &BuildOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(BuiltStack, PathBuf), StackError> {
        Self::refuse_imported(stack)?;
        let _lock = self.lock(stack, progress)?;
        self.build_locked(stack, options, progress)
    }

    /// Import `stack` from the OCI image layout `layout` (a folder, or an OCI archive: the
    /// layout as one tar file, as `skopeo copy ... oci-archive:FILE` writes it; its only
    /// image, or the one tagged `tag`), replacing what is built: its layers are applied in
    /// order (whiteouts honoured, digests checked), the mount points and user `web` added
    /// if missing, and the result stored as the stack's one layer, then unpacked.
    pub fn import(
        &self,
        stack: &'static Stack,
        layout: &Path,
        tag: Option<&str>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(BuiltStack, PathBuf), StackError> {
        let _lock = self.lock(stack, progress)?;
        let work = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(&self.dir)
            .map_err(StackError::io(&self.dir))?;
        let root = work.path().join("rootfs");
        fs::create_dir(&root).map_err(StackError::io(&root))?;
        let unpacked = work.path().join("layout");
        let folder = if layout.is_file() {
            progress(&format!("unpacking the OCI archive {}", layout.display()));
            crate::import::unpack_oci_archive(layout, &unpacked)?;
            unpacked.as_path()
        } else {
            layout
        };
        progress(&format!("applying the layers of {}", layout.display()));
        crate::import::flatten(folder, tag, &root)?;
        let tar = work.path().join("rootfs.tar");
        crate::import::tar_dir(&root, &tar)?;
        progress("storing the stack layer in the archive");
        let file = File::open(&tar).map_err(StackError::io(&tar))?;
        let layer = self.archive.put_layer(file, LAYER_LEVEL)?;
        let labels = BTreeMap::from([
            (STACK_LABEL.to_string(), stack.type_name()),
            (
                "org.slipway.source".to_string(),
                format!("imported from {}", layout.display()),
            ),
        ]);
        let built = BuiltStack {
            stack,
            layers: vec![layer],
            labels,
        };
        drop(work);
        let root = self.unpack(&built)?;
        self.archive
            .put_image(&stack.tag(), &built.layers, &built.labels)?;
        Ok((built, root))
    }

    fn build_locked(
        &self,
        stack: &'static Stack,
        options: &BuildOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(BuiltStack, PathBuf), StackError> {
        let started = Instant::now();
        progress(&format!(
            "building stack {stack} from Debian {} ({})",
            stack.suite,
            stack.packages.join(" ")
        ));
        // Everything of the build lives in this folder, removed whatever happens.
        let work = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&self.dir)
            .map_err(StackError::io(&self.dir))?;
        let tar = work.path().join("rootfs.tar");
        build_tar(stack, options, work.path(), &tar, progress)?;
        progress("storing the stack layer in the archive");
        let file = File::open(&tar).map_err(StackError::io(&tar))?;
        let layer = self.archive.put_layer(file, LAYER_LEVEL)?;
        let labels = BTreeMap::from([
            (STACK_LABEL.to_string(), stack.type_name()),
            ("org.slipway.source".to_string(), stack.source()),
            ("org.slipway.packages".to_string(), stack.packages.join(" ")),
            (
                "org.slipway.source-date-epoch".to_string(),
                SOURCE_DATE_EPOCH.to_string(),
            ),
            ("org.slipway.recipe".to_string(), RECIPE.to_string()),
        ]);
        let built = BuiltStack {
            stack,
            layers: vec![layer],
            labels,
        };
        drop(work);
        progress("unpacking the stack");
        let root = self.unpack(&built)?;
        // Tagged last: a stack is "built" only once its layer is stored and unpacks.
        self.archive
            .put_image(&stack.tag(), &built.layers, &built.labels)?;
        progress(&format!(
            "stack {stack} built in {:.0?}: {} in the archive ({})",
            started.elapsed(),
            slipway_slug::human_size(built.archive_size()),
            built.layers[0].digest
        ));
        Ok((built, root))
    }
}
