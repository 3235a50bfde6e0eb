//! The OCI image layout archive: blobs, releases, verify, gc.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use slipway_slug::{Archive, Digest, ReleaseImage, SlugError, SlugInfo, VerifyProblem};

fn release(tag: &str, slug: &SlugInfo) -> ReleaseImage {
    let mut labels = BTreeMap::new();
    labels.insert("slipway.app".to_string(), "hello".to_string());
    labels.insert("slipway.env".to_string(), "main".to_string());
    ReleaseImage {
        tag: tag.to_string(),
        base: vec![],
        slug: slug.clone(),
        cmd: vec!["python3".into(), "server.py".into()],
        env: vec!["PORT=8000".into()],
        labels,
    }
}

fn app_with(dir: &Path, content: &str) {
    fs::write(dir.join("server.py"), content).unwrap();
}

fn blob_count(a: &Archive) -> usize {
    fs::read_dir(a.root().join("blobs/sha256")).unwrap().count()
}

fn tmp_files(a: &Archive) -> usize {
    fs::read_dir(a.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

#[test]
fn open_creates_a_layout_and_refuses_a_foreign_one() {
    let d = tempfile::tempdir().unwrap();
    let a = Archive::open(&d.path().join("x")).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(a.root().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(a.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    assert!(a.root().join("blobs/sha256").is_dir());
    // Reopening keeps it.
    Archive::open(a.root()).unwrap();

    let bad = d.path().join("bad");
    fs::create_dir(&bad).unwrap();
    fs::write(bad.join("oci-layout"), r#"{"imageLayoutVersion":"9.0.0"}"#).unwrap();
    assert!(matches!(
        Archive::open(&bad),
        Err(SlugError::BadLayout { .. })
    ));
    fs::write(bad.join("oci-layout"), "not json").unwrap();
    assert!(matches!(
        Archive::open(&bad),
        Err(SlugError::BadLayout { .. })
    ));
}

#[test]
fn putting_an_existing_slug_writes_nothing_new() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    make_app(src.path());
    let a = Archive::open(d.path()).unwrap();
    let info = a.put_slug_from_dir(src.path(), 3).unwrap();
    let path = a.root().join("blobs/sha256").join(info.digest.hex());
    let before = fs::metadata(&path).unwrap();
    assert_eq!(before.len(), info.size);
    assert_eq!(before.mode() & 0o777, 0o644);
    let again = a.put_slug_from_dir(src.path(), 3).unwrap();
    assert_eq!(again, info);
    let after = fs::metadata(&path).unwrap();
    assert_eq!(before.ino(), after.ino(), "blob was rewritten");
    assert_eq!(blob_count(&a), 1);
    assert_eq!(tmp_files(&a), 0, "temp file left behind");
    assert_eq!(a.read_blob(&info.digest).unwrap().len() as u64, info.size);
}

#[test]
fn releases_go_into_index_json() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    app_with(src.path(), "v1");
    let a = Archive::open(d.path()).unwrap();
    let s1 = a.put_slug_from_dir(src.path(), 3).unwrap();
    app_with(src.path(), "v2");
    let s2 = a.put_slug_from_dir(src.path(), 3).unwrap();

    let m1 = a.put_release(&release("demo.main.r1.hello", &s1)).unwrap();
    let m2 = a.put_release(&release("demo.main.r2.hello", &s2)).unwrap();
    // Same release again: same manifest digest (no timestamps inside).
    assert_eq!(
        a.put_release(&release("demo.main.r1.hello", &s1)).unwrap(),
        m1
    );

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(a.root().join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "demo.main.r1.hello"
    );
    assert_eq!(
        manifests[0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifests[0]["digest"], m1.as_str());

    // The manifest and config say what the spec wants.
    let manifest: serde_json::Value = serde_json::from_slice(&a.read_blob(&m2).unwrap()).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        slipway_slug::SLUG_MEDIA_TYPE
    );
    assert_eq!(manifest["layers"][0]["digest"], s2.digest.as_str());
    assert_eq!(manifest["layers"][0]["size"], s2.size);
    let config_digest = Digest::parse(manifest["config"]["digest"].as_str().unwrap()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&a.read_blob(&config_digest).unwrap()).unwrap();
    assert_eq!(config["os"], "linux");
    assert!(config["architecture"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["python3", "server.py"])
    );
    assert_eq!(config["config"]["Env"], serde_json::json!(["PORT=8000"]));
    assert_eq!(config["config"]["Labels"]["slipway.app"], "hello");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([s2.diff_id.as_str()])
    );

    // Replace a tag with another slug.
    let m1b = a.put_release(&release("demo.main.r1.hello", &s2)).unwrap();
    assert_ne!(m1b, m1);
    let list = a.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].tag, "demo.main.r1.hello");
    assert_eq!(list[0].manifest, m1b);
    assert_eq!(list[1].manifest, m2);

    // Read back.
    let back = a.get_release("demo.main.r2.hello").unwrap();
    assert_eq!(back, release("demo.main.r2.hello", &s2));
    assert!(matches!(
        a.get_release("nope"),
        Err(SlugError::UnknownTag(_))
    ));

    // Bad inputs.
    assert!(matches!(
        a.put_release(&release("bad/tag", &s1)),
        Err(SlugError::InvalidTag { .. })
    ));
    assert!(matches!(
        a.put_release(&release("", &s1)),
        Err(SlugError::InvalidTag { .. })
    ));
    let ghost = SlugInfo {
        digest: Digest::of_bytes(b"ghost"),
        size: 5,
        diff_id: s1.diff_id.clone(),
    };
    assert!(matches!(
        a.put_release(&release("ghost", &ghost)),
        Err(SlugError::MissingBlob(_))
    ));
    let wrong_size = SlugInfo {
        size: s1.size + 1,
        ..s1.clone()
    };
    assert!(a.put_release(&release("wrong", &wrong_size)).is_err());
    assert_eq!(a.list().unwrap().len(), 2);
}

#[test]
fn concurrent_releases_keep_every_tag() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    app_with(src.path(), "x");
    let a = Archive::open(d.path()).unwrap();
    let s = a.put_slug_from_dir(src.path(), 3).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let s = s.clone();
            let root = a.root().to_path_buf();
            scope.spawn(move || {
                let a = Archive::open(&root).unwrap();
                for r in 0..5 {
                    a.put_release(&release(&format!("t{t}.r{r}"), &s)).unwrap();
                }
            });
        }
    });
    assert_eq!(a.list().unwrap().len(), 40);
}

#[test]
fn a_flipped_byte_is_caught_everywhere() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    make_app(src.path());
    let a = Archive::open(d.path()).unwrap();
    let s = a.put_slug_from_dir(src.path(), 3).unwrap();
    let m = a.put_release(&release("demo.main.r1.hello", &s)).unwrap();
    assert_eq!(a.verify().unwrap(), vec![]);

    flip_byte(&a.root().join("blobs/sha256").join(s.digest.hex()));
    match a.read_blob(&s.digest) {
        Err(SlugError::DigestMismatch { digest, actual }) => {
            assert_eq!(digest, s.digest);
            assert_ne!(actual, s.digest);
        }
        other => panic!("read_blob: {other:?}"),
    }
    let err = a.unpack_slug(&s.digest, cache.path()).unwrap_err();
    assert!(
        matches!(&err, SlugError::DigestMismatch { digest, .. } if *digest == s.digest),
        "{err}"
    );
    assert!(err.to_string().contains(s.digest.as_str()));
    assert_eq!(
        fs::read_dir(cache.path()).unwrap().count(),
        0,
        "unpack left something"
    );
    let problems = a.verify().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(matches!(&problems[0], VerifyProblem::Corrupt { digest, .. } if *digest == s.digest));

    // A missing manifest is reported too, naming the tag.
    fs::remove_file(a.root().join("blobs/sha256").join(m.hex())).unwrap();
    let problems = a.verify().unwrap();
    assert!(problems.iter().any(|p| matches!(p,
        VerifyProblem::Missing { digest, referenced_by } if *digest == m && referenced_by.contains("demo.main.r1.hello"))),
        "{problems:?}");
    // A missing layer referenced by a manifest.
    let s2 = {
        app_with(src.path(), "other");
        a.put_slug_from_dir(src.path(), 3).unwrap()
    };
    let m2 = a.put_release(&release("demo.main.r2.hello", &s2)).unwrap();
    fs::remove_file(a.root().join("blobs/sha256").join(s2.digest.hex())).unwrap();
    let problems = a.verify().unwrap();
    assert!(problems.iter().any(|p| matches!(p,
        VerifyProblem::Missing { digest, referenced_by } if *digest == s2.digest && referenced_by.contains(m2.as_str()))),
        "{problems:?}");
    assert!(matches!(
        a.unpack_slug(&s2.digest, cache.path()),
        Err(SlugError::MissingBlob(_))
    ));
}

#[test]
fn gc_drops_unkept_tags_and_unreferenced_blobs() {
    let d = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let a = Archive::open(d.path()).unwrap();
    let mut slugs = Vec::new();
    for v in ["one", "two", "orphan", "shared"] {
        app_with(src.path(), v);
        slugs.push(a.put_slug_from_dir(src.path(), 3).unwrap());
    }
    let keep1 = a.put_release(&release("keep.r1", &slugs[0])).unwrap();
    let drop2 = a.put_release(&release("drop.r2", &slugs[1])).unwrap();
    let keep3 = a.put_release(&release("keep.r3", &slugs[3])).unwrap();
    let drop4 = a.put_release(&release("drop.r4", &slugs[3])).unwrap();
    let before = blob_count(&a);
    let freed_expected: u64 = [&slugs[1].digest, &slugs[2].digest, &drop2]
        .iter()
        .map(|d| {
            fs::metadata(a.root().join("blobs/sha256").join(d.hex()))
                .unwrap()
                .len()
        })
        .sum();

    let report = a.gc(&|tag| tag.starts_with("keep.")).unwrap();
    let mut removed = report.tags_removed.clone();
    removed.sort();
    assert_eq!(removed, vec!["drop.r2", "drop.r4"]);
    let tags: Vec<_> = a.list().unwrap().into_iter().map(|e| e.tag).collect();
    assert_eq!(tags, vec!["keep.r1", "keep.r3"]);
    // Gone: slug two + its manifest + its config, the orphan slug, drop.r4's manifest
    // (drop.r4 and keep.r3 differ only by tag, so they share the config and the slug).
    assert!(!a.has_blob(&slugs[1].digest));
    assert!(!a.has_blob(&slugs[2].digest));
    assert!(!a.has_blob(&drop2));
    assert_eq!(drop4, keep3, "same image, two tags: one manifest");
    assert!(a.has_blob(&slugs[0].digest) && a.has_blob(&slugs[3].digest));
    assert!(a.has_blob(&keep1) && a.has_blob(&keep3));
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert_eq!(blob_count(&a), before - 4);
    assert!(report.bytes_freed > freed_expected);
    assert_eq!(a.verify().unwrap(), vec![]);
    assert_eq!(a.get_release("keep.r1").unwrap().slug, slugs[0]);

    // Nothing more to do the second time.
    let again = a.gc(&|tag| tag.starts_with("keep.")).unwrap();
    assert_eq!((again.blobs_removed, again.tags_removed.len()), (0, 0));

    // A corrupt kept manifest makes gc refuse rather than guess.
    flip_byte(&a.root().join("blobs/sha256").join(keep1.hex()));
    assert!(matches!(
        a.gc(&|_| true),
        Err(SlugError::DigestMismatch { .. })
    ));
    assert!(a.has_blob(&slugs[0].digest));
}
