//! Checking catalog stacks without building them: do their packages still resolve?
//!
//! A stack's package list can stop building when the mirror moves on (a package renamed or
//! dropped from a suite, a security build the mirror no longer serves, a pinned npm
//! tarball unpublished). [`check`] finds that in seconds per stack, against the same
//! sources a build uses: each suite's package lists are fetched once into a private apt
//! root (the host's apt configuration left out, as mmdebstrap does); each stack's packages
//! are resolved by apt on an empty system (`apt-get install --print-uris`, nothing
//! downloaded, no recommends, as the build's `--include`); every `.deb` that install would
//! fetch, and every npm tarball the stack pins, is asked for with a `HEAD`; and each npm
//! tarball's `dist.integrity` in the registry's metadata must be the pinned sha512.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::build::BuildOptions;
use crate::catalog::{NpmTarball, Stack, Suite};
use crate::error::StackError;

/// One reason a stack would not build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProblem {
    /// The suite has no package of that name (or only a virtual one nothing provides).
    PackageMissing {
        /// The package the catalog names.
        package: String,
    },
    /// apt cannot install the packages together: its unmet dependency lines.
    Unresolvable {
        /// apt's explanation, one line per unmet dependency.
        detail: String,
    },
    /// A file the build would download is not served (`HEAD` did not answer 200).
    NotServed {
        /// The `.deb` or npm tarball.
        url: String,
        /// The HTTP status (`000`: no answer at all).
        status: String,
    },
    /// The npm registry has no such version, or its metadata could not be read.
    NpmMetadata {
        /// `PACKAGE@VERSION`.
        package: String,
        /// What went wrong.
        cause: String,
    },
    /// The npm registry's `dist.integrity` of a pinned tarball is not the pinned sha512.
    NpmChecksum {
        /// `PACKAGE@VERSION`.
        package: String,
        /// The pinned sha512 (hex).
        expected: String,
        /// The registry's sha512 (hex).
        actual: String,
    },
}

impl fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckProblem::PackageMissing { package } => write!(f, "no package `{package}`"),
            CheckProblem::Unresolvable { detail } => write!(f, "unmet dependencies: {detail}"),
            CheckProblem::NotServed { url, status } => write!(f, "{url} not served ({status})"),
            CheckProblem::NpmMetadata { package, cause } => {
                write!(f, "npm registry: {package}: {cause}")
            }
            CheckProblem::NpmChecksum {
                package,
                expected,
                actual,
            } => write!(
                f,
                "npm registry: {package} has sha512 {actual}, the catalog pins {expected}"
            ),
        }
    }
}

/// The result of checking one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackCheck {
    /// `LANGUAGE:VERSION`.
    pub stack: String,
    /// The Debian suite its packages come from.
    pub suite: Suite,
    /// How many `.deb` files its build would install (0 when they do not resolve).
    pub debs: usize,
    /// Why it would not build; empty: it would.
    pub problems: Vec<CheckProblem>,
}

impl StackCheck {
    /// Whether nothing stands in the way of building it.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for StackCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok() {
            return write!(
                f,
                "{}: ok ({} packages from {})",
                self.stack, self.debs, self.suite
            );
        }
        write!(f, "{} ({}):", self.stack, self.suite)?;
        for p in &self.problems {
            write!(f, " {p};")?;
        }
        Ok(())
    }
}

/// A private apt root holding one suite's package lists.
struct AptRoot {
    config: std::path::PathBuf,
}

impl AptRoot {
    /// Make the root in `dir` and fetch `suite`'s lists (and its security suite's) into it.
    fn fetch(dir: &Path, suite: Suite, options: &BuildOptions) -> Result<AptRoot, StackError> {
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
        ] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).map_err(StackError::io(&d))?;
        }
        let d = dir.display();
        let status = dir.join("status");
        fs::write(&status, "").map_err(StackError::io(&status))?;
        let codename = suite.codename();
        let mut sources = format!("deb {} {codename} main\n", options.mirror);
        if let Some(sec) = &options.security_mirror {
            let _ = writeln!(sources, "deb {sec} {codename}-security main");
        }
        let list = dir.join("sources.list");
        fs::write(&list, sources).map_err(StackError::io(&list))?;
        // Everything apt reads or writes is below `dir`; the host's own configuration
        // (its sources, pins, proxies of other tools) is left out, as mmdebstrap does.
        let config = dir.join("apt.conf");
        let text = format!(
            "Dir::State \"{d}\";\nDir::State::Lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/status\";\nDir::Cache \"{d}/cache\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Parts \"{d}/etc/apt.conf.d\";\n\
             Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             APT::Architecture \"amd64\";\nAPT::Install-Recommends \"false\";\n\
             Acquire::Languages \"none\";\nAcquire::Retries \"2\";\n"
        );
        fs::write(&config, text).map_err(StackError::io(&config))?;
        let root = AptRoot { config };
        let out = root.apt_get(&["update", "-q"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // apt-get update exits 0 on some failed fetches but says so with `W:`/`E:` lines.
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W: Failed") || l.starts_with("Err:"))
            .collect();
        if !out.status.success() || !errors.is_empty() {
            return Err(StackError::IndexFetch {
                suite: codename.to_string(),
                cause: if errors.is_empty() {
                    stderr.trim().to_string()
                } else {
                    errors.join("; ")
                },
            });
        }
        Ok(root)
    }

    fn apt_get(&self, args: &[&str]) -> Result<std::process::Output, StackError> {
        Command::new("apt-get")
            .args(args)
            .env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| StackError::ToolMissing {
                tool: "apt-get".into(),
                hint: format!("{e}; stacks are checked with the host's apt"),
            })
    }

    /// Resolve `packages` on an empty system: the `.deb` URLs the install would fetch, or
    /// why it cannot.
    fn resolve(&self, packages: &[&str]) -> Result<Result<Vec<String>, CheckProblem>, StackError> {
        let mut args = vec!["install", "--print-uris", "-q", "-y"];
        args.extend_from_slice(packages);
        let out = self.apt_get(&args)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            let urls = stdout
                .lines()
                .filter_map(|l| l.strip_prefix('\'')?.split('\'').next())
                .map(str::to_string)
                .collect();
            return Ok(Ok(urls));
        }
        Ok(Err(resolve_failure(&stdout, &stderr)))
    }
}

/// Why `apt-get install` failed, from its output.
fn resolve_failure(stdout: &str, stderr: &str) -> CheckProblem {
    for l in stderr.lines() {
        if let Some(rest) = l.strip_prefix("E: Unable to locate package ") {
            return CheckProblem::PackageMissing {
                package: rest.trim().to_string(),
            };
        }
        if let Some(rest) = l.strip_prefix("E: Package '") {
            if let Some((package, _)) = rest.split_once('\'') {
                return CheckProblem::PackageMissing {
                    package: package.to_string(),
                };
            }
        }
    }
    let unmet: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("The following packages have unmet dependencies"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let detail = if unmet.is_empty() {
        stderr
            .lines()
            .filter(|l| l.starts_with("E:"))
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        unmet.join("; ")
    };
    CheckProblem::Unresolvable { detail }
}

/// `HEAD` every URL (16 at a time): each one's HTTP status (`000`: no answer).
fn head_all(urls: &BTreeSet<String>) -> Result<BTreeMap<String, String>, StackError> {
    let mut result = BTreeMap::new();
    if urls.is_empty() {
        return Ok(result);
    }
    let mut config = String::new();
    for u in urls {
        let _ = writeln!(config, "url = \"{u}\"\noutput = \"/dev/null\"");
    }
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--head",
            "--retry",
            "2",
            "--connect-timeout",
            "20",
            "--max-time",
            "60",
            "--parallel",
            "--parallel-max",
            "16",
            "-w",
            "%{http_code} %{url}\\n",
            "-K",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| StackError::ToolMissing {
            tool: "curl".into(),
            hint: format!("{e}; install curl"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.as_bytes())
            .map_err(StackError::io("curl"))?;
    }
    let out = child.wait_with_output().map_err(StackError::io("curl"))?;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((code, url)) = l.split_once(' ') {
            result.insert(url.to_string(), code.to_string());
        }
    }
    Ok(result)
}

/// The registry's sha512 (hex) of `tarball`, from its version metadata.
fn npm_sha512(registry: &str, tarball: &NpmTarball) -> Result<String, String> {
    let url = format!(
        "{}/{}/{}",
        registry.trim_end_matches('/'),
        tarball.package,
        tarball.version
    );
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "--connect-timeout", "20", &url])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{url}: not JSON: {e}"))?;
    let integrity = meta["dist"]["integrity"]
        .as_str()
        .ok_or_else(|| format!("{url} has no dist.integrity"))?;
    let b64 = integrity
        .strip_prefix("sha512-")
        .ok_or_else(|| format!("{url}: dist.integrity `{integrity}` is not sha512"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("{url}: dist.integrity is not base64: {e}"))?;
    Ok(hex::encode(raw))
}

/// Every npm tarball `stack` pins: node and npm, then its tools.
fn npm_tarballs(stack: &Stack) -> Vec<NpmTarball> {
    let mut all = Vec::new();
    if let Some(n) = stack.node_from_npm {
        all.push(n.node);
        all.push(n.npm);
    }
    all.extend(stack.npm_tools.iter().map(|t| t.tarball));
    all
}

/// Check `stacks` against the sources in `options`, using `work` (a folder the caller
/// removes) for the suites' package lists; `progress` gets a line per step. An error is a
/// check that could not be made (a mirror unreachable, apt or curl missing); a stack that
/// would not build is a [`StackCheck`] with its problems.
pub fn check(
    stacks: &[&Stack],
    options: &BuildOptions,
    work: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<StackCheck>, StackError> {
    let suites: BTreeSet<Suite> = stacks.iter().map(|s| s.suite).collect();
    let mut roots = BTreeMap::new();
    for suite in suites {
        progress(&format!("fetching Debian {suite}'s package lists"));
        roots.insert(
            suite,
            AptRoot::fetch(&work.join(suite.codename()), suite, options)?,
        );
    }
    let mut checks = Vec::new();
    let mut urls: Vec<Vec<String>> = Vec::new();
    for stack in stacks {
        progress(&format!("resolving {stack}'s packages on {}", stack.suite));
        let packages = stack.debian_packages();
        let mut check = StackCheck {
            stack: stack.type_name(),
            suite: stack.suite,
            debs: 0,
            problems: Vec::new(),
        };
        let mut stack_urls = match roots[&stack.suite].resolve(&packages)? {
            Ok(debs) => {
                check.debs = debs.len();
                debs
            }
            Err(problem) => {
                check.problems.push(problem);
                Vec::new()
            }
        };
        for t in npm_tarballs(stack) {
            let package = format!("{}@{}", t.package, t.version);
            match npm_sha512(&options.npm_registry, &t) {
                Ok(actual) if actual == t.sha512 => {}
                Ok(actual) => check.problems.push(CheckProblem::NpmChecksum {
                    package,
                    expected: t.sha512.to_string(),
                    actual,
                }),
                Err(cause) => check
                    .problems
                    .push(CheckProblem::NpmMetadata { package, cause }),
            }
            stack_urls.push(format!(
                "{}/{}",
                options.npm_registry.trim_end_matches('/'),
                t.path()
            ));
        }
        checks.push(check);
        urls.push(stack_urls);
    }
    let unique: BTreeSet<String> = urls.iter().flatten().cloned().collect();
    progress(&format!(
        "asking the mirrors for {} package files",
        unique.len()
    ));
    let status = head_all(&unique)?;
    for (check, stack_urls) in checks.iter_mut().zip(&urls) {
        for u in stack_urls {
            let code = status.get(u).map(String::as_str).unwrap_or("000");
            if code != "200" {
                check.problems.push(CheckProblem::NotServed {
                    url: u.clone(),
                    status: code.to_string(),
                });
            }
        }
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_missing_package_or_the_unmet_dependencies() {
        assert_eq!(
            resolve_failure(
                "Reading package lists...\n",
                "E: Unable to locate package python3-nope\nE: Couldn't find any package by glob 'python3-nope'\n"
            ),
            CheckProblem::PackageMissing {
                package: "python3-nope".into()
            }
        );
        assert_eq!(
            resolve_failure(
                "",
                "E: Package 'mail-transport-agent' has no installation candidate\n"
            ),
            CheckProblem::PackageMissing {
                package: "mail-transport-agent".into()
            }
        );
        let unmet = "Reading package lists...\nThe following packages have unmet dependencies:\n exim4-daemon-light : Conflicts: mail-transport-agent\n postfix : Conflicts: mail-transport-agent\n";
        assert_eq!(
            resolve_failure(unmet, "E: Unable to correct problems, you have held broken packages.\n"),
            CheckProblem::Unresolvable {
                detail: "exim4-daemon-light : Conflicts: mail-transport-agent; postfix : Conflicts: mail-transport-agent".into()
            }
        );
    }
}
