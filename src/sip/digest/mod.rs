//! HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760), both sides.
//!
//! Written here because rsip 0.4's `DigestGenerator` formats nc wrongly, treats MD5-sess as
//! MD5 and hashes an empty body for auth-int.

pub mod client;
pub mod server;

pub use client::{authorization, select, Answer};
pub use server::{challenge_header, parse_authorization, verify, Authorization};

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use sha2::Digest;

crate::secret::secret!(
    /// A line password. Its `Debug` and `Display` never show the value.
    Password(String) exposed as str
);

impl Password {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }
}

/// A digest algorithm (RFC 7616 §3.3, RFC 8760).
///
/// The derived order is the preference order used by [`select`]: SHA-256 beats MD5, and
/// within a family the `-sess` variant ranks above the plain one (an arbitrary but fixed
/// tie-break; servers rarely offer both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// `MD5`, the default when a challenge names none.
    Md5,
    /// `MD5-sess`: HA1 also covers the nonce and cnonce.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// A quality of protection (RFC 2617 §3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    /// `auth`: method and URI are protected.
    Auth,
    /// `auth-int`: the body is protected too.
    AuthInt,
}

/// A token enum as written in headers: `as_str`, `Display`, and a `FromStr` that knows
/// each token in any case (real SPA phones send `algorithm=md5`) and refuses any other with
/// `$unknown`.
macro_rules! header_tokens {
    ($type:ident, $unknown:path, { $($variant:ident => $token:literal),* $(,)? }) => {
        impl $type {
            /// The canonical token, as written in headers.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $token,)*
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = DigestError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                [$($type::$variant),*]
                    .into_iter()
                    .find(|t| t.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| $unknown(s.to_owned()))
            }
        }
    };
}

header_tokens!(Algorithm, DigestError::UnsupportedAlgorithm, {
    Md5 => "MD5",
    Md5Sess => "MD5-sess",
    Sha256 => "SHA-256",
    Sha256Sess => "SHA-256-sess",
});

header_tokens!(Qop, DigestError::UnsupportedQop, {
    Auth => "auth",
    AuthInt => "auth-int",
});

/// Why a `WWW-Authenticate`/`Proxy-Authenticate` or `Authorization` value was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The scheme is not `Digest` (e.g. `Basic`) or is missing.
    #[error("not a Digest header")]
    NotDigest,
    /// A required parameter is absent.
    #[error("missing `{0}` parameter")]
    MissingParam(&'static str),
    /// The algorithm is one we cannot compute (e.g. `SHA-512-256`, `AKAv1-MD5`).
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No offered or used qop is one we know.
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    /// The parameter list does not follow the grammar; says what was wrong.
    #[error("malformed digest header: {0}")]
    Malformed(&'static str),
}

/// One parsed digest challenge (the value of a `WWW-Authenticate` or `Proxy-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Protection space; also decides which credentials to use.
    pub realm: String,
    /// Server nonce, echoed in the answer.
    pub nonce: String,
    /// Opaque server data, echoed verbatim if present.
    pub opaque: Option<String>,
    /// Hash algorithm; MD5 when the challenge names none.
    pub algorithm: Algorithm,
    /// Offered qops, known ones only, without duplicates. Empty means an RFC 2069 server.
    pub qop: Vec<Qop>,
    /// The previous answer was right but its nonce expired: retry without asking the user.
    pub stale: bool,
}

impl Challenge {
    /// The qop an answer uses: `auth` if offered (cheapest, widest support), else
    /// `auth-int`, else none (RFC 2069 form).
    pub fn preferred_qop(&self) -> Option<Qop> {
        if self.qop.contains(&Qop::Auth) {
            Some(Qop::Auth)
        } else {
            self.qop.first().copied()
        }
    }
}

/// Parses the value of one `WWW-Authenticate` or `Proxy-Authenticate` header.
///
/// Tolerant of what devices send (case, spacing, quoted or bare values, unknown
/// parameters; the first of duplicated parameters wins) but never panics.
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let [realm, nonce, opaque, algorithm, qop, stale] = named_params(
        value,
        ["realm", "nonce", "opaque", "algorithm", "qop", "stale"],
    )?;

    let qop = match qop {
        None => Vec::new(),
        Some(list) => {
            let mut known = Vec::with_capacity(2);
            for q in list.split(',').filter_map(|q| q.trim().parse::<Qop>().ok()) {
                if !known.contains(&q) {
                    known.push(q);
                }
            }
            if known.is_empty() {
                // The server insists on a qop we cannot do; answering without one would fail.
                return Err(DigestError::UnsupportedQop(list.into_owned()));
            }
            known
        }
    };
    Ok(Challenge {
        realm: realm
            .ok_or(DigestError::MissingParam("realm"))?
            .into_owned(),
        nonce: nonce
            .ok_or(DigestError::MissingParam("nonce"))?
            .into_owned(),
        opaque: opaque.map(Cow::into_owned),
        algorithm: algorithm.map_or(Ok(Algorithm::Md5), |a| a.parse())?,
        qop,
        stale: stale.is_some_and(|s| s.eq_ignore_ascii_case("true")),
    })
}

/// Everything the response hash depends on.
struct Inputs<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    /// The qop and its nc (as hex digits); `None` for the RFC 2069 form.
    qop: Option<(Qop, &'a [u8])>,
    method: &'a str,
    uri: &'a str,
    body: &'a [u8],
}

fn compute(inputs: &Inputs<'_>) -> Hex {
    match inputs.algorithm {
        Algorithm::Md5 | Algorithm::Md5Sess => compute_with::<md5::Md5>(inputs),
        Algorithm::Sha256 | Algorithm::Sha256Sess => compute_with::<sha2::Sha256>(inputs),
    }
}

/// RFC 7616 §3.4.1-3.4.3, with every hash fed piecewise and hex-encoded on the stack.
fn compute_with<D: Digest>(i: &Inputs<'_>) -> Hex {
    let (user, realm, pass) = (
        i.username.as_bytes(),
        i.realm.as_bytes(),
        i.password.as_bytes(),
    );
    let (nonce, cnonce) = (i.nonce.as_bytes(), i.cnonce.as_bytes());
    let mut ha1 = hash::<D>(&[user, b":", realm, b":", pass]);
    if i.algorithm.is_sess() {
        ha1 = hash::<D>(&[ha1.as_bytes(), b":", nonce, b":", cnonce]);
    }
    let (method, uri) = (i.method.as_bytes(), i.uri.as_bytes());
    let ha2 = match i.qop {
        Some((Qop::AuthInt, _)) => {
            let body = hash::<D>(&[i.body]);
            hash::<D>(&[method, b":", uri, b":", body.as_bytes()])
        }
        _ => hash::<D>(&[method, b":", uri]),
    };
    match i.qop {
        Some((qop, nc)) => hash::<D>(&[
            ha1.as_bytes(),
            b":",
            nonce,
            b":",
            nc,
            b":",
            cnonce,
            b":",
            qop.as_str().as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        None => hash::<D>(&[ha1.as_bytes(), b":", nonce, b":", ha2.as_bytes()]),
    }
}

fn hash<D: Digest>(parts: &[&[u8]]) -> Hex {
    let mut hasher = D::new();
    for part in parts {
        hasher.update(part);
    }
    Hex::encode(&hasher.finalize())
}

/// Lower-case hex of a digest of at most 32 bytes, kept on the stack.
struct Hex {
    buf: [u8; 64],
    len: usize,
}

impl Hex {
    fn encode(bytes: &[u8]) -> Hex {
        let mut hex = Hex {
            buf: [0; 64],
            len: 0,
        };
        for (pair, byte) in hex.buf.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
            pair[1] = HEX_DIGITS[usize::from(byte & 0xf)];
            hex.len += 2;
        }
        hex
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The nonce count as exactly 8 lower-case hex digits (RFC 2617 §3.2.2).
fn nc_hex(nc: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = HEX_DIGITS[((nc >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Appends ASCII bytes (hex digits) without building an intermediate string.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.push_str(std::str::from_utf8(ascii).expect("hex digits are ASCII"));
}

/// Appends `value` as a quoted-string. CR and LF are dropped: a quoted-string cannot carry
/// them, and a value taken from a hostile challenge must not inject header lines.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    // Nearly every value has nothing to escape or drop: copied whole.
    if !value
        .bytes()
        .any(|b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
    {
        out.push_str(value);
        out.push('"');
        return;
    }
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => {}
            _ => out.push(c),
        }
    }
    out.push('"');
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 7230 tchar, for parameter names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks the `Digest` scheme (case-insensitive) and returns the parameter list after it.
fn strip_scheme(value: &str) -> Result<&str, DigestError> {
    let value = value.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let end = value.bytes().position(is_space).unwrap_or(value.len());
    if value[..end].eq_ignore_ascii_case("Digest") {
        Ok(&value[end..])
    } else {
        Err(DigestError::NotDigest)
    }
}

/// The values of `names` in a Digest header (case-insensitive names; the first of a
/// duplicated parameter wins; unknown parameters ignored), in the order of `names`.
fn named_params<'a, const N: usize>(
    header: &'a str,
    names: [&str; N],
) -> Result<[Option<Cow<'a, str>>; N], DigestError> {
    let mut values = [const { None }; N];
    parse_params(strip_scheme(header)?, |name, value| {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            values[i].get_or_insert(value);
        }
    })?;
    Ok(values)
}

/// Walks `name=value` pairs separated by commas (empty list elements allowed), calling
/// `each` with the name and the unescaped value. Only slices at ASCII bytes, so any UTF-8
/// input is safe.
fn parse_params<'a>(
    list: &'a str,
    mut each: impl FnMut(&'a str, Cow<'a, str>),
) -> Result<(), DigestError> {
    let bytes = list.as_bytes();
    let skip_space = |mut pos: usize| {
        while pos < bytes.len() && is_space(bytes[pos]) {
            pos += 1;
        }
        pos
    };
    let mut pos = 0;
    loop {
        while pos < bytes.len() && (is_space(bytes[pos]) || bytes[pos] == b',') {
            pos += 1;
        }
        if pos == bytes.len() {
            return Ok(());
        }
        let start = pos;
        while pos < bytes.len() && is_tchar(bytes[pos]) {
            pos += 1;
        }
        if pos == start {
            return Err(DigestError::Malformed("expected a parameter name"));
        }
        let name = &list[start..pos];
        pos = skip_space(pos);
        if bytes.get(pos) != Some(&b'=') {
            return Err(DigestError::Malformed(
                "expected `=` after a parameter name",
            ));
        }
        pos = skip_space(pos + 1);
        let value = if bytes.get(pos) == Some(&b'"') {
            let (value, end) = unquote(list, pos + 1)?;
            pos = end;
            value
        } else {
            let start = pos;
            while pos < bytes.len() && !is_space(bytes[pos]) && bytes[pos] != b',' {
                pos += 1;
            }
            Cow::Borrowed(&list[start..pos])
        };
        each(name, value);
        pos = skip_space(pos);
        match bytes.get(pos) {
            None => return Ok(()),
            Some(b',') => pos += 1,
            Some(_) => return Err(DigestError::Malformed("expected `,` between parameters")),
        }
    }
}

/// Reads a quoted-string body starting after its opening quote; returns the unescaped value
/// (borrowed when there is no backslash) and the position after the closing quote.
fn unquote(list: &str, start: usize) -> Result<(Cow<'_, str>, usize), DigestError> {
    let rest = &list[start..];
    let unterminated = DigestError::Malformed("unterminated quoted string");
    let end = memchr::memchr2(b'"', b'\\', rest.as_bytes()).ok_or(unterminated.clone())?;
    if rest.as_bytes()[end] == b'"' {
        return Ok((Cow::Borrowed(&rest[..end]), start + end + 1));
    }
    let mut value = String::with_capacity(rest.len());
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(value), start + i + 1)),
            '\\' => value.push(chars.next().ok_or(unterminated.clone())?.1),
            _ => value.push(c),
        }
    }
    Err(unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn challenge(value: &str) -> Challenge {
        parse_challenge(value).unwrap()
    }

    fn answer<'a>(password: &'a Password, body: &'a [u8], nc: u32) -> Answer<'a> {
        Answer {
            username: "1001",
            password,
            method: "NOTIFY",
            uri: "sip:1001@192.0.2.10:5060",
            body,
            cnonce: "0a4f113b",
            nc,
        }
    }

    /// The RFCs' example answer: Mufasa's first `GET /dir/index.html`.
    fn mufasa<'a>(password: &'a Password, cnonce: &'a str) -> Answer<'a> {
        Answer {
            username: "Mufasa",
            password,
            method: "GET",
            uri: "/dir/index.html",
            body: b"",
            cnonce,
            nc: 1,
        }
    }

    /// Answers `c`, parses the header back and verifies it; returns the credentials.
    fn roundtrip(c: &Challenge, a: &Answer<'_>) -> Authorization {
        let header = authorization(c, a);
        let creds = parse_authorization(&header).unwrap();
        assert!(verify(&creds, a.password, a.method, a.body), "{header}");
        creds
    }

    #[test]
    fn rfc2617_known_answer() {
        let c = challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        let password = Password::new("Circle Of Life");
        let a = mufasa(&password, "0a4f113b");
        let header = authorization(&c, &a);
        assert_eq!(
            header,
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41""#
        );
        let creds = parse_authorization(&header).unwrap();
        assert!(verify(&creds, &password, "GET", b""));
    }

    #[test]
    fn rfc7616_known_answers() {
        let password = Password::new("Circle of Life");
        let a = mufasa(&password, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        for (algorithm, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let c = challenge(&format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            ));
            let creds = roundtrip(&c, &a);
            assert_eq!(creds.response, expected, "{algorithm}");
        }
    }

    #[test]
    fn sipura_challenge_gets_rfc2069_answer() {
        let c = challenge(r#"Digest realm="asterisk",nonce="1a2b3c4d",algorithm=md5"#);
        assert_eq!(
            c,
            Challenge {
                realm: "asterisk".into(),
                nonce: "1a2b3c4d".into(),
                opaque: None,
                algorithm: Algorithm::Md5,
                qop: vec![],
                stale: false,
            }
        );
        let password = Password::new("secret");
        let a = answer(&password, b"", 1);
        let header = authorization(&c, &a);
        assert!(!header.contains("cnonce") && !header.contains("qop") && !header.contains("nc="));
        assert!(header.contains("algorithm=MD5"));
        let creds = roundtrip(&c, &a);
        assert_eq!((creds.qop, creds.nc, creds.cnonce), (None, None, None));
    }

    #[test]
    fn tolerant_challenge_parsing() {
        let c = challenge(
            "  dIgEsT  REALM = \"a \\\"q\\\" \\\\ r\" ,, nonce=abc/def=, foo=\"x,y\", Stale=TRUE, qop=auth-int, realm=\"second\", algorithm=SHA-256-SESS",
        );
        assert_eq!(c.realm, r#"a "q" \ r"#);
        assert_eq!(c.nonce, "abc/def=");
        assert!(c.stale);
        assert_eq!(c.qop, vec![Qop::AuthInt]);
        assert_eq!(c.algorithm, Algorithm::Sha256Sess);
        assert!(!challenge(r#"Digest realm="r", nonce="n", stale=false"#).stale);
    }

    #[test]
    fn challenge_errors_say_what_is_wrong() {
        assert_eq!(
            parse_challenge(r#"Basic realm="r""#),
            Err(DigestError::NotDigest)
        );
        assert_eq!(parse_challenge(""), Err(DigestError::NotDigest));
        assert_eq!(
            parse_challenge(r#"Digest nonce="n""#),
            Err(DigestError::MissingParam("realm"))
        );
        assert_eq!(
            parse_challenge(r#"Digest realm="r""#),
            Err(DigestError::MissingParam("nonce"))
        );
        assert_eq!(
            parse_challenge(r#"Digest realm="r", nonce="n", algorithm=AKAv1-MD5"#),
            Err(DigestError::UnsupportedAlgorithm("AKAv1-MD5".into()))
        );
        assert_eq!(
            parse_challenge(r#"Digest realm="r", nonce="n", qop="auth-conf""#),
            Err(DigestError::UnsupportedQop("auth-conf".into()))
        );
        assert!(matches!(
            parse_challenge(r#"Digest realm="r, nonce="n"#),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            parse_challenge(r#"Digest realm "r""#),
            Err(DigestError::Malformed(_))
        ));
    }

    #[test]
    fn select_prefers_strongest_per_realm() {
        let sha = r#"Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth""#;
        let md5 = r#"Digest realm="r", nonce="n2", algorithm=MD5, qop="auth""#;
        for headers in [[sha, md5], [md5, sha]] {
            let chosen = select(headers);
            assert_eq!(chosen.len(), 1);
            assert_eq!(chosen[0].algorithm, Algorithm::Sha256);
        }

        let chosen = select([
            r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#,
            r#"Digest realm="r", nonce="n", algorithm=AKAv1-MD5"#,
            "Basic realm=\"r\"",
            md5,
        ]);
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].algorithm, Algorithm::Md5);

        let chosen = select([
            r#"Digest realm="b", nonce="n", algorithm=MD5"#,
            r#"Digest realm="a", nonce="n", algorithm=MD5"#,
            r#"Digest realm="b", nonce="n", algorithm=SHA-256"#,
        ]);
        let realms: Vec<_> = chosen.iter().map(|c| (&c.realm[..], c.algorithm)).collect();
        assert_eq!(realms, [("b", Algorithm::Sha256), ("a", Algorithm::Md5)]);
    }

    #[test]
    fn auth_int_hashes_the_body() {
        let c = challenge(r#"Digest realm="r", nonce="n", qop="auth-int""#);
        let password = Password::new("pw");
        let one = roundtrip(&c, &answer(&password, b"<xml>1</xml>", 1));
        let two = roundtrip(&c, &answer(&password, b"<xml>2</xml>", 1));
        assert_eq!(one.qop, Some(Qop::AuthInt));
        assert_ne!(one.response, two.response);
        assert!(!verify(&one, &password, "NOTIFY", b"<xml>2</xml>"));
        // auth is preferred when both are offered.
        let c = challenge(r#"Digest realm="r", nonce="n", qop="auth-int,auth""#);
        assert_eq!(c.preferred_qop(), Some(Qop::Auth));
    }

    #[test]
    fn sess_variants_roundtrip_and_differ() {
        let password = Password::new("pw");
        let a = answer(&password, b"", 3);
        for qop in ["", ", qop=auth"] {
            for (plain, sess) in [("MD5", "MD5-sess"), ("SHA-256", "SHA-256-sess")] {
                let plain = challenge(&format!(
                    r#"Digest realm="r", nonce="n", algorithm={plain}{qop}"#
                ));
                let sess = challenge(&format!(
                    r#"Digest realm="r", nonce="n", algorithm={sess}{qop}"#
                ));
                let p = roundtrip(&plain, &a);
                let s = roundtrip(&sess, &a);
                assert_ne!(p.response, s.response);
                assert_eq!(s.cnonce.as_deref(), Some("0a4f113b"));
            }
        }
    }

    #[test]
    fn header_formatting() {
        let c = challenge(r#"Digest realm="r", nonce="n", qop=auth, opaque="op\"q""#);
        let password = Password::new("hunter2");
        let header = authorization(&c, &answer(&password, b"", 10));
        assert!(header.starts_with("Digest username=\"1001\", "), "{header}");
        assert!(header.contains(", nc=0000000a"), "{header}");
        assert!(header.contains(", qop=auth,"), "{header}");
        assert!(header.contains(", algorithm=MD5,"), "{header}");
        assert!(header.contains(r#", opaque="op\"q""#), "{header}");
        assert!(
            header.contains(r#", uri="sip:1001@192.0.2.10:5060","#),
            "{header}"
        );
        assert!(!header.contains("hunter2"));
        assert_eq!(nc_hex(u32::MAX), *b"ffffffff");
        assert_eq!(
            parse_authorization(&header).unwrap().nonce_count(),
            Some(10)
        );

        // A hostile challenge cannot inject header lines.
        let c = challenge("Digest realm=\"r\\\r\\\nX: y\", nonce=\"n\"");
        assert!(!authorization(&c, &answer(&password, b"", 1)).contains(['\r', '\n']));
    }

    #[test]
    fn challenge_header_parses_back() {
        let value = challenge_header(
            "sip.example",
            "abc",
            Algorithm::Sha256Sess.as_str(),
            Some(Qop::Auth),
            Some("o"),
            true,
        );
        assert_eq!(
            value,
            r#"Digest realm="sip.example", nonce="abc", qop="auth", opaque="o", algorithm=SHA-256-sess, stale=true"#
        );
        let c = challenge(&value);
        assert_eq!(
            (c.algorithm, c.qop, c.opaque.as_deref(), c.stale),
            (Algorithm::Sha256Sess, vec![Qop::Auth], Some("o"), true)
        );
        let plain = challenge_header("r", "n", Algorithm::Md5.as_str(), None, None, false);
        assert_eq!(plain, r#"Digest realm="r", nonce="n", algorithm=MD5"#);
    }

    #[test]
    fn verify_rejects_wrong_password_and_tampering() {
        let c = challenge(r#"Digest realm="r", nonce="n", qop="auth""#);
        let password = Password::new("right");
        let creds = roundtrip(&c, &answer(&password, b"", 1));
        assert!(!verify(&creds, &Password::new("wrong"), "NOTIFY", b""));
        assert!(!verify(&creds, &password, "INVITE", b""));
        let tampered = Authorization {
            uri: "sip:1002@192.0.2.10:5060".into(),
            ..creds.clone()
        };
        assert!(!verify(&tampered, &password, "NOTIFY", b""));
        let upper = Authorization {
            response: creds.response.to_ascii_uppercase(),
            ..creds.clone()
        };
        assert!(verify(&upper, &password, "NOTIFY", b""));
        let truncated = Authorization {
            response: creds.response[..31].into(),
            ..creds
        };
        assert!(!verify(&truncated, &password, "NOTIFY", b""));
    }

    #[test]
    fn authorization_errors() {
        let base = r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="00""#;
        assert!(parse_authorization(base).is_ok());
        assert_eq!(
            parse_authorization(&format!("{base}, qop=auth, cnonce=\"c\"")),
            Err(DigestError::MissingParam("nc"))
        );
        assert_eq!(
            parse_authorization(&format!("{base}, qop=auth, nc=00000001")),
            Err(DigestError::MissingParam("cnonce"))
        );
        assert_eq!(
            parse_authorization(&format!("{base}, qop=auth, nc=1, cnonce=c")),
            Err(DigestError::Malformed("nc is not 8 hex digits"))
        );
        assert_eq!(
            parse_authorization(r#"Digest realm="r", nonce="n", uri="sip:x", response="00""#),
            Err(DigestError::MissingParam("username"))
        );
        // Quoted qop, as some clients send it.
        let quoted = parse_authorization(&format!("{base}, qop=\"auth\", nc=0000000A, cnonce=c"));
        assert_eq!(quoted.unwrap().nonce_count(), Some(10));
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5109_d16e);
        const PIECES: &[&str] = &[
            "Digest",
            "digest ",
            " ",
            "\t",
            ",",
            "=",
            "\"",
            "\\",
            "realm",
            "nonce",
            "qop",
            "auth",
            "auth-int",
            "algorithm",
            "MD5-sess",
            "sha-256",
            "stale",
            "true",
            "nc",
            "00000001",
            "cnonce",
            "username",
            "uri",
            "response",
            "opaque",
            "é",
            "€",
            "\u{0}",
            "\r\n",
            "a",
            "Z9",
        ];
        let seeds = [
            r#"Digest realm="r", nonce="n", qop="auth,auth-int", algorithm=MD5, opaque="o""#,
            r#"Digest username="u", realm="r", nonce="n", uri="sip:x", response="ab", qop=auth, nc=00000001, cnonce="c""#,
        ];
        let password = Password::new("pw");
        for round in 0..20_000 {
            let input: String = if round % 2 == 0 {
                (0..rng.gen_range(0..24))
                    .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                    .collect()
            } else {
                let mut s: Vec<char> = seeds[rng.gen_range(0..seeds.len())].chars().collect();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..=s.len());
                    match rng.gen_range(0..3) {
                        0 if at < s.len() => drop(s.remove(at)),
                        1 => s.insert(at, char::from(rng.gen_range(0u8..128))),
                        _ => s.insert(at, 'ü'),
                    }
                }
                s.into_iter().collect()
            };
            if let Ok(c) = parse_challenge(&input) {
                let _ = authorization(&c, &answer(&password, b"x", rng.gen()));
            }
            if let Ok(creds) = parse_authorization(&input) {
                let _ = verify(&creds, &password, "NOTIFY", b"x");
            }
            let _ = select([input.as_str()]);
        }
    }

    #[test]
    fn password_is_never_shown() {
        let password = Password::new("s3cr3t");
        assert!(!format!("{password:?}").contains("s3cr3t"));
        assert!(!format!("{password}").contains("s3cr3t"));
        let a = answer(&password, b"", 1);
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }

    #[test]
    fn algorithm_and_qop_tokens() {
        for a in [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ] {
            assert_eq!(
                a.to_string().to_ascii_lowercase().parse::<Algorithm>(),
                Ok(a)
            );
        }
        assert!(Algorithm::Sha256Sess > Algorithm::Sha256);
        assert!(Algorithm::Sha256 > Algorithm::Md5Sess);
        assert!(Algorithm::Md5Sess > Algorithm::Md5);
        assert_eq!("AUTH-INT".parse::<Qop>(), Ok(Qop::AuthInt));
        assert_eq!(Qop::Auth.to_string(), "auth");
    }
}
