//! The agent's configuration file, in two stages (as ripgrep does): [`RawConfig`] is the TOML
//! exactly as written, with unknown fields refused; [`Config`] is validated, with durations,
//! addresses, keys and region maps parsed, so the rest of the agent never re-checks them.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use odi_network::signature::PublicKey;
use serde::Deserialize;

pub use crate::http::acme::AcmeConfig;
use crate::http::TlsFiles;

/// What is wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The configuration file, as passed to [`Config::load`].
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// TOML or unknown fields.
    #[error("{path}: {message}")]
    Parse {
        /// The configuration file, as passed to [`Config::load`].
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The configuration file, as passed to [`Config::validate`].
        path: PathBuf,
        /// Dotted TOML key of the bad value, like `reconcile.concurrency`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Which role the agent plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Holds assigned artifacts and serves their bytes.
    Relay,
    /// Holds whole catalogs, probes relays and redirects clients.
    Directory,
}

impl Mode {
    /// The spelling of the `mode` key in the file; also what the status document and logs show.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Relay => "relay",
            Mode::Directory => "directory",
        }
    }
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `relay` or `directory`.
    pub mode: Mode,
    /// This node's name in the network repository.
    pub name: String,
    /// Where the agent keeps its mirror, store and state.
    pub data_dir: PathBuf,
    /// Addresses to listen on, like `0.0.0.0:8080` or `[::]:443`.
    pub listen: Vec<String>,
    /// Threads serving the connections of each listen address (default: one per core).
    #[serde(default)]
    pub http_threads: Option<usize>,
    /// Connections served at once per listen address (default 4096).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Connections served at once for one client address, an IPv6 client by its /64 (default
    /// 128; 0 for no per-address limit, as behind a reverse proxy that all clients come from).
    #[serde(default)]
    pub max_connections_per_address: Option<usize>,
    /// The network repository.
    pub repository: RawRepository,
    /// HTTPS certificate and key (PEM); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Extra CA certificates (PEM) trusted, besides the system's, for the agent's outgoing
    /// HTTPS: origins, relays it probes or fetches from, peer directories. A private CA, or
    /// the one `odi demo --tls` makes.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Tuning of the reconcile loop.
    #[serde(default)]
    pub reconcile: RawReconcile,
    /// Directory mode only.
    #[serde(default)]
    pub directory: RawDirectory,
}

/// `[repository]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    /// `https://`, `http://`, `file://` URL or a local path.
    pub url: String,
    /// Branch to follow.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Pinned root keys: base64 or paths of `.pub` files.
    pub root_keys: Vec<String>,
    /// How often to pull, like `5m`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// File holding the bearer token that authorises `POST /.odi/v1/sync`; no trigger without it.
    #[serde(default)]
    pub trigger_token_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) for an https repository with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// What to do once the applied commit's snapshot or root has expired and no fresh commit
    /// arrives: `serve` (the default) keeps serving the last good state, `refuse` answers
    /// artifact requests with 503 until a fresh commit is applied.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

/// What an agent serves once the trust of its applied commit has expired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    /// Availability: keep serving the last good state (the bytes are still verified against
    /// its catalogs), and say so (Stalled condition, metric, log). A frozen repository can
    /// then keep an artifact expunged after the freeze available; see docs/security.adoc.
    #[default]
    Serve,
    /// Integrity: answer artifact requests with 503 until a fresh snapshot and root arrive.
    Refuse,
}

fn default_branch() -> String {
    "main".into()
}
fn default_interval() -> String {
    "5m".into()
}

/// `[tls]`: certificate files, or `[tls.acme]` to obtain and renew one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Certificate chain, PEM (with `key`; not with `[tls.acme]`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// `max-age` of `Strict-Transport-Security` on HTTPS answers (default `365d`); `off`
    /// sends none, `0s` tells browsers to forget an earlier one.
    #[serde(default)]
    pub hsts: Option<String>,
    /// Offer HTTP/2 in ALPN (default true).
    #[serde(default)]
    pub http2: Option<bool>,
    /// Obtain the certificate from an ACME CA (RFC 8555).
    #[serde(default)]
    pub acme: Option<RawAcme>,
}

/// `[tls.acme]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The CA's directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact URLs for the account, e.g. `mailto:ops@example.org`.
    #[serde(default)]
    pub contact: Vec<String>,
    /// DNS names the certificate is for; every one must reach this agent's HTTPS port 443
    /// (TLS-ALPN-01 validation).
    pub names: Vec<String>,
    /// Extra CA certificate (PEM) trusted for the ACME server itself: a private or test CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Renew when this much of the certificate's life is left (default: a third of it).
    #[serde(default)]
    pub renew_before: Option<String>,
}

/// Validated `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The files served; with ACME, `DATA_DIR/tls/acme.crt` and `acme.key`, which the ACME
    /// task writes (and the server reloads).
    pub files: TlsFiles,
    /// HSTS `max-age`; `None`: no header.
    pub hsts: Option<Duration>,
    /// Offer `h2`.
    pub http2: bool,
    /// Obtain and renew `files` by ACME.
    pub acme: Option<AcmeConfig>,
}

/// `[reconcile]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconcile {
    /// Parallel downloads (default 4).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Abort a download that sends nothing for this long (default `30s`).
    #[serde(default)]
    pub stall_timeout: Option<String>,
    /// How often to re-hash the whole store (default `24h`; `0s` disables).
    #[serde(default)]
    pub scrub_interval: Option<String>,
    /// Retry failed downloads after this long (default `1m`).
    #[serde(default)]
    pub retry_after: Option<String>,
}

/// `[directory]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirectory {
    /// How often to probe relays (default `30s`).
    #[serde(default)]
    pub probe_interval: Option<String>,
    /// Client address prefixes to regions, like `{ "10.1.0.0/16" = "eu" }`.
    #[serde(default)]
    pub regions: std::collections::BTreeMap<String, String>,
    /// A MaxMind-format City or Country database (GeoIP2, GeoLite2, DB-IP): clients are sent
    /// to relays in their country, then continent, then the nearest.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// A MaxMind-format ASN database: clients go to relays in their own network first.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Downloads per artifact per hour above which it is hot (default 100).
    #[serde(default)]
    pub hot_threshold: Option<u64>,
    /// Extra replicas a hot artifact gets (default 1).
    #[serde(default)]
    pub hot_extra_replicas: Option<u32>,
    /// How many `Link: rel=duplicate` headers at most (default 5).
    #[serde(default)]
    pub max_links: Option<usize>,
}

/// Validated configuration: defaults filled in, paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    /// Decides whether the agent starts as a relay or a directory; fixed for the process.
    pub mode: Mode,
    /// The key of this node's entry in the network repository, checked as a safe name.
    pub name: String,
    /// Holds `network.git`, `state.json` and `store/` (and a directory's `stats.redb`).
    pub data_dir: PathBuf,
    /// At least one; each address gets its own listener with the same TLS and limits.
    pub listen: Vec<SocketAddr>,
    /// Threads serving the connections of each listen address.
    pub http_threads: usize,
    /// Connections served at once per listen address.
    pub max_connections: usize,
    /// Connections served at once for one client address (`usize::MAX`: no limit).
    pub max_connections_per_address: usize,
    /// A `://` URL as written, or a local path resolved against the config file's folder.
    pub repo_url: String,
    /// Branch to follow (default `main`); only fast-forwards of it are applied.
    pub branch: String,
    /// At least one; the root chain is verified from these (base64 or `.pub` files).
    pub root_keys: Vec<PublicKey>,
    /// Time between pulls, at least 100ms; jittered by 10% so a fleet does not pull in lockstep.
    pub pull_interval: Duration,
    /// Bearer token of `POST /.odi/v1/sync`, 16 characters or more; `None`: no trigger (404).
    pub trigger_token: Option<String>,
    /// What to serve once the applied commit's trust has expired.
    pub on_expiry: OnExpiry,
    /// Extra CA for the repository.
    pub repo_ca_pem: Option<Vec<u8>>,
    /// HTTPS on every listen address; `None` serves plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `ca_file`'s certificates, trusted for outgoing HTTPS besides the system's.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Downloads the reconcile loop runs at once (1 to 256, default 4).
    pub concurrency: usize,
    /// A download is aborted when headers or the next body chunk take longer (default 30s).
    pub stall_timeout: Duration,
    /// Scrub interval; zero disables.
    pub scrub_interval: Duration,
    /// Retry delay for failed downloads.
    pub retry_after: Duration,
    /// Validated `[directory]`; filled with defaults in relay mode too, where nothing reads it.
    pub directory: DirectoryConfig,
}

/// Validated `[directory]`.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Time between probe rounds, jittered by 10% (default 30s); probe timeouts derive from it.
    pub probe_interval: Duration,
    /// Prefix to region, longest prefix wins.
    pub regions: Vec<(IpNet, String)>,
    /// A MaxMind-format City or Country database, reloaded when the file changes.
    pub geoip_db: Option<PathBuf>,
    /// A MaxMind-format ASN database, reloaded when the file changes.
    pub asn_db: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` decides a client's region; a bare address is a /32 or /128.
    pub trusted_proxies: Vec<IpNet>,
    /// An artifact with more downloads than this in the last hour is hot (default 100).
    pub hot_threshold: u64,
    /// Extra replicas for hot artifacts.
    pub hot_extra_replicas: u32,
    /// Most `rel=duplicate` links.
    pub max_links: usize,
}

impl DirectoryConfig {
    /// The region of a client address from the prefix map (longest match).
    pub fn region_of(&self, ip: IpAddr) -> Option<&str> {
        self.regions
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, r)| r.as_str())
    }
}

/// Validates `[tls]`; `data_dir` is where ACME keeps its files.
fn tls_config(
    t: RawTls,
    data_dir: &Path,
    rel: &dyn Fn(&Path) -> PathBuf,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<TlsConfig, ConfigError> {
    let hsts = match t.hsts.as_deref().map(str::trim) {
        None => Some(Duration::from_secs(365 * 86400)),
        Some("off") => None,
        Some(v) => Some(parse_duration(v).map_err(|m| invalid("tls.hsts", m))?),
    };
    let tls_dir = data_dir.join("tls");
    let (files, acme) = match (t.cert, t.key, t.acme) {
        (Some(cert), Some(key), None) => (TlsFiles { cert: rel(&cert), key: rel(&key) }, None),
        (None, None, Some(a)) => {
            let u = url::Url::parse(&a.directory)
                .map_err(|e| invalid("tls.acme.directory", format!("`{}`: {e}", a.directory)))?;
            let loopback = match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
                return Err(invalid("tls.acme.directory", "must be an https:// URL".into()));
            }
            if a.names.is_empty() {
                return Err(invalid("tls.acme.names", "at least one DNS name is needed".into()));
            }
            let mut names = Vec::new();
            for n in &a.names {
                let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
                let ok = !n.is_empty()
                    && n.len() <= 253
                    && n.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !ok {
                    return Err(invalid(
                        "tls.acme.names",
                        format!("`{n}` is not a DNS name (TLS-ALPN-01 cannot validate wildcards)"),
                    ));
                }
                names.push(n);
            }
            for c in &a.contact {
                if !c.contains(':') {
                    return Err(invalid(
                        "tls.acme.contact",
                        format!("`{c}` is not a URL like mailto:ops@example.org"),
                    ));
                }
            }
            let ca_pem = match &a.ca_file {
                Some(f) => {
                    let bad =
                        |m: String| invalid("tls.acme.ca_file", format!("{}: {m}", f.display()));
                    let pem = std::fs::read(rel(f)).map_err(|e| bad(e.to_string()))?;
                    // Checked now, not at the first order: a bad file is a start-up error.
                    match reqwest::Certificate::from_pem_bundle(&pem) {
                        Ok(certs) if !certs.is_empty() => Some(pem),
                        Ok(_) => return Err(bad("no PEM certificate".into())),
                        Err(e) => return Err(bad(e.to_string())),
                    }
                }
                None => None,
            };
            let renew_before = match &a.renew_before {
                Some(v) => {
                    Some(parse_duration(v).map_err(|m| invalid("tls.acme.renew_before", m))?)
                }
                None => None,
            };
            let files = TlsFiles { cert: tls_dir.join("acme.crt"), key: tls_dir.join("acme.key") };
            let account_file = crate::http::acme::account_file(&tls_dir, &a.directory);
            let acme = AcmeConfig {
                directory: a.directory,
                contact: a.contact,
                names,
                ca_pem,
                renew_before,
                account_file,
            };
            (files, Some(acme))
        }
        (_, _, Some(_)) => {
            return Err(invalid("tls", "cert and key files or [tls.acme], not both".into()))
        }
        _ => return Err(invalid("tls", "needs cert and key files, or [tls.acme]".into())),
    };
    Ok(TlsConfig { files, hsts, http2: t.http2.unwrap_or(true), acme })
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 30s, 5m or 1h"))?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("`{s}` has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let raw: RawConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        Self::validate(raw, path)
    }

    /// Validates a parsed file; `path` names it in errors and anchors relative paths.
    pub fn validate(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| if p.is_absolute() { p.to_owned() } else { base.join(p) };
        let dur =
            |field: &str, v: Option<&str>, default: Duration| -> Result<Duration, ConfigError> {
                v.map_or(Ok(default), |s| parse_duration(s).map_err(|m| invalid(field, m)))
            };
        odi_network::safe_path::check_name(&raw.name).map_err(|m| invalid("name", m.into()))?;
        if raw.listen.is_empty() {
            return Err(invalid("listen", "at least one address is needed".into()));
        }
        let listen = raw
            .listen
            .iter()
            .map(|a| {
                a.parse().map_err(|_| {
                    invalid("listen", format!("`{a}` is not an address like 0.0.0.0:8080"))
                })
            })
            .collect::<Result<_, _>>()?;
        if raw.repository.root_keys.is_empty() {
            return Err(invalid("repository.root_keys", "pin at least one root key".into()));
        }
        let mut root_keys = Vec::new();
        for k in &raw.repository.root_keys {
            let p = rel(Path::new(k));
            let text = if p.is_file() {
                std::fs::read_to_string(&p)
                    .map_err(|e| invalid("repository.root_keys", format!("{}: {e}", p.display())))?
            } else {
                k.clone()
            };
            root_keys.push(
                PublicKey::parse(&text)
                    .map_err(|e| invalid("repository.root_keys", e.to_string()))?,
            );
        }
        let trigger_token = match &raw.repository.trigger_token_file {
            Some(f) => {
                let t = std::fs::read_to_string(rel(f))
                    .map_err(|e| invalid("repository.trigger_token_file", e.to_string()))?
                    .trim()
                    .to_owned();
                if t.len() < 16 {
                    return Err(invalid(
                        "repository.trigger_token_file",
                        "the token must be at least 16 characters".into(),
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let repo_ca_pem = match &raw.repository.ca_file {
            Some(f) => Some(
                std::fs::read(rel(f)).map_err(|e| invalid("repository.ca_file", e.to_string()))?,
            ),
            None => None,
        };
        let extra_roots = match &raw.ca_file {
            Some(f) => {
                let pem = std::fs::read(rel(f))
                    .map_err(|e| invalid("ca_file", format!("{}: {e}", f.display())))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| invalid("ca_file", format!("{}: {e}", f.display())))?;
                if certs.is_empty() {
                    return Err(invalid("ca_file", format!("{}: no PEM certificate", f.display())));
                }
                certs
            }
            None => Vec::new(),
        };
        let repo_url = if raw.repository.url.contains("://") {
            raw.repository.url.clone()
        } else {
            rel(Path::new(&raw.repository.url)).display().to_string()
        };
        let d = &raw.directory;
        let regions = d
            .regions
            .iter()
            .map(|(net, region)| {
                net.parse::<IpNet>().map(|n| (n, region.clone())).map_err(|_| {
                    invalid("directory.regions", format!("`{net}` is not a prefix like 10.0.0.0/8"))
                })
            })
            .collect::<Result<_, _>>()?;
        let trusted_proxies = d
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpNet>().or_else(|_| p.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
                    invalid(
                        "directory.trusted_proxies",
                        format!("`{p}` is not an address or prefix"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let http_threads = raw.http_threads.unwrap_or_else(crate::http::server::default_threads);
        if http_threads == 0 || http_threads > 1024 {
            return Err(invalid("http_threads", "must be between 1 and 1024".into()));
        }
        let max_connections = raw.max_connections.unwrap_or(4096);
        if max_connections == 0 || max_connections > 1_000_000 {
            return Err(invalid("max_connections", "must be between 1 and 1000000".into()));
        }
        let max_connections_per_address = match raw.max_connections_per_address {
            None => 128,
            Some(0) => usize::MAX,
            Some(n) => n,
        };
        let concurrency = raw.reconcile.concurrency.unwrap_or(4);
        if concurrency == 0 || concurrency > 256 {
            return Err(invalid("reconcile.concurrency", "must be between 1 and 256".into()));
        }
        let pull_interval = parse_duration(&raw.repository.interval)
            .map_err(|m| invalid("repository.interval", m))?;
        if pull_interval < Duration::from_millis(100) {
            return Err(invalid("repository.interval", "must be at least 100ms".into()));
        }
        Ok(Config {
            mode: raw.mode,
            name: raw.name,
            data_dir: rel(&raw.data_dir),
            listen,
            http_threads,
            max_connections,
            max_connections_per_address,
            repo_url,
            branch: raw.repository.branch,
            root_keys,
            pull_interval,
            trigger_token,
            on_expiry: raw.repository.on_expiry,
            repo_ca_pem,
            extra_roots,
            tls: match raw.tls {
                Some(t) => Some(tls_config(t, &rel(&raw.data_dir), &rel, &invalid)?),
                None => None,
            },
            concurrency,
            stall_timeout: dur(
                "reconcile.stall_timeout",
                raw.reconcile.stall_timeout.as_deref(),
                Duration::from_secs(30),
            )?,
            scrub_interval: dur(
                "reconcile.scrub_interval",
                raw.reconcile.scrub_interval.as_deref(),
                Duration::from_secs(86400),
            )?,
            retry_after: dur(
                "reconcile.retry_after",
                raw.reconcile.retry_after.as_deref(),
                Duration::from_secs(60),
            )?,
            directory: DirectoryConfig {
                probe_interval: dur(
                    "directory.probe_interval",
                    d.probe_interval.as_deref(),
                    Duration::from_secs(30),
                )?,
                regions,
                geoip_db: d.geoip_db.as_ref().map(|p| rel(p)),
                asn_db: d.asn_db.as_ref().map(|p| rel(p)),
                trusted_proxies,
                hot_threshold: d.hot_threshold.unwrap_or(100),
                hot_extra_replicas: d.hot_extra_replicas.unwrap_or(1),
                max_links: d.max_links.unwrap_or(5),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn shipped_examples_parse() {
        for text in [
            include_str!("../../dist/relay.example.toml"),
            include_str!("../../dist/directory.example.toml"),
        ] {
            let raw: RawConfig = toml::from_str(text).unwrap();
            assert!(raw.repository.root_keys.len() == 2);
        }
    }

    #[test]
    fn http_threads_are_bounded() {
        let with = |threads: &str| {
            let text = format!(
                "mode='relay'\nname='x'\ndata_dir='d'\nlisten=['127.0.0.1:0']\n{threads}\n[repository]\nurl='u'\nroot_keys=['RWQfTyCvJGMEtZKZJqRa316GjVgsG4Nr3/qcvSKyrv7KPsIMIQsBOxvj']"
            );
            Config::validate(
                toml::from_str::<RawConfig>(&text).unwrap(),
                Path::new("/etc/odi/relay.toml"),
            )
        };
        assert_eq!(with("http_threads = 3").unwrap().http_threads, 3);
        assert!(with("").unwrap().http_threads >= 1, "one per core by default");
        for bad in ["http_threads = 0", "http_threads = 5000"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("http_threads") && err.contains("between 1 and 1024"),
                "{bad}: {err}"
            );
        }
    }

    fn with_tls(tls: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "mode='relay'\nname='x'\ndata_dir='d'\nlisten=['127.0.0.1:0']\n[repository]\nurl='u'\nroot_keys=['RWQfTyCvJGMEtZKZJqRa316GjVgsG4Nr3/qcvSKyrv7KPsIMIQsBOxvj']\n{tls}"
        );
        Config::validate(toml::from_str::<RawConfig>(&text).unwrap(), Path::new("/etc/odi/r.toml"))
    }

    #[test]
    fn tls_settings() {
        let t = with_tls("[tls]\ncert='c.pem'\nkey='k.pem'").unwrap().tls.unwrap();
        assert_eq!(t.files.cert, Path::new("/etc/odi/c.pem"));
        assert_eq!(t.hsts, Some(Duration::from_secs(365 * 86400)), "HSTS for a year by default");
        assert!(t.http2 && t.acme.is_none());
        let t = with_tls("[tls]\ncert='c'\nkey='k'\nhsts='off'\nhttp2=false").unwrap().tls.unwrap();
        assert_eq!((t.hsts, t.http2), (None, false));
        let t = with_tls(
            "[tls]\n[tls.acme]\ndirectory='https://ca.example/dir'\nnames=['Relay.Example.org.']\ncontact=['mailto:a@b']",
        )
        .unwrap()
        .tls
        .unwrap();
        let acme = t.acme.unwrap();
        assert_eq!(acme.names, ["relay.example.org"]);
        assert_eq!(t.files.cert, Path::new("/etc/odi/d/tls/acme.crt"), "kept in the data dir");
        let account = acme.account_file.to_string_lossy().into_owned();
        assert!(account.starts_with("/etc/odi/d/tls/acme-account-"), "{account}");
        let other =
            with_tls("[tls]\n[tls.acme]\ndirectory='https://staging.example/dir'\nnames=['a.b']")
                .unwrap()
                .tls
                .unwrap()
                .acme
                .unwrap();
        assert_ne!(other.account_file, acme.account_file, "one account per CA");
        assert!(with_tls("[tls]\n[tls.acme]\ndirectory='http://127.0.0.1:1/dir'\nnames=['a.b']")
            .is_ok());
    }

    #[test]
    fn bad_tls_settings_are_named() {
        let acme = |more: &str| format!("[tls]\n[tls.acme]\ndirectory='https://ca/dir'\n{more}");
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), "not a certificate").unwrap();
        let cases: &[(&str, &str)] = &[
            ("[tls]\ncert='c'", "needs cert and key files"),
            ("[tls]", "needs cert and key files"),
            ("[tls]\ncert='c'\nkey='k'\nhsts='forever'", "tls.hsts"),
            (&acme("names=[]"), "tls.acme.names"),
            (&acme("names=['*.example.org']"), "is not a DNS name"),
            (&acme("names=['a..b']"), "is not a DNS name"),
            (&acme("names=['-a.b']"), "is not a DNS name"),
            (&acme("names=['a.b']\ncontact=['ops@example.org']"), "tls.acme.contact"),
            (&acme("names=['a.b']\nrenew_before='soon'"), "tls.acme.renew_before"),
            (&acme("names=['a.b']\nca_file='/nonexistent/ca.pem'"), "tls.acme.ca_file"),
            (
                &acme(&format!("names=['a.b']\nca_file='{}'", junk.path().display())),
                "no PEM certificate",
            ),
            (
                "[tls]\n[tls.acme]\ndirectory='http://ca.example/dir'\nnames=['a.b']",
                "must be an https:// URL",
            ),
            ("[tls]\n[tls.acme]\ndirectory='not a url'\nnames=['a.b']", "tls.acme.directory"),
            (
                "[tls]\ncert='c'\nkey='k'\n[tls.acme]\ndirectory='https://ca/d'\nnames=['a.b']",
                "not both",
            ),
        ];
        for (tls, want) in cases {
            let err = with_tls(tls).unwrap_err().to_string();
            assert!(err.contains(want), "{tls}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<RawConfig>("mode='relay'\nname='x'\ndata_dir='d'\nlisten=[]\nbogus=1\n[repository]\nurl='u'\nroot_keys=[]").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
