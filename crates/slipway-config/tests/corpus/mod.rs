//! The public conformance corpus (`../shared/examples/platform-configs`, beside the
//! repository) for the tests that run over it: here and `crates/slipway/tests/config_corpus.rs`.

use std::path::{Path, PathBuf};

use slipway_config::DirSource;

/// The corpus folder, when it is there.
pub fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples/platform-configs");
    p.is_dir().then_some(p)
}

/// The folder of a snapshot that holds its configuration (normally the snapshot itself).
pub fn config_root(snapshot: &Path) -> PathBuf {
    let src = DirSource::new(snapshot);
    if slipway_config::detect(&src).is_ok() {
        return snapshot.to_path_buf();
    }
    // A template keeping its config below the root (e.g. assets/common/.upsun/config.yaml).
    fn find(dir: &Path, depth: usize) -> Option<PathBuf> {
        if dir.join(".upsun/config.yaml").is_file() || dir.join(".platform.app.yaml").is_file() {
            return Some(dir.to_path_buf());
        }
        if depth == 0 {
            return None;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        subs.into_iter().find_map(|p| find(&p, depth - 1))
    }
    find(snapshot, 4).unwrap_or_else(|| snapshot.to_path_buf())
}

/// The snapshots of the corpus, one folder each, in name order.
pub fn snapshots(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}
