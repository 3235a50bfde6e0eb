//! Packing, unpacking, refusing hostile slugs.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use slipway_slug::{pack_dir, Archive, Digest, SlugError, DEFAULT_LEVEL};

fn pack(dir: &Path) -> (Vec<u8>, slipway_slug::SlugInfo) {
    let mut out = Vec::new();
    let info = pack_dir(dir, &mut out, DEFAULT_LEVEL).unwrap();
    (out, info)
}

#[test]
fn packing_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    make_app(a.path());
    make_app_differently(b.path());

    let (bytes1, info1) = pack(a.path());
    let (bytes2, info2) = pack(a.path());
    let (bytes3, info3) = pack(b.path());
    assert_eq!(bytes1, bytes2);
    assert_eq!(info1, info2);
    assert!(
        bytes1 == bytes3,
        "a copy with other mtimes/owners/order packs differently"
    );
    assert_eq!(info1, info3);
    assert_eq!(info1.size, bytes1.len() as u64);
    assert_eq!(info1.digest, Digest::of_bytes(&bytes1));
    let tar = zstd::decode_all(&bytes1[..]).unwrap();
    assert_eq!(info1.diff_id, Digest::of_bytes(&tar));

    // A content change changes the digest; so does an exec bit.
    fs::write(b.path().join("server.py"), b"print('bye')\n").unwrap();
    assert_ne!(pack(b.path()).1.digest, info1.digest);
    fs::write(b.path().join("server.py"), b"print('hello')\n").unwrap();
    fs::set_permissions(
        b.path().join("server.py"),
        fs::Permissions::from_mode(0o744),
    )
    .unwrap();
    assert_ne!(pack(b.path()).1.digest, info1.digest);
}

#[test]
fn tar_headers_are_normalized() {
    let a = tempfile::tempdir().unwrap();
    make_app_differently(a.path());
    let (bytes, _) = pack(a.path());
    let tar = zstd::decode_all(&bytes[..]).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut paths = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(h.uid().unwrap(), 0, "{p}");
        assert_eq!(h.gid().unwrap(), 0, "{p}");
        assert_eq!(h.mtime().unwrap(), slipway_slug::SLUG_MTIME, "{p}");
        assert_eq!(h.username_bytes().unwrap_or_default(), b"", "{p}");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"", "{p}");
        let want = match h.entry_type() {
            tar::EntryType::Directory => 0o755,
            tar::EntryType::Symlink => 0o777,
            _ if p == "app/run.sh" => 0o755,
            _ => 0o644,
        };
        assert_eq!(h.mode().unwrap(), want, "{p}");
        assert!(p == "app" || p.starts_with("app/"), "{p}");
        paths.push(p);
    }
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    assert_eq!(paths, sorted);
    assert_eq!(paths[0], "app");
    assert!(paths.contains(&"app/empty/nested-empty".to_string()));
    assert!(paths.contains(&format!("app/{}", long_rel().display())));
}

#[test]
fn pack_refuses_what_a_slug_cannot_hold() {
    let a = tempfile::tempdir().unwrap();
    fs::write(a.path().join("ok"), b"x").unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", a.path().join("escape")).unwrap();
    let err = pack_dir(a.path(), Vec::new(), 3).unwrap_err();
    assert!(matches!(err, SlugError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("escape"), "{err}");

    let b = tempfile::tempdir().unwrap();
    let fifo = b.path().join("pipe");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let err = pack_dir(b.path(), Vec::new(), 3).unwrap_err();
    assert!(matches!(err, SlugError::Unsupported { .. }), "{err}");

    let c = tempfile::tempdir().unwrap();
    assert!(matches!(
        pack_dir(c.path(), Vec::new(), 0),
        Err(SlugError::InvalidLevel { .. })
    ));
    assert!(matches!(
        pack_dir(c.path(), Vec::new(), 99),
        Err(SlugError::InvalidLevel { .. })
    ));
    let file = c.path().join("f");
    fs::write(&file, b"").unwrap();
    assert!(pack_dir(&file, Vec::new(), 3).is_err());
    assert!(pack_dir(&c.path().join("missing"), Vec::new(), 3).is_err());
}

#[test]
fn modes_symlinks_and_empty_dirs_survive_a_round_trip() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    make_app(src.path());
    let archive = Archive::open(&store.path().join("archive")).unwrap();
    let info = archive.put_slug_from_dir(src.path(), 3).unwrap();
    let app = archive.unpack_slug(&info.digest, cache.path()).unwrap();
    assert_eq!(app, cache.path().join(info.digest.hex()));

    let mode = |p: &str| fs::symlink_metadata(app.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode(""), 0o755);
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("server.py"), 0o644);
    assert_eq!(mode("lib"), 0o755);
    assert_eq!(
        fs::read(app.join("server.py")).unwrap(),
        b"print('hello')\n"
    );
    assert_eq!(fs::read(app.join("lib/zero")).unwrap(), b"");
    assert_eq!(fs::read(app.join(long_rel())).unwrap(), b"long name\n");
    assert_eq!(
        fs::read_link(app.join("link-to-mod")).unwrap(),
        Path::new("lib/pkg/mod.py")
    );
    assert_eq!(
        fs::read_link(app.join("cache")).unwrap(),
        Path::new("/tmp/cache")
    );
    assert_eq!(
        fs::read_link(app.join("lib/up")).unwrap(),
        Path::new("../server.py")
    );
    assert_eq!(fs::read(app.join("link-to-mod")).unwrap(), b"X = 1\n");
    assert!(app.join("empty/nested-empty").is_dir());
    assert_eq!(
        fs::read_dir(app.join("empty/nested-empty"))
            .unwrap()
            .count(),
        0
    );
    let mtime = fs::metadata(app.join("server.py")).unwrap().mtime();
    assert_eq!(mtime as u64, slipway_slug::SLUG_MTIME);
    assert_eq!(
        fs::metadata(app.join("lib")).unwrap().mtime() as u64,
        slipway_slug::SLUG_MTIME
    );

    // Repacking the unpacked folder gives the very same slug.
    let mut again = Vec::new();
    assert_eq!(pack_dir(&app, &mut again, 3).unwrap(), info);

    // Cached: a second call does not unpack again (a marker survives), and no temp dirs remain.
    fs::write(app.join("marker"), b"").unwrap();
    assert_eq!(
        archive.unpack_slug(&info.digest, cache.path()).unwrap(),
        app
    );
    assert!(app.join("marker").exists());
    assert_eq!(fs::read_dir(cache.path()).unwrap().count(), 1);
}

/// Put a raw layer, try to unpack it, and check nothing was left anywhere.
fn expect_refused(entries: &[RawEntry], what: &str) {
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let archive = Archive::open(store.path()).unwrap();
    let (d, _) = archive.put_blob(&raw_layer(entries)).unwrap();
    let err = archive
        .unpack_slug(&d, &cache.path().join("c"))
        .unwrap_err();
    assert!(matches!(err, SlugError::BadEntry { .. }), "{what}: {err}");
    assert!(
        err.to_string().contains(d.as_str()),
        "{what}: error names the slug: {err}"
    );
    let left: Vec<_> = fs::read_dir(cache.path().join("c")).unwrap().collect();
    assert!(left.is_empty(), "{what}: leftovers {left:?}");
    assert!(
        !Path::new("/tmp/slipway-evil").exists(),
        "{what}: wrote outside"
    );
}

#[test]
fn unpack_refuses_hostile_entries() {
    let dir = b'5';
    let file = b'0';
    expect_refused(
        &[
            (b"app/", dir, b"", b""),
            (b"app/../slipway-evil", file, b"x", b""),
        ],
        "..",
    );
    expect_refused(&[(b"/tmp/slipway-evil", file, b"x", b"")], "absolute");
    expect_refused(
        &[(b"app/", dir, b"", b""), (b"/app/x", file, b"x", b"")],
        "absolute app",
    );
    expect_refused(&[(b"etc/passwd", file, b"x", b"")], "outside app/");
    expect_refused(
        &[(b"app/", dir, b"", b""), (b"app/null", b'3', b"", b"")],
        "char device",
    );
    expect_refused(
        &[(b"app/", dir, b"", b""), (b"app/sda", b'4', b"", b"")],
        "block device",
    );
    expect_refused(
        &[(b"app/", dir, b"", b""), (b"app/p", b'6', b"", b"")],
        "fifo",
    );
    expect_refused(
        &[
            (b"app/", dir, b"", b""),
            (b"app/h", b'1', b"", b"/etc/passwd"),
        ],
        "hard link",
    );
    expect_refused(
        &[
            (b"app/", dir, b"", b""),
            (b"app/l", b'2', b"", b"../../../../tmp"),
        ],
        "escaping symlink",
    );
    expect_refused(
        &[
            (b"app/", dir, b"", b""),
            (b"app/l", b'2', b"", b"/tmp"),
            (b"app/l/slipway-evil", file, b"x", b""),
        ],
        "write through a symlink",
    );
    expect_refused(
        &[
            (b"app/", dir, b"", b""),
            (b"app/x", file, b"1", b""),
            (b"app/x", file, b"2", b""),
        ],
        "duplicate",
    );
}

#[test]
fn a_well_formed_raw_layer_unpacks() {
    // The control for expect_refused: the same helper with a clean layer works.
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let archive = Archive::open(store.path()).unwrap();
    let layer = raw_layer(&[(b"app/", b'5', b"", b""), (b"app/x", b'0', b"hi", b"")]);
    let (d, _) = archive.put_blob(&layer).unwrap();
    let app = archive.unpack_slug(&d, cache.path()).unwrap();
    assert_eq!(fs::read(app.join("x")).unwrap(), b"hi");
}
