//! SSH exec request parsing: never panics, and whatever is accepted as a git service names a
//! project that is a DNS label (no path, no option, no quote can reach the repository lookup).
#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_ssh::command::{is_dns_label, parse, Command};

fuzz_target!(|data: &[u8]| {
    if let Ok(Command::Git { project, .. }) = parse(data) {
        assert!(is_dns_label(&project), "{project:?}");
        assert!(!project.contains(['/', '.', '\'', '"', '\0', ' ']));
    }
});
