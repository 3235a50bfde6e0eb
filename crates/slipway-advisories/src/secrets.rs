//! Committed credentials: rules for the common kinds, applied to the files a push adds or
//! changes. A finding names `FILE:LINE` and the rule; of the secret itself only a short
//! masked prefix is ever shown.

use std::sync::OnceLock;

use regex::bytes::{Regex, RegexSet};
use serde::Serialize;

/// Files larger than this are not scanned (bytes).
pub const MAX_SCANNED_FILE: usize = 4 << 20;

/// Bytes looked at to tell a binary file (one with a NUL byte) from text.
const BINARY_PROBE: usize = 8000;

/// Shannon entropy (bits per character) a generic `password = "..."` value must exceed to
/// count as a secret. A value of hex digits never exceeds 4.0, so hashes and random hex test
/// fixtures pass.
pub const GENERIC_ENTROPY: f64 = 4.0;

/// One detection rule.
struct Rule {
    id: &'static str,
    pattern: &'static str,
    /// Only in configuration-like files, and only above [`GENERIC_ENTROPY`] (group 1).
    generic: bool,
}

const RULES: &[Rule] = &[
    Rule {
        id: "private-key",
        pattern: r"-----BEGIN ((RSA|DSA|EC|OPENSSH|PGP|ENCRYPTED) )?PRIVATE KEY( BLOCK)?-----",
        generic: false,
    },
    Rule {
        id: "aws-access-key-id",
        pattern: r"\b((AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b",
        generic: false,
    },
    Rule {
        id: "github-token",
        pattern: r"\b((ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})\b",
        generic: false,
    },
    Rule {
        id: "gitlab-token",
        pattern: r"\bglpat-[A-Za-z0-9_\-]{20,}",
        generic: false,
    },
    Rule {
        id: "slack-token",
        pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
        generic: false,
    },
    Rule {
        id: "stripe-live-key",
        pattern: r"\b(sk|rk)_live_[A-Za-z0-9]{20,}",
        generic: false,
    },
    Rule {
        id: "google-api-key",
        pattern: r"\bAIza[0-9A-Za-z_\-]{35}",
        generic: false,
    },
    Rule {
        id: "generic-password",
        pattern: r#"(?i)(?:password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?\s*(?:=|:|=>)\s*["']([^"'\s]{12,200})["']"#,
        generic: true,
    },
];

/// The extensions of files the generic rule applies to (configuration and source files).
const CONFIG_EXTENSIONS: &[&str] = &[
    "env",
    "yml",
    "yaml",
    "json",
    "ini",
    "conf",
    "cfg",
    "toml",
    "properties",
    "xml",
    "php",
    "py",
    "rb",
    "js",
    "ts",
    "go",
    "java",
    "cs",
    "sh",
];

struct Compiled {
    set: RegexSet,
    rules: Vec<Regex>,
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| Compiled {
        // The patterns are constants, tested below.
        set: RegexSet::new(RULES.iter().map(|r| r.pattern)).expect("secret rules compile"),
        rules: RULES
            .iter()
            .map(|r| Regex::new(r.pattern).expect("secret rule compiles"))
            .collect(),
    })
}

/// A committed secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretFinding {
    /// The file (path in the repository).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The rule that matched (`aws-access-key-id`, `private-key`, ...).
    pub rule: &'static str,
    /// A short masked prefix of what matched (`AKIA************`).
    pub masked: String,
    /// Whether the pusher allowed it (`-o allow-secret=FILE:LINE`).
    pub allowed: bool,
}

impl SecretFinding {
    /// `FILE:LINE`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The line shown to users.
    pub fn message(&self) -> String {
        if self.allowed {
            format!(
                "{}: warning: {} {} committed (allowed by allow-secret={})",
                self.location(),
                self.rule,
                self.masked,
                self.location()
            )
        } else {
            format!(
                "{}: error: {} {} committed: remove it (and revoke it), or push with -o allow-secret={}",
                self.location(),
                self.rule,
                self.masked,
                self.location()
            )
        }
    }
}

/// Whether `bytes` look binary (a NUL byte near the start).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_PROBE)].contains(&0)
}

fn is_config_like(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with(".env") {
        return true;
    }
    name.rsplit_once('.')
        .map(|(_, ext)| CONFIG_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Shannon entropy of `s` in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for b in s {
        counts[*b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

fn mask(secret: &[u8]) -> String {
    let shown = (secret.len() / 5).clamp(1, 4);
    let prefix = String::from_utf8_lossy(&secret[..shown.min(secret.len())]).into_owned();
    format!(
        "{prefix}{}",
        "*".repeat(secret.len().saturating_sub(shown).min(12))
    )
}

/// The secrets in file `path` with content `bytes`. Binary and oversized files give none.
pub fn scan(path: &str, bytes: &[u8]) -> Vec<SecretFinding> {
    if bytes.len() > MAX_SCANNED_FILE || is_binary(bytes) {
        return Vec::new();
    }
    let c = compiled();
    let hits = c.set.matches(bytes);
    if !hits.matched_any() {
        return Vec::new();
    }
    let config_like = is_config_like(path);
    let mut out = Vec::new();
    for i in hits.iter() {
        let rule = &RULES[i];
        if rule.generic && !config_like {
            continue;
        }
        for caps in c.rules[i].captures_iter(bytes) {
            let Some(whole) = caps.get(0) else { continue };
            let secret = caps.get(1).unwrap_or(whole);
            if rule.generic && entropy(secret.as_bytes()) <= GENERIC_ENTROPY {
                continue;
            }
            let line = bytes[..whole.start()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            let masked = if rule.id == "private-key" {
                "-----BEGIN ... PRIVATE KEY-----".to_string()
            } else {
                mask(secret.as_bytes())
            };
            out.push(SecretFinding {
                file: path.to_string(),
                line,
                rule: rule.id,
                masked,
                allowed: false,
            });
        }
    }
    out.sort_by(|a, b| a.line.cmp(&b.line).then(a.rule.cmp(b.rule)));
    out.dedup_by(|a, b| a.line == b.line && a.rule == b.rule);
    out
}

/// Scan the files of a working tree a first push of it would carry (`files`: paths relative
/// to `dir` with `/`, as `slipway_config::DirSource::files` lists what git would commit), each
/// up to [`MAX_SCANNED_FILE`]; a symbolic link is not followed (a push carries the link). What
/// `slipway config check` runs.
pub fn scan_files(dir: &std::path::Path, files: &[String]) -> std::io::Result<Vec<SecretFinding>> {
    let mut found = Vec::new();
    for path in files {
        let full = dir.join(path);
        let meta = std::fs::symlink_metadata(&full)?;
        if !meta.is_file() || meta.len() > MAX_SCANNED_FILE as u64 {
            continue;
        }
        let bytes = std::fs::read(&full)?;
        found.extend(scan(path, &bytes));
    }
    found.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(found)
}

/// The `FILE:LINE` locations of `-o allow-secret=FILE:LINE[,FILE:LINE]` push options.
pub fn allowed_locations(options: &[String]) -> Vec<String> {
    options
        .iter()
        .filter_map(|o| o.strip_prefix("allow-secret="))
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_given_are_scanned_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n";
        std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
        std::fs::write(dir.path().join("deploy/id_ed25519"), key).unwrap();
        std::fs::write(dir.path().join(".hidden_key"), format!("x\n{key}")).unwrap();
        std::fs::write(dir.path().join("not-given.pem"), key).unwrap();
        std::os::unix::fs::symlink("deploy/id_ed25519", dir.path().join("link")).unwrap();
        let files = [".hidden_key", "deploy/id_ed25519", "link"].map(String::from);
        let found = scan_files(dir.path(), &files).unwrap();
        let at: Vec<String> = found.iter().map(|f| f.location()).collect();
        assert_eq!(at, [".hidden_key:2", "deploy/id_ed25519:1"]);
    }

    #[test]
    fn rules_find_each_kind_at_its_line_and_mask_it() {
        let aws = format!("{}{}", "AKIA", "Z7QXJ3M2K8P4RT6W");
        let text = format!(
            "# settings\nregion = eu\naws_key = {aws}\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"
        );
        let found = scan("config/app.ini", text.as_bytes());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].line, found[0].rule), (3, "aws-access-key-id"));
        assert_eq!(found[0].masked, "AKIA************");
        assert!(!found[0].message().contains(&aws));
        assert_eq!((found[1].line, found[1].rule), (4, "private-key"));
        let gh = format!("token: ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        assert_eq!(scan("x.txt", gh.as_bytes())[0].rule, "github-token");
        let stripe = format!("k = '{}{}'", "sk_live_", "4eC39HqLyjWDarjtT1zdp7dc");
        assert_eq!(scan("x.py", stripe.as_bytes())[0].rule, "stripe-live-key");
    }

    #[test]
    fn generic_passwords_need_entropy_and_a_config_file() {
        let strong = br#"DB_PASSWORD = "q8#Lx!v2Rz@9Tm$Kp4&Wn7^Yb""#;
        assert_eq!(scan("settings.py", strong)[0].rule, "generic-password");
        assert!(scan("README.md", strong).is_empty(), "not a config file");
        let hex = br#"secret = "3f9a0c7be21d48a6f05c9e1b7d2a4c68""#;
        assert!(
            scan("tests/fixture.json", hex).is_empty(),
            "hex is below the threshold"
        );
        let weak = br#"password = "changeme-changeme""#;
        assert!(scan("config.yml", weak).is_empty());
    }

    #[test]
    fn binary_and_oversized_files_are_skipped() {
        let mut b = b"AKIAZ7QXJ3M2K8P4RT6W".to_vec();
        b.push(0);
        assert!(scan("blob.bin", &b).is_empty());
    }
}
