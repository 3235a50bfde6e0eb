//! Router settings.

use std::path::PathBuf;
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
    /// stay on one thread (default `None`: one per CPU the process may run on, at most
    /// [`MAX_DEFAULT_WORKERS`]; see [`RouterConfig::worker_count`]).
    pub workers: Option<usize>,
    /// Client connections open at once, all workers together (default
    /// [`DEFAULT_MAX_CLIENT_CONNECTIONS`]; at least 1). At the cap the router accepts no
    /// new connection until one closes: new clients wait in the listening socket's
    /// backlog instead of taking file descriptors and memory without bound.
    pub max_client_connections: usize,
    /// Whether static files of slug roots are answered through the open-file cache
    /// (nginx's `open_file_cache`; default on, see [`crate::Site`]). Off: each request
    /// opens its file, as a comparison for benchmarks.
    pub open_file_cache: bool,
    /// Largest request body a PHP script is sent (on both of the router's paths), or an
    /// app is sent on hyper's path (HTTP/2, connections handed to hyper), like nginx's
    /// `client_max_body_size` (default [`DEFAULT_MAX_REQUEST_BODY`]): a larger
    /// `Content-Length` is answered 413 before any of it is read (no `100 Continue`), a
    /// body without one 413 once it grows past it.
    pub max_request_body: u64,
    /// How long the router waits for the next bytes of a request body it is reading for a
    /// PHP script (on both paths), like nginx's `client_body_timeout` (default 60 s); then
    /// 408 (and an HTTP/1.1 connection closes). PHP-FPM is not connected to before the
    /// body is read whole.
    pub request_body_timeout: Duration,
    /// The folder of gzipped copies of static files (nginx's `gzip_static`, see
    /// docs/ARCHITECTURE.md "Static files"): text files of mounts and files over 1 MiB
    /// are compressed once per version instead of at every request. `None` (the
    /// default): no copies, such files are compressed at each request. `slipway serve`
    /// sets `DATA/router/gzip`; the folder is emptied when the router starts.
    pub gzip_dir: Option<PathBuf>,
    /// The most bytes of gzipped copies kept in `gzip_dir` (default
    /// [`DEFAULT_GZIP_STORE_BYTES`]); the least recently used go first.
    pub gzip_dir_max_bytes: u64,
    /// The port of the HTTPS listener, when there is one: a request over plain HTTP whose
    /// route is written only `https://` is then redirected there (301, same host, path and
    /// query), as Platform.sh redirects HTTP to HTTPS for routes defined with HTTPS only.
    /// `None` (the default; `serve` without `--https-listen`): such routes are served over
    /// plain HTTP too, there being nothing to redirect to.
    pub https_redirect_port: Option<u16>,
}

/// The default bound on the gzipped copies of static files: 256 MiB.
pub const DEFAULT_GZIP_STORE_BYTES: u64 = crate::gzip_store::DEFAULT_GZIP_STORE_BYTES;

/// The default cap on a request body for PHP: 250 MiB, room for large uploads (the app's
/// own `upload_max_filesize`/`post_max_size` are its business).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 250 * 1024 * 1024;

/// The default cap on open client connections: each takes a file descriptor (and one more
/// for an upstream connection while it has a request there) and some memory.
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 8192;

/// The most worker threads the router runs by default, however many CPUs the host has
/// (`workers` may set up to 256).
pub const MAX_DEFAULT_WORKERS: usize = 16;

impl RouterConfig {
    /// The number of worker threads `serve` runs: `workers` if set (1 to 256), else one
    /// per CPU the process may run on (`available_parallelism`: its CPU affinity and cgroup
    /// quota), at most [`MAX_DEFAULT_WORKERS`], like nginx's `worker_processes auto`.
    ///
    /// A worker with nothing to do sleeps in `epoll_wait` and takes no CPU from the apps;
    /// a busy one can use a whole CPU, and TLS and static files need more than one on a
    /// busy host (docs/BENCHMARKS.md, session 9: with one worker against nginx's two the
    /// router fell behind at 64 connections; at equal counts it was at or above nginx in
    /// the median of four measurements, over TLS too). The cap bounds what every worker
    /// has of its own: a slot of each app's upstream pool (so idle kept-alive connections
    /// to an app, up to `pool_max_idle` per worker) and a runtime.
    /// See docs/ARCHITECTURE.md ("Router workers").
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| {
                default_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
            })
            .clamp(1, 256)
    }
}

/// The default worker count of a process that may run on `cpus` CPUs.
fn default_workers(cpus: usize) -> usize {
    cpus.clamp(1, MAX_DEFAULT_WORKERS)
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
            open_file_cache: true,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            request_body_timeout: Duration::from_secs(60),
            gzip_dir: None,
            gzip_dir_max_bytes: DEFAULT_GZIP_STORE_BYTES,
            https_redirect_port: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_cpu_up_to_the_cap_unless_set() {
        assert_eq!(default_workers(0), 1);
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 2);
        assert_eq!(default_workers(3), 3);
        assert_eq!(default_workers(16), 16);
        assert_eq!(default_workers(64), MAX_DEFAULT_WORKERS);
        let default = RouterConfig::default().worker_count();
        assert!((1..=MAX_DEFAULT_WORKERS).contains(&default), "{default}");
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
        let many = RouterConfig {
            workers: Some(200),
            ..RouterConfig::default()
        };
        assert_eq!(
            many.worker_count(),
            200,
            "an explicit count is not capped at 16"
        );
    }
}
