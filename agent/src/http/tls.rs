//! HTTPS: a rustls server configuration built from PEM certificate-chain and
//! key files, reloaded when those files change. The certificate is served
//! through a resolver that reads the current key from a lock, so a reload is
//! one pointer swap and handshakes in flight keep the key they started with.
//! A new certificate that fails to load is logged and the old one kept: a
//! half-written renewal must never take the server off the air.
//!
//! The resolver also answers ACME TLS-ALPN-01 validations (RFC 8737): a handshake that offers
//! only `acme-tls/1` gets the challenge certificate set for its server name, or none at all.
//! ALPN offers `h2` first, then `http/1.1`; the server's cipher order wins, and TLS 1.3
//! tickets (and TLS 1.2 session IDs) let returning clients skip the full handshake.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest as _;
use tokio_util::sync::CancellationToken;

/// PEM files for HTTPS; reloaded when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How often the files are re-checked even without a change notification:
/// inotify misses changes on some network and container filesystems.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Writers replace the cert and key as separate files; wait this long after
/// a notification so both are in place before reading.
const SETTLE: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found")]
    NoKey { path: PathBuf },
    #[error("{cert} / {key}: {source}")]
    BadKey { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
    #[error("cannot watch {path} for changes: {source}")]
    Watch { path: PathBuf, source: notify::Error },
}

/// The ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The ALPN protocol of HTTP/2.
pub const H2_ALPN: &[u8] = b"h2";

/// Serves the current certificate and knows how to reload it.
#[derive(Debug)]
pub struct CertReloader {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// TLS-ALPN-01 challenge certificates by (lower-case) server name, set while an ACME
    /// validation is pending.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Hash of the cert+key bytes last attempted (good or bad), so an
    /// unchanged bad file is reported once, not on every poll.
    last_attempt: Mutex<[u8; 32]>,
}

impl CertReloader {
    /// Loads the files; fails if they do not hold a usable cert and key.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = certified_key(&files, &cert_pem, &key_pem)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
            challenges: RwLock::new(HashMap::new()),
            last_attempt: Mutex::new(pair_hash(&cert_pem, &key_pem)),
            files,
        }))
    }

    /// The certificate handshakes currently get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a valid Arc: the writer only swaps it.
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// The files this serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Answers TLS-ALPN-01 validations of `name` with `key` until [`Self::clear_challenge`].
    pub fn set_challenge(&self, name: &str, key: CertifiedKey) {
        let mut c = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        c.insert(name.to_ascii_lowercase(), Arc::new(key));
    }

    /// Stops answering validations of `name`.
    pub fn clear_challenge(&self, name: &str) {
        let mut c = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        c.remove(&name.to_ascii_lowercase());
    }

    fn challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let c = self.challenges.read().unwrap_or_else(|p| p.into_inner());
        c.get(&name.to_ascii_lowercase()).cloned()
    }

    /// Re-reads the files. `Ok(true)` when a new certificate was installed,
    /// `Ok(false)` when the files are unchanged since the last attempt; on
    /// error the old certificate stays in place.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.files)?;
        let hash = pair_hash(&cert_pem, &key_pem);
        {
            let mut last = crate::locks::lock(&self.last_attempt);
            if *last == hash {
                return Ok(false);
            }
            *last = hash;
        }
        let key = certified_key(&self.files, &cert_pem, &key_pem)?;
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        *cur = Arc::new(key);
        Ok(true)
    }

    /// Forgets the last attempt so the next `reload` re-parses even if the
    /// bytes are the same (used after a read error mid-rename).
    fn forget_attempt(&self) {
        let mut last = crate::locks::lock(&self.last_attempt);
        *last = [0; 32];
    }

    fn reload_and_log(&self) {
        match self.reload() {
            Ok(true) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded")
            }
            Ok(false) => {}
            Err(e) => {
                if matches!(e, TlsError::Read { .. }) {
                    self.forget_attempt();
                }
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the previous certificate");
            }
        }
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737: a validation offers `acme-tls/1` and nothing else.
        let acme =
            hello.alpn().is_some_and(|mut p| p.next() == Some(ACME_TLS_ALPN) && p.next().is_none());
        if acme {
            // A validator gets the challenge certificate or nothing: never the real one,
            // which would only fail its check with a misleading error.
            return hello.server_name().and_then(|name| self.challenge(name));
        }
        Some(self.current())
    }
}

/// A rustls server configuration using `resolver`: ALPN `h2` (when `http2`), `http/1.1` and
/// `acme-tls/1`; the server's cipher suite order; resumption by tickets and session IDs.
pub fn server_config(
    resolver: Arc<CertReloader>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = Vec::new();
    if http2 {
        cfg.alpn_protocols.push(H2_ALPN.to_vec());
    }
    cfg.alpn_protocols.extend([b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]);
    // ring's suites in rustls' order: AES-GCM before ChaCha20, all AEAD with forward secrecy;
    // the client's preference would let it pick a weaker one where both are offered.
    cfg.ignore_client_order = true;
    // Tickets are encrypted with keys that rotate every 6 hours; the session-ID cache (for
    // TLS 1.2 clients) stays as rustls sizes it.
    cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
    Ok(Arc::new(cfg))
}

/// Loads the files and starts watching them for changes until `shutdown` fires.
pub fn start(
    files: &TlsFiles,
    poll_interval: Duration,
    shutdown: CancellationToken,
) -> Result<Arc<CertReloader>, TlsError> {
    let reloader = CertReloader::load(files.clone())?;
    watch(Arc::clone(&reloader), poll_interval, shutdown)?;
    Ok(reloader)
}

/// Reloads `reloader` on file-system events in the files' parent
/// directories (watching directories catches atomic rename-into-place and
/// Kubernetes-style symlink swaps) and every `poll_interval` regardless.
pub fn watch(
    reloader: Arc<CertReloader>,
    poll_interval: Duration,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, TlsError> {
    use notify::Watcher as _;
    let changed = Arc::new(tokio::sync::Notify::new());
    let tx = Arc::clone(&changed);
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Any event may matter (renames, symlink swaps); reload compares
        // file contents, so spurious wake-ups cost one read.
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            tx.notify_one();
        }
    })
    .map_err(|source| TlsError::Watch { path: reloader.files.cert.clone(), source })?;
    let mut dirs: Vec<PathBuf> =
        [&reloader.files.cert, &reloader.files.key].iter().map(|p| parent_dir(p)).collect();
    dirs.dedup();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| TlsError::Watch { path: dir.clone(), source })?;
    }
    Ok(tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        let mut tick = tokio::time::interval(poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = changed.notified() => tokio::time::sleep(SETTLE).await,
                _ = tick.tick() => {}
            }
            let r = Arc::clone(&reloader);
            // File reads and key parsing are blocking work.
            if let Err(e) = tokio::task::spawn_blocking(move || r.reload_and_log()).await {
                tracing::error!(error = %e, "TLS reload task failed");
            }
        }
    }))
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|source| TlsError::Read { path: p.clone(), source });
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn pair_hash(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

fn certified_key(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read { path: files.cert.clone(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: files.cert.clone() });
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem))
        .map_err(|source| TlsError::Read { path: files.key.clone(), source })?
        .ok_or_else(|| TlsError::NoKey { path: files.key.clone() })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map_err(|source| TlsError::BadKey {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// Accepts any server certificate: tests talk to self-signed servers on loopback.
    #[derive(Debug)]
    struct AcceptAny;

    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A TLS client for test servers: any certificate is accepted.
    pub(crate) fn insecure_connector() -> tokio_rustls::TlsConnector {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    /// Writes a self-signed cert/key for `cn` with the `openssl` CLI; `None`
    /// (test skipped) where openssl is not installed.
    pub(crate) fn self_signed(dir: &Path, cn: &str) -> Option<TlsFiles> {
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        let tmp_c = dir.join(format!("{cn}.crt.tmp"));
        let tmp_k = dir.join(format!("{cn}.key.tmp"));
        let ok = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
            ])
            .arg(format!("/CN={cn}"))
            .args(["-addext"])
            .arg(format!("subjectAltName=DNS:{cn}"))
            .arg("-keyout")
            .arg(&tmp_k)
            .arg("-out")
            .arg(&tmp_c)
            .output()
            .ok()?
            .status
            .success();
        if !ok {
            return None;
        }
        std::fs::rename(&tmp_k, &key).ok()?;
        std::fs::rename(&tmp_c, &cert).ok()?;
        Some(TlsFiles { cert, key })
    }

    /// HTTPS settings serving `files`, watched until the test's runtime ends.
    pub(crate) fn settings(files: &TlsFiles) -> crate::http::server::TlsSettings {
        let certs = start(files, DEFAULT_POLL_INTERVAL, CancellationToken::new()).unwrap();
        let year = Some(Duration::from_secs(365 * 86400));
        crate::http::server::TlsSettings::new(certs, year, true).unwrap()
    }

    fn end_entity(r: &CertReloader) -> Vec<u8> {
        r.current().cert[0].as_ref().to_vec()
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let files =
            TlsFiles { cert: dir.path().join("missing.crt"), key: dir.path().join("missing.key") };
        assert!(matches!(CertReloader::load(files.clone()), Err(TlsError::Read { .. })));
        std::fs::write(&files.cert, "not pem").unwrap();
        std::fs::write(&files.key, "not pem").unwrap();
        assert!(matches!(CertReloader::load(files), Err(TlsError::NoCertificate { .. })));
    }

    #[tokio::test]
    async fn reloads_on_change_and_keeps_old_on_bad() {
        let dir = tempfile::tempdir().unwrap();
        let Some(files) = self_signed(dir.path(), "one.test") else {
            eprintln!("openssl not available; skipping");
            return;
        };
        let r = CertReloader::load(files.clone()).unwrap();
        let first = end_entity(&r);
        assert!(!r.reload().unwrap(), "unchanged files are not reloaded");

        // A broken key: error, old cert kept.
        std::fs::write(&files.key, "garbage").unwrap();
        assert!(r.reload().is_err());
        assert_eq!(end_entity(&r), first);

        // A fresh pair, picked up by the watcher (poll interval is long, so
        // this exercises the notification path).
        let shutdown = CancellationToken::new();
        let task = watch(Arc::clone(&r), Duration::from_secs(3600), shutdown.clone()).unwrap();
        self_signed(dir.path(), "two.test").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while end_entity(&r) == first {
            assert!(tokio::time::Instant::now() < deadline, "certificate was not reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }
}
