//! The Slipway HTTP router: a reverse proxy from the `Host` header to an environment and
//! on to that environment's live release, an app listening on `127.0.0.1:PORT` inside the
//! environment's network namespace.
//!
//! - The route table is one immutable value swapped atomically ([`Router::switch`]);
//!   reading it takes no lock.
//! - Switching loses no request: requests in flight on the old release finish there (each
//!   [`Route`] counts them until the response body is sent; [`Route::drained`] waits for
//!   zero), new requests go to the new release.
//! - Clients speak HTTP/1.1 (keep-alive) or h2c; upstreams are spoken to in HTTP/1.1, one
//!   connection per request. HTTP/1.1 upgrades (WebSocket) are passed through.
//! - Router answers: unknown host 404, first deploy in progress 503 + `Retry-After: 5`,
//!   upstream unreachable 502, upstream headers too slow 504; short plain text.

mod body;
mod config;
mod headers;
mod netns;
mod probe;
mod proxy;
mod route;
mod router;
mod server;
mod table;

pub use config::RouterConfig;
pub use netns::{connect, forget_netns, netns_threads};
pub use probe::{probe_http, ProbeError};
pub use route::{Route, Upstream};
pub use router::Router;
