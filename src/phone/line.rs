//! The sans-IO phone line: bytes in, response bytes out, time passed in.
//!
//! It behaves like an SPA/MPP line with "Auth Resync-Reboot" on. Requests are checked in
//! this order, so a rejection never needs credentials and a 401 always means the request
//! itself was acceptable:
//!
//! 1. user (Request-URI user, else To user) in the configured set, else 404;
//! 2. Event type known, else 489;
//! 3. `XML-Service` body a clean http(s) URL, else 400 with the reason in the phrase;
//! 4. digest authentication: 401 challenge, 403 on a wrong answer, 401 `stale=true` on an
//!    expired nonce;
//! 5. the `fail_percent` fault, else 200.
//!
//! Nonces are stateless (issue time plus a keyed hash of it), so a fleet of 100,000 users
//! costs no memory and a retransmitted request simply gets handled again.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

use crate::proto::codec::{self, Message, StartLine};
use crate::proto::digest::{self, Algorithm, Password};

/// Event types every SPA/MPP line accepts (the token before any `;params`, case-sensitive).
pub const BUILTIN_EVENTS: &[&str] = &["resync", "reboot_now", "restart_now", "report", "XML-Service"];

/// The `Server` header value of every response.
pub const SERVER: &str = "sipnotify-phone";

/// One entry of the line's user set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRange {
    /// A single user name, compared exactly (`159`, `alice`).
    One(String),
    /// Every decimal user from `first` to `last` inclusive, held as two numbers so a range
    /// of 100,000 users costs nothing. `width` is non-zero when the range was written with
    /// leading zeros (`0100-0199`): users must then have exactly that many digits.
    Range {
        /// Lowest user.
        first: u64,
        /// Highest user.
        last: u64,
        /// Exact digit count required, or 0 for plain numbers without leading zeros.
        width: usize,
    },
}

impl UserRange {
    /// Whether `user` belongs to this entry.
    pub fn contains(&self, user: &str) -> bool {
        match self {
            UserRange::One(name) => name == user,
            UserRange::Range { first, last, width } => {
                if user.is_empty() || !user.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
                let shape_ok = if *width == 0 {
                    user.len() == 1 || !user.starts_with('0')
                } else {
                    user.len() == *width
                };
                shape_ok && user.parse::<u64>().is_ok_and(|n| (*first..=*last).contains(&n))
            }
        }
    }
}

impl FromStr for UserRange {
    type Err = String;

    /// `159`, `alice` or `1000-1999`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
            return Err(format!("invalid user `{s}`"));
        }
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match s.split_once('-') {
            Some((a, b)) if digits(a) && digits(b) => {
                let first: u64 = a.parse().map_err(|_| format!("user range `{s}` too large"))?;
                let last: u64 = b.parse().map_err(|_| format!("user range `{s}` too large"))?;
                if first > last {
                    return Err(format!("user range `{s}` is empty"));
                }
                let width = if a.len() > 1 && a.starts_with('0') { a.len() } else { 0 };
                Ok(UserRange::Range { first, last, width })
            }
            _ => Ok(UserRange::One(s.to_owned())),
        }
    }
}

impl fmt::Display for UserRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRange::One(name) => f.write_str(name),
            UserRange::Range { first, last, width } => write!(f, "{first:0width$}-{last:0width$}"),
        }
    }
}

/// Which `WWW-Authenticate` challenge a NOTIFY without credentials gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeMode {
    /// No authentication: every acceptable NOTIFY gets 200.
    None,
    /// Sipura style: `algorithm=md5` (lower case), no qop, no opaque.
    #[default]
    Md5,
    /// MD5 with `qop="auth"` and an `opaque` that must be echoed.
    Md5Qop,
    /// RFC 8760: two challenges, SHA-256 first then MD5, both `qop="auth"`.
    Sha256,
}

impl ChallengeMode {
    fn offers(self, algorithm: Algorithm) -> bool {
        match self {
            ChallengeMode::None => false,
            ChallengeMode::Md5 | ChallengeMode::Md5Qop => algorithm == Algorithm::Md5,
            ChallengeMode::Sha256 => matches!(algorithm, Algorithm::Md5 | Algorithm::Sha256),
        }
    }
}

impl FromStr for ChallengeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ChallengeMode::None),
            "md5" => Ok(ChallengeMode::Md5),
            "md5-qop" => Ok(ChallengeMode::Md5Qop),
            "sha256" | "sha-256" => Ok(ChallengeMode::Sha256),
            _ => Err(format!("unknown challenge `{s}`: use none, md5, md5-qop or sha256")),
        }
    }
}

impl fmt::Display for ChallengeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChallengeMode::None => "none",
            ChallengeMode::Md5 => "md5",
            ChallengeMode::Md5Qop => "md5-qop",
            ChallengeMode::Sha256 => "sha256",
        })
    }
}

/// How the simulated line behaves.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    /// Users the line answers for; any other user gets 404.
    pub users: Vec<UserRange>,
    /// The password of each user: `{user}` is replaced by the user name (`pw-{user}`); a
    /// template without `{user}` is one password for all.
    pub password_template: String,
    /// The digest realm challenged and required back.
    pub realm: String,
    /// The challenge form.
    pub challenge: ChallengeMode,
    /// How long a nonce stays fresh; older ones get 401 `stale=true`.
    pub nonce_ttl: Duration,
    /// Event types accepted besides [`BUILTIN_EVENTS`].
    pub accept_events: Vec<String>,
    /// Fault: percentage (0-100) of requests ignored entirely, as if lost.
    pub drop_percent: f64,
    /// Fault: how long the server waits before sending each response.
    pub delay: Duration,
    /// Fault: percentage (0-100) of authenticated NOTIFYs answered with `fail_status`.
    pub fail_percent: f64,
    /// The status used by `fail_percent` (503 adds `Retry-After: 1`).
    pub fail_status: u16,
    /// If set, the server appends one JSON line per answered request to this file.
    pub log: Option<PathBuf>,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            users: vec![UserRange::One("159".to_owned())],
            password_template: "pw-{user}".to_owned(),
            realm: "sipnotify-phone".to_owned(),
            challenge: ChallengeMode::default(),
            nonce_ttl: Duration::from_secs(30),
            accept_events: Vec::new(),
            drop_percent: 0.0,
            delay: Duration::ZERO,
            fail_percent: 0.0,
            fail_status: 503,
            log: None,
        }
    }
}

impl PhoneConfig {
    /// Whether `user` is one of the line's users.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.iter().any(|range| range.contains(user))
    }

    /// Whether the Event type `event` is accepted.
    pub fn accepts_event(&self, event: &str) -> bool {
        BUILTIN_EVENTS.contains(&event) || self.accept_events.iter().any(|e| e == event)
    }

    fn password(&self, user: &str) -> Password {
        Password::new(self.password_template.replace("{user}", user))
    }
}

/// What authentication concluded for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthOutcome {
    /// Not reached (rejected earlier, not a NOTIFY) or not required (challenge `None`).
    NotChecked,
    /// No credentials: challenged.
    Missing,
    /// Credentials not answering our challenge (realm, forged nonce, algorithm, opaque, or
    /// unparseable): challenged afresh.
    Invalid,
    /// A correct answer to an expired nonce: challenged with `stale=true`.
    Stale,
    /// Wrong user name or wrong response: 403.
    Failed,
    /// A correct answer to a fresh nonce.
    Accepted,
}

/// One answered request, for logs and counters. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Request method.
    pub method: String,
    /// The user addressed, if one could be found.
    pub user: Option<String>,
    /// The Event type, if present.
    pub event: Option<String>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// The status answered.
    pub status: u16,
    /// Whether the request carried an Authorization header.
    pub credentials: bool,
    /// What authentication concluded.
    pub auth: AuthOutcome,
}

impl Exchange {
    /// Whether the request passed digest authentication.
    pub fn authenticated(&self) -> bool {
        self.auth == AuthOutcome::Accepted
    }

    /// Whether this was a NOTIFY the phone acted on (2xx).
    pub fn delivered(&self) -> bool {
        self.method == "NOTIFY" && (200..300).contains(&self.status)
    }
}

/// The result of [`Phone::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// A response was written to the output buffer.
    Answered(Exchange),
    /// A request ignored by the `drop_percent` fault.
    Dropped,
    /// Nothing to answer: unparseable bytes, a response, an ACK, or a request missing
    /// Via/From/To/Call-ID/CSeq (it cannot be answered meaningfully).
    Ignored,
}

/// State shared by a phone and its forks: nonces issued by one verify in all.
#[derive(Debug)]
struct Shared {
    config: PhoneConfig,
    secret: [u8; 16],
    opaque: String,
    start: Instant,
}

/// A simulated phone line. Cheap to [`fork`](Phone::fork) for concurrent tasks.
#[derive(Debug)]
pub struct Phone {
    shared: Arc<Shared>,
    rng: StdRng,
}

/// A response about to be written.
struct Reply {
    code: u16,
    reason: &'static str,
    extra: Extra,
}

enum Extra {
    None,
    Challenge { stale: bool },
    Allow,
    RetryAfter,
}

impl Reply {
    fn new(code: u16) -> Reply {
        Reply { code, reason: reason_phrase(code), extra: Extra::None }
    }
}

impl Phone {
    /// A line whose nonce secret and fault decisions derive from `seed`; `now` is its
    /// start, the origin of nonce timestamps.
    pub fn new(config: PhoneConfig, seed: u64, now: Instant) -> Phone {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut secret = [0u8; 16];
        rng.fill_bytes(&mut secret);
        let opaque = format!("{:016x}", keyed_hash(&secret, b"opaque"));
        Phone { shared: Arc::new(Shared { config, secret, opaque, start: now }), rng }
    }

    /// Another handle on the same line (same config, secret and start) with its own fault
    /// generator, for one more socket or connection task.
    pub fn fork(&self, seed: u64) -> Phone {
        Phone { shared: Arc::clone(&self.shared), rng: StdRng::seed_from_u64(seed) }
    }

    /// The line's configuration.
    pub fn config(&self) -> &PhoneConfig {
        &self.shared.config
    }

    /// Handles one received message (a datagram or a stream frame). `out` is cleared and,
    /// for [`Handled::Answered`], holds the response to send back.
    pub fn handle(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<u8>) -> Handled {
        out.clear();
        let Ok(msg) = codec::parse(bytes) else {
            return Handled::Ignored;
        };
        let StartLine::Request { method, uri } = &msg.start else {
            return Handled::Ignored;
        };
        if method == "ACK" {
            return Handled::Ignored;
        }
        let (Some(from), Some(to), Some(call_id), Some(cseq_value), Some((cseq, _))) = (
            msg.header("From"),
            msg.header("To"),
            msg.header("Call-ID"),
            msg.header("CSeq"),
            msg.cseq(),
        ) else {
            return Handled::Ignored;
        };
        if msg.header("Via").is_none() {
            return Handled::Ignored;
        }
        if roll(&mut self.rng, self.shared.config.drop_percent) {
            return Handled::Dropped;
        }

        let mut exchange = Exchange {
            method: method.clone(),
            user: None,
            event: None,
            call_id: call_id.to_owned(),
            cseq,
            status: 0,
            credentials: msg.header("Authorization").is_some(),
            auth: AuthOutcome::NotChecked,
        };
        let reply = match method.as_str() {
            "NOTIFY" => self.notify(now, &msg, uri, &mut exchange),
            "OPTIONS" => Reply { extra: Extra::Allow, ..Reply::new(200) },
            _ => Reply { extra: Extra::Allow, ..Reply::new(405) },
        };
        exchange.status = reply.code;
        // Writing into a Vec cannot fail.
        let _ = self.write_response(now, &msg, &reply, (from, to, call_id, cseq_value), out);
        Handled::Answered(exchange)
    }

    fn notify(&mut self, now: Instant, msg: &Message, uri: &str, exchange: &mut Exchange) -> Reply {
        let user = uri_user(uri).or_else(|| msg.header("To").and_then(name_addr_user));
        exchange.user = user.map(str::to_owned);
        let config = &self.shared.config;
        let Some(user) = user.filter(|u| config.has_user(u)) else {
            return Reply::new(404);
        };
        let event = msg.header("Event").map(|v| v.split(';').next().unwrap_or("").trim());
        exchange.event = event.map(str::to_owned);
        let Some(event) = event.filter(|e| config.accepts_event(e)) else {
            return Reply::new(489);
        };
        if event == "XML-Service" {
            if let Err(reason) = check_xml_service(&msg.body) {
                return Reply { reason, ..Reply::new(400) };
            }
        }

        exchange.auth = self.authenticate(now, msg, user);
        match exchange.auth {
            AuthOutcome::Missing | AuthOutcome::Invalid => {
                return Reply { extra: Extra::Challenge { stale: false }, ..Reply::new(401) }
            }
            AuthOutcome::Stale => return Reply { extra: Extra::Challenge { stale: true }, ..Reply::new(401) },
            AuthOutcome::Failed => return Reply::new(403),
            AuthOutcome::NotChecked | AuthOutcome::Accepted => {}
        }

        let fail_status = self.shared.config.fail_status;
        if roll(&mut self.rng, self.shared.config.fail_percent) {
            let extra = if fail_status == 503 { Extra::RetryAfter } else { Extra::None };
            return Reply { extra, ..Reply::new(fail_status) };
        }
        Reply::new(200)
    }

    fn authenticate(&self, now: Instant, msg: &Message, user: &str) -> AuthOutcome {
        let shared = &*self.shared;
        let config = &shared.config;
        if config.challenge == ChallengeMode::None {
            return AuthOutcome::NotChecked;
        }
        let Some(value) = msg.header("Authorization") else {
            return AuthOutcome::Missing;
        };
        let Ok(credentials) = digest::parse_authorization(value) else {
            return AuthOutcome::Invalid;
        };
        let now_secs = self.elapsed_secs(now);
        let Some(issued) = self.check_nonce(&credentials.nonce, now_secs) else {
            return AuthOutcome::Invalid;
        };
        let opaque_ok = config.challenge != ChallengeMode::Md5Qop
            || credentials.opaque.as_deref() == Some(shared.opaque.as_str());
        if credentials.realm != config.realm || !config.challenge.offers(credentials.algorithm) || !opaque_ok {
            return AuthOutcome::Invalid;
        }
        if credentials.username != user
            || !digest::verify(&credentials, &config.password(user), "NOTIFY", &msg.body)
        {
            return AuthOutcome::Failed;
        }
        if u64::from(now_secs - issued) > config.nonce_ttl.as_secs() {
            return AuthOutcome::Stale;
        }
        AuthOutcome::Accepted
    }

    fn elapsed_secs(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.shared.start).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    fn nonce_mac(&self, issued: u32) -> u64 {
        keyed_hash(&self.shared.secret, &issued.to_be_bytes())
    }

    /// The issue time of a nonce we made, or `None` for a forged or future one.
    fn check_nonce(&self, nonce: &str, now_secs: u32) -> Option<u32> {
        if nonce.len() != 24 || !nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let issued = u32::from_str_radix(&nonce[..8], 16).ok()?;
        let mac = u64::from_str_radix(&nonce[8..], 16).ok()?;
        (issued <= now_secs && mac == self.nonce_mac(issued)).then_some(issued)
    }

    fn write_response(
        &self,
        now: Instant,
        msg: &Message,
        reply: &Reply,
        (from, to, call_id, cseq): (&str, &str, &str, &str),
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        write!(out, "SIP/2.0 {} {}\r\n", reply.code, reply.reason)?;
        for via in msg.headers("Via") {
            write!(out, "Via: {via}\r\n")?;
        }
        write!(out, "From: {from}\r\nTo: {to}")?;
        if !has_tag(to) {
            // Derived from the Call-ID so a retransmission gets the same tag.
            write!(out, ";tag={:016x}", keyed_hash(&self.shared.secret, call_id.as_bytes()))?;
        }
        write!(out, "\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n")?;
        match reply.extra {
            Extra::None => {}
            Extra::Allow => out.extend_from_slice(b"Allow: NOTIFY, OPTIONS\r\n"),
            Extra::RetryAfter => out.extend_from_slice(b"Retry-After: 1\r\n"),
            Extra::Challenge { stale } => self.write_challenge(now, stale, out)?,
        }
        write!(out, "Server: {SERVER}\r\nContent-Length: 0\r\n\r\n")
    }

    fn write_challenge(&self, now: Instant, stale: bool, out: &mut Vec<u8>) -> std::io::Result<()> {
        let shared = &*self.shared;
        let issued = self.elapsed_secs(now);
        let mac = self.nonce_mac(issued);
        let stale = if stale { ", stale=true" } else { "" };
        let realm = &shared.config.realm;
        match shared.config.challenge {
            ChallengeMode::None => {}
            ChallengeMode::Md5 => write!(
                out,
                "WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"{issued:08x}{mac:016x}\", algorithm=md5{stale}\r\n"
            )?,
            ChallengeMode::Md5Qop => write!(
                out,
                "WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"{issued:08x}{mac:016x}\", qop=\"auth\", opaque=\"{}\", algorithm=MD5{stale}\r\n",
                shared.opaque
            )?,
            ChallengeMode::Sha256 => {
                for algorithm in ["SHA-256", "MD5"] {
                    write!(
                        out,
                        "WWW-Authenticate: Digest realm=\"{realm}\", nonce=\"{issued:08x}{mac:016x}\", qop=\"auth\", algorithm={algorithm}{stale}\r\n"
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// True with probability `percent`/100; never touches the generator when `percent` is 0.
fn roll(rng: &mut StdRng, percent: f64) -> bool {
    percent > 0.0 && rng.gen_bool((percent / 100.0).min(1.0))
}

/// First 8 bytes of SHA-256(secret ":" data).
fn keyed_hash(secret: &[u8; 16], data: &[u8]) -> u64 {
    let digest = Sha256::new().chain_update(secret).chain_update(b":").chain_update(data).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The user part of a `sip:`/`sips:` URI, if any.
fn uri_user(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.trim().split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return None;
    }
    let userinfo = &rest[..rest.find(['@', ';', '?', '>'])?];
    if !rest[userinfo.len()..].starts_with('@') {
        return None;
    }
    let user = userinfo.split(':').next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

/// The user of a From/To value: `"Name" <sip:159@host>;tag=x` or `sip:159@host;tag=x`.
fn name_addr_user(value: &str) -> Option<&str> {
    match value.split_once('<') {
        Some((_, rest)) => uri_user(rest.split('>').next().unwrap_or(rest)),
        None => uri_user(value),
    }
}

/// Whether a To value already carries a `tag` parameter (outside the `<...>` URI).
fn has_tag(to: &str) -> bool {
    let params = match to.rfind('>') {
        Some(end) => &to[end + 1..],
        None => to.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').any(|p| {
        let name = p.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("tag")
    })
}

/// Real firmware silently ignores a bad XML-Service URL; the simulator says why in a 400.
fn check_xml_service(body: &[u8]) -> Result<(), &'static str> {
    if body.last().is_some_and(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t')) {
        return Err("Bad Request - XML-Service URL ends with CR/LF/space/tab");
    }
    let not_url = "Bad Request - XML-Service body is not an http(s) URL";
    let url = std::str::from_utf8(body).map_err(|_| not_url)?;
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(not_url);
    };
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(not_url);
    }
    Ok(())
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        489 => "Bad Event",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        100..=199 => "Trying",
        200..=299 => "OK",
        300..=399 => "Redirect",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    }
}
