//! Docker's JSON bodies: any body (errors quote an excerpt of it), and the container list.

use serde_json::Value;

use crate::error::{Error, Result};

/// Parses a JSON body; `what` names it in the error, which also quotes the start of the
/// body (a proxy's HTML page says more than "expected value at line 1 column 1").
pub(crate) fn parse_json(body: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| {
        let excerpt = crate::http::error_message(body);
        Error::protocol("json", format!("{what}: {e}; the body was: {excerpt:?}"))
    })
}

/// The ids of a `GET /containers/json` answer: an array of objects with a string `Id`.
pub(crate) fn list_ids(v: &Value) -> Result<Vec<String>> {
    let arr = v
        .as_array()
        .ok_or_else(|| Error::protocol("json", "container list is not an array"))?;
    arr.iter()
        .map(|c| {
            c.get("Id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::protocol("json", "container list entry without Id"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_ids_and_their_errors() {
        let v = parse_json(br#"[{"Id":"a","Names":["/x"]},{"Id":"b"}]"#, "list").unwrap();
        assert_eq!(list_ids(&v).unwrap(), ["a", "b"]);
        let e = list_ids(&parse_json(b"{}", "list").unwrap()).unwrap_err();
        assert!(e.to_string().contains("not an array"), "{e}");
        let e = list_ids(&parse_json(br#"[{"Id":7}]"#, "list").unwrap()).unwrap_err();
        assert!(e.to_string().contains("without Id"), "{e}");
        let e = parse_json(b"<html>502 Bad Gateway</html>", "container list").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("container list") && msg.contains("502 Bad Gateway"),
            "{msg}"
        );
    }
}
