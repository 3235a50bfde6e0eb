//! pkt-line framing: any byte string is read packet by packet without panicking, every data
//! packet respects the protocol maximum, and encoding what was read gives back the same bytes.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use slipway_git::receive::pktline::{self, Packet, PktError};

/// Runs a future that never waits (reading from a byte slice is always ready).
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mut reencoded = Vec::new();
    loop {
        match ready(pktline::read_packet(&mut input)) {
            Ok(Packet::Flush) => reencoded.extend_from_slice(b"0000"),
            Ok(Packet::Delim) => reencoded.extend_from_slice(b"0001"),
            Ok(Packet::Data(d)) => {
                assert!(d.len() <= pktline::MAX_DATA_LEN);
                pktline::encode(&d, &mut reencoded);
            }
            Err(PktError::Eof) => {
                assert_eq!(reencoded.len(), data.len());
                // Hex case may differ; the lengths and payloads may not.
                assert!(reencoded.eq_ignore_ascii_case(data));
                break;
            }
            Err(_) => break,
        }
    }
});
