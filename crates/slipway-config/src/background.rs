//! The background processes of an app, typed: `workers` (each runs its `commands.start` in its
//! own container of the release) and `crons` (scheduled commands). Read from the topology's
//! values, which [`crate::load`] checked: a worker without a start command, a cron without a
//! command or with a schedule that does not parse or never fires was refused there with its
//! position.

use serde_json::Value;

use crate::cron::Schedule;
use crate::model::{Application, ContainerSize};

/// Seconds a cron run may take when `timeout` is not written (Platform.sh's default: a day).
pub const DEFAULT_CRON_TIMEOUT: u64 = 86_400;
/// Seconds between SIGTERM and SIGKILL when `shutdown_timeout` is not written.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 10;

/// One worker of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// Its name (a key of `workers`).
    pub name: String,
    /// `commands.start`.
    pub start: String,
    /// Its own `size` (None: the app's).
    pub size: Option<ContainerSize>,
    /// Its own `variables.env`, over the app's.
    pub env: std::collections::BTreeMap<String, String>,
    /// Its own `mounts` (None: the app's, as on Platform.sh; see [`worker_application`]).
    pub mounts: Option<std::collections::BTreeMap<String, Value>>,
    /// Its own `disk` in MB (None: the app's).
    pub disk: Option<u64>,
    /// Its own `relationships`, each target as written (`SERVICE[:ENDPOINT]`, the
    /// `{service, endpoint}` form as `SERVICE[:ENDPOINT]`, None for `null`); None: the app's.
    pub relationships: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// One cron job of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    /// Its name (a key of `crons`).
    pub name: String,
    /// The schedule as written.
    pub spec: String,
    /// The parsed schedule (`H` seeded by the name).
    pub schedule: Schedule,
    /// `commands.start`, or the legacy `cmd`.
    pub start: String,
    /// `commands.stop`: run when the job is past its `timeout`, before SIGTERM.
    pub stop: Option<String>,
    /// `timeout` in seconds.
    pub timeout: u64,
    /// `shutdown_timeout` in seconds.
    pub shutdown_timeout: u64,
}

/// Why a worker or cron of a loaded topology cannot be used (only for topologies that did not
/// come through [`crate::load`], which refuses these with positions).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackgroundError {
    /// A worker has no `commands.start`.
    #[error("worker `{0}` has no `commands.start`")]
    WorkerWithoutStart(String),
    /// A cron has no command.
    #[error("cron `{0}` has no `commands.start` (or `cmd`)")]
    CronWithoutCommand(String),
    /// A cron's schedule is not usable.
    #[error("cron `{0}`: {1}")]
    CronSchedule(String, String),
    /// A worker's relationship names neither a service nor an app.
    #[error("worker `{worker}`: relationship `{relationship}` names `{target}`, which is no service or app")]
    WorkerRelationship {
        /// The worker.
        worker: String,
        /// The relationship.
        relationship: String,
        /// What it names.
        target: String,
    },
}

fn start_of(v: &Value) -> Option<&str> {
    v.get("commands")
        .and_then(|c| c.get("start"))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// A time zone (crons of an app with a `timezone`).
pub type Zone = jiff::tz::TimeZone;

/// The time zone of the app's crons (`timezone`; UTC when absent or, for a topology that did
/// not come through [`crate::load`], unknown).
pub fn cron_zone(app: &Application) -> jiff::tz::TimeZone {
    app.timezone
        .as_deref()
        .and_then(|name| jiff::tz::TimeZone::get(name).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The app's workers, by name.
pub fn workers(app: &Application) -> Result<Vec<Worker>, BackgroundError> {
    app.workers
        .iter()
        .map(|(name, v)| {
            Ok(Worker {
                name: name.clone(),
                start: start_of(v)
                    .ok_or_else(|| BackgroundError::WorkerWithoutStart(name.clone()))?
                    .to_string(),
                size: v
                    .get("size")
                    .and_then(Value::as_str)
                    .and_then(ContainerSize::parse),
                env: v
                    .get("variables")
                    .and_then(|vars| vars.get("env"))
                    .and_then(Value::as_object)
                    .map(|env| {
                        env.iter()
                            .map(|(k, v)| {
                                let text = match v {
                                    Value::String(s) => s.clone(),
                                    Value::Null => String::new(),
                                    other => other.to_string(),
                                };
                                (k.clone(), text)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                mounts: v
                    .get("mounts")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                disk: v.get("disk").and_then(Value::as_u64),
                relationships: v.get("relationships").and_then(Value::as_object).map(|r| {
                    r.iter()
                        .filter_map(|(k, v)| {
                            let target = match v {
                                Value::String(s) => Some(s.clone()),
                                Value::Null => None,
                                Value::Object(o) => {
                                    let svc = o.get("service").and_then(Value::as_str).unwrap_or(k);
                                    Some(match o.get("endpoint").and_then(Value::as_str) {
                                        Some(ep) => format!("{svc}:{ep}"),
                                        None => svc.to_string(),
                                    })
                                }
                                _ => return None,
                            };
                            Some((k.clone(), target))
                        })
                        .collect()
                }),
            })
        })
        .collect()
}

/// The app a worker of `app` is, as on Platform.sh: the app's configuration with the
/// worker's own `mounts`, `disk` and `relationships` in place of the app's where it has them
/// (each replaces the app's whole key). Its relationships get their endpoints as the app's
/// do (a service's default endpoint, `http` for an app).
pub fn worker_application(
    app: &Application,
    worker: &Worker,
    topology: &crate::model::Topology,
) -> Result<Application, BackgroundError> {
    let mut out = app.clone();
    if let Some(m) = &worker.mounts {
        out.mounts = m.clone();
    }
    if worker.disk.is_some() {
        out.disk = worker.disk;
    }
    if let Some(rels) = &worker.relationships {
        out.relationships.clear();
        for (rel, target) in rels {
            let (svc, endpoint) = match target.as_deref().map(|t| t.split_once(':')) {
                None => (rel.clone(), None),
                Some(Some((s, e))) if !e.is_empty() => (s.to_string(), Some(e.to_string())),
                Some(Some((s, _))) => (s.to_string(), None),
                Some(None) => (target.clone().unwrap_or_default(), None),
            };
            let endpoint = if let Some(s) = topology.service(&svc) {
                endpoint.unwrap_or_else(|| {
                    crate::catalog::service_kind(&s.r#type)
                        .map(|k| k.endpoint.to_string())
                        .unwrap_or_else(|| s.r#type.clone())
                })
            } else if topology.application(&svc).is_some() {
                endpoint.unwrap_or_else(|| "http".to_string())
            } else {
                return Err(BackgroundError::WorkerRelationship {
                    worker: worker.name.clone(),
                    relationship: rel.clone(),
                    target: svc,
                });
            };
            out.relationships
                .insert(rel.clone(), format!("{svc}:{endpoint}"));
        }
    }
    Ok(out)
}

/// The app's crons, by name.
pub fn crons(app: &Application) -> Result<Vec<Cron>, BackgroundError> {
    app.crons
        .iter()
        .map(|(name, v)| {
            let spec = v.get("spec").and_then(Value::as_str).unwrap_or_default();
            let schedule = crate::cron::parse(spec, name)
                .map_err(|e| BackgroundError::CronSchedule(name.clone(), e))?;
            let start = start_of(v)
                .or_else(|| v.get("cmd").and_then(Value::as_str))
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| BackgroundError::CronWithoutCommand(name.clone()))?;
            let secs = |k: &str, default: u64| v.get(k).and_then(Value::as_u64).unwrap_or(default);
            Ok(Cron {
                name: name.clone(),
                spec: spec.to_string(),
                schedule,
                start: start.to_string(),
                stop: v
                    .get("commands")
                    .and_then(|c| c.get("stop"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.trim().is_empty())
                    .map(str::to_string),
                timeout: secs("timeout", DEFAULT_CRON_TIMEOUT),
                shutdown_timeout: secs("shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Service, Topology};
    use serde_json::json;

    #[test]
    fn a_worker_has_its_own_mounts_disk_and_relationships_or_the_apps() {
        let app = Application {
            name: "web".into(),
            disk: Some(2048),
            mounts: serde_json::from_value(json!({"up": {"source": "local", "source_path": "up"}}))
                .unwrap(),
            relationships: [("db".to_string(), "db:postgresql".to_string())].into(),
            workers: serde_json::from_value(json!({
                "own": {
                    "commands": {"start": "run"},
                    "disk": 256,
                    "mounts": {"q": {"source": "storage", "source_path": "q"}},
                    "relationships": {"cache": "cache:redis", "kv": {"service": "cache"}, "web": null},
                },
                "inherits": {"commands": {"start": "run"}},
                "lost": {"commands": {"start": "run"}, "relationships": {"x": "nowhere:mysql"}},
            }))
            .unwrap(),
            ..Default::default()
        };
        let topology = Topology {
            applications: vec![app.clone()],
            services: vec![Service {
                name: "cache".into(),
                r#type: "redis".into(),
                version: "7.0".into(),
                disk: None,
                configuration: Value::Null,
                relationships: Default::default(),
            }],
            routes: vec![],
        };
        let ws = workers(&app).unwrap();
        let get = |n: &str| ws.iter().find(|w| w.name == n).unwrap();
        let own = worker_application(&app, get("own"), &topology).unwrap();
        assert_eq!(own.disk, Some(256));
        assert_eq!(own.mounts.keys().collect::<Vec<_>>(), vec!["q"]);
        assert_eq!(
            own.relationships,
            [
                ("cache".to_string(), "cache:redis".to_string()),
                ("kv".to_string(), "cache:redis".to_string()),
                ("web".to_string(), "web:http".to_string()),
            ]
            .into()
        );
        let inherits = worker_application(&app, get("inherits"), &topology).unwrap();
        assert_eq!(
            (inherits.disk, inherits.mounts, inherits.relationships),
            (app.disk, app.mounts.clone(), app.relationships.clone())
        );
        assert!(matches!(
            worker_application(&app, get("lost"), &topology),
            Err(BackgroundError::WorkerRelationship { .. })
        ));
    }
}
