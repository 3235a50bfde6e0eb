//! `domain add|rm|ls` over SSH: server admins assign hosts outside the server's domain to
//! projects (spec sections 2 and 6). Hosts under `PROJECT.DOMAIN` need no assignment:
//! they are their project's by name ([`slipway_deploy::tenancy`]).
//!
//! Removing an assignment does not stop an environment that routes the host now: it
//! keeps serving it until its next deploy (which is then refused) or until its branch
//! is deleted; no other project can take the host before that.

use std::sync::Arc;

use slipway_deploy::tenancy::{self, HostOwner};
use slipway_deploy::Platform;
use slipway_state::{StateError, User};

use super::users::shown;
use super::Refusal;

const USAGE: &str =
    "slipway: usage: domain add PROJECT HOST | domain rm [PROJECT] HOST | domain ls [PROJECT]\n";

/// Runs `domain ARGS` (args after `domain`, `--json` removed).
pub(crate) fn run(
    platform: &Arc<Platform>,
    me: &User,
    args: &[&str],
    json: bool,
) -> Result<String, Refusal> {
    if !matches!(
        args,
        ["add", _, _] | ["rm", _] | ["rm", _, _] | ["ls"] | ["ls", _]
    ) {
        return Err((2, USAGE.into()));
    }
    if !me.admin {
        return Err((
            1,
            format!(
                "slipway: permission denied: only server admins manage domains ({} is not one)\n",
                me.name
            ),
        ));
    }
    let state = platform.state();
    let internal = |e: StateError| (3, format!("slipway: {e}\n"));
    let host_of = |h: &str| tenancy::parse_host(h).map_err(|e| (1, format!("slipway: {e}\n")));
    let project_exists = |p: &str| -> Result<(), Refusal> {
        if state.project_exists(p).map_err(internal)? {
            Ok(())
        } else {
            Err((1, format!("slipway: project '{}' not found\n", shown(p))))
        }
    };
    match args {
        ["add", project, host] => {
            project_exists(project)?;
            let host = host_of(host)?;
            let domain = &platform.settings().domain;
            match tenancy::owner_by_name(domain, &host) {
                None => {}
                Some(HostOwner::Project(p)) => {
                    return Err((
                        1,
                        format!("slipway: {host} is under {p}.{domain}: it belongs to project {p} by its name and cannot be assigned\n"),
                    ))
                }
                Some(_) => {
                    return Err((
                        1,
                        format!("slipway: {host} is reserved for the server itself: it cannot be assigned\n"),
                    ))
                }
            }
            let added = state
                .assign_domain(&host, project, &me.name)
                .map_err(|e| match e {
                    StateError::Conflict(m) => (
                        1,
                        format!("slipway: {m}: remove it there first (domain rm {host})\n"),
                    ),
                    e => internal(e),
                })?;
            if json {
                return Ok(serde_json::to_string_pretty(
                    &serde_json::json!({"host": host, "project": project, "added": added}),
                )
                .unwrap_or_default()
                    + "\n");
            }
            Ok(if added {
                format!(
                    "{host} is assigned to {project}: its production environments may route it\n"
                )
            } else {
                format!("{host} was already assigned to {project}\n")
            })
        }
        ["rm", rest @ ..] => {
            let (project, host) = match rest {
                [project, host] => (Some(*project), *host),
                [host] => (None, *host),
                _ => return Err((2, USAGE.into())),
            };
            let host = host_of(host)?;
            let owner = state.domain_owner(&host).map_err(internal)?;
            let owner = match (owner, project) {
                (None, _) => {
                    return Err((1, format!("slipway: {host} is assigned to no project\n")))
                }
                (Some(o), Some(p)) if o != p => {
                    return Err((
                        1,
                        format!("slipway: {host} belongs to project {o}, not {}\n", shown(p)),
                    ))
                }
                (Some(o), _) => o,
            };
            state.unassign_domain(&host).map_err(internal)?;
            let routed_by = platform.router().owner(&host);
            if json {
                return Ok(serde_json::to_string_pretty(&serde_json::json!({
                    "host": host,
                    "project": owner,
                    "removed": true,
                    "routed_by": routed_by,
                }))
                .unwrap_or_default()
                    + "\n");
            }
            let note = match routed_by {
                Some(env) => {
                    format!(" ({env} still routes it until its next deploy, which will be refused)")
                }
                None => String::new(),
            };
            Ok(format!("{host} is no longer assigned to {owner}{note}\n"))
        }
        ["ls", rest @ ..] => {
            let project = rest.first().copied();
            if let Some(p) = project {
                project_exists(p)?;
            }
            let list = state.domains(project).map_err(internal)?;
            if json {
                let out: Vec<_> = list
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "host": d.host,
                            "project": d.project,
                            "assigned_by": d.assigned_by,
                            "assigned_at": d.assigned_at,
                            "routed_by": platform.router().owner(&d.host),
                        })
                    })
                    .collect();
                return Ok(serde_json::to_string_pretty(&out).unwrap_or_default() + "\n");
            }
            Ok(list
                .iter()
                .map(|d| {
                    format!(
                        "{}\t{}\t{}\n",
                        d.host,
                        d.project,
                        platform
                            .router()
                            .owner(&d.host)
                            .map(|e| format!("routed by {e}"))
                            .unwrap_or_else(|| "not routed".into())
                    )
                })
                .collect())
        }
        _ => Err((2, USAGE.into())),
    }
}
