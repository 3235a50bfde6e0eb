//! Issue 12, tenant boundaries of builds, each attack performed for real with pushes:
//! a slug planted through a build cache never reaches another project or a more trusted
//! environment, a branch cannot change what `main` restores from a shared cache, set-id
//! files never stay in caches on the host, cache mounts are `nosuid`, and the data dir
//! and the state database are private. The legitimate reuse still happens.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use slipway_e2e::{text, App, Server};

/// Push `refspec` of `app` to `project` with `key`: (accepted, output).
fn push_as(server: &Server, key: &Path, app: &App, project: &str, refspec: &str) -> (bool, String) {
    let o = server.git_as(key, &app.dir, &["push", &server.remote(project), refspec]);
    (o.status.success(), text(&o))
}

/// GET `path` on `host`: (status, body); panics when the router does not answer.
fn get(server: &Server, host: &str, path: &str) -> (u16, String) {
    server
        .get(host, path)
        .unwrap_or_else(|| panic!("no answer for http://{host}{path}\n{}", server.server_log()))
}

/// A static site in `site/` served by python's http.server, built by `hook`, with
/// `caches` (YAML lines under `build.caches`, indented by 8) as its build caches.
fn site(dir: &Path, caches: &str, hook: &str) -> App {
    std::fs::create_dir_all(dir).expect("app dir");
    let app = App {
        dir: dir.to_path_buf(),
    };
    write_config(&app, caches, hook);
    app.write("site/VERSION", "1\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("v1");
    app
}

fn write_config(app: &App, caches: &str, hook: &str) {
    let build = if caches.is_empty() {
        String::new()
    } else {
        format!("    build:\n      caches:\n{caches}")
    };
    let hook: String = hook.lines().map(|l| format!("        {l}\n")).collect();
    app.write(
        ".upsun/config.yaml",
        &format!(
            "applications:\n  web:\n    type: python:3.11\n    source: {{root: site}}\n{build}    hooks:\n      build: |\n{hook}    web:\n      commands:\n        start: python3 -m http.server $PORT --bind 127.0.0.1\nroutes:\n  'http://{{default}}/': {{type: upstream, upstream: 'web:http'}}\n"
        ),
    );
}

/// Finding 1: a contributor of project `a` plants a file through a build cache, then
/// builds project `b`'s exact tree and hook in `a`. `b`'s admin pushing that code builds
/// `b`'s own slug, which holds nothing of `a`'s.
#[test]
fn a_slug_planted_through_a_cache_never_reaches_another_project() {
    let server = Server::start();
    let b_hook = "set -e\necho \"b-site $(cat VERSION)\" > index.html";
    // Project a exists (its admin is the server admin); mallory contributes to it only.
    let a = site(&server.dir.path().join("a"), "", b_hook);
    a.write("site/VERSION", "a\n");
    a.commit("a's own site");
    let (ok, out) = push_as(&server, &server.key, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let mallory = server.add_user_with_role("mallory", "a", "contributor");

    // Mallory's first build on a/dev plants .global/bin/cat in a build cache...
    let cache = "        tools:\n          directory: .global\n";
    write_config(
        &a,
        cache,
        "set -e\nmkdir -p .global/bin\nprintf '#!/bin/sh\\necho planted\\n' > .global/bin/cat\nchmod 755 .global/bin/cat\necho planting > index.html",
    );
    a.write("site/VERSION", "plant\n");
    a.commit("plant");
    let (ok, out) = push_as(&server, &mallory, &a, "a", "main:dev");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("saved build cache tools (.global"), "{out}");

    // ... then builds b's exact tree with b's hook (the cache is not part of the build key).
    write_config(&a, cache, b_hook);
    a.write("site/VERSION", "1\n");
    a.commit("b's tree");
    let (ok, out) = push_as(&server, &mallory, &a, "a", "main:dev");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("restored build cache tools (.global)"),
        "{out}"
    );
    // The plant worked in a itself: the slug of a/dev serves it.
    assert_eq!(
        get(&server, "dev.a.localhost", "/.global/bin/cat"),
        (200, "#!/bin/sh\necho planted\n".to_string())
    );

    // b's admin pushes b's code: b's own build, not a's slug.
    let b = site(&server.dir.path().join("b"), "", b_hook);
    let (ok, out) = push_as(&server, &server.key, &b, "b", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("build web: built sha256:"), "{out}");
    assert!(!out.contains("reused"), "b reused a's slug:\n{out}");
    assert_eq!(get(&server, "main.b.localhost", "/").1, "b-site 1\n");
    assert_eq!(
        get(&server, "main.b.localhost", "/.global/bin/cat").0,
        404,
        "a's planted file is in b's slug"
    );

    // The legitimate path: within b, the same inputs with no cache reuse the slug.
    let (ok, out) = push_as(&server, &server.key, &b, "b", "main:staging");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("build web: reused sha256:"), "{out}");
    assert!(!out.contains("running hooks.build"), "{out}");
    assert_eq!(get(&server, "staging.b.localhost", "/").1, "b-site 1\n");
}

/// Finding 3: a contributor's branch build writes a cache shared between apps; `main`
/// still restores what `main` saved, and a slug the poisoned cache fed on the branch is
/// never deployed to `main`, even for the very same commit. Promotion down from `main`
/// still reuses, and a new branch starts from `main`'s cache.
#[test]
fn a_branch_cannot_reach_main_through_shared_caches() {
    let server = Server::start();
    let cache = "        deps:\n          directory: deps\n          share_between_apps: true\n";
    let honest = "set -e\nmkdir -p deps\n[ -f deps/who ] || echo honest > deps/who\necho \"from $(cat deps/who)\"\ncp deps/who index.html";
    let p = site(&server.dir.path().join("p"), cache, honest);
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(get(&server, "main.p.localhost", "/").1, "honest\n");
    let mallory = server.add_user_with_role("mallory", "p", "contributor");

    // Mallory's branch overwrites the shared cache.
    write_config(
        &p,
        cache,
        "set -e\nmkdir -p deps\necho poisoned > deps/who\ncp deps/who index.html",
    );
    p.commit("poison");
    let (ok, out) = push_as(&server, &mallory, &p, "p", "main:dev");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("saved build cache deps (deps"), "{out}");

    // Then builds main's next commit on the branch: her cache feeds it.
    write_config(&p, cache, honest);
    p.write("site/VERSION", "2\n");
    p.commit("v2");
    let (ok, out) = push_as(&server, &mallory, &p, "p", "main:dev");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("web | from poisoned"), "{out}");
    assert_eq!(get(&server, "dev.p.localhost", "/").1, "poisoned\n");

    // The admin deploys that same commit to main: built from main's own cache.
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("build web: built sha256:") && !out.contains("reused"),
        "main reused the branch's slug:\n{out}"
    );
    assert!(out.contains("restored build cache deps (deps)"), "{out}");
    assert!(out.contains("web | from honest"), "{out}");
    assert_eq!(get(&server, "main.p.localhost", "/").1, "honest\n");

    // From main down to another branch, the slug is reused.
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main:staging");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("build web: reused sha256:"), "{out}");
    assert_eq!(get(&server, "staging.p.localhost", "/").1, "honest\n");

    // A new branch starts from main's cache (trusted), never from another branch's.
    p.write("site/VERSION", "3\n");
    p.commit("v3");
    let (ok, out) = push_as(&server, &mallory, &p, "p", "main:feature");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("restored build cache deps (deps) from main"),
        "{out}"
    );
    assert!(out.contains("web | from honest"), "{out}");
    assert_eq!(get(&server, "feature.p.localhost", "/").1, "honest\n");
}

/// Every regular file under `dir` (links not followed), with its mode.
fn files(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let m = std::fs::symlink_metadata(e.path()).expect("metadata");
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                out.push((e.path(), m.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Findings 4 and 6: set-id files a build leaves in its caches have no set-id bit on
/// the host, the caches are mounted `nosuid,nodev`, and the data dir and what holds
/// variable values are private.
#[test]
fn caches_keep_no_set_id_file_and_the_data_dir_is_private() {
    let server = Server::start();
    let s = site(
        &server.dir.path().join("s"),
        "        deps:\n          directory: deps\n",
        "set -e\nmkdir -p deps\ncp /bin/true deps/root-true\nchmod 4755 deps/root-true\ncp /bin/true \"$PLATFORM_CACHE_DIR/root-true\"\nchmod 6755 \"$PLATFORM_CACHE_DIR/root-true\"\nstat -c 'in-build %a' deps/root-true \"$PLATFORM_CACHE_DIR/root-true\"\ngrep -E ' /(cache|app) ' /proc/self/mountinfo | sed 's/^/mountinfo: /'\necho ok > index.html",
    );
    let (ok, out) = push_as(&server, &server.key, &s, "s", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    // The bits were really set inside the build.
    assert!(out.contains("web | in-build 4755"), "{out}");
    assert!(out.contains("web | in-build 6755"), "{out}");
    // Both where caches land are mounted nosuid and nodev: /cache, and /app (build.caches).
    let mounts: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("mountinfo: ").map(|(_, m)| m))
        .collect();
    for point in ["/cache", "/app"] {
        // ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS ...
        let line = mounts
            .iter()
            .find(|m| m.split_whitespace().nth(4) == Some(point))
            .unwrap_or_else(|| panic!("no {point} mount:\n{out}"));
        let options = line.split_whitespace().nth(5).unwrap_or_default();
        let options: Vec<&str> = options.split(',').collect();
        assert!(
            options.contains(&"nosuid") && options.contains(&"nodev"),
            "{line}"
        );
    }
    assert_eq!(get(&server, "main.s.localhost", "/").1, "ok\n");

    // On the host: the files are there, without a set-id bit.
    let cache = server.build_cache("s", "main", "web");
    for dir in [server.data.join("build-caches/s"), cache.path.clone()] {
        let found = files(&dir);
        let planted: Vec<_> = found
            .iter()
            .filter(|(p, _)| p.ends_with("root-true"))
            .collect();
        assert!(
            !planted.is_empty(),
            "no root-true under {}: {found:?}",
            dir.display()
        );
        for (p, m) in planted {
            assert_eq!(m & 0o6000, 0, "{} is {m:o}", p.display());
            assert_eq!(m & 0o777, 0o755, "{}", p.display());
        }
    }
    drop(cache);

    // Private: the data dir, the state database, the runtime bundles (they hold values).
    assert_eq!(mode(&server.data), 0o700);
    assert_eq!(mode(&server.data.join("state.db")), 0o600);
    let wal = server.data.join("state.db-wal");
    assert!(wal.exists(), "the server keeps the database in WAL mode");
    assert_eq!(mode(&wal), 0o600);
    let bundles: Vec<_> = files(&server.data.join("runtime"))
        .into_iter()
        .filter(|(p, _)| p.ends_with("config.json"))
        .collect();
    assert!(!bundles.is_empty(), "no runtime bundle");
    for (p, m) in bundles {
        assert_eq!(m & 0o077, 0, "{} is {m:o}", p.display());
    }
    // (The archive's blobs are 0644 by its own rule: only the data dir guards them.)

    // A data dir an older version left open becomes private again at the next start.
    let mut server = server;
    server.stop();
    std::fs::set_permissions(&server.data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        server.data.join("state.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    server.serve();
    assert_eq!(mode(&server.data), 0o700);
    assert_eq!(mode(&server.data.join("state.db")), 0o600);
}

/// Issue 13: a build cannot fill the host's disk. Its `/app` and its `/cache` are disks of
/// their own (64 MiB here): a build hook writing past either fails the push with a message
/// naming the limit, writes no more than the limit on the host, and leaves the live release
/// and other projects as they were; a full cache is emptied at the next build.
#[test]
fn a_build_filling_its_disk_fails_alone_and_leaves_the_host_disk_alone() {
    let server = Server::start_with(&[
        ("SLIPWAY_BUILD_DISK", "64M"),
        ("SLIPWAY_BUILD_CACHE_DISK", "64M"),
    ]);
    let a = site(
        &server.dir.path().join("a"),
        "",
        "set -e\necho v1 > index.html",
    );
    let (ok, out) = push_as(&server, &server.key, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(get(&server, "main.a.localhost", "/").1, "v1\n");

    // /app: the write stops at the disk's size; the push fails naming it.
    write_config(
        &a,
        "",
        "set -e\necho v2 > index.html\ndd if=/dev/zero of=big bs=1M count=256 2>/dev/null || { echo \"wrote $(du -m big | cut -f1) MiB\"; exit 1; }",
    );
    a.commit("fills /app");
    let (ok, out) = push_as(&server, &server.key, &a, "a", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("build failed: the build's disk (64 MiB) is full: hooks.build of web exited with status 1"),
        "{out}"
    );
    assert!(out.contains("--build-disk"), "{out}");
    let wrote: u64 = out
        .lines()
        .find_map(|l| l.split_once("web | wrote ").map(|(_, w)| w))
        .and_then(|w| w.trim().trim_end_matches(" MiB").parse().ok())
        .unwrap_or_else(|| panic!("no size written:\n{out}"));
    assert!(wrote <= 64, "wrote {wrote} MiB: {out}");
    assert_eq!(get(&server, "main.a.localhost", "/").1, "v1\n");
    // Nothing of the build is left on the host.
    let left: Vec<_> = std::fs::read_dir(server.data.join("builds"))
        .expect("builds")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // /cache alike.
    write_config(
        &a,
        "",
        "set -e\necho v3 > index.html\ndd if=/dev/zero of=\"$PLATFORM_CACHE_DIR/big\" bs=1M count=256 2>/dev/null",
    );
    a.commit("fills /cache");
    let (ok, out) = push_as(&server, &server.key, &a, "a", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("build failed: the build cache's disk (64 MiB) is full: hooks.build of web exited with status 1"),
        "{out}"
    );
    assert_eq!(get(&server, "main.a.localhost", "/").1, "v1\n");

    // The next build finds room in its cache again.
    write_config(
        &a,
        "",
        "set -e\necho v4 > index.html\necho kept > \"$PLATFORM_CACHE_DIR/kept\"",
    );
    a.commit("fits");
    let (ok, out) = push_as(&server, &server.key, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("the build cache's disk (64 MiB) was full: emptied"),
        "{out}"
    );
    assert_eq!(get(&server, "main.a.localhost", "/").1, "v4\n");
    let cache = server.build_cache("a", "main", "web");
    assert_eq!(
        std::fs::read_to_string(cache.path.join("kept")).expect("kept"),
        "kept\n"
    );
    assert!(!cache.path.join("big").exists());
    drop(cache);

    // Another project builds and deploys as ever.
    let b = site(
        &server.dir.path().join("b"),
        "",
        "set -e\necho b > index.html",
    );
    let (ok, out) = push_as(&server, &server.key, &b, "b", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(get(&server, "main.b.localhost", "/").1, "b\n");
}

/// The entries of the `build.caches` store `store` (their sidecars left out).
fn cache_entries(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".used"))
        .collect();
    names.sort();
    names
}

/// Issue 13: a project's `build.caches` entries together stay under `--build-caches-size`
/// (1 MiB here). Past it, the least recently used entry goes, whatever its age, and the push
/// says which: an entry restored by the last build is kept over a newer one nobody used.
#[test]
fn build_caches_over_the_project_cap_drop_the_least_recently_used() {
    let server = Server::start_with(&[("SLIPWAY_BUILD_CACHES_SIZE", "1M")]);
    let caches =
        "        a: {directory: a, watch: [a.txt]}\n        b: {directory: b, watch: [b.txt]}\n";
    let hook = "set -e\nmkdir -p a b\n[ -f a/blob ] || head -c 300000 /dev/urandom > a/blob\n[ -f b/blob ] || head -c 300000 /dev/urandom > b/blob\necho \"a $(md5sum < a/blob | cut -c1-8)\" > index.html";
    let p = site(&server.dir.path().join("p"), caches, hook);
    p.write("site/a.txt", "1\n");
    p.write("site/b.txt", "1\n");
    p.commit("watched files");
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(!out.contains("dropped an entry"), "{out}");
    let first = get(&server, "main.p.localhost", "/").1;
    let store = |c: &str| server.data.join("build-caches/p/main/web").join(c);
    let a1 = cache_entries(&store("a"));
    assert_eq!(a1.len(), 1, "{a1:?}");
    assert_eq!(cache_entries(&store("b")).len(), 1);

    // `a` is restored (used now), `b` saved anew: 4 entries of 300 kB do not fit in 1 MiB.
    p.write("site/b.txt", "2\n");
    p.commit("b changes");
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("restored build cache a (a)"), "{out}");
    assert!(
        out.contains("dropped an entry of build cache b of web in main (293.0 KiB, the least recently used): the project's build caches are capped at 1.0 MiB (slipway serve --build-caches-size)"),
        "{out}"
    );
    assert!(!out.contains("dropped an entry of build cache a"), "{out}");
    assert_eq!(get(&server, "main.p.localhost", "/").1, first);
    let a = cache_entries(&store("a"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a.contains(&a1[0]), "the entry used last was dropped: {a:?}");
    assert_eq!(cache_entries(&store("b")).len(), 1);
}

/// Issue 13: a build's disk outlives no server. Killed with `kill -9` mid-build, the server
/// leaves the build's image mounted; started again, it removes it. A server taking over by
/// `--upgrade` while the old one builds leaves that build's image alone, and the build ends.
#[test]
fn a_killed_build_leaves_no_disk_and_an_upgrade_keeps_a_running_one() {
    let mut server = Server::start();
    let p = site(
        &server.dir.path().join("p"),
        "",
        "set -e\nsleep 6\necho built > index.html",
    );
    let builds = server.data.join("builds");
    let images = || -> Vec<PathBuf> {
        std::fs::read_dir(&builds)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "img"))
            .collect()
    };
    let wait_for_image = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while images().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no build image");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        images()
    };

    let (key, dir, remote) = (server.key.clone(), p.dir.clone(), server.remote("p"));
    let push = {
        let cmd = server.git_command(&key, &dir, &["push", &remote, "main"]);
        std::thread::spawn(move || {
            let mut cmd = cmd;
            cmd.output().expect("git push")
        })
    };
    let left = wait_for_image();
    server.kill9();
    let _ = push.join();
    assert!(
        left.iter().all(|i| i.exists()),
        "the image went with the server"
    );
    server.serve();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_dir(&builds)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "left in {}: {:?}\n{}",
            builds.display(),
            std::fs::read_dir(&builds).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()),
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // An upgrade during a build: the new server starts (and sweeps) while the old builds.
    let push = {
        let cmd = server.git_command(&key, &dir, &["push", &remote, "main"]);
        std::thread::spawn(move || {
            let mut cmd = cmd;
            cmd.output().expect("git push")
        })
    };
    let building = wait_for_image();
    server.upgrade(std::time::Duration::from_secs(120), |_| {
        assert!(
            building.iter().all(|i| i.exists()),
            "the upgrade removed the image of a running build"
        );
    });
    let o = push.join().expect("push");
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    assert_eq!(get(&server, "main.p.localhost", "/").1, "built\n");
    assert!(images().is_empty(), "{:?}", images());
}

/// Issue 13: a deleted branch takes its build caches with it, its `/cache` image and its
/// `build.caches` entries, and the push says so; `main`'s stay.
#[test]
fn a_deleted_branch_takes_its_build_caches_with_it() {
    let server = Server::start();
    let caches = "        deps: {directory: deps}\n";
    let hook = "set -e\nmkdir -p deps\necho x > deps/x\necho kept > \"$PLATFORM_CACHE_DIR/kept\"\necho ok > index.html";
    let p = site(&server.dir.path().join("p"), caches, hook);
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    // A commit of its own: the branch builds (main's slug is not reused).
    p.write("site/VERSION", "2\n");
    p.commit("v2");
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main:dev");
    assert!(ok, "{out}\n{}", server.server_log());
    let image = |env: &str| server.data.join(format!("cache/p/{env}/web.img"));
    let entries = |env: &str| server.data.join(format!("build-caches/p/{env}"));
    assert!(image("dev").is_file() && entries("dev").is_dir());

    let (ok, out) = push_as(&server, &server.key, &p, "p", ":dev");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("dev deleted: its build caches are removed with it"),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while image("dev").exists()
        || entries("dev").exists()
        || server.data.join("cache/p/dev").exists()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the build caches of dev stay\n{}",
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(image("main").is_file() && entries("main").is_dir());
    let (ok, out) = push_as(&server, &server.key, &p, "p", "main");
    assert!(ok, "{out}\n{}", server.server_log());
}
