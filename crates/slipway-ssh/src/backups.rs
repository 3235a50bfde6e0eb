//! `backup create|ls|restore` over SSH (spec section 9). `create` needs the contributor
//! role (admin on a production environment, as `redeploy`), `ls` any role of the project,
//! `restore` the admin role (it goes back in data, as `sync` and `rollback` are gated):
//! [`access::CREATE_BACKUPS`], [`access::LIST_BACKUPS`], [`access::RESTORE_BACKUPS`], which
//! the web console checks too. Output of create and restore streams live (to stderr with
//! `--json`, whose stdout holds only the backup(s) or what was restored, at the end).

use std::sync::Arc;

use slipway_deploy::{access, backups, Platform};
use slipway_state::{Backup, User};
use tokio::io::AsyncWrite;

use crate::ops::{check, done, failure, progress, sink, stream};
use crate::say;

/// Run `args` if it is a `backup` command; None otherwise.
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
    if args.first() != Some(&"backup") {
        return None;
    }
    let result: Result<String, (i32, String)> = match &args[1..] {
        ["ls", project, env] => match check(platform, user, project, env, access::LIST_BACKUPS) {
            Err(r) => Err(r),
            Ok(()) => match platform.state().backups(project, env) {
                Err(e) => Err(failure(e)),
                Ok(list) if json => Ok(crate::admin::pretty(&list)),
                Ok(list) if list.is_empty() => Ok(format!("{}\n", backups::none_yet(project, env))),
                Ok(list) => Ok(list.iter().map(line).collect()),
            },
        },
        ["create", project, env] => {
            match check(platform, user, project, env, access::CREATE_BACKUPS) {
                Err(r) => Err(r),
                Ok(()) => {
                    let (sink, mut rx) = sink();
                    let task = backups::create(platform, project, env, &user.name, Some(sink));
                    let r = stream(task, &mut rx, &mut progress(json, out, err)).await;
                    r.map(|b| {
                        if json {
                            crate::admin::pretty(&b)
                        } else {
                            format!("{}\n", backups::taken(&b))
                        }
                    })
                    .map_err(failure)
                }
            }
        }
        ["restore", project, env, id] => {
            let Ok(id) = id.parse::<i64>() else {
                say(err, "slipway: usage: backup restore PROJECT ENV ID\n").await;
                return Some(2);
            };
            match check(platform, user, project, env, access::RESTORE_BACKUPS) {
                Err(r) => Err(r),
                Ok(()) => {
                    let (sink, mut rx) = sink();
                    let task = backups::restore(platform, project, env, id, &user.name, Some(sink));
                    let r = stream(task, &mut rx, &mut progress(json, out, err)).await;
                    r.map(|summary| {
                        let fields = serde_json::json!({"restored": id, "summary": summary});
                        done(project, env, fields, format!("{summary}\n"), json)
                    })
                    .map_err(failure)
                }
            }
        }
        _ => {
            say(
                err,
                "slipway: usage: backup create PROJECT ENV | backup ls PROJECT ENV | backup restore PROJECT ENV ID\n",
            )
            .await;
            return Some(2);
        }
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

/// One line of `backup ls`: id, when (UTC), size, parts.
fn line(b: &Backup) -> String {
    let when = jiff::Timestamp::from_second(b.created_at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|_| b.created_at.to_string());
    let parts = backups::part_names(b);
    format!(
        "{}\t{when}\t{}\t{}\t{}\n",
        b.id,
        backups::size(b),
        b.created_by,
        parts.join(", ")
    )
}
