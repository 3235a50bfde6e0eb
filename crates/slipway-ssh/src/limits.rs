//! Limits of the SSH endpoint, with their defaults and environment variables.
//!
//! | limit | default | variable |
//! |---|---|---|
//! | idle timeout: a connection with no traffic either way is closed | 600 s | `SLIPWAY_SSH_IDLE_TIMEOUT` (seconds) |
//! | sessions (connections) open at once per key | 16 | `SLIPWAY_MAX_SESSIONS_PER_KEY` |
//! | channels (commands, shells) open at once per connection | 10 | `SLIPWAY_SSH_MAX_CHANNELS` |
//! | container shells running at once per key | 8 | `SLIPWAY_SSH_MAX_SHELLS_PER_KEY` |
//! | login grace: a connection not authenticated by then is closed | 30 s | `SLIPWAY_SSH_LOGIN_GRACE` (seconds) |
//! | unauthenticated connections at once | 100 | `SLIPWAY_SSH_MAX_UNAUTHENTICATED` |
//! | unauthenticated connections at once per source address | 10 | `SLIPWAY_SSH_MAX_UNAUTHENTICATED_PER_ADDRESS` |
//!
//! The limits of a push (pack size, object size, refs per push) are
//! [`slipway_git::receive::Limits`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Limits of the SSH endpoint.
#[derive(Debug, Clone)]
pub struct SshLimits {
    /// A connection without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once with the same key; more are refused with a message.
    pub max_sessions_per_key: usize,
    /// Most channels open at once on one connection (waiting for a command or running one);
    /// more are refused when opened.
    pub max_channels_per_connection: usize,
    /// Most shells (or commands) in containers running at once with the same key.
    pub max_shells_per_key: usize,
    /// A connection that has not authenticated this long after it was accepted is closed.
    pub login_grace: Duration,
    /// Most connections not yet authenticated at once; more are closed when accepted.
    pub max_unauthenticated: usize,
    /// Most connections not yet authenticated at once from one source address.
    pub max_unauthenticated_per_address: usize,
}

impl Default for SshLimits {
    fn default() -> Self {
        SshLimits {
            idle_timeout: Duration::from_secs(600),
            max_sessions_per_key: 16,
            max_channels_per_connection: 10,
            max_shells_per_key: 8,
            login_grace: Duration::from_secs(30),
            max_unauthenticated: 100,
            max_unauthenticated_per_address: 10,
        }
    }
}

impl SshLimits {
    /// The defaults, overridden by the environment variables of the table above where they
    /// hold a positive integer.
    pub fn from_env() -> SshLimits {
        use slipway_git::receive::env_number;
        let count = |name: &str, limit: &mut usize| {
            if let Some(v) = env_number(name) {
                *limit = usize::try_from(v).unwrap_or(usize::MAX);
            }
        };
        let seconds = |name: &str, limit: &mut Duration| {
            if let Some(v) = env_number(name) {
                *limit = Duration::from_secs(v);
            }
        };
        let mut limits = SshLimits::default();
        seconds("SLIPWAY_SSH_IDLE_TIMEOUT", &mut limits.idle_timeout);
        seconds("SLIPWAY_SSH_LOGIN_GRACE", &mut limits.login_grace);
        count(
            "SLIPWAY_MAX_SESSIONS_PER_KEY",
            &mut limits.max_sessions_per_key,
        );
        count(
            "SLIPWAY_SSH_MAX_CHANNELS",
            &mut limits.max_channels_per_connection,
        );
        count(
            "SLIPWAY_SSH_MAX_SHELLS_PER_KEY",
            &mut limits.max_shells_per_key,
        );
        count(
            "SLIPWAY_SSH_MAX_UNAUTHENTICATED",
            &mut limits.max_unauthenticated,
        );
        count(
            "SLIPWAY_SSH_MAX_UNAUTHENTICATED_PER_ADDRESS",
            &mut limits.max_unauthenticated_per_address,
        );
        limits
    }
}

/// Counts things open at once per key (connections or shells per public key, unauthenticated
/// connections per source address).
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionCounter {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One counted thing; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    counter: SessionCounter,
    key: String,
}

impl SessionCounter {
    /// Counts one more for `key`; `None` (nothing counted) if `max` are open already.
    pub(crate) fn acquire(&self, key: &str, max: usize) -> Option<SessionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            counter: self.clone(),
            key: key.to_string(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_releases() {
        let c = SessionCounter::default();
        let a1 = c.acquire("a", 2).expect("first");
        let _a2 = c.acquire("a", 2).expect("second");
        assert!(c.acquire("a", 2).is_none(), "third is over the limit");
        let _b = c.acquire("b", 2).expect("other keys are counted apart");
        drop(a1);
        assert!(c.acquire("a", 2).is_some(), "a slot is free again");
    }
}
