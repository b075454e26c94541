//! Just enough HTTP/1.1 to read Envoy's admin interface.
//!
//! One `GET` per connection with `Connection: close`; the response body is
//! read to the end and de-chunked if needed. Not a general HTTP client.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Status and body of an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` from `addr`, giving up after `timeout` per connect or read.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let fail =
        |what: &str, error: std::io::Error| format!("GET http://{addr}{path}: {what}: {error}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("connect", e))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail("set timeout", e))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail("send", e))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| fail("read", e))?;
    parse_response(&raw).map_err(|reason| format!("GET http://{addr}{path}: {reason}"))
}

/// Parses a complete HTTP/1.1 response read until the peer closed.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = find(raw, b"\r\n\r\n").ok_or("response ends before its headers do")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];

    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed status line `{status_line}`"))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Decodes a `Transfer-Encoding: chunked` body (extensions and trailers ignored).
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").ok_or("chunk size line is not terminated")?;
        let size_line = String::from_utf8_lossy(&raw[..line_end]);
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("malformed chunk size `{size_hex}`"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = raw.get(..size).ok_or("chunk is shorter than its size")?;
        body.extend_from_slice(chunk);
        raw = raw.get(size + 2..).ok_or("chunk is not terminated")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_content_length_response() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nLIVE\n";
        assert_eq!(
            parse_response(raw),
            Ok(HttpResponse {
                status: 200,
                body: "LIVE\n".into()
            })
        );
    }

    #[test]
    fn decodes_a_chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            6\r\ncount:\r\n3;ext=1\r\n 42\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).map(|r| r.body), Ok("count: 42".into()));
    }

    #[test]
    fn keeps_the_status_of_errors() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nPRE_INIT\n";
        assert_eq!(parse_response(raw).map(|r| r.status), Ok(503));
    }

    #[test]
    fn rejects_truncated_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nabc")
                .is_err()
        );
    }
}
