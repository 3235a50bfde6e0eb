//! Who may do what to an environment: one check for the SSH admin commands and the web
//! console, so both refuse alike and with the same words.

use slipway_state::{Role, User};

use crate::failure::Refusal;
use crate::protection;
use crate::Platform;

/// The role `var set|unset` needs on a project (admins on production environments,
/// [`protection::role_needed`]); reading variables needs a viewer, their values a
/// contributor.
pub const CHANGE_VARIABLES: Role = Role::Contributor;

/// The role `cron run` (and the console's "run now") needs on a project (admins on
/// production environments, [`protection::role_needed`]).
pub const RUN_CRONS: Role = Role::Contributor;

/// The role `sync` (and the console's "sync from parent") needs on a project.
pub const SYNC: Role = Role::Admin;

/// The role `backup ls` (and the console's backups page) needs on a project.
pub const LIST_BACKUPS: Role = Role::Viewer;

/// The role `backup create` (and the console's "Create backup") needs on a project
/// (admins on production environments, [`protection::role_needed`], as `redeploy`).
pub const CREATE_BACKUPS: Role = Role::Contributor;

/// The role `backup restore` (and the console's "Restore") needs on a project: it goes
/// back in data, as `sync` and `rollback` do.
pub const RESTORE_BACKUPS: Role = Role::Admin;

/// Whether `name` may be set by users: letters, digits and `_`, not starting with a
/// digit, at most 128 bytes, and none of the platform's own names; Err is the message.
pub fn settable_variable(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let well_formed = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if well_formed && !crate::environment::is_reserved_variable(name) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' cannot be set: names are letters, digits and '_', and PORT, PATH, HOME, SLIPWAY_* and PLATFORM_* belong to the platform"
        ))
    }
}

/// Why [`check`] or [`check_variables`] said no.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The user may not ([`Refusal::Forbidden`]), or the project or environment is not
    /// there ([`Refusal::NotFound`]): which, and the message for the user (a project the
    /// user may not see is "not found", as one that does not exist).
    #[error("{1}")]
    Refused(Refusal, String),
    /// The state database failed while checking: an internal failure, not a refusal.
    #[error("reading the state database: {0}")]
    State(#[from] slipway_state::StateError),
}

impl CheckError {
    /// Which kind of failure it is: a refusal, or the database failed.
    pub fn kind(&self) -> crate::failure::Kind {
        match self {
            CheckError::Refused(r, _) => crate::failure::Kind::Refused(*r),
            CheckError::State(_) => crate::failure::Kind::Internal,
        }
    }

    /// The exit status of a command refused so ([`crate::failure::Kind::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }
}

/// Whether `user` holds `need` on `project` (raised by [`protection::role_needed`]: admin
/// to change a production environment) and `env` exists. Ok is the user's role on the
/// project; Err is the refusal for the user, or a failure of the state database.
pub fn check(
    platform: &Platform,
    user: &User,
    project: &str,
    env: &str,
    need: Role,
) -> Result<Role, CheckError> {
    let state = platform.state();
    let role = visible_role_checked(platform, user, project)?.ok_or_else(|| {
        CheckError::Refused(
            Refusal::NotFound,
            format!("project '{project}' not found (or you have no access to it)"),
        )
    })?;
    let need = protection::role_needed(env, need);
    let protected = protection::is_production(env) && need == Role::Admin;
    if role < need {
        return Err(CheckError::Refused(
            Refusal::Forbidden,
            format!(
                "permission denied: this needs the {} role on {project}{}; you are {}",
                need.as_str(),
                if protected {
                    format!(" ({env} is protected)")
                } else {
                    String::new()
                },
                role.as_str()
            ),
        ));
    }
    if state.environment(project, env)?.is_none() {
        return Err(CheckError::Refused(
            Refusal::NotFound,
            format!("environment '{env}' of project '{project}' not found"),
        ));
    }
    Ok(role)
}

/// [`check`] for `var set|unset|ls`, which also work on an environment not deployed yet:
/// a push refused for a missing variable (a Heroku `app.json` `required` one) records no
/// environment, since bad input changes nothing (invariant 5) and an environment row
/// would list, route and count an environment that never ran; its variables wait, keyed
/// by name, for the branch's first push. `env` must then be an environment name (a DNS
/// label). Ok is the user's role and whether the environment exists.
pub fn check_variables(
    platform: &Platform,
    user: &User,
    project: &str,
    env: &str,
    need: Role,
) -> Result<(Role, bool), CheckError> {
    match check(platform, user, project, env, need) {
        Ok(role) => Ok((role, true)),
        Err(CheckError::State(e)) => Err(CheckError::State(e)),
        Err(refused) => {
            let state = platform.state();
            if state.environment(project, env)?.is_some() {
                return Err(refused);
            }
            // Not found: the same role check, on a name an environment may have.
            let role = visible_role_checked(platform, user, project)?.ok_or_else(|| {
                CheckError::Refused(
                    Refusal::NotFound,
                    format!("project '{project}' not found (or you have no access to it)"),
                )
            })?;
            if role < protection::role_needed(env, need) {
                return Err(refused);
            }
            if !crate::environment::is_dns_label(env) {
                return Err(CheckError::Refused(Refusal::NotFound, format!(
                    "environment '{env}' of project '{project}' not found, and no environment can have that name: environments are named as DNS labels (a-z, 0-9, '-'), as the push of a branch says"
                )));
            }
            Ok((role, false))
        }
    }
}

/// The role `user` holds on `project`, if the project exists and the user may see it;
/// Err when the state database fails.
pub fn visible_role_checked(
    platform: &Platform,
    user: &User,
    project: &str,
) -> Result<Option<Role>, slipway_state::StateError> {
    let state = platform.state();
    if !state.project_exists(project)? {
        return Ok(None);
    }
    state.role(project, user)
}

/// The role `user` holds on `project`, if the project exists and the user may see it.
pub fn visible_role(platform: &Platform, user: &User, project: &str) -> Option<Role> {
    visible_role_checked(platform, user, project).ok().flatten()
}
