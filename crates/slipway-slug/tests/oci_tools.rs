//! The archive is a real OCI image layout: skopeo and umoci read it.
//!
//! Skipped (with a printed reason) only when a tool is missing and CI is not "true".

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;
use slipway_slug::{Archive, ReleaseImage};

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is required in CI"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install -y skopeo umoci)");
    }
    found
}

fn archive_with_release(dir: &Path) -> Archive {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    make_app(&src);
    // Bigger than a zstd frame of the layer (1 MiB of tar): the tools must read them all.
    fs::write(src.join("big.txt"), big_content()).unwrap();
    let a = Archive::open(&dir.join("archive")).unwrap();
    let slug = a.put_slug_from_dir(&src, 3).unwrap();
    let mut labels = BTreeMap::new();
    labels.insert("slipway.app".to_string(), "hello".to_string());
    a.put_release(&ReleaseImage {
        tag: "demo.main.r3.hello".into(),
        base: vec![],
        slug,
        cmd: vec!["python3".into(), "server.py".into()],
        env: vec!["PORT=8000".into()],
        labels,
    })
    .unwrap();
    a
}

/// The runtime's own unpacking reads every frame of the layer too.
#[test]
fn unpack_slug_reads_a_layer_of_several_frames() {
    let d = tempfile::tempdir().unwrap();
    let a = archive_with_release(d.path());
    let release = a.get_release("demo.main.r3.hello").unwrap();
    let cache = d.path().join("slugs");
    fs::create_dir(&cache).unwrap();
    let app = a.unpack_slug(&release.slug.digest, &cache).unwrap();
    assert!(
        fs::read(app.join("big.txt")).unwrap() == big_content(),
        "big.txt differs"
    );
    assert_eq!(
        fs::read(app.join("server.py")).unwrap(),
        b"print('hello')\n"
    );
}

#[test]
fn skopeo_inspects_a_release() {
    if !tool("skopeo") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = archive_with_release(d.path());
    let r = format!("oci:{}:demo.main.r3.hello", a.root().display());
    let out = Command::new("skopeo")
        .args(["inspect", &r])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Labels"]["slipway.app"], "hello");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let cfg = Command::new("skopeo")
        .args(["inspect", "--config", &r])
        .output()
        .unwrap();
    assert!(
        cfg.status.success(),
        "{}",
        String::from_utf8_lossy(&cfg.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    assert_eq!(c["config"]["WorkingDir"], "/app");

    // skopeo also reads every blob through (decompressing the zstd layer) when copying.
    let dest = d.path().join("copy");
    let out = Command::new("skopeo")
        .args(["copy", &r, &format!("dir:{}", dest.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let missing = format!("oci:{}:no.such.tag", a.root().display());
    assert!(!Command::new("skopeo")
        .args(["inspect", &missing])
        .output()
        .unwrap()
        .status
        .success());
}

/// The error umoci < 0.5 gives for any zstd layer (zstd support landed in umoci 0.5.0).
const UMOCI_NO_ZSTD: &str =
    "blob is not correct mediatype: application/vnd.oci.image.layer.v1.tar+zstd";

/// ~3.5 MiB of text that compresses but does not repeat exactly.
fn big_content() -> Vec<u8> {
    let mut data = Vec::with_capacity(3_700_000);
    let mut n: u64 = 1;
    while data.len() < 3_600_000 {
        n = n
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        data.extend_from_slice(
            format!("line {} of the big file: {:x}\n", data.len(), n >> 40).as_bytes(),
        );
    }
    data
}

fn check_bundle(bundle: &Path) {
    let app = bundle.join("rootfs/app");
    assert!(
        fs::read(app.join("big.txt")).unwrap() == big_content(),
        "big.txt differs"
    );
    assert_eq!(
        fs::read(app.join("server.py")).unwrap(),
        b"print('hello')\n"
    );
    assert_eq!(
        fs::metadata(app.join("run.sh")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::metadata(app.join("server.py")).unwrap().mode() & 0o777,
        0o644
    );
    assert_eq!(
        fs::read_link(app.join("cache")).unwrap(),
        Path::new("/tmp/cache")
    );
    assert_eq!(
        fs::read_link(app.join("lib/up")).unwrap(),
        Path::new("../server.py")
    );
    assert!(app.join("empty/nested-empty").is_dir());
    assert_eq!(fs::read(app.join(long_rel())).unwrap(), b"long name\n");
    // Nothing but app/ in the layer.
    let top: Vec<_> = fs::read_dir(bundle.join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, vec!["app"]);
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["python3", "server.py"])
    );
    assert!(config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "PORT=8000"));
}

fn umoci(args: &[&str]) -> std::process::Output {
    Command::new("umoci").args(args).output().unwrap()
}

#[test]
fn umoci_reads_the_layout_and_unpacks_a_release() {
    if !tool("umoci") || !tool("skopeo") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = archive_with_release(d.path());
    let root = a.root().display().to_string();
    let image = format!("{root}:demo.main.r3.hello");

    // The layout, index.json, manifest and config are umoci-readable whatever its version.
    let ls = umoci(&["ls", "--layout", &root]);
    assert!(
        ls.status.success(),
        "umoci ls: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).trim(),
        "demo.main.r3.hello"
    );
    let stat = umoci(&["stat", "--json", "--image", &image]);
    assert!(
        stat.status.success(),
        "umoci stat: {}",
        String::from_utf8_lossy(&stat.stderr)
    );

    let bundle = d.path().join("bundle");
    let out = umoci(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
    if out.status.success() {
        check_bundle(&bundle);
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(UMOCI_NO_ZSTD),
        "umoci unpack failed for another reason: {err}"
    );
    let version = String::from_utf8_lossy(&umoci(&["--version"]).stdout)
        .trim()
        .to_string();
    eprintln!(
        "NOTE: {version} cannot unpack tar+zstd layers (umoci supports zstd from 0.5.0). \
         Checking the same image through `skopeo copy --dest-compress-format gzip` instead."
    );
    // Same image, layer recompressed by skopeo (the tar inside is unchanged): umoci must
    // then unpack it into rootfs/app/.
    let gz = d.path().join("gz");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-compress-format",
            "gzip",
            &format!("oci:{image}"),
        ])
        .arg(format!("oci:{}:demo.main.r3.hello", gz.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = umoci(&[
        "unpack",
        "--image",
        &format!("{}:demo.main.r3.hello", gz.display()),
        bundle.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "umoci unpack (gzip copy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_bundle(&bundle);
}
