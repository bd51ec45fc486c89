//! The HTTP side: just enough HTTP/1.x for a Prometheus scrape.
//!
//! One route (`GET /metrics`), one connection at a time, `Connection:
//! close`, loopback only. An HTTP crate (hyper and its companions) would
//! bring some fifteen crates for this; the request line is all that is
//! read, within a size and time limit, so a slow or oversized client
//! cannot hold the exporter.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Most bytes of a request read (line and headers).
const MAX_REQUEST: usize = 16 * 1024;
/// How long a client has to send its request and take the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics,
    /// Anything else: answered with this status line and body.
    Other(&'static str, &'static str),
}

/// Reads the request head (up to the blank line) and judges it.
pub async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Some(());
            }
            if buf.len() > MAX_REQUEST {
                return Some(());
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read).await.ok()??;
    Some(judge(&buf))
}

/// The answer to a request head.
pub fn judge(head: &[u8]) -> Request {
    if head.len() > MAX_REQUEST {
        return Request::Other("431 Request Header Fields Too Large", "request too large\n");
    }
    let line = head.split(|&c| c == b'\n').next().unwrap_or_default();
    let mut parts = line.trim_ascii().split(|&c| c == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // The query string (Prometheus may add none, other tools may) is ignored.
    let path = target.split(|&c| c == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Request::Metrics,
        (b"GET", b"/") => Request::Other(
            "200 OK",
            "pmap exporter: metrics at /metrics (Prometheus text format)\n",
        ),
        (b"GET", _) => Request::Other("404 Not Found", "not found: try /metrics\n"),
        _ => Request::Other("405 Method Not Allowed", "only GET /metrics\n"),
    }
}

/// Sends a complete answer and closes the connection.
pub async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    // A client that went away or stalls is not the exporter's problem.
    let _ = tokio::time::timeout(TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            judge(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            Request::Metrics
        );
        assert!(
            matches!(judge(b"GET /nope HTTP/1.1\r\n\r\n"), Request::Other(s, _) if s.starts_with("404"))
        );
        assert!(
            matches!(judge(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::Other(s, _) if s.starts_with("405"))
        );
        assert!(
            matches!(judge(&[b'a'; MAX_REQUEST + 1]), Request::Other(s, _) if s.starts_with("431"))
        );
    }
}
