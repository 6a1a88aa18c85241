//! Tolerant parsing and framing of SIP messages received from the network.
//!
//! Nothing received is trusted: every function here returns an error instead of panicking,
//! and no allocation grows past [`MAX_MESSAGE`].
//!
//! rsip 0.4 fails or silently loses data on several forms that real devices send (folded
//! header lines, compact names, spaces before `;`, LF-only line ends), so received bytes are
//! parsed here rather than by rsip.

/// The largest message accepted, headers and body together.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Why received bytes are not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Placeholder until the codec lands.
    #[error("not implemented")]
    Todo,
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD uri SIP/2.0`
    Request {
        /// Method token, as received (case kept).
        method: String,
        /// Request-URI, as received.
        uri: String,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: String,
    },
}

/// One header line, after unfolding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The canonical long name (`Via`, `Call-ID`, `WWW-Authenticate`, ...), whatever form was received.
    pub name: String,
    /// The value with surrounding white space removed.
    pub value: String,
}

/// A parsed message: start line, headers in order, body bounded by Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Headers in the order received.
    pub headers: Vec<Header>,
    /// The body, exactly Content-Length bytes.
    pub body: Vec<u8>,
}

impl Message {
    /// The first value of the header `name` (compared case-insensitively with canonical names).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of the header `name`, in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The `branch` parameter of the topmost Via.
    pub fn top_via_branch(&self) -> Option<&str> {
        todo!()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        todo!()
    }

    /// The status code, for a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }
}

/// Parses one whole message (a UDP datagram, or a frame cut by [`frame`]).
pub fn parse(_bytes: &[u8]) -> Result<Message, CodecError> {
    Err(CodecError::Todo)
}

/// For stream transports: the length of the first complete message in `buf`, `Ok(None)` if
/// more bytes are needed.
pub fn frame(_buf: &[u8]) -> Result<Option<usize>, CodecError> {
    Err(CodecError::Todo)
}
