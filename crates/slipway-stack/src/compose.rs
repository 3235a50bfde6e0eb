//! Stacks of several languages: an Upsun `stack:` list such as `[python@3.13, nodejs@22]`
//! is one root file system with each language's packages, written as the type
//! `python:3.13+nodejs:22` (the first language is the app's: its build flavor, its
//! PHP-FPM). The Debian packages of all of them come from one Debian release; a Node.js
//! from the npm registry fits either. A composed stack is interned for the process (one
//! small leaked entry per distinct list) and built like a catalog stack, tagged
//! `stack-python-3.13+nodejs:22`.
//!
//! The list's packages ([`crate::catalog::PACKAGES`], named by their Nix names) come last:
//! `python:3.13+imagemagick`, or `base:13+clamav` for an app whose list names no language.
//! Their Debian packages are the stack's too, so its tag and fingerprint name them; a
//! stack without packages is the same as before they existed.

use std::sync::RwLock;

use crate::catalog::{Language, NpmTool, Package, Stack, Suite};
use crate::resolve::ResolveError;

/// What separates the languages of a composed type (`python:3.13+nodejs:22`).
pub const SEPARATOR: char = '+';

/// Every composed stack made in this process.
static COMPOSED: RwLock<Vec<&'static Stack>> = RwLock::new(Vec::new());

/// The Debian release `stack`'s packages need, or `None` when they exist in both (a
/// Node.js from the npm registry only needs `libstdc++6`).
fn needs_suite(stack: &Stack) -> Option<Suite> {
    stack.node_from_npm.is_none().then_some(stack.suite)
}

/// One stack with the languages of `parts` (the first is the app's), or why they cannot
/// share one: a language named twice, or Debian packages of two releases.
pub fn compose(parts: &[&'static Stack]) -> Result<&'static Stack, ResolveError> {
    compose_with(parts, &[])
}

/// One stack with the languages of `parts` (the first is the app's) and the Debian
/// packages of `packages` (each once, in the order named), or why the languages cannot
/// share one.
pub fn compose_with(
    parts: &[&'static Stack],
    packages: &[&'static Package],
) -> Result<&'static Stack, ResolveError> {
    let [first, rest @ ..] = parts else {
        return Err(ResolveError::Uncomposable("an empty stack list".into()));
    };
    let mut extras: Vec<&'static Package> = Vec::new();
    for p in packages {
        if !extras.iter().any(|q| q.name == p.name) {
            extras.push(p);
        }
    }
    if rest.is_empty() && extras.is_empty() {
        return Ok(first);
    }
    for (i, p) in parts.iter().enumerate() {
        if parts[..i].iter().any(|q| q.language == p.language) {
            return Err(ResolveError::Uncomposable(format!(
                "{} is named twice: a stack has one version of a language",
                p.language
            )));
        }
    }
    let mut suite: Option<(&Stack, Suite)> = None;
    for p in parts {
        let Some(s) = needs_suite(p) else { continue };
        match suite {
            Some((q, qs)) if qs != s => {
                return Err(ResolveError::Uncomposable(format!(
                    "{q} comes from Debian {qs} and {p} from Debian {s}: the languages of one stack come from one Debian release"
                )))
            }
            Some(_) => {}
            None => suite = Some((p, s)),
        }
    }
    let version = std::iter::once(first.version.to_string())
        .chain(rest.iter().map(|p| p.type_name()))
        .chain(extras.iter().map(|p| p.name.to_string()))
        .collect::<Vec<_>>()
        .join(&SEPARATOR.to_string());
    let mut all = COMPOSED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = all
        .iter()
        .find(|s| s.language == first.language && s.version == version)
    {
        return Ok(s);
    }
    // With a Node.js stack in the list, its Node.js and npm tools are the stack's: another
    // language's own (a PHP stack's Debian Node.js and its npm, yarn and corepack) are left
    // out, so that one Node.js and one npm are installed.
    let with_node = parts.iter().any(|p| p.language == Language::Nodejs);
    let carries_node = |p: &Stack| with_node && p.language != Language::Nodejs;
    let mut packages: Vec<&'static str> = Vec::new();
    for p in parts.iter() {
        for pkg in p.packages {
            let replaced = carries_node(p) && *pkg == "nodejs";
            if !replaced && !packages.contains(pkg) {
                packages.push(pkg);
            }
        }
    }
    for pkg in extras.iter().flat_map(|p| p.debian) {
        if !packages.contains(pkg) {
            packages.push(pkg);
        }
    }
    let npm_tools: Vec<NpmTool> = parts
        .iter()
        .filter(|p| !carries_node(p))
        .flat_map(|p| p.npm_tools.iter().copied())
        .collect();
    let stack: &'static Stack = Box::leak(Box::new(Stack {
        language: first.language,
        version: Box::leak(version.into_boxed_str()),
        suite: suite.map(|(_, s)| s).unwrap_or(first.suite),
        packages: Box::leak(packages.into_boxed_slice()),
        node_from_npm: parts.iter().find_map(|p| p.node_from_npm),
        npm_tools: Box::leak(npm_tools.into_boxed_slice()),
    }));
    all.push(stack);
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{resolve_type, Language};

    #[test]
    fn python_and_node_from_the_npm_registry_make_one_trixie_stack() {
        let s = resolve_type("python:3.13+nodejs:22").unwrap();
        assert_eq!(s.warning(), None);
        let s = s.stack;
        assert_eq!(s.language, Language::Python);
        assert_eq!(s.type_name(), "python:3.13+nodejs:22");
        assert_eq!(s.suite, Suite::Trixie);
        let python = resolve_type("python:3.13").unwrap().stack;
        let node = resolve_type("nodejs:22").unwrap().stack;
        for p in python.packages.iter().chain(node.packages) {
            assert!(s.packages.contains(p), "{p} missing");
        }
        assert_eq!(s.node_from_npm, node.node_from_npm);
        assert_eq!(s.npm_tools, node.npm_tools);
        slipway_slug::validate_tag(&s.tag()).unwrap();
        assert_ne!(s.fingerprint(), python.fingerprint());
        // Interned: the same list is the same stack.
        assert!(std::ptr::eq(
            s,
            resolve_type("python:3.13+nodejs:22").unwrap().stack
        ));
        // A substitute inside a list: php 8.3 is 8.4's (trixie), as is Debian's node 20.
        let s = resolve_type("php:8.3+nodejs:20").unwrap().stack;
        assert_eq!(s.type_name(), "php:8.4+nodejs:20");
        assert_eq!(s.suite, Suite::Trixie);
    }

    #[test]
    fn a_nodejs_stack_in_the_list_replaces_the_node_a_php_stack_carries() {
        let php = resolve_type("php:8.4").unwrap().stack;
        assert!(php.packages.contains(&"nodejs"));
        let npm =
            |s: &Stack| -> Vec<&str> { s.npm_tools.iter().map(|t| t.tarball.package).collect() };
        assert_eq!(npm(php), ["npm", "yarn", "corepack"]);
        // With nodejs:22 from the npm registry: its node, npm, yarn and corepack only.
        let s = resolve_type("php:8.4+nodejs:22").unwrap().stack;
        let node = resolve_type("nodejs:22").unwrap().stack;
        assert!(!s.packages.contains(&"nodejs"), "{:?}", s.packages);
        assert_eq!(s.npm_tools, node.npm_tools);
        assert_eq!(s.node_from_npm, node.node_from_npm);
        assert!(s.packages.contains(&"php8.4-fpm"));
        // With Debian's nodejs:20: Debian's nodejs once, the node stack's tools.
        let s = resolve_type("php:8.4+nodejs:20").unwrap().stack;
        assert_eq!(s.packages.iter().filter(|p| **p == "nodejs").count(), 1);
        assert_eq!(npm(s), ["corepack", "@oven/bun-linux-x64-baseline"]);
    }

    #[test]
    fn packages_are_in_the_stacks_packages_tag_and_fingerprint() {
        let python = resolve_type("python:3.13").unwrap().stack;
        let s = resolve_type("python:3.13+imagemagick+poppler_utils")
            .unwrap()
            .stack;
        assert_eq!(s.type_name(), "python:3.13+imagemagick+poppler_utils");
        assert_eq!(s.tag(), "stack-python-3.13+imagemagick+poppler_utils");
        slipway_slug::validate_tag(&s.tag()).unwrap();
        assert!(s.packages.contains(&"imagemagick") && s.packages.contains(&"poppler-utils"));
        assert_eq!(s.suite, python.suite);
        assert_ne!(s.fingerprint(), python.fingerprint());
        // Packages only: the base stack, Debian 13 and the app tools.
        let s = resolve_type("base:13+clamav").unwrap().stack;
        assert_eq!(s.tag(), "stack-base-13+clamav");
        assert_eq!(s.packages, ["clamav", "clamav-daemon", "clamav-freshclam"]);
        assert!(s.debian_packages().contains(&"curl"));
        // A package named twice is installed once.
        let s = resolve_type("base:13+clamav+clamav").unwrap().stack;
        assert_eq!(s.type_name(), "base:13+clamav");
    }

    #[test]
    fn languages_that_cannot_share_a_stack_are_refused() {
        let e = resolve_type("php:8.2+python:3.13").unwrap_err().to_string();
        assert!(
            e.contains("php:8.2 comes from Debian bookworm and python:3.13 from Debian trixie"),
            "{e}"
        );
        let e = resolve_type("nodejs:22+nodejs:24").unwrap_err().to_string();
        assert!(e.contains("nodejs is named twice"), "{e}");
        assert!(resolve_type("python:3.13+").is_err());
        assert!(resolve_type("python:3.13+nodejs:19").is_err());
    }
}
