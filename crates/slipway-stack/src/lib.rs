//! Stacks: the root file systems apps run on.
//!
//! `type: LANGUAGE:VERSION` names a stack of the [`catalog`]; [`resolve()`] picks the stack a
//! version gets (exact, or the nearest newer of the same major with a warning, or an error
//! with the versions there are and a did-you-mean). A stack is made from Debian packages by
//! mmdebstrap ([`build`]), kept in the archive as a content-addressed, verified tar+zstd
//! OCI layer and an image tagged `stack-LANGUAGE-VERSION` ([`StackStore`]), and unpacked
//! once under `stacks/HEX/` of the data dir, where every container using it shares it,
//! read-only, as its root.

#![warn(missing_docs)]

pub mod build;
pub mod catalog;
pub mod check;
pub mod compose;
mod error;
mod import;
pub mod imported;
pub mod resolve;
mod rootfs;
mod store;
mod unpack;

pub use build::BuildOptions;
pub use catalog::{Language, Stack, Suite, CATALOG};
pub use error::StackError;
pub use resolve::{
    resolve, resolve_any, resolve_service, resolve_type, service_software, Resolution, ResolveError,
};
pub use store::{BuiltStack, StackStore, STACK_LABEL};
pub use unpack::{dir_size, unpack_layer};
