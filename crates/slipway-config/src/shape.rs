//! A small description language for what each configuration file accepts.
//!
//! The same tables drive the hand-written validation ([`check`]) and the JSON Schemas in
//! `config-schemas/` ([`to_schema`]), so the two cannot drift apart.

use crate::diag::Diagnostic;
use crate::keypath::KeyPath;
use crate::yaml::{Kind, Node};
use serde_json::{json, Map, Value};

/// What a value may look like.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape {
    /// Anything.
    Any,
    /// A string.
    Str,
    /// A non-negative integer.
    Uint,
    /// A positive integer (sizes).
    PosInt,
    /// A boolean.
    Bool,
    /// A string, number or boolean.
    Scalar,
    /// Null (an empty value).
    Null,
    /// A mapping with known keys (null accepted as empty).
    Obj(&'static [Field]),
    /// A mapping with free keys; every value has this shape and description (null accepted as empty).
    Map(&'static Shape, &'static str),
    /// A list; every item has this shape and description.
    Seq(&'static Shape, &'static str),
    /// Any of these.
    OneOf(&'static [Shape]),
}

/// Whether Slipway acts on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Support {
    /// Read and used.
    Acted,
    /// Valid for Platform.sh/Upsun, accepted with a warning, not used yet.
    Ignored,
}

/// One known key of a mapping.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub support: Support,
    pub desc: &'static str,
}

/// A key Slipway acts on.
pub(crate) const fn acted(name: &'static str, shape: Shape, desc: &'static str) -> Field {
    Field {
        name,
        shape,
        support: Support::Acted,
        desc,
    }
}

/// A key accepted with a warning.
pub(crate) const fn ignored(name: &'static str, shape: Shape, desc: &'static str) -> Field {
    Field {
        name,
        shape,
        support: Support::Ignored,
        desc,
    }
}

/// Validate `node` against `shape`, appending errors and warnings.
pub(crate) fn check(node: &Node, shape: &Shape, path: &mut KeyPath, out: &mut Vec<Diagnostic>) {
    match shape {
        Shape::Any => {}
        Shape::Str | Shape::Uint | Shape::PosInt | Shape::Bool | Shape::Scalar | Shape::Null => {
            if !scalar_matches(node, shape) {
                let found = match node.kind {
                    Kind::Int(i) if matches!(shape, Shape::Uint | Shape::PosInt) => i.to_string(),
                    _ => node.type_name().to_string(),
                };
                out.push(path.error(
                    &node.pos,
                    format!("expected {}, found {found}", describe(shape)),
                ));
            }
        }
        Shape::Obj(fields) => match &node.kind {
            Kind::Null => {}
            Kind::Map(entries) => {
                for e in entries {
                    path.push_key(&e.key);
                    match fields.iter().find(|f| f.name == e.key) {
                        Some(f) if f.support == Support::Ignored => out.push(path.warning(
                            &e.key_pos,
                            format!("`{}` is a valid Platform.sh/Upsun key that Slipway does not act on yet; it is ignored", e.key),
                        )),
                        Some(f) => check(&e.value, &f.shape, path, out),
                        None => out.push(path.error(&e.key_pos, unknown_key_message(&e.key, fields.iter().map(|f| f.name)))),
                    }
                    path.pop();
                }
            }
            _ => out.push(path.error(
                &node.pos,
                format!("expected a mapping, found {}", node.type_name()),
            )),
        },
        Shape::Map(inner, _) => match &node.kind {
            Kind::Null => {}
            Kind::Map(entries) => {
                for e in entries {
                    path.push_key(&e.key);
                    check(&e.value, inner, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.error(
                &node.pos,
                format!("expected a mapping, found {}", node.type_name()),
            )),
        },
        Shape::Seq(inner, _) => match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push_index(i);
                    check(item, inner, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.error(
                &node.pos,
                format!("expected a list, found {}", node.type_name()),
            )),
        },
        Shape::OneOf(options) => {
            // A variant that accepts the node cleanly wins.
            for opt in options.iter() {
                let mut scratch = Vec::new();
                check(node, opt, path, &mut scratch);
                if !scratch.iter().any(Diagnostic::is_error) {
                    out.extend(scratch);
                    return;
                }
            }
            // Otherwise report against the variant of the same container kind, for precise errors.
            let same_kind = options.iter().find(|o| {
                matches!(
                    (o, &node.kind),
                    (Shape::Obj(_) | Shape::Map(..), Kind::Map(_)) | (Shape::Seq(..), Kind::Seq(_))
                )
            });
            match same_kind {
                Some(opt) => check(node, opt, path, out),
                None => out.push(path.error(
                    &node.pos,
                    format!("expected {}, found {}", describe(shape), node.type_name()),
                )),
            }
        }
    }
}

fn scalar_matches(node: &Node, shape: &Shape) -> bool {
    match (shape, &node.kind) {
        (Shape::Str, Kind::Str(_)) => true,
        (Shape::Uint, Kind::Int(i)) => *i >= 0,
        (Shape::PosInt, Kind::Int(i)) => *i >= 1,
        (Shape::Bool, Kind::Bool(_)) => true,
        (Shape::Null, Kind::Null) => true,
        (Shape::Scalar, Kind::Str(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_)) => true,
        _ => false,
    }
}

/// "a string", "a mapping", "a string or null", ...
pub(crate) fn describe(shape: &Shape) -> String {
    match shape {
        Shape::Any => "any value".into(),
        Shape::Str => "a string".into(),
        Shape::Uint => "a non-negative integer".into(),
        Shape::PosInt => "a positive integer".into(),
        Shape::Bool => "a boolean (true or false)".into(),
        Shape::Scalar => "a string, number or boolean".into(),
        Shape::Null => "null".into(),
        Shape::Obj(_) | Shape::Map(..) => "a mapping".into(),
        Shape::Seq(..) => "a list".into(),
        Shape::OneOf(opts) => {
            let mut names: Vec<String> = Vec::new();
            for o in opts.iter() {
                let d = describe(o);
                if !names.contains(&d) {
                    names.push(d);
                }
            }
            match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => names.join(""),
            }
        }
    }
}

/// "unknown key `deplyo`; did you mean `deploy`?"
pub(crate) fn unknown_key_message<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    match crate::suggest::closest(key, known.iter().copied()) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None => format!(
            "unknown key `{key}` (expected one of: {})",
            known.join(", ")
        ),
    }
}

/// The JSON Schema (draft 2020-12) fragment for a shape.
pub(crate) fn to_schema(shape: &Shape) -> Value {
    match shape {
        Shape::Any => json!({}),
        Shape::Str => json!({"type": "string"}),
        Shape::Uint => json!({"type": "integer", "minimum": 0}),
        Shape::PosInt => json!({"type": "integer", "minimum": 1}),
        Shape::Bool => json!({"type": "boolean"}),
        Shape::Scalar => json!({"type": ["string", "number", "boolean"]}),
        Shape::Null => json!({"type": "null"}),
        Shape::Obj(fields) => {
            let mut props = Map::new();
            for f in fields.iter() {
                props.insert(f.name.to_string(), field_schema(f));
            }
            json!({"type": ["object", "null"], "properties": props, "additionalProperties": false})
        }
        Shape::Map(inner, desc) => {
            json!({"type": ["object", "null"], "additionalProperties": with_desc(to_schema(inner), desc)})
        }
        Shape::Seq(inner, desc) => {
            json!({"type": "array", "items": with_desc(to_schema(inner), desc)})
        }
        Shape::OneOf(opts) => json!({"anyOf": opts.iter().map(to_schema).collect::<Vec<_>>()}),
    }
}

/// A field's schema with its description (and the "not acted on" marker).
pub(crate) fn field_schema(f: &Field) -> Value {
    match f.support {
        Support::Acted => with_desc(to_schema(&f.shape), f.desc),
        Support::Ignored => {
            let mut v = with_desc(
                to_schema(&f.shape),
                &format!(
                    "{} Slipway accepts this key but does not act on it yet (a warning).",
                    f.desc
                ),
            );
            if let Value::Object(m) = &mut v {
                m.insert("x-slipway-support".into(), json!("ignored"));
            }
            v
        }
    }
}

fn with_desc(mut v: Value, desc: &str) -> Value {
    if let Value::Object(m) = &mut v {
        // Keep the description first for readability.
        let mut out = Map::new();
        out.insert("description".into(), json!(desc));
        out.extend(std::mem::take(m));
        return Value::Object(out);
    }
    v
}
