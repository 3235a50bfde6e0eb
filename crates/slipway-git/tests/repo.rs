//! Repository operations on repositories made by the real git.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use slipway_config::ConfigSource;
use slipway_git::{GitError, ObjectId, Repo};

fn oid(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.trim().as_bytes()).unwrap()
}

fn open_work(dir: &Path) -> (std::path::PathBuf, Repo, ObjectId) {
    let work = work_repo(dir);
    let repo = Repo::open(&work.join(".git")).unwrap();
    let head = oid(&git(&work, &["rev-parse", "HEAD"]));
    (work, repo, head)
}

#[test]
fn init_bare_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/p.git");
    slipway_git::init_bare(&path).unwrap();
    let config = std::fs::read_to_string(path.join("config")).unwrap();
    assert!(
        config.contains("logallrefupdates = true") || config.contains("logAllRefUpdates = true"),
        "{config}"
    );
    assert_eq!(
        std::fs::read_to_string(path.join("HEAD")).unwrap(),
        "ref: refs/heads/main\n"
    );
    let before = std::fs::metadata(path.join("config"))
        .unwrap()
        .modified()
        .unwrap();
    slipway_git::init_bare(&path).unwrap();
    assert_eq!(
        std::fs::metadata(path.join("config"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
    let repo = Repo::open(&path).unwrap();
    assert!(repo.refs().unwrap().is_empty());
    assert_eq!(repo.ref_target("HEAD").unwrap(), None);
    // git itself accepts the repository.
    assert_eq!(git(&path, &["rev-parse", "--is-bare-repository"]), "true");
    // Opening something that is no repository fails.
    assert!(Repo::open(dir.path()).is_err());
}

#[test]
fn checkout_writes_files_modes_and_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let (_work, repo, head) = open_work(dir.path());
    let tree = repo.tree_at(head, "").unwrap().unwrap();
    let dest = dir.path().join("out/checkout");
    repo.checkout(tree, &dest).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "hello\n"
    );
    let mode = |p: &str| {
        std::fs::symlink_metadata(dest.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(mode("a.txt"), 0o644);
    assert_eq!(
        std::fs::read_link(dest.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read_link(dest.join("cfg")).unwrap(),
        Path::new("app")
    );
    assert!(std::fs::read_to_string(dest.join("app/.platform.app.yaml"))
        .unwrap()
        .contains("name: app"));
    // Checking out again into the same place refuses to overwrite.
    assert!(matches!(
        repo.checkout(tree, &dest),
        Err(GitError::CheckoutConflict { .. })
    ));
    // A subfolder tree.
    let app = repo.tree_at(head, "app").unwrap().unwrap();
    let dest2 = dir.path().join("app-only");
    repo.checkout(app, &dest2).unwrap();
    assert!(dest2.join(".platform.app.yaml").is_file());
    assert_eq!(
        repo.tree_at(head, "a.txt").unwrap(),
        None,
        "a blob is not a tree"
    );
    assert_eq!(repo.tree_at(head, "nope/deeper").unwrap(), None);
    assert!(repo.tree_at(tree, "").is_err(), "a tree id is not a commit");
}

/// Writes a raw tree object (entries: mode, name, id) with git, bypassing its checks.
fn raw_tree(work: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, id) in entries {
        bytes.extend_from_slice(mode.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(oid(id).as_bytes());
    }
    let out = git_stdin(
        work,
        &["hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
        &bytes,
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

#[test]
fn checkout_refuses_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let (work, repo, _head) = open_work(dir.path());
    let blob = git(&work, &["rev-parse", "HEAD:a.txt"]);
    let cases: [(&[u8], &str); 3] = [(b".GIT", ".GIT"), (b"..", ".."), (b"x/y", "x/y")];
    for (name, shown) in cases {
        let bad = raw_tree(
            &work,
            &[("100644", b"fine.txt", &blob), ("100644", name, &blob)],
        );
        let dest = dir
            .path()
            .join(format!("hostile-{}", shown.replace('/', "_")));
        match repo.checkout(oid(&bad), &dest) {
            Err(GitError::HostileEntry { path }) => assert_eq!(path, shown),
            other => panic!("{shown}: expected a refusal, got {other:?}"),
        }
        assert!(!dest.exists(), "nothing is written for a hostile tree");
    }
    // Nested: sub/.git is refused and the path says where.
    let inner = raw_tree(&work, &[("100644", b".git", &blob)]);
    let outer = raw_tree(&work, &[("40000", b"sub", &inner)]);
    match repo.checkout(oid(&outer), &dir.path().join("nested")) {
        Err(GitError::HostileEntry { path }) => assert_eq!(path, "sub/.git"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Submodule entries are skipped.
    let with_module = raw_tree(
        &work,
        &[
            ("100644", b"f", &blob),
            ("160000", b"module", &"1".repeat(40)),
        ],
    );
    let dest = dir.path().join("with-module");
    repo.checkout(oid(&with_module), &dest).unwrap();
    assert!(dest.join("f").is_file());
    assert!(!dest.join("module").exists());
}

#[test]
fn config_source_reads_the_commit_not_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (work, repo, head) = open_work(dir.path());
    // Changes on disk after the commit must not be seen.
    std::fs::write(work.join("app/.platform.app.yaml"), "changed on disk\n").unwrap();
    std::fs::write(work.join("untracked.yaml"), "x").unwrap();
    let source = repo.config_source(head).unwrap();
    let file = source.read_file("app/.platform.app.yaml").unwrap().unwrap();
    assert_eq!(
        String::from_utf8(file).unwrap(),
        "name: app\ntype: python:3.12\n"
    );
    assert_eq!(source.read_file("untracked.yaml").unwrap(), None);
    assert_eq!(
        source.read_file("app").unwrap(),
        None,
        "a directory is no file"
    );
    assert_eq!(source.read_file("a.txt/x").unwrap(), None);
    assert_eq!(source.read_file("../a.txt").unwrap(), None);
    // Symlinks inside the tree are followed.
    assert_eq!(source.read_file("link").unwrap().unwrap(), b"hello\n");
    assert!(source
        .read_file("cfg/.platform.app.yaml")
        .unwrap()
        .is_some());
    let root: Vec<(String, bool)> = source
        .list_dir("")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.is_dir))
        .collect();
    assert_eq!(
        root,
        [
            ("a.txt".to_string(), false),
            ("app".to_string(), true),
            ("cfg".to_string(), true),
            ("link".to_string(), false),
            ("run.sh".to_string(), false)
        ]
    );
    let app: Vec<String> = source
        .list_dir("app")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(app, [".platform.app.yaml"]);
    assert!(source.list_dir("missing").unwrap().is_empty());
    assert!(source.list_dir("a.txt").unwrap().is_empty());
    // A symlink pointing out of the tree reads as missing.
    let blob = git_stdin(&work, &["hash-object", "-w", "--stdin"], b"/etc/passwd");
    let blob = String::from_utf8(blob).unwrap();
    let tree = raw_tree(&work, &[("120000", b"evil", blob.trim())]);
    let commit = git_stdin(&work, &["commit-tree", &tree, "-m", "evil"], b"");
    let source = repo
        .config_source(oid(&String::from_utf8(commit).unwrap()))
        .unwrap();
    assert_eq!(source.read_file("evil").unwrap(), None);
    // Not a commit.
    assert!(repo.config_source(oid(&"1".repeat(40))).is_err());
}

#[test]
fn update_ref_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (work, repo, first) = open_work(dir.path());
    let second = oid(&commit_change(&work, "second"));
    let name = "refs/heads/deploy";
    repo.update_ref(name, None, Some(first), "create").unwrap();
    assert_eq!(repo.ref_target(name).unwrap(), Some(first));
    // Creating again conflicts.
    match repo.update_ref(name, None, Some(second), "again") {
        Err(GitError::RefConflict {
            actual, expected, ..
        }) => {
            assert_eq!(actual, Some(first));
            assert_eq!(expected, None);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Wrong expectation conflicts, the ref stays.
    assert!(matches!(
        repo.update_ref(name, Some(second), Some(second), "x"),
        Err(GitError::RefConflict { .. })
    ));
    assert_eq!(repo.ref_target(name).unwrap(), Some(first));
    repo.update_ref(name, Some(first), Some(second), "move")
        .unwrap();
    assert_eq!(repo.ref_target(name).unwrap(), Some(second));
    // Delete with the wrong expectation conflicts, with the right one works.
    assert!(matches!(
        repo.update_ref(name, Some(first), None, "del"),
        Err(GitError::RefConflict { .. })
    ));
    repo.update_ref(name, Some(second), None, "del").unwrap();
    assert_eq!(repo.ref_target(name).unwrap(), None);
    // Bad names.
    assert!(matches!(
        repo.update_ref("refs/heads/a..b", None, Some(first), "x"),
        Err(GitError::InvalidRefName { .. })
    ));
    assert!(matches!(
        repo.update_ref("HEAD", None, Some(first), "x"),
        Err(GitError::InvalidRefName { .. })
    ));
    // git agrees with what was written.
    repo.update_ref(name, None, Some(first), "again").unwrap();
    assert_eq!(oid(&git(&work, &["rev-parse", name])), first);
}

#[test]
fn commit_summary_has_subject_and_author() {
    let dir = tempfile::tempdir().unwrap();
    let (_work, repo, head) = open_work(dir.path());
    assert_eq!(
        repo.commit_summary(head).unwrap(),
        "first commit (Ada Tester)"
    );
    assert!(matches!(
        repo.commit_summary(oid(&"2".repeat(40))),
        Err(GitError::MissingObject { .. })
    ));
}
