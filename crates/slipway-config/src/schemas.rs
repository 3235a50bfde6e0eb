//! The JSON Schemas of every configuration file, generated from the same tables as the validation.
//! `config-schemas/*.schema.json` in the repository are these, written out (a test keeps them equal).

use crate::shape::{to_schema, Shape};
use crate::tables;
use serde_json::{json, Value};

/// Base of the schemas' `$id`.
const ID_BASE: &str = "https://slipway.dev/config-schemas/";

/// (file name, title, description, shape, required keys at the root).
fn kinds() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    Shape,
    &'static [&'static str],
)> {
    vec![
        ("app.schema.json", "Slipway application", "One application: a `.platform.app.yaml` (or `.magento.app.yaml`) file.", tables::APP, &["name", "type"]),
        ("applications.schema.json", "Slipway applications list", "`.platform/applications.yaml`: a list of applications.", tables::APPLICATIONS, &[]),
        ("services.schema.json", "Slipway services", "`.platform/services.yaml` (or `.magento/services.yaml`): services by name.", tables::SERVICES, &[]),
        ("routes.schema.json", "Slipway routes", "`.platform/routes.yaml` (or `.magento/routes.yaml`): routes by URL pattern.", tables::ROUTES, &[]),
        ("upsun-config.schema.json", "Slipway / Upsun single-file configuration", "`.slipway/config.yaml` or `.upsun/config.yaml`: applications, services and routes in one file.", tables::UPSUN_CONFIG, &["applications"]),
    ]
}

/// Every schema: (file name, JSON Schema document).
pub fn all() -> Vec<(&'static str, Value)> {
    kinds()
        .into_iter()
        .map(|(file, title, desc, shape, required)| {
            let mut doc = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": format!("{ID_BASE}{file}"),
                "title": title,
                "description": desc,
            });
            let body = to_schema(&shape);
            if let (Value::Object(d), Value::Object(b)) = (&mut doc, body) {
                d.extend(b);
                if !required.is_empty() {
                    d.insert("required".into(), json!(required));
                    // A whole file must be a mapping, not null.
                    d.insert("type".into(), json!("object"));
                }
            }
            if file == "applications.schema.json" {
                // A list item names itself; an item of the mapping form is named by its key.
                if let Some(Value::Array(alts)) = doc.get_mut("anyOf") {
                    for alt in alts.iter_mut() {
                        if let Some(Value::Object(items)) = alt.get_mut("items") {
                            items.insert("required".into(), json!(["name", "type"]));
                        }
                        if let Some(Value::Object(items)) = alt.get_mut("additionalProperties") {
                            items.insert("required".into(), json!(["type"]));
                        }
                    }
                }
            }
            (file, doc)
        })
        .collect()
}

/// A schema rendered as the repository stores it (pretty JSON, trailing newline).
pub fn render(doc: &Value) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_default();
    s.push('\n');
    s
}
