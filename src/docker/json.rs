//! Docker's JSON bodies: any body (errors quote an excerpt of it), and the container list.

use std::fmt;

use serde_core::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::{Error, Result};

/// Parses a JSON body; `what` names it in the error, which also quotes the start of the
/// body (a proxy's HTML page says more than "expected value at line 1 column 1").
pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| json_error(body, what, e))
}

fn json_error(body: &[u8], what: &str, e: serde_json::Error) -> Error {
    let excerpt = crate::http::error_message(body);
    Error::protocol("json", format!("{what}: {e}; the body was: {excerpt:?}"))
}

/// The ids of a `GET /containers/json` answer, an array of objects with a string `Id`.
///
/// Decoded straight into the ids: a JSON tree of the whole answer (every container's
/// names, labels, mounts, ports …) would take several times the body's size at its peak,
/// memory that a long-running agent's allocator then keeps.
pub(crate) fn list_ids(body: &[u8]) -> Result<Vec<String>> {
    serde_json::from_slice::<Ids>(body)
        .map(|ids| ids.0)
        .map_err(|e| json_error(body, "container list", e))
}

/// The list's ids.
struct Ids(Vec<String>);

/// One list entry's `Id`.
struct Entry(String);

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of containers")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Ids, A::Error> {
                let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(Entry(id)) = seq.next_element()? {
                    ids.push(id);
                }
                Ok(Ids(ids))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a container object with an Id")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entry, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Id => id = Some(map.next_value::<String>()?),
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                id.map(Entry)
                    .ok_or_else(|| de::Error::custom("container list entry without Id"))
            }
        }
        d.deserialize_map(V)
    }
}

/// A list entry's key: `Id` or another one (compared without allocating).
enum Key {
    Id,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, k: &str) -> std::result::Result<Key, E> {
                Ok(if k == "Id" { Key::Id } else { Key::Other })
            }
        }
        d.deserialize_identifier(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_ids_and_their_errors() {
        let body = br#"[{"Id":"a","Names":["/x"],"Labels":{"Id":"no"},"Ports":[]},{"Id":"b"}]"#;
        assert_eq!(list_ids(body).unwrap(), ["a", "b"]);
        assert_eq!(list_ids(b" [ ] ").unwrap(), Vec::<String>::new());
        // an escaped key is still the key
        assert_eq!(list_ids(br#"[{"\u0049d":"c"}]"#).unwrap(), ["c"]);
        let e = list_ids(b"{}").unwrap_err().to_string();
        assert!(e.contains("expected an array of containers"), "{e}");
        let e = list_ids(br#"[{"Names":["/x"]}]"#).unwrap_err().to_string();
        assert!(e.contains("without Id"), "{e}");
        let e = list_ids(br#"[{"Id":7}]"#).unwrap_err().to_string();
        assert!(e.contains("expected a string"), "{e}");
        let e = list_ids(br#"[{"Id":"a"} "#).unwrap_err().to_string();
        assert!(e.contains("container list") && e.contains("EOF"), "{e}");
        let e = list_ids(b"<html>502 Bad Gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("container list") && e.contains("502 Bad Gateway"),
            "{e}"
        );
        let e = parse_json(b"<html>502 Bad Gateway</html>", "info")
            .unwrap_err()
            .to_string();
        assert!(e.contains("info: ") && e.contains("502 Bad Gateway"), "{e}");
    }
}
