//! Who a project's containers run as and what they may use: the project's unprivileged
//! user ([`run_as`]) and the kernel limits of builds ([`build_limits`]) and apps
//! ([`app_limits`], from the app's `size`).

use slipway_config::{ContainerSize, Resources};
use slipway_runtime::{Limits, RunAs};

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

/// The unprivileged host user (`web` inside) of every container of `project`: builds, apps,
/// hooks and shells.
pub fn run_as(project: &str) -> RunAs {
    RunAs::for_project(project)
}

/// The project of `existing` whose user would be `project`'s too (the uid is a hash of the
/// name, so two names can meet): a new project with such a name is refused, so no two
/// projects ever share a user.
pub fn user_taken_by<'a>(project: &str, existing: &'a [String]) -> Option<&'a str> {
    let uid = run_as(project).uid;
    existing
        .iter()
        .find(|p| p.as_str() != project && run_as(p).uid == uid)
        .map(String::as_str)
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

/// What an app container may use, by its `size` (`None` and `AUTO` are `M`):
///
/// | size | CPU | memory | tasks | `/tmp` |
/// |------|-----|--------|-------|--------|
/// | S    | 0.5 | 512 MiB | 512 | 128 MiB |
/// | M    | 1   | 1 GiB  | 1024  | 256 MiB |
/// | L    | 2   | 2 GiB  | 2048  | 512 MiB |
/// | XL   | 4   | 4 GiB  | 4096  | 1 GiB   |
/// | 2XL  | 8   | 8 GiB  | 8192  | 2 GiB   |
/// | 4XL  | 16  | 16 GiB | 16384 | 4 GiB   |
///
/// With `resources`, the memory is `base_memory + memory_ratio x CPUs` MiB instead.
pub fn app_limits(size: Option<ContainerSize>, resources: Option<Resources>) -> Limits {
    // M: one CPU; every other size scales all four limits with the CPU count.
    let halves: u64 = match size.unwrap_or(ContainerSize::Auto) {
        ContainerSize::S => 1,
        ContainerSize::M | ContainerSize::Auto => 2,
        ContainerSize::L => 4,
        ContainerSize::XL => 8,
        ContainerSize::XL2 => 16,
        ContainerSize::XL4 => 32,
    };
    let memory_bytes = match resources {
        Some(r) => r
            .base_memory
            .saturating_add(r.memory_ratio.saturating_mul(halves) / 2)
            .saturating_mul(MIB),
        None => 512 * MIB * halves,
    };
    Limits {
        pids: (512 * halves) as u32,
        memory_bytes,
        cpu_millis: (500 * halves) as u32,
        tmp_bytes: 128 * MIB * halves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_whose_user_another_project_has_is_found() {
        // Two names with one uid (found by a birthday search over names of this shape).
        let (a, b) = ("shop-193-69".to_string(), "shop-304-74".to_string());
        assert_eq!(run_as(&a), run_as(&b));
        let existing = vec!["demo".to_string(), a.clone()];
        assert_eq!(user_taken_by(&b, &existing), Some(a.as_str()));
        assert_eq!(user_taken_by("another", &existing), None);
        assert_eq!(user_taken_by(&a, &existing), None);
    }

    #[test]
    fn sizes_scale_the_limits_and_auto_is_the_default() {
        assert_eq!(app_limits(None, None), Limits::default());
        assert_eq!(
            app_limits(Some(ContainerSize::Auto), None),
            Limits::default()
        );
        assert_eq!(app_limits(Some(ContainerSize::M), None), Limits::default());
        let s = app_limits(Some(ContainerSize::S), None);
        assert_eq!(
            (s.cpu_millis, s.memory_bytes, s.pids),
            (500, 512 * MIB, 512)
        );
        let xl4 = app_limits(Some(ContainerSize::XL4), None);
        assert_eq!(
            (xl4.cpu_millis, xl4.memory_bytes, xl4.pids, xl4.tmp_bytes),
            (16_000, 16 * 1024 * MIB, 16_384, 4 * 1024 * MIB)
        );
        // resources: 64 + 128 x 2 CPUs = 320 MiB for an L; only the memory changes.
        let r = app_limits(Some(ContainerSize::L), Some(Resources::default()));
        assert_eq!((r.memory_bytes, r.cpu_millis), (320 * MIB, 2000));
        let half = app_limits(
            Some(ContainerSize::S),
            Some(Resources {
                base_memory: 100,
                memory_ratio: 1000,
            }),
        );
        assert_eq!(half.memory_bytes, 600 * MIB);
    }
}
