//! One SSH connection: authentication, then one task per exec'd channel.

use std::collections::HashMap;
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use slipway_deploy::Platform;
use slipway_state::User;
use tracing::{info, warn};

use crate::{admin, git_service, normalize_key};

/// Per-connection state.
pub(crate) struct Connection {
    pub(crate) platform: Arc<Platform>,
    pub(crate) peer: Option<std::net::SocketAddr>,
    /// The endpoint's limits.
    pub(crate) limits: crate::SshLimits,
    /// Open connections per key.
    pub(crate) sessions: crate::limits::SessionCounter,
    /// This connection's place in the count of its key (released on drop).
    pub(crate) slot: Option<crate::limits::SessionSlot>,
    /// The key had too many connections open: every command is refused with a message.
    pub(crate) over_limit: bool,
    /// Set once a key was accepted.
    pub(crate) user: Option<User>,
    /// Channels opened but not yet given a command.
    pub(crate) channels: HashMap<ChannelId, Channel<Msg>>,
    /// `GIT_PROTOCOL` sent by the client (the only env request honoured).
    pub(crate) git_protocol: HashMap<ChannelId, String>,
    /// The login name: `git`, or `[APP.]ENV.PROJECT` for a shell in a container.
    pub(crate) login: String,
    /// Terminals requested per channel.
    pub(crate) ptys: HashMap<ChannelId, crate::shell::PtyRequest>,
    /// Window size changes, to the running shell of a channel.
    pub(crate) resizes: HashMap<ChannelId, tokio::sync::watch::Sender<(u16, u16)>>,
}

/// Errors of a connection (logged, never shown to the client).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The SSH layer failed.
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

impl russh::server::Handler for Connection {
    type Error = ConnectionError;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Spare the signature round trip for keys we will not accept anyway.
        let known = normalize_key(offer.public_key)
            .ok()
            .and_then(|k| self.platform.state().user_by_key(&k).ok().flatten())
            .is_some();
        if known {
            Ok(Auth::Accept)
        } else {
            info!(ssh_user = user, peer = ?self.peer, "unknown key offered");
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        ssh_user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Ok(k) = normalize_key(key.public_key) else {
            return Ok(Auth::reject());
        };
        match self.platform.state().user_by_key(&k) {
            Ok(Some(user)) => {
                info!(ssh_user, user = %user.name, peer = ?self.peer, "authenticated");
                if self.slot.is_none() {
                    self.slot = self.sessions.acquire(&k, self.limits.max_sessions_per_key);
                    self.over_limit = self.slot.is_none();
                    if self.over_limit {
                        warn!(user = %user.name, limit = self.limits.max_sessions_per_key, "too many sessions for one key");
                    }
                }
                self.user = Some(user);
                self.login = ssh_user.to_string();
                Ok(Auth::Accept)
            }
            Ok(None) => Ok(Auth::reject()),
            Err(e) => {
                warn!("state database during authentication: {e}");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= 10 {
            // Dropping the handle rejects the channel.
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "GIT_PROTOCOL"
            && value.len() < 256
            && value.chars().all(|c| c.is_ascii_graphic())
        {
            self.git_protocol.insert(channel, value.to_string());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login == "git" {
            // `ssh git@HOST` with no command: a short help.
            self.start(channel, b"", session).await
        } else {
            self.start_shell(channel, None, session).await
        }
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.login == "git" {
            self.start(channel, data, session).await
        } else {
            let command = String::from_utf8_lossy(data).to_string();
            self.start_shell(channel, Some(command), session).await
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let term: String = term
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let size = (cols.clamp(1, 1000) as u16, rows.clamp(1, 1000) as u16);
        self.ptys
            .insert(channel, crate::shell::PtyRequest { term, size });
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.resizes.get(&channel) {
            let _ = tx.send((cols.clamp(1, 1000) as u16, rows.clamp(1, 1000) as u16));
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.git_protocol.remove(&channel);
        self.ptys.remove(&channel);
        self.resizes.remove(&channel);
        Ok(())
    }
}

impl Connection {
    /// A shell (or one command) inside a running container: login `[APP.]ENV.PROJECT`.
    async fn start_shell(
        &mut self,
        id: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), ConnectionError> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let platform = self.platform.clone();
        let target = crate::shell::ShellTarget::parse(&self.login);
        let login = self.login.clone();
        let pty = self.ptys.remove(&id);
        let resize = pty.as_ref().map(|p| {
            let (tx, rx) = tokio::sync::watch::channel(p.size);
            self.resizes.insert(id, tx);
            rx
        });
        tokio::spawn(async move {
            let (mut read, write) = channel.split();
            let mut stdout = write.make_writer();
            let mut stderr = write.make_writer_ext(Some(1));
            let code = match target {
                None => {
                    crate::say(
                        &mut stderr,
                        &format!("slipway: '{login}' is no login here: use git@HOST for git and commands, ENV.PROJECT@HOST (or APP.ENV.PROJECT@HOST) for a shell in a container\n"),
                    )
                    .await;
                    1
                }
                Some(t) => {
                    let stdin = read.make_reader();
                    crate::shell::run(
                        &platform,
                        &user,
                        &t,
                        command,
                        pty,
                        resize,
                        stdin,
                        &mut stdout,
                        &mut stderr,
                    )
                    .await
                }
            };
            close_channel(&write, stdout, stderr, code).await;
        });
        Ok(())
    }

    /// Hand the channel to a task running the requested command.
    async fn start(
        &mut self,
        id: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), ConnectionError> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let platform = self.platform.clone();
        let git_protocol = self.git_protocol.remove(&id);
        let over_limit = self.over_limit.then_some(self.limits.max_sessions_per_key);
        let command = command.to_vec();
        tokio::spawn(async move {
            let (mut read, write) = channel.split();
            let mut stdout = write.make_writer();
            let mut stderr = write.make_writer_ext(Some(1));
            let code = match crate::command::parse(&command) {
                _ if over_limit.is_some() => {
                    let limit = over_limit.unwrap_or_default();
                    crate::say(
                        &mut stderr,
                        &format!("slipway: too many open sessions for this key (limit {limit}); close some and try again\n"),
                    )
                    .await;
                    1
                }
                Err(e) => {
                    crate::say(&mut stderr, &format!("slipway: {e}\n")).await;
                    1
                }
                Ok(crate::command::Command::Git { service, project }) => {
                    let stdin = read.make_reader();
                    git_service::run(
                        &platform,
                        &user,
                        service,
                        &project,
                        git_protocol.as_deref(),
                        stdin,
                        &mut stdout,
                        &mut stderr,
                    )
                    .await
                }
                Ok(crate::command::Command::Admin(words)) => {
                    let stdin = read.make_reader();
                    admin::run(&platform, &user, &words, stdin, &mut stdout, &mut stderr).await
                }
            };
            close_channel(&write, stdout, stderr, code).await;
        });
        Ok(())
    }
}

/// End a channel the way SSH clients expect: the output flushed, then the
/// exit status, EOF and close.
async fn close_channel<W, E>(
    write: &russh::ChannelWriteHalf<Msg>,
    mut stdout: W,
    mut stderr: E,
    code: i32,
) where
    W: tokio::io::AsyncWrite + Unpin,
    E: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    drop(stdout);
    drop(stderr);
    let _ = write.exit_status(code as u32).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}
