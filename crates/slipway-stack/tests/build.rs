//! Building stacks for real with mmdebstrap from deb.debian.org (needs root and the
//! network; never skipped). Each stack is built once into the folder the end-to-end tests
//! share, `/var/tmp/slipway-test-stacks/shared/` (their `cached_stack`: the same lock file
//! and fingerprint marker, so a changed catalog entry builds anew and a stack built by
//! either is reused by both).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slipway_runtime::{RootFs, Runtime};

use slipway_slug::Archive;
use slipway_stack::catalog::find;
use slipway_stack::{BuildOptions, Language, Stack, StackError, StackStore, Suite};

/// The shared data dir caching every stack the tests use (`SLIPWAY_TEST_STACKS_DIR`, as
/// for the e2e tests, names another).
fn cache_dir(_stack: &Stack) -> PathBuf {
    std::env::var_os("SLIPWAY_TEST_STACKS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/tmp/slipway-test-stacks/shared").to_path_buf())
}

fn store(data: &Path) -> StackStore {
    let archive = Archive::open(&data.join("archive")).unwrap();
    StackStore::new(archive, &data.join("stacks"))
}

/// Build (or reuse) `stack` in the shared cache; prints how long it took and its sizes.
fn cached(stack: &'static Stack) -> PathBuf {
    let data = cache_dir(stack);
    std::fs::create_dir_all(&data).unwrap();
    // The e2e tests' lock and marker (tests/support/lib.rs, `cached_stack`).
    let lock = std::fs::File::create(data.join(format!(".{}.test-lock", stack.tag()))).unwrap();
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let marker = data.join(format!(".{}.fingerprint", stack.tag()));
    let fresh = std::fs::read_to_string(&marker).is_ok_and(|f| f.trim() == stack.fingerprint());
    let started = Instant::now();
    let s = store(&data);
    let mut progress = |l: &str| eprintln!("  {stack}: {l}");
    let (built, root) = if !fresh && s.built(stack).unwrap().is_some() {
        s.build(stack, &BuildOptions::default(), &mut progress)
    } else {
        s.ensure(stack, &BuildOptions::default(), &mut progress)
    }
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&marker, stack.fingerprint()).unwrap();
    drop(lock);
    eprintln!(
        "stack {stack}: ready in {:.1?}, layer {} bytes, unpacked {} bytes",
        started.elapsed(),
        built.archive_size(),
        slipway_stack::dir_size(&root)
    );
    root
}

/// Run `script` with `sh -c` in a container whose root is the stack folder `root`;
/// returns its exit code and output lines.
fn run_in_stack(root: &Path, script: &str) -> (i32, Vec<String>) {
    let data = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("hello.txt"), "hello from app\n").unwrap();
    let rt = Runtime::new(Path::new("runc"), data.path()).unwrap();
    let spec = slipway_runtime::testing::spec(
        RootFs::Stack(root.to_path_buf()),
        "stacktest",
        &["/bin/sh", "-c", script],
        app.path(),
        slipway_runtime::RunAs::for_project("stacktest"),
    );
    let mut lines = Vec::new();
    let code = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(rt.run(&spec, Duration::from_secs(120), &mut |l: &str| {
            // tini's own notes (a signal forwarded after the script exited) are not the
            // script's output.
            if !l.starts_with("[WARN  tini") {
                lines.push(l.to_string())
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    (code, lines)
}

/// A file on the host that no container may see.
struct HostMarker(PathBuf);
impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn python_stacks_from_bookworm_and_trixie() {
    let py311 = find(Language::Python, "3.11").unwrap();
    let py313 = find(Language::Python, "3.13").unwrap();
    assert_eq!((py311.suite, py313.suite), (Suite::Bookworm, Suite::Trixie));
    for (stack, binary) in [(py311, "python3.11"), (py313, "python3.13")] {
        let root = cached(stack);
        assert!(
            root.join("usr/bin").join(binary).is_file(),
            "{binary} in {stack}"
        );
        for mount_point in [
            "app",
            "cache",
            "tmp",
            "proc",
            "dev",
            "sys",
            "etc/hosts",
            "etc/resolv.conf",
        ] {
            assert!(
                root.join(mount_point).exists(),
                "{stack} lacks /{mount_point}"
            );
        }
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("web:x:10000:10000:"), "{passwd}");
        // A container on the stack runs its Python, sees /app, and none of the host.
        let marker = HostMarker(PathBuf::from(format!(
            "/etc/slipway-host-marker-{}",
            std::process::id()
        )));
        std::fs::write(&marker.0, "host only\n").unwrap();
        let script = format!(
            "python3 --version; cat /app/hello.txt; \
             for f in {} /root/.cargo /var/tmp/slipway-test-stacks /work; do \
               if [ -e \"$f\" ]; then echo \"visible: $f\"; fi; done; \
             touch /usr/x 2>/dev/null && echo 'root is writable'; echo done",
            marker.0.display()
        );
        let (code, lines) = run_in_stack(&root, &script);
        assert_eq!(code, 0, "{lines:?}");
        let want = format!("Python {}.", stack.version);
        assert!(lines[0].starts_with(&want), "{stack}: {lines:?}");
        assert_eq!(lines[1..], ["hello from app", "done"], "{stack}");
        drop(marker);

        // Built means tagged: a second ensure reuses it.
        let again = store(&cache_dir(stack)).built(stack).unwrap().unwrap();
        assert_eq!(again.layers.len(), 1);
        assert_eq!(again.labels["org.slipway.stack"], stack.type_name());
    }
}

#[test]
fn nodejs_22_from_the_npm_registry() {
    let stack = find(Language::Nodejs, "22").unwrap();
    let n = stack.node_from_npm.unwrap();
    let root = cached(stack);
    let (code, lines) = run_in_stack(
        &root,
        "node --version; npm --version; node -e 'console.log(require(\"os\").userInfo().username)'; \
         yarn --version; yarnpkg --version; corepack --version; readlink /usr/local/bin/yarn",
    );
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0], format!("v{}", n.node.version), "{lines:?}");
    assert_eq!(lines[1], n.npm.version, "{lines:?}");
    // Containers run as the project's unprivileged user, named `web` on every stack.
    assert_eq!(lines[2], "web", "{lines:?}");
    // yarn 1.x and corepack, pinned like node and npm; `yarn` is yarn itself, not
    // corepack's shim.
    let tool = |name: &str| {
        stack
            .npm_tools
            .iter()
            .find(|t| t.tarball.package == name)
            .map(|t| t.tarball.version)
            .unwrap_or_else(|| panic!("no {name} on {stack}"))
    };
    assert_eq!(lines[3..6], [tool("yarn"), tool("yarn"), tool("corepack")]);
    assert_eq!(
        lines[6], "../lib/node_modules/yarn/bin/yarn.js",
        "{lines:?}"
    );
}

/// Only what is in the data dir after a failed build: the archive's empty layout and the
/// stack's lock file.
fn leftovers(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["stacks", "archive/blobs/sha256"] {
        if let Ok(rd) = std::fs::read_dir(data.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.ends_with(".lock") {
                    out.push(format!("{sub}/{name}"));
                }
            }
        }
    }
    out
}

#[test]
fn an_unreachable_mirror_fails_clearly_and_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let stack = find(Language::Python, "3.11").unwrap();
    let s = store(data.path());
    let err = s
        .ensure(
            stack,
            &BuildOptions::with_mirror("http://127.0.0.1:1/"),
            &mut |_| {},
        )
        .unwrap_err();
    let m = err.to_string();
    assert!(matches!(err, StackError::BuildFailed { .. }), "{m}");
    assert!(m.starts_with("building stack python:3.11: "), "{m}");
    assert!(
        m.contains("127.0.0.1:1"),
        "the message names the mirror: {m}"
    );
    assert_eq!(leftovers(data.path()), Vec::<String>::new());
    assert!(s.built(stack).unwrap().is_none());
}

#[test]
fn a_package_missing_from_the_suite_is_named() {
    let data = tempfile::tempdir().unwrap();
    let stack: &'static Stack = Box::leak(Box::new(Stack {
        packages: &["python3", "python3-no-such-package"],
        ..*find(Language::Python, "3.11").unwrap()
    }));
    let err = store(data.path())
        .ensure(stack, &BuildOptions::default(), &mut |_| {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "building stack python:3.11: Debian bookworm has no package `python3-no-such-package`"
    );
    assert_eq!(leftovers(data.path()), Vec::<String>::new());
}

#[test]
fn concurrent_builds_of_one_stack_wait_for_each_other() {
    use std::sync::mpsc;
    let data = tempfile::tempdir().unwrap();
    let stack = find(Language::Python, "3.13").unwrap();
    let options = BuildOptions::with_mirror("http://127.0.0.1:1/");
    let (tx, rx) = mpsc::channel::<String>();
    let first = {
        let (store, options, tx) = (store(data.path()), options.clone(), tx.clone());
        std::thread::spawn(move || {
            store.ensure(stack, &options, &mut |l| {
                let _ = tx.send(format!("first: {l}"));
            })
        })
    };
    // Once the first holds the build lock, a second build of the same stack waits for it.
    let started = rx
        .iter()
        .find(|l| l.starts_with("first: building stack"))
        .is_some();
    assert!(started);
    let mut second_lines = Vec::new();
    let second =
        store(data.path()).ensure(stack, &options, &mut |l| second_lines.push(l.to_string()));
    assert!(first.join().unwrap().is_err());
    assert!(second.is_err(), "the mirror is unreachable for both");
    assert_eq!(
        second_lines.first().map(String::as_str),
        Some("waiting for another build of stack python:3.13"),
        "{second_lines:?}"
    );
    assert_eq!(leftovers(data.path()), Vec::<String>::new());
}
