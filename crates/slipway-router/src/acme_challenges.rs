//! The answers to ACME challenges in progress; `acme.rs` puts and removes them.
//!
//! - HTTP-01 (RFC 8555 section 8.3): the router answers
//!   `GET /.well-known/acme-challenge/TOKEN` on plain HTTP with the token's key
//!   authorization, for any host, before the console and the route table
//!   ([`crate::Router::answer_acme_challenges`]).
//! - TLS-ALPN-01 (RFC 8737): the HTTPS listener answers a handshake that offers the
//!   [`ACME_TLS_ALPN`] protocol with the host's challenge certificate
//!   ([`Challenges::alpn_certificate`], asked through
//!   [`crate::CertificateSource::challenge_certificate`]) and then closes the connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::sign::CertifiedKey;

/// The path prefix of HTTP-01 challenge requests.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737 section 6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The answers to challenges in progress: HTTP-01 token -> key authorization, and
/// TLS-ALPN-01 host -> its challenge certificate.
#[derive(Default)]
pub struct Challenges {
    tokens: RwLock<HashMap<String, String>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for Challenges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenges").finish_non_exhaustive()
    }
}

impl Challenges {
    /// The key authorization to answer a plain HTTP request for `path`, if it is the
    /// challenge path of a token being validated.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(CHALLENGE_PATH)?;
        if token.is_empty() {
            return None;
        }
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.get(token).cloned()
    }

    /// Answer `token` with `key_authorization` until it is removed.
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    pub(crate) fn insert(&self, token: &str, key_authorization: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        tokens.insert(token.to_string(), key_authorization.to_string());
    }

    /// Stop answering `token`.
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    pub(crate) fn remove(&self, token: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        tokens.remove(token);
    }

    /// The TLS-ALPN-01 challenge certificate of `host` while its validation is in
    /// progress.
    pub fn alpn_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let alpn = self.alpn.read().unwrap_or_else(|p| p.into_inner());
        alpn.get(host).cloned()
    }

    /// Answer TLS-ALPN-01 handshakes for `host` with `certificate` until it is removed.
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    pub(crate) fn insert_alpn(&self, host: &str, certificate: Arc<CertifiedKey>) {
        let mut alpn = self.alpn.write().unwrap_or_else(|p| p.into_inner());
        alpn.insert(host.to_string(), certificate);
    }

    /// Stop answering TLS-ALPN-01 handshakes for `host`.
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    pub(crate) fn remove_alpn(&self, host: &str) {
        let mut alpn = self.alpn.write().unwrap_or_else(|p| p.into_inner());
        alpn.remove(host);
    }
}

/// Whether a TLS client hello offering `protocols` (ALPN) is a TLS-ALPN-01 validation.
pub(crate) fn is_alpn_validation<'a>(protocols: Option<impl Iterator<Item = &'a [u8]>>) -> bool {
    protocols.is_some_and(|mut p| p.any(|proto| proto == ACME_TLS_ALPN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_in_progress_are_answered() {
        let c = Challenges::default();
        c.insert("tok-1", "tok-1.thumb");
        assert_eq!(
            c.answer("/.well-known/acme-challenge/tok-1").as_deref(),
            Some("tok-1.thumb")
        );
        assert_eq!(c.answer("/.well-known/acme-challenge/tok-2"), None);
        assert_eq!(c.answer("/.well-known/acme-challenge/"), None);
        assert_eq!(c.answer("/tok-1"), None);
        c.remove("tok-1");
        assert_eq!(c.answer("/.well-known/acme-challenge/tok-1"), None);
    }
}
