//! The `mounts` of apps on the environment's [`volumes`](crate::volumes): which volume and
//! folder each mount is, and the bind mounts of an app's containers.
//!
//! | source | volume | folder in it |
//! |---|---|---|
//! | `local` (`instance`, legacy `shared:files/X`) | `app-APP` (size: the app's `disk`) | `files/SOURCE_PATH` |
//! | `storage` | `storage`, shared by the apps of the environment (size: the largest `disk` of those apps) | `files/SOURCE_PATH` |
//! | `service` | `service-NAME` of a `network-storage` service (size: its `disk`) | `files/SOURCE_PATH` |
//! | `tmp` | `app-APP` | `tmp/CONTAINER/SOURCE_PATH`, removed with the container |
//!
//! Mounts are writable at `/app/PATH` in app containers, and so in deploy hooks and SSH
//! shells (which run in them); builds see none. The rest of `/app` stays read-only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_config::mounts::{app_mounts, MountSource};
use slipway_config::{Application, Topology};
use slipway_runtime::BindMount;

use crate::environment::AppInstance;
use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::volumes::{Ensured, VolumeError, DEFAULT_DISK_MB, MIN_DISK_MB};
use crate::Platform;

/// One mount of an app instance, as recorded in the release's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMount {
    /// Where it appears, relative to `/app`.
    pub path: String,
    /// The environment's volume holding it.
    pub volume: String,
    /// The folder inside the volume's `files/` (or `tmp/CONTAINER/` when `tmp`).
    pub folder: String,
    /// Not kept across deploys (`source: tmp`).
    pub tmp: bool,
}

/// A volume a release needs, and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSize {
    /// Its name in the environment.
    pub name: String,
    /// Its size (MB).
    pub size_mb: u64,
}

/// The environment a new environment's volumes are copied from when no nearer one is known
/// (see [`parent_env`]), and the one `sync` copies from.
pub const PARENT_ENV: &str = "main";

/// The parent of a new environment `env` whose first commit is `commit`: of the project's
/// other live environments, the one whose branch head is the nearest ancestor of `commit`
/// (the branch it was created from); [`PARENT_ENV`] when none is, or on a tie.
pub fn parent_env(
    platform: &Platform,
    project: &str,
    env: &str,
    commit: slipway_git::ObjectId,
) -> String {
    let fallback = PARENT_ENV.to_string();
    let Ok(repo) = slipway_git::Repo::open(&platform.repo_path(project)) else {
        return fallback;
    };
    let Ok(envs) = platform.state().environments(Some(project)) else {
        return fallback;
    };
    let g = repo.gix();
    let is_ancestor = |ancestor: slipway_git::ObjectId, of: slipway_git::ObjectId| {
        ancestor == of
            || matches!(g.merge_base(of, ancestor), Ok(Some(base)) if base.detach() == ancestor)
    };
    // (name, head) of the live environments whose head is an ancestor of `commit`.
    let candidates: Vec<(String, slipway_git::ObjectId)> = envs
        .into_iter()
        .filter(|e| e.name != env && e.current_release.is_some())
        .filter_map(|e| {
            let head = repo
                .ref_target(&format!("refs/heads/{}", e.branch))
                .ok()
                .flatten()?;
            is_ancestor(head, commit).then_some((e.name, head))
        })
        .collect();
    // The nearest: its head descends from every other candidate's.
    let nearest: Vec<&(String, slipway_git::ObjectId)> = candidates
        .iter()
        .filter(|(_, h)| candidates.iter().all(|(_, o)| is_ancestor(*o, *h)))
        .collect();
    if nearest.iter().any(|(n, _)| n == PARENT_ENV) {
        return fallback;
    }
    match nearest.as_slice() {
        [(name, _)] => name.clone(),
        _ => fallback,
    }
}

/// The parent of `env` of `project`: the one recorded at its first deploy if it is still
/// an environment of the project, else [`parent_env`] of `commit` (its branch head), which
/// is recorded then if none was. The first deploy records it, so `sync` later copies from
/// the environment the branch was made from even after that one's head moved on (which
/// [`parent_env`] alone would no longer see); a recorded parent that was removed since
/// gives way to [`parent_env`] again.
pub fn recorded_parent(
    platform: &Platform,
    project: &str,
    env: &str,
    commit: slipway_git::ObjectId,
) -> String {
    let state = platform.state();
    if let Ok(Some(parent)) = state.environment_parent(project, env) {
        if matches!(state.environment(project, &parent), Ok(Some(_))) {
            return parent;
        }
    }
    let parent = parent_env(platform, project, env, commit);
    match state.record_environment_parent(project, env, &parent) {
        Ok(_) => parent,
        Err(e) => {
            tracing::warn!(%project, %env, error = %e, "recording the environment's parent failed");
            parent
        }
    }
}

/// The volume name of an app's own mounts.
fn app_volume(app: &str) -> String {
    format!("app-{app}")
}

/// The volume of the `local` and `tmp` mounts of a worker that declares its own `mounts`:
/// Platform.sh keeps those per instance, so such a worker shares them with neither its app
/// nor another worker. A worker without `mounts` runs with the app's mounts on the app's
/// volume (spec section 10: "with the app's slug, mounts and relationships"), so what the
/// worker writes there the app reads.
pub fn worker_volume(app: &str, worker: &slipway_config::background::Worker) -> String {
    if worker.mounts.is_some() {
        format!("worker-{app}.{}", worker.name)
    } else {
        app_volume(app)
    }
}

/// The mounts of `app`, on the environment's volumes.
pub fn plan(app: &Application) -> Vec<AppMount> {
    plan_on(app, &app_volume(&app.name))
}

/// The mounts of worker `worker` of an app, whose configuration as a worker is `effective`
/// ([`slipway_config::background::worker_application`]): `local` and `tmp` ones on the
/// volume [`worker_volume`] names (its own if it declares `mounts`, else the app's),
/// `storage` and `service` ones shared with the apps.
pub fn plan_worker(
    worker: &slipway_config::background::Worker,
    effective: &Application,
) -> Vec<AppMount> {
    plan_on(effective, &worker_volume(&effective.name, worker))
}

/// The mounts of `app`, its own (`local`, `tmp`) on volume `own`.
fn plan_on(app: &Application, own: &str) -> Vec<AppMount> {
    app_mounts(app)
        .into_iter()
        .map(|m| AppMount {
            volume: match &m.source {
                MountSource::Local | MountSource::Tmp => own.to_string(),
                MountSource::Storage => "storage".into(),
                MountSource::Service(s) => format!("service-{s}"),
            },
            tmp: m.source == MountSource::Tmp,
            path: m.path,
            folder: m.source_path,
        })
        .collect()
}

/// Each app of `topology` and each of its workers as the app it is
/// ([`slipway_config::background::worker_application`]), with the volume of its own mounts
/// and the worker's name.
fn instances(topology: &Topology) -> Vec<(Application, String, Option<String>)> {
    let mut out = Vec::new();
    for app in &topology.applications {
        out.push((app.clone(), app_volume(&app.name), None));
        // A worker that cannot be read was refused at validate (or fails its own planning).
        for w in slipway_config::background::workers(app).unwrap_or_default() {
            if let Ok(effective) = slipway_config::background::worker_application(app, &w, topology)
            {
                let own = worker_volume(&app.name, &w);
                out.push((effective, own, Some(w.name)));
            }
        }
    }
    out
}

/// The volumes the apps of `topology` and their workers mount, with their sizes.
pub fn volume_sizes(topology: &Topology) -> Vec<VolumeSize> {
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    for (app, own, _) in instances(topology) {
        let app = &app;
        let disk = app.disk.unwrap_or(DEFAULT_DISK_MB);
        for m in app_mounts(app) {
            let (name, size) = match &m.source {
                MountSource::Local | MountSource::Tmp => (own.clone(), disk),
                MountSource::Storage => ("storage".to_string(), disk),
                MountSource::Service(s) => (
                    format!("service-{s}"),
                    topology
                        .service(s)
                        .and_then(|s| s.disk)
                        .unwrap_or(DEFAULT_DISK_MB),
                ),
            };
            let e = sizes.entry(name).or_insert(size);
            *e = (*e).max(size);
        }
    }
    sizes
        .into_iter()
        .map(|(name, size_mb)| VolumeSize { name, size_mb })
        .collect()
}

/// How [`prepare`] shrinks a volume whose size went down.
#[derive(Debug, Clone, Default)]
pub struct Shrinks {
    /// The push carried `-o allow-data-loss` (without it a smaller volume is refused).
    pub allowed: bool,
    /// The release the volumes are prepared for (see [`crate::volume_shrink`]).
    pub release: i64,
    /// Each volume's mounts, in words, for the messages ([`volume_users`]).
    pub users: BTreeMap<String, String>,
}

/// The mounts on each volume of the apps and workers of `topology`, in words:
/// `` mount `data` of app `web` ``, `` mount `q` of worker `queue` of app `web` ``.
pub fn volume_users(topology: &Topology) -> BTreeMap<String, String> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (app, own, worker) in instances(topology) {
        let who = match worker {
            Some(w) => format!("worker `{w}` of app `{}`", app.name),
            None => format!("app `{}`", app.name),
        };
        for m in plan_on(&app, &own).into_iter().filter(|m| !m.tmp) {
            users
                .entry(m.volume.clone())
                .or_default()
                .push(format!("mount `{}` of {who}", m.path));
        }
    }
    users
        .into_iter()
        .map(|(v, mut names)| {
            names.sort();
            (v, names.join(", "))
        })
        .collect()
}

/// Before a release starts: a new environment gets a copy of its parent's volumes
/// (`parent`, when it has any), then every volume the release needs is made, mounted and
/// grown to its size (or, with `-o allow-data-loss`, shrunk onto a smaller copy: see
/// [`crate::volume_shrink`]), and the `tmp` folders of containers other than `live` (the
/// running release's) are removed. A volume that would have to shrink without the option,
/// or whose data does not fit, fails the deploy (nothing changed).
pub fn prepare(
    platform: &Platform,
    (project, env): (&str, &str),
    parent: Option<&str>,
    sizes: &[VolumeSize],
    live: &[String],
    shrinks: &Shrinks,
    out: &Output,
) -> Result<(), PhaseError> {
    let store = platform.data().volumes();
    let fail = |e: VolumeError| PhaseError::new("provision", e.to_string());
    if let Some(parent) = parent.filter(|p| *p != env) {
        // Volume by volume: a copy interrupted by a crash is made again at the next push,
        // and a volume the environment already has is never overwritten.
        for pv in store.volumes(project, parent).map_err(fail)? {
            if store.volume(project, env, &pv.name).map_err(fail)?.exists() {
                continue;
            }
            // A service's data volume is copied by the services phase, for the services
            // this environment has.
            let service = pv.name.strip_prefix("service-").unwrap_or_default();
            if !service.is_empty()
                && matches!(
                    platform.state().service(project, parent, service),
                    Ok(Some(_))
                )
            {
                continue;
            }
            let wanted = sizes.iter().find(|s| s.name == pv.name);
            let parent_mb = pv.size_mb().map_err(fail)?;
            if wanted.is_some_and(|w| w.size_mb < parent_mb) {
                out.line(&format!(
                        "       volume {} not copied from {parent}: it is {parent_mb} MB there, more than this environment's disk",
                        pv.name
                    ));
                continue;
            }
            let child = store.volume(project, env, &pv.name).map_err(fail)?;
            let t = std::time::Instant::now();
            let mb = child.copy_from(&pv).map_err(fail)?;
            out.phase_done(
                &format!("volume {}", pv.name),
                &format!("copied from {parent} ({mb} MB)"),
                t,
            );
        }
    }
    for s in sizes {
        let v = store.volume(project, env, &s.name).map_err(fail)?;
        let t = std::time::Instant::now();
        let wanted = s.size_mb.max(MIN_DISK_MB);
        if v.exists() && !v.grows_at_next_mount() && v.size_mb().map_err(fail)? > wanted {
            let users = shrinks
                .users
                .get(&s.name)
                .cloned()
                .unwrap_or_else(|| "the mounts".into());
            let shrunk = crate::volume_shrink::check(&v, wanted, shrinks.allowed, &users)
                .and_then(|()| crate::volume_shrink::shrink(&v, wanted, shrinks.release, &users))
                .map_err(|e| PhaseError::new("provision", e.to_string()))?;
            out.phase_done(
                &format!("volume {}", s.name),
                &format!(
                    "shrunk {} MB -> {wanted} MB (holds {} MB; the old disk is deleted once this release is live, and what the live release writes meanwhile is not kept)",
                    shrunk.from_mb, shrunk.used_mb
                ),
                t,
            );
        }
        match v.ensure(s.size_mb).map_err(fail)? {
            Ensured::Created => out.phase_done(
                &format!("volume {}", s.name),
                &format!("{} MB, new", s.size_mb),
                t,
            ),
            Ensured::Grown(from) => out.phase_done(
                &format!("volume {}", s.name),
                &format!("grown online {from} MB -> {} MB", s.size_mb),
                t,
            ),
            Ensured::GrowsAtNextMount(from) => out.phase_done(
                &format!("volume {}", s.name),
                &format!(
                    "grown {from} MB -> {} MB; its file system grows when next mounted, after `slipway down` (this server cannot grow a mounted volume: no CAP_SYS_RESOURCE)",
                    s.size_mb
                ),
                t,
            ),
            Ensured::Unchanged => {}
        }
        v.remove_tmp_except(live).map_err(fail)?;
    }
    Ok(())
}

/// The bind mounts of `app`'s container: each volume is mounted (when it is not already, as
/// after a reboot) and each folder made, owned by the project's user. Each folder is then
/// pinned ([`slipway_runtime::Runtime::pin_bind_source`]): the project's running containers
/// write to these volumes, and with nested mounts (`x` and `x/y`) one of them could swap
/// `y` for a symbolic link between the checks here and runc's bind, which follows links on
/// the host. The container binds the pinned folder, resolved without following any link; a
/// link on the way fails the start naming the mount.
pub fn bind_mounts(
    platform: &Platform,
    (project, env): (&str, &str),
    app: &AppInstance,
) -> Result<Vec<BindMount>, VolumeError> {
    let store = platform.data().volumes();
    let owner = crate::isolation::run_as(project);
    let mut out = Vec::new();
    for m in &app.mounts {
        let v = store.volume(project, env, &m.volume)?;
        v.mount()?;
        let source = if m.tmp {
            v.tmp_folder(&app.container, &m.folder, owner)?
        } else {
            v.folder(&m.folder, owner)?
        };
        let relative = source
            .strip_prefix(&v.dir)
            .map_err(|_| VolumeError::BadName(m.folder.clone()))?;
        let source = platform
            .runtime()
            .pin_bind_source(&app.container, &v.dir, relative)
            .map_err(|e| VolumeError::UnsafeMount {
                mount: m.path.clone(),
                volume: m.volume.clone(),
                reason: e.to_string(),
            })?;
        out.push(BindMount {
            source,
            destination: format!("/app/{}", m.path),
            writable: true,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn volumes_and_folders_of_each_source() {
        let app = |name: &str, disk: Option<u64>, mounts: serde_json::Value| Application {
            name: name.into(),
            disk,
            mounts: serde_json::from_value(mounts).unwrap(),
            ..Default::default()
        };
        let web = app(
            "web",
            Some(2048),
            json!({"up": "shared:files/up", "cache": {"source": "tmp"}, "s": {"source": "storage", "source_path": "shared"}}),
        );
        let mut other = app("api", None, json!({"s": {"source": "storage"}}));
        other.workers = serde_json::from_value(json!({"q": {
            "commands": {"start": "run"},
            "disk": 4096,
            "mounts": {"own": {"source": "local", "source_path": "o"}, "s": {"source": "storage"}},
        }}))
        .unwrap();
        let m = plan(&web);
        assert_eq!(
            m.iter()
                .map(|m| (m.path.as_str(), m.volume.as_str(), m.folder.as_str(), m.tmp))
                .collect::<Vec<_>>(),
            vec![
                ("cache", "app-web", "cache", true),
                ("s", "storage", "shared", false),
                ("up", "app-web", "up", false),
            ]
        );
        let topo = Topology {
            applications: vec![web, other],
            ..Default::default()
        };
        assert_eq!(
            volume_sizes(&topo),
            vec![
                VolumeSize {
                    name: "app-web".into(),
                    size_mb: 2048
                },
                VolumeSize {
                    name: "storage".into(),
                    size_mb: 4096
                },
                VolumeSize {
                    name: "worker-api.q".into(),
                    size_mb: 4096
                },
            ]
        );
        // A worker's local mounts are its own; its storage ones shared.
        let w = &slipway_config::background::workers(&topo.applications[1]).unwrap()[0];
        let effective =
            slipway_config::background::worker_application(&topo.applications[1], w, &topo)
                .unwrap();
        assert_eq!(
            plan_worker(w, &effective)
                .iter()
                .map(|m| (m.path.as_str(), m.volume.as_str()))
                .collect::<Vec<_>>(),
            vec![("own", "worker-api.q"), ("s", "storage")]
        );
    }

    #[test]
    fn a_worker_without_mounts_of_its_own_shares_the_apps_volume() {
        let mut web = Application {
            name: "web".into(),
            mounts: serde_json::from_value(json!({"up": {"source": "local", "source_path": "up"}}))
                .unwrap(),
            ..Default::default()
        };
        web.workers = serde_json::from_value(json!({"q": {"commands": {"start": "run"}}})).unwrap();
        let topo = Topology {
            applications: vec![web],
            ..Default::default()
        };
        let w = &slipway_config::background::workers(&topo.applications[0]).unwrap()[0];
        let effective =
            slipway_config::background::worker_application(&topo.applications[0], w, &topo)
                .unwrap();
        assert_eq!(
            plan_worker(w, &effective)
                .iter()
                .map(|m| (m.path.as_str(), m.volume.as_str()))
                .collect::<Vec<_>>(),
            vec![("up", "app-web")]
        );
        assert_eq!(
            volume_sizes(&topo)
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            vec!["app-web"]
        );
    }
}
