//! The environment's variables (`var set`) on their way into containers. Their values can
//! be secrets, so they are kept in the state only: never in a release's spec, its OCI image
//! config in the archive, or a bundle's `config.json`. They are read when a container starts
//! or a command runs in one (deploy hooks, shells) and handed to the runtime, which passes
//! them to runc without leaving them on disk or in a command line.

use std::collections::BTreeMap;

use slipway_state::StateError;

use crate::environment::is_reserved_variable;
use crate::Platform;

/// What a container or command of an app sees: the release's own variables (the platform's
/// and the config's, from the release spec), and the environment's variables as set now,
/// which win over the config's but never over the platform's own names.
pub fn with_environment_variables(
    platform: &Platform,
    project: &str,
    env: &str,
    release_env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, StateError> {
    let set = platform.state().variables(project, env)?;
    Ok(merge(release_env, set))
}

fn merge(
    release_env: &BTreeMap<String, String>,
    set: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all = release_env.clone();
    for (k, v) in set {
        if !is_reserved_variable(&k) {
            all.insert(k, v);
        }
    }
    all.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_variables_win_over_the_config_never_over_the_platform() {
        let release: BTreeMap<String, String> = [("MODE", "config"), ("PORT", "10001")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let set = vec![
            ("MODE".to_string(), "set".to_string()),
            ("PORT".to_string(), "1".to_string()),
            ("TOKEN".to_string(), "t".to_string()),
        ];
        let env: BTreeMap<_, _> = merge(&release, set).into_iter().collect();
        assert_eq!(env["MODE"], "set");
        assert_eq!(env["PORT"], "10001");
        assert_eq!(env["TOKEN"], "t");
        assert_eq!(env.len(), 3, "each name once");
    }
}
