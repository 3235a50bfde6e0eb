//! Release tags: the `org.opencontainers.image.ref.name` annotation in index.json.
//!
//! The OCI image-layout spec's grammar is
//! ```text
//! ref       ::= component ("/" component)*
//! component ::= alphanum (separator alphanum)*
//! alphanum  ::= [A-Za-z0-9]+
//! separator ::= [-._:@+] | "--"
//! ```
//! Slipway accepts that grammar minus the `/` between components (a tag names one
//! release, e.g. `demo.main.r3.hello`), at most [`MAX_TAG_LEN`] bytes.

use crate::error::SlugError;

/// Longest accepted tag, in bytes.
pub const MAX_TAG_LEN: usize = 255;

/// Check `tag` against the OCI ref.name grammar (one component, see the module docs).
pub fn validate_tag(tag: &str) -> Result<(), SlugError> {
    let bad = |reason: &str| SlugError::InvalidTag {
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    if tag.is_empty() {
        return Err(bad("a tag cannot be empty"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(bad(&format!("longer than {MAX_TAG_LEN} bytes")));
    }
    let bytes = tag.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_alphanumeric();
    let is_sep = |b: u8| matches!(b, b'-' | b'.' | b'_' | b':' | b'@' | b'+');
    if !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return Err(bad("must start and end with a letter or digit"));
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        if !is_sep(b) {
            return Err(bad(
                "only letters, digits and the separators - . _ : @ + are allowed",
            ));
        }
        // A separator is one char, or exactly "--"; it must be followed by an alphanumeric.
        let next = bytes.get(i + 1).copied();
        match (b, next) {
            (b'-', Some(b'-')) if bytes.get(i + 2).copied().is_some_and(is_alnum) => i += 3,
            (_, Some(n)) if is_alnum(n) => i += 2,
            _ => {
                return Err(bad(
                    "separators must stand between letters or digits (only \"--\" may double)",
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_oci_ref_names() {
        for ok in [
            "demo.main.r3.hello",
            "a",
            "v1.2.3",
            "x--y",
            "a_b-c:d@e+f",
            "R3",
        ] {
            validate_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn refuses_bad_tags() {
        let long = "a".repeat(MAX_TAG_LEN + 1);
        for bad in [
            "", ".a", "a.", "a..b", "a---b", "a/b", "a b", "a\nb", "ä", "-a", "a__b", "../x", &long,
        ] {
            assert!(validate_tag(bad).is_err(), "{bad:?} accepted");
        }
    }
}
