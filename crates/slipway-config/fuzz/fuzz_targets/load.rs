//! Arbitrary bytes as a small repository tree (NUL-separated files, the first byte of each picks
//! its path): loading it in every layout must never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_config::fuzzing::exercise(data);
});
