//! The live SSH connections: who is logged in on each, and a way to end one at once.
//!
//! Each accepted connection keeps a duplicate of its socket here; shutting that socket down
//! wakes and ends the connection's task whatever it waits for (even a client that sends and
//! reads nothing). Used for the login grace time, the server's shutdown, and to close the
//! connections of a user that was removed.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The user a connection authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedIn {
    /// The user's name.
    pub(crate) name: String,
    /// The key used, as stored (`TYPE BASE64`).
    pub(crate) key: String,
}

/// One live connection.
#[derive(Debug)]
pub(crate) struct Live {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// A duplicate of the connection's socket, only ever shut down.
    socket: TcpStream,
    /// Set once the client authenticated.
    user: watch::Sender<Option<LoggedIn>>,
}

impl Live {
    /// Record that the client authenticated as `user`.
    pub(crate) fn logged_in(&self, user: LoggedIn) {
        self.user.send_replace(Some(user));
    }

    /// Resolves once the client authenticated.
    pub(crate) async fn authenticated(&self) {
        let mut rx = self.user.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// End the connection now: its reads see the end and its writes fail.
    pub(crate) fn close(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn user_name(&self) -> Option<String> {
        self.user.borrow().as_ref().map(|u| u.name.clone())
    }

    fn key(&self) -> Option<String> {
        self.user.borrow().as_ref().map(|u| u.key.clone())
    }
}

/// All live connections of the endpoint.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Arc<Live>>>,
}

/// A connection's place in [`Connections`]: removed, and the connection closed, when dropped.
#[derive(Debug)]
pub(crate) struct Registered {
    id: u64,
    live: Arc<Live>,
    all: Arc<Connections>,
}

impl Registered {
    /// The connection.
    pub(crate) fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.live.close();
        self.all.lock().remove(&self.id);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Live>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a connection from `peer`; `socket` is a duplicate of its socket.
    pub(crate) fn add(self: &Arc<Self>, peer: SocketAddr, socket: TcpStream) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(Live {
            peer,
            socket,
            user: watch::Sender::new(None),
        });
        self.lock().insert(id, live.clone());
        Registered {
            id,
            live,
            all: self.clone(),
        }
    }

    /// Close every connection of the user `name`; returns how many were closed.
    pub(crate) fn close_user(&self, name: &str) -> usize {
        self.close_where(|live| live.user_name().as_deref() == Some(name))
    }

    /// Close every authenticated connection whose key no longer belongs to a user (a user
    /// removed with `slipway user rm` while the server runs); returns how many were closed.
    pub(crate) fn close_removed(&self, state: &slipway_state::State) -> usize {
        self.close_where(|live| match live.key() {
            Some(key) => matches!(state.user_by_key(&key), Ok(None)),
            None => false,
        })
    }

    /// Close every connection (the server stops).
    pub(crate) fn close_all(&self) {
        self.close_where(|_| true);
    }

    /// How many connections are open.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    fn close_where(&self, pick: impl Fn(&Live) -> bool) -> usize {
        let all: Vec<Arc<Live>> = self.lock().values().cloned().collect();
        let mut closed = 0;
        for live in all.iter().filter(|l| pick(l)) {
            tracing::info!(peer = %live.peer, user = ?live.user_name(), "closing connection");
            live.close();
            closed += 1;
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (the server's socket, the client's).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (server, client)
    }

    fn ended(client: &mut TcpStream) -> bool {
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .expect("timeout");
        matches!(client.read(&mut [0u8; 16]), Ok(0))
    }

    #[test]
    fn closes_the_connections_of_one_user_and_forgets_ended_ones() {
        let all = Arc::new(Connections::default());
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let (bob_socket, mut bob) = pair();
        let (ann_socket, mut ann) = pair();
        let bob_conn = all.add(peer, bob_socket);
        let ann_conn = all.add(peer, ann_socket);
        for (c, name) in [(&bob_conn, "bob"), (&ann_conn, "ann")] {
            c.live().logged_in(LoggedIn {
                name: name.into(),
                key: format!("key-of-{name}"),
            });
        }
        assert_eq!(all.close_user("bob"), 1);
        assert!(ended(&mut bob), "bob's connection is closed");
        assert!(!ended(&mut ann), "ann's connection stays open");
        assert_eq!(all.count(), 2);
        drop(bob_conn);
        assert_eq!(all.count(), 1, "an ended connection is forgotten");
        drop(ann_conn);
        assert!(
            ended(&mut ann),
            "a dropped registration closes its connection"
        );
        assert_eq!(all.count(), 0);
    }
}
