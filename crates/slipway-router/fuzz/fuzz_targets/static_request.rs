//! Arbitrary bytes as what a client sends to a static file (web.locations): a request
//! path decoded and normalized (never a `..`, NUL or empty segment out of it), a `Range`
//! (always within the file), `Accept-Encoding`, `If-None-Match`; no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::static_request(data);
});
