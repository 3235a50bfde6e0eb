//! Who has which role on a project, and changes to it: the checks and effects of
//! `access ls|grant|revoke` over SSH and of the console's access page, in one place so
//! that both refuse alike and with the same words. Only the project's admins (and server
//! admins) see or change access.

use serde::Serialize;
use slipway_state::{Role, StateError, User};

use crate::Platform;

/// Why an access command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The project does not exist, or the user may not see it (the same words for both).
    #[error("project '{0}' not found (or you have no access to it)")]
    NotFound(String),
    /// The user may see the project but is not one of its admins.
    #[error("permission denied: {user} is {role} of project {project}; only project admins manage access")]
    NotAdmin {
        /// Who asked.
        user: String,
        /// Their role.
        role: &'static str,
        /// The project.
        project: String,
    },
    /// The role named is none of viewer, contributor, admin.
    #[error("unknown role '{0}': use viewer, contributor or admin")]
    UnknownRole(String),
    /// No such user on the server.
    #[error("user '{0}' not found (a server admin adds users with `user add`)")]
    UnknownUser(String),
    /// The user to revoke holds no role on the project.
    #[error("user '{user}' has no role on {project}")]
    NoRole {
        /// The user.
        user: String,
        /// The project.
        project: String,
    },
    /// Revoking oneself would leave the project without an admin.
    #[error("you are the last admin of {0}: grant admin to someone else first")]
    LastAdmin(String),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// One line of a project's access list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// The user.
    pub user: String,
    /// Their role on the project.
    pub role: Role,
    /// A server admin with no role of their own on the project (admin of every project).
    pub server_admin: bool,
}

/// A name as shown in messages: at most 80 characters.
fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Whether `me` is an admin of `project` (which exists and `me` may see).
pub fn check_admin(platform: &Platform, me: &User, project: &str) -> Result<(), AccessError> {
    let state = platform.state();
    if !state.project_exists(project)? {
        return Err(AccessError::NotFound(shown(project)));
    }
    match state.role(project, me)? {
        None => Err(AccessError::NotFound(shown(project))),
        Some(Role::Admin) => Ok(()),
        Some(role) => Err(AccessError::NotAdmin {
            user: me.name.clone(),
            role: role.as_str(),
            project: project.to_string(),
        }),
    }
}

/// `access ls PROJECT`: the users with a role on it, then the server admins without one.
pub fn list(
    platform: &Platform,
    me: &User,
    project: &str,
) -> Result<Vec<AccessEntry>, AccessError> {
    check_admin(platform, me, project)?;
    let state = platform.state();
    let granted = state.access(project)?;
    let mut out: Vec<AccessEntry> = granted
        .iter()
        .map(|(user, role)| AccessEntry {
            user: user.clone(),
            role: *role,
            server_admin: false,
        })
        .collect();
    out.extend(
        state
            .users()?
            .into_iter()
            .filter(|(u, _)| u.admin && !granted.iter().any(|(n, _)| *n == u.name))
            .map(|(u, _)| AccessEntry {
                user: u.name,
                role: Role::Admin,
                server_admin: true,
            }),
    );
    Ok(out)
}

/// `access grant PROJECT USER ROLE`; Ok is the role granted.
pub fn grant(
    platform: &Platform,
    me: &User,
    project: &str,
    user: &str,
    role: &str,
) -> Result<Role, AccessError> {
    check_admin(platform, me, project)?;
    let role = Role::parse(role).ok_or_else(|| AccessError::UnknownRole(shown(role)))?;
    let state = platform.state();
    if state.user(user)?.is_none() {
        return Err(AccessError::UnknownUser(shown(user)));
    }
    state.grant(project, user, role)?;
    Ok(role)
}

/// `access revoke PROJECT USER`; Ok says whether the user stays admin of every project
/// as a server admin.
pub fn revoke(
    platform: &Platform,
    me: &User,
    project: &str,
    user: &str,
) -> Result<bool, AccessError> {
    check_admin(platform, me, project)?;
    let state = platform.state();
    let granted = state.access(project)?;
    if !granted.iter().any(|(u, _)| u == user) {
        return Err(AccessError::NoRole {
            user: shown(user),
            project: project.to_string(),
        });
    }
    if user == me.name && !me.admin {
        let admins = granted.iter().filter(|(_, r)| *r == Role::Admin).count();
        if admins <= 1 {
            return Err(AccessError::LastAdmin(project.to_string()));
        }
    }
    state.revoke(project, user)?;
    Ok(state.user(user)?.is_some_and(|u| u.admin))
}
