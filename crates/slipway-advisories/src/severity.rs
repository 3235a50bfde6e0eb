//! How bad an advisory is: the highest CVSS v3/v4 base score of its vectors, or the
//! database's own rating (`database_specific.severity`, as GitHub publishes it).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::osv::{Advisory, SeverityEntry};

/// A verdict level. Only [`Level::Critical`] refuses a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing says how bad.
    Unknown,
    /// CVSS below 4.0 or rated LOW.
    Low,
    /// CVSS 4.0 to 6.9 or rated MODERATE/MEDIUM.
    Moderate,
    /// CVSS 7.0 to 8.9 or rated HIGH.
    High,
    /// CVSS 9.0 or above or rated CRITICAL.
    Critical,
}

impl Level {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown severity",
            Level::Low => "low",
            Level::Moderate => "moderate",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn of_score(score: f64) -> Level {
        if score >= 9.0 {
            Level::Critical
        } else if score >= 7.0 {
            Level::High
        } else if score >= 4.0 {
            Level::Moderate
        } else {
            Level::Low
        }
    }

    fn of_rating(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "CRITICAL" => Level::Critical,
            "HIGH" => Level::High,
            "MODERATE" | "MEDIUM" => Level::Moderate,
            "LOW" => Level::Low,
            _ => return None,
        })
    }
}

fn vector_level(entries: &[SeverityEntry]) -> Option<Level> {
    entries
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "CVSS_V3" | "CVSS_V4"))
        .filter_map(|e| cvss::Cvss::from_str(e.score.trim()).ok())
        .map(|c| Level::of_score(c.score()))
        .max()
}

fn rating_level(v: Option<&serde_json::Value>) -> Option<Level> {
    v.and_then(|d| d.get("severity"))
        .and_then(|s| s.as_str())
        .and_then(Level::of_rating)
}

/// The level of `advisory` for its `affected` entry number `index`: the highest of the
/// vectors and ratings found on the advisory and on that entry.
pub fn level(advisory: &Advisory, index: usize) -> Level {
    let entry = advisory.affected.get(index);
    [
        vector_level(&advisory.severity),
        rating_level(advisory.database_specific.as_ref()),
        entry.and_then(|a| vector_level(&a.severity)),
        entry.and_then(|a| rating_level(a.database_specific.as_ref())),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(Level::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adv(json: serde_json::Value) -> Advisory {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn cvss_scores_and_ratings() {
        let critical = adv(
            serde_json::json!({"id": "A", "severity": [{"type": "CVSS_V3",
            "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}),
        );
        assert_eq!(level(&critical, 0), Level::Critical);
        let high = adv(
            serde_json::json!({"id": "B", "severity": [{"type": "CVSS_V3",
            "score": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N"}]}),
        );
        assert_eq!(level(&high, 0), Level::High);
        let rated =
            adv(serde_json::json!({"id": "C", "database_specific": {"severity": "CRITICAL"}}));
        assert_eq!(level(&rated, 0), Level::Critical);
        let v4 = adv(
            serde_json::json!({"id": "D", "severity": [{"type": "CVSS_V4",
            "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}),
        );
        assert_eq!(level(&v4, 0), Level::Critical);
        let none = adv(
            serde_json::json!({"id": "E", "severity": [{"type": "CVSS_V3", "score": "garbage"}]}),
        );
        assert_eq!(level(&none, 0), Level::Unknown);
    }
}
