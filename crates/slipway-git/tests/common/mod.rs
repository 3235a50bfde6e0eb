//! Helpers shared by the integration tests: real git repositories built with the git binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs git in `dir` with a fixed identity; panics (with stderr) on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs git in `dir` and returns its output whatever the exit status.
pub fn git_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada Tester")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Tester")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs")
}

/// Runs git with bytes on stdin, returns stdout bytes.
pub fn git_stdin(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("git finishes");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A work repository with a first commit: `a.txt`, executable `run.sh`, symlink `link -> a.txt`,
/// `app/.platform.app.yaml`, and a symlinked dir `cfg -> app`.
pub fn work_repo(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "hello\n").unwrap();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.txt", work.join("link")).unwrap();
    std::fs::create_dir_all(work.join("app")).unwrap();
    std::fs::write(
        work.join("app/.platform.app.yaml"),
        "name: app\ntype: python:3.12\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("app", work.join("cfg")).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first commit"]);
    work
}

/// Adds a commit changing `a.txt`; returns its id.
pub fn commit_change(work: &Path, text: &str) -> String {
    let mut content = std::fs::read_to_string(work.join("a.txt")).unwrap();
    content.push_str(text);
    content.push('\n');
    std::fs::write(work.join("a.txt"), content).unwrap();
    git(work, &["commit", "-q", "-a", "-m", text]);
    git(work, &["rev-parse", "HEAD"])
}

/// The receive_stdio example binary (built by `cargo test`, which builds examples).
pub fn receive_stdio() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/push-xxxx -> target/debug/examples/receive_stdio
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|debug| debug.join("examples").join("receive_stdio"))
        .expect("target layout");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test -p slipway-git` (it builds the examples)",
        path.display()
    );
    path
}

/// Files in `objects/pack` and anything else in `objects/` besides `pack` and `info`.
pub fn object_files(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo.join("objects")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "pack" {
            for p in std::fs::read_dir(entry.path()).unwrap() {
                out.push(format!("pack/{}", p.unwrap().file_name().to_string_lossy()));
            }
        } else if name != "info" {
            out.push(name);
        }
    }
    out.sort();
    out
}
