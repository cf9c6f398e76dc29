//! HTTP/2 frame encoding and decoding (RFC 9113 section 4).

use std::io::{self, Read};

use crate::error::{Error, Result};

/// DATA frame type.
pub const DATA: u8 = 0;
/// HEADERS frame type.
pub const HEADERS: u8 = 1;
/// PRIORITY frame type.
pub const PRIORITY: u8 = 2;
/// RST_STREAM frame type.
pub const RST_STREAM: u8 = 3;
/// SETTINGS frame type.
pub const SETTINGS: u8 = 4;
/// PUSH_PROMISE frame type.
pub const PUSH_PROMISE: u8 = 5;
/// PING frame type.
pub const PING: u8 = 6;
/// GOAWAY frame type.
pub const GOAWAY: u8 = 7;
/// WINDOW_UPDATE frame type.
pub const WINDOW_UPDATE: u8 = 8;
/// CONTINUATION frame type.
pub const CONTINUATION: u8 = 9;

/// END_STREAM flag (DATA, HEADERS); ACK flag (SETTINGS, PING) has the same bit.
pub const END_STREAM: u8 = 0x1;
/// ACK flag.
pub const ACK: u8 = 0x1;
/// END_HEADERS flag.
pub const END_HEADERS: u8 = 0x4;
/// PADDED flag.
pub const PADDED: u8 = 0x8;
/// PRIORITY flag of HEADERS.
pub const PRIORITY_FLAG: u8 = 0x20;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits).
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame.
    pub fn new(kind: u8, flags: u8, stream: u32, payload: Vec<u8>) -> Self {
        Frame {
            kind,
            flags,
            stream,
            payload,
        }
    }

    /// True when `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Encodes header and payload.
    pub fn encode(&self) -> Vec<u8> {
        let len = self.payload.len() as u32;
        let mut out = Vec::with_capacity(9 + self.payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The payload of a DATA or HEADERS frame without padding (and, for HEADERS, without
    /// the priority fields).
    pub fn content(&self) -> Result<&[u8]> {
        let mut p = &self.payload[..];
        let mut pad = 0usize;
        if self.has(PADDED) {
            let (&n, rest) = p
                .split_first()
                .ok_or_else(|| Error::protocol("http2", "padded frame without pad length"))?;
            pad = n as usize;
            p = rest;
        }
        if self.kind == HEADERS && self.has(PRIORITY_FLAG) {
            if p.len() < 5 {
                return Err(Error::protocol(
                    "http2",
                    "HEADERS priority fields truncated",
                ));
            }
            p = &p[5..];
        }
        if pad > p.len() {
            return Err(Error::protocol(
                "http2",
                format!("padding {pad} exceeds frame payload {}", p.len()),
            ));
        }
        Ok(&p[..p.len() - pad])
    }
}

/// Reads one frame whose payload must not exceed `max_len`. I/O errors go through
/// `map_io`. A peer answering in HTTP/1.x is reported as such.
pub fn read_frame<R: Read>(
    r: &mut R,
    max_len: usize,
    map_io: &dyn Fn(io::Error) -> Error,
) -> Result<Frame> {
    let mut head = [0u8; 9];
    read_full(r, &mut head, "frame header", true, map_io)?;
    if head.starts_with(b"HTTP/") {
        return Err(not_http2());
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    if len > max_len {
        return Err(Error::protocol(
            "http2",
            format!("frame of {len} bytes exceeds the maximum frame size {max_len}"),
        ));
    }
    let mut payload = vec![0u8; len];
    if len > 0 {
        read_full(r, &mut payload, "frame payload", false, map_io)?;
    }
    Ok(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Fills `buf`. A close before the first byte of a frame header goes through `map_io` (a
/// clean close); a close after part of a frame is a truncated frame: a protocol error that
/// says how much arrived.
fn read_full<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &str,
    at_frame_start: bool,
    map_io: &dyn Fn(io::Error) -> Error,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 && at_frame_start => {
                return Err(map_io(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => {
                return Err(Error::protocol(
                    "http2",
                    format!(
                        "connection closed in the middle of a frame ({got} of {} {what} bytes)",
                        buf.len()
                    ),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(map_io(e)),
        }
    }
    Ok(())
}

/// The error for a peer that is not an HTTP/2 server.
pub fn not_http2() -> Error {
    Error::protocol(
        "http2",
        "peer does not speak HTTP/2 (is this a gRPC socket?)",
    )
}

/// Encodes SETTINGS parameters.
pub fn settings(params: &[(u16, u32)]) -> Frame {
    let mut p = Vec::with_capacity(params.len() * 6);
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    Frame::new(SETTINGS, 0, 0, p)
}

/// A WINDOW_UPDATE frame.
pub fn window_update(stream: u32, inc: u32) -> Frame {
    Frame::new(WINDOW_UPDATE, 0, stream, inc.to_be_bytes().to_vec())
}

/// Reads a big-endian u32 at `at` (caller checked the length).
pub fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_err(e: io::Error) -> Error {
        Error::connection("test", &e)
    }

    #[test]
    fn round_trip() {
        for f in [
            Frame::new(DATA, END_STREAM, 1, b"hello".to_vec()),
            Frame::new(HEADERS, END_HEADERS, 0x7fff_ffff, vec![0; 300]),
            settings(&[(4, 1 << 20), (5, 16384)]),
            window_update(3, 12345),
            Frame::new(PING, ACK, 0, vec![1; 8]),
        ] {
            let bytes = f.encode();
            let back = read_frame(&mut &bytes[..], 16384, &io_err).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn too_large_and_http1() {
        let f = Frame::new(DATA, 0, 1, vec![0; 100]).encode();
        assert!(matches!(
            read_frame(&mut &f[..], 99, &io_err),
            Err(Error::Protocol { .. })
        ));
        let h = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        let e = read_frame(&mut &h[..], 16384, &io_err).unwrap_err();
        assert!(e.to_string().contains("does not speak HTTP/2"));
        // A truncated frame (header or payload) is a protocol error; a close between
        // frames goes through map_io.
        for cut in [4, 20] {
            let e = read_frame(&mut &f[..cut], 16384, &io_err).unwrap_err();
            assert!(matches!(e, Error::Protocol { layer: "http2", .. }), "{e:?}");
            assert!(e.to_string().contains("middle of a frame"), "{e}");
        }
        assert!(matches!(
            read_frame(&mut &f[..0], 16384, &io_err),
            Err(Error::Connection { .. })
        ));
    }

    #[test]
    fn padding() {
        let f = Frame::new(DATA, PADDED, 1, vec![2, b'a', b'b', 0, 0]);
        assert_eq!(f.content().unwrap(), b"ab");
        let bad = Frame::new(DATA, PADDED, 1, vec![9, b'a']);
        assert!(bad.content().is_err());
        let empty = Frame::new(DATA, PADDED, 1, vec![]);
        assert!(empty.content().is_err());
        let h = Frame::new(HEADERS, PRIORITY_FLAG, 1, vec![0, 0, 0, 0, 0, 7]);
        assert_eq!(h.content().unwrap(), &[7]);
    }
}
