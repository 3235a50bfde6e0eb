//! The two git services: fetch/clone served by the `git upload-pack` binary
//! (as Gitea and Soft Serve do), push received natively by slipway-git and
//! handed to the deploy pipeline.

use std::process::Stdio;

use slipway_deploy::Platform;
use slipway_state::{Role, User};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, info_span, warn, Instrument};

use crate::command::GitService;
use crate::say;

/// The message for a project that does not exist or that the user may not see:
/// the same in both cases, so that its existence does not leak.
fn not_found(project: &str) -> String {
    format!("slipway: repository '{project}.git' not found (or you have no access to it)\n")
}

/// [`not_found`] for a push, with how projects come to be: the same words whether the
/// project exists or not, so they say nothing of which.
fn not_found_for_push(project: &str) -> String {
    format!(
        "slipway: repository '{project}.git' not found (or you have no access to it); a new project is made by a server admin's first push to it, and an admin of a project gives access with `access grant`\n"
    )
}

/// Run one git service on the channel; returns the exit status for the client.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, W, E>(
    platform: &std::sync::Arc<Platform>,
    user: &User,
    service: GitService,
    project: &str,
    git_protocol: Option<&str>,
    stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let state = platform.state();
    let Some(exists) = project_exists(platform, project, stderr).await else {
        return 3;
    };
    match service {
        GitService::UploadPack => {
            let role = if exists {
                state.role(project, user).ok().flatten()
            } else {
                None
            };
            if role.is_none() {
                say(stderr, &not_found(project)).await;
                return 1;
            }
            upload_pack(platform, project, git_protocol, stdin, stdout, stderr).await
        }
        GitService::ReceivePack => {
            if !exists && !user.admin {
                say(stderr, &not_found_for_push(project)).await;
                return 1;
            }
            // A first push of the project under way may yet remove it: wait for it to end,
            // then look again.
            let Some(first_push) = lock_first_push(platform, project, stderr).await else {
                return 3;
            };
            let Some(exists) = project_exists(platform, project, stderr).await else {
                return 3;
            };
            if !exists {
                if !user.admin {
                    say(stderr, &not_found_for_push(project)).await;
                    return 1;
                }
                if let Err(e) = platform.create_project(project, &user.name) {
                    warn!("creating project {project}: {e:#}");
                    say(
                        stderr,
                        &format!("slipway: could not create project {project}: {e}\n"),
                    )
                    .await;
                    return 3;
                }
                info!(project, user = %user.name, "project created by first push");
                let (code, awaits_input) =
                    receive_pack(platform, user, project, stdin, stdout, stderr).await;
                // Nothing of it landed: the project goes again, its name free (unless the
                // refusal asks for a variable set on it first).
                let discarded = if awaits_input {
                    Ok(false)
                } else {
                    slipway_deploy::unborn::discard_project(platform, project).await
                };
                match discarded {
                    Ok(true) => {
                        say(
                            stderr,
                            &format!("slipway: project {project} was not created: nothing of its first push was accepted\n"),
                        )
                        .await
                    }
                    Ok(false) => {}
                    Err(e) => warn!(project, "a refused first push's project not removed: {e}"),
                }
                drop(first_push);
                return code;
            }
            drop(first_push);
            let role = state.role(project, user).ok().flatten();
            match role {
                None => {
                    say(stderr, &not_found_for_push(project)).await;
                    return 1;
                }
                Some(Role::Viewer) => {
                    say(
                        stderr,
                        &format!(
                            "slipway: permission denied: {} is a viewer of project {project} and may not push (ask an admin for the contributor role)\n",
                            user.name
                        ),
                    )
                    .await;
                    return 1;
                }
                Some(_) => {}
            }
            receive_pack(platform, user, project, stdin, stdout, stderr)
                .await
                .0
        }
    }
}

/// Whether `project` exists; `None` (said on `stderr`, logged) when the state database
/// could not tell.
async fn project_exists<E>(platform: &Platform, project: &str, stderr: &mut E) -> Option<bool>
where
    E: AsyncWrite + Unpin + Send,
{
    match platform.state().project_exists(project) {
        Ok(e) => Some(e),
        Err(e) => {
            warn!("state database: {e}");
            say(stderr, "slipway: internal error, see the server log\n").await;
            None
        }
    }
}

/// [`Platform::lock_first_push`], saying on `stderr` when it waits; `None` (said, logged)
/// when it could not be taken.
async fn lock_first_push<E>(
    platform: &Platform,
    project: &str,
    stderr: &mut E,
) -> Option<slipway_deploy::unborn::FirstPushLock>
where
    E: AsyncWrite + Unpin + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let lock = platform.lock_first_push(project, move |l| {
        let _ = tx.send(l.to_string());
    });
    tokio::pin!(lock);
    let taken = loop {
        tokio::select! {
            r = &mut lock => break r,
            Some(line) = rx.recv() => say(stderr, &format!("{line}\n")).await,
        }
    };
    match taken {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(project, "first push lock: {e}");
            say(stderr, &format!("slipway: push refused: {e}\n")).await;
            None
        }
    }
}

async fn upload_pack<R, W, E>(
    platform: &Platform,
    project: &str,
    git_protocol: Option<&str>,
    stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let path = platform.repo_path(project);
    let mut cmd = tokio::process::Command::new("git");
    // The repository's own config has these since init; repositories made before get them here.
    for (key, value) in slipway_git::REPO_CONFIG {
        if key.starts_with("uploadpack.") {
            cmd.arg("-c").arg(format!("{key}={value}"));
        }
    }
    cmd.arg("upload-pack")
        .arg("--strict")
        .arg("--timeout=600")
        .arg(&path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &path)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(p) = git_protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            warn!("spawning git upload-pack: {e}");
            say(
                stderr,
                "slipway: could not start git upload-pack on the server\n",
            )
            .await;
            return 3;
        }
    };
    crate::pipe::run_piped(child, stdin, stdout, stderr).await
}

/// Receive a push and deploy it; returns the exit status for the client and whether a
/// refusal asks the pusher to set something on the server first
/// ([`slipway_deploy::push::PushPipeline::awaits_input`]).
async fn receive_pack<R, W, E>(
    platform: &std::sync::Arc<Platform>,
    user: &User,
    project: &str,
    stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> (i32, bool)
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let repo = match slipway_git::Repo::open(&platform.repo_path(project)) {
        Ok(r) => r,
        Err(e) => {
            warn!("opening repository of {project}: {e}");
            say(
                stderr,
                "slipway: could not open the repository on the server\n",
            )
            .await;
            return (3, false);
        }
    };
    let handler = platform.push_handler(project, user);
    let span = info_span!("push", project, user = %user.name);
    let limits = platform.receive_limits();
    match slipway_git::receive::serve(&repo, stdin, &mut *stdout, &handler, &limits)
        .instrument(span)
        .await
    {
        Ok(_) => (0, handler.awaits_input()),
        Err(e) => {
            info!(project, "push ended with an error: {e}");
            let _ = stdout.flush().await;
            say(stderr, &format!("slipway: push failed: {e}\n")).await;
            (1, handler.awaits_input())
        }
    }
}
