//! Dotted key paths (`web.commands.start`, `applications.app.hooks.build`, `[0].name`) for diagnostics.

use crate::diag::Diagnostic;
use crate::yaml::Pos;

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The path from a file's root to the key being looked at.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The empty path.
    pub fn new() -> Self {
        KeyPath(Vec::new())
    }

    /// A path from keys.
    pub fn of(keys: &[&str]) -> Self {
        KeyPath(keys.iter().map(|k| Seg::Key(k.to_string())).collect())
    }

    /// Descend into a mapping key.
    pub fn push_key(&mut self, k: &str) {
        self.0.push(Seg::Key(k.to_string()));
    }

    /// Descend into a list item.
    pub fn push_index(&mut self, i: usize) {
        self.0.push(Seg::Index(i));
    }

    /// Go back up one level.
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// A copy with one more key.
    pub fn with(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.push_key(k);
        p
    }

    /// Rendered: keys joined with dots, indices as `[i]`, odd keys quoted.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    if !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        s.push_str(k);
                    } else {
                        s.push_str(&serde_json::Value::String(k.clone()).to_string());
                    }
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }

    /// An error at a position, at this path.
    pub fn error(&self, pos: &Pos, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&pos.file, pos.line, pos.col, &self.render(), msg)
    }

    /// A warning at a position, at this path.
    pub fn warning(&self, pos: &Pos, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::warning(&pos.file, pos.line, pos.col, &self.render(), msg)
    }
}
