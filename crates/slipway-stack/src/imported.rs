//! Stacks of versions the catalog lacks, imported by `slipway stack import` (spec section
//! 8: "for versions Debian lacks").
//!
//! The catalog is fixed at compile time; an imported `LANGUAGE:VERSION` exists only in a
//! server's archive (an image tagged `stack-LANGUAGE-VERSION`). [`crate::StackStore::register_imported`]
//! reads those tags and registers each such version here, for the whole process: from then
//! on resolution ([`crate::resolve()`], [`crate::resolve_service`] for a service's
//! software) knows it beside the catalog's versions, for config
//! validation (`config check` pointed at the server's stacks, the push's validate phase)
//! and builds alike. A registered stack is interned: registering it again gives the same
//! `&'static Stack`, so a long-running server leaks one small entry per imported version.

use std::sync::RwLock;

use crate::catalog::{self, Language, Stack, Suite};
use crate::resolve::{version_key, ResolveError};

/// Every imported stack registered in this process, of any language.
static IMPORTED: RwLock<Vec<&'static Stack>> = RwLock::new(Vec::new());

/// Whether `version` can name an imported stack: numbers separated by dots (`3.12`, `21`).
pub fn is_version(version: &str) -> bool {
    !version.is_empty()
        && version
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Register the imported stack `language:version` (a version the catalog lacks) for this
/// process; returns it. A catalog version is returned as the catalog's entry.
pub fn register(language: Language, version: &str) -> &'static Stack {
    if let Some(s) = catalog::find(language, version) {
        return s;
    }
    if let Some(s) = find(language, version) {
        return s;
    }
    let mut all = IMPORTED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = all
        .iter()
        .find(|s| s.language == language && s.version == version)
    {
        return s;
    }
    let stack: &'static Stack = Box::leak(Box::new(Stack {
        language,
        version: Box::leak(version.to_string().into_boxed_str()),
        // Unused: an imported stack is never built from Debian packages.
        suite: Suite::Bookworm,
        packages: &[],
        node_from_npm: None,
        npm_tools: &[],
    }));
    all.push(stack);
    stack
}

/// The imported stack `language:version`, if registered.
pub fn find(language: Language, version: &str) -> Option<&'static Stack> {
    IMPORTED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|s| s.language == language && s.version == version)
        .copied()
}

/// Every version of `language` resolution knows: the catalog's and the registered
/// imported ones, ascending.
pub fn versions(language: Language) -> Vec<&'static Stack> {
    let mut all: Vec<&'static Stack> = catalog::versions(language).collect();
    all.extend(
        IMPORTED
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.language == language),
    );
    all.sort_by_key(|s| version_key(s.version));
    all
}

/// The stack `language:version` of the catalog, else the imported one registered.
pub fn find_any(language: Language, version: &str) -> Option<&'static Stack> {
    catalog::find(language, version).or_else(|| find(language, version))
}

/// Whether `stack` is an imported one (registered here): it has no Debian recipe.
pub fn is_imported(stack: &Stack) -> bool {
    catalog::find(stack.language, stack.version).is_none()
        && find(stack.language, stack.version).is_some()
}

/// The stack `slipway stack import TYPE:VERSION` fills: the catalog's entry, or for a
/// language or service software of the catalog (`postgresql:16`) and a version it lacks,
/// a new imported stack (registered).
pub fn import_target(type_value: &str) -> Result<&'static Stack, ResolveError> {
    let (language, version) = type_value
        .split_once(':')
        .filter(|(l, v)| !l.is_empty() && !v.is_empty())
        .ok_or_else(|| ResolveError::Malformed(type_value.to_string()))?;
    let lang = match Language::from_stack_name(language) {
        Some(l) => l,
        // An unknown language: the same error (and did-you-mean) as resolution gives.
        None => return crate::resolve(language, version).map(|r| r.stack),
    };
    if let Some(s) = catalog::find(lang, version) {
        return Ok(s);
    }
    if !is_version(version) {
        return Err(ResolveError::Malformed(type_value.to_string()));
    }
    Ok(register(lang, version))
}

/// The `LANGUAGE:VERSION` an archive tag `stack-LANGUAGE-VERSION` names, if it names an
/// app language or a service's software and a version the catalog lacks.
pub fn parse_tag(tag: &str) -> Option<(Language, &str)> {
    let rest = tag.strip_prefix("stack-")?;
    Language::ALL
        .into_iter()
        .chain(Language::SERVICES)
        .find_map(|l| {
            let version = rest.strip_prefix(l.name())?.strip_prefix('-')?;
            (is_version(version) && catalog::find(l, version).is_none()).then_some((l, version))
        })
}
