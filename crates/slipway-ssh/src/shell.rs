//! Shells into running containers: `ssh -t -p 2222 ENV.PROJECT@HOST` (spec
//! section 6), `APP.ENV.PROJECT@HOST` to pick one app of several, with an
//! optional command whose exit status is returned.
//!
//! With a pty request, `runc exec --tty` runs as the session leader of a
//! pseudo-terminal we own: window changes resize it (runc passes the size on),
//! and Ctrl-C reaches the container's foreground process through the terminal.
//! Without one, stdin, stdout and stderr are plain pipes.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use slipway_deploy::Platform;
use slipway_state::{Role, User};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::say;

/// A terminal the client asked for.
#[derive(Debug, Clone)]
pub struct PtyRequest {
    /// `TERM`.
    pub term: String,
    /// Columns and rows.
    pub size: (u16, u16),
}

/// Which container a login name points at: `[APP.]ENV.PROJECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellTarget {
    /// The app, when several run.
    pub app: Option<String>,
    /// Environment name.
    pub env: String,
    /// Project name.
    pub project: String,
}

impl ShellTarget {
    /// Parse an SSH login name; None if it is not of that form.
    pub fn parse(login: &str) -> Option<ShellTarget> {
        let parts: Vec<&str> = login.split('.').collect();
        let label = |s: &str| crate::command::is_dns_label(s);
        match parts.as_slice() {
            [env, project] if label(env) && label(project) => Some(ShellTarget {
                app: None,
                env: env.to_string(),
                project: project.to_string(),
            }),
            [app, env, project] if label(env) && label(project) && valid_app(app) => {
                Some(ShellTarget {
                    app: Some(app.to_string()),
                    env: env.to_string(),
                    project: project.to_string(),
                })
            }
            _ => None,
        }
    }
}

fn valid_app(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Find the container and check access (contributors; admins in protected
/// environments); Err is the message for the user.
fn resolve(
    platform: &Platform,
    user: &User,
    t: &ShellTarget,
) -> Result<(String, Vec<(String, String)>), String> {
    crate::ops::check(platform, user, &t.project, &t.env, Role::Contributor)
        .map_err(|(_, m)| m.trim_end().to_string())?;
    let how = format!("pick one with ssh APP.{}.{}@HOST", t.env, t.project);
    let app = crate::ops::live_app(platform, &t.project, &t.env, t.app.as_deref(), &how)
        .map_err(|m| format!("slipway: {m}"))?;
    let env = slipway_deploy::variables::with_environment_variables(
        platform, &t.project, &t.env, &app.env,
    )
    .map_err(|e| format!("slipway: variables of {}: {e}", t.env))?;
    Ok((app.container, env))
}

/// Run a shell or `command` in the target's container over the channel; returns the exit status.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, W, E>(
    platform: &Arc<Platform>,
    user: &User,
    target: &ShellTarget,
    command: Option<String>,
    pty: Option<PtyRequest>,
    resize: Option<watch::Receiver<(u16, u16)>>,
    stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let (container, mut env) = match resolve(platform, user, target) {
        Ok(x) => x,
        Err(msg) => {
            say(stderr, &format!("{msg}\n")).await;
            return 1;
        }
    };
    // A shell is a command too: `.environment` sourced, then `sh` (interactive on a
    // terminal), so it has exactly the PATH and variables a command gets. Not a login shell:
    // the stack's /etc/profile would reset PATH.
    let args: Vec<String> = vec![
        "/bin/sh".into(),
        "-c".into(),
        slipway_deploy::environment::sourcing_environment(
            command.as_deref().unwrap_or("exec /bin/sh"),
        ),
    ];
    if let Some(p) = &pty {
        env.push(("TERM".into(), p.term.clone()));
    }
    let mut cmd =
        match platform
            .runtime()
            .exec_command(&container, &args, &env, "/app", pty.is_some())
        {
            Ok(c) => c,
            Err(e) => {
                say(stderr, &format!("slipway: {e}\n")).await;
                return 3;
            }
        };
    cmd.kill_on_drop(true);
    tracing::info!(container = %container, tty = pty.is_some(), "shell");
    match pty {
        Some(p) => with_pty(cmd, p, resize, stdin, stdout, stderr).await,
        None => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    say(stderr, &format!("slipway: cannot start the runtime: {e}\n")).await;
                    return 3;
                }
            };
            crate::pipe::run_piped(child, stdin, stdout, stderr).await
        }
    }
}

fn set_size(fd: &OwnedFd, (cols, rows): (u16, u16)) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; fd is an open pty.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

async fn with_pty<R, W, E>(
    mut cmd: tokio::process::Command,
    pty: PtyRequest,
    resize: Option<watch::Receiver<(u16, u16)>>,
    mut stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let pair = match nix::pty::openpty(None, None) {
        Ok(p) => p,
        Err(e) => {
            say(
                stderr,
                &format!("slipway: cannot allocate a terminal: {e}\n"),
            )
            .await;
            return 3;
        }
    };
    set_size(&pair.master, pty.size);
    let slave = pair.slave;
    let (Ok(s_in), Ok(s_out), Ok(s_err)) =
        (slave.try_clone(), slave.try_clone(), slave.try_clone())
    else {
        return 3;
    };
    cmd.stdin(Stdio::from(s_in))
        .stdout(Stdio::from(s_out))
        .stderr(Stdio::from(s_err));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            say(stderr, &format!("slipway: cannot start the runtime: {e}\n")).await;
            return 3;
        }
    };
    // The command still holds the slave's fds; the master sees EIO (end) only
    // once no process of ours keeps the terminal open.
    drop(cmd);
    drop(slave);
    let master = pair.master;
    let (Ok(reader), Ok(writer)) = (master.try_clone(), master.try_clone()) else {
        return 3;
    };
    let mut reader = tokio::fs::File::from_std(std::fs::File::from(reader));
    let mut writer = tokio::fs::File::from_std(std::fs::File::from(writer));
    // tokio::io::copy flushes whenever its reader has nothing more yet, so
    // keystrokes and output reach the other side at once.
    let feed = async {
        let _ = tokio::io::copy(&mut stdin, &mut writer).await;
        std::future::pending::<()>().await
    };
    let resizes = async {
        if let Some(mut rx) = resize {
            while rx.changed().await.is_ok() {
                let size = *rx.borrow();
                set_size(&master, size);
            }
        }
        std::future::pending::<()>().await
    };
    let out = async {
        // Ends with EIO once every process holding the terminal is gone.
        let _ = tokio::io::copy(&mut reader, stdout).await;
        child.wait().await
    };
    let status = tokio::select! {
        s = out => s,
        _ = feed => Err(std::io::Error::other("unreachable")),
        _ = resizes => Err(std::io::Error::other("unreachable")),
    };
    status.ok().and_then(|s| s.code()).unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names() {
        assert_eq!(
            ShellTarget::parse("main.demo"),
            Some(ShellTarget {
                app: None,
                env: "main".into(),
                project: "demo".into()
            })
        );
        assert_eq!(
            ShellTarget::parse("web.main.demo").and_then(|t| t.app),
            Some("web".to_string())
        );
        for bad in [
            "git",
            "demo",
            "a.b.c.d",
            "Main.demo",
            "main..demo",
            ".main.demo",
            "x/y.main.demo",
            "",
        ] {
            assert_eq!(ShellTarget::parse(bad), None, "{bad}");
        }
    }
}
