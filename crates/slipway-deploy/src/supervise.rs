//! Containers that exit while serving come back by themselves: the apps and workers of
//! every live release and the services of every live environment.
//!
//! One task ([`run_forever`], started by `slipway serve` once [`crate::restore`] is done)
//! looks every [`TICK`]: it reaps the container processes that ended (so it knows their
//! exit code or signal, see [`slipway_runtime::Runtime::collect_exits`]), lists the
//! containers with one `runc list`, and compares with what the state says runs. A
//! container that is stopped or gone is started again, on the same slug, volumes,
//! variables and address (or unix socket) as at its deploy, after a backoff: 1 s before
//! the first restart, doubling up to [`MAX_BACKOFF`], back to 1 s once it stayed up
//! [`STABLE_AFTER`].
//!
//! It never fights a deploy, retire, backup restore, service upgrade or the other server
//! of `serve --upgrade`: a restart takes the environment's deploy lock
//! ([`Platform::try_lock_env`], skipping the tick when someone holds it) and, holding it,
//! checks again that the release is still the live one (or the service still runs in a
//! live environment) and that its container still does not run. A retired release is no
//! longer live, a service stopped on purpose is marked stopped: neither is restarted.
//!
//! A service started again is `starting` (its record's state) until its recipe's ready
//! check answers ([`services::wait_ready`], as at its first start), and only then
//! `running`: apps never see a service called running that refuses connections.
//!
//! Each restart says so in the app's (service's) log ("restarted after it exited with
//! ..."), is counted in `slipway_container_restarts` (by environment and kind) and in the
//! state (`container_restarts`, with how it last exited), so `envs`, `services` and the
//! console still show it after the server restarts ([`release_health`],
//! [`service_health`]). An app's or worker's count belongs to its release (a deploy starts
//! anew); a service's is kept across deploys.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use slipway_runtime::Status;
use slipway_state::{ContainerKind, ServiceState};
use tracing::{info, warn};

use crate::environment::{AppInstance, ReleaseSpec};
use crate::{release_record, services, Platform};

/// How often containers are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// The longest wait before a restart of a container that keeps exiting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a restarted container must stay up for its next exit to wait only 1 s again.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What kind of container is supervised (the `kind` label of the restarts metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An app of a live release (it answers HTTP).
    App,
    /// A worker of a live release.
    Worker,
    /// A service of a live environment.
    Service,
}

impl Kind {
    /// The name users see (`app`, `worker`, `service`).
    pub fn as_str(self) -> &'static str {
        self.stored().as_str()
    }

    /// As the state stores it.
    fn stored(self) -> ContainerKind {
        match self {
            Kind::App => ContainerKind::App,
            Kind::Worker => ContainerKind::Worker,
            Kind::Service => ContainerKind::Service,
        }
    }
}

/// Where a supervised container is, as `envs` and `services` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// It runs.
    Running,
    /// It exited and is being (or waits to be) started again.
    Restarting,
}

impl Condition {
    /// The name users see (`running`, `restarting`).
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Running => "running",
            Condition::Restarting => "restarting",
        }
    }
}

/// What the supervisor knows of one container (its restarts kept in the state).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Running or restarting.
    pub condition: Condition,
    /// How many times it was started again (in its release, for an app or worker).
    pub restarts: u64,
    /// How it last exited ("code 1", "signal 9 (SIGKILL)", ...), when it did.
    pub last_exit: Option<String>,
}

/// The supervisor's record of one container.
#[derive(Debug)]
struct Watch {
    restarts: u64,
    /// Restarts since it last stayed up [`STABLE_AFTER`]: the next backoff.
    streak: u32,
    /// Since when it is seen running.
    up_since: Option<Instant>,
    /// When it was found exited: restart not before this.
    next_try: Option<Instant>,
    /// A restart task runs for it.
    busy: bool,
    last_exit: Option<String>,
    /// How it exited this time it is down (kept across failed starts, which remove the
    /// container and with it what its cgroup said).
    this_exit: Option<String>,
    /// The tick it was last expected in (entries not expected any more are dropped).
    seen: u64,
}

impl Watch {
    fn new(tick_no: u64) -> Watch {
        Watch {
            restarts: 0,
            streak: 0,
            up_since: None,
            next_try: None,
            busy: false,
            last_exit: None,
            this_exit: None,
            seen: tick_no,
        }
    }

    /// Take in the container's status (`None`: gone) at `now`; true when a restart is due
    /// now (then it is marked busy until [`settle`]).
    fn observe(&mut self, status: Option<Status>, now: Instant) -> bool {
        if self.busy {
            return false;
        }
        match status {
            Some(Status::Running) => {
                self.next_try = None;
                self.this_exit = None;
                let since = *self.up_since.get_or_insert(now);
                if self.streak > 0 && now.duration_since(since) >= STABLE_AFTER {
                    self.streak = 0;
                }
                false
            }
            Some(Status::Stopped) | None => {
                self.up_since = None;
                let streak = self.streak;
                let next = *self.next_try.get_or_insert_with(|| now + backoff(streak));
                self.busy = now >= next;
                self.busy
            }
            // Being created, or frozen: not an exit.
            Some(_) => false,
        }
    }

    /// Record what a restart attempt came to, at `now`.
    fn settled(&mut self, outcome: &Outcome, now: Instant) {
        self.busy = false;
        match outcome {
            Outcome::Restarted => {
                self.this_exit = None;
                self.restarts += 1;
                self.streak = self.streak.saturating_add(1);
                self.next_try = None;
                self.up_since = None;
            }
            Outcome::NotNeeded => self.next_try = None,
            Outcome::Locked => {}
            Outcome::Failed(_) => {
                self.streak = self.streak.saturating_add(1);
                self.next_try = Some(now + backoff(self.streak));
            }
        }
    }
}

/// Every supervised container by id (process-wide, as the metrics).
static WATCHED: LazyLock<Mutex<HashMap<String, Watch>>> = LazyLock::new(Default::default);

fn watched() -> std::sync::MutexGuard<'static, HashMap<String, Watch>> {
    WATCHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// One container as the state keys its restarts.
struct Key<'a> {
    project: &'a str,
    env: &'a str,
    kind: Kind,
    name: &'a str,
    /// The release of an app or worker (None: a service).
    release: Option<i64>,
}

/// What is known of container `id`: whether this server is restarting it, and its restarts
/// as the state keeps them (this server's count if the state cannot be read). None when
/// this server does not watch it and it never exited.
fn health(platform: &Platform, id: &str, key: &Key<'_>) -> Option<Health> {
    let memory = watched().get(id).map(|w| Health {
        condition: if w.next_try.is_some() || w.busy {
            Condition::Restarting
        } else {
            Condition::Running
        },
        restarts: w.restarts,
        last_exit: w.last_exit.clone(),
    });
    let stored = platform.state().container_restarts(
        key.project,
        key.env,
        key.kind.stored(),
        key.name,
        key.release,
    );
    match (memory, stored) {
        (m, Ok(Some(r))) => Some(Health {
            condition: m.map_or(Condition::Running, |m| m.condition),
            restarts: r.restarts,
            last_exit: r.last_exit,
        }),
        (m, Ok(None)) => m,
        (m, Err(e)) => {
            warn!(container = %id, "restart counts: {e}");
            m
        }
    }
}

/// What is known of service `name` of `project`/`env`: restarting or not, its restarts
/// and last exit (kept across deploys and server restarts).
pub fn service_health(platform: &Platform, project: &str, env: &str, name: &str) -> Option<Health> {
    let key = Key {
        project,
        env,
        kind: Kind::Service,
        name,
        release: None,
    };
    health(platform, &services::container_id(project, env, name), &key)
}

/// What is known of the supervised containers of a live release (apps, then workers), by
/// app or worker name: those this server watches or that were restarted in this release.
pub fn release_health(
    platform: &Platform,
    release: &slipway_state::Release,
) -> Vec<(String, Health)> {
    let Ok(spec) = release_record::spec_of(release) else {
        return Vec::new();
    };
    let apps = spec.apps.iter().map(|a| (Kind::App, a));
    let workers = spec.workers.iter().map(|w| (Kind::Worker, &w.instance));
    apps.chain(workers)
        .filter_map(|(kind, app)| {
            let key = Key {
                project: &release.project,
                env: &release.environment,
                kind,
                name: &app.name,
                release: Some(release.id),
            };
            Some((app.name.clone(), health(platform, &app.container, &key)?))
        })
        .collect()
}

/// What `envs` says of a live release's containers: empty while none was restarted,
/// else e.g. `\trestarting: web (2 restarts; last exit code 1)` or
/// `\trestarted: web (1 restart; last exit signal 9 (SIGKILL))`.
pub fn release_note(platform: &Platform, release: &slipway_state::Release) -> String {
    let mut restarting = Vec::new();
    let mut restarted = Vec::new();
    for (name, h) in release_health(platform, release) {
        let times = if h.restarts == 1 {
            "restart"
        } else {
            "restarts"
        };
        let last = h
            .last_exit
            .as_deref()
            .map(|x| format!("; last exit {x}"))
            .unwrap_or_default();
        let said = format!("{name} ({} {times}{last})", h.restarts);
        match h.condition {
            Condition::Restarting => restarting.push(said),
            Condition::Running if h.restarts > 0 => restarted.push(said),
            Condition::Running => {}
        }
    }
    let mut note = String::new();
    if !restarting.is_empty() {
        note.push_str(&format!("\trestarting: {}", restarting.join(", ")));
    }
    if !restarted.is_empty() {
        note.push_str(&format!("\trestarted: {}", restarted.join(", ")));
    }
    note
}

/// The wait before the restart after `streak` quick ones: 1 s, 2 s, 4 s ... [`MAX_BACKOFF`].
pub fn backoff(streak: u32) -> Duration {
    Duration::from_secs(1u64 << streak.min(6)).min(MAX_BACKOFF)
}

/// A container that should run.
#[derive(Clone, Debug)]
enum Target {
    /// An app or worker of a live release.
    Release {
        kind: Kind,
        release_id: i64,
        spec: Arc<ReleaseSpec>,
        app: Box<AppInstance>,
    },
    /// A service of a live environment.
    Service { name: String },
}

/// One expected container.
#[derive(Clone, Debug)]
struct Expected {
    project: String,
    env: String,
    id: String,
    target: Target,
}

impl Expected {
    fn kind(&self) -> Kind {
        match &self.target {
            Target::Release { kind, .. } => *kind,
            Target::Service { .. } => Kind::Service,
        }
    }

    fn name(&self) -> &str {
        match &self.target {
            Target::Release { app, .. } => &app.name,
            Target::Service { name } => name,
        }
    }

    fn log(&self, platform: &Platform) -> PathBuf {
        match &self.target {
            Target::Release { app, .. } => {
                platform.data().app_log(&self.project, &self.env, &app.name)
            }
            Target::Service { name } => {
                services::log_path(platform, &self.project, &self.env, name)
            }
        }
    }
}

/// Decoded specs of live releases by id (a release's spec never changes).
type Specs = HashMap<i64, Arc<ReleaseSpec>>;

/// Every container the state says runs now.
fn expected(platform: &Platform, specs: &mut Specs) -> Vec<Expected> {
    let mut out = Vec::new();
    let releases = match platform.state().live_releases() {
        Ok(r) => r,
        Err(e) => {
            warn!("supervising: {e}");
            return out;
        }
    };
    let on_stacks = platform.settings().stacks.is_some();
    let live: HashSet<i64> = releases.iter().map(|r| r.id).collect();
    specs.retain(|id, _| live.contains(id));
    let mut live_envs = HashSet::new();
    for release in releases {
        live_envs.insert((release.project.clone(), release.environment.clone()));
        let spec = match specs.get(&release.id) {
            Some(s) => s.clone(),
            None => match release_record::spec_of(&release) {
                Ok(s) => {
                    let s = Arc::new(s);
                    specs.insert(release.id, s.clone());
                    s
                }
                // Restore said so already; it was not started either.
                Err(_) => continue,
            },
        };
        let apps = spec.apps.iter().map(|a| (Kind::App, a));
        let workers = spec.workers.iter().map(|w| (Kind::Worker, &w.instance));
        for (kind, app) in apps.chain(workers) {
            // Built on the host's root: restore stopped it on purpose.
            if on_stacks && app.stack_root.is_none() {
                continue;
            }
            out.push(Expected {
                project: release.project.clone(),
                env: release.environment.clone(),
                id: app.container.clone(),
                target: Target::Release {
                    kind,
                    release_id: release.id,
                    spec: spec.clone(),
                    app: Box::new(app.clone()),
                },
            });
        }
    }
    match platform.state().all_services() {
        Ok(records) => {
            for r in records {
                // Starting: being started again by a restart that has not seen it ready
                // (or whose start failed), still this supervisor's to bring back.
                if !matches!(r.state, ServiceState::Running | ServiceState::Starting)
                    || !live_envs.contains(&(r.project.clone(), r.environment.clone()))
                {
                    continue;
                }
                out.push(Expected {
                    id: services::container_id(&r.project, &r.environment, &r.name),
                    project: r.project,
                    env: r.environment,
                    target: Target::Service { name: r.name },
                });
            }
        }
        Err(e) => warn!("supervising services: {e}"),
    }
    out
}

/// Set (to anything) in a test's server environment: no supervision, so that a test can
/// kill a service and have it stay dead for what it checks next (a backup restore that
/// fails halfway).
const NO_SUPERVISION_HOOK: &str = "SLIPWAY_TEST_NO_SUPERVISION";

/// Watch the containers and start again the ones that exit, until the task is aborted.
pub async fn run_forever(platform: Arc<Platform>) {
    if std::env::var_os(NO_SUPERVISION_HOOK).is_some() {
        warn!("{NO_SUPERVISION_HOOK} is set: containers that exit are not started again");
        return;
    }
    let mut specs = Specs::new();
    let mut tick_no = 0u64;
    loop {
        tokio::time::sleep(TICK).await;
        tick_no += 1;
        if let Err(e) = tick(&platform, &mut specs, tick_no).await {
            warn!("supervising containers: {e}");
        }
    }
}

/// One look at every container.
async fn tick(
    platform: &Arc<Platform>,
    specs: &mut Specs,
    tick_no: u64,
) -> Result<(), crate::DeployError> {
    let runtime = platform.runtime();
    runtime.reap_exited();
    let statuses: HashMap<String, Status> = runtime
        .list()
        .await?
        .into_iter()
        .map(|c| (c.id, c.status))
        .collect();
    let expected = expected(platform, specs);
    let now = Instant::now();
    let mut due = Vec::new();
    {
        let mut watched = watched();
        for e in &expected {
            let w = watched
                .entry(e.id.clone())
                .or_insert_with(|| Watch::new(tick_no));
            w.seen = tick_no;
            let pending = w.next_try.is_some();
            let is_due = w.observe(statuses.get(&e.id).copied(), now);
            if let (false, Some(next)) = (pending, w.next_try) {
                let wait = next.saturating_duration_since(now).as_secs();
                info!(container = %e.id, "exited; starting it again in {wait}s");
            }
            if is_due {
                due.push(e.clone());
            }
        }
        watched.retain(|_, w| w.seen == tick_no || w.busy);
    }
    let kept: HashSet<&str> = expected.iter().map(|e| e.id.as_str()).collect();
    runtime.forget_exits(&|id| kept.contains(id));
    for e in due {
        let p = platform.clone();
        tokio::spawn(async move {
            let outcome = restart(&p, &e).await;
            settle(&e, outcome);
        });
    }
    Ok(())
}

/// What a restart attempt came to.
enum Outcome {
    /// Started again.
    Restarted,
    /// Not needed any more (it runs, or is no longer wanted): nothing done.
    NotNeeded,
    /// The environment's lock is held (a deploy, backup ...): tried again next tick.
    Locked,
    /// The start failed: tried again after the next backoff.
    Failed(String),
}

/// Take the environment's lock, check the container is still wanted and still down, and
/// start it again.
async fn restart(platform: &Arc<Platform>, e: &Expected) -> Outcome {
    let _lock = match platform.try_lock_env(&e.project, &e.env) {
        Ok(Some(lock)) => lock,
        Ok(None) => return Outcome::Locked,
        Err(err) => return Outcome::Failed(err.to_string()),
    };
    // Holding the lock: what the state says now is what holds.
    let wanted = match &e.target {
        Target::Release { release_id, .. } => matches!(
            platform.state().environment(&e.project, &e.env),
            Ok(Some(env)) if env.current_release == Some(*release_id)
        ),
        Target::Service { name } => {
            matches!(
                platform.state().environment(&e.project, &e.env),
                Ok(Some(env)) if env.current_release.is_some()
            ) && matches!(
                platform.state().service(&e.project, &e.env, name),
                Ok(Some(r)) if matches!(r.state, ServiceState::Running | ServiceState::Starting)
            )
        }
    };
    if !wanted {
        return Outcome::NotNeeded;
    }
    let runtime = platform.runtime();
    match runtime.state(&e.id).await {
        Ok(Some(s)) if s.status != Status::Stopped => return Outcome::NotNeeded,
        Ok(_) => {}
        Err(err) => return Outcome::Failed(err.to_string()),
    }
    runtime.reap_exited();
    let noted = watched().get(&e.id).and_then(|w| w.this_exit.clone());
    let how = noted.unwrap_or_else(|| {
        exit_text(
            runtime.take_exit(&e.id),
            runtime.oom_kills(&e.id).unwrap_or(0),
        )
    });
    if let Some(w) = watched().get_mut(&e.id) {
        w.last_exit = Some(how.clone());
        w.this_exit = Some(how.clone());
    }
    let started = match &e.target {
        Target::Release { spec, app, .. } => {
            async {
                platform.env_network(&spec.netns).await?;
                crate::provision::start_app(platform, &e.project, &e.env, spec, app)
                    .await
                    .map_err(|err| err.to_string())
            }
            .await
        }
        Target::Service { name } => {
            async {
                let record = platform
                    .state()
                    .service(&e.project, &e.env, name)
                    .map_err(|err| err.to_string())?
                    .ok_or_else(|| format!("service {name} is gone"))?;
                let netns = crate::environment::netns_name(platform.instance(), &e.project, &e.env);
                platform.env_network(&netns).await?;
                restart_service(platform, &record, &netns).await
            }
            .await
        }
    };
    let log = e.log(platform);
    let release = match &e.target {
        Target::Release { release_id, .. } => Some(*release_id),
        Target::Service { .. } => None,
    };
    let recorded = platform.state().record_container_exit(
        &e.project,
        &e.env,
        e.kind().stored(),
        e.name(),
        release,
        &how,
        started.is_ok(),
    );
    match started {
        Ok(()) => {
            let restarts = match recorded {
                Ok(n) => n,
                Err(err) => {
                    warn!(container = %e.id, "restart not recorded: {err}");
                    watched().get(&e.id).map_or(0, |w| w.restarts) + 1
                }
            };
            append(
                &log,
                &format!(
                    "----- slipway: {} {} restarted after it exited with {how} (restart {restarts})",
                    e.kind().as_str(),
                    e.name()
                ),
            );
            info!(container = %e.id, "restarted after it exited with {how}");
            crate::metrics::container_restarted(
                &format!("{}/{}", e.project, e.env),
                e.kind().as_str(),
            );
            Outcome::Restarted
        }
        Err(err) => {
            append(
                &log,
                &format!(
                    "----- slipway: {} {} exited with {how} and could not be started again: {err}",
                    e.kind().as_str(),
                    e.name()
                ),
            );
            Outcome::Failed(err)
        }
    }
}

/// Start service `record` again: `starting` until its recipe's ready check answers (the
/// same as at its first start), then `running`. A start that does not get ready stops its
/// container, so the next try (after the backoff) starts it afresh.
async fn restart_service(
    platform: &Arc<Platform>,
    record: &slipway_state::ServiceRecord,
    netns: &str,
) -> Result<(), String> {
    let state = platform.state();
    let (project, env, name) = (&record.project, &record.environment, &record.name);
    state
        .set_service_state(project, env, name, ServiceState::Starting)
        .map_err(|err| err.to_string())?;
    services::start(platform, record, netns).await?;
    if let Err(err) = services::wait_ready(
        platform,
        record,
        services::ready_timeout(&record.service_type),
    )
    .await
    {
        let id = services::container_id(project, env, name);
        let _ = platform.runtime().remove(&id, Duration::from_secs(5)).await;
        return Err(err);
    }
    state
        .set_service_state(project, env, name, ServiceState::Running)
        .map_err(|err| err.to_string())
}

/// Record what a restart attempt came to.
fn settle(e: &Expected, outcome: Outcome) {
    let mut watched = watched();
    let Some(w) = watched.get_mut(&e.id) else {
        return;
    };
    w.settled(&outcome, Instant::now());
    if let Outcome::Failed(err) = outcome {
        warn!(container = %e.id, "could not start it again (next try in {}s): {err}", backoff(w.streak).as_secs());
    }
}

/// "code 1", "signal 9 (SIGKILL)", with the kernel's OOM kill said when it killed a
/// process of the container.
fn exit_text(exit: Option<slipway_runtime::Exit>, oom_kills: u64) -> String {
    let how = match exit {
        Some(exit) => exit.to_string(),
        None => "an unknown status (an earlier server started it)".to_string(),
    };
    if oom_kills > 0 {
        format!("{how}, out of memory: the kernel killed {oom_kills} process(es) of it for going over its memory limit")
    } else {
        how
    }
}

/// Append one line to a log file (best effort: the restart matters more than its note).
fn append(log: &std::path::Path, line: &str) {
    if let Err(err) = crate::app_logs::append_line(log, line) {
        warn!("{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_container_that_keeps_exiting_waits_longer_each_time_until_it_stays_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = Watch::new(0);
        assert!(!w.observe(Some(Status::Running), t0));
        // Found exited: restarted 1 s later, not before; busy until settled.
        assert!(!w.observe(Some(Status::Stopped), t0 + s(1)));
        assert!(w.observe(Some(Status::Stopped), t0 + s(2)));
        assert!(!w.observe(Some(Status::Stopped), t0 + s(3)), "busy");
        w.settled(&Outcome::Restarted, t0 + s(3));
        assert_eq!(w.restarts, 1);
        // Exits again at once: 2 s, then 4 s.
        assert!(!w.observe(None, t0 + s(4)));
        assert!(!w.observe(None, t0 + s(5)));
        assert!(w.observe(None, t0 + s(6)));
        w.settled(&Outcome::Restarted, t0 + s(6));
        assert!(!w.observe(Some(Status::Stopped), t0 + s(7)));
        assert!(!w.observe(Some(Status::Stopped), t0 + s(10)));
        assert!(w.observe(Some(Status::Stopped), t0 + s(11)));
        // A deploy holds the environment: tried again at the next look.
        w.settled(&Outcome::Locked, t0 + s(11));
        assert!(w.observe(Some(Status::Stopped), t0 + s(12)));
        w.settled(&Outcome::Restarted, t0 + s(12));
        assert_eq!((w.restarts, w.streak), (3, 3));
        // Up a minute: the next exit waits 1 s again.
        assert!(!w.observe(Some(Status::Running), t0 + s(13)));
        assert!(!w.observe(Some(Status::Running), t0 + s(73)));
        assert_eq!(w.streak, 0);
        assert!(!w.observe(None, t0 + s(74)));
        assert!(w.observe(None, t0 + s(75)));
        // A start that fails backs off too, and keeps how it exited for the next try.
        w.this_exit = Some("code 1".into());
        w.settled(&Outcome::Failed("no".into()), t0 + s(75));
        assert_eq!(w.this_exit.as_deref(), Some("code 1"));
        assert!(!w.observe(None, t0 + s(76)));
        assert!(w.observe(None, t0 + s(77)));
        // Started meanwhile by someone else, or no longer wanted: nothing pending.
        w.settled(&Outcome::NotNeeded, t0 + s(77));
        assert!(w.next_try.is_none() && !w.busy);
        assert!(!w.observe(Some(Status::Running), t0 + s(78)));
        assert_eq!(w.this_exit, None, "up again: the next exit is a new one");
        // Being created or frozen is no exit.
        assert!(!w.observe(Some(Status::Created), t0 + s(90)));
        assert!(!w.observe(Some(Status::Paused), t0 + s(200)));
    }

    #[test]
    fn an_exit_says_its_code_or_signal_and_the_oom_killer() {
        use slipway_runtime::Exit;
        assert_eq!(exit_text(Some(Exit::Code(3)), 0), "code 3");
        assert_eq!(exit_text(Some(Exit::Signal(9)), 0), "signal 9 (SIGKILL)");
        let oom = exit_text(Some(Exit::Code(137)), 1);
        assert!(
            oom.starts_with("code 137 (SIGKILL), out of memory"),
            "{oom}"
        );
        assert!(exit_text(None, 0).contains("unknown"));
    }
}
