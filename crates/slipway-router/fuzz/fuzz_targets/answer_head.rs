//! Arbitrary bytes as an app's answer head (upstream.rs), to a GET and to a HEAD: no panic,
//! the typed parse (hyper's side) and the byte-for-byte one (the router's own path) agree
//! on framing, keep-alive and fields, and what is written for the client parses back with
//! httparse to the same answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::answer_head(data);
});
