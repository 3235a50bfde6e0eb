//! Accepting client connections: HTTP/1.1 with keep-alive and h2c, graceful stop.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::proxy;
use crate::router::Router;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Router {
    /// Serve HTTP/1.1 (keep-alive) and h2c on `listener` until `shutdown` resolves; then
    /// stop accepting, close idle connections, and let in-flight requests finish for up to
    /// `drain_timeout` before dropping what is left.
    ///
    /// Errors accepting one connection (e.g. out of file descriptors) are logged and the
    /// loop goes on; the function returns `Ok(())` after shutdown.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);

        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "HTTP router listening");
        }
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let router = Arc::clone(self);
                        let builder = builder.clone();
                        let mut stop = stop_rx.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| {
                                let router = Arc::clone(&router);
                                async move { Ok::<_, Infallible>(proxy::handle(&router, peer, req).await) }
                            });
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            tokio::pin!(conn);
                            let result = tokio::select! {
                                result = conn.as_mut() => result,
                                _ = stop.changed() => {
                                    conn.as_mut().graceful_shutdown();
                                    conn.await
                                }
                            };
                            if let Err(err) = result {
                                tracing::debug!(%peer, error = %err, "client connection ended with an error");
                            }
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(joined) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(err) = joined {
                        tracing::error!(error = %err, "client connection task failed");
                    }
                }
            }
        }

        drop(listener);
        let _ = stop_tx.send(true);
        let open = connections.len();
        tracing::info!(open, "HTTP router stops accepting; draining connections");
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
        Ok(())
    }
}
