//! The SIP wire format: bytes in, bytes out, no state beyond one message. Sans-IO.
//!
//! - [`codec`] parses and frames everything received, tolerantly and within bounds.
//! - [`uri`] reads the phone addresses users type into a [`Target`](uri::Target) with a
//!   [`Host`](uri::Host) and an optional port.
//! - [`request`] writes the NOTIFY requests, once per attempt, into one buffer.
//! - [`response`] writes responses (the simulated phone's, and tests').
//! - [`digest`] is HTTP digest authentication (RFC 2617, 7616, 8760), split by role:
//!   [`digest::client`] answers challenges, [`digest::server`] issues and verifies them.

pub mod codec;
pub mod digest;
pub mod request;
pub mod response;
pub mod uri;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Appends the header line `name: parts...` and its CRLF: the one place header lines are
/// written.
fn push_header(out: &mut Vec<u8>, name: &str, parts: &[&str]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `addr` as its `Display` does. IPv4, the usual case, without the formatting
/// machinery, since every request of every target writes it.
pub(crate) fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(v4.port()).as_bytes());
        }
        SocketAddr::V6(_) => out.extend_from_slice(addr.to_string().as_bytes()),
    }
}

/// Writes `ip` as a URI host: as its `Display` does, IPv6 in brackets (see
/// [`push_socket_addr`]).
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            // Into one array, copied once: at most 15 bytes, and three digits an octet.
            let mut text = [0u8; 15];
            let mut len = 0;
            let mut push = |b: u8| {
                text[len] = b;
                len += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(b'.');
                }
                if octet >= 100 {
                    push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    push(b'0' + octet / 10 % 10);
                }
                push(b'0' + octet % 10);
            }
            out.extend_from_slice(&text[..len]);
        }
        IpAddr::V6(v6) => {
            out.push(b'[');
            out.extend_from_slice(v6.to_string().as_bytes());
            out.push(b']');
        }
    }
}

/// The transport a request travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Datagrams: the client transaction retransmits (Timer E).
    Udp,
    /// A reliable stream: no retransmission, messages framed by Content-Length.
    Tcp,
    /// TCP with TLS (RFC 3261 section 26.2): framed as TCP.
    Tls,
}

impl Transport {
    /// The token used in Via and in the `transport` URI parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The port a next hop has when none is given (RFC 3261 section 19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => uri::DEFAULT_PORT,
            Transport::Tls => uri::DEFAULT_TLS_PORT,
        }
    }

    /// Whether the transport itself guarantees delivery (RFC 3261 §17.1.2.2: no Timer E).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_lowercase())
    }
}

/// A transport name other than udp, tcp or tls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported transport `{0}`: use udp, tcp or tls")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("udp") {
            Ok(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Ok(Transport::Tcp)
        } else if s.eq_ignore_ascii_case("tls") {
            Ok(Transport::Tls)
        } else {
            Err(UnknownTransport(s.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for addr in [
            "0.0.0.0:0",
            "1.2.3.4:5",
            "10.0.100.255:5060",
            "9.99.199.100:10",
            "255.255.255.255:65535",
            "[::1]:5060",
            "[fe80::1:2]:40000",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = Vec::new();
            push_socket_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
            let mut out = Vec::new();
            push_ip(&mut out, addr.ip());
            let host = match addr.ip() {
                IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            assert_eq!(String::from_utf8(out).unwrap(), host);
        }
    }
}
