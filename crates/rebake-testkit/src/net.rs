//! Loopback networking helpers: free ports and the minimal HTTP/1.0 probe used for readiness.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Timeout for one readiness probe (connect, write, read).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel picked and closes the socket. Another process
/// may take the port before the caller binds it; the server guards retry with a new port when
/// that happens.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("binding 127.0.0.1:0 always succeeds on a host with a loopback interface");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}

/// Sends `GET <path> HTTP/1.0` to `addr` and returns the status code.
pub(crate) async fn http_get_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let probe = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("failed to connect to {addr}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .with_context(|| format!("failed to send request to {addr}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .with_context(|| format!("failed to read response from {addr}"))?;
        parse_status_line(&response)
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .with_context(|| format!("timed out probing http://{addr}{path}"))?
}

/// Extracts the status code from `HTTP/1.x NNN reason`.
fn parse_status_line(response: &[u8]) -> anyhow::Result<u16> {
    let text = String::from_utf8_lossy(response);
    let status_line = text.lines().next().unwrap_or_default();
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("malformed http status line {status_line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_code() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_status_line(response).unwrap(), 200);
        assert!(parse_status_line(b"garbage").is_err());
        assert!(parse_status_line(b"").is_err());
    }

    #[test]
    fn free_ports_are_nonzero() {
        assert_ne!(free_port(), 0);
    }
}
