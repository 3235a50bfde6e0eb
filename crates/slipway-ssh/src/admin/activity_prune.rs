//! `activity prune [--keep N] [--keep-days D] [--dry-run]` over SSH: server admins prune
//! old activity logs now, by the rules the server prunes by every hour
//! ([`slipway_deploy::activity_prune`]); without flags, by the server's own
//! `--activity-keep` and `--activity-keep-days`. Each pruned activity keeps its row
//! (listed by `activity`, its log saying "log pruned"); the command prints which went.

use std::sync::Arc;

use slipway_deploy::Platform;
use slipway_state::{Activity, ActivityRetention, User};

use super::Refusal;

const USAGE: &str = "slipway: usage: activity prune [--keep N] [--keep-days D] [--dry-run]\n";

/// What `activity prune` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Request {
    retention: ActivityRetention,
    dry_run: bool,
}

/// The flags of `activity prune`, as clap parses them.
#[derive(Debug, clap::Parser)]
#[command(
    name = "activity prune",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct Flags {
    /// Activities kept per environment, newest first.
    #[arg(long)]
    keep: Option<usize>,
    /// Days within which every ended activity is kept.
    #[arg(long)]
    keep_days: Option<u32>,
    /// List what would go, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Parse the words after `activity prune` (`--json` removed); `defaults` is the server's
/// retention. Each flag at most once; `--keep` and `--keep-days` take a whole number
/// (`--keep 5` or `--keep=5`). Err is the usage refusal: clap's first line (what is
/// wrong), then the usage.
fn parse(args: &[&str], defaults: ActivityRetention) -> Result<Request, Refusal> {
    use clap::Parser;
    let flags = Flags::try_parse_from(args).map_err(|e| {
        let rendered = e.render().to_string();
        let why = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        (2, format!("slipway: {why}\n{USAGE}"))
    })?;
    Ok(Request {
        retention: ActivityRetention {
            keep_newest: flags.keep.unwrap_or(defaults.keep_newest),
            keep_days: flags.keep_days.unwrap_or(defaults.keep_days),
        },
        dry_run: flags.dry_run,
    })
}

/// Runs `activity prune ARGS` (args after `prune`, `--json` removed).
pub(crate) async fn run(
    platform: &Arc<Platform>,
    me: &User,
    args: &[&str],
    json: bool,
) -> Result<String, Refusal> {
    if !me.admin {
        return Err((
            1,
            format!(
                "slipway: permission denied: only server admins prune activity logs ({} is not one)\n",
                me.name
            ),
        ));
    }
    let request = parse(args, platform.settings().activity_retention)?;
    let list =
        slipway_deploy::activity_prune::prune_once(platform, request.retention, request.dry_run)
            .await
            .map_err(|e| (3, format!("slipway: pruning activity logs: {e}\n")))?;
    Ok(report(&list, request, json))
}

/// The command's output: one line per activity (id, project, environment, kind, status,
/// when it ended), then what was kept; or the same as JSON.
fn report(list: &[Activity], request: Request, json: bool) -> String {
    let ActivityRetention {
        keep_newest,
        keep_days,
    } = request.retention;
    if json {
        return crate::admin::pretty(&serde_json::json!({
            "dry_run": request.dry_run,
            "keep": keep_newest,
            "keep_days": keep_days,
            "pruned": list,
        }));
    }
    let mut out = String::new();
    for a in list {
        let ended = a.finished_at.unwrap_or(a.started_at);
        let when = jiff::Timestamp::from_second(ended)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|_| ended.to_string());
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\tended {when}\n",
            a.id,
            a.project,
            a.environment.as_deref().unwrap_or("-"),
            a.kind,
            a.status
        ));
    }
    let verb = match (request.dry_run, list.len()) {
        (true, 1) => "would prune the log of 1 activity",
        (true, _) => "would prune the logs of",
        (false, 1) => "pruned the log of 1 activity",
        (false, _) => "pruned the logs of",
    };
    let count = if list.len() == 1 {
        String::new()
    } else {
        format!(" {} activities", list.len())
    };
    out.push_str(&format!(
        "{verb}{count}: each environment keeps the logs of its newest {keep_newest} activities and of all that ended within {keep_days} days{}\n",
        if request.dry_run { " (dry run: nothing was deleted)" } else { "" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: ActivityRetention = ActivityRetention {
        keep_newest: 200,
        keep_days: 30,
    };

    #[test]
    fn flags_override_the_server_and_bad_ones_are_refused() {
        assert_eq!(
            parse(&[], SERVER).unwrap(),
            Request {
                retention: SERVER,
                dry_run: false
            }
        );
        let r = parse(&["--keep", "3", "--keep-days=0", "--dry-run"], SERVER).unwrap();
        assert_eq!(
            (r.retention.keep_newest, r.retention.keep_days, r.dry_run),
            (3, 0, true)
        );
        for bad in [
            &["--keep"][..],
            &["--keep", "-1"],
            &["--keep", "lots"],
            &["--keep-days", "1.5"],
            &["--keep", "1", "--keep", "2"],
            &["--dry-run", "--dry-run"],
            &["--dry-run=yes"],
            &["demo"],
            &["--all"],
        ] {
            let (code, msg) = parse(bad, SERVER).unwrap_err();
            assert_eq!(code, 2, "{bad:?}: {msg}");
            assert!(msg.contains("usage: activity prune"), "{msg}");
            assert!(
                msg.lines().count() == 2,
                "what is wrong, then the usage: {msg}"
            );
        }
    }
}
