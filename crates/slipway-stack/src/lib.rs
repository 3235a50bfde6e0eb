//! Stacks: the root file systems apps run on.
//!
//! `type: LANGUAGE:VERSION` names a stack of the [`catalog`]; [`resolve`] picks the stack a
//! version gets (exact, or the nearest newer of the same major with a warning, or an error
//! with the versions there are and a did-you-mean). A stack is made from Debian packages by
//! mmdebstrap, kept in the archive as a content-addressed, verified OCI layer and image
//! tagged `stack-LANGUAGE-VERSION`, and unpacked once, read-only, under `stacks/HEX/` of
//! the data dir, where every container using it shares it as its root.

pub mod catalog;
pub mod resolve;

pub use catalog::{Language, Stack, Suite, CATALOG};
pub use resolve::{resolve, resolve_type, Resolution, ResolveError};
