//! Workers (`workers:` of an app, spec section 10): each runs its `commands.start` in its own
//! container of the release, with the app's slug, variables (and its own `variables.env` over
//! them) and stack, its own `size`, in the
//! environment's network namespace, without a `$PORT` of its own.
//!
//! Supervision lives inside the container: its process is a small `sh` loop ([`supervisor`])
//! that runs the worker's command and, when it exits, writes an [`EXIT_MARKER`] line to the
//! worker's log and starts it again after a backoff (1 s, doubling up to 60 s, back to 1 s after
//! a run of a minute or more), so a crash loop never spins and nothing outside has to watch.
//! The container is then like an app's: started in provision (after the apps), adopted or
//! started again by [`crate::restore`], stopped with the release (retire, abort, `slipway down`)
//! after the grace period. A worker whose command exits twice within [`SETTLE`] of its start
//! fails the deploy like an app that does not answer, and the live release keeps running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use slipway_config::Topology;
use slipway_runtime::Status;

use crate::environment::{self, AppInstance, ReleaseSpec};
use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::provision::START_MARKER;
use crate::Platform;

/// The line the supervisor writes to the worker's log each time its command exits.
pub const EXIT_MARKER: &str = "----- slipway: worker exited with status ";

/// How long a new worker must keep running (exiting at most once) for the deploy to go on.
pub const SETTLE: Duration = Duration::from_secs(3);

/// One worker of a release, as stored in the release's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInstance {
    /// The app it belongs to (whose slug and variables it has).
    pub app: String,
    /// The worker's command as written (`commands.start`).
    pub command: String,
    /// Its container: `name` is the worker's name (its log file, its shell login
    /// `WORKER.ENV.PROJECT`), `start` the supervisor loop, `port` 0.
    pub instance: AppInstance,
}

/// Quote `s` for `sh` (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `sh` script that runs `command` again and again, with backoff.
pub fn supervisor(command: &str) -> String {
    format!(
        "delay=1\n\
         while :; do\n\
         \x20 started=$(date +%s)\n\
         \x20 /bin/sh -c {cmd}\n\
         \x20 status=$?\n\
         \x20 ran=$(( $(date +%s) - started ))\n\
         \x20 if [ \"$ran\" -ge 60 ]; then delay=1; fi\n\
         \x20 echo \"{EXIT_MARKER}$status after ${{ran}}s; starting again in ${{delay}}s\"\n\
         \x20 sleep \"$delay\"\n\
         \x20 delay=$(( delay * 2 )); if [ \"$delay\" -gt 60 ]; then delay=60; fi\n\
         done\n",
        cmd = sh_quote(command)
    )
}

/// The workers of a release, from its topology and its planned apps. A worker has its own
/// `mounts`, `disk` and `relationships` where it sets them, the app's otherwise (see
/// [`slipway_config::background::worker_application`]); its `local` and `tmp` mounts are on
/// its own volume ([`crate::mounts::plan_worker`]). `services`: the environment's, for its
/// relationships.
pub fn plan(
    target: &DeployTarget,
    release_number: i64,
    topology: &Topology,
    apps: &[AppInstance],
    services: &[slipway_state::ServiceRecord],
) -> Result<Vec<WorkerInstance>, PhaseError> {
    let mut out = Vec::new();
    for app in &topology.applications {
        let Some(base) = apps.iter().find(|a| a.name == app.name) else {
            continue;
        };
        let workers = slipway_config::background::workers(app)
            .map_err(|e| PhaseError::new("provision", format!("app {}: {e}", app.name)))?;
        for w in workers {
            let mut instance = base.clone();
            instance.name = w.name.clone();
            instance.manifest = None;
            instance.container = environment::container_id(
                &target.project,
                &target.env,
                &format!("{}.w-{}", app.name, w.name),
                release_number,
            );
            instance.port = 0;
            instance.env.remove("PORT");
            // A worker serves no web requests: no socket of the app's.
            instance.socket = None;
            instance.env.remove("SOCKET");
            for (k, v) in &w.env {
                if !environment::is_reserved_variable(k) {
                    instance.env.insert(k.clone(), v.clone());
                }
            }
            let effective = slipway_config::background::worker_application(app, &w, topology)
                .map_err(|e| PhaseError::new("provision", format!("app {}: {e}", app.name)))?;
            instance.mounts = crate::mounts::plan_worker(&w, &effective);
            if w.relationships.is_some() {
                let mut rels =
                    slipway_config::platform_env::relationships_json(topology, &effective);
                crate::services::fill_relationships(&mut rels, services);
                let b64 = base64::engine::general_purpose::STANDARD.encode(rels.to_string());
                for k in ["PLATFORM_RELATIONSHIPS", "SLIPWAY_RELATIONSHIPS"] {
                    instance.env.insert(k.to_string(), b64.clone());
                }
                let ports = apps.iter().map(|a| (a.name.clone(), a.port)).collect();
                instance.hosts = crate::services::relationship_hosts(&effective, services, &ports);
            }
            instance.start = supervisor(&w.start);
            if w.size.is_some() {
                instance.size = w.size;
                instance.resources = None;
            }
            out.push(WorkerInstance {
                app: app.name.clone(),
                command: w.start,
                instance,
            });
        }
    }
    Ok(out)
}

/// How many times the worker's command exited since its container last started, and the
/// last lines it wrote.
fn exits_since_start(log: &std::path::Path) -> usize {
    let Ok(bytes) = std::fs::read(log) else {
        return 0;
    };
    let start = bytes.len().saturating_sub(256 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let since = text
        .rfind(START_MARKER)
        .map(|i| &text[i..])
        .unwrap_or(&text);
    since.lines().filter(|l| l.starts_with(EXIT_MARKER)).count()
}

/// Start every worker of the release (after its apps) and wait until each has kept running
/// for [`SETTLE`]; a worker that exits at once again and again fails the phase with its output.
pub async fn start_all(
    platform: &Arc<Platform>,
    target: &DeployTarget,
    spec: &ReleaseSpec,
    out: &Output,
) -> Result<(), PhaseError> {
    if spec.workers.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    for w in &spec.workers {
        crate::provision::start_app(platform, &target.project, &target.env, spec, &w.instance)
            .await?;
    }
    settle(platform, &target.project, &target.env, spec)
        .await
        .map_err(|(name, m)| {
            for l in m.lines().skip(1) {
                out.app_line(&name, l);
            }
            PhaseError::new(
                "provision",
                m.lines().next().unwrap_or_default().to_string(),
            )
        })?;
    for w in &spec.workers {
        out.phase_done(
            &format!("provision worker {}", w.instance.name),
            &format!("container {} running `{}`", w.instance.container, w.command),
            t,
        );
    }
    Ok(())
}

/// Watch the release's workers for [`SETTLE`]: Err((worker, reason and output)) when one's
/// container stopped or its command exited twice.
pub async fn settle(
    platform: &Platform,
    project: &str,
    env: &str,
    spec: &ReleaseSpec,
) -> Result<(), (String, String)> {
    let deadline = Instant::now() + SETTLE;
    loop {
        for w in &spec.workers {
            let name = &w.instance.name;
            let log = platform.data().app_log(project, env, name);
            let stopped = match platform.runtime().state(&w.instance.container).await {
                Ok(Some(s)) => s.status == Status::Stopped,
                Ok(None) => true,
                Err(e) => return Err((name.clone(), format!("worker {name}: {e}"))),
            };
            if stopped || exits_since_start(&log) >= 2 {
                let tail = crate::health::tail(&log, 20);
                return Err((
                    name.clone(),
                    format!("worker {name} exits at start (its output is above)\n{tail}"),
                ));
            }
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Names of a release's workers, as `APP/WORKER`.
pub fn names(spec: &ReleaseSpec) -> Vec<String> {
    spec.workers
        .iter()
        .map(|w| format!("{}/{}", w.app, w.instance.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::supervisor;

    #[test]
    fn supervisor_restarts_with_backoff_and_quotes_the_command() {
        let script = supervisor("echo 'it''s' && exit 3");
        assert!(script.contains(r"/bin/sh -c 'echo '\''it'\'''\''s'\'' && exit 3'"));
        // Runs the command, reports each exit, backs off.
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let cmd = format!(
            "echo x >> {0}; if [ $(wc -l < {0}) -ge 3 ]; then kill $PPID; fi; exit 7",
            count.display()
        );
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(supervisor(&cmd))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // A crash loop backs off: 1 s, then 2 s, ... (how long each run lasted depends on
        // the machine's load: a busy one takes a second to start a shell).
        let backoffs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("worker exited with status 7 after "))
            .filter_map(|l| l.split("; starting again in ").nth(1))
            .collect();
        assert_eq!(backoffs.get(..2), Some(&["1s", "2s"][..]), "{text}");
    }
}
