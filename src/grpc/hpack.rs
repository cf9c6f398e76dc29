//! HPACK (RFC 7541) via loona-hpack: a decoder with a bounded dynamic table and list
//! size, and a stateless request encoder (literals without indexing).

use loona_hpack::encoder::encode_integer;
use loona_hpack::Decoder;

use crate::error::{Error, Result};

/// Our SETTINGS_HEADER_TABLE_SIZE: the largest dynamic table the peer may make us keep.
pub const TABLE_SIZE: usize = 4096;

/// A decoded header list.
pub type Headers = Vec<(String, String)>;

/// Decodes header blocks; keeps the connection's dynamic table.
pub struct HeaderDecoder {
    inner: Decoder<'static>,
    max_list: usize,
}

impl HeaderDecoder {
    /// A decoder that refuses header lists larger than `max_list` bytes (RFC 9113 size:
    /// name + value + 32 per field).
    pub fn new(max_list: usize) -> Self {
        let mut inner = Decoder::new();
        inner.set_max_allowed_table_size(TABLE_SIZE);
        HeaderDecoder { inner, max_list }
    }

    /// Decodes one complete header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut bad = false;
        let r = self.inner.decode_with_cb(block, |n, v| {
            size += n.len() + v.len() + 32;
            if size <= self.max_list {
                out.push((
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ));
            } else {
                bad = true;
            }
        });
        r.map_err(|e| Error::protocol("hpack", format!("bad header block: {e:?}")))?;
        if bad {
            return Err(Error::protocol(
                "hpack",
                format!("header list exceeds {} bytes", self.max_list),
            ));
        }
        Ok(out)
    }
}

/// Encodes request headers as literals without indexing (no encoder state to keep in
/// sync with the peer's table size).
pub fn encode(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0x00);
        for s in [n.as_bytes(), v.as_bytes()] {
            let mut len = encode_integer(s.len(), 7);
            len[0] &= 0x7f; // no Huffman
            out.extend_from_slice(&len);
            out.extend_from_slice(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let long = "x".repeat(300);
        let hs = [(":path", "/a.B/C"), ("x-long", long.as_str())];
        let block = encode(&hs);
        let mut d = HeaderDecoder::new(16384);
        let got = d.decode(&block).unwrap();
        assert_eq!(got[0], (":path".into(), "/a.B/C".into()));
        assert_eq!(got[1].1, long);
        assert!(HeaderDecoder::new(100).decode(&block).is_err());
        assert!(d.decode(&[0x3f]).is_err());
        assert!(d
            .decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
            .is_err());
    }
}
