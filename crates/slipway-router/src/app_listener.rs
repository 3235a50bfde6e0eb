//! An app's relationship address: the router listening on `ADDRESS:80` inside an
//! environment's network namespace, serving what it accepts there with one app's web
//! layer (its locations, static files, FastCGI, its process), as a route to that app would.
//!
//! A socket belongs to the namespace it was made in, so the listening socket is made by
//! the namespace's thread ([`crate::netns`]) and accepted from here. Its connections go
//! to the plain HTTP listener's workers (the same code as a public request, the same cap
//! on client connections), each carrying its fixed target ([`crate::proxy::Client`]), so
//! the `Host` a caller sends never reaches the route table, the console or another app.
//!
//! The listening socket has `SO_REUSEPORT`, and the namespace `net.ipv4.tcp_migrate_req`:
//! during a graceful upgrade the new server listens beside the old one, and what the
//! old one's queue holds when it closes moves to the new one's instead of being reset.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::gate::Gate;
use crate::proxy;
use crate::release::LiveRelease;
use crate::router::Router;
use crate::routes::{RouteError, RouteScheme, Upstream};
use crate::site::Site;
use crate::table::{Action, HostEntry, HostTarget, Rule};

/// The port an app's relationship address answers on (`http://REL.internal/`).
pub const APP_LISTENER_PORT: u16 = 80;

/// How long an accepted connection waits for the HTTP listener's workers (they start
/// after the environments are restored) before it is closed.
const INTAKE_WAIT: Duration = Duration::from_secs(30);

/// An accepted client connection on its way to a worker: the stream, the client's
/// address, its place under the cap on open client connections, and the fixed target of
/// a connection to an app's relationship address.
pub(crate) type Accepted = (
    std::io::Result<std::net::TcpStream>,
    SocketAddr,
    OwnedSemaphorePermit,
    Option<Arc<HostEntry>>,
);

/// Why the router cannot listen on an app's relationship address.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The app's locations cannot be served.
    #[error(transparent)]
    Site(#[from] RouteError),
    /// No listening socket in the namespace.
    #[error("listening on {address}:{APP_LISTENER_PORT} in {netns}: {source}")]
    Socket {
        /// The address.
        address: Ipv4Addr,
        /// The namespace's file.
        netns: String,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where the plain HTTP listener's workers take connections.
pub(crate) struct Intake {
    pub(crate) queues: Vec<mpsc::UnboundedSender<Accepted>>,
    pub(crate) places: Arc<Semaphore>,
    pub(crate) next: usize,
}

/// One app listener: what stops its accept loop, the release its requests count on,
/// and the identity (device, inode) of the namespace its socket is in.
struct AppListener {
    stop: oneshot::Sender<()>,
    release: Arc<LiveRelease>,
    netns_id: (u64, u64),
}

impl AppListener {
    fn close(self) -> Arc<LiveRelease> {
        let _ = self.stop.send(());
        self.release.retire();
        self.release
    }
}

/// The router's app listeners and its workers' intake.
#[derive(Default)]
pub(crate) struct AppListeners {
    listeners: Mutex<HashMap<(PathBuf, Ipv4Addr), AppListener>>,
    pub(crate) intake: Mutex<Option<Intake>>,
    /// Whether the HTTP listener stopped ([`AppListeners::close_all`]): its workers take
    /// no more connections, so a listener made since serves what it accepts itself.
    stopped: AtomicBool,
}

impl AppListeners {
    fn listeners(&self) -> MutexGuard<'_, HashMap<(PathBuf, Ipv4Addr), AppListener>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn intake(&self) -> MutexGuard<'_, Option<Intake>> {
        self.intake
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Close every app listener (the router stops serving HTTP); their releases are
    /// returned, to drain. A listener made after this (a deploy still running in the old
    /// server of an upgrade) serves its connections on its own ([`Router::serve_alone`]).
    pub(crate) fn close_all(&self) -> Vec<Arc<LiveRelease>> {
        self.stopped.store(true, Ordering::Release);
        self.listeners().drain().map(|(_, l)| l.close()).collect()
    }

    /// Whether the HTTP listener stopped.
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

impl Router {
    /// Listen on `address:80` inside the network namespace at `netns` and answer what
    /// comes there with app `app`'s web layer, as a route to it would: `site` (its
    /// locations, static files, FastCGI) when it has one, else its process at `upstream`.
    /// The requests count on environment `env`'s metrics. Nothing happens when the router
    /// listens there already (the same release's app: the address is a function of the
    /// release's port); a listener left in a namespace deleted and made again under the
    /// same path is replaced.
    ///
    /// Requests are answered once the HTTP listener ([`Router::serve`]) runs; until then
    /// they wait in the socket's queue.
    pub async fn listen_app(
        self: &Arc<Self>,
        env: &str,
        netns: &Path,
        address: Ipv4Addr,
        app: &str,
        upstream: Upstream,
        site: Option<&Site>,
    ) -> Result<(), ListenError> {
        let key = (netns.to_path_buf(), address);
        let socket_error = |source| ListenError::Socket {
            address,
            netns: netns.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(netns).map_err(socket_error)?;
        let netns_id = (meta.dev(), meta.ino());
        {
            let mut listeners = self.app_listeners.listeners();
            match listeners.get(&key) {
                Some(l) if l.netns_id == netns_id => return Ok(()),
                Some(_) => {
                    if let Some(stale) = listeners.remove(&key) {
                        stale.close();
                    }
                }
                None => {}
            }
        }
        let site = site.map(|s| self.compile_site(app, s)).transpose()?;
        let listener =
            crate::netns::listen_in(netns, SocketAddr::from((address, APP_LISTENER_PORT)))
                .await
                .map_err(socket_error)?;
        let release = LiveRelease::with_stats(
            format!("{} at {address}", upstream.release),
            &[(app.to_string(), upstream)],
            &self.config,
            self.stats.of(env),
        );
        let action = match site {
            Some(site) => Action::Site(0, site),
            None => Action::Upstream(0),
        };
        let entry = Arc::new(HostEntry {
            gate: Arc::new(Gate::default()),
            target: HostTarget::Live {
                release: Arc::clone(&release),
                rules: vec![Rule {
                    prefix: "/".into(),
                    action,
                    scheme: RouteScheme::Any,
                    hsts: None,
                }]
                .into_boxed_slice(),
            },
        });
        let (stop, stopped) = oneshot::channel();
        let mut listeners = self.app_listeners.listeners();
        if listeners.contains_key(&key) {
            // Another call made it meanwhile: this socket closes.
            return Ok(());
        }
        listeners.insert(
            key,
            AppListener {
                stop,
                release,
                netns_id,
            },
        );
        drop(listeners);
        tracing::info!(env, app, %address, netns = %netns.display(), "listening on an app's relationship address");
        tokio::spawn(Arc::clone(self).accept_app(listener, entry, stopped));
        Ok(())
    }

    /// Stop listening on `address:80` in the namespace at `netns`. Returns the release
    /// its requests counted on, to drain ([`LiveRelease::drained`]) before the app stops.
    pub fn unlisten_app(&self, netns: &Path, address: Ipv4Addr) -> Option<Arc<LiveRelease>> {
        let listener = self
            .app_listeners
            .listeners()
            .remove(&(netns.to_path_buf(), address))?;
        tracing::info!(%address, netns = %netns.display(), "no longer listening on an app's relationship address");
        Some(listener.close())
    }

    /// The addresses the router listens on in the namespace at `netns`, sorted.
    pub fn app_addresses(&self, netns: &Path) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .app_listeners
            .listeners()
            .keys()
            .filter(|(ns, _)| ns == netns)
            .map(|(_, a)| *a)
            .collect();
        out.sort();
        out
    }

    /// Accept on an app listener until told to stop; each connection goes to a worker.
    async fn accept_app(
        self: Arc<Self>,
        listener: TcpListener,
        entry: Arc<HostEntry>,
        mut stopped: oneshot::Receiver<()>,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let router = Arc::clone(&self);
                    let entry = Arc::clone(&entry);
                    // Waiting for a place under the cap (or for the workers) holds this
                    // connection only, not the accepting.
                    tokio::spawn(router.hand_to_worker(stream, peer, entry));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accepting on an app's relationship address failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Give an accepted connection to one of the HTTP listener's workers, once it has a
    /// place under the cap on client connections; once the HTTP listener stopped, serve
    /// it here ([`Router::serve_alone`]).
    async fn hand_to_worker(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        entry: Arc<HostEntry>,
    ) {
        let deadline = tokio::time::Instant::now() + INTAKE_WAIT;
        let places = loop {
            if let Some(intake) = self.app_listeners.intake().as_ref() {
                break Arc::clone(&intake.places);
            }
            if self.app_listeners.stopped() {
                return self.serve_alone(stream, peer, entry).await;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%peer, "no HTTP worker took a connection to an app's relationship address");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Ok(place) = places.acquire_owned().await else {
            return;
        };
        let unsent = {
            let mut intake = self.app_listeners.intake();
            match intake.as_mut() {
                // The HTTP listener stopped meanwhile.
                None => Some(stream),
                Some(intake) => {
                    intake.next = (intake.next + 1) % intake.queues.len().max(1);
                    match intake.queues.get(intake.next) {
                        Some(queue) => {
                            if queue
                                .send((stream.into_std(), peer, place, Some(entry.clone())))
                                .is_err()
                            {
                                tracing::error!("a router worker is gone; connection dropped");
                            }
                            None
                        }
                        None => return,
                    }
                }
            }
        };
        if let Some(stream) = unsent {
            self.serve_alone(stream, peer, entry).await;
        }
    }

    /// Serve a connection to an app's relationship address on this task, without the
    /// HTTP listener's workers, which stopped: in a graceful upgrade a deploy still
    /// running in the old server makes its new release's listeners after that, and its
    /// deploy hook and health check call them before the new server routes the release
    /// (then both servers listen there, each serving what it accepts, until the old one
    /// exits). One request per connection (`connection: close`), so that none stays open
    /// when the old server exits.
    async fn serve_alone(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        entry: Arc<HostEntry>,
    ) {
        let _ = stream.set_nodelay(true);
        let mut client = proxy::Client::new(peer);
        client.fixed = Some(entry);
        let client = Arc::new(client);
        let service = hyper::service::service_fn(move |req| {
            let (router, client) = (Arc::clone(&self), Arc::clone(&client));
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(&router, &client, req).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades()
            .await;
        if let Err(err) = served {
            tracing::debug!(%peer, error = %err, "connection to an app's relationship address ended with an error");
        }
    }
}
