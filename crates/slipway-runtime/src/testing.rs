//! Helpers for tests of this crate and of the crates above it.

/// Whether this process runs as root, for a test that needs it: when not, the test is
/// skipped (says so, returns false), except with `CI=true`, where it fails instead, so a
/// CI run never skips a root test.
pub fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "needs root under CI"
    );
    eprintln!("skipped: needs root");
    false
}

/// A container spec for a test: `args` run on `root` as `run_as`, with `app_dir` read-only
/// at `/app` (the working folder), no variables, mounts, network namespace, annotations
/// nor limits of its own; `hostname` is also the id's start (`HOSTNAME-PID-N`, unique in
/// this process).
pub fn spec(
    root: crate::RootFs,
    hostname: &str,
    args: &[&str],
    app_dir: &std::path::Path,
    run_as: crate::RunAs,
) -> crate::ContainerSpec {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    crate::ContainerSpec {
        root,
        id: format!(
            "{hostname}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: "/app".into(),
        app_dir: app_dir.to_path_buf(),
        app_writable: false,
        mounts: vec![],
        netns: None,
        hostname: hostname.into(),
        hosts: Vec::new(),
        annotations: std::collections::BTreeMap::new(),
        run_as,
        limits: crate::Limits::default(),
    }
}
