//! The environment's variables (`var set`) on their way into containers. Their values can
//! be secrets, so they are kept in the state only: never in a release's spec, its OCI image
//! config in the archive, or a bundle's `config.json`. They are read when a container starts
//! or a command runs in one (deploy hooks, shells) and handed to the runtime, which passes
//! them to runc without leaving them on disk or in a command line.

use std::collections::BTreeMap;

use slipway_state::StateError;

use crate::environment::is_reserved_variable;
use crate::Platform;

/// What a container or command of an app sees (its start command, worker, cron, deploy and
/// post_deploy hooks, SSH shell): the release's own variables (the platform's and the
/// config's, from the release spec), the environment's variables as set now, which win
/// over the config's but never over the platform's own names, and the variables that send
/// HTTP(S) through the environment's egress proxy ([`crate::egress::environment_env`]),
/// which win over both.
pub fn with_environment_variables(
    platform: &Platform,
    project: &str,
    env: &str,
    release_env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, StateError> {
    let set = platform.state().variables(project, env)?;
    Ok(merge(release_env, set, platform.settings().egress.ca_env()))
}

/// The release's variables, then those set (`var set`), then the egress proxy's; the host's
/// CA bundle variables (`ca`) where neither the release nor a set variable names them.
fn merge(
    release_env: &BTreeMap<String, String>,
    set: Vec<(String, String)>,
    ca: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let mut all = release_env.clone();
    for (k, v) in set {
        if !is_reserved_variable(&k) {
            all.insert(k, v);
        }
    }
    all.extend(crate::egress::environment_env());
    for (k, v) in ca {
        all.entry(k).or_insert(v);
    }
    all.into_iter().collect()
}

/// A change of one variable (`var set|unset`, the console's variables page).
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Set it to the value; a sensitive value reaches the apps but is never shown again.
    Set {
        /// The value.
        value: &'a str,
        /// Whether it is sensitive.
        sensitive: bool,
    },
    /// Remove it.
    Unset,
}

/// When a changed variable reaches the apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// The environment is live: the caller redeploys it now (`operations::run` with
    /// `Redeploy`, streamed over SSH, a job in the console).
    Now,
    /// The environment exists but runs no release: at its next deploy.
    NextDeploy,
    /// The environment was never deployed: at the branch's first push.
    FirstDeploy,
}

impl Applies {
    /// The word `--json` gives (`applies`).
    pub fn as_str(self) -> &'static str {
        match self {
            Applies::Now => "now",
            Applies::NextDeploy => "next deploy",
            Applies::FirstDeploy => "first deploy",
        }
    }
}

/// Why a variable could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum VariableError {
    /// The user may not change variables there, or the project or environment is not
    /// there (and no environment can have that name).
    #[error(transparent)]
    Check(#[from] crate::access::CheckError),
    /// The name is not one users may set ([`crate::access::settable_variable`]).
    #[error("{0}")]
    Name(String),
    /// `unset` of a variable that is not set.
    #[error("{key} is not set on {env}")]
    NotSet {
        /// The variable.
        key: String,
        /// The environment.
        env: String,
    },
    /// The state database failed.
    #[error("reading the state database: {0}")]
    State(#[from] StateError),
}

impl crate::failure::Failure for VariableError {
    fn kind(&self) -> crate::failure::Kind {
        match self {
            VariableError::Check(e) => e.kind(),
            VariableError::Name(_) => {
                crate::failure::Kind::Refused(crate::failure::Refusal::Invalid)
            }
            VariableError::NotSet { .. } => {
                crate::failure::Kind::Refused(crate::failure::Refusal::NotFound)
            }
            VariableError::State(_) => crate::failure::Kind::Internal,
        }
    }
}

/// Whether `user` may change variable `key` of `env` of `project`
/// ([`crate::access::check_variables`]: also on an environment not deployed yet) and `key`
/// may be set: what `var set|unset` and the console check before asking or changing.
pub fn may_change(
    platform: &Platform,
    user: &slipway_state::User,
    project: &str,
    env: &str,
    key: &str,
) -> Result<(), VariableError> {
    crate::access::check_variables(
        platform,
        user,
        project,
        env,
        crate::access::CHANGE_VARIABLES,
    )?;
    crate::access::settable_variable(key).map_err(VariableError::Name)
}

/// `var set|unset` for `user` (over SSH and in the console alike): [`may_change`], then
/// the change in the state. Ok says when it reaches the apps; [`Applies::Now`] asks the
/// caller to redeploy the live release.
pub fn change(
    platform: &Platform,
    user: &slipway_state::User,
    project: &str,
    env: &str,
    key: &str,
    change: Change<'_>,
) -> Result<Applies, VariableError> {
    may_change(platform, user, project, env, key)?;
    let state = platform.state();
    let changed = match change {
        Change::Set {
            value,
            sensitive: true,
        } => state
            .set_sensitive_variable(project, env, key, value)
            .map(|_| true)?,
        Change::Set {
            value,
            sensitive: false,
        } => state.set_variable(project, env, key, value).map(|_| true)?,
        Change::Unset => state.unset_variable(project, env, key)?,
    };
    if !changed {
        return Err(VariableError::NotSet {
            key: key.to_string(),
            env: env.to_string(),
        });
    }
    Ok(match state.environment(project, env)? {
        Some(e) if e.current_release.is_some() => Applies::Now,
        Some(_) => Applies::NextDeploy,
        None => Applies::FirstDeploy,
    })
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
            ("HTTPS_PROXY".to_string(), "http://elsewhere:1".to_string()),
            ("CURL_CA_BUNDLE".to_string(), "/app/my-ca.pem".to_string()),
        ];
        let ca = vec![
            (
                "SSL_CERT_FILE".to_string(),
                crate::egress::CA_MOUNT.to_string(),
            ),
            (
                "CURL_CA_BUNDLE".to_string(),
                crate::egress::CA_MOUNT.to_string(),
            ),
        ];
        let env: BTreeMap<_, _> = merge(&release, set, ca).into_iter().collect();
        assert_eq!(env["MODE"], "set");
        assert_eq!(env["PORT"], "10001");
        assert_eq!(env["TOKEN"], "t");
        // Every process of the environment goes out through its egress proxy.
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(env["no_proxy"], crate::egress::environment_no_proxy());
        // The host's CA bundle, unless a variable names another one.
        assert_eq!(env["SSL_CERT_FILE"], crate::egress::CA_MOUNT);
        assert_eq!(env["CURL_CA_BUNDLE"], "/app/my-ca.pem");
        assert_eq!(env.len(), 4 + 6 + 1, "each name once");
    }
}
