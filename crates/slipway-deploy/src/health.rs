//! Phase **health**: every app of the new release must answer HTTP on its
//! `$PORT` (or its unix socket `$SOCKET`, [`crate::sockets`]) within the health timeout. An app whose process exits fails the
//! check at once (not after the timeout), with the end of its output. An app whose web
//! process nothing reaches ([`AppInstance::unreached`]) need not listen: it passes once its
//! process has kept running for [`UNREACHED_SETTLE`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_runtime::Status;

use crate::environment::{AppInstance, ReleaseSpec};
use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::provision::{netns_path, START_MARKER};
use crate::Platform;

/// The last `n` lines an app's container wrote since it was started (after
/// the last start marker of its log).
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let since = text
        .rfind(START_MARKER)
        .map(|i| text[i..].split_once('\n').map(|(_, r)| r).unwrap_or(""))
        .unwrap_or(&text);
    let lines: Vec<&str> = since.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How long the process of an app that nothing reaches must keep running to pass the
/// health check (a start command that fails at once fails the push).
pub const UNREACHED_SETTLE: Duration = Duration::from_secs(2);

/// Wait until `app` answers; Err(reason) if it exits or the timeout passes.
pub async fn wait_app(
    platform: &Platform,
    spec: &ReleaseSpec,
    app: &AppInstance,
    timeout: Duration,
    log: &std::path::Path,
) -> Result<u16, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let ns = netns_path(&spec.netns);
    let mut pause = Duration::from_millis(50);
    loop {
        match platform.runtime().state(&app.container).await {
            Ok(Some(s)) if s.status == Status::Stopped => {
                let t = tail(log, 20);
                if let Some(n) = platform
                    .runtime()
                    .oom_kills(&app.container)
                    .filter(|n| *n > 0)
                {
                    return Err(out_of_memory(app, n, &t));
                }
                return Err(if t.is_empty() {
                    format!("app {} exited at start, printing nothing", app.name)
                } else {
                    format!(
                        "app {} exited at start (its output is above)\n{t}",
                        app.name
                    )
                });
            }
            Ok(None) => return Err(format!("app {}: its container is gone", app.name)),
            Ok(Some(_)) => {}
            Err(e) => return Err(format!("app {}: {e}", app.name)),
        }
        if app.no_web_process {
            // A static site (the router serves its files) or workers only: nothing
            // listens on $PORT.
            return Ok(0);
        }
        if app.unreached {
            // Nothing sends it requests: it only has to keep running.
            if started.elapsed() >= UNREACHED_SETTLE {
                return Ok(0);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            continue;
        }
        if let (true, Some(socket)) = (app.fastcgi, &app.socket) {
            // PHP-FPM on its unix socket: it must answer FCGI_GET_VALUES there.
            match slipway_router::probe_fastcgi_unix(socket, Duration::from_secs(2)).await {
                Ok(()) => return Ok(0),
                Err(e) if Instant::now() >= deadline => {
                    let (name, secs, at) = (&app.name, timeout.as_secs(), crate::sockets::SOCKET);
                    tracing::debug!(app = %name, error = %e, "last health probe");
                    return Err(format!(
                        "app {name}: PHP-FPM did not answer FastCGI on its unix socket {at} within {secs}s"
                    ));
                }
                Err(_) => {}
            }
        } else if let Some(socket) = &app.socket {
            match slipway_router::probe_http_unix(socket, Duration::from_secs(2)).await {
                Ok(status) => return Ok(status),
                Err(e) if Instant::now() >= deadline => {
                    use std::os::unix::fs::FileTypeExt;
                    let (name, secs, at) = (&app.name, timeout.as_secs(), crate::sockets::SOCKET);
                    tracing::debug!(app = %name, error = %e, "last health probe");
                    return Err(match std::fs::symlink_metadata(socket) {
                        Ok(m) if m.file_type().is_socket() => {
                            format!("app {name} did not answer HTTP on $SOCKET ({at}) within {secs}s")
                        }
                        // A link is never followed (it could lead to any socket of the host).
                        Ok(_) => format!(
                            "app {name} put something other than a unix socket at $SOCKET ({at}), e.g. a symbolic link, which is never followed"
                        ),
                        Err(_) => format!(
                            "app {name} never created its unix socket $SOCKET ({at}) within {secs}s; with `socket_family: unix` it must listen there, not on $PORT"
                        ),
                    });
                }
                Err(_) => {}
            }
        } else if app.fastcgi {
            // PHP-FPM speaks FastCGI, not HTTP: it must answer FCGI_GET_VALUES.
            if slipway_router::probe_fastcgi(Some(&ns), app.port, Duration::from_secs(2))
                .await
                .is_ok()
            {
                return Ok(0);
            }
        } else if let Ok(status) =
            slipway_router::probe_http(Some(&ns), app.port, Duration::from_secs(2)).await
        {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            // Where it listens instead, if anywhere (a port written in its code or config).
            let elsewhere = match platform.runtime().state(&app.container).await {
                Ok(Some(s)) => s.pid.map(listening_addresses).unwrap_or_default(),
                _ => Vec::new(),
            };
            let mut m = format!(
                "app {} did not answer HTTP on $PORT ({}) within {}s",
                app.name,
                app.port,
                timeout.as_secs()
            );
            if !elsewhere.is_empty() {
                let at: Vec<String> = elsewhere.iter().map(|a| a.to_string()).collect();
                m.push_str(&format!(
                    "; it listens on {} instead: make it listen on $PORT",
                    at.join(", ")
                ));
            }
            return Err(m);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The health phase's refusal of an app the kernel killed for going over its memory
/// limit before it answered (issue 13: "killed, reported as such"), with the limit its
/// `size`/`resources` gave it and the end of its output.
fn out_of_memory(app: &AppInstance, kills: u64, tail: &str) -> String {
    let limit = crate::isolation::app_limits(app.size, app.resources).memory_bytes >> 20;
    let mut m = format!(
        "app {} ran out of memory at start: the kernel killed {kills} process(es) of it for going over its memory limit of {limit} MiB (from its `size` and `resources`): give it a larger `size` or make it use less",
        app.name
    );
    if !tail.is_empty() {
        m.push_str(&format!(" (its output is above)\n{tail}"));
    }
    m
}

/// The TCP addresses the processes of a container listen on, from its init's `pid`: the
/// socket inodes its process tree holds, looked up in its network namespace's
/// `/proc/PID/net/tcp` and `tcp6`. Empty when nothing listens or `/proc` cannot tell.
fn listening_addresses(pid: i32) -> Vec<std::net::SocketAddr> {
    let mut inodes = std::collections::HashSet::new();
    let mut todo = vec![pid];
    let mut seen = std::collections::HashSet::new();
    while let Some(p) = todo.pop() {
        if !seen.insert(p) || seen.len() > 4096 {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = std::fs::read_link(fd.path()) {
                    let t = target.to_string_lossy();
                    if let Some(i) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                        if let Ok(i) = i.parse::<u64>() {
                            inodes.insert(i);
                        }
                    }
                }
            }
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                    todo.extend(
                        children
                            .split_whitespace()
                            .filter_map(|c| c.parse::<i32>().ok()),
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            out.extend(listening_in(&text, &inodes));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The listening (`0A`) sockets of a `/proc/net/tcp` or `tcp6` table whose inode is in
/// `inodes`, as addresses.
fn listening_in(table: &str, inodes: &std::collections::HashSet<u64>) -> Vec<std::net::SocketAddr> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        if *state != "0A" || !inode.parse::<u64>().is_ok_and(|i| inodes.contains(&i)) {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        // The kernel prints each 32-bit word of the address in host (little-endian) order.
        let words: Option<Vec<u32>> = (0..addr.len() / 8)
            .map(|i| {
                addr.get(i * 8..i * 8 + 8)
                    .and_then(|w| u32::from_str_radix(w, 16).ok())
            })
            .collect();
        let ip = match words.as_deref() {
            Some([w]) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(w.to_le_bytes())),
            Some([a, b, c, d]) => {
                let mut bytes = [0u8; 16];
                for (i, w) in [a, b, c, d].iter().enumerate() {
                    bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
                }
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(bytes))
            }
            _ => continue,
        };
        out.push(std::net::SocketAddr::new(ip, port));
    }
    out
}

/// Check every app of the release.
pub async fn run(
    platform: &Arc<Platform>,
    project: &str,
    env: &str,
    spec: &ReleaseSpec,
    out: &Output,
) -> Result<(), PhaseError> {
    for app in &spec.apps {
        let t = Instant::now();
        let log = platform.data().app_log(project, env, &app.name);
        let status = wait_app(
            platform,
            spec,
            app,
            platform.settings().health_timeout,
            &log,
        )
        .await
        .map_err(|m| {
            // The app's output goes to the pusher; the first line is the reason.
            for l in m.lines().skip(1) {
                out.app_line(&app.name, l);
            }
            PhaseError::new(
                "health check",
                m.lines().next().unwrap_or_default().to_string(),
            )
        })?;
        out.phase_done(
            &format!("health check {}", app.name),
            &if app.no_web_process {
                "no web process (static files served by the router)".to_string()
            } else if app.unreached {
                format!(
                    "running for {}s; not probed on $PORT: no route's locations pass requests through to it and no relationship names it",
                    UNREACHED_SETTLE.as_secs()
                )
            } else if app.fastcgi && app.socket.is_some() {
                format!(
                    "PHP-FPM answering FastCGI on unix socket {}",
                    crate::sockets::SOCKET
                )
            } else if app.fastcgi {
                format!("PHP-FPM answering FastCGI on port {}", app.port)
            } else if app.socket.is_some() {
                format!("HTTP {status} on unix socket {}", crate::sockets::SOCKET)
            } else {
                format!("HTTP {status} on port {}", app.port)
            },
            t,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_the_kernels_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:22B8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 999 1 0000000000000000 100 0 0 10 0
   2: 0100007F:22B8 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 20 4 30 10 -1
";
        let ours: std::collections::HashSet<u64> = [4242, 4243].into();
        // Only the listening socket of ours: 127.0.0.1:8888 (not another process's :8080,
        // nor an established connection).
        assert_eq!(
            listening_in(tcp, &ours),
            vec!["127.0.0.1:8888".parse::<std::net::SocketAddr>().unwrap()]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:22B8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(
            listening_in(tcp6, &ours),
            vec!["[::1]:8888".parse::<std::net::SocketAddr>().unwrap()]
        );
        assert!(listening_in("header\ngarbage line\n", &ours).is_empty());
    }
}
