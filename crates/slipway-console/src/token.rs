//! Secrets of the console: random 256-bit tokens, the hashes stored in place of them, and
//! a comparison that takes the same time wherever two values differ.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new random 256-bit token, as 64 lowercase hex digits (safe in URLs and cookies).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of `token`, hex: what the state database keeps instead of the token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `s` looks like a token this module made (64 lowercase hex digits).
pub fn well_formed(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_and_stored_hashed() {
        let a = new_token();
        let b = new_token();
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a);
        assert_eq!(hash(&a), hash(&a));
        assert!(!well_formed("ABC"));
        assert!(!well_formed(&a.to_uppercase()));
    }

    #[test]
    fn comparison_is_exact() {
        let a = new_token();
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &new_token()));
        assert!(!same(&a, &a[..63]));
        assert!(!same(&a, ""));
    }
}
