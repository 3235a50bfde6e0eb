//! Live views as server-sent events: a push's (or deploy's) log while it runs, read from
//! the state database as it grows, and an app's output file as the app writes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_deploy::Platform;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::http::{event, event_stream};

/// How often a stream looks for more.
const POLL: Duration = Duration::from_millis(250);

/// A comment sent when nothing else was, so that proxies keep the stream open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How much of an app's log a page shows at first.
const TAIL: u64 = 64 * 1024;

/// Activity `id`'s log from byte `from` on, then each new part as it is stored; an `end`
/// event with the final status when the activity finished.
pub(crate) fn activity(
    platform: Arc<Platform>,
    id: i64,
    from: usize,
) -> hyper::Response<slipway_router::ConsoleBody> {
    let (resp, tx) = event_stream();
    tokio::spawn(async move {
        let mut sent = from;
        let mut quiet = Instant::now();
        loop {
            let Ok(Some((a, log))) = platform.state().activity(id) else {
                return;
            };
            if sent > log.len() || !log.is_char_boundary(sent) {
                sent = 0;
            }
            if log.len() > sent {
                if tx.send(event(None, &log[sent..])).await.is_err() {
                    return;
                }
                sent = log.len();
                quiet = Instant::now();
            }
            if a.status != "running" {
                let _ = tx
                    .send(event(Some("end"), &format!("{}: {}", a.status, a.summary)))
                    .await;
                return;
            }
            if quiet.elapsed() >= KEEPALIVE {
                if tx
                    .send(bytes::Bytes::from_static(b": keepalive\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                quiet = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    });
    resp
}

/// The last part of an app's log (starting at a line) and where the file ends now.
pub(crate) fn log_tail(path: &Path) -> (String, u64) {
    let Ok(bytes) = std::fs::read(path) else {
        return (String::new(), 0);
    };
    let end = bytes.len() as u64;
    let start = bytes.len().saturating_sub(TAIL as usize);
    let mut tail = &bytes[start..];
    if start > 0 {
        if let Some(i) = tail.iter().position(|b| *b == b'\n') {
            tail = &tail[i + 1..];
        }
    }
    (String::from_utf8_lossy(tail).into_owned(), end)
}

/// The app's log from byte `from` (default: its end) on, as the app writes it, until the
/// client goes away. A log rotated meanwhile (copied away, truncated) goes on from its start.
pub(crate) fn app_log(
    path: PathBuf,
    from: Option<u64>,
) -> hyper::Response<slipway_router::ConsoleBody> {
    let (resp, tx) = event_stream();
    tokio::spawn(async move {
        let mut pos = match from {
            Some(p) => p,
            None => std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut quiet = Instant::now();
        loop {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0;
            }
            if len > pos {
                if let Ok(mut f) = tokio::fs::File::open(&path).await {
                    if f.seek(std::io::SeekFrom::Start(pos)).await.is_ok() {
                        if let Ok(n) = f.read(&mut buf).await {
                            pos += n as u64;
                            let text = String::from_utf8_lossy(&buf[..n]);
                            if tx.send(event(None, &text)).await.is_err() {
                                return;
                            }
                            quiet = Instant::now();
                            continue;
                        }
                    }
                }
            }
            if quiet.elapsed() >= KEEPALIVE {
                if tx
                    .send(bytes::Bytes::from_static(b": keepalive\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
                quiet = Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    });
    resp
}
