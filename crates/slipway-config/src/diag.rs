//! Diagnostics: positioned errors and warnings about a configuration.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad a problem is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration cannot be deployed.
    Error,
    /// Accepted, but the user should know (e.g. a key Slipway does not act on yet).
    Warning,
}

/// What a diagnostic is about.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// A key or value at its position (LINE:COL, and its key path when it has one).
    #[default]
    At,
    /// A whole file (e.g. one of a layout that is not read): printed at its 1:1, naming
    /// no key.
    File,
}

/// One problem found in a configuration, with its position.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Repository-relative path of the file ("" when the problem concerns no single file).
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column in characters (0 when unknown).
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// Dotted path of the offending key, e.g. `web.commands.start` ("" when none).
    pub key_path: String,
    /// A key or value at its position, or a whole file.
    pub scope: Scope,
}

impl Diagnostic {
    /// An error at a position.
    pub fn error(
        file: &str,
        line: usize,
        column: usize,
        key_path: &str,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            severity: Severity::Error,
            message: message.into(),
            key_path: key_path.to_string(),
            scope: Scope::At,
        }
    }

    /// A warning at a position.
    pub fn warning(
        file: &str,
        line: usize,
        column: usize,
        key_path: &str,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, key_path, message)
        }
    }

    /// A warning about the whole of `file` (printed at its 1:1, naming no key).
    pub fn file_warning(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            scope: Scope::File,
            ..Diagnostic::warning(file, 1, 1, "", message)
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `FILE:LINE:COL: error: MESSAGE (at KEY.PATH)`; the position is shortened when unknown.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            if self.line > 0 {
                write!(f, "{}:{}:{}: ", self.file, self.line, self.column.max(1))?;
            } else {
                write!(f, "{}: ", self.file)?;
            }
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.message)?;
        if !self.key_path.is_empty() {
            write!(f, " (at {})", self.key_path)?;
        }
        Ok(())
    }
}

/// Every problem found (errors and warnings), in file and position order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }
}

/// One line per diagnostic.
impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
