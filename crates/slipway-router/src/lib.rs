//! The Slipway HTTP router: a reverse proxy from the `Host` header and the path to an
//! environment's rule, and on to one app of the environment's live release, listening on
//! `127.0.0.1:PORT` inside the environment's network namespace.
//!
//! - Routes of an environment ([`EnvRoutes`]): rules host + path prefix -> app or
//!   redirect; the longest matching prefix of a host wins.
//! - The route table is one immutable value swapped atomically ([`Router::switch`]);
//!   reading it takes no lock.
//! - Switching loses no request: requests in flight on the old release finish there (a
//!   [`LiveRelease`] counts them until the response body is sent; [`LiveRelease::drained`]
//!   waits for zero), new requests go to the new release. [`Router::hold`] holds new
//!   requests of an environment (bounded) while a switch must look atomic.
//! - Upstream connections are HTTP/1.1 over TCP or, for an app with
//!   `socket_family: unix`, its unix socket (one client code for both), kept alive in a
//!   pool per app of each release;
//!   a retired release's connections close after their current request. Sockets into a
//!   network namespace are made by one kept thread per namespace (no per-request cost).
//! - Clients speak HTTP/1.1 (keep-alive, pipelining) or h2c; HTTP/1.1 upgrades (WebSocket)
//!   are passed through and closed by [`LiveRelease::close_upgrades`] at the drain timeout.
//!   The common request (GET or HEAD without a body) is served by the router's own
//!   HTTP/1.1 path (over TCP, or TLS when ALPN did not choose h2), which passes heads
//!   through as bytes; the first other request of a connection hands it to hyper.
//! - At most [`RouterConfig::max_client_connections`] client connections are open at once;
//!   beyond, new ones wait in the listening socket's backlog until one closes.
//! - Apps with `web.locations` ([`Site`]): the router serves their static files itself,
//!   from the release's unpacked slug, before anything goes to the app (longest location
//!   prefix, rules by regular expression, passthru; files opened beneath the root only).
//! - Router answers: a head with two `Host` fields or a bare-LF line end 400, unknown
//!   host 404, first deploy in progress 503 + `Retry-After: 5`, upstream unreachable 502,
//!   upstream headers too slow 504; short plain text.
//! - ACME (`acme.rs`, cargo feature `acme`: `serve --acme-directory`): certificates ordered for `https://`
//!   hosts, the HTTP-01 challenge answered on plain HTTP before anything else, or
//!   TLS-ALPN-01 (`--acme-challenge tls-alpn-01`) on the HTTPS listener; DNS-01 is a
//!   seam ([`DnsChallengeRecords`]) with no implementation.
//! - An app's relationship address ([`Router::listen_app`]): the router listens on
//!   `ADDRESS:80` inside the environment's network namespace and answers there with the
//!   app's web layer (locations, static files, FastCGI, its process), as a route to it.
//! - One host may be the router's own site, the web console ([`Router::set_console`]):
//!   a host comparison on each request, before the route table.

#![warn(missing_docs)]

#[cfg(feature = "acme")]
mod acme;
mod acme_challenges;
mod app_listener;
mod body;
mod chunked;
mod client_stream;
mod config;
mod console;
mod fastcgi;
mod fastcgi_h1;
mod file_body;
mod file_cache;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod gzip_cache;
mod gzip_store;
mod h1;
mod headers;
mod locations;
mod metrics;
mod netns;
mod pool;
mod probe;
mod proxy;
mod release;
mod request_body;
mod router;
mod routes;
mod sendfile;
mod server;
mod site;
mod table;
#[cfg(test)]
mod test_client;
mod tls;
mod upstream;
mod upstream_stream;

#[cfg(feature = "acme")]
pub use acme::{
    Acme, AcmeCertificates, AcmeError, AcmeSettings, ChallengeKind, DnsChallengeRecords,
    UnknownChallenge, FIRST_RETRY, LAST_RETRY, LOOK_EVERY, RENEW_AT,
};
pub use acme_challenges::{Challenges, ACME_TLS_ALPN, CHALLENGE_PATH};
pub use app_listener::{ListenError, APP_LISTENER_PORT};
pub use config::{
    RouterConfig, DEFAULT_GZIP_STORE_BYTES, DEFAULT_MAX_CLIENT_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BODY, MAX_DEFAULT_WORKERS,
};
pub use console::{ConsoleBody, ConsoleFuture, ConsoleSite};
pub use gate::Hold;
pub use locations::MAX_RULE_REGEX_SIZE;
pub use metrics::{serve_metrics, RouterCollector, LATENCY_BUCKETS, ROUTER_ENVIRONMENT};
pub use netns::{connect, forget_netns, listen_in, netns_threads};
pub use probe::{probe_fastcgi, probe_fastcgi_unix, probe_http, probe_http_unix, ProbeError};
pub use release::LiveRelease;
pub use router::Router;
pub use routes::{EnvRoutes, RouteAction, RouteError, RouteRule, RouteScheme, Upstream};
pub use site::{Expires, Location, LocationRule, Passthru, Site, SiteMount};
pub use table::normalize_host;
pub use tls::{CertificateSource, Certificates, LocalCa, TlsError, RECHECK};
