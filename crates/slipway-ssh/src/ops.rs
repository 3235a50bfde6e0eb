//! Admin commands that act on an environment (spec section 6): `rollback`,
//! `redeploy`, `sync`, `var set|unset|ls`, `logs`, `cron ls|run`. Output of deploys,
//! syncs and cron runs streams live.

use std::sync::Arc;
use std::time::Duration;

use slipway_deploy::access;
use slipway_deploy::environment::AppInstance;
use slipway_deploy::failure::{Failure, OpError};
use slipway_deploy::operations::{self, Operation};
use slipway_deploy::Platform;
use slipway_state::{Role, User};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::say;

/// Whether `user` holds `need` on `project` and `env` exists ([`access::check`]); Err is
/// the exit status and message ([`refused`]).
pub(crate) fn check(
    platform: &Platform,
    user: &User,
    project: &str,
    env: &str,
    need: Role,
) -> Result<(), (i32, String)> {
    access::check(platform, user, project, env, need)
        .map(|_| ())
        .map_err(refused)
}

/// A refusal of the access check as a command's exit status (1 refused, 3 the database
/// failed) and message for stderr.
pub(crate) fn refused(e: access::CheckError) -> (i32, String) {
    failure(e)
}

/// A command's typed failure as its exit status (by its kind,
/// [`slipway_deploy::failure::Kind::exit_code`]) and message for stderr: the failure
/// itself, internal ones too ("backup 1 is damaged: ... nothing was changed"), since the
/// user at the terminal needs its words to act on it. (The web console says "internal
/// error, see the server log" instead: [`Failure::told`].)
pub(crate) fn failure(e: impl Failure) -> (i32, String) {
    (e.kind().exit_code(), format!("slipway: {e}\n"))
}

/// Run a deploy operation, streaming its lines to `out`.
async fn operate<W: AsyncWrite + Unpin + Send>(
    platform: &Arc<Platform>,
    user: &User,
    project: &str,
    env: &str,
    op: Operation,
    out: &mut W,
) -> Result<i64, OpError> {
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
    let result: Result<String, (i32, String)> = match args {
        [verb @ "rollback", project, env]
        | [verb @ "rollback", project, env, _]
        | [verb @ "redeploy", project, env] => {
            let op = if *verb == "redeploy" {
                Operation::Redeploy
            } else {
                match args.get(3).map(|n| n.parse::<i64>()) {
                    None => Operation::Rollback(None),
                    Some(Ok(n)) => Operation::Rollback(Some(n)),
                    Some(Err(_)) => {
                        return Some(usage(err, "rollback PROJECT ENV [RELEASE-NUMBER]").await)
                    }
                }
            };
            match check(platform, user, project, env, op.role()) {
                Err(r) => Err(r),
                Ok(()) => {
                    let r = operate(
                        platform,
                        user,
                        project,
                        env,
                        op,
                        &mut progress(json, out, err),
                    )
                    .await;
                    r.map(|n| deployed(project, env, verb, n, json))
                        .map_err(failure)
                }
            }
        }
        ["sync", project, env] => match check(platform, user, project, env, access::SYNC) {
            Err(r) => Err(r),
            Ok(()) => {
                let (sink, mut rx) = sink();
                let task =
                    slipway_deploy::sync::run(platform, project, env, &user.name, Some(sink));
                let r = stream(task, &mut rx, &mut progress(json, out, err)).await;
                r.map(|summary| {
                    let fields = serde_json::json!({"synced": true, "summary": summary});
                    done(project, env, fields, format!("{summary}\n"), json)
                })
                .map_err(failure)
            }
        },
        ["var", "ls", project, env] => {
            match access::check_variables(platform, user, project, env, Role::Viewer) {
                Err(e) => Err(refused(e)),
                Ok((role, _)) => {
                    let state = platform.state();
                    let role = Some(role);
                    match state.variable_list(project, env) {
                        Err(e) => Err(failure(e)),
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
            use slipway_deploy::variables::{self, Applies, Change};
            let sensitive = args.get(2) == Some(&"--sensitive");
            let (key, change) = match (*verb, kv.split_once('=')) {
                ("set", Some((k, value))) => (k, Change::Set { value, sensitive }),
                ("set", None) => {
                    return Some(usage(err, "var set [--sensitive] PROJECT ENV KEY=VALUE").await)
                }
                (_, _) => (*kv, Change::Unset),
            };
            match variables::change(platform, user, project, env, key, change) {
                Err(e) => Err(failure(e)),
                Ok(applies) => {
                    let said = format!(
                        "{key} {} on {env}{}\n",
                        if matches!(change, Change::Set { .. }) {
                            "set"
                        } else {
                            "unset"
                        },
                        if sensitive {
                            " (sensitive: its value reaches the apps but is never shown again)"
                        } else {
                            ""
                        }
                    );
                    // What was done, under `--json`.
                    let fields = |release: Option<i64>| {
                        serde_json::json!({
                            "key": key,
                            "set": matches!(change, Change::Set { .. }),
                            "sensitive": sensitive,
                            "release": release,
                            "applies": applies.as_str(),
                        })
                    };
                    say(&mut progress(json, out, err), &said).await;
                    match applies {
                        Applies::Now => {
                            let op = Operation::Redeploy;
                            let r = operate(
                                platform,
                                user,
                                project,
                                env,
                                op,
                                &mut progress(json, out, err),
                            )
                            .await;
                            r.map(|n| done(project, env, fields(Some(n)), String::new(), json))
                                .map_err(failure)
                        }
                        Applies::NextDeploy => {
                            let text = "it applies from the next deploy\n".to_string();
                            Ok(done(project, env, fields(None), text, json))
                        }
                        Applies::FirstDeploy => {
                            let text = format!("{env} has not been deployed yet: it applies from its first deploy, which names it\n");
                            Ok(done(project, env, fields(None), text, json))
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
                Err(r) => Err(r),
                Ok(()) => {
                    match live_app(platform, project, env, app.first().map(|a| **a), "name one") {
                        Err(e) => Err(failure(e)),
                        Ok(app) => {
                            let path = platform.data().app_log(project, env, &app.name);
                            let mut shown = LogOutput::new(out, &app.name, json, follow);
                            logs(&path, follow, &mut shown).await;
                            Ok(shown.finish().await)
                        }
                    }
                }
            }
        }
        ["cron", "ls", project, env] => match check(platform, user, project, env, Role::Viewer) {
            Err(r) => Err(r),
            Ok(()) => cron_ls(platform, project, env, json)
                .map_err(|(code, m)| (code, format!("slipway: {m}\n"))),
        },
        ["cron", "run", project, env, name] => {
            match check(platform, user, project, env, access::RUN_CRONS) {
                Err(r) => Err(r),
                Ok(()) => {
                    let r = cron_run(
                        platform,
                        user,
                        project,
                        env,
                        name,
                        &mut progress(json, out, err),
                    )
                    .await;
                    r.map(|(id, code)| {
                        let fields =
                            serde_json::json!({"cron": name, "activity": id, "exit_status": code});
                        done(project, env, fields, String::new(), json)
                    })
                    .map_err(|(code, m)| (code, format!("slipway: {m}\n")))
                }
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

/// What an operation prints when done: `text`, or under `--json` one object naming the
/// environment and `fields` (what was done).
pub(crate) fn done(
    project: &str,
    env: &str,
    fields: serde_json::Value,
    text: String,
    json: bool,
) -> String {
    if !json {
        return text;
    }
    let mut object = serde_json::json!({"project": project, "env": env});
    if let (Some(o), serde_json::Value::Object(f)) = (object.as_object_mut(), fields) {
        o.extend(f);
    }
    crate::admin::pretty(&object)
}

/// What `rollback` and `redeploy` print when done: nothing (the deploy's lines said it),
/// or with `--json` the environment and the release now live.
fn deployed(project: &str, env: &str, action: &str, release: i64, json: bool) -> String {
    done(
        project,
        env,
        serde_json::json!({"action": action, "release": release}),
        String::new(),
        json,
    )
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
) -> Result<AppInstance, OpError> {
    let state = platform.state();
    let release = state
        .environment(project, env)?
        .and_then(|e| e.current_release)
        .map(|id| state.release(id))
        .transpose()?
        .flatten()
        .ok_or_else(|| OpError::refused(format!("{env} has no live release yet: push first")))?;
    let spec = slipway_deploy::release_record::spec_of(&release)
        .map_err(|e| OpError::Internal(e.to_string()))?;
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
        None => {
            return Err(OpError::refused(format!(
                "{env} runs several apps ({names}): {how_to_pick}"
            )))
        }
    };
    found.cloned().ok_or_else(|| {
        OpError::not_found(format!(
            "no app '{}' in {env}: its apps are {names}",
            app.unwrap_or_default()
        ))
    })
}

/// Where `logs` writes what it reads: the bytes as they are, or with `--json` each line
/// as an object `{"app", "line"}` (the container writes its stdout and stderr into one
/// file, so which stream a line came from is not known and not given): gathered into
/// one array, or with `-f` printed one object per line as lines complete.
pub(crate) struct LogOutput<'a, W> {
    out: &'a mut W,
    app: String,
    json: bool,
    follow: bool,
    /// The start of a line not ended yet (`--json`).
    pending: Vec<u8>,
    /// The lines so far (`--json` without `-f`).
    lines: Vec<serde_json::Value>,
}

impl<'a, W: AsyncWrite + Unpin> LogOutput<'a, W> {
    /// Output of `app`'s log to `out`.
    pub(crate) fn new(out: &'a mut W, app: &str, json: bool, follow: bool) -> Self {
        LogOutput {
            out,
            app: app.to_string(),
            json,
            follow,
            pending: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn line(&self, bytes: &[u8]) -> serde_json::Value {
        let line = String::from_utf8_lossy(bytes);
        serde_json::json!({"app": self.app, "line": line.strip_suffix('\r').unwrap_or(&line)})
    }

    /// Take `chunk`; Err when the client went away.
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if !self.json {
            self.out.write_all(chunk).await?;
            return self.out.flush().await;
        }
        self.pending.extend_from_slice(chunk);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let done: Vec<u8> = self.pending.drain(..=end).collect();
        let mut text = String::new();
        for l in done[..done.len() - 1].split(|b| *b == b'\n') {
            let v = self.line(l);
            if self.follow {
                text.push_str(&v.to_string());
                text.push('\n');
            } else {
                self.lines.push(v);
            }
        }
        if !text.is_empty() {
            self.out.write_all(text.as_bytes()).await?;
            self.out.flush().await?;
        }
        Ok(())
    }

    /// What is left to print once the log is read: with `--json` and without `-f`, the
    /// array of lines (an unended last line included).
    pub(crate) async fn finish(mut self) -> String {
        if !self.json || self.follow {
            return String::new();
        }
        if !self.pending.is_empty() {
            let v = self.line(&self.pending);
            self.lines.push(v);
        }
        crate::admin::pretty(&self.lines)
    }
}

/// The last part of a log (and, with `follow`, what comes after, until the client goes away).
async fn logs<W: AsyncWrite + Unpin>(
    path: &std::path::Path,
    follow: bool,
    out: &mut LogOutput<'_, W>,
) {
    const TAIL: u64 = 64 * 1024;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return;
    };
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    if len < TAIL {
        // Just rotated: the end of the previous part first.
        let earlier = slipway_deploy::app_logs::rotated_tail(path, TAIL - len);
        if out.write(&earlier).await.is_err() {
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
                    let mut rest = Vec::new();
                    if old.read_to_end(&mut rest).await.is_err() || out.write(&rest).await.is_err()
                    {
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
                if out.write(chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `cron ls`: name, app, schedule, next run (in the app's time zone) and the last run's status of each cron.
fn cron_ls(
    platform: &Platform,
    project: &str,
    env: &str,
    json: bool,
) -> Result<String, (i32, String)> {
    use slipway_deploy::crons;
    let list = crons::live_crons(platform, project, env).map_err(cron_refusal)?;
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
        return Ok(crate::admin::pretty(&rows));
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

/// `cron run`: run the cron now, streaming its output; Ok((activity, exit status)), or
/// Err((1, why)) when it ran and failed (its exit status in the message).
async fn cron_run<W: AsyncWrite + Unpin + Send>(
    platform: &Arc<Platform>,
    user: &User,
    project: &str,
    env: &str,
    name: &str,
    out: &mut W,
) -> Result<(i64, i32), (i32, String)> {
    use slipway_deploy::crons;
    let cron = crons::live_cron(platform, project, env, name).map_err(cron_refusal)?;
    let (sink, mut rx) = sink();
    let task = crons::run(platform, &cron, Some(&user.name), Some(sink));
    let result = stream(task, &mut rx, out).await;
    match result {
        Ok((id, Some(code))) => {
            if code == 0 {
                Ok((id, 0))
            } else {
                // A failed run is the cron's own failure, a user error (exit 1) like every
                // admin command's: its status is said, not passed on as this command's.
                Err((
                    1,
                    format!("cron {name} failed with exit status {code} (activity {id})"),
                ))
            }
        }
        Ok((id, None)) => Err((1, format!("cron {name} could not run (activity {id})"))),
        Err(e) => Err(cron_refusal(e)),
    }
}

/// A cron command's failure as (exit status, message): 1 when the cron or its release is
/// not there, ambiguous or busy, 3 when the database, a stored record or a lock file failed.
fn cron_refusal(e: slipway_deploy::crons::CronError) -> (i32, String) {
    (e.kind().exit_code(), e.to_string())
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

/// Where an operation's progress goes: `out`, or `err` under `--json`, where stdout holds
/// only the JSON document.
pub(crate) fn progress<'a, W, E>(
    json: bool,
    out: &'a mut W,
    err: &'a mut E,
) -> &'a mut (dyn AsyncWrite + Unpin + Send)
where
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    if json {
        err
    } else {
        out
    }
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

#[cfg(test)]
mod tests {
    use super::LogOutput;

    /// Feeds `chunks` through a [`LogOutput`] and returns what it printed.
    async fn shown(json: bool, follow: bool, chunks: &[&[u8]]) -> String {
        let mut out: Vec<u8> = Vec::new();
        let mut log = LogOutput::new(&mut out, "web", json, follow);
        for c in chunks {
            log.write(c).await.unwrap();
        }
        let rest = log.finish().await;
        String::from_utf8(out).unwrap() + &rest
    }

    #[tokio::test]
    async fn json_logs_are_whole_lines_of_one_app() {
        let chunks: &[&[u8]] = &[b"one\ntw", b"o\r\nthr", b"ee"];
        assert_eq!(shown(false, false, chunks).await, "one\ntwo\r\nthree");
        let array: serde_json::Value =
            serde_json::from_str(&shown(true, false, chunks).await).unwrap();
        assert_eq!(
            array,
            serde_json::json!([
                {"app": "web", "line": "one"},
                {"app": "web", "line": "two"},
                {"app": "web", "line": "three"},
            ])
        );
        // -f: one object per ended line, as they end; an unended one waits.
        let lines = shown(true, true, chunks).await;
        let objects: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objects.len(), 2, "{lines}");
        assert_eq!(objects[1]["line"], "two");
        assert_eq!(shown(true, false, &[]).await, "[]\n");
    }
}
