//! Every configuration of the public conformance corpus (../shared/examples/platform-configs) loads
//! without error, and its topology has the expected shape.

use slipway_config::{load, load_as, ConfigSource, DirSource, Format, RouteKind};
use std::path::{Path, PathBuf};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples/platform-configs");
    p.is_dir().then_some(p)
}

/// The folder of a snapshot that holds its configuration (normally the snapshot itself).
fn config_root(snapshot: &Path) -> PathBuf {
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
        let mut subs: Vec<PathBuf> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        subs.sort();
        subs.into_iter().find_map(|p| find(&p, depth - 1))
    }
    find(snapshot, 4).unwrap_or_else(|| snapshot.to_path_buf())
}

fn snapshots(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    v.sort();
    v
}

#[test]
fn every_corpus_config_loads() {
    let Some(root) = corpus() else {
        eprintln!("conformance corpus not present; skipped");
        return;
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for snap in snapshots(&root) {
        let name = snap.file_name().unwrap().to_string_lossy().to_string();
        let dir = config_root(&snap);
        let src = DirSource::new(&dir);
        // The detected format, plus every alternative layout the snapshot also holds.
        let mut formats = vec![];
        if src.read_file(".upsun/config.yaml").unwrap().is_some() {
            formats.push(Format::Upsun);
        }
        if !src.list_dir(".platform").unwrap().is_empty() || src.read_file(".platform.app.yaml").unwrap().is_some() {
            formats.push(Format::PlatformSh);
        }
        if src.read_file(".magento.app.yaml").unwrap().is_some() {
            formats.push(Format::MagentoCloud);
        }
        match load(&src) {
            Ok(l) => assert_eq!(Some(&l.format), formats.first(), "{name}: detected format"),
            Err(e) => failures.push(format!("{name}:\n{e}")),
        }
        for f in formats {
            checked += 1;
            match load_as(&src, f) {
                Err(e) => failures.push(format!("{name} as {f:?}:\n{e}")),
                Ok(l) => {
                    let t = &l.topology;
                    assert!(!t.applications.is_empty(), "{name}: no apps");
                    assert!(!t.routes.is_empty(), "{name}: no routes");
                    assert_eq!(t.routes.iter().filter(|r| r.primary).count(), 1, "{name}: exactly one primary route");
                    for r in &t.routes {
                        if let RouteKind::Upstream { app, .. } = &r.kind {
                            assert!(t.application(app).is_some(), "{name}: route to unknown app {app}");
                        }
                    }
                    for a in &t.applications {
                        for target in a.relationships.values() {
                            let (svc, ep) = target.split_once(':').unwrap();
                            assert!(!ep.is_empty(), "{name}: empty endpoint");
                            assert!(t.service(svc).is_some() || t.application(svc).is_some(), "{name}: relationship to unknown {svc}");
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked >= 70, "only {checked} configurations checked");
}
