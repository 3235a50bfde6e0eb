//! Router settings.

use std::time::Duration;

/// Timeouts of the router.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// How long to wait for a TCP connection to an upstream (default 5 s); then 502.
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response headers once the request was sent
    /// (default 60 s; `None`: wait forever); then 504. Bodies are never time-limited.
    pub request_timeout: Option<Duration>,
    /// After `serve`'s shutdown future resolved: how long in-flight requests may take to
    /// finish before their connections are dropped (default 30 s).
    pub drain_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(60)),
            drain_timeout: Duration::from_secs(30),
        }
    }
}
