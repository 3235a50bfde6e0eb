//! Admin commands over SSH (spec section 6). Each prints text, or JSON with `--json`.

use std::sync::Arc;

use slipway_deploy::Platform;
use slipway_state::{Role, User};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::say;

mod access;
mod activity_prune;
mod console;
mod domains;
mod services;
pub(crate) mod users;

/// A refusal or failure of an admin command: (exit status, message for stderr).
type Refusal = (i32, String);

/// Before the command list in `help`.
const HELP_HEAD: &str = "\
Slipway: push with git, look around with ssh.

  git remote add slipway ssh://git@HOST:PORT/PROJECT.git
  git push slipway main          deploy branch main as environment main

Commands (ssh -p PORT git@HOST COMMAND [--json]):
";

/// After the command list in `help`.
const HELP_TAIL: &str = "
--json (after any command): one JSON document on stdout (an object or an array; progress
of a deploy, sync, backup or cron run goes to stderr); `logs -f --json` prints one JSON
object per line instead, as lines come. Errors stay a message on stderr with exit status
1 (refused), 2 (bad usage) or 3 (internal failure).

Shells: ssh -t -p PORT ENV.PROJECT@HOST (APP.ENV.PROJECT@HOST picks one app of several,
WORKER.ENV.PROJECT@HOST a worker);
with a command, ssh -p PORT ENV.PROJECT@HOST 'ls /app' runs it and returns its status.
";

/// Every admin command as `help` lists it: (usage, what it does). `help --json` gives
/// the same list; each takes `--json`.
pub(crate) const COMMANDS: &[(&str, &str)] = &[
    ("projects", "projects you can see"),
    ("envs PROJECT", "environments of a project"),
    (
        "releases PROJECT ENV",
        "releases of an environment, newest first, and who made each",
    ),
    (
        "services PROJECT ENV",
        "services of an environment: type, state, disk used",
    ),
    ("activity PROJECT [ENV]", "pushes and deploys"),
    ("activity log ID", "the whole log of one activity"),
    (
        "activity prune [--keep N] [--keep-days D] [--dry-run]",
        "delete old activity logs now, listing them (server admins)",
    ),
    (
        "rollback PROJECT ENV [RELEASE]",
        "back to the previous (or the given) release, in a second",
    ),
    (
        "redeploy PROJECT ENV",
        "the live release again, in fresh containers",
    ),
    (
        "sync PROJECT ENV",
        "a fresh copy of the parent's mount and service data (they restart; admins)",
    ),
    (
        "backup create PROJECT ENV",
        "dumps of every service and a tar of every mount, kept in the archive",
    ),
    (
        "backup ls PROJECT ENV",
        "backups of an environment, newest first",
    ),
    (
        "backup restore PROJECT ENV ID",
        "services and mounts back as backup ID has them (the apps restart; admins)",
    ),
    (
        "var ls PROJECT ENV",
        "variables of an environment (viewers: names only)",
    ),
    (
        "var set PROJECT ENV KEY=VALUE",
        "set one (redeploys a live environment)",
    ),
    (
        "var set --sensitive PROJECT ENV KEY=VALUE",
        "the same, the value never shown again",
    ),
    (
        "var unset PROJECT ENV KEY",
        "remove one (redeploys a live environment)",
    ),
    (
        "logs PROJECT ENV [APP] [-f]",
        "what the app (or a worker) prints (-f: keep following; with --json one object a line)",
    ),
    (
        "cron ls PROJECT ENV",
        "crons: schedule, next run, last status",
    ),
    (
        "cron run PROJECT ENV [APP/]NAME",
        "run a cron now, showing its output",
    ),
    ("access ls PROJECT", "who has which role (project admins)"),
    (
        "access grant PROJECT USER ROLE",
        "ROLE: viewer, contributor or admin (project admins)",
    ),
    ("access revoke PROJECT USER", "(project admins)"),
    (
        "domain ls [PROJECT]",
        "hosts assigned to projects (server admins)",
    ),
    (
        "domain add PROJECT HOST",
        "let PROJECT route HOST, outside PROJECT.DOMAIN (server admins)",
    ),
    ("domain rm [PROJECT] HOST", "take HOST back (server admins)"),
    ("user ls", "users and their keys (server admins)"),
    (
        "user add NAME [--admin] < KEY",
        "add a user, or a key to a user (server admins)",
    ),
    ("user rm NAME", "remove a user and its keys (server admins)"),
    (
        "console",
        "a one-time link to the web console (valid 10 minutes)",
    ),
    ("help", "this text"),
];

/// The `help` text: [`COMMANDS`] between [`HELP_HEAD`] and [`HELP_TAIL`], then the
/// projects `user` may see.
fn help_text(projects: &[String]) -> String {
    const WIDTH: usize = 32;
    let mut s = HELP_HEAD.to_string();
    for (usage, what) in COMMANDS {
        if usage.len() < WIDTH {
            s.push_str(&format!("  {usage:<WIDTH$}{what}\n"));
        } else {
            s.push_str(&format!("  {usage}\n  {:WIDTH$}{what}\n", ""));
        }
    }
    s.push_str(HELP_TAIL);
    s.push_str("\nYour projects:");
    if projects.is_empty() {
        s.push_str(" none yet (push to create one)");
    }
    for p in projects {
        s.push_str("\n  ");
        s.push_str(p);
    }
    s.push('\n');
    s
}

/// Run an admin command; returns the exit status.
pub(crate) async fn run<R, W, E>(
    platform: &Arc<Platform>,
    connections: &crate::connections::Connections,
    user: &User,
    words: &[String],
    stdin: R,
    out: &mut W,
    err: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let json = words.iter().any(|w| w == "--json");
    let args: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| *w != "--json")
        .collect();
    if let Some(code) = crate::backups::run(platform, user, &args, json, out, err).await {
        return code;
    }
    if let Some(code) = crate::ops::run(platform, user, &args, json, out, err).await {
        return code;
    }
    let state = platform.state();
    let visible = |project: &str| -> bool {
        state.project_exists(project).unwrap_or(false)
            && state.role(project, user).ok().flatten().is_some()
    };
    // The projects the user may see; a database that fails is an internal failure, not
    // an empty list.
    let visible_projects = || -> Result<Vec<String>, Refusal> {
        let all = state.projects().map_err(crate::ops::failure)?;
        Ok(all.into_iter().filter(|p| visible(p)).collect())
    };
    // A database that fails while the project is looked up is an internal failure, not
    // a project "not found" (`visible` below answers no then).
    if let ["envs" | "releases" | "services" | "activity", project, ..] = args.as_slice() {
        if let Err(e) = state
            .project_exists(project)
            .and_then(|_| state.role(project, user))
        {
            let (code, msg) = crate::ops::failure(e);
            say(err, &msg).await;
            return code;
        }
    }
    let not_found =
        |p: &str| format!("slipway: project '{p}' not found (or you have no access to it)\n");
    let result: Result<String, (i32, String)> = match args.as_slice() {
        [] | ["help"] => match visible_projects() {
            Err(e) => Err(e),
            Ok(projects) if json => {
                let commands: Vec<serde_json::Value> = COMMANDS
                    .iter()
                    .map(|(usage, what)| serde_json::json!({"usage": usage, "description": what}))
                    .collect();
                Ok(pretty(&serde_json::json!({"commands": commands, "projects": projects})))
            }
            Ok(projects) => Ok(help_text(&projects)),
        },
        ["projects"] => match visible_projects() {
            Err(e) => Err(e),
            Ok(projects) if json => Ok(pretty(&projects)),
            Ok(projects) => Ok(projects.iter().map(|p| format!("{p}\n")).collect()),
        },
        ["envs", project] if visible(project) => match state.environments(Some(project)) {
            Ok(envs) if json => {
                // Each with what the supervisor knows of its live release's containers.
                let rows: Vec<serde_json::Value> = envs
                    .iter()
                    .map(|e| {
                        let mut row = serde_json::to_value(e).unwrap_or_default();
                        let live = e.current_release.and_then(|id| state.release(id).ok().flatten());
                        let health: serde_json::Map<String, serde_json::Value> = live
                            .as_ref()
                            .map(|r| slipway_deploy::supervise::release_health(platform, r))
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(name, h)| (name, serde_json::to_value(h).unwrap_or_default()))
                            .collect();
                        if let Some(o) = row.as_object_mut() {
                            // The live release as users number it (`rollback` takes it), and the
                            // URL as the push printed it.
                            o.insert("live_release".into(), live.as_ref().map(|r| r.number).into());
                            o.insert(
                                "url".into(),
                                slipway_deploy::https::live_env_url(platform, project, &e.name, live.as_ref()).into(),
                            );
                            o.insert("containers".into(), serde_json::Value::Object(health));
                        }
                        row
                    })
                    .collect();
                Ok(pretty(&rows))
            }
            Ok(envs) => Ok(envs
                .iter()
                .map(|e| {
                    let live = e.current_release.map(|id| state.release(id));
                    let url = match &live {
                        Some(Ok(Some(r))) => slipway_deploy::https::live_env_url(platform, project, &e.name, Some(r)),
                        _ => platform.env_url(project, &e.name),
                    };
                    format!(
                        "{}\t{}\t{url}\n",
                        e.name,
                        match live {
                            Some(Ok(Some(r))) => format!("release {} ({}){}{}", r.number, &r.commit[..r.commit.len().min(12)], workers_of(&r), slipway_deploy::supervise::release_note(platform, &r)),
                            Some(Err(err)) => format!("release unreadable: {err}"),
                            None | Some(Ok(None)) => "no release".into(),
                        },
                    )
                })
                .collect()),
            Err(e) => Err(crate::ops::failure(e)),
        },
        ["releases", project, env] if visible(project) && !matches!(state.environment(project, env), Ok(Some(_))) => {
            // As `services`: an environment that does not exist is said so, not shown as one
            // without releases.
            Err((1, format!("slipway: environment '{env}' of project '{project}' not found\n")))
        }
        ["releases", project, env] if visible(project) => match state.releases(project, env) {
            Ok(rs) if json => {
                let rows: Vec<serde_json::Value> = rs.iter().map(release_json).collect();
                Ok(pretty(&rows))
            }
            Ok(rs) => Ok(rs
                .iter()
                .map(|r| {
                    format!(
                        "{}\t{}\t{}\tby {}{}\n",
                        r.number,
                        r.status,
                        &r.commit[..r.commit.len().min(12)],
                        r.author,
                        workers_of(r)
                    )
                })
                .collect()),
            Err(e) => Err(crate::ops::failure(e)),
        },
        ["activity", "prune", rest @ ..] => {
            activity_prune::run(platform, user, rest, json).await
        }
        ["activity", "log", id] => match id.parse::<i64>().ok().map(|id| state.activity(id)) {
            Some(Err(e)) => Err(crate::ops::failure(e)),
            Some(Ok(Some((a, log)))) if visible(&a.project) => {
                if json {
                    Ok(pretty(&serde_json::json!({"activity": a, "log": log})))
                } else {
                    match state.activity_log_pruned_at(a.id) {
                        Ok(Some(_)) => Ok(format!(
                            "log pruned: activity {} ({}: {}) is older than the logs this server keeps\n",
                            a.id, a.status, a.summary
                        )),
                        Ok(None) => Ok(log),
                        Err(e) => Err(crate::ops::failure(e)),
                    }
                }
            }
            _ => Err((1, format!("slipway: activity {id} not found\n"))),
        },
        ["activity", project] | ["activity", project, _] if visible(project) => {
            let env = args.get(2).copied();
            match state.activities(project, env, 50) {
                Ok(list) if json => Ok(pretty(&list)),
                Ok(list) => Ok(list
                    .iter()
                    .map(|a| {
                        format!(
                            "{}\t{}\t{}\t{}\t{}\n",
                            a.id,
                            a.kind,
                            a.environment.as_deref().unwrap_or("-"),
                            a.status,
                            a.summary
                        )
                    })
                    .collect()),
                Err(e) => Err(crate::ops::failure(e)),
            }
        }
        ["services", project, env] if visible(project) => services::run(platform, project, env, json),
        ["console"] => console::run(platform, user, json),
        ["user", ..] => users::run(platform, connections, user, &args[1..], json, stdin).await,
        ["access", ..] => access::run(platform, user, &args[1..], json),
        ["domain", ..] => domains::run(platform, user, &args[1..], json),
        ["envs", p]
        | ["releases", p, _]
        | ["services", p, _]
        | ["activity", p]
        | ["activity", p, _] => {
            Err((1, not_found(p)))
        }
        [cmd, ..] => Err((
            2,
            format!("slipway: unknown command '{cmd}' or wrong arguments; `ssh git@HOST help` lists the commands\n"),
        )),
    };
    let _ = Role::Viewer; // roles are checked through `visible` for read-only commands
    match result {
        Ok(text) => {
            say(out, &text).await;
            0
        }
        Err((code, msg)) => {
            say(err, &msg).await;
            code
        }
    }
}

/// `value` as pretty JSON and a newline: what every `--json` output is.
pub(crate) fn pretty<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// A release as `releases --json` shows it to anyone who may see the project: the stored
/// record without its spec, whose app environments hold generated secrets (the services'
/// passwords in `PLATFORM_RELATIONSHIPS`, `PLATFORM_PROJECT_ENTROPY`, add-on URLs) that
/// only the apps and the people who may enter them should read; each app by its name and
/// slug instead.
fn release_json(release: &slipway_state::Release) -> serde_json::Value {
    let mut row = serde_json::to_value(release).unwrap_or_default();
    let apps: Vec<serde_json::Value> = match slipway_deploy::release_record::spec_of(release) {
        Ok(spec) => spec
            .apps
            .iter()
            .map(|a| serde_json::json!({"name": a.name, "slug": a.slug}))
            .collect(),
        Err(_) => Vec::new(),
    };
    if let Some(o) = row.as_object_mut() {
        o.remove("spec");
        o.insert("apps".into(), apps.into());
    }
    row
}

/// `\tworkers: APP/WORKER, ...` for a release that has workers, nothing for one without,
/// and `\tunreadable: WHY` for a release whose stored spec does not decode.
fn workers_of(release: &slipway_state::Release) -> String {
    let names = match slipway_deploy::release_record::spec_of(release) {
        Ok(spec) => slipway_deploy::workers::names(&spec),
        Err(e) => return format!("\tunreadable: {}", e.source),
    };
    if names.is_empty() {
        String::new()
    } else {
        format!("\tworkers: {}", names.join(", "))
    }
}
