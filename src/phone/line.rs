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
//! costs no memory for them. Like a real line's non-INVITE server transactions (RFC 3261
//! §17.2.2), the line remembers its final answers for Timer J: a retransmitted request gets
//! the same answer again and is never acted on twice.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest as _, Sha256};

use crate::event::{self, UrlProblem, UrlUse};
use crate::net::tls::Identity;
use crate::sip::codec::{self, Message, StartLine};
use crate::sip::digest::{self, Algorithm, Password, Qop};
use crate::sip::response::Response;

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
                shape_ok
                    && user
                        .parse::<u64>()
                        .is_ok_and(|n| (*first..=*last).contains(&n))
            }
        }
    }
}

/// A simulator setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSetting(pub String);

impl FromStr for UserRange {
    type Err = BadSetting;

    /// `159`, `alice` or `1000-1999`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '@' || c == ':') {
            return Err(BadSetting(format!("invalid user `{s}`")));
        }
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match s.split_once('-') {
            Some((a, b)) if digits(a) && digits(b) => {
                let first: u64 = a
                    .parse()
                    .map_err(|_| BadSetting(format!("user range `{s}` too large")))?;
                let last: u64 = b
                    .parse()
                    .map_err(|_| BadSetting(format!("user range `{s}` too large")))?;
                if first > last {
                    return Err(BadSetting(format!("user range `{s}` is empty")));
                }
                let width = if a.len() > 1 && a.starts_with('0') {
                    a.len()
                } else {
                    0
                };
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
    type Err = BadSetting;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ChallengeMode::None),
            "md5" => Ok(ChallengeMode::Md5),
            "md5-qop" => Ok(ChallengeMode::Md5Qop),
            "sha256" | "sha-256" => Ok(ChallengeMode::Sha256),
            _ => Err(BadSetting(format!(
                "unknown challenge `{s}`: use none, md5, md5-qop or sha256"
            ))),
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
    /// Event types accepted besides those of the vendor (or of [`event::EVENTS`]).
    pub accept_events: Vec<String>,
    /// The vendor played: only its events are accepted (others get 489); a Cisco SPA/MPP
    /// line, accepting [`event::EVENTS`], when `None`.
    pub vendor: Option<&'static event::Vendor>,
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
    /// Tasks receiving on each UDP socket (at least 1): a fleet rehearsal on a runtime with
    /// several worker threads answers on several cores.
    pub udp_workers: usize,
    /// The certificate and key TLS listeners present; needed to listen on TLS.
    pub tls: Option<Identity>,
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
            vendor: None,
            drop_percent: 0.0,
            delay: Duration::ZERO,
            fail_percent: 0.0,
            fail_status: 503,
            log: None,
            udp_workers: 1,
            tls: None,
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
        let own = match self.vendor {
            Some(vendor) => vendor.accepts(event),
            None => event::EVENTS.iter().any(|spec| spec.header == event),
        };
        own || self.accept_events.iter().any(|e| e == event)
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
    /// The `profile` parameter of the Event header (`resync;profile="URL"`), unquoted.
    pub profile: Option<String>,
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
    /// A retransmission of a request answered within Timer J: the output buffer holds the
    /// same answer again, and the line did not act on it again.
    Retransmission,
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
    /// Shared by the forks: a retransmission may reach another worker of the socket.
    /// Spread over locks by key, so that the workers seldom wait for each other.
    answered: [Mutex<Answered>; ANSWERED_SHARDS],
    /// Keys the transactions' hashes (SipHash with random keys: a peer cannot make two
    /// requests collide).
    transactions: std::collections::hash_map::RandomState,
}

/// Timer J of a non-INVITE server transaction over UDP (64 x T1): how long a final answer
/// is given again to retransmissions.
const TIMER_J: Duration = Duration::from_secs(32);

/// The most answers remembered: beyond it the oldest are forgotten first, so a fleet at
/// full rate stays bounded (a retransmission comes within seconds).
const MAX_ANSWERED: usize = 1 << 20;

/// The locks the remembered answers are spread over, each holding at most its share of
/// [`MAX_ANSWERED`].
const ANSWERED_SHARDS: usize = 16;
const MAX_ANSWERED_PER_SHARD: usize = MAX_ANSWERED / ANSWERED_SHARDS;

/// The final answers of the last [`TIMER_J`], by transaction (a keyed hash of the top Via,
/// Call-ID, CSeq and method: Fx, not SipHash again, since a peer cannot choose the keys).
#[derive(Debug, Default)]
struct Answered {
    replies: rustc_hash::FxHashMap<u64, Reply>,
    order: VecDeque<(Instant, u64)>,
}

impl Answered {
    fn get(&mut self, now: Instant, key: u64) -> Option<Reply> {
        self.expire(now);
        self.replies.get(&key).copied()
    }

    fn insert(&mut self, now: Instant, key: u64, reply: Reply) {
        self.expire(now);
        if self.order.len() >= MAX_ANSWERED_PER_SHARD {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.replies.remove(&oldest);
            }
        }
        if self.replies.insert(key, reply).is_none() {
            self.order.push_back((now, key));
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < TIMER_J {
                break;
            }
            self.order.pop_front();
            self.replies.remove(&key);
        }
    }
}

/// A simulated phone line. Cheap to [`fork`](Phone::fork) for concurrent tasks.
#[derive(Debug)]
pub struct Phone {
    shared: Arc<Shared>,
    rng: StdRng,
}

/// A response about to be written.
#[derive(Debug, Clone, Copy)]
struct Reply {
    code: u16,
    reason: &'static str,
    extra: Extra,
}

#[derive(Debug, Clone, Copy)]
enum Extra {
    None,
    Challenge { stale: bool },
    Allow,
    RetryAfter,
}

impl Reply {
    fn new(code: u16) -> Reply {
        Reply {
            code,
            reason: reason_phrase(code),
            extra: Extra::None,
        }
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
        Phone {
            shared: Arc::new(Shared {
                config,
                secret,
                opaque,
                start: now,
                answered: Default::default(),
                transactions: Default::default(),
            }),
            rng,
        }
    }

    /// Another handle on the same line (same config, secret and start) with its own fault
    /// generator, for one more socket or connection task.
    pub fn fork(&self, seed: u64) -> Phone {
        Phone {
            shared: Arc::clone(&self.shared),
            rng: StdRng::seed_from_u64(seed),
        }
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
        let StartLine::Request { method, uri } = msg.start else {
            return Handled::Ignored;
        };
        if method == "ACK" {
            return Handled::Ignored;
        }
        let (Some(_), Some(_), Some(call_id), Some(_), Some((cseq, _))) = (
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
        // RFC 3261 §17.2.3: a request matches a server transaction by its top Via (branch,
        // sent-by) and method. Only UDP retransmits (Timer J is 0 on TCP and TLS).
        let via = msg.header("Via").unwrap_or_default();
        let udp = via
            .get(..11)
            .is_some_and(|t| t.eq_ignore_ascii_case("SIP/2.0/UDP"));
        let transaction = msg.top_via_branch().filter(|_| udp).map(|_| {
            use std::hash::BuildHasher;
            self.shared
                .transactions
                .hash_one((via, call_id, cseq, method))
        });
        if let Some(key) = transaction {
            let earlier = self.answered(key).get(now, key);
            if let Some(reply) = earlier {
                self.write_response(now, &msg, &reply, out);
                return Handled::Retransmission;
            }
        }

        let mut exchange = Exchange {
            method: method.to_owned(),
            user: None,
            event: None,
            profile: None,
            call_id: call_id.to_owned(),
            cseq,
            status: 0,
            credentials: msg.header("Authorization").is_some(),
            auth: AuthOutcome::NotChecked,
        };
        let reply = match method {
            "NOTIFY" => self.notify(now, &msg, uri, &mut exchange),
            "OPTIONS" => Reply {
                extra: Extra::Allow,
                ..Reply::new(200)
            },
            _ => Reply {
                extra: Extra::Allow,
                ..Reply::new(405)
            },
        };
        exchange.status = reply.code;
        self.write_response(now, &msg, &reply, out);
        if let Some(key) = transaction {
            self.answered(key).insert(now, key, reply);
        }
        Handled::Answered(exchange)
    }

    /// The answers remembered with `key`'s; a poisoned lock still holds a usable map.
    fn answered(&self, key: u64) -> std::sync::MutexGuard<'_, Answered> {
        // The high bits: the map's buckets come from the low ones.
        let shard = (key >> 60) as usize % ANSWERED_SHARDS;
        self.shared.answered[shard]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&mut self, now: Instant, msg: &Message, uri: &str, exchange: &mut Exchange) -> Reply {
        let user = uri_user(uri).or_else(|| msg.header("To").and_then(name_addr_user));
        exchange.user = user.map(str::to_owned);
        let config = &self.shared.config;
        let Some(user) = user.filter(|u| config.has_user(u)) else {
            return Reply::new(404);
        };
        let event = msg
            .header("Event")
            .map(|v| v.split(';').next().unwrap_or("").trim());
        exchange.event = event.map(str::to_owned);
        exchange.profile = msg.header("Event").and_then(profile_param);
        let Some(event) = event.filter(|e| config.accepts_event(e)) else {
            return Reply::new(489);
        };
        let takes_url_body =
            |spec: &event::EventSpec| spec.header == event && spec.url == UrlUse::Body;
        if event::EVENTS.iter().any(takes_url_body) {
            if let Err(reason) = check_xml_service(msg.body) {
                return Reply {
                    reason,
                    ..Reply::new(400)
                };
            }
        }

        exchange.auth = self.authenticate(now, msg, user);
        match exchange.auth {
            AuthOutcome::Missing | AuthOutcome::Invalid => {
                return Reply {
                    extra: Extra::Challenge { stale: false },
                    ..Reply::new(401)
                }
            }
            AuthOutcome::Stale => {
                return Reply {
                    extra: Extra::Challenge { stale: true },
                    ..Reply::new(401)
                }
            }
            AuthOutcome::Failed => return Reply::new(403),
            AuthOutcome::NotChecked | AuthOutcome::Accepted => {}
        }

        let fail_status = self.shared.config.fail_status;
        if roll(&mut self.rng, self.shared.config.fail_percent) {
            let extra = if fail_status == 503 {
                Extra::RetryAfter
            } else {
                Extra::None
            };
            return Reply {
                extra,
                ..Reply::new(fail_status)
            };
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
        if credentials.realm != config.realm
            || !config.challenge.offers(credentials.algorithm)
            || !opaque_ok
        {
            return AuthOutcome::Invalid;
        }
        if credentials.username != user
            || !digest::verify(&credentials, &config.password(user), "NOTIFY", msg.body)
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
        if nonce.len() != 24
            || !nonce
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let issued = u32::from_str_radix(&nonce[..8], 16).ok()?;
        let mac = u64::from_str_radix(&nonce[8..], 16).ok()?;
        (issued <= now_secs && mac == self.nonce_mac(issued)).then_some(issued)
    }

    fn write_response(&self, now: Instant, msg: &Message, reply: &Reply, out: &mut Vec<u8>) {
        let challenges = match reply.extra {
            Extra::Challenge { stale } => self.challenges(now, stale),
            _ => Vec::new(),
        };
        let mut headers: Vec<(&str, &str)> = challenges
            .iter()
            .map(|c| ("WWW-Authenticate", c.as_str()))
            .collect();
        match reply.extra {
            Extra::Allow => headers.push(("Allow", "NOTIFY, OPTIONS")),
            Extra::RetryAfter => headers.push(("Retry-After", "1")),
            Extra::None | Extra::Challenge { .. } => {}
        }
        headers.push(("Server", SERVER));
        // Derived from the Call-ID so a retransmission gets the same tag.
        let call_id = msg.header("Call-ID").unwrap_or_default();
        let to_tag = format!(
            "{:016x}",
            keyed_hash(&self.shared.secret, call_id.as_bytes())
        );
        let response = Response {
            status: reply.code,
            reason: reply.reason,
            to_tag: &to_tag,
            headers: &headers,
            body: b"",
        };
        if response.write(msg, out).is_err() {
            // `handle` answers only requests that have every header a response copies.
            out.clear();
        }
    }

    /// The `WWW-Authenticate` values of the configured challenge mode.
    fn challenges(&self, now: Instant, stale: bool) -> Vec<String> {
        let shared = &*self.shared;
        let issued = self.elapsed_secs(now);
        let nonce = format!("{issued:08x}{:016x}", self.nonce_mac(issued));
        let realm = &shared.config.realm;
        let header = |algorithm: &str, qop, opaque| {
            digest::challenge_header(realm, &nonce, algorithm, qop, opaque, stale)
        };
        match shared.config.challenge {
            ChallengeMode::None => Vec::new(),
            // As Sipura-era firmware writes it.
            ChallengeMode::Md5 => vec![header("md5", None, None)],
            ChallengeMode::Md5Qop => vec![header(
                Algorithm::Md5.as_str(),
                Some(Qop::Auth),
                Some(&shared.opaque),
            )],
            ChallengeMode::Sha256 => [Algorithm::Sha256, Algorithm::Md5]
                .iter()
                .map(|a| header(a.as_str(), Some(Qop::Auth), None))
                .collect(),
        }
    }
}

/// True with probability `percent`/100; never touches the generator when `percent` is 0.
fn roll(rng: &mut StdRng, percent: f64) -> bool {
    percent > 0.0 && rng.gen_bool((percent / 100.0).min(1.0))
}

/// First 8 bytes of SHA-256(secret ":" data).
fn keyed_hash(secret: &[u8; 16], data: &[u8]) -> u64 {
    let digest = Sha256::new()
        .chain_update(secret)
        .chain_update(b":")
        .chain_update(data)
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The `profile` parameter of an Event header value, without its quotes.
fn profile_param(value: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|param| {
        let (name, v) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("profile")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
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

/// Real firmware silently ignores a bad XML-Service URL; the simulator says why in a 400.
fn check_xml_service(body: &[u8]) -> Result<(), &'static str> {
    let not_url = "Bad Request - XML-Service body is not an http(s) URL";
    let url = std::str::from_utf8(body).map_err(|_| not_url)?;
    match event::check_http_url(url) {
        Ok(()) => Ok(()),
        Err(UrlProblem::TrailingWhitespace) => {
            Err("Bad Request - XML-Service URL ends with CR/LF/space/tab")
        }
        Err(UrlProblem::NotHttp | UrlProblem::Whitespace) => Err(not_url),
    }
}

/// The phrase for a status the line sends; `fail_status` may be any code, hence the classes.
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
        _ => match code / 100 {
            1 => "Trying",
            2 => "OK",
            3 => "Redirect",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resync_profile_parameter() {
        assert_eq!(
            profile_param("resync;profile=\"http://prov/x.xml\"").as_deref(),
            Some("http://prov/x.xml")
        );
        assert_eq!(
            profile_param("resync ; Profile = http://p/y").as_deref(),
            Some("http://p/y")
        );
        assert_eq!(profile_param("resync"), None);
        assert_eq!(profile_param("resync;id=1"), None);
    }
    use crate::sip::digest::{authorization, parse_challenge, Answer, Challenge};

    const URI: &str = "sip:159@127.0.0.1:5060";

    /// A phone (seeded 7) with the default configuration as changed by `configure`, and
    /// the instant it started.
    fn phone(configure: impl FnOnce(&mut PhoneConfig)) -> (Phone, Instant) {
        let mut config = PhoneConfig::default();
        configure(&mut config);
        let t0 = Instant::now();
        (Phone::new(config, 7, t0), t0)
    }

    /// A NOTIFY as a sender writes it; `extra` is inserted verbatim before Content-Length.
    /// A request in a transaction of its own (a new branch each time, as each attempt of a
    /// client is).
    fn request(method: &str, uri: &str, extra: &str, body: &str) -> Vec<u8> {
        static BRANCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let branch = BRANCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-{branch};rport\r\n\
             Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-0\r\n\
             From: <sip:sipnotify@10.0.0.1>;tag=abc\r\n\
             To: <{uri}>\r\n\
             Call-ID: call-1@10.0.0.1\r\n\
             CSeq: 7 {method}\r\n\
             Max-Forwards: 70\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn notify(event: &str, extra: &str, body: &str) -> Vec<u8> {
        request("NOTIFY", URI, &format!("Event: {event}\r\n{extra}"), body)
    }

    /// The response, parsed from bytes leaked for the test's lifetime: a `Message` borrows.
    fn send(phone: &mut Phone, now: Instant, bytes: &[u8]) -> (Message<'static>, Exchange) {
        let mut out = Vec::new();
        match phone.handle(now, bytes, &mut out) {
            Handled::Answered(exchange) => {
                let out: &'static [u8] = Vec::leak(out);
                (codec::parse(out).expect("response parses"), exchange)
            }
            other => panic!("not answered: {other:?}"),
        }
    }

    fn challenges(response: &Message) -> Vec<Challenge> {
        response
            .headers("WWW-Authenticate")
            .map(|v| parse_challenge(v).unwrap())
            .collect()
    }

    fn credentials(challenge: &Challenge, user: &str, password: &str, body: &str) -> String {
        let password = Password::new(password);
        let answer = Answer {
            username: user,
            password: &password,
            method: "NOTIFY",
            uri: URI,
            body: body.as_bytes(),
            cnonce: "0a4f113b",
            nc: 1,
        };
        format!("Authorization: {}\r\n", authorization(challenge, &answer))
    }

    fn code(response: &Message) -> u16 {
        response.status().unwrap()
    }

    #[test]
    fn md5_challenge_then_correct_answer_is_accepted() {
        let (mut phone, t0) = phone(|_| {});
        let (response, exchange) = send(&mut phone, t0, &notify("resync", "", ""));
        assert_eq!(code(&response), 401);
        assert_eq!(exchange.auth, AuthOutcome::Missing);
        assert!(!exchange.credentials);
        let header = response.header("WWW-Authenticate").unwrap();
        assert!(
            header.contains("algorithm=md5")
                && !header.contains("qop")
                && !header.contains("opaque")
        );

        let auth = credentials(&challenges(&response)[0], "159", "pw-159", "");
        let (response, exchange) = send(
            &mut phone,
            t0 + Duration::from_secs(2),
            &notify("resync", &auth, ""),
        );
        assert_eq!(code(&response), 200);
        assert!(exchange.authenticated() && exchange.credentials && exchange.delivered());
        assert_eq!(exchange.user.as_deref(), Some("159"));
        assert_eq!(exchange.event.as_deref(), Some("resync"));
        assert_eq!(
            (exchange.call_id.as_str(), exchange.cseq),
            ("call-1@10.0.0.1", 7)
        );
    }

    #[test]
    fn md5_qop_challenge_carries_qop_and_opaque() {
        let (mut phone, t0) = phone(|c| c.challenge = ChallengeMode::Md5Qop);
        let (response, _) = send(&mut phone, t0, &notify("reboot_now", "", ""));
        let challenge = &challenges(&response)[0];
        assert_eq!(challenge.qop, vec![digest::Qop::Auth]);
        assert!(challenge.opaque.is_some());
        let auth = credentials(challenge, "159", "pw-159", "");
        let (response, _) = send(&mut phone, t0, &notify("reboot_now", &auth, ""));
        assert_eq!(code(&response), 200);

        // Dropping the opaque is not an answer to our challenge.
        let no_opaque = Challenge {
            opaque: None,
            ..challenge.clone()
        };
        let auth = credentials(&no_opaque, "159", "pw-159", "");
        let (response, exchange) = send(&mut phone, t0, &notify("reboot_now", &auth, ""));
        assert_eq!(
            (code(&response), exchange.auth),
            (401, AuthOutcome::Invalid)
        );
    }

    #[test]
    fn sha256_mode_offers_sha256_then_md5_and_accepts_both() {
        let (mut phone, t0) = phone(|c| c.challenge = ChallengeMode::Sha256);
        let (response, _) = send(&mut phone, t0, &notify("resync", "", ""));
        let offered = challenges(&response);
        assert_eq!(offered.len(), 2);
        assert_eq!(offered[0].algorithm, Algorithm::Sha256);
        assert_eq!(offered[1].algorithm, Algorithm::Md5);
        for challenge in &offered {
            assert_eq!(challenge.qop, vec![digest::Qop::Auth]);
            let auth = credentials(challenge, "159", "pw-159", "");
            let (response, _) = send(&mut phone, t0, &notify("resync", &auth, ""));
            assert_eq!(code(&response), 200, "{:?}", challenge.algorithm);
        }
    }

    #[test]
    fn wrong_password_or_user_is_forbidden() {
        let (mut phone, t0) =
            phone(|c| c.users = vec!["159".parse().unwrap(), "160".parse().unwrap()]);
        let (response, _) = send(&mut phone, t0, &notify("resync", "", ""));
        let challenge = &challenges(&response)[0];
        for (user, password) in [("159", "wrong"), ("160", "pw-160")] {
            let auth = credentials(challenge, user, password, "");
            let (response, exchange) = send(&mut phone, t0, &notify("resync", &auth, ""));
            assert_eq!((code(&response), exchange.auth), (403, AuthOutcome::Failed));
        }
    }

    #[test]
    fn expired_nonce_gets_stale_challenge() {
        let (mut phone, t0) = phone(|_| {});
        let (response, _) = send(
            &mut phone,
            t0 + Duration::from_secs(5),
            &notify("resync", "", ""),
        );
        let auth = credentials(&challenges(&response)[0], "159", "pw-159", "");

        let (response, _) = send(
            &mut phone,
            t0 + Duration::from_secs(35),
            &notify("resync", &auth, ""),
        );
        assert_eq!(code(&response), 200, "30 s old is still fresh");
        let (response, exchange) = send(
            &mut phone,
            t0 + Duration::from_secs(36),
            &notify("resync", &auth, ""),
        );
        assert_eq!((code(&response), exchange.auth), (401, AuthOutcome::Stale));
        let fresh = &challenges(&response)[0];
        assert!(fresh.stale);

        let auth = credentials(fresh, "159", "pw-159", "");
        let (response, _) = send(
            &mut phone,
            t0 + Duration::from_secs(37),
            &notify("resync", &auth, ""),
        );
        assert_eq!(code(&response), 200);
    }

    #[test]
    fn forged_nonce_or_wrong_realm_is_challenged_again() {
        let (mut phone, t0) = phone(|_| {});
        let (response, _) = send(&mut phone, t0, &notify("resync", "", ""));
        let genuine = challenges(&response).remove(0);
        let forged = Challenge {
            nonce: format!("{}0", &genuine.nonce[..23]),
            ..genuine.clone()
        };
        let future = Challenge {
            nonce: format!("0000ffff{}", &genuine.nonce[8..]),
            ..genuine.clone()
        };
        let other_realm = Challenge {
            realm: "elsewhere".to_owned(),
            ..genuine
        };
        for challenge in [forged, future, other_realm] {
            let auth = credentials(&challenge, "159", "pw-159", "");
            let (response, exchange) = send(&mut phone, t0, &notify("resync", &auth, ""));
            assert_eq!(
                (code(&response), exchange.auth),
                (401, AuthOutcome::Invalid)
            );
            assert!(!challenges(&response)[0].stale);
        }
    }

    #[test]
    fn unknown_or_missing_event_is_489_before_auth() {
        let (mut phone, t0) = phone(|c| c.accept_events = vec!["check-sync".to_owned()]);
        for event in ["presence", "Resync", ""] {
            let (response, exchange) = send(&mut phone, t0, &notify(event, "", ""));
            assert_eq!(
                (code(&response), exchange.auth),
                (489, AuthOutcome::NotChecked),
                "{event:?}"
            );
            assert_eq!(
                response.start,
                StartLine::Response {
                    code: 489,
                    reason: "Bad Event"
                }
            );
        }
        let (response, _) = send(&mut phone, t0, &request("NOTIFY", URI, "", ""));
        assert_eq!(code(&response), 489);
        for event in [
            "resync;profile=\"http://prov/x.xml\"",
            "check-sync",
            "XML-Service ; id=1",
        ] {
            let body = if event.starts_with("XML") {
                "http://x/y.xml"
            } else {
                ""
            };
            let (response, _) = send(&mut phone, t0, &notify(event, "", body));
            assert_eq!(code(&response), 401, "{event:?}");
        }
    }

    #[test]
    fn bad_xml_service_body_is_400_with_reason() {
        let (mut phone, t0) = phone(|c| c.challenge = ChallengeMode::None);
        for (body, why) in [
            ("http://10.0.0.5/menu.xml\n", "ends with CR/LF/space/tab"),
            ("http://10.0.0.5/menu.xml\r\n", "ends with CR/LF/space/tab"),
            ("<CiscoIPPhoneText/>", "not an http(s) URL"),
            ("ftp://10.0.0.5/x", "not an http(s) URL"),
            ("http://", "not an http(s) URL"),
            ("", "not an http(s) URL"),
        ] {
            let (response, _) = send(&mut phone, t0, &notify("XML-Service", "", body));
            let StartLine::Response { code, reason } = response.start else {
                unreachable!()
            };
            assert_eq!(code, 400, "{body:?}");
            assert!(reason.contains(why), "{body:?}: {reason}");
        }
        for body in [
            "http://10.0.0.5/menu.xml",
            "HTTPS://prov.example.com:8443/a?b=c",
        ] {
            let (response, exchange) = send(&mut phone, t0, &notify("XML-Service", "", body));
            assert_eq!(
                (code(&response), exchange.auth),
                (200, AuthOutcome::NotChecked),
                "{body:?}"
            );
        }
    }

    #[test]
    fn unknown_user_is_404_and_user_falls_back_to_to() {
        let (mut phone, t0) = phone(|c| c.users = vec!["1000-1999".parse().unwrap()]);
        let uri_for = |user: &str| format!("sip:{user}@127.0.0.1");
        for (user, status) in [
            ("1500", 401),
            ("1000", 401),
            ("1999", 401),
            ("2000", 404),
            ("999", 404),
            ("01500", 404),
        ] {
            let bytes = request("NOTIFY", &uri_for(user), "Event: resync\r\n", "");
            let (response, exchange) = send(&mut phone, t0, &bytes);
            assert_eq!(code(&response), status, "{user}");
            assert_eq!(exchange.user.as_deref(), Some(user));
        }
        // No user in the Request-URI: the To user decides.
        let bytes = String::from_utf8(request("NOTIFY", "sip:127.0.0.1", "Event: resync\r\n", ""))
            .unwrap()
            .replace("To: <sip:127.0.0.1>", "To: \"Desk\" <sip:1234@127.0.0.1>");
        let (response, exchange) = send(&mut phone, t0, bytes.as_bytes());
        assert_eq!(
            (code(&response), exchange.user.as_deref()),
            (401, Some("1234"))
        );
    }

    #[test]
    fn user_ranges_parse_and_match_without_expanding() {
        let range: UserRange = "1000-1999".parse().unwrap();
        assert_eq!(
            range,
            UserRange::Range {
                first: 1000,
                last: 1999,
                width: 0
            }
        );
        assert!(range.contains("1500") && !range.contains("2000") && !range.contains("15a0"));
        let fleet: UserRange = "0-99999".parse().unwrap();
        assert!(fleet.contains("0") && fleet.contains("99999") && !fleet.contains("00001"));
        let padded: UserRange = "0100-0199".parse().unwrap();
        assert!(padded.contains("0150") && !padded.contains("150"));
        assert_eq!(padded.to_string(), "0100-0199");
        assert_eq!(
            "front-desk".parse::<UserRange>(),
            Ok(UserRange::One("front-desk".to_owned()))
        );
        assert!("1999-1000".parse::<UserRange>().is_err());
        assert!("a b".parse::<UserRange>().is_err());
    }

    #[test]
    fn password_template_is_per_user() {
        let (mut phone, t0) = phone(|c| {
            c.users = vec!["100-200".parse().unwrap()];
            c.password_template = "s3cret-{user}-x".to_owned();
        });
        let uri = "sip:150@127.0.0.1";
        let (response, _) = send(
            &mut phone,
            t0,
            &request("NOTIFY", uri, "Event: resync\r\n", ""),
        );
        let password = Password::new("s3cret-150-x");
        let answer = Answer {
            username: "150",
            password: &password,
            method: "NOTIFY",
            uri,
            body: b"",
            cnonce: "c",
            nc: 1,
        };
        let auth = format!(
            "Event: resync\r\nAuthorization: {}\r\n",
            authorization(&challenges(&response)[0], &answer)
        );
        let (response, _) = send(&mut phone, t0, &request("NOTIFY", uri, &auth, ""));
        assert_eq!(code(&response), 200);
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_a_stable_to_tag() {
        let (mut phone, t0) = phone(|_| {});
        let bytes = notify("resync", "", "");
        let mut first = Vec::new();
        phone.handle(t0, &bytes, &mut first);
        let response = codec::parse(&first).unwrap();
        let branch = codec::parse(&bytes)
            .unwrap()
            .top_via_branch()
            .unwrap()
            .to_owned();
        let vias: Vec<_> = response.headers("Via").collect();
        assert_eq!(
            vias,
            [
                &format!("SIP/2.0/UDP 10.0.0.1:5070;branch={branch};rport"),
                "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-0"
            ]
        );
        assert_eq!(
            response.header("From"),
            Some("<sip:sipnotify@10.0.0.1>;tag=abc")
        );
        let to = response.header("To").unwrap();
        assert!(to.starts_with("<sip:159@127.0.0.1:5060>;tag="), "{to}");
        assert_eq!(response.header("Call-ID"), Some("call-1@10.0.0.1"));
        assert_eq!(response.header("CSeq"), Some("7 NOTIFY"));
        assert_eq!(response.header("Server"), Some(SERVER));
        assert_eq!(response.header("Content-Length"), Some("0"));

        // A retransmission gets the same answer, tag included.
        let mut second = Vec::new();
        phone.handle(t0, &bytes, &mut second);
        assert_eq!(first, second);

        // An existing To tag is kept as is.
        let tagged = String::from_utf8(notify("resync", "", ""))
            .unwrap()
            .replace(
                "To: <sip:159@127.0.0.1:5060>",
                "To: <sip:159@127.0.0.1:5060>;tag=x1",
            );
        let (response, _) = send(&mut phone, t0, tagged.as_bytes());
        assert_eq!(
            response.header("To"),
            Some("<sip:159@127.0.0.1:5060>;tag=x1")
        );
    }

    /// RFC 3261 §17.2.2: a retransmission within Timer J gets the same answer again, and
    /// the line does not act on it again; after Timer J it is a new request.
    #[test]
    fn a_retransmitted_notify_is_answered_again_and_not_acted_on_twice() {
        let (mut phone, t0) = phone(|_| {});
        let (response, _) = send(&mut phone, t0, &notify("resync", "", ""));
        let bytes = notify(
            "resync",
            &credentials(&challenges(&response)[0], "159", "pw-159", ""),
            "",
        );
        let (mut first, mut second) = (Vec::new(), Vec::new());
        let acted = phone.handle(t0, &bytes, &mut first);
        assert!(
            matches!(&acted, Handled::Answered(e) if e.delivered()),
            "{acted:?}"
        );
        let again = phone.handle(t0 + Duration::from_millis(500), &bytes, &mut second);
        assert_eq!(again, Handled::Retransmission);
        assert_eq!(first, second);
        assert_eq!(code(&codec::parse(&first).unwrap()), 200);
        // A challenge is given again too (the same status; a fresh nonce is as good).
        let unauthenticated = notify("resync", "", "");
        let (challenged, _) = send(&mut phone, t0, &unauthenticated);
        let mut out = Vec::new();
        let again = phone.handle(t0 + Duration::from_secs(1), &unauthenticated, &mut out);
        assert_eq!(again, Handled::Retransmission);
        assert_eq!(code(&codec::parse(&out).unwrap()), code(&challenged));
        // Over TCP nothing is retransmitted (Timer J is 0): the same bytes are a new request.
        let tcp = String::from_utf8(notify("resync", "", ""))
            .unwrap()
            .replace("SIP/2.0/UDP 10.0.0.1", "SIP/2.0/TCP 10.0.0.1");
        for _ in 0..2 {
            assert!(matches!(
                phone.handle(t0, tcp.as_bytes(), &mut out),
                Handled::Answered(_)
            ));
        }
        // Past Timer J the transaction is gone: the same bytes are a new request (and its
        // nonce, from t0, is still fresh enough to be accepted).
        let later = t0 + TIMER_J;
        assert!(matches!(
            phone.handle(later, &bytes, &mut out),
            Handled::Answered(_)
        ));
    }

    #[test]
    fn remembered_answers_are_bounded() {
        let t0 = Instant::now();
        let mut answered = Answered::default();
        for key in 0..(MAX_ANSWERED_PER_SHARD as u64 + 10) {
            answered.insert(t0, key, Reply::new(200));
        }
        assert_eq!(answered.replies.len(), MAX_ANSWERED_PER_SHARD);
        assert!(answered.get(t0, 0).is_none() && answered.get(t0, 10).is_some());
        assert!(answered.get(t0 + TIMER_J, 10).is_none());
        assert!(answered.replies.is_empty() && answered.order.is_empty());
    }

    #[test]
    fn other_methods_and_non_requests() {
        let (mut phone, t0) = phone(|_| {});
        let (response, _) = send(&mut phone, t0, &request("OPTIONS", URI, "", ""));
        assert_eq!(
            (code(&response), response.header("Allow")),
            (200, Some("NOTIFY, OPTIONS"))
        );
        let (response, exchange) = send(&mut phone, t0, &request("INFO", URI, "", ""));
        assert_eq!(
            (code(&response), response.header("Allow")),
            (405, Some("NOTIFY, OPTIONS"))
        );
        assert_eq!(exchange.method, "INFO");

        let mut out = Vec::new();
        assert_eq!(
            phone.handle(t0, &request("ACK", URI, "", ""), &mut out),
            Handled::Ignored
        );
        assert_eq!(
            phone.handle(t0, b"garbage\r\n\r\n", &mut out),
            Handled::Ignored
        );
        let response =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
To: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(phone.handle(t0, response, &mut out), Handled::Ignored);
        assert!(out.is_empty());
    }

    #[test]
    fn challenge_none_accepts_without_credentials() {
        let (mut phone, t0) = phone(|c| c.challenge = ChallengeMode::None);
        let (response, exchange) = send(&mut phone, t0, &notify("reboot_now", "", ""));
        assert_eq!(
            (code(&response), exchange.auth),
            (200, AuthOutcome::NotChecked)
        );
        assert!(exchange.delivered() && !exchange.authenticated());
    }

    #[test]
    fn drop_percent_100_drops_everything() {
        let (mut phone, t0) = phone(|c| c.drop_percent = 100.0);
        let mut out = Vec::new();
        for _ in 0..20 {
            assert_eq!(
                phone.handle(t0, &notify("resync", "", ""), &mut out),
                Handled::Dropped
            );
        }
    }

    #[test]
    fn drop_percent_is_deterministic_per_seed() {
        let t0 = Instant::now();
        let config = PhoneConfig {
            drop_percent: 50.0,
            ..PhoneConfig::default()
        };
        let run = |seed| {
            let mut phone = Phone::new(config.clone(), seed, t0);
            let mut out = Vec::new();
            (0..200)
                .map(|_| phone.handle(t0, &notify("resync", "", ""), &mut out) == Handled::Dropped)
                .collect::<Vec<_>>()
        };
        let dropped = run(1);
        assert_eq!(dropped, run(1));
        let count = dropped.iter().filter(|d| **d).count();
        assert!((60..140).contains(&count), "{count}");
    }

    #[test]
    fn fail_percent_100_fails_only_after_auth() {
        let (mut phone, t0) = phone(|c| c.fail_percent = 100.0);
        let (response, _) = send(&mut phone, t0, &notify("resync", "", ""));
        assert_eq!(code(&response), 401);
        let auth = credentials(&challenges(&response)[0], "159", "pw-159", "");
        let (response, exchange) = send(&mut phone, t0, &notify("resync", &auth, ""));
        assert_eq!(
            (code(&response), exchange.auth),
            (503, AuthOutcome::Accepted)
        );
        assert_eq!(response.header("Retry-After"), Some("1"));
        assert!(!exchange.delivered());
    }

    #[test]
    fn challenge_mode_parses() {
        for mode in [
            ChallengeMode::None,
            ChallengeMode::Md5,
            ChallengeMode::Md5Qop,
            ChallengeMode::Sha256,
        ] {
            assert_eq!(mode.to_string().parse::<ChallengeMode>(), Ok(mode));
        }
        assert!("basic".parse::<ChallengeMode>().is_err());
    }
}
