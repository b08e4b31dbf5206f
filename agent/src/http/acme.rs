//! ACME (RFC 8555): the HTTPS certificate obtained from a CA such as Let's Encrypt, kept in the
//! data folder, renewed before it expires, and swapped in without a restart.
//!
//! Validation is TLS-ALPN-01 (RFC 8737) on the agent's own HTTPS listener: the CA connects to
//! port 443 of each name offering only `acme-tls/1`, and [`CertReloader`] answers with the
//! challenge certificate set here. No second listener, no port 80, no DNS API.
//!
//! What must stay true:
//! - the listener always has a certificate: until the first one is issued it serves a
//!   self-signed placeholder for the names ([`ensure_placeholder`]);
//! - a failed order (CA down, validation refused, a bad answer) changes nothing that is
//!   served: the key and chain are written to temporary files and renamed into place only
//!   once the CA has issued them, key first, and the reloader then checks they match;
//! - the account key is created once and kept (`acme-account.json`, mode 0600), so
//!   renewals and restarts reuse the account.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::tls::{CertReloader, TlsFiles};

/// `[tls.acme]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The directory URL (https, or http to a loopback test server).
    pub directory: String,
    /// Account contacts (`mailto:` URLs).
    pub contact: Vec<String>,
    /// Certificate names, lower-case, at least one.
    pub names: Vec<String>,
    /// Extra CA (PEM) trusted for the ACME server itself: a private or test CA.
    pub ca_pem: Option<Vec<u8>>,
    /// Renew with this much life left; `None`: a third of the lifetime.
    pub renew_before: Option<Duration>,
    /// Account credentials, kept across restarts.
    pub account_file: PathBuf,
}

/// Why obtaining a certificate failed; the current certificate keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA or the protocol (network, refusals, invalid orders).
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    /// An authorization ended invalid: the CA could not validate a name.
    #[error("ACME: the CA could not validate {name}: {detail}")]
    Validation {
        /// The name.
        name: String,
        /// What the CA reported.
        detail: String,
    },
    /// The order ended in a state other than ready or valid.
    #[error("ACME: order ended {0:?}")]
    Order(OrderStatus),
    /// The CA offers no TLS-ALPN-01 challenge for a name.
    #[error("ACME: the CA offers no tls-alpn-01 challenge for {0}")]
    NoChallenge(String),
    /// A certificate could not be made or parsed.
    #[error("ACME: certificate: {0}")]
    Certificate(String),
    /// Reading or writing the data folder.
    #[error("ACME: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The ACME server's extra CA is not usable.
    #[error("ACME: tls.acme.ca_file: {0}")]
    Ca(reqwest::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AcmeError + '_ {
    move |source| AcmeError::Io { path: path.to_owned(), source }
}

/// Writes a self-signed certificate for `names` to `files` unless they already hold a usable
/// pair, so the listener can start (and answer validations) before the first issuance.
pub fn ensure_placeholder(files: &TlsFiles, names: &[String]) -> Result<(), AcmeError> {
    if CertReloader::load(files.clone()).is_ok() {
        return Ok(());
    }
    let key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "ODI placeholder (ACME pending)");
    let cert = params.self_signed(&key).map_err(cert_err)?;
    install(files, cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

fn cert_err(e: impl std::fmt::Display) -> AcmeError {
    AcmeError::Certificate(e.to_string())
}

/// Writes key and chain to temporary files, then renames them into place, key first: a
/// reader that sees the new chain also sees its key. A crash between the renames leaves a
/// new key with the old chain, which does not load; the next start then serves a fresh
/// placeholder and orders again.
fn install(files: &TlsFiles, chain: &[u8], key: &[u8]) -> Result<(), AcmeError> {
    let pairs = [(&files.key, key, true), (&files.cert, chain, false)];
    let mut staged = Vec::new();
    for (path, bytes, secret) in pairs {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let tmp = tmp_path(path);
        write_file(&tmp, bytes, secret).map_err(io(&tmp))?;
        staged.push((tmp, path));
    }
    for (tmp, path) in staged {
        std::fs::rename(&tmp, path).map_err(io(path))?;
    }
    Ok(())
}

/// `<path>.tmp`: a name of its own for each file (`acme.key.tmp`, never shared with the chain).
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes a new file: a stale one of the same name is removed first, so `mode` (0600 for a
/// key) is the new file's and never a leftover's.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Where the directory URL that issued the served chain is kept: a chain from another CA
/// (staging, say, before a switch to production) is replaced at once.
fn issuer_file(files: &TlsFiles) -> PathBuf {
    let mut name = files.cert.as_os_str().to_owned();
    name.push(".directory");
    PathBuf::from(name)
}

/// The account file of `directory`: one per CA, since an account belongs to its CA.
pub fn account_file(tls_dir: &Path, directory: &str) -> PathBuf {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(directory.as_bytes());
    tls_dir.join(format!("acme-account-{}.json", hex::encode(&h[..8])))
}

/// When the certificate served now should be replaced: at once for the placeholder (or one
/// that lacks a configured name), else `renew_before` (or a third of its life) before expiry.
pub fn renewal_due(chain_pem: &[u8], cfg: &AcmeConfig) -> SystemTime {
    let now = SystemTime::now();
    let Some(der) = rustls_pemfile::certs(&mut &chain_pem[..]).next().and_then(Result::ok) else {
        return now;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return now;
    };
    if cert.issuer() == cert.subject() {
        return now;
    }
    let dns: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !cfg.names.iter().all(|n| dns.contains(n)) {
        return now;
    }
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let (from, until) =
        (at(cert.validity().not_before.timestamp()), at(cert.validity().not_after.timestamp()));
    let life = until.duration_since(from).unwrap_or_default();
    // At most half the life: a `renew_before` beyond it would order again as soon as issued.
    let before = cfg.renew_before.unwrap_or(life / 3).min(life / 2);
    until.checked_sub(before).unwrap_or(now)
}

/// First wait after a failed order; doubled after each failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Keeps `certs` issued and renewed until `shutdown` fires.
pub fn spawn(
    cfg: AcmeConfig,
    certs: Arc<CertReloader>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let chain = std::fs::read(&certs.files().cert).unwrap_or_default();
            let issuer = std::fs::read_to_string(issuer_file(certs.files())).unwrap_or_default();
            let due = if issuer.trim() == cfg.directory {
                renewal_due(&chain, &cfg)
            } else {
                SystemTime::now()
            };
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            if !wait.is_zero() {
                tracing::info!(names = ?cfg.names, in_secs = wait.as_secs(), "ACME: next renewal");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                r = obtain(&cfg, &certs) => r,
            };
            match attempt {
                Ok(()) => {
                    tracing::info!(names = ?cfg.names, "ACME: certificate issued and installed");
                    let chain = std::fs::read(&certs.files().cert).unwrap_or_default();
                    if renewal_due(&chain, &cfg) > SystemTime::now() {
                        backoff = FIRST_BACKOFF;
                        continue;
                    }
                    // Due again at once (a chain that does not parse, a lifetime of seconds):
                    // wait as after a failure rather than order in a loop.
                    tracing::error!(
                        retry_in_secs = backoff.as_secs(),
                        "ACME: the new certificate is already due for renewal"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_secs = backoff.as_secs(), "ACME: no certificate this time; the current one keeps serving");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    })
}

/// One order: validate every name by TLS-ALPN-01, finalize, and install the chain.
pub async fn obtain(cfg: &AcmeConfig, certs: &CertReloader) -> Result<(), AcmeError> {
    let account = account(cfg).await?;
    let ids: Vec<Identifier> = cfg.names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut pending = Vec::new();
    let result = async {
        // The pending challenges are set before the CA is told to look; `auths` borrows the
        // order until the loop ends.
        let mut auths = order.authorizations();
        while let Some(auth) = auths.next().await {
            let mut auth = auth?;
            if auth.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = auth.identifier().to_string();
            let mut challenge = auth
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::NoChallenge(name.clone()))?;
            let digest = challenge.key_authorization().digest();
            certs.set_challenge(&name, challenge_cert(&name, digest.as_ref())?);
            pending.push(name);
            challenge.set_ready().await?;
        }
        let status = order.poll_ready(&retries()).await?;
        if status == OrderStatus::Invalid {
            return Err(invalid_detail(&mut order).await);
        }
        if status != OrderStatus::Ready {
            return Err(AcmeError::Order(status));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retries()).await?;
        Ok((key_pem, chain_pem))
    }
    .await;
    for name in &pending {
        certs.clear_challenge(name);
    }
    let (key_pem, chain_pem) = result?;
    install(certs.files(), chain_pem.as_bytes(), key_pem.as_bytes())?;
    let issuer = issuer_file(certs.files());
    write_file(&issuer, cfg.directory.as_bytes(), false).map_err(io(&issuer))?;
    match certs.reload() {
        Ok(_) => Ok(()),
        Err(e) => Err(AcmeError::Certificate(format!("the issued certificate does not load: {e}"))),
    }
}

/// The first invalid authorization's error, as the CA put it.
async fn invalid_detail(order: &mut instant_acme::Order) -> AcmeError {
    let mut auths = order.authorizations();
    while let Some(Ok(auth)) = auths.next().await {
        if auth.status != AuthorizationStatus::Invalid {
            continue;
        }
        let name = auth.identifier().to_string();
        let detail = auth
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .map_or_else(|| "no reason given".to_owned(), ToString::to_string);
        return AcmeError::Validation { name, detail };
    }
    AcmeError::Order(OrderStatus::Invalid)
}

/// Polls quickly at first (a test CA answers in milliseconds), for up to about two minutes.
fn retries() -> RetryPolicy {
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(Duration::from_secs(120))
}

/// The certificate RFC 8737 asks for: self-signed, for `name` only, with the key
/// authorization's digest in the critical `acmeIdentifier` extension.
fn challenge_cert(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(cert_err)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(cert_err)?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension that is this certificate's point.
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(cert_err)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// The account of `account_file`, or a new one (saved there).
async fn account(cfg: &AcmeConfig) -> Result<Account, AcmeError> {
    let http = || -> Result<Box<dyn instant_acme::HttpClient>, AcmeError> {
        Ok(Box::new(Http(http_client(cfg.ca_pem.as_deref())?)))
    };
    if let Ok(text) = std::fs::read(&cfg.account_file) {
        match serde_json::from_slice::<AccountCredentials>(&text) {
            Ok(creds) => match Account::builder_with_http(http()?).from_credentials(creds).await {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::warn!(error = %e, "ACME: the saved account does not load; creating a new one")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, file = %cfg.account_file.display(), "ACME: unreadable account file; creating a new one")
            }
        }
    }
    let contact: Vec<&str> = cfg.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, creds) =
        Account::builder_with_http(http()?).create(&new, cfg.directory.clone(), None).await?;
    let json = serde_json::to_vec_pretty(&creds).map_err(cert_err)?;
    if let Some(dir) = cfg.account_file.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = tmp_path(&cfg.account_file);
    write_file(&tmp, &json, true).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &cfg.account_file).map_err(io(&cfg.account_file))?;
    Ok(account)
}

fn http_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, AcmeError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("odi/", env!("CARGO_PKG_VERSION"), " (ACME)"));
    if let Some(pem) = ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(AcmeError::Ca)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(AcmeError::Ca)
}

/// instant-acme's requests through the agent's one HTTP client stack (reqwest over rustls).
struct Http(reqwest::Client);

impl instant_acme::HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(never) => match never {},
            };
            let res = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let (status, headers) = (res.status(), res.headers().clone());
            let bytes = res.bytes().await.map_err(other)?;
            let mut out = http::Response::new(http_body_util::Full::new(bytes));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok(BytesResponse::from(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(names: &[&str], renew_before: Option<Duration>) -> AcmeConfig {
        AcmeConfig {
            directory: "http://127.0.0.1:1/dir".into(),
            contact: vec![],
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            ca_pem: None,
            renew_before,
            account_file: PathBuf::from("/nonexistent/acme-account.json"),
        }
    }

    /// A leaf for `names` signed by a throwaway CA, valid from `from` for `days` days.
    fn issued(names: &[&str], from: SystemTime, days: u64) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, "test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "leaf");
        p.not_before = from.into();
        p.not_after = (from + Duration::from_secs(days * 86400)).into();
        p.signed_by(&key, &issuer).unwrap().pem()
    }

    #[test]
    fn renewal_is_due_at_once_for_placeholders_and_strangers_else_before_expiry() {
        let day = Duration::from_secs(86400);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let self_signed = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let now = SystemTime::now();
        let cases: Vec<(&str, String, AcmeConfig, Option<SystemTime>)> = vec![
            ("no file", String::new(), cfg(&["a.example"], None), None),
            ("not PEM", "garbage".into(), cfg(&["a.example"], None), None),
            ("self-signed placeholder", self_signed.cert.pem(), cfg(&["a.example"], None), None),
            (
                "lacks a name",
                issued(&["a.example"], t0, 90),
                cfg(&["a.example", "b.example"], None),
                None,
            ),
            (
                "a third of 90 days",
                issued(&["a.example"], t0, 90),
                cfg(&["a.example"], None),
                Some(t0 + 60 * day),
            ),
            (
                "renew_before 10d",
                issued(&["a.example"], t0, 90),
                cfg(&["a.example"], Some(10 * day)),
                Some(t0 + 80 * day),
            ),
            (
                "renew_before beyond life: half of it",
                issued(&["a.example"], t0, 9),
                cfg(&["a.example"], Some(30 * day)),
                Some(t0 + day * 9 / 2),
            ),
        ];
        for (what, pem, cfg, want) in cases {
            let due = renewal_due(pem.as_bytes(), &cfg);
            match want {
                Some(t) => assert_eq!(due, t, "{what}"),
                None => assert!(due >= now && due <= SystemTime::now(), "{what}: due now"),
            }
        }
    }

    #[tokio::test]
    async fn a_failed_order_keeps_the_served_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls/acme.crt"),
            key: dir.path().join("tls/acme.key"),
        };
        ensure_placeholder(&files, &["a.example".to_owned()]).unwrap();
        let (cert, key) = (std::fs::read(&files.cert).unwrap(), std::fs::read(&files.key).unwrap());
        // Present and usable: not replaced.
        ensure_placeholder(&files, &["a.example".to_owned()]).unwrap();
        assert_eq!(std::fs::read(&files.cert).unwrap(), cert);
        let certs = CertReloader::load(files.clone()).unwrap();
        let mut c = cfg(&["a.example"], None);
        c.account_file = dir.path().join("tls/acme-account.json");
        // Nothing listens on port 1: the order fails and nothing served changes.
        let err = obtain(&c, &certs).await.unwrap_err();
        assert!(matches!(err, AcmeError::Protocol(_)), "{err}");
        assert_eq!(std::fs::read(&files.cert).unwrap(), cert);
        assert_eq!(std::fs::read(&files.key).unwrap(), key);
        assert!(!c.account_file.exists(), "no account was made");
        // A broken pair is replaced by a fresh placeholder, its key private even where a
        // crash left a world-readable temporary file of the same name behind.
        std::fs::write(&files.key, "garbage").unwrap();
        std::fs::write(tmp_path(&files.key), "stale").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let open = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(tmp_path(&files.key), open).unwrap();
        ensure_placeholder(&files, &["a.example".to_owned()]).unwrap();
        assert!(CertReloader::load(files.clone()).is_ok());
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is private");
    }
}
