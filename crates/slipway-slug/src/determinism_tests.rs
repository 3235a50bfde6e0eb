//! The compressed layer must not depend on the number of worker threads, or the same app
//! would get different digests on machines with different core counts; and its frames
//! (one per MiB of tar) must read back as one stream.

use crate::pack::{pack_dir_with_workers, PackOptions};

#[test]
fn output_is_independent_of_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    // ~24 MiB of compressible pseudo-random text: several zstd frames at level 3.
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
        let info =
            pack_dir_with_workers(dir.path(), &mut out, &PackOptions::level(3), workers).unwrap();
        outputs.push((workers, info, out));
    }
    let (_, first_info, first) = &outputs[0];
    for (workers, info, out) in &outputs[1..] {
        assert_eq!(info, first_info, "{workers} workers");
        assert!(out == first, "{workers} workers gave different bytes");
    }

    // Several frames, each with its content size and no checksum.
    let mut frames = 0;
    let mut rest = &first[..];
    while !rest.is_empty() {
        let size = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
        assert_eq!(
            rest[..4],
            [0x28, 0xb5, 0x2f, 0xfd],
            "frame {frames}: zstd magic"
        );
        let descriptor = rest[4];
        assert_eq!(descriptor & 0x04, 0, "frame {frames}: no checksum flag");
        assert!(
            matches!(zstd::zstd_safe::get_frame_content_size(rest), Ok(Some(n)) if n > 0),
            "frame {frames}: content size"
        );
        rest = &rest[size..];
        frames += 1;
    }
    assert!(frames >= 24, "{frames} frames for 24 MiB of tar");

    // The zstd crate (what unpacking uses) and the zstd tool both read all the frames: the
    // tar they give back is the one diff_id names.
    let tar = zstd::stream::decode_all(&first[..]).unwrap();
    assert_eq!(crate::Digest::of_bytes(&tar), first_info.diff_id);
    let file = dir.path().join("layer.tar.zst");
    std::fs::write(&file, first).unwrap();
    let out = std::process::Command::new("zstd")
        .arg("-dc")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zstd -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == tar, "zstd -d gave another tar");
}
