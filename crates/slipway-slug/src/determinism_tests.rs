//! zstd's multithreaded output must not depend on the number of worker threads, or the
//! same app would get different digests on machines with different core counts.

use crate::pack::{pack_dir_with_workers, PackOptions};

#[test]
fn output_is_independent_of_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    // ~24 MiB of compressible pseudo-random text: several zstd jobs at level 3.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let words = [
        "alpha ", "beta ", "gamma ", "delta ", "slug ", "layer ", "\n",
    ];
    let mut data = Vec::with_capacity(24 << 20);
    while data.len() < 24 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
        data.extend_from_slice(&state.to_le_bytes()[..(state % 3) as usize]);
    }
    std::fs::write(dir.path().join("big.txt"), &data).unwrap();
    let mut outputs = Vec::new();
    for workers in [1, 2, 4] {
        let mut out = Vec::new();
        let info = pack_dir_with_workers(dir.path(), &mut out, &PackOptions::level(3), workers).unwrap();
        outputs.push((workers, info, out));
    }
    let (_, first_info, first) = &outputs[0];
    for (workers, info, out) in &outputs[1..] {
        assert_eq!(info, first_info, "{workers} workers");
        assert!(out == first, "{workers} workers gave different bytes");
    }
}
