//! The receive-pack conversation driven byte by byte (packs made by the real git), for what the
//! git client cannot be made to do: truncated or corrupt packs, missing objects, keepalives.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use slipway_git::receive::{self, Limits, Progress, Push, PushHandler, ReceiveError, Summary};
use slipway_git::{ObjectId, Repo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// Accepts everything (moving refs), after an optional delay; counts calls.
#[derive(Clone, Default)]
struct Accept {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl PushHandler for Accept {
    async fn handle(
        &self,
        repo: &Repo,
        push: &Push,
        progress: Progress,
    ) -> Vec<Result<(), String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        progress.line("handler started");
        tokio::time::sleep(self.delay).await;
        push.updates
            .iter()
            .map(|u| {
                repo.update_ref(&u.refname, u.old_target(), u.new_target(), "test")
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

fn pkt(s: &str) -> Vec<u8> {
    let mut out = format!("{:04x}", s.len() + 4).into_bytes();
    out.extend_from_slice(s.as_bytes());
    out
}

/// Runs `serve` against `request` (sent, then the write side closed) and returns the result and
/// every byte the server wrote.
async fn converse(
    repo: &Repo,
    request: Vec<u8>,
    handler: &Accept,
    limits: &Limits,
) -> (Result<Summary, ReceiveError>, Vec<u8>) {
    let (client, server) = tokio::io::duplex(8 * 1024 * 1024);
    let (server_read, server_write) = tokio::io::split(server);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        let _ = client_write.write_all(&request).await;
        let _ = client_write.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = client_read.read_to_end(&mut out).await;
        out
    });
    let result = receive::serve(repo, server_read, server_write, handler, limits).await;
    writer.await.unwrap();
    let output = reader.await.unwrap();
    (result, output)
}

/// Splits server output after the advertisement into (band 1 bytes, band 2 bytes, keepalives).
fn demux(output: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
    let mut pos = 0;
    let mut advertised = false;
    let (mut band1, mut band2, mut keepalives) = (Vec::new(), Vec::new(), 0);
    while pos + 4 <= output.len() {
        let len =
            usize::from_str_radix(std::str::from_utf8(&output[pos..pos + 4]).unwrap(), 16).unwrap();
        if len == 0 {
            pos += 4;
            advertised = true;
            continue;
        }
        let data = &output[pos + 4..pos + len];
        pos += len;
        if !advertised {
            continue;
        }
        match data[0] {
            1 if data.len() == 1 => keepalives += 1,
            1 => band1.extend_from_slice(&data[1..]),
            2 => band2.extend_from_slice(&data[1..]),
            b => panic!("unexpected band {b}"),
        }
    }
    (band1, band2, keepalives)
}

fn setup() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Repo,
) {
    let dir = tempfile::tempdir().unwrap();
    let work = work_repo(dir.path());
    let server = dir.path().join("server.git");
    slipway_git::init_bare(&server).unwrap();
    let repo = Repo::open(&server).unwrap();
    (dir, work, server, repo)
}

fn full_pack(work: &Path) -> Vec<u8> {
    git_stdin(work, &["pack-objects", "--stdout", "--revs"], b"HEAD\n")
}

fn create_main(work: &Path, caps: &str) -> Vec<u8> {
    let head = git(work, &["rev-parse", "HEAD"]);
    let mut req = pkt(&format!("{ZERO} {head} refs/heads/main\0{caps}\n"));
    req.extend_from_slice(b"0000");
    req
}

#[tokio::test]
async fn truncated_pack_leaves_nothing() {
    let (_dir, work, server, repo) = setup();
    let pack = full_pack(&work);
    let mut req = create_main(&work, "report-status side-band-64k");
    req.extend_from_slice(&pack[..pack.len() / 2]);
    let handler = Accept::default();
    let (result, output) = converse(&repo, req, &handler, &Limits::default()).await;
    assert!(matches!(result, Err(ReceiveError::Pack(_))), "{result:?}");
    let (band1, _, _) = demux(&output);
    let report = String::from_utf8_lossy(&band1);
    assert!(report.contains("unpack the pack is truncated"), "{report}");
    assert!(
        report.contains("ng refs/heads/main unpacker error"),
        "{report}"
    );
    assert_eq!(object_files(&server), Vec::<String>::new());
    assert_eq!(repo.ref_target("refs/heads/main").unwrap(), None);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn corrupt_pack_leaves_nothing() {
    let (_dir, work, server, repo) = setup();
    let mut pack = full_pack(&work);
    // Damage object data in the middle; the length stays the same.
    let mid = pack.len() / 2;
    for b in &mut pack[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let mut req = create_main(&work, "report-status");
    req.extend_from_slice(&pack);
    let (result, output) = converse(&repo, req, &Accept::default(), &Limits::default()).await;
    assert!(matches!(result, Err(ReceiveError::Pack(_))), "{result:?}");
    // Without side-band the report is plain pkt-lines after the advertisement.
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("unpack "), "{text}");
    assert!(!text.contains("unpack ok"), "{text}");
    assert_eq!(object_files(&server), Vec::<String>::new());
    assert_eq!(repo.ref_target("refs/heads/main").unwrap(), None);

    // Garbage that is not a pack at all.
    let mut req = create_main(&work, "report-status");
    req.extend_from_slice(b"this is not a pack, just some bytes that go on and on");
    let (result, _) = converse(&repo, req, &Accept::default(), &Limits::default()).await;
    assert!(matches!(result, Err(ReceiveError::Pack(_))), "{result:?}");
    assert_eq!(object_files(&server), Vec::<String>::new());
}

#[tokio::test]
async fn missing_objects_are_refused() {
    let (_dir, work, server, repo) = setup();
    let head = git(&work, &["rev-parse", "HEAD"]);
    // A complete, valid pack holding only the commit: its tree is missing.
    let pack = git_stdin(
        &work,
        &["pack-objects", "--stdout"],
        format!("{head}\n").as_bytes(),
    );
    let mut req = create_main(&work, "report-status side-band-64k");
    req.extend_from_slice(&pack);
    let handler = Accept::default();
    let (result, output) = converse(&repo, req, &handler, &Limits::default()).await;
    let summary = result.unwrap();
    assert_eq!(
        summary.updates[0].1,
        Err("missing necessary objects".to_string())
    );
    let (band1, _, _) = demux(&output);
    let report = String::from_utf8_lossy(&band1);
    assert!(report.contains("unpack ok"), "{report}");
    assert!(
        report.contains("ng refs/heads/main missing necessary objects"),
        "{report}"
    );
    assert_eq!(repo.ref_target("refs/heads/main").unwrap(), None);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
    // A commit that is not in the pack at all.
    let mut req = pkt(&format!(
        "{ZERO} {} refs/heads/other\0report-status\n",
        "1".repeat(40)
    ));
    req.extend_from_slice(b"0000");
    req.extend_from_slice(&git_stdin(&work, &["pack-objects", "--stdout"], b""));
    let (result, _) = converse(&repo, req, &handler, &Limits::default()).await;
    assert_eq!(
        result.unwrap().updates[0].1,
        Err("missing necessary objects".to_string())
    );
    let _ = server;
}

#[tokio::test]
async fn progress_keepalive_and_report_in_side_band() {
    let (_dir, work, server, repo) = setup();
    let mut req = create_main(&work, "report-status side-band-64k push-options agent=test");
    req.extend_from_slice(&pkt("deploy=fast\n"));
    req.extend_from_slice(b"0000");
    req.extend_from_slice(&full_pack(&work));
    let handler = Accept {
        delay: Duration::from_millis(300),
        ..Accept::default()
    };
    let limits = Limits {
        keepalive: Duration::from_millis(20),
        ..Limits::default()
    };
    let (result, output) = converse(&repo, req, &handler, &limits).await;
    let summary = result.unwrap();
    assert_eq!(summary.options, ["deploy=fast"]);
    assert!(summary.pack.unwrap().objects >= 6);
    assert!(summary.reported);
    let (band1, band2, keepalives) = demux(&output);
    assert_eq!(String::from_utf8_lossy(&band2), "handler started\n");
    assert!(keepalives >= 3, "only {keepalives} keepalives");
    assert_eq!(
        String::from_utf8_lossy(&band1),
        "000eunpack ok\n0017ok refs/heads/main\n0000"
    );
    assert!(output.ends_with(b"0000"));
    let head = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(
        repo.ref_target("refs/heads/main").unwrap(),
        Some(ObjectId::from_hex(head.as_bytes()).unwrap())
    );
    let out = git_output(&server, &["fsck", "--full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn stale_old_value_is_refused() {
    let (_dir, work, _server, repo) = setup();
    let head = git(&work, &["rev-parse", "HEAD"]);
    // The client claims main is at some commit, but main does not exist.
    let mut req = pkt(&format!("{head} {head} refs/heads/main\0report-status\n"));
    req.extend_from_slice(b"0000");
    req.extend_from_slice(&full_pack(&work));
    let (result, _) = converse(&repo, req, &Accept::default(), &Limits::default()).await;
    let summary = result.unwrap();
    assert!(summary.updates[0]
        .1
        .as_ref()
        .unwrap_err()
        .starts_with("stale info"));
}

#[tokio::test]
async fn nothing_to_push_and_bad_input() {
    let (_dir, _work, _server, repo) = setup();
    // A flush right away: nothing to push.
    let (result, output) = converse(
        &repo,
        b"0000".to_vec(),
        &Accept::default(),
        &Limits::default(),
    )
    .await;
    assert!(result.unwrap().updates.is_empty());
    let adv = String::from_utf8_lossy(&output);
    assert!(
        adv.contains(&format!("{ZERO} capabilities^{{}}\0report-status")),
        "{adv}"
    );
    assert!(
        adv.contains("side-band-64k")
            && adv.contains("push-options")
            && adv.contains("agent=slipway/")
    );
    // Closing the connection right away is also fine.
    let (result, _) = converse(&repo, Vec::new(), &Accept::default(), &Limits::default()).await;
    assert!(result.unwrap().updates.is_empty());
    // Not pkt-lines.
    let (result, _) = converse(
        &repo,
        b"GET / HTTP/1.1\r\n".to_vec(),
        &Accept::default(),
        &Limits::default(),
    )
    .await;
    assert!(matches!(result, Err(ReceiveError::Pkt(_))), "{result:?}");
    // A malformed command.
    let (result, _) = converse(
        &repo,
        [pkt("hello world\n"), b"0000".to_vec()].concat(),
        &Accept::default(),
        &Limits::default(),
    )
    .await;
    assert!(
        matches!(result, Err(ReceiveError::Protocol(_))),
        "{result:?}"
    );
    // Too many commands.
    let limits = Limits {
        max_refs: 2,
        ..Limits::default()
    };
    let mut req = Vec::new();
    for i in 0..3 {
        req.extend(pkt(&format!("{ZERO} {} refs/heads/b{i}\n", "1".repeat(40))));
    }
    req.extend_from_slice(b"0000");
    let (result, _) = converse(&repo, req, &Accept::default(), &limits).await;
    assert!(
        matches!(result, Err(ReceiveError::TooManyRefs(2))),
        "{result:?}"
    );
    // A command list cut in the middle of a packet.
    let (result, _) = converse(
        &repo,
        b"00a0abc".to_vec(),
        &Accept::default(),
        &Limits::default(),
    )
    .await;
    assert!(matches!(result, Err(ReceiveError::Pkt(_))), "{result:?}");
    assert!(repo.refs().unwrap().is_empty());
}

#[tokio::test]
async fn thin_pack_is_completed_from_existing_objects() {
    let (_dir, work, server, repo) = setup();
    // A big file, so that the next change is sent as a delta against it.
    let big: String = (0..2000)
        .map(|i| format!("line {i} of a file that is long enough to delta\n"))
        .collect();
    std::fs::write(work.join("big.txt"), &big).unwrap();
    git(&work, &["add", "big.txt"]);
    git(&work, &["commit", "-q", "-m", "big"]);
    let base = git(&work, &["rev-parse", "HEAD"]);
    let mut req = create_main(&work, "report-status");
    req.extend_from_slice(&full_pack(&work));
    assert!(converse(&repo, req, &Accept::default(), &Limits::default())
        .await
        .0
        .unwrap()
        .updates[0]
        .1
        .is_ok());

    std::fs::write(work.join("big.txt"), format!("{big}one more line\n")).unwrap();
    git(&work, &["commit", "-q", "-a", "-m", "bigger"]);
    let tip = git(&work, &["rev-parse", "HEAD"]);
    let thin = git_stdin(
        &work,
        &["pack-objects", "--thin", "--stdout", "--revs"],
        format!("{tip}\n^{base}\n").as_bytes(),
    );
    let sent_objects = u32::from_be_bytes([thin[8], thin[9], thin[10], thin[11]]);
    let mut req = pkt(&format!("{base} {tip} refs/heads/main\0report-status\n"));
    req.extend_from_slice(b"0000");
    req.extend_from_slice(&thin);
    let (result, _) = converse(&repo, req, &Accept::default(), &Limits::default()).await;
    let summary = result.unwrap();
    assert!(summary.updates[0].1.is_ok(), "{summary:?}");
    let stored = summary.pack.unwrap().objects;
    assert!(
        stored > sent_objects,
        "the thin pack ({sent_objects} objects) was completed with its bases ({stored})"
    );
    assert_eq!(
        repo.ref_target("refs/heads/main").unwrap(),
        Some(ObjectId::from_hex(tip.as_bytes()).unwrap())
    );
    let out = git_output(&server, &["fsck", "--full", "--strict"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `data` as an object of `kind` without checks (like a hostile client can).
fn literally(work: &Path, kind: &str, data: &[u8]) -> String {
    let out = git_stdin(
        work,
        &["hash-object", "-t", kind, "--literally", "-w", "--stdin"],
        data,
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

#[tokio::test]
async fn malformed_objects_are_refused_before_anything_is_stored() {
    let (_dir, work, server, repo) = setup();
    let readme = git(&work, &["rev-parse", "HEAD:a.txt"]);
    let mut raw_tree = b"100644 .git\0".to_vec();
    raw_tree.extend(
        (0..40)
            .step_by(2)
            .map(|i| u8::from_str_radix(&readme[i..i + 2], 16).unwrap()),
    );
    let tree = literally(&work, "tree", &raw_tree);
    let commit = literally(
        &work,
        "commit",
        format!("tree {tree}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\n\nx\n").as_bytes(),
    );
    let pack = git_stdin(
        &work,
        &["pack-objects", "--stdout", "--revs"],
        format!("{commit}\n").as_bytes(),
    );
    let mut req = pkt(&format!(
        "{ZERO} {commit} refs/heads/main\0report-status side-band-64k\n"
    ));
    req.extend_from_slice(b"0000");
    req.extend_from_slice(&pack);
    let handler = Accept::default();
    let (result, output) = converse(&repo, req, &handler, &Limits::default()).await;
    assert!(matches!(result, Err(ReceiveError::Pack(_))), "{result:?}");
    let (band1, _, _) = demux(&output);
    let report = String::from_utf8_lossy(&band1);
    assert!(
        report.contains(&format!("unpack object {tree}: hasDotgit")),
        "{report}"
    );
    assert!(
        report.contains("ng refs/heads/main unpacker error"),
        "{report}"
    );
    assert_eq!(
        object_files(&server),
        Vec::<String>::new(),
        "nothing stored"
    );
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);

    // The same history without the bad tree goes in, and no quarantine is left.
    let pack = full_pack(&work);
    let mut req = create_main(&work, "report-status");
    req.extend_from_slice(&pack);
    let (result, _) = converse(&repo, req, &handler, &Limits::default()).await;
    assert!(result.is_ok(), "{result:?}");
    let leftovers: Vec<_> = std::fs::read_dir(server.join("objects"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("incoming"))
        .collect();
    assert!(leftovers.is_empty());
    assert!(!object_files(&server).is_empty());
}

#[tokio::test]
async fn objects_beyond_the_size_limit_are_refused() {
    let (_dir, work, server, repo) = setup();
    let pack = full_pack(&work);
    let mut req = create_main(&work, "report-status");
    req.extend_from_slice(&pack);
    let limits = Limits {
        max_object_bytes: 4,
        ..Limits::default()
    };
    let (result, output) = converse(&repo, req, &Accept::default(), &limits).await;
    assert!(
        matches!(
            result,
            Err(ReceiveError::Pack(receive::PackError::ObjectTooLarge(4)))
        ),
        "{result:?}"
    );
    assert!(String::from_utf8_lossy(&output).contains("expands beyond the limit of 4 bytes"));
    assert_eq!(object_files(&server), Vec::<String>::new());
}
