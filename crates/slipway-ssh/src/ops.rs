//! Admin commands that act on an environment (spec section 6): `rollback`,
//! `redeploy`, `sync`, `var set|unset|ls`, `logs`, `cron ls|run`. Output of deploys,
//! syncs and cron runs streams live.

use std::sync::Arc;
use std::time::Duration;

use slipway_deploy::access;
use slipway_deploy::environment::AppInstance;
use slipway_deploy::operations::{self, Operation};
use slipway_deploy::Platform;
use slipway_state::{Role, User};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::say;

/// Whether `user` holds `need` on `project` and `env` exists ([`access::check`]); Err is
/// the message.
pub(crate) fn check(
    platform: &Platform,
    user: &User,
    project: &str,
    env: &str,
    need: Role,
) -> Result<(), String> {
    access::check(platform, user, project, env, need).map(|_| ())
}

/// Run a deploy operation, streaming its lines to `out`.
async fn operate<W: AsyncWrite + Unpin + Send>(
    platform: &Arc<Platform>,
    user: &User,
    project: &str,
    env: &str,
    op: Operation,
    out: &mut W,
) -> Result<i64, String> {
    let (sink, mut rx) = sink();
    let author = slipway_state::ReleaseAuthor::user(&user.name);
    let task = operations::run(platform, project, env, op, &author, Some(sink));
    stream(task, &mut rx, out).await
}

/// Run `args` if it is one of these commands; None otherwise.
pub(crate) async fn run<W, E>(
    platform: &Arc<Platform>,
    user: &User,
    args: &[&str],
    json: bool,
    out: &mut W,
    err: &mut E,
) -> Option<i32>
where
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let fail = |m: String| (1, format!("slipway: {m}\n"));
    let result: Result<String, (i32, String)> = match args {
        ["rollback", project, env] | ["rollback", project, env, _] => {
            let to = match args.get(3).map(|n| n.parse::<i64>()) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return Some(usage(err, "rollback PROJECT ENV [RELEASE-NUMBER]").await)
                }
            };
            match check(platform, user, project, env, Operation::Rollback(to).role()) {
                Err(m) => Err(fail(m)),
                Ok(()) => operate(platform, user, project, env, Operation::Rollback(to), out)
                    .await
                    .map(|n| {
                        if json {
                            format!("{{\"release\": {n}}}\n")
                        } else {
                            String::new()
                        }
                    })
                    .map_err(fail),
            }
        }
        ["redeploy", project, env] => {
            match check(platform, user, project, env, Operation::Redeploy.role()) {
                Err(m) => Err(fail(m)),
                Ok(()) => operate(platform, user, project, env, Operation::Redeploy, out)
                    .await
                    .map(|n| {
                        if json {
                            format!("{{\"release\": {n}}}\n")
                        } else {
                            String::new()
                        }
                    })
                    .map_err(fail),
            }
        }
        ["sync", project, env] => match check(platform, user, project, env, access::SYNC) {
            Err(m) => Err(fail(m)),
            Ok(()) => {
                let (sink, mut rx) = sink();
                let task =
                    slipway_deploy::sync::run(platform, project, env, &user.name, Some(sink));
                let r = stream(task, &mut rx, out).await;
                r.map(|summary| {
                    if json {
                        "{\"synced\": true}\n".to_string()
                    } else {
                        format!("{summary}\n")
                    }
                })
                .map_err(fail)
            }
        },
        ["var", "ls", project, env] => {
            match access::check_variables(platform, user, project, env, Role::Viewer) {
                Err(m) => Err(fail(m)),
                Ok((role, _)) => {
                    let state = platform.state();
                    let role = Some(role);
                    match state.variable_list(project, env) {
                        Err(e) => Err((3, format!("slipway: {e}\n"))),
                        Ok(vars) => Ok(crate::variables::listing(
                            &vars,
                            role.is_some_and(|r| r >= Role::Contributor),
                            json,
                        )),
                    }
                }
            }
        }
        ["var", verb @ "set", "--sensitive", project, env, kv]
        | ["var", verb @ ("set" | "unset"), project, env, kv] => {
            let sensitive = args.get(2) == Some(&"--sensitive");
            match access::check_variables(platform, user, project, env, access::CHANGE_VARIABLES) {
                Err(m) => Err(fail(m)),
                Ok((_, deployed)) => {
                    let (key, value) = match (*verb, kv.split_once('=')) {
                        ("set", Some((k, v))) => (k, Some(v)),
                        ("set", None) => {
                            return Some(
                                usage(err, "var set [--sensitive] PROJECT ENV KEY=VALUE").await,
                            )
                        }
                        (_, _) => (*kv, None),
                    };
                    if let Err(m) = access::settable_variable(key) {
                        Err(fail(m))
                    } else {
                        let state = platform.state();
                        let changed = match value {
                            Some(v) if sensitive => state
                                .set_sensitive_variable(project, env, key, v)
                                .map(|_| true),
                            Some(v) => state.set_variable(project, env, key, v).map(|_| true),
                            None => state.unset_variable(project, env, key),
                        };
                        match changed {
                            Err(e) => Err((3, format!("slipway: {e}\n"))),
                            Ok(false) => Err(fail(format!("{key} is not set on {env}"))),
                            Ok(true) => {
                                let live = state
                                    .environment(project, env)
                                    .ok()
                                    .flatten()
                                    .and_then(|e| e.current_release)
                                    .is_some();
                                say(
                                    out,
                                    &format!(
                                        "{key} {} on {env}{}\n",
                                        if value.is_some() { "set" } else { "unset" },
                                        if sensitive {
                                            " (sensitive: its value reaches the apps but is never shown again)"
                                        } else {
                                            ""
                                        }
                                    ),
                                )
                                .await;
                                if live {
                                    operate(platform, user, project, env, Operation::Redeploy, out)
                                        .await
                                        .map(|_| String::new())
                                        .map_err(fail)
                                } else if deployed {
                                    Ok("it applies from the next deploy\n".into())
                                } else {
                                    Ok(format!("{env} has not been deployed yet: it applies from its first deploy, which names it\n"))
                                }
                            }
                        }
                    }
                }
            }
        }
        ["logs", project, env, rest @ ..] => {
            let follow = rest.contains(&"-f");
            let app: Vec<&&str> = rest.iter().filter(|a| **a != "-f").collect();
            if app.len() > 1 {
                return Some(usage(err, "logs PROJECT ENV [APP] [-f]").await);
            }
            match check(platform, user, project, env, Role::Viewer) {
                Err(m) => Err(fail(m)),
                Ok(()) => {
                    match live_app(platform, project, env, app.first().map(|a| **a), "name one") {
                        Err(m) => Err(fail(m)),
                        Ok(app) => {
                            let path = platform.data().app_log(project, env, &app.name);
                            logs(&path, follow, out).await;
                            Ok(String::new())
                        }
                    }
                }
            }
        }
        ["cron", "ls", project, env] => match check(platform, user, project, env, Role::Viewer) {
            Err(m) => Err(fail(m)),
            Ok(()) => cron_ls(platform, project, env, json).map_err(fail),
        },
        ["cron", "run", project, env, name] => {
            match check(platform, user, project, env, access::RUN_CRONS) {
                Err(m) => Err(fail(m)),
                Ok(()) => cron_run(platform, user, project, env, name, out)
                    .await
                    .map(|(id, code)| {
                        if json {
                            format!("{{\"activity\": {id}, \"exit_status\": {code}}}\n")
                        } else {
                            String::new()
                        }
                    })
                    .map_err(|(code, m)| (code, format!("slipway: {m}\n"))),
            }
        }
        ["cron", ..] => {
            return Some(usage(err, "cron ls PROJECT ENV | cron run PROJECT ENV [APP/]NAME").await)
        }
        _ => return None,
    };
    Some(match result {
        Ok(text) => {
            say(out, &text).await;
            0
        }
        Err((code, msg)) => {
            say(err, &msg).await;
            code
        }
    })
}

async fn usage<E: AsyncWrite + Unpin>(err: &mut E, form: &str) -> i32 {
    say(err, &format!("slipway: usage: {form}\n")).await;
    2
}

/// The named app (or worker) of the live release of `env`, or its only app; `how_to_pick`
/// ends the message when there are several. An app's name wins over a worker's.
pub(crate) fn live_app(
    platform: &Platform,
    project: &str,
    env: &str,
    app: Option<&str>,
    how_to_pick: &str,
) -> Result<AppInstance, String> {
    let state = platform.state();
    let release = state
        .environment(project, env)
        .map_err(|e| e.to_string())?
        .and_then(|e| e.current_release)
        .map(|id| state.release(id))
        .transpose()
        .map_err(|e| e.to_string())?
        .flatten()
        .ok_or_else(|| format!("{env} has no live release yet: push first"))?;
    let spec = slipway_deploy::release_record::spec_of(&release).map_err(|e| e.to_string())?;
    let names: Vec<&str> = spec.apps.iter().map(|a| a.name.as_str()).collect();
    let mut names = names.join(", ");
    if !spec.workers.is_empty() {
        let workers: Vec<&str> = spec
            .workers
            .iter()
            .map(|w| w.instance.name.as_str())
            .collect();
        names = format!("{names}; its workers are {}", workers.join(", "));
    }
    let found = match app {
        Some(a) => spec.apps.iter().find(|x| x.name == a).or_else(|| {
            spec.workers
                .iter()
                .map(|w| &w.instance)
                .find(|x| x.name == a)
        }),
        None if spec.apps.len() == 1 => spec.apps.first(),
        None => return Err(format!("{env} runs several apps ({names}): {how_to_pick}")),
    };
    found.cloned().ok_or_else(|| {
        format!(
            "no app '{}' in {env}: its apps are {names}",
            app.unwrap_or_default()
        )
    })
}

/// The last part of a log (and, with `follow`, what comes after, until the client goes away).
async fn logs<W: AsyncWrite + Unpin>(path: &std::path::Path, follow: bool, out: &mut W) {
    const TAIL: u64 = 64 * 1024;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        say(out, "").await;
        return;
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if len < TAIL {
        // Just rotated: the end of the previous part first.
        let earlier = slipway_deploy::app_logs::rotated_tail(path, TAIL - len);
        if out.write_all(&earlier).await.is_err() {
            return;
        }
    }
    let start = len.saturating_sub(TAIL);
    let _ = f.seek(std::io::SeekFrom::Start(start)).await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = start > 0;
    loop {
        match f.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if !follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                // Rotated meanwhile (copied to APP.log.1, truncated): what was not seen
                // yet is in APP.log.1, the rest comes from the start.
                let pos = f.stream_position().await.unwrap_or(0);
                if let Ok(Some(old)) = slipway_deploy::app_logs::after_rotation(path, pos) {
                    let mut old = tokio::fs::File::from_std(old);
                    if tokio::io::copy(&mut old, out).await.is_err() || out.flush().await.is_err() {
                        return;
                    }
                    let _ = f.seek(std::io::SeekFrom::Start(0)).await;
                }
            }
            Ok(n) => {
                let mut chunk = &buf[..n];
                if first {
                    // Start at a line boundary.
                    first = false;
                    if let Some(i) = chunk.iter().position(|b| *b == b'\n') {
                        chunk = &chunk[i + 1..];
                    }
                }
                if out.write_all(chunk).await.is_err() || out.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `cron ls`: name, app, schedule, next run (in the app's time zone) and the last run's status of each cron.
fn cron_ls(platform: &Platform, project: &str, env: &str, json: bool) -> Result<String, String> {
    use slipway_deploy::crons;
    let list = crons::live_crons(platform, project, env).map_err(|e| e.to_string())?;
    let now = crons::minute_now();
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.cron.name,
                "app": c.app.name,
                "spec": c.cron.spec,
                "command": c.cron.start,
                "next_run": crons::next_run(c, now),
                "last_status": crons::last_status(platform, c),
            })
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n");
    }
    if rows.is_empty() {
        return Ok(format!("{env} has no crons\n"));
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut out = String::from("NAME\tAPP\tSPEC\tNEXT RUN\tLAST STATUS\n");
    for r in &rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            text(&r["name"]),
            text(&r["app"]),
            text(&r["spec"]),
            text(&r["next_run"]),
            text(&r["last_status"])
        ));
    }
    Ok(out)
}

/// `cron run`: run the cron now, streaming its output; Ok((activity, exit status)).
async fn cron_run<W: AsyncWrite + Unpin + Send>(
    platform: &Arc<Platform>,
    user: &User,
    project: &str,
    env: &str,
    name: &str,
    out: &mut W,
) -> Result<(i64, i32), (i32, String)> {
    use slipway_deploy::crons;
    let cron = crons::live_cron(platform, project, env, name).map_err(|e| (1, e.to_string()))?;
    let (sink, mut rx) = sink();
    let task = crons::run(platform, &cron, Some(&user.name), Some(sink));
    let result = stream(task, &mut rx, out).await;
    match result {
        Ok((id, Some(code))) => {
            if code == 0 {
                Ok((id, 0))
            } else {
                Err((
                    code.clamp(1, 255),
                    format!("cron {name} failed (activity {id})"),
                ))
            }
        }
        Ok((id, None)) => Err((1, format!("cron {name} could not run (activity {id})"))),
        Err(e) => Err((1, e.to_string())),
    }
}

/// The lines of an operation, as its [`sink`] sends them.
pub(crate) type Lines = tokio::sync::mpsc::UnboundedReceiver<String>;

/// A sink for an operation's output lines and the receiver [`stream`] writes them from.
pub(crate) fn sink() -> (slipway_deploy::output::Sink, Lines) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sink: slipway_deploy::output::Sink = Arc::new(move |l: &str| {
        let _ = tx.send(format!("{l}\n"));
    });
    (sink, rx)
}

/// Drive `task`, writing its lines to `out` as they come.
pub(crate) async fn stream<T, W: AsyncWrite + Unpin + Send>(
    task: impl std::future::Future<Output = T>,
    rx: &mut Lines,
    out: &mut W,
) -> T {
    tokio::pin!(task);
    loop {
        tokio::select! {
            r = &mut task => {
                while let Ok(l) = rx.try_recv() {
                    let _ = out.write_all(l.as_bytes()).await;
                }
                let _ = out.flush().await;
                return r;
            }
            Some(l) = rx.recv() => {
                let _ = out.write_all(l.as_bytes()).await;
                let _ = out.flush().await;
            }
        }
    }
}
