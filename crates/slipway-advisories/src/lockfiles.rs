//! Lockfile parsers: which package versions an app pins, per ecosystem.
//!
//! JSON lockfiles are read with `serde_json`, TOML ones with `toml`, pnpm's YAML with
//! `serde_yaml_ng`; yarn.lock, requirements.txt, Gemfile.lock, go.mod and go.sum are line
//! formats read here. Every parser faces pushed input: it never panics, and a file it
//! cannot read gives a [`Malformed`] naming the line, never a refusal.

use serde_json::Value;

use crate::version::Ecosystem;

/// The lockfile names read, with their ecosystem. Matched on the file name in an app's
/// source root.
pub const LOCKFILES: &[(&str, Ecosystem)] = &[
    ("composer.lock", Ecosystem::Packagist),
    ("package-lock.json", Ecosystem::Npm),
    ("npm-shrinkwrap.json", Ecosystem::Npm),
    ("yarn.lock", Ecosystem::Npm),
    ("pnpm-lock.yaml", Ecosystem::Npm),
    ("requirements.txt", Ecosystem::PyPI),
    ("Pipfile.lock", Ecosystem::PyPI),
    ("poetry.lock", Ecosystem::PyPI),
    ("uv.lock", Ecosystem::PyPI),
    ("Gemfile.lock", Ecosystem::RubyGems),
    ("go.mod", Ecosystem::Go),
    ("go.sum", Ecosystem::Go),
    ("Cargo.lock", Ecosystem::CratesIo),
];

/// The largest lockfile read, in bytes.
pub const MAX_LOCKFILE: usize = 64 << 20;

/// One pinned package version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name as the lockfile spells it.
    pub name: String,
    /// The pinned version.
    pub version: String,
}

/// Why a lockfile could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Malformed {
    /// 1-based line (1 when unknown).
    pub line: usize,
    /// Why.
    pub reason: String,
}

fn malformed(line: usize, reason: impl std::fmt::Display) -> Malformed {
    Malformed {
        line: line.max(1),
        reason: reason.to_string(),
    }
}

/// Whether `file_name` is a lockfile read here.
pub fn is_lockfile(file_name: &str) -> bool {
    LOCKFILES.iter().any(|(n, _)| *n == file_name)
}

/// The pinned packages of lockfile `file_name` (a name of [`LOCKFILES`]) with content `bytes`.
pub fn parse(file_name: &str, bytes: &[u8]) -> Result<Vec<Dependency>, Malformed> {
    if bytes.len() > MAX_LOCKFILE {
        return Err(malformed(
            1,
            format!("larger than {} MiB", MAX_LOCKFILE >> 20),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        malformed(line, "not UTF-8")
    })?;
    let mut deps = match file_name {
        "composer.lock" => composer(text)?,
        "package-lock.json" | "npm-shrinkwrap.json" => package_lock(text)?,
        "yarn.lock" => yarn(text),
        "pnpm-lock.yaml" => pnpm(text)?,
        "requirements.txt" => requirements(text),
        "Pipfile.lock" => pipfile(text)?,
        "poetry.lock" | "uv.lock" => toml_packages(text, Ecosystem::PyPI, false)?,
        "Cargo.lock" => toml_packages(text, Ecosystem::CratesIo, true)?,
        "Gemfile.lock" => gemfile(text),
        "go.mod" => go_mod(text),
        "go.sum" => go_sum(text),
        other => return Err(malformed(1, format!("{other} is not a lockfile read here"))),
    };
    deps.sort();
    deps.dedup();
    Ok(deps)
}

fn dep(eco: Ecosystem, name: &str, version: &str) -> Option<Dependency> {
    let (name, version) = (name.trim(), version.trim());
    (!name.is_empty() && !version.is_empty()).then(|| Dependency {
        ecosystem: eco,
        name: name.to_string(),
        version: version.to_string(),
    })
}

fn json(text: &str) -> Result<Value, Malformed> {
    serde_json::from_str(text).map_err(|e| malformed(e.line(), e))
}

fn composer(text: &str) -> Result<Vec<Dependency>, Malformed> {
    let v = json(text)?;
    let mut out = Vec::new();
    for key in ["packages", "packages-dev"] {
        for p in v.get(key).and_then(Value::as_array).into_iter().flatten() {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let version = p.get("version").and_then(Value::as_str).unwrap_or("");
            out.extend(dep(Ecosystem::Packagist, name, version));
        }
    }
    Ok(out)
}

fn package_lock(text: &str) -> Result<Vec<Dependency>, Malformed> {
    let v = json(text)?;
    let mut out = Vec::new();
    // lockfileVersion 2 and 3: "packages" keyed by install path.
    if let Some(packages) = v.get("packages").and_then(Value::as_object) {
        for (path, p) in packages {
            if path.is_empty() || p.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let Some(idx) = path.rfind("node_modules/") else {
                continue;
            };
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&path[idx + "node_modules/".len()..]);
            let version = p.get("version").and_then(Value::as_str).unwrap_or("");
            out.extend(dep(Ecosystem::Npm, name, version));
        }
        return Ok(out);
    }
    // lockfileVersion 1: nested "dependencies".
    fn walk(deps: &serde_json::Map<String, Value>, depth: usize, out: &mut Vec<Dependency>) {
        if depth > 64 {
            return;
        }
        for (name, d) in deps {
            if let Some(version) = d.get("version").and_then(Value::as_str) {
                out.extend(dep(Ecosystem::Npm, name, version));
            }
            if let Some(nested) = d.get("dependencies").and_then(Value::as_object) {
                walk(nested, depth + 1, out);
            }
        }
    }
    if let Some(deps) = v.get("dependencies").and_then(Value::as_object) {
        walk(deps, 0, &mut out);
    }
    Ok(out)
}

/// The package name of a yarn descriptor: `lodash@^4.0.0`, `@babel/core@npm:^7.0.0`.
fn yarn_name(descriptor: &str) -> &str {
    let d = descriptor.trim().trim_matches('"');
    let search_from = usize::from(d.starts_with('@'));
    match d[search_from..].find('@') {
        Some(i) => &d[..search_from + i],
        None => d,
    }
}

fn yarn(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            current = None;
            if let Some(header) = line.trim_end().strip_suffix(':') {
                let first = header.split(',').next().unwrap_or("");
                let name = yarn_name(first);
                if !name.is_empty() && name != "__metadata" {
                    current = Some(name.to_string());
                }
            }
            continue;
        }
        let Some(name) = &current else { continue };
        let t = line.trim();
        let version = t
            .strip_prefix("version:")
            .or_else(|| t.strip_prefix("version "));
        if let Some(v) = version {
            out.extend(dep(Ecosystem::Npm, name, v.trim().trim_matches('"')));
            current = None;
        }
    }
    out
}

/// Name and version of a pnpm `packages` key: `/lodash/4.17.20` (v5), `/lodash@4.17.20`
/// (v6), `lodash@4.17.20(peer@1.0.0)` (v9), scoped names alike.
fn pnpm_key(key: &str) -> Option<(&str, &str)> {
    let k = key.trim().trim_start_matches('/');
    let k = k.split('(').next().unwrap_or(k);
    let scoped = k.starts_with('@');
    // v5: `name/version[_peers]`, `@scope/name/version[_peers]`.
    let mut parts = k.splitn(if scoped { 3 } else { 2 }, '/');
    let name_len = if scoped {
        let a = parts.next().unwrap_or("");
        let b = parts.next().unwrap_or("");
        a.len() + 1 + b.len()
    } else {
        parts.next().unwrap_or("").len()
    };
    if let Some(version) = parts.next() {
        if version.starts_with(|c: char| c.is_ascii_digit()) && name_len <= k.len() {
            let version = version.split('_').next().unwrap_or(version);
            return Some((&k[..name_len], version));
        }
    }
    // v6 and v9: `name@version`.
    let search_from = usize::from(scoped);
    let i = search_from + k.get(search_from..)?.find('@')?;
    Some((&k[..i], &k[i + 1..]))
}

fn pnpm(text: &str) -> Result<Vec<Dependency>, Malformed> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| malformed(e.location().map(|l| l.line()).unwrap_or(1), e))?;
    let mut out = Vec::new();
    if let Some(packages) = v.get("packages").and_then(|p| p.as_mapping()) {
        for (key, _) in packages {
            if let Some((name, version)) = key.as_str().and_then(pnpm_key) {
                out.extend(dep(Ecosystem::Npm, name, version));
            }
        }
    }
    Ok(out)
}

fn requirements(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or(line);
        let line = line.split(';').next().unwrap_or(line).trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        let Some((name, version)) = line.split_once("===").or_else(|| line.split_once("==")) else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name);
        let version = version.split([',', ' ', '\\']).next().unwrap_or("");
        if version.contains('*') {
            continue;
        }
        out.extend(dep(Ecosystem::PyPI, name, version));
    }
    out
}

fn pipfile(text: &str) -> Result<Vec<Dependency>, Malformed> {
    let v = json(text)?;
    let mut out = Vec::new();
    for section in ["default", "develop"] {
        for (name, p) in v
            .get(section)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(version) = p
                .get("version")
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("=="))
            {
                out.extend(dep(Ecosystem::PyPI, name, version));
            }
        }
    }
    Ok(out)
}

/// `[[package]]` tables with `name` and `version` (poetry.lock, uv.lock, Cargo.lock). With
/// `registry_only`, packages without a `source` (a workspace's own crates) are left out.
fn toml_packages(
    text: &str,
    eco: Ecosystem,
    registry_only: bool,
) -> Result<Vec<Dependency>, Malformed> {
    let v: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        malformed(line, e.message())
    })?;
    let mut out = Vec::new();
    for p in v
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        if registry_only && p.get("source").is_none() {
            continue;
        }
        let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let version = p.get("version").and_then(|n| n.as_str()).unwrap_or("");
        out.extend(dep(eco, name, version));
    }
    Ok(out)
}

fn gemfile(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    let mut section = "";
    let mut in_specs = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim();
            in_specs = false;
            continue;
        }
        if line.trim() == "specs:" {
            in_specs = true;
            continue;
        }
        if section != "GEM" || !in_specs {
            continue;
        }
        // Gems are indented by four spaces; their own dependencies by six.
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        if rest.starts_with(' ') {
            continue;
        }
        let Some((name, version)) = rest.split_once(" (") else {
            continue;
        };
        let version = version.trim_end().trim_end_matches(')');
        // A platform suffix: `1.15.4-x86_64-linux`.
        let version = version.split('-').next().unwrap_or(version);
        out.extend(dep(Ecosystem::RubyGems, name, version));
    }
    out
}

fn go_mod(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or(line).trim();
        if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
        } else if let Some(rest) = line.strip_prefix("require") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            let mut parts = rest.split_whitespace();
            if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
                out.extend(dep(Ecosystem::Go, m, v));
            }
            continue;
        } else {
            continue;
        }
        let mut parts = line.split_whitespace();
        if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
            out.extend(dep(Ecosystem::Go, m, v));
        }
    }
    out
}

fn go_sum(text: &str) -> Vec<Dependency> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(m), Some(v)) = (parts.next(), parts.next()) {
            if !v.ends_with("/go.mod") {
                out.extend(dep(Ecosystem::Go, m, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(file: &str, text: &str) -> Vec<(String, String)> {
        parse(file, text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|d| (d.name, d.version))
            .collect()
    }

    fn pair(n: &str, v: &str) -> (String, String) {
        (n.to_string(), v.to_string())
    }

    #[test]
    fn composer_lock() {
        let t = r#"{"packages":[{"name":"guzzlehttp/psr7","version":"1.8.1"}],
            "packages-dev":[{"name":"phpunit/phpunit","version":"9.5.0"}]}"#;
        assert_eq!(
            names("composer.lock", t),
            vec![
                pair("guzzlehttp/psr7", "1.8.1"),
                pair("phpunit/phpunit", "9.5.0")
            ]
        );
    }

    #[test]
    fn package_lock_v1_v3() {
        let v3 = r#"{"lockfileVersion":3,"packages":{"":{"name":"app"},
            "node_modules/lodash":{"version":"4.17.20"},
            "node_modules/a/node_modules/@scope/b":{"version":"1.0.0"},
            "packages/local":{"version":"0.0.1"},
            "node_modules/local":{"resolved":"packages/local","link":true}}}"#;
        assert_eq!(
            names("package-lock.json", v3),
            vec![pair("@scope/b", "1.0.0"), pair("lodash", "4.17.20")]
        );
        let v1 = r#"{"lockfileVersion":1,"dependencies":{"lodash":{"version":"4.17.20",
            "dependencies":{"minimist":{"version":"0.0.8"}}}}}"#;
        assert_eq!(
            names("npm-shrinkwrap.json", v1),
            vec![pair("lodash", "4.17.20"), pair("minimist", "0.0.8")]
        );
    }

    #[test]
    fn yarn_v1_and_berry() {
        let v1 = "# yarn lockfile v1\n\n\"@babel/code-frame@^7.0.0\", \"@babel/code-frame@^7.10.4\":\n  version \"7.12.13\"\n  resolved \"x\"\n\nlodash@^4.17.0:\n  version \"4.17.20\"\n";
        assert_eq!(
            names("yarn.lock", v1),
            vec![
                pair("@babel/code-frame", "7.12.13"),
                pair("lodash", "4.17.20")
            ]
        );
        let berry = "__metadata:\n  version: 6\n\n\"lodash@npm:^4.17.20\":\n  version: 4.17.21\n  resolution: \"lodash@npm:4.17.21\"\n";
        assert_eq!(names("yarn.lock", berry), vec![pair("lodash", "4.17.21")]);
    }

    #[test]
    fn pnpm_keys_of_each_version() {
        let t = "lockfileVersion: '9.0'\npackages:\n  lodash@4.17.20:\n    resolution: {integrity: x}\n  '@scope/b@1.0.0(react@18.0.0)':\n    resolution: {integrity: y}\n  /old/2.0.0_peer@1:\n    resolution: {integrity: z}\n";
        assert_eq!(
            names("pnpm-lock.yaml", t),
            vec![
                pair("@scope/b", "1.0.0"),
                pair("lodash", "4.17.20"),
                pair("old", "2.0.0")
            ]
        );
    }

    #[test]
    fn python_lockfiles() {
        let req = "# c\nDjango==3.2.0 ; python_version > '3'\nrequests[socks]==2.25.1 \\\n  --hash=sha256:x\nflask>=2\n-r other.txt\n";
        assert_eq!(
            names("requirements.txt", req),
            vec![pair("Django", "3.2.0"), pair("requests", "2.25.1")]
        );
        let pipfile = r#"{"default":{"django":{"version":"==3.2.0"}},"develop":{"pytest":{"version":"==7.0.0"}}}"#;
        assert_eq!(
            names("Pipfile.lock", pipfile),
            vec![pair("django", "3.2.0"), pair("pytest", "7.0.0")]
        );
        let poetry = "[[package]]\nname = \"django\"\nversion = \"3.2.0\"\n";
        assert_eq!(names("poetry.lock", poetry), vec![pair("django", "3.2.0")]);
        assert_eq!(names("uv.lock", poetry), vec![pair("django", "3.2.0")]);
    }

    #[test]
    fn ruby_go_rust() {
        let gem = "GEM\n  remote: https://rubygems.org/\n  specs:\n    nokogiri (1.13.0-x86_64-linux)\n      racc (~> 1.4)\n    rails (6.1.7)\n\nPLATFORMS\n  ruby\n";
        assert_eq!(
            names("Gemfile.lock", gem),
            vec![pair("nokogiri", "1.13.0"), pair("rails", "6.1.7")]
        );
        let gomod = "module x\n\ngo 1.21\n\nrequire golang.org/x/net v0.16.0\nrequire (\n\tgithub.com/a/b v1.2.3 // indirect\n)\n";
        assert_eq!(
            names("go.mod", gomod),
            vec![
                pair("github.com/a/b", "v1.2.3"),
                pair("golang.org/x/net", "v0.16.0")
            ]
        );
        let gosum = "golang.org/x/net v0.16.0 h1:x=\ngolang.org/x/net v0.16.0/go.mod h1:y=\n";
        assert_eq!(
            names("go.sum", gosum),
            vec![pair("golang.org/x/net", "v0.16.0")]
        );
        let cargo = "version = 3\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
        assert_eq!(names("Cargo.lock", cargo), vec![pair("smallvec", "1.6.0")]);
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = parse("composer.lock", b"{\n\"packages\": [\n,]}").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("Cargo.lock", b"[[package]]\nname = \n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse("pnpm-lock.yaml", b"packages: [\n").is_err());
        assert!(parse("yarn.lock", b"\xff\xfe").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
                               text in "[ -~\n]{0,300}") {
            for (file, _) in LOCKFILES {
                let _ = parse(file, &bytes);
                let _ = parse(file, text.as_bytes());
            }
        }
    }
}
