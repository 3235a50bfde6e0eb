//! One SSH connection: authentication, then one task per exec'd channel.
//!
//! The user is looked up again by the connection's key for every channel and command, so a
//! user removed (or whose rights changed) while connected gets no new channel with the rights
//! of the login; a removed user's connection is closed.

use std::collections::HashMap;
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use slipway_deploy::Platform;
use slipway_state::User;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::{admin, git_service, normalize_key};

/// Per-connection state.
pub(crate) struct Connection {
    pub(crate) platform: Arc<Platform>,
    pub(crate) peer: Option<std::net::SocketAddr>,
    /// This connection among the live ones.
    pub(crate) live: Arc<crate::connections::Live>,
    /// All live connections (`user rm` closes the removed user's).
    pub(crate) connections: Arc<crate::connections::Connections>,
    /// The endpoint's limits.
    pub(crate) limits: crate::SshLimits,
    /// Open connections per key.
    pub(crate) sessions: crate::limits::SessionCounter,
    /// Running container shells per key.
    pub(crate) shells: crate::limits::SessionCounter,
    /// This connection's place in the count of its key (released on drop).
    pub(crate) slot: Option<crate::limits::SessionSlot>,
    /// The key had too many connections open: every command is refused with a message.
    pub(crate) over_limit: bool,
    /// Set once a key was accepted (as it was then: see [`Connection::current_user`]).
    pub(crate) user: Option<User>,
    /// The accepted key, as stored.
    pub(crate) key: Option<String>,
    /// One permit per open channel, waiting for a command or running one.
    pub(crate) open_channels: Arc<Semaphore>,
    /// Channels opened but not yet given a command, with their permit.
    pub(crate) channels: HashMap<ChannelId, (Channel<Msg>, OwnedSemaphorePermit)>,
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
                self.live.logged_in(crate::connections::LoggedIn {
                    name: user.name.clone(),
                    key: k.clone(),
                });
                self.user = Some(user);
                self.key = Some(k);
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
        if let Err(Refused { message, removed }) = self.current_user() {
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: message,
                })
                .await;
            if removed {
                close_soon(self.live.clone());
            }
            return Ok(());
        }
        let Ok(permit) = self.open_channels.clone().try_acquire_owned() else {
            let limit = self.limits.max_channels_per_connection;
            warn!(user = ?self.user.as_ref().map(|u| &u.name), limit, "too many channels on one connection");
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 4,
                    reason: format!("slipway: too many channels open on this connection (limit {limit}); close some and try again"),
                })
                .await;
            return Ok(());
        };
        self.channels.insert(channel.id(), (channel, permit));
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No subsystem (sftp or other) is served: say so at once rather than leave the
        // client waiting.
        info!(subsystem = %name.chars().take(64).collect::<String>(), "subsystem refused");
        session.channel_failure(channel)?;
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
        let Some((channel, permit)) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let user = match self.current_user() {
            Err(no) => {
                self.refuse(channel, permit, no);
                return Ok(());
            }
            Ok(_) if self.over_limit => {
                self.refuse(channel, permit, self.too_many_sessions());
                return Ok(());
            }
            Ok(user) => user,
        };
        let key = self.key.clone().unwrap_or_default();
        let Some(shell_slot) = self.shells.acquire(&key, self.limits.max_shells_per_key) else {
            let limit = self.limits.max_shells_per_key;
            warn!(user = %user.name, limit, "too many shells for one key");
            self.refuse(
                channel,
                permit,
                Refused::message(format!("slipway: too many shells open for this key (limit {limit}); close some and try again")),
            );
            return Ok(());
        };
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
            drop((shell_slot, permit));
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
        let Some((channel, permit)) = self.channels.remove(&id) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let user = match self.current_user() {
            Err(no) => {
                self.refuse(channel, permit, no);
                return Ok(());
            }
            Ok(_) if self.over_limit => {
                self.refuse(channel, permit, self.too_many_sessions());
                return Ok(());
            }
            Ok(user) => user,
        };
        let platform = self.platform.clone();
        let connections = self.connections.clone();
        let git_protocol = self.git_protocol.remove(&id);
        let command = command.to_vec();
        tokio::spawn(async move {
            let (mut read, write) = channel.split();
            let mut stdout = write.make_writer();
            let mut stderr = write.make_writer_ext(Some(1));
            let code = match crate::command::parse(&command) {
                Err(e) => {
                    crate::say(&mut stderr, &format!("slipway: {e}\n")).await;
                    e.exit_code()
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
                    admin::run(
                        &platform,
                        &connections,
                        &user,
                        &words,
                        stdin,
                        &mut stdout,
                        &mut stderr,
                    )
                    .await
                }
            };
            close_channel(&write, stdout, stderr, code).await;
            drop(permit);
        });
        Ok(())
    }

    /// The user of the connection's key as the state database has it now; Err when the key
    /// is no longer known (its user was removed) or the database failed.
    fn current_user(&self) -> Result<User, Refused> {
        let Some(key) = self.key.as_deref() else {
            return Err(Refused::message("slipway: not authenticated".into()));
        };
        match self.platform.state().user_by_key(key) {
            Ok(Some(user)) => Ok(user),
            Ok(None) => {
                info!(peer = ?self.peer, user = ?self.user.as_ref().map(|u| &u.name), "the key's user was removed");
                Err(Refused {
                    message: "slipway: this key no longer belongs to a user here".into(),
                    removed: true,
                })
            }
            Err(e) => {
                warn!("state database while checking a user: {e}");
                Err(Refused::message(
                    "slipway: internal error while checking your access".into(),
                ))
            }
        }
    }

    /// The refusal for a connection over the per-key session limit.
    fn too_many_sessions(&self) -> Refused {
        Refused::message(format!(
            "slipway: too many open sessions for this key (limit {}); close some and try again",
            self.limits.max_sessions_per_key
        ))
    }

    /// Answer a channel with the refusal's message on stderr and exit status 1; the
    /// connection of a removed user is closed once the message is out.
    fn refuse(&self, channel: Channel<Msg>, permit: OwnedSemaphorePermit, no: Refused) {
        let close = no.removed.then(|| self.live.clone());
        tokio::spawn(async move {
            let (_read, write) = channel.split();
            let stdout = write.make_writer();
            let mut stderr = write.make_writer_ext(Some(1));
            crate::say(&mut stderr, &format!("{}\n", no.message)).await;
            close_channel(&write, stdout, stderr, 1).await;
            drop(permit);
            if let Some(live) = close {
                close_soon(live);
            }
        });
    }
}

/// Close a connection after a moment, for the refusal sent just before to reach the client.
fn close_soon(live: Arc<crate::connections::Live>) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        live.close();
    });
}

/// Why a channel gets no command run: a refusal shown to the client.
struct Refused {
    /// For the client's stderr.
    message: String,
    /// The key's user was removed: the connection is closed.
    removed: bool,
}

impl Refused {
    fn message(message: String) -> Refused {
        Refused {
            message,
            removed: false,
        }
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
