//! Push protection: known-vulnerable dependencies and committed secrets, checked at the
//! validate phase of a push, before anything is built.
//!
//! - [`db`]: the local OSV advisory database under the data dir (`advisories/osv.db`),
//!   imported from OSV JSON files, folders of them and OSV's per-ecosystem `all.zip` dumps.
//! - [`lockfiles`]: the pinned packages of an app's lockfiles, per ecosystem.
//! - [`version`]: versions and OSV ranges per ecosystem.
//! - [`severity`]: CVSS v3/v4 base scores and database ratings to a [`Level`].
//! - [`mod@audit`]: lockfiles against the database, with the verdict.
//! - [`secrets`]: committed credentials in the files a push adds.

#![warn(missing_docs)]

pub mod audit;
pub mod db;
pub mod lockfiles;
pub mod osv;
pub mod secrets;
pub mod severity;
pub mod version;

pub use audit::{allowed_ids, audit, Finding, Lockfile, Report};
pub use db::{load_path, AdvisoryError, Database, EcosystemSummary, ImportStats};
pub use severity::Level;
pub use version::Ecosystem;
