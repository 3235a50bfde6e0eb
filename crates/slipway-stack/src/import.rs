//! Importing a stack from an OCI image layout (`skopeo copy ... oci:DIR:TAG` makes one):
//! its layers, applied in order with their whiteouts, become the stack's one layer.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use slipway_slug::Digest;

use crate::build::WEB_UID;
use crate::error::StackError;
use crate::rootfs::{one_part, RootFs};

/// A layer of the image being imported: its blob and how it is compressed.
struct ImageLayer {
    blob: PathBuf,
    digest: Digest,
    media_type: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> StackError {
    StackError::Import {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json(layout: &Path, path: &Path) -> Result<serde_json::Value, StackError> {
    let bytes = fs::read(path).map_err(|e| bad(layout, format!("{}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(layout, format!("{}: {e}", path.display())))
}

/// The blob `digest` of the layout, its content checked.
fn blob(layout: &Path, digest: &str) -> Result<(PathBuf, Digest), StackError> {
    let d = Digest::parse(digest).map_err(|e| bad(layout, e.to_string()))?;
    let path = layout.join("blobs/sha256").join(d.hex());
    let (actual, _) =
        slipway_slug::hash_file(&path).map_err(|e| bad(layout, format!("blob {d}: {e}")))?;
    if actual != d {
        return Err(bad(layout, format!("blob {d} holds {actual}")));
    }
    Ok((path, d))
}

/// The layers of the image in `layout` (its only manifest, or the one tagged `tag`).
fn image_layers(layout: &Path, tag: Option<&str>) -> Result<Vec<ImageLayer>, StackError> {
    let index = read_json(layout, &layout.join("index.json"))?;
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    let name = |m: &serde_json::Value| {
        m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .map(str::to_string)
    };
    let chosen: Vec<&serde_json::Value> = manifests
        .iter()
        .filter(|m| tag.is_none_or(|t| name(m).as_deref() == Some(t)))
        .collect();
    let [manifest] = chosen.as_slice() else {
        let tags: Vec<String> = manifests.iter().filter_map(name).collect();
        return Err(bad(
            layout,
            format!(
                "{} images match; name one as DIR:TAG (tags: {})",
                chosen.len(),
                tags.join(", ")
            ),
        ));
    };
    let digest = manifest["digest"]
        .as_str()
        .ok_or_else(|| bad(layout, "a manifest without a digest"))?;
    let (path, _) = blob(layout, digest)?;
    let manifest = read_json(layout, &path)?;
    let mut out = Vec::new();
    for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
        let digest = l["digest"]
            .as_str()
            .ok_or_else(|| bad(layout, "a layer without a digest"))?;
        let (blob, digest) = blob(layout, digest)?;
        out.push(ImageLayer {
            blob,
            digest,
            media_type: l["mediaType"].as_str().unwrap_or_default().to_string(),
        });
    }
    if out.is_empty() {
        return Err(bad(layout, "the image has no layers"));
    }
    Ok(out)
}

/// The uncompressed tar stream of `layer`.
fn layer_reader(layout: &Path, layer: &ImageLayer) -> Result<Box<dyn Read>, StackError> {
    let f = BufReader::new(File::open(&layer.blob).map_err(StackError::io(&layer.blob))?);
    let t = layer.media_type.as_str();
    Ok(if t.ends_with("+zstd") {
        Box::new(zstd::Decoder::with_buffer(f).map_err(StackError::io(&layer.blob))?)
    } else if t.ends_with("+gzip") || t.ends_with(".tar.gzip") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else if t.ends_with(".tar") || t.ends_with("layer.v1.tar") {
        Box::new(f)
    } else {
        return Err(bad(
            layout,
            format!(
                "layer {} has media type `{t}`; tar, tar+gzip or tar+zstd expected",
                layer.digest
            ),
        ));
    })
}

/// A relative path inside the root, or `None` for `..`, absolute or empty paths.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Apply the layers of the image in `layout` to the empty folder `root`: whiteouts
/// (`.wh.NAME`, `.wh..wh..opq`) remove what lower layers made; device nodes are skipped.
/// Nothing outside `root` is ever written or removed: an entry whose folder is a link
/// pointing out is refused (the `tar` crate checks the resolved folder), whiteouts and the
/// files added afterwards go through [`RootFs`] (links resolved inside the root).
pub(crate) fn flatten(layout: &Path, tag: Option<&str>, root: &Path) -> Result<(), StackError> {
    let rootfs = RootFs::open(root, layout)?;
    for layer in image_layers(layout, tag)? {
        let mut tar = tar::Archive::new(layer_reader(layout, &layer)?);
        tar.set_preserve_permissions(true);
        tar.set_preserve_ownerships(true);
        tar.set_unpack_xattrs(false);
        tar.set_overwrite(true);
        let fail = |e: String| bad(layout, format!("layer {}: {e}", layer.digest));
        for entry in tar.entries().map_err(|e| fail(e.to_string()))? {
            let mut entry = entry.map_err(|e| fail(e.to_string()))?;
            let raw = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
            let Some(rel) = inside(&raw) else {
                if raw.components().all(|c| matches!(c, Component::CurDir)) {
                    continue; // "./" itself
                }
                return Err(fail(format!("entry {} leaves the root", raw.display())));
            };
            let name = rel.file_name().unwrap_or_default();
            if let Some(name) = name.as_bytes().strip_prefix(b".wh.") {
                let parent = rel.parent().unwrap_or(Path::new(""));
                if name == b".wh..opq" {
                    rootfs.empty(parent)?;
                } else {
                    let name = OsStr::from_bytes(name);
                    if !one_part(name) {
                        return Err(fail(format!("whiteout {} names no file", raw.display())));
                    }
                    rootfs.remove(parent, name)?;
                }
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
                continue;
            }
            if !entry
                .unpack_in(root)
                .map_err(|e| fail(format!("{}: {}", raw.display(), with_causes(&e))))?
            {
                return Err(fail(format!("entry {} leaves the root", raw.display())));
            }
        }
    }
    // What every container needs, if the image lacks it.
    for dir in [
        "app", "cache", "tmp", "proc", "dev", "sys", "run", "etc", "home/web",
    ] {
        rootfs.make_folder(Path::new(dir))?;
    }
    for file in ["etc/hosts", "etc/resolv.conf"] {
        rootfs.create_missing(Path::new(file))?;
    }
    for (file, line) in [
        (
            "etc/passwd",
            format!("web:x:{WEB_UID}:{WEB_UID}:web:/home/web:/bin/sh\n"),
        ),
        ("etc/group", format!("web:x:{WEB_UID}:\n")),
    ] {
        rootfs.append_unless(Path::new(file), "web:", &line)?;
    }
    Ok(())
}

/// Unpack the OCI archive `file` (an image layout as one tar file) into the new folder
/// `dest`. Only folders and regular files inside it are taken: a link, a device or an entry
/// leaving the folder refuses the archive.
pub(crate) fn unpack_oci_archive(file: &Path, dest: &Path) -> Result<(), StackError> {
    let f = BufReader::new(File::open(file).map_err(|e| bad(file, e.to_string()))?);
    fs::create_dir(dest).map_err(StackError::io(dest))?;
    let fail = |e: String| bad(file, format!("not an OCI archive: {e}"));
    let mut tar = tar::Archive::new(f);
    for entry in tar.entries().map_err(|e| fail(e.to_string()))? {
        let mut entry = entry.map_err(|e| fail(e.to_string()))?;
        let raw = entry.path().map_err(|e| fail(e.to_string()))?.into_owned();
        let Some(rel) = inside(&raw) else {
            if raw.components().all(|c| matches!(c, Component::CurDir)) {
                continue;
            }
            return Err(fail(format!("entry {} leaves the archive", raw.display())));
        };
        let kind = entry.header().entry_type();
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(StackError::io(&target))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(StackError::io(parent))?;
            }
            let mut out = File::create(&target).map_err(StackError::io(&target))?;
            io::copy(&mut entry, &mut out).map_err(|e| fail(format!("{}: {e}", raw.display())))?;
        } else {
            return Err(fail(format!(
                "entry {} is a {kind:?}, not a file or folder",
                raw.display()
            )));
        }
    }
    Ok(())
}

/// An error and what caused it, e.g. tar's "failed to unpack X" and the file system's why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The tar stream of folder `root` (entries relative to it, symlinks kept, owners and
/// modes kept), written to `out`.
pub(crate) fn tar_dir(root: &Path, out: &Path) -> Result<(), StackError> {
    let f = File::create(out).map_err(StackError::io(out))?;
    let mut b = tar::Builder::new(io::BufWriter::new(f));
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", root).map_err(StackError::io(root))?;
    b.into_inner()
        .and_then(|mut w| io::Write::flush(&mut w))
        .map_err(StackError::io(out))?;
    Ok(())
}
