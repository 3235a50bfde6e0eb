//! What a deploy says about the environment's variables (`var set|unset`, the console's
//! variables page): a change made without a redeploy applies from the next deploy, and
//! that deploy's activity log names the variables changed since the live release
//! ("variables changed since release 3: MODE (changed), TOKEN (new)"), or, on a first
//! deploy, those set before it. Names only: values, sensitive or not, never reach a log.
//!
//! Each release records the variables it started with as name -> digest
//! ([`slipway_state::State::record_release_variables`]); the digest is a SHA-256 of the
//! name and value, which tells a change apart without keeping the value outside the
//! variables table (where it is anyway).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};
use slipway_state::{Release, StateError};

use crate::environment::is_reserved_variable;
use crate::Platform;

/// How a variable differs from the live release's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Set now, not when the live release started.
    New,
    /// Set then and now, to another value.
    Changed,
    /// Set then, unset now.
    Removed,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Removed => "removed",
        }
    }
}

/// The environment's variables as a release starting now gets them: name -> digest
/// (platform names, which never reach the apps, left out).
pub fn current(
    platform: &Platform,
    project: &str,
    env: &str,
) -> Result<BTreeMap<String, String>, StateError> {
    Ok(digests(platform.state().variables(project, env)?))
}

fn digests(vars: Vec<(String, String)>) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(name, _)| !is_reserved_variable(name))
        .map(|(name, value)| {
            let mut h = Sha256::new();
            h.update(name.as_bytes());
            h.update([0]);
            h.update(value.as_bytes());
            let digest = hex::encode(h.finalize());
            (name, digest)
        })
        .collect()
}

/// The variables that differ between `before` and `now`, by name.
pub fn changes(
    before: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<(String, Change)> {
    let mut out: Vec<(String, Change)> = now
        .iter()
        .filter_map(|(name, digest)| match before.get(name) {
            None => Some((name.clone(), Change::New)),
            Some(d) if d != digest => Some((name.clone(), Change::Changed)),
            Some(_) => None,
        })
        .chain(
            before
                .keys()
                .filter(|name| !now.contains_key(*name))
                .map(|name| (name.clone(), Change::Removed)),
        )
        .collect();
    out.sort();
    out
}

/// The line a deploy of `env` prints about its variables `now`, given the `live` release
/// (None: a first deploy); None when there is nothing to say (no change, or a live
/// release from before variables were recorded).
pub fn note(
    platform: &Platform,
    env: &str,
    live: Option<&Release>,
    now: &BTreeMap<String, String>,
) -> Result<Option<String>, StateError> {
    let Some(live) = live else {
        if now.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = now.keys().map(String::as_str).collect();
        return Ok(Some(format!(
            "variables set on {env} before its first deploy: {}",
            names.join(", ")
        )));
    };
    let Some(before) = platform.state().release_variables(live.id)? else {
        return Ok(None);
    };
    let changed = changes(&before, now);
    if changed.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = changed
        .iter()
        .map(|(name, c)| format!("{name} ({})", c.word()))
        .collect();
    Ok(Some(format!(
        "variables changed since release {}: {}",
        live.number,
        list.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        digests(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn changes_name_new_changed_and_removed_variables_and_no_value() {
        let before = vars(&[("MODE", "fast"), ("OLD", "x"), ("SAME", "s"), ("PORT", "1")]);
        let now = vars(&[("MODE", "slow"), ("NEW", "n"), ("SAME", "s")]);
        assert!(!before.contains_key("PORT"), "platform names are left out");
        assert_eq!(
            changes(&before, &now),
            vec![
                ("MODE".to_string(), Change::Changed),
                ("NEW".to_string(), Change::New),
                ("OLD".to_string(), Change::Removed),
            ]
        );
        assert!(changes(&now, &now).is_empty());
        for digest in now.values() {
            assert_eq!(digest.len(), 64);
            assert!(!digest.contains("slow"));
        }
        // The same value under another name digests differently.
        assert_ne!(vars(&[("A", "v")])["A"], vars(&[("B", "v")])["B"]);
    }
}
