//! The gRPC status code of [`Error::Grpc`](crate::Error::Grpc).
#![forbid(unsafe_code)]

use std::fmt;

/// A gRPC status code (the `grpc-status` of a call), in the manner of h2's `Reason`: the
/// 17 codes of the gRPC specification as named constants, and any other value kept as it
/// came.
///
/// ```
/// use whalewatcher::error::GrpcCode;
///
/// assert_eq!(GrpcCode::NOT_FOUND.as_u32(), 5);
/// assert_eq!(GrpcCode::from(12), GrpcCode::UNIMPLEMENTED);
/// assert_eq!(GrpcCode::UNAVAILABLE.to_string(), "UNAVAILABLE");
/// assert_eq!(GrpcCode::from(99).as_str(), "UNKNOWN_CODE");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcCode(u32);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        impl GrpcCode {
            $($(#[$doc])* pub const $name: GrpcCode = GrpcCode($value);)*

            /// The canonical name, e.g. `"NOT_FOUND"`; `"UNKNOWN_CODE"` for a value outside
            /// the specification.
            pub fn as_str(self) -> &'static str {
                match self.0 {
                    $($value => stringify!($name),)*
                    _ => "UNKNOWN_CODE",
                }
            }
        }
    };
}

codes! {
    /// 0: not an error.
    OK = 0,
    /// 1: the call was cancelled, typically by the caller.
    CANCELLED = 1,
    /// 2: an unknown error (e.g. a handler that failed without a status).
    UNKNOWN = 2,
    /// 3: the client specified an invalid argument.
    INVALID_ARGUMENT = 3,
    /// 4: the deadline expired before the call could complete.
    DEADLINE_EXCEEDED = 4,
    /// 5: a requested entity was not found.
    NOT_FOUND = 5,
    /// 6: the entity a client tried to create already exists.
    ALREADY_EXISTS = 6,
    /// 7: the caller may not run the call.
    PERMISSION_DENIED = 7,
    /// 8: a resource (quota, memory, ...) is exhausted.
    RESOURCE_EXHAUSTED = 8,
    /// 9: the system is not in a state the call requires.
    FAILED_PRECONDITION = 9,
    /// 10: the call was aborted (e.g. by a concurrency conflict).
    ABORTED = 10,
    /// 11: the call went past the valid range.
    OUT_OF_RANGE = 11,
    /// 12: the call is not implemented or not supported by the server.
    UNIMPLEMENTED = 12,
    /// 13: an internal error of the server (or of the transport).
    INTERNAL = 13,
    /// 14: the service is currently unavailable; retrying may help.
    UNAVAILABLE = 14,
    /// 15: unrecoverable data loss or corruption.
    DATA_LOSS = 15,
    /// 16: the request lacks valid authentication credentials.
    UNAUTHENTICATED = 16,
}

impl GrpcCode {
    /// The numeric value, as sent in `grpc-status`.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

impl From<u32> for GrpcCode {
    fn from(code: u32) -> Self {
        GrpcCode(code)
    }
}

impl From<GrpcCode> for u32 {
    fn from(code: GrpcCode) -> Self {
        code.0
    }
}

impl fmt::Display for GrpcCode {
    /// The canonical name ([`as_str`](GrpcCode::as_str)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for GrpcCode {
    /// `NOT_FOUND`, or `GrpcCode(99)` for a value outside the specification.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            "UNKNOWN_CODE" => f.debug_tuple("GrpcCode").field(&self.0).finish(),
            name => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GrpcCode;

    #[test]
    fn names_and_values() {
        let names = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        for (i, name) in names.iter().enumerate() {
            let c = GrpcCode::from(i as u32);
            assert_eq!(c.as_str(), *name);
            assert_eq!(c.to_string(), *name);
            assert_eq!(format!("{c:?}"), *name);
            assert_eq!(u32::from(c), i as u32);
        }
        assert_eq!(GrpcCode::from(17).as_str(), "UNKNOWN_CODE");
        assert_eq!(
            format!("{:?}", GrpcCode::from(u32::MAX)),
            "GrpcCode(4294967295)"
        );
        assert_eq!(GrpcCode::from(17).as_u32(), 17);
    }
}
