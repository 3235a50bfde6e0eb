//! Accepting client connections: HTTP/1.1 with keep-alive and h2c, graceful stop.
//!
//! `serve` runs one worker thread per CPU (configurable), each with its own
//! single-threaded tokio runtime, like nginx's worker processes; connections are accepted
//! on the caller's runtime and handed to the workers in turn. A client connection, its
//! requests and the upstream connections they use stay on one thread, so a request costs
//! no cross-thread wake-up.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::pool::set_worker;
use crate::proxy;
use crate::router::Router;

/// An accepted client connection on its way to a worker.
type Accepted = (std::io::Result<std::net::TcpStream>, std::net::SocketAddr);

impl Router {
    /// Serve HTTP/1.1 (keep-alive) and h2c on `listener` until `shutdown` resolves; then
    /// stop accepting, close idle connections, and let in-flight requests finish for up to
    /// `drain_timeout` before dropping what is left.
    ///
    /// Errors accepting one connection (e.g. out of file descriptors) are logged and the
    /// loop goes on; the function returns `Ok(())` after shutdown, and an error only if
    /// no worker thread could start.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let workers = self.config.worker_count();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, workers, "HTTP router listening");
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut queues = Vec::new();
        let mut done = Vec::new();
        for index in 0..workers {
            let router = Arc::clone(self);
            let stop = stop_rx.clone();
            let (queue_tx, queue_rx) = mpsc::unbounded_channel::<Accepted>();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let started = std::thread::Builder::new()
                .name(format!("router-{index}"))
                .spawn(move || {
                    set_worker(index);
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(router.worker(queue_rx, stop)),
                        Err(err) => tracing::error!(error = %err, "router worker runtime"),
                    }
                    let _ = done_tx.send(());
                });
            match started {
                Ok(_) => {
                    queues.push(queue_tx);
                    done.push(done_rx);
                }
                Err(err) if queues.is_empty() => return Err(err),
                Err(err) => tracing::warn!(error = %err, "starting a router worker thread"),
            }
        }
        // Accept here and hand connections to the workers in turn: an even spread, which
        // a shared accepting socket does not give.
        tokio::pin!(shutdown);
        let mut next = 0usize;
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        next = (next + 1) % queues.len();
                        if queues[next].send((stream.into_std(), peer)).is_err() {
                            tracing::error!(worker = next, "a router worker is gone; connection dropped");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(queues);
        for worker in done {
            let _ = worker.await;
        }
        Ok(())
    }

    /// One worker: serve the connections handed to it, then drain.
    async fn worker(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Accepted>,
        mut stop_rx: watch::Receiver<bool>,
    ) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.client_idle_timeout)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop_rx) => break,
                accepted = queue.recv() => {
                    let Some((stream, peer)) = accepted else { break };
                    let stream = match stream.and_then(|s| {
                        s.set_nonblocking(true)?;
                        tokio::net::TcpStream::from_std(s)
                    }) {
                        Ok(stream) => stream,
                        Err(err) => {
                            tracing::warn!(error = %err, "taking over a client connection failed");
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let router = Arc::clone(&self);
                    let builder = builder.clone();
                    let mut stop = stop_rx.clone();
                    connections.spawn(async move {
                        let client = Arc::new(proxy::Client::new(peer));
                        let service = service_fn(move |req| {
                            let router = Arc::clone(&router);
                            let client = Arc::clone(&client);
                            async move { Ok::<_, Infallible>(proxy::handle(&router, &client, req).await) }
                        });
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            result = conn.as_mut() => result,
                            () = stopped(&mut stop) => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(err) = result {
                            tracing::debug!(%peer, error = %err, "client connection ended with an error");
                        }
                    });
                }
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(error = %err, "client connection task failed");
                    }
                }
            }
        }

        let open = connections.len();
        tracing::debug!(open, "HTTP router worker draining connections");
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = connections.len(),
                "drain timeout passed; dropping connections"
            );
            connections.shutdown().await;
        }
    }
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
