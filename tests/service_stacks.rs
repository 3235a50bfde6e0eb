//! Services on imported stacks (issue 14): `slipway stack import redis:8 IMAGE` makes
//! `redis:8` a service version config check and the push accept (refused, naming the
//! versions there are, before); a service keeps the stack it was made on when the import
//! makes its configured version resolve to another major (`service cache stays on
//! redis:7.0 ...`), its data untouched; and two services of one type in one environment
//! each answer at their own relationship.

use std::path::Path;
use std::process::Command;

use slipway_e2e::{cached_stack, run, slipway_bin, text, App, Server};

/// The app: `/set/REL/VALUE` and `/get/REL` on the Redis of relationship REL (RESP over a
/// socket to the relationship's host and port).
const APP_SERVER: &str = slipway_e2e::py_app!(
    concat!(
        slipway_e2e::py_relationships!(),
        r#"import socket
def redis(rel, *args):
    c = rels[rel][0]
    s = socket.create_connection((c["host"], c["port"]), timeout=5)
    cmd = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)
    s.sendall(cmd.encode())
    reply = s.recv(4096).decode()
    s.close()
    lines = reply.split("\r\n")
    if lines[0] == "$-1":
        return "(nil)"
    return lines[1] if lines[0].startswith("$") else lines[0].lstrip(":+")
"#
    ),
    r#"        parts = self.path.strip("/").split("/")
        if parts[0] == "set":
            body = redis(parts[1], "SET", "k", parts[2])
        elif parts[0] == "get":
            body = redis(parts[1], "GET", "k")
        else:
            body = "%s:%d" % (rels["cache"][0]["ip"], rels["cache"][0]["port"])
        body = body.encode()
"#
);

fn app_yaml(relationships: &[&str]) -> String {
    let rels: String = relationships
        .iter()
        .map(|r| format!("  {r}: '{r}:redis'\n"))
        .collect();
    format!("name: hello\ntype: python:3.11\nhooks:\n  build: echo built > build.txt\nrelationships:\n{rels}web:\n  commands:\n    start: python3 server.py\n")
}

/// `slipway ARGS --data-dir DATA`.
fn slipway(args: &[&str], data_dir: &Path) -> std::process::Output {
    run(Command::new(slipway_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

/// Copy the shared test stack `tag` into the image layout `layout` as `name`, as an image
/// someone would import (skopeo keeps its zstd layer).
fn export(tag: &str, layout: &Path, name: &str) {
    let shared = cached_stack(match tag {
        "stack-python-3.11" => "python:3.11",
        _ => "redis:7.0",
    });
    let o = run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:{tag}", shared.join("archive").display()),
        &format!("oci:{}:{name}", layout.display()),
    ]));
    assert!(o.status.success(), "skopeo copy {tag}: {}", text(&o));
}

/// `slipway stack import STACK LAYOUT:NAME` into the stacks folder `stacks`.
fn import(stacks: &Path, stack: &str, layout: &Path, name: &str) {
    let image = format!("{}:{name}", layout.display());
    let o = slipway(&["stack", "import", stack, &image], stacks);
    assert!(o.status.success(), "import {stack}: {}", text(&o));
}

fn get(server: &Server, path: &str) -> String {
    let (code, body) = server
        .get("main.demo.localhost", path)
        .unwrap_or_else(|| panic!("GET {path}: no answer\n{}", server.server_log()));
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// The stack each service of `demo main` was made on, from `services --json`.
fn service_stacks(server: &Server) -> Vec<(String, String)> {
    let o = server.ssh(&server.key, "git", "services demo main --json");
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("services --json");
    let mut out: Vec<(String, String)> = v
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["stack"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn imported_service_versions_run_and_a_service_stays_on_the_stack_it_was_made_on() {
    // A stacks folder of its own (the shared one is never imported into): python:3.11
    // and redis:7.0 imported from the shared test stacks as they are, and later the same
    // Redis image as redis:8, a version the catalog lacks.
    let work = tempfile::Builder::new()
        .prefix("slipway-service-stacks-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let layout = work.path().join("layout");
    export("stack-python-3.11", &layout, "python");
    export("stack-redis-7.0", &layout, "redis");
    let stacks = work.path().join("stacks");
    import(&stacks, "python:3.11", &layout, "python");
    import(&stacks, "redis:7.0", &layout, "redis");

    let server = Server::start_with(&[("SLIPWAY_STACKS_DIR", &stacks.to_string_lossy())]);
    let app = App::demo(work.path(), "app");
    app.write(".platform.app.yaml", &app_yaml(&["cache"]));
    // 7.2: Platform.sh's, not the catalog's; made on redis:7.0, the newest there is.
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.2\n",
    );
    app.write("server.py", APP_SERVER);
    app.commit("redis 7.2");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(
        out.contains("redis:7.2 is not available on this server; using redis:7.0"),
        "{out}"
    );
    assert_eq!(get(&server, "/set/cache/kept"), "OK");
    assert_eq!(
        service_stacks(&server),
        vec![("cache".into(), "redis:7.0".into())]
    );
    // `services` says what it asked for and what runs.
    let listed = text(&server.ssh(&server.key, "git", "services demo main"));
    assert!(
        listed.contains("cache\tredis-persistent:7.2 (runs 7.0)\trunning\t"),
        "{listed}"
    );

    // Before the import, redis:8 is refused, naming the versions there are.
    app.write(".platform.app.yaml", &app_yaml(&["cache", "second"]));
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.2\nsecond:\n  type: redis-persistent:8\n",
    );
    app.commit("a second redis, on 8");
    let app_dir = app.dir.display().to_string();
    let check = slipway(&["config", "check", &app_dir, "--no-advisories"], &stacks);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        text(&check).contains("redis-persistent version `8` is not supported; use one of: 2.8"),
        "{}",
        text(&check)
    );

    // Imported while the server runs: config check and the push accept it as it is.
    import(&stacks, "redis:8", &layout, "redis");
    let ls = text(&slipway(&["stack", "ls"], &stacks));
    assert!(ls.contains("redis:8\timported from"), "{ls}");
    let check = slipway(&["config", "check", &app_dir, "--no-advisories"], &stacks);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        !text(&check).contains("redis:8 is not available"),
        "{}",
        text(&check)
    );
    // Elsewhere (no server's stacks), redis:8 is still unknown; the refusal names what
    // this server imported when there is one.
    let elsewhere = work.path().join("no-server");
    let check = slipway(
        &["config", "check", &app_dir, "--no-advisories"],
        &elsewhere,
    );
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.2\nsecond:\n  type: redis-persistent:9\n",
    );
    let check = slipway(&["config", "check", &app_dir, "--no-advisories"], &stacks);
    assert!(
        text(&check).contains("(or one imported into this server: 8)"),
        "{}",
        text(&check)
    );
    app.write(
        ".platform/services.yaml",
        "cache:\n  type: redis-persistent:7.2\nsecond:\n  type: redis-persistent:8\n",
    );

    // The push: `second` is made on the imported redis:8 without a warning; `cache`, made
    // on redis:7.0, stays on it although 7.2 now resolves to 8, and says so.
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    assert!(
        out.contains("service cache stays on redis:7.0 (made on it; redis-persistent:7.2 resolves to 8 now): push with -o allow-service-upgrade to move it to 8"),
        "{out}"
    );
    assert!(!out.contains("warning: service second"), "{out}");
    assert_eq!(
        service_stacks(&server),
        vec![
            ("cache".into(), "redis:7.0".into()),
            ("second".into(), "redis:8".into())
        ]
    );
    // Its data is what it was; the two Redis of the environment are two servers, each
    // at its own relationship.
    assert_eq!(get(&server, "/get/cache"), "kept");
    assert_eq!(get(&server, "/get/second"), "(nil)");
    assert_eq!(get(&server, "/set/second/other"), "OK");
    assert_eq!(get(&server, "/get/second"), "other");
    assert_eq!(get(&server, "/get/cache"), "kept");
}
