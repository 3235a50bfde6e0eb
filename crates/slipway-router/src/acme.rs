//! ACME (RFC 8555) certificates for the HTTPS listener (`serve --acme-directory URL`).
//!
//! - [`Acme::run`] looks at the hosts the HTTPS listener answers for (hosts of routes
//!   written `https://`, plus the console's) every [`LOOK_EVERY`]; a host with no
//!   certificate file of the operator (`DATA/certs/HOST.pem`) and no valid ACME
//!   certificate gets one ordered, with the challenge of [`AcmeSettings::challenge`]
//!   answered by the router itself ([`Challenges`]): HTTP-01 on plain HTTP (before the
//!   route table and any redirect), or TLS-ALPN-01 on the HTTPS listener (a handshake
//!   offering `acme-tls/1` gets the host's challenge certificate). DNS-01 is a seam
//!   ([`DnsChallengeRecords`]) with no implementation yet.
//! - A certificate is kept in `DATA/acme/certs/HOST.pem` (its key first, then the chain;
//!   mode 0600, written to a temporary file and renamed: never half written) and used at
//!   once, without a restart ([`AcmeCertificates`]); it is renewed at [`RENEW_AT`] of its
//!   life. A restart uses the stored certificate, without a new order.
//! - The account key is kept in `DATA/acme/account.json` (mode 0600) and reused while the
//!   directory URL is the same.
//! - Until a host has a certificate, it gets the local CA's (the [`Certificates`] source
//!   behind). A failed order is said in the log (host, ACME error) and retried after a
//!   backoff from [`FIRST_RETRY`] doubling up to [`LAST_RETRY`]; it never stops the server
//!   or another host's order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::acme_challenges::Challenges;
use crate::router::Router;
use crate::tls::{CertificateSource, Certificates};

/// How often the hosts to certify are looked at (new routes, renewals, retries due).
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The wait before the first retry of a failed order; it doubles with each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between two orders of a host that keep failing.
pub const LAST_RETRY: Duration = Duration::from_secs(3600);

/// The part of a certificate's life after which it is renewed.
pub const RENEW_AT: (u32, u32) = (2, 3);

/// How long one order may take, from the account to the certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// How the server reaches its ACME certificate authority (`serve --acme-*` flags).
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    /// The directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// The account's contact address, if any.
    pub email: Option<String>,
    /// A PEM file of the CA that signed the ACME server's own HTTPS certificate, when it
    /// is not one the system trusts (a test or private ACME server).
    pub ca_cert: Option<PathBuf>,
    /// The challenge the router answers to prove it serves a host.
    pub challenge: ChallengeKind,
}

/// The ACME challenge the router answers (`serve --acme-challenge`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChallengeKind {
    /// HTTP-01 (RFC 8555 section 8.3): a token on plain HTTP, port 80 to the ACME server.
    #[default]
    Http01,
    /// TLS-ALPN-01 (RFC 8737): a challenge certificate on the HTTPS listener, port 443 to
    /// the ACME server, for a server whose port 80 is not reachable.
    TlsAlpn01,
}

impl ChallengeKind {
    /// Its name in ACME and on the command line: `http-01`, `tls-alpn-01`.
    pub fn name(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    fn acme_type(self) -> ChallengeType {
        match self {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A challenge name that is not one the router answers.
#[derive(Debug, thiserror::Error)]
#[error("unknown ACME challenge '{0}': http-01 or tls-alpn-01 (dns-01 is not implemented)")]
pub struct UnknownChallenge(String);

impl std::str::FromStr for ChallengeKind {
    type Err = UnknownChallenge;

    fn from_str(s: &str) -> Result<ChallengeKind, UnknownChallenge> {
        match s {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            other => Err(UnknownChallenge(other.to_string())),
        }
    }
}

/// What the DNS-01 challenge (RFC 8555 section 8.4) needs of a DNS provider: a TXT record
/// `_acme-challenge.HOST` with the key authorization's digest put while the ACME server
/// validates it, and removed after. The seam for wildcard hosts and servers with neither
/// port 80 nor 443 reachable; no provider implements it yet, and
/// [`ChallengeKind`] has no DNS-01 until one does.
pub trait DnsChallengeRecords: Send + Sync + fmt::Debug {
    /// Put the TXT record `name` (`_acme-challenge.HOST.`) with `value` (base64url of the
    /// SHA-256 of the key authorization), resolving once the provider serves it.
    fn put_txt<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), AcmeError>> + Send + 'a>>;

    /// Remove the TXT record `name` with `value` (the validation ended, however).
    fn remove_txt<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), AcmeError>> + Send + 'a>>;
}

/// An error getting or keeping an ACME certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server answered with an error, or could not be reached.
    #[error("ACME server {directory}: {source}")]
    Server {
        /// The directory URL.
        directory: String,
        /// What the client library says.
        source: instant_acme::Error,
    },
    /// The ACME server could not validate the challenge (or refused the order).
    #[error("ACME server {directory}: {reason}")]
    Refused {
        /// The directory URL.
        directory: String,
        /// The ACME problem, as the server said it.
        reason: String,
    },
    /// Reading or writing a file under `DATA/acme`.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A stored account or certificate does not decode.
    #[error("{path}: {reason}")]
    Stored {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate's key or request could not be made, or the certificate the ACME
    /// server sent is not usable.
    #[error("the certificate of {host}: {reason}")]
    Certificate {
        /// The host.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The order took longer than allowed.
    #[error("ACME server {directory}: no certificate after {seconds}s")]
    Timeout {
        /// The directory URL.
        directory: String,
        /// The time allowed.
        seconds: u64,
    },
}

/// The answers of one order (HTTP-01 tokens, TLS-ALPN-01 hosts), forgotten when it ends
/// however it ends.
struct Answering<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    alpn_hosts: Vec<String>,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.remove(token);
        }
        for host in &self.alpn_hosts {
            self.challenges.remove_alpn(host);
        }
    }
}

/// The certificate source of an HTTPS listener with ACME: a host's ACME certificate
/// once it has one, else what the built-in source gives (files, else the local CA).
pub struct AcmeCertificates {
    fallback: Arc<Certificates>,
    issued: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    challenges: Arc<Challenges>,
}

impl fmt::Debug for AcmeCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeCertificates")
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl AcmeCertificates {
    fn put(&self, host: &str, key: Arc<CertifiedKey>) {
        let mut issued = self.issued.write().unwrap_or_else(|p| p.into_inner());
        issued.insert(host.to_string(), key);
    }

    fn forget(&self, host: &str) {
        let mut issued = self.issued.write().unwrap_or_else(|p| p.into_inner());
        issued.remove(host);
    }
}

impl CertificateSource for AcmeCertificates {
    fn certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        {
            let issued = self.issued.read().unwrap_or_else(|p| p.into_inner());
            if let Some(key) = issued.get(host) {
                return Some(Arc::clone(key));
            }
        }
        self.fallback.certificate(host)
    }

    fn challenge_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.alpn_certificate(host)
    }
}

/// A certificate the ACME server issued, with its life.
struct Issued {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Issued {
    /// When to renew it: at [`RENEW_AT`] of its life.
    fn renew_at(&self) -> SystemTime {
        renew_at(self.not_before, self.not_after)
    }
}

/// The time at [`RENEW_AT`] of the life from `not_before` to `not_after`.
fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life * RENEW_AT.0 / RENEW_AT.1
}

/// The account file: the directory it belongs to and its credentials.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// What the manager knows of one host.
struct HostState {
    /// When its certificate is due for renewal; `None` while it has none.
    renew_at: Option<SystemTime>,
    /// An order is running.
    ordering: bool,
    /// Not before this instant is it ordered again after a failure.
    next_try: Instant,
    /// The wait after the next failure.
    backoff: Duration,
}

/// The ACME client of the server: orders, stores and renews the certificates of the
/// hosts the HTTPS listener answers for.
pub struct Acme {
    settings: AcmeSettings,
    dir: PathBuf,
    challenges: Arc<Challenges>,
    certificates: Arc<AcmeCertificates>,
    files: Arc<Certificates>,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl fmt::Debug for Acme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acme")
            .field("settings", &self.settings)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// The ACME client keeping its account and certificates under `dir` (e.g.
    /// `DATA/acme`, made if missing); hosts without an ACME certificate are served by
    /// `files` (operator files, else the local CA).
    pub fn new(
        settings: AcmeSettings,
        dir: PathBuf,
        files: Arc<Certificates>,
    ) -> Result<Arc<Acme>, AcmeError> {
        let certs = dir.join("certs");
        create_private_dir(&dir)?;
        create_private_dir(&certs)?;
        let challenges: Arc<Challenges> = Arc::default();
        Ok(Arc::new(Acme {
            settings,
            dir,
            challenges: Arc::clone(&challenges),
            certificates: Arc::new(AcmeCertificates {
                fallback: Arc::clone(&files),
                issued: RwLock::default(),
                challenges,
            }),
            files,
            account: tokio::sync::Mutex::new(None),
        }))
    }

    /// The certificate source for the HTTPS listener.
    pub fn certificates(&self) -> Arc<AcmeCertificates> {
        Arc::clone(&self.certificates)
    }

    /// The challenge answers, for [`Router::answer_acme_challenges`].
    pub fn challenges(&self) -> Arc<Challenges> {
        Arc::clone(&self.challenges)
    }

    /// The stored certificate file of `host`.
    pub fn certificate_path(&self, host: &str) -> PathBuf {
        self.dir.join("certs").join(format!("{host}.pem"))
    }

    /// Keep the certificates of `router`'s `https://` hosts and of `extra_hosts` (e.g.
    /// the console's) ordered and renewed, until `stop` resolves.
    pub async fn run(
        self: Arc<Self>,
        router: Arc<Router>,
        extra_hosts: Vec<String>,
        stop: impl Future<Output = ()>,
    ) {
        let mut states: HashMap<String, HostState> = HashMap::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut stop = std::pin::pin!(stop);
        loop {
            let mut wanted: HashSet<String> = router.https_hosts().into_iter().collect();
            wanted.extend(extra_hosts.iter().cloned());
            for host in wanted {
                if !is_orderable(&host) {
                    continue;
                }
                if self.files.has_files(&host) {
                    // The operator's files win; nothing is ordered for the host.
                    if states.remove(&host).is_some() {
                        self.certificates.forget(&host);
                    }
                    continue;
                }
                let state = states
                    .entry(host.clone())
                    .or_insert_with(|| self.load_stored(&host));
                let due = state.renew_at.is_none_or(|at| SystemTime::now() >= at);
                if due && !state.ordering && Instant::now() >= state.next_try {
                    state.ordering = true;
                    let acme = Arc::clone(&self);
                    let done = done_tx.clone();
                    tracing::info!(host, directory = %self.settings.directory, renewal = state.renew_at.is_some(), "ordering an ACME certificate");
                    tokio::spawn(async move {
                        let result =
                            match tokio::time::timeout(ORDER_TIMEOUT, acme.order(&host)).await {
                                Ok(result) => result,
                                Err(_) => Err(AcmeError::Timeout {
                                    directory: acme.settings.directory.clone(),
                                    seconds: ORDER_TIMEOUT.as_secs(),
                                }),
                            };
                        let _ = done.send((host, result));
                    });
                }
            }
            tokio::select! {
                () = stop.as_mut() => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
                Some((host, result)) = done_rx.recv() => {
                    let Some(state) = states.get_mut(&host) else { continue };
                    state.ordering = false;
                    match result {
                        Ok(issued) => {
                            tracing::info!(host, path = %self.certificate_path(&host).display(), "ACME certificate issued and stored; serving it");
                            state.renew_at = Some(issued.renew_at());
                            state.backoff = FIRST_RETRY;
                            self.certificates.put(&host, issued.key);
                        }
                        Err(err) => {
                            let wait = state.backoff;
                            state.next_try = Instant::now() + wait;
                            state.backoff = (wait * 2).min(LAST_RETRY);
                            tracing::warn!(host, error = %err, retry_in_secs = wait.as_secs(), "ACME certificate order failed; the host keeps its current certificate (the local CA's if it has none)");
                        }
                    }
                }
            }
        }
    }

    /// The state of a host first seen: its stored certificate, if one is usable, served.
    fn load_stored(&self, host: &str) -> HostState {
        let mut state = HostState {
            renew_at: None,
            ordering: false,
            next_try: Instant::now(),
            backoff: FIRST_RETRY,
        };
        let path = self.certificate_path(host);
        match read_stored(&path) {
            Ok(None) => {}
            Ok(Some(issued)) => {
                let renew = issued.renew_at();
                tracing::info!(host, path = %path.display(), renew_in_secs = renew.duration_since(SystemTime::now()).unwrap_or_default().as_secs(), "using the stored ACME certificate");
                state.renew_at = Some(renew);
                self.certificates.put(host, issued.key);
            }
            Err(err) => {
                tracing::warn!(host, error = %err, "stored ACME certificate unusable; ordering a new one")
            }
        }
        state
    }

    /// The account: the stored one for this directory, else a new one (stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let directory = self.settings.directory.clone();
        let server = |source| AcmeError::Server {
            directory: directory.clone(),
            source,
        };
        let path = self.dir.join("account.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<StoredAccount>(&bytes).map_err(|e| AcmeError::Stored {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(AcmeError::Io { path, source }),
        };
        let builder = || match &self.settings.ca_cert {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        };
        let account = match stored.filter(|s| s.directory == directory) {
            Some(stored) => {
                let account = builder()
                    .map_err(server)?
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(server)?;
                tracing::info!(directory = %directory, path = %path.display(), "using the stored ACME account");
                account
            }
            None => {
                let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()
                    .map_err(server)?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.clone(),
                        None,
                    )
                    .await
                    .map_err(server)?;
                let stored = StoredAccount {
                    directory: directory.clone(),
                    credentials,
                };
                let json = serde_json::to_vec_pretty(&stored).map_err(|e| AcmeError::Stored {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                write_private_atomically(&path, &json)?;
                tracing::info!(directory = %directory, path = %path.display(), "created an ACME account");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// One order for `host`: challenge answered, certificate fetched and stored.
    async fn order(&self, host: &str) -> Result<Issued, AcmeError> {
        let directory = &self.settings.directory;
        let server = |source| AcmeError::Server {
            directory: directory.clone(),
            source,
        };
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(server)?;
        let mut answering = Answering {
            challenges: &self.challenges,
            tokens: Vec::new(),
            alpn_hosts: Vec::new(),
        };
        let kind = self.settings.challenge;
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(server)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Refused {
                        directory: directory.clone(),
                        reason: format!("the authorization of {host} is {other:?}"),
                    })
                }
            }
            let mut challenge =
                authz
                    .challenge(kind.acme_type())
                    .ok_or_else(|| AcmeError::Refused {
                        directory: directory.clone(),
                        reason: format!("no {kind} challenge offered for {host}"),
                    })?;
            match kind {
                ChallengeKind::Http01 => {
                    let token = challenge.token.clone();
                    self.challenges
                        .insert(&token, challenge.key_authorization().as_str());
                    answering.tokens.push(token);
                }
                ChallengeKind::TlsAlpn01 => {
                    let digest = challenge.key_authorization().digest();
                    let certificate = alpn_certificate(host, digest.as_ref())?;
                    self.challenges.insert_alpn(host, Arc::new(certificate));
                    answering.alpn_hosts.push(host.to_string());
                }
            }
            challenge.set_ready().await.map_err(server)?;
        }
        let polling = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(Duration::from_secs(90));
        let status = order.poll_ready(&polling).await.map_err(server)?;
        if status != OrderStatus::Ready {
            let reason = challenge_problem(&mut order)
                .await
                .unwrap_or_else(|| format!("the order of {host} is {status:?}"));
            return Err(AcmeError::Refused {
                directory: directory.clone(),
                reason,
            });
        }
        drop(answering);
        let cert_err = |reason: String| AcmeError::Certificate {
            host: host.to_string(),
            reason,
        };
        let key = rcgen::KeyPair::generate().map_err(|e| cert_err(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![host.to_string()])
            .map_err(|e| cert_err(e.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| cert_err(e.to_string()))?;
        order.finalize_csr(csr.der()).await.map_err(server)?;
        let chain_pem = order.poll_certificate(&polling).await.map_err(server)?;
        let mut stored = key.serialize_pem();
        stored.push_str(&chain_pem);
        let issued = parse_stored(stored.as_bytes()).map_err(cert_err)?;
        write_private_atomically(&self.certificate_path(host), stored.as_bytes())?;
        Ok(issued)
    }
}

/// The TLS-ALPN-01 challenge certificate of `host` (RFC 8737 section 3): self-signed,
/// naming only `host`, with the critical acmeIdentifier extension holding `digest` (the
/// SHA-256 of the key authorization).
fn alpn_certificate(host: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let cert_err = |reason: String| AcmeError::Certificate {
        host: host.to_string(),
        reason,
    };
    if digest.len() != 32 {
        return Err(cert_err(format!(
            "a key authorization digest of {} bytes, not 32",
            digest.len()
        )));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| cert_err(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])
        .map_err(|e| cert_err(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| cert_err(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| cert_err(e.to_string()))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// The problem the ACME server gave for a failed challenge of `order`, if it said one.
async fn challenge_problem(order: &mut instant_acme::Order) -> Option<String> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let Ok(state) = authz.refresh().await else {
            continue;
        };
        if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
            return Some(problem.to_string());
        }
    }
    None
}

/// Whether `host` can be ordered over HTTP-01 or TLS-ALPN-01: a DNS name, not a wildcard
/// or an address.
fn is_orderable(host: &str) -> bool {
    !host.is_empty()
        && host.contains('.')
        && host.parse::<std::net::IpAddr>().is_err()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
}

/// The certificate stored at `path`, if there is one.
fn read_stored(path: &Path) -> Result<Option<Issued>, AcmeError> {
    match std::fs::read(path) {
        Ok(bytes) => parse_stored(&bytes)
            .map(Some)
            .map_err(|reason| AcmeError::Stored {
                path: path.to_path_buf(),
                reason,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AcmeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A stored certificate: its key and chain in PEM, the leaf first.
fn parse_stored(pem: &[u8]) -> Result<Issued, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let leaf = chain.first().ok_or("no certificate in the file")?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("the certificate: {e}"))?;
    let time = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let not_before = time(parsed.validity().not_before);
    let not_after = time(parsed.validity().not_after);
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("the key: {e}"))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| format!("the key: {e}"))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match()
        .map_err(|e| format!("the key does not match the certificate: {e}"))?;
    Ok(Issued {
        key: Arc::new(key),
        not_before,
        not_after,
    })
}

/// Make `dir` (owner only) if it does not exist.
fn create_private_dir(dir: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(source) => Err(AcmeError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Replace `path` by a file of `bytes` readable by its owner only, all at once: written
/// to a temporary file beside it, synced, and renamed over it.
fn write_private_atomically(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    use std::io::Write as _;
    let io = |source| AcmeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    // tempfile makes its files with mode 0600.
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Kept here rather than in a test module of its own: the renewal time and the stored
/// file's round trip.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_of_the_life() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(90 * 86400);
        assert_eq!(
            renew_at(start, end),
            start + Duration::from_secs(60 * 86400)
        );
        // A certificate already past its end is due at once.
        assert!(renew_at(start, end) < SystemTime::now());
    }

    #[test]
    fn an_order_forgets_its_tokens_and_challenge_certificates() {
        let c = Challenges::default();
        c.insert("tok-1", "tok-1.thumb");
        let cert = alpn_certificate("a.example", &[7; 32]).expect("certificate");
        c.insert_alpn("a.example", Arc::new(cert));
        assert!(c.alpn_certificate("a.example").is_some());
        assert!(c.alpn_certificate("b.example").is_none());
        {
            let _a = Answering {
                challenges: &c,
                tokens: vec!["tok-1".into()],
                alpn_hosts: vec!["a.example".into()],
            };
        }
        assert_eq!(c.answer("/.well-known/acme-challenge/tok-1"), None);
        assert!(c.alpn_certificate("a.example").is_none());
    }

    #[test]
    fn a_tls_alpn_challenge_certificate_names_the_host_and_holds_the_digest() {
        let digest = [0xab; 32];
        let key = alpn_certificate("a.example", &digest).expect("certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).expect("parses");
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical, "RFC 8737: the extension is critical");
        // DER OCTET STRING of the 32-byte SHA-256 digest.
        let mut want = vec![0x04, 32];
        want.extend_from_slice(&digest);
        assert_eq!(ext.value, want.as_slice());
        let names = cert
            .subject_alternative_name()
            .expect("SAN")
            .expect("present");
        assert_eq!(
            names.value.general_names,
            vec![x509_parser::extensions::GeneralName::DNSName("a.example")]
        );
        assert!(alpn_certificate("a.example", &[1; 31]).is_err());
        assert_eq!(
            "tls-alpn-01".parse::<ChallengeKind>().expect("known"),
            ChallengeKind::TlsAlpn01
        );
        assert!("dns-01".parse::<ChallengeKind>().is_err());
    }

    #[test]
    fn a_stored_certificate_round_trips_and_a_broken_one_is_an_error() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let mut pem = key.serialize_pem();
        pem.push_str(&cert.pem());
        let issued = parse_stored(pem.as_bytes()).expect("parses");
        assert!(issued.not_after > issued.not_before);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.example.pem");
        write_private_atomically(&path, pem.as_bytes()).expect("written");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(read_stored(&path).expect("reads").is_some());
        assert!(read_stored(&dir.path().join("none.pem"))
            .expect("missing")
            .is_none());
        std::fs::write(&path, &pem.as_bytes()[..pem.len() / 2]).expect("write");
        assert!(matches!(read_stored(&path), Err(AcmeError::Stored { .. })));
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().expect("key");
        let mut wrong = other.serialize_pem();
        wrong.push_str(&cert.pem());
        assert!(parse_stored(wrong.as_bytes()).is_err());
    }

    #[test]
    fn only_dns_names_are_ordered() {
        assert!(is_orderable("main.demo.example.com"));
        for no in [
            "",
            "localhost",
            "127.0.0.1",
            "*.example.com",
            ".x.com",
            "a/b.c",
        ] {
            assert!(!is_orderable(no), "{no}");
        }
    }
}
