//! Validation of whole files against the JSON Schemas in `config-schemas/` (with the `jsonschema`
//! crate), each problem mapped back from the schema's instance path to the YAML node at fault.
//!
//! The hand-written structural checks ([`crate::shape::check`]) run from the same tables the
//! schemas are generated from and give the friendlier messages (did-you-mean, ignored-key
//! warnings). [`merge`] keeps a schema problem only where no hand-written error already names
//! that key, so every problem is reported once, and anything the schema refuses is reported.

use crate::diag::Diagnostic;
use crate::keypath::KeyPath;
use crate::yaml::{Kind, Node, Pos};
use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::{Location, LocationSegment};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::sync::OnceLock;

/// Which schema a file is validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `.platform.app.yaml`, `.magento.app.yaml`.
    App,
    /// `.platform/applications.yaml`.
    Applications,
    /// `services.yaml`.
    Services,
    /// `routes.yaml`.
    Routes,
    /// `.upsun/config.yaml`, `.slipway/config.yaml`.
    SingleFile,
}

/// The schema files, as stored in the repository's `config-schemas/`.
const SOURCES: [(FileKind, &str, &str); 5] = [
    (
        FileKind::App,
        "app.schema.json",
        include_str!("../../../config-schemas/app.schema.json"),
    ),
    (
        FileKind::Applications,
        "applications.schema.json",
        include_str!("../../../config-schemas/applications.schema.json"),
    ),
    (
        FileKind::Services,
        "services.schema.json",
        include_str!("../../../config-schemas/services.schema.json"),
    ),
    (
        FileKind::Routes,
        "routes.schema.json",
        include_str!("../../../config-schemas/routes.schema.json"),
    ),
    (
        FileKind::SingleFile,
        "upsun-config.schema.json",
        include_str!("../../../config-schemas/upsun-config.schema.json"),
    ),
];

/// A compiled schema and its document (to look keywords up by schema path).
struct Compiled {
    kind: FileKind,
    doc: Value,
    validator: Validator,
}

/// Every schema, compiled once per process.
fn compiled() -> &'static Result<Vec<Compiled>, String> {
    static CELL: OnceLock<Result<Vec<Compiled>, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(kind, file, text)| {
                let doc: Value = serde_json::from_str(text)
                    .map_err(|e| format!("config-schemas/{file} is not JSON: {e}"))?;
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .build(&doc)
                    .map_err(|e| format!("config-schemas/{file} is no valid schema: {e}"))?;
                Ok(Compiled {
                    kind: *kind,
                    doc,
                    validator,
                })
            })
            .collect()
    })
}

/// A problem the schema found.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// The diagnostic (position, key path, message).
    pub diag: Diagnostic,
    /// Whether the problem is a summary of everything below its key (`anyOf`): then any
    /// hand-written error at or below the key explains it.
    pub subtree: bool,
}

/// Validate a whole file's root node against its schema.
pub(crate) fn problems(kind: FileKind, root: &Node) -> Vec<Problem> {
    let schemas = match compiled() {
        Ok(s) => s,
        Err(e) => {
            return vec![Problem {
                diag: Diagnostic::error(&root.pos.file, 0, 0, "", format!("internal error: {e}")),
                subtree: true,
            }];
        }
    };
    let Some(c) = schemas.iter().find(|c| c.kind == kind) else {
        return Vec::new();
    };
    let instance = root.to_json();
    let mut out = Vec::new();
    for err in c.validator.iter_errors(&instance) {
        convert(&err, &c.doc, root, &mut out);
    }
    out.sort_by(|a, b| {
        (&a.diag.file, a.diag.line, a.diag.column).cmp(&(&b.diag.file, b.diag.line, b.diag.column))
    });
    out
}

/// Run the hand-written structural checks' results and the schema's against each other: the
/// structural diagnostics all go to `diags`, plus the schema problems no structural error explains.
pub(crate) fn merge(
    kind: FileKind,
    root: &Node,
    structural: Vec<Diagnostic>,
    diags: &mut Vec<Diagnostic>,
) {
    let schema = problems(kind, root);
    let extra: Vec<Diagnostic> = schema
        .into_iter()
        .filter(|p| !covered(p, &structural))
        .map(|p| p.diag)
        .collect();
    diags.extend(structural);
    diags.extend(extra);
}

/// Whether a hand-written error already reports this schema problem.
fn covered(p: &Problem, hand: &[Diagnostic]) -> bool {
    hand.iter().filter(|h| h.is_error()).any(|h| {
        h.key_path == p.diag.key_path || (p.subtree && is_below(&h.key_path, &p.diag.key_path))
    })
}

/// Whether rendered key path `inner` is strictly below `outer`.
fn is_below(inner: &str, outer: &str) -> bool {
    if outer.is_empty() {
        return !inner.is_empty();
    }
    inner.len() > outer.len()
        && inner.starts_with(outer)
        && matches!(inner.as_bytes()[outer.len()], b'.' | b'[')
}

/// The node at an instance location, the position of the key that led to it, and its key path.
fn locate<'a>(root: &'a Node, loc: &Location) -> (&'a Node, Option<Pos>, KeyPath) {
    let mut node = root;
    let mut key_pos = None;
    let mut path = KeyPath::new();
    for seg in loc.segments() {
        match (&node.kind, seg) {
            (Kind::Seq(items), LocationSegment::Index(i)) if i < items.len() => {
                path.push_index(i);
                key_pos = None;
                node = &items[i];
            }
            (Kind::Map(_), seg) => {
                let key = match seg {
                    LocationSegment::Property(p) => p.into_owned(),
                    LocationSegment::Index(i) => i.to_string(),
                };
                let Some(e) = node.entry(&key) else { break };
                path.push_key(&key);
                key_pos = Some(e.key_pos.clone());
                node = &e.value;
            }
            _ => break,
        }
    }
    (node, key_pos, path)
}

/// The schema keyword at a schema path (a JSON pointer into the document).
fn schema_at<'a>(doc: &'a Value, loc: &Location) -> Option<&'a Value> {
    doc.pointer(loc.as_str())
}

/// The subschema holding the keyword at `loc` (the pointer without its last part).
fn parent_schema<'a>(doc: &'a Value, loc: &Location) -> Option<&'a Value> {
    let s = loc.as_str();
    let cut = s.rfind('/')?;
    doc.pointer(&s[..cut])
}

/// Turn one schema error into problems.
fn convert(err: &ValidationError<'_>, doc: &Value, root: &Node, out: &mut Vec<Problem>) {
    let (node, _key_pos, path) = locate(root, err.instance_path());
    let at = |p: &KeyPath, pos: &Pos, msg: String, subtree: bool| Problem {
        diag: p.error(pos, msg),
        subtree,
    };
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known: Vec<String> = parent_schema(doc, err.schema_path())
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for key in unexpected {
                let p = path.with(key);
                let pos = node
                    .entry(key)
                    .map(|e| e.key_pos.clone())
                    .unwrap_or_else(|| node.pos.clone());
                out.push(at(
                    &p,
                    &pos,
                    crate::shape::unknown_key_message(key, known.iter().map(String::as_str)),
                    false,
                ));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            out.push(at(
                &path.with(&name),
                &node.pos,
                format!("missing required key `{name}`"),
                false,
            ));
        }
        ValidationErrorKind::Type { .. } => {
            let want = schema_at(doc, err.schema_path())
                .map(describe_types)
                .unwrap_or_else(|| "another type".into());
            out.push(at(
                &path,
                &node.pos,
                format!("expected {want}, found {}", node.type_name()),
                false,
            ));
        }
        ValidationErrorKind::Minimum { limit } => {
            let want = match parent_schema(doc, err.schema_path()).map(describe_schema) {
                Some(d) if d.ends_with("integer") && d != "an integer" => d,
                _ => format!("at least {limit}"),
            };
            out.push(at(
                &path,
                &node.pos,
                format!("expected {want}, found {}", found(node)),
                false,
            ));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let alts = schema_at(doc, err.schema_path()).and_then(Value::as_array);
            // The alternative of the node's own kind (a mapping for a mapping...) explains best.
            let json_type = match node.kind {
                Kind::Map(_) => Some("object"),
                Kind::Seq(_) => Some("array"),
                _ => None,
            };
            if let (Some(alts), Some(t)) = (alts, json_type) {
                let same_kind = alts.iter().position(|a| match a.get("type") {
                    Some(Value::String(s)) => s == t,
                    Some(Value::Array(v)) => v.iter().any(|x| x == t),
                    _ => false,
                });
                if let Some(errors) = same_kind
                    .and_then(|i| context.get(i))
                    .filter(|e| !e.is_empty())
                {
                    for e in errors {
                        convert(e, doc, root, out);
                    }
                    return;
                }
            }
            let want = alts
                .map(|alts| join_or(alts.iter().map(describe_schema).collect()))
                .unwrap_or_else(|| "another value".into());
            out.push(at(
                &path,
                &node.pos,
                format!("expected {want}, found {}", node.type_name()),
                true,
            ));
        }
        _ => out.push(at(&path, &node.pos, err.to_string(), true)),
    }
}

/// What a node is, for "found ..." after a bound: the number itself, or its type.
fn found(node: &Node) -> String {
    match node.kind {
        Kind::Int(i) => format!("{i}"),
        _ => node.type_name().to_string(),
    }
}

/// "a string", "a mapping", "a non-negative integer", ... for a subschema.
fn describe_schema(s: &Value) -> String {
    if s.get("type").is_none() {
        if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
            return join_or(alts.iter().map(describe_schema).collect());
        }
        return "any value".into();
    }
    let mut d = describe_types(s.get("type").unwrap_or(&Value::Null));
    if s.get("type").and_then(Value::as_str) == Some("integer") {
        match s.get("minimum").and_then(Value::as_i64) {
            Some(0) => d = "a non-negative integer".into(),
            Some(1) => d = "a positive integer".into(),
            _ => {}
        }
    }
    d
}

/// The value of a `type` keyword in words (`["object", "null"]` is "a mapping": null is an empty one).
fn describe_types(t: &Value) -> String {
    let names: Vec<&str> = match t {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let object_or_null = names.contains(&"object") && names.contains(&"null") && names.len() == 2;
    let words: Vec<String> = names
        .iter()
        .filter(|n| !(object_or_null && **n == "null"))
        .map(|n| match *n {
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "a boolean (true or false)",
            "object" => "a mapping",
            "array" => "a list",
            "null" => "null",
            other => other,
        })
        .map(str::to_string)
        .collect();
    join_or(words)
}

/// "a, b or c", without repeats.
fn join_or(mut words: Vec<String>) -> String {
    let mut seen = Vec::new();
    words.retain(|w| {
        let new = !seen.contains(w);
        seen.push(w.clone());
        new
    });
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => "another value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        let mut d = Vec::new();
        crate::yaml::parse(".platform.app.yaml", text, &mut d).unwrap()
    }

    fn lines(kind: FileKind, text: &str) -> Vec<String> {
        problems(kind, &parse(text))
            .into_iter()
            .map(|p| p.diag.to_string())
            .collect()
    }

    #[test]
    fn every_bundled_schema_compiles() {
        let c = compiled().as_ref().unwrap();
        assert_eq!(c.len(), SOURCES.len());
    }

    #[test]
    fn schema_problems_point_at_the_yaml_node() {
        let got = lines(
            FileKind::App,
            "name: app\ntype: 5\nhooks:\n  biuld: x\ndisk: -1\nrelationships:\n  db: [1]\nweb:\n  locations:\n    '/':\n      passthru: 3\n",
        );
        assert_eq!(
            got,
            vec![
                ".platform.app.yaml:2:7: error: expected a string, found an integer (at type)",
                ".platform.app.yaml:4:3: error: unknown key `biuld`; did you mean `build`? (at hooks.biuld)",
                ".platform.app.yaml:5:7: error: expected a positive integer, found -1 (at disk)",
                ".platform.app.yaml:7:7: error: expected a string, null or a mapping, found a list (at relationships.db)",
                ".platform.app.yaml:11:17: error: expected a boolean (true or false) or a string, found an integer (at web.locations.\"/\".passthru)",
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn required_keys_and_wrong_roots() {
        assert_eq!(
            lines(FileKind::App, "name: app\n"),
            vec![".platform.app.yaml:1:1: error: missing required key `type` (at type)"]
        );
        assert_eq!(
            lines(FileKind::Services, "- a\n"),
            vec![".platform.app.yaml:1:1: error: expected a mapping, found a list"]
        );
        assert_eq!(
            lines(FileKind::Applications, "- name: a\n  type: x\n- type: y\n"),
            vec![".platform.app.yaml:3:3: error: missing required key `name` (at [1].name)"]
        );
        assert!(lines(
            FileKind::SingleFile,
            "applications:\n  app:\n    type: python:3.12\n"
        )
        .is_empty());
    }

    #[test]
    fn merge_reports_each_problem_once() {
        let root = parse("name: app\ntype: 5\nsize: 3\n");
        let structural = vec![Diagnostic::error(
            ".platform.app.yaml",
            2,
            7,
            "type",
            "expected a string, found a number",
        )];
        let mut out = Vec::new();
        merge(FileKind::App, &root, structural, &mut out);
        let got: Vec<String> = out.iter().map(|d| d.to_string()).collect();
        // `type` once (the hand-written message); `size` only the schema knows is wrong.
        assert_eq!(
            got,
            vec![
                ".platform.app.yaml:2:7: error: expected a string, found a number (at type)",
                ".platform.app.yaml:3:7: error: expected a string, found an integer (at size)",
            ]
        );
    }

    #[test]
    fn below_is_segment_aware() {
        assert!(is_below("a.b", "a"));
        assert!(is_below("a[0]", "a"));
        assert!(!is_below("ab", "a"));
        assert!(!is_below("a", "a"));
        assert!(is_below("x", ""));
    }
}
