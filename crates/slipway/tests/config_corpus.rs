//! Invariant 7 on the public conformance corpus (`../shared/examples/platform-configs`):
//! `slipway config check` of a working tree and the validate phase of a push of the same
//! files as a commit say the same (the same errors and warnings, line for line, and the same
//! verdict), and every warning names the key it is about (a key Slipway does not act on is
//! warned about at its key path, never dropped silently).
//!
//! The push side runs [`slipway_deploy::validate::load_commit_config`] and
//! [`slipway_deploy::validate::config_lines`], what the validate phase of every push calls,
//! on a real git commit; the check side runs the `slipway` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use slipway_deploy::validate::{config_lines, load_commit_config};

#[path = "../../slipway-config/tests/corpus/mod.rs"]
mod corpus;
use corpus::{config_root, corpus, snapshots};

/// The corpus beside the repository, else the machine's shared copy.
fn corpus_dir() -> Option<PathBuf> {
    corpus().or_else(|| {
        let p = PathBuf::from("/work/shared/examples/platform-configs");
        p.is_dir().then_some(p)
    })
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=corpus",
            "-c",
            "user.email=corpus@localhost",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The files of `dir` as one commit of a fresh repository: (its folder, the commit).
fn commit_of(dir: &Path) -> (tempfile::TempDir, slipway_git::ObjectId) {
    let work = tempfile::tempdir().unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(work.path())
        .status()
        .unwrap();
    assert!(cp.success());
    git(work.path(), &["init", "-q"]);
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "corpus"]);
    let head = git(work.path(), &["rev-parse", "HEAD"]);
    let commit = slipway_git::ObjectId::from_hex(head.as_bytes()).unwrap();
    (work, commit)
}

#[test]
fn config_check_and_the_push_say_the_same_of_every_corpus_config() {
    let Some(root) = corpus_dir() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the conformance corpus is missing"
        );
        eprintln!("no conformance corpus here: nothing checked");
        return;
    };
    let mut compared = 0;
    let mut warned = 0;
    for snapshot in &snapshots(&root) {
        let name = snapshot.file_name().unwrap().to_string_lossy().to_string();
        let dir = config_root(snapshot);

        let check = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["config", "check", "--no-advisories"])
            .arg(&dir)
            .output()
            .unwrap();
        let check_lines: Vec<String> = String::from_utf8_lossy(&check.stderr)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();

        let (work, commit) = commit_of(&dir);
        let repo = slipway_git::Repo::open(&work.path().join(".git")).unwrap();
        let (_, checked) =
            load_commit_config(&repo, commit).unwrap_or_else(|e| panic!("{name}: {}", e.reason));
        let push_lines = config_lines(&checked);

        assert_eq!(
            check_lines, push_lines,
            "{name}: config check (left) and the push (right) differ"
        );
        assert_eq!(
            check.status.code() == Some(0),
            checked.is_ok(),
            "{name}: config check exited {:?}, the push's validate {}",
            check.status.code(),
            if checked.is_ok() { "passed" } else { "refused" }
        );
        // No silent drop: a key the tables mark as not acted on is named in a warning, and
        // a warning about a whole file (of a layout that is not read) is of its scope.
        if let Ok(loaded) = &checked {
            for w in &loaded.warnings {
                assert!(
                    !w.key_path.is_empty() || w.scope == slipway_config::Scope::File,
                    "{name}: a warning names no key: {w}"
                );
            }
            warned += loaded.warnings.len();
        }
        compared += 1;
    }
    assert!(compared >= 70, "only {compared} corpus configs compared");
    assert!(warned > 0, "no corpus config was warned about at all");
}

/// A tree whose app files sit in an ignored folder and very deep: `config check` sees the
/// files a push of it carries (`.gitignore` respected), and both find an app at any depth.
#[test]
fn config_check_reads_the_tree_a_push_carries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |path: &str, text: &str| {
        let p = d.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(".gitignore", "/build/\n");
    write(
        "web/.platform.app.yaml",
        "name: web\ntype: python:3.11\nweb:\n  commands:\n    start: python -m http.server $PORT\n",
    );
    // Ignored: a push never carries these, so config check must not read them either.
    write(
        "build/x/.platform.app.yaml",
        "name: stale\ntype: python:3.11\nweb:\n  comands: {}\n",
    );
    // Deeper than the old search went (6 folders): an app there is found by both.
    write(
        "a/b/c/d/e/f/g/api/.platform.app.yaml",
        "name: api\ntype: python:3.11\nweb:\n  commands:\n    start: python -m http.server $PORT\n",
    );
    write(
        ".platform/routes.yaml",
        "\"http://{default}/\":\n  type: upstream\n  upstream: \"web:http\"\n\"http://api.{default}/\":\n  type: upstream\n  upstream: \"api:http\"\n",
    );

    let check = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["config", "check", "--no-advisories", "--json"])
        .arg(d)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).to_string();
    assert_eq!(check.status.code(), Some(0), "{said}");
    let check_lines: Vec<String> = said
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let topology: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();

    let (work, commit) = commit_of(d);
    let repo = slipway_git::Repo::open(&work.path().join(".git")).unwrap();
    let (_, checked) = load_commit_config(&repo, commit).unwrap_or_else(|e| panic!("{}", e.reason));
    assert_eq!(check_lines, config_lines(&checked));
    let loaded = checked.unwrap_or_else(|e| panic!("{e}"));
    let pushed = serde_json::to_value(&loaded.topology).unwrap();
    assert_eq!(
        topology, pushed,
        "config check (left) and the push (right) differ"
    );
    let apps: Vec<&str> = loaded
        .topology
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(apps, ["web", "api"]);
}
