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
