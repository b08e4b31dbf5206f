//! The demo's own certificate authority: made fresh for each run, kept at `DIR/ca.pem`, and
//! used to issue every node a certificate for `localhost` and its loopback address.
//!
//! The CA key lives only in this process: nothing can be issued from it after the demo stops,
//! so trusting `ca.pem` trusts this run's nodes and nothing else. Node certificates last 397
//! days, the most browsers accept (and over the 60 days below which testssl.sh warns).

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::{io_err, DemoError};

/// A CA for one demo run.
pub struct DemoCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for DemoCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoCa").finish_non_exhaustive()
    }
}

fn setup(e: rcgen::Error) -> DemoError {
    DemoError::Setup(format!("demo CA: {e}"))
}

impl DemoCa {
    /// Makes the CA and writes its certificate to `pem_path`.
    pub fn create(pem_path: &Path) -> Result<Self, DemoError> {
        let key = KeyPair::generate().map_err(setup)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "ODI demo CA (this run only)");
        params.distinguished_name.push(DnType::OrganizationName, "ODI demo");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(398);
        let cert = params.self_signed(&key).map_err(setup)?;
        let pem = cert.pem();
        std::fs::write(pem_path, &pem).map_err(io_err(pem_path))?;
        Ok(Self { issuer: Issuer::new(params, key), pem })
    }

    /// The CA certificate, for an HTTP client.
    pub fn certificate(&self) -> Result<reqwest::Certificate, DemoError> {
        reqwest::Certificate::from_pem(self.pem.as_bytes())
            .map_err(|e| DemoError::Setup(format!("demo CA: {e}")))
    }

    /// Writes `cert.pem` (leaf, then the CA) and `key.pem` into `dir` for `localhost`,
    /// `127.0.0.1`, `::1` and `ip` (when it is a specific address).
    pub fn issue(&self, dir: &Path, ip: IpAddr) -> Result<(), DemoError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate().map_err(setup)?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(setup)?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let mut ips: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        if !ip.is_unspecified() && !ips.contains(&ip) {
            ips.push(ip);
        }
        params.subject_alt_names.extend(ips.into_iter().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(397);
        let cert = params.signed_by(&key, &self.issuer).map_err(setup)?;
        let chain = format!("{}{}", cert.pem(), self.pem);
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, chain).map_err(io_err(&cert_path))?;
        write_private(&key_path, key.serialize_pem().as_bytes())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}
