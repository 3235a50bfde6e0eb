//! `access ls|grant|revoke` over SSH: project admins (and server admins) manage roles.

use std::sync::Arc;

use slipway_deploy::Platform;
use slipway_state::{Role, User};

use super::users::shown;
use super::Refusal;

/// The same message for a missing project and one the user may not see.
fn not_found(project: &str) -> Refusal {
    (
        1,
        format!(
            "slipway: project '{}' not found (or you have no access to it)\n",
            shown(project)
        ),
    )
}

/// Runs `access ARGS` (args after `access`, `--json` removed).
pub(crate) fn run(
    platform: &Arc<Platform>,
    me: &User,
    args: &[&str],
    json: bool,
) -> Result<String, Refusal> {
    let project = match args {
        ["ls", p] | ["grant", p, _, _] | ["revoke", p, _] => *p,
        _ => {
            return Err((
                2,
                "slipway: usage: access ls PROJECT | access grant PROJECT USER ROLE | access revoke PROJECT USER\n"
                    .into(),
            ))
        }
    };
    let state = platform.state();
    let internal = |e: slipway_state::StateError| (3, format!("slipway: {e}\n"));
    if !state.project_exists(project).map_err(internal)? {
        return Err(not_found(project));
    }
    match state.role(project, me).map_err(internal)? {
        None => return Err(not_found(project)),
        Some(Role::Admin) => {}
        Some(role) => {
            return Err((
                1,
                format!(
                    "slipway: permission denied: {} is {} of project {project}; only project admins manage access\n",
                    me.name,
                    role.as_str()
                ),
            ))
        }
    }
    match args {
        ["ls", _] => {
            let list = state.access(project).map_err(internal)?;
            let admins: Vec<String> = state
                .users()
                .map_err(internal)?
                .into_iter()
                .filter(|(u, _)| u.admin && !list.iter().any(|(n, _)| *n == u.name))
                .map(|(u, _)| u.name)
                .collect();
            if json {
                let mut out: Vec<_> = list
                    .iter()
                    .map(|(u, r)| serde_json::json!({"user": u, "role": r.as_str(), "server_admin": false}))
                    .collect();
                out.extend(admins.iter().map(
                    |u| serde_json::json!({"user": u, "role": "admin", "server_admin": true}),
                ));
                return Ok(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n");
            }
            let mut text: String = list
                .iter()
                .map(|(u, r)| format!("{u}\t{}\n", r.as_str()))
                .collect();
            for u in admins {
                text.push_str(&format!("{u}\tadmin (server admin)\n"));
            }
            Ok(text)
        }
        ["grant", _, user, role] => {
            let Some(role) = Role::parse(role) else {
                return Err((
                    1,
                    format!(
                        "slipway: unknown role '{}': use viewer, contributor or admin\n",
                        shown(role)
                    ),
                ));
            };
            if state.user(user).map_err(internal)?.is_none() {
                return Err((
                    1,
                    format!(
                        "slipway: user '{}' not found (a server admin adds users with `user add`)\n",
                        shown(user)
                    ),
                ));
            }
            state.grant(project, user, role).map_err(internal)?;
            Ok(format!("{user} is now {} of {project}\n", role.as_str()))
        }
        ["revoke", _, user] => {
            let had = state
                .access(project)
                .map_err(internal)?
                .into_iter()
                .any(|(u, _)| u == *user);
            if !had {
                return Err((
                    1,
                    format!("slipway: user '{}' has no role on {project}\n", shown(user)),
                ));
            }
            if *user == me.name && !me.admin {
                let admins = state
                    .access(project)
                    .map_err(internal)?
                    .into_iter()
                    .filter(|(_, r)| *r == Role::Admin)
                    .count();
                if admins <= 1 {
                    return Err((
                        1,
                        format!("slipway: you are the last admin of {project}: grant admin to someone else first\n"),
                    ));
                }
            }
            state.revoke(project, user).map_err(internal)?;
            let note = match state.user(user).map_err(internal)? {
                Some(u) if u.admin => " (still admin of every project as a server admin)",
                _ => "",
            };
            Ok(format!("{user} has no role on {project} any more{note}\n"))
        }
        _ => Err((2, "slipway: usage: access ls|grant|revoke ...\n".into())),
    }
}
