//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// A 120-byte path: longer than the 100 bytes a plain tar header holds.
pub fn long_rel() -> PathBuf {
    PathBuf::from(format!("deep/{}/{}.txt", "d".repeat(60), "f".repeat(50)))
}

/// A small app tree with every kind of entry a slug holds.
pub fn make_app(root: &Path) {
    fs::create_dir_all(root.join("lib/pkg")).unwrap();
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    fs::write(root.join("server.py"), b"print('hello')\n").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\nexec python3 server.py\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("lib/pkg/mod.py"), b"X = 1\n").unwrap();
    fs::write(root.join("lib/zero"), b"").unwrap();
    symlink("lib/pkg/mod.py", root.join("link-to-mod")).unwrap();
    symlink("/tmp/cache", root.join("cache")).unwrap();
    symlink("../server.py", root.join("lib/up")).unwrap();
    let long = root.join(long_rel());
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, b"long name\n").unwrap();
}

/// The same tree built differently: reverse creation order, other mtimes, owner and
/// non-exec permissions that differ only in ways a slug normalizes away.
pub fn make_app_differently(root: &Path) {
    let long = root.join(long_rel());
    fs::create_dir_all(long.parent().unwrap()).unwrap();
    fs::write(&long, b"long name\n").unwrap();
    symlink("../server.py", {
        fs::create_dir_all(root.join("lib/pkg")).unwrap();
        root.join("lib/up")
    })
    .unwrap();
    symlink("/tmp/cache", root.join("cache")).unwrap();
    symlink("lib/pkg/mod.py", root.join("link-to-mod")).unwrap();
    fs::write(root.join("lib/zero"), b"").unwrap();
    fs::write(root.join("lib/pkg/mod.py"), b"X = 1\n").unwrap();
    fs::write(root.join("run.sh"), b"#!/bin/sh\nexec python3 server.py\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(root.join("server.py"), b"print('hello')\n").unwrap();
    fs::set_permissions(root.join("server.py"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    fs::set_permissions(root.join("lib"), fs::Permissions::from_mode(0o700)).unwrap();
    // Different owners and mtimes everywhere.
    for entry in walk(root) {
        let _ = std::os::unix::fs::lchown(&entry, Some(1234), Some(4321));
        if !fs::symlink_metadata(&entry)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            fs::File::open(&entry).unwrap().set_modified(t).unwrap();
        }
    }
}

/// Every path under `root` (not `root` itself), depth first.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}

/// A raw ustar entry header, with any name bytes (the tar crate refuses to write hostile
/// names, so tests build them by hand).
pub fn raw_header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::new(kind));
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_cksum();
    *h.as_bytes()
}

/// One raw tar entry: `(name, type flag, content, link target)`.
pub type RawEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

/// A tar+zstd layer made of raw entries.
pub fn raw_layer(entries: &[RawEntry]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, kind, content, link) in entries {
        tar.extend_from_slice(&raw_header(name, *kind, content.len() as u64, link));
        tar.extend_from_slice(content);
        let pad = (512 - content.len() % 512) % 512;
        tar.extend(std::iter::repeat_n(0u8, pad));
    }
    tar.extend([0u8; 1024]);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.write_all(&tar).unwrap();
    enc.finish().unwrap()
}

/// Flip one bit in the middle of a file.
pub fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(path, bytes).unwrap();
}
