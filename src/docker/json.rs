//! Docker's JSON bodies: any body (errors quote an excerpt of it), and the container list.

use std::fmt;

use serde_core::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Value};

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

/// The parts of a JSON object to keep: a key with `None` keeps its whole value, with
/// `Some(shape)` only those parts of its (object) value; other keys are skipped unbuilt.
pub(crate) struct Shape(&'static [(&'static str, Option<&'static Shape>)]);

/// What [`container_from_inspect`](crate::docker::inspect::container_from_inspect) reads
/// of an inspect body.
pub(crate) const INSPECT: &Shape = &Shape(&[
    ("Id", None),
    ("Name", None),
    ("State", None),
    ("Config", Some(&Shape(&[("Image", None), ("Labels", None)]))),
    ("HostConfig", Some(&Shape(&[("Privileged", None)]))),
]);

/// Parses a JSON body keeping only the parts `shape` names (a non-object where an object
/// is shaped becomes `null`). The body is still checked to be JSON throughout.
///
/// An inspect body is ~4 KiB of JSON whose full tree (mounts, networks, the whole config
/// and host config) costs several hundred allocations; the few fields a container keeps
/// need a handful, and less churn leaves the allocator less to keep after a listing.
pub(crate) fn parse_json_shaped(body: &[u8], shape: &'static Shape, what: &str) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    Shaped(shape)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| json_error(body, what, e))
}

/// A [`DeserializeSeed`] building only the shaped parts of a value.
#[derive(Clone, Copy)]
struct Shaped(&'static Shape);

impl<'de> DeserializeSeed<'de> for Shaped {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Finds a key in a shape without allocating: its index, or `None` to skip it.
struct ShapeKey(&'static Shape);

impl<'de> DeserializeSeed<'de> for ShapeKey {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Option<usize>, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for ShapeKey {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> std::result::Result<Option<usize>, E> {
        Ok(self.0 .0.iter().position(|(name, _)| *name == k))
    }
}

impl<'de> Visitor<'de> for Shaped {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(ShapeKey(self.0))? {
            let Some(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let (name, sub) = self.0 .0[i];
            let value = match sub {
                None => map.next_value::<Value>()?,
                Some(sub) => map.next_value_seed(Shaped(sub))?,
            };
            out.insert(name.to_string(), value);
        }
        Ok(Value::Object(out))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
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

    #[test]
    fn shaped_parse_keeps_what_the_inspect_reads() {
        let body = br#"{"Id":"a","Name":"/n","State":{"Pid":3,"X":[1]},"Mounts":[{"a":1}],
            "Config":{"Image":"i","Labels":{"k":"v"},"Env":["A=B"]},"HostConfig":{"Privileged":true,"Binds":null},
            "\u0049mage":"sha"}"#;
        let v = parse_json_shaped(body, INSPECT, "inspect").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Id":"a","Name":"/n","State":{"Pid":3,"X":[1]},
                "Config":{"Image":"i","Labels":{"k":"v"}},"HostConfig":{"Privileged":true}})
        );
        // non-objects where objects are shaped, and escaped keys
        let v = parse_json_shaped(
            br#"{"Config":[1,{"a":2}],"HostConfig":7,"\u0049d":"x"}"#,
            INSPECT,
            "i",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Config":null,"HostConfig":null,"Id":"x"})
        );
        assert_eq!(
            parse_json_shaped(b"[1]", INSPECT, "i").unwrap(),
            Value::Null
        );
        // still JSON throughout: errors in skipped parts and trailing garbage fail
        for bad in [
            &br#"{"Id":"a","Mounts":[1,}"#[..],
            br#"{"Id":"a"} x"#,
            b"",
            b"<html>",
        ] {
            let e = parse_json_shaped(bad, INSPECT, "inspect")
                .unwrap_err()
                .to_string();
            assert!(e.contains("inspect: "), "{e}");
        }
    }
}
