//! Version resolution: which stack a `type: LANGUAGE:VERSION` gets.
//!
//! The exact version if the catalog has it; else the nearest newer version of the same
//! major (with a warning naming both); else an error listing the versions there are and
//! the nearest one as a did-you-mean. An unknown language is an error with a did-you-mean.

use crate::catalog::{self, Language, Stack};

/// The stack a `type:` value resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The stack used.
    pub stack: &'static Stack,
    /// The version the config asked for, when the stack is a substitute for it.
    pub substituted_for: Option<String>,
}

impl Resolution {
    /// The warning to show for this stack: when it is a substitute (naming both versions),
    /// and when it comes from a Debian release without security updates
    /// ([`Resolution::end_of_life_warning`]); both joined by `; ` when both apply.
    pub fn warning(&self) -> Option<String> {
        let parts: Vec<String> = [self.substitution_warning(), self.end_of_life_warning()]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// For a stack made from a Debian release that no longer receives security updates
    /// (bullseye): says so and names the newer versions of the same software to move to.
    pub fn end_of_life_warning(&self) -> Option<String> {
        let stack = self.stack;
        if !stack.suite.end_of_life() {
            return None;
        }
        let newer: Vec<String> = catalog::versions(stack.language)
            .filter(|s| {
                !s.suite.end_of_life() && version_key(s.version) > version_key(stack.version)
            })
            .map(|s| s.type_name())
            .collect();
        Some(format!(
            "{used} comes from Debian {release} ({suite}), which no longer receives security updates; move to a newer version ({newer})",
            used = stack.type_name(),
            release = stack.suite.release(),
            suite = stack.suite,
            newer = newer.join(", "),
        ))
    }

    /// The warning when the stack is a substitute: names both versions.
    fn substitution_warning(&self) -> Option<String> {
        self.substituted_for.as_ref().map(|asked| {
            if version_key(asked) > version_key(self.stack.version) {
                format!(
                    "{lang}:{asked} is not available on this server; using {lang}:{used}, the newest {lang} it has (an older version{})",
                    if major(asked) == major(self.stack.version) {
                        String::new()
                    } else {
                        format!(": its data is created by {} {}", self.stack.language, self.stack.version)
                    },
                    lang = self.stack.language,
                    used = self.stack.version,
                )
            } else if major(asked) == major(self.stack.version) {
                format!(
                    "{lang}:{asked} is not available on this server; using {lang}:{used}, the nearest newer {lang} {major}.x",
                    lang = self.stack.language,
                    used = self.stack.version,
                    major = major(asked),
                )
            } else if self.stack.language == Language::ChromeHeadless {
                // A browser keeps no data: another major is just a newer browser.
                format!(
                    "{lang}:{asked} is not available on this server; using {lang}:{used}, the browser version it has",
                    lang = self.stack.language,
                    used = self.stack.version,
                )
            } else {
                format!(
                    "{lang}:{asked} is not available on this server; using {lang}:{used}, the nearest version it has (another major version: its data is created by {lang} {used})",
                    lang = self.stack.language,
                    used = self.stack.version,
                )
            }
        })
    }
}

/// Why a `type:` value names no stack. The messages name what exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Not `LANGUAGE:VERSION`.
    #[error("`{0}` is not LANGUAGE:VERSION (e.g. `python:3.11`)")]
    Malformed(String),
    /// A language no stack provides.
    #[error("unknown language `{language}`{}; languages: {}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), known_languages())]
    UnknownLanguage {
        /// The language asked for.
        language: String,
        /// The closest known language, if it looks like a typo.
        suggestion: Option<&'static str>,
    },
    /// A service type no stack provides.
    #[error("service type `{service}` is not run by this server; it runs: {}", SERVICE_TYPES.join(", "))]
    UnknownService {
        /// The type asked for.
        service: String,
    },
    /// A service version whose major no stack provides, for a service whose majors are
    /// different programs to its clients (InfluxDB 2 is not InfluxDB 1 with a new number).
    #[error("{service}:{version} is not available: this server runs {service} {available} only, and {service} {major}.x is not compatible with it (Debian packages no {service} {major}.x)", major = major(version))]
    IncompatibleMajor {
        /// The service type.
        service: String,
        /// The version asked for.
        version: String,
        /// The versions there are.
        available: String,
    },
    /// A package of an Upsun `stack:` list that Slipway does not map to Debian packages.
    #[error("`{name}` is neither a language (LANGUAGE@VERSION with one of {}) nor a package Slipway installs{}; packages: {}", known_languages(), suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), crate::catalog::PACKAGES.iter().map(|p| p.name).collect::<Vec<_>>().join(", "))]
    UnknownPackage {
        /// The entry as written.
        name: String,
        /// The closest package name, if it looks like a typo.
        suggestion: Option<&'static str>,
    },
    /// Languages of one stack list that cannot share one root file system.
    #[error("{0}")]
    Uncomposable(String),
    /// A known language, but a version that is not a version number (`latest`, `3.x`).
    #[error("{language}:{version} is not available: `{version}` is not a version number; name one this server runs (did you mean `{language}:{suggestion}`?); available: {available}", available = available(*language))]
    NotAVersion {
        /// The language.
        language: Language,
        /// The version as written.
        version: String,
        /// The newest available version.
        suggestion: &'static str,
    },
    /// A known language, but no version of the asked major at or above the asked version.
    #[error("{language}:{version} is not available: no {language} {major}.x at or above {version} (did you mean `{language}:{suggestion}`?); available: {available}", major = major(version), available = available(*language))]
    UnknownVersion {
        /// The language.
        language: Language,
        /// The version asked for.
        version: String,
        /// The nearest available version.
        suggestion: &'static str,
    },
}

fn known_languages() -> String {
    Language::ALL.map(Language::name).join(", ")
}

/// The versions of `language` this server knows, e.g. `3.11, 3.13`: the catalog's and
/// the imported ones registered in this process ([`crate::imported`]).
pub fn available(language: Language) -> String {
    crate::imported::versions(language)
        .into_iter()
        .map(|s| s.version)
        .collect::<Vec<_>>()
        .join(", ")
}

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A version as numbers for ordering (`3.11` -> `[3, 11]`); a part that is not a number
/// counts as 0, so odd versions still order and never match exactly by accident.
pub(crate) fn version_key(version: &str) -> Vec<u64> {
    version.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Resolve `LANGUAGE:VERSION` (the whole `type:` value), or several joined by `+`
/// (`python:3.13+nodejs:22`, an Upsun `stack:` list): each is resolved alike and the stacks
/// are composed into one ([`crate::compose`]); the warnings of substitutes are then the
/// parts' ([`resolve_parts`]). Parts without `:` after the first are packages of the stack
/// ([`crate::catalog::PACKAGES`], by Nix name): `python:3.13+imagemagick`, `base:13+clamav`.
pub fn resolve_type(type_value: &str) -> Result<Resolution, ResolveError> {
    if type_value.contains(crate::compose::SEPARATOR) {
        let parts = resolve_parts(type_value)?;
        let stacks: Vec<&'static Stack> = parts.iter().map(|r| r.stack).collect();
        let packages = type_packages(type_value)?;
        return Ok(Resolution {
            stack: crate::compose::compose_with(&stacks, &packages)?,
            substituted_for: None,
        });
    }
    let (language, version) = type_value
        .split_once(':')
        .filter(|(l, v)| !l.is_empty() && !v.is_empty())
        .ok_or_else(|| ResolveError::Malformed(type_value.to_string()))?;
    resolve(language, version)
}

/// Each `LANGUAGE:VERSION` of a type joined by `+`, resolved on its own (its packages left
/// out: [`type_packages`]).
pub fn resolve_parts(type_value: &str) -> Result<Vec<Resolution>, ResolveError> {
    type_value
        .split(crate::compose::SEPARATOR)
        .enumerate()
        .filter(|(i, part)| *i == 0 || part.contains(':'))
        .map(|(_, part)| {
            let (language, version) = part
                .split_once(':')
                .filter(|(l, v)| !l.is_empty() && !v.is_empty())
                .ok_or_else(|| ResolveError::Malformed(type_value.to_string()))?;
            resolve(language, version)
        })
        .collect()
}

/// The packages of a type joined by `+`: its parts without `:` after the first.
pub fn type_packages(
    type_value: &str,
) -> Result<Vec<&'static crate::catalog::Package>, ResolveError> {
    type_value
        .split(crate::compose::SEPARATOR)
        .skip(1)
        .filter(|part| !part.contains(':'))
        .map(package)
        .collect()
}

/// The package an Upsun `stack:` entry names by its Nix name, or why not: the packages
/// there are, with a did-you-mean.
pub fn package(name: &str) -> Result<&'static crate::catalog::Package, ResolveError> {
    crate::catalog::find_package(name).ok_or_else(|| ResolveError::UnknownPackage {
        name: name.to_string(),
        suggestion: closest(name, crate::catalog::PACKAGES.iter().map(|p| p.name)),
    })
}

/// Resolve a language name and version.
/// `base` is the stack of Debian and the app tools only ([`Language::Base`]), which an
/// Upsun `stack:` of packages only runs on.
pub fn resolve(language: &str, version: &str) -> Result<Resolution, ResolveError> {
    let base = (language == Language::Base.name()).then_some(Language::Base);
    let lang =
        Language::from_name(language)
            .or(base)
            .ok_or_else(|| ResolveError::UnknownLanguage {
                language: language.to_string(),
                suggestion: closest_language(language),
            })?;
    resolve_version(lang, version)
}

/// The software a service type runs on (`mysql` is MariaDB, `redis-persistent` is Redis
/// with persistence on), if a stack provides it.
pub fn service_software(service_type: &str) -> Option<Language> {
    Some(match service_type {
        "postgresql" => Language::Postgresql,
        // oracle-mysql too: MariaDB speaks its protocol and reads its dumps.
        "mariadb" | "mysql" | "oracle-mysql" => Language::Mariadb,
        "redis" | "redis-persistent" => Language::Redis,
        "valkey" | "valkey-persistent" => Language::Valkey,
        "memcached" => Language::Memcached,
        "rabbitmq" => Language::Rabbitmq,
        "chrome-headless" => Language::ChromeHeadless,
        "influxdb" => Language::Influxdb,
        "varnish" => Language::Varnish,
        _ => return None,
    })
}

/// The service types a stack provides, e.g. `postgresql, mariadb, mysql, ...`.
pub const SERVICE_TYPES: &[&str] = &[
    "postgresql",
    "mariadb",
    "mysql",
    "oracle-mysql",
    "redis",
    "redis-persistent",
    "valkey",
    "valkey-persistent",
    "memcached",
    "rabbitmq",
    "chrome-headless",
    "influxdb",
    "varnish",
];

/// Whether a client of one major version of `software` works with another, so that the
/// nearest version may stand in for a missing major: not for InfluxDB (2.x has another API:
/// tokens, organisations, buckets, Flux).
fn majors_compatible(software: Language) -> bool {
    software != Language::Influxdb
}

/// Resolve a service's `type: NAME:VERSION` (split) to the stack it runs on, by the same
/// rule as languages: exact, else the nearest newer of the same major with a warning.
/// The versions imported into the server's stacks ([`crate::imported`]) count as the
/// catalog's do.
pub fn resolve_service(service_type: &str, version: &str) -> Result<Resolution, ResolveError> {
    let software = service_software(service_type).ok_or_else(|| ResolveError::UnknownService {
        service: service_type.to_string(),
    })?;
    match resolve_version(software, version) {
        // A service is created once per environment from what the server has (the
        // catalog's versions and the imported ones): a version of another major is used
        // too (the nearest newer, else the newest), with the warning.
        Err(ResolveError::UnknownVersion { .. }) => {
            let asked = version_key(version);
            let all: Vec<&'static Stack> = crate::imported::versions(software);
            let stack = all
                .iter()
                .find(|s| version_key(s.version) > asked)
                .or(all.last())
                .copied()
                .ok_or_else(|| ResolveError::UnknownService {
                    service: service_type.to_string(),
                })?;
            if !majors_compatible(software) && major(stack.version) != major(version) {
                return Err(ResolveError::IncompatibleMajor {
                    service: service_type.to_string(),
                    version: version.to_string(),
                    available: all
                        .iter()
                        .map(|s| format!("{service_type}:{}", s.version))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Ok(Resolution {
                stack,
                substituted_for: Some(version.to_string()),
            })
        }
        other => other,
    }
}

/// Resolve an app's or a service's `NAME:VERSION` (`slipway stack build`, tests).
pub fn resolve_any(type_value: &str) -> Result<Resolution, ResolveError> {
    match resolve_type(type_value) {
        Err(ResolveError::UnknownLanguage { .. }) => {
            let (name, version) = type_value
                .split_once(':')
                .ok_or_else(|| ResolveError::Malformed(type_value.to_string()))?;
            match resolve_service(name, version) {
                Err(ResolveError::UnknownService { .. }) => resolve_type(type_value),
                other => other,
            }
        }
        other => other,
    }
}

fn resolve_version(lang: Language, version: &str) -> Result<Resolution, ResolveError> {
    let known = crate::imported::versions(lang);
    if let Some(stack) = known.iter().find(|s| s.version == version).copied() {
        return Ok(Resolution {
            stack,
            substituted_for: None,
        });
    }
    let asked = version_key(version);
    let well_formed = !version.is_empty()
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    // A patch (or minor) within a stack's version is that stack: `python:3.11.4` runs on
    // python:3.11, `nodejs:22.1` on nodejs:22 (the longest such version, without warning).
    let within = known
        .iter()
        .filter(|s| well_formed && asked.starts_with(&version_key(s.version)))
        .max_by_key(|s| s.version.split('.').count())
        .copied();
    if let Some(stack) = within {
        return Ok(Resolution {
            stack,
            substituted_for: None,
        });
    }
    let newer_same_major = known
        .iter()
        .filter(|s| well_formed && major(s.version) == major(version))
        .find(|s| version_key(s.version) > asked)
        .copied();
    if let Some(stack) = newer_same_major {
        return Ok(Resolution {
            stack,
            substituted_for: Some(version.to_string()),
        });
    }
    if !well_formed {
        // `latest`, `stable`, `3.x`: not a version number; the newest is the likeliest meant.
        return Err(ResolveError::NotAVersion {
            language: lang,
            version: version.to_string(),
            suggestion: known.last().map(|s| s.version).unwrap_or_default(),
        });
    }
    // Did-you-mean: the nearest newer version of any major, else the newest there is.
    let suggestion = known
        .iter()
        .find(|s| version_key(s.version) > asked)
        .or(known.last())
        .map(|s| s.version)
        .unwrap_or_default();
    Err(ResolveError::UnknownVersion {
        language: lang,
        version: version.to_string(),
        suggestion,
    })
}

fn closest_language(input: &str) -> Option<&'static str> {
    let lower = input.to_ascii_lowercase();
    // Common other spellings first.
    let alias = match lower.as_str() {
        "node" | "node.js" | "nodej" | "js" => Some("nodejs"),
        "go" => Some("golang"),
        "python3" | "py" => Some("python"),
        "jdk" | "openjdk" => Some("java"),
        _ => None,
    };
    if alias.is_some() {
        return alias;
    }
    closest(&lower, Language::ALL.map(Language::name))
}

/// The name of `names` nearest `input` (case-insensitive), if near enough to be a typo.
fn closest(input: &str, names: impl IntoIterator<Item = &'static str>) -> Option<&'static str> {
    let lower = input.to_ascii_lowercase();
    names
        .into_iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= (k.len().max(input.len()) / 3).clamp(1, 3))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_versions_resolve_without_warning() {
        let r = resolve_type("python:3.11").unwrap();
        assert_eq!(r.stack.type_name(), "python:3.11");
        assert_eq!(r.warning(), None);
        assert_eq!(resolve_type("nodejs:22").unwrap().stack.version, "22");
    }

    #[test]
    fn a_missing_minor_uses_the_nearest_newer_of_the_same_major() {
        let r = resolve_type("python:3.12").unwrap();
        assert_eq!(r.stack.version, "3.13");
        let w = r.warning().unwrap();
        assert!(
            w.contains("python:3.12") && w.contains("python:3.13"),
            "{w}"
        );
        assert_eq!(resolve_type("python:3.10").unwrap().stack.version, "3.11");
        assert_eq!(resolve_type("php:8.0").unwrap().stack.version, "8.2");
        assert_eq!(resolve_type("php:8.3").unwrap().stack.version, "8.4");
        assert_eq!(resolve_type("golang:1.21").unwrap().stack.version, "1.24");
        assert_eq!(resolve_type("golang:1.14").unwrap().stack.version, "1.19");
        // Never an older one, never another major.
        assert!(resolve_type("python:3.14").is_err());
        assert!(
            resolve_type("redis:7.0").is_err(),
            "a service is no app language"
        );
        let r = resolve_service("mysql", "10.4").unwrap();
        assert_eq!(r.stack.type_name(), "mariadb:10.11");
        assert!(r.warning().unwrap().contains("mariadb:10.4"));
        assert_eq!(
            resolve_service("redis-persistent", "7.0")
                .unwrap()
                .stack
                .type_name(),
            "redis:7.0"
        );
        assert_eq!(
            resolve_any("postgresql:15").unwrap().stack.type_name(),
            "postgresql:15"
        );
        let m = resolve_service("opensearch", "2").unwrap_err().to_string();
        assert!(m.contains("runs: postgresql, mariadb"), "{m}");
        assert!(m.contains("rabbitmq, chrome-headless, influxdb"), "{m}");
        assert!(resolve_type("nodejs:19").is_err());
    }

    #[test]
    fn newer_service_types_resolve_to_what_debian_packages() {
        // RabbitMQ 3.13 is not in Debian: the newest 3.x there is, said to be older.
        let r = resolve_service("rabbitmq", "3.13").unwrap();
        assert_eq!(r.stack.type_name(), "rabbitmq:3.10");
        let w = r.warning().unwrap();
        assert!(
            w.contains("the newest rabbitmq it has (an older version)"),
            "{w}"
        );
        assert_eq!(
            resolve_service("chrome-headless", "73")
                .unwrap()
                .stack
                .language,
            Language::ChromeHeadless
        );
        assert_eq!(
            resolve_service("influxdb", "1.8")
                .unwrap()
                .stack
                .type_name(),
            "influxdb:1.6"
        );
        // InfluxDB 2 has another API: no 1.x stands in for it.
        let e = resolve_service("influxdb", "2.7").unwrap_err();
        assert!(matches!(e, ResolveError::IncompatibleMajor { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("influxdb:2.7") && m.contains("influxdb:1.6"),
            "{m}"
        );
    }

    #[test]
    fn a_word_for_a_version_is_refused_as_not_a_number_suggesting_the_newest() {
        for v in ["latest", "3.x", "stable"] {
            let m = resolve_type(&format!("python:{v}"))
                .unwrap_err()
                .to_string();
            assert!(m.contains(&format!("`{v}` is not a version number")), "{m}");
            assert!(m.contains("did you mean `python:3.13`?"), "{m}");
            assert!(m.contains("available: 3.9, 3.11, 3.13"), "{m}");
        }
    }

    #[test]
    fn a_missing_major_is_refused_with_the_versions_and_a_suggestion() {
        let e = resolve_type("php:5.6").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("php:5.6"), "{m}");
        assert!(m.contains("did you mean `php:7.4`?"), "{m}");
        assert!(m.contains("available: 7.4, 8.2, 8.4"), "{m}");
        // No Debian release here has Java 8.
        let m = resolve_type("java:8").unwrap_err().to_string();
        assert!(
            m.contains("did you mean `java:11`?") && m.contains("11, 17, 21, 25"),
            "{m}"
        );
        let m = resolve_type("python:4").unwrap_err().to_string();
        assert!(m.contains("did you mean `python:3.13`?"), "{m}");
        assert!(resolve_type("python:3.x").is_err());
        assert!(resolve_type("python:").is_err());
    }

    #[test]
    fn majors_only_bullseye_has_resolve_there_with_a_security_warning() {
        for (asked, used, newer) in [
            ("php:7.4", "php:7.4", "php:8.2, php:8.4"),
            ("java:11", "java:11", "java:17, java:21, java:25"),
            ("ruby:2.7", "ruby:2.7", "ruby:3.1, ruby:3.3"),
            ("python:3.9", "python:3.9", "python:3.11, python:3.13"),
        ] {
            let r = resolve_type(asked).unwrap();
            assert_eq!(r.stack.type_name(), used);
            assert_eq!(r.stack.suite, catalog::Suite::Bullseye);
            let w = r.warning().unwrap();
            assert_eq!(
                w,
                format!("{used} comes from Debian 11 (bullseye), which no longer receives security updates; move to a newer version ({newer})")
            );
        }
        // Python 3.8: the nearest newer 3.x is bullseye's 3.9, with both warnings.
        let w = resolve_type("python:3.8").unwrap().warning().unwrap();
        assert!(
            w.contains("using python:3.9, the nearest newer python 3.x; python:3.9 comes from Debian 11 (bullseye)"),
            "{w}"
        );
        // PostgreSQL 11 and 12 run on 13 (a service takes the nearest newer major).
        let r = resolve_service("postgresql", "12").unwrap();
        assert_eq!(r.stack.type_name(), "postgresql:13");
        let w = r.warning().unwrap();
        assert!(w.contains("postgresql:12 is not available"), "{w}");
        assert!(
            w.contains("move to a newer version (postgresql:15, postgresql:17)"),
            "{w}"
        );
        // Newer suites' stacks get no such warning.
        assert_eq!(resolve_type("php:8.2").unwrap().warning(), None);
    }

    #[test]
    fn a_patch_version_runs_on_its_major_minor_stack() {
        // Was python:3.13: 3.11.4 sorts after 3.11, so "the nearest newer 3.x" was 3.13.
        let r = resolve_type("python:3.11.4").unwrap();
        assert_eq!(r.stack.type_name(), "python:3.11");
        assert_eq!(r.warning(), None);
        assert_eq!(resolve_type("python:3.13.1").unwrap().stack.version, "3.13");
        assert_eq!(resolve_type("nodejs:22.1.0").unwrap().stack.version, "22");
        assert_eq!(resolve_type("php:8.2.7").unwrap().stack.version, "8.2");
        assert_eq!(
            resolve_service("postgresql", "15.4").unwrap().stack.version,
            "15"
        );
        // A patch of a missing minor still takes the nearest newer one, with the warning.
        let r = resolve_type("python:3.12.1").unwrap();
        assert_eq!(r.stack.version, "3.13");
        assert!(r.warning().unwrap().contains("python:3.12.1"));
        assert!(resolve_type("python:3.14.0").is_err());
    }

    #[test]
    fn lisp_is_sbcl_and_deno_comes_from_the_npm_registry() {
        let r = resolve_type("lisp:2.1").unwrap();
        assert_eq!(r.stack.type_name(), "lisp:2.2");
        assert!(r.stack.packages.contains(&"sbcl"));
        let w = r.warning().unwrap();
        assert!(w.contains("lisp:2.1") && w.contains("lisp:2.2"), "{w}");
        assert_eq!(resolve_type("lisp:2.5").unwrap().warning(), None);
        let m = resolve_type("lisp:1.5").unwrap_err().to_string();
        assert!(m.contains("available: 2.2, 2.5"), "{m}");
        let deno = resolve_type("deno:2").unwrap().stack;
        let tools: Vec<&str> = deno.npm_tools.iter().map(|t| t.tarball.package).collect();
        assert_eq!(tools, ["@deno/linux-x64-glibc"]);
        assert_eq!(resolve_type("deno:2.5").unwrap().stack.version, "2");
        assert!(resolve_type("deno:1").is_err());
    }

    #[test]
    fn packages_of_a_type_are_the_tables_and_unknown_ones_get_a_did_you_mean() {
        let r = resolve_type("base:13+clamav").unwrap();
        assert_eq!(r.stack.language, Language::Base);
        assert!(r.stack.packages.contains(&"clamav-daemon"));
        let m = resolve_type("base:13+clamv").unwrap_err().to_string();
        assert!(m.contains("`clamv` is neither a language"), "{m}");
        assert!(m.contains("(did you mean `clamav`?)"), "{m}");
        let m = package("popler_utils").unwrap_err().to_string();
        assert!(m.contains("did you mean `poppler_utils`?"), "{m}");
        assert!(matches!(
            resolve_type("clamav+python:3.13"),
            Err(ResolveError::Malformed(_))
        ));
    }

    #[test]
    fn an_unknown_language_gets_a_did_you_mean() {
        let m = resolve_type("pyhton:3.11").unwrap_err().to_string();
        assert!(m.contains("did you mean `python`?"), "{m}");
        assert!(
            m.contains("python, php, nodejs, ruby, golang, java, lisp, deno"),
            "{m}"
        );
        let m = resolve_type("node:20").unwrap_err().to_string();
        assert!(m.contains("did you mean `nodejs`?"), "{m}");
        let m = resolve_type("cobol:2.1").unwrap_err().to_string();
        assert!(!m.contains("did you mean"), "{m}");
        assert!(matches!(
            resolve_type("python"),
            Err(ResolveError::Malformed(_))
        ));
    }
}
