//! `domain add|rm|ls` over SSH: server admins assign hosts outside the server's domain to
//! projects (spec sections 2 and 6), through [`slipway_deploy::domain_admin`] (the
//! console's domains page uses the same).

use std::sync::Arc;

use slipway_deploy::domain_admin::{self, DomainError};
use slipway_deploy::Platform;
use slipway_state::User;

use super::{pretty, Refusal};

const USAGE: &str =
    "slipway: usage: domain add PROJECT HOST | domain rm [PROJECT] HOST | domain ls [PROJECT]\n";

fn refusal(e: DomainError) -> Refusal {
    crate::ops::failure(e)
}

/// Runs `domain ARGS` (args after `domain`, `--json` removed).
pub(crate) fn run(
    platform: &Arc<Platform>,
    me: &User,
    args: &[&str],
    json: bool,
) -> Result<String, Refusal> {
    match args {
        ["add", project, host] => {
            let (host, added) = domain_admin::add(platform, me, project, host).map_err(refusal)?;
            if json {
                return Ok(pretty(
                    &serde_json::json!({"host": host, "project": project, "added": added}),
                ));
            }
            Ok(if added {
                format!(
                    "{host} is assigned to {project}: its production environments may route it\n"
                )
            } else {
                format!("{host} was already assigned to {project}\n")
            })
        }
        ["rm", project, host] => remove(platform, me, Some(project), host, json),
        ["rm", host] => remove(platform, me, None, host, json),
        ["ls"] | ["ls", _] => {
            let list = domain_admin::list(platform, me, args.get(1).copied()).map_err(refusal)?;
            if json {
                return Ok(pretty(&list));
            }
            Ok(list
                .iter()
                .map(|d| {
                    format!(
                        "{}\t{}\t{}\n",
                        d.domain.host,
                        d.domain.project,
                        d.routed_by
                            .as_ref()
                            .map(|e| format!("routed by {e}"))
                            .unwrap_or_else(|| "not routed".into())
                    )
                })
                .collect())
        }
        _ => Err((2, USAGE.into())),
    }
}

fn remove(
    platform: &Platform,
    me: &User,
    project: Option<&str>,
    host: &str,
    json: bool,
) -> Result<String, Refusal> {
    let removed = domain_admin::remove(platform, me, project, host).map_err(refusal)?;
    if json {
        return Ok(pretty(&serde_json::json!({
            "host": removed.host,
            "project": removed.project,
            "removed": true,
            "routed_by": removed.routed_by,
        })));
    }
    let note = match &removed.routed_by {
        Some(env) => {
            format!(" ({env} still routes it until its next deploy, which will be refused)")
        }
        None => String::new(),
    };
    Ok(format!(
        "{} is no longer assigned to {}{note}\n",
        removed.host, removed.project
    ))
}
