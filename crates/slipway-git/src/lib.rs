//! Everything Slipway does inside git repositories, with gix.
//!
//! - [`init_bare`] and [`Repo`]: bare repositories, ref reads and compare-and-swap ref updates,
//!   reading trees of pushed commits ([`Repo::tree_at`], [`Repo::config_source`], [`Repo::checkout`]).
//! - [`receive`]: a native server side of `git-receive-pack` (the push protocol) over any
//!   `AsyncRead`/`AsyncWrite` pair.

#![warn(missing_docs)]

mod checkout;
mod error;
mod init;
pub mod receive;
mod repo;
mod source;

pub use error::GitError;
pub use gix::ObjectId;
pub use init::{init_bare, CONFIG as REPO_CONFIG};
pub use repo::Repo;
pub use source::CommitSource;
