//! Reading and parsing an HTTP/1.1 response head (status line and headers).

use std::io::{self, BufRead};

use crate::http::malformed::malformed;

/// Largest accepted response head (status line plus headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in one response head.
pub const MAX_HEADERS: usize = 100;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// HTTP minor version (`1` for HTTP/1.1, `0` for HTTP/1.0).
    pub minor_version: u8,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when a comma-separated header `name` holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads one response head. `Ok(None)` when the peer closed the connection before sending
/// a single byte (a stale keep-alive connection).
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Option<ResponseHead>> {
    let mut acc: Vec<u8> = Vec::new();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            if acc.is_empty() {
                return Ok(None);
            }
            return Err(malformed(
                "connection closed in the middle of the response head",
            ));
        }
        let start = acc.len().saturating_sub(3);
        let n = avail.len().min(MAX_HEAD + 1 - acc.len());
        acc.extend_from_slice(&avail[..n]);
        if let Some(pos) = find_end(&acc[start..]) {
            let end = start + pos + 4;
            let used = n - (acc.len() - end);
            r.consume(used);
            acc.truncate(end);
            return parse_head(&acc).map(Some);
        }
        r.consume(n);
        if acc.len() > MAX_HEAD {
            return Err(malformed(format!(
                "response head longer than {MAX_HEAD} bytes"
            )));
        }
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses a complete head (ending in CRLF CRLF).
pub(crate) fn parse_head(buf: &[u8]) -> io::Result<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete response head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(malformed(format!(
                "more than {MAX_HEADERS} headers in the response"
            )))
        }
        Err(e) => return Err(malformed(format!("malformed response head: {e}"))),
    }
    let status = resp
        .code
        .ok_or_else(|| malformed("response head without a status code"))?;
    let mut out = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| malformed(format!("header {} is not UTF-8", h.name)))?;
        out.push((h.name.to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        status,
        reason: resp.reason.unwrap_or("").to_string(),
        minor_version: resp.version.unwrap_or(1),
        headers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn head(bytes: &[u8]) -> io::Result<Option<ResponseHead>> {
        read_head(&mut BufReader::with_capacity(
            7,
            Cursor::new(bytes.to_vec()),
        ))
    }

    #[test]
    fn parses_a_head_split_over_many_reads_and_leaves_the_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-A: b\r\n\r\nbody";
        let mut r = BufReader::with_capacity(5, Cursor::new(raw.to_vec()));
        let h = read_head(&mut r).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.header("content-length"), Some("4"));
        assert_eq!(h.header("x-a"), Some("b"));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "body");
    }

    #[test]
    fn eof_before_any_byte_is_none_and_mid_head_is_an_error() {
        assert!(head(b"").unwrap().is_none());
        assert!(head(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn rejects_garbage_oversize_and_too_many_headers() {
        assert!(head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        big.extend_from_slice(b"\r\n\r\n");
        assert!(head(&big).is_err());
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(head(&many).is_err());
    }

    #[test]
    fn token_lists() {
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.has_token("connection", "close"));
        assert!(!h.has_token("connection", "upgrade"));
    }
}
