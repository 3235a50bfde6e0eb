//! TLS for the HTTPS listener: which certificate a client gets for the host it names (SNI).
//!
//! - Only hosts the route table knows get a certificate; any other name ends the handshake
//!   (nothing is issued for an arbitrary SNI).
//! - [`CertificateSource`] is where certificates come from (the seam for ACME).
//!   [`Certificates`] is the built-in one: `DATA/certs/HOST.pem` + `HOST.key` when both
//!   exist, looked at again at most every [`RECHECK`] (so a file dropped in is used without
//!   a restart); otherwise a certificate issued on the fly by the local CA ([`LocalCa`]).
//! - A bad or unreadable certificate file is reported (once per version of the files) and
//!   the host gets an issued certificate meanwhile; other hosts are not affected.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::router::Router;

/// How long a host's certificate is used before its files are looked at again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// An error setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file of the local CA or a certificate.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The local CA's key or certificate could not be made or read.
    #[error("{path}: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A certificate could not be issued.
    #[error("issuing a certificate for {host}: {reason}")]
    Issue {
        /// The host name.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// A certificate file pair is not usable.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Where the HTTPS listener gets the certificate of a host (e.g. files, a local CA, or
/// ACME).
pub trait CertificateSource: Send + Sync + fmt::Debug {
    /// The certificate (with its key) for `host`, a normalized host name the route table
    /// knows; `None` ends the handshake.
    fn certificate(&self, host: &str) -> Option<Arc<CertifiedKey>>;

    /// The TLS-ALPN-01 challenge certificate (RFC 8737) for `host` while an ACME
    /// validation of it is in progress, for a handshake offering
    /// [`crate::acme_challenges::ACME_TLS_ALPN`]; `None` (the default: a source that
    /// orders nothing) ends such a handshake.
    fn challenge_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let _ = host;
        None
    }
}

/// The local certificate authority: `DATA/ca/ca.pem` (give it to clients to trust) and
/// `DATA/ca/ca.key` (mode 0600), made on first start.
pub struct LocalCa {
    cert_path: PathBuf,
    /// The CA as an issuer (same name and key as the file; rcgen signs with it).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters: the same on every start, so that certificates issued by the
/// key kept on disk chain to the certificate kept on disk.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Slipway");
    name.push(DnType::CommonName, "Slipway local CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl LocalCa {
    /// The CA under `dir` (`ca.pem`, `ca.key`), made if it does not exist yet.
    pub fn open_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if key_path.exists() && cert_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let key = KeyPair::from_pem(&pem).map_err(|e| TlsError::Ca {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            let issuer = ca_params().self_signed(&key).map_err(|e| TlsError::Ca {
                path: key_path,
                reason: e.to_string(),
            })?;
            return Ok(LocalCa {
                cert_path,
                issuer,
                key,
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca_err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: rcgen::Error| TlsError::Ca {
                path,
                reason: e.to_string(),
            }
        };
        let key = KeyPair::generate().map_err(ca_err(&key_path))?;
        let issuer = ca_params().self_signed(&key).map_err(ca_err(&cert_path))?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        std::fs::write(&cert_path, issuer.pem()).map_err(io(&cert_path))?;
        Ok(LocalCa {
            cert_path,
            issuer,
            key,
        })
    }

    /// The CA certificate's file, for clients to trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// A new certificate for `host`, signed by this CA.
    pub fn issue(&self, host: &str) -> Result<CertifiedKey, TlsError> {
        let err = |reason: String| TlsError::Issue {
            host: host.to_string(),
            reason,
        };
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| err(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| err(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(|e| err(e.to_string()))?;
        Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
    }
}

/// Write `bytes` to a new file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The modification times of a host's certificate and key files, when both exist.
type Stamp = Option<(SystemTime, SystemTime)>;

/// A host's certificate in use, and what it came from.
struct Cached {
    key: Arc<CertifiedKey>,
    /// The files it was made from, or that were bad (then `key` is an issued one).
    stamp: Stamp,
    checked: Instant,
}

/// The built-in certificate source: `DIR/HOST.pem` + `DIR/HOST.key`, else issued by the
/// local CA; kept in memory and looked at again every [`RECHECK`].
pub struct Certificates {
    dir: PathBuf,
    ca: LocalCa,
    cache: Mutex<HashMap<String, Cached>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("dir", &self.dir)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Certificates from files in `dir` (made if missing), else issued by `ca`.
    pub fn new(dir: PathBuf, ca: LocalCa) -> Result<Certificates, TlsError> {
        std::fs::create_dir_all(&dir).map_err(|source| TlsError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Certificates {
            dir,
            ca,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The local CA's certificate file.
    pub fn ca_cert_path(&self) -> &Path {
        self.ca.cert_path()
    }

    fn files(&self, host: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{host}.pem")),
            self.dir.join(format!("{host}.key")),
        )
    }

    fn stamp(&self, host: &str) -> Stamp {
        let (pem, key) = self.files(host);
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(&pem)?, modified(&key)?))
    }

    /// Whether the operator put certificate files for `host` (both `.pem` and `.key`).
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    pub(crate) fn has_files(&self, host: &str) -> bool {
        self.stamp(host).is_some()
    }

    /// The certificate and key of `host` from its files.
    fn load(&self, host: &str) -> Result<CertifiedKey, TlsError> {
        let (pem, key) = self.files(host);
        let bad = |path: &Path, reason: String| TlsError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(&pem)
            .map_err(|e| bad(&pem, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&pem, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad(&pem, "no certificate in the file".into()));
        }
        let der = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, e.to_string()))?;
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(|e| bad(&key, e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        certified
            .keys_match()
            .map_err(|e| bad(&key, format!("the key does not match the certificate: {e}")))?;
        Ok(certified)
    }
}

impl CertificateSource for Certificates {
    fn certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        // A normalized host name only: never a path.
        if host.is_empty() || host.starts_with('.') || host.contains(['/', '\\', '\0']) {
            return None;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = cache.get(host) {
            if cached.checked.elapsed() < RECHECK {
                return Some(Arc::clone(&cached.key));
            }
        }
        let stamp = self.stamp(host);
        if let Some(cached) = cache.get_mut(host) {
            if cached.stamp == stamp {
                cached.checked = Instant::now();
                return Some(Arc::clone(&cached.key));
            }
        }
        let from_files = match stamp {
            Some(_) => match self.load(host) {
                Ok(key) => {
                    tracing::info!(host, dir = %self.dir.display(), "using the certificate files of a host");
                    Some(key)
                }
                Err(err) => {
                    tracing::warn!(host, error = %err, "bad certificate file; the host gets a certificate of the local CA meanwhile");
                    None
                }
            },
            None => None,
        };
        let key = match from_files {
            Some(key) => Arc::new(key),
            None => match cache.get(host).filter(|c| c.stamp.is_none()) {
                // An issued certificate stays while no file appears.
                Some(cached) => Arc::clone(&cached.key),
                None => match self.ca.issue(host) {
                    Ok(key) => Arc::new(key),
                    Err(err) => {
                        tracing::error!(error = %err, "issuing a certificate");
                        return None;
                    }
                },
            },
        };
        cache.insert(
            host.to_string(),
            Cached {
                key: Arc::clone(&key),
                stamp,
                checked: Instant::now(),
            },
        );
        Some(key)
    }
}

/// Picks the certificate by SNI, for hosts the route table knows and the console's only.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) router: std::sync::Weak<Router>,
    pub(crate) source: Arc<dyn CertificateSource>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let router = self.router.upgrade()?;
        let host = crate::table::normalize_host(name);
        if crate::acme_challenges::is_alpn_validation(hello.alpn()) {
            // An ACME server validating TLS-ALPN-01: the challenge certificate or nothing.
            return self.source.challenge_certificate(&host);
        }
        if router.table.load().lookup(&host).is_none() && router.console_for(&host).is_none() {
            tracing::debug!(host = %host, "TLS handshake for a host no route knows: refused");
            return None;
        }
        self.source.certificate(&host)
    }
}

/// The rustls server configuration of the HTTPS listener: certificates by SNI from
/// `source`, h2 and HTTP/1.1 by ALPN (and `acme-tls/1` for TLS-ALPN-01 validations,
/// closed once shaken hands), session resumption by tickets.
pub(crate) fn server_config(
    router: &Arc<Router>,
    source: Arc<dyn CertificateSource>,
) -> Arc<rustls::ServerConfig> {
    let resolver = SniResolver {
        router: Arc::downgrade(router),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|_| rustls::ServerConfig::builder())
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        crate::acme_challenges::ACME_TLS_ALPN.to_vec(),
    ];
    // Resumption: a client that comes back skips the certificate and key exchange work.
    // TLS 1.3 by stateless tickets (one per handshake is enough for a client that reuses
    // connections), TLS 1.2 by the default in-memory session cache.
    match rustls::crypto::aws_lc_rs::Ticketer::new() {
        Ok(ticketer) => {
            config.ticketer = ticketer;
            config.send_tls13_tickets = 1;
        }
        Err(err) => tracing::warn!(error = %err, "TLS session tickets unavailable"),
    }
    Arc::new(config)
}
