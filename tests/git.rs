//! Git over SSH (issue 3), driven with the real `git` and OpenSSH clients: every kind of push
//! and fetch, access control and admin commands, hostile commands, hostile packs and objects,
//! limits. After every scenario the server's repository passes `git fsck --full`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slipway_e2e::{assert_fsck, new_key, pack_of, repo_dir, run, text, App, Server};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// `git` in `dir` (local, no server), must succeed; stdout trimmed.
fn git_ok(dir: &Path, args: &[&str]) -> String {
    let o = run(Command::new("git").args(args).current_dir(dir));
    assert!(
        o.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `git` in `dir` with `input` on stdin, must succeed; stdout trimmed.
fn git_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn git");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let o = child.wait_with_output().expect("git");
    let _ = writer.join();
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The commit a ref of the server's repository points at ("" if none).
fn server_ref(server: &Server, project: &str, name: &str) -> String {
    let o = run(Command::new("git")
        .args(["rev-parse", "--verify", "-q", name])
        .current_dir(repo_dir(server, project)));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Files in the server repository's `objects/pack`, and whether a quarantine is left.
fn pack_files(server: &Server, project: &str) -> Vec<String> {
    let objects = repo_dir(server, project).join("objects");
    let leftovers: Vec<_> = std::fs::read_dir(&objects)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_else(|_| Vec::new())
        .into_iter()
        .filter(|n: &String| n.starts_with("incoming"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "quarantine left behind: {leftovers:?}"
    );
    let mut files: Vec<String> = std::fs::read_dir(objects.join("pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A plain repository (not the demo app) in `parent/name` with one commit on `main`.
fn plain_repo(parent: &Path, name: &str) -> App {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let app = App { dir };
    app.write("README", "hello\n");
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit("first");
    app
}

fn clone_as(
    server: &Server,
    key: &Path,
    project: &str,
    dest: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["clone", "-q"];
    args.extend_from_slice(extra);
    let remote = server.remote(project);
    let dest_s = dest.to_string_lossy().to_string();
    args.push(&remote);
    args.push(&dest_s);
    server.git_as(key, server.dir.path(), &args)
}

// ------------------------------------------------------------------------------------------
// Access control and admin commands.

#[test]
fn access_roles_and_admin_commands() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(
        o.status.success(),
        "first push: {}\n{}",
        text(&o),
        server.server_log()
    );
    let head = app.git_ok(&["rev-parse", "HEAD"]);

    // Users over SSH, by a server admin; the key comes on stdin.
    let alice = server.add_user("alice");
    let victor = server.add_user("victor");
    let eve = server.add_user("eve");
    let o = server.ssh(&server.key, "git", "user ls");
    let ls = String::from_utf8_lossy(&o.stdout).to_string();
    for u in ["alice\tuser\t1 key(s)", "me\tadmin", "victor", "eve"] {
        assert!(ls.contains(u), "user ls lacks {u:?}: {ls}");
    }
    let o = server.ssh(&server.key, "git", "user ls --json");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"name\": \"alice\""),
        "{}",
        text(&o)
    );
    // Bad input to user add: no key, a private key, a bad name, a key of someone else.
    let o = server.ssh_with_input(&server.key, "git", "user add bob", b"");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no key on stdin"), "{}", text(&o));
    let private = std::fs::read(&alice).expect("private key");
    let o = server.ssh_with_input(&server.key, "git", "user add bob", &private);
    assert!(text(&o).contains("private key"), "{}", text(&o));
    let o = server.ssh_with_input(&server.key, "git", "user add -bob", b"x");
    assert!(text(&o).contains("may hold only"), "{}", text(&o));
    let alice_pub = std::fs::read(alice.with_extension("pub")).expect("pub");
    let o = server.ssh_with_input(&server.key, "git", "user add mallory", &alice_pub);
    assert!(
        text(&o).contains("already belongs to user alice"),
        "{}",
        text(&o)
    );
    // Only server admins manage users.
    let o = server.ssh_with_input(
        &alice,
        "git",
        "user add mallory --admin",
        b"ssh-ed25519 AAAA",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("only server admins"), "{}", text(&o));
    let o = server.ssh(&alice, "git", "user ls");
    assert!(text(&o).contains("only server admins"), "{}", text(&o));

    // Without a grant, alice neither sees nor clones nor learns that demo exists.
    let missing = clone_as(&server, &eve, "nothing", &server.dir.path().join("c0"), &[]);
    let hidden = clone_as(&server, &eve, "demo", &server.dir.path().join("c1"), &[]);
    assert!(!hidden.status.success());
    let msg = |o: &std::process::Output, p: &str| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.contains("slipway:"))
            .map(|l| l.replace(p, "PROJECT"))
            .collect::<Vec<_>>()
    };
    assert!(!msg(&hidden, "demo").is_empty(), "{}", text(&hidden));
    assert_eq!(
        msg(&hidden, "demo"),
        msg(&missing, "nothing"),
        "a hidden project looks like a missing one"
    );
    let o = server.ssh(&eve, "git", "projects");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("demo"),
        "{}",
        text(&o)
    );
    let o = server.ssh(&eve, "git", "access ls demo");
    let o2 = server.ssh(&eve, "git", "access ls nothing");
    assert_eq!(
        text(&o).replace("demo", "P"),
        text(&o2).replace("nothing", "P")
    );
    // eve may not create projects either.
    let o = server.git_as(&eve, &app.dir, &["push", &server.remote("evil"), "main"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not found"), "{}", text(&o));

    // Grants by the project admin.
    for (who, role) in [("alice", "contributor"), ("victor", "viewer")] {
        let o = server.ssh(
            &server.key,
            "git",
            &format!("access grant demo {who} {role}"),
        );
        assert!(o.status.success(), "grant: {}", text(&o));
    }
    let o = server.ssh(&server.key, "git", "access grant demo victor owner");
    assert!(text(&o).contains("unknown role"), "{}", text(&o));
    let o = server.ssh(&server.key, "git", "access grant demo nobody viewer");
    assert!(text(&o).contains("user 'nobody' not found"), "{}", text(&o));
    let o = server.ssh(&server.key, "git", "access ls demo");
    let ls = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        ls.contains("alice\tcontributor")
            && ls.contains("victor\tviewer")
            && ls.contains("me\tadmin"),
        "{ls}"
    );
    // A contributor may not manage access.
    let o = server.ssh(&alice, "git", "access grant demo alice admin");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("only project admins manage access"),
        "{}",
        text(&o)
    );

    // The viewer clones; its push is refused with the reason.
    let vclone = server.dir.path().join("victor-clone");
    let o = clone_as(&server, &victor, "demo", &vclone, &[]);
    assert!(o.status.success(), "viewer clone: {}", text(&o));
    assert_eq!(git_ok(&vclone, &["rev-parse", "HEAD"]), head);
    let o = server.git_as(
        &victor,
        &app.dir,
        &["push", &server.remote("demo"), "main:refs/heads/v"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("victor is a viewer of project demo and may not push"),
        "{}",
        text(&o)
    );

    // The contributor: main is protected (admins only), other branches deploy.
    app.write("VERSION", "2\n");
    let v2 = app.commit("v2");
    let o = server.git_as(&alice, &app.dir, &["push", &server.remote("demo"), "main"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("(validate failed: main is a protected environment"),
        "{}",
        text(&o)
    );
    assert_eq!(
        server_ref(&server, "demo", "refs/heads/main"),
        head,
        "main did not move"
    );
    let o = server.git_as(
        &alice,
        &app.dir,
        &["push", &server.remote("demo"), "main:feature"],
    );
    assert!(
        o.status.success(),
        "contributor push to feature: {}\n{}",
        text(&o),
        server.server_log()
    );
    assert_eq!(server_ref(&server, "demo", "refs/heads/feature"), v2);

    // Revoke: victor loses sight of the project; user rm: alice's key is refused at the door.
    let o = server.ssh(&server.key, "git", "access revoke demo victor");
    assert!(o.status.success(), "{}", text(&o));
    let o = clone_as(&server, &victor, "demo", &server.dir.path().join("c2"), &[]);
    assert!(
        !o.status.success() && text(&o).contains("not found"),
        "{}",
        text(&o)
    );
    // A push by him says how projects come to be, in the same words for a project that
    // exists (demo) and one that does not (fresh): nothing says which.
    let refusal = |project: &str| {
        let o = server.git_as(
            &victor,
            &app.dir,
            &["push", &server.remote(project), "main:main"],
        );
        assert!(!o.status.success(), "{}", text(&o));
        let said = text(&o);
        let line = said
            .lines()
            .find(|l| l.contains("slipway:"))
            .unwrap_or_else(|| panic!("{said}"))
            .replace(project, "P");
        assert!(line.contains("a server admin's first push"), "{said}");
        line
    };
    assert_eq!(refusal("demo"), refusal("fresh"));
    let o = server.ssh(&server.key, "git", "user rm alice");
    assert!(o.status.success(), "{}", text(&o));
    let o = server.ssh(&alice, "git", "help");
    assert_eq!(
        o.status.code(),
        Some(255),
        "removed user's key must be refused: {}",
        text(&o)
    );
    let o = server.ssh(&server.key, "git", "user rm me");
    assert!(text(&o).contains("cannot remove yourself"), "{}", text(&o));

    // Unknown keys are refused at authentication.
    let stranger = new_key(server.dir.path(), "stranger");
    let o = server.ssh(&stranger, "git", "git-upload-pack '/demo.git'");
    assert_eq!(o.status.code(), Some(255), "{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    assert_fsck(&repo_dir(&server, "demo"));
}

// ------------------------------------------------------------------------------------------
// Hostile commands and environment.

#[test]
fn hostile_commands_and_env_requests_are_refused() {
    let server = Server::start();
    let app = plain_repo(server.dir.path(), "plain");
    // A tag push creates the project without deploying anything.
    let o = server.git(
        &app.dir,
        &["push", &server.remote("demo"), "main:refs/tags/v1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let long = format!("git-upload-pack '/{}.git'", "a".repeat(5000));
    let sixty_four = format!("git-upload-pack '/{}.git'", "a".repeat(64));
    let bad: Vec<String> = vec![
        "git-upload-pack '../demo.git'".into(),
        "git-upload-pack '/../demo.git'".into(),
        "git-receive-pack 'demo/../../etc.git'".into(),
        "git-upload-pack '/etc/passwd'".into(),
        "git-upload-pack '/srv/git/demo.git'".into(),
        "git-upload-pack '-demo.git'".into(),
        "git-upload-pack '--help'".into(),
        "git-upload-pack --help".into(),
        "git-receive-pack '--upload-pack=touch /tmp/x'".into(),
        "git-upload-pack '/de'\\''mo.git'".into(),
        "git-upload-pack \"demo.git\"".into(),
        "git-upload-pack 'demo.git' 'other.git'".into(),
        "git-upload-pack 'demo\u{1}.git'".into(),
        "git-upload-pack '/Demo.git'".into(),
        "git-upload-pack '/de_mo.git'".into(),
        "git-upload-pack '/demo-.git'".into(),
        "git-upload-pack '/de.mo.git'".into(),
        sixty_four,
        long,
        "git-upload-archive '/demo.git'".into(),
        "git-shell -c 'git-upload-pack demo.git'".into(),
        "sh -c id".into(),
        "rm -rf /".into(),
    ];
    for cmd in &bad {
        let o = server.ssh(&server.key, "git", cmd);
        let shown: String = cmd.chars().take(60).collect();
        assert!(!o.status.success(), "{shown} was accepted: {}", text(&o));
        assert!(
            text(&o).contains("slipway:"),
            "{shown}: no clear message: {}",
            text(&o)
        );
        assert!(
            o.stdout.is_empty() || !String::from_utf8_lossy(&o.stdout).contains("refs/"),
            "{shown} leaked refs"
        );
    }
    assert_eq!(
        server_ref(&server, "demo", "refs/tags/v1"),
        app.git_ok(&["rev-parse", "HEAD"])
    );

    // One spelling per repository (spec section 3): `/PROJECT.git` and `PROJECT.git`
    // (an scp-like remote sends no leading `/`), nothing else, from a real git client.
    let o = server.ssh(&server.key, "git", "git-upload-pack 'demo.git'");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("refs/tags/v1"),
        "PROJECT.git without the leading /: {}",
        text(&o)
    );
    for path in ["demo", "demo/", "demo.git/"] {
        let url = format!("ssh://git@127.0.0.1:{}/{path}", server.ssh_port);
        let o = server.git(&app.dir, &["ls-remote", &url]);
        assert!(!o.status.success(), "{path} was accepted: {}", text(&o));
        assert!(
            text(&o).contains("is not a repository of this server")
                && text(&o).contains("PROJECT.git"),
            "{path}: {}",
            text(&o)
        );
    }

    // GIT_PROTOCOL is passed through: a clone speaks protocol v2.
    let dest = server.dir.path().join("v2");
    let o = run(Command::new("git")
        .args([
            "-c",
            "protocol.version=2",
            "clone",
            "-q",
            &server.remote("demo"),
        ])
        .arg(&dest)
        .current_dir(server.dir.path())
        .env("GIT_SSH_COMMAND", server.ssh_command(&server.key))
        .env("GIT_TRACE_PACKET", "1"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("< version 2"),
        "the server must answer in protocol v2: {}",
        text(&o)
    );

    // Any other environment variable is ignored: a hostile GIT_CONFIG_PARAMETERS would make
    // upload-pack run a command if it were honoured.
    let marker = server.dir.path().join("pwned");
    let wrapper = server.dir.path().join("evil-ssh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport GIT_CONFIG_PARAMETERS=\"'uploadpack.packobjectshook'='touch {}; git'\"\nexport GIT_EXEC_PATH=/nonexistent\nexec {} -o SendEnv=GIT_CONFIG_PARAMETERS -o SendEnv=GIT_EXEC_PATH \"$@\"\n",
            marker.display(),
            server.ssh_command(&server.key)
        ),
    )
    .expect("wrapper");
    let o = run(Command::new("chmod").arg("+x").arg(&wrapper));
    assert!(o.status.success());
    let o = run(Command::new("git")
        .args(["clone", "-q", &server.remote("demo")])
        .arg(server.dir.path().join("env"))
        .current_dir(server.dir.path())
        .env("GIT_SSH_COMMAND", &wrapper));
    assert!(
        o.status.success(),
        "the clone works, the variables are ignored: {}",
        text(&o)
    );
    assert!(
        !marker.exists(),
        "an env request other than GIT_PROTOCOL was honoured"
    );
    let log = server.server_log();
    assert!(!log.contains("packobjectshook"), "{log}");
}

// ------------------------------------------------------------------------------------------
// Hostile packs and objects.

/// Raw tree bytes from (mode, name, hex id) entries, in the given order.
fn raw_tree(entries: &[(&str, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (mode, name, id) in entries {
        out.extend_from_slice(mode.as_bytes());
        out.push(b' ');
        out.extend_from_slice(name);
        out.push(0);
        let bytes: Vec<u8> = (0..40)
            .step_by(2)
            .map(|i| u8::from_str_radix(&id[i..i + 2], 16).expect("hex id"))
            .collect();
        out.extend_from_slice(&bytes);
    }
    out
}

/// Writes `data` as an object of `kind` without any check; returns its id.
fn literally(dir: &Path, kind: &str, data: &[u8]) -> String {
    git_input(
        dir,
        &["hash-object", "-t", kind, "--literally", "-w", "--stdin"],
        data,
    )
}

/// A commit object text for `tree` with the given author line.
fn commit_text(tree: &str, author: &str) -> String {
    format!("tree {tree}\nauthor {author}\ncommitter C O Mitter <c@example.com> 1700000000 +0000\n\nhostile\n")
}

/// The sha1 hex of `data`, with the `sha1sum` tool.
fn sha1(data: &[u8]) -> Vec<u8> {
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(f.path(), data).expect("write");
    let o = run(Command::new("sha1sum").arg(f.path()));
    let hex = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    (0..40)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Replaces the trailing checksum of a pack with a correct one.
fn fix_checksum(pack: &mut [u8]) {
    let n = pack.len() - 20;
    let sum = sha1(&pack[..n]);
    pack[n..].copy_from_slice(&sum);
}

#[test]
fn hostile_objects_and_packs_are_refused_and_nothing_is_written() {
    let server = Server::start_with(&[("SLIPWAY_MAX_OBJECT_BYTES", "1048576")]);
    let app = plain_repo(server.dir.path(), "w");
    let remote = server.remote("demo");
    let o = server.git(&app.dir, &["push", &remote, "main:refs/tags/base"]);
    assert!(o.status.success(), "{}", text(&o));
    let base = app.git_ok(&["rev-parse", "HEAD"]);
    let dir = &app.dir;
    let blob = literally(dir, "blob", b"content\n");
    let good_author = "A U Thor <a@example.com> 1700000000 +0000";
    let good_tree = literally(dir, "tree", &raw_tree(&[("100644", b"a", &blob)]));

    // Malformed objects, each in its own commit pushed as a tag (tags are stored, never deployed).
    let gitmodules_evil = literally(
        dir,
        "blob",
        b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n",
    );
    let gitmodules_name = literally(
        dir,
        "blob",
        b"[submodule \"../../hooks\"]\n\tpath = h\n\turl = https://example.com/x\n",
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "hasDotgit",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("100644", b".git", &blob)])),
                good_author,
            ),
        ),
        (
            "hasDotgit",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("40000", b".GIT", &good_tree)])),
                good_author,
            ),
        ),
        (
            "hasDotgit",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("40000", b"git~1", &good_tree)])),
                good_author,
            ),
        ),
        (
            "hasDotdot",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("40000", b"..", &good_tree)])),
                good_author,
            ),
        ),
        (
            "fullPathname",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("100644", b"a/b", &blob)])),
                good_author,
            ),
        ),
        (
            "duplicateEntries",
            commit_text(
                &literally(
                    dir,
                    "tree",
                    &raw_tree(&[("100644", b"a", &blob), ("100644", b"a", &blob)]),
                ),
                good_author,
            ),
        ),
        (
            "treeNotSorted",
            commit_text(
                &literally(
                    dir,
                    "tree",
                    &raw_tree(&[("100644", b"b", &blob), ("100644", b"a", &blob)]),
                ),
                good_author,
            ),
        ),
        (
            "badFilemode",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("100666", b"a", &blob)])),
                good_author,
            ),
        ),
        (
            "gitmodulesUrl",
            commit_text(
                &literally(
                    dir,
                    "tree",
                    &raw_tree(&[("100644", b".gitmodules", &gitmodules_evil)]),
                ),
                good_author,
            ),
        ),
        (
            "gitmodulesName",
            commit_text(
                &literally(
                    dir,
                    "tree",
                    &raw_tree(&[("100644", b".gitmodules", &gitmodules_name)]),
                ),
                good_author,
            ),
        ),
        (
            "gitmodulesSymlink",
            commit_text(
                &literally(dir, "tree", &raw_tree(&[("120000", b".gitmodules", &blob)])),
                good_author,
            ),
        ),
        (
            "missingEmail",
            commit_text(&good_tree, "A U Thor a@example.com 1700000000 +0000"),
        ),
        (
            "badEmail",
            commit_text(&good_tree, "A U Thor <a@example.com 1700000000 +0000"),
        ),
        (
            "badDate",
            commit_text(&good_tree, "A U Thor <a@example.com> soon +0000"),
        ),
        (
            "badTimezone",
            commit_text(&good_tree, "A U Thor <a@example.com> 1700000000 +01"),
        ),
        (
            "missingNameBeforeEmail",
            commit_text(&good_tree, "<a@example.com> 1700000000 +0000"),
        ),
    ];
    let packs_before = pack_files(&server, "demo");
    for (i, (problem, commit)) in cases.iter().enumerate() {
        let id = literally(dir, "commit", commit.as_bytes());
        let o = server.git(dir, &["push", &remote, &format!("{id}:refs/tags/bad{i}")]);
        assert!(!o.status.success(), "{problem}: accepted: {}", text(&o));
        let out = text(&o);
        assert!(
            out.contains("remote unpack failed") && out.contains(problem),
            "{problem}: {out}"
        );
        assert_eq!(
            server_ref(&server, "demo", &format!("refs/tags/bad{i}")),
            ""
        );
        assert_eq!(
            pack_files(&server, "demo"),
            packs_before,
            "{problem}: a pack was written"
        );
    }
    // The same bad tree reached through a valid commit, on a branch: refused too.
    let o = server.git(
        dir,
        &[
            "push",
            &remote,
            &format!(
                "{}:refs/heads/x",
                literally(dir, "commit", cases[0].1.as_bytes())
            ),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("hasDotgit"),
        "{}",
        text(&o)
    );

    // An object bigger than the limit, and a delta bomb: a small pack expanding beyond it.
    app.write("zeros.bin", &"\0".repeat(4 << 20));
    let big = app.commit("4 MiB of zeros (compresses to a few KiB)");
    let o = server.git(dir, &["push", &remote, &format!("{big}:refs/tags/big")]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("expands beyond the limit of 1048576 bytes"),
        "{}",
        text(&o)
    );
    assert_eq!(pack_files(&server, "demo"), packs_before);
    app.git_ok(&["reset", "-q", "--hard", "HEAD~1"]);
    // A delta bomb by hand: a base of 1 KiB (on the server) and a delta copying it 2048 times.
    app.write("x.txt", &"x".repeat(1024));
    let with_x = app.commit("1 KiB base");
    let o = server.git(
        dir,
        &["push", &remote, &format!("{with_x}:refs/tags/with-x")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let packs_before = pack_files(&server, "demo");
    let base_blob = app.git_ok(&["rev-parse", &format!("{with_x}:x.txt")]);
    let bomb = delta_bomb_pack(&base_blob, 2048);
    let o = server.raw_receive_pack(
        &server.key,
        "demo",
        &[format!("{ZERO} {base} refs/tags/bomb")],
        &bomb,
    );
    let out = text(&o);
    assert!(
        out.contains("unpack an object of the pack expands beyond the limit of 1048576 bytes"),
        "delta bomb: {out}"
    );
    assert_eq!(pack_files(&server, "demo"), packs_before);

    // Packs that are truncated, corrupt, or miss objects (by hand: git would not send them).
    app.write("new.txt", "new content\n");
    let c = app.commit("new");
    let tree = app.git_ok(&["rev-parse", &format!("{c}^{{tree}}")]);
    let new_blob = app.git_ok(&["rev-parse", &format!("{c}:new.txt")]);
    let good = pack_of(dir, &[&c, &tree, &new_blob]);
    let cmd = vec![format!("{ZERO} {c} refs/tags/new")];
    let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
    variants.push(("truncated", good[..good.len() / 2].to_vec()));
    variants.push(("no pack at all", Vec::new()));
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xff;
    variants.push(("bad checksum", bad_sum));
    let mut bad_zlib = good.clone();
    // The first object's header is at 12; its compressed data follows within a few bytes.
    for b in &mut bad_zlib[16..24] {
        *b ^= 0x5a;
    }
    fix_checksum(&mut bad_zlib);
    variants.push(("bad zlib", bad_zlib));
    let mut more = good.clone();
    more[11] += 1;
    fix_checksum(&mut more);
    variants.push(("object count too high", more));
    let mut fewer = good.clone();
    fewer[11] -= 1;
    fix_checksum(&mut fewer);
    variants.push(("object count too low", fewer));
    let mut garbage = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    variants.push(("garbage", garbage));
    variants.push(("missing tree and blob", pack_of(dir, &[&c])));
    for (what, pack) in &variants {
        let o = server.raw_receive_pack(&server.key, "demo", &cmd, pack);
        let out = text(&o);
        assert!(!out.contains("ok refs/tags/new"), "{what}: accepted: {out}");
        assert_eq!(server_ref(&server, "demo", "refs/tags/new"), "", "{what}");
        assert_eq!(
            pack_files(&server, "demo"),
            packs_before,
            "{what}: a pack was written"
        );
    }
    let o = server.raw_receive_pack(&server.key, "demo", &cmd, &pack_of(dir, &[&c]));
    assert!(
        text(&o).contains("missing necessary objects"),
        "{}",
        text(&o)
    );

    // Ref names that are no valid ref names, or outside refs/heads and refs/tags.
    for name in [
        "refs/heads/a..b",
        "refs/heads/x.lock",
        "refs/tags/a b",
        "refs/heads/@{1}",
        "refs/heads/",
        "HEAD",
        "refs/notes/x",
        "refs/heads/a\\b",
        "../../config",
    ] {
        let o =
            server.raw_receive_pack(&server.key, "demo", &[format!("{ZERO} {c} {name}")], &good);
        let out = text(&o);
        assert!(
            out.contains("ng ") && !out.contains(&format!("ok {name}")),
            "{name}: {out}"
        );
    }
    // A client disconnecting in the middle of the pack leaves nothing.
    let mut child = Command::new("ssh");
    for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
        child.arg(a);
    }
    let mut child = child
        .args([
            "-p",
            &server.ssh_port.to_string(),
            "git@127.0.0.1",
            "git-receive-pack '/demo.git'",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        let line = format!("{ZERO} {c} refs/tags/cut\0report-status\n");
        let _ = write!(stdin, "{:04x}{line}0000", line.len() + 4);
        let _ = stdin.write_all(&good[..good.len() - 30]);
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_millis(500));
        let _ = child.kill();
        let _ = child.wait();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server_ref(&server, "demo", "refs/tags/cut"), "");
    assert_eq!(pack_files(&server, "demo"), packs_before);

    // And the good pack still goes in afterwards.
    let o = server.raw_receive_pack(&server.key, "demo", &cmd, &good);
    assert!(text(&o).contains("ok refs/tags/new"), "{}", text(&o));
    assert_eq!(server_ref(&server, "demo", "refs/tags/new"), c);
    assert_fsck(&repo_dir(&server, "demo"));
}

/// A pack of one REF_DELTA object against `base` (a 1 KiB blob the server has) whose result is
/// `base` copied `copies` times: a few bytes that expand to `copies` KiB.
fn delta_bomb_pack(base: &str, copies: usize) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut delta = Vec::new();
    varint(1024, &mut delta);
    varint(1024 * copies, &mut delta);
    for _ in 0..copies {
        // Copy from offset 0, size 1024 (0x0400: size byte 2 set).
        delta.extend_from_slice(&[0x80 | 0x20, 0x04]);
    }
    let compressed = zlib(&delta);
    let mut pack = b"PACK\0\0\0\x02\0\0\0\x01".to_vec();
    // Type 7 (REF_DELTA), size = delta.len().
    let mut size = delta.len();
    let mut first = 0x70 | (size & 0x0f) as u8;
    size >>= 4;
    if size > 0 {
        first |= 0x80;
    }
    pack.push(first);
    while size > 0 {
        let mut b = (size & 0x7f) as u8;
        size >>= 7;
        if size > 0 {
            b |= 0x80;
        }
        pack.push(b);
    }
    for i in (0..40).step_by(2) {
        pack.push(u8::from_str_radix(&base[i..i + 2], 16).expect("hex"));
    }
    pack.extend_from_slice(&compressed);
    pack.extend_from_slice(&[0; 20]);
    fix_checksum(&mut pack);
    pack
}

/// zlib-compresses `data` (with python3's zlib: no compression crate in the test).
fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read()))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    child.wait_with_output().expect("python3").stdout
}

// ------------------------------------------------------------------------------------------
// Every kind of push.

/// `git push` as the admin from `dir`; (ok, output).
fn push(server: &Server, dir: &Path, args: &[&str]) -> (bool, String) {
    let mut a = vec!["push"];
    a.extend_from_slice(args);
    let o = server.git(dir, &a);
    (o.status.success(), text(&o))
}

#[test]
fn every_kind_of_push() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let remote = server.remote("demo");
    let repo = repo_dir(&server, "demo");
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(ok, "first push: {out}\n{}", server.server_log());
    let v1 = app.git_ok(&["rev-parse", "HEAD"]);

    // Up to date: nothing happens.
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(ok && out.contains("Everything up-to-date"), "{out}");

    // A new branch, with push options: advertised, handed to the pipeline, in the activity log.
    app.git_ok(&["checkout", "-q", "-b", "feature"]);
    app.write("VERSION", "2\n");
    let v2 = app.commit("v2");
    let o = server.push_with(
        &app,
        "demo",
        "feature",
        &["ticket=OPS-1", "reason=test run"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("* [new branch]      feature -> feature"),
        "{out}"
    );
    assert!(
        out.contains("push options: ticket=OPS-1, reason=test run"),
        "{out}"
    );
    let o = server.ssh(&server.key, "git", "activity demo feature");
    let activity = String::from_utf8_lossy(&o.stdout).to_string();
    let id = activity
        .lines()
        .last()
        .and_then(|l| l.split('\t').next())
        .unwrap_or("")
        .to_string();
    let o = server.ssh(&server.key, "git", &format!("activity log {id}"));
    let log = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        log.contains("ticket=OPS-1") && log.contains("reason=test run"),
        "activity {id}: {log}\n{activity}"
    );

    // Fast-forward of main.
    app.git_ok(&["checkout", "-q", "main"]);
    app.git_ok(&["merge", "-q", "--ff-only", "feature"]);
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(
        ok && out.contains(&format!("{}..{}", &v1[..7], &v2[..7])),
        "{out}"
    );

    // Non-fast-forward: refused without --force (by the client), accepted with it.
    app.git_ok(&["reset", "-q", "--hard", &v1]);
    app.write("VERSION", "3\n");
    let v3 = app.commit("v3, rewritten history");
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(
        !ok && (out.contains("non-fast-forward") || out.contains("fetch first")),
        "{out}"
    );
    assert_eq!(server_ref(&server, "demo", "refs/heads/main"), v2);
    let (ok, out) = push(&server, &app.dir, &["--force", &remote, "main"]);
    assert!(ok && out.contains("(forced update)"), "{out}");
    assert_eq!(server_ref(&server, "demo", "refs/heads/main"), v3);
    assert_fsck(&repo);

    // Several refs at once: a branch, a lightweight and an annotated tag (tags: stored, no deploy).
    app.git_ok(&["tag", "v3"]);
    app.git_ok(&[
        "-c",
        "user.name=T",
        "-c",
        "user.email=t@e",
        "tag",
        "-a",
        "-m",
        "release 3",
        "rel-3",
    ]);
    app.git_ok(&["branch", "-f", "staging", "main"]);
    let activities_before =
        String::from_utf8_lossy(&server.ssh(&server.key, "git", "activity demo").stdout)
            .lines()
            .count();
    let (ok, out) = push(&server, &app.dir, &[&remote, "staging", "v3", "rel-3"]);
    assert!(ok, "{out}");
    for r in [
        "staging -> staging",
        "[new tag]         v3 -> v3",
        "[new tag]         rel-3 -> rel-3",
    ] {
        assert!(out.contains(r), "{r}: {out}");
    }
    let activities_after =
        String::from_utf8_lossy(&server.ssh(&server.key, "git", "activity demo").stdout)
            .lines()
            .count();
    assert_eq!(
        activities_after,
        activities_before + 1,
        "only the branch deploys"
    );
    assert_eq!(server_ref(&server, "demo", "refs/tags/v3"), v3);
    assert_eq!(server_ref(&server, "demo", "refs/tags/rel-3^{}"), v3);

    // --atomic: all refs or none.
    app.git_ok(&["branch", "-f", "other", "main"]);
    let (ok, out) = push(
        &server,
        &app.dir,
        &["--atomic", &remote, "other", "main:refs/notes/nope"],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("atomic push failed") || out.contains("atomic"),
        "{out}"
    );
    assert_eq!(
        server_ref(&server, "demo", "refs/heads/other"),
        "",
        "atomic: nothing moved"
    );
    app.git_ok(&["tag", "t-atomic"]);
    let (ok, out) = push(
        &server,
        &app.dir,
        &["--atomic", &remote, "other", "t-atomic"],
    );
    assert!(ok, "{out}");
    assert_eq!(server_ref(&server, "demo", "refs/heads/other"), v3);
    assert_eq!(server_ref(&server, "demo", "refs/tags/t-atomic"), v3);

    // Deleting a branch (git) and a tag (by hand, proving the server expects no pack after
    // delete-only commands: it answers although the client sends nothing more).
    let (ok, out) = push(&server, &app.dir, &[&remote, "--delete", "other"]);
    assert!(ok && out.contains("[deleted]"), "{out}");
    assert_eq!(server_ref(&server, "demo", "refs/heads/other"), "");
    let o = server.raw_receive_pack(
        &server.key,
        "demo",
        &[format!("{v3} {ZERO} refs/tags/t-atomic")],
        b"",
    );
    assert!(text(&o).contains("ok refs/tags/t-atomic"), "{}", text(&o));
    assert_eq!(server_ref(&server, "demo", "refs/tags/t-atomic"), "");

    // Only objects the server has: a new tag and a branch on an existing commit (empty pack).
    let (ok, out) = push(
        &server,
        &app.dir,
        &[&remote, &format!("{v2}:refs/tags/old-v2")],
    );
    assert!(ok, "{out}");
    assert_eq!(server_ref(&server, "demo", "refs/tags/old-v2"), v2);

    // A thin pack: one line changed in a big file, sent as a delta against the server's blob.
    let big: String = (0..20000)
        .map(|i| format!("line {i} of a big file that deltas well\n"))
        .collect();
    app.write("big.txt", &big);
    let with_big = app.commit("big file");
    let (ok, out) = push(
        &server,
        &app.dir,
        &[&remote, &format!("{with_big}:refs/tags/with-big")],
    );
    assert!(ok, "{out}");
    app.write("big.txt", &big.replace("line 777 of", "LINE 777 OF"));
    let changed = app.commit("one line changed");
    let packs = pack_files(&server, "demo");
    let (ok, out) = push(
        &server,
        &app.dir,
        &[&remote, &format!("{changed}:refs/tags/changed")],
    );
    assert!(ok, "{out}");
    let new_pack: Vec<String> = pack_files(&server, "demo")
        .into_iter()
        .filter(|p| !packs.contains(p) && p.ends_with(".pack"))
        .collect();
    assert_eq!(new_pack.len(), 1, "{new_pack:?}");
    let size = std::fs::metadata(repo.join("objects/pack").join(&new_pack[0]))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(size > 0, "the completed thin pack is stored");
    assert_eq!(
        git_ok(&repo, &["cat-file", "-p", &format!("{changed}:big.txt")])
            .lines()
            .nth(777),
        Some("LINE 777 OF a big file that deltas well")
    );
    assert_fsck(&repo);

    // After the server repository was repacked, pushes still work.
    git_ok(&repo, &["repack", "-a", "-d", "-f", "-q"]);
    app.write("VERSION", "4\n");
    let v4 = app.commit("v4");
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(ok, "{out}");
    assert_eq!(server_ref(&server, "demo", "refs/heads/main"), v4);
    assert_fsck(&repo);

    // Two pushes of the same branch at once: one wins, the other is told to fetch first.
    let a = clone_as(
        &server,
        &server.key,
        "demo",
        &server.dir.path().join("race-a"),
        &[],
    );
    assert!(a.status.success(), "{}", text(&a));
    let b = clone_as(
        &server,
        &server.key,
        "demo",
        &server.dir.path().join("race-b"),
        &[],
    );
    assert!(b.status.success(), "{}", text(&b));
    let mut commits = Vec::new();
    for side in ["race-a", "race-b"] {
        let d = server.dir.path().join(side);
        std::fs::write(d.join("VERSION"), format!("{side}\n")).expect("write");
        git_ok(
            &d,
            &[
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@e",
                "commit",
                "-q",
                "-am",
                side,
            ],
        );
        commits.push(git_ok(&d, &["rev-parse", "HEAD"]));
    }
    let handles: Vec<_> = ["race-a", "race-b"]
        .iter()
        .map(|side| {
            let d = server.dir.path().join(side);
            let ssh = server.ssh_command(&server.key);
            let remote = remote.clone();
            std::thread::spawn(move || {
                run(Command::new("git")
                    .args(["push", &remote, "main"])
                    .current_dir(d)
                    .env("GIT_SSH_COMMAND", ssh))
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("push thread"))
        .collect();
    let won: Vec<usize> = (0..2).filter(|i| results[*i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one push wins: {}\n---\n{}",
        text(&results[0]),
        text(&results[1])
    );
    let lost = 1 - won[0];
    assert!(
        text(&results[lost]).contains("fetch first"),
        "the loser is told to fetch first: {}",
        text(&results[lost])
    );
    assert_eq!(
        server_ref(&server, "demo", "refs/heads/main"),
        commits[won[0]]
    );
    assert_fsck(&repo);

    // A repository with thousands of commits and files.
    let big_dir = server.dir.path().join("big");
    big_history(&app.dir, &big_dir, 1500, 3000);
    let (ok, out) = push(&server, &big_dir, &[&remote, "main:refs/heads/big"]);
    assert!(ok, "big push: {out}\n{}", server.server_log());
    let tip = git_ok(&big_dir, &["rev-parse", "main"]);
    assert_eq!(server_ref(&server, "demo", "refs/heads/big"), tip);
    assert_eq!(
        git_ok(&repo, &["rev-list", "--count", "refs/heads/big"]),
        git_ok(&big_dir, &["rev-list", "--count", "main"])
    );
    assert_fsck(&repo);
}

/// A repository in `dest` whose `main` holds the demo app of `app_dir` plus `files` files added
/// over `commits` commits (with `git fast-import`).
fn big_history(app_dir: &Path, dest: &Path, commits: usize, files: usize) {
    std::fs::create_dir_all(dest).expect("mkdir");
    git_ok(dest, &["init", "-q", "-b", "main"]);
    let mut stream = Vec::new();
    let mut mark = 0;
    let blob = |stream: &mut Vec<u8>, mark: &mut usize, data: &[u8]| -> usize {
        *mark += 1;
        stream.extend_from_slice(format!("blob\nmark :{mark}\ndata {}\n", data.len()).as_bytes());
        stream.extend_from_slice(data);
        stream.push(b'\n');
        *mark
    };
    let mut app_files = Vec::new();
    for name in [".platform.app.yaml", "server.py", "VERSION"] {
        let data = std::fs::read(app_dir.join(name)).expect("app file");
        app_files.push((name, blob(&mut stream, &mut mark, &data)));
    }
    let per_commit = files.div_ceil(commits);
    let mut next_file = 0;
    for c in 0..commits {
        let mut changes = Vec::new();
        for _ in 0..per_commit {
            if next_file >= files {
                break;
            }
            let data = format!(
                "file {next_file}\n{}\n",
                "lorem ipsum dolor sit amet ".repeat(8 + next_file % 16)
            );
            let m = blob(&mut stream, &mut mark, data.as_bytes());
            changes.push((format!("data/{:02}/f{next_file:05}.txt", next_file % 50), m));
            next_file += 1;
        }
        let msg = format!("commit {c}");
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\ncommitter T <t@example.com> {} +0000\ndata {}\n{msg}\n",
                1_700_000_000 + c,
                msg.len()
            )
            .as_bytes(),
        );
        if c == 0 {
            for (name, m) in &app_files {
                stream.extend_from_slice(format!("M 100644 :{m} {name}\n").as_bytes());
            }
        }
        for (path, m) in changes {
            stream.extend_from_slice(format!("M 100644 :{m} {path}\n").as_bytes());
        }
        stream.push(b'\n');
    }
    git_input(dest, &["fast-import", "--quiet"], &stream);
}

// ------------------------------------------------------------------------------------------
// Every kind of fetch.

#[test]
fn every_kind_of_fetch() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    let remote = server.remote("demo");
    for i in 2..=4 {
        app.write("VERSION", &format!("{i}\n"));
        app.write(&format!("docs/file{i}.txt"), &format!("doc {i}\n"));
        app.commit(&format!("v{i}"));
    }
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(ok, "{out}\n{}", server.server_log());
    let v4 = app.git_ok(&["rev-parse", "HEAD"]);
    app.git_ok(&["tag", "v4"]);
    let (ok, out) = push(&server, &app.dir, &[&remote, "v4"]);
    assert!(ok, "{out}");

    // ls-remote, in protocol v0 and v2.
    for version in ["0", "2"] {
        let o = server.git(
            &app.dir,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "ls-remote",
                &remote,
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        let refs = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            refs.contains(&format!("{v4}\trefs/heads/main")) && refs.contains("refs/tags/v4"),
            "v{version}: {refs}"
        );
    }

    // Clone in v0 and v2 (the trace shows the protocol spoken).
    for version in ["0", "2"] {
        let dest = server.dir.path().join(format!("clone-v{version}"));
        let o = run(Command::new("git")
            .args([
                "-c",
                &format!("protocol.version={version}"),
                "clone",
                &remote,
            ])
            .arg(&dest)
            .current_dir(server.dir.path())
            .env("GIT_SSH_COMMAND", server.ssh_command(&server.key))
            .env("GIT_TRACE_PACKET", "1"));
        assert!(o.status.success(), "{}", text(&o));
        let trace = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            trace.contains("< version 2"),
            version == "2",
            "protocol v{version}"
        );
        assert_eq!(git_ok(&dest, &["rev-parse", "HEAD"]), v4);
        assert_fsck(&dest.join(".git"));
    }

    // Shallow clone and deepening.
    let shallow = server.dir.path().join("shallow");
    let o = clone_as(&server, &server.key, "demo", &shallow, &["--depth", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(git_ok(&shallow, &["rev-list", "--count", "HEAD"]), "1");
    assert!(shallow.join(".git/shallow").exists());
    let o = server.git(&shallow, &["fetch", "-q", "--deepen", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(git_ok(&shallow, &["rev-list", "--count", "HEAD"]), "3");

    // Partial clone: no blobs until checkout needs them, then fetched lazily.
    let partial = server.dir.path().join("partial");
    let o = clone_as(
        &server,
        &server.key,
        "demo",
        &partial,
        &["--filter=blob:none", "--no-checkout"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let missing = git_ok(
        &partial,
        &["rev-list", "--objects", "--all", "--missing=print"],
    );
    assert!(
        missing.lines().any(|l| l.starts_with('?')),
        "blobs must be missing: {missing}"
    );
    let o = server.git(&partial, &["checkout", "-q", "main"]);
    assert!(o.status.success(), "lazy fetch on checkout: {}", text(&o));
    assert_eq!(
        std::fs::read_to_string(partial.join("VERSION")).unwrap_or_default(),
        "4\n"
    );
    let o = clone_as(
        &server,
        &server.key,
        "demo",
        &server.dir.path().join("tree0"),
        &["--filter=tree:0"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // Fetch and pull after a new push.
    app.write("VERSION", "5\n");
    let v5 = app.commit("v5");
    let (ok, out) = push(&server, &app.dir, &[&remote, "main"]);
    assert!(ok, "{out}");
    let v0 = server.dir.path().join("clone-v0");
    let o = server.git(&v0, &["fetch", "-q", "origin"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(git_ok(&v0, &["rev-parse", "origin/main"]), v5);
    let v2 = server.dir.path().join("clone-v2");
    let o = server.git(&v2, &["pull", "-q", "--ff-only", "origin", "main"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(git_ok(&v2, &["rev-parse", "HEAD"]), v5);
    // Fetching a shallow clone forward keeps it shallow.
    let o = server.git(&shallow, &["pull", "-q", "--ff-only"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(git_ok(&shallow, &["rev-parse", "HEAD"]), v5);
    assert_fsck(&repo_dir(&server, "demo"));
}

// ------------------------------------------------------------------------------------------
// Limits.

#[test]
fn limits_are_enforced_with_clear_messages() {
    let server = Server::start_with(&[
        ("SLIPWAY_MAX_PACK_BYTES", "200000"),
        ("SLIPWAY_MAX_REFS_PER_PUSH", "5"),
        ("SLIPWAY_MAX_SESSIONS_PER_KEY", "2"),
        ("SLIPWAY_SSH_IDLE_TIMEOUT", "5"),
    ]);
    let app = plain_repo(server.dir.path(), "w");
    let remote = server.remote("demo");
    let (ok, out) = push(&server, &app.dir, &[&remote, "main:refs/tags/base"]);
    assert!(ok, "{out}");
    let packs = pack_files(&server, "demo");

    // Pack size: 1 MB of random bytes does not compress.
    let o = run(Command::new("sh")
        .args(["-c", "head -c 1000000 /dev/urandom > random.bin"])
        .current_dir(&app.dir));
    assert!(o.status.success());
    let c = app.commit("random");
    let (ok, out) = push(
        &server,
        &app.dir,
        &[&remote, &format!("{c}:refs/tags/random")],
    );
    assert!(
        !ok && out.contains("exceeds the limit of 200000 bytes"),
        "{out}"
    );
    assert_eq!(pack_files(&server, "demo"), packs);
    app.git_ok(&["reset", "-q", "--hard", "HEAD~1"]);

    // Refs per push.
    let tags: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    for t in &tags {
        app.git_ok(&["tag", t]);
    }
    let mut args = vec![remote.as_str()];
    args.extend(tags.iter().map(String::as_str));
    let (ok, out) = push(&server, &app.dir, &args);
    assert!(
        !ok && out.contains("too many ref updates or push options (limit 5)"),
        "{out}"
    );
    assert_eq!(server_ref(&server, "demo", "refs/tags/t0"), "");
    let (ok, out) = push(&server, &app.dir, &[&remote, "t0", "t1", "t2", "t3", "t4"]);
    assert!(ok, "five refs are fine: {out}");

    // Sessions per key: two idle upload-packs hold both slots; a third session is refused.
    let spawn_idle = || {
        let mut cmd = Command::new("ssh");
        for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
            cmd.arg(a);
        }
        cmd.args([
            "-p",
            &server.ssh_port.to_string(),
            "git@127.0.0.1",
            "git-upload-pack '/demo.git'",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh")
    };
    let started = Instant::now();
    let mut idle = vec![spawn_idle(), spawn_idle()];
    std::thread::sleep(Duration::from_millis(1000));
    let o = server.ssh(&server.key, "git", "projects");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("too many open sessions for this key (limit 2)"),
        "{}",
        text(&o)
    );

    // Idle timeout: the idle sessions are closed by the server (their stdin stays open).
    for child in &mut idle {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            assert!(Instant::now() < deadline, "an idle session was not closed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed too early"
    );
    // Their slots are free again.
    let o = server.ssh(&server.key, "git", "projects");
    assert!(o.status.success(), "{}", text(&o));
    assert_fsck(&repo_dir(&server, "demo"));
}
