//! One target, from the first NOTIFY to its [`Outcome`], answering 401/407 challenges.
//!
//! Each attempt is a new client transaction (new branch, CSeq + 1) on the same Call-ID and
//! From tag. Credentials accumulate per realm, so a 407 from an outbound proxy followed by a
//! 401 from the phone are both answered in the same request.
//!
//! A route with several destinations (a name resolved per RFC 3263) fails over: when the
//! destination does not answer within its share of the time, cannot be sent to, or answers
//! 503, the next one gets a new attempt (§4.3). The whole target keeps one limit, the
//! shorter of its timeout and Timer F, and each destination's share is what is left of it
//! divided by the destinations left, so a dead first destination costs half the time of
//! two, and the last destination has all that remains.

use super::notify::{Hop, Notify, Route};
use super::outcome::{hint_for, Direction, Outcome, OutcomeKind, TraceEntry};
use super::transaction::{ClientTransaction, Timers, TxEvent};
use crate::sip::codec::{Message, StartLine};
use crate::sip::digest::{self, Answer, Challenge};
use crate::sip::push_ip;
use crate::sip::request::NotifyRequest;
use crate::sip::Transport;
use bytes::Bytes;
use rand::RngCore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After an ICMP error, how soon the request goes again: long enough for a phone that was
/// restarting its SIP stack, short enough that a closed port ends a target at once.
pub const ICMP_RETRY: Duration = Duration::from_millis(200);

/// How many challenge rounds a target may go through before it is `auth_failed`.
pub const MAX_AUTH_ROUNDS: u32 = 4;

#[derive(Debug)]
struct RealmAuth {
    proxy: bool,
    challenge: Challenge,
    nc: u32,
    /// The client nonce of the current attempt's answer, kept so that a retransmission is
    /// written again byte for byte.
    cnonce: Token<16>,
    stale_retried: bool,
}

/// The state of one target.
#[derive(Debug)]
///
/// The request is not kept: each (re)transmission writes it again from the attempt's state,
/// which gives the same bytes, so a target waiting for its answer holds no request.
pub struct Flow {
    /// Shared with whoever started the target (a campaign keeps it for retries and records).
    notify: Arc<Notify>,
    route: Route,
    from_tag: Token<16>,
    call_id: Token<32>,
    cseq: u32,
    /// Empty until the first attempt.
    branch: Branch,
    tx: ClientTransaction,
    realms: Vec<RealmAuth>,
    rounds: u32,
    attempts: u32,
    retransmissions: u32,
    started: Instant,
    deadline: Option<Instant>,
    /// While other destinations remain; boxed, since nearly every target has one.
    failover: Option<Box<Failover>>,
    /// The branch the last new attempt replaced, until the endpoint forgets it.
    retired_branch: Option<Branch>,
    provisional: bool,
    /// An ICMP error said the current request did not arrive, and no answer came since.
    unreachable_once: bool,
    /// Where the last response used came from, when not the destination.
    answered_from: Option<SocketAddr>,
    /// Boxed: it is set only for the moment between the end and `take_outcome`.
    outcome: Option<Box<Outcome>>,
    ladder: Vec<TraceEntry>,
}

/// The destinations a flow has left after the current one, and the current one's share.
#[derive(Debug)]
struct Failover {
    /// In the order to try them; never empty.
    next: Vec<Hop>,
    /// When the current destination started.
    since: Instant,
    /// When its share of the time ends; `None` once it has answered provisionally (it has
    /// the request: moving on could act twice).
    share_ends: Option<Instant>,
}

/// Why a message carrying a flow's branch was not used: a branch is 128 random bits that
/// only the destination (and the path to it) has seen, so this is a broken or forging peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// A request, not a response.
    NotAResponse,
    /// Another Call-ID.
    CallId,
    /// Another CSeq number or method: not this attempt's transaction.
    CSeq,
}

/// A random token of `N` characters, kept inline: a prefix, then random bytes in lower-case
/// hex. A flow holds several, and a branch is also the endpoint's key for its responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token<const N: usize>([u8; N]);

/// The Via branch of an attempt: the RFC 3261 magic cookie and 128 random bits.
pub type Branch = Token<39>;

/// What every RFC 3261 branch starts with (§8.1.1.7).
const BRANCH_MAGIC: &str = "z9hG4bK";

impl<const N: usize> Token<N> {
    /// No token yet; never equal to a random one, which has no zero byte.
    const EMPTY: Token<N> = Token([0; N]);

    /// `prefix` then `(N - prefix.len()) / 2` random bytes in hex.
    fn random(rng: &mut dyn RngCore, prefix: &str) -> Token<N> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut raw = [0u8; N];
        rng.fill_bytes(&mut raw[..(N - prefix.len()) / 2]);
        let mut token = [0u8; N];
        token[..prefix.len()].copy_from_slice(prefix.as_bytes());
        let hex = &mut token[prefix.len()..];
        for (i, b) in raw[..hex.len() / 2].iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        Token(token)
    }

    /// The token as it is written.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The token written as `text`, to look one up by; `None` if it has another length.
    pub fn from_text(text: &str) -> Option<Token<N>> {
        text.as_bytes().try_into().ok().map(Token)
    }
}

impl Flow {
    /// Starts a target at `now`: the first [`poll_transmit`](Self::poll_transmit) returns the
    /// NOTIFY. Branch (128 bits), tag (64 bits) and Call-ID (128 bits) come from `rng`, which
    /// must be a cryptographic generator: responses are accepted from any address (RFC 3261
    /// §17.1.3), so an unguessable branch and Call-ID are what keep others from answering.
    pub fn new(
        now: Instant,
        notify: Arc<Notify>,
        mut route: Route,
        timers: Timers,
        rng: &mut dyn RngCore,
    ) -> Flow {
        let (steps, next) = route
            .resolution
            .take()
            .map(|r| (r.steps, r.next))
            .unwrap_or_default();
        // A limit too far away to represent is no limit: Timer F ends the target first. With
        // several destinations, Timer F bounds the whole target, not each transaction.
        let deadline = match !next.is_empty() {
            true => Some(
                notify
                    .timeout
                    .map_or(timers.timer_f(), |t| t.min(timers.timer_f())),
            ),
            false => notify.timeout,
        }
        .and_then(|t| now.checked_add(t));
        let tx = ClientTransaction::new(now, timers, route.transport.is_reliable());
        let mut flow = Flow {
            from_tag: Token::random(rng, ""),
            call_id: Token::random(rng, ""),
            cseq: 1,
            branch: Token::EMPTY,
            tx,
            realms: Vec::new(),
            rounds: 0,
            attempts: 0,
            retransmissions: 0,
            started: now,
            deadline,
            failover: None,
            retired_branch: None,
            provisional: false,
            unreachable_once: false,
            answered_from: None,
            outcome: None,
            ladder: Vec::new(),
            notify,
            route,
        };
        if !steps.is_empty() {
            flow.note(now, steps.join("\n"));
        }
        flow.next_destinations(now, next);
        flow.new_attempt(rng);
        flow
    }

    /// The branch replaced by the last new attempt, once: the endpoint stops routing it.
    pub fn take_retired_branch(&mut self) -> Option<Branch> {
        self.retired_branch.take()
    }

    /// Sets the destinations left after the current one, which starts `now`: its share of
    /// the time is what is left of the limit divided by the destinations left with it.
    fn next_destinations(&mut self, now: Instant, next: Vec<Hop>) {
        self.failover = (!next.is_empty()).then(|| {
            let left = u32::try_from(next.len() + 1).unwrap_or(u32::MAX);
            let share_ends = self
                .deadline
                .map(|d| now + d.saturating_duration_since(now) / left);
            Box::new(Failover {
                next,
                since: now,
                share_ends,
            })
        });
    }

    /// Moves to the next destination with a new attempt (RFC 3263 §4.3): a new branch and
    /// CSeq + 1, so a server that did get the last request sees a new request rather than
    /// a merged one (RFC 3261 §8.2.2.2); no credentials, since the challenges came from the
    /// server given up on, and its nonces mean nothing to the next.
    fn fail_over(&mut self, now: Instant, why: String, rng: &mut dyn RngCore) {
        let Some(mut next) = self.failover.take().map(|f| f.next) else {
            return;
        };
        let hop = next.remove(0);
        self.note(
            now,
            format!("{why}: trying the next destination, {}", hop.destination),
        );
        self.route.destination = hop.destination;
        self.route.local = hop.local;
        self.realms.clear();
        self.rounds = 0;
        self.provisional = false;
        self.answered_from = None;
        self.next_destinations(now, next);
        self.cseq += 1;
        self.tx = ClientTransaction::new(now, self.tx.timers(), self.route.transport.is_reliable());
        self.new_attempt(rng);
    }

    /// The Via branch of the current attempt: responses carrying another are not ours.
    pub fn branch(&self) -> Branch {
        self.branch
    }

    /// Where the requests go.
    pub fn destination(&self) -> SocketAddr {
        self.route.destination
    }

    /// The transport of the requests.
    pub fn transport(&self) -> Transport {
        self.route.transport
    }

    /// The Call-ID.
    #[cfg(test)]
    pub fn call_id(&self) -> &str {
        self.call_id.as_str()
    }

    /// The result, once the target has ended.
    #[cfg(test)]
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_deref()
    }

    /// Takes the result, once the target has ended.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take().map(|outcome| *outcome)
    }

    /// The request bytes to send now, if any. Call after `new` and every `handle_*`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.outcome.is_some() || !self.tx.poll_transmit() {
            return None;
        }
        let direction = if self.tx.retransmissions() > 0 {
            self.retransmissions += 1;
            Direction::Retransmitted
        } else {
            Direction::Sent
        };
        let request = self.request();
        self.trace(now, direction, None, || request.clone());
        Some(request)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let share_ends = self.failover.as_ref().and_then(|f| f.share_ends);
        [self.tx.poll_timeout(), self.deadline, share_ends]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn RngCore) {
        if self.outcome.is_some() {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            let limit = self.deadline.map(|d| d - self.started).unwrap_or_default();
            self.finish_timeout(now, limit);
            return;
        }
        let share_over = self
            .failover
            .as_ref()
            .filter(|f| f.share_ends.is_some_and(|d| d <= now));
        if let Some(since) = share_over.map(|f| f.since) {
            let why = format!(
                "no response from {} in {:.1} s",
                self.route.destination,
                (now - since).as_secs_f64()
            );
            self.fail_over(now, why, rng);
            return;
        }
        if self.tx.handle_timeout(now) == Some(TxEvent::Timeout) {
            self.finish_timeout(now, self.tx.timers().timer_f());
        }
    }

    /// The request could not be sent, or its connection failed: the next destination, if
    /// any, else the end.
    pub fn handle_transport_error(&mut self, now: Instant, reason: &str, rng: &mut dyn RngCore) {
        if self.outcome.is_some() {
            return;
        }
        if self.failover.is_some() {
            self.fail_over(now, reason.to_string(), rng);
        } else {
            self.finish(now, OutcomeKind::Unreachable, None, reason.to_string());
        }
    }

    /// An ICMP error (port or host unreachable) for one of this attempt's datagrams. One such
    /// error is not the end: the network may lose a phone's answer while it restarts its SIP
    /// stack. The request goes again after [`ICMP_RETRY`] instead of at Timer E; a second
    /// error with no answer between them ends the target `unreachable` (or moves it to its
    /// next destination), well before Timer F.
    pub fn handle_unreachable(&mut self, now: Instant, reason: &str, rng: &mut dyn RngCore) {
        if self.outcome.is_some() {
            return;
        }
        if self.unreachable_once {
            self.unreachable_once = false;
            self.handle_transport_error(now, reason, rng);
        } else {
            self.unreachable_once = true;
            self.note(now, format!("{reason}: sending again in {ICMP_RETRY:?}"));
            self.tx.retransmit_by(now + ICMP_RETRY);
        }
    }

    /// Feeds a message routed to this flow by its Via branch, received from `from`, whatever
    /// address that is: RFC 3261 §17.1.3 matches responses to transactions, not to sources,
    /// and multi-homed phones and SBCs answer from another address. It is used only if it is
    /// a response with this flow's Call-ID and this attempt's CSeq. `raw` is kept for the
    /// ladder when tracing.
    pub fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message,
        raw: &[u8],
        rng: &mut dyn RngCore,
    ) -> Result<(), Mismatch> {
        let Some(status) = msg.status() else {
            return Err(Mismatch::NotAResponse);
        };
        if msg.header("Call-ID") != Some(self.call_id.as_str()) {
            return Err(Mismatch::CallId);
        }
        match msg.cseq() {
            Some((n, method)) if n == self.cseq && method.eq_ignore_ascii_case("NOTIFY") => {}
            _ => return Err(Mismatch::CSeq),
        }
        if self.outcome.is_some() {
            return Ok(());
        }
        self.answered_from = (from != self.route.destination).then_some(from);
        self.unreachable_once = false;
        self.trace(now, Direction::Received, self.answered_from, || {
            Bytes::copy_from_slice(raw)
        });
        match self.tx.handle_response(status) {
            Some(TxEvent::Provisional(_)) => {
                self.provisional = true;
                if let Some(failover) = &mut self.failover {
                    failover.share_ends = None;
                }
            }
            Some(TxEvent::Final(code)) => self.on_final(now, code, msg, rng),
            Some(TxEvent::Timeout) | None => {}
        }
        Ok(())
    }

    fn on_final(&mut self, now: Instant, code: u16, msg: &Message, rng: &mut dyn RngCore) {
        let reason = match msg.start {
            StartLine::Response { reason, .. } => reason,
            StartLine::Request { .. } => "",
        };
        match code {
            200..=299 => self.finish(now, OutcomeKind::Delivered, Some(code), reason.into()),
            401 | 407 => match self.answer_challenge(code, msg) {
                Ok(()) => {
                    self.cseq += 1;
                    self.tx = ClientTransaction::new(
                        now,
                        self.tx.timers(),
                        self.route.transport.is_reliable(),
                    );
                    self.new_attempt(rng);
                }
                Err((kind, why)) => self.finish(now, kind, Some(code), format!("{reason}: {why}")),
            },
            403 => self.finish(now, OutcomeKind::AuthFailed, Some(code), reason.into()),
            503 if self.failover.is_some() => {
                let why = format!("{code} {reason} from {}", self.route.destination);
                self.fail_over(now, why, rng);
            }
            _ => {
                self.finish(now, OutcomeKind::Rejected, Some(code), reason.into());
                if let Some(outcome) = &mut self.outcome {
                    outcome.retry_after = msg.header("Retry-After").and_then(retry_after);
                }
            }
        }
    }

    /// Records the challenges of a 401/407, or says why the target ends here.
    fn answer_challenge(&mut self, code: u16, msg: &Message) -> Result<(), (OutcomeKind, String)> {
        let proxy = code == 407;
        let header = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let challenges = digest::select(msg.headers(header));
        if challenges.is_empty() {
            return Err((
                OutcomeKind::AuthFailed,
                format!("no {header} digest challenge that sipnotify supports"),
            ));
        }
        if self.notify.credentials.is_none() {
            return Err((
                OutcomeKind::NoCredentials,
                "the phone asks for a password: give --password-file or SIPNOTIFY_PASSWORD".into(),
            ));
        }
        self.rounds += 1;
        if self.rounds > MAX_AUTH_ROUNDS {
            return Err((
                OutcomeKind::AuthFailed,
                format!("still challenged after {MAX_AUTH_ROUNDS} rounds"),
            ));
        }
        for challenge in challenges {
            let known = self
                .realms
                .iter_mut()
                .find(|r| r.proxy == proxy && r.challenge.realm == challenge.realm);
            match known {
                None => {
                    // Exactly the realms there are: the flow holds them until its end.
                    self.realms.reserve_exact(1);
                    self.realms.push(RealmAuth {
                        proxy,
                        challenge,
                        nc: 0,
                        cnonce: Token::EMPTY,
                        stale_retried: false,
                    })
                }
                // RFC 7616 §3.3: stale means the credentials were right but the nonce expired.
                Some(r) if challenge.stale && !r.stale_retried => {
                    r.challenge = challenge;
                    r.nc = 0;
                    r.stale_retried = true;
                }
                Some(r) => {
                    return Err((
                        OutcomeKind::AuthFailed,
                        format!(
                        "realm \"{}\" refused the credentials: check --auth-user and the password",
                        r.challenge.realm
                    ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Starts a new attempt: a new branch, and for each realm the next nonce count and a
    /// new client nonce. The request is written by [`request`](Self::request).
    fn new_attempt(&mut self, rng: &mut dyn RngCore) {
        self.unreachable_once = false;
        self.attempts += 1;
        let old = std::mem::replace(&mut self.branch, Token::random(rng, BRANCH_MAGIC));
        self.retired_branch = (old != Token::EMPTY).then_some(old);
        if self.notify.credentials.is_some() {
            for realm in &mut self.realms {
                realm.nc += 1;
                realm.cnonce = Token::random(rng, "");
            }
        }
    }

    /// Writes the current attempt's request: the same bytes each time it is called within
    /// an attempt, as a retransmission must be (RFC 3261 §17.1.2.2).
    fn request(&self) -> Bytes {
        let mut authorization = Vec::new();
        if let Some(password) = self.notify.credentials.as_ref().map(|c| &c.password) {
            authorization.reserve_exact(self.realms.len());
            for realm in &self.realms {
                let answer = Answer {
                    username: self.notify.auth_user(),
                    password,
                    method: "NOTIFY",
                    uri: self.notify.target.as_str(),
                    body: self.notify.event.body(),
                    cnonce: realm.cnonce.as_str(),
                    nc: realm.nc,
                };
                authorization.push((
                    realm.proxy,
                    digest::authorization(&realm.challenge, &answer),
                ));
            }
        }
        let default_from;
        let from = match &self.notify.from {
            Some(from) => from.as_str(),
            None => {
                // Room for the longest address, in brackets: one allocation.
                let mut from = Vec::with_capacity(64);
                from.extend_from_slice(b"sip:sipnotify@");
                push_ip(&mut from, self.route.local.ip());
                default_from = String::from_utf8(from).expect("an address is ASCII");
                default_from.as_str()
            }
        };
        NotifyRequest {
            target: &self.notify.target,
            from,
            from_tag: self.from_tag.as_str(),
            call_id: self.call_id.as_str(),
            cseq: self.cseq,
            branch: self.branch.as_str(),
            local: self.route.local,
            transport: self.route.transport,
            event: &self.notify.event,
            extra: &self.notify.extra,
            authorization: &authorization,
        }
        .to_bytes()
        .into()
    }

    fn finish_timeout(&mut self, now: Instant, after: Duration) {
        let reason = if self.provisional {
            format!("only provisional responses in {:.1} s", after.as_secs_f64())
        } else {
            format!("no response in {:.1} s", after.as_secs_f64())
        };
        self.finish(now, OutcomeKind::Timeout, None, reason);
    }

    fn finish(&mut self, now: Instant, kind: OutcomeKind, status: Option<u16>, reason: String) {
        self.outcome = Some(Box::new(Outcome {
            kind,
            status,
            reason,
            hint: status
                .and_then(hint_for)
                .filter(|_| kind != OutcomeKind::Delivered),
            attempts: self.attempts,
            retransmissions: self.retransmissions,
            elapsed: now - self.started,
            call_id: self.call_id.as_str().to_string(),
            destination: Some(self.route.destination),
            answered_from: self.answered_from,
            ladder: std::mem::take(&mut self.ladder),
            retry_after: None,
            details: None,
        }));
    }

    /// A routing step in the ladder.
    fn note(&mut self, now: Instant, text: String) {
        self.trace(now, Direction::Routing, None, || Bytes::from(text));
    }

    /// Keeps a message in the ladder when the target is traced; `bytes` is called only
    /// then, so that an untraced target copies nothing.
    fn trace(
        &mut self,
        now: Instant,
        direction: Direction,
        from: Option<SocketAddr>,
        bytes: impl FnOnce() -> Bytes,
    ) {
        if self.notify.trace {
            self.ladder.push(TraceEntry {
                at: now - self.started,
                direction,
                from,
                bytes: bytes(),
            });
        }
    }
}

/// The delta-seconds of a Retry-After value (`120`, `120 (busy);duration=60`); HTTP dates,
/// which SIP does not use, are ignored.
fn retry_after(value: &str) -> Option<Duration> {
    let digits: &str = value.trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::proto::notify::Resolution;
    use crate::sip::codec;
    use crate::sip::digest::Password;
    use crate::sip::uri::Target;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const PHONE: &str = "127.0.0.1:5060";

    fn job(password: Option<&str>, transport: Transport) -> (Notify, Route) {
        let target = Target::parse("sip:159@127.0.0.1:5060").unwrap();
        let mut notify = Notify::new(target, Event::xml_service("http://h/menu.xml").unwrap());
        if let Some(password) = password {
            notify = notify.with_credentials(None, Password::new(password));
        }
        let route = Route {
            destination: PHONE.parse().unwrap(),
            local: "127.0.0.1:40000".parse().unwrap(),
            transport,
            resolution: None,
        };
        (notify, route)
    }

    /// A response to `request` as a phone would write it.
    fn respond(request: &[u8], status: u16, extra: &str) -> Vec<u8> {
        let req = codec::parse(request).unwrap();
        let mut s = format!("SIP/2.0 {status} Reason\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            s += &format!("{name}: {}\r\n", req.header(name).unwrap());
        }
        s += extra;
        s += "Content-Length: 0\r\n\r\n";
        s.into_bytes()
    }

    fn feed(flow: &mut Flow, rng: &mut StdRng, now: Instant, bytes: &[u8]) {
        assert_eq!(feed_from(flow, rng, now, PHONE, bytes), Ok(()));
    }

    fn feed_from(
        flow: &mut Flow,
        rng: &mut StdRng,
        now: Instant,
        from: &str,
        bytes: &[u8],
    ) -> Result<(), Mismatch> {
        let msg = codec::parse(bytes).unwrap();
        flow.handle_response(now, from.parse().unwrap(), &msg, bytes, rng)
    }

    fn start((notify, route): (Notify, Route)) -> (Flow, StdRng, Instant, Bytes) {
        let mut rng = StdRng::seed_from_u64(7);
        let now = Instant::now();
        let mut flow = Flow::new(now, Arc::new(notify), route, Timers::default(), &mut rng);
        let first = flow.poll_transmit(now).expect("first NOTIFY");
        (flow, rng, now, first)
    }

    const MD5_QOP: &str =
        "WWW-Authenticate: Digest realm=\"phone\", nonce=\"n1\", qop=\"auth\", opaque=\"o1\", algorithm=MD5\r\n";

    /// The flow ended unreachable, for `reason`.
    fn assert_unreachable(flow: &Flow, reason: &str) {
        let o = flow.outcome().unwrap();
        assert_eq!(
            (o.kind, o.reason.as_str()),
            (OutcomeKind::Unreachable, reason)
        );
    }

    #[test]
    fn challenge_then_200_is_delivered_on_same_dialog_with_higher_cseq() {
        let (mut flow, mut rng, now, first) = start(job(Some("secret"), Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let second = flow.poll_transmit(now).expect("authenticated retry");
        let (a, b) = (
            codec::parse(&first).unwrap(),
            codec::parse(&second).unwrap(),
        );
        assert_eq!(a.header("Call-ID"), b.header("Call-ID"));
        assert_eq!(a.header("From"), b.header("From"));
        assert_eq!(a.cseq(), Some((1, "NOTIFY")));
        assert_eq!(b.cseq(), Some((2, "NOTIFY")));
        assert_ne!(a.top_via_branch(), b.top_via_branch());
        assert!(b.top_via_branch().unwrap().starts_with("z9hG4bK"));
        let creds = digest::parse_authorization(b.header("Authorization").unwrap()).unwrap();
        assert_eq!(creds.uri, "sip:159@127.0.0.1:5060");
        assert_eq!(creds.username, "159");
        assert_eq!(creds.opaque.as_deref(), Some("o1"));
        assert!(digest::verify(
            &creds,
            &Password::new("secret"),
            "NOTIFY",
            b.body
        ));
        assert!(!String::from_utf8_lossy(&second).contains("secret"));
        feed(&mut flow, &mut rng, now, &respond(&second, 200, ""));
        let outcome = flow.outcome().unwrap();
        assert_eq!(outcome.kind, OutcomeKind::Delivered);
        assert_eq!(outcome.status, Some(200));
        assert_eq!(outcome.attempts, 2);
        assert_eq!(outcome.call_id, flow.call_id());
        assert!(flow.poll_timeout().is_none());
    }

    #[test]
    fn proxy_and_phone_challenges_are_answered_together() {
        let (mut flow, mut rng, now, first) = start(job(Some("secret"), Transport::Udp));
        let proxy = "Proxy-Authenticate: Digest realm=\"proxy\", nonce=\"p1\", qop=\"auth\"\r\n";
        feed(&mut flow, &mut rng, now, &respond(&first, 407, proxy));
        let second = flow.poll_transmit(now).unwrap();
        feed(&mut flow, &mut rng, now, &respond(&second, 401, MD5_QOP));
        let third = flow.poll_transmit(now).unwrap();
        let third = codec::parse(&third).unwrap();
        let p = digest::parse_authorization(third.header("Proxy-Authorization").unwrap()).unwrap();
        let w = digest::parse_authorization(third.header("Authorization").unwrap()).unwrap();
        assert_eq!(
            (p.realm.as_str(), p.nc.as_deref()),
            ("proxy", Some("00000002"))
        );
        assert_eq!(
            (w.realm.as_str(), w.nc.as_deref()),
            ("phone", Some("00000001"))
        );
        assert_eq!(third.cseq(), Some((3, "NOTIFY")));
    }

    #[test]
    fn stale_nonce_gets_one_more_retry_then_auth_fails() {
        let (mut flow, mut rng, now, first) = start(job(Some("secret"), Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let stale =
            "WWW-Authenticate: Digest realm=\"phone\", nonce=\"n2\", qop=\"auth\", stale=true\r\n";
        let second = flow.poll_transmit(now).unwrap();
        feed(&mut flow, &mut rng, now, &respond(&second, 401, stale));
        let third = flow.poll_transmit(now).expect("stale retry");
        let creds = codec::parse(&third).unwrap();
        let creds = digest::parse_authorization(creds.header("Authorization").unwrap()).unwrap();
        assert_eq!(creds.nonce, "n2");
        feed(&mut flow, &mut rng, now, &respond(&third, 401, stale));
        assert_eq!(flow.outcome().unwrap().kind, OutcomeKind::AuthFailed);
        assert!(flow.poll_transmit(now).is_none());
    }

    #[test]
    fn challenge_after_credentials_is_auth_failed_and_403_too() {
        let (mut flow, mut rng, now, first) = start(job(Some("wrong"), Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let second = flow.poll_transmit(now).unwrap();
        feed(&mut flow, &mut rng, now, &respond(&second, 401, MD5_QOP));
        let o = flow.outcome().unwrap();
        assert_eq!((o.kind, o.status), (OutcomeKind::AuthFailed, Some(401)));
        assert!(o.reason.contains("realm \"phone\""), "{}", o.reason);

        let (mut flow, mut rng, now, first) = start(job(Some("wrong"), Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let second = flow.poll_transmit(now).unwrap();
        feed(&mut flow, &mut rng, now, &respond(&second, 403, ""));
        assert_eq!(flow.outcome().unwrap().kind, OutcomeKind::AuthFailed);
    }

    #[test]
    fn auth_rounds_are_bounded_when_every_round_names_a_new_realm() {
        let (mut flow, mut rng, now, mut req) = start(job(Some("pw"), Transport::Udp));
        for i in 0..10 {
            let ch = format!("WWW-Authenticate: Digest realm=\"r{i}\", nonce=\"n\"\r\n");
            feed(&mut flow, &mut rng, now, &respond(&req, 401, &ch));
            match flow.poll_transmit(now) {
                Some(next) => req = next,
                None => break,
            }
        }
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::AuthFailed);
        assert_eq!(o.attempts, MAX_AUTH_ROUNDS + 1);
    }

    #[test]
    fn challenge_without_password_is_no_credentials() {
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::NoCredentials);
        assert_eq!(o.kind.exit_code(), 2);
    }

    #[test]
    fn bad_event_is_rejected_with_a_hint() {
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Tcp));
        feed(&mut flow, &mut rng, now, &respond(&first, 489, ""));
        let o = flow.outcome().unwrap();
        assert_eq!((o.kind, o.status), (OutcomeKind::Rejected, Some(489)));
        assert!(o.hint.unwrap().contains("Resync From SIP"));
    }

    #[test]
    fn responses_for_another_call_id_cseq_or_method_are_refused() {
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Udp));
        let text = String::from_utf8(respond(&first, 200, "")).unwrap();
        let call_id = format!("Call-ID: {}", flow.call_id());
        for (good, bad, why) in [
            ("CSeq: 1 NOTIFY", "CSeq: 9 NOTIFY", Mismatch::CSeq),
            ("CSeq: 1 NOTIFY", "CSeq: 1 OPTIONS", Mismatch::CSeq),
            (call_id.as_str(), "Call-ID: forged", Mismatch::CallId),
        ] {
            let forged = text.replace(good, bad);
            let got = feed_from(&mut flow, &mut rng, now, PHONE, forged.as_bytes());
            assert_eq!(got, Err(why), "{bad}");
        }
        let request = String::from_utf8_lossy(&first).into_owned();
        let got = feed_from(&mut flow, &mut rng, now, PHONE, request.as_bytes());
        assert_eq!(got, Err(Mismatch::NotAResponse));
        assert!(flow.outcome().is_none());
        feed(&mut flow, &mut rng, now, text.as_bytes());
        assert_eq!(flow.outcome().unwrap().kind, OutcomeKind::Delivered);
    }

    #[test]
    fn a_response_from_another_address_is_used_and_its_source_kept() {
        let mut j = job(Some("secret"), Transport::Udp);
        j.0.trace = true;
        let (mut flow, mut rng, now, first) = start(j);
        let other = "127.0.0.9:5062";
        let got = feed_from(
            &mut flow,
            &mut rng,
            now,
            other,
            &respond(&first, 401, MD5_QOP),
        );
        assert_eq!(got, Ok(()));
        let second = flow.poll_transmit(now).expect("authenticated retry");
        let got = feed_from(&mut flow, &mut rng, now, other, &respond(&second, 200, ""));
        assert_eq!(got, Ok(()));
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Delivered);
        assert_eq!(o.answered_from, Some(other.parse().unwrap()));
        let from: Vec<Option<SocketAddr>> = o.ladder.iter().map(|e| e.from).collect();
        let other = Some(other.parse().unwrap());
        assert_eq!(from, [None, other, None, other]);

        // From the destination: nothing to report.
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Udp));
        feed(&mut flow, &mut rng, now, &respond(&first, 200, ""));
        assert_eq!(flow.outcome().unwrap().answered_from, None);
    }

    #[test]
    fn branches_carry_128_random_bits_and_call_ids_differ() {
        let (flow, _, _, _) = start(job(None, Transport::Udp));
        let branch = flow.branch();
        let random = branch.as_str().strip_prefix("z9hG4bK").unwrap();
        assert_eq!(random.len(), 32, "{random}");
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut rng = StdRng::seed_from_u64(8);
        let (notify, route) = job(None, Transport::Udp);
        let other = Flow::new(
            Instant::now(),
            Arc::new(notify),
            route,
            Timers::default(),
            &mut rng,
        );
        assert_ne!(other.branch(), flow.branch());
        assert_ne!(other.call_id(), flow.call_id());
        assert_eq!(flow.call_id().len(), 32);
    }

    #[test]
    fn unanswered_udp_target_retransmits_then_times_out_at_timer_f() {
        let (mut flow, mut rng, start, _first) = start(job(None, Transport::Udp));
        let mut now = start;
        let mut sends = 1;
        while let Some(t) = flow.poll_timeout() {
            now = t;
            flow.handle_timeout(now, &mut rng);
            while flow.poll_transmit(now).is_some() {
                sends += 1;
            }
        }
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert_eq!(now - start, Duration::from_secs(32));
        assert_eq!((sends, o.retransmissions), (11, 10));
        assert!(o.reason.contains("no response"));
    }

    #[test]
    fn a_retransmission_is_the_same_bytes_as_its_first_send() {
        // The request is written again for each send: the authenticated one too (same
        // branch, cnonce and nc), and a new attempt is a new request.
        let (mut flow, mut rng, now, first) = start(job(Some("secret"), Transport::Udp));
        let t1 = Timers::default().t1;
        flow.handle_timeout(now + t1, &mut rng);
        assert_eq!(flow.poll_transmit(now + t1), Some(first.clone()));
        feed(
            &mut flow,
            &mut rng,
            now + t1,
            &respond(&first, 401, MD5_QOP),
        );
        let second = flow.poll_transmit(now + t1).expect("authenticated retry");
        assert_ne!(second, first);
        let mut at = now + t1;
        for _ in 0..3 {
            at = flow.poll_timeout().unwrap();
            flow.handle_timeout(at, &mut rng);
            assert_eq!(flow.poll_transmit(at), Some(second.clone()));
        }
        feed(&mut flow, &mut rng, at, &respond(&second, 200, ""));
        let outcome = flow.outcome().unwrap();
        assert_eq!(
            (outcome.kind, outcome.retransmissions),
            (OutcomeKind::Delivered, 4)
        );
    }

    #[test]
    fn one_icmp_error_brings_the_retransmission_forward_and_a_second_ends_the_target() {
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Udp));
        flow.handle_unreachable(now, "port unreachable", &mut rng);
        assert!(flow.outcome().is_none());
        assert_eq!(flow.poll_timeout(), Some(now + ICMP_RETRY));
        let later = now + ICMP_RETRY;
        flow.handle_timeout(later, &mut rng);
        assert_eq!(flow.poll_transmit(later), Some(first.clone()));
        // An answer between two errors: the next error is a first one again.
        feed(&mut flow, &mut rng, later, &respond(&first, 100, ""));
        flow.handle_unreachable(later, "port unreachable", &mut rng);
        assert!(flow.outcome().is_none());
        flow.handle_unreachable(later, "port unreachable", &mut rng);
        assert_unreachable(&flow, "port unreachable");
    }

    #[test]
    fn overall_timeout_ends_early_and_mentions_provisionals() {
        let mut j = job(None, Transport::Tcp);
        j.0.timeout = Some(Duration::from_secs(2));
        let (mut flow, mut rng, now, first) = start(j);
        feed(&mut flow, &mut rng, now, &respond(&first, 100, ""));
        assert_eq!(flow.poll_timeout(), Some(now + Duration::from_secs(2)));
        flow.handle_timeout(now + Duration::from_secs(2), &mut rng);
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert!(o.reason.contains("only provisional"), "{}", o.reason);
    }

    #[test]
    fn trace_keeps_the_ladder() {
        let mut j = job(None, Transport::Udp);
        j.0.trace = true;
        let (mut flow, mut rng, now, first) = start(j);
        flow.handle_timeout(now + Duration::from_millis(500), &mut rng);
        assert!(flow
            .poll_transmit(now + Duration::from_millis(500))
            .is_some());
        feed(&mut flow, &mut rng, now, &respond(&first, 200, ""));
        let dirs: Vec<Direction> = flow
            .outcome()
            .unwrap()
            .ladder
            .iter()
            .map(|e| e.direction)
            .collect();
        assert_eq!(
            dirs,
            [
                Direction::Sent,
                Direction::Retransmitted,
                Direction::Received
            ]
        );

        // Untraced, the same exchange keeps nothing.
        let (mut flow, mut rng, now, first) = start(job(None, Transport::Udp));
        flow.handle_timeout(now + Duration::from_millis(500), &mut rng);
        assert!(flow
            .poll_transmit(now + Duration::from_millis(500))
            .is_some());
        feed(&mut flow, &mut rng, now, &respond(&first, 200, ""));
        assert!(flow.outcome().unwrap().ladder.is_empty());
    }

    /// A route to `PHONE` first, then to each of `next`.
    fn failover_job(next: &[&str], timeout: Option<u64>, trace: bool) -> (Notify, Route) {
        let (mut notify, mut route) = job(Some("secret"), Transport::Udp);
        notify.timeout = timeout.map(Duration::from_secs);
        notify.trace = trace;
        let next = next
            .iter()
            .map(|d| Hop {
                destination: d.parse().unwrap(),
                local: "127.0.0.1:40000".parse().unwrap(),
            })
            .collect();
        route.resolution = Some(Box::new(Resolution {
            next,
            steps: vec!["SRV _sip._udp.pbx.test.: two servers".into()],
        }));
        (notify, route)
    }

    /// Runs the timers to `until`, returning what was sent on the way.
    fn run_until(flow: &mut Flow, rng: &mut StdRng, until: Instant) -> Vec<(Instant, Bytes)> {
        let mut sent = Vec::new();
        while let Some(t) = flow.poll_timeout().filter(|&t| t <= until) {
            flow.handle_timeout(t, rng);
            while let Some(bytes) = flow.poll_transmit(t) {
                sent.push((t, bytes));
            }
        }
        sent
    }

    const SECOND: &str = "127.0.0.3:5070";

    #[test]
    fn a_silent_destination_gets_its_share_then_the_next_a_new_transaction() {
        let (mut flow, mut rng, now, first) = start(failover_job(&[SECOND], Some(4), true));
        // Half of the 4 s for each of two destinations.
        let sent = run_until(&mut flow, &mut rng, now + Duration::from_secs(2));
        let (at, second) = sent.last().unwrap().clone();
        assert_eq!(at, now + Duration::from_secs(2));
        assert_eq!(flow.destination(), SECOND.parse().unwrap());
        assert_eq!(
            sent.len(),
            3,
            "two retransmissions, then the next destination"
        );
        let (a, b) = (
            codec::parse(&first).unwrap(),
            codec::parse(&second).unwrap(),
        );
        assert_ne!(a.top_via_branch(), b.top_via_branch());
        assert_eq!(a.header("Call-ID"), b.header("Call-ID"));
        assert_eq!(b.cseq(), Some((2, "NOTIFY")));
        // The endpoint is told to stop routing the old branch.
        let retired = flow.take_retired_branch().unwrap();
        assert_eq!(Some(retired.as_str()), a.top_via_branch());
        feed_from(&mut flow, &mut rng, at, SECOND, &respond(&second, 200, "")).unwrap();
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Delivered);
        assert_eq!((o.attempts, o.retransmissions), (2, 2));
        assert_eq!(o.destination, Some(SECOND.parse().unwrap()));
        assert_eq!(o.answered_from, None);
        let routing: Vec<String> = o
            .ladder
            .iter()
            .filter(|e| e.direction == Direction::Routing)
            .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
            .collect();
        assert_eq!(
            routing,
            [
                "SRV _sip._udp.pbx.test.: two servers".to_string(),
                format!("no response from {PHONE} in 2.0 s: trying the next destination, {SECOND}"),
            ]
        );
    }

    #[test]
    fn each_destination_gets_what_is_left_over_those_left_and_the_last_the_rest() {
        let next = [SECOND, "127.0.0.4:5070"];
        let (mut flow, mut rng, now, _) = start(failover_job(&next, Some(3), false));
        let mut switches = Vec::new();
        let mut last = flow.destination();
        while let Some(t) = flow.poll_timeout() {
            flow.handle_timeout(t, &mut rng);
            while flow.poll_transmit(t).is_some() {}
            if flow.outcome().is_none() && flow.destination() != last {
                last = flow.destination();
                switches.push(t - now);
            }
        }
        assert_eq!(switches, [Duration::from_secs(1), Duration::from_secs(2)]);
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert_eq!(
            o.elapsed,
            Duration::from_secs(3),
            "one limit for the target"
        );
        assert_eq!(o.attempts, 3);
        assert_eq!(o.destination, Some("127.0.0.4:5070".parse().unwrap()));

        // Without --timeout, Timer F is the one limit: 16 s each for two destinations.
        let (mut flow, mut rng, now, _) = start(failover_job(&[SECOND], None, false));
        run_until(&mut flow, &mut rng, now + Duration::from_secs(16));
        assert_eq!(flow.destination(), SECOND.parse().unwrap());
        run_until(&mut flow, &mut rng, now + Duration::from_secs(60));
        assert_eq!(flow.outcome().unwrap().elapsed, Duration::from_secs(32));
    }

    #[test]
    fn a_503_or_a_transport_error_moves_on_at_once_without_the_old_credentials() {
        let (mut flow, mut rng, now, first) = start(failover_job(&[SECOND], None, false));
        feed(&mut flow, &mut rng, now, &respond(&first, 401, MD5_QOP));
        let authenticated = flow.poll_transmit(now).unwrap();
        feed(&mut flow, &mut rng, now, &respond(&authenticated, 503, ""));
        assert_eq!(flow.destination(), SECOND.parse().unwrap());
        let bytes = flow
            .poll_transmit(now)
            .expect("the request to the next destination");
        let next = codec::parse(&bytes).unwrap();
        assert_eq!(next.header("Authorization"), None);
        assert_eq!(next.cseq(), Some((3, "NOTIFY")));
        // The last destination's 503 ends the target.
        feed_from(&mut flow, &mut rng, now, SECOND, &respond(&bytes, 503, "")).unwrap();
        let o = flow.outcome().unwrap();
        assert_eq!((o.kind, o.status), (OutcomeKind::Rejected, Some(503)));

        let (mut flow, mut rng, now, _) = start(failover_job(&[SECOND], None, false));
        flow.handle_transport_error(now, "connection refused", &mut rng);
        assert_eq!(flow.destination(), SECOND.parse().unwrap());
        assert!(flow.poll_transmit(now).is_some());
        flow.handle_transport_error(now, "connection refused", &mut rng);
        assert_unreachable(&flow, "connection refused");
    }

    #[test]
    fn a_destination_that_answered_provisionally_is_not_left() {
        let (mut flow, mut rng, now, first) = start(failover_job(&[SECOND], Some(4), false));
        feed(&mut flow, &mut rng, now, &respond(&first, 100, ""));
        run_until(&mut flow, &mut rng, now + Duration::from_secs(10));
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert_eq!(o.destination, Some(PHONE.parse().unwrap()));
        assert_eq!(o.attempts, 1);
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        assert_eq!(retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(
            retry_after(" 120 (busy);duration=60"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after("Fri, 31 Dec 1999 23:59:59 GMT"), None);
    }
}
