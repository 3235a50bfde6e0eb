//! The `mounts` of an app read into typed records: where each writable folder appears in the
//! app, and where its data lives (`local`, `storage`, `service` or `tmp`, with a folder inside
//! that source). Both the legacy string form (`"shared:files/FOLDER"`) and the mapping form
//! (`{source: local, source_path: FOLDER}`) are read. The infrastructure diff compares these
//! records; the deploy pipeline puts each on a volume.

use crate::model::Application;

/// Where a mount's data lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MountSource {
    /// On the app's own volume (also Upsun's `instance`, and the legacy string form).
    Local,
    /// On the environment's storage volume, shared by every app of the environment.
    Storage,
    /// On the volume of a `network-storage` service, shared by the apps that mount it.
    Service(String),
    /// A folder that is not kept across deploys.
    Tmp,
}

impl std::fmt::Display for MountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountSource::Local => f.write_str("local"),
            MountSource::Storage => f.write_str("storage"),
            MountSource::Service(s) => write!(f, "service {s}"),
            MountSource::Tmp => f.write_str("tmp"),
        }
    }
}

/// One writable mount of an app.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mount {
    /// Where it appears, relative to the app's root (`web/uploads`; no leading or trailing `/`).
    pub path: String,
    /// Where its data lives.
    pub source: MountSource,
    /// The folder inside the source (relative, clean; defaults to the mount's path).
    pub source_path: String,
}

impl Mount {
    /// Whether its data is kept across deploys (everything but `tmp`).
    pub fn persistent(&self) -> bool {
        self.source != MountSource::Tmp
    }
}

/// A clean relative path: `/`-separated, no empty, `.` or `..` parts. None if it climbs out.
fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The mounts of `app`, sorted by path. Entries the config checks refuse (a path leaving the
/// app, an unknown source, a `source_path` climbing out, a service mount naming no service)
/// are skipped here: a loaded config never has them.
pub fn app_mounts(app: &Application) -> Vec<Mount> {
    let mut out = Vec::new();
    for (key, value) in &app.mounts {
        let Some(path) = clean(key).filter(|p| !p.is_empty()) else {
            continue;
        };
        let (source, source_path) = match value {
            serde_json::Value::String(legacy) => {
                let Some(rest) = legacy.strip_prefix("shared:files") else {
                    continue;
                };
                (MountSource::Local, rest.to_string())
            }
            serde_json::Value::Object(m) => {
                let source = match m.get("source").and_then(|s| s.as_str()) {
                    None | Some("local") | Some("instance") => MountSource::Local,
                    Some("storage") => MountSource::Storage,
                    Some("tmp") => MountSource::Tmp,
                    Some("service") => match m.get("service").and_then(|s| s.as_str()) {
                        Some(name) => MountSource::Service(name.to_string()),
                        None => continue,
                    },
                    Some(_) => continue,
                };
                let source_path = m
                    .get("source_path")
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_string();
                (source, source_path)
            }
            _ => continue,
        };
        let Some(source_path) = clean(&source_path) else {
            continue;
        };
        let source_path = if source_path.is_empty() {
            path.clone()
        } else {
            source_path
        };
        out.push(Mount {
            path,
            source,
            source_path,
        });
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(mounts: serde_json::Value) -> Application {
        Application {
            name: "a".into(),
            mounts: serde_json::from_value(mounts).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn both_forms_and_defaults() {
        let m = app_mounts(&app(json!({
            "/web/uploads": "shared:files/uploads",
            "cache": {"source": "tmp"},
            "data": {"source": "local", "source_path": "d/./x"},
            "shared": {"source": "storage"},
            "nfs": {"source": "service", "service": "files", "source_path": "n"},
            "inst": {"source": "instance", "source_path": "i"},
            "../out": {"source": "local"},
            "bad": {"source": "local", "source_path": "../x"},
        })));
        let got: Vec<(String, String, String)> = m
            .iter()
            .map(|m| (m.path.clone(), m.source.to_string(), m.source_path.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cache".into(), "tmp".into(), "cache".into()),
                ("data".into(), "local".into(), "d/x".into()),
                ("inst".into(), "local".into(), "i".into()),
                ("nfs".into(), "service files".into(), "n".into()),
                ("shared".into(), "storage".into(), "shared".into()),
                ("web/uploads".into(), "local".into(), "uploads".into()),
            ]
        );
    }
}
