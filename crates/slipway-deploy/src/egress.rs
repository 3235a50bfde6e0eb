//! The build's network: a network namespace of its own (only loopback), so a build cannot
//! reach the host's listeners (SSH endpoint, router, other environments) nor bind host
//! ports, and an HTTP proxy listening inside it at [`PROXY_ADDR`] that Slipway runs in the
//! host's namespace. The proxy forwards to public addresses on ports 80 and 443 (package
//! registries) and to the `host:port`s the operator allows (`SLIPWAY_BUILD_EGRESS_ALLOW`,
//! e.g. a registry mirror on loopback); everything else is refused with 403.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where the proxy listens inside a build's network namespace.
pub const PROXY_ADDR: &str = "127.0.0.1:3128";
/// Largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where builds may connect through the proxy.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// `host:port` pairs allowed even when they are not public (loopback mirrors...).
    pub allowed: Vec<String>,
    /// The host's CA bundle, which builds trust instead of their stack's (a registry behind
    /// a TLS-inspecting proxy, a mirror with a private CA); `None`: the stack's own.
    pub ca_certificates: Option<PathBuf>,
}

/// The host's CA bundle (Debian's path), passed into builds when it exists.
pub const HOST_CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the host's CA bundle appears inside a build container (in its private `/tmp`).
pub const CA_MOUNT: &str = "/tmp/.slipway/ca-certificates.crt";

impl EgressPolicy {
    /// The default policy: public addresses only, and the host's CA bundle when it has one.
    pub fn host_default() -> EgressPolicy {
        let host = PathBuf::from(HOST_CA_CERTIFICATES);
        EgressPolicy {
            allowed: Vec::new(),
            ca_certificates: host.is_file().then_some(host),
        }
    }

    /// The variables pointing a build's package managers at [`CA_MOUNT`] (pip, requests,
    /// OpenSSL-based tools, Node.js and npm, git, curl), when there is a bundle to mount.
    pub fn ca_env(&self) -> Vec<(String, String)> {
        if self.ca_certificates.is_none() {
            return Vec::new();
        }
        [
            "SSL_CERT_FILE",
            "PIP_CERT",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "NODE_EXTRA_CA_CERTS",
        ]
        .iter()
        .map(|k| (k.to_string(), CA_MOUNT.to_string()))
        .collect()
    }
}

/// The package registries builds use (PyPI, npm and yarn, Debian, crates.io, Packagist,
/// RubyGems, the Go module proxy, Maven Central), reachable on ports 80 and 443 by name
/// even where this machine's DNS sends them to a non-public address (a registry mirror,
/// a TLS-inspecting proxy on a private or documentation range); never on loopback.
pub const PACKAGE_REGISTRIES: &[&str] = &[
    "pypi.org",
    "files.pythonhosted.org",
    "bootstrap.pypa.io",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "repo.yarnpkg.com",
    "nodejs.org",
    "deb.debian.org",
    "security.debian.org",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "repo.packagist.org",
    "packagist.org",
    "getcomposer.org",
    "rubygems.org",
    "index.rubygems.org",
    "proxy.golang.org",
    "sum.golang.org",
    "repo.maven.apache.org",
    "repo1.maven.org",
];

impl EgressPolicy {
    /// Whether a connection to `addr` (resolved from `host:port` as the client wrote it) may go.
    fn allows(&self, host_port: &str, addr: &SocketAddr) -> bool {
        if self
            .allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host_port) || *a == addr.to_string())
        {
            return true;
        }
        if !matches!(addr.port(), 80 | 443) {
            return false;
        }
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        let registry = PACKAGE_REGISTRIES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(host));
        let ip = addr.ip();
        let local = ip.is_loopback()
            || ip.is_unspecified()
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()));
        is_public(ip) || (registry && !local)
    }
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, CGNAT,
/// unspecified, multicast, documentation or unique-local).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// A build's network namespace with the proxy running in it; both go away on drop.
pub struct BuildNetwork {
    /// The namespace's name (`/run/netns/NAME`).
    name: String,
    /// Its path, for the container spec.
    pub path: PathBuf,
    proxy: tokio::task::JoinHandle<()>,
}

impl BuildNetwork {
    /// Creates the namespace `name` and starts the proxy in it.
    pub async fn create(name: &str, policy: EgressPolicy) -> Result<BuildNetwork, String> {
        let path = slipway_runtime::netns::ensure(name).map_err(|e| e.to_string())?;
        let p = path.clone();
        // The listening socket is made by a thread that entered the namespace; it stays
        // there while the proxy's tasks run (and connect out) in the host's namespace.
        let listener = std::thread::spawn(move || -> std::io::Result<std::net::TcpListener> {
            let ns = std::fs::File::open(&p)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let l = std::net::TcpListener::bind(PROXY_ADDR)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .join()
        .map_err(|_| "the build network's thread panicked".to_string())?
        .and_then(TcpListener::from_std)
        .map_err(|e| {
            let _ = slipway_runtime::netns::delete(name);
            format!("starting the build's proxy: {e}")
        })?;
        let policy = Arc::new(policy);
        let proxy = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let policy = policy.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &policy).await {
                        tracing::debug!("build proxy: {e}");
                    }
                });
            }
        });
        Ok(BuildNetwork {
            name: name.to_string(),
            path,
            proxy,
        })
    }

    /// The variables that send a build's HTTP(S) traffic through the proxy.
    pub fn env() -> Vec<(String, String)> {
        let url = format!("http://{PROXY_ADDR}");
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
            .iter()
            .map(|k| (k.to_string(), url.clone()))
            .chain(
                ["NO_PROXY", "no_proxy"]
                    .iter()
                    .map(|k| (k.to_string(), String::new())),
            )
            .collect()
    }
}

impl Drop for BuildNetwork {
    fn drop(&mut self) {
        self.proxy.abort();
        if let Err(e) = slipway_runtime::netns::delete(&self.name) {
            tracing::warn!(netns = %self.name, "deleting the build network: {e}");
        }
    }
}

/// Answers `status` and closes.
async fn refuse(client: &mut TcpStream, status: &str, why: &str) -> std::io::Result<()> {
    let body = format!("slipway build proxy: {why}\n");
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(msg.as_bytes()).await
}

/// Reads the request head (through the blank line); `None` if the client went away.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD || client.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(head))
}

/// One client connection: a `CONNECT host:port` tunnel, or one plain `http://` request
/// (forwarded with `Connection: close`).
async fn serve(mut client: TcpStream, policy: &EgressPolicy) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(Some(h))) => h,
        _ => return Ok(()),
    };
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m.to_string(), t.to_string(), v.to_string()),
        _ => return refuse(&mut client, "400 Bad Request", "bad request line").await,
    };
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let (host_port, path) = if connect {
        (target.clone(), String::new())
    } else if let Some(rest) = target.strip_prefix("http://") {
        let (hp, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let hp = if hp
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !hp.ends_with(']')
        {
            hp.to_string()
        } else {
            format!("{hp}:80")
        };
        (hp, path.to_string())
    } else {
        return refuse(&mut client, "400 Bad Request", "only http:// and CONNECT").await;
    };
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(host_port.as_str()).await {
        Ok(a) => a.collect(),
        Err(_) => {
            return refuse(&mut client, "502 Bad Gateway", "unknown host").await;
        }
    };
    // Every address the name resolves to must be allowed (no DNS games).
    if addrs.is_empty() || !addrs.iter().all(|a| policy.allows(&host_port, a)) {
        tracing::info!(destination = %host_port, "build proxy: refused");
        return refuse(
            &mut client,
            "403 Forbidden",
            &format!("{host_port} is not reachable from builds"),
        )
        .await;
    }
    let mut upstream = match TcpStream::connect(&addrs[..]).await {
        Ok(u) => u,
        Err(e) => return refuse(&mut client, "502 Bad Gateway", &e.to_string()).await,
    };
    if connect {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        let mut out = format!("{method} {path} {version}\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("connection")
                || name.eq_ignore_ascii_case("proxy-connection")
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str("Connection: close\r\n\r\n");
        upstream.write_all(out.as_bytes()).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_web_ports_and_allowed_destinations() {
        let p = EgressPolicy {
            ca_certificates: None,
            allowed: vec!["127.0.0.1:4873".into()],
        };
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(p.allows("registry.npmjs.org:443", &a("104.16.1.1:443")));
        assert!(p.allows("x:80", &a("[2606:4700::1]:80")));
        assert!(!p.allows("x:22", &a("104.16.1.1:22")));
        for local in [
            "127.0.0.1:443",
            "10.0.0.1:443",
            "192.168.1.1:80",
            "172.16.0.1:443",
            "169.254.169.254:80",
            "100.64.0.1:443",
            "0.0.0.0:80",
            "[::1]:443",
            "[fd00::1]:443",
            "[::ffff:127.0.0.1]:443",
        ] {
            assert!(!p.allows("x:443", &a(local)), "{local}");
        }
        assert!(p.allows("127.0.0.1:4873", &a("127.0.0.1:4873")));
        assert!(!p.allows("127.0.0.1:4874", &a("127.0.0.1:4874")));
    }

    #[test]
    fn package_registries_pass_by_name_on_non_public_addresses_but_never_to_loopback() {
        let p = EgressPolicy::default();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        // A registry behind a local mirror or an inspecting proxy.
        assert!(p.allows("pypi.org:443", &a("203.0.113.80:443")));
        assert!(p.allows("REGISTRY.npmjs.org:443", &a("10.1.2.3:443")));
        // Any other name on such an address stays refused, and so do other ports.
        assert!(!p.allows("evil.example:443", &a("203.0.113.80:443")));
        assert!(!p.allows("pypi.org:22", &a("203.0.113.80:22")));
        // A registry name pointed at this host's loopback is refused.
        for local in [
            "127.0.0.1:443",
            "[::1]:443",
            "[::ffff:127.0.0.1]:443",
            "0.0.0.0:80",
        ] {
            assert!(!p.allows("pypi.org:443", &a(local)), "{local}");
        }
    }
}
