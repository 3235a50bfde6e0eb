//! How `var ls` shows an environment's variables (spec sections 2 and 6): viewers see
//! names only; contributors and admins see values, except of sensitive variables, whose
//! values are never shown to anyone.

use slipway_state::{Variable, VariableValue};

/// `var ls` output: `KEY=VALUE` lines (or a JSON array of `{name, value?, sensitive}`);
/// without `may_read_values` (viewers) and for sensitive variables, the value is left out.
pub(crate) fn listing(vars: &[Variable], may_read_values: bool, json: bool) -> String {
    let shown = |v: &Variable| match &v.value {
        VariableValue::Plain(value) if may_read_values => Some(value.clone()),
        _ => None,
    };
    if json {
        let list: Vec<serde_json::Value> = vars
            .iter()
            .map(|v| {
                let mut o = serde_json::json!({
                    "name": v.name,
                    "sensitive": v.value.is_sensitive(),
                });
                if let Some(value) = shown(v) {
                    o["value"] = serde_json::Value::String(value);
                }
                o
            })
            .collect();
        return format!("{}\n", serde_json::Value::Array(list));
    }
    vars.iter()
        .map(|v| match shown(v) {
            Some(value) => format!("{}={value}\n", v.name),
            None if v.value.is_sensitive() => format!("{} (sensitive: value hidden)\n", v.name),
            None => format!("{}\n", v.name),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<Variable> {
        vec![
            Variable {
                name: "MODE".into(),
                value: VariableValue::Plain("fast".into()),
            },
            Variable {
                name: "TOKEN".into(),
                value: VariableValue::Sensitive("s3cret".into()),
            },
        ]
    }

    #[test]
    fn viewers_see_names_and_nobody_sees_sensitive_values() {
        let admin = listing(&vars(), true, false);
        assert_eq!(admin, "MODE=fast\nTOKEN (sensitive: value hidden)\n");
        let viewer = listing(&vars(), false, false);
        assert_eq!(viewer, "MODE\nTOKEN (sensitive: value hidden)\n");
        for (json, may) in [
            (listing(&vars(), true, true), true),
            (listing(&vars(), false, true), false),
        ] {
            assert!(!json.contains("s3cret"), "{json}");
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v[0]["name"], "MODE");
            assert_eq!(v[0]["value"].as_str(), may.then_some("fast"));
            assert_eq!(v[1]["sensitive"], true);
            assert!(v[1].get("value").is_none());
        }
    }
}
