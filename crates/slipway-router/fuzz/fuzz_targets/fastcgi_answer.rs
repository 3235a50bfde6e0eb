//! Arbitrary bytes as PHP-FPM's answer to the router's FastCGI client (fastcgi.rs): no
//! panic, every record is taken off with exactly its header, content and padding, and a
//! CGI head that parses has a valid status.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slipway_router::fuzzing::fastcgi_answer(data);
});
