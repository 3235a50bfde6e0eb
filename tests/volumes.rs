//! Mounts and disks (spec section 9): an app writes to its mounts over HTTP, and the data
//! survives deploys, a failed deploy, a rollback, a redeploy, a restart, `slipway down` and a
//! `kill -9` of the server mid-deploy; data-losing changes need `-o allow-data-loss`; a full
//! disk is the app's own ENOSPC; a new branch starts with a copy of main's data; a smaller
//! disk shrinks the volume with `-o allow-data-loss` when the data fits, and a shrink killed
//! midway leaves the live release and its data as they were.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway_e2e::{run, text, App, Server};

/// Writes and reads files of its mounts: `/write?f=PATH&v=TEXT`, `/read?f=PATH`,
/// `/fill?f=PATH&mb=N` (writes N MB, answers with the error), `/ro` (a write outside the mounts),
/// `/rels` (the names of its relationships).
const SERVER: &str = slipway_e2e::py_app!(
    r#"import urllib.parse
"#,
    r#"        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        try:
            if u.path == "/write":
                with open(q["f"], "w") as f:
                    f.write(q["v"])
                body = "ok"
            elif u.path == "/read":
                body = open(q["f"]).read()
            elif u.path == "/fill":
                try:
                    with open(q["f"], "wb") as f:
                        for _ in range(int(q["mb"])):
                            f.write(b"x" * 1048576)
                            f.flush()
                            os.fsync(f.fileno())
                    body = "fit"
                except OSError as e:
                    body = "errno %d" % e.errno
            elif u.path == "/rels":
                body = ",".join(sorted(json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))))
            elif u.path == "/ro":
                try:
                    open("outside.txt", "w").write("x")
                    body = "writable"
                except OSError as e:
                    body = "errno %d" % e.errno
            else:
                body = open("build.txt").read()
        except Exception as e:
            body = "error %r" % e
        body = body.encode()
"#
);

/// The app's config: `disk` MB, the mounts given (YAML lines), a deploy hook.
fn config(disk: u64, mounts: &str, deploy_hook: &str) -> String {
    format!(
        "name: hello\ntype: python:3.11\ndisk: {disk}\nmounts:\n{mounts}hooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\n    test ! -e data/a.txt\n  deploy: |\n{deploy_hook}web:\n  commands:\n    start: python3 server.py\n"
    )
}

const MOUNTS: &str = "  data:\n    source: local\n    source_path: data\n  legacy: \"shared:files/legacy\"\n  scratch:\n    source: tmp\n";
const HOOK: &str = "    echo deployed >> data/hook.log\n";

fn new_app(server: &Server, disk: u64) -> App {
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", &config(disk, MOUNTS, HOOK));
    app.write("server.py", SERVER);
    app.commit("mounts");
    app
}

fn push_to(server: &Server, app: &App, branch: &str, options: &[&str]) -> (bool, String) {
    let o = server.push_with(app, "demo", &format!("HEAD:refs/heads/{branch}"), options);
    (o.status.success(), text(&o))
}

fn push_ok(server: &Server, app: &App) -> String {
    let (ok, out) = push_to(server, app, "main", &[]);
    assert!(ok, "push: {out}\n{}", server.server_log());
    out
}

fn get(server: &Server, env: &str, path: &str) -> String {
    match server.get(&format!("{env}.demo.localhost"), path) {
        Some((200, b)) => b,
        other => panic!("GET {env} {path}: {other:?}\n{}", server.server_log()),
    }
}

fn read(server: &Server, f: &str) -> String {
    get(server, "main", &format!("/read?f={f}"))
}

fn volume(server: &Server, env: &str, name: &str) -> PathBuf {
    server
        .data
        .join("volumes")
        .join("demo")
        .join(env)
        .join(name)
}

fn mounted(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap_or("")))
}

/// `slipway serve` again, until main answers.
fn serve_again(server: &mut Server) {
    server.serve();
    server.wait_for_page("main.demo.localhost", "/", Duration::from_secs(60));
}

#[test]
fn mount_data_survives_deploys_failures_rollbacks_restarts_down_and_kill() {
    let mut server = Server::start();
    let app = new_app(&server, 64);
    let out = push_ok(&server, &app);
    assert!(out.contains("volume app-hello"), "{out}");
    let data = volume(&server, "main", "app-hello");
    assert!(mounted(&data), "volume not mounted at {}", data.display());

    // Writes through HTTP land on the volume; the rest of /app is read-only.
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=one"), "ok");
    assert_eq!(get(&server, "main", "/write?f=legacy/l.txt&v=old"), "ok");
    assert_eq!(get(&server, "main", "/write?f=scratch/t.txt&v=tmp"), "ok");
    assert_eq!(read(&server, "scratch/t.txt"), "tmp");
    assert_eq!(get(&server, "main", "/ro"), "errno 30");
    assert_eq!(
        std::fs::read_to_string(data.join("files/data/a.txt")).unwrap(),
        "one"
    );
    // The deploy hook and shells see the mounts too.
    assert_eq!(read(&server, "data/hook.log"), "deployed\n");
    let o = server.ssh(&server.key, "main.demo", "cat /app/data/a.txt");
    assert_eq!(text(&o).trim(), "one", "{}", text(&o));

    let mut expected = vec![("data/a.txt".to_string(), "one".to_string())];
    let check = |server: &Server, expected: &[(String, String)], when: &str| {
        for (f, v) in expected {
            assert_eq!(&read(server, f), v, "{f} after {when}");
        }
        assert_eq!(read(server, "legacy/l.txt"), "old", "after {when}");
    };

    // Five deploys, each writing a file.
    for i in 2..=6 {
        app.write("VERSION", &format!("{i}\n"));
        app.commit(&format!("v{i}"));
        push_ok(&server, &app);
        assert_eq!(get(&server, "main", "/"), format!("built-{i}\n"));
        check(&server, &expected, &format!("deploy {i}"));
        let f = format!("data/{i}.txt");
        assert_eq!(get(&server, "main", &format!("/write?f={f}&v=v{i}")), "ok");
        expected.push((f, format!("v{i}")));
    }
    // tmp mounts are not kept across deploys.
    assert!(read(&server, "scratch/t.txt").contains("No such file"));

    // A failing deploy changes nothing.
    app.write(
        ".platform.app.yaml",
        &config(
            64,
            MOUNTS,
            "    echo deployed >> data/hook.log\n    exit 3\n",
        ),
    );
    app.commit("failing hook");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert_eq!(get(&server, "main", "/"), "built-6\n");
    check(&server, &expected, "a failed deploy");
    app.write(".platform.app.yaml", &config(64, MOUNTS, HOOK));
    app.commit("fixed");

    // Rollback and redeploy change code, never data.
    server.admin_ok("rollback demo main");
    assert_eq!(get(&server, "main", "/"), "built-5\n");
    check(&server, &expected, "a rollback");
    server.admin_ok("redeploy demo main");
    check(&server, &expected, "a redeploy");

    // Restart: the volume stays mounted, the containers are adopted.
    server.stop();
    serve_again(&mut server);
    check(&server, &expected, "a restart");

    // down unmounts; serve mounts again.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    assert!(!mounted(&data), "down left the volume mounted");
    serve_again(&mut server);
    assert!(mounted(&data));
    check(&server, &expected, "down and serve");

    // kill -9 of the server while a deploy hook runs.
    app.write(
        ".platform.app.yaml",
        &config(
            64,
            MOUNTS,
            "    echo killed > data/marker.txt\n    sleep 60\n",
        ),
    );
    app.commit("slow hook");
    let mut pusher = server
        .push_command(&app, "demo", "HEAD:refs/heads/main", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git push");
    let marker = data.join("files/data/marker.txt");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the deploy hook never ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = server.pid().expect("server pid");
    run(Command::new("kill").args(["-9", &pid.to_string()]));
    server.stop();
    let _ = pusher.wait();
    serve_again(&mut server);
    check(&server, &expected, "kill -9 mid-deploy");
    assert_eq!(get(&server, "main", "/"), "built-5\n");
}

#[test]
fn data_losing_changes_need_the_option_and_a_full_disk_is_the_apps_own_error() {
    let mut server = Server::start();
    let app = new_app(&server, 32);
    push_ok(&server, &app);
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=kept"), "ok");

    // Write past the disk: the app gets ENOSPC (28); the host and the app carry on.
    assert_eq!(get(&server, "main", "/fill?f=data/big&mb=64"), "errno 28");
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(get(&server, "main", "/write?f=data/big&v=small"), "ok");

    // A new branch starts with a copy of main's data; its writes stay its own.
    let (ok, out) = push_to(&server, &app, "dev", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("copied from main"), "{out}");
    assert_eq!(get(&server, "dev", "/read?f=data/a.txt"), "kept");
    assert_eq!(get(&server, "dev", "/write?f=data/a.txt&v=dev"), "ok");
    assert_eq!(get(&server, "dev", "/read?f=data/a.txt"), "dev");
    assert_eq!(read(&server, "data/a.txt"), "kept");

    // `sync` copies main's data again (admins only); main keeps running.
    assert_eq!(get(&server, "main", "/write?f=data/b.txt&v=later"), "ok");
    let out = server.admin_ok("sync demo dev");
    assert!(
        out.contains("dev now has a copy of main's mount data"),
        "{out}"
    );
    server.wait_for_page("dev.demo.localhost", "/", Duration::from_secs(30));
    assert_eq!(get(&server, "dev", "/read?f=data/a.txt"), "kept");
    assert_eq!(get(&server, "dev", "/read?f=data/b.txt"), "later");
    // A branch made from dev (not main) starts with a copy of dev's data.
    assert_eq!(get(&server, "dev", "/write?f=data/a.txt&v=dev2"), "ok");
    app.write("NOTES", "dev work\n");
    app.commit("dev work");
    let (ok, out) = push_to(&server, &app, "dev", &[]);
    assert!(ok, "{out}");
    let (ok, out) = push_to(&server, &app, "feature", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("copied from dev"), "{out}");
    assert_eq!(get(&server, "feature", "/read?f=data/a.txt"), "dev2");
    assert_eq!(get(&server, "dev", "/write?f=data/a.txt&v=dev3"), "ok");
    // dev moves on: its head is no longer an ancestor of feature's, and feature's parent is
    // still dev (recorded when feature was made), not main.
    app.write("NOTES", "more dev work\n");
    app.commit("more dev work");
    let (ok, out) = push_to(&server, &app, "dev", &[]);
    assert!(ok, "{out}");
    let out = server.admin_ok("sync demo feature");
    assert!(
        out.contains("feature now has a copy of dev's mount data"),
        "{out}"
    );
    server.wait_for_page("feature.demo.localhost", "/", Duration::from_secs(30));
    assert_eq!(get(&server, "feature", "/read?f=data/a.txt"), "dev3");
    // Production has no parent: its data is never replaced by a branch's (`master` too,
    // though its head descends from feature's and dev's).
    let (ok, out) = push_to(&server, &app, "master", &[]);
    assert!(ok, "{out}");
    for env in ["main", "master"] {
        let o = server.ssh(&server.key, "git", &format!("sync demo {env}"));
        assert!(!o.status.success());
        assert!(
            text(&o).contains(&format!("{env} is a production environment")),
            "{}",
            text(&o)
        );
    }

    // Attack: the app turns a folder of its volume into a symlink to the host's root and
    // names it as a mount's source_path; the deploy refuses it and the host is untouched.
    let o = server.ssh(
        &server.key,
        "main.demo",
        "ln -s / /app/data/evil && echo linked",
    );
    assert!(text(&o).contains("linked"), "{}", text(&o));
    let evil = format!("{MOUNTS}  evil:\n    source: local\n    source_path: data/evil\n");
    app.write(".platform.app.yaml", &config(32, &evil, HOOK));
    app.commit("mount through a symlink");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("is not a plain folder"), "{out}");
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(get(&server, "main", "/"), "built-1\n");
    assert!(!Path::new("/evil").exists());

    // A smaller disk is refused, naming it; nothing changes.
    app.write(".platform.app.yaml", &config(16, MOUNTS, HOOK));
    app.commit("smaller disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("shrinking the disk of app `hello`"), "{out}");
    assert!(out.contains("allow-data-loss"), "{out}");
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(
        std::fs::metadata(server.data.join("volumes/demo/main/app-hello.img"))
            .unwrap()
            .len(),
        32 << 20
    );

    // A removed mount is refused without the option, accepted with it.
    let no_data = "  legacy: \"shared:files/legacy\"\n";
    app.write(".platform.app.yaml", &config(32, no_data, "    true\n"));
    app.commit("no data mount");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("mount `data` (local)"), "{out}");
    assert_eq!(read(&server, "data/a.txt"), "kept");
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(ok, "{out}");
    assert!(out.contains("allowed by -o allow-data-loss"), "{out}");
    assert!(read(&server, "data/a.txt").contains("No such file"));

    // A bigger disk grows the volume online; the data is there.
    app.write(".platform.app.yaml", &config(48, MOUNTS, HOOK));
    app.commit("bigger disk");
    let out = push_ok(&server, &app);
    assert!(out.contains("32 MB -> 48 MB"), "{out}");
    assert_eq!(read(&server, "data/a.txt"), "kept");
    if !out.contains("grown online") {
        // Without CAP_SYS_RESOURCE the file system grows at its next mount.
        server.stop();
        let o = server.slipway(&["down"]);
        assert!(o.status.success(), "down: {}", text(&o));
        serve_again(&mut server);
        assert_eq!(read(&server, "data/a.txt"), "kept");
    }
    assert_eq!(get(&server, "main", "/fill?f=data/big&mb=30"), "fit");
    let img = server.data.join("volumes/demo/main/app-hello.img");
    assert_eq!(std::fs::metadata(img).unwrap().len(), 48 << 20);
}

#[test]
fn storage_and_service_mounts_are_shared_by_apps_local_ones_are_not() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let one = |name: &str| {
        format!(
            "  {name}:\n    type: python:3.11\n    source: {{root: {name}}}\n    disk: 32\n    mounts:\n      own: {{source: local, source_path: own}}\n      shared: {{source: storage, source_path: shared}}\n      nfs: {{source: service, service: files, source_path: nfs}}\n    hooks:\n      build: echo built-{name} > build.txt\n    web: {{commands: {{start: python3 server.py}}}}\n"
        )
    };
    app.write(
        ".platform/applications.yaml",
        &format!("{}{}", one("web"), one("api")),
    );
    app.write(
        ".platform/services.yaml",
        "files:\n  type: network-storage:2.0\n  disk: 48\n",
    );
    app.write(
        ".platform/routes.yaml",
        "\"http://{default}/\": {type: upstream, upstream: \"web:http\"}\n\"http://api.{default}/\": {type: upstream, upstream: \"api:http\"}\n",
    );
    app.write("web/server.py", SERVER);
    app.write("api/server.py", SERVER);
    std::fs::remove_file(app.dir.join(".platform.app.yaml")).expect("rm");
    app.commit("two apps");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    let api = |path: &str| match server.get("api.main.demo.localhost", path) {
        Some((200, b)) => b,
        other => panic!("GET api {path}: {other:?}"),
    };
    assert_eq!(get(&server, "main", "/"), "built-web\n");
    assert_eq!(api("/"), "built-api\n");

    for dir in ["own", "shared", "nfs"] {
        let f = format!("{dir}/from-web.txt");
        assert_eq!(get(&server, "main", &format!("/write?f={f}&v=web")), "ok");
        let seen = api(&format!("/read?f={f}"));
        if dir == "own" {
            assert!(seen.contains("No such file"), "{dir}: {seen}");
        } else {
            assert_eq!(seen, "web", "{dir}");
        }
    }
    let vols = server.data.join("volumes/demo/main");
    for (name, mb) in [
        ("app-web", 32),
        ("app-api", 32),
        ("storage", 32),
        ("service-files", 48),
    ] {
        let len = std::fs::metadata(vols.join(format!("{name}.img")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert_eq!(len, mb << 20, "{name}");
    }
}

#[test]
fn sync_streams_its_output_while_it_runs() {
    let server = Server::start();
    let app = new_app(&server, 32);
    push_ok(&server, &app);
    let (ok, out) = push_to(&server, &app, "dev", &[]);
    assert!(ok, "{out}");
    // A deploy of dev that holds its lock for a while: sync waits for it, and says so at once.
    app.write(".platform.app.yaml", &config(32, MOUNTS, "    sleep 8\n"));
    app.commit("slow deploy hook");
    let mut pusher = server
        .push_command(&app, "demo", "HEAD:refs/heads/dev", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git push");
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while db
        .query_row(
            "SELECT id FROM activity WHERE status = 'running' AND kind = 'push' AND environment = 'dev'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .is_err()
    {
        assert!(Instant::now() < deadline, "the push of dev never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut sync = Command::new("ssh")
        .args(server.ssh_command(&server.key).split_whitespace().skip(1))
        .args([
            "-p",
            &server.ssh_port.to_string(),
            "git@127.0.0.1",
            "sync demo dev",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(sync.stdout.take().unwrap()));
    let first = lines.next().expect("a line").expect("a line");
    let push_running = pusher.try_wait().expect("try_wait").is_none();
    assert!(
        first.contains("waiting: another deploy of dev is running"),
        "{first}"
    );
    assert!(
        push_running,
        "sync's first line came only after the push it waited for"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(sync.wait().unwrap().success(), "{rest:?}");
    assert!(pusher.wait().unwrap().success());
    let rest = rest.join("\n");
    assert!(rest.contains("-----> copied"), "{rest}");
    assert!(
        rest.contains("dev now has a copy of main's mount data"),
        "{rest}"
    );
}

/// No leftover of a shrink beside the volume `app-hello` of main.
fn no_shrink_leftovers(server: &Server) {
    let dir = server.data.join("volumes/demo/main");
    for f in [
        "app-hello.img.shrink",
        "app-hello.img.old",
        "app-hello.shrinking",
        "app-hello.shrink",
    ] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
}

fn image_mb(server: &Server) -> u64 {
    std::fs::metadata(server.data.join("volumes/demo/main/app-hello.img"))
        .expect("image")
        .len()
        >> 20
}

/// Push `git push -o allow-data-loss` in the background.
fn push_in_background(server: &Server, app: &App) -> std::process::Child {
    server
        .push_command(app, "demo", "HEAD:refs/heads/main", &["allow-data-loss"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git push")
}

/// kill -9 of the server, and `serve` again.
fn kill_and_serve_again(server: &mut Server, pusher: &mut std::process::Child) {
    let pid = server.pid().expect("server pid");
    run(Command::new("kill").args(["-9", &pid.to_string()]));
    server.stop();
    let _ = pusher.wait();
    serve_again(server);
}

#[test]
fn a_smaller_disk_shrinks_with_the_option_when_the_data_fits_and_a_killed_shrink_changes_nothing() {
    let mut server = Server::start();
    let app = new_app(&server, 64);
    push_ok(&server, &app);
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=kept"), "ok");
    assert_eq!(get(&server, "main", "/fill?f=data/big&mb=20"), "fit");
    let data = volume(&server, "main", "app-hello");

    // Too much data for 16 MB: refused with the option too, naming the mount, the data it
    // holds and the size; nothing changed.
    app.write(".platform.app.yaml", &config(16, MOUNTS, HOOK));
    app.commit("smaller disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("shrinking the disk of app `hello` from 64 MB to 16 MB"),
        "{out}"
    );
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("mount `data` of app `hello`")
            && out.contains("on volume app-hello hold 2")
            && out.contains("cannot shrink from 64 MB to 16 MB")
            && out.contains("nothing was changed"),
        "{out}"
    );
    assert_eq!(image_mb(&server), 64);
    no_shrink_leftovers(&server);
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(get(&server, "main", "/"), "built-1\n");

    // It fits once the big file is gone. A kill -9 while the new release's deploy hook runs
    // on the shrunk volume: after the restart the live release has its old volume back, with
    // what it wrote after the copy.
    assert_eq!(get(&server, "main", "/write?f=data/big&v=small"), "ok");
    app.write(
        ".platform.app.yaml",
        &config(
            16,
            MOUNTS,
            "    echo killed > data/marker.txt\n    sleep 60\n",
        ),
    );
    app.commit("smaller disk, slow hook");
    let mut pusher = push_in_background(&server, &app);
    let marker = data.join("files/data/marker.txt");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the deploy hook never ran\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(image_mb(&server), 16, "the hook runs on the shrunk volume");
    assert_eq!(get(&server, "main", "/write?f=data/after.txt&v=live"), "ok");
    kill_and_serve_again(&mut server, &mut pusher);
    assert_eq!(image_mb(&server), 64);
    no_shrink_leftovers(&server);
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(read(&server, "data/after.txt"), "live");
    assert!(read(&server, "data/marker.txt").contains("No such file"));
    assert_eq!(get(&server, "main", "/"), "built-1\n");

    // A kill -9 while the volume is copied (whatever step it lands on): the same.
    app.write(".platform.app.yaml", &config(16, MOUNTS, HOOK));
    app.commit("smaller disk again");
    let mut pusher = push_in_background(&server, &app);
    let copying = server.data.join("volumes/demo/main/app-hello.img.shrink");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !copying.exists() {
        assert!(
            Instant::now() < deadline,
            "the shrink never started\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_and_serve_again(&mut server, &mut pusher);
    assert_eq!(image_mb(&server), 64);
    no_shrink_leftovers(&server);
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(read(&server, "data/after.txt"), "live");
    assert_eq!(get(&server, "main", "/"), "built-1\n");

    // Shrunk: the data is there and the new size is enforced.
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("shrunk 64 MB -> 16 MB"), "{out}");
    assert_eq!(image_mb(&server), 16);
    no_shrink_leftovers(&server);
    assert_eq!(read(&server, "data/a.txt"), "kept");
    assert_eq!(read(&server, "data/after.txt"), "live");
    assert_eq!(get(&server, "main", "/fill?f=data/f&mb=30"), "errno 28");
    assert!(mounted(&data));
}

/// A worker with its own mounts, disk and relationships: writes what it sees to its mounts.
const WORKER: &str = r#"import base64, json, os, socket, time
rels = sorted(json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"])))
try:
    s = socket.create_connection(("kv.internal", 6379), timeout=5)
    s.sendall(b"PING\r\n")
    pong = s.recv(16).decode().strip()
except Exception as e:
    pong = repr(e)
open("data/w.txt", "w").write("worker-data")
open("shared/w.txt", "w").write("rels=%s pong=%s" % (",".join(rels), pong))
while True:
    time.sleep(1)
"#;

#[test]
fn a_worker_has_its_own_mounts_disk_and_relationships_and_a_deleted_branch_loses_its_volumes() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndisk: 64\nrelationships:\n  cache: \"cache:redis\"\nmounts:\n  data: {source: local, source_path: data}\n  shared: {source: storage, source_path: shared}\nhooks:\n  build: echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\nworkers:\n  queue:\n    disk: 32\n    mounts:\n      data: {source: local, source_path: data}\n      shared: {source: storage, source_path: shared}\n    relationships:\n      kv: \"cache:redis\"\n    commands:\n      start: python3 worker.py\n",
    );
    app.write(".platform/services.yaml", "cache:\n  type: redis:7.0\n");
    app.write("server.py", SERVER);
    app.write("worker.py", WORKER);
    app.commit("a worker with its own mounts");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    // Its mounts, disk and relationships are acted on: no warning that they are ignored.
    assert!(!out.contains("does not act on yet"), "{out}");

    // The storage mount is shared, the local one is the worker's own, on its own disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let b = read(&server, "shared/w.txt");
        if b.starts_with("rels=") {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never wrote: {b}\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    // Its relationships replace the app's: `kv` only, and it answers.
    assert_eq!(seen, "rels=kv pong=+PONG");
    assert_eq!(get(&server, "main", "/rels"), "cache");
    assert!(read(&server, "data/w.txt").contains("No such file"));
    let vols = server.data.join("volumes/demo/main");
    let wdata = vols.join("worker-hello.queue/files/data/w.txt");
    assert_eq!(std::fs::read_to_string(&wdata).unwrap(), "worker-data");
    for (name, mb) in [
        ("app-hello", 64),
        ("worker-hello.queue", 32),
        ("storage", 64),
    ] {
        let len = std::fs::metadata(vols.join(format!("{name}.img")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert_eq!(len, mb << 20, "{name}");
    }

    // A branch gets copies; deleting it removes them (and says so), main keeps its own.
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=main"), "ok");
    let (ok, out) = push_to(&server, &app, "feature", &[]);
    assert!(ok, "{out}");
    assert_eq!(get(&server, "feature", "/read?f=data/a.txt"), "main");
    let feature = server.data.join("volumes/demo/feature");
    assert!(feature.join("worker-hello.queue.img").exists());
    let o = server.push_with(&app, "demo", ":feature", &["allow-data-loss"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("feature deleted: its volumes are removed")
            && out.contains("app-hello (")
            && out.contains("worker-hello.queue (")
            && out.contains("service-cache ("),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<String> = std::fs::read_dir(&feature)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if left.iter().all(|f| !f.ends_with(".img")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "volumes of the deleted branch left: {left:?}\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!mounted(&feature.join("app-hello")));
    assert_eq!(read(&server, "data/a.txt"), "main");
    assert_eq!(std::fs::read_to_string(&wdata).unwrap(), "worker-data");
}

/// The files left in `dir` (none when it is gone).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_deleted_branchs_volume_removal_killed_midway_finishes_at_the_next_start_and_spares_live_ones()
{
    // The test hook holds the removal while this file exists: the server is killed there.
    let hold_dir = tempfile::tempdir().unwrap();
    let hold = hold_dir.path().join("hold");
    let mut server =
        Server::start_with(&[("SLIPWAY_TEST_HOLD_VOLUME_REMOVAL", hold.to_str().unwrap())]);
    let app = new_app(&server, 64);
    push_ok(&server, &app);
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=main"), "ok");
    let (ok, out) = push_to(&server, &app, "feature", &[]);
    assert!(ok, "{out}");
    assert_eq!(
        get(&server, "feature", "/write?f=data/b.txt&v=feature"),
        "ok"
    );
    let feature = server.data.join("volumes/demo/feature");
    assert!(feature.join("app-hello.img").exists());

    // Deleting it would delete its mounts' data: refused without -o allow-data-loss, the
    // branch and its environment kept, serving its data.
    let o = server.git(&app.dir, &["push", &server.remote("demo"), ":feature"]);
    assert!(
        !o.status.success(),
        "deleted without the option: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("would delete the data of environment feature (app-hello")
            && text(&o).contains("git push -o allow-data-loss"),
        "{}",
        text(&o)
    );
    assert_eq!(get(&server, "feature", "/read?f=data/b.txt"), "feature");
    assert!(!feature.join(".removing").exists());
    let o = server.git(&app.dir, &["ls-remote", &server.remote("demo"), "feature"]);
    assert!(text(&o).contains("refs/heads/feature"), "{}", text(&o));

    // The branch is deleted (with the option); the server is killed after the removal was
    // recorded and before any volume went.
    std::fs::write(&hold, "").unwrap();
    let o = server.push_with(&app, "demo", ":feature", &["allow-data-loss"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server.server_log().contains("volume removal held") {
        assert!(Instant::now() < deadline, "{}", server.server_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    server.kill9();
    assert!(
        feature.join(".removing").exists(),
        "{:?}",
        files_in(&feature)
    );
    assert!(feature.join("app-hello.img").exists());
    std::fs::remove_file(&hold).unwrap();

    // The next start finishes it: every volume of the branch and the marker gone, main's
    // data untouched.
    serve_again(&mut server);
    let deadline = Instant::now() + Duration::from_secs(60);
    while feature.exists() {
        assert!(
            Instant::now() < deadline,
            "left of the deleted branch: {:?}\n{}",
            files_in(&feature),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!mounted(&feature.join("app-hello")));
    assert_eq!(read(&server, "data/a.txt"), "main");

    // A marker beside the volumes of a live environment (main): its volumes are kept, the
    // marker dropped.
    let main = server.data.join("volumes/demo/main");
    std::fs::write(main.join(".removing"), "").unwrap();
    server.stop();
    serve_again(&mut server);
    let deadline = Instant::now() + Duration::from_secs(60);
    while main.join(".removing").exists() {
        assert!(Instant::now() < deadline, "{}", server.server_log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(main.join("app-hello.img").exists(), "{:?}", files_in(&main));
    assert_eq!(read(&server, "data/a.txt"), "main");
    assert_eq!(get(&server, "main", "/write?f=data/c.txt&v=after"), "ok");
}

#[test]
fn a_mount_backup_and_a_branch_copy_of_the_same_volume_at_once_both_go_through() {
    let server = Server::start();
    let app = new_app(&server, 64);
    push_ok(&server, &app);
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=main"), "ok");
    assert_eq!(get(&server, "main", "/fill?f=data/big&mb=24"), "fit");

    // Backups of main one after another for as long as a branch push copies its volumes:
    // each freezes the volume the copy freezes; none fails, nor does the push.
    let pushing = std::sync::atomic::AtomicBool::new(true);
    let backups = std::thread::scope(|s| {
        let taker = s.spawn(|| {
            let mut n = 0;
            while pushing.load(std::sync::atomic::Ordering::SeqCst) || n == 0 {
                let o = server.ssh(&server.key, "git", "backup create demo main");
                assert!(o.status.success(), "backup {n}: {}", text(&o));
                n += 1;
            }
            n
        });
        let (ok, out) = push_to(&server, &app, "feature", &[]);
        pushing.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(ok, "{out}\n{}", server.server_log());
        taker.join().unwrap()
    });
    assert!(backups >= 1);
    assert_eq!(get(&server, "feature", "/read?f=data/a.txt"), "main");
    let o = server.ssh(&server.key, "git", "backup ls demo main --json");
    assert!(o.status.success(), "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), backups, "{list}");

    // The last backup holds every byte: restored after main's files change.
    assert_eq!(get(&server, "main", "/write?f=data/a.txt&v=changed"), "ok");
    let out = server.admin_ok(&format!("backup restore demo main {backups}"));
    assert!(
        out.contains(&format!("restored from backup {backups}")),
        "{out}"
    );
    assert_eq!(read(&server, "data/a.txt"), "main");
    let size = get(&server, "main", "/read?f=data/big").len();
    assert_eq!(size, 24 << 20);
}
