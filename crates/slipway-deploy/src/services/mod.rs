//! Services: the PostgreSQL, MariaDB, Redis, ... servers of an environment, outside the
//! per-release [`crate::environment::ReleaseSpec`]. They belong to the environment: a
//! deploy starts the ones its topology adds (and waits until they answer) before any app
//! starts, and leaves running ones alone; `serve` brings them back before the apps;
//! `slipway down` stops them cleanly.
//!
//! Each runs in its own runc container on its service stack, as the project's
//! unprivileged user, in the environment's network namespace on a loopback address of its
//! own (`127.1.0.N`, its standard port), with its data in [`data_dir`] mounted at `/app`:
//! the `data/` folder of a volume of its own sized from its `disk` ([`data`]).
//! Apps reach a relationship `REL: "NAME:ENDPOINT"` at `REL.internal` through their
//! generated `/etc/hosts` ([`relationship_hosts`]), with the generated credentials kept in
//! state ([`fill_relationships`]).

pub mod data;
pub mod endpoints;
pub mod grants;
pub mod ports;
pub mod recipe;
pub mod shrink;
pub mod stack;
pub mod varnish;

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_config::{Application, Topology};
use slipway_runtime::{ContainerSpec, Limits, RootFs, Status};
use slipway_state::{ServiceRecord, ServiceState};
use tracing::{info, warn};

use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::provision::netns_path;
use crate::Platform;

/// How long a service may take from start to answering.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a service of `service_type` may take from start to answering: [`READY_TIMEOUT`],
/// longer for RabbitMQ, whose Erlang boot (feature flags, definitions) takes minutes on a
/// busy 2-core machine.
pub fn ready_timeout(service_type: &str) -> Duration {
    match service_type {
        "rabbitmq" => Duration::from_secs(240),
        _ => READY_TIMEOUT,
    }
}

/// How long a stopping service may take to shut down cleanly before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(60);

const MIB: u64 = 1024 * 1024;

/// The container id of a service (never the id of an app's container, which ends in `.rN`).
pub fn container_id(project: &str, env: &str, name: &str) -> String {
    format!("{project}.{env}.{name}.service")
}

/// Where a service keeps its data: the folder `data` of its volume `service-NAME`
/// (mounted at `DATA/volumes/PROJECT/ENV/service-NAME/`, see [`data`]), its container's
/// `/app`.
pub fn data_dir(platform: &Platform, project: &str, env: &str, name: &str) -> PathBuf {
    platform
        .data()
        .volumes()
        .env_dir(project, env)
        .join(format!("service-{name}"))
        .join("data")
}

/// The bytes a service's data uses on its volume (0 while the volume is not mounted).
pub fn disk_used(platform: &Platform, record: &ServiceRecord) -> u64 {
    data::disk(platform, record).map_or(0, |(used, _)| used)
}

/// The output of a service's container.
pub fn log_path(platform: &Platform, project: &str, env: &str, name: &str) -> PathBuf {
    platform
        .data()
        .root()
        .join("logs")
        .join(project)
        .join(env)
        .join("services")
        .join(format!("{name}.log"))
}

/// What a service container may use: one CPU, 1 GiB of memory, 512 tasks, a 256 MiB `/tmp`.
pub fn limits() -> Limits {
    Limits {
        pids: 512,
        memory_bytes: 1024 * MIB,
        cpu_millis: 1000,
        tmp_bytes: 256 * MIB,
    }
}

/// The names an app resolves to its services and apps: `REL.internal` for each
/// relationship to a service of the environment (its address) or to an app of the same
/// release (`app_ports`: the release's apps' ports by name; the address
/// [`crate::environment::app_address`] of its port).
pub fn relationship_hosts(
    app: &Application,
    services: &[ServiceRecord],
    app_ports: &BTreeMap<String, u16>,
) -> BTreeMap<String, IpAddr> {
    let mut out = BTreeMap::new();
    for (rel, target) in &app.relationships {
        let name = target.split_once(':').map_or(target.as_str(), |(s, _)| s);
        if let Some(s) = services.iter().find(|s| s.name == name) {
            out.insert(format!("{rel}.internal"), IpAddr::V4(s.address));
        } else if let Some(port) = app_ports.get(name) {
            out.insert(
                format!("{rel}.internal"),
                IpAddr::V4(crate::environment::app_address(*port)),
            );
        }
    }
    out
}

/// Put each service's address and generated credentials into a `PLATFORM_RELATIONSHIPS`
/// value (Platform.sh's shape, as [`slipway_config::platform_env::relationships_json`]
/// makes it with the catalog's defaults).
pub fn fill_relationships(relationships: &mut serde_json::Value, services: &[ServiceRecord]) {
    let Some(map) = relationships.as_object_mut() else {
        return;
    };
    for entries in map.values_mut() {
        let Some(list) = entries.as_array_mut() else {
            continue;
        };
        for e in list {
            let Some(s) = e
                .get("service")
                .and_then(|v| v.as_str())
                .and_then(|n| services.iter().find(|s| s.name == n))
            else {
                continue;
            };
            let ip = s.address.to_string();
            e["ip"] = ip.clone().into();
            e["instance_ips"] = serde_json::json!([ip]);
            e["cluster"] = format!("{}-{}", s.project, s.environment).into();
            let rel = e
                .get("rel")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let default = slipway_config::databases::default_endpoint(&s.service_type);
            if default.is_some_and(|d| d != rel) && !rel.is_empty() {
                // A configured endpoint: its own user, its own password.
                e["username"] = rel.clone().into();
                e["password"] = recipe::endpoint_password(&s.password, &rel).into();
            } else if !s.username.is_empty() {
                e["username"] = s.username.clone().into();
                e["password"] = s.password.clone().into();
            }
            let field = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let (scheme, host) = (
                field("scheme").unwrap_or_default(),
                field("host").unwrap_or_default(),
            );
            let port = e.get("port").and_then(|v| v.as_u64()).unwrap_or(0);
            let auth = match (field("username"), field("password")) {
                (Some(u), Some(p)) => format!("{u}:{p}@"),
                (Some(u), None) => format!("{u}@"),
                _ => String::new(),
            };
            let path = field("path").map(|p| format!("/{p}")).unwrap_or_default();
            e["url"] = format!("{scheme}://{auth}{host}:{port}{path}").into();
        }
    }
}

/// Write `bytes` to `file` in `dir` (made if missing), readable by its owner only (the
/// service's user owns it once [`start`] hands the folder over).
fn write_secret(
    dir: &std::path::Path,
    file: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(bytes)
}

/// Write the files a service of `record`'s type reads at each start from its
/// `configuration` and its own credentials (those of `record`, never those of the
/// environment its data was copied from): a MariaDB service's schemas, endpoints and
/// privileges ([`recipe::ENDPOINTS_FILE`]), a PostgreSQL service's extensions
/// ([`recipe::EXTENSIONS_FILE`]), a RabbitMQ service's users, vhosts and permissions
/// ([`recipe::DEFINITIONS_FILE`]). A deploy writes them before the service (re)starts, and
/// so does `sync` once the parent's copy (holding the parent's files) is in place.
pub fn write_start_files(
    platform: &Platform,
    record: &ServiceRecord,
    configuration: &serde_json::Value,
) -> Result<(), String> {
    let (file, content) = if slipway_config::catalog::runs_mariadb(&record.service_type) {
        (
            recipe::ENDPOINTS_FILE,
            recipe::mysql_endpoints_sql(configuration, &record.password)?,
        )
    } else if record.service_type == "postgresql" {
        (
            recipe::EXTENSIONS_FILE,
            recipe::postgresql_extensions(configuration)?,
        )
    } else if record.service_type == "rabbitmq" {
        let mut salt = [0u8; 4];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut salt))
            .map_err(|e| format!("reading random bytes: {e}"))?;
        (
            recipe::DEFINITIONS_FILE,
            recipe::rabbitmq_definitions(configuration, &record.password, salt)?,
        )
    } else {
        return Ok(());
    };
    let dir = data_dir(platform, &record.project, &record.environment, &record.name);
    let file = dir.join(file);
    write_secret(&dir, &file, content.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))
}

/// A new password: 24 random bytes from the kernel, hex.
fn generate_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The lowest loopback address `127.1.0.N` no service of the environment has (each
/// service's ports follow from it, [`ports`]).
fn free_address(taken: &[ServiceRecord]) -> Option<Ipv4Addr> {
    ports::addresses().find(|a| !taken.iter().any(|s| s.address == *a))
}

/// The stack a service runs on, unpacked (built first when missing: it is in the catalog).
/// A build, or a wait for another process's build of it, is told to `out` as the apps'
/// stacks are (`-----> stack postgresql:17: ...`, then `ready`), so the first push of a
/// service on a new server is not minutes of silence; an unpacked stack says nothing.
async fn stack_root(
    platform: &Arc<Platform>,
    stack: &'static slipway_stack::Stack,
    out: Option<&Output>,
) -> Result<PathBuf, String> {
    let store = platform
        .stack_store()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "services run on stacks: start the server with --stacks".to_string())?;
    let options = platform
        .settings()
        .stacks
        .as_ref()
        .map(|s| s.build.clone())
        .unwrap_or_default();
    let phase = format!("stack {}", stack.type_name());
    let started = Instant::now();
    let progress = out.cloned().map(|o| (o, phase.clone()));
    let (root, said) = tokio::task::spawn_blocking(move || {
        let mut said = false;
        let ensured = store.ensure(stack, &options, &mut |line| {
            if let Some((o, phase)) = &progress {
                o.phase(phase, line);
                said = true;
            }
        });
        ensured.map(|(_, root)| (root, said))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        if let Some(o) = out {
            o.phase(&phase, &format!("failed: {e}"));
        }
        e.to_string()
    })?;
    if let (Some(o), true) = (out, said) {
        o.phase_done(&phase, "ready", started);
    }
    Ok(root)
}

/// Start the container of `record` on its volume (made by [`data::prepare`]; mounted here
/// if it is not, never replaced by a folder on the host's disk), its data folder owned by
/// the project's user, on the stack it was made on ([`stack`]; recorded first for a
/// record made before stacks were).
pub async fn start(
    platform: &Arc<Platform>,
    record: &ServiceRecord,
    netns: &str,
) -> Result<(), String> {
    start_telling(platform, record, netns, None).await
}

/// [`start`], telling `out` (a push's output) about a build of the service's stack.
async fn start_telling(
    platform: &Arc<Platform>,
    record: &ServiceRecord,
    netns: &str,
    out: Option<&Output>,
) -> Result<(), String> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    let run_as = crate::isolation::run_as(project);
    let volume = data::volume(platform, project, env, name).map_err(|e| e.to_string())?;
    volume.mount().map_err(|e| format!("service {name}: {e}"))?;
    let dir = volume
        .service_data(run_as)
        .map_err(|e| format!("service {name}: {e}"))?;
    let record = &stack::ensure_recorded(platform, record, &dir)?;
    let on = stack::of_record(record)?;
    let recipe = recipe::recipe(record, on.language, on.version)
        .ok_or_else(|| format!("service type {} has no recipe", record.service_type))?;
    let root = stack_root(platform, on, out).await?;
    run_as.own_tree(&dir).map_err(|e| e.to_string())?;
    let log = log_path(platform, project, env, name);
    let id = container_id(project, env, name);
    crate::app_logs::append_line(&log, &format!("{}{id}", crate::provision::START_MARKER))?;
    let mut annotations = BTreeMap::new();
    annotations.insert("dev.slipway.service".to_string(), name.clone());
    let spec = ContainerSpec {
        root: RootFs::Stack(root),
        id: id.clone(),
        args: vec!["/bin/sh".into(), "-c".into(), recipe.start],
        env: vec![
            (recipe::PASSWORD_VAR.to_string(), record.password.clone()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ],
        cwd: "/app".into(),
        app_dir: dir,
        app_writable: true,
        mounts: vec![],
        netns: Some(netns_path(netns)),
        hostname: name.clone(),
        // `localhost` and the service's own name (RabbitMQ's Erlang node name needs one).
        hosts: vec![(name.clone(), IpAddr::V4(record.address))],
        annotations,
        run_as,
        limits: limits(),
    };
    // A container of that id left stopped by a crash is not running anything.
    let _ = platform.runtime().remove(&id, Duration::from_secs(2)).await;
    platform
        .runtime()
        .start(&spec, &log)
        .await
        .map_err(|e| format!("starting service {name}: {e}"))
}

/// Wait until the service answers (its recipe's ready command), or fail with the end of
/// its output when it exits or the timeout passes.
pub async fn wait_ready(
    platform: &Platform,
    record: &ServiceRecord,
    timeout: Duration,
) -> Result<(), String> {
    let on = stack::current(platform, record)?;
    let recipe = recipe::recipe(record, on.language, on.version)
        .ok_or_else(|| format!("service type {} has no recipe", record.service_type))?;
    let id = container_id(&record.project, &record.environment, &record.name);
    let log = log_path(platform, &record.project, &record.environment, &record.name);
    let deadline = Instant::now() + timeout;
    let exited = |what: &str| {
        let t = crate::health::tail(&log, 20);
        format!(
            "service {} {what}{}",
            record.name,
            if t.is_empty() {
                String::new()
            } else {
                format!(":\n{t}")
            }
        )
    };
    loop {
        match platform.runtime().state(&id).await {
            Ok(Some(s)) if s.status == Status::Stopped => return Err(exited("exited at start")),
            // Gone before it was ready: it exited at start and the runtime already
            // removed it (its output says why).
            Ok(None) => return Err(exited("exited at start (its container is gone)")),
            Ok(Some(_)) => {}
            Err(e) => return Err(format!("service {}: {e}", record.name)),
        }
        match &recipe.ready {
            Some(cmd) => {
                let mut said = String::new();
                let env = vec![(
                    "PATH".to_string(),
                    "/usr/local/bin:/usr/bin:/bin".to_string(),
                )];
                let code = platform
                    .runtime()
                    .exec(&id, cmd, &env, "", Duration::from_secs(5), &mut |l| {
                        said.push_str(l);
                        said.push('\n');
                    })
                    .await;
                if matches!(code, Ok(0)) && recipe.ready_output.is_none_or(|w| said.contains(w)) {
                    return Ok(());
                }
            }
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if matches!(platform.runtime().state(&id).await, Ok(Some(s)) if s.status == Status::Running)
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(exited(&format!(
                "did not answer within {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stop a service cleanly (SIGTERM, up to [`STOP_GRACE`] to shut down) and mark it stopped.
pub async fn stop(platform: &Platform, record: &ServiceRecord) {
    let id = container_id(&record.project, &record.environment, &record.name);
    if let Err(e) = platform.runtime().remove(&id, STOP_GRACE).await {
        warn!(container = %id, "stopping service: {e}");
    }
    let _ = platform.state().set_service_state(
        &record.project,
        &record.environment,
        &record.name,
        ServiceState::Stopped,
    );
}

async fn running(platform: &Platform, record: &ServiceRecord) -> bool {
    let id = container_id(&record.project, &record.environment, &record.name);
    matches!(platform.runtime().state(&id).await, Ok(Some(s)) if s.status == Status::Running)
}

/// Bring the environment's services to its topology's: every service there runs and
/// answers; running ones are left alone (a deploy that changes no service restarts none).
/// Each service's volume is made ready first ([`data::prepare`]: sized from its `disk`,
/// grown online, a shrink refused); a service this call adds to a new environment starts
/// on a copy of the same service's data in `parent` (same type and version).
/// A service that fails its first start is removed again with every other service this
/// call added (and the volumes this call made for them; data found there stays),
/// so the push is rejected with nothing changed.
/// A service whose type changed is replaced ([`set_aside`]: the old one stops, brought
/// back when the deploy fails); one holding data whose data the new type would not keep
/// only with `allow_data_loss` (a push's `-o allow-data-loss`; never in a rollback).
/// Returns the environment's services and those this call added, which the deploy removes
/// ([`remove_added`]) when a later phase fails. Services no longer in the topology keep running
/// with their data (removed by [`remove_dropped`] once the deploy is live).
pub async fn converge(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    parent: Option<&str>,
    netns: &str,
    topology: &Topology,
    allow_data_loss: bool,
    out: &Output,
) -> Result<(Vec<ServiceRecord>, Vec<Added>), PhaseError> {
    let fail = |m: String| PhaseError::new("provision", m);
    let state = platform.state();
    // Services this call added, and whether their data was there already.
    let mut added: Vec<Added> = Vec::new();
    let result = async {
        for svc in &topology.services {
            if svc.r#type == "network-storage" {
                continue;
            }
            if slipway_stack::service_software(&svc.r#type).is_none() {
                // Refused at validate: this is a topology that did not go through it.
                return Err(fail(format!(
                    "service {}: this server cannot run `{}` services",
                    svc.name, svc.r#type
                )));
            }
            let t = Instant::now();
            let existing = state
                .service(project, env, &svc.name)
                .map_err(|e| fail(e.to_string()))?;
            // A service whose type this push changes: the old one stops (brought back if
            // the push fails, see [`remove_added`]) and the new one starts as an added one.
            let replaced = match &existing {
                Some(r) if r.service_type != svc.r#type => {
                    use slipway_config::catalog::{holds_data, same_family};
                    let keeps =
                        same_family(&r.service_type, &svc.r#type) && holds_data(&svc.r#type);
                    if holds_data(&r.service_type) && !keeps && !allow_data_loss {
                        // A push's diff refuses it; a rollback or redeploy never deletes data.
                        return Err(fail(format!(
                            "service {}: changing it from {} to {} would delete its data; push the change with -o allow-data-loss",
                            svc.name, r.service_type, svc.r#type
                        )));
                    }
                    // Set aside below, once the new one's record is made.
                    Some(r.clone())
                }
                _ => None,
            };
            let existing = if replaced.is_some() { None } else { existing };
            let (record, new) = match existing {
                Some(r) => (r, false),
                None => {
                    let resolved = slipway_stack::resolve_service(&svc.r#type, &svc.version)
                        .map_err(|e| fail(format!("service {}: {e}", svc.name)))?;
                    if let Some(w) = resolved.warning() {
                        out.line(&format!("       warning: service {}: {w}", svc.name));
                    }
                    let taken = state
                        .services(project, env)
                        .map_err(|e| fail(e.to_string()))?;
                    // A replacing service takes the address of the one it replaces.
                    let address = match &replaced {
                        Some(o) => o.address,
                        None => free_address(&taken).ok_or_else(|| {
                            fail("no loopback address left for another service".into())
                        })?,
                    };
                    let username = recipe::username(&svc.r#type);
                    // Of the same family (mysql -> mariadb): the same server on the same
                    // data, whose users have the passwords they had.
                    let kept = replaced.as_ref().filter(|o| {
                        slipway_config::catalog::same_family(&o.service_type, &svc.r#type)
                            && o.username == username
                    });
                    let password = if let Some(o) = kept {
                        o.password.clone()
                    } else if username.is_empty() {
                        String::new()
                    } else {
                        generate_password()
                            .map_err(|e| fail(format!("generating a password: {e}")))?
                    };
                    let record = ServiceRecord {
                        project: project.to_string(),
                        environment: env.to_string(),
                        name: svc.name.clone(),
                        service_type: svc.r#type.clone(),
                        version: svc.version.clone(),
                        address,
                        username: username.to_string(),
                        password,
                        state: ServiceState::Starting,
                        stack: Some(stack::made_on(resolved.stack)),
                    };
                    if let Some(o) = &replaced {
                        set_aside(platform, o, &svc.r#type, &svc.version, out)
                            .await
                            .map_err(|m| fail(format!("service {}: {m}", svc.name)))?;
                    }
                    let found = data::legacy_dir(platform, project, env, &svc.name).exists()
                        || data::volume(platform, project, env, &svc.name)
                            .is_ok_and(|v| v.exists());
                    if let Err(e) = state.add_service(&record) {
                        if let Some(o) = &replaced {
                            bring_back(platform, o).await;
                        }
                        return Err(fail(e.to_string()));
                    }
                    added.push(Added {
                        record: record.clone(),
                        data_found: found,
                        replaced,
                    });
                    (record, true)
                }
            };
            if !new {
                shrink_disk(platform, &record, svc.disk, netns, out)
                    .await
                    .map_err(|m| fail(format!("service {}: {m}", record.name)))?;
            }
            let mut is_running = running(platform, &record).await;
            let legacy = data::legacy_dir(platform, project, env, &record.name).is_dir();
            if is_running
                && record.service_type == "varnish"
                && matches!(varnish::listens_for_apps(platform, &record).await, Ok(false))
            {
                // Started by an older Slipway, without the listener apps purge through: its
                // VCL refuses every PURGE until varnishd starts again on today's listeners.
                out.line(&format!(
                    "       service {}: restarting it with a listener for its apps' purges (started by an older Slipway; its cache starts empty)",
                    record.name
                ));
                stop(platform, &record).await;
                is_running = false;
            }
            if is_running && legacy {
                // Its data moves onto a volume: not while the server writes to it.
                out.line(&format!(
                    "       service {}: stopping it to move its data onto a volume",
                    record.name
                ));
                stop(platform, &record).await;
            }
            // The same service of the parent environment, copied into a new one.
            let from = match parent.filter(|p| *p != env && new) {
                Some(p) => state
                    .service(project, p, &record.name)
                    .map_err(|e| fail(e.to_string()))?
                    .filter(|ps| {
                        ps.service_type == record.service_type && ps.version == record.version
                    })
                    .and_then(|_| data::volume(platform, project, p, &record.name).ok())
                    .map(|v| (p.to_string(), v)),
                None => None,
            };
            let (p, r, disk) = (platform.clone(), record.clone(), svc.disk);
            let notes = tokio::task::spawn_blocking(move || {
                data::prepare(&p, &r, disk, from.as_ref().map(|(e, v)| (e.as_str(), v)))
            })
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
            for n in notes {
                out.line(&format!("       service {}: {n}", record.name));
            }
            // The definitions a running RabbitMQ node imported (its vhosts), before they
            // are written again from this push's configuration.
            let previous_definitions = (record.service_type == "rabbitmq")
                .then(|| {
                    std::fs::read_to_string(
                        data_dir(platform, project, env, &record.name)
                            .join(recipe::DEFINITIONS_FILE),
                    )
                    .ok()
                })
                .flatten();
            write_start_files(platform, &record, &svc.configuration)
                .map_err(|m| fail(format!("service {}: {m}", svc.name)))?;
            if record.service_type == "varnish" {
                if is_running && !legacy {
                    // Its new VCL must compile before anything else changes; it goes live
                    // with the release, at the switch (`varnish::follow`).
                    varnish::check(platform, &record, svc).await.map_err(|m| {
                        for l in m.lines().skip(1) {
                            out.line(&format!("       {}: {l}", record.name));
                        }
                        fail(m.lines().next().unwrap_or_default().to_string())
                    })?;
                } else {
                    // Started on it: varnishd refuses to start on a VCL that does not compile.
                    varnish::prepare(platform, &record, svc).map_err(fail)?;
                }
            }
            let volume = data::volume(platform, project, env, &record.name)
                .map_err(|e| fail(format!("service {}: {e}", record.name)))?;
            if is_running && !legacy && volume.grows_at_next_mount() {
                // Its disk grew, but this server cannot grow a mounted file system: the
                // service restarts on it, grown while unmounted, so the disk it asked for is
                // the disk it has.
                out.line(&format!(
                    "       service {}: restarting it on its grown disk (this server cannot grow a mounted volume: no CAP_SYS_RESOURCE)",
                    record.name
                ));
                stop(platform, &record).await;
                volume
                    .unmount()
                    .map_err(|e| fail(format!("service {}: {e}", record.name)))?;
            } else if is_running && !legacy {
                if record.service_type == "postgresql" {
                    endpoints::apply(platform, &record, &svc.configuration)
                        .await
                        .map_err(|m| fail(format!("service {}: {m}", svc.name)))?;
                }
                if record.service_type == "rabbitmq" {
                    // Vhosts a later push added, made on the running node (a restart would
                    // import them from the definitions file just written).
                    match endpoints::apply_rabbitmq(
                        platform,
                        &record,
                        &svc.configuration,
                        previous_definitions.as_deref(),
                    )
                    .await {
                        Ok(made) => {
                            for v in made {
                                out.line(&format!("       service {}: vhost {v} added", svc.name));
                            }
                        }
                        Err(m) => out.line(&format!(
                            "       warning: service {}: its vhosts apply at its next start: {m}",
                            svc.name
                        )),
                    }
                }
                if slipway_config::catalog::runs_mariadb(&record.service_type) {
                    // A server started by an older Slipway has no local account yet: its
                    // init file applies them at its next start.
                    if let Err(m) =
                        endpoints::apply_mysql(platform, &record, &svc.configuration).await
                    {
                        out.line(&format!(
                            "       warning: service {}: schemas and endpoints apply at its next start: {m}",
                            svc.name
                        ));
                    }
                }
                continue;
            }
            start_telling(platform, &record, netns, Some(out))
                .await
                .map_err(fail)?;
            wait_ready(platform, &record, ready_timeout(&record.service_type))
                .await
                .map_err(|m| {
                    let m = match std::fs::read_to_string(
                        data_dir(platform, project, env, &record.name).join(varnish::VCL_FILE),
                    ) {
                        Ok(text) if record.service_type == "varnish" => varnish::explain(&m, &text),
                        _ => m,
                    };
                    for l in m.lines().skip(1) {
                        out.line(&format!("       {}: {l}", record.name));
                    }
                    fail(m.lines().next().unwrap_or_default().to_string())
                })?;
            if record.service_type == "postgresql" {
                // Databases and endpoint roles: created on the running server.
                endpoints::apply(platform, &record, &svc.configuration)
                    .await
                    .map_err(|m| fail(format!("service {}: {m}", svc.name)))?;
            }
            state
                .set_service_state(project, env, &record.name, ServiceState::Running)
                .map_err(|e| fail(e.to_string()))?;
            out.phase_done(
                &format!("service {}", record.name),
                &format!(
                    "{}:{} {} on {}",
                    record.service_type,
                    record.version,
                    if new { "started" } else { "restarted" },
                    record.address
                ),
                t,
            );
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        remove_added(platform, &added).await;
        return Err(e);
    }
    let services = state
        .services(project, env)
        .map_err(|e| fail(e.to_string()));
    match services {
        Ok(services) => Ok((services, added)),
        Err(e) => {
            remove_added(platform, &added).await;
            Err(e)
        }
    }
}

/// A service a deploy added to its environment (none of that name was there before).
#[derive(Debug, Clone)]
pub struct Added {
    /// Its record.
    pub record: ServiceRecord,
    /// Whether data was found where its volume goes (never removed with it).
    pub data_found: bool,
    /// The service of that name it replaced (its type changed): stopped, with its data set
    /// aside ([`set_aside`]); brought back by [`remove_added`] when the deploy fails, its
    /// data deleted by [`forget_replaced`] once the deploy is live.
    pub replaced: Option<ServiceRecord>,
}

/// The volume a replaced service's data waits in (`service-NAME.replaced`) while the push
/// that replaced it is not live yet.
fn aside(
    platform: &Platform,
    (project, env, name): (&str, &str, &str),
) -> Result<crate::volumes::Volume, String> {
    platform
        .data()
        .volumes()
        .volume(project, env, &aside_volume(name))
        .map_err(|e| e.to_string())
}

/// The name of that volume.
fn aside_volume(name: &str) -> String {
    format!("service-{name}.replaced")
}

/// A service set aside whose replacement is live: the data it left aside is deleted and
/// its record forgotten (each tried, whatever the other did).
fn forget_aside(platform: &Platform, record: &ServiceRecord) -> Result<(), String> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    let removed = aside(platform, (project, env, name)).and_then(|v| {
        v.remove().map_err(|e| {
            format!(
                "the data of the {} it replaced was not deleted: {e}",
                record.service_type
            )
        })
    });
    let forgotten = platform
        .state()
        .forget_replaced_service(project, env, name)
        .map_err(|e| {
            format!(
                "the {} it replaced stays recorded: {e}",
                record.service_type
            )
        });
    removed.and(forgotten)
}

/// A service whose type a push changes to `new_type`: it stops, and its record goes (a
/// service of the new type takes its name). The data of a service holding data stays where
/// it is for a type of the same family (`mysql` -> `mariadb`: the same server's data);
/// else its volume is set aside ([`aside`]) so the new service starts on an
/// empty one (`redis` -> `redis-persistent` too: a plain redis keeps nothing).
async fn set_aside(
    platform: &Arc<Platform>,
    record: &ServiceRecord,
    new_type: &str,
    new_version: &str,
    out: &Output,
) -> Result<(), String> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    if data::legacy_dir(platform, project, env, name).exists() {
        return Err("its data is still in a folder of an older Slipway: push once without changing its type (it moves onto a volume), then change it".to_string());
    }
    out.line(&format!(
        "       service {name}: stopping {}:{} for {new_type}:{new_version} (it starts again if this push fails)",
        record.service_type, record.version
    ));
    stop(platform, record).await;
    let holds_data = slipway_config::catalog::holds_data(&record.service_type);
    let moved = async {
        if !(holds_data && slipway_config::catalog::same_family(&record.service_type, new_type)) {
            let v = data::volume(platform, project, env, name).map_err(|e| e.to_string())?;
            if v.exists() {
                v.rename(&aside_volume(name)).map_err(|e| e.to_string())?;
            }
        }
        // Kept aside in the state too: a server killed before the push is live or failed
        // finds it at its next start ([`settle_replaced`]).
        platform
            .state()
            .set_service_aside(project, env, name)
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = moved {
        bring_back(platform, record).await;
        return Err(e);
    }
    Ok(())
}

/// A service [`set_aside`] by a push that failed: its data back where it was, its record
/// back, started and waited for as at `serve` start.
async fn bring_back(platform: &Arc<Platform>, record: &ServiceRecord) {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    let result = async {
        put_back(platform, record)?;
        let netns = crate::environment::netns_name(platform.instance(), project, env);
        let disk = live_disk(platform, record)?;
        let (p, r) = (platform.clone(), record.clone());
        tokio::task::spawn_blocking(move || data::prepare(&p, &r, disk, None))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if record.service_type == "varnish" {
            varnish::write_for_live(platform, record)?;
        }
        platform.env_network(&netns).await?;
        start(platform, record, &netns).await?;
        wait_ready(platform, record, ready_timeout(&record.service_type)).await
    }
    .await;
    let st = match result {
        Ok(()) => ServiceState::Running,
        Err(e) => {
            warn!(project = %project, env = %env, service = %name, "the service a failed push replaced did not come back: {e}");
            ServiceState::Failed
        }
    };
    let _ = platform.state().set_service_state(project, env, name, st);
}

/// A service [`set_aside`]: its data back where it was and its record back (in place of
/// its replacement's), not started.
fn put_back(platform: &Platform, record: &ServiceRecord) -> Result<(), String> {
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    let aside = aside(platform, (project, env, name))?;
    if aside.exists() {
        aside
            .rename(&format!("service-{name}"))
            .map_err(|e| e.to_string())?;
    }
    let restored = platform
        .state()
        .restore_replaced_service(project, env, name)
        .map_err(|e| e.to_string())?;
    if !restored && !matches!(platform.state().service(project, env, name), Ok(Some(_))) {
        platform
            .state()
            .add_service(record)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Once a deploy is live: the data of the services it replaced by another type
/// ([`set_aside`]) is deleted, and their restarts forgotten.
pub async fn forget_replaced(platform: &Platform, added: &[Added], out: &Output) {
    for a in added {
        let Some(old) = &a.replaced else { continue };
        let (project, env, name) = (&old.project, &old.environment, &old.name);
        if let Err(e) = forget_aside(platform, old) {
            out.line(&format!("       warning: service {name}: {e}"));
        }
        // The new type starts counting anew.
        let _ = platform.state().forget_container_restarts(
            project,
            env,
            slipway_state::ContainerKind::Service,
            name,
        );
    }
}

/// At `serve` start, before the services are restored: a service set aside by a push
/// that then neither went live nor failed (the server was killed in between: its type
/// changed, [`set_aside`]) comes back, the service that replaced it stopped and its fresh
/// volume removed, when the live release still configures the old type (a failed or
/// interrupted deploy changes nothing); when the live release configures another type
/// (killed after the switch), its data set aside is deleted, as [`forget_replaced`] does.
/// Returns the containers it removed (of the replacements).
async fn settle_replaced(platform: &Arc<Platform>) -> HashSet<String> {
    let mut removed = HashSet::new();
    let records = match platform.state().replaced_services() {
        Ok(r) => r,
        Err(e) => {
            warn!("services replaced by an interrupted push not looked at: {e}");
            return removed;
        }
    };
    for old in records {
        let (project, env, name) = (&old.project, &old.environment, &old.name);
        // What the live release configures for the name; left for the next start when
        // the state cannot say (never deleted on a guess).
        let live =
            crate::release_record::live_release(platform.state(), project, env).and_then(|r| {
                r.map(|r| crate::release_record::topology_of(&r).map_err(|e| e.to_string()))
                    .transpose()
            });
        let live_type = match live {
            Ok(topology) => topology.and_then(|t| t.service(name).map(|s| s.r#type.clone())),
            Err(e) => {
                warn!(project = %project, env = %env, service = %name, "a service set aside by an interrupted push stays as it is: {e}");
                continue;
            }
        };
        if live_type.as_deref() == Some(old.service_type.as_str()) {
            info!(project = %project, env = %env, service = %name, "a push interrupted while it replaced this service: it comes back as {}", old.service_type);
            if let Ok(Some(new)) = platform.state().service(project, env, name) {
                let id = container_id(project, env, name);
                let _ = platform.runtime().remove(&id, STOP_GRACE).await;
                removed.insert(id);
                // The replacement's own volume, made empty by that push; a service of the
                // same family kept its data in place, and the volume stays.
                if aside(platform, (project, env, name)).is_ok_and(|v| v.exists()) {
                    if let Ok(v) = data::volume(platform, project, env, &new.name) {
                        if let Err(e) = v.remove() {
                            warn!(project = %project, env = %env, service = %name, "the replacement's volume stays: {e}");
                        }
                    }
                }
            }
            // Started by the restore that follows, as every service is.
            if let Err(e) = put_back(platform, &old) {
                warn!(project = %project, env = %env, service = %name, "not brought back: {e}");
            }
        } else {
            info!(project = %project, env = %env, service = %name, "a push that replaced this {} went live before the server stopped: its data set aside goes", old.service_type);
            if let Err(e) = forget_aside(platform, &old) {
                warn!(project = %project, env = %env, service = %name, "{e}");
            }
        }
    }
    removed
}

/// Remove services a deploy added, once the deploy failed: their containers, their records
/// and the volumes made for them (they never held data from before the push; data found
/// there stays). Every other service is left as it is.
pub async fn remove_added(platform: &Arc<Platform>, added: &[Added]) {
    for a in added {
        let r = &a.record;
        let id = container_id(&r.project, &r.environment, &r.name);
        let _ = platform.runtime().remove(&id, Duration::from_secs(5)).await;
        let _ = platform
            .state()
            .remove_service(&r.project, &r.environment, &r.name);
        if !a.data_found {
            if let Ok(v) = data::volume(platform, &r.project, &r.environment, &r.name) {
                let _ = v.remove();
            }
        }
        if let Some(old) = &a.replaced {
            bring_back(platform, old).await;
        }
    }
}

/// A service whose `disk` is now smaller than its volume (the push had
/// `-o allow-data-loss`: the infrastructure diff refuses a shrink without it): refused when
/// its data does not fit, while it keeps running; else it stops, its data moves onto a new
/// smaller volume ([`shrink::shrink`], checksummed before and after), and it starts again
/// (also when the shrink failed, on its volume as it was).
async fn shrink_disk(
    platform: &Arc<Platform>,
    record: &ServiceRecord,
    disk: Option<u64>,
    netns: &str,
    out: &Output,
) -> Result<(), String> {
    let v = data::volume(platform, &record.project, &record.environment, &record.name)
        .map_err(|e| e.to_string())?;
    let wanted = data::size_mb(disk);
    if !v.exists() || v.size_mb().map_err(|e| e.to_string())? <= wanted {
        return Ok(());
    }
    let checked = v.clone();
    tokio::task::spawn_blocking(move || shrink::check_fits(&checked, wanted))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    out.line(&format!(
        "       service {}: stopping it to move its data onto a smaller disk",
        record.name
    ));
    stop(platform, record).await;
    let moving = v.clone();
    let shrunk = tokio::task::spawn_blocking(move || shrink::shrink(&moving, wanted))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match shrunk {
        Ok(s) => {
            out.line(&format!(
                "       service {}: disk shrunk {} MB -> {wanted} MB ({} MB of data, {} before and after)",
                record.name, s.from_mb, s.used_mb, s.checksum
            ));
            Ok(())
        }
        Err(e) => {
            // Back on its volume as it was.
            start(platform, record, netns).await?;
            wait_ready(platform, record, ready_timeout(&record.service_type)).await?;
            let _ = platform.state().set_service_state(
                &record.project,
                &record.environment,
                &record.name,
                ServiceState::Running,
            );
            Err(e)
        }
    }
}

/// The `disk` of a service in its environment's live release (None: unset, or no live
/// release). A state error or a live release whose topology does not decode is the error,
/// never "no disk set" (which would size the volume to the default).
fn live_disk(platform: &Platform, record: &ServiceRecord) -> Result<Option<u64>, String> {
    let state = platform.state();
    let Some(env) = state
        .environment(&record.project, &record.environment)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let Some(id) = env.current_release else {
        return Ok(None);
    };
    let Some(release) = state.release(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let topology = crate::release_record::topology_of(&release).map_err(|e| e.to_string())?;
    Ok(topology.service(&record.name).and_then(|s| s.disk))
}

/// At `serve` start, before any app: adopt every service still running and start the
/// others (stopped by `slipway down` or a crash), on their volumes (mounted again, data
/// of an older Slipway's plain folder moved onto one). Returns the ids of their containers,
/// which restore never removes. `running`: the containers running now (restore's one
/// `runc list`), so adopting costs no `runc state` per service. The services of an
/// environment with no live release (a deleted branch) stay stopped.
pub async fn restore(platform: &Arc<Platform>, running: &HashSet<String>) -> HashSet<String> {
    let replaced = settle_replaced(platform).await;
    let mut keep = HashSet::new();
    let records = match platform.state().all_services() {
        Ok(r) => r,
        Err(e) => {
            warn!("services not restored: {e}");
            return keep;
        }
    };
    for r in records {
        let live = matches!(
            platform.state().environment(&r.project, &r.environment),
            Ok(Some(e)) if e.current_release.is_some()
        );
        if !live {
            if r.state != ServiceState::Stopped {
                let _ = platform.state().set_service_state(
                    &r.project,
                    &r.environment,
                    &r.name,
                    ServiceState::Stopped,
                );
            }
            continue;
        }
        let id = container_id(&r.project, &r.environment, &r.name);
        let adopted = running.contains(&id) && !replaced.contains(&id);
        keep.insert(id);
        let legacy = data::legacy_dir(platform, &r.project, &r.environment, &r.name).is_dir();
        if adopted && !legacy {
            info!(project = %r.project, env = %r.environment, service = %r.name, "service adopted");
            // Running since before stacks were recorded: its data says what made it.
            let dir = data_dir(platform, &r.project, &r.environment, &r.name);
            if let Err(e) = stack::ensure_recorded(platform, &r, &dir) {
                warn!(project = %r.project, env = %r.environment, service = %r.name, "{e}");
            }
            continue;
        }
        if adopted {
            // Its data moves onto a volume: not while the server writes to it.
            stop(platform, &r).await;
        }
        // `starting` (not the `running` a crash left in its record) until it answers.
        let _ = platform.state().set_service_state(
            &r.project,
            &r.environment,
            &r.name,
            ServiceState::Starting,
        );
        let netns = crate::environment::netns_name(platform.instance(), &r.project, &r.environment);
        let result = async {
            platform.env_network(&netns).await?;
            let (p, rec, disk) = (platform.clone(), r.clone(), live_disk(platform, &r)?);
            let notes = tokio::task::spawn_blocking(move || data::prepare(&p, &rec, disk, None))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            for n in notes {
                info!(project = %r.project, env = %r.environment, service = %r.name, "{n}");
            }
            if r.service_type == "varnish" {
                varnish::write_for_live(platform, &r)?;
            }
            start(platform, &r, &netns).await?;
            wait_ready(platform, &r, ready_timeout(&r.service_type)).await
        }
        .await;
        let st = match result {
            Ok(()) => {
                info!(project = %r.project, env = %r.environment, service = %r.name, "service started");
                ServiceState::Running
            }
            Err(e) => {
                warn!(project = %r.project, env = %r.environment, service = %r.name, "service did not come back: {e}");
                ServiceState::Failed
            }
        };
        let _ = platform
            .state()
            .set_service_state(&r.project, &r.environment, &r.name, st);
    }
    keep
}

/// After a deploy went live: the services of `live`'s topology (the release it replaced)
/// that the new `topology` no longer has are stopped and their data deleted
/// ([`data::remove`]): those holding no data (redis, memcached, ...) always, the others only
/// with `allow_data_loss` (`-o allow-data-loss`; the infrastructure diff refuses the push
/// without it). Databases a kept service no longer configures are dropped only with it.
/// Never before the deploy is live: a failed deploy leaves them running with their data.
/// A rollback (never pushed with the option) stops only those holding no data.
pub async fn remove_dropped(
    platform: &Platform,
    live: Option<&slipway_state::Release>,
    topology: &Topology,
    allow_data_loss: bool,
    out: &Output,
) {
    let Some(live) = live else { return };
    let Ok(old) = serde_json::from_value::<Topology>(live.topology.clone()) else {
        return;
    };
    for svc in &old.services {
        if let Some(kept) = topology.service(&svc.name) {
            if allow_data_loss && svc.r#type == kept.r#type {
                drop_removed_databases(platform, live, svc, kept, out).await;
            }
            continue;
        }
        let holds_data = slipway_config::catalog::holds_data(&svc.r#type);
        if holds_data && !allow_data_loss {
            // Refused by the infrastructure diff: never deleted without the option.
            continue;
        }
        let record = match platform
            .state()
            .service(&live.project, &live.environment, &svc.name)
        {
            Ok(Some(r)) => r,
            _ => continue,
        };
        match data::remove(platform, &record).await {
            Ok(()) => {
                // A service of that name added later starts counting anew.
                let _ = platform.state().forget_container_restarts(
                    &record.project,
                    &record.environment,
                    slipway_state::ContainerKind::Service,
                    &record.name,
                );
                out.line(&if holds_data {
                    format!(
                        "       service {} removed with its data (-o allow-data-loss)",
                        svc.name
                    )
                } else {
                    format!("       service {} stopped and removed", svc.name)
                })
            }
            Err(e) => out.line(&format!(
                "       warning: service {} not removed: {e}",
                svc.name
            )),
        }
    }
}

/// The databases (schemas) and endpoint users of PostgreSQL or MariaDB service `old` that
/// `new` no longer configures, dropped (the push had `-o allow-data-loss` and is live).
/// Other service types have none.
async fn drop_removed_databases(
    platform: &Platform,
    live: &slipway_state::Release,
    old: &slipway_config::Service,
    new: &slipway_config::Service,
    out: &Output,
) {
    let layout = |c: &serde_json::Value| {
        slipway_config::databases::layout(&new.r#type, c).and_then(Result::ok)
    };
    let (Some(a), Some(b)) = (layout(&old.configuration), layout(&new.configuration)) else {
        return;
    };
    let (schemas, roles) = (a.schemas_removed(&b), a.endpoints_removed(&b));
    if schemas.is_empty() && roles.is_empty() {
        return;
    }
    let Ok(Some(record)) = platform
        .state()
        .service(&live.project, &live.environment, &new.name)
    else {
        return;
    };
    match endpoints::drop_removed(platform, &record, &old.configuration, &new.configuration).await {
        Ok(()) => out.line(&format!(
            "       service {}: dropped {} (-o allow-data-loss)",
            new.name,
            schemas
                .iter()
                .map(|s| format!("database `{s}`"))
                .chain(roles.iter().map(|r| format!("endpoint `{r}`")))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => out.line(&format!(
            "       warning: service {}: not dropped: {e}",
            new.name
        )),
    }
}

/// Stop every service cleanly (`slipway down`); their data stays.
pub async fn stop_all(platform: &Platform) -> usize {
    let records = platform.state().all_services().unwrap_or_else(|e| {
        warn!("services: {e}");
        Vec::new()
    });
    for r in &records {
        stop(platform, r).await;
    }
    records.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, last: u8, user: &str) -> ServiceRecord {
        ServiceRecord {
            project: "p".into(),
            environment: "main".into(),
            name: name.into(),
            service_type: "postgresql".into(),
            version: "15".into(),
            address: Ipv4Addr::new(127, 1, 0, last),
            username: user.into(),
            password: "s3cret".into(),
            state: ServiceState::Running,
            stack: None,
        }
    }

    #[test]
    fn relationships_get_the_service_address_and_credentials() {
        let mut app = Application {
            name: "app".into(),
            ..Default::default()
        };
        app.relationships
            .insert("database".into(), "db:postgresql".into());
        app.relationships.insert("other".into(), "nothere:x".into());
        let services = vec![record("db", 3, "main")];
        app.relationships
            .insert("api".into(), "backend:http".into());
        let hosts = relationship_hosts(&app, &services, &BTreeMap::new());
        assert_eq!(hosts.len(), 1);
        assert_eq!(
            hosts["database.internal"],
            IpAddr::V4(Ipv4Addr::new(127, 1, 0, 3))
        );
        // An app of the release: the address of its port (10001 = 39 * 256 + 17).
        let ports = BTreeMap::from([("backend".to_string(), 10001)]);
        let hosts = relationship_hosts(&app, &services, &ports);
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            hosts["api.internal"],
            IpAddr::V4(Ipv4Addr::new(127, 4, 39, 17))
        );
        let mut rels = serde_json::json!({"database": [{
            "service": "db", "scheme": "pgsql", "host": "database.internal", "port": 5432,
            "username": "main", "password": "main", "path": "main", "ip": null,
        }]});
        fill_relationships(&mut rels, &services);
        let e = &rels["database"][0];
        assert_eq!(e["password"], "s3cret");
        assert_eq!(e["ip"], "127.1.0.3");
        assert_eq!(e["url"], "pgsql://main:s3cret@database.internal:5432/main");
        assert_eq!(free_address(&services), Some(Ipv4Addr::new(127, 1, 0, 2)));
        assert!(container_id("p", "main", "db").ends_with(".service"));
        assert_eq!(generate_password().unwrap().len(), 48);
    }
}
