//! A raw HTTP/1.1 client for tests, shared by the unit tests of the server and the
//! integration tests: requests go out byte for byte as written, and responses are parsed just
//! enough to check them (status, header fields in order, a `Content-Length` or to-EOF body).
//! Not a general client: no chunked bodies, no interim responses beyond what a test reads.
//! Every wait is bounded by [`WAIT`], so a failing test fails instead of hanging.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// Bound on every wait for the server.
pub const WAIT: Duration = Duration::from_secs(10);

/// One response as received.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The whole head as received, `\r\n\r\n` included.
    pub head: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD, 1xx, 204 and 304).
    pub body: Vec<u8>,
}

impl Resp {
    /// The first field named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Parses `raw`, a whole connection's output read to EOF, as one response to a GET.
    pub fn parse(raw: &[u8]) -> Option<Resp> {
        Self::parse_response(raw, false)
    }

    /// [`Resp::parse`] for the answer to a HEAD (`head_request`) or a GET.
    pub fn parse_response(raw: &[u8], head_request: bool) -> Option<Resp> {
        let (resp, _) = parse_one(raw, head_request, true)?;
        Some(resp)
    }
}

/// Parses the response at the start of `raw`; returns it and the bytes it took, or `None`
/// while it is incomplete. With no `Content-Length` the body runs to the end of the
/// connection, so it is complete only at `eof`.
fn parse_one(raw: &[u8], head_request: bool, eof: bool) -> Option<(Resp, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8(raw[..end].to_vec()).expect("ASCII response head");
    let mut lines = head[..end - 4].split("\r\n");
    let status_line = lines.next()?;
    assert!(status_line.starts_with("HTTP/1."), "{head:?}");
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header line {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let rest = &raw[end..];
    let body_len = if head_request || status < 200 || status == 204 || status == 304 {
        0
    } else if let Some(len) = len {
        if rest.len() < len {
            return None;
        }
        len
    } else {
        assert!(
            !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")),
            "chunked response: {head:?}"
        );
        if !eof {
            return None;
        }
        rest.len()
    };
    let body = rest[..body_len].to_vec();
    Some((Resp { status, head, headers, body }, end + body_len))
}

/// Connects to `addr` from the local address `from` (another loopback address, say, so that
/// a test client counts as a different client than the others).
pub async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if from.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// Sends `request` on a new connection and reads the answer to EOF (send
/// `Connection: close`).
pub async fn exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> Resp {
    let from = if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() };
    exchange_from(from, addr, request).await
}

/// [`exchange`] from the local address `from`.
pub async fn exchange_from(from: IpAddr, addr: SocketAddr, request: impl AsRef<[u8]>) -> Resp {
    let mut s = tokio::time::timeout(WAIT, connect_from(from, addr))
        .await
        .expect("connected in time")
        .expect("connect");
    s.write_all(request.as_ref()).await.expect("request sent");
    let mut buf = Vec::new();
    // A server may reset after answering; what arrived is still the answer.
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("answered in time");
    Resp::parse(&buf).unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&buf)))
}

/// The reading side of a connection.
#[derive(Debug)]
pub struct Reader<R = OwnedReadHalf> {
    /// The stream.
    pub rd: R,
    /// Received and not yet consumed.
    pub buf: Vec<u8>,
}

/// A connection: write with `send`, read through the [`Reader`] it derefs to.
#[derive(Debug)]
pub struct Client<R = OwnedReadHalf, W = OwnedWriteHalf> {
    /// The writing side.
    pub wr: W,
    /// The reading side.
    pub r: Reader<R>,
}

impl<R, W> std::ops::Deref for Client<R, W> {
    type Target = Reader<R>;
    fn deref(&self) -> &Reader<R> {
        &self.r
    }
}

impl<R, W> std::ops::DerefMut for Client<R, W> {
    fn deref_mut(&mut self) -> &mut Reader<R> {
        &mut self.r
    }
}

impl Client {
    /// Connects to `addr` (with `TCP_NODELAY`).
    pub async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (rd, wr) = s.into_split();
        Self { wr, r: Reader { rd, buf: Vec::new() } }
    }
}

impl<R, W: AsyncWrite + Unpin> Client<R, W> {
    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.wr.write_all(bytes.as_ref()).await.unwrap();
    }
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads more bytes; `false` at EOF or on a reset.
    pub async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.rd.read(&mut chunk))
            .await
            .expect("server answered or closed in time")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// One response, or `None` if the connection closed before a whole head arrived.
    /// `head_request`: the response is to a `HEAD` (so has no body).
    pub async fn try_response(&mut self, head_request: bool) -> Option<Resp> {
        let mut eof = false;
        loop {
            if let Some((resp, used)) = parse_one(&self.buf, head_request, eof) {
                self.buf.drain(..used);
                return Some(resp);
            }
            if eof {
                assert!(
                    self.buf.is_empty(),
                    "connection closed mid-response: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                return None;
            }
            eof = !self.fill().await;
        }
    }

    /// The next response to a GET; panics on a close.
    pub async fn response(&mut self) -> Resp {
        self.try_response(false).await.expect("a response, not a close")
    }

    /// The next response to a HEAD; panics on a close.
    pub async fn head_response(&mut self) -> Resp {
        self.try_response(true).await.expect("a response, not a close")
    }

    /// Waits (at most `within`) for the server to close; returns the bytes that came first.
    pub async fn closed_within(&mut self, within: Duration) -> Vec<u8> {
        let r = tokio::time::timeout(within, async {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "connection still open after {within:?}; received {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        std::mem::take(&mut self.buf)
    }

    /// Whether the connection stays open, with nothing received, for `d`.
    pub async fn stays_quiet(&mut self, d: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        tokio::time::timeout(d, self.rd.read(&mut chunk)).await.is_err()
    }
}
