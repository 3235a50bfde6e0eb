//! Egress: how builds and environments reach the outside. A build runs in a network
//! namespace of its own (only loopback), an environment's apps, hooks, workers, crons and
//! shells in their environment's; neither can reach the host's listeners (SSH endpoint,
//! router, other environments) nor bind host ports. In each, Slipway runs one HTTP proxy
//! listening at [`PROXY_ADDR`] (the socket is made inside the namespace, the proxy's tasks
//! connect out from the host's): for a build while it runs ([`BuildNetwork`]), for an
//! environment as long as its namespace exists ([`Platform::env_network`]). The proxy
//! forwards to public addresses on ports 80 and 443 and to the `host:port`s the operator
//! allows (`SLIPWAY_EGRESS_ALLOW`, formerly `SLIPWAY_BUILD_EGRESS_ALLOW`, e.g. a registry
//! mirror on loopback); everything else is refused with 403 and a reason, and logged.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Platform;

/// Where the proxy listens inside a build's or an environment's network namespace.
pub const PROXY_ADDR: &str = "127.0.0.1:3128";
/// The port of [`PROXY_ADDR`].
pub const PROXY_PORT: u16 = 3128;
/// `NO_PROXY` of builds: nothing, since their namespace holds nothing but the proxy (so
/// an allowed mirror on the host's `127.0.0.1:PORT` is reached through it).
pub const BUILD_NO_PROXY: &str = "";
/// The start of `NO_PROXY` of an environment's processes ([`environment_no_proxy`]):
/// loopback, the `REL.internal` names of their relationships, and as ranges the
/// services' addresses (`127.1.0.N`, [`crate::services::ports`]) and the apps'
/// relationship addresses (`127.4.X.Y`, [`crate::environment::app_address`]).
pub const ENVIRONMENT_NO_PROXY: &str =
    "localhost,127.0.0.1,::1,.internal,127.1.0.0/16,127.4.0.0/16";

/// `NO_PROXY` of an environment's processes: what they reach in their own namespace
/// without the proxy, [`ENVIRONMENT_NO_PROXY`] and then every service address one by one,
/// since many clients read no ranges there (Python's urllib, Node's proxy-from-env) and
/// `PLATFORM_RELATIONSHIPS` gives a service's `ip` too. Made once: every process's
/// environment carries it.
pub fn environment_no_proxy() -> &'static str {
    static NO_PROXY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut out = ENVIRONMENT_NO_PROXY.to_string();
        for a in crate::services::ports::addresses() {
            out.push(',');
            out.push_str(&a.to_string());
        }
        out
    });
    &NO_PROXY
}

/// Largest request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where builds and apps may connect through the proxy.
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

    /// The read-only mount of the host's CA bundle at [`CA_MOUNT`], when there is one: in
    /// every build container and every app and worker container (whose deploy hooks,
    /// crons and shells run in them), so that what goes out through the egress proxy
    /// trusts what the host trusts.
    pub fn ca_mount(&self) -> Option<slipway_runtime::BindMount> {
        self.ca_certificates
            .as_ref()
            .map(|ca| slipway_runtime::BindMount {
                source: ca.clone(),
                destination: CA_MOUNT.into(),
                writable: false,
            })
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

/// Why the proxy refuses a destination (its 403 says so, and the server logs it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An address of this machine itself (loopback, unspecified).
    #[error("{0} is this machine's own address")]
    Local(IpAddr),
    /// A port other than 80 and 443.
    #[error("only ports 80 and 443 are reachable, not {0}")]
    Port(u16),
    /// A private, link-local, CGNAT, documentation or other non-public address.
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
}

impl EgressPolicy {
    /// Whether a connection to `addr` (resolved from `host:port` as the client wrote it)
    /// may go, and if not why.
    pub fn check(&self, host_port: &str, addr: &SocketAddr) -> Result<(), Refusal> {
        if self
            .allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host_port) || *a == addr.to_string())
        {
            return Ok(());
        }
        let ip = addr.ip();
        let local = ip.is_loopback()
            || ip.is_unspecified()
            || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()));
        if local {
            return Err(Refusal::Local(ip));
        }
        if !matches!(addr.port(), 80 | 443) {
            return Err(Refusal::Port(addr.port()));
        }
        let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
        let registry = PACKAGE_REGISTRIES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(host));
        if is_public(ip) || registry {
            Ok(())
        } else {
            Err(Refusal::NotPublic(ip))
        }
    }

    #[cfg(test)]
    fn allows(&self, host_port: &str, addr: &SocketAddr) -> bool {
        self.check(host_port, addr).is_ok()
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
        let proxy = spawn_proxy(
            listener,
            Arc::new(policy),
            Arc::from(format!("build {name}")),
        );
        Ok(BuildNetwork {
            name: name.to_string(),
            path,
            proxy,
        })
    }

    /// The variables that send a build's HTTP(S) traffic through the proxy.
    pub fn env() -> Vec<(String, String)> {
        proxy_env(BUILD_NO_PROXY)
    }
}

/// The variables that send a process's HTTP(S) traffic through the proxy at
/// [`PROXY_ADDR`] (upper and lower case, as tools differ), except for `no_proxy`
/// ([`BUILD_NO_PROXY`], [`environment_no_proxy`]).
pub fn proxy_env(no_proxy: &str) -> Vec<(String, String)> {
    let url = format!("http://{PROXY_ADDR}");
    ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .iter()
        .map(|k| (k.to_string(), url.clone()))
        .chain(
            ["NO_PROXY", "no_proxy"]
                .iter()
                .map(|k| (k.to_string(), no_proxy.to_string())),
        )
        .collect()
}

/// What an environment's apps, hooks, workers, crons and shells get
/// ([`crate::variables::with_environment_variables`]): [`proxy_env`] with
/// [`environment_no_proxy`].
pub fn environment_env() -> Vec<(String, String)> {
    proxy_env(environment_no_proxy())
}

/// Accepts on `listener` until aborted, serving each client with `policy`; `who` names
/// the namespace in the log.
fn spawn_proxy(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    who: Arc<str>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let (policy, who) = (policy.clone(), who.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve(client, &policy, &who).await {
                            tracing::debug!(netns = %who, "egress proxy: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(netns = %who, "egress proxy: accepting failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// The environments' proxies, one per network namespace (by path), each with the
/// identity (device, inode) of the namespace its socket is in.
#[derive(Default)]
pub struct EnvProxies(Mutex<HashMap<PathBuf, EnvProxy>>);

/// One environment's proxy: its accept loop (its connections go on without it).
struct EnvProxy {
    netns_id: (u64, u64),
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for EnvProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl EnvProxies {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, EnvProxy>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Platform {
    /// Make sure the environment network namespace `name` exists (loopback up) with the
    /// egress proxy listening in it at [`PROXY_ADDR`], for as long as the namespace
    /// exists; every environment namespace is made through here (deploys, services,
    /// sync, restarts, restore at `slipway serve` start). Idempotent. A namespace deleted
    /// and made again under the same name gets a new listener. The socket has
    /// `SO_REUSEPORT` (as the router's app listeners): during `serve --upgrade` the new
    /// server listens beside the old, which stops accepting once it has handed over
    /// ([`Platform::close_egress`]). Returns the namespace's path.
    ///
    /// When the proxy cannot listen (a process of the environment holds the port), the
    /// environment still comes up without egress and the server logs why.
    pub async fn env_network(&self, name: &str) -> Result<PathBuf, String> {
        let path = slipway_runtime::netns::ensure(name).map_err(|e| e.to_string())?;
        if let Err(e) = self.listen_egress(&path).await {
            tracing::warn!(
                netns = name,
                "egress proxy not listening at {PROXY_ADDR}: {e}"
            );
        }
        Ok(path)
    }

    async fn listen_egress(&self, netns: &Path) -> std::io::Result<()> {
        let meta = std::fs::metadata(netns)?;
        let netns_id = (meta.dev(), meta.ino());
        if self
            .egress
            .lock()
            .get(netns)
            .is_some_and(|p| p.netns_id == netns_id)
        {
            return Ok(());
        }
        let listener =
            slipway_router::listen_in(netns, SocketAddr::from((Ipv4Addr::LOCALHOST, PROXY_PORT)))
                .await?;
        let mut proxies = self.egress.lock();
        if proxies.get(netns).is_some_and(|p| p.netns_id == netns_id) {
            // Another call made it meanwhile: this socket closes.
            return Ok(());
        }
        let who: Arc<str> = Arc::from(
            netns
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
        let accept = spawn_proxy(listener, Arc::new(self.settings().egress.clone()), who);
        proxies.insert(netns.to_path_buf(), EnvProxy { netns_id, accept });
        tracing::info!(netns = %netns.display(), "egress proxy listening at {PROXY_ADDR}");
        Ok(())
    }

    /// Stop the egress proxy of environment network namespace `name` (it is being
    /// deleted: the proxy's socket would keep it alive).
    pub fn forget_env_network(&self, name: &str) {
        self.egress
            .lock()
            .remove(&crate::provision::netns_path(name));
    }

    /// Stop accepting on every environment's egress proxy (this server was upgraded: the
    /// new one's listeners take what comes, and what this one's queues hold moves there);
    /// connections under way go on until this server exits.
    pub fn close_egress(&self) {
        self.egress.lock().clear();
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
    let body = format!("slipway egress proxy: {why}\n");
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
async fn serve(mut client: TcpStream, policy: &EgressPolicy, who: &str) -> std::io::Result<()> {
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
            return refuse(
                &mut client,
                "502 Bad Gateway",
                &format!("{host_port}: unknown host"),
            )
            .await;
        }
    };
    // Every address the name resolves to must be allowed (no DNS games).
    let refused = match addrs.first() {
        None => Some("it has no address".to_string()),
        Some(_) => addrs
            .iter()
            .find_map(|a| policy.check(&host_port, a).err())
            .map(|r| r.to_string()),
    };
    if let Some(why) = refused {
        tracing::info!(netns = %who, destination = %host_port, reason = %why, "egress proxy: refused");
        return refuse(
            &mut client,
            "403 Forbidden",
            &format!("{host_port} refused: {why}"),
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

    #[test]
    fn refusals_say_why() {
        let p = EgressPolicy::default();
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let why = |hp: &str, addr: &str| p.check(hp, &a(addr)).unwrap_err().to_string();
        assert_eq!(
            why("127.0.0.1:22", "127.0.0.1:22"),
            "127.0.0.1 is this machine's own address"
        );
        assert_eq!(
            why("x:22", "104.16.1.1:22"),
            "only ports 80 and 443 are reachable, not 22"
        );
        assert_eq!(
            why("x:443", "10.0.0.1:443"),
            "10.0.0.1 is not a public address"
        );
    }

    #[test]
    fn environments_reach_their_own_addresses_without_the_proxy_and_builds_do_not() {
        let env: HashMap<String, String> = environment_env().into_iter().collect();
        assert_eq!(env["HTTPS_PROXY"], "http://127.0.0.1:3128");
        assert_eq!(env["http_proxy"], "http://127.0.0.1:3128");
        assert_eq!(env["NO_PROXY"], env["no_proxy"]);
        let no_proxy: Vec<&str> = env["NO_PROXY"].split(',').collect();
        for want in ["localhost", "127.0.0.1", ".internal"] {
            assert!(no_proxy.contains(&want), "{want}");
        }
        // The apps' relationship addresses and the services' are in its ranges.
        let in_range = |ip: Ipv4Addr| {
            no_proxy.iter().any(|n| {
                n.split_once('/').is_some_and(|(net, bits)| {
                    let (net, bits) = (
                        net.parse::<Ipv4Addr>().unwrap(),
                        bits.parse::<u32>().unwrap(),
                    );
                    u32::from(ip) >> (32 - bits) == u32::from(net) >> (32 - bits)
                })
            })
        };
        assert!(in_range(crate::environment::app_address(10_000)));
        assert!(in_range(crate::environment::app_address(64_999)));
        assert!(in_range(crate::services::ports::address(2)));
        // Each service address is there as written too (for clients without ranges).
        for a in crate::services::ports::addresses() {
            assert!(no_proxy.contains(&a.to_string().as_str()), "{a}");
        }
        // A host address that is no part of the environment goes through the proxy.
        assert!(!in_range(Ipv4Addr::new(127, 0, 0, 2)));
        let build: HashMap<String, String> = BuildNetwork::env().into_iter().collect();
        assert_eq!(build["HTTP_PROXY"], env["HTTP_PROXY"]);
        assert_eq!(build["NO_PROXY"], "");
    }
}
