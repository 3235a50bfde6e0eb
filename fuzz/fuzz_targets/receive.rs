//! The whole push conversation (commands, capabilities, push options, pack) on arbitrary client
//! input against a real repository: never panics, and whatever the input, the repository's refs
//! do not move (the handler refuses everything) and no quarantine is left behind.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use slipway_git::receive::{self, Limits, Progress, Push, PushHandler};
use slipway_git::Repo;

struct Refuse;

impl PushHandler for Refuse {
    async fn handle(
        &self,
        _repo: &Repo,
        push: &Push,
        _progress: Progress,
    ) -> Vec<Result<(), String>> {
        push.updates
            .iter()
            .map(|_| Err("fuzzing".to_string()))
            .collect()
    }
}

fn repo() -> &'static (tempfile::TempDir, Repo) {
    static REPO: OnceLock<(tempfile::TempDir, Repo)> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fuzz.git");
        slipway_git::init_bare(&path).expect("init");
        let repo = Repo::open(&path).expect("open");
        (dir, repo)
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let (_dir, repo) = repo();
    let limits = Limits {
        max_pack_bytes: 1 << 20,
        max_object_bytes: 1 << 20,
        max_refs: 16,
        ..Limits::default()
    };
    let mut output = Vec::new();
    let _ = runtime().block_on(receive::serve(repo, data, &mut output, &Refuse, &limits));
    assert!(repo.refs().expect("refs").is_empty(), "a ref moved");
    let objects = repo.path().join("objects");
    for entry in std::fs::read_dir(objects).expect("objects").flatten() {
        let name = entry.file_name();
        assert!(
            !name.to_string_lossy().starts_with("incoming"),
            "quarantine left"
        );
    }
});
