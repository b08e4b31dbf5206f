//! A tiny smart-HTTP(S) git server for tests, on loopback only.
//!
//! It runs `git http-backend` as a CGI program per request, so tests exercise the real git
//! protocol as a real server speaks it, without an async runtime or a web server crate.
//! Each connection gets a thread; HTTP/1.1 keep-alive, `Content-Length` and chunked request
//! bodies are supported because libgit2, reqwest and the git CLI use them. Responses are
//! buffered whole, which is fine for test-sized repositories.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// An idle client is dropped after this long, so a leaked connection cannot hold a
/// thread forever.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests larger than this are refused; tests never come close.
const MAX_BODY: usize = 64 << 20;

/// A running test server; it stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT` (or `https://`); repositories are at `{base_url}/{name}`.
    pub base_url: String,
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    shutdown: AtomicBool,
    next_id: AtomicU64,
    // Clones of the open connections' sockets, so dropping the server can unblock their
    // threads by shutting the sockets down.
    connections: Mutex<HashMap<u64, TcpStream>>,
}

/// Serves every repository under `repo_root` over plain HTTP at `{base_url}/{name}`.
pub fn serve(repo_root: &Path) -> io::Result<TestServer> {
    start(repo_root, None)
}

/// Like [`serve`], but over HTTPS with the given PEM certificate chain and private key.
pub fn serve_tls(repo_root: &Path, cert_pem: &[u8], key_pem: &[u8]) -> io::Result<TestServer> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no private key in PEM"))?;
    // An explicit provider, so the test server works whatever other rustls features the
    // workspace happens to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    start(repo_root, Some(Arc::new(config)))
}

fn start(repo_root: &Path, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<TestServer> {
    let repo_root = repo_root.canonicalize()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shared = Arc::new(Shared::default());
    let acceptor = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("git-test-server-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &repo_root, tls.as_ref(), &shared))?
    };
    Ok(TestServer {
        base_url: format!("{scheme}://{addr}"),
        shared,
        addr,
        acceptor: Some(acceptor),
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // accept() has no timeout; a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = self.shared.connections.lock().unwrap_or_else(|e| e.into_inner());
        for stream in connections.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    repo_root: &Path,
    tls: Option<&Arc<rustls::ServerConfig>>,
    shared: &Arc<Shared>,
) {
    for stream in listener.incoming() {
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        shared.connections.lock().unwrap_or_else(|e| e.into_inner()).insert(id, clone);
        let shared = Arc::clone(shared);
        let repo_root = repo_root.to_path_buf();
        let tls = tls.cloned();
        let spawned = std::thread::Builder::new().name("git-test-conn".into()).spawn(move || {
            let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
            let result = match tls {
                Some(config) => {
                    rustls::ServerConnection::new(config).map_err(io::Error::other).and_then(
                        |conn| serve_connection(rustls::StreamOwned::new(conn, stream), &repo_root),
                    )
                }
                None => serve_connection(stream, &repo_root),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "git test server: connection ended");
            }
            shared.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
        if spawned.is_err() {
            tracing::warn!("git test server: cannot spawn a connection thread");
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn serve_connection<S: Read + Write>(stream: S, repo_root: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        let close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (status, headers, body) = match run_backend(&request, repo_root) {
            Ok(response) => response,
            Err(e) => (
                "500 Internal Server Error".to_owned(),
                vec![("Content-Type".to_owned(), "text/plain".to_owned())],
                format!("git http-backend failed: {e}\n").into_bytes(),
            ),
        };
        let stream = reader.get_mut();
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        stream.flush()?;
        if close {
            return Ok(());
        }
    }
}

/// Reads one request; `None` when the client closed the connection between requests.
fn read_request<S: Read + Write>(reader: &mut BufReader<S>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("connection closed inside the headers".into()));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| invalid(format!("bad header {line:?}")))?;
        request.headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if request.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        reader.get_mut().flush()?;
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize =
            length.parse().map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        if length > MAX_BODY {
            return Err(invalid("request body too large".into()));
        }
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn read_chunked<R: BufRead>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the final empty line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer)? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("request body too large".into()));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf)?;
    }
}

type Response = (String, Vec<(String, String)>, Vec<u8>);

fn run_backend(request: &Request, repo_root: &Path) -> io::Result<Response> {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", repo_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_TYPE", request.header("content-type").unwrap_or(""))
        .env("CONTENT_LENGTH", request.body.len().to_string())
        // The repositories belong to the test, not to whatever config the host has.
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("REMOTE_USER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // git http-backend decompresses gzip bodies and speaks protocol v2 only if told so.
    for (header, variable) in
        [("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "GIT_PROTOCOL")]
    {
        match request.header(header) {
            Some(value) => command.env(variable, value),
            None => command.env_remove(variable),
        };
    }
    let mut child = command.spawn()?;
    // Fed from a thread: the backend may start writing before it has read everything.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let body = request.body.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    // A backend that answers without reading the whole body breaks the pipe; that is its
    // call, not an error of ours.
    let _ = feeder.join();
    if !output.stderr.is_empty() {
        tracing::debug!(
            stderr = %String::from_utf8_lossy(&output.stderr),
            "git test server: http-backend stderr"
        );
    }
    parse_cgi(&output.stdout)
}

fn parse_cgi(output: &[u8]) -> io::Result<Response> {
    let mut status = "200 OK".to_owned();
    let mut headers = Vec::new();
    let mut rest = output;
    loop {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| invalid("CGI output ends inside its headers".into()))?;
        let line = String::from_utf8_lossy(&rest[..end]);
        let line = line.trim_end_matches('\r');
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let (name, value) =
            line.split_once(':').ok_or_else(|| invalid(format!("bad CGI header {line:?}")))?;
        let value = value.trim().to_owned();
        if name.eq_ignore_ascii_case("status") {
            status = value;
        } else if !name.eq_ignore_ascii_case("content-length") {
            // The length is recomputed from the buffered body.
            headers.push((name.trim().to_owned(), value));
        }
    }
    Ok((status, headers, rest.to_vec()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}
