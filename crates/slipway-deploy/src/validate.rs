//! Phase **validate**: read the configuration from the pushed commit (never
//! from a checkout) and check it. A config error refuses the push before
//! anything is built, naming `file:line:column` and the key path. So does a route to a
//! host that is not the project's, or that another environment routes
//! ([`crate::tenancy::check_routes`]). Then push protection: vulnerable lockfiles and
//! committed secrets ([`crate::push_protection`]).

use std::time::Instant;

use slipway_config::{Loaded, Severity};
use slipway_git::Repo;

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
    let source = repo
        .config_source(target.new)
        .map_err(|e| PhaseError::new("validate", format!("cannot read the pushed commit: {e}")))?;
    let loaded = match slipway_config::load(&source) {
        Ok(l) => l,
        Err(diags) => {
            let mut first_error = None;
            for d in &diags.0 {
                out.line(&format!("       {d}"));
                if first_error.is_none() && d.severity == Severity::Error {
                    first_error = Some(d.to_string());
                }
            }
            return Err(PhaseError::new(
                "validate",
                first_error.unwrap_or_else(|| "the configuration has errors".into()),
            ));
        }
    };
    for w in &loaded.warnings {
        out.line(&format!("       {w}"));
    }
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
