//! Importing a stack of a version the catalog lacks from a small hand-made OCI image
//! layout: the good image becomes a stack that resolution knows; a broken one (a blob whose
//! bytes are not its digest, a missing layer, no image layout, a layer entry leaving the
//! root) is refused naming what is wrong, and leaves nothing: no tag, no blob, no folder.
//! The same image as an OCI archive (one tar file) imports alike; an archive holding a link
//! or that is no tar is refused.

use std::io::Write;
use std::path::Path;

use sha2::Digest as _;
use slipway_slug::Archive;
use slipway_stack::{imported, StackError, StackStore};

fn entry(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Write `bytes` as a blob of `layout`; returns its `sha256:HEX`.
fn blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// A layer's tar: `entries` (name, data; a name ending in `/` is a folder), then `links`
/// (name, target) as symbolic links.
fn layer(entries: &[(&[u8], &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let kind = if name.ends_with(b"/") {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        };
        entry(&mut b, name, kind, data);
    }
    for (name, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI image layout at `layout` with one gzip layer holding `entries` (name, data; a
/// name ending in `/` is a folder), tagged `img`. Returns the layer's digest.
fn image(layout: &Path, entries: &[(&[u8], &[u8])]) -> String {
    layered_image(layout, &[layer(entries, &[])]).remove(0)
}

/// An OCI image layout at `layout` with one gzip layer per tar of `layers` (lowest first),
/// tagged `img`. Returns the layers' digests.
fn layered_image(layout: &Path, layers: &[Vec<u8>]) -> Vec<String> {
    let mut digests = Vec::new();
    let mut described = Vec::new();
    for tar in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let gz = gz.finish().unwrap();
        let digest = blob(layout, &gz);
        described.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz.len()}));
        digests.push(digest);
    }
    let config = blob(
        layout,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 0},
        "layers": described,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = blob(layout, &manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "img"},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    digests
}

const GOOD: &[(&[u8], &[u8])] = &[
    (b"./usr/", b""),
    (b"./usr/bin/", b""),
    (b"./usr/bin/hello", b"#!/bin/sh\necho hello\n"),
];

fn store(dir: &Path) -> StackStore {
    StackStore::new(
        Archive::open(&dir.join("archive")).unwrap(),
        &dir.join("stacks"),
    )
}

/// Asserts that the failed import left nothing: no tag, no blob, no work folder.
fn nothing_left(data: &Path, store: &StackStore, stack: &'static slipway_stack::Stack) {
    assert!(store.built(stack).unwrap().is_none());
    assert!(store.archive().list().unwrap().is_empty());
    let blobs = std::fs::read_dir(data.join("archive/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "a blob was left");
    let work: Vec<_> = std::fs::read_dir(data.join("stacks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(work.is_empty(), "left in stacks/: {work:?}");
}

fn refused(store: &StackStore, stack: &'static slipway_stack::Stack, layout: &Path) -> String {
    match store.import(stack, layout, Some("img"), &mut |_| {}) {
        Err(e @ StackError::Import { .. }) => e.to_string(),
        other => panic!("not refused as a bad image: {other:?}"),
    }
}

#[test]
fn a_broken_image_is_refused_naming_what_is_wrong_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let store = store(&data);
    let stack = imported::import_target("ruby:3.2").unwrap();

    // A blob whose bytes are not its digest.
    let bad_digest = d.path().join("bad-digest");
    let layer = image(&bad_digest, GOOD);
    let hex = layer.trim_start_matches("sha256:");
    let path = bad_digest.join("blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let e = refused(&store, stack, &bad_digest);
    assert!(e.contains(&format!("blob {layer} holds sha256:")), "{e}");
    nothing_left(&data, &store, stack);

    // A layer the layout lacks.
    let missing = d.path().join("missing-layer");
    let layer = image(&missing, GOOD);
    std::fs::remove_file(
        missing
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    let e = refused(&store, stack, &missing);
    assert!(e.contains(&format!("blob {layer}: ")), "{e}");
    nothing_left(&data, &store, stack);

    // A folder that is no image layout.
    let plain = d.path().join("plain");
    std::fs::create_dir_all(plain.join("usr")).unwrap();
    let e = refused(&store, stack, &plain);
    assert!(e.contains("index.json"), "{e}");
    nothing_left(&data, &store, stack);

    // A layer entry climbing out of the root.
    let climbing = d.path().join("climbing");
    image(&climbing, &[(b"./usr/", b""), (b"../../escaped", b"out\n")]);
    let e = refused(&store, stack, &climbing);
    assert!(e.contains("entry ../../escaped leaves the root"), "{e}");
    assert!(!d.path().join("escaped").exists());
    assert!(!data.join("escaped").exists());
    nothing_left(&data, &store, stack);
}

#[test]
fn a_good_image_becomes_a_stack_of_a_version_the_catalog_lacks() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let layout = d.path().join("layout");
    image(&layout, GOOD);
    let stack = imported::import_target("golang:1.21").unwrap();
    assert!(imported::is_imported(stack));
    let (built, root) = store(&data)
        .import(stack, &layout, Some("img"), &mut |_| {})
        .unwrap();
    assert_eq!(built.layers.len(), 1);
    assert!(root.join("usr/bin/hello").is_file());
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("web:"), "{passwd}");
    assert!(store(&data).built(stack).unwrap().is_some());

    // Another process (a fresh store of the same folder) learns it from the archive, and
    // lists it after the catalog.
    let listed = store(&data).list().unwrap();
    let (last, b) = listed.last().unwrap();
    assert_eq!(last.type_name(), "golang:1.21");
    assert!(b.is_some());
    let r = slipway_stack::resolve_type("golang:1.21").unwrap();
    assert_eq!(r.stack.type_name(), "golang:1.21");
    assert_eq!(r.warning(), None);

    // It has no recipe: building it again is refused, naming the way to replace it.
    let e = store(&data)
        .build(stack, &Default::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, StackError::ImportedOnly { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("slipway stack import golang:1.21 IMAGE"),
        "{e}"
    );
}

/// The folder `layout` as one tar file (an OCI archive), plus `extra` entries.
fn archive_of(layout: &Path, file: &Path, extra: impl FnOnce(&mut tar::Builder<std::fs::File>)) {
    let mut b = tar::Builder::new(std::fs::File::create(file).unwrap());
    b.append_dir_all(".", layout).unwrap();
    extra(&mut b);
    b.finish().unwrap();
}

#[test]
fn an_oci_archive_imports_like_its_layout_and_a_hostile_one_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let layout = d.path().join("layout");
    image(&layout, GOOD);
    let stack = imported::import_target("nodejs:19").unwrap();

    // A link inside the archive (it could point a blob anywhere on the host).
    let linked = d.path().join("linked.tar");
    archive_of(&layout, &linked, |b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "blobs/sha256/evil", "/etc/shadow")
            .unwrap();
    });
    let e = refused(&store(&data), stack, &linked);
    assert!(
        e.contains("not an OCI archive: entry blobs/sha256/evil is a Symlink"),
        "{e}"
    );
    nothing_left(&data, &store(&data), stack);
    // A file that is no tar at all.
    let junk = d.path().join("junk.tar");
    std::fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let e = refused(&store(&data), stack, &junk);
    assert!(e.contains("not an OCI archive"), "{e}");
    nothing_left(&data, &store(&data), stack);

    let good = d.path().join("good.tar");
    archive_of(&layout, &good, |_| {});
    let (_, root) = store(&data)
        .import(stack, &good, Some("img"), &mut |_| {})
        .unwrap();
    assert!(root.join("usr/bin/hello").is_file());
    assert_eq!(
        slipway_stack::resolve_type("nodejs:19")
            .unwrap()
            .stack
            .type_name(),
        "nodejs:19"
    );
}

/// A folder outside the import holding files an image must never reach: `x`, `y`,
/// `inner/z` and `passwd`.
fn victim(dir: &Path) -> std::path::PathBuf {
    let v = dir.join("victim");
    std::fs::create_dir_all(v.join("inner")).unwrap();
    for f in ["x", "y", "inner/z"] {
        std::fs::write(v.join(f), "host\n").unwrap();
    }
    std::fs::write(v.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    v
}

/// Asserts the victim folder holds exactly what [`victim`] put there.
fn untouched(v: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(v)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["inner", "passwd", "x", "y"], "{}", v.display());
    for f in ["x", "y", "inner/z"] {
        assert_eq!(std::fs::read_to_string(v.join(f)).unwrap(), "host\n", "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(v.join("passwd")).unwrap(),
        "root:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(std::fs::read_dir(v.join("inner")).unwrap().count(), 1);
}

/// An image whose lower layer makes a folder a link out of the root (Debian images ship
/// `var/run -> /run`) and whose upper layer then whites out, empties, writes through it, or
/// whose `etc/passwd`, `etc` or `home` is such a link: the import is refused or applies the
/// link as the image's containers would see it (inside the root), and never removes or
/// writes a file outside the root.
#[test]
fn an_image_whose_links_point_out_of_the_root_never_changes_the_host() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let v = victim(d.path());
    let out = v.to_str().unwrap();
    let stack = imported::import_target("ruby:3.2").unwrap();

    // Whiteouts below the link: applied inside the root, where there is nothing to remove.
    let whiteouts = d.path().join("whiteouts");
    let inner = format!("{out}/inner");
    layered_image(
        &whiteouts,
        &[
            layer(&[(b"var/", b"")], &[("var/run", out), ("var/lock", &inner)]),
            layer(
                &[
                    (b"var/run/.wh.x", b""),
                    (b"var/run/.wh.inner", b""),
                    (b"var/lock/.wh..wh..opq", b""),
                ],
                &[],
            ),
        ],
    );
    let (_, root) = store(&data)
        .import(stack, &whiteouts, Some("img"), &mut |_| {})
        .unwrap();
    untouched(&v);
    assert_eq!(std::fs::read_link(root.join("var/run")).unwrap(), v);

    // A whiteout naming the folder's parent (`.wh..`): `var/run/..` would be the victim's
    // parent.
    let dotdot = d.path().join("dotdot");
    layered_image(
        &dotdot,
        &[
            layer(&[(b"var/", b"")], &[("var/run", &inner)]),
            layer(&[(b"var/run/.wh..", b"")], &[]),
        ],
    );
    let e = refused(&store(&data), stack, &dotdot);
    assert!(e.contains("whiteout var/run/.wh.. names no file"), "{e}");
    untouched(&v);

    // A file written through the link.
    let through = d.path().join("through");
    layered_image(
        &through,
        &[
            layer(&[(b"var/", b"")], &[("var/run", out)]),
            layer(&[(b"var/run/x", b"evil\n")], &[]),
        ],
    );
    let e = refused(&store(&data), stack, &through);
    assert!(e.contains("var/run/x"), "{e}");
    untouched(&v);

    // The `web` user's lines appended through a link.
    let passwd = d.path().join("passwd");
    let target = format!("{out}/passwd");
    layered_image(
        &passwd,
        &[layer(&[(b"etc/", b"")], &[("etc/passwd", &target)])],
    );
    let e = refused(&store(&data), stack, &passwd);
    assert!(e.contains("its etc/passwd is a symbolic link"), "{e}");
    untouched(&v);

    // `etc` and `home` themselves links out: `etc/hosts`, `home/web` would be made there.
    for folder in ["etc", "home"] {
        let linked = d.path().join(format!("linked-{folder}"));
        layered_image(&linked, &[layer(&[], &[(folder, out)])]);
        let e = refused(&store(&data), stack, &linked);
        assert!(e.contains(&format!("its {folder} is not a folder")), "{e}");
        untouched(&v);
    }
}
