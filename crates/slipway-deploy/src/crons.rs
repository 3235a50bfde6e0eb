//! Crons (`crons:` of an app, spec section 10): each runs on its schedule in the live
//! release, as a command `runc exec`'d into the app's running container (same slug,
//! variables, limits and network namespace as the app; nothing to start, nothing to clean
//! up), in the app's `timezone` (default UTC).
//!
//! - One scheduler task ([`run_forever`]) wakes at every minute and starts the runs due.
//! - Never two runs of one cron at once: a run due while the last one still goes is skipped,
//!   and the running run's activity log says so (so does `cron run`, refused meanwhile);
//!   during an upgrade, a run still going in the old server counts too (a lock file,
//!   [`crate::env_lock`]), as does a deploy running there.
//! - Paused while the environment deploys: a run due while a deploy holds the environment's
//!   lock is skipped (the server log says so); the next due run happens as usual. So is a
//!   run due while the app's container is not running (`serve` still bringing it back).
//! - Bounded by `timeout`: then `commands.stop` runs (if written), and `shutdown_timeout`
//!   later the command gets SIGTERM, and SIGKILL `shutdown_timeout` after that (coreutils
//!   `timeout` inside the container does the signalling; a second after that, the server
//!   SIGKILLs whatever is left of the run's process group itself).
//! - Each run is an activity of kind `cron` (summary `cron NAME: ...`) with its output and
//!   exit status.
//!
//! `SLIPWAY_CRON_TICK=SECONDS` (tests only) makes a schedule's minute last that many
//! seconds, so `* * * * *` runs every SECONDS; timeouts stay in real seconds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use slipway_config::background::Cron;
use slipway_config::Topology;

use crate::environment::{AppInstance, ReleaseSpec};
use crate::output::{Output, Watch};
use crate::release_record;
use crate::Platform;

/// The environment variable that scales a schedule's minute (tests only).
pub const TICK_VARIABLE: &str = "SLIPWAY_CRON_TICK";

/// Why a cron could not run.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// No live release, or no cron of that name in it.
    #[error("{0}")]
    NotFound(String),
    /// Several apps have a cron of that name: (the name, each `APP/NAME`).
    #[error("several apps have a cron '{0}': name one of {1}")]
    Ambiguous(String, String),
    /// A run of it is going on.
    #[error("cron {0} is running now; try again when it is done")]
    Busy(String),
    /// A deploy of the environment runs.
    #[error("a deploy of {0} is running; try again when it is done")]
    Deploying(String),
    /// The app's container is not running (the server is starting, or it stopped).
    #[error("the container of app {0} is not running")]
    NotRunning(String),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] slipway_state::StateError),
    /// The live release's stored record does not decode.
    #[error(transparent)]
    Record(#[from] crate::release_record::ReleaseRecordError),
    /// The environment's or the cron's lock file failed.
    #[error(transparent)]
    Lock(#[from] crate::env_lock::LockError),
}

/// Which crons run now ("project/env/app/cron"), so one never runs twice at once.
#[derive(Default)]
pub struct Running {
    keys: Mutex<HashSet<String>>,
    /// Activities of running runs, to note skipped runs in.
    notes: Mutex<std::collections::HashMap<String, Output>>,
}

/// Held while a run goes: frees its key when dropped.
struct RunGuard<'a> {
    running: &'a Running,
    key: String,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        lock(&self.running.keys).remove(&self.key);
        lock(&self.running.notes).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Running {
    fn try_start(&self, key: &str) -> Option<RunGuard<'_>> {
        if lock(&self.keys).insert(key.to_string()) {
            Some(RunGuard {
                running: self,
                key: key.to_string(),
            })
        } else {
            None
        }
    }
}

/// One cron of a live release, with what runs it.
#[derive(Clone)]
pub struct LiveCron {
    /// The project.
    pub project: String,
    /// The environment.
    pub env: String,
    /// The app it belongs to.
    pub app: AppInstance,
    /// The cron.
    pub cron: Cron,
    /// The time zone of its schedule (the app's `timezone`).
    pub zone: slipway_config::background::Zone,
    /// That zone's name (`UTC` by default).
    pub zone_name: String,
}

impl LiveCron {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.project, self.env, self.app.name, self.cron.name
        )
    }
}

/// Seconds a schedule's minute lasts (60, or [`TICK_VARIABLE`]).
pub fn tick() -> Duration {
    std::env::var(TICK_VARIABLE)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s >= 0.2 && *s <= 60.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(60))
}

/// The schedule's minute now (minutes since the epoch, scaled by [`tick`]).
pub fn minute_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs_f64() / tick().as_secs_f64()) as i64
}

/// The crons of every app of a live release.
fn crons_of(project: &str, env: &str, spec: &ReleaseSpec, topology: &Topology) -> Vec<LiveCron> {
    let mut out = Vec::new();
    for app in &topology.applications {
        let Some(instance) = spec.apps.iter().find(|a| a.name == app.name) else {
            continue;
        };
        let zone = slipway_config::background::cron_zone(app);
        let zone_name = app.timezone.clone().unwrap_or_else(|| "UTC".into());
        match slipway_config::background::crons(app) {
            Ok(crons) => out.extend(crons.into_iter().map(|cron| LiveCron {
                project: project.to_string(),
                env: env.to_string(),
                app: instance.clone(),
                cron,
                zone: zone.clone(),
                zone_name: zone_name.clone(),
            })),
            Err(e) => tracing::warn!(project, env, app = %app.name, "crons not run: {e}"),
        }
    }
    out
}

/// The crons of the live release of `env`.
pub fn live_crons(
    platform: &Platform,
    project: &str,
    env: &str,
) -> Result<Vec<LiveCron>, CronError> {
    let state = platform.state();
    let release = match state
        .environment(project, env)?
        .and_then(|e| e.current_release)
    {
        Some(id) => state.release(id)?,
        None => None,
    }
    .ok_or_else(|| CronError::NotFound(format!("{env} has no live release yet: push first")))?;
    let spec = release_record::spec_of(&release)?;
    let topology = release_record::topology_of(&release)?;
    Ok(crons_of(project, env, &spec, &topology))
}

/// The cron `name` of the live release of `env` (as `cron run` and the console find it):
/// `NAME`, or `APP/NAME` to pick one app's of several crons of that name (a bare name that
/// several apps use is refused, listing them).
pub fn live_cron(
    platform: &Platform,
    project: &str,
    env: &str,
    name: &str,
) -> Result<LiveCron, CronError> {
    pick_cron(live_crons(platform, project, env)?, env, name)
}

/// The cron `name` (`NAME` or `APP/NAME`) among `crons`.
fn pick_cron(crons: Vec<LiveCron>, env: &str, name: &str) -> Result<LiveCron, CronError> {
    let (app, cron) = match name.split_once('/') {
        Some((app, cron)) => (Some(app), cron),
        None => (None, name),
    };
    let mut found: Vec<LiveCron> = crons
        .into_iter()
        .filter(|c| c.cron.name == cron && app.is_none_or(|a| c.app.name == a))
        .collect();
    match found.len() {
        0 => Err(CronError::NotFound(format!(
            "no cron '{name}' in the live release of {env}"
        ))),
        1 => Ok(found.remove(0)),
        _ => Err(CronError::Ambiguous(
            name.to_string(),
            found
                .iter()
                .map(|c| format!("{}/{cron}", c.app.name))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Run `cron` now, its output to its activity (and `watch`'s lines; `watch` is told the
/// activity's id as soon as it is recorded). Refused while it runs or the
/// environment deploys. Returns the activity id and the exit status (None: it could not start).
pub async fn run(
    platform: &Arc<Platform>,
    cron: &LiveCron,
    user: Option<&str>,
    watch: impl Into<Watch>,
) -> Result<(i64, Option<i32>), CronError> {
    let watch = watch.into();
    if platform.env_locked(&cron.project, &cron.env)? {
        return Err(CronError::Deploying(cron.env.clone()));
    }
    let key = cron.key();
    // Never two runs at once: in this server (the key) nor across servers on the data dir
    // during an upgrade (the cron's lock file).
    let started = platform.crons.try_start(&key);
    let file_lock = match &started {
        Some(_) => {
            platform.try_lock_cron(&cron.project, &cron.env, &cron.app.name, &cron.cron.name)?
        }
        None => None,
    };
    let (Some(_guard), Some(_file_lock)) = (started, file_lock) else {
        if let Some(out) = lock(&platform.crons.notes).get(&key) {
            out.line(&format!(
                "-----> a run due now was skipped: this one still runs (started by {})",
                user.unwrap_or("the schedule")
            ));
        }
        return Err(CronError::Busy(cron.cron.name.clone()));
    };
    let running = matches!(
        platform.runtime().state(&cron.app.container).await,
        Ok(Some(s)) if s.status == slipway_runtime::Status::Running
    );
    if !running {
        return Err(CronError::NotRunning(cron.app.name.clone()));
    }
    let state = platform.state();
    let c = &cron.cron;
    let id = state.start_activity(
        &cron.project,
        Some(&cron.env),
        "cron",
        user,
        &format!("cron {}: running `{}`", c.name, c.start),
    )?;
    watch.activity_started(id);
    let out = Output::with_sink(platform.clone(), id, watch.lines);
    lock(&platform.crons.notes).insert(key.clone(), out.clone());
    out.line(&format!(
        "-----> cron {} of {} ({}): {}",
        c.name, cron.app.name, c.spec, c.start
    ));
    let t0 = std::time::Instant::now();
    let code = execute(platform, cron, &out).await;
    let (status, summary) = match &code {
        Ok(0) => ("success", format!("cron {}: exit status 0", c.name)),
        // 137: SIGKILL (`timeout`'s or the server's); 143: it ended on the SIGTERM.
        Ok(137) | Ok(143) if t0.elapsed() >= Duration::from_secs(c.timeout) => (
            "failure",
            format!(
                "cron {}: stopped after its timeout of {}s",
                c.name, c.timeout
            ),
        ),
        Ok(n) => ("failure", format!("cron {}: exit status {n}", c.name)),
        Err(e) => ("failure", format!("cron {}: {e}", c.name)),
    };
    out.line(&format!(
        "-----> {summary} [{}]",
        crate::output::format_duration(t0.elapsed())
    ));
    out.flush();
    state.finish_activity(id, status, &summary)?;
    Ok((id, code.ok()))
}

/// `runc exec` the cron's command in the app's container, bounded by its timeout.
async fn execute(platform: &Arc<Platform>, cron: &LiveCron, out: &Output) -> Result<i32, String> {
    let c = &cron.cron;
    let env = crate::variables::with_environment_variables(
        platform,
        &cron.project,
        &cron.env,
        &cron.app.env,
    )
    .map_err(|e| e.to_string())?;
    // SIGTERM at the timeout (plus the stop command's time when there is one), once, to
    // every process of the run; SIGKILL shutdown_timeout later.
    let term_after = c.timeout
        + if c.stop.is_some() {
            c.shutdown_timeout
        } else {
            0
        };
    // The run's process group id goes to a file of the container's /tmp (one per cron: runs
    // never overlap), so that the server can signal the whole group. `timeout` makes the
    // group (it leads it) and bounds the run with SIGKILL even without the server; the
    // SIGTERM is the server's own: `timeout` sends its signal to its child and then to its
    // group, and a command whose trap ran in between got two.
    // Other bytes than letters, digits and `-` as `_XX` (hex): one file per name (`a.b`
    // and `a_b` never share one).
    let safe: String = c
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect();
    let pid_file = format!("/tmp/.slipway-cron-{safe}.pid");
    let args: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "echo $$ > {pid_file}; exec timeout -s KILL {}s /bin/sh -c \"$0\"",
            term_after + c.shutdown_timeout
        ),
        crate::environment::sourcing_environment(&c.start),
    ];
    let watchdog = {
        let (p, container, env, out, stop) = (
            platform.clone(),
            cron.app.container.clone(),
            env.clone(),
            out.clone(),
            c.stop.clone(),
        );
        let (timeout, grace) = (c.timeout, c.shutdown_timeout);
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            let exec = |args: Vec<String>, limit: u64| {
                let (p, container, env, out) =
                    (p.clone(), container.clone(), env.clone(), out.clone());
                async move {
                    let mut on_line = |l: &str| out.line(l);
                    let _ = p
                        .runtime()
                        .exec(
                            &container,
                            &args,
                            &env,
                            "/app",
                            Duration::from_secs(limit.max(1)),
                            &mut on_line,
                        )
                        .await;
                }
            };
            tokio::time::sleep_until(started + Duration::from_secs(timeout)).await;
            if let Some(stop) = stop {
                out.line(&format!(
                    "-----> timeout ({timeout}s): running commands.stop"
                ));
                exec(vec!["/bin/sh".into(), "-c".into(), stop], grace).await;
            }
            // SIGTERM to every process of the run's group but `timeout` (which would pass
            // it on to its child a second time).
            tokio::time::sleep_until(started + Duration::from_secs(term_after)).await;
            exec(vec!["/bin/sh".into(), "-c".into(), term_run(&pid_file)], 5).await;
            // `timeout` sends SIGKILL `grace` later; one more second, then the server
            // kills what is left of the run's process group.
            tokio::time::sleep_until(started + Duration::from_secs(term_after + grace + 1)).await;
            let kill = format!("kill -KILL -- -$(cat {pid_file}) 2>/dev/null; true");
            exec(vec!["/bin/sh".into(), "-c".into(), kill], 5).await;
        })
    };
    let mut on_line = |l: &str| out.line(l);
    let backstop = Duration::from_secs(term_after + c.shutdown_timeout + 30);
    let result = platform
        .runtime()
        .exec(
            &cron.app.container,
            &args,
            &env,
            "/app",
            backstop,
            &mut on_line,
        )
        .await
        .map_err(|e| e.to_string());
    watchdog.abort();
    result
}

/// A script that sends SIGTERM once to every process of the cron run whose group id is in
/// `pid_file`, but the group's leader (`timeout`).
fn term_run(pid_file: &str) -> String {
    format!(
        r#"g=$(cat {pid_file}) || exit 0
for d in /proc/[0-9]*; do
  p=${{d#/proc/}}
  [ "$p" = "$g" ] && continue
  {{ read -r l < "$d/stat"; }} 2>/dev/null || continue
  set -- ${{l##*) }}
  [ "$3" = "$g" ] && kill -TERM "$p" 2>/dev/null
done
true"#
    )
}

/// The scheduler: at every minute (see [`tick`]), start the runs due in every live release.
/// Never returns.
pub async fn run_forever(platform: Arc<Platform>) {
    let tick = tick();
    let mut last = minute_now();
    loop {
        // Sleep to the next minute boundary.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let next = (last + 1) as f64 * tick.as_secs_f64();
        tokio::time::sleep(Duration::from_secs_f64((next - now).max(0.0) + 0.01)).await;
        let minute = minute_now();
        if minute <= last {
            continue;
        }
        // A clock jump or a long pause: only the current minute counts.
        last = minute;
        let live = match platform.state().live_releases() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("crons: reading live releases: {e}");
                continue;
            }
        };
        for release in live {
            let (project, env) = (release.project.clone(), release.environment.clone());
            let Ok(crons) = live_crons(&platform, &project, &env) else {
                continue;
            };
            for cron in crons {
                let local = slipway_config::cron::local_minute(minute, &cron.zone);
                if !cron.cron.schedule.fires_at(local) {
                    continue;
                }
                let p = platform.clone();
                tokio::spawn(async move {
                    match run(&p, &cron, None, None).await {
                        Ok(_) => {}
                        Err(CronError::Busy(_)) => tracing::info!(
                            project = %cron.project, env = %cron.env, cron = %cron.cron.name,
                            "cron run skipped: the last run still goes"
                        ),
                        Err(CronError::NotRunning(_)) => tracing::info!(
                            project = %cron.project, env = %cron.env, cron = %cron.cron.name,
                            "cron run skipped: the app's container is not running (yet)"
                        ),
                        Err(CronError::Deploying(_)) => tracing::info!(
                            project = %cron.project, env = %cron.env, cron = %cron.cron.name,
                            "cron run skipped: a deploy of the environment runs"
                        ),
                        Err(e) => tracing::warn!(
                            project = %cron.project, env = %cron.env, cron = %cron.cron.name,
                            "cron run failed: {e}"
                        ),
                    }
                });
            }
        }
    }
}

/// Wait until no cron run goes in this server (a server being upgraded lets its runs
/// finish, as it does its pushes), at most `within`. Returns how many still run then.
pub async fn wait_idle(platform: &Platform, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let running = lock(&platform.crons.keys).len();
        if running == 0 || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next run of `cron` after the schedule minute `now`, as `YYYY-MM-DD HH:MM ZONE`.
pub fn next_run(cron: &LiveCron, now: i64) -> Option<String> {
    let local = slipway_config::cron::local_minute(now, &cron.zone);
    cron.cron
        .schedule
        .next_after(local)
        .map(|m| format!("{} {}", format_minute(m), cron.zone_name))
}

/// `YYYY-MM-DD HH:MM` of a schedule minute.
pub fn format_minute(minute: i64) -> String {
    let (y, m, d) = slipway_config::cron::civil_from_days(minute.div_euclid(1440));
    let in_day = minute.rem_euclid(1440);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", in_day / 60, in_day % 60)
}

/// The status of the last run of `cron` (`success`, `failure`, `running`), if any.
pub fn last_status(platform: &Platform, cron: &LiveCron) -> Option<String> {
    last_run(platform, cron).map(|a| a.status)
}

/// The activity of the last run of `cron` (its status, summary with the exit status, and
/// log), if any.
pub fn last_run(platform: &Platform, cron: &LiveCron) -> Option<slipway_state::Activity> {
    let prefix = format!("cron {}:", cron.cron.name);
    platform
        .state()
        .activities(&cron.project, Some(&cron.env), 500)
        .ok()?
        .into_iter()
        .find(|a| a.kind == "cron" && a.summary.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live crons of two apps that both have a cron `report`, and `a` one `only`.
    fn two_apps() -> Vec<LiveCron> {
        let mut src = slipway_config::MemSource::new();
        src.insert(
            ".platform/applications.yaml",
            "- name: a\n  type: python:3.11\n  source: {root: a}\n  web: {commands: {start: x}}\n  crons:\n    report: {spec: '@daily', cmd: echo a}\n    only: {spec: '@daily', cmd: echo only}\n\
             - name: b\n  type: python:3.11\n  source: {root: b}\n  web: {commands: {start: x}}\n  crons:\n    report: {spec: '@daily', cmd: echo b}\n",
        );
        src.insert("a/x", "");
        src.insert("b/x", "");
        src.insert(
            ".platform/routes.yaml",
            "'http://{default}/': {type: upstream, upstream: 'a:http'}\n'http://b.{default}/': {type: upstream, upstream: 'b:http'}\n",
        );
        let topology = slipway_config::load(&src).unwrap().topology;
        let mut out = Vec::new();
        for app in &topology.applications {
            let instance: AppInstance = serde_json::from_value(serde_json::json!({
                "name": app.name, "slug": "", "manifest": null, "container": app.name,
                "port": 1, "start": "", "env": {}, "tree": "", "build_key": "",
            }))
            .unwrap();
            for cron in slipway_config::background::crons(app).unwrap() {
                out.push(LiveCron {
                    project: "demo".into(),
                    env: "main".into(),
                    app: instance.clone(),
                    cron,
                    zone: slipway_config::background::cron_zone(app),
                    zone_name: "UTC".into(),
                });
            }
        }
        out
    }

    #[test]
    fn a_cron_name_two_apps_use_is_refused_and_app_slash_name_picks_one() {
        let Err(e) = pick_cron(two_apps(), "main", "report") else {
            panic!("an ambiguous name was picked")
        };
        assert_eq!(
            e.to_string(),
            "several apps have a cron 'report': name one of a/report, b/report"
        );
        let b = pick_cron(two_apps(), "main", "b/report").unwrap();
        assert_eq!(
            (b.app.name.as_str(), b.cron.start.as_str()),
            ("b", "echo b")
        );
        let only = pick_cron(two_apps(), "main", "only").unwrap();
        assert_eq!(only.app.name, "a");
        let Err(e) = pick_cron(two_apps(), "main", "b/only") else {
            panic!("a cron of another app was picked")
        };
        assert_eq!(
            e.to_string(),
            "no cron 'b/only' in the live release of main"
        );
    }
}
