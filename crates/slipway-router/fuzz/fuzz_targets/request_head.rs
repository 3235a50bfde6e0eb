//! Arbitrary bytes as a client's request head on the router's own HTTP/1.1 path (h1.rs):
//! no panic, the same verdict as httparse on the same bytes, no head with two `Host`
//! fields or a bare LF served, and the head written for the app is the client's
//! end-to-end fields plus one of each of the router's.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::request_head(data);
});
