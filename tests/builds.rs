//! Builds and the slug archive, end to end: only changed apps build, in parallel,
//! with a persistent cache; promotion to another environment reuses the slug; a
//! push that changes no app adds no blob; timeouts and oversized slugs leave
//! nothing behind; `slipway archive ls|verify|gc` and skopeo on real releases.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use slipway_e2e::{text, App, Server, DEMO_SERVER};

fn push(server: &Server, app: &App, refspec: &str) -> (bool, String) {
    let o = server.git(&app.dir, &["push", &server.remote("demo"), refspec]);
    (o.status.success(), text(&o))
}

fn body(server: &Server, host: &str) -> String {
    match server.get(host, "/") {
        Some((200, b)) => b,
        other => panic!("GET http://{host}/ gave {other:?}\n{}", server.server_log()),
    }
}

/// Every file of the archive except index.json, with its size.
fn archive_files(server: &Server) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).expect("archive folder").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                if rel != "index.json" {
                    out.insert(rel, m.len());
                }
            }
        }
    }
    let root = server.data.join("archive");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// `slipway archive ls`: the tags.
fn tags(server: &Server) -> Vec<String> {
    let o = server.slipway(&["archive", "ls"]);
    assert!(o.status.success(), "archive ls: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect()
}

/// A project with two apps, `web` (routed) and `api`, each in its own folder. Each build
/// prints `start` and `end` two seconds apart, and counts its runs in the build cache.
fn two_apps(parent: &Path) -> App {
    let dir = parent.join("two");
    std::fs::create_dir_all(&dir).expect("app dir");
    let app = App { dir };
    let build = "|\n        set -e\n        echo start\n        sleep 2\n        n=$(cat \"$PLATFORM_CACHE_DIR/runs\" 2>/dev/null || echo 0)\n        n=$((n+1))\n        echo $n > \"$PLATFORM_CACHE_DIR/runs\"\n        echo \"cache runs $n\"\n        echo \"$PLATFORM_APPLICATION_NAME-$(cat VERSION)\" > build.txt\n        echo end\n";
    app.write(
        ".upsun/config.yaml",
        &format!(
            "applications:\n  web:\n    type: python:3.11\n    source: {{root: web}}\n    hooks:\n      build: {build}    web: {{commands: {{start: python3 server.py}}}}\n  api:\n    type: python:3.11\n    source: {{root: api}}\n    hooks:\n      build: {build}    web: {{commands: {{start: python3 server.py}}}}\nroutes:\n  'http://{{default}}/': {{type: upstream, upstream: 'web:http'}}\n"
        ),
    );
    for a in ["web", "api"] {
        app.write(&format!("{a}/server.py"), DEMO_SERVER);
        app.write(&format!("{a}/VERSION"), "1\n");
    }
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("v1");
    app
}

/// Index of the first line containing `needle`.
fn line_of(out: &str, needle: &str) -> usize {
    out.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

#[test]
fn only_changed_apps_build_in_parallel_and_an_unchanged_push_adds_no_blob() {
    let server = Server::start();
    let app = two_apps(server.dir.path());

    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "first push failed:\n{out}\n{}", server.server_log());
    assert!(out.contains("build: building ") && out.contains(" in parallel (at most "), "{out}");
    assert!(out.contains("build web: built sha256:"), "{out}");
    assert!(out.contains("build api: built sha256:"), "{out}");
    // Both builds stream at once, each line prefixed with its app: both start before either ends.
    let starts = [line_of(&out, "web | start"), line_of(&out, "api | start")];
    let ends = [line_of(&out, "web | end"), line_of(&out, "api | end")];
    assert!(starts.iter().max() < ends.iter().min(), "builds did not overlap:\n{out}");
    assert!(out.contains("web | cache runs 1") && out.contains("api | cache runs 1"), "{out}");
    assert_eq!(body(&server, "main.demo.localhost"), "web-1\n");

    // Only api changes: only api builds; its build cache survived the previous build.
    app.write("api/VERSION", "2\n");
    app.commit("api v2");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(out.contains("build web: reused sha256:"), "{out}");
    assert!(out.contains("build api: built sha256:"), "{out}");
    assert!(!out.contains("web | "), "web built although it did not change:\n{out}");
    assert!(out.contains("api | cache runs 2"), "the build cache was not kept:\n{out}");
    assert!(!out.contains("in parallel"), "{out}");
    assert_eq!(body(&server, "main.demo.localhost"), "web-1\n");

    // A push that changes no app: nothing builds and no byte is added to the archive's
    // blobs; index.json only gains the new release's tags.
    let files_before = archive_files(&server);
    let tags_before = tags(&server);
    app.git_ok(&["-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "nothing"]);
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(out.contains("build web: reused sha256:") && out.contains("build api: reused sha256:"), "{out}");
    assert!(!out.contains("running hooks.build"), "{out}");
    assert_eq!(archive_files(&server), files_before, "the archive's blobs changed");
    let mut expected = tags_before.clone();
    expected.extend(["demo.main.r3.api".to_string(), "demo.main.r3.web".to_string()]);
    expected.sort();
    assert_eq!(tags(&server), expected);
    assert_eq!(body(&server, "main.demo.localhost"), "web-1\n");
}

#[test]
fn promotion_reuses_the_slug_and_tools_read_the_archive() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("build hello: built sha256:"), "{out}");

    // The same tree to another environment: no build, the same slug.
    let (ok, out) = push(&server, &app, "main:staging");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("build hello: reused sha256:"), "{out}");
    assert!(!out.contains("running hooks.build"), "{out}");
    assert_eq!(body(&server, "staging.demo.localhost"), "built-1\n");
    assert_eq!(tags(&server), vec!["demo.main.r1.hello", "demo.staging.r1.hello"]);

    // skopeo reads a release made by a real push: labels, command, one zstd layer.
    let archive = server.data.join("archive");
    let reference = format!("oci:{}:demo.staging.r1.hello", archive.display());
    let o = slipway_e2e::run(Command::new("skopeo").args(["inspect", "--config", &reference]));
    assert!(o.status.success(), "skopeo inspect --config: {}", text(&o));
    let config = String::from_utf8_lossy(&o.stdout).to_string();
    for needle in [
        "\"dev.slipway.project\": \"demo\"",
        "\"dev.slipway.environment\": \"staging\"",
        "\"dev.slipway.app\": \"hello\"",
        "\"dev.slipway.tree-id\"",
        "\"dev.slipway.build-key\": \"sha256:",
        "python3 server.py",
        "PLATFORM_BRANCH=staging",
    ] {
        assert!(config.contains(needle), "image config lacks {needle}:\n{config}");
    }
    let o = slipway_e2e::run(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert!(o.status.success(), "skopeo inspect --raw: {}", text(&o));
    let manifest = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(manifest.contains("application/vnd.oci.image.layer.v1.tar+zstd"), "{manifest}");

    // umoci unpacks it into the very files the runtime runs (the built app). Debian's umoci
    // 0.4.7 cannot read zstd layers (support came in umoci 0.5.0): then the same image goes
    // through `skopeo copy --dest-compress-format gzip` first (the tar inside is unchanged).
    let slug_hex = out
        .split("reused sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .expect("slug digest in the push output")
        .to_string();
    let bundle = server.dir.path().join("bundle");
    let image = format!("{}:demo.staging.r1.hello", archive.display());
    let o = slipway_e2e::run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
    if !o.status.success() {
        assert!(text(&o).contains("tar+zstd"), "umoci unpack: {}", text(&o));
        let gz = server.dir.path().join("gz");
        let o = slipway_e2e::run(
            Command::new("skopeo")
                .args(["copy", "--dest-compress-format", "gzip", &reference])
                .arg(format!("oci:{}:r", gz.display())),
        );
        assert!(o.status.success(), "skopeo copy: {}", text(&o));
        let o = slipway_e2e::run(
            Command::new("umoci")
                .args(["unpack", "--image", &format!("{}:r", gz.display())])
                .arg(&bundle),
        );
        assert!(o.status.success(), "umoci unpack: {}", text(&o));
    }
    let built = server.data.join("slugs").join(&slug_hex);
    assert!(built.join("build.txt").is_file(), "the unpacked slug lacks the build output");
    let o = slipway_e2e::run(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(bundle.join("rootfs/app"))
            .arg(&built),
    );
    assert!(o.status.success(), "umoci's files differ from the built app: {}", text(&o));

    // verify: all good, then a single flipped byte in the slug is found.
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let slug = slug_hex;
    let blob = archive.join("blobs/sha256").join(&slug);
    let mut bytes = std::fs::read(&blob).expect("slug blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("flip");
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("blob sha256:{slug} is corrupt")), "{}", text(&o));
    bytes[mid] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("flip back");
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn gc_keeps_the_newest_releases_and_what_runs() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let mut slugs = Vec::new();
    for v in 1..=3 {
        if v > 1 {
            app.write("VERSION", &format!("{v}\n"));
            app.commit(&format!("v{v}"));
        }
        let (ok, out) = push(&server, &app, "main");
        assert!(ok, "push {v}: {out}");
        let slug = out
            .split("built sha256:")
            .nth(1)
            .and_then(|s| s.get(..64))
            .expect("slug digest")
            .to_string();
        slugs.push(slug);
    }
    assert_eq!(body(&server, "main.demo.localhost"), "built-3\n");
    let blobs = server.data.join("archive/blobs/sha256");
    assert!(slugs.iter().all(|s| blobs.join(s).is_file()));
    assert!(server.data.join("slugs").join(&slugs[0]).is_dir(), "r1's slug was unpacked");

    // Wait until the retired releases' containers are gone (they drain in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.containers().len() > 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", server.containers());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Bad usage is refused.
    let o = server.slipway(&["archive", "gc", "--keep", "many"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = server.slipway(&["archive", "gc", "--keep", "1"]);
    assert!(o.status.success(), "gc: {}", text(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("dropped demo.main.r1.hello"), "{report}");
    assert!(report.contains("freed"), "{report}");
    let t = tags(&server);
    assert!(t.contains(&"demo.main.r3.hello".to_string()), "the live release was dropped: {t:?}");
    assert!(!t.contains(&"demo.main.r1.hello".to_string()), "{t:?}");
    assert!(!blobs.join(&slugs[0]).exists(), "r1's slug is still there");
    assert!(blobs.join(&slugs[2]).is_file(), "the live slug is gone");
    assert!(!server.data.join("slugs").join(&slugs[0]).exists(), "r1's unpacked slug is still there");
    assert!(server.data.join("slugs").join(&slugs[2]).is_dir(), "the live unpacked slug is gone");
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(body(&server, "main.demo.localhost"), "built-3\n");

    // An old tree pushed again builds again (its slug is gone), and deploys.
    app.write("VERSION", "1\n");
    app.commit("back to v1");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(out.contains(&format!("build hello: built sha256:{}", slugs[0])), "{out}");
    assert_eq!(body(&server, "main.demo.localhost"), "built-1\n");
}

/// Entries of a folder (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_timed_out_or_oversized_build_leaves_nothing_behind() {
    let server = Server::start_with(&[("SLIPWAY_BUILD_TIMEOUT", "3"), ("SLIPWAY_SLUG_MAX_SIZE", "64K")]);
    let app = App::demo(server.dir.path(), "app");

    // A build that hangs is killed at the timeout.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    echo half > half-written.txt\n    echo started\n    sleep 60\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("hangs");
    let started = std::time::Instant::now();
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(40), "the timeout did not kill the build");
    assert!(out.contains("hello | started"), "{out}");
    assert!(
        out.contains("build failed: hooks.build of hello did not finish within the build timeout (3.00s)"),
        "{out}"
    );
    assert!(out.contains("! [remote rejected] main -> main"), "{out}");
    let nothing = |what: &str| {
        let blobs = entries(&server.data.join("archive/blobs/sha256"));
        assert!(blobs.is_empty(), "{what}: blobs left: {blobs:?}");
        let dots: Vec<_> = entries(&server.data.join("archive")).into_iter().filter(|n| n.starts_with('.')).collect();
        assert!(dots.is_empty(), "{what}: temp files left: {dots:?}");
        let builds = entries(&server.data.join("builds"));
        assert!(builds.is_empty(), "{what}: build folders left: {builds:?}");
        assert!(tags(&server).is_empty(), "{what}: tags");
        assert!(server.containers().is_empty(), "{what}: containers left: {:?}", server.containers());
    };
    nothing("after the timeout");

    // A slug over the limit: the message says how big it is and what is biggest in it.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    mkdir -p assets\n    head -c 300000 /dev/urandom > assets/video.bin\n    head -c 100000 /dev/urandom > small.bin\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("too big");
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(out.contains("over the limit of 64.0 KiB"), "{out}");
    assert!(out.contains("biggest in it: assets/ (293.0 KiB), small.bin (97.7 KiB)"), "{out}");
    assert!(out.contains("assets/video.bin (293.0 KiB)"), "{out}");
    assert!(out.contains("! [remote rejected] main -> main (build failed:"), "{out}");
    nothing("after the oversized slug");

    // A bad setting is refused at start.
    let o = slipway_e2e::run(
        Command::new(slipway_e2e::slipway_bin())
            .args(["serve", "--slug-max-size", "lots", "--data-dir"])
            .arg(server.dir.path().join("other")),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
