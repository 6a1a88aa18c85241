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
use std::str::FromStr;

/// The transport a request travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Datagrams: the client transaction retransmits (Timer E).
    Udp,
    /// A reliable stream: no retransmission, messages framed by Content-Length.
    Tcp,
}

impl Transport {
    /// The token used in Via and in the `transport` URI parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Whether the transport itself guarantees delivery (RFC 3261 §17.1.2.2: no Timer E).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_lowercase())
    }
}

/// A transport name other than udp or tcp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported transport `{0}`: use udp or tcp")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("udp") {
            Ok(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Ok(Transport::Tcp)
        } else {
            Err(UnknownTransport(s.into()))
        }
    }
}
