//! End-to-end pushes with the real git client against the native receive-pack
//! (examples/receive_stdio.rs serving on stdin/stdout).

mod common;

use common::*;
use slipway_git::{ObjectId, Repo};
use std::path::Path;

fn push(work: &Path, server: &Path, extra: &str, args: &[&str]) -> (bool, String) {
    let rp = format!("{} {extra}", receive_stdio().display());
    let mut full = vec![
        "push",
        "--receive-pack",
        rp.as_str(),
        server.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    let out = git_output(work, &full);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

fn oid(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.as_bytes()).unwrap()
}

fn fsck(server: &Path) {
    let out = git_output(server, &["fsck", "--full", "--strict"]);
    assert!(
        out.status.success(),
        "fsck failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn push_create_fast_forward_branch_delete() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");

    // 1. Push to a repository that does not exist yet (the example creates it).
    let (ok, stderr) = push(&work, &server, "", &["main"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("remote: deploying refs/heads/main"),
        "{stderr}"
    );
    assert!(
        stderr.contains("* [new branch]      main -> main"),
        "{stderr}"
    );
    let repo = Repo::open(&server).unwrap();
    let first = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(
        repo.ref_target("refs/heads/main").unwrap(),
        Some(oid(&first))
    );
    // HEAD of the new repository points at main.
    assert_eq!(repo.ref_target("HEAD").unwrap(), Some(oid(&first)));
    fsck(&server);

    // 2. A fast-forward push: git sends a thin pack against the advertised tip.
    let second = commit_change(&work, "second");
    let (ok, stderr) = push(&work, &server, "", &["main"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("{}..{}  main -> main", &first[..7], &second[..7])),
        "{stderr}"
    );
    assert_eq!(
        repo.ref_target("refs/heads/main").unwrap(),
        Some(oid(&second))
    );
    fsck(&server);
    // The reflog records the move.
    let reflog = std::fs::read_to_string(server.join("logs/refs/heads/main")).unwrap();
    assert!(
        reflog.contains(&format!("{first} {second} Slipway <slipway@localhost>")),
        "{reflog}"
    );

    // 3. A new branch pointing at an existing commit (an empty pack), and a tag.
    git(&work, &["tag", "-a", "v1", "-m", "release 1"]);
    let (ok, stderr) = push(&work, &server, "", &["main:feature", "v1"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        repo.ref_target("refs/heads/feature").unwrap(),
        Some(oid(&second))
    );
    let tag = git(&work, &["rev-parse", "v1"]);
    assert_eq!(repo.ref_target("refs/tags/v1").unwrap(), Some(oid(&tag)));
    let names: Vec<String> = repo.refs().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["refs/heads/feature", "refs/heads/main", "refs/tags/v1"]
    );

    // 4. Delete the branch (no pack is sent).
    let (ok, stderr) = push(&work, &server, "", &[":feature"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("- [deleted]         feature"), "{stderr}");
    assert_eq!(repo.ref_target("refs/heads/feature").unwrap(), None);

    // 5. Nothing to push: a clean exit.
    let (ok, stderr) = push(&work, &server, "", &["main"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("Everything up-to-date"), "{stderr}");

    fsck(&server);
    // No quarantine directories or keep files were left behind.
    for f in object_files(&server) {
        assert!(
            f.ends_with(".pack") || f.ends_with(".idx"),
            "unexpected file {f}"
        );
    }
    // A clone of the server repository has the pushed history.
    let clone = dir.path().join("clone");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            server.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), second);
}

#[test]
fn rejected_push_keeps_the_ref() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    let (ok, stderr) = push(&work, &server, "", &["main"]);
    assert!(ok, "{stderr}");
    let first = git(&work, &["rev-parse", "HEAD"]);

    commit_change(&work, "refused change");
    let (ok, stderr) = push(&work, &server, "'--reject=deploy failed: boom'", &["main"]);
    assert!(!ok, "the push must fail");
    assert!(
        stderr.contains("remote: checking refs/heads/main"),
        "{stderr}"
    );
    assert!(
        stderr.contains("! [remote rejected] main -> main (deploy failed: boom)"),
        "{stderr}"
    );
    let repo = Repo::open(&server).unwrap();
    assert_eq!(
        repo.ref_target("refs/heads/main").unwrap(),
        Some(oid(&first))
    );
    fsck(&server);
}

#[test]
fn refused_ref_names_and_push_options() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    let (ok, stderr) = push(
        &work,
        &server,
        "",
        &[
            "-o",
            "ci.skip",
            "-o",
            "env=a b",
            "main",
            "main:refs/notes/x",
        ],
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("remote: option ci.skip"), "{stderr}");
    assert!(stderr.contains("remote: option env=a b"), "{stderr}");
    assert!(
        stderr.contains("* [new branch]      main -> main"),
        "{stderr}"
    );
    assert!(
        stderr.contains("! [remote rejected] main -> refs/notes/x (only refs/heads/* and refs/tags/* can be pushed)"),
        "{stderr}"
    );
    let repo = Repo::open(&server).unwrap();
    assert_eq!(repo.ref_target("refs/notes/x").unwrap(), None);
}

#[test]
fn atomic_push_refuses_everything_when_one_ref_fails() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    let (ok, stderr) = push(
        &work,
        &server,
        "",
        &["--atomic", "main", "main:refs/notes/x"],
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("main -> main (atomic push failed)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("main -> refs/notes/x (only refs/heads/* and refs/tags/* can be pushed)"),
        "{stderr}"
    );
    assert_eq!(
        Repo::open(&server)
            .unwrap()
            .ref_target("refs/heads/main")
            .unwrap(),
        None
    );
}

#[test]
fn pack_over_the_limit_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    let (ok, stderr) = push(&work, &server, "--max-pack=50", &["main"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("exceeds the limit of 50 bytes"), "{stderr}");
    let repo = Repo::open(&server).unwrap();
    assert_eq!(repo.ref_target("refs/heads/main").unwrap(), None);
    assert_eq!(object_files(&server), Vec::<String>::new());
}

#[test]
fn slow_handler_with_keepalives() {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    let (ok, stderr) = push(
        &work,
        &server,
        "--sleep-ms=400 --keepalive-ms=20",
        &["main"],
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("remote: deploying refs/heads/main"),
        "{stderr}"
    );
}
