//! Slow and stalled HTTP clients over a raw TcpStream, for what a client library will not
//! do: send half a request header and wait, or declare a body and send only part of it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one read waits before the loop looks at its deadline again.
const POLL: Duration = Duration::from_millis(200);

/// One raw connection to a node's HTTP listener.
pub struct RawHttp {
    stream: TcpStream,
}

/// What the server did with a connection within the time allowed.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It closed the connection (a read returned end-of-file or a reset); with what it had
    /// sent before, if anything.
    Closed(String),
    /// The connection was still open at the deadline.
    StillOpen,
}

impl RawHttp {
    pub fn connect(addr: SocketAddr) -> RawHttp {
        let stream = TcpStream::connect(addr).expect("cannot connect to the HTTP port");
        stream
            .set_read_timeout(Some(POLL))
            .expect("cannot set a read timeout");
        RawHttp { stream }
    }

    /// Connects and sends the start of a GET request's header, never its end.
    pub fn half_header(addr: SocketAddr) -> RawHttp {
        let mut raw = RawHttp::connect(addr);
        raw.send(&format!(
            "GET /api/catalog/products HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slow"
        ));
        raw
    }

    /// Connects and sends a whole POST header declaring `declared` body bytes, then only
    /// `sent` (shorter) of the body.
    pub fn partial_body(addr: SocketAddr, path: &str, declared: usize, sent: &str) -> RawHttp {
        assert!(sent.len() < declared);
        let mut raw = RawHttp::connect(addr);
        raw.send(&format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{sent}"
        ));
        raw
    }

    /// Writes `text`; a write the server refuses (it closed already) is ignored, since
    /// whether the server closed is what the caller checks next.
    pub fn send(&mut self, text: &str) {
        let _ = self.stream.write_all(text.as_bytes());
        let _ = self.stream.flush();
    }

    /// Reads until the server closes the connection or `bound` passes.
    pub fn wait_closed(&mut self, bound: Duration) -> Outcome {
        let deadline = Instant::now() + bound;
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Outcome::Closed(String::from_utf8_lossy(&received).into()),
                Ok(n) => received.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Outcome::Closed(String::from_utf8_lossy(&received).into()),
            }
        }
        Outcome::StillOpen
    }
}

/// The status code and the body of a raw HTTP/1.1 answer (`(0, "")` when there is none).
pub fn parse_answer(text: &str) -> (u16, String) {
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
