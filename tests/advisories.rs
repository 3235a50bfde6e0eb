//! Push protection (issue 16), driven as a user does: `slipway advisories import` of OSV
//! files the test writes, `git push` of lockfiles pinning affected versions (a critical
//! advisory refuses, `-o allow-vulnerable` lets it through, a high one warns, an unchanged
//! lockfile costs no lookup), `slipway config check` with the same verdict, and committed
//! secrets refused at their line, masked, unless `-o allow-secret=FILE:LINE`.

use std::process::Command;

use slipway_e2e::{run, slipway_bin, text, App, Server};

const HOST: &str = "main.demo.localhost";

fn push(server: &Server, app: &App, options: &[&str]) -> (bool, String) {
    let o = server.push_with(app, "demo", "main", options);
    (o.status.success(), text(&o))
}

/// Three advisories: a critical one (CVSS 9.8) on guzzlehttp/psr7, a critical one (the
/// database's rating) on minimist, a high one on lodash.
fn write_advisories(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("npm")).expect("mkdir");
    std::fs::write(
        dir.join("psr7.json"),
        r#"{"id": "GHSA-test-psr7", "modified": "2024-03-01T00:00:00Z", "aliases": ["CVE-2022-24775"],
  "summary": "Improper header parsing",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{"package": {"ecosystem": "Packagist", "name": "guzzlehttp/psr7"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.8.4"},
                                                {"introduced": "2.0.0"}, {"fixed": "2.1.1"}]}]}]}"#,
    )
    .expect("write");
    std::fs::write(
        dir.join("npm/advisories.json"),
        r#"[{"id": "GHSA-test-lodash", "modified": "2024-03-01T00:00:00Z", "summary": "Prototype pollution",
  "database_specific": {"severity": "HIGH"},
  "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]}]},
 {"id": "GHSA-test-minimist", "modified": "2024-03-01T00:00:00Z", "summary": "Prototype pollution in minimist",
  "database_specific": {"severity": "CRITICAL"},
  "affected": [{"package": {"ecosystem": "npm", "name": "minimist"},
    "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.2.6"}]}]}]}]"#,
    )
    .expect("write");
}

const COMPOSER_LOCK: &str = r#"{
    "packages": [
        {"name": "guzzlehttp/psr7", "version": "1.8.1"},
        {"name": "monolog/monolog", "version": "2.9.1"}
    ],
    "packages-dev": []
}
"#;

const PACKAGE_LOCK: &str = r#"{
  "name": "hello", "lockfileVersion": 3,
  "packages": {
    "": {"name": "hello"},
    "node_modules/lodash": {"version": "4.17.20"},
    "node_modules/minimist": {"version": "1.2.5"},
    "node_modules/express": {"version": "4.18.2"}
  }
}
"#;

#[test]
fn vulnerable_lockfiles_are_refused_warned_or_allowed_at_validate() {
    let server = Server::start();
    let osv = server.dir.path().join("osv");
    write_advisories(&osv);
    let o = server.slipway(&["advisories", "import", osv.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("imported 3 advisories"), "{}", text(&o));
    let o = server.slipway(&["advisories", "ls"]);
    assert!(text(&o).contains("Packagist\t1\t1"), "{}", text(&o));
    assert!(text(&o).contains("npm\t2\t2"), "{}", text(&o));

    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("advisories:"),
        "no lockfile, no lookup: {out}"
    );
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);
    assert_eq!(server.page(HOST, "/"), "built-1\n");

    // Lockfiles pinning affected versions: the critical ones refuse before any build.
    app.write("composer.lock", COMPOSER_LOCK);
    app.write("package-lock.json", PACKAGE_LOCK);
    app.write("VERSION", "2\n");
    app.commit("v2 with lockfiles");
    let (ok, out) = push(&server, &app, &[]);
    assert!(!ok, "{out}");
    for line in [
        "composer.lock: error: guzzlehttp/psr7 1.8.1 is affected by GHSA-test-psr7 (critical: Improper header parsing); fixed in 1.8.4",
        "package-lock.json: error: minimist 1.2.5 is affected by GHSA-test-minimist (critical: Prototype pollution in minimist); fixed in 1.2.6",
        "package-lock.json: warning: lodash 4.17.20 is affected by GHSA-test-lodash (high: Prototype pollution); fixed in 4.17.21",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        out.contains("(validate failed: 2 critical advisories"),
        "{out}"
    );
    assert!(
        !out.contains("monolog") && !out.contains("express"),
        "{out}"
    );
    assert!(!out.contains("-----> build"), "nothing is built: {out}");
    assert_eq!(
        server.branch_head(&app.dir, "demo", "main"),
        v1,
        "the branch did not move"
    );
    assert_eq!(
        server.page(HOST, "/"),
        "built-1\n",
        "the old release still serves"
    );

    // config check of the working tree says the same, with the server's database.
    let o = server.slipway(&["config", "check", app.dir.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("composer.lock: error: guzzlehttp/psr7 1.8.1 is affected by GHSA-test-psr7 (critical: Improper header parsing); fixed in 1.8.4"),
        "{}",
        text(&o)
    );
    let o = server.slipway(&[
        "config",
        "check",
        app.dir.to_str().expect("utf-8"),
        "--no-advisories",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // Naming one of the two critical ones is not enough; naming both (an alias works) is.
    let (ok, out) = push(&server, &app, &["allow-vulnerable=GHSA-test-minimist"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("(validate failed: 1 critical advisory"),
        "{out}"
    );
    let (ok, out) = push(
        &server,
        &app,
        &["allow-vulnerable=CVE-2022-24775,GHSA-test-minimist"],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("package-lock.json: warning: lodash 4.17.20 is affected by GHSA-test-lodash (high: Prototype pollution); fixed in 4.17.21"),
        "{out}"
    );
    assert!(
        out.contains("allowed by allow-vulnerable=GHSA-test-psr7"),
        "{out}"
    );
    assert_eq!(server.page(HOST, "/"), "built-2\n");

    // A push that does not touch the lockfiles does no advisory work, even with criticals.
    app.write("VERSION", "3\n");
    app.commit("v3, same lockfiles");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("advisories:"), "{out}");
    assert!(!out.contains("is affected by"), "{out}");
    assert_eq!(server.page(HOST, "/"), "built-3\n");

    // Upgrading to fixed versions passes without options.
    app.write("composer.lock", &COMPOSER_LOCK.replace("1.8.1", "1.8.4"));
    app.write(
        "package-lock.json",
        &PACKAGE_LOCK
            .replace("1.2.5", "1.2.6")
            .replace("4.17.20", "4.17.21"),
    );
    // A malformed lockfile warns naming its line; it never refuses.
    app.write("poetry.lock", "[[package]]\nname = \n");
    app.commit("fixed versions");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("advisories: 2 lockfiles, 5 packages, 0 findings"),
        "{out}"
    );
    assert!(
        out.contains("poetry.lock:2: warning: cannot read this lockfile"),
        "{out}"
    );

    // A corrupt advisory file refuses the whole import; the database stays as it was.
    std::fs::write(osv.join("npm/zz-broken.json"), "{\"id\": 7}").expect("write");
    let o = server.slipway(&["advisories", "import", osv.to_str().expect("utf-8")]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("zz-broken.json"), "{}", text(&o));
    let o = server.slipway(&["advisories", "ls"]);
    assert!(text(&o).contains("npm\t2\t2"), "{}", text(&o));
}

/// `config check` reads the lockfiles a push of the tree would carry: one `.gitignore`
/// leaves out is not checked, the same file once it is no longer ignored is.
#[test]
fn config_check_leaves_out_a_gitignored_lockfile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let osv = dir.path().join("osv");
    write_advisories(&osv);
    let slipway = |args: &[&str]| {
        run(Command::new(slipway_bin())
            .args(args)
            .arg("--data-dir")
            .arg(&data))
    };
    let o = slipway(&["advisories", "import", osv.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let app = App::demo(dir.path(), "app");
    app.write(".gitignore", "package-lock.json\n");
    app.write("package-lock.json", PACKAGE_LOCK);
    app.commit("an ignored lockfile");
    let tree = app.dir.to_str().expect("utf-8");
    let o = slipway(&["config", "check", tree]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("minimist"), "{}", text(&o));

    app.write(".gitignore", "");
    app.commit("the lockfile committed");
    let o = slipway(&["config", "check", tree]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o)
            .contains("package-lock.json: error: minimist 1.2.5 is affected by GHSA-test-minimist"),
        "{}",
        text(&o)
    );
}

#[test]
fn committed_secrets_are_refused_at_their_line_and_masked() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}");
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);

    let aws_key = format!("{}{}", "AKIA", "Z7QXJ3M2K8P4RT6W");
    app.write(
        "config/aws.env",
        &format!("# production\nAWS_REGION=eu-west-1\nAWS_ACCESS_KEY_ID={aws_key}\n"),
    );
    app.write(
        "deploy/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    // False-positive-prone: a random hex string in a test fixture stays below the threshold.
    app.write(
        "tests/fixture.json",
        "{\"secret\": \"3f9a0c7be21d48a6f05c9e1b7d2a4c68\"}\n",
    );
    app.write("VERSION", "2\n");
    app.commit("v2 with credentials");
    // `config check` refuses the same tree for the same findings, masked too; a file the
    // repository ignores is not looked at, as a push never carries it.
    app.write(".gitignore", "local.pem\n");
    app.write(
        "local.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
    );
    let check = |allow: &[&str]| {
        let mut args = vec!["config", "check", app.dir.to_str().expect("utf-8")];
        for a in allow {
            args.extend(["--allow-secret", a]);
        }
        server.slipway(&args)
    };
    let o = check(&[]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains("config/aws.env:3: error: aws-access-key-id AKIA************ committed"),
        "{said}"
    );
    assert!(
        said.contains("deploy/id_ed25519:1: error: private-key"),
        "{said}"
    );
    assert!(
        said.contains("2 committed secrets: a push would be refused"),
        "{said}"
    );
    assert!(
        !said.contains("local.pem") && !said.contains(&aws_key),
        "{said}"
    );
    let o = check(&["config/aws.env:3", "deploy/id_ed25519:1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("(allowed by allow-secret=config/aws.env:3)"),
        "{}",
        text(&o)
    );
    std::fs::remove_file(app.dir.join("local.pem")).unwrap();
    std::fs::remove_file(app.dir.join(".gitignore")).unwrap();
    let (ok, out) = push(&server, &app, &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("config/aws.env:3: error: aws-access-key-id AKIA************ committed"),
        "{out}"
    );
    assert!(
        out.contains("deploy/id_ed25519:1: error: private-key"),
        "{out}"
    );
    assert!(!out.contains("fixture.json"), "{out}");
    assert!(
        !out.contains(&aws_key),
        "the key itself is never printed: {out}"
    );
    assert!(
        out.contains("(validate failed: 2 committed secrets"),
        "{out}"
    );
    // `activity log ID` shows what was found, masked too.
    let id = out
        .split("(activity ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the activity id")
        .to_string();
    let o = server.ssh(&server.key, "git", &format!("activity log {id}"));
    let log = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        log.contains("config/aws.env:3: error: aws-access-key-id AKIA************ committed"),
        "activity {id}: {log}"
    );
    assert!(!log.contains(&aws_key), "activity {id}: {log}");
    assert!(!out.contains("-----> build"), "{out}");
    assert_eq!(server.branch_head(&app.dir, "demo", "main"), v1);
    assert_eq!(server.page(HOST, "/"), "built-1\n");

    // Allowing one location is not enough; allowing both deploys.
    let (ok, out) = push(&server, &app, &["allow-secret=config/aws.env:3"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("(validate failed: 1 committed secret"),
        "{out}"
    );
    let (ok, out) = push(
        &server,
        &app,
        &[
            "allow-secret=config/aws.env:3",
            "allow-secret=deploy/id_ed25519:1",
        ],
    );
    assert!(ok, "{out}");
    assert!(!out.contains(&aws_key), "{out}");
    assert_eq!(server.page(HOST, "/"), "built-2\n");

    // The next push scans only what it adds: the allowed files are not flagged again.
    app.write("VERSION", "3\n");
    app.commit("v3");
    let (ok, out) = push(&server, &app, &[]);
    assert!(ok, "{out}");
    assert!(!out.contains("aws.env"), "{out}");
    assert_eq!(server.page(HOST, "/"), "built-3\n");
}

#[test]
fn serve_refreshes_the_database_from_advisories_url() {
    let src = tempfile::tempdir().expect("tempdir");
    write_advisories(src.path());
    let url = format!("file://{}", src.path().join("psr7.json").display());
    let server = Server::start_with(&[("SLIPWAY_ADVISORIES_URL", url.as_str())]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = server.slipway(&["advisories", "ls", "--json"]);
        if text(&o).contains("\"ecosystem\":\"Packagist\",\"advisories\":1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not refreshed: {}\n{}",
            text(&o),
            server.server_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
