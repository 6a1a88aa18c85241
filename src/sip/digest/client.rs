//! The client's side: pick a challenge and answer it.

use super::{
    compute, nc_hex, parse_challenge, push_ascii, push_quoted, Challenge, Inputs, Password,
};

/// Picks what to answer from all the challenge headers of one 401/407 response.
///
/// Returns one challenge per realm, in order of first appearance, each with the strongest
/// supported [`Algorithm`](super::Algorithm) offered for that realm (RFC 7616 §3.7: servers list one header per
/// algorithm). Unparseable challenges and unknown algorithms are skipped, so one exotic
/// header does not spoil the others.
pub fn select<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut chosen: Vec<Challenge> = Vec::new();
    for challenge in values.into_iter().filter_map(|v| parse_challenge(v).ok()) {
        match chosen.iter_mut().find(|c| c.realm == challenge.realm) {
            Some(best) if challenge.algorithm > best.algorithm => *best = challenge,
            Some(_) => {}
            None => chosen.push(challenge),
        }
    }
    chosen
}

/// What the client contributes to answer a challenge.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// User name for the realm.
    pub username: &'a str,
    /// Password for the realm.
    pub password: &'a Password,
    /// Method of the request being retried (`NOTIFY`).
    pub method: &'a str,
    /// The Request-URI of the retried request, exactly as it will be sent.
    pub uri: &'a str,
    /// The body of the retried request; hashed only for `auth-int`.
    pub body: &'a [u8],
    /// Client nonce (random, from the caller's generator); used with a qop or a `-sess` algorithm.
    pub cnonce: &'a str,
    /// How many times this nonce has been used, starting at 1.
    pub nc: u32,
}

/// Computes the full `Authorization`/`Proxy-Authorization` value answering `challenge`.
///
/// The qop is [`Challenge::preferred_qop`]. Without one the RFC 2069 form is produced (no
/// cnonce, nc or qop), except that a `-sess` algorithm still sends its cnonce, as the server
/// cannot compute HA1 without it.
pub fn authorization(challenge: &Challenge, answer: &Answer<'_>) -> String {
    let qop = challenge.preferred_qop();
    let nc = nc_hex(answer.nc);
    let sends_cnonce = qop.is_some() || challenge.algorithm.is_sess();
    let response = compute(&Inputs {
        algorithm: challenge.algorithm,
        username: answer.username,
        realm: &challenge.realm,
        password: answer.password.expose(),
        nonce: &challenge.nonce,
        cnonce: answer.cnonce,
        qop: qop.map(|q| (q, &nc[..])),
        method: answer.method,
        uri: answer.uri,
        body: answer.body,
    });

    let mut out = String::with_capacity(
        160 + answer.username.len()
            + challenge.realm.len()
            + challenge.nonce.len()
            + answer.uri.len()
            + answer.cnonce.len()
            + challenge.opaque.as_ref().map_or(0, String::len),
    );
    out.push_str("Digest username=");
    push_quoted(&mut out, answer.username);
    out.push_str(", realm=");
    push_quoted(&mut out, &challenge.realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, &challenge.nonce);
    out.push_str(", uri=");
    push_quoted(&mut out, answer.uri);
    out.push_str(", response=\"");
    push_ascii(&mut out, response.as_bytes());
    out.push_str("\", algorithm=");
    out.push_str(challenge.algorithm.as_str());
    if sends_cnonce {
        out.push_str(", cnonce=");
        push_quoted(&mut out, answer.cnonce);
    }
    if let Some(qop) = qop {
        out.push_str(", qop=");
        out.push_str(qop.as_str());
        out.push_str(", nc=");
        push_ascii(&mut out, &nc);
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(", opaque=");
        push_quoted(&mut out, opaque);
    }
    out
}
