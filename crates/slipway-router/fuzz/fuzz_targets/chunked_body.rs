//! Arbitrary bytes as a chunked request body on the router's own HTTP/1.1 path
//! (chunked.rs): decoding in pieces gives the same as whole, and a body it takes is the
//! one hyper reads from the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::chunked_body(data);
});
