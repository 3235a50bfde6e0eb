//! Platform.sh custom tags: `!include` (string, yaml, binary, archive) and `!archive`.

use crate::diag::Diagnostic;
use crate::files::{normalize, read_text};
use crate::source::ConfigSource;
use crate::yaml::{self, Kind, Node};

/// How deeply YAML includes may nest.
const MAX_DEPTH: usize = 8;

/// How many bytes the includes of one configuration file may read in all.
pub(crate) const MAX_INCLUDED_BYTES: usize = 4 * 1024 * 1024;

/// What the includes of one file may still read.
pub(crate) struct Budget {
    bytes_left: usize,
    reported: bool,
}

impl Budget {
    /// A fresh budget of [`MAX_INCLUDED_BYTES`].
    pub fn new() -> Self {
        Budget {
            bytes_left: MAX_INCLUDED_BYTES,
            reported: false,
        }
    }

    /// Take `n` bytes; false (reported once) when the budget is spent.
    fn take(&mut self, n: usize, pos: &crate::yaml::Pos, diags: &mut Vec<Diagnostic>) -> bool {
        if n <= self.bytes_left {
            self.bytes_left -= n;
            return true;
        }
        if !self.reported {
            self.reported = true;
            diags.push(Diagnostic::error(
                &pos.file,
                pos.line,
                pos.col,
                "",
                format!(
                    "`!include`s of this file read more than {} MiB in all",
                    MAX_INCLUDED_BYTES / (1024 * 1024)
                ),
            ));
        }
        false
    }
}

/// Replace tagged nodes below `node` by what they stand for. `base` is the folder of the including file.
pub(crate) fn resolve(
    node: &mut Node,
    src: &dyn ConfigSource,
    base: &str,
    depth: usize,
    budget: &mut Budget,
    diags: &mut Vec<Diagnostic>,
) {
    match &mut node.kind {
        Kind::Seq(items) => items
            .iter_mut()
            .for_each(|n| resolve(n, src, base, depth, budget, diags)),
        Kind::Map(entries) => entries
            .iter_mut()
            .for_each(|e| resolve(&mut e.value, src, base, depth, budget, diags)),
        _ => {}
    }
    let Some(tag) = node.tag.take() else { return };
    let pos = node.pos.clone();
    let err = |msg: String| Diagnostic::error(&pos.file, pos.line, pos.col, "", msg);
    match tag.as_str() {
        "!archive" => match &node.kind {
            Kind::Str(_) => {}
            _ => diags.push(err(
                "`!archive` needs a folder name, e.g. `!archive \"solr-config\"`".into(),
            )),
        },
        "!include" => {
            let (kind, path) = match &node.kind {
                Kind::Str(p) => ("yaml".to_string(), p.clone()),
                Kind::Map(_) => {
                    let kind = node
                        .get("type")
                        .and_then(Node::as_str)
                        .unwrap_or("yaml")
                        .to_string();
                    match node.get("path").and_then(Node::as_str) {
                        Some(p) => (kind, p.to_string()),
                        None => {
                            diags.push(err("`!include` needs a `path` (and optionally `type: string|yaml|binary|archive`)".into()));
                            node.kind = Kind::Null;
                            return;
                        }
                    }
                }
                _ => {
                    diags.push(err(
                        "`!include` needs a file name or a mapping with `type` and `path`".into(),
                    ));
                    node.kind = Kind::Null;
                    return;
                }
            };
            let Some(full) = normalize(base, &path) else {
                diags.push(err(format!(
                    "`!include` path `{path}` leaves the repository"
                )));
                node.kind = Kind::Null;
                return;
            };
            match kind.as_str() {
                "archive" => node.kind = Kind::Str(full),
                "string" | "binary" | "yaml" => match read_text(src, &full) {
                    Ok(Some(text)) if !budget.take(text.len(), &pos, diags) => {
                        node.kind = Kind::Null
                    }
                    Ok(Some(text)) if kind == "yaml" => {
                        if depth >= MAX_DEPTH {
                            diags.push(err(format!(
                                "`!include` nests deeper than {MAX_DEPTH} files"
                            )));
                            node.kind = Kind::Null;
                            return;
                        }
                        match yaml::parse(&full, &text, diags) {
                            Ok(mut inner) => {
                                resolve(
                                    &mut inner,
                                    src,
                                    crate::files::parent(&full),
                                    depth + 1,
                                    budget,
                                    diags,
                                );
                                *node = inner;
                            }
                            Err(d) => {
                                diags.push(d);
                                node.kind = Kind::Null;
                            }
                        }
                    }
                    Ok(Some(text)) => node.kind = Kind::Str(text),
                    Ok(None) => {
                        diags.push(err(format!("included file `{full}` does not exist")));
                        node.kind = Kind::Null;
                    }
                    Err(d) => {
                        diags.push(d);
                        node.kind = Kind::Null;
                    }
                },
                other => {
                    diags.push(err(format!("unknown `!include` type `{other}`; expected string, yaml, binary or archive")));
                    node.kind = Kind::Null;
                }
            }
        }
        other => diags.push(Diagnostic::warning(
            &pos.file,
            pos.line,
            pos.col,
            "",
            format!("unknown YAML tag `{other}` is ignored"),
        )),
    }
}
