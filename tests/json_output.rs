//! `--json` on every SSH admin command (issue 15, spec section 6): each prints exactly one
//! JSON document on stdout carrying what it did or shows (the progress of a deploy, sync,
//! backup or cron run goes to stderr), errors stay a message on stderr with exit status 1
//! or 2, and `logs -f --json` prints one object per line. The list of commands comes from
//! `help --json`, so a command added later without a case here (and without `--json`)
//! fails the test. `slipway archive ls` lists slugs, releases and backups (spec section 7).

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::Value;
use slipway_e2e::{text, App, Server};

const APP_YAML: &str = "name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\ncrons:\n  report:\n    spec: '@yearly'\n    commands:\n      start: 'echo report ran'\n";

/// `ssh git@HOST COMMAND --json` as the admin (with `input` on stdin): the exit status,
/// stdout parsed as one JSON document (failing if it is not), and stderr.
fn json(server: &Server, command: &str, input: &[u8]) -> (Value, String) {
    let o = server.ssh_with_input(&server.key, "git", &format!("{command} --json"), input);
    assert!(
        o.status.success(),
        "{command} --json: {}\nserver log:\n{}",
        text(&o),
        server.server_log()
    );
    let value: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{command} --json: stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    assert!(value.is_object() || value.is_array(), "{command}: {value}");
    (value, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The live release number of `env`, as `envs --json` says.
fn live_release(server: &Server, env: &str) -> i64 {
    let (envs, _) = json(server, "envs demo", b"");
    envs.as_array()
        .expect("envs")
        .iter()
        .find(|e| e["name"] == env)
        .and_then(|e| e["live_release"].as_i64())
        .unwrap_or_else(|| panic!("no live release of {env}: {envs}"))
}

#[test]
fn every_admin_command_prints_one_json_document() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", APP_YAML);
    app.commit("mount and cron");
    server.push_ok(&app, "demo");
    app.write("VERSION", "2\n");
    app.commit("v2");
    server.push_ok(&app, "demo");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main:dev"]);
    assert!(o.status.success(), "push dev: {}", text(&o));
    server.add_user("bob");
    let carol = slipway_e2e::new_key(server.dir.path(), "carol");
    let carol_pub = std::fs::read(carol.with_extension("pub")).expect("carol.pub");

    // The help text says so; `help --json` lists the commands this test goes through.
    let help = text(&server.admin("help"));
    assert!(help.contains("--json"), "{help}");
    assert!(help.contains("--json (after any command)"), "{help}");
    let (help_json, _) = json(&server, "help", b"");
    assert_eq!(
        help_json["projects"],
        serde_json::json!(["demo"]),
        "{help_json}"
    );
    let usages: Vec<String> = help_json["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["usage"].as_str().expect("usage").to_string())
        .collect();
    assert!(usages.len() >= 30, "{usages:?}");

    let mut activity_id = None;
    let mut backup_id = None;
    let mut checked = Vec::new();
    for usage in &usages {
        let (command, input): (String, &[u8]) = match usage.as_str() {
            "projects" => ("projects".into(), b""),
            "envs PROJECT" => ("envs demo".into(), b""),
            "releases PROJECT ENV" => ("releases demo main".into(), b""),
            "services PROJECT ENV" => ("services demo main".into(), b""),
            "activity PROJECT [ENV]" => ("activity demo main".into(), b""),
            "activity log ID" => (
                format!("activity log {}", activity_id.expect("an activity")),
                b"",
            ),
            "activity prune [--keep N] [--keep-days D] [--dry-run]" => {
                ("activity prune --keep 1 --dry-run".into(), b"")
            }
            "rollback PROJECT ENV [RELEASE]" => ("rollback demo main".into(), b""),
            "redeploy PROJECT ENV" => ("redeploy demo main".into(), b""),
            "sync PROJECT ENV" => ("sync demo dev".into(), b""),
            "backup create PROJECT ENV" => ("backup create demo main".into(), b""),
            "backup ls PROJECT ENV" => ("backup ls demo main".into(), b""),
            "backup restore PROJECT ENV ID" => (
                format!("backup restore demo main {}", backup_id.expect("a backup")),
                b"",
            ),
            "var ls PROJECT ENV" => ("var ls demo main".into(), b""),
            "var set PROJECT ENV KEY=VALUE" => ("var set demo main MODE=fast".into(), b""),
            "var set --sensitive PROJECT ENV KEY=VALUE" => {
                ("var set --sensitive demo dev TOKEN=s3cret".into(), b"")
            }
            "var unset PROJECT ENV KEY" => ("var unset demo main MODE".into(), b""),
            "logs PROJECT ENV [APP] [-f]" => ("logs demo main".into(), b""),
            "cron ls PROJECT ENV" => ("cron ls demo main".into(), b""),
            "cron run PROJECT ENV [APP/]NAME" => ("cron run demo main report".into(), b""),
            "access ls PROJECT" => ("access ls demo".into(), b""),
            "access grant PROJECT USER ROLE" => ("access grant demo bob viewer".into(), b""),
            "access revoke PROJECT USER" => ("access revoke demo bob".into(), b""),
            "domain ls [PROJECT]" => ("domain ls".into(), b""),
            "domain add PROJECT HOST" => ("domain add demo www.example.com".into(), b""),
            "domain rm [PROJECT] HOST" => ("domain rm www.example.com".into(), b""),
            "user ls" => ("user ls".into(), b""),
            "user add NAME [--admin] < KEY" => ("user add carol".into(), &carol_pub),
            "user rm NAME" => ("user rm carol".into(), b""),
            "console" => ("console".into(), b""),
            "help" => ("help".into(), b""),
            other => panic!("`{other}` (from help --json) has no case here: add one, with --json"),
        };
        let (v, stderr) = json(&server, &command, input);
        let is = |key: &str, want: Value| {
            assert_eq!(v[key], want, "{command} --json: {key} in {v}");
        };
        match usage.as_str() {
            "projects" => assert_eq!(v, serde_json::json!(["demo"])),
            "envs PROJECT" => {
                let names: Vec<&str> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|e| e["name"].as_str())
                    .collect();
                assert!(names.contains(&"main") && names.contains(&"dev"), "{v}");
            }
            "releases PROJECT ENV" => assert_eq!(v[0]["number"], 2, "newest first: {v}"),
            "services PROJECT ENV" => assert_eq!(v, serde_json::json!([])),
            "activity PROJECT [ENV]" => activity_id = v[0]["id"].as_i64(),
            "activity log ID" => assert_eq!(v["activity"]["id"].as_i64(), activity_id, "{v}"),
            "activity prune [--keep N] [--keep-days D] [--dry-run]" => {
                is("dry_run", true.into());
                is("keep", 1.into());
            }
            "rollback PROJECT ENV [RELEASE]" | "redeploy PROJECT ENV" => {
                is("project", "demo".into());
                is("env", "main".into());
                assert_eq!(
                    v["release"].as_i64(),
                    Some(live_release(&server, "main")),
                    "{v}"
                );
                // The deploy's lines went to stderr.
                assert!(
                    !stderr.trim().is_empty(),
                    "{command}: no progress on stderr"
                );
            }
            "sync PROJECT ENV" => {
                is("env", "dev".into());
                is("synced", true.into());
            }
            "backup create PROJECT ENV" => {
                is("project", "demo".into());
                is("environment", "main".into());
                backup_id = v["id"].as_i64();
                assert!(backup_id.is_some(), "{v}");
            }
            "backup ls PROJECT ENV" => assert_eq!(v[0]["id"].as_i64(), backup_id, "{v}"),
            "backup restore PROJECT ENV ID" => {
                is("restored", backup_id.into());
                is("env", "main".into());
            }
            "var ls PROJECT ENV" => assert!(v.is_array(), "{v}"),
            "var set PROJECT ENV KEY=VALUE" => {
                is("key", "MODE".into());
                is("set", true.into());
                is("sensitive", false.into());
                // main is live: it was redeployed with the variable.
                assert_eq!(
                    v["release"].as_i64(),
                    Some(live_release(&server, "main")),
                    "{v}"
                );
                assert!(stderr.contains("MODE set on main"), "{stderr}");
            }
            "var set --sensitive PROJECT ENV KEY=VALUE" => {
                is("env", "dev".into());
                is("sensitive", true.into());
                assert!(!v.to_string().contains("s3cret"), "{v}");
            }
            "var unset PROJECT ENV KEY" => {
                is("key", "MODE".into());
                is("set", false.into());
            }
            "logs PROJECT ENV [APP] [-f]" => {
                let lines = v.as_array().expect("lines");
                assert!(
                    lines.iter().any(|l| l["app"] == "hello"
                        && l["line"]
                            .as_str()
                            .is_some_and(|t| t.contains("listening on"))),
                    "{v}"
                );
            }
            "cron ls PROJECT ENV" => assert_eq!(v[0]["name"], "report", "{v}"),
            "cron run PROJECT ENV [APP/]NAME" => {
                is("cron", "report".into());
                is("exit_status", 0.into());
                assert!(v["activity"].is_i64(), "{v}");
                assert!(
                    stderr.contains("report ran"),
                    "the cron's output on stderr: {stderr}"
                );
            }
            "access ls PROJECT" => assert!(v.is_array(), "{v}"),
            "access grant PROJECT USER ROLE" => {
                is("user", "bob".into());
                is("role", "viewer".into());
            }
            "access revoke PROJECT USER" => {
                is("user", "bob".into());
                is("revoked", true.into());
            }
            "domain ls [PROJECT]" => assert!(v.is_array(), "{v}"),
            "domain add PROJECT HOST" => {
                is("host", "www.example.com".into());
                is("added", true.into());
            }
            "domain rm [PROJECT] HOST" => {
                is("project", "demo".into());
                is("removed", true.into());
            }
            "user ls" => assert!(v.to_string().contains("\"bob\""), "{v}"),
            "user add NAME [--admin] < KEY" => {
                is("user", "carol".into());
                is("admin", false.into());
            }
            "user rm NAME" => {
                is("user", "carol".into());
                is("removed", true.into());
            }
            "console" => assert!(
                v["url"].as_str().is_some_and(|u| u.contains("/login/")),
                "{v}"
            ),
            "help" => assert_eq!(v, help_json),
            _ => unreachable!(),
        }
        checked.push(usage.clone());
    }
    assert_eq!(checked, usages);

    // Errors stay messages on stderr, stdout empty: 1 refused, 2 bad usage.
    for (command, code) in [
        ("releases nothing main --json", 1),
        ("rollback demo nothing --json", 1),
        ("logs demo main a b --json", 2),
        ("frobnicate --json", 2),
        ("var set demo main 'A=b --json", 2),
    ] {
        let o = server.admin(command);
        assert_eq!(o.status.code(), Some(code), "{command}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{command}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("slipway:"),
            "{command}: {}",
            text(&o)
        );
    }

    // `logs -f --json`: one object per line, as lines come.
    let mut cmd = Command::new("ssh");
    for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
        cmd.arg(a);
    }
    let mut follow = cmd
        .arg("-p")
        .arg(server.ssh_port.to_string())
        .arg("git@127.0.0.1")
        .arg("logs demo main -f --json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh");
    let mut first = String::new();
    std::io::BufReader::new(follow.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    let _ = follow.kill();
    let _ = follow.wait();
    let line: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    assert_eq!(line["app"], "hello", "{line}");
    assert!(line["line"].is_string(), "{line}");

    // `slipway archive ls`: the slug of each release and who uses it, the releases, the backup.
    let o = server.slipway(&["archive", "ls", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listing: Value = serde_json::from_slice(&o.stdout).expect("archive ls --json");
    let releases = listing["releases"].as_array().expect("releases");
    let first_release = releases
        .iter()
        .find(|r| r["project"] == "demo" && r["env"] == "main" && r["number"] == 1)
        .unwrap_or_else(|| panic!("{listing}"));
    let slug = first_release["slugs"]["hello"].as_str().expect("its slug");
    assert!(slug.starts_with("sha256:"), "{slug}");
    let slug_entry = listing["slugs"]
        .as_array()
        .expect("slugs")
        .iter()
        .find(|s| s["digest"] == slug)
        .unwrap_or_else(|| panic!("{slug} not listed: {listing}"));
    assert_eq!(slug_entry["in_archive"], true, "{slug_entry}");
    assert!(
        slug_entry["size"].as_u64().is_some_and(|n| n > 0),
        "{slug_entry}"
    );
    assert!(
        slug_entry["used_by"].as_array().expect("used_by").contains(
            &serde_json::json!({"project": "demo", "env": "main", "app": "hello", "release": 1})
        ),
        "{slug_entry}"
    );
    let backup = listing["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["id"].as_i64() == backup_id)
        .unwrap_or_else(|| panic!("backup {backup_id:?} not listed: {listing}"));
    assert_eq!(backup["in_archive"], true, "{backup}");
    assert!(
        listing["stacks"].is_array() && listing["tags"].is_array(),
        "{listing}"
    );
    let o = server.slipway(&["archive", "ls"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("SLUG\tSIZE\tUSED BY\n"), "{out}");
    assert!(out.contains("demo/main/hello r1"), "{out}");
    assert!(out.contains("\nRELEASE\tSTATUS\tSLUGS\ndemo/"), "{out}");
}
