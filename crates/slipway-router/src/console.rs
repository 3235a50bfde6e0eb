//! A site the router serves itself at one host: the web console (`console.DOMAIN`). The
//! router only compares the request's host with the console's; the console answers the
//! request through [`ConsoleSite`], on whatever runtime it chooses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::body::BoxError;

/// The body of a console answer: a page, or a stream (server-sent events).
pub type ConsoleBody = UnsyncBoxBody<Bytes, BoxError>;

/// A console answer on its way.
pub type ConsoleFuture = Pin<Box<dyn Future<Output = Response<ConsoleBody>> + Send>>;

/// What the router hands the requests of the console's host to.
pub trait ConsoleSite: Send + Sync {
    /// Answer `req`; `https` says whether it came over the HTTPS listener.
    fn serve(&self, req: Request<Incoming>, https: bool) -> ConsoleFuture;
}

/// The console's host and its site, set once ([`crate::Router::set_console`]).
pub(crate) struct Console {
    /// The host, lowercase, without port or trailing dot.
    host: String,
    pub(crate) site: Arc<dyn ConsoleSite>,
}

impl Console {
    pub(crate) fn new(host: &str, site: Arc<dyn ConsoleSite>) -> Console {
        Console {
            host: crate::table::normalize_host(host),
            site,
        }
    }

    /// The console's host, normalized.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Whether `host` as a client sent it (any case, maybe a port or a trailing dot) is
    /// the console's: a comparison, no allocation.
    pub(crate) fn is_for(&self, host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                name
            }
            _ => host,
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        name.eq_ignore_ascii_case(&self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl ConsoleSite for Nothing {
        fn serve(&self, _: Request<Incoming>, _: bool) -> ConsoleFuture {
            Box::pin(async { Response::new(UnsyncBoxBody::default()) })
        }
    }

    #[test]
    fn the_console_host_matches_in_any_case_with_a_port_or_a_trailing_dot() {
        let c = Console::new("console.localhost", Arc::new(Nothing));
        for yes in [
            "console.localhost",
            "Console.LocalHost",
            "console.localhost:8080",
            "console.localhost.",
            "console.localhost.:80",
        ] {
            assert!(c.is_for(yes), "{yes}");
        }
        for no in [
            "main.demo.localhost",
            "console.localhost.evil",
            "xconsole.localhost",
            "console.localhost:x",
            "",
        ] {
            assert!(!c.is_for(no), "{no}");
        }
    }
}
