//! A strict decoder for `Transfer-Encoding: chunked` bodies.
//!
//! Strict means: chunk sizes are hex without sign or whitespace, at most 16 digits and
//! within `u64`; every line ends in CRLF; size lines (with extensions) and trailer lines
//! are limited in length; trailers are limited in number and discarded; the body ends only
//! with a zero-size chunk followed by the (possibly empty) trailer section.

use std::io::{self, BufRead};

use crate::http::malformed::malformed;

/// Longest accepted chunk-size line, chunk extensions included.
pub const MAX_SIZE_LINE: usize = 4096;
/// Longest accepted trailer line.
pub const MAX_TRAILER_LINE: usize = 8192;
/// Most trailer lines accepted.
pub const MAX_TRAILERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Decoder state for one chunked body; feed it the connection's reader.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
}

impl Chunked {
    pub(crate) fn new() -> Self {
        Chunked { state: State::Size }
    }

    /// True once the terminating chunk and trailers were read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads decoded body bytes into `buf`; `Ok(0)` only at the end of the body.
    pub(crate) fn read(&mut self, r: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Size => {
                    let line = read_line(r, MAX_SIZE_LINE, "chunk size line")?;
                    let size = parse_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let avail = r.fill_buf()?;
                    if avail.is_empty() {
                        return Err(malformed("connection closed in the middle of a chunk"));
                    }
                    let n = (avail.len() as u64).min(left).min(buf.len() as u64) as usize;
                    buf[..n].copy_from_slice(&avail[..n]);
                    r.consume(n);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(n);
                }
                State::DataEnd => {
                    let line = read_line(r, 2, "chunk data end")?;
                    if !line.is_empty() {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
                State::Trailers(count) => {
                    let line = read_line(r, MAX_TRAILER_LINE, "trailer line")?;
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(0);
                    }
                    if count + 1 > MAX_TRAILERS {
                        return Err(malformed(format!("more than {MAX_TRAILERS} trailers")));
                    }
                    if !line.contains(&b':') {
                        return Err(malformed("trailer line without a colon"));
                    }
                    self.state = State::Trailers(count + 1);
                }
            }
        }
    }
}

/// Parses a chunk-size line (without CRLF): hex digits, then optional `;extensions`.
fn parse_size(line: &[u8]) -> io::Result<u64> {
    let digits = match line.iter().position(|&b| b == b';') {
        Some(i) => &line[..i],
        None => line,
    };
    // Tolerate whitespace before the extension only (RFC 9112 "BWS").
    let digits = trim_end(digits);
    if digits.is_empty() {
        return Err(malformed("empty chunk size"));
    }
    if digits.len() > 16 {
        return Err(malformed("chunk size has more than 16 hex digits"));
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(malformed("chunk size is not hexadecimal")),
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or_else(|| malformed("chunk size overflows"))?;
    }
    Ok(size)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Reads one CRLF-terminated line of at most `limit` bytes (CRLF excluded).
pub(crate) fn read_line(r: &mut impl BufRead, limit: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Err(malformed(format!("connection closed in a {what}")));
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            if line.len() + i > limit + 1 {
                return Err(malformed(format!("{what} longer than {limit} bytes")));
            }
            line.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            if line.pop() != Some(b'\r') {
                return Err(malformed(format!("{what} not terminated by CRLF")));
            }
            return Ok(line);
        }
        let n = avail.len();
        if line.len() + n > limit + 1 {
            return Err(malformed(format!("{what} longer than {limit} bytes")));
        }
        line.extend_from_slice(avail);
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn decode_with(raw: &[u8], cap: usize, out_chunk: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut r = BufReader::with_capacity(cap, Cursor::new(raw.to_vec()));
        let mut c = Chunked::new();
        let mut out = Vec::new();
        let mut buf = vec![0u8; out_chunk];
        loop {
            let n = c.read(&mut r, &mut buf)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert!(c.is_done());
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        Ok((out, rest))
    }

    fn decode(raw: &[u8]) -> io::Result<Vec<u8>> {
        decode_with(raw, 3, 2).map(|(o, _)| o)
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers_and_stops_at_the_end() {
        let raw = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cap in [1, 2, 3, 7, 64] {
            for out in [1, 3, 100] {
                let (body, rest) = decode_with(raw, cap, out).unwrap();
                assert_eq!(body, b"hello 0123456789");
                assert_eq!(rest, b"NEXT");
            }
        }
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\nhello\r\n0\r\n\r\n"[..],
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r",
            b"5\r\nhel",
            b"5\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"FFFFFFFFFFFFFFFFF\r\n",
            b"0\r\nno-colon\r\n\r\n",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn max_size_fits_but_overlong_lines_do_not() {
        assert_eq!(parse_size(b"FFFFFFFFFFFFFFFF").unwrap(), u64::MAX);
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE + 1));
        long.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
        assert!(decode(&long).is_err());
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILERS {
            trailers.extend_from_slice(b"A: b\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(decode(&trailers).is_err());
    }
}
