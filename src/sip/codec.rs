//! Tolerant parsing and framing of SIP messages received from the network.
//!
//! Nothing received is trusted: every function here returns an error instead of panicking,
//! and no allocation grows past [`MAX_MESSAGE`].
//!
//! rsip 0.4 fails or silently loses data on several forms that real devices send (folded
//! header lines, compact names, spaces before `;`, LF-only line ends), so received bytes are
//! parsed here rather than by rsip.

use memchr::memmem::Finder;
use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

/// The largest message accepted, headers and body together.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The most headers one message may carry.
pub const MAX_HEADERS: usize = 256;

/// Why received bytes are not a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The message (or, for [`frame`], its head or head plus Content-Length) exceeds [`MAX_MESSAGE`].
    #[error("message of {len} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge {
        /// The length seen or announced.
        len: usize,
    },
    /// Nothing but line ends (keep-alives).
    #[error("no message, only line ends")]
    Empty,
    /// The first line is neither `METHOD uri SIP/2.0` nor `SIP/2.0 code reason`.
    #[error("malformed request or status line")]
    BadStartLine,
    /// A header line without a colon, with an invalid name, or a continuation with nothing to continue.
    #[error("malformed header line")]
    BadHeader,
    /// More than [`MAX_HEADERS`] headers.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// Content-Length not a number, larger than [`MAX_MESSAGE`], or given twice with different values.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// Fewer body bytes than Content-Length announces.
    #[error("body truncated: Content-Length {expected}, {present} bytes present")]
    Truncated {
        /// The announced Content-Length.
        expected: usize,
        /// The body bytes actually present.
        present: usize,
    },
    /// The start line or a header is not UTF-8 (the body may be anything).
    #[error("message head is not UTF-8")]
    NotUtf8,
}

/// The first line of a message, borrowed from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// `METHOD uri SIP/2.0`
    Request {
        /// Method token, as received (case kept).
        method: &'a str,
        /// Request-URI, as received.
        uri: &'a str,
    },
    /// `SIP/2.0 code reason`
    Response {
        /// Status code, 100..=699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: &'a str,
    },
}

/// One header line, after unfolding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The canonical long name (`Via`, `Call-ID`, `WWW-Authenticate`, ...), whatever form was
    /// received; names not known here are kept as received.
    pub name: &'a str,
    /// The value with surrounding white space removed: borrowed from the received bytes,
    /// owned only when folded lines had to be joined.
    pub value: Cow<'a, str>,
}

/// A parsed message: start line, headers in order, body bounded by Content-Length.
///
/// It borrows the received bytes: every response on the hot path is parsed, and copying
/// each header into its own allocation was most of the parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Request or status line.
    pub start: StartLine<'a>,
    /// Headers in the order received.
    pub headers: Vec<Header<'a>>,
    /// The body, exactly Content-Length bytes.
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// The first value of the header `name` (compared case-insensitively with canonical names).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_ref())
    }

    /// Every value of the header `name`, in order.
    pub fn headers<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_ref())
    }

    /// The `branch` parameter of the first via of the first Via header (a Via value may list
    /// several, comma-separated). Spaces around `;` and `=` are tolerated, the parameter name
    /// is case-insensitive and a quoted value is unquoted.
    pub fn top_via_branch(&self) -> Option<&str> {
        via_branch(self.header("Via")?)
    }

    /// CSeq number and method (`CSeq: 12 NOTIFY` gives `(12, "NOTIFY")`); `None` if malformed.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        cseq_value(self.header("CSeq")?)
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
///
/// Leading line ends (keep-alives) are skipped. The body is exactly Content-Length bytes;
/// bytes after it are ignored; without Content-Length the body is everything after the
/// blank line (a missing blank line means no body).
pub fn parse(bytes: &[u8]) -> Result<Message<'_>, CodecError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(CodecError::TooLarge { len: bytes.len() });
    }
    let (head, body) = split_message(bytes);
    if head.is_empty() {
        return Err(CodecError::Empty);
    }
    // One UTF-8 check for the whole head; its lines are then cut from the checked text.
    let head_text = text(head)?;
    let part = |bytes: &[u8]| within(head_text, head, bytes);
    let (start, rest) = split_line(head);
    let start = parse_start(part(start)?)?;
    let mut headers = Vec::with_capacity(16);
    let mut content_length = None;
    for raw in RawHeaders(rest) {
        let (name, raw_value, folded) = raw?;
        if headers.len() == MAX_HEADERS {
            return Err(CodecError::TooManyHeaders);
        }
        let canonical = canonical_name(name);
        let value = unfold(part(raw_value)?, folded);
        if canonical == Some("Content-Length") {
            content_length = merge_length(content_length, value.as_bytes())?;
        }
        let name = match canonical {
            Some(canonical) => canonical,
            None => part(name)?,
        };
        headers.push(Header { name, value });
    }
    let body = match content_length {
        Some(expected) if expected > body.len() => {
            return Err(CodecError::Truncated {
                expected,
                present: body.len(),
            })
        }
        Some(expected) => &body[..expected],
        None => body,
    };
    Ok(Message {
        start,
        headers,
        body,
    })
}

/// For stream transports: the length of the first complete message in `buf`, `Ok(None)` if
/// more bytes are needed.
///
/// Leading keep-alive line ends are counted in the length, so draining it drains them too
/// (a buffer holding only keep-alives gives `Ok(None)`; they count against [`MAX_MESSAGE`]
/// with the message that follows them). A missing Content-Length means no body. Only the
/// head is scanned and nothing is allocated; malformed header lines are left for [`parse`]
/// to report. Stateless: each call rescans from the start, so call it after each read, not
/// per byte.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let skip = leading_line_ends(buf);
    let window = &buf[..buf.len().min(MAX_MESSAGE)];
    let Some((head_end, body_start)) = find_head_end(window, skip) else {
        return if buf.len() >= MAX_MESSAGE {
            Err(CodecError::TooLarge { len: buf.len() })
        } else {
            Ok(None)
        };
    };
    let (_, rest) = split_line(&buf[skip..head_end]);
    let mut content_length = None;
    for (name, raw_value, _) in RawHeaders(rest).flatten() {
        if canonical_name(name) == Some("Content-Length") {
            content_length = merge_length(content_length, raw_value)?;
        }
    }
    let total = body_start + content_length.unwrap_or(0);
    if total > MAX_MESSAGE {
        return Err(CodecError::TooLarge { len: total });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// The top Via branch and the CSeq number of a message, without building a [`Message`]:
/// the hot path that routes responses to their transactions.
///
/// Agrees with [`Message::top_via_branch`] and [`Message::cseq`] on anything [`parse`]
/// accepts, except that it returns `None` when the branch value itself is split by a folded
/// line (it cannot be returned without copying); callers then fall back to [`parse`]. It does
/// not validate the rest of the message.
pub fn route_key(bytes: &[u8]) -> Option<(&str, u32)> {
    if bytes.len() > MAX_MESSAGE {
        return None;
    }
    let (head, _) = split_message(bytes);
    let (_, rest) = split_line(head);
    let (mut via, mut cseq) = (None, None);
    for (name, raw_value, _) in RawHeaders(rest).flatten() {
        // Only two names matter here: compare them directly rather than canonicalising all.
        if via.is_none() && (name.eq_ignore_ascii_case(b"Via") || name.eq_ignore_ascii_case(b"v")) {
            via = Some(raw_value);
        } else if cseq.is_none() && name.eq_ignore_ascii_case(b"CSeq") {
            cseq = Some(raw_value);
        } else {
            continue;
        }
        if via.is_some() && cseq.is_some() {
            break;
        }
    }
    let branch = via_branch(std::str::from_utf8(via?).ok()?)?;
    if branch.contains(['\r', '\n']) {
        return None;
    }
    let (number, _) = cseq_value(std::str::from_utf8(cseq?).ok()?)?;
    Some((branch, number))
}

/// Compact forms (RFC 3261 section 7.3.3 and the IANA registry) and their long names.
const COMPACT_NAMES: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Long names in their canonical spelling; matched case-insensitively.
const LONG_NAMES: &[&str] = &[
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
];

/// The canonical long name of a received header name, `None` for names not known here.
pub(crate) fn canonical_name(name: &[u8]) -> Option<&'static str> {
    if let [letter] = name {
        let letter = letter.to_ascii_lowercase();
        return COMPACT_NAMES
            .iter()
            .find(|(compact, _)| *compact == letter)
            .map(|(_, long)| *long);
    }
    // Every header of every message is looked up: compare only the names of its length
    // and first letter (most have one), and exactly before ignoring case (most are sent
    // in their canonical spelling).
    let first = *name.first()?;
    by_length_and_letter()
        .get(name.len() * 32 + usize::from(first & 31))?
        .iter()
        .find(|long| long.as_bytes() == name || long.as_bytes().eq_ignore_ascii_case(name))
        .copied()
}

/// [`LONG_NAMES`] grouped by length and first letter (case folded by its low five bits),
/// built on first use.
fn by_length_and_letter() -> &'static [Vec<&'static str>] {
    static TABLE: OnceLock<Vec<Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let longest = LONG_NAMES.iter().map(|n| n.len()).max().unwrap_or(0);
        let mut table = vec![Vec::new(); (longest + 1) * 32];
        for name in LONG_NAMES {
            table[name.len() * 32 + usize::from(name.as_bytes()[0] & 31)].push(*name);
        }
        table
    })
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `s` without [`is_ws`] at either end. By bytes, not characters: every header value of
/// every message is trimmed, and the white space is ASCII, so the cuts are on character
/// boundaries.
fn trim_ws(s: &str) -> &str {
    let ws = |b: &u8| is_ws(char::from(*b));
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|b| !ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !ws(b))
        .map_or(start, |last| last + 1);
    &s[start..end]
}

/// RFC 3261 `token` characters (header names, methods).
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

/// [`is_token_byte`] as a table: every byte of every header name goes through it.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

fn text(bytes: &[u8]) -> Result<&str, CodecError> {
    std::str::from_utf8(bytes).map_err(|_| CodecError::NotUtf8)
}

/// `part`, a sub-slice of `bytes`, as a slice of `text`, the checked UTF-8 of `bytes`.
/// Parts are cut next to ASCII delimiters, so they are on character boundaries; `get`
/// makes any other cut an error rather than a panic.
fn within<'a>(text: &'a str, bytes: &[u8], part: &[u8]) -> Result<&'a str, CodecError> {
    let start = (part.as_ptr() as usize)
        .checked_sub(bytes.as_ptr() as usize)
        .ok_or(CodecError::NotUtf8)?;
    text.get(start..start + part.len())
        .ok_or(CodecError::NotUtf8)
}

fn leading_line_ends(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Finds the blank line ending the head that starts at `from`: `(head_end, body_start)`,
/// where `head_end` is the `\n` ending the last header line. Any mix of CRLF and LF.
fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    // Vectorised searches rather than a search per line: this runs twice on every
    // response (to route it, then to parse it).
    static LF_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    static LF_CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    let rest = buf.get(from..)?;
    let crlf = LF_CRLF.find(rest);
    // An LF LF before the first LF CR LF ends the head first; it can only start there or
    // one byte before it. Neither search goes past the head of a complete message.
    let window = crlf.map_or(rest, |at| &rest[..at + 1]);
    match (LF_LF.find(window), crlf) {
        (Some(lf), _) => Some((from + lf, from + lf + 2)),
        (None, Some(crlf)) => Some((from + crlf, from + crlf + 3)),
        (None, None) => None,
    }
}

/// Splits a datagram into head (leading line ends skipped) and the bytes after the blank
/// line. Without a blank line, everything is head.
fn split_message(bytes: &[u8]) -> (&[u8], &[u8]) {
    let skip = leading_line_ends(bytes);
    match find_head_end(bytes, skip) {
        Some((head_end, body_start)) => (&bytes[skip..head_end], &bytes[body_start..]),
        None => (&bytes[skip..], &[]),
    }
}

/// The first line (without its `\n`) and the rest.
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', bytes) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Iterates over the header lines of a head (start line removed), yielding the name, the
/// raw value (everything after the colon up to the end of the last continuation line, line
/// ends and folding white space included), and whether continuation lines were folded into
/// it. Shared by [`parse`], [`frame`] and [`route_key`] so the three agree on what a header
/// is.
struct RawHeaders<'a>(&'a [u8]);

impl<'a> Iterator for RawHeaders<'a> {
    type Item = Result<(&'a [u8], &'a [u8], bool), CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0;
        if rest.is_empty() {
            return None;
        }
        // memchr: this scan runs over every byte of every response received.
        let line_end =
            |from: usize| memchr::memchr(b'\n', &rest[from..]).map_or(rest.len(), |i| from + i);
        let mut end = line_end(0);
        let mut folded = false;
        while matches!(rest.get(end + 1), Some(b' ' | b'\t')) {
            folded = true;
            end = line_end(end + 1);
        }
        let line = &rest[..end];
        self.0 = rest.get(end + 1..).unwrap_or_default();
        // The name is a token, then white space may come before the colon: one pass.
        let name_end = line
            .iter()
            .position(|&b| !is_token_byte(b))
            .unwrap_or(line.len());
        let colon = name_end
            + line[name_end..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        if name_end == 0 || line.get(colon) != Some(&b':') {
            return Some(Err(CodecError::BadHeader));
        }
        Some(Ok((&line[..name_end], &line[colon + 1..], folded)))
    }
}

/// Joins folded lines with a single space and trims the value; borrows when not folded.
fn unfold(raw: &str, folded: bool) -> Cow<'_, str> {
    if !folded {
        return Cow::Borrowed(trim_ws(raw));
    }
    let mut value = String::with_capacity(raw.len());
    for piece in raw.split('\n').map(trim_ws) {
        if piece.is_empty() {
            continue;
        }
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(piece);
    }
    Cow::Owned(value)
}

/// Parses one Content-Length value and checks it against any earlier one.
fn merge_length(earlier: Option<usize>, raw: &[u8]) -> Result<Option<usize>, CodecError> {
    let digits = raw.trim_ascii();
    if digits.is_empty() {
        return Err(CodecError::BadContentLength);
    }
    let mut len = 0usize;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return Err(CodecError::BadContentLength);
        }
        len = len * 10 + usize::from(digit - b'0');
        if len > MAX_MESSAGE {
            return Err(CodecError::BadContentLength);
        }
    }
    match earlier {
        Some(earlier) if earlier != len => Err(CodecError::BadContentLength),
        _ => Ok(Some(len)),
    }
}

fn parse_start(line: &str) -> Result<StartLine<'_>, CodecError> {
    let line = trim_ws(line);
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let first = words.next().ok_or(CodecError::BadStartLine)?;
    if first.eq_ignore_ascii_case("SIP/2.0") {
        let rest = line[first.len()..].trim_start_matches(is_ws);
        let (code, reason) = rest.split_at_checked(3).ok_or(CodecError::BadStartLine)?;
        if !code.bytes().all(|b| b.is_ascii_digit()) || reason.starts_with(|c| !is_ws(c)) {
            return Err(CodecError::BadStartLine);
        }
        let code = code.parse().map_err(|_| CodecError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(CodecError::BadStartLine);
        }
        return Ok(StartLine::Response {
            code,
            reason: trim_ws(reason),
        });
    }
    match (words.next(), words.next(), words.next()) {
        (Some(uri), Some(version), None)
            if first.bytes().all(is_token_byte) && version.eq_ignore_ascii_case("SIP/2.0") =>
        {
            Ok(StartLine::Request { method: first, uri })
        }
        _ => Err(CodecError::BadStartLine),
    }
}

/// Splits on `delim` outside double-quoted strings (with backslash escapes).
fn split_unquoted(s: &str, delim: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let bytes = r.as_bytes();
        // memchr jumps from one delimiter or quote to the next: Via values are split on
        // every response.
        let mut i = 0;
        while let Some(at) = memchr::memchr2(delim, b'"', &bytes[i..]) {
            i += at;
            if bytes[i] == delim {
                rest = Some(&r[i + 1..]);
                return Some(&r[..i]);
            }
            // Past the closing quote; past the end when it is never closed.
            i = closing_quote(bytes, i + 1) + 1;
            if i > bytes.len() {
                break;
            }
        }
        rest = None;
        Some(r)
    })
}

/// The index of the `"` closing a quoted string whose content starts at `from`, skipping
/// backslash escapes; the length when it is never closed.
fn closing_quote(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        if bytes[i + at] == b'"' {
            return i + at;
        }
        i += at + 2;
    }
    bytes.len()
}

/// The `branch` parameter of the first via in a Via value.
fn via_branch(value: &str) -> Option<&str> {
    let first_via = split_unquoted(value, b',').next()?;
    let (_, branch) = split_unquoted(first_via, b';')
        .skip(1)
        .filter_map(|param| param.split_once('='))
        .find(|(name, _)| trim_ws(name).eq_ignore_ascii_case("branch"))?;
    let branch = trim_ws(branch);
    let branch = branch
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(branch);
    (!branch.is_empty()).then_some(branch)
}

/// `number method` from a CSeq value.
fn cseq_value(value: &str) -> Option<(u32, &str)> {
    let mut words = value.split(is_ws).filter(|w| !w.is_empty());
    let (number, method) = (words.next()?, words.next()?);
    if words.next().is_some()
        || !number.bytes().all(|b| b.is_ascii_digit())
        || !method.bytes().all(is_token_byte)
    {
        return None;
    }
    Some((number.parse().ok()?, method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::prelude::*;

    const RESPONSE: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKone;rport\r\n\
        From: <sip:a@b>;tag=1\r\n\
        To: <sip:c@d>;tag=2\r\n\
        Call-ID: abc@host\r\n\
        CSeq: 7 NOTIFY\r\n\
        Content-Length: 4\r\n\
        \r\n\
        body";

    /// Parses text leaked for the test's lifetime, since a `Message` borrows its bytes.
    fn ok(text: impl Into<String>) -> Message<'static> {
        let text: &'static str = String::leak(text.into());
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    /// `parse` refuses `text` with `error`.
    #[track_caller]
    fn assert_refused(text: &str, error: CodecError) {
        assert_eq!(parse(text.as_bytes()), Err(error), "{text:?}");
    }

    fn with_header(line: &str) -> Message<'static> {
        ok(format!(
            "NOTIFY sip:p@h SIP/2.0\r\n{line}\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    /// What `parse` derives for routing, to compare with `route_key`.
    fn parsed_key(bytes: &[u8]) -> Option<(String, u32)> {
        let m = parse(bytes).ok()?;
        Some((m.top_via_branch()?.to_owned(), m.cseq()?.0))
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_of_any_kind() {
        for (text, expected) in [
            ("a\r\n\r\nb", Some((2, 5))),
            ("a\n\nb", Some((1, 3))),
            ("a\n\r\n\nb", Some((1, 4))),
            ("a\r\nb\n\n\r\n", Some((4, 6))),
            ("a\n\r\n", Some((1, 4))),
            ("a\n\r", None),
            ("a\nb\n", None),
            ("", None),
        ] {
            assert_eq!(find_head_end(text.as_bytes(), 0), expected, "{text:?}");
        }
        assert_eq!(find_head_end(b"\n\nx\n\n", 2), Some((3, 5)));
        assert_eq!(find_head_end(b"ab", 3), None);
    }

    #[test]
    fn token_bytes_are_those_of_rfc_3261() {
        let expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .chain(*b"-.!%*_+`'~")
            .collect();
        let found: Vec<u8> = (0..=255u8).filter(|&b| is_token_byte(b)).collect();
        let mut expected = expected;
        expected.sort_unstable();
        assert_eq!(found, expected);
    }

    #[test]
    fn splits_outside_quotes_only() {
        let split = |s: &'static str| split_unquoted(s, b',').collect::<Vec<_>>();
        assert_eq!(split("a,b,,c"), ["a", "b", "", "c"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split(","), ["", ""]);
        assert_eq!(split(r#"x="a,b",y"#), [r#"x="a,b""#, "y"]);
        assert_eq!(split(r#"x="a\",b",y"#), [r#"x="a\",b""#, "y"]);
        assert_eq!(split(r#"x="a\\",b"#), [r#"x="a\\""#, "b"]);
        // Never closed: the rest is one piece, as with a trailing escape.
        assert_eq!(split(r#"x="a,b"#), [r#"x="a,b"#]);
        assert_eq!(split(r#"x="a\"#), [r#"x="a\"#]);
        // Outside quotes a backslash is an ordinary character.
        assert_eq!(split(r#"a\,b"#), [r#"a\"#, "b"]);
        assert_eq!(split(r#""","x""#), [r#""""#, r#""x""#]);
    }

    #[test]
    fn parses_a_plain_response() {
        let m = ok(RESPONSE);
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 200,
                reason: "OK"
            }
        );
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.header("call-id"), Some("abc@host"));
        assert_eq!(m.top_via_branch(), Some("z9hG4bKone"));
        assert_eq!(m.cseq(), Some((7, "NOTIFY")));
        assert_eq!(m.body, b"body");
        assert_eq!(route_key(RESPONSE.as_bytes()), Some(("z9hG4bKone", 7)));
    }

    #[test]
    fn parses_a_request_line() {
        let m = with_header("Event: check-sync");
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "NOTIFY",
                uri: "sip:p@h"
            }
        );
        assert_eq!(m.status(), None);
    }

    #[test]
    fn status_line_reason_may_be_empty_or_missing() {
        for line in ["SIP/2.0 486 ", "SIP/2.0 486", "SIP/2.0 486 Busy Here"] {
            let m = ok(format!("{line}\r\nContent-Length: 0\r\n\r\n"));
            assert_eq!(m.status(), Some(486), "{line}");
        }
        let m = ok("SIP/2.0 486 Busy Here\r\n\r\n");
        assert!(matches!(m.start, StartLine::Response { reason, .. } if reason == "Busy Here"));
    }

    #[test]
    fn rejects_bad_start_lines() {
        for line in [
            "SIP/2.0 099 Low",
            "SIP/2.0 700 High",
            "SIP/2.0 20 OK",
            "SIP/2.0 2000 OK",
            "SIP/2.0 2x0 OK",
            "SIP/2.0",
            "NOTIFY sip:p@h",
            "NOTIFY sip:p@h SIP/3.0",
            "NOTIFY sip:p@h SIP/2.0 extra",
            "NO(TIFY sip:p@h SIP/2.0",
            "HTTP/1.1 200 OK",
        ] {
            assert_refused(
                &format!("{line}\r\nContent-Length: 0\r\n\r\n"),
                CodecError::BadStartLine,
            );
        }
    }

    #[test]
    fn unfolds_continuation_lines_with_one_space() {
        let m = ok("SIP/2.0 200 OK\r\n\
            Subject: first\r\n  second\r\n\tthird\r\n\
            Via: SIP/2.0/UDP h:5060\r\n ;branch=z9hG4bKfold\r\n\
            CSeq: 3\r\n NOTIFY\r\n\
            Content-Length: 0\r\n\r\n");
        assert_eq!(m.header("Subject"), Some("first second third"));
        assert_eq!(m.top_via_branch(), Some("z9hG4bKfold"));
        assert_eq!(m.cseq(), Some((3, "NOTIFY")));
    }

    #[test]
    fn continuation_without_a_header_is_an_error() {
        let text = "SIP/2.0 200 OK\r\n folded\r\n\r\n";
        assert_eq!(parse(text.as_bytes()), Err(CodecError::BadHeader));
    }

    #[test]
    fn expands_every_compact_name() {
        for (compact, long) in [
            ("v", "Via"),
            ("i", "Call-ID"),
            ("f", "From"),
            ("t", "To"),
            ("c", "Content-Type"),
            ("m", "Contact"),
            ("o", "Event"),
            ("k", "Supported"),
            ("s", "Subject"),
            ("e", "Content-Encoding"),
            ("u", "Allow-Events"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("x", "Session-Expires"),
        ] {
            for name in [compact.to_owned(), compact.to_ascii_uppercase()] {
                let m = with_header(&format!("{name}: value"));
                assert_eq!(m.headers[0].name, long, "{name}");
                assert_eq!(m.header(long), Some("value"));
            }
        }
        let m = ok("SIP/2.0 200 OK\r\nl: 2\r\n\r\nabc");
        assert_eq!(m.headers[0].name, "Content-Length");
        assert_eq!(m.body, b"ab");
    }

    #[test]
    fn every_long_name_is_found_in_any_case() {
        for name in LONG_NAMES {
            for received in [name.to_ascii_uppercase(), name.to_ascii_lowercase()] {
                assert_eq!(canonical_name(received.as_bytes()), Some(*name));
            }
        }
        for unknown in ["", "X-Unknown", "Vias", "WWW-Authenticate-Extra-Long-Name"] {
            assert_eq!(canonical_name(unknown.as_bytes()), None, "{unknown}");
        }
    }

    #[test]
    fn canonicalises_long_names_in_any_case() {
        for (received, canonical) in [
            ("cAlL-iD", "Call-ID"),
            ("call-id", "Call-ID"),
            ("www-authenticate", "WWW-Authenticate"),
            ("cseq", "CSeq"),
            ("proxy-authenticate", "Proxy-Authenticate"),
            ("MAX-FORWARDS", "Max-Forwards"),
            ("retry-after", "Retry-After"),
            ("subscription-state", "Subscription-State"),
            ("user-agent", "User-Agent"),
            ("content-type", "Content-Type"),
            ("authorization", "Authorization"),
            ("proxy-authorization", "Proxy-Authorization"),
            ("contact", "Contact"),
            ("from", "From"),
            ("to", "To"),
            ("VIA", "Via"),
            ("event", "Event"),
            ("X-Custom-Thing", "X-Custom-Thing"),
            ("x-lower", "x-lower"),
        ] {
            let m = with_header(&format!("{received}: v"));
            assert_eq!(m.headers[0].name, canonical);
        }
    }

    #[test]
    fn tolerates_white_space_around_the_colon() {
        let m = with_header("Via  :  SIP/2.0/UDP h:5060;branch=z9hG4bKws  ");
        assert_eq!(m.header("Via"), Some("SIP/2.0/UDP h:5060;branch=z9hG4bKws"));
        let m = with_header("Call-ID\t:\tx");
        assert_eq!(m.header("Call-ID"), Some("x"));
    }

    #[test]
    fn rejects_bad_header_lines() {
        for line in [
            "no colon here",
            ": empty name",
            "Bad Name: x",
            "Caf\u{e9}: x",
        ] {
            assert_refused(
                &format!("SIP/2.0 200 OK\r\n{line}\r\n\r\n"),
                CodecError::BadHeader,
            );
        }
    }

    #[test]
    fn via_branch_tolerates_spaces_case_and_quotes() {
        for (via, branch) in [
            ("SIP/2.0/UDP h:5070 ;branch=z9hG4bKabc", Some("z9hG4bKabc")),
            (
                "SIP/2.0/UDP h:5070 ; branch = z9hG4bKabc ;rport",
                Some("z9hG4bKabc"),
            ),
            ("SIP/2.0/UDP h;rport;BRANCH=z9hG4bKup", Some("z9hG4bKup")),
            ("SIP/2.0/UDP h;Branch=\"z9hG4bKq\"", Some("z9hG4bKq")),
            ("SIP/2.0/UDP h;x=\"a,b;branch=no\";branch=yes", Some("yes")),
            ("SIP/2.0/UDP h", None),
            ("SIP/2.0/UDP h;branch=", None),
            ("SIP/2.0/UDP h;branchx=1", None),
        ] {
            assert_eq!(
                with_header(&format!("Via: {via}")).top_via_branch(),
                branch,
                "{via}"
            );
        }
    }

    #[test]
    fn top_via_is_the_first_of_a_comma_list_and_of_the_headers() {
        let m = ok("SIP/2.0 200 OK\r\n\
            Via: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
            Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n\r\n");
        assert_eq!(m.top_via_branch(), Some("z9hG4bK1"));
        assert_eq!(m.headers("via").count(), 2);
    }

    #[test]
    fn cseq_tolerates_white_space_and_rejects_garbage() {
        for (value, cseq) in [
            ("12 NOTIFY", Some((12, "NOTIFY"))),
            ("  12 \t NOTIFY  ", Some((12, "NOTIFY"))),
            ("12", None),
            ("+12 NOTIFY", None),
            ("x NOTIFY", None),
            ("12 NOTIFY extra", None),
            ("99999999999 NOTIFY", None),
        ] {
            assert_eq!(
                with_header(&format!("CSeq: {value}")).cseq(),
                cseq,
                "{value}"
            );
        }
    }

    #[test]
    fn accepts_lf_only_and_mixed_line_ends() {
        let lf = RESPONSE.replace("\r\n", "\n");
        let m = ok(&lf);
        assert_eq!(m.top_via_branch(), Some("z9hG4bKone"));
        assert_eq!(m.header("Call-ID"), Some("abc@host"));
        assert_eq!(m.body, b"body");
        let mixed = "SIP/2.0 200 OK\nCall-ID: x\r\nContent-Length: 2\n\r\nhi";
        assert_eq!(ok(mixed).body, b"hi");
        assert_eq!(ok(mixed).header("Call-ID"), Some("x"));
    }

    #[test]
    fn skips_leading_keep_alives() {
        let m = ok(format!("\r\n\r\n\n{RESPONSE}"));
        assert_eq!(m.status(), Some(200));
        assert_eq!(parse(b"\r\n\r\n"), Err(CodecError::Empty));
        assert_eq!(parse(b""), Err(CodecError::Empty));
    }

    #[test]
    fn body_is_exactly_content_length_and_extra_bytes_are_ignored() {
        let m = ok("SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef");
        assert_eq!(m.body, b"abc");
        let m = ok("SIP/2.0 200 OK\r\ncontent-length:0\r\n\r\nignored");
        assert!(m.body.is_empty());
    }

    #[test]
    fn without_content_length_a_datagram_body_is_the_rest() {
        assert_eq!(
            ok("SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nrest\r\n").body,
            b"rest\r\n"
        );
        assert!(ok("SIP/2.0 200 OK\r\nCall-ID: x\r\n").body.is_empty());
    }

    #[test]
    fn body_may_be_any_bytes() {
        let mut bytes = b"SIP/2.0 200 OK\r\nl: 3\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0x00, 0xfe]);
        assert_eq!(parse(&bytes).unwrap().body, [0xff, 0x00, 0xfe]);
    }

    #[test]
    fn truncated_body_is_an_error() {
        let text = "SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nshort";
        assert_eq!(
            parse(text.as_bytes()),
            Err(CodecError::Truncated {
                expected: 10,
                present: 5
            })
        );
        let text = "SIP/2.0 200 OK\r\nl: 1\r\n\r\n";
        assert!(matches!(
            parse(text.as_bytes()),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn bad_content_lengths_are_errors() {
        for lines in [
            "Content-Length: ten",
            "Content-Length: -1",
            "Content-Length: +1",
            "Content-Length: 1 2",
            "Content-Length:",
            "Content-Length: 65537",
            "Content-Length: 99999999999999999999999999",
            "Content-Length: 1\r\nl: 2",
        ] {
            let text = format!("SIP/2.0 200 OK\r\n{lines}\r\n\r\nxx");
            assert_refused(&text, CodecError::BadContentLength);
            assert_eq!(
                frame(text.as_bytes()),
                Err(CodecError::BadContentLength),
                "{lines}"
            );
        }
        let same_twice = "SIP/2.0 200 OK\r\nContent-Length: 2\r\nl: 2\r\n\r\nxx";
        assert_eq!(ok(same_twice).body, b"xx");
    }

    #[test]
    fn too_large_input_is_rejected_up_front() {
        let mut bytes = RESPONSE.as_bytes().to_vec();
        bytes.resize(MAX_MESSAGE + 1, b'x');
        assert_eq!(
            parse(&bytes),
            Err(CodecError::TooLarge {
                len: MAX_MESSAGE + 1
            })
        );
        assert_eq!(route_key(&bytes), None);
        bytes.truncate(MAX_MESSAGE);
        assert!(parse(&bytes).is_ok());
    }

    #[test]
    fn non_utf8_head_is_an_error() {
        let bytes = b"SIP/2.0 200 OK\r\nSubject: caf\xe9\r\n\r\n";
        assert_eq!(parse(bytes), Err(CodecError::NotUtf8));
        let bytes = b"SIP/2.0 200 \xff\xfe\r\n\r\n";
        assert_eq!(parse(bytes), Err(CodecError::NotUtf8));
        // A head checked as a whole: a bad name is as much an error as a bad value.
        let bytes = b"SIP/2.0 200 OK\r\nX-\xe9: v\r\n\r\n";
        assert_eq!(parse(bytes), Err(CodecError::NotUtf8));
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let m = ok("SIP/2.0 200 Accepté\r\nSubject:  café  \r\nX-Custom: Ünï ü\r\n\r\n");
        assert!(matches!(
            m.start,
            StartLine::Response {
                reason: "Accepté",
                ..
            }
        ));
        assert_eq!(m.header("Subject"), Some("café"));
        assert_eq!(m.header("X-Custom"), Some("Ünï ü"));
    }

    #[test]
    fn header_count_is_capped() {
        let at_cap = format!("SIP/2.0 200 OK\r\n{}\r\n", "X-H: v\r\n".repeat(MAX_HEADERS));
        assert_eq!(ok(&at_cap).headers.len(), MAX_HEADERS);
        let over = format!(
            "SIP/2.0 200 OK\r\n{}\r\n",
            "X-H: v\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(parse(over.as_bytes()), Err(CodecError::TooManyHeaders));
    }

    #[test]
    fn frame_waits_byte_by_byte_then_cuts_exactly() {
        let first = format!("\r\n\r\n{RESPONSE}");
        let second = "SIP/2.0 180 Ringing\nl : 0\n\n";
        let stream = format!("{first}{second}");
        let bytes = stream.as_bytes();
        for end in 0..first.len() {
            assert_eq!(frame(&bytes[..end]), Ok(None), "prefix {end}");
        }
        for end in first.len()..=bytes.len() {
            assert_eq!(frame(&bytes[..end]), Ok(Some(first.len())), "prefix {end}");
        }
        assert_eq!(ok(&first).body, b"body");
        let rest = &bytes[first.len()..];
        for end in 0..rest.len() {
            assert_eq!(frame(&rest[..end]), Ok(None), "second prefix {end}");
        }
        assert_eq!(frame(rest), Ok(Some(second.len())));
        assert_eq!(parse(rest).unwrap().status(), Some(180));
    }

    #[test]
    fn frame_reads_content_length_in_any_form() {
        for cl in ["Content-Length: 3", "content-length :3", "L: 3", "l:\r\n 3"] {
            let text = format!("SIP/2.0 200 OK\r\n{cl}\r\n\r\nabcNEXT");
            let head = text.find("abc").unwrap();
            assert_eq!(frame(text.as_bytes()), Ok(Some(head + 3)), "{cl}");
            assert_eq!(parse(&text.as_bytes()[..head + 3]).unwrap().body, b"abc");
        }
    }

    #[test]
    fn frame_without_content_length_has_no_body() {
        let text = "SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nSIP/2.0 ...";
        assert_eq!(
            frame(text.as_bytes()),
            Ok(Some(text.find("SIP/2.0 .").unwrap()))
        );
    }

    #[test]
    fn frame_rejects_oversized_heads_and_bodies() {
        let endless = vec![b'a'; MAX_MESSAGE];
        assert_eq!(frame(&endless[..MAX_MESSAGE - 1]), Ok(None));
        assert_eq!(
            frame(&endless),
            Err(CodecError::TooLarge { len: MAX_MESSAGE })
        );
        let text = format!("SIP/2.0 200 OK\r\nContent-Length: {MAX_MESSAGE}\r\n\r\n");
        assert_eq!(
            frame(text.as_bytes()),
            Err(CodecError::TooLarge {
                len: text.len() + MAX_MESSAGE
            })
        );
        assert_eq!(frame(b"\r\n\r\n"), Ok(None));
    }

    #[test]
    fn route_key_agrees_with_parse() {
        let inputs = [
            RESPONSE.to_owned(),
            RESPONSE.replace("\r\n", "\n"),
            RESPONSE.replace("Via:", "v:").replace("CSeq:", "cseq :"),
            "SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/TCP a ;BRANCH = \"z9hG4bKq\" , SIP/2.0/UDP b;branch=z9hG4bK2\r\nCSeq:  9   NOTIFY \r\n\r\n".to_owned(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060\r\n ;branch=z9hG4bKfold\r\nCSeq: 3\r\n\tNOTIFY\r\n\r\n".to_owned(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5060;branch=\r\n z9hG4bKafterfold\r\nCSeq: 3 NOTIFY\r\n\r\n".to_owned(),
            "\r\n\nSIP/2.0 200 OK\r\nCSeq: 4 NOTIFY\r\nX: y\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK4\r\nVia: SIP/2.0/UDP g;branch=z9hG4bK5\r\n\r\n".to_owned(),
        ];
        for text in &inputs {
            let key = route_key(text.as_bytes()).map(|(b, n)| (b.to_owned(), n));
            assert!(key.is_some(), "{text:?}");
            assert_eq!(key, parsed_key(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn route_key_gives_up_when_the_branch_itself_is_folded() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=\"z9hG4bK\r\n x\"\r\nCSeq: 1 NOTIFY\r\n\r\n";
        assert_eq!(route_key(text.as_bytes()), None);
        assert_eq!(ok(text).top_via_branch(), Some("z9hG4bK x"));
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency on rand's API.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        const PIECES: &[&[u8]] = &[
            b"\r\n",
            b"\n",
            b" ",
            b"\t",
            b":",
            b";",
            b",",
            b"=",
            b"\"",
            b"\\",
            b"l: ",
            b"Content-Length: ",
            b"v: ",
            b"CSeq: ",
            b"branch=",
            b"SIP/2.0 ",
            b"200",
            b"9999",
            b"\xff",
            b"\xc3",
            b"\r",
        ];
        let seeds = [
            RESPONSE.as_bytes().to_vec(),
            RESPONSE.replace("\r\n", "\n").into_bytes(),
            b"NOTIFY sip:p@h SIP/2.0\r\nv: SIP/2.0/UDP h ;branch=z9hG4bKx\r\n folded\r\nl: 2\r\n\r\nab".to_vec(),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut agreed = 0;
        for round in 0..4000 {
            let mut input = if round % 4 == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(input.len() + 1);
                match rng.below(4) {
                    0 if at < input.len() => input[at] = rng.next() as u8,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    2 => input.truncate(at),
                    _ => {
                        let piece = PIECES[rng.below(PIECES.len())];
                        input.splice(at..at, piece.iter().copied());
                    }
                }
            }
            let parsed = parse(&input);
            if let Ok(Some(len)) = frame(&input) {
                assert!(len <= input.len() && len <= MAX_MESSAGE);
                let framed = parse(&input[..len]);
                assert!(
                    !matches!(framed, Err(CodecError::Truncated { .. })),
                    "{input:?}"
                );
            }
            if let (Ok(m), Some((branch, number))) = (&parsed, route_key(&input)) {
                assert_eq!(m.top_via_branch(), Some(branch), "{input:?}");
                assert_eq!(m.cseq().map(|c| c.0), Some(number), "{input:?}");
                agreed += 1;
            }
        }
        assert!(
            agreed > 100,
            "only {agreed} inputs exercised route_key agreement"
        );
    }

    /// rsip drops the branch when a space precedes `;` (sent by some phones).
    #[test]
    fn rsip_loses_branch_after_space_is_why_we_parse_here() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5070 ;branch=z9hG4bKabc\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        let rsip_msg = rsip::SipMessage::try_from(text).unwrap();
        let via = rsip_msg.via_header().unwrap().typed().unwrap();
        assert_eq!(via.branch(), None);
        assert_eq!(ok(text).top_via_branch(), Some("z9hG4bKabc"));
    }

    /// rsip rejects folded header lines outright.
    #[test]
    fn rsip_rejects_folded_lines_is_why_we_parse_here() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h:5070\r\n ;branch=z9hG4bKabc\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        assert!(rsip::SipMessage::try_from(text).is_err());
        assert_eq!(ok(text).top_via_branch(), Some("z9hG4bKabc"));
    }

    /// rsip rejects LF-only line ends.
    #[test]
    fn rsip_rejects_lf_only_is_why_we_parse_here() {
        let text = RESPONSE.replace("\r\n", "\n");
        assert!(rsip::SipMessage::try_from(text.as_str()).is_err());
        assert!(parse(text.as_bytes()).is_ok());
    }

    /// rsip does not recognise the compact `v:` as a Via.
    #[test]
    fn rsip_ignores_compact_via_is_why_we_parse_here() {
        let text = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=z9hG4bKabc\r\nCSeq: 1 NOTIFY\r\nl: 0\r\n\r\n";
        let rsip_msg = rsip::SipMessage::try_from(text).unwrap();
        assert!(rsip_msg.via_header().is_err());
        assert_eq!(ok(text).top_via_branch(), Some("z9hG4bKabc"));
    }
}
