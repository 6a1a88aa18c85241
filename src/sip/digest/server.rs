//! The server's side: issue challenges, read and verify the answers.

use super::{compute, named_params, push_quoted, Algorithm, DigestError, Inputs, Password, Qop};
use std::borrow::Cow;

/// A parsed `Authorization`/`Proxy-Authorization` value (server side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Claimed user name.
    pub username: String,
    /// Realm the client answered for.
    pub realm: String,
    /// Server nonce the client used.
    pub nonce: String,
    /// The `uri` parameter; the caller should check it matches the Request-URI.
    pub uri: String,
    /// The client's response hash, as sent.
    pub response: String,
    /// Algorithm used; MD5 when absent.
    pub algorithm: Algorithm,
    /// Qop used; `None` for the RFC 2069 form.
    pub qop: Option<Qop>,
    /// Nonce count, 8 hex digits as sent (hashed verbatim). Always present with a qop.
    pub nc: Option<String>,
    /// Client nonce. Always present with a qop.
    pub cnonce: Option<String>,
    /// Opaque value echoed by the client.
    pub opaque: Option<String>,
}

impl Authorization {
    /// The nonce count as a number, for replay checks.
    pub fn nonce_count(&self) -> Option<u32> {
        u32::from_str_radix(self.nc.as_deref()?, 16).ok()
    }
}

/// Parses the value of an `Authorization` or `Proxy-Authorization` header.
///
/// Same tolerant grammar as [`parse_challenge`](super::parse_challenge); additionally requires nc (8 hex digits) and
/// cnonce whenever a qop is given, since the response cannot be checked without them.
pub fn parse_authorization(value: &str) -> Result<Authorization, DigestError> {
    let [username, realm, nonce, uri, response, algorithm, qop, nc, cnonce, opaque] = named_params(
        value,
        [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
        ],
    )?;

    let qop = qop.map(|q| q.parse::<Qop>()).transpose()?;
    if qop.is_some() {
        let nc = nc.as_deref().ok_or(DigestError::MissingParam("nc"))?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestError::Malformed("nc is not 8 hex digits"));
        }
        if cnonce.is_none() {
            return Err(DigestError::MissingParam("cnonce"));
        }
    }
    let required = |v: Option<Cow<'_, str>>, name| {
        v.map(Cow::into_owned)
            .ok_or(DigestError::MissingParam(name))
    };
    Ok(Authorization {
        username: required(username, "username")?,
        realm: required(realm, "realm")?,
        nonce: required(nonce, "nonce")?,
        uri: required(uri, "uri")?,
        response: required(response, "response")?,
        algorithm: algorithm.map_or(Ok(Algorithm::Md5), |a| a.parse())?,
        qop,
        nc: nc.map(Cow::into_owned),
        cnonce: cnonce.map(Cow::into_owned),
        opaque: opaque.map(Cow::into_owned),
    })
}

/// Recomputes the response for `credentials` with the true `password` and compares it in
/// constant time (case-insensitively, for clients that send upper-case hex).
///
/// Only the hash is checked: the caller checks that realm, nonce (freshness, nc replay),
/// opaque and uri are ones it accepts, since that needs state and a clock.
pub fn verify(credentials: &Authorization, password: &Password, method: &str, body: &[u8]) -> bool {
    let qop = match (credentials.qop, credentials.nc.as_deref()) {
        (Some(q), Some(nc)) => Some((q, nc.as_bytes())),
        (Some(_), None) => return false,
        (None, _) => None,
    };
    let cnonce = match credentials.cnonce.as_deref() {
        Some(c) => c,
        None if qop.is_some() || credentials.algorithm.is_sess() => return false,
        None => "",
    };
    let expected = compute(&Inputs {
        algorithm: credentials.algorithm,
        username: &credentials.username,
        realm: &credentials.realm,
        password: password.expose(),
        nonce: &credentials.nonce,
        cnonce,
        qop,
        method,
        uri: &credentials.uri,
        body,
    });
    let expected = expected.as_bytes();
    let given = credentials.response.as_bytes();
    // The length is public (it follows from the algorithm); the contents are not.
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |diff, (e, g)| diff | (e ^ g.to_ascii_lowercase()))
            == 0
}

/// Builds a `WWW-Authenticate`/`Proxy-Authenticate` value: the one place a challenge is
/// written. `algorithm` is the token as sent: usually [`Algorithm::as_str`], or `md5` in
/// lower case as Sipura-era firmware writes it.
pub fn challenge_header(
    realm: &str,
    nonce: &str,
    algorithm: &str,
    qop: Option<Qop>,
    opaque: Option<&str>,
    stale: bool,
) -> String {
    let mut out =
        String::with_capacity(64 + realm.len() + nonce.len() + opaque.map_or(0, str::len));
    out.push_str("Digest realm=");
    push_quoted(&mut out, realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, nonce);
    if let Some(qop) = qop {
        out.push_str(", qop=\"");
        out.push_str(qop.as_str());
        out.push('"');
    }
    if let Some(opaque) = opaque {
        out.push_str(", opaque=");
        push_quoted(&mut out, opaque);
    }
    out.push_str(", algorithm=");
    out.push_str(algorithm);
    if stale {
        out.push_str(", stale=true");
    }
    out
}
