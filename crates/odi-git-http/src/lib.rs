//! A git smart-HTTP transport for libgit2, implemented over `reqwest` with rustls.
//!
//! Agents fetch the network repository over `https://`. libgit2's own HTTPS support needs
//! OpenSSL (or another system TLS library), and the project keeps OpenSSL out of the
//! dependency tree entirely, so `git2` is built without it and this crate plugs a transport
//! for `http://` and `https://` into libgit2 instead, in the way `git2-curl` does with curl.
//!
//! Only fetching is supported (the smart protocol's `git-upload-pack` service, stateless
//! RPC as in git's own smart HTTP). Agents never push, so `git-receive-pack` is refused.
//!
//! Call [`register`] once, early, before any `git2` fetch. The transport does blocking I/O
//! and must not run on an async runtime's worker thread (use `spawn_blocking` there).

use std::io::{self, Read, Write};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use git2::{ErrorClass, ErrorCode};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{redirect, StatusCode};

#[cfg(feature = "test-server")]
pub mod testing;

/// Used when [`HttpOptions::connect_timeout`] is `None`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Used when [`HttpOptions::timeout`] is `None`. It bounds each wait for the server (for
/// response headers, then for every read of the body), not the whole transfer, so a large
/// but steadily progressing fetch never times out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Redirects are allowed on the ref advertisement only (as in git), and this many at most.
const MAX_REDIRECTS: usize = 10;

const UPLOAD_PACK_ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";
const UPLOAD_PACK_REQUEST: &str = "application/x-git-upload-pack-request";
const UPLOAD_PACK_RESULT: &str = "application/x-git-upload-pack-result";
const INFO_REFS_SUFFIX: &str = "/info/refs?service=git-upload-pack";

/// Options for the transport; Default gives sane timeouts and the system roots.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// PEM certificates trusted in addition to the system's roots (a private CA, or a
    /// self-signed test server). Each entry may hold several certificates.
    pub extra_root_certs_pem: Vec<Vec<u8>>,
    /// Limit for establishing a TCP (and TLS) connection; `None` means
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Duration>,
    /// Limit for each wait on the server (response headers, each body read); `None` means
    /// [`DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// Why [`register`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry of [`HttpOptions::extra_root_certs_pem`] is not usable PEM.
    #[error("extra root certificate #{index} is not a valid PEM certificate: {source}")]
    InvalidRootCertificate {
        /// Position in [`HttpOptions::extra_root_certs_pem`].
        index: usize,
        /// What reqwest/rustls reported.
        #[source]
        source: reqwest::Error,
    },
    /// An entry of [`HttpOptions::extra_root_certs_pem`] holds no certificate at all.
    #[error("extra root certificate #{index} contains no PEM certificate")]
    NoCertificateInPem {
        /// Position in [`HttpOptions::extra_root_certs_pem`].
        index: usize,
    },
    /// The HTTP client could not be built (for example the TLS setup failed).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// libgit2 refused the transport registration.
    #[error("cannot register the git HTTP transport with libgit2: {0}")]
    Register(#[source] git2::Error),
}

/// Registers the transport for "http://" and "https://" once per process (later calls are no-ops
/// that return Ok; the options of the first call win). Must be called before any fetch.
///
/// Call it outside an async runtime (before building one, or in `spawn_blocking`): the
/// blocking HTTP client refuses to be created on a runtime thread. If the options are
/// invalid nothing is registered, and a later call may try again.
pub fn register(options: HttpOptions) -> Result<(), Error> {
    static REGISTER: Once = Once::new();
    // Holds libgit2's verdict so every caller sees the same outcome.
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();

    if let Some(outcome) = OUTCOME.get() {
        return outcome_to_result(outcome);
    }
    // Built before the Once so that bad options leave the transport unregistered and a
    // later call with fixed options can still succeed.
    let client = build_client(&options)?;
    REGISTER.call_once(move || {
        let result = register_prefixes(client);
        // Only this closure ever sets OUTCOME, and it runs once.
        let _ = OUTCOME.set(result.map_err(|e| e.message().to_owned()));
    });
    match OUTCOME.get() {
        Some(outcome) => outcome_to_result(outcome),
        // call_once returns only after the closure completed (or panicked, which poisons
        // the Once and propagates the panic to us instead).
        None => Ok(()),
    }
}

fn outcome_to_result(outcome: &Result<(), String>) -> Result<(), Error> {
    outcome.clone().map_err(|message| Error::Register(git2::Error::from_str(&message)))
}

fn register_prefixes(client: Client) -> Result<(), git2::Error> {
    // libgit2 appends "://" itself.
    for prefix in ["http", "https"] {
        let client = client.clone();
        // SAFETY: `git2::transport::register` is unsafe because libgit2's table of custom
        // transports is not locked: registering must not race with another registration or
        // with libgit2 looking a transport up. This runs exactly once per process (inside
        // the `Once` in `register`, so there is no second registration), and the crate's
        // contract is that `register` is called before any fetch, so no lookup runs
        // concurrently. The factory is `Send + Sync + 'static` and owns what it uses.
        #[allow(unsafe_code)]
        unsafe {
            git2::transport::register(prefix, move |remote| {
                Transport::smart(remote, true, HttpSubtransport::new(client.clone()))
            })?;
        }
    }
    Ok(())
}

fn build_client(options: &HttpOptions) -> Result<Client, Error> {
    let mut builder = Client::builder()
        .user_agent(concat!("odi/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
        .timeout(options.timeout.unwrap_or(DEFAULT_TIMEOUT))
        .redirect(redirect::Policy::custom(|attempt| {
            // Never let a redirect silently drop TLS: the repository's signatures protect
            // content, but not privacy or freshness of the ref advertisement.
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade {
                attempt.error("refusing a redirect from https:// to http://")
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        }));
    for (index, pem) in options.extra_root_certs_pem.iter().enumerate() {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|source| Error::InvalidRootCertificate { index, source })?;
        if certs.is_empty() {
            // An entry without any certificate is almost certainly a wrong file; trusting
            // nothing extra would surface much later as a confusing certificate error.
            return Err(Error::NoCertificateInPem { index });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(Error::Client)
}

/// One instance per libgit2 remote connection; remembers where the ref advertisement was
/// finally served from, so the pack request follows a redirect of the advertisement.
struct HttpSubtransport {
    client: Client,
    base_url: Mutex<Option<String>>,
}

impl HttpSubtransport {
    fn new(client: Client) -> Self {
        Self { client, base_url: Mutex::new(None) }
    }

    fn base_for(&self, url: &str) -> String {
        let stored = self.base_url.lock().unwrap_or_else(|e| e.into_inner());
        stored.clone().unwrap_or_else(|| url.trim_end_matches('/').to_owned())
    }

    fn advertise_refs(&self, url: &str) -> Result<Response, git2::Error> {
        let base = url.trim_end_matches('/');
        let request_url = format!("{base}{INFO_REFS_SUFFIX}");
        tracing::debug!(url = %request_url, "git http: fetching ref advertisement");
        let response = self
            .client
            .get(&request_url)
            .header(ACCEPT, "*/*")
            .send()
            .map_err(|e| request_error("GET", &request_url, e))?;
        let final_url = response.url().as_str().to_owned();
        check_response("GET", &final_url, &response, UPLOAD_PACK_ADVERTISEMENT)?;
        let new_base = match final_url.strip_suffix(INFO_REFS_SUFFIX) {
            Some(new_base) => new_base.to_owned(),
            None if final_url == request_url => base.to_owned(),
            None => {
                return Err(net_error(format!(
                    "GET {request_url}: redirected to {final_url}, which is not a git \
                     repository's ref advertisement"
                )))
            }
        };
        if new_base != base {
            tracing::info!(from = %base, to = %new_base, "git http: repository redirected");
        }
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(new_base);
        Ok(response)
    }
}

impl SmartSubtransport for HttpSubtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        match action {
            Service::UploadPackLs => {
                Ok(Box::new(HttpStream::Responding(self.advertise_refs(url)?)))
            }
            Service::UploadPack => Ok(Box::new(HttpStream::Requesting {
                client: self.client.clone(),
                url: format!("{}/git-upload-pack", self.base_for(url)),
                body: Vec::new(),
            })),
            Service::ReceivePackLs | Service::ReceivePack => Err(git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Net,
                format!("{url}: push is not supported by the odi git HTTP transport"),
            )),
        }
    }

    fn close(&self) -> Result<(), git2::Error> {
        // A later action without an advertisement first is a new conversation.
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

/// A stateless RPC exchange: libgit2 writes the whole request, then reads the response.
enum HttpStream {
    Requesting {
        client: Client,
        url: String,
        body: Vec<u8>,
    },
    Responding(Response),
    /// Left behind by a failed request, so a retrying read reports an error, not EOF.
    Failed,
}

impl HttpStream {
    fn send(client: &Client, url: &str, body: Vec<u8>) -> Result<Response, git2::Error> {
        tracing::debug!(%url, bytes = body.len(), "git http: posting upload-pack request");
        let response = client
            .post(url)
            .header(CONTENT_TYPE, UPLOAD_PACK_REQUEST)
            .header(ACCEPT, UPLOAD_PACK_RESULT)
            .body(body)
            .send()
            .map_err(|e| request_error("POST", url, e))?;
        check_response("POST", url, &response, UPLOAD_PACK_RESULT)?;
        Ok(response)
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let HttpStream::Requesting { client, url, body } = self {
            let body = std::mem::take(body);
            match Self::send(client, url, body) {
                Ok(response) => *self = HttpStream::Responding(response),
                Err(e) => {
                    *self = HttpStream::Failed;
                    // libgit2 shows the io::Error's text; git2::Error's Display would add
                    // its class and code noise to it.
                    return Err(io::Error::other(e.message().to_owned()));
                }
            }
        }
        match self {
            HttpStream::Responding(response) => response.read(buf),
            HttpStream::Failed => Err(io::Error::other("git HTTP request already failed")),
            HttpStream::Requesting { .. } => unreachable!("request was sent above"),
        }
    }
}

impl Write for HttpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            HttpStream::Requesting { body, .. } => {
                body.extend_from_slice(data);
                Ok(data.len())
            }
            _ => {
                Err(io::Error::other("git HTTP transport: cannot write after the response started"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn check_response(
    method: &str,
    url: &str,
    response: &Response,
    expected_type: &str,
) -> Result<(), git2::Error> {
    let status = response.status();
    if !status.is_success() {
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (authentication is not supported)"
            }
            StatusCode::NOT_FOUND => " (no git repository there?)",
            _ => "",
        };
        let code = if status == StatusCode::UNAUTHORIZED {
            ErrorCode::Auth
        } else {
            ErrorCode::GenericError
        };
        return Err(git2::Error::new(
            code,
            ErrorClass::Http,
            format!("{method} {url}: server answered HTTP {status}{hint}"),
        ));
    }
    let content_type =
        response.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes).unwrap_or_default();
    // Parameters such as "; charset=" are tolerated, the media type itself must match.
    let media_type = content_type.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    if !media_type.eq_ignore_ascii_case(expected_type.as_bytes()) {
        let shown = String::from_utf8_lossy(content_type);
        let shown = if shown.is_empty() { "none" } else { &shown };
        let hint = if expected_type == UPLOAD_PACK_ADVERTISEMENT {
            " (not a smart git HTTP server; dumb HTTP is not supported)"
        } else {
            ""
        };
        return Err(net_error(format!(
            "{method} {url}: HTTP {status} with content type {shown}, expected \
             {expected_type}{hint}"
        )));
    }
    Ok(())
}

fn request_error(method: &str, url: &str, error: reqwest::Error) -> git2::Error {
    // reqwest's own message is terse ("error sending request"); the useful part (refused,
    // timed out, certificate not trusted) is further down the source chain. The URL is
    // already at the front, so reqwest's copy of it is dropped.
    let timed_out = error.is_timeout();
    let error = error.without_url();
    let mut message = format!("{method} {url}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    let class = if is_certificate_problem(&message) { ErrorClass::Ssl } else { ErrorClass::Net };
    let code = if timed_out {
        ErrorCode::Timeout
    } else if class == ErrorClass::Ssl {
        ErrorCode::Certificate
    } else {
        ErrorCode::GenericError
    };
    git2::Error::new(code, class, message)
}

fn is_certificate_problem(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("certificate") || lower.contains("unknownissuer")
}

fn net_error(message: String) -> git2::Error {
    git2::Error::new(ErrorCode::GenericError, ErrorClass::Net, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_extra_roots_are_rejected_with_their_index() {
        let options = HttpOptions {
            extra_root_certs_pem: vec![
                Vec::new(),
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            ],
            ..HttpOptions::default()
        };
        let err = build_client(&options).unwrap_err();
        assert!(matches!(err, Error::NoCertificateInPem { index: 0 }), "{err}");

        let options = HttpOptions {
            extra_root_certs_pem: options.extra_root_certs_pem[1..].to_vec(),
            ..HttpOptions::default()
        };
        let err = build_client(&options).unwrap_err();
        assert!(matches!(err, Error::InvalidRootCertificate { index: 0, .. }), "{err}");
    }

    #[test]
    fn default_options_build_a_client() {
        build_client(&HttpOptions::default()).unwrap();
    }
}
