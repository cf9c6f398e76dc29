//! gRPC length-prefixed message framing.

use crate::error::{Error, Result};

/// Frames one uncompressed message.
pub fn encode(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Reassembles messages from DATA payloads that may split them anywhere.
pub struct MessageDecoder {
    buf: Vec<u8>,
    max: usize,
}

impl MessageDecoder {
    /// A decoder refusing messages larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        MessageDecoder {
            buf: Vec::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no partial message is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next complete message, if any.
    pub fn next(&mut self) -> Result<Option<Vec<u8>>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        if self.buf[0] != 0 {
            return Err(Error::protocol(
                "grpc",
                format!(
                    "compressed-flag {} set, but no compression was negotiated",
                    self.buf[0]
                ),
            ));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.max {
            return Err(Error::protocol(
                "grpc",
                format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.max
                ),
            ));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let msg = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Ok(Some(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_limits() {
        let mut enc = encode(b"hello");
        enc.extend(encode(b""));
        let mut d = MessageDecoder::new(10);
        for b in &enc {
            d.push(&[*b]);
        }
        assert_eq!(d.next().unwrap().unwrap(), b"hello");
        assert_eq!(d.next().unwrap().unwrap(), b"");
        assert!(d.next().unwrap().is_none() && d.is_empty());
        d.push(&encode(&[0; 11]));
        assert!(d.next().is_err());
        let mut c = MessageDecoder::new(10);
        c.push(&[1, 0, 0, 0, 0]);
        assert!(c.next().is_err());
    }
}
