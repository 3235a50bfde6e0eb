//! Size limit, cancellation, and gc's grace for blobs being written.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use slipway_slug::{pack_dir, pack_dir_with, Archive, PackOptions, ReleaseImage, SlugError};

/// `n` bytes that zstd cannot shrink (xorshift).
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// An app with a 3 MB random file deep in `vendor/`, a 1 MB random file at the root,
/// and small text.
fn big_app(root: &Path) {
    fs::create_dir_all(root.join("vendor/lib")).unwrap();
    fs::write(root.join("vendor/lib/blob.bin"), random_bytes(3_000_000, 1)).unwrap();
    fs::write(root.join("data.bin"), random_bytes(1_000_000, 2)).unwrap();
    fs::write(root.join("app.py"), "print('hi')\n".repeat(100)).unwrap();
}

fn archive_is_clean(a: &Archive) {
    let blobs = fs::read_dir(a.root().join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "a refused slug left a blob");
    let leftovers: Vec<_> = fs::read_dir(a.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn a_slug_over_the_limit_says_how_big_and_what_is_biggest() {
    let src = tempfile::tempdir().unwrap();
    big_app(src.path());
    let mut exact = Vec::new();
    let info = pack_dir(src.path(), &mut exact, 3).unwrap();
    assert!(
        info.size > 4_000_000,
        "random data does not compress: {}",
        info.size
    );

    let d = tempfile::tempdir().unwrap();
    let a = Archive::open(d.path()).unwrap();
    let opts = PackOptions {
        max_size: Some(1_000_000),
        ..PackOptions::level(3)
    };
    let err = a.put_slug(src.path(), &opts).unwrap_err();
    match &err {
        SlugError::TooBig {
            size,
            limit,
            biggest,
            biggest_files,
            ..
        } => {
            assert_eq!(*size, info.size, "the exact compressed size");
            assert_eq!(*limit, 1_000_000);
            assert_eq!(biggest[0], ("vendor/".to_string(), 3_000_000));
            assert_eq!(biggest[1], ("data.bin".to_string(), 1_000_000));
            assert_eq!(
                biggest_files[0],
                ("vendor/lib/blob.bin".to_string(), 3_000_000)
            );
        }
        other => panic!("expected TooBig, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("over the limit of 976.6 KiB"), "{msg}");
    assert!(msg.contains("vendor/ (2.9 MiB)"), "{msg}");
    assert!(msg.contains("vendor/lib/blob.bin (2.9 MiB)"), "{msg}");
    archive_is_clean(&a);

    // Exactly at the limit is fine; the bytes are those of an unlimited pack.
    let opts = PackOptions {
        max_size: Some(info.size),
        ..PackOptions::level(3)
    };
    let mut out = Vec::new();
    assert_eq!(pack_dir_with(src.path(), &mut out, &opts).unwrap(), info);
    assert!(out == exact);
}

#[test]
fn a_cancelled_pack_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    big_app(src.path());
    let d = tempfile::tempdir().unwrap();
    let a = Archive::open(d.path()).unwrap();
    let cancel = Arc::new(AtomicBool::new(true));
    let opts = PackOptions {
        cancel: Some(cancel),
        ..PackOptions::level(3)
    };
    assert!(matches!(
        a.put_slug(src.path(), &opts),
        Err(SlugError::Cancelled)
    ));
    archive_is_clean(&a);
}

/// A writer that fails after `left` bytes, like a full disk.
struct FullDisk {
    left: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("No space left on device"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_write_failure_is_reported_as_such() {
    let src = tempfile::tempdir().unwrap();
    big_app(src.path());
    let err = pack_dir(src.path(), FullDisk { left: 100_000 }, 3).unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
}

fn set_old(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn gc_with_grace_keeps_young_orphans_but_frees_dropped_releases() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let a = Archive::open(d.path()).unwrap();
    let put = |content: &str| {
        fs::write(src.path().join("app.py"), content).unwrap();
        a.put_slug_from_dir(src.path(), 3).unwrap()
    };
    let kept = put("kept");
    let dropped = put("dropped");
    let young_orphan = put("being deployed");
    let old_orphan = put("left by a crash");
    set_old(&a.blob_path(&old_orphan.digest));
    let release = |tag: &str, slug: &slipway_slug::SlugInfo| ReleaseImage {
        tag: tag.into(),
        base: vec![],
        slug: slug.clone(),
        cmd: vec!["true".into()],
        env: vec![],
        labels: BTreeMap::new(),
    };
    a.put_release(&release("p.e.r1.app", &kept)).unwrap();
    a.put_release(&release("p.e.r2.app", &dropped)).unwrap();

    let report = a
        .gc_with(&|t| t == "p.e.r1.app", Duration::from_secs(3600))
        .unwrap();
    assert_eq!(report.tags_removed, vec!["p.e.r2.app"]);
    assert!(a.has_blob(&kept.digest));
    assert!(
        !a.has_blob(&dropped.digest),
        "a dropped release's slug goes at once"
    );
    assert!(
        a.has_blob(&young_orphan.digest),
        "a slug being deployed stays"
    );
    assert!(!a.has_blob(&old_orphan.digest), "an old orphan goes");
    assert_eq!(report.young_blobs_kept, 1, "{report:?}");
    assert_eq!(a.verify().unwrap(), vec![]);
}
