//! Phase **diff**: the topology of the pushed commit against the one live in
//! the environment, shown as a short readable diff. Changes that would lose
//! data (see [`slipway_config::diff()`]) fail the push as `diff failed: <reason>`.

use std::time::Instant;

use slipway_config::{DiffOptions, Topology, TopologyDiff};

use crate::output::Output;
use crate::pipeline::PhaseError;

/// The differences against the live topology (None: a new environment, all additions).
pub fn compare(new: &Topology, live: Option<&Topology>, options: DiffOptions) -> TopologyDiff {
    let empty = Topology::default();
    slipway_config::diff(live.unwrap_or(&empty), new, &options)
}

/// The differences, one line each (empty: nothing changed).
pub fn changes(new: &Topology, live: Option<&Topology>) -> Vec<String> {
    compare(new, live, DiffOptions::default()).lines
}

/// Print the diff; Err when a change would lose data (the first refusal is the reason).
pub fn run(
    new: &Topology,
    live: Option<&Topology>,
    options: DiffOptions,
    out: &Output,
) -> Result<(), PhaseError> {
    let t = Instant::now();
    let d = compare(new, live, options);
    let headline = match (live, d.lines.len()) {
        (None, _) => "new environment".to_string(),
        (Some(_), 0) => "no infrastructure change".to_string(),
        (Some(_), 1) => "1 change".to_string(),
        (Some(_), n) => format!("{n} changes"),
    };
    out.phase_done("diff", &headline, t);
    for line in &d.lines {
        out.line(&format!("       {line}"));
    }
    for r in &d.refusals {
        out.line(&format!("       refused: {}", r.reason));
        out.line(&format!("       to proceed: {}", r.how_to_proceed));
        if !r.how_to_proceed.contains("allow-service-upgrade") {
            out.line("       or, accepting the loss: git push -o allow-data-loss");
        }
    }
    match d.refusals.first() {
        Some(r) => Err(PhaseError::new("diff", r.to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_config::{Application, Service};

    fn topo(version: &str) -> Topology {
        Topology {
            applications: vec![Application {
                name: "app".into(),
                ..Default::default()
            }],
            services: vec![Service {
                name: "db".into(),
                r#type: "postgresql".into(),
                version: version.into(),
                disk: Some(1024),
                configuration: serde_json::Value::Null,
                relationships: Default::default(),
            }],
            routes: vec![],
        }
    }

    #[test]
    fn new_environment_and_unchanged_topology() {
        assert_eq!(
            changes(&topo("15"), None),
            vec!["app app added", "service db added (postgresql:15)"]
        );
        assert!(changes(&topo("15"), Some(&topo("15"))).is_empty());
    }

    #[test]
    fn major_upgrade_needs_the_push_option() {
        let no = DiffOptions::default();
        let yes = DiffOptions {
            allow_service_upgrade: true,
            ..no
        };
        let refused = compare(&topo("16"), Some(&topo("15")), no);
        assert_eq!(refused.refusals.len(), 1);
        assert!(refused.refusals[0]
            .to_string()
            .contains("-o allow-service-upgrade"));
        assert!(compare(&topo("16"), Some(&topo("15")), yes)
            .refusals
            .is_empty());
    }
}
