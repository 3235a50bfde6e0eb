//! Router settings.

use std::time::Duration;

/// Timeouts and limits of the router.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// How long to wait for a TCP connection to an upstream (default 5 s); then 502.
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response headers once the request was sent
    /// (default 60 s; `None`: wait forever); then 504. Bodies are never time-limited.
    pub request_timeout: Option<Duration>,
    /// How long a client connection may go with no request open and none started before
    /// the router closes it (default 60 s; checked every quarter of it, so the close comes
    /// between 1 and 1.25 times this): a kept-alive connection left idle, or a client too
    /// slow to send its headers. A request in progress keeps its connection, however long.
    pub client_idle_timeout: Duration,
    /// While an environment's routes are being switched, how long a new request for it
    /// may be held before it goes on with the routes as they are (default 5 s).
    pub hold_timeout: Duration,
    /// After `serve`'s shutdown future resolved: how long in-flight requests may take to
    /// finish before their connections are dropped (default 30 s).
    pub drain_timeout: Duration,
    /// Idle kept-alive connections kept per upstream (default 256).
    pub pool_max_idle: usize,
    /// An upstream connection idle longer than this is not reused (default 1 s: below the
    /// keep-alive timeout of common app servers, e.g. gunicorn's 2 s and Node's 5 s, so
    /// that the app does not close it just as the router reuses it).
    pub pool_idle_timeout: Duration,
    /// Worker threads serving clients, each with its own single-threaded runtime and its
    /// own share of every connection pool, so that a request and its upstream connection
    /// stay on one thread (default `None`: one per two CPUs, at least one; see
    /// [`RouterConfig::worker_count`]).
    pub workers: Option<usize>,
    /// Client connections open at once, all workers together (default
    /// [`DEFAULT_MAX_CLIENT_CONNECTIONS`]; at least 1). At the cap the router accepts no
    /// new connection until one closes: new clients wait in the listening socket's
    /// backlog instead of taking file descriptors and memory without bound.
    pub max_client_connections: usize,
}

/// The default cap on open client connections: each takes a file descriptor (and one more
/// for an upstream connection while it has a request there) and some memory.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 8192;

impl RouterConfig {
    /// The number of worker threads `serve` runs: `workers` if set, else one per two CPUs
    /// (rounded up), between 1 and 256.
    ///
    /// Not one per CPU, as a dedicated proxy would run: the router always shares its host
    /// with the apps it routes to, and it is a small part of a request's work (about 13 µs
    /// of CPU, kernel included). A worker per CPU competes with the apps for every CPU
    /// and sleeps and wakes more often, each time with fewer events. On the 2-CPU benchmark
    /// machine one worker served about 8 % more requests per second than two, with a 20 %
    /// lower p99 (docs/BENCHMARKS.md). At ~13 µs per request, one worker with a CPU to
    /// itself could serve about 75,000 requests per second.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| {
                default_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
            })
            .clamp(1, 256)
    }
}

/// The default worker count on a host with `cpus` CPUs.
fn default_workers(cpus: usize) -> usize {
    cpus.div_ceil(2)
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(60)),
            client_idle_timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            pool_max_idle: 256,
            pool_idle_timeout: Duration::from_secs(1),
            workers: None,
            max_client_connections: DEFAULT_MAX_CLIENT_CONNECTIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_two_cpus_unless_set() {
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(3), 2);
        assert_eq!(default_workers(16), 8);
        let set = RouterConfig {
            workers: Some(3),
            ..RouterConfig::default()
        };
        assert_eq!(set.worker_count(), 3);
        let zero = RouterConfig {
            workers: Some(0),
            ..RouterConfig::default()
        };
        assert_eq!(zero.worker_count(), 1);
    }
}
