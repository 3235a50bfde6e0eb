//! Serves `git-receive-pack` on stdin/stdout with the native implementation, for tests and
//! manual experiments: `git push --receive-pack='receive_stdio [OPTIONS]' /path/repo.git main`.
//!
//! git appends the repository path as the last argument. Options:
//! - `--reject=REASON`: refuse every update with REASON (refs do not move).
//! - `--max-pack=BYTES`: pack size limit.
//! - `--sleep-ms=N`: the handler waits N ms before deciding (keepalives flow meanwhile).
//! - `--keepalive-ms=N`: keepalive interval.
//!
//! Without `--reject`, every update is accepted and its ref moved (compare-and-swap).

use std::path::PathBuf;
use std::time::Duration;

use slipway_git::receive::{self, Limits, Progress, Push, PushHandler};
use slipway_git::Repo;

struct Handler {
    reject: Option<String>,
    sleep: Duration,
}

impl PushHandler for Handler {
    async fn handle(
        &self,
        repo: &Repo,
        push: &Push,
        progress: Progress,
    ) -> Vec<Result<(), String>> {
        for option in &push.options {
            progress.line(&format!("option {option}"));
        }
        if !self.sleep.is_zero() {
            tokio::time::sleep(self.sleep).await;
        }
        let mut out = Vec::new();
        for update in &push.updates {
            if let Some(reason) = &self.reject {
                progress.line(&format!("checking {}", update.refname));
                out.push(Err(reason.clone()));
                continue;
            }
            progress.line(&format!("deploying {}", update.refname));
            let result = repo
                .update_ref(
                    &update.refname,
                    update.old_target(),
                    update.new_target(),
                    "push",
                )
                .map_err(|e| e.to_string());
            out.push(result);
        }
        out
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.pop() else {
        eprintln!("usage: receive_stdio [--reject=REASON] [--max-pack=BYTES] REPO");
        return std::process::ExitCode::from(2);
    };
    let mut handler = Handler {
        reject: None,
        sleep: Duration::ZERO,
    };
    let mut limits = Limits::default();
    for arg in args {
        if let Some(reason) = arg.strip_prefix("--reject=") {
            handler.reject = Some(reason.to_string());
        } else if let Some(n) = arg.strip_prefix("--max-pack=").and_then(|n| n.parse().ok()) {
            limits.max_pack_bytes = n;
        } else if let Some(n) = arg.strip_prefix("--sleep-ms=").and_then(|n| n.parse().ok()) {
            handler.sleep = Duration::from_millis(n);
        } else if let Some(n) = arg
            .strip_prefix("--keepalive-ms=")
            .and_then(|n| n.parse().ok())
        {
            limits.keepalive = Duration::from_millis(n);
        } else {
            eprintln!("unknown option {arg}");
            return std::process::ExitCode::from(2);
        }
    }
    let path = PathBuf::from(path);
    let repo = match slipway_git::init_bare(&path).and_then(|()| Repo::open(&path)) {
        Ok(repo) => repo,
        Err(e) => {
            eprintln!("receive_stdio: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match receive::serve(
        &repo,
        tokio::io::stdin(),
        tokio::io::stdout(),
        &handler,
        &limits,
    )
    .await
    {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("receive_stdio: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
