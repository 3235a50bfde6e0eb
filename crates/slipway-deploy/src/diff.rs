//! Phase **diff**: the topology of the pushed commit against the one live in
//! the environment, shown as a short readable diff.

use std::collections::BTreeMap;
use std::time::Instant;

use slipway_config::Topology;

use crate::output::Output;

/// The differences, one line each (empty: nothing changed).
pub fn changes(new: &Topology, live: Option<&Topology>) -> Vec<String> {
    let Some(live) = live else {
        return vec![format!(
            "new environment: app{} {} added",
            if new.applications.len() == 1 { "" } else { "s" },
            new.applications
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )];
    };
    let mut lines = Vec::new();
    let old: BTreeMap<&str, serde_json::Value> = live
        .applications
        .iter()
        .map(|a| (a.name.as_str(), serde_json::to_value(a).unwrap_or_default()))
        .collect();
    let new_apps: BTreeMap<&str, serde_json::Value> = new
        .applications
        .iter()
        .map(|a| (a.name.as_str(), serde_json::to_value(a).unwrap_or_default()))
        .collect();
    for (name, v) in &new_apps {
        match old.get(name) {
            None => lines.push(format!("app {name} added")),
            Some(o) if o != v => {
                let keys = changed_keys(o, v);
                lines.push(format!("app {name} changed: {}", keys.join(", ")));
            }
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new_apps.contains_key(name) {
            lines.push(format!("app {name} removed"));
        }
    }
    if serde_json::to_value(&new.routes).ok() != serde_json::to_value(&live.routes).ok() {
        lines.push("routes changed".into());
    }
    if serde_json::to_value(&new.services).ok() != serde_json::to_value(&live.services).ok() {
        lines.push("services changed".into());
    }
    lines
}

fn changed_keys(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["(everything)".into()];
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Print the diff.
pub fn run(new: &Topology, live: Option<&Topology>, out: &Output) {
    let t = Instant::now();
    let lines = changes(new, live);
    if lines.is_empty() {
        out.phase_done("diff", "no infrastructure change", t);
    } else {
        out.phase_done("diff", &lines.join("; "), t);
    }
}
