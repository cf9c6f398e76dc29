//! Where an HTTP engine listens: a Unix socket path or a plain TCP `host:port`.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::stream::Stream;

/// An engine's HTTP endpoint.
///
/// Accepted forms: `unix:///path/to/socket`, a bare absolute `/path/to/socket`, and
/// `tcp://host:port` (plain TCP; **TLS is not supported**, so `https://` and Docker's
/// TLS-verified TCP setups are rejected or will not work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket at this path.
    Unix(PathBuf),
    /// Plain TCP to `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Parses an endpoint address; anything but the accepted forms is an
    /// [`Error::InvalidEndpoint`].
    pub fn parse(address: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: address.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = address.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "a unix:// address needs an absolute path (unix:///path)",
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if address.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(address)));
        }
        if let Some(hostport) = address.strip_prefix("tcp://") {
            let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| invalid("a tcp:// address needs host:port"))?;
            if host.is_empty() || hostport.contains('/') {
                return Err(invalid("a tcp:// address needs host:port and no path"));
            }
            if port.parse::<u16>().is_err() {
                return Err(invalid("the port is not a number in 0..=65535"));
            }
            return Ok(Endpoint::Tcp(hostport.to_string()));
        }
        if address.starts_with("https://") {
            return Err(invalid("TLS is not supported; use unix:// or plain tcp://"));
        }
        Err(invalid(
            "expected unix:///path, an absolute socket path, or tcp://host:port",
        ))
    }

    /// The value for the request's `Host` header.
    pub fn host_header(&self) -> &str {
        match self {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp(hp) => hp,
        }
    }

    /// Connects, waiting at most `timeout` for TCP connects. (Unix socket connects do not
    /// block on a live engine; a missing socket fails at once.)
    pub(crate) fn connect(&self, timeout: Duration) -> Result<Stream> {
        let url = self.to_string();
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path)
                .map(Stream::Unix)
                .map_err(|e| Error::connection(&url, &e)),
            Endpoint::Tcp(hp) => {
                let addrs = hp
                    .to_socket_addrs()
                    .map_err(|e| Error::connection(&url, &e))?;
                let mut last = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let e = last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "host has no address")
                });
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) {
                    return Err(Error::Timeout {
                        what: format!("connecting to {url}"),
                    });
                }
                Err(Error::connection(&url, &e))
            }
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_accepted_forms() {
        assert_eq!(
            Endpoint::parse("unix:///run/docker.sock").unwrap(),
            Endpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/run/docker.sock").unwrap(),
            Endpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Endpoint::parse("unix:///x").unwrap().to_string(),
            "unix:///x"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "docker.sock",
            "unix://relative",
            "tcp://nohost",
            "tcp://:2375",
            "tcp://h:99999",
            "tcp://h:1/path",
            "https://h:2376",
            "npipe:////./pipe/docker_engine",
            "http://h:1",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::InvalidEndpoint { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
