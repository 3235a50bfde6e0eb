//! Phase **validate**: read the configuration from the pushed commit (never
//! from a checkout) and check it. A config error refuses the push before
//! anything is built, naming `file:line:column` and the key path. So does a route to a
//! host that is not the project's, or that another environment routes
//! ([`crate::tenancy::check_routes`]). Then push protection: vulnerable lockfiles and
//! committed secrets ([`crate::push_protection`]).

use std::time::Instant;

use slipway_config::{Diagnostics, Loaded, Severity};
use slipway_git::{CommitSource, ObjectId, Repo};

use crate::output::Output;
use crate::pipeline::{DeployTarget, PhaseError};
use crate::{push_protection, tenancy, Platform};

/// Load and check the config of the pushed commit `target.new`, and the hosts its routes
/// claim for `target`'s environment.
pub fn run(
    platform: &Platform,
    repo: &Repo,
    target: &DeployTarget,
    out: &Output,
) -> Result<Loaded, PhaseError> {
    let t = Instant::now();
    // A misspelled push option refuses the push before anything is read.
    match crate::push_options::check(&target.options) {
        Ok(warnings) => {
            for w in warnings {
                out.line(&format!("       {w}"));
            }
        }
        Err(why) => {
            out.line(&format!("       error: {why}"));
            return Err(PhaseError::new("validate", why));
        }
    }
    // The versions imported into the server's stacks are valid `type:`s, as `slipway
    // config check --stacks-dir` accepts them.
    platform
        .stack_store()
        .map_err(|e| PhaseError::new("validate", format!("reading the server's stacks: {e}")))?;
    let (source, checked) = load_commit_config(repo, target.new)?;
    for line in config_lines(&checked) {
        out.line(&format!("       {line}"));
    }
    let loaded = match checked {
        Ok(l) => l,
        Err(diags) => {
            let first_error = diags.0.iter().find(|d| d.severity == Severity::Error);
            return Err(PhaseError::new(
                "validate",
                first_error
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "the configuration has errors".into()),
            ));
        }
    };
    // An app without a start command (PHP-FPM apps aside) was refused by the config
    // check itself, at FILE:LINE:COL, as `slipway config check` refuses it.
    if let Err(why) = tenancy::check_routes(
        platform,
        &target.project,
        &target.env,
        &loaded.topology,
        loaded.format,
        &source,
    ) {
        out.line(&format!("       {why}"));
        return Err(PhaseError::new("validate", why));
    }
    push_protection::run(platform, repo, target, &loaded.topology, out)?;
    let names: Vec<&str> = loaded
        .topology
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    out.phase_done(
        "validate",
        &format!(
            "{} config, {} app{} ({})",
            loaded.format,
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ),
        t,
    );
    Ok(loaded)
}

/// The configuration of `commit` as a push reads it: from the commit's tree (never a
/// checkout), loaded and checked by [`slipway_config::load`] as `slipway config check`
/// loads a folder. Returns the commit's source with the loaded configuration, or with
/// every diagnostic when it has errors.
pub fn load_commit_config(
    repo: &Repo,
    commit: ObjectId,
) -> Result<(CommitSource, Result<Loaded, Diagnostics>), PhaseError> {
    let source = repo
        .config_source(commit)
        .map_err(|e| PhaseError::new("validate", format!("cannot read the pushed commit: {e}")))?;
    let checked = slipway_config::load(&source);
    Ok((source, checked))
}

/// The lines a push shows of a checked configuration: every diagnostic when it has errors,
/// else its warnings (the same lines `slipway config check` prints, one each).
pub fn config_lines(checked: &Result<Loaded, Diagnostics>) -> Vec<String> {
    match checked {
        Ok(loaded) => loaded.warnings.iter().map(|w| w.to_string()).collect(),
        Err(diags) => diags.0.iter().map(|d| d.to_string()).collect(),
    }
}
