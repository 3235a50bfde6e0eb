//! Containers under an OCI runtime CLI (runc or compatible) on Slipway's "host stack": an empty
//! read-only root with the host's `/usr` and `/etc` bound read-only, a private size-capped
//! `/tmp`, the app at `/app`, declared bind mounts, and one persistent network namespace per
//! environment. Every process runs as the project's unprivileged user `web` with no
//! capabilities, `no_new_privs`, a seccomp filter, cgroup limits and tini as pid 1
//! (see `tenancy`).
//!
//! The runtime's state root is `DATA_DIR/runtime/state`, so servers with different data dirs
//! never see each other's containers.

#![warn(missing_docs)]

mod beneath;
mod bundle;
mod cli;
mod error;
mod exits;
pub mod netns;
mod output;
mod ownfs;
mod pinned;
mod process;
pub mod reaper;
mod runtime;
mod spec;
mod state;
mod tenancy;
pub mod testing;

pub use beneath::open_folder_at;
pub use bundle::STACK_ROOT_ANNOTATION;
pub use error::RuntimeError;
pub use exits::Exit;
pub use ownfs::{mount_private_tmpfs, unmount_all};
pub use runtime::{Runtime, OOM_LINE};
pub use spec::{validate_id, BindMount, ContainerSpec, RootFs};
pub use state::{ContainerState, Status};
pub use tenancy::{Limits, RunAs, FIRST_PROJECT_UID, INIT_PATH, PROJECT_UIDS, WEB_USER};
