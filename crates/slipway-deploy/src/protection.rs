//! Which environments are production, and the role a change to an environment needs:
//! one policy for routing (explicit hosts apply as written in production only) and for
//! access (pushes, `redeploy`, `var set|unset`, shells).
//!
//! Production environments (`main` and `master`, spec section 2) are protected: only
//! project admins (and server admins) change them; contributors change every other one.

use slipway_state::Role;

/// The production environments of every project.
pub const PRODUCTION: &[&str] = &["main", "master"];

/// Whether `env` is a production environment: protected, and the only one whose
/// explicit route hosts are used as written.
pub fn is_production(env: &str) -> bool {
    PRODUCTION.contains(&env)
}

/// The role an action on `env` needs when it needs `need` elsewhere: changing a
/// production environment (an action that needs a contributor anywhere else) needs an
/// admin; reading it needs what reading needs everywhere.
pub fn role_needed(env: &str, need: Role) -> Role {
    if need == Role::Contributor && is_production(env) {
        Role::Admin
    } else {
        need
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_production_environment_is_protected() {
        for env in ["main", "master"] {
            assert!(is_production(env));
            assert_eq!(role_needed(env, Role::Contributor), Role::Admin);
            assert_eq!(role_needed(env, Role::Viewer), Role::Viewer);
        }
        for env in ["dev", "main-1a2b3c", "mainline", "Main"] {
            assert!(!is_production(env));
            assert_eq!(role_needed(env, Role::Contributor), Role::Contributor);
        }
    }
}
