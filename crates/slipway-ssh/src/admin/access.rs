//! `access ls|grant|revoke` over SSH: project admins (and server admins) manage roles,
//! through [`slipway_deploy::project_access`] (the console's access page uses the same).

use std::sync::Arc;

use slipway_deploy::project_access::{self, AccessError};
use slipway_deploy::Platform;
use slipway_state::User;

use super::Refusal;

fn refusal(e: AccessError) -> Refusal {
    crate::ops::failure(e)
}

/// Runs `access ARGS` (args after `access`, `--json` removed).
pub(crate) fn run(
    platform: &Arc<Platform>,
    me: &User,
    args: &[&str],
    json: bool,
) -> Result<String, Refusal> {
    match args {
        ["ls", project] => {
            let list = project_access::list(platform, me, project).map_err(refusal)?;
            if json {
                return Ok(crate::admin::pretty(&list));
            }
            Ok(list
                .iter()
                .map(|e| {
                    format!(
                        "{}\t{}{}\n",
                        e.user,
                        e.role.as_str(),
                        if e.server_admin {
                            " (server admin)"
                        } else {
                            ""
                        }
                    )
                })
                .collect())
        }
        ["grant", project, user, role] => {
            let role = project_access::grant(platform, me, project, user, role).map_err(refusal)?;
            if json {
                return Ok(crate::admin::pretty(
                    &serde_json::json!({"project": project, "user": user, "role": role.as_str()}),
                ));
            }
            Ok(format!("{user} is now {} of {project}\n", role.as_str()))
        }
        ["revoke", project, user] => {
            let server_admin =
                project_access::revoke(platform, me, project, user).map_err(refusal)?;
            if json {
                // A server admin keeps the admin role on every project.
                return Ok(crate::admin::pretty(&serde_json::json!({
                    "project": project,
                    "user": user,
                    "revoked": true,
                    "server_admin": server_admin,
                })));
            }
            let note = if server_admin {
                " (still admin of every project as a server admin)"
            } else {
                ""
            };
            Ok(format!("{user} has no role on {project} any more{note}\n"))
        }
        _ => Err((
            2,
            "slipway: usage: access ls PROJECT | access grant PROJECT USER ROLE | access revoke PROJECT USER\n"
                .into(),
        )),
    }
}
