//! The JSON Schemas in config-schemas/ are valid JSON, describe every key, and equal what the
//! validation tables generate (so hand-written validation and schemas agree).
//! Regenerate with `SLIPWAY_BLESS=1 cargo test -p slipway-config --test schemas`.

use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config-schemas")
}

#[test]
fn schema_files_match_the_validation_tables() {
    let bless = std::env::var_os("SLIPWAY_BLESS").is_some();
    for (file, doc) in slipway_config::schemas::all() {
        let path = dir().join(file);
        let want = slipway_config::schemas::render(&doc);
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(have == want, "{file} is out of date: run SLIPWAY_BLESS=1 cargo test -p slipway-config --test schemas");
    }
}

/// Every property of every object schema has a description.
fn check_descriptions(v: &Value, at: &str, missing: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (k, p) in props {
                    if p.get("description")
                        .is_none_or(|d| d.as_str().is_none_or(str::is_empty))
                    {
                        missing.push(format!("{at}.{k}"));
                    }
                }
            }
            if let Some(ap @ Value::Object(_)) = m.get("additionalProperties") {
                if ap.get("description").is_none() {
                    missing.push(format!("{at}.*"));
                }
            }
            for (k, child) in m {
                check_descriptions(child, &format!("{at}/{k}"), missing);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| check_descriptions(i, at, missing)),
        _ => {}
    }
}

#[test]
fn every_schema_file_is_valid_json_with_descriptions() {
    let mut count = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        count += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            v["$schema"],
            "https://json-schema.org/draft/2020-12/schema",
            "{}",
            path.display()
        );
        assert!(v["description"].is_string(), "{}", path.display());
        let mut missing = Vec::new();
        check_descriptions(&v, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{}: keys without description: {missing:?}",
            path.display()
        );
    }
    assert!(count >= 4, "expected the schema files, found {count}");
}

#[test]
fn app_schema_names_the_keys_slipway_acts_on() {
    let text = std::fs::read_to_string(dir().join("app.schema.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let props = v["properties"].as_object().unwrap();
    // Spec section 4: the keys Slipway acts on.
    for k in [
        "name",
        "type",
        "source",
        "build",
        "dependencies",
        "hooks",
        "web",
        "mounts",
        "disk",
        "relationships",
        "variables",
        "workers",
        "crons",
        "size",
        "resources",
        "timezone",
        "runtime",
    ] {
        assert!(props.contains_key(k), "missing {k}");
        assert!(
            props[k].get("x-slipway-support").is_none(),
            "{k} must not be marked ignored"
        );
    }
    for k in ["access", "firewall", "additional_hosts"] {
        assert_eq!(props[k]["x-slipway-support"], "ignored", "{k}");
    }
    assert_eq!(v["required"], serde_json::json!(["name", "type"]));
    assert_eq!(v["additionalProperties"], false);
    assert!(props["hooks"]["properties"].get("post_deploy").is_some());
    // Build steps: flavor and caches are acted on; dependencies name their languages.
    let build = &props["build"]["properties"];
    for k in ["flavor", "caches"] {
        assert!(
            build[k].is_object() && build[k].get("x-slipway-support").is_none(),
            "build.{k}"
        );
    }
    let cache = &build["caches"]["additionalProperties"]["properties"];
    for k in ["directory", "watch", "allow_stale", "share_between_apps"] {
        assert!(
            cache[k].get("x-slipway-support").is_none(),
            "build.caches.*.{k}"
        );
    }
    let deps = &props["dependencies"];
    assert_eq!(
        deps["additionalProperties"], false,
        "an unknown language is refused"
    );
    for k in ["php", "python", "python2", "python3", "nodejs", "ruby"] {
        assert_eq!(
            deps["properties"][k]["additionalProperties"]["type"], "string",
            "dependencies.{k}"
        );
    }
}
