//! Body framing: how long a response body is (RFC 9112 section 6.3) and reading it.

use std::io::{self, BufRead};

use crate::http::chunked::Chunked;
use crate::http::head::ResponseHead;
use crate::http::malformed::malformed;

/// How the body of a response is delimited.
#[derive(Debug)]
pub(crate) enum Framing {
    /// No body (HEAD requests, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes are left.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunked),
    /// Until the server closes the connection.
    Close,
}

/// Decides the framing of a response to a request with `method`; also says whether the
/// connection may be reused afterwards (as far as the framing is concerned).
pub(crate) fn framing(method: &str, head: &ResponseHead) -> io::Result<(Framing, bool)> {
    let s = head.status;
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&s) || s == 204 || s == 304 {
        return Ok((Framing::Empty, true));
    }
    let te: Vec<&str> = head.headers_named("transfer-encoding").collect();
    if !te.is_empty() {
        let last = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .unwrap_or("");
        // With both Transfer-Encoding and Content-Length the message is suspect: decode by
        // Transfer-Encoding but never reuse the connection.
        let reusable = head.header("content-length").is_none();
        if last.eq_ignore_ascii_case("chunked") {
            return Ok((Framing::Chunked(Chunked::new()), reusable));
        }
        return Ok((Framing::Close, false));
    }
    let mut length: Option<u64> = None;
    for v in head.headers_named("content-length") {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 19 {
                return Err(malformed(format!("invalid Content-Length {v:?}")));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| malformed(format!("invalid Content-Length {v:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(malformed("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, false),
    })
}

impl Framing {
    /// The declared length, when known up front.
    pub(crate) fn declared_len(&self) -> Option<u64> {
        match self {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(*n),
            _ => None,
        }
    }

    /// True once the whole body has been read.
    pub(crate) fn is_done(&self) -> bool {
        match self {
            Framing::Empty => true,
            Framing::Length(n) => *n == 0,
            Framing::Chunked(c) => c.is_done(),
            Framing::Close => false,
        }
    }

    /// Reads body bytes; `Ok(0)` at the end of the body.
    pub(crate) fn read(&mut self, r: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self {
            Framing::Empty => Ok(0),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let avail = r.fill_buf()?;
                if avail.is_empty() {
                    return Err(malformed(format!(
                        "connection closed with {left} body bytes missing"
                    )));
                }
                let n = (avail.len() as u64).min(*left).min(buf.len() as u64) as usize;
                buf[..n].copy_from_slice(&avail[..n]);
                r.consume(n);
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked(c) => c.read(r, buf),
            Framing::Close => {
                let avail = r.fill_buf()?;
                let n = avail.len().min(buf.len());
                buf[..n].copy_from_slice(&avail[..n]);
                r.consume(n);
                Ok(n)
            }
        }
    }
}

/// Reads a whole body, failing once it exceeds `max` bytes.
pub(crate) fn read_all(f: &mut Framing, r: &mut impl BufRead, max: usize) -> io::Result<Vec<u8>> {
    if let Some(n) = f.declared_len() {
        if n > max as u64 {
            return Err(malformed(format!(
                "body of {n} bytes exceeds the limit of {max} bytes"
            )));
        }
    }
    let mut out = Vec::with_capacity(f.declared_len().unwrap_or(0).min(1 << 20) as usize);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match f.read(r, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if out.len() + n > max {
            return Err(malformed(format!("body exceeds the limit of {max} bytes")));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;
    use std::io::{BufReader, Cursor};

    fn frame(method: &str, head: &str) -> io::Result<(Framing, bool)> {
        framing(method, &parse_head(head.as_bytes()).unwrap())
    }

    #[test]
    fn chooses_the_framing() {
        let (f, reuse) = frame("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert!(matches!(f, Framing::Length(5)) && reuse);
        let (f, reuse) = frame("GET", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n").unwrap();
        assert!(matches!(f, Framing::Length(5)) && reuse);
        let (f, reuse) = frame(
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        )
        .unwrap();
        assert!(matches!(f, Framing::Chunked(_)) && reuse);
        let (f, reuse) = frame(
            "GET",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap();
        assert!(matches!(f, Framing::Chunked(_)) && !reuse);
        let (f, reuse) = frame("GET", "HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(matches!(f, Framing::Close) && !reuse);
        let (f, _) = frame(
            "GET",
            "HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
        )
        .unwrap();
        assert!(matches!(f, Framing::Empty));
        let (f, _) = frame("HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert!(matches!(f, Framing::Empty));
    }

    #[test]
    fn rejects_bad_lengths() {
        for h in [
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert!(frame("GET", h).is_err(), "{h:?} accepted");
        }
    }

    #[test]
    fn length_body_truncated_and_oversize() {
        let mut r = BufReader::new(Cursor::new(b"abc".to_vec()));
        assert!(read_all(&mut Framing::Length(5), &mut r, 100).is_err());
        let mut r = BufReader::new(Cursor::new(b"abcde".to_vec()));
        assert!(read_all(&mut Framing::Length(5), &mut r, 4).is_err());
        let mut r = BufReader::new(Cursor::new(b"abcdef".to_vec()));
        assert!(read_all(&mut Framing::Close, &mut r, 5).is_err());
        let mut r = BufReader::new(Cursor::new(b"abcdef".to_vec()));
        assert_eq!(read_all(&mut Framing::Close, &mut r, 6).unwrap(), b"abcdef");
    }
}
