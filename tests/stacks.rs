//! Stacks through the `slipway` binary: `stack build` and `stack ls` on real stacks
//! (built once into the shared cache, see `cached_stack`), type/version refusals with their
//! position and a did-you-mean in `config check`, a build from an unreachable mirror
//! failing clearly and leaving nothing behind, and a push whose app builds and runs on its
//! stack (what `slipway serve` always does) seeing nothing of the host; an image imported
//! as a version the catalog lacks, accepted by `config check` and the push and run.

use std::path::Path;
use std::process::Command;

use slipway_e2e::{cached_stack, run, slipway_bin, text, App, Server};

fn slipway(args: &[&str], data_dir: &Path) -> std::process::Output {
    run(Command::new(slipway_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

/// Every stack of `TEST_STACKS` built in the shared folder (`scripts/test` runs this first,
/// so that the other tests never wait on a stack build).
#[test]
fn every_test_stack_is_built() {
    let dir = slipway_e2e::test_stacks();
    let ls = text(&slipway(&["stack", "ls"], &dir));
    for stack in slipway_e2e::TEST_STACKS {
        assert!(
            ls.lines()
                .any(|l| l.starts_with(&format!("{stack}\t")) && l.contains("\tbuilt\t")),
            "{stack} is not built: {ls}"
        );
    }
}

#[test]
fn stack_ls_shows_what_is_available_and_what_is_built() {
    let data = cached_stack("python:3.11");
    let out = slipway(&["stack", "ls"], &data);
    assert!(out.status.success(), "{}", text(&out));
    let ls = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |stack: &str| {
        ls.lines()
            .find(|l| l.starts_with(&format!("{stack}\t")))
            .unwrap_or_else(|| panic!("no {stack} in {ls}"))
            .split('\t')
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let py = line("python:3.11");
    assert_eq!(py[1..3], ["bookworm", "built"], "{ls}");
    assert!(
        py[3].ends_with("MiB") && py[4].ends_with("MiB"),
        "sizes: {ls}"
    );
    // (The shared folder may hold other stacks too, built by other tests.)
    assert_eq!(
        line("php:8.4")[1],
        "trixie + npm registry (npm 10.9.4, yarn 1.22.22, corepack 0.34.6)",
        "{ls}"
    );
    assert!(
        line("nodejs:22")[1].starts_with("bookworm + npm registry (node 22."),
        "{ls}"
    );
    // A second build of a built stack reuses it.
    let out = slipway(&["stack", "build", "python:3.11"], &data);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("mmdebstrap"),
        "rebuilt: {}",
        text(&out)
    );

    // With `--stacks-dir` (or SLIPWAY_STACKS_DIR), as `serve` is given its stacks, ls and
    // build use that folder and never the data dir: the stack is built there already.
    let work = tempfile::tempdir().unwrap();
    let elsewhere = work.path().join("data");
    let stacks_dir = data.display().to_string();
    let out = slipway(&["stack", "ls", "--stacks-dir", &stacks_dir], &elsewhere);
    assert!(
        text(&out).contains("\npython:3.11\tbookworm\tbuilt\t"),
        "{}",
        text(&out)
    );
    let out = run(Command::new(slipway_bin())
        .args(["stack", "build", "python:3.11", "--data-dir"])
        .arg(&elsewhere)
        .env("SLIPWAY_STACKS_DIR", &data));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("mmdebstrap"),
        "rebuilt: {}",
        text(&out)
    );
    // The same stack, unpacked in the same folder, as a build in that folder prints.
    let here = slipway(&["stack", "build", "python:3.11"], &data);
    assert_eq!(out.stdout, here.stdout);
    assert!(!elsewhere.exists(), "the data dir was used");
}

#[test]
fn unknown_types_and_versions_are_refused_with_a_did_you_mean() {
    let data = tempfile::tempdir().unwrap();
    let out = slipway(&["stack", "build", "pyhton:3.11"], data.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("did you mean `python`?"),
        "{}",
        text(&out)
    );
    let out = slipway(&["stack", "build", "php:5.6"], data.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("(did you mean `php:7.4`?); available: 7.4, 8.2, 8.4"),
        "{}",
        text(&out)
    );

    // config check: the same refusals at FILE:LINE:COL, and the substitution as a warning.
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join(".upsun")).unwrap();
    std::fs::write(
        tree.path().join(".upsun/config.yaml"),
        "applications:\n  web:\n    type: 'php:5.6'\n  api:\n    type: golang:1.21\n",
    )
    .unwrap();
    let out = slipway_e2e::config_check(tree.path());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(".upsun/config.yaml:3:11: error: php:5.6 is not available: no php 5.x at or above 5.6 (did you mean `php:7.4`?); available: 7.4, 8.2, 8.4 (at applications.web.type)"),
        "{t}"
    );
    assert!(
        t.contains(".upsun/config.yaml:5:11: warning: golang:1.21 is not available on this server; using golang:1.24, the nearest newer golang 1.x (at applications.api.type)"),
        "{t}"
    );
    // Nothing was made for a refused stack.
    assert!(!data.path().join("stacks").exists());
}

#[test]
fn a_build_from_an_unreachable_mirror_fails_clearly_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let out = slipway(
        &[
            "stack",
            "build",
            "python:3.13",
            "--debian-mirror",
            "http://127.0.0.1:1/",
            "--debian-security-mirror",
            "none",
        ],
        data.path(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("building stack python:3.13: mmdebstrap failed: "),
        "{t}"
    );
    assert!(t.contains("127.0.0.1:1"), "{t}");
    let left: Vec<_> = std::fs::read_dir(data.path().join("stacks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let blobs = std::fs::read_dir(data.path().join("archive/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
    // And `stack ls` says it is not built.
    let out = slipway(&["stack", "ls"], data.path());
    assert!(
        text(&out).contains("python:3.13\ttrixie\t-\t"),
        "{}",
        text(&out)
    );
}

/// A host file no container may see.
struct HostMarker(std::path::PathBuf);
impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn an_app_builds_and_runs_on_its_stack() {
    let stacks = cached_stack("python:3.11");
    let stacks_dir = stacks.to_string_lossy().to_string();
    let server = Server::start_with(&[("SLIPWAY_STACKS_DIR", &stacks_dir)]);
    let marker = HostMarker(format!("/etc/slipway-e2e-marker-{}", std::process::id()).into());
    std::fs::write(&marker.0, "host only\n").unwrap();
    let app = App::demo(server.dir.path(), "app");
    // The build hook runs on the stack too: it records what it sees. The app asks for
    // python:3.10, which it gets as python:3.11.
    app.write(
        ".platform.app.yaml",
        &format!(
            "name: hello\ntype: python:3.10\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n    python3 --version > build-python.txt\n    if [ -e {m} ]; then echo visible > build-marker.txt; else echo absent > build-marker.txt; fi\nweb:\n  commands:\n    start: python3 server.py\n",
            m = marker.0.display()
        ),
    );
    app.commit("on its stack");
    let out = server.push_ok(&app, "demo");
    // python:3.10 is not in Debian: the nearest newer 3.x, with a warning naming both.
    assert!(
        out.contains("warning: python:3.10 is not available on this server; using python:3.11, the nearest newer python 3.x"),
        "{out}"
    );
    assert!(
        out.contains("remote: -----> stack python:3.11: ready (sha256:"),
        "{out}"
    );
    assert_eq!(
        server
            .get("main.demo.localhost", "/")
            .map(|(c, b)| (c, b.trim().to_string())),
        Some((200, "built-1".to_string()))
    );
    // The running app: the stack's Python, the build's view, none of the host.
    let o = server.ssh(
        &server.key,
        "main.demo",
        &format!(
            "cat /app/build-python.txt /app/build-marker.txt; python3 --version; \
             for f in {} /root/.cargo /work /var/tmp/slipway-test-stacks; do \
               if [ -e \"$f\" ]; then echo \"visible: $f\"; fi; done; \
             grep VERSION_CODENAME /etc/os-release",
            marker.0.display()
        ),
    );
    let t = text(&o);
    eprintln!("push:\n{out}\nin the container:\n{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines.len() >= 4, "{t}");
    assert!(lines[0].starts_with("Python 3.11."), "{t}");
    assert_eq!(lines[1], "absent", "{t}");
    assert!(lines[2].starts_with("Python 3.11."), "{t}");
    assert!(!t.contains("visible:"), "host files visible: {t}");
    assert!(t.contains("VERSION_CODENAME=bookworm"), "{t}");
    // On the host the marker is there (the check above could have failed).
    assert!(marker.0.exists());

    // The release is a real OCI image: the stack's layer, then the slug; skopeo copies it.
    let stack_layer = out
        .split("stack python:3.11: ready (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no stack digest in {out}"))
        .to_string();
    let reference = format!(
        "oci:{}:demo.main.r1.hello",
        server.data.join("archive").display()
    );
    let o = run(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert!(o.status.success(), "skopeo inspect: {}", text(&o));
    let manifest: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .split("\"digest\":\"")
        .skip(1)
        .map(|d| d.split('"').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(manifest.len(), 3, "config + stack + slug: {manifest:?}");
    assert_eq!(manifest[1], stack_layer, "{manifest:?}");
    let copy = tempfile::tempdir().unwrap();
    let o = run(Command::new("skopeo").args([
        "copy",
        &reference,
        &format!("oci:{}:copied", copy.path().display()),
    ]));
    assert!(o.status.success(), "skopeo copy: {}", text(&o));
}

/// A server whose stacks are in `stacks` and whose Debian mirror is unreachable: a stack
/// it lacks fails to build.
fn server_without_mirror(stacks: &Path) -> Server {
    Server::start_with(&[
        ("SLIPWAY_STACKS_DIR", &stacks.to_string_lossy()),
        ("SLIPWAY_DEBIAN_MIRROR", "http://127.0.0.1:1/"),
        ("SLIPWAY_DEBIAN_SECURITY_MIRROR", "none"),
    ])
}

#[test]
fn a_push_needing_an_unbuilt_stack_builds_it_and_shows_progress() {
    // The mirror is unreachable: the push shows the build's progress, then its failure,
    // and is refused; nothing is deployed.
    let stacks = tempfile::tempdir().unwrap();
    let server = server_without_mirror(stacks.path());
    let app = App::demo(server.dir.path(), "app");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    for want in [
        "remote: -----> stack python:3.11: building stack python:3.11 from Debian bookworm",
        "remote: -----> stack python:3.11: running apt-get update...",
        "remote: -----> stack python:3.11: failed: building stack python:3.11: mmdebstrap failed: ",
        "(build failed: building stack python:3.11: mmdebstrap failed: ",
    ] {
        assert!(out.contains(want), "push output lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("build hello: built"), "{out}");
    // A refused first push leaves no project, so no branch of it either.
    assert!(out.contains("project demo was not created"), "{out}");
    let o = server.git(
        &app.dir,
        &["ls-remote", &server.remote("demo"), "refs/heads/main"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "the branch moved"
    );
}

/// A stacks folder of its own holding only `tags` (e.g. `stack-python-3.11`) of the shared
/// one: its blobs hard-linked, its `index.json` naming those images only.
fn stacks_with_only(tags: &[&str]) -> tempfile::TempDir {
    let shared = cached_stack("python:3.11").join("archive");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let blobs = archive.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for e in std::fs::read_dir(shared.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        std::fs::hard_link(e.path(), blobs.join(e.file_name())).unwrap();
    }
    std::fs::copy(shared.join("oci-layout"), archive.join("oci-layout")).unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().retain(|m| {
        tags.contains(
            &m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or(""),
        )
    });
    assert_eq!(index["manifests"].as_array().unwrap().len(), tags.len());
    std::fs::write(archive.join("index.json"), index.to_string()).unwrap();
    dir
}

#[test]
fn a_stack_build_that_fails_leaves_the_live_release_serving() {
    // python:3.11 is there, nothing else is, and the mirror is unreachable.
    let stacks = stacks_with_only(&["stack-python-3.11"]);
    let server = server_without_mirror(stacks.path());
    let app = App::demo(server.dir.path(), "app");
    server.push_ok(&app, "demo");
    let live = server.get("main.demo.localhost", "/");
    assert_eq!(live.as_ref().map(|(c, _)| *c), Some(200), "{live:?}");
    let remote_main = || server.branch_head(&app.dir, "demo", "main");
    let before = remote_main();

    // The next push moves to python:3.13, which must be built, and its build fails.
    let config = std::fs::read_to_string(app.dir.join(".platform.app.yaml")).unwrap();
    app.write(
        ".platform.app.yaml",
        &config.replace("python:3.11", "python:3.13"),
    );
    app.write("VERSION", "2\n");
    app.commit("python 3.13");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("stack python:3.13: failed: building stack python:3.13: mmdebstrap failed: "),
        "{out}"
    );
    // The live release answers as before, its containers untouched; the branch did not move.
    assert_eq!(server.get("main.demo.localhost", "/"), live);
    assert_eq!(remote_main(), before, "the branch moved");
    let releases = server.admin_stdout("releases demo main");
    assert_eq!(releases.matches("live").count(), 1, "{releases}");
}

/// An app of `type: python:3.12` whose build records the Python it ran on; it answers
/// `built-1 PYTHON_VERSION`.
const PY312_APP: &str = "name: hello\ntype: python:3.12\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION) $(python3 -c 'import platform; print(platform.python_version())')\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n";

#[test]
fn stack_import_of_a_version_the_catalog_lacks_is_accepted_and_run() {
    // An image of python:3.11 as skopeo writes one (gzip layers), from the cached build,
    // imported as python:3.12, a version Debian lacks.
    let source = cached_stack("python:3.11");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let o = run(Command::new("skopeo").args([
        "copy",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:stack-python-3.11", source.join("archive").display()),
        &format!("oci:{}:py", layout.display()),
    ]));
    assert!(o.status.success(), "skopeo copy: {}", text(&o));
    let data = work.path().join("data");
    let image = format!("{}:py", layout.display());
    let app = App::demo(work.path(), "app");
    app.write(".platform.app.yaml", PY312_APP);
    app.commit("python 3.12");
    let app_dir = app.dir.display().to_string();
    let substitute = "python:3.12 is not available on this server; using python:3.13, the nearest newer python 3.x";

    // Before the import: config check of these stacks runs the app on 3.13, with a warning.
    let check = slipway(&["config", "check", &app_dir, "--no-advisories"], &data);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains(substitute), "{}", text(&check));

    // Refused: a folder that is no image layout, and nothing is left of it.
    let out = slipway(
        &[
            "stack",
            "import",
            "python:3.12",
            &work.path().display().to_string(),
        ],
        &data,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not an OCI image layout"),
        "{}",
        text(&out)
    );
    // A version that is no number, as a stack would be tagged by it.
    let out = slipway(&["stack", "import", "python:3.12-rc", &image], &data);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not LANGUAGE:VERSION"),
        "{}",
        text(&out)
    );
    let ls = text(&slipway(&["stack", "ls"], &data));
    assert!(!ls.contains("python:3.12"), "{ls}");

    // Imported into the server's stacks folder (`--stacks-dir`, as `serve` is given it),
    // never into the data dir.
    let admin = work.path().join("admin");
    let stacks_dir = data.display().to_string();
    let out = slipway(
        &[
            "stack",
            "import",
            "python:3.12",
            &image,
            "--stacks-dir",
            &stacks_dir,
        ],
        &admin,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!admin.exists(), "imported into the data dir");
    let ls = text(&slipway(&["stack", "ls"], &data));
    assert!(
        ls.contains(&format!(
            "python:3.12\timported from {}\tbuilt\t",
            layout.display()
        )),
        "{ls}"
    );

    // config check of the server's stacks now takes python:3.12 as it is; without them
    // (no server's archive), only the catalog is known and the warning stays.
    let check = slipway(&["config", "check", &app_dir, "--no-advisories"], &data);
    assert!(check.status.success(), "{}", text(&check));
    assert!(!text(&check).contains("warning:"), "{}", text(&check));
    let elsewhere = work.path().join("no-server");
    let check = slipway(
        &["config", "check", &app_dir, "--no-advisories"],
        &elsewhere,
    );
    assert!(text(&check).contains(substitute), "{}", text(&check));
    assert!(!elsewhere.exists(), "config check made a data dir");

    // It has no Debian recipe: a forced build is refused, naming import.
    let out = slipway(&["stack", "build", "python:3.12", "--force"], &data);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("import it again with `slipway stack import python:3.12 IMAGE`"),
        "{}",
        text(&out)
    );

    // A server with these stacks accepts the push without a warning and runs the app on
    // the imported stack (whose Python is the image's: 3.11), not on 3.13.
    let server = Server::start_with(&[("SLIPWAY_STACKS_DIR", &data.to_string_lossy())]);
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(!out.contains("warning:"), "{out}");
    let (code, body) = server.get("main.demo.localhost", "/").expect("answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("built-1 3.11."), "{body}");
}

#[test]
fn a_nodejs_22_app_runs_on_node_from_the_npm_registry() {
    let stacks = cached_stack("nodejs:22");
    let server = Server::start_with(&[("SLIPWAY_STACKS_DIR", &stacks.to_string_lossy())]);
    let dir = server.dir.path().join("node-app");
    std::fs::create_dir_all(&dir).unwrap();
    let app = App { dir };
    app.write(
        ".upsun/config.yaml",
        "applications:\n  web:\n    type: nodejs:22\n    web:\n      commands:\n        start: node server.js\n",
    );
    app.write(
        "package.json",
        "{\"name\": \"web\", \"version\": \"1.0.0\", \"private\": true}\n",
    );
    app.write(
        "server.js",
        "require('http').createServer((q, r) => r.end(process.version + ' ' + require('os').userInfo().username + '\\n')).listen(process.env.PORT, '127.0.0.1');\n",
    );
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("node 22");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(
        out.contains("running build flavor default (npm prune && npm install)"),
        "{out}"
    );
    let want = format!(
        "v{}",
        slipway_stack::resolve_type("nodejs:22")
            .unwrap()
            .stack
            .node_from_npm
            .unwrap()
            .node
            .version
    );
    let (code, body) = server.get("main.demo.localhost", "/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with(&format!("{want} ")), "{body}");
}

/// Answers with what the `slipway-hello` command prints and the python running it.
const PROCFILE_PY_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        out = subprocess.run(["slipway-hello"], capture_output=True, text=True).stdout.strip()
        body = f"{out} {sys.prefix} {sys.version_info[0]}.{sys.version_info[1]}\n".encode()
"#
);

#[test]
fn procfile_apps_get_the_stack_of_their_language_and_their_dependencies_installed() {
    let registry = slipway_e2e::NpmRegistry::start(&[slipway_e2e::NpmPackage {
        name: "slipway-hello-js",
        version: "1.0.0",
        files: &[
            ("package.json", "{\"name\": \"slipway-hello-js\", \"version\": \"1.0.0\", \"bin\": {\"slipway-hello-js\": \"index.js\"}}"),
            ("index.js", "#!/usr/bin/env node\nconsole.log('hello from npm');\n"),
        ],
    }]);
    let allow = registry
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let server = Server::start_with(&[("SLIPWAY_BUILD_EGRESS_ALLOW", allow.as_str())]);

    // A python app: requirements.txt (from a local wheel folder), .python-version.
    let dir = server.dir.path().join("py-app");
    std::fs::create_dir_all(&dir).unwrap();
    let py = App { dir };
    slipway_e2e::write_wheel(
        &py.dir.join("wheels"),
        "slipwayhello",
        "1.0",
        &[(
            "__init__.py",
            "def main():\n    print('hello from a wheel')\n",
        )],
        &["slipway-hello = slipwayhello:main"],
    );
    py.write(
        "requirements.txt",
        "--no-index\n--find-links /app/wheels\nslipwayhello==1.0\n",
    );
    py.write(".python-version", "3.11\n");
    py.write("Procfile", "web: python3 server.py\n");
    py.write("server.py", PROCFILE_PY_SERVER);
    py.git_ok(&["init", "-q", "-b", "main"]);
    py.commit("a procfile python app");
    let out = slipway_e2e::config_check(&py.dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(
            "app: stack python:3.11 (detected from requirements.txt, 3.11 asked by .python-version)"
        ),
        "{}",
        text(&out)
    );
    let o = server.git(&py.dir, &["push", &server.remote("pyapp"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(out.contains("stack python:3.11: ready"), "{out}");
    assert!(
        out.contains("app | Successfully installed slipwayhello-1.0"),
        "{out}"
    );
    let (code, body) = server.get("main.pyapp.localhost", "/").unwrap();
    assert_eq!(code, 200, "{body}");
    // The command comes from the virtualenv, which runs the app too.
    assert_eq!(body, "hello from a wheel /app/.global 3.11\n");

    // A node app: package.json with engines.node, a dependency and a build script.
    let dir = server.dir.path().join("node-app");
    std::fs::create_dir_all(&dir).unwrap();
    let node = App { dir };
    node.write(
        "package.json",
        "{\"name\": \"site\", \"version\": \"1.0.0\", \"private\": true, \"engines\": {\"node\": \"22.x\"}, \"dependencies\": {\"slipway-hello-js\": \"^1\"}, \"scripts\": {\"build\": \"slipway-hello-js > build.txt\"}}\n",
    );
    node.write(".npmrc", &format!("registry={}\n", registry.url));
    node.write("Procfile", "web: node server.js\n");
    node.write(
        "server.js",
        "const fs = require('fs');\nrequire('http').createServer((q, r) => r.end(process.version.split('.')[0] + ' ' + fs.readFileSync('build.txt', 'utf8'))).listen(process.env.PORT, '127.0.0.1');\n",
    );
    node.git_ok(&["init", "-q", "-b", "main"]);
    node.commit("a procfile node app");
    let out = slipway_e2e::config_check(&node.dir);
    assert!(
        text(&out).contains(
            "app: stack nodejs:22 (detected from package.json, 22.x asked by package.json)"
        ),
        "{}",
        text(&out)
    );
    let o = server.git(&node.dir, &["push", &server.remote("nodeapp"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(out.contains("app | added 1 package"), "{out}");
    let (code, body) = server.get("main.nodeapp.localhost", "/").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "v22 hello from npm\n");

    // A tree without any language file is refused before anything is built.
    let dir = server.dir.path().join("bare-app");
    std::fs::create_dir_all(&dir).unwrap();
    let bare = App { dir };
    bare.write("Procfile", "web: ./serve\n");
    bare.git_ok(&["init", "-q", "-b", "main"]);
    bare.commit("no language");
    let o = server.git(&bare.dir, &["push", &server.remote("bare"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("Procfile:1:1: error: cannot tell the language of this Procfile app"),
        "{out}"
    );
}

#[test]
fn the_host_root_is_an_explicit_unsafe_opt_in_and_its_releases_never_run_on_a_stack_server() {
    // Only with SLIPWAY_UNSAFE_HOST_ROOT does an app run on the host's root: it sees the
    // host's /etc.
    let mut server = Server::start_with(&[("SLIPWAY_UNSAFE_HOST_ROOT", "true")]);
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    if [ -e /etc/debian_version ] && [ -e /etc/hostname ]; then echo host-root > build.txt; else echo stack > build.txt; fi\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.commit("where am I");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "host-root\n".to_string()))
    );
    assert!(
        server
            .server_log()
            .contains("--unsafe-host-root: apps build and run on this host's /usr, /etc and /lib"),
        "{}",
        server.server_log()
    );

    // The same data dir served normally: the host-root release is stopped, not adopted.
    server.stop();
    server.env.clear();
    server.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !server
        .server_log()
        .contains("hello was built on the host's root, not on a stack: stopped")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_ne!(
        server.get("main.demo.localhost", "/").map(|(c, _)| c),
        Some(200)
    );

    // A new push builds on the stack (stacks have no /etc/hostname) and serves again.
    app.write("VERSION", "2\n");
    app.commit("again");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    assert_eq!(
        server.get("main.demo.localhost", "/"),
        Some((200, "stack\n".to_string()))
    );
}

/// The stacks no other test builds that real configs ask for most (the corpus of
/// `platform-configs`: postgresql 12/13 run on postgresql:13, nodejs 18, golang 1.14/1.18 on
/// golang:1.19, nodejs 16, python 3.8/3.9 on python:3.9), as `(stack, app name)`; the
/// service is checked apart. Each is built on demand into the shared cache.
const REAL_CONFIG_STACKS: [(&str, &str); 4] = [
    ("nodejs:18", "n18"),
    ("nodejs:16", "n16"),
    ("golang:1.19", "go"),
    ("python:3.9", "py"),
];

/// A Node.js server answering `process.version`.
const NODE_VERSION_SERVER: &str = "require('http').createServer((q, r) => r.end(process.version + '\\n')).listen(process.env.PORT, '127.0.0.1');\n";

/// A Go server answering `runtime.Version()`.
const GO_VERSION_SERVER: &str = "package main\n\nimport (\n\t\"fmt\"\n\t\"net/http\"\n\t\"os\"\n\t\"runtime\"\n)\n\nfunc main() {\n\thttp.HandleFunc(\"/\", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, runtime.Version()) })\n\thttp.ListenAndServe(\"127.0.0.1:\"+os.Getenv(\"PORT\"), nil)\n}\n";

/// A Python server answering its version at `/` and the `database` relationship's URL at
/// `/dburl`.
const PY_VERSION_SERVER: &str = slipway_e2e::py_app!(
    concat!(slipway_e2e::py_relationships!(), slipway_e2e::py_dburl!()),
    r#"        if self.path == "/dburl":
            body = dburl()
        else:
            body = "%d.%d.%d" % sys.version_info[:3]
        body = body.encode()
"#
);

/// A Ruby server answering `RUBY_VERSION`.
const RUBY_VERSION_SERVER: &str = r##"require "socket"
server = TCPServer.new("127.0.0.1", Integer(ENV.fetch("PORT")))
loop do
  c = server.accept
  while (l = c.gets) && l != "\r\n"
  end
  body = "#{RUBY_VERSION}\n"
  c.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  c.close
end
"##;

/// A Java server answering `java.version`.
const JAVA_VERSION_SERVER: &str = r#"public class Version {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getenv("PORT"));
        var server = com.sun.net.httpserver.HttpServer.create(new java.net.InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/", x -> {
            byte[] body = (System.getProperty("java.version") + "\n").getBytes();
            x.sendResponseHeaders(200, body.length);
            x.getResponseBody().write(body);
            x.close();
        });
        server.start();
    }
}
"#;

/// One app per `(stack, name)` in `app`'s tree (below `NAME/`), each answering its
/// runtime's version on `http://NAME.{default}/`: the `applications:` and `routes:` of its
/// config (a Python app gets relationship `database` to service `db`).
fn version_apps(app: &App, stacks: &[(&str, &str)]) -> (String, String) {
    let mut config = String::from("applications:\n");
    let mut routes = String::from("routes:\n");
    for (stack, name) in stacks {
        let (start, build, files): (&str, &str, Vec<(&str, &str)>) = match stack.split(':').next() {
            Some("nodejs") => (
                "node server.js",
                "",
                vec![("server.js", NODE_VERSION_SERVER)],
            ),
            Some("golang") => (
                "./server",
                "    hooks:\n      build: go build -o server .\n",
                vec![
                    ("go.mod", "module hello\n\ngo 1.19\n"),
                    ("main.go", GO_VERSION_SERVER),
                ],
            ),
            Some("ruby") => (
                "ruby server.rb",
                "",
                vec![("server.rb", RUBY_VERSION_SERVER)],
            ),
            Some("java") => (
                "java -cp classes Version",
                "    hooks:\n      build: javac -d classes Version.java\n",
                vec![("Version.java", JAVA_VERSION_SERVER)],
            ),
            _ => (
                "python3 server.py",
                "    relationships:\n      database: 'db:postgresql'\n",
                vec![("server.py", PY_VERSION_SERVER)],
            ),
        };
        config.push_str(&format!(
            "  {name}:\n    type: '{stack}'\n    source:\n      root: {name}\n{build}    web:\n      commands:\n        start: {start}\n"
        ));
        routes.push_str(&format!(
            "  'http://{name}.{{default}}/': {{type: upstream, upstream: '{name}:http'}}\n"
        ));
        for (file, content) in files {
            app.write(&format!("{name}/{file}"), content);
        }
    }
    (config, routes)
}

/// PostgreSQL 13's `psql` in the `db` service's container of project `cover`.
fn psql13(server: &Server, url: &str, sql: &str) -> String {
    let o = run(server.runc().args(["exec", "cover.main.db.service"]).args([
        "/usr/lib/postgresql/13/bin/psql",
        "-tA",
        url,
        "-c",
        sql,
    ]));
    assert!(o.status.success(), "psql {sql}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Every app's answer in project `project`: (app, body), asserting each answered 200.
fn answers<'a>(
    server: &Server,
    project: &str,
    stacks: &[(&str, &'a str)],
) -> Vec<(&'a str, String)> {
    stacks
        .iter()
        .map(|(_, app)| {
            let (code, body) = server
                .get(&format!("{app}.main.{project}.localhost"), "/")
                .unwrap_or_else(|| panic!("{app} does not answer:\n{}", server.server_log()));
            assert_eq!(code, 200, "{app}: {body}");
            (*app, body.trim().to_string())
        })
        .collect()
}

/// The stacks real configs ask for that no other test builds: each built on demand (its
/// time printed), an app on each answers with its runtime's version, and PostgreSQL 13
/// keeps a row through a redeploy and a restart of every container.
#[test]
fn stacks_real_configs_ask_for_build_and_apps_and_postgresql_13_run_on_them() {
    for (stack, _) in REAL_CONFIG_STACKS {
        cached_stack(stack);
    }
    let stacks = cached_stack("postgresql:13");
    let mut server = Server::start_with(&[("SLIPWAY_STACKS_DIR", &stacks.to_string_lossy())]);
    let dir = server.dir.path().join("cover");
    std::fs::create_dir_all(&dir).unwrap();
    let app = App { dir };
    let (mut config, routes) = version_apps(&app, &REAL_CONFIG_STACKS);
    config.push_str("services:\n  db:\n    type: postgresql:13\n");
    config.push_str(&routes);
    app.write(".upsun/config.yaml", &config);
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("one app per stack");
    let o = server.git(&app.dir, &["push", &server.remote("cover"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    let versions = |server: &Server| {
        let got = answers(server, "cover", &REAL_CONFIG_STACKS);
        for ((stack, _), (app, body)) in REAL_CONFIG_STACKS.iter().zip(&got) {
            let want = match *stack {
                "nodejs:18" => "v18.",
                "nodejs:16" => "v16.20.2",
                "golang:1.19" => "go1.19.",
                _ => "3.9.",
            };
            assert!(body.starts_with(want), "{app} on {stack}: {body}");
        }
    };
    versions(&server);

    // PostgreSQL 13 (bullseye's) takes a row, which a redeploy and a restart of every
    // container (`slipway down`, then `serve`) keep.
    let (code, url) = server.get("py.main.cover.localhost", "/dburl").unwrap();
    assert_eq!(code, 200, "{url}");
    assert!(
        psql13(&server, &url, "SHOW server_version_num").starts_with("13"),
        "not PostgreSQL 13"
    );
    psql13(
        &server,
        &url,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('from 13')",
    );
    app.write("py/VERSION", "2\n");
    app.commit("redeploy");
    let o = server.git(&app.dir, &["push", &server.remote("cover"), "main"]);
    assert!(o.status.success(), "push 2: {}", text(&o));
    assert_eq!(psql13(&server, &url, "SELECT v FROM kept"), "from 13");
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    server.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while server.get("py.main.cover.localhost", "/").map(|(c, _)| c) != Some(200) {
        assert!(
            std::time::Instant::now() < deadline,
            "not back within 120s:\n{}",
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    versions(&server);
    assert_eq!(psql13(&server, &url, "SELECT v FROM kept"), "from 13");
}

/// `slipway stack check` of one stack resolves it against the real mirror and npm
/// registry; a mirror that cannot be reached is an error naming the suite, not a pass.
#[test]
fn stack_check_resolves_a_stack_against_its_sources() {
    let o = run(Command::new(slipway_bin()).args(["stack", "check", "nodejs:16"]));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("nodejs:16: ok (") && out.contains(" packages from bookworm)"),
        "{out}"
    );
    let o = run(Command::new(slipway_bin()).args([
        "stack",
        "check",
        "python:3.11",
        "--debian-mirror",
        "http://127.0.0.1:1/debian",
        "--debian-security-mirror",
        "none",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("fetching Debian bookworm's package lists"),
        "{}",
        text(&o)
    );
    let o = run(Command::new(slipway_bin()).args(["stack", "check", "pyhton:3.11"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// Build each of `stacks` (`(stack, app name)`) once per machine into the shared cache (its
/// time printed), push one project `project` with an app on each, and return each app's
/// answer: its runtime's version.
fn versions_on(project: &str, stacks: &[(&str, &'static str)]) -> Vec<(&'static str, String)> {
    for (stack, _) in stacks {
        cached_stack(stack);
    }
    let server = Server::start();
    let dir = server.dir.path().join(project);
    std::fs::create_dir_all(&dir).unwrap();
    let app = App { dir };
    let (config, routes) = version_apps(&app, stacks);
    app.write(".upsun/config.yaml", &format!("{config}{routes}"));
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("one app per stack");
    let o = server.git(&app.dir, &["push", &server.remote(project), "main"]);
    assert!(
        o.status.success(),
        "push: {}\n{}",
        text(&o),
        server.server_log()
    );
    answers(&server, project, stacks)
}

/// The Node.js stacks no other test builds (issue 13): 12, 14, 21 and 24 from the npm
/// registry on bookworm, 20 Debian's on trixie; an app on each answers `process.version`.
#[test]
fn nodejs_12_14_20_21_and_24_build_and_their_apps_run_the_node_asked_for() {
    let got = versions_on(
        "nodes",
        &[
            ("nodejs:12", "n12"),
            ("nodejs:14", "n14"),
            ("nodejs:20", "n20"),
            ("nodejs:21", "n21"),
            ("nodejs:24", "n24"),
        ],
    );
    let want = ["v12.22.12", "v14.21.3", "v20.", "v21.7.3", "v24.22.3"];
    for ((app, body), want) in got.iter().zip(want) {
        assert!(body.starts_with(want), "{app}: {body}");
    }
}

/// Ruby 3.1 (bookworm), Java 17 (bookworm) and Java 25 (trixie), which no other test builds
/// (issue 13): an app on each answers `RUBY_VERSION` or `java.version` (compiled by the
/// build hook's `javac`).
#[test]
fn ruby_3_1_java_17_and_java_25_build_and_their_apps_run_the_version_asked_for() {
    let got = versions_on(
        "jvmruby",
        &[("ruby:3.1", "rb31"), ("java:17", "j17"), ("java:25", "j25")],
    );
    let want = ["3.1.", "17.", "25"];
    for ((app, body), want) in got.iter().zip(want) {
        assert!(body.starts_with(want), "{app}: {body}");
    }
}

/// A Node.js server answering, on `/`, the `valkey_version` of `INFO server` of its `cache`
/// relationship.
const VALKEY_INFO_SERVER: &str = r#"const http = require("http");
const net = require("net");
const rels = JSON.parse(Buffer.from(process.env.PLATFORM_RELATIONSHIPS, "base64").toString());
http.createServer((req, res) => {
  const { host, port } = rels.cache[0];
  let got = "";
  const c = net.connect(port, host, () => c.write("INFO server\r\n"));
  c.on("data", (d) => {
    got += d;
    const m = got.match(/valkey_version:(\S+)/);
    if (m) {
      c.destroy();
      res.end(m[1] + "\n");
    }
  });
  c.on("end", () => res.end("no valkey_version in " + got + "\n"));
  c.on("error", (e) => res.end("error " + e.message + "\n"));
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

/// Valkey 8.1 (trixie), which no other test builds (issue 13): the service starts on its
/// stack and an app reads the version from its `INFO server`.
#[test]
fn valkey_8_1_builds_and_an_app_reads_its_version_from_info_server() {
    cached_stack("valkey:8.1");
    let server = Server::start();
    let dir = server.dir.path().join("kv");
    std::fs::create_dir_all(&dir).unwrap();
    let app = App { dir };
    app.write(
        ".platform.app.yaml",
        "name: app\ntype: 'nodejs:22'\nrelationships:\n  cache: 'cache:valkey'\nweb:\n  commands:\n    start: node server.js\n",
    );
    app.write(".platform/services.yaml", "cache:\n  type: valkey:8.1\n");
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'app:http'}\n",
    );
    app.write("server.js", VALKEY_INFO_SERVER);
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("valkey");
    let o = server.git(&app.dir, &["push", &server.remote("kv"), "main"]);
    assert!(
        o.status.success(),
        "push: {}\n{}",
        text(&o),
        server.server_log()
    );
    let (code, body) = server.get("main.kv.localhost", "/").expect("answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("8.1."), "{body}");
}

/// Every stack of the catalog is built and run by some test: its `TYPE:VERSION` is named in
/// a test file of this folder.
#[test]
fn every_catalog_stack_is_built_by_some_test() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "rs") {
            sources.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    sources.push_str(&slipway_e2e::TEST_STACKS.join("\n"));
    let untested: Vec<String> = slipway_stack::CATALOG
        .iter()
        .map(|s| s.type_name())
        .filter(|t| {
            !(sources.contains(&format!("\"{t}\""))
                // The base stack runs apps with packages only: `"base:13+clamav"`.
                || sources.contains(&format!("\"{t}+"))
                || sources.contains(&format!("'{t}'"))
                || sources.contains(&format!("type: {t}\\n")))
        })
        .collect();
    assert!(untested.is_empty(), "built by no test: {untested:?}");
}
