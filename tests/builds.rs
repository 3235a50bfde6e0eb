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

/// `slipway archive ls --json`: the tags.
fn tags(server: &Server) -> Vec<String> {
    let o = server.slipway(&["archive", "ls", "--json"]);
    assert!(o.status.success(), "archive ls: {}", text(&o));
    let listing: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    listing["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["tag"].as_str().map(str::to_string))
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
    assert!(
        out.contains("build: building ") && out.contains(" in parallel (at most "),
        "{out}"
    );
    assert!(out.contains("build web: built sha256:"), "{out}");
    assert!(out.contains("build api: built sha256:"), "{out}");
    // Both builds stream at once, each line prefixed with its app: both start before either ends.
    let starts = [line_of(&out, "web | start"), line_of(&out, "api | start")];
    let ends = [line_of(&out, "web | end"), line_of(&out, "api | end")];
    assert!(
        starts.iter().max() < ends.iter().min(),
        "builds did not overlap:\n{out}"
    );
    assert!(
        out.contains("web | cache runs 1") && out.contains("api | cache runs 1"),
        "{out}"
    );
    assert_eq!(server.page("main.demo.localhost", "/"), "web-1\n");

    // Only api changes: only api builds; its build cache survived the previous build.
    app.write("api/VERSION", "2\n");
    app.commit("api v2");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(out.contains("build web: reused sha256:"), "{out}");
    assert!(out.contains("build api: built sha256:"), "{out}");
    assert!(
        !out.contains("web | "),
        "web built although it did not change:\n{out}"
    );
    assert!(
        out.contains("api | cache runs 2"),
        "the build cache was not kept:\n{out}"
    );
    assert!(!out.contains("in parallel"), "{out}");
    assert_eq!(server.page("main.demo.localhost", "/"), "web-1\n");

    // A push that changes no app: nothing builds and no byte is added to the archive's
    // blobs; index.json only gains the new release's tags.
    let files_before = archive_files(&server);
    let tags_before = tags(&server);
    app.git_ok(&[
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@e",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "nothing",
    ]);
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(
        out.contains("build web: reused sha256:") && out.contains("build api: reused sha256:"),
        "{out}"
    );
    assert!(!out.contains("running hooks.build"), "{out}");
    assert_eq!(
        archive_files(&server),
        files_before,
        "the archive's blobs changed"
    );
    let mut expected = tags_before.clone();
    expected.extend([
        "demo.main.r3.api".to_string(),
        "demo.main.r3.web".to_string(),
    ]);
    expected.sort();
    assert_eq!(tags(&server), expected);
    assert_eq!(server.page("main.demo.localhost", "/"), "web-1\n");
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
    assert_eq!(server.page("staging.demo.localhost", "/"), "built-1\n");
    assert_eq!(
        tags(&server),
        vec!["demo.main.r1.hello", "demo.staging.r1.hello"]
    );

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
        assert!(
            config.contains(needle),
            "image config lacks {needle}:\n{config}"
        );
    }
    let o = slipway_e2e::run(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert!(o.status.success(), "skopeo inspect --raw: {}", text(&o));
    let manifest = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        manifest.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{manifest}"
    );

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
    let o = slipway_e2e::run(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    );
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
    assert!(
        built.join("build.txt").is_file(),
        "the unpacked slug lacks the build output"
    );
    let o = slipway_e2e::run(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(bundle.join("rootfs/app"))
            .arg(&built),
    );
    assert!(
        o.status.success(),
        "umoci's files differ from the built app: {}",
        text(&o)
    );

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
    assert!(
        text(&o).contains(&format!("blob sha256:{slug} is corrupt")),
        "{}",
        text(&o)
    );
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
    assert_eq!(server.page("main.demo.localhost", "/"), "built-3\n");
    let blobs = server.data.join("archive/blobs/sha256");
    assert!(slugs.iter().all(|s| blobs.join(s).is_file()));
    assert!(
        server.data.join("slugs").join(&slugs[0]).is_dir(),
        "r1's slug was unpacked"
    );

    // Wait until the retired releases' containers are gone (they drain in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.containers().len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            server.containers()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Bad usage is refused.
    let o = server.slipway(&["archive", "gc", "--keep", "many"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A gc that cannot ask the runtime what runs refuses, and drops nothing.
    let o = server.slipway(&[
        "archive",
        "gc",
        "--keep",
        "1",
        "--runtime",
        "/nonexistent/runc",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("archive gc refused: it cannot see which containers run"),
        "{}",
        text(&o)
    );
    assert!(
        tags(&server).contains(&"demo.main.r1.hello".to_string()),
        "dropped without seeing what runs"
    );

    // Unpacked stacks of the data dir: one whose layer is gone from the archive (a stack
    // built anew leaves its old folder), one whose layer is there, and a build in progress.
    let stacks = server.data.join("stacks");
    let orphan = stacks.join("ab".repeat(32));
    let in_archive = stacks.join(&slugs[2]);
    let building = stacks.join(".build-x");
    for d in [&orphan, &in_archive, &building] {
        std::fs::create_dir_all(d.join("usr/bin")).unwrap();
        std::fs::write(d.join("usr/bin/tool"), vec![0u8; 4096]).unwrap();
    }

    let o = server.slipway(&["archive", "gc", "--keep", "1"]);
    assert!(o.status.success(), "gc: {}", text(&o));
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("dropped demo.main.r1.hello"), "{report}");
    assert!(
        report.contains("1 unpacked stack folder(s) (4.0 KiB)"),
        "{report}"
    );
    assert!(!orphan.exists(), "the old stack folder is still there");
    assert!(in_archive.is_dir() && building.is_dir(), "{report}");
    assert!(report.contains("freed"), "{report}");
    let t = tags(&server);
    assert!(
        t.contains(&"demo.main.r3.hello".to_string()),
        "the live release was dropped: {t:?}"
    );
    assert!(!t.contains(&"demo.main.r1.hello".to_string()), "{t:?}");
    assert!(!blobs.join(&slugs[0]).exists(), "r1's slug is still there");
    assert!(blobs.join(&slugs[2]).is_file(), "the live slug is gone");
    assert!(
        !server.data.join("slugs").join(&slugs[0]).exists(),
        "r1's unpacked slug is still there"
    );
    assert!(
        server.data.join("slugs").join(&slugs[2]).is_dir(),
        "the live unpacked slug is gone"
    );
    let o = server.slipway(&["archive", "verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(server.page("main.demo.localhost", "/"), "built-3\n");

    // An old tree pushed again builds again (its slug is gone), and deploys.
    app.write("VERSION", "1\n");
    app.commit("back to v1");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("build hello: built sha256:{}", slugs[0])),
        "{out}"
    );
    assert_eq!(server.page("main.demo.localhost", "/"), "built-1\n");
}

/// Entries of a folder (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_timed_out_or_oversized_build_leaves_nothing_behind() {
    let server = Server::start_with(&[
        ("SLIPWAY_BUILD_TIMEOUT", "3"),
        ("SLIPWAY_SLUG_MAX_SIZE", "64K"),
    ]);
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
    assert!(
        started.elapsed() < std::time::Duration::from_secs(40),
        "the timeout did not kill the build"
    );
    assert!(out.contains("hello | started"), "{out}");
    assert!(
        out.contains(
            "build failed: hooks.build of hello did not finish within the build timeout (3.00s)"
        ),
        "{out}"
    );
    assert!(out.contains("! [remote rejected] main -> main"), "{out}");
    // The stack's own layers join the archive at the first push; nothing else may.
    let stack_blobs = entries(&slipway_e2e::test_stacks().join("archive/blobs/sha256"));
    let nothing = |what: &str| {
        let mut blobs = entries(&server.data.join("archive/blobs/sha256"));
        blobs.retain(|b| !stack_blobs.contains(b));
        assert!(blobs.is_empty(), "{what}: blobs left: {blobs:?}");
        let dots: Vec<_> = entries(&server.data.join("archive"))
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(dots.is_empty(), "{what}: temp files left: {dots:?}");
        let builds = entries(&server.data.join("builds"));
        assert!(builds.is_empty(), "{what}: build folders left: {builds:?}");
        assert!(tags(&server).is_empty(), "{what}: tags");
        assert!(
            server.containers().is_empty(),
            "{what}: containers left: {:?}",
            server.containers()
        );
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
    assert!(
        out.contains("biggest in it: assets/ (293.0 KiB), small.bin (97.7 KiB)"),
        "{out}"
    );
    assert!(out.contains("assets/video.bin (293.0 KiB)"), "{out}");
    assert!(
        out.contains("! [remote rejected] main -> main (build failed:"),
        "{out}"
    );
    nothing("after the oversized slug");

    // A bad setting is refused at start.
    let o = slipway_e2e::run(
        Command::new(slipway_e2e::slipway_bin())
            .args(["serve", "--slug-max-size", "lots", "--data-dir"])
            .arg(server.dir.path().join("other")),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// The package document of the loopback registry's `slipway-hello-js` 1.0.0.
const HELLO_JS: &[(&str, &str)] = &[
    ("package.json", "{\"name\": \"slipway-hello-js\", \"version\": \"1.0.0\", \"bin\": {\"slipway-hello-js\": \"index.js\"}}"),
    ("index.js", "#!/usr/bin/env node\nconsole.log('hello from npm');\n"),
];

/// A server whose builds may reach the loopback `registry` through their proxy.
fn registry_server(registry: &slipway_e2e::NpmRegistry) -> Server {
    let allow = registry
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    Server::start_with(&[("SLIPWAY_BUILD_EGRESS_ALLOW", allow.as_str())])
}

fn hello_registry() -> slipway_e2e::NpmRegistry {
    slipway_e2e::NpmRegistry::start(&[slipway_e2e::NpmPackage {
        name: "slipway-hello-js",
        version: "1.0.0",
        files: HELLO_JS,
    }])
}

/// Answers each GET with where the global command is and what they print, run now.
const GLOBALS_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        lines = []
        for cmd in ["slipway-hello"]:
            out = subprocess.run([cmd], capture_output=True, text=True).stdout.strip()
            lines.append(f"{shutil.which(cmd)}: {out}")
        body = ("\n".join(lines) + "\n").encode()
"#
);

#[test]
fn dependencies_are_installed_into_the_slug_and_work_in_the_build_and_at_run_time() {
    // python:3.11 has no npm: nodejs dependencies are in the nodejs flavor test.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    // A wheel made here, committed with the app: pip installs it without any index.
    slipway_e2e::write_wheel(
        &app.dir.join("wheels"),
        "slipwayhello",
        "1.0",
        &[(
            "__init__.py",
            "def main():\n    print('hello from a wheel')\n",
        )],
        &["slipway-hello = slipwayhello:main"],
    );
    app.write("server.py", GLOBALS_SERVER);
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndependencies:\n  python3:\n    slipwayhello: '1.0'\nvariables:\n  env:\n    PIP_NO_INDEX: '1'\n    PIP_FIND_LINKS: /app/wheels\nhooks:\n  build: |\n    set -e\n    echo \"PATH=$PATH\"\n    slipway-hello\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("global dependencies");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    // The dependencies install in their own step, before the build hook, output prefixed.
    let python = line_of(
        &out,
        "build hello: installing dependencies (python3: slipwayhello==1.0)",
    );
    let hook = line_of(&out, "build hello: running hooks.build");
    assert!(python < hook, "{out}");
    assert!(
        out.contains("hello | Successfully installed slipwayhello-1.0"),
        "{out}"
    );
    // The build hook finds them on PATH.
    assert!(
        out.contains("hello | PATH=/app/.global/bin:/app/.global/vendor/bin:"),
        "{out}"
    );
    assert!(out.contains("hello | hello from a wheel"), "{out}");
    // So do the app's containers: the commands come from /app/.global in the slug.
    assert_eq!(
        server.page("main.demo.localhost", "/"),
        "/app/.global/bin/slipway-hello: hello from a wheel\n"
    );
    // And shells into the app.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "slipway-hello && echo $PYTHONUSERBASE",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from a wheel\n/app/.global\n"
    );
    // Package managers' downloads went to the build cache, not into the slug.
    let slug_hex = out
        .split("built sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .expect("slug digest");
    let slug = server.data.join("slugs").join(slug_hex);
    assert!(
        slug.join(".global/bin/slipway-hello").is_file(),
        "the slug has no .global"
    );
    assert!(!slug.join(".cache").exists(), "pip's cache is in the slug");
}

#[test]
fn a_missing_tool_or_a_failed_install_fails_the_build_and_leaves_nothing() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    // The stack's own layers join the archive at the first push; nothing else may.
    let stack_blobs = entries(&slipway_e2e::test_stacks().join("archive/blobs/sha256"));
    let nothing = |what: &str| {
        let mut blobs = entries(&server.data.join("archive/blobs/sha256"));
        blobs.retain(|b| !stack_blobs.contains(b));
        assert!(blobs.is_empty(), "{what}: blobs left: {blobs:?}");
        let builds = entries(&server.data.join("builds"));
        assert!(builds.is_empty(), "{what}: build folders left: {builds:?}");
        assert!(
            server.containers().is_empty(),
            "{what}: containers left: {:?}",
            server.containers()
        );
    };

    // php dependencies, and no composer on the python:3.11 stack.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndependencies:\n  php:\n    composer/composer: '^2'\nhooks:\n  build: echo never\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("php dependencies");
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("installing dependencies (php: composer/composer:^2)"),
        "{out}"
    );
    assert!(
        out.contains("build failed: app hello: dependencies.php needs `composer`, which is not on the stack of python:3.11; use a `type` whose stack has it, or remove dependencies.php"),
        "{out}"
    );
    assert!(
        out.contains("! [remote rejected] main -> main (build failed: app hello: dependencies.php"),
        "{out}"
    );
    assert!(!out.contains("hello | never"), "the build hook ran: {out}");
    assert!(!out.contains("@@slipway"), "{out}");
    nothing("after a missing tool");

    // An install that fails (no such package, no index): like a failing hook.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndependencies:\n  python3:\n    no-such-package-anywhere: '*'\nvariables:\n  env:\n    PIP_NO_INDEX: '1'\nhooks:\n  build: echo never\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("a package that is nowhere");
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("hello | ERROR: "),
        "pip's own message is shown: {out}"
    );
    assert!(
        out.contains(
            "build failed: installing the python3 dependencies of hello exited with status 1"
        ),
        "{out}"
    );
    assert!(!out.contains("hello | never"), "{out}");
    nothing("after a failed install");

    // The composer flavor needs composer too.
    app.write("composer.json", "{}\n");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nbuild:\n  flavor: composer\nhooks:\n  build: echo never\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("php app");
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("build hello: running build flavor composer (composer install)"),
        "{out}"
    );
    assert!(
        out.contains("build failed: app hello: build flavor composer needs `composer`, which is not on the stack of python:3.11; use a `type` whose stack has it, or set `build.flavor: none`"),
        "{out}"
    );
    nothing("after the composer flavor");

    // With `build.flavor: none` the same app builds and deploys.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nbuild:\n  flavor: none\nhooks:\n  build: echo built-php > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("no flavor");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(!out.contains("build flavor"), "{out}");
    assert_eq!(server.page("main.demo.localhost", "/"), "built-php\n");
}

#[test]
fn the_nodejs_default_flavor_runs_npm_install_unless_none() {
    let registry = hello_registry();
    let server = registry_server(&registry);
    let app = App::demo(server.dir.path(), "app");
    // nodejs:22 has no python: a node server answers with build.txt and global.txt.
    app.write(
        "server.js",
        "const fs = require('fs');\nrequire('http').createServer((q, r) => r.end(fs.readFileSync('build.txt', 'utf8') + fs.readFileSync('global.txt', 'utf8'))).listen(process.env.PORT, '127.0.0.1');\n",
    );
    app.write(
        "package.json",
        "{\"name\": \"site\", \"version\": \"1.0.0\", \"private\": true, \"dependencies\": {\"slipway-hello-js\": \"^1\"}}\n",
    );
    let config = |flavor: &str| {
        format!(
            "name: hello\ntype: nodejs:22\n{flavor}dependencies:\n  nodejs:\n    slipway-hello-js: '^1'\nvariables:\n  env:\n    NPM_CONFIG_REGISTRY: '{}'\nhooks:\n  build: |\n    set -e\n    if [ -d node_modules ]; then node_modules/.bin/slipway-hello-js > build.txt; else echo no-node-modules > build.txt; fi\n    echo \"global $(command -v slipway-hello-js): $(slipway-hello-js)\" > global.txt\nweb:\n  commands:\n    start: node server.js\n",
            registry.url
        )
    };
    app.write(".platform.app.yaml", &config(""));
    app.commit("nodejs app");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let deps = line_of(
        &out,
        "build hello: installing dependencies (nodejs: slipway-hello-js@^1)",
    );
    let flavor = line_of(
        &out,
        "build hello: running build flavor default (npm prune && npm install)",
    );
    assert!(deps < flavor, "{out}");
    assert!(
        flavor < line_of(&out, "build hello: running hooks.build"),
        "{out}"
    );
    assert!(out.contains("hello | added 1 package"), "{out}");
    assert_eq!(
        server.page("main.demo.localhost", "/"),
        "hello from npm\nglobal /app/.global/bin/slipway-hello-js: hello from npm\n"
    );

    app.write(".platform.app.yaml", &config("build:\n  flavor: none\n"));
    app.commit("no flavor");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(!out.contains("build flavor"), "{out}");
    assert_eq!(
        server.page("main.demo.localhost", "/"),
        "no-node-modules\nglobal /app/.global/bin/slipway-hello-js: hello from npm\n"
    );
}

#[test]
fn build_caches_come_back_while_the_watched_files_stay_the_same() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    // The build keeps the first `made-by` it finds in the cached folder and serves it.
    let config = |allow_stale: bool| {
        format!(
            "name: hello\ntype: python:3.11\nbuild:\n  caches:\n    deps:\n      directory: cached/deps\n      watch: [requirements.txt]\n      allow_stale: {allow_stale}\nhooks:\n  build: |\n    set -e\n    if [ -f cached/deps/made-by ]; then echo \"found $(cat cached/deps/made-by)\"; else echo fresh; mkdir -p cached/deps; echo \"build-$(cat VERSION)\" > cached/deps/made-by; fi\n    cp cached/deps/made-by build.txt\nweb:\n  commands:\n    start: python3 server.py\n"
        )
    };
    app.write(".platform.app.yaml", &config(false));
    app.write("requirements.txt", "flask==3.0\n");
    app.commit("v1 with a cache");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("build hello: build cache deps: nothing saved yet for these watched files"),
        "{out}"
    );
    assert!(out.contains("hello | fresh"), "{out}");
    let saved = line_of(&out, "build hello: saved build cache deps (cached/deps, ");
    assert!(
        saved > line_of(&out, "build hello: built sha256:"),
        "saved before the slug was built:\n{out}"
    );
    assert_eq!(server.page("main.demo.localhost", "/"), "build-1\n");

    // Another change, same watched file: the second build finds what the first one left.
    app.write("VERSION", "2\n");
    app.commit("v2");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    let restored = line_of(&out, "build hello: restored build cache deps (cached/deps)");
    assert!(
        restored < line_of(&out, "build hello: running hooks.build"),
        "{out}"
    );
    assert!(out.contains("hello | found build-1"), "{out}");
    assert_eq!(server.page("main.demo.localhost", "/"), "build-1\n");

    // The watched file changes: the build starts without the cache.
    app.write("VERSION", "3\n");
    app.write("requirements.txt", "flask==3.1\n");
    app.commit("v3, new requirements");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(!out.contains("restored build cache"), "{out}");
    assert!(out.contains("hello | fresh"), "{out}");
    assert_eq!(server.page("main.demo.localhost", "/"), "build-3\n");

    // Unless stale content is allowed: then the newest saved folder comes back.
    app.write(".platform.app.yaml", &config(true));
    app.write("VERSION", "4\n");
    app.write("requirements.txt", "flask==3.2\n");
    app.commit("v4, stale allowed");
    let (ok, out) = push(&server, &app, "main");
    assert!(ok, "{out}");
    assert!(out.contains("build hello: restored build cache deps (cached/deps; stale: the watched files changed)"), "{out}");
    assert!(out.contains("hello | found build-3"), "{out}");
    assert_eq!(server.page("main.demo.localhost", "/"), "build-3\n");

    // Kept per project, environment, app and name; at most a few entries.
    let store = server.data.join("build-caches/demo/main/hello/deps");
    // (Each saved folder has its `NAME.used` record of size and last use beside it.)
    let kept: Vec<String> = entries(&store)
        .into_iter()
        .filter(|n| !n.ends_with(".used"))
        .collect();
    assert!(!kept.is_empty() && kept.len() <= 3, "{kept:?}");
    assert!(
        kept.iter().all(|n| !n.starts_with('.')),
        "temporary folders left: {kept:?}"
    );

    // A directory outside the app is refused before anything builds.
    app.write(
        ".platform.app.yaml",
        &config(false).replace("cached/deps", "../elsewhere"),
    );
    app.commit("bad cache");
    let (ok, out) = push(&server, &app, "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains(".platform.app.yaml:6:18: error: build cache directory `../elsewhere` must stay inside the app (no `..`) (at build.caches.deps.directory)"),
        "{out}"
    );
    assert!(!out.contains("running hooks.build"), "{out}");
}

/// `slipway slug pack DIR -o FILE`: FILE is the layer whose digest is printed, readable
/// by the zstd tool; an old FILE is replaced whole; bad arguments change nothing.
#[test]
fn slug_pack_writes_the_printed_digest_and_replaces_an_old_file() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    let src = d.path().join("app");
    std::fs::create_dir_all(src.join("lib")).expect("mkdir");
    std::fs::write(src.join("server.py"), "print('hi')\n").expect("write");
    // Over 1 MiB of tar: more than one zstd frame.
    let big: String = (0..120_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(src.join("lib/big.txt"), &big).expect("write");
    let out = d.path().join("app.slug");
    std::fs::write(&out, "an older slug").expect("write");

    let pack = |dir: &Path, file: &Path| {
        slipway_e2e::run(
            Command::new(slipway_e2e::slipway_bin())
                .args(["slug", "pack"])
                .arg(dir)
                .arg("-o")
                .arg(file),
        )
    };
    let o = pack(&src, &out);
    assert!(o.status.success(), "{}", text(&o));
    let printed = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let bytes = std::fs::read(&out).expect("slug");
    let sum = text(&slipway_e2e::run(Command::new("sha256sum").arg(&out)));
    assert_eq!(
        printed,
        format!("sha256:{}", sum.split_whitespace().next().unwrap_or(""))
    );
    let mode = std::fs::metadata(&out).expect("slug").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let tar = Command::new("zstd")
        .arg("-dc")
        .arg(&out)
        .output()
        .expect("zstd");
    assert!(tar.status.success(), "zstd -d: {}", text(&tar));
    let listed = slipway_e2e::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -dc {} | tar -tvf -", out.display())),
    );
    let listing = text(&listed);
    assert!(listing.contains("app/lib/big.txt"), "{listing}");
    assert!(listing.contains(&big.len().to_string()), "{listing}");

    // Same folder again: same bytes, and no temporary file left beside it.
    let o = pack(&src, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(&out).expect("slug") == bytes,
        "packing twice gave other bytes"
    );
    let names: Vec<String> = std::fs::read_dir(d.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // A folder as FILE, or no such DIR: an error naming it, nothing changed.
    let o = pack(&src, &src.join("lib"));
    assert!(!o.status.success());
    assert!(text(&o).contains("lib"), "{}", text(&o));
    assert!(src.join("lib/big.txt").is_file());
    let o = pack(&d.path().join("nope"), &out);
    assert!(!o.status.success());
    assert!(text(&o).contains("nope"), "{}", text(&o));
    assert!(std::fs::read(&out).expect("slug") == bytes);
}
