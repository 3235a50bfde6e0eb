//! Running a child process against an SSH channel: its stdin fed from the
//! client, its stdout and stderr streamed back, its exit status returned.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;

/// Pump a child spawned with piped stdio until it exits; returns its exit
/// status (255 when it died by a signal or its status is unknown). The child,
/// not the client's end of input, decides when the conversation is over.
pub(crate) async fn run_piped<R, W, E>(
    mut child: Child,
    mut stdin: R,
    stdout: &mut W,
    stderr: &mut E,
) -> i32
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let (Some(mut cin), Some(mut cout), Some(mut cerr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return 255;
    };
    let feed = async {
        let _ = tokio::io::copy(&mut stdin, &mut cin).await;
        let _ = cin.shutdown().await;
        drop(cin);
        std::future::pending::<()>().await
    };
    let out = async {
        // Big reads from the pipe: each becomes SSH packets of the client's maximum size
        // (tokio::io::copy's 8 KiB buffer would make four times as many).
        let mut cout = tokio::io::BufReader::with_capacity(256 * 1024, &mut cout);
        let _ = tokio::join!(
            tokio::io::copy_buf(&mut cout, stdout),
            tokio::io::copy(&mut cerr, stderr)
        );
        child.wait().await
    };
    let status = tokio::select! {
        s = out => s,
        _ = feed => Err(std::io::Error::other("input ended")),
    };
    match status {
        Ok(s) => s.code().unwrap_or(255),
        Err(e) => {
            tracing::warn!("waiting for a child process: {e}");
            255
        }
    }
}
