//! Service data on volumes (issue 14): a service's data is on a volume of its own sized from
//! its `disk` (a full disk is the service's own error; grown online; shrunk with
//! `-o allow-data-loss` onto a new volume when the data fits), a new
//! branch starts on a consistent copy of its parent's service data (made while the parent
//! takes writes), `sync` copies it again, a service removed with `-o allow-data-loss` goes
//! with its data once the deploy is live, a deleted branch stops its services (its volumes go), and the
//! plain folders of an older Slipway move onto volumes at `serve`.

use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{run, text, App, Server};

const SERVER_PY: &str = slipway_e2e::py_app!("", "        body = b\"ok\"\n");

fn app_yaml(deploy_hook: &str) -> String {
    format!("name: hello\ntype: python:3.11\nhooks:\n  deploy: {deploy_hook}\nweb:\n  commands:\n    start: python3 server.py\n")
}

fn new_app(server: &Server, services: &str) -> App {
    let app = App::with_services(server.dir.path(), &app_yaml("'true'"), services);
    app.write("server.py", SERVER_PY);
    app.commit("with services");
    app
}

fn push_to(server: &Server, app: &App, branch: &str, options: &[&str]) -> (bool, String) {
    let o = server.push_with(app, "demo", &format!("HEAD:refs/heads/{branch}"), options);
    (o.status.success(), text(&o))
}

/// Run `args` in a container (as its own unprivileged user): (succeeded, stdout, stderr).
fn exec(server: &Server, container: &str, args: &[&str]) -> (bool, String, String) {
    let o = run(server.runc().arg("exec").arg(container).args(args));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).trim().to_string(),
    )
}

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// `sql` in the PostgreSQL service `service` of `env`, over its local socket.
fn psql_try(server: &Server, env: &str, service: &str, sql: &str) -> (bool, String, String) {
    exec(
        server,
        &format!("demo.{env}.{service}.service"),
        &[
            PSQL,
            "-h",
            "/tmp",
            "-U",
            "main",
            "-d",
            "main",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )
}

fn psql(server: &Server, env: &str, service: &str, sql: &str) -> String {
    let (ok, out, err) = psql_try(server, env, service, sql);
    assert!(ok, "{sql} in {env}/{service}: {out}\n{err}");
    out
}

fn mounted(path: &std::path::Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy().to_string();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn wait_for(what: &str, server: &Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within 90s\n{}",
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

const MIB: u64 = 1024 * 1024;

#[test]
fn postgresql_data_is_on_a_sized_volume_and_branches_get_a_consistent_copy() {
    // python:3.11 and postgresql:15 are test stacks (the shared folder).
    let server = Server::start();
    let app = new_app(
        &server,
        "db:\n  type: postgresql:15\n  disk: 256\nfull:\n  type: postgresql:15\n  disk: 64\n",
    );
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "push: {out}\n{}", server.server_log());
    assert!(out.contains("service db: 256 MB disk, new"), "{out}");
    let vols = server.data.join("volumes/demo/main");
    assert_eq!(
        std::fs::metadata(vols.join("service-db.img"))
            .unwrap()
            .len(),
        256 * MIB
    );
    assert!(mounted(&vols.join("service-db")));
    assert!(vols.join("service-db/data/pgdata/PG_VERSION").is_file());
    let t = server.admin_ok("services demo main");
    assert!(
        t.contains("db\tpostgresql:15\trunning\t") && t.contains("used of 256 MiB"),
        "{t}"
    );
    let t = server.admin_ok("services demo main --json");
    assert!(t.contains("\"disk_size_mb\": 64"), "{t}");

    psql(
        &server,
        "main",
        "db",
        "CREATE TABLE rows (n int primary key, h text); INSERT INTO rows SELECT i, md5(i::text) FROM generate_series(1, 1000) i",
    );
    let checksum = "SELECT count(*) || ' ' || md5(string_agg(h, ',' ORDER BY n)) FROM rows";
    let main_sum = psql(&server, "main", "db", checksum);
    assert!(main_sum.starts_with("1000 "), "{main_sum}");

    // A full disk is PostgreSQL's own error; the other service and the app carry on.
    let started = "SELECT pg_postmaster_start_time()";
    let full_t0 = psql(&server, "main", "full", started);
    psql(
        &server,
        "main",
        "full",
        "CREATE UNLOGGED TABLE big (pad text); ALTER TABLE big ALTER pad SET STORAGE EXTERNAL",
    );
    let (ok, _, err) = psql_try(
        &server,
        "main",
        "full",
        "INSERT INTO big SELECT repeat(md5(i::text), 30000) FROM generate_series(1, 200) i",
    );
    assert!(!ok, "64 MB held 200 MB");
    assert!(
        err.contains("could not extend file") && err.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(
        server.get("main.demo.localhost", "/").map(|(s, _)| s),
        Some(200)
    );
    assert_eq!(psql(&server, "main", "db", checksum), main_sum);
    assert_eq!(psql(&server, "main", "full", "SELECT 1"), "1");

    // A bigger disk grows online: the service is not restarted and has room again.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 256\nfull:\n  type: postgresql:15\n  disk: 192\n",
    );
    app.commit("a bigger disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("service full disk resized: 64 MB -> 192 MB"),
        "{out}"
    );
    // Online where the server may grow a mounted file system (CAP_SYS_RESOURCE); else the
    // service restarts on its volume grown while unmounted.
    if out.contains("service full: disk grown online 64 MB -> 192 MB") {
        assert_eq!(psql(&server, "main", "full", started), full_t0);
    } else {
        assert!(
            out.contains("service full: restarting it on its grown disk"),
            "{out}"
        );
    }
    let full_t0 = psql(&server, "main", "full", started);
    psql(
        &server,
        "main",
        "full",
        "INSERT INTO big SELECT repeat(md5(i::text), 30000) FROM generate_series(1, 10) i",
    );
    // A smaller one is refused, and with -o allow-data-loss still refused (its data does
    // not fit), naming the data it holds and the size asked.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 256\nfull:\n  type: postgresql:15\n  disk: 64\n",
    );
    app.commit("a smaller disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(
        !ok && out.contains("shrinking the disk of service `full`"),
        "{out}"
    );
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(
        !ok && out.contains("volume service-full is 192 MB and holds")
            && out.contains("cannot become 64 MB"),
        "{out}"
    );
    assert_eq!(psql(&server, "main", "full", started), full_t0);
    app.git_ok(&["reset", "-q", "--hard", "HEAD~1"]);

    // A new branch, pushed while main takes writes (a transaction a row, in a loop): it
    // starts on a consistent copy, and main is never stopped.
    psql(
        &server,
        "main",
        "db",
        "CREATE TABLE w (i int primary key, h text)",
    );
    let data = server.data.clone();
    let writer = std::thread::spawn(move || {
        run(Command::new("runc")
            .arg("--root")
            .arg(data.join("runtime/state"))
            .args(["exec", "demo.main.db.service", PSQL, "-h", "/tmp", "-U", "main", "-d", "main", "-c"])
            .arg("DO $$ BEGIN FOR i IN 1..100000000 LOOP INSERT INTO w VALUES (i, md5(i::text)); COMMIT; END LOOP; END $$"))
    });
    wait_for("the writer writes", &server, || {
        psql(&server, "main", "db", "SELECT count(*) FROM w")
            .parse::<u64>()
            .unwrap_or(0)
            > 100
    });
    let (ok, out) = push_to(&server, &app, "dev", &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(out.contains("service db: data copied from main"), "{out}");
    let after_push: u64 = psql(&server, "main", "db", "SELECT count(*) FROM w")
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let later: u64 = psql(&server, "main", "db", "SELECT count(*) FROM w")
        .parse()
        .unwrap();
    assert!(later > after_push, "main stopped taking writes");
    psql(
        &server,
        "main",
        "db",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'DO $$%'",
    );
    let _ = writer.join();
    // The copy: every committed row up to one point, each row whole; the other table too.
    let copy = psql(
        &server,
        "dev",
        "db",
        "SELECT count(*) || ' ' || coalesce(max(i), 0) || ' ' || count(*) FILTER (WHERE h <> md5(i::text)) FROM w",
    );
    let f: Vec<u64> = copy.split(' ').map(|x| x.parse().unwrap()).collect();
    assert!(f[0] > 100 && f[0] == f[1] && f[2] == 0, "{copy}");
    assert!(f[0] <= later, "{copy} vs {later}");
    assert_eq!(psql(&server, "dev", "db", checksum), main_sum);
    assert_eq!(
        std::fs::metadata(server.data.join("volumes/demo/dev/service-db.img"))
            .unwrap()
            .len(),
        256 * MIB
    );
    // Its writes are its own.
    psql(&server, "dev", "db", "INSERT INTO rows VALUES (-1, 'dev')");
    assert_eq!(
        psql(
            &server,
            "main",
            "db",
            "SELECT count(*) FROM rows WHERE n = -1"
        ),
        "0"
    );

    // `sync` copies main's service data again (dev's own row goes, main's new one comes).
    psql(
        &server,
        "main",
        "db",
        "INSERT INTO rows VALUES (5000, 'later')",
    );
    let main_sum = psql(&server, "main", "db", checksum);
    let t = server.admin_ok("sync demo dev");
    assert!(
        t.contains("dev now has a copy of main's mount data and service data"),
        "{t}"
    );
    assert_eq!(psql(&server, "dev", "db", checksum), main_sum);
    assert_eq!(psql(&server, "main", "db", checksum), main_sum);

    // Removing a service: refused without the option; with it, a failed deploy leaves the
    // service and its data; the next deploy that goes live removes them.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 256\n",
    );
    app.write(".platform.app.yaml", &app_yaml("exit 1"));
    app.commit("without full, failing");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok && out.contains("removing service `full`"), "{out}");
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(!ok, "{out}");
    assert_eq!(psql(&server, "main", "full", started), full_t0);
    assert!(vols.join("service-full.img").exists());
    app.write(".platform.app.yaml", &app_yaml("'true'"));
    app.commit("without full");
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("service full removed with its data (-o allow-data-loss)"),
        "{out}"
    );
    assert!(!vols.join("service-full.img").exists());
    assert!(!mounted(&vols.join("service-full")));
    assert!(!server
        .containers()
        .iter()
        .any(|(id, _)| id == "demo.main.full.service"));
    let t = server.admin_ok("services demo main");
    assert!(!t.contains("full\t"), "{t}");
    assert_eq!(psql(&server, "main", "db", checksum), main_sum);

    // Deleting the branch would delete its data: refused without -o allow-data-loss
    // (saying how), dev keeps serving on its data.
    let dev_sum = psql(&server, "dev", "db", checksum);
    let o = server.git(&app.dir, &["push", &server.remote("demo"), ":dev"]);
    assert!(
        !o.status.success(),
        "deleted without the option: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("would delete the data of environment dev (")
            && text(&o).contains("service-db")
            && text(&o).contains("git push -o allow-data-loss"),
        "{}",
        text(&o)
    );
    assert_eq!(psql(&server, "dev", "db", checksum), dev_sum);
    assert!(server
        .containers()
        .iter()
        .any(|(id, _)| id == "demo.dev.db.service"));

    // With it: its services stop and its volumes are removed (the push says so); main's
    // data stays.
    let o = server.push_with(&app, "demo", ":dev", &["allow-data-loss"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("service-db ("), "{}", text(&o));
    let dev_vols = server.data.join("volumes/demo/dev");
    wait_for("dev's services stop and its volumes go", &server, || {
        !server
            .containers()
            .iter()
            .any(|(id, _)| id.starts_with("demo.dev."))
            && !mounted(&dev_vols.join("service-db"))
            && !dev_vols.join("service-db.img").exists()
    });
    assert_eq!(psql(&server, "main", "db", checksum), main_sum);
}

/// `redis-cli ARGS` in the Redis service of main (its address: the environment's first
/// service's).
fn redis(server: &Server, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["redis-cli", "-h", "127.1.0.2", "-p", "6379"];
    all.extend_from_slice(args);
    exec(server, "demo.main.cache.service", &all)
}

#[test]
fn the_plain_folder_of_an_older_slipway_moves_onto_a_volume_at_serve() {
    // python:3.11 and redis:7.0 are test stacks (the shared folder).
    let mut server = Server::start();
    let app = new_app(
        &server,
        "cache:\n  type: redis-persistent:7.0\n  disk: 32\n",
    );
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "push: {out}\n{}", server.server_log());
    assert_eq!(redis(&server, &["SET", "kept", "yes"]).1, "OK");

    // As an older Slipway left it: stopped cleanly, its data in a plain folder.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    let vols = server.data.join("volumes/demo/main");
    let image = vols.join("service-cache.img");
    let at = server.dir.path().join("old");
    std::fs::create_dir_all(&at).unwrap();
    let legacy = vols.join("services/cache");
    std::fs::create_dir_all(vols.join("services")).unwrap();
    let o = run(Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(&image)
        .arg(&at));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(Command::new("cp")
        .arg("-a")
        .arg(at.join("data"))
        .arg(&legacy));
    let _ = run(Command::new("umount").arg(&at));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(&image).unwrap();
    std::fs::remove_dir(vols.join("service-cache")).unwrap();
    assert!(legacy.join("appendonlydir").is_dir() || legacy.join("dump.rdb").is_file());

    // serve moves it onto a volume of its disk, then starts the service on it.
    server.serve();
    wait_for("redis answers", &server, || {
        redis(&server, &["GET", "kept"]).1 == "yes"
    });
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 32 * MIB);
    assert!(mounted(&vols.join("service-cache")));
    assert!(!legacy.exists());
    let t = server.admin_ok("services demo main");
    assert!(t.contains("used of 32 MiB"), "{t}");
}

#[test]
fn service_data_survives_deploys_failures_rollbacks_restarts_down_and_kill() {
    // python:3.11, postgresql:15 and redis:7.0 are test stacks (the shared folder).
    let mut server = Server::start();
    let app = new_app(
        &server,
        "cache:\n  type: redis-persistent:7.0\n  disk: 32\ndb:\n  type: postgresql:15\n  disk: 256\n",
    );
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "push: {out}\n{}", server.server_log());
    psql(
        &server,
        "main",
        "db",
        "CREATE TABLE rows (n int primary key, h text)",
    );
    let check = |server: &Server, n: u64, when: &str| {
        let want = format!("{n} {} 0", n * (n + 1) / 2);
        let got = psql(
            server,
            "main",
            "db",
            "SELECT count(*) || ' ' || coalesce(sum(n), 0) || ' ' || count(*) FILTER (WHERE h <> md5(n::text)) FROM rows",
        );
        assert_eq!(got, want, "rows after {when}");
        assert_eq!(
            redis(server, &["DBSIZE"]).1,
            n.to_string(),
            "keys after {when}"
        );
    };
    let write = |server: &Server, i: u64| {
        psql(
            server,
            "main",
            "db",
            &format!("INSERT INTO rows VALUES ({i}, md5('{i}'))"),
        );
        assert_eq!(redis(server, &["SET", &format!("k{i}"), "v"]).1, "OK");
    };
    // Twenty deploys, every fifth failing (its deploy hook exits 3), a row and a key each.
    for i in 1..=20u64 {
        write(&server, i);
        app.write("VERSION", &format!("deploy {i}\n"));
        let failing = i % 5 == 0;
        app.write(
            ".platform.app.yaml",
            &app_yaml(if failing { "exit 3" } else { "'true'" }),
        );
        app.commit(&format!("v{i}"));
        let (ok, out) = push_to(&server, &app, "main", &[]);
        assert_eq!(ok, !failing, "deploy {i}: {out}");
        check(&server, i, &format!("deploy {i}"));
    }
    server.admin_ok("rollback demo main");
    check(&server, 20, "a rollback");
    server.admin_ok("redeploy demo main");
    check(&server, 20, "a redeploy");
    let up = |server: &Server| {
        wait_for("the services answer", server, || {
            psql_try(server, "main", "db", "SELECT 1").1 == "1"
                && redis(server, &["PING"]).1 == "PONG"
        })
    };
    server.stop();
    server.serve();
    up(&server);
    check(&server, 20, "a restart");
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    server.serve();
    up(&server);
    check(&server, 20, "down and serve");

    // kill -9 of the server while a deploy hook runs; rows written meanwhile stay.
    write(&server, 21);
    app.write(".platform.app.yaml", &app_yaml("sleep 60"));
    app.commit("slow hook");
    let log = server.dir.path().join("push-killed.log");
    let mut pusher = server
        .push_command(&app, "demo", "HEAD:refs/heads/main", &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("git push");
    wait_for("the deploy hook runs", &server, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("deploy hook hello: running"))
    });
    write(&server, 22);
    let pid = server.pid().expect("server pid");
    run(Command::new("kill").args(["-9", &pid.to_string()]));
    server.stop();
    let _ = pusher.wait();
    server.serve();
    up(&server);
    check(&server, 22, "kill -9 mid-deploy");
}

#[test]
fn a_disk_shrinks_with_allow_data_loss_when_its_data_fits() {
    // python:3.11 and postgresql:15 are test stacks.
    let server = Server::start();
    let app = new_app(&server, "db:\n  type: postgresql:15\n  disk: 256\n");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    psql(
        &server,
        "main",
        "db",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    );
    let sum = "SELECT count(*) || ':' || md5(string_agg(n || '=' || t, ',' ORDER BY n)) FROM rows";
    let before = psql(&server, "main", "db", sum);
    let image = server.data.join("volumes/demo/main/service-db.img");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 256 << 20);

    // Without the option: refused by the diff, nothing changed.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 128\n",
    );
    app.commit("a smaller disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(
        !ok && out.contains("shrinking the disk of service `db`"),
        "{out}"
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 256 << 20);

    // With it: a new 128 MB volume, the data checksummed before and after, every row kept.
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("service db: disk shrunk 256 MB -> 128 MB (")
            && out.contains("MB of data, sha256:")
            && out.contains("before and after)"),
        "{out}"
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 128 << 20);
    assert!(!server
        .data
        .join("volumes/demo/main/service-db.img.shrink")
        .exists());
    assert_eq!(psql(&server, "main", "db", sum), before);
    psql(
        &server,
        "main",
        "db",
        "INSERT INTO rows VALUES (20001, 'after')",
    );

    // Smaller than its data: refused even with the option, naming used vs asked, and the
    // service keeps running on its data.
    app.write(
        ".platform/services.yaml",
        "db:\n  type: postgresql:15\n  disk: 16\n",
    );
    app.commit("a disk too small");
    let (ok, out) = push_to(&server, &app, "main", &["allow-data-loss"]);
    assert!(
        !ok && out.contains("volume service-db is 128 MB and holds")
            && out.contains("it cannot become 16 MB"),
        "{out}"
    );
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 128 << 20);
    assert!(psql(&server, "main", "db", "SELECT count(*) FROM rows") == "20001");
}

#[test]
fn a_service_whose_disk_the_host_cannot_hold_is_refused_and_changes_nothing() {
    // python:3.11 and redis:7.0 are test stacks.
    let server = Server::start();
    let app = new_app(&server, "cache:\n  type: redis:7.0\n");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(ok, "{out}\n{}", server.server_log());
    let live = server.get("main.demo.localhost", "/");
    assert_eq!(live.as_ref().map(|(c, _)| *c), Some(200), "{live:?}");

    // A second service asking for 100 TB: more than any disk here has free.
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis:7.0\ndb:\n  type: postgresql:15\n  disk: 100000000\n",
    );
    app.commit("a huge disk");
    let (ok, out) = push_to(&server, &app, "main", &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("service db: the host's disk has ")
            && out.contains("MB free, less than its disk of 100000000 MB"),
        "{out}"
    );
    // Nothing was made for it, and the live release answers as before.
    assert!(!server
        .data
        .join("volumes/demo/main/service-db.img")
        .exists());
    assert_eq!(server.get("main.demo.localhost", "/"), live);
    let services = server.admin_stdout("services demo main");
    assert!(!services.contains("db"), "{services}");
}
