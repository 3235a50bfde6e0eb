//! The answers to ACME HTTP-01 challenges in progress (RFC 8555 section 8.3): the router
//! answers `GET /.well-known/acme-challenge/TOKEN` on plain HTTP with the token's key
//! authorization, for any host, before the console and the route table
//! ([`crate::Router::answer_acme_challenges`]); `acme.rs` puts and removes the tokens.

use std::collections::HashMap;
use std::sync::RwLock;

/// The path prefix of HTTP-01 challenge requests.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// The answers to HTTP-01 challenges in progress: token -> key authorization.
#[derive(Debug, Default)]
pub struct Challenges {
    tokens: RwLock<HashMap<String, String>>,
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
