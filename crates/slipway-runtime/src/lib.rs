//! Containers under an OCI runtime CLI (runc or compatible) on Slipway's "host stack": an empty
//! read-only root with the host's `/usr` and `/etc` bound read-only, a private `/tmp`, the app at
//! `/app`, declared bind mounts, and one persistent network namespace per environment.
//!
//! The runtime's state root is `DATA_DIR/runtime/state`, so servers with different data dirs
//! never see each other's containers.

#![warn(missing_docs)]

mod bundle;
mod cli;
mod error;
pub mod netns;
mod output;
mod process;
mod runtime;
mod spec;
mod state;

pub use error::RuntimeError;
pub use runtime::Runtime;
pub use spec::{validate_id, BindMount, ContainerSpec};
pub use state::{ContainerState, Status};
