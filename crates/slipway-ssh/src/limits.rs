//! Limits of the SSH endpoint, with their defaults and environment variables.
//!
//! | limit | default | variable |
//! |---|---|---|
//! | idle timeout: a connection with no traffic either way is closed | 600 s | `SLIPWAY_SSH_IDLE_TIMEOUT` (seconds) |
//! | sessions (connections) open at once per key | 16 | `SLIPWAY_MAX_SESSIONS_PER_KEY` |
//! | channels (commands) per connection | 10 | - |
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
}

impl Default for SshLimits {
    fn default() -> Self {
        SshLimits {
            idle_timeout: Duration::from_secs(600),
            max_sessions_per_key: 16,
        }
    }
}

impl SshLimits {
    /// The defaults, overridden by `SLIPWAY_SSH_IDLE_TIMEOUT` and `SLIPWAY_MAX_SESSIONS_PER_KEY`
    /// where they hold a positive integer.
    pub fn from_env() -> SshLimits {
        let mut limits = SshLimits::default();
        if let Some(v) = slipway_git::receive::env_number("SLIPWAY_SSH_IDLE_TIMEOUT") {
            limits.idle_timeout = Duration::from_secs(v);
        }
        if let Some(v) = slipway_git::receive::env_number("SLIPWAY_MAX_SESSIONS_PER_KEY") {
            limits.max_sessions_per_key = usize::try_from(v).unwrap_or(usize::MAX);
        }
        limits
    }
}

/// Counts open connections per key.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionCounter {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    counter: SessionCounter,
    key: String,
}

impl SessionCounter {
    /// Counts a connection of `key`; `None` (nothing counted) if `max` are open already.
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
