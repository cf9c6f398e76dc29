//! HTTP/2 frame encoding and decoding (RFC 9113 section 4).

use std::io::{self, Read};

use crate::error::{Error, GrpcCode, Result};

/// A frame type (RFC 9113 section 6); unknown types are kept (and ignored, section 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// DATA (0x0).
    Data,
    /// HEADERS (0x1).
    Headers,
    /// PRIORITY (0x2).
    Priority,
    /// RST_STREAM (0x3).
    RstStream,
    /// SETTINGS (0x4).
    Settings,
    /// PUSH_PROMISE (0x5).
    PushPromise,
    /// PING (0x6).
    Ping,
    /// GOAWAY (0x7).
    GoAway,
    /// WINDOW_UPDATE (0x8).
    WindowUpdate,
    /// CONTINUATION (0x9).
    Continuation,
    /// A type this client does not know.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(b: u8) -> Self {
        match b {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            b => Kind::Unknown(b),
        }
    }
}

impl From<Kind> for u8 {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Data => 0,
            Kind::Headers => 1,
            Kind::Priority => 2,
            Kind::RstStream => 3,
            Kind::Settings => 4,
            Kind::PushPromise => 5,
            Kind::Ping => 6,
            Kind::GoAway => 7,
            Kind::WindowUpdate => 8,
            Kind::Continuation => 9,
            Kind::Unknown(b) => b,
        }
    }
}

/// SETTINGS parameter identifiers (RFC 9113 section 6.5.2).
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    /// SETTINGS_ENABLE_PUSH.
    pub const ENABLE_PUSH: u16 = 0x2;
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// HTTP/2 error codes (RFC 9113 section 7), as carried by RST_STREAM and GOAWAY.
pub mod reason {
    /// NO_ERROR: graceful shutdown.
    pub const NO_ERROR: u32 = 0x0;
    /// REFUSED_STREAM: the stream was refused before any processing; safe to retry.
    pub const REFUSED_STREAM: u32 = 0x7;
    /// CANCEL: the stream is no longer needed.
    pub const CANCEL: u32 = 0x8;
}

/// The gRPC status of a stream reset with HTTP/2 error code `reason` (the gRPC HTTP/2
/// protocol's mapping, as far as it concerns a client: a refused stream is UNAVAILABLE, a
/// cancelled one CANCELLED, everything else INTERNAL).
pub fn reset_status(reason: u32) -> GrpcCode {
    match reason {
        reason::REFUSED_STREAM => GrpcCode::UNAVAILABLE,
        reason::CANCEL => GrpcCode::CANCELLED,
        _ => GrpcCode::INTERNAL,
    }
}

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
    pub kind: Kind,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits).
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame.
    pub fn new(kind: Kind, flags: u8, stream: u32, payload: Vec<u8>) -> Self {
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
        out.push(self.kind.into());
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
        if self.kind == Kind::Headers && self.has(PRIORITY_FLAG) {
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
        kind: Kind::from(head[3]),
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
pub(super) fn not_http2() -> Error {
    Error::protocol(
        "http2",
        "peer does not speak HTTP/2 (is this a gRPC socket?)",
    )
}

/// Encodes SETTINGS parameters (ids from [`setting`]).
pub fn settings(params: &[(u16, u32)]) -> Frame {
    let mut p = Vec::with_capacity(params.len() * 6);
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    Frame::new(Kind::Settings, 0, 0, p)
}

/// A WINDOW_UPDATE frame.
pub fn window_update(stream: u32, inc: u32) -> Frame {
    Frame::new(Kind::WindowUpdate, 0, stream, inc.to_be_bytes().to_vec())
}

/// Reads a big-endian u32 at `at`; bytes past the end of `p` read as 0 (callers check
/// payload lengths first).
pub(super) fn be32(p: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    for (i, d) in b.iter_mut().enumerate() {
        *d = at.checked_add(i).and_then(|j| p.get(j)).copied().unwrap_or(0);
    }
    u32::from_be_bytes(b)
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
            Frame::new(Kind::Data, END_STREAM, 1, b"hello".to_vec()),
            Frame::new(Kind::Headers, END_HEADERS, 0x7fff_ffff, vec![0; 300]),
            settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 20), (setting::MAX_FRAME_SIZE, 16384)]),
            window_update(3, 12345),
            Frame::new(Kind::Ping, ACK, 0, vec![1; 8]),
        ] {
            let bytes = f.encode();
            let back = read_frame(&mut &bytes[..], 16384, &io_err).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn too_large_and_http1() {
        let f = Frame::new(Kind::Data, 0, 1, vec![0; 100]).encode();
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
        let f = Frame::new(Kind::Data, PADDED, 1, vec![2, b'a', b'b', 0, 0]);
        assert_eq!(f.content().unwrap(), b"ab");
        let bad = Frame::new(Kind::Data, PADDED, 1, vec![9, b'a']);
        assert!(bad.content().is_err());
        let empty = Frame::new(Kind::Data, PADDED, 1, vec![]);
        assert!(empty.content().is_err());
        let h = Frame::new(Kind::Headers, PRIORITY_FLAG, 1, vec![0, 0, 0, 0, 0, 7]);
        assert_eq!(h.content().unwrap(), &[7]);
    }

    #[test]
    fn kinds_be32_and_resets() {
        for b in 0..=255u8 {
            assert_eq!(u8::from(Kind::from(b)), b);
        }
        assert_eq!(Kind::from(3), Kind::RstStream);
        assert_eq!(Kind::from(10), Kind::Unknown(10));
        assert_eq!(be32(&[1, 2, 3, 4, 5], 1), 0x0203_0405);
        assert_eq!(be32(&[1, 2], 0), 0x0102_0000);
        assert_eq!(be32(&[], usize::MAX), 0);
        assert_eq!(reset_status(reason::REFUSED_STREAM), GrpcCode::UNAVAILABLE);
        assert_eq!(reset_status(reason::CANCEL), GrpcCode::CANCELLED);
        assert_eq!(reset_status(0x1), GrpcCode::INTERNAL);
    }
}
