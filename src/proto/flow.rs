//! One target, from the first NOTIFY to its [`Outcome`], answering 401/407 challenges.
//!
//! Each attempt is a new client transaction (new branch, CSeq + 1) on the same Call-ID and
//! From tag. Credentials accumulate per realm, so a 407 from an outbound proxy followed by a
//! 401 from the phone are both answered in the same request.

use super::notify::{Notify, Route};
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
use std::time::{Duration, Instant};

/// How many challenge rounds a target may go through before it is `auth_failed`.
pub const MAX_AUTH_ROUNDS: u32 = 4;

#[derive(Debug)]
struct RealmAuth {
    proxy: bool,
    challenge: Challenge,
    nc: u32,
    stale_retried: bool,
}

/// The state of one target.
#[derive(Debug)]
pub struct Flow {
    notify: Notify,
    route: Route,
    timers: Timers,
    from: String,
    from_tag: String,
    call_id: String,
    cseq: u32,
    branch: String,
    request: Bytes,
    tx: ClientTransaction,
    realms: Vec<RealmAuth>,
    rounds: u32,
    attempts: u32,
    retransmissions: u32,
    started: Instant,
    deadline: Option<Instant>,
    provisional: bool,
    /// Where the last response used came from, when not the destination.
    answered_from: Option<SocketAddr>,
    outcome: Option<Outcome>,
    ladder: Vec<TraceEntry>,
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

/// A random token of `bytes` random bytes in lower-case hex.
fn token(rng: &mut dyn RngCore, bytes: usize, prefix: &str) -> String {
    let mut raw = [0u8; 16];
    let raw = &mut raw[..bytes.min(16)];
    rng.fill_bytes(raw);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(prefix.len() + raw.len() * 2);
    s.push_str(prefix);
    for b in raw.iter() {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

impl Flow {
    /// Starts a target at `now`: the first [`poll_transmit`](Self::poll_transmit) returns the
    /// NOTIFY. Branch (128 bits), tag (64 bits) and Call-ID (128 bits) come from `rng`, which
    /// must be a cryptographic generator: responses are accepted from any address (RFC 3261
    /// §17.1.3), so an unguessable branch and Call-ID are what keep others from answering.
    pub fn new(
        now: Instant,
        notify: Notify,
        route: Route,
        timers: Timers,
        rng: &mut dyn RngCore,
    ) -> Flow {
        let from = notify.from.clone().unwrap_or_else(|| {
            let mut from = b"sip:sipnotify@".to_vec();
            push_ip(&mut from, route.local.ip());
            String::from_utf8(from).expect("an address is ASCII")
        });
        // A limit too far away to represent is no limit: Timer F ends the target first.
        let deadline = notify.timeout.and_then(|t| now.checked_add(t));
        let tx = ClientTransaction::new(now, timers, route.transport.is_reliable());
        let mut flow = Flow {
            from,
            from_tag: token(rng, 8, ""),
            call_id: token(rng, 16, ""),
            cseq: 1,
            branch: String::new(),
            request: Bytes::new(),
            tx,
            realms: Vec::new(),
            rounds: 0,
            attempts: 0,
            retransmissions: 0,
            started: now,
            deadline,
            provisional: false,
            answered_from: None,
            outcome: None,
            ladder: Vec::new(),
            notify,
            route,
            timers,
        };
        flow.new_attempt(rng);
        flow
    }

    /// The Via branch of the current attempt: responses carrying another are not ours.
    pub fn branch(&self) -> &str {
        &self.branch
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
        &self.call_id
    }

    /// The result, once the target has ended.
    #[cfg(test)]
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Takes the result, once the target has ended.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
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
        self.trace(now, direction, None, self.request.clone());
        Some(self.request.clone())
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        match (self.tx.poll_timeout(), self.deadline) {
            (Some(t), Some(d)) => Some(t.min(d)),
            (t, d) => t.or(d),
        }
    }

    /// Fires whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            let limit = self.deadline.map(|d| d - self.started).unwrap_or_default();
            self.finish_timeout(now, limit);
            return;
        }
        if self.tx.handle_timeout(now) == Some(TxEvent::Timeout) {
            self.finish_timeout(now, self.timers.timer_f());
        }
    }

    /// The request could not be sent, or its connection failed.
    pub fn handle_transport_error(&mut self, now: Instant, reason: &str) {
        if self.outcome.is_none() {
            self.finish(now, OutcomeKind::Unreachable, None, reason.to_string());
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
        self.trace(
            now,
            Direction::Received,
            self.answered_from,
            Bytes::copy_from_slice(raw),
        );
        match self.tx.handle_response(status) {
            Some(TxEvent::Provisional(_)) => self.provisional = true,
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
                        self.timers,
                        self.route.transport.is_reliable(),
                    );
                    self.new_attempt(rng);
                }
                Err((kind, why)) => self.finish(now, kind, Some(code), format!("{reason}: {why}")),
            },
            403 => self.finish(now, OutcomeKind::AuthFailed, Some(code), reason.into()),
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
                None => self.realms.push(RealmAuth {
                    proxy,
                    challenge,
                    nc: 0,
                    stale_retried: false,
                }),
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

    /// Builds and serializes the request of a new attempt (new branch, current CSeq).
    fn new_attempt(&mut self, rng: &mut dyn RngCore) {
        self.attempts += 1;
        self.branch = token(rng, 16, "z9hG4bK");
        let user = self.notify.auth_user();
        let mut authorization = Vec::with_capacity(self.realms.len());
        if let Some(password) = self.notify.credentials.as_ref().map(|c| &c.password) {
            for realm in &mut self.realms {
                realm.nc += 1;
                let cnonce = token(rng, 8, "");
                let answer = Answer {
                    username: user,
                    password,
                    method: "NOTIFY",
                    uri: self.notify.target.as_str(),
                    body: self.notify.event.body(),
                    cnonce: &cnonce,
                    nc: realm.nc,
                };
                authorization.push((
                    realm.proxy,
                    digest::authorization(&realm.challenge, &answer),
                ));
            }
        }
        self.request = NotifyRequest {
            target: &self.notify.target,
            from: &self.from,
            from_tag: &self.from_tag,
            call_id: &self.call_id,
            cseq: self.cseq,
            branch: &self.branch,
            local: self.route.local,
            transport: self.route.transport,
            event: &self.notify.event,
            extra: &self.notify.extra,
            authorization: &authorization,
        }
        .to_bytes()
        .into();
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
        self.outcome = Some(Outcome {
            kind,
            status,
            reason,
            hint: status
                .and_then(hint_for)
                .filter(|_| kind != OutcomeKind::Delivered),
            attempts: self.attempts,
            retransmissions: self.retransmissions,
            elapsed: now - self.started,
            call_id: self.call_id.clone(),
            answered_from: self.answered_from,
            ladder: std::mem::take(&mut self.ladder),
            retry_after: None,
            details: None,
        });
    }

    fn trace(
        &mut self,
        now: Instant,
        direction: Direction,
        from: Option<SocketAddr>,
        bytes: Bytes,
    ) {
        if self.notify.trace {
            self.ladder.push(TraceEntry {
                at: now - self.started,
                direction,
                from,
                bytes,
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
        let mut flow = Flow::new(now, notify, route, Timers::default(), &mut rng);
        let first = flow.poll_transmit(now).expect("first NOTIFY");
        (flow, rng, now, first)
    }

    const MD5_QOP: &str =
        "WWW-Authenticate: Digest realm=\"phone\", nonce=\"n1\", qop=\"auth\", opaque=\"o1\", algorithm=MD5\r\n";

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
        let random = flow.branch().strip_prefix("z9hG4bK").unwrap();
        assert_eq!(random.len(), 32, "{random}");
        assert!(random.bytes().all(|b| b.is_ascii_hexdigit()));
        let mut rng = StdRng::seed_from_u64(8);
        let (notify, route) = job(None, Transport::Udp);
        let other = Flow::new(Instant::now(), notify, route, Timers::default(), &mut rng);
        assert_ne!(other.branch(), flow.branch());
        assert_ne!(other.call_id(), flow.call_id());
        assert_eq!(flow.call_id().len(), 32);
    }

    #[test]
    fn unanswered_udp_target_retransmits_then_times_out_at_timer_f() {
        let (mut flow, _rng, start, _first) = start(job(None, Transport::Udp));
        let mut now = start;
        let mut sends = 1;
        while let Some(t) = flow.poll_timeout() {
            now = t;
            flow.handle_timeout(now);
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
    fn overall_timeout_ends_early_and_mentions_provisionals() {
        let mut j = job(None, Transport::Tcp);
        j.0.timeout = Some(Duration::from_secs(2));
        let (mut flow, mut rng, now, first) = start(j);
        feed(&mut flow, &mut rng, now, &respond(&first, 100, ""));
        assert_eq!(flow.poll_timeout(), Some(now + Duration::from_secs(2)));
        flow.handle_timeout(now + Duration::from_secs(2));
        let o = flow.outcome().unwrap();
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert!(o.reason.contains("only provisional"), "{}", o.reason);
    }

    #[test]
    fn trace_keeps_the_ladder() {
        let mut j = job(None, Transport::Udp);
        j.0.trace = true;
        let (mut flow, mut rng, now, first) = start(j);
        flow.handle_timeout(now + Duration::from_millis(500));
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
