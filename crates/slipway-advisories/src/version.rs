//! Versions per ecosystem and OSV range evaluation.
//!
//! npm and crates.io use SemVer (`semver`), PyPI PEP 440 (`pep440_rs`), Go SemVer with a
//! `v` prefix (pseudo-versions like `v0.0.0-20200101000000-abcdef012345` are SemVer
//! pre-releases and order by their timestamp), RubyGems `Gem::Version` ordering and
//! Packagist Composer's `VersionParser` normalisation: neither of the last two has a Rust
//! crate, so they are implemented here after their reference implementations.

use std::cmp::Ordering;
use std::str::FromStr;

use crate::osv::{Affected, Range};

/// A package ecosystem as OSV names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// `npm`
    Npm,
    /// `PyPI`
    PyPI,
    /// `Packagist`
    Packagist,
    /// `RubyGems`
    RubyGems,
    /// `Go`
    Go,
    /// `crates.io`
    CratesIo,
}

impl Ecosystem {
    /// Every ecosystem lockfiles are read for.
    pub const ALL: [Ecosystem; 6] = [
        Ecosystem::Npm,
        Ecosystem::PyPI,
        Ecosystem::Packagist,
        Ecosystem::RubyGems,
        Ecosystem::Go,
        Ecosystem::CratesIo,
    ];

    /// The OSV name.
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Packagist => "Packagist",
            Ecosystem::RubyGems => "RubyGems",
            Ecosystem::Go => "Go",
            Ecosystem::CratesIo => "crates.io",
        }
    }

    /// The ecosystem of an OSV name (`PyPI`, `npm`, ...); `None` for ecosystems without a
    /// lockfile here (Debian, Maven, ...).
    pub fn from_osv(name: &str) -> Option<Ecosystem> {
        let base = name.split(':').next().unwrap_or(name);
        Ecosystem::ALL.into_iter().find(|e| e.osv_name() == base)
    }

    /// A package name as stored and looked up: PyPI names are normalised (PEP 503),
    /// Packagist names are lower case; other ecosystems are case-sensitive.
    pub fn normalize_name(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                let mut sep = false;
                for c in name.trim().chars() {
                    if matches!(c, '-' | '_' | '.') {
                        sep = true;
                    } else {
                        if sep && !out.is_empty() {
                            out.push('-');
                        }
                        sep = false;
                        out.extend(c.to_lowercase());
                    }
                }
                out
            }
            Ecosystem::Packagist => name.trim().to_ascii_lowercase(),
            _ => name.trim().to_string(),
        }
    }
}

impl std::fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.osv_name())
    }
}

/// A parsed version of one ecosystem. Versions of different kinds never compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// The `0` of an `introduced` event: before every version.
    Zero,
    /// SemVer (npm, crates.io, Go, `SEMVER` ranges).
    Semver(semver::Version),
    /// PEP 440.
    Pep440(pep440_rs::Version),
    /// Composer.
    Composer(ComposerVersion),
    /// RubyGems.
    Gem(GemVersion),
}

impl Version {
    /// Parse `s` as a version of `eco`; `None` when it is not one (a git URL, `dev-main`, ...).
    pub fn parse(eco: Ecosystem, s: &str) -> Option<Version> {
        let s = s.trim();
        match eco {
            Ecosystem::Npm | Ecosystem::CratesIo | Ecosystem::Go => parse_semver(s),
            Ecosystem::PyPI => pep440_rs::Version::from_str(s).ok().map(Version::Pep440),
            Ecosystem::Packagist => ComposerVersion::parse(s).map(Version::Composer),
            Ecosystem::RubyGems => GemVersion::parse(s).map(Version::Gem),
        }
    }

    /// Compare two versions; `None` when they are of different kinds.
    pub fn compare(&self, other: &Version) -> Option<Ordering> {
        Some(match (self, other) {
            (Version::Zero, Version::Zero) => Ordering::Equal,
            (Version::Zero, _) => Ordering::Less,
            (_, Version::Zero) => Ordering::Greater,
            (Version::Semver(a), Version::Semver(b)) => a.cmp_precedence(b),
            (Version::Pep440(a), Version::Pep440(b)) => a.cmp(b),
            (Version::Composer(a), Version::Composer(b)) => a.cmp(b),
            (Version::Gem(a), Version::Gem(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// SemVer with an optional `v` prefix (Go) and `=` (npm); build metadata is ignored.
fn parse_semver(s: &str) -> Option<Version> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let s = s.strip_prefix('=').unwrap_or(s);
    semver::Version::parse(s).ok().map(Version::Semver)
}

/// A Composer version, normalised like `Composer\Semver\VersionParser`: four numeric
/// parts, then a stability (`dev` < `alpha` < `beta` < `RC` < stable < `patch`/`pl`) and
/// its number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ComposerVersion {
    parts: [u64; 4],
    stability: u8,
    stability_number: u64,
}

impl ComposerVersion {
    /// Parse `1.8.1`, `v2.0.0-beta1`, `1.0.0-RC2`, `2.1`; `None` for branches (`dev-main`).
    pub fn parse(s: &str) -> Option<ComposerVersion> {
        let s = s.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split('+').next().unwrap_or(s);
        if s.starts_with("dev-") || s.is_empty() {
            return None;
        }
        let (numeric, rest) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let numeric = numeric.trim_end_matches('.');
        let mut parts = [0u64; 4];
        for (n, p) in numeric.split('.').enumerate() {
            if n == 4 {
                return None;
            }
            parts[n] = p.parse().ok()?;
        }
        let rest = rest
            .trim_start_matches(['-', '_', '.'])
            .to_ascii_lowercase();
        let (stability, stability_number) = if rest.is_empty() {
            (4, 0)
        } else {
            let word_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let (word, num) = rest.split_at(word_end);
            let level = match word {
                "dev" => 0,
                "alpha" | "a" => 1,
                "beta" | "b" => 2,
                "rc" => 3,
                "stable" => 4,
                "patch" | "pl" | "p" => 5,
                _ => return None,
            };
            let num = num.trim_start_matches(['-', '_', '.']);
            let num = if num.is_empty() { 0 } else { num.parse().ok()? };
            (level, num)
        };
        Some(ComposerVersion {
            parts,
            stability,
            stability_number,
        })
    }
}

/// A RubyGems version with `Gem::Version` ordering: segments of digits or letters,
/// trailing zero segments dropped, a letter segment (a pre-release) before any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GemVersion {
    segments: Vec<GemSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GemSegment {
    Num(u64),
    Str(String),
}

impl GemVersion {
    /// Parse `1.2.3`, `1.0.0.pre`, `2.0.0.rc1`; `None` when it is not `Gem::Version` syntax.
    pub fn parse(s: &str) -> Option<GemVersion> {
        let s = s.trim();
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            || !s.starts_with(|c: char| c.is_ascii_digit())
        {
            return None;
        }
        // `Gem::Version` reads `1.0-pre` as `1.0.pre.pre`... keep it simple: `-` is a dot.
        let mut segments = Vec::new();
        for part in s.split(['.', '-']) {
            let mut rest = part;
            while !rest.is_empty() {
                let digits = rest.starts_with(|c: char| c.is_ascii_digit());
                let end = rest
                    .find(|c: char| c.is_ascii_digit() != digits)
                    .unwrap_or(rest.len());
                let (seg, tail) = rest.split_at(end);
                segments.push(if digits {
                    GemSegment::Num(seg.parse().ok()?)
                } else {
                    GemSegment::Str(seg.to_string())
                });
                rest = tail;
            }
        }
        // Canonical form: trailing zeros (before any pre-release part) carry no meaning.
        let first_str = segments
            .iter()
            .position(|s| matches!(s, GemSegment::Str(_)))
            .unwrap_or(segments.len());
        let mut release: Vec<GemSegment> = segments[..first_str].to_vec();
        while release.len() > 1 && release.last() == Some(&GemSegment::Num(0)) {
            release.pop();
        }
        release.extend_from_slice(&segments[first_str..]);
        Some(GemVersion { segments: release })
    }
}

impl Ord for GemVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            let a = self.segments.get(i).unwrap_or(&GemSegment::Num(0));
            let b = other.segments.get(i).unwrap_or(&GemSegment::Num(0));
            let o = match (a, b) {
                (GemSegment::Num(x), GemSegment::Num(y)) => x.cmp(y),
                (GemSegment::Str(x), GemSegment::Str(y)) => x.cmp(y),
                (GemSegment::Num(_), GemSegment::Str(_)) => Ordering::Greater,
                (GemSegment::Str(_), GemSegment::Num(_)) => Ordering::Less,
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for GemVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether `version` of a package of `eco` is affected by `affected`; when it is, the
/// first fixed version above it, if the advisory names one.
pub fn affects(eco: Ecosystem, affected: &Affected, version: &str) -> Option<Option<String>> {
    let version = version.trim();
    if affected.versions.iter().any(|v| v.trim() == version) {
        return Some(first_fixed(eco, affected, version));
    }
    for range in &affected.ranges {
        if range_affects(eco, range, version) {
            return Some(first_fixed(eco, affected, version));
        }
    }
    None
}

/// How a range's versions are parsed: `SEMVER` ranges always as SemVer.
fn range_ecosystem(eco: Ecosystem, range: &Range) -> Option<Ecosystem> {
    match range.kind.as_str() {
        "SEMVER" => Some(Ecosystem::Npm),
        "ECOSYSTEM" => Some(eco),
        _ => None,
    }
}

fn parse_event_version(eco: Ecosystem, s: &str) -> Option<Version> {
    if s.trim() == "0" {
        Some(Version::Zero)
    } else {
        Version::parse(eco, s)
    }
}

/// The OSV evaluation of one range: events sorted by version, a version is affected after an
/// `introduced` at or below it until a `fixed` at or below it or a `last_affected` below it.
pub fn range_affects(eco: Ecosystem, range: &Range, version: &str) -> bool {
    let Some(reco) = range_ecosystem(eco, range) else {
        return false;
    };
    let Some(v) = Version::parse(reco, version) else {
        return false;
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Introduced,
        Fixed,
        LastAffected,
        Limit,
    }
    let mut events: Vec<(Version, Kind)> = Vec::new();
    for e in &range.events {
        let (s, k) = if let Some(s) = &e.introduced {
            (s, Kind::Introduced)
        } else if let Some(s) = &e.fixed {
            (s, Kind::Fixed)
        } else if let Some(s) = &e.last_affected {
            (s, Kind::LastAffected)
        } else if let Some(s) = &e.limit {
            (s, Kind::Limit)
        } else {
            continue;
        };
        if let Some(ev) = parse_event_version(reco, s) {
            events.push((ev, k));
        }
    }
    // A limit bounds the whole range.
    for (lv, k) in &events {
        if *k == Kind::Limit && v.compare(lv) != Some(Ordering::Less) {
            return false;
        }
    }
    events.sort_by(|a, b| a.0.compare(&b.0).unwrap_or(Ordering::Equal));
    let mut affected = false;
    for (ev, k) in &events {
        let Some(o) = v.compare(ev) else { continue };
        match k {
            Kind::Introduced if o != Ordering::Less => affected = true,
            Kind::Fixed if o != Ordering::Less => affected = false,
            Kind::LastAffected if o == Ordering::Greater => affected = false,
            _ => {}
        }
    }
    affected
}

/// The lowest `fixed` version above `version` in `affected`'s ranges.
fn first_fixed(eco: Ecosystem, affected: &Affected, version: &str) -> Option<String> {
    let mut best: Option<(Version, String)> = None;
    for range in &affected.ranges {
        let Some(reco) = range_ecosystem(eco, range) else {
            continue;
        };
        let Some(v) = Version::parse(reco, version) else {
            continue;
        };
        for e in &range.events {
            let Some(f) = &e.fixed else { continue };
            let Some(fv) = Version::parse(reco, f) else {
                continue;
            };
            if fv.compare(&v) != Some(Ordering::Greater) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((b, _)) => fv.compare(b) == Some(Ordering::Less),
            };
            if better {
                best = Some((fv, f.clone()));
            }
        }
    }
    best.map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::{Event, Range};

    fn range(kind: &str, events: &[(&str, &str)]) -> Range {
        Range {
            kind: kind.into(),
            events: events
                .iter()
                .map(|(k, v)| {
                    let mut e = Event::default();
                    let v = Some(v.to_string());
                    match *k {
                        "introduced" => e.introduced = v,
                        "fixed" => e.fixed = v,
                        "last_affected" => e.last_affected = v,
                        _ => e.limit = v,
                    }
                    e
                })
                .collect(),
        }
    }

    fn affected(r: Range) -> Affected {
        Affected {
            package: None,
            severity: vec![],
            ranges: vec![r],
            versions: vec![],
            database_specific: None,
        }
    }

    #[test]
    fn npm_semver_ranges() {
        let a = affected(range(
            "SEMVER",
            &[("introduced", "0"), ("fixed", "4.17.21")],
        ));
        assert_eq!(
            affects(Ecosystem::Npm, &a, "4.17.20"),
            Some(Some("4.17.21".into()))
        );
        assert_eq!(affects(Ecosystem::Npm, &a, "4.17.21"), None);
        assert_eq!(affects(Ecosystem::Npm, &a, "5.0.0"), None);
        assert_eq!(
            affects(Ecosystem::Npm, &a, "4.17.21-rc.1"),
            Some(Some("4.17.21".into()))
        );
        assert_eq!(affects(Ecosystem::Npm, &a, "not-a-version"), None);
    }

    #[test]
    fn two_introduced_fixed_pairs() {
        let a = affected(range(
            "ECOSYSTEM",
            &[
                ("introduced", "1.0.0"),
                ("fixed", "1.8.4"),
                ("introduced", "2.0.0"),
                ("fixed", "2.4.5"),
            ],
        ));
        let e = Ecosystem::Packagist;
        assert_eq!(affects(e, &a, "0.9"), None);
        assert_eq!(affects(e, &a, "1.8.1"), Some(Some("1.8.4".into())));
        assert_eq!(affects(e, &a, "v1.8.4"), None);
        assert_eq!(affects(e, &a, "1.9.0"), None);
        assert_eq!(affects(e, &a, "2.1.0"), Some(Some("2.4.5".into())));
        assert_eq!(affects(e, &a, "2.4.5"), None);
    }

    #[test]
    fn composer_stabilities_order() {
        let p = |s| ComposerVersion::parse(s).unwrap();
        assert!(p("1.0.0-dev") < p("1.0.0-alpha1"));
        assert!(p("1.0.0-alpha2") < p("1.0.0-beta1"));
        assert!(p("1.0.0-beta1") < p("1.0.0-RC1"));
        assert!(p("1.0.0-RC1") < p("1.0.0"));
        assert!(p("1.0.0") < p("1.0.0-p1"));
        assert_eq!(p("v2.1"), p("2.1.0.0"));
        assert!(ComposerVersion::parse("dev-main").is_none());
    }

    #[test]
    fn pypi_pep440_and_last_affected() {
        let a = affected(range(
            "ECOSYSTEM",
            &[("introduced", "2.0"), ("last_affected", "2.31.0")],
        ));
        let e = Ecosystem::PyPI;
        assert_eq!(affects(e, &a, "1.9"), None);
        assert_eq!(affects(e, &a, "2.0rc1"), None, "a pre-release is below 2.0");
        assert_eq!(affects(e, &a, "2.31.0"), Some(None));
        assert_eq!(affects(e, &a, "2.31"), Some(None), "2.31 == 2.31.0");
        assert_eq!(affects(e, &a, "2.31.0.post1"), None);
        assert_eq!(affects(e, &a, "2.32.0"), None);
    }

    #[test]
    fn rubygems_versions() {
        let p = |s| GemVersion::parse(s).unwrap();
        assert!(p("1.0.0.pre") < p("1.0.0"));
        assert!(p("1.0.0.rc1") < p("1.0.0.rc2"));
        assert_eq!(p("1.0"), p("1.0.0"));
        assert!(p("1.10") > p("1.9"));
        let a = affected(range(
            "ECOSYSTEM",
            &[("introduced", "0"), ("fixed", "6.1.7.1")],
        ));
        assert_eq!(
            affects(Ecosystem::RubyGems, &a, "6.1.7"),
            Some(Some("6.1.7.1".into()))
        );
        assert_eq!(affects(Ecosystem::RubyGems, &a, "6.1.7.1"), None);
    }

    #[test]
    fn go_versions_and_pseudo_versions() {
        let a = affected(range("SEMVER", &[("introduced", "0"), ("fixed", "0.17.0")]));
        let e = Ecosystem::Go;
        assert_eq!(
            affects(e, &a, "v0.0.0-20220101000000-abcdefabcdef"),
            Some(Some("0.17.0".into()))
        );
        assert_eq!(affects(e, &a, "v0.16.0"), Some(Some("0.17.0".into())));
        assert_eq!(affects(e, &a, "v0.17.0"), None);
        assert_eq!(affects(e, &a, "v2.0.0+incompatible"), None);
    }

    #[test]
    fn crates_io_and_limit_and_versions_list() {
        let a = affected(range(
            "ECOSYSTEM",
            &[("introduced", "0"), ("limit", "1.0.0")],
        ));
        assert_eq!(affects(Ecosystem::CratesIo, &a, "0.9.9"), Some(None));
        assert_eq!(affects(Ecosystem::CratesIo, &a, "1.0.0"), None);
        let mut b = affected(range("GIT", &[("introduced", "abc")]));
        b.versions = vec!["0.3.1".into()];
        assert_eq!(affects(Ecosystem::CratesIo, &b, "0.3.1"), Some(None));
        assert_eq!(affects(Ecosystem::CratesIo, &b, "0.3.2"), None);
    }

    #[test]
    fn pypi_names_normalise() {
        assert_eq!(
            Ecosystem::PyPI.normalize_name("Django_REST.framework"),
            "django-rest-framework"
        );
        assert_eq!(
            Ecosystem::Packagist.normalize_name("GuzzleHttp/PSR7"),
            "guzzlehttp/psr7"
        );
    }
}
