//! Phase **provision**: start the new release's containers beside the running
//! ones, in the environment's network namespace, each app on its own `$PORT`.
//! The slug is unpacked once (cached by digest, digest checked) and mounted
//! read-only at `/app`; the root is read-only; `/tmp` is a private tmpfs; the app's `mounts`
//! are writable folders of the environment's volumes ([`crate::mounts`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_config::Topology;
use slipway_runtime::{ContainerSpec, RunAs};
use slipway_slug::ReleaseImage;
use slipway_state::Release;

use crate::build::BuiltApp;
use crate::environment::{self, AppInstance, EnvContext, ReleaseSpec};
use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::Platform;

/// The line written to an app's log before each container start; the health
/// check shows only what came after it.
pub const START_MARKER: &str = "----- slipway: starting container ";

/// The path of a network namespace made by `ip netns`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Make sure the environment's network namespace exists, with its egress proxy
/// ([`Platform::env_network`]).
pub async fn ensure_netns(
    platform: &Platform,
    target: &DeployTarget,
) -> Result<String, PhaseError> {
    let name = environment::netns_name(platform.instance(), &target.project, &target.env);
    platform
        .env_network(&name)
        .await
        .map_err(|e| PhaseError::new("provision", format!("network namespace {name}: {e}")))?;
    Ok(name)
}

/// Work out the release's spec (apps, ports, env, containers) without starting anything.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    platform: &Platform,
    target: &DeployTarget,
    release: &Release,
    built: &[BuiltApp],
    topology: &Topology,
    netns: String,
    services: &[slipway_state::ServiceRecord],
    entropy: &str,
) -> ReleaseSpec {
    let url = platform.env_url(&target.project, &target.env);
    // The ports of this release's apps: an app's relationship to another reaches this
    // release's one (`environment::app_address`).
    let app_ports: BTreeMap<String, u16> = topology
        .applications
        .iter()
        .enumerate()
        .filter(|(_, a)| built.iter().any(|b| b.name == a.name))
        .map(|(i, a)| (a.name.clone(), environment::port_for(release.number, i)))
        .collect();
    let mut apps = Vec::new();
    for (i, app) in topology.applications.iter().enumerate() {
        let Some(b) = built.iter().find(|b| b.name == app.name) else {
            continue;
        };
        let port = environment::port_for(release.number, i);
        let fastcgi = crate::php::serves(app);
        let no_web_process = slipway_config::php::no_web_process(app);
        let cx = EnvContext {
            project: &target.project,
            env: &target.env,
            branch: &target.branch,
            tree_id: &b.tree,
            port,
            url: &url,
            topology,
            services,
            entropy,
        };
        // Variables set with `var set` are not part of the spec: see [`crate::variables`].
        let mut env = environment::app_env(app, &cx);
        if let Some(port) = platform.settings().https_port {
            crate::https::apply(&mut env, port);
            let url = crate::https::env_url(platform, &target.project, &target.env, topology);
            env.insert("SLIPWAY_URL".into(), url);
        }
        let container =
            environment::container_id(&target.project, &target.env, &app.name, release.number);
        // `socket_family: unix`: $SOCKET instead of $PORT (apps without a web process have
        // no socket_family of their own; the config keeps them on TCP). PHP-FPM always
        // listens on the socket (the app's environment is left as it was: PHP-FPM, not
        // the app, listens there).
        let socket = (fastcgi
            || (app.web.socket_family == slipway_config::SocketFamily::Unix && !no_web_process))
            .then(|| crate::sockets::host_socket(&platform.data().app_sockets(), &container));
        if socket.is_some() && !fastcgi {
            env.remove("PORT");
            env.insert("SOCKET".into(), crate::sockets::SOCKET.into());
        }
        apps.push(AppInstance {
            name: app.name.clone(),
            slug: b.slug.digest.to_string(),
            manifest: None,
            container,
            port,
            start: if crate::php::serves(app) {
                let limits = crate::isolation::app_limits(app.size, app.resources);
                crate::php::start_command(app, limits.memory_bytes)
            } else if slipway_config::php::no_web_process(app) {
                "exec sleep infinity".to_string()
            } else {
                app.web.start.clone().unwrap_or_default()
            },
            fastcgi,
            no_web_process,
            unreached: !fastcgi
                && !no_web_process
                && !slipway_config::web_locations::process_reached(topology, app),
            env,
            tree: b.tree.clone(),
            build_key: b.build_key.clone(),
            stack_root: b.stack_root.clone(),
            stack_layers: b.stack_layers.clone(),
            size: app.size,
            resources: app.resources,
            mounts: crate::mounts::plan(app),
            hosts: crate::services::relationship_hosts(app, services, &app_ports),
            socket,
        });
    }
    ReleaseSpec {
        apps,
        netns,
        routed_app: environment::routed_app(topology),
        workers: Vec::new(),
        volumes: crate::mounts::volume_sizes(topology),
    }
}

/// The container spec of an app instance whose slug is unpacked at `app_dir`, run as `run_as`
/// (the project's user, [`crate::isolation::run_as`]).
pub fn container_spec(
    spec: &ReleaseSpec,
    app: &AppInstance,
    app_dir: PathBuf,
    run_as: RunAs,
) -> ContainerSpec {
    let mut annotations = BTreeMap::new();
    annotations.insert("dev.slipway.app".to_string(), app.name.clone());
    annotations.insert("dev.slipway.slug".to_string(), app.slug.clone());
    ContainerSpec {
        root: match &app.stack_root {
            Some(dir) => slipway_runtime::RootFs::Stack(dir.clone()),
            None => slipway_runtime::RootFs::Host,
        },
        id: app.container.clone(),
        args: vec![
            "/bin/sh".into(),
            "-c".into(),
            environment::sourcing_environment(&app.start),
        ],
        env: app
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cwd: "/app".into(),
        app_dir,
        app_writable: false,
        mounts: vec![],
        netns: Some(netns_path(&spec.netns)),
        hostname: environment::host_name(&app.name),
        hosts: app.hosts.iter().map(|(n, ip)| (n.clone(), *ip)).collect(),
        annotations,
        run_as,
        limits: crate::isolation::app_limits(app.size, app.resources),
    }
}

/// Unpack the slug of `app` (once per digest) and start its container.
pub async fn start_app(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    spec: &ReleaseSpec,
    app: &AppInstance,
) -> Result<(), PhaseError> {
    start_app_with(platform, (project, env), spec, app, false).await
}

/// [`start_app`]; with `deploy_hook_to_run`, its start command is started again when it
/// exits until its deploy hook is done ([`environment::restarted_until_deployed`]).
async fn start_app_with(
    platform: &Arc<Platform>,
    (project, env): (&str, &str),
    spec: &ReleaseSpec,
    app: &AppInstance,
    deploy_hook_to_run: bool,
) -> Result<(), PhaseError> {
    let fail = |m: String| PhaseError::new("provision", m);
    // A release made on the host's root (before stacks, or under --unsafe-host-root)
    // never starts on a server whose apps run on stacks.
    if app.stack_root.is_none() && platform.settings().stacks.is_some() {
        return Err(fail(format!(
            "{} of this release was built on the host's root, not on a stack; push again to build it on the stack its type names",
            app.name
        )));
    }
    let digest = slipway_slug::Digest::parse(&app.slug).map_err(|e| fail(e.to_string()))?;
    let p = platform.clone();
    let dir = tokio::task::spawn_blocking(move || {
        p.archive().unpack_slug(&digest, &p.data().unpacked_slugs())
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(format!("slug of {}: {e}", app.name)))?;
    let log = platform.data().app_log(project, env, &app.name);
    crate::app_logs::append_line(&log, &format!("{START_MARKER}{}", app.container))
        .map_err(fail)?;
    let mut container = container_spec(spec, app, dir, crate::isolation::run_as(project));
    if deploy_hook_to_run {
        // The start script (`sh -c SCRIPT`'s last argument), wrapped.
        if let Some(script) = container.args.last_mut() {
            *script = environment::restarted_until_deployed(script);
        }
    }
    // A container of that id left by an interrupted attempt is not ours to keep; removed
    // before its mounts are pinned, which removing it would unpin.
    let _ = platform
        .runtime()
        .remove(&app.container, Duration::from_secs(2))
        .await;
    let p = platform.clone();
    let (proj, e, a) = (project.to_string(), env.to_string(), app.clone());
    container.mounts =
        tokio::task::spawn_blocking(move || crate::mounts::bind_mounts(&p, (&proj, &e), &a))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("mounts of {}: {e}", app.name)))?;
    if let Some(socket) = &app.socket {
        let mount = crate::sockets::prepare(socket, crate::isolation::run_as(project))
            .map_err(|e| fail(format!("unix socket of {}: {e}", app.name)))?;
        container.mounts.push(mount);
    }
    container
        .mounts
        .extend(platform.settings().egress.ca_mount());
    container.env = crate::variables::with_environment_variables(platform, project, env, &app.env)
        .map_err(|e| fail(format!("variables of {env}: {e}")))?;
    platform
        .runtime()
        .start(&container, &log)
        .await
        .map_err(|e| fail(format!("starting {}: {e}", app.name)))
}

/// Start every app of the release; writes the release image of each app into the archive.
/// The apps named in `with_deploy_hook` run their start command again when it exits until
/// their deploy hook is done ([`crate::hooks::deploy`]).
pub async fn run(
    platform: &Arc<Platform>,
    target: &DeployTarget,
    release: &Release,
    spec: &mut ReleaseSpec,
    built: &[BuiltApp],
    with_deploy_hook: &[&str],
    out: &Output,
) -> Result<(), PhaseError> {
    for i in 0..spec.apps.len() {
        let t = Instant::now();
        let app = &spec.apps[i];
        if let Some(b) = built.iter().find(|b| b.name == app.name) {
            let mut labels = BTreeMap::new();
            labels.insert("dev.slipway.project".into(), target.project.clone());
            labels.insert("dev.slipway.environment".into(), target.env.clone());
            labels.insert("dev.slipway.app".into(), app.name.clone());
            labels.insert("dev.slipway.tree-id".into(), app.tree.clone());
            labels.insert("dev.slipway.build-key".into(), app.build_key.clone());
            // Nothing per release (number, commit, the port it runs on) goes into the image:
            // the tag names the release, so a push that changes no app writes no new blob.
            let image = ReleaseImage {
                tag: format!(
                    "{}.{}.r{}.{}",
                    target.project, target.env, release.number, app.name
                ),
                base: b.stack_layers.clone(),
                slug: b.slug.clone(),
                cmd: vec!["/bin/sh".into(), "-c".into(), app.start.clone()],
                env: app
                    .env
                    .iter()
                    .filter(|(k, _)| k.as_str() != "PORT")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                labels,
            };
            let p = platform.clone();
            let manifest = tokio::task::spawn_blocking(move || p.archive().put_release(&image))
                .await
                .map_err(|e| PhaseError::new("provision", e.to_string()))?
                .map_err(|e| PhaseError::new("provision", format!("release image: {e}")))?;
            spec.apps[i].manifest = Some(manifest.to_string());
        }
        let app = &spec.apps[i];
        let hooked = with_deploy_hook.contains(&app.name.as_str());
        start_app_with(platform, (&target.project, &target.env), spec, app, hooked).await?;
        out.phase_done(
            &format!("provision {}", app.name),
            &match &app.socket {
                Some(_) => format!(
                    "container {} on unix socket {}",
                    app.container,
                    crate::sockets::SOCKET
                ),
                None => format!("container {} on port {}", app.container, app.port),
            },
            t,
        );
    }
    Ok(())
}

/// Have the router listen on the relationship address
/// ([`environment::app_address`]) of every app of the release that some app or worker of
/// it relates to, inside the environment's network namespace, answering there with the
/// app's web layer as a route to it would (locations, static files, PHP-FPM, its process
/// on its port or unix socket): `REL.internal:80`. Call it once the apps run, before
/// any deploy hook (another app's hook may call them). A release's listeners go with its
/// containers ([`remove_release`]).
pub async fn listen_related(
    platform: &Platform,
    release: &Release,
    spec: &ReleaseSpec,
) -> Result<(), String> {
    let related: Vec<&AppInstance> = spec
        .apps
        .iter()
        .filter(|app| is_related(spec, environment::app_address(app.port)))
        .collect();
    if related.is_empty() {
        return Ok(());
    }
    let topology = crate::release_record::topology_of(release).map_err(|e| e.to_string())?;
    let (project, env) = (release.project.as_str(), release.environment.as_str());
    // What a route to each app would lead to: its upstream and its locations.
    let routes = crate::switch::env_routes(platform, project, env, "", spec, Some(&topology));
    let key = crate::switch::env_key(project, env);
    let netns = netns_path(&spec.netns);
    for app in related {
        let address = environment::app_address(app.port);
        let Some((_, upstream)) = routes.upstreams.iter().find(|(n, _)| *n == app.name) else {
            continue;
        };
        let site = routes
            .sites
            .iter()
            .find(|(n, _)| *n == app.name)
            .map(|(_, s)| s);
        platform
            .router()
            .listen_app(&key, &netns, address, &app.name, upstream.clone(), site)
            .await
            .map_err(|e| format!("address {address} of {}: {e}", app.name))?;
    }
    Ok(())
}

/// Stop and remove every container of a release (a failed attempt, or a retired release),
/// after the router stopped listening on its apps' relationship addresses and the
/// requests under way there finished (at most the drain timeout).
pub async fn remove_release(platform: &Platform, spec: &ReleaseSpec, grace: Duration) {
    unlisten_release(platform, spec).await;
    stop_release(platform, spec, grace).await;
}

/// Stop listening on the relationship addresses of a release's apps in this server, and
/// wait until the calls under way there finished (at most the drain timeout).
pub async fn unlisten_release(platform: &Platform, spec: &ReleaseSpec) {
    let netns = netns_path(&spec.netns);
    for app in &spec.apps {
        let address = environment::app_address(app.port);
        if let Some(listened) = platform.router().unlisten_app(&netns, address) {
            crate::retire::drain(&listened, platform.settings().drain_timeout).await;
        }
    }
}

/// Stop and remove the containers (workers first, then apps) of a release nothing calls
/// any more ([`unlisten_release`]), and their unix sockets.
pub async fn stop_release(platform: &Platform, spec: &ReleaseSpec, grace: Duration) {
    let workers = spec.workers.iter().map(|w| &w.instance);
    for app in workers.chain(&spec.apps) {
        if let Err(e) = platform.runtime().remove(&app.container, grace).await {
            tracing::warn!(container = %app.container, "removing container: {e}");
        }
        if let Some(socket) = &app.socket {
            crate::sockets::remove(socket);
        }
    }
}

/// Whether some app or worker of `spec` relates to the app at `address`
/// ([`environment::app_address`]): its `/etc/hosts` names that address.
fn is_related(spec: &ReleaseSpec, address: std::net::Ipv4Addr) -> bool {
    let address = std::net::IpAddr::V4(address);
    spec.apps
        .iter()
        .chain(spec.workers.iter().map(|w| &w.instance))
        .any(|other| other.hosts.values().any(|a| *a == address))
}
