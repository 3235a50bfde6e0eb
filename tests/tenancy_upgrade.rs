//! A data dir from an older Slipway whose project uids were in another range (issue 13):
//! everything a project's containers and builds keep across a restart (mount folders on the
//! app's own volume, on the shared `storage` volume and `tmp` mounts, a PostgreSQL service's
//! data volume, the build cache `/cache`) is found owned by the old uid, and after `serve`
//! the app reads and writes all of it, the service keeps its rows and the next build uses
//! its cache, with not a byte lost.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway_e2e::{run, text, App, Server};

/// Writes one file per mount (`/write`, the uploads one readable by its owner only), then
/// reads, appends to and adds a file in each (`/check`); every start appends to `starts.txt`.
const SERVER_PY: &str = slipway_e2e::py_app!(
    "MOUNTS = [\"uploads\", \"shared\", \"scratch\"]\n",
    r#"        out = []
        for m in MOUNTS:
            p = "/app/%s/kept.txt" % m
            try:
                if self.path == "/write":
                    with open(p, "w") as f:
                        f.write("kept-%s\n" % m)
                    if m == "uploads":
                        os.chmod(p, 0o600)
                    out.append("%s wrote" % m)
                elif self.path == "/check":
                    with open(p) as f:
                        before = f.read()
                    with open(p, "a") as f:
                        f.write("more\n")
                    with open("/app/%s/new.txt" % m, "w") as f:
                        f.write("new\n")
                    out.append("%s read=%r appended" % (m, before))
                else:
                    out.append("%s up" % m)
            except OSError as e:
                out.append("%s FAILED %s" % (m, e))
        body = ("\n".join(out) + "\n").encode()
"#
);

/// The build hook reports what an earlier build left in `/cache`, then adds to it (a file
/// only its owner may read or write).
const APP_YAML: &str = "name: hello\ntype: python:3.11\ndisk: 64\n\
relationships:\n  database: \"db:postgresql\"\n\
mounts:\n  uploads: {source: local, source_path: uploads}\n  shared: {source: storage, source_path: shared}\n  scratch: {source: tmp, source_path: scratch}\n\
hooks:\n  build: |\n    set -e\n    if [ -f $PLATFORM_CACHE_DIR/seen ]; then echo \"cache-had $(cat $PLATFORM_CACHE_DIR/seen | tr '\\n' ' ')\"; fi\n    \
echo \"build-$(cat VERSION)\" >> $PLATFORM_CACHE_DIR/seen\n    chmod 600 $PLATFORM_CACHE_DIR/seen\n\
web:\n  commands:\n    start: echo \"start $(date +%s%N)\" >> /app/uploads/starts.txt && exec python3 server.py\n";

/// A uid of the range an older Slipway gave projects (`3_000_000_000 + N`).
const OLD_UID: u32 = 3_000_000_007;

/// Give every entry below `dir` owned by `uid` to [`OLD_UID`] (links themselves); returns
/// how many.
fn give_to_old_uid(dir: &Path, uid: u32) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.uid() == uid {
            std::os::unix::fs::lchown(&p, Some(OLD_UID), Some(OLD_UID)).unwrap();
            n += 1;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    n
}

/// Entries below `dir` owned by `uid` (or in its group).
fn owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.uid() == uid || meta.gid() == uid {
            found.push(p.display().to_string());
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    found
}

/// `sql` in the PostgreSQL service, as its own user, over its local socket.
fn psql(server: &Server, sql: &str) -> String {
    let o = run(server
        .runc()
        .args(["exec", "demo.main.db.service"])
        .args([
            "/usr/lib/postgresql/15/bin/psql",
            "-h",
            "/tmp",
            "-U",
            "main",
        ])
        .args(["-d", "main", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]));
    assert!(
        o.status.success(),
        "{sql}: {}\n{}",
        text(&o),
        server.server_log()
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The app's answer to `path`, waiting (up to 90 s) for it to answer 200.
fn get(server: &Server, path: &str) -> String {
    server.wait_for_page("main.demo.localhost", path, Duration::from_secs(90))
}

#[test]
fn data_left_under_an_older_project_uid_is_given_to_the_new_one_and_nothing_is_lost() {
    let mut server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", APP_YAML);
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 256\n",
    );
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'hello:http'}\n",
    );
    app.write("server.py", SERVER_PY);
    app.commit("mounts, a service and a build cache");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(o.status.success(), "{}\n{}", text(&o), server.server_log());
    let wrote = get(&server, "/write");
    assert_eq!(wrote.matches(" wrote").count(), 3, "{wrote}");
    psql(
        &server,
        "CREATE TABLE kept (n int, s text); INSERT INTO kept SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    );
    let sum = psql(
        &server,
        "SELECT md5(string_agg(s, ',' ORDER BY n)) FROM kept",
    );

    let vols = server.data.join("volumes/demo/main");
    let uid = std::fs::metadata(vols.join("app-hello/files/uploads"))
        .unwrap()
        .uid();
    assert!(uid >= 0x7000_0000, "project uid {uid}");

    // As an older Slipway left it: stopped, every file of the project under its old uid.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    let at = server.dir.path().join("image");
    std::fs::create_dir_all(&at).unwrap();
    let mut given = Vec::new();
    // The volumes, and the build cache: a disk of its own too, whose `files/` is the cache.
    let images = [
        ("app-hello", vols.join("app-hello.img"), ""),
        ("storage", vols.join("storage.img"), ""),
        ("service-db", vols.join("service-db.img"), ""),
        (
            "cache",
            server.data.join("cache/demo/main/hello.img"),
            "files",
        ),
    ];
    for (image, img, inside) in &images {
        let o = run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(img)
            .arg(&at));
        assert!(o.status.success(), "mount {}: {}", img.display(), text(&o));
        given.push((*image, give_to_old_uid(&at.join(inside), uid)));
        if *image == "app-hello" {
            // The folder already given but not what is in it (a walk cut short, or the old
            // release's container writing under its old uid meanwhile): found all the same.
            std::os::unix::fs::lchown(at.join("files/uploads"), Some(uid), Some(uid)).unwrap();
        }
        let o = run(Command::new("umount").arg(&at));
        assert!(o.status.success(), "umount: {}", text(&o));
    }
    for (what, n) in &given {
        assert!(*n > 0, "nothing of {what} was the project's: {given:?}");
    }

    server.serve();
    // The app started again (its start appended), reads what it wrote (the file only its
    // owner reads too), appends to it and adds files, in each mount.
    let checked = get(&server, "/check");
    for m in ["uploads", "shared", "scratch"] {
        assert!(
            checked.contains(&format!("{m} read='kept-{m}\\n' appended")),
            "{m}: {checked}\n{}",
            server.server_log()
        );
    }
    assert!(!checked.contains("FAILED"), "{checked}");
    let starts = std::fs::read_to_string(vols.join("app-hello/files/uploads/starts.txt")).unwrap();
    assert_eq!(starts.lines().count(), 2, "{starts}");
    // The service kept its rows, and takes more.
    assert_eq!(
        psql(
            &server,
            "SELECT md5(string_agg(s, ',' ORDER BY n)) FROM kept"
        ),
        sum
    );
    psql(&server, "INSERT INTO kept VALUES (1001, 'after')");
    assert_eq!(psql(&server, "SELECT count(*) FROM kept"), "1001");
    // Nothing of the project is left under the old uid.
    for dir in [
        vols.join("app-hello/files"),
        vols.join("storage/files"),
        vols.join("service-db/data"),
    ] {
        assert_eq!(owned_by(&dir, OLD_UID), Vec::<String>::new());
    }

    // The next build reads and extends its cache, left under the old uid too.
    app.write("VERSION", "2\n");
    app.commit("v2");
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("cache-had build-1"), "{out}");
    let cache = server.build_cache("demo", "main", "hello");
    assert_eq!(
        std::fs::read_to_string(cache.path.join("seen")).unwrap(),
        "build-1\nbuild-2\n"
    );
    assert_eq!(owned_by(&cache.path, OLD_UID), Vec::<String>::new());
    drop(cache);
    let checked = get(&server, "/check");
    assert!(
        checked.contains("uploads read='kept-uploads\\nmore\\n' appended"),
        "{checked}"
    );
}
