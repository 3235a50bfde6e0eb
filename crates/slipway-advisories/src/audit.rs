//! Lockfiles against the advisory database: one [`Finding`] per vulnerable pinned package
//! and advisory, and the verdict (a critical finding not allowed by the pusher refuses).

use std::collections::HashMap;

use serde::Serialize;

use crate::db::{AdvisoryError, Database};
use crate::lockfiles::{self, Dependency};
use crate::severity::{self, Level};
use crate::version::{self, Ecosystem};

/// One lockfile to check.
#[derive(Debug, Clone)]
pub struct Lockfile {
    /// Its path as shown to users (relative to the repository root).
    pub path: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

impl Lockfile {
    fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A pinned package version an advisory affects.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The lockfile.
    pub file: String,
    /// The package's ecosystem (OSV name).
    pub ecosystem: String,
    /// The package.
    pub package: String,
    /// The pinned version.
    pub version: String,
    /// The advisory id.
    pub advisory: String,
    /// Its aliases (CVE ids, ...).
    pub aliases: Vec<String>,
    /// Its one-line summary.
    pub summary: String,
    /// How bad.
    pub level: Level,
    /// The first fixed version above the pinned one, if any.
    pub fixed: Option<String>,
    /// Whether the pusher allowed it (`-o allow-vulnerable=ID`).
    pub allowed: bool,
}

impl Finding {
    /// Whether this finding refuses the push: critical and not allowed.
    pub fn refuses(&self) -> bool {
        self.level == Level::Critical && !self.allowed
    }

    /// Whether `id` names this finding's advisory (its id or an alias).
    pub fn is_named_by(&self, id: &str) -> bool {
        let id = id.trim();
        self.advisory.eq_ignore_ascii_case(id)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }

    /// The line shown to users:
    /// `composer.lock: error: guzzlehttp/psr7 1.8.1 is affected by GHSA-x (critical: ...); fixed in 1.8.4`.
    pub fn line(&self) -> String {
        let fixed = match &self.fixed {
            Some(f) => format!("fixed in {f}"),
            None => "no fixed version".to_string(),
        };
        let kind = if self.refuses() { "error" } else { "warning" };
        let allowed = if self.allowed {
            format!(" (allowed by allow-vulnerable={})", self.advisory)
        } else {
            String::new()
        };
        format!(
            "{}: {kind}: {} {} is affected by {} ({}: {}); {fixed}{allowed}",
            self.file,
            self.package,
            self.version,
            self.advisory,
            self.level.as_str(),
            self.summary
        )
    }
}

/// What checking a set of lockfiles found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Lockfiles read.
    pub lockfiles: usize,
    /// Pinned packages looked up.
    pub packages: usize,
    /// Vulnerable packages, worst first.
    pub findings: Vec<Finding>,
    /// Lockfiles that could not be read: `FILE:LINE: warning: ...` lines.
    pub malformed: Vec<String>,
}

impl Report {
    /// Whether any finding refuses the push.
    pub fn refuses(&self) -> bool {
        self.findings.iter().any(Finding::refuses)
    }
}

/// Check `files` against `db`. `allowed` are the ids the pusher named with
/// `-o allow-vulnerable=ID[,ID]`.
pub fn audit(
    db: &Database,
    files: &[Lockfile],
    allowed: &[String],
) -> Result<Report, AdvisoryError> {
    let mut report = Report::default();
    let mut cache: HashMap<(Ecosystem, String), Vec<(crate::osv::Advisory, usize)>> =
        HashMap::new();
    for file in files {
        let deps: Vec<Dependency> = match lockfiles::parse(file.file_name(), &file.bytes) {
            Ok(d) => d,
            Err(m) => {
                report.malformed.push(format!(
                    "{}:{}: warning: cannot read this lockfile, its packages were not checked: {}",
                    file.path, m.line, m.reason
                ));
                continue;
            }
        };
        report.lockfiles += 1;
        report.packages += deps.len();
        for d in deps {
            let key = (d.ecosystem, d.ecosystem.normalize_name(&d.name));
            if !cache.contains_key(&key) {
                let found = db.lookup(d.ecosystem, &d.name)?;
                cache.insert(key.clone(), found);
            }
            for (adv, idx) in cache.get(&key).into_iter().flatten() {
                let Some(affected) = adv.affected.get(*idx) else {
                    continue;
                };
                let Some(fixed) = version::affects(d.ecosystem, affected, &d.version) else {
                    continue;
                };
                let mut f = Finding {
                    file: file.path.clone(),
                    ecosystem: d.ecosystem.osv_name().to_string(),
                    package: d.name.clone(),
                    version: d.version.clone(),
                    advisory: adv.id.clone(),
                    aliases: adv.aliases.clone(),
                    summary: adv.headline(),
                    level: severity::level(adv, *idx),
                    fixed,
                    allowed: false,
                };
                f.allowed = allowed.iter().any(|a| f.is_named_by(a));
                report.findings.push(f);
            }
        }
    }
    report.findings.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.advisory.cmp(&b.advisory))
    });
    report.findings.dedup_by(|a, b| {
        a.file == b.file
            && a.package == b.package
            && a.version == b.version
            && a.advisory == b.advisory
    });
    Ok(report)
}

/// The ids of `-o allow-vulnerable=ID[,ID]` push options (several options add up).
pub fn allowed_ids(options: &[String]) -> Vec<String> {
    options
        .iter()
        .filter_map(|o| o.strip_prefix("allow-vulnerable="))
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One advisory per ecosystem: affected from `introduced` to `fixed`.
    fn advisory(eco: &str, name: &str, introduced: &str, fixed: &str) -> crate::osv::Advisory {
        serde_json::from_value(serde_json::json!({
            "id": format!("OSV-{eco}-{name}"), "summary": "bad",
            "database_specific": {"severity": "CRITICAL"},
            "affected": [{"package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": introduced}, {"fixed": fixed}]}]}]
        }))
        .unwrap()
    }

    /// For each ecosystem's lockfile: a vulnerable, a fixed and an out-of-range version.
    #[test]
    fn each_ecosystem_vulnerable_fixed_and_outside_the_range() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = Database::open(tmp.path()).unwrap();
        db.import(&[
            advisory("Packagist", "guzzlehttp/psr7", "1.0.0", "1.8.4"),
            advisory("npm", "lodash", "4.0.0", "4.17.21"),
            advisory("PyPI", "django", "3.0", "3.2.14"),
            advisory("RubyGems", "rails", "6.0.0", "6.1.7.1"),
            advisory("Go", "golang.org/x/net", "0.1.0", "0.17.0"),
            advisory("crates.io", "smallvec", "1.0.0", "1.6.1"),
        ])
        .unwrap();
        // (lockfile, template with {V}, vulnerable, fixed, outside the range)
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            (
                "composer.lock",
                r#"{"packages":[{"name":"guzzlehttp/psr7","version":"{V}"}]}"#,
                "1.8.1",
                "1.8.4",
                "0.9.0",
            ),
            (
                "package-lock.json",
                r#"{"packages":{"node_modules/lodash":{"version":"{V}"}}}"#,
                "4.17.20",
                "4.17.21",
                "3.10.1",
            ),
            (
                "npm-shrinkwrap.json",
                r#"{"dependencies":{"lodash":{"version":"{V}"}}}"#,
                "4.17.20",
                "4.17.21",
                "3.10.1",
            ),
            (
                "yarn.lock",
                "lodash@^4.0.0:\n  version \"{V}\"\n",
                "4.17.20",
                "4.17.21",
                "3.10.1",
            ),
            (
                "pnpm-lock.yaml",
                "packages:\n  lodash@{V}:\n    resolution: {}\n",
                "4.17.20",
                "4.17.21",
                "3.10.1",
            ),
            (
                "requirements.txt",
                "Django=={V}\n",
                "3.2.0",
                "3.2.14",
                "2.2.28",
            ),
            (
                "Pipfile.lock",
                r#"{"default":{"django":{"version":"=={V}"}}}"#,
                "3.2.0",
                "3.2.14",
                "2.2.28",
            ),
            (
                "poetry.lock",
                "[[package]]\nname = \"Django\"\nversion = \"{V}\"\n",
                "3.2.0",
                "3.2.14",
                "2.2.28",
            ),
            (
                "uv.lock",
                "[[package]]\nname = \"django\"\nversion = \"{V}\"\n",
                "3.2.0",
                "3.2.14",
                "2.2.28",
            ),
            (
                "Gemfile.lock",
                "GEM\n  specs:\n    rails ({V})\n",
                "6.1.7",
                "6.1.7.1",
                "5.2.8",
            ),
            (
                "go.mod",
                "module x\nrequire golang.org/x/net v{V}\n",
                "0.16.0",
                "0.17.0",
                "0.0.9",
            ),
            (
                "go.sum",
                "golang.org/x/net v{V} h1:x=\n",
                "0.16.0",
                "0.17.0",
                "0.0.9",
            ),
            (
                "Cargo.lock",
                "[[package]]\nname = \"smallvec\"\nversion = \"{V}\"\nsource = \"registry+x\"\n",
                "1.6.0",
                "1.6.1",
                "0.6.14",
            ),
        ];
        for (file, template, vulnerable, fixed, outside) in cases {
            let check = |v: &str| {
                let lock = Lockfile {
                    path: format!("app/{file}"),
                    bytes: template.replace("{V}", v).into_bytes(),
                };
                audit(&db, &[lock], &[]).unwrap()
            };
            let r = check(vulnerable);
            assert_eq!(r.malformed, Vec::<String>::new(), "{file}");
            assert_eq!(r.findings.len(), 1, "{file} {vulnerable}: {r:?}");
            assert!(r.refuses(), "{file}");
            let line = r.findings[0].line();
            assert!(line.starts_with(&format!("app/{file}: error: ")), "{line}");
            assert!(
                line.contains(&format!("{vulnerable} is affected by OSV-")),
                "{line}"
            );
            assert!(
                line.ends_with(&format!("(critical: bad); fixed in {fixed}")),
                "{line}"
            );
            assert!(check(fixed).findings.is_empty(), "{file} {fixed}");
            assert!(check(outside).findings.is_empty(), "{file} {outside}");
        }
    }

    #[test]
    fn allowed_ids_and_aliases() {
        let ids = allowed_ids(
            &[
                "allow-vulnerable=GHSA-1, CVE-2",
                "allow-service-upgrade",
                "allow-vulnerable=GHSA-3",
            ]
            .map(String::from),
        );
        assert_eq!(ids, vec!["GHSA-1", "CVE-2", "GHSA-3"]);
    }
}
