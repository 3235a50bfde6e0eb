//! The OSV schema (<https://ossf.github.io/osv-schema/>): the parts of an advisory that
//! push protection reads. Unknown fields are ignored; a missing `id` or a wrongly typed
//! field is an error (the whole file is refused on import).

use serde::{Deserialize, Serialize};

/// One OSV advisory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Advisory {
    /// Its id, e.g. `GHSA-xxxx-xxxx-xxxx`, `PYSEC-2021-1`, `RUSTSEC-2020-0001`.
    pub id: String,
    /// When it last changed (RFC 3339).
    #[serde(default)]
    pub modified: String,
    /// Set when the advisory was withdrawn: it matches nothing.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability (CVE-..., GHSA-...).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One line.
    #[serde(default)]
    pub summary: String,
    /// Longer text (the summary's fallback).
    #[serde(default)]
    pub details: String,
    /// Severity vectors of the whole advisory.
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    /// The packages and versions it affects.
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// Database-specific data; GitHub puts `severity: CRITICAL|HIGH|MODERATE|LOW` here.
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A severity vector (`type: CVSS_V3`, `score: CVSS:3.1/AV:N/...`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeverityEntry {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or a rating for non-CVSS kinds).
    pub score: String,
}

/// One affected package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Affected {
    /// Which package.
    pub package: Option<Package>,
    /// Per-package severity.
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Explicitly listed affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Database-specific data of this package.
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A package of an ecosystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Package {
    /// `npm`, `PyPI`, `Packagist`, `RubyGems`, `Go`, `crates.io`, ...
    pub ecosystem: String,
    /// The package's name in that ecosystem.
    pub name: String,
}

/// A version range: events in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Range {
    /// `SEMVER`, `ECOSYSTEM` or `GIT` (git ranges are commits and never match a lockfile).
    #[serde(rename = "type")]
    pub kind: String,
    /// introduced / fixed / last_affected / limit events.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One event of a range. Exactly one field is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    /// Affected from this version on (`0`: from the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// Not affected from this version on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Affected up to and including this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// Nothing at or above this version is affected by this range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Advisory {
    /// The one line shown to a pusher: the summary, else the first line of the details.
    pub fn headline(&self) -> String {
        let s = if self.summary.trim().is_empty() {
            self.details.lines().next().unwrap_or("").trim()
        } else {
            self.summary.trim()
        };
        let mut s: String = s.chars().take(160).collect();
        if s.is_empty() {
            s = "no summary".into();
        }
        s
    }
}
