//! A YAML reader that keeps the position of every node (for precise diagnostics).
//!
//! Parses with `saphyr-parser` events into a small tree. Scalars are resolved with the
//! YAML 1.2 core schema. Custom tags (`!include`, `!archive`) are kept on the node.
//! Duplicate keys are reported with both lines.

use crate::diag::Diagnostic;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a node starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    /// Repository-relative file path.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A parsed YAML value with its position.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// A non-core tag such as `!include` (with its `!`).
    pub tag: Option<String>,
}

/// One mapping entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// The value of a node.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

impl Node {
    /// A null node at a position.
    pub fn null(pos: Pos) -> Node {
        Node {
            kind: Kind::Null,
            pos,
            tag: None,
        }
    }

    /// Entry of a mapping by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Full entry of a mapping by key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// Mapping entries (empty for anything else).
    pub fn entries(&self) -> &[Entry] {
        match &self.kind {
            Kind::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The string value, if a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether null.
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// A human name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The node as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// How deeply mappings and lists may nest.
pub(crate) const MAX_DEPTH: usize = 64;
/// How many values aliases may expand to in one file (an "alias bomb" is refused quickly).
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;

/// A frame of the tree being built; `size` counts the values below it.
enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
        anchor: usize,
        tag: Option<String>,
        size: usize,
    },
    Map {
        entries: Vec<Entry>,
        pending_key: Option<(String, Pos)>,
        pos: Pos,
        anchor: usize,
        tag: Option<String>,
        size: usize,
    },
}

/// Parse one YAML file. Problems that do not stop parsing (duplicate keys) go to `diags`;
/// a syntax error (or input refused as hostile) is returned as `Err`.
pub(crate) fn parse(
    file: &str,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Node, Diagnostic> {
    let file: Arc<str> = Arc::from(file);
    let pos_of = |span: &Span| Pos {
        file: file.clone(),
        line: span.start.line(),
        col: span.start.col() + 1,
    };
    let err = |pos: &Pos, msg: String| Diagnostic::error(&file, pos.line, pos.col, "", msg);
    let mut stack: Vec<Frame> = Vec::new();
    // Anchored values with their sizes.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    // Values copied through anchors and aliases so far.
    let mut copied = 0usize;
    let mut root: Option<Node> = None;
    let mut docs = 0usize;
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                let m = e.marker();
                let line = m.line().max(1);
                return Err(Diagnostic::error(
                    &file,
                    line,
                    m.col() + 1,
                    "",
                    syntax_message(text, line, e.info()),
                ));
            }
        };
        let pos = pos_of(&span);
        let done: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(err(
                        &pos,
                        "the file holds more than one YAML document (a `---` line starts another); a config file holds exactly one".into(),
                    ));
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    copied += size;
                    if copied > MAX_ALIAS_NODES {
                        return Err(err(&pos, alias_bomb_message()));
                    }
                    let mut n = n.clone();
                    n.pos = pos.clone();
                    Some((n, 0, *size))
                }
                None => return Err(err(&pos, "invalid YAML: alias to an unknown anchor".into())),
            },
            Event::Scalar(value, style, anchor, tag) => {
                let tag_str = tag.as_ref().map(|t| t.to_string());
                let core = tag
                    .as_ref()
                    .filter(|t| t.is_yaml_core_schema())
                    .map(|t| t.suffix.clone());
                let kind = resolve_scalar(&value, style, core.as_deref());
                let custom = tag_str.filter(|_| core.is_none());
                Some((
                    Node {
                        kind,
                        pos,
                        tag: custom,
                    },
                    anchor,
                    1,
                ))
            }
            Event::SequenceStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        &pos,
                        format!("the YAML nests deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let tag = tag
                    .filter(|t| !t.is_yaml_core_schema())
                    .map(|t| t.to_string());
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    pos,
                    anchor,
                    tag,
                    size: 1,
                });
                None
            }
            Event::MappingStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        &pos,
                        format!("the YAML nests deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let tag = tag
                    .filter(|t| !t.is_yaml_core_schema())
                    .map(|t| t.to_string());
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    pos,
                    anchor,
                    tag,
                    size: 1,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    pos,
                    anchor,
                    tag,
                    size,
                }) => Some((
                    Node {
                        kind: Kind::Seq(items),
                        pos,
                        tag,
                    },
                    anchor,
                    size,
                )),
                _ => return Err(err(&pos, "invalid YAML: unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    entries,
                    pos,
                    anchor,
                    tag,
                    size,
                    ..
                }) => Some((
                    Node {
                        kind: Kind::Map(entries),
                        pos,
                        tag,
                    },
                    anchor,
                    size,
                )),
                _ => return Err(err(&pos, "invalid YAML: unbalanced mapping".into())),
            },
        };
        let Some((node, anchor, size)) = done else {
            continue;
        };
        if anchor > 0 {
            // Keeping a copy costs as much as an alias would.
            copied += size;
            if copied > MAX_ALIAS_NODES {
                return Err(err(&node.pos, alias_bomb_message()));
            }
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => {
                if root.is_none() {
                    root = Some(node);
                }
            }
            Some(Frame::Seq {
                items,
                size: parent,
                ..
            }) => {
                *parent += size;
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                pending_key,
                size: parent,
                ..
            }) => {
                *parent += size;
                match pending_key.take() {
                    None => {
                        let key = match &node.kind {
                            Kind::Str(s) => s.clone(),
                            Kind::Null => String::new(),
                            Kind::Bool(b) => b.to_string(),
                            Kind::Int(i) => i.to_string(),
                            Kind::Float(f) => f.to_string(),
                            Kind::Seq(_) | Kind::Map(_) => {
                                diags.push(Diagnostic::error(
                                    &file,
                                    node.pos.line,
                                    node.pos.col,
                                    "",
                                    "a mapping key must be a plain value, not a list or mapping",
                                ));
                                String::new()
                            }
                        };
                        *pending_key = Some((key, node.pos));
                    }
                    Some((key, key_pos)) => {
                        if key == "<<" && node.tag.is_none() {
                            merge_into(entries, node, diags);
                        } else if let Some(prev) = entries.iter().position(|e| e.key == key) {
                            let first = entries[prev].key_pos.line;
                            diags.push(Diagnostic::error(
                                &file,
                                key_pos.line,
                                key_pos.col,
                                "",
                                format!("duplicate key `{key}`: first defined on line {first}, again on line {}", key_pos.line),
                            ));
                            entries[prev] = Entry {
                                key,
                                key_pos,
                                value: node,
                            };
                        } else {
                            entries.push(Entry {
                                key,
                                key_pos,
                                value: node,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(root.unwrap_or_else(|| {
        Node::null(Pos {
            file,
            line: 1,
            col: 1,
        })
    }))
}

fn alias_bomb_message() -> String {
    format!("YAML anchors and aliases expand to more than {MAX_ALIAS_NODES} values; write the repeated parts out or use fewer aliases")
}

/// The message of a syntax error, with a clearer text when a tab is at fault.
fn syntax_message(text: &str, line: usize, info: &str) -> String {
    let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let indent: String = line_text
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    if indent.contains('\t') || info.contains("tab") {
        return "tabs are not allowed to indent YAML; indent with spaces".into();
    }
    format!("invalid YAML: {info}")
}

/// YAML merge key (`<<: *base`): entries not already present are added.
fn merge_into(entries: &mut Vec<Entry>, node: Node, diags: &mut Vec<Diagnostic>) {
    let sources = match node.kind {
        Kind::Map(m) => vec![m],
        Kind::Seq(items) => items
            .into_iter()
            .filter_map(|n| match n.kind {
                Kind::Map(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => {
            diags.push(Diagnostic::error(
                &node.pos.file,
                node.pos.line,
                node.pos.col,
                "",
                "`<<` (merge key) needs a mapping or a list of mappings",
            ));
            return;
        }
    };
    for src in sources {
        for e in src {
            if !entries.iter().any(|x| x.key == e.key) {
                entries.push(e);
            }
        }
    }
}

/// Resolve a scalar per the YAML 1.2 core schema (quoted and block scalars stay strings).
fn resolve_scalar(v: &str, style: ScalarStyle, core_tag: Option<&str>) -> Kind {
    match core_tag {
        Some("str") => return Kind::Str(v.to_string()),
        Some("null") => return Kind::Null,
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Kind::Str(v.to_string());
    }
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Kind::Int(i);
            }
        }
    }
    if let Some(oct) = v.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Kind::Int(i);
            }
        }
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = v.parse::<i64>() {
            return Kind::Int(i);
        }
    }
    if is_core_float(digits) {
        if let Ok(f) = v.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(v.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (sign already stripped).
fn is_core_float(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mant.is_empty() && mant.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => mant.contains('.'),
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
        }
    };
    mant_ok && exp_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> (Result<Node, Diagnostic>, Vec<Diagnostic>) {
        let mut d = Vec::new();
        (parse("f.yaml", text, &mut d), d)
    }

    #[test]
    fn scalars_resolve_per_core_schema() {
        let (n, _) = p("a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: 1.2.3\ng: 0x1F\nh: yes\n");
        let j = n.unwrap().to_json();
        assert_eq!(
            j,
            serde_json::json!({"a":1,"b":1.5,"c":true,"d":null,"e":"1","f":"1.2.3","g":31,"h":"yes"})
        );
    }

    #[test]
    fn positions_are_one_based() {
        let (n, _) = p("top:\n  inner: value\n");
        let n = n.unwrap();
        let e = n.get("top").unwrap().entry("inner").unwrap();
        assert_eq!((e.key_pos.line, e.key_pos.col), (2, 3));
        assert_eq!((e.value.pos.line, e.value.pos.col), (2, 10));
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let (n, d) = p("a: 1\nb: 2\na: 3\n");
        assert!(n.is_ok());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line, 3);
        assert!(d[0].message.contains("line 1"), "{}", d[0].message);
    }

    #[test]
    fn syntax_error_has_position() {
        let (n, _) = p("a:\n  b: [1, 2\nc: 3\n");
        let e = n.unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.message.starts_with("invalid YAML"));
    }

    #[test]
    fn tags_kept_and_aliases_resolved() {
        let (n, _) = p("a: &x {k: 1}\nb: *x\nc: !include\n  type: string\n  path: x.sh\nd: !archive \"dir\"\n<<: {e: 5}\n");
        let n = n.unwrap();
        assert_eq!(n.get("b").unwrap().to_json(), serde_json::json!({"k": 1}));
        assert_eq!(n.get("c").unwrap().tag.as_deref(), Some("!include"));
        assert_eq!(n.get("d").unwrap().tag.as_deref(), Some("!archive"));
        assert_eq!(n.get("e").unwrap().to_json(), serde_json::json!(5));
    }
}
