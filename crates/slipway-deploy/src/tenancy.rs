//! Who a project's containers run as and what they may use: the project's unprivileged
//! user ([`run_as`]) and the kernel limits of builds ([`build_limits`]) and apps
//! ([`app_limits`], from the app's `size`).

use slipway_runtime::{Limits, RunAs};

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

/// The unprivileged host user (`web` inside) of every container of `project`: builds, apps,
/// hooks and shells.
pub fn run_as(project: &str) -> RunAs {
    RunAs::for_project(project)
}

/// What a build container may use: 2 CPUs, 2 GiB of memory, 2048 tasks, a 1 GiB `/tmp`.
pub fn build_limits() -> Limits {
    Limits {
        pids: 2048,
        memory_bytes: 2048 * MIB,
        cpu_millis: 2000,
        tmp_bytes: 1024 * MIB,
    }
}

/// What an app container may use: [`Limits::default`] (Slipway's `size: M`: 1 CPU, 1 GiB,
/// 1024 tasks, a 256 MiB `/tmp`).
pub fn app_limits() -> Limits {
    Limits::default()
}
