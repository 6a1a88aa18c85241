//! The sans-IO SIP core: no sockets, no clock reads; time is always passed in.

pub mod codec;
pub mod digest;
pub mod endpoint;
pub mod flow;
pub mod outcome;
pub mod request;
pub mod target;
pub mod transaction;

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

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("udp") {
            Ok(Transport::Udp)
        } else if s.eq_ignore_ascii_case("tcp") {
            Ok(Transport::Tcp)
        } else {
            Err(format!("unsupported transport `{s}`: use udp or tcp"))
        }
    }
}
