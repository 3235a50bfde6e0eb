//! Unpacking stack layers: a good layer unpacks once, with owners, modes and symlinks;
//! a layer whose entry climbs out, or whose bytes were changed, is refused and leaves no
//! folder under its final name.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use slipway_slug::{Archive, SlugInfo};
use slipway_stack::unpack_layer;

fn entry(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, mode: u32, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(10000);
    h.set_gid(10000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn layer(archive: &Archive, build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> SlugInfo {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let tar = b.into_inner().unwrap();
    archive.put_layer(&tar[..], 3).unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_good_layer_unpacks_once_with_owners_and_modes() {
    let d = tempfile::tempdir().unwrap();
    let archive = Archive::open(&d.path().join("archive")).unwrap();
    let good = layer(&archive, |b| {
        entry(b, b"./usr/", tar::EntryType::Directory, 0o755, b"");
        entry(b, b"./usr/bin/", tar::EntryType::Directory, 0o755, b"");
        entry(
            b,
            b"./usr/bin/tool",
            tar::EntryType::Regular,
            0o4755,
            b"#!/bin/sh\n",
        );
        entry(b, b"./dev/null", tar::EntryType::Char, 0o666, b"");
    });
    let stacks = d.path().join("stacks");
    let root = unpack_layer(&archive, &good, &stacks).unwrap();
    assert_eq!(root, stacks.join(good.digest.hex()));
    let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!((tool.uid(), tool.gid()), (10000, 10000));
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert!(!root.join("dev/null").exists(), "device nodes are skipped");
    // Once: a second call finds it.
    std::fs::write(root.join("marker"), "").unwrap();
    assert!(unpack_layer(&archive, &good, &stacks)
        .unwrap()
        .join("marker")
        .exists());
}

#[test]
fn a_layer_climbing_out_or_changed_is_refused_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let archive = Archive::open(&d.path().join("archive")).unwrap();
    let stacks = d.path().join("stacks");
    let evil = layer(&archive, |b| {
        entry(b, b"./etc/", tar::EntryType::Directory, 0o755, b"");
        entry(
            b,
            b"../../escaped",
            tar::EntryType::Regular,
            0o644,
            b"owned\n",
        );
    });
    let e = unpack_layer(&archive, &evil, &stacks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("leaves the root file system"), "{e}");
    assert!(!d.path().join("escaped").exists() && !Path::new("/escaped").exists());
    assert_eq!(leftovers(&stacks), Vec::<String>::new());

    let good = layer(&archive, |b| {
        entry(b, b"./usr/", tar::EntryType::Directory, 0o755, b"");
    });
    let blob = archive.blob_path(&good.digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let e = unpack_layer(&archive, &good, &stacks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the blob's digest is sha256:"), "{e}");
    assert_eq!(leftovers(&stacks), Vec::<String>::new());
}
