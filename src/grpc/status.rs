//! gRPC status from response headers/trailers.

use crate::error::{Error, GrpcCode, Result};

use super::hpack::Headers;

/// Looks a header up by (lowercase) name.
pub fn get<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Checks the response headers: `:status` 200 and a gRPC content type.
pub fn check_response_headers(h: &Headers) -> Result<()> {
    let status = get(h, ":status").unwrap_or("");
    if status != "200" {
        // The gRPC HTTP/2 protocol's mapping of HTTP statuses.
        let code = match status {
            "400" => GrpcCode::INTERNAL,
            "401" => GrpcCode::UNAUTHENTICATED,
            "403" => GrpcCode::PERMISSION_DENIED,
            "404" => GrpcCode::UNIMPLEMENTED,
            "429" | "502" | "503" | "504" => GrpcCode::UNAVAILABLE,
            _ => GrpcCode::UNKNOWN,
        };
        // A trailers-only error may still carry a grpc-status; prefer it.
        if get(h, "grpc-status").is_some() {
            return check_status(h);
        }
        return Err(Error::Grpc {
            code,
            message: format!("HTTP status {status:?} instead of 200"),
        });
    }
    match get(h, "content-type") {
        Some(ct) if ct.starts_with("application/grpc") => Ok(()),
        // A trailers-only response must carry a grpc-status; let that decide.
        _ if get(h, "grpc-status").is_some() => Ok(()),
        ct => Err(Error::protocol(
            "grpc",
            format!("response content-type {ct:?} is not application/grpc"),
        )),
    }
}

/// The call's outcome from trailers (or a trailers-only response).
pub fn check_status(t: &Headers) -> Result<()> {
    let s = get(t, "grpc-status")
        .ok_or_else(|| Error::protocol("grpc", "response ended without grpc-status"))?;
    let code: u32 = s
        .trim()
        .parse()
        .map_err(|_| Error::protocol("grpc", format!("bad grpc-status {s:?}")))?;
    if code == 0 {
        return Ok(());
    }
    Err(Error::Grpc {
        code: code.into(),
        message: percent_decode(get(t, "grpc-message").unwrap_or("")),
    })
}

/// Decodes `%XX` escapes of a grpc-message; malformed escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats a `grpc-timeout` value (at most 8 digits).
pub fn timeout_header(d: std::time::Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", (d.as_secs()).min(99_999_999))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode() {
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%E2%82%AC"), "€");
        let t = vec![
            ("grpc-status".to_string(), "12".to_string()),
            ("grpc-message".to_string(), "no%20such".to_string()),
        ];
        assert_eq!(
            check_status(&t),
            Err(Error::Grpc {
                code: GrpcCode::UNIMPLEMENTED,
                message: "no such".into()
            })
        );
        assert_eq!(timeout_header(std::time::Duration::from_secs(2)), "2000m");
    }
}
