//! A small blocking HTTP/1.1 client: one connection per request (`Connection: close`), a
//! deadline on the whole exchange, and errors that say whether the request may have reached
//! the server, which is what decides between a definite failure and an indeterminate one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    /// The `Date` header, if any: the server's wall clock (the clock nemesis checks it).
    pub date: Option<String>,
}

impl Response {
    /// The `"error"` kind of an error body, e.g. `no_leader`.
    pub fn error_kind(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or("")
    }

    pub fn describe(&self) -> String {
        let message = self.body.get("message").and_then(Value::as_str).unwrap_or("");
        format!("HTTP {} {} {}", self.status, self.error_kind(), message).trim().to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The request never left: the connection could not be made. Nothing happened.
    NotSent(String),
    /// The request may have reached the server; its effect is unknown.
    Unknown(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotSent(m) | Error::Unknown(m) => f.write_str(m),
        }
    }
}

pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, Error> {
    request(addr, "GET", path, None, timeout)
}

pub fn put(addr: SocketAddr, path: &str, body: &Value, timeout: Duration) -> Result<Response, Error> {
    request(addr, "PUT", path, Some(body), timeout)
}

pub fn post(addr: SocketAddr, path: &str, body: &Value, timeout: Duration) -> Result<Response, Error> {
    request(addr, "POST", path, Some(body), timeout)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Response, Error> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT.min(timeout))
        .map_err(|e| Error::NotSent(format!("cannot connect to {addr}: {e}")))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if body.is_some() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len()));
    }
    head.push_str("\r\n");
    head.push_str(&payload);
    let lost = |what: String| Error::Unknown(format!("{method} {path} on {addr}: {what}"));
    stream.set_write_timeout(Some(remaining(deadline))).map_err(|e| lost(e.to_string()))?;
    stream.write_all(head.as_bytes()).map_err(|e| lost(format!("sending failed: {e}")))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(lost(format!("no complete answer within {timeout:?}")));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| lost(e.to_string()))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(lost(format!("no complete answer within {timeout:?}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(lost(format!("connection lost: {e}"))),
        }
    }
    parse(&raw).map_err(lost)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Parses a complete response read up to end of stream.
pub fn parse(raw: &[u8]) -> Result<Response, String> {
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the connection closed before the headers ended")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    let mut date = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name == "content-length" {
            length = value.parse::<usize>().ok();
        } else if name == "date" {
            date = Some(value.to_string());
        }
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = length {
        if body.len() < n {
            return Err(format!("the body ended after {} of {n} bytes", body.len()));
        }
        body.truncate(n);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(Response { status, body, date })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("a chunk size line is cut off")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("a chunk is cut off".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-length: 21\r\n\r\n{\"error\":\"not_found\"}";
        let r = parse(plain).unwrap();
        assert_eq!((r.status, r.error_kind()), (404, "not_found"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().body, serde_json::json!({"a": 1}));
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}").is_err(), "a short body is no answer");
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn a_refused_connection_is_not_sent() {
        // Bind, learn the port, close: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = get(port, "/health", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, Error::NotSent(_)), "{e:?}");
    }

    #[test]
    fn a_silent_server_is_unknown() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let e = get(addr, "/health", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, Error::Unknown(_)), "{e:?}");
        drop(listener);
    }
}
