//! Drives the whole reader over arbitrary bytes, for the fuzz target (`fuzz/`) and the in-tree
//! robustness test: nothing may panic or hang whatever the input.

use crate::model::{Format, Topology};
use crate::source::MemSource;

/// The files a fuzz input may fill in.
const PATHS: [&str; 10] = [
    ".platform.app.yaml",
    ".platform/services.yaml",
    ".platform/routes.yaml",
    ".platform/applications.yaml",
    ".upsun/config.yaml",
    ".slipway/config.yaml",
    "Procfile",
    "inc.yaml",
    "api/.platform.app.yaml",
    ".magento.app.yaml",
];

/// A tree from bytes: chunks separated by NUL; a chunk's first byte picks its path, the rest is the file.
pub fn tree_from_bytes(data: &[u8]) -> MemSource {
    let mut src = MemSource::new();
    for chunk in data.split(|b| *b == 0) {
        if let Some((first, rest)) = chunk.split_first() {
            src.insert(PATHS[*first as usize % PATHS.len()], rest.to_vec());
        }
    }
    src
}

/// Load the tree in every layout, and run the diff and environment builders on what loads.
pub fn exercise(data: &[u8]) {
    let src = tree_from_bytes(data);
    let mut loaded = Vec::new();
    match crate::load(&src) {
        Ok(l) => loaded.push(l.topology),
        Err(d) => {
            let _ = d.to_string();
        }
    }
    for f in Format::ALL {
        if let Ok(l) = crate::load_as(&src, f) {
            loaded.push(l.topology);
        }
    }
    let empty = Topology::default();
    let base = crate::platform_env::UrlBase::from_url("http://main.demo.localhost:8080/");
    for t in &loaded {
        for opts in [
            crate::DiffOptions {
                allow_service_upgrade: false,
                ..Default::default()
            },
            crate::DiffOptions {
                allow_service_upgrade: true,
                ..Default::default()
            },
        ] {
            let _ = crate::diff(&empty, t, &opts);
            let _ = crate::diff(t, &empty, &opts);
            for other in &loaded {
                let _ = crate::diff(t, other, &opts);
            }
        }
        if let Some(base) = &base {
            let _ = crate::platform_env::routes_json(t, base);
        }
        for a in &t.applications {
            let _ = crate::platform_env::relationships_json(t, a);
            let _ = crate::platform_env::variables_json(a);
        }
        let _ = serde_json::to_string(t);
    }
}
