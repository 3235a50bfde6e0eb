//! Phase **validate**: read the configuration from the pushed commit (never
//! from a checkout) and check it. A config error refuses the push before
//! anything is built, naming `file:line:column` and the key path.

use std::time::Instant;

use slipway_config::{Loaded, Severity};
use slipway_git::{ObjectId, Repo};

use crate::output::Output;
use crate::pipeline::PhaseError;

/// Load and check the config of `commit`.
pub fn run(repo: &Repo, commit: ObjectId, out: &Output) -> Result<Loaded, PhaseError> {
    let t = Instant::now();
    let source = repo
        .config_source(commit)
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
    for app in &loaded.topology.applications {
        if app
            .web
            .start
            .as_deref()
            .map(str::trim)
            .unwrap_or("")
            .is_empty()
        {
            return Err(PhaseError::new(
                "validate",
                format!(
                    "app '{}' has no start command: set web.commands.start (or a `web:` line in the Procfile)",
                    app.name
                ),
            ));
        }
    }
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
