//! The object checks of received packs (commits, tags, trees, .gitmodules) on arbitrary bytes:
//! never panic.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use slipway_git::receive::fsck;

fuzz_target!(|data: &[u8]| {
    let _ = fsck::check_commit(data);
    let _ = fsck::check_tag(data);
    let _ = fsck::check_ident(data);
    let _ = fsck::check_tree(data, &mut HashSet::new());
    let _ = fsck::check_gitmodules(data);
    let _ = fsck::is_dot_git(data);
});
