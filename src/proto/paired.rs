//! The agent's [`Endpoint`] against simulated [`Phone`]s, entirely in memory on a virtual
//! clock, like quinn-proto's `tests::util::Pair`: no sockets, no tokio, no sleeps.
//!
//! Time starts at one `Instant` captured per pair and only moves to the next event (a
//! datagram arriving, or the endpoint's next timer), so every elapsed time is exact. A seeded
//! fault script drops, duplicates or delays each datagram, so every run is the same.

use super::endpoint::{Endpoint, FlowId, Stats};
use super::notify::{Notify, Route};
use super::outcome::{hint_for, Outcome, OutcomeKind};
use super::transaction::Timers;
use crate::event::Event;
use crate::phone::{AuthOutcome, ChallengeMode, Exchange, Handled, Phone, PhoneConfig};
use crate::sip::digest::Password;
use crate::sip::uri::Target;
use crate::sip::Transport;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The agent's address: datagrams to it go to the endpoint, all others to a phone.
const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000);
const PHONE_A: &str = "127.0.0.1:5060";
const PHONE_B: &str = "127.0.0.2:5060";
/// One-way delay of every datagram; well under T1/2, so a clean exchange never retransmits.
const LATENCY: Duration = Duration::from_millis(30);
/// Seeds the endpoint and the fault script: the same test always makes the same choices.
const SEED: u64 = 7;
/// A bound on `step` calls, so a flow that never ends fails the test instead of hanging it.
const MAX_STEPS: usize = 100_000;

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToPhone,
    ToAgent,
}

/// What the network does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    /// Two copies arrive together.
    Duplicate,
    /// Arrives this much later than the latency alone would make it: reordering.
    Delay(Duration),
}

/// Decides the fate of the `nth` (from 0) datagram sent in one direction.
type Script = Box<dyn FnMut(Way, usize, &mut StdRng) -> Fate>;

fn no_faults(_: Way, _: usize, _: &mut StdRng) -> Fate {
    Fate::Deliver
}

struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    payload: Bytes,
}

/// One endpoint, its phones, and the wire between them.
struct Pair {
    endpoint: Endpoint,
    phones: BTreeMap<SocketAddr, Phone>,
    /// Phones that answer from another address than the one they were reached at.
    answer_from: BTreeMap<SocketAddr, SocketAddr>,
    epoch: Instant,
    now: Instant,
    /// In flight both ways, by arrival time then send order (so ties keep their order).
    network: BTreeMap<(Instant, u64), Datagram>,
    next_seq: u64,
    script: Script,
    rng: StdRng,
    /// Datagrams sent so far toward the phones and toward the agent, before faults.
    sent: [usize; 2],
    /// Every request the phones answered, in order.
    answered: Vec<Exchange>,
    /// Retransmissions the phones answered again without acting on them.
    retransmissions: usize,
    /// Every outcome the endpoint reported, in order.
    outcomes: Vec<(FlowId, Outcome)>,
}

impl Pair {
    fn new(
        phones: &[(&str, PhoneConfig)],
        script: impl FnMut(Way, usize, &mut StdRng) -> Fate + 'static,
    ) -> Pair {
        let epoch = Instant::now();
        let phones = phones
            .iter()
            .zip(0..)
            .map(|((addr, config), seed)| {
                let addr = addr.parse().expect("a phone address");
                (addr, Phone::new(config.clone(), seed, epoch))
            })
            .collect();
        Pair {
            endpoint: Endpoint::new(StdRng::seed_from_u64(SEED), Timers::default()),
            phones,
            answer_from: BTreeMap::new(),
            epoch,
            now: epoch,
            network: BTreeMap::new(),
            next_seq: 0,
            script: Box::new(script),
            rng: StdRng::seed_from_u64(SEED),
            sent: [0; 2],
            answered: Vec::new(),
            retransmissions: 0,
            outcomes: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    fn sent(&self, way: Way) -> usize {
        self.sent[way as usize]
    }

    /// Puts a datagram on the wire, where the fault script decides what becomes of it.
    fn send(&mut self, from: SocketAddr, to: SocketAddr, payload: Bytes) {
        let way = if to == LOCAL {
            Way::ToAgent
        } else {
            Way::ToPhone
        };
        let nth = self.sent[way as usize];
        self.sent[way as usize] += 1;
        let arrival = self.now + LATENCY;
        let (copies, at) = match (self.script)(way, nth, &mut self.rng) {
            Fate::Deliver => (1, arrival),
            Fate::Drop => (0, arrival),
            Fate::Duplicate => (2, arrival),
            Fate::Delay(extra) => (1, arrival + extra),
        };
        for _ in 0..copies {
            let datagram = Datagram {
                from,
                to,
                payload: payload.clone(),
            };
            self.network.insert((at, self.next_seq), datagram);
            self.next_seq += 1;
        }
    }

    /// Moves what the endpoint produced onto the wire and into `outcomes`. Called after
    /// every endpoint input, as the endpoint requires.
    fn drain(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(LOCAL, t.destination, t.payload);
        }
        self.outcomes
            .extend(std::iter::from_fn(|| self.endpoint.poll_event()));
    }

    fn deliver(&mut self, datagram: Datagram) {
        if datagram.to == LOCAL {
            self.endpoint
                .handle(self.now, datagram.from, &datagram.payload);
            return;
        }
        let phone = self
            .phones
            .get_mut(&datagram.to)
            .expect("a phone at every destination");
        let mut out = Vec::new();
        match phone.handle(self.now, &datagram.payload, &mut out) {
            Handled::Answered(exchange) => self.answered.push(exchange),
            Handled::Retransmission => self.retransmissions += 1,
            Handled::Dropped | Handled::Ignored => return,
        }
        let source = self.answer_from.get(&datagram.to).unwrap_or(&datagram.to);
        self.send(*source, datagram.from, out.into());
    }

    /// Advances time to the next event (an arrival or the endpoint's next timer) and
    /// processes everything due then. False when nothing is scheduled at all.
    fn step(&mut self) -> bool {
        let arrival = self.network.keys().next().map(|&(at, _)| at);
        let Some(next) = arrival
            .into_iter()
            .chain(self.endpoint.poll_timeout())
            .min()
        else {
            return false;
        };
        assert!(
            next >= self.now,
            "the endpoint asked to be woken in the past"
        );
        self.now = next;
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let datagram = entry.remove();
            self.deliver(datagram);
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= self.now) {
            self.endpoint.handle_timeout(self.now);
        }
        self.drain();
        true
    }

    /// Steps while `busy` holds. Being busy with nothing scheduled means a flow waits
    /// without a timer: a bug, so it fails, as does exceeding `MAX_STEPS`.
    fn run_while(&mut self, busy: impl Fn(&Pair) -> bool) {
        for _ in 0..MAX_STEPS {
            if !busy(self) {
                return;
            }
            assert!(self.step(), "busy with nothing scheduled");
        }
        panic!("still busy after {MAX_STEPS} steps");
    }

    /// Runs until every flow has ended and every datagram has arrived (or been dropped),
    /// so late responses reach the endpoint too.
    fn run_until_done(&mut self) {
        self.run_while(|p| p.endpoint.in_flight() > 0 || !p.network.is_empty());
    }

    /// The outcome of `id`, checking it was reported exactly once.
    fn outcome(&self, id: FlowId) -> &Outcome {
        let mut of_id = self.outcomes.iter().filter(|(i, _)| *i == id);
        let (_, outcome) = of_id.next().expect("the flow ended");
        assert!(of_id.next().is_none(), "flow {id} ended twice");
        outcome
    }
}

/// Starts a resync of `target` (`sip:USER@IP:PORT`) now. Every flow starts here, so a
/// change in what starts a flow is adapted in this one place.
fn start(pair: &mut Pair, target: &str, password: Option<&str>) -> FlowId {
    let target = Target::parse(target).expect("a valid target");
    let ip = target.host().ip().expect("an IP address host");
    let route = Route {
        destination: SocketAddr::new(ip, target.port()),
        local: LOCAL,
        transport: Transport::Udp,
        resolution: None,
    };
    let mut notify = Notify::new(target, Event::Resync { profile: None });
    if let Some(password) = password {
        notify = notify.with_credentials(None, Password::new(password));
    }
    let id = pair.endpoint.start(pair.now, notify, route);
    pair.drain();
    id
}

/// A line `159` with password `secret`, challenging as `challenge` says.
fn phone(challenge: ChallengeMode) -> PhoneConfig {
    PhoneConfig {
        password_template: "secret".into(),
        challenge,
        ..PhoneConfig::default()
    }
}

fn target(phone: &str) -> String {
    format!("sip:159@{phone}")
}

fn statuses(answered: &[Exchange]) -> Vec<(u32, u16)> {
    answered.iter().map(|e| (e.cseq, e.status)).collect()
}

#[test]
fn challenged_resync_is_delivered_in_two_round_trips() {
    let mut pair = Pair::new(&[(PHONE_A, phone(ChallengeMode::Md5Qop))], no_faults);
    let id = start(&mut pair, &target(PHONE_A), Some("secret"));
    pair.run_until_done();

    let o = pair.outcome(id);
    assert_eq!((o.kind, o.status), (OutcomeKind::Delivered, Some(200)));
    assert_eq!((o.attempts, o.retransmissions), (2, 0));
    // NOTIFY, 401, authenticated NOTIFY, 200: four one-way trips.
    assert_eq!(o.elapsed, 4 * LATENCY);
    assert_eq!(pair.elapsed(), 4 * LATENCY);
    let auth: Vec<AuthOutcome> = pair.answered.iter().map(|e| e.auth).collect();
    assert_eq!(auth, [AuthOutcome::Missing, AuthOutcome::Accepted]);
    assert_eq!(statuses(&pair.answered), [(1, 401), (2, 200)]);
    assert_eq!(pair.endpoint.stats(), Default::default());
}

#[test]
fn a_phone_answering_from_another_address_is_delivered_and_says_so() {
    let mut pair = Pair::new(
        &[
            (PHONE_A, phone(ChallengeMode::Md5Qop)),
            (PHONE_B, phone(ChallengeMode::Md5Qop)),
        ],
        no_faults,
    );
    // A multi-homed phone: reached at A, it answers from another address and port.
    let elsewhere: SocketAddr = "127.0.0.3:5070".parse().unwrap();
    pair.answer_from.insert(PHONE_A.parse().unwrap(), elsewhere);
    let moved = start(&mut pair, &target(PHONE_A), Some("secret"));
    let stayed = start(&mut pair, &target(PHONE_B), Some("secret"));
    pair.run_until_done();

    let o = pair.outcome(moved);
    assert_eq!((o.kind, o.status), (OutcomeKind::Delivered, Some(200)));
    assert_eq!((o.attempts, o.retransmissions), (2, 0));
    assert_eq!(o.elapsed, 4 * LATENCY, "no retransmission was needed");
    assert_eq!(o.answered_from, Some(elsewhere));
    let o = pair.outcome(stayed);
    assert_eq!((o.kind, o.answered_from), (OutcomeKind::Delivered, None));
    assert_eq!(
        statuses(&pair.answered),
        [(1, 401), (1, 401), (2, 200), (2, 200)]
    );
    // The 401 and the 200 of the first phone, and nothing dropped.
    assert_eq!(
        pair.endpoint.stats(),
        Stats {
            from_elsewhere: 2,
            ..Stats::default()
        }
    );
}

#[test]
fn every_challenge_mode_delivers_and_bad_credentials_end_the_flow() {
    for mode in [
        ChallengeMode::None,
        ChallengeMode::Md5,
        ChallengeMode::Md5Qop,
        ChallengeMode::Sha256,
    ] {
        let mut pair = Pair::new(&[(PHONE_A, phone(mode))], no_faults);
        let id = start(&mut pair, &target(PHONE_A), Some("secret"));
        pair.run_until_done();
        let o = pair.outcome(id);
        assert_eq!(o.kind, OutcomeKind::Delivered, "{mode}: {}", o.reason);
        // Without a challenge, one round trip; with one, two.
        let attempts = if mode == ChallengeMode::None { 1 } else { 2 };
        assert_eq!(o.attempts, attempts, "{mode}");
        assert_eq!(o.elapsed, 2 * attempts * LATENCY, "{mode}");
    }

    for mode in [
        ChallengeMode::Md5,
        ChallengeMode::Md5Qop,
        ChallengeMode::Sha256,
    ] {
        let mut pair = Pair::new(&[(PHONE_A, phone(mode))], no_faults);
        let wrong = start(&mut pair, &target(PHONE_A), Some("wrong"));
        let none = start(&mut pair, &target(PHONE_A), None);
        pair.run_until_done();

        // A wrong password is refused after its answer; no password ends at the challenge.
        for (id, kind, status, attempts) in [
            (wrong, OutcomeKind::AuthFailed, 403, 2),
            (none, OutcomeKind::NoCredentials, 401, 1),
        ] {
            let o = pair.outcome(id);
            assert_eq!((o.kind, o.status), (kind, Some(status)), "{mode}");
            assert_eq!(o.attempts, attempts, "{mode}");
        }
        assert_eq!(pair.outcomes.len(), 2);
    }
}

/// A resync whose first datagram going `lost` is dropped: its outcome, what the phone
/// answered, and how many retransmissions it answered again.
fn first_datagram_lost(lost: Way) -> (Outcome, Vec<(u32, u16)>, usize) {
    let mut pair = Pair::new(
        &[(PHONE_A, phone(ChallengeMode::Md5Qop))],
        move |way, nth, _| match nth {
            0 if way == lost => Fate::Drop,
            _ => Fate::Deliver,
        },
    );
    let id = start(&mut pair, &target(PHONE_A), Some("secret"));
    pair.run_until_done();
    let o = pair.outcome(id).clone();
    assert_eq!(o.kind, OutcomeKind::Delivered);
    assert_eq!((o.attempts, o.retransmissions), (2, 1));
    (o, statuses(&pair.answered), pair.retransmissions)
}

#[test]
fn a_lost_notify_is_retransmitted_at_t1() {
    let (o, answered, again) = first_datagram_lost(Way::ToPhone);
    // T1 (500 ms) to the retransmission, then four one-way trips of 30 ms.
    assert_eq!(o.elapsed, Duration::from_millis(620));
    assert_eq!(o.elapsed, Timers::default().t1 + 4 * LATENCY);
    assert_eq!((answered, again), (vec![(1, 401), (2, 200)], 0));
}

#[test]
fn a_lost_401_makes_the_phone_answer_the_retransmission() {
    let (o, answered, again) = first_datagram_lost(Way::ToAgent);
    assert_eq!(o.elapsed, Duration::from_millis(620));
    // The retransmitted first NOTIFY got its 401 again from the server transaction.
    assert_eq!((answered, again), (vec![(1, 401), (2, 200)], 1));
}

#[test]
fn total_loss_times_out_at_timer_f_after_the_rfc_retransmissions() {
    let mut pair = Pair::new(&[(PHONE_A, phone(ChallengeMode::Md5Qop))], |_, _, _| {
        Fate::Drop
    });
    let id = start(&mut pair, &target(PHONE_A), Some("secret"));
    pair.run_until_done();

    // RFC 3261 §17.1.2.2: Timer E first fires at T1, then its interval doubles up to T2;
    // Timer F (64*T1) ends the transaction. Retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5,
    // ... 31.5 s.
    let timers = Timers::default();
    let (mut at, mut interval, mut expected) = (timers.t1, timers.t1, 0);
    while at < timers.timer_f() {
        expected += 1;
        interval = (interval * 2).min(timers.t2);
        at += interval;
    }
    assert_eq!(expected, 10);

    let o = pair.outcome(id);
    assert_eq!((o.kind, o.status), (OutcomeKind::Timeout, None));
    assert_eq!(o.elapsed, Duration::from_secs(32));
    assert_eq!(o.elapsed, timers.timer_f());
    assert_eq!((o.attempts, o.retransmissions), (1, expected));
    assert_eq!(o.reason, "no response in 32.0 s");
    assert_eq!(pair.sent(Way::ToPhone), 1 + expected as usize);
    assert!(pair.answered.is_empty());
}

#[test]
fn duplicated_datagrams_end_each_flow_once() {
    let mut pair = Pair::new(
        &[
            (PHONE_A, phone(ChallengeMode::Md5Qop)),
            (PHONE_B, phone(ChallengeMode::Md5Qop)),
        ],
        |_, _, _| Fate::Duplicate,
    );
    let ids = [
        start(&mut pair, &target(PHONE_A), Some("secret")),
        start(&mut pair, &target(PHONE_B), Some("secret")),
    ];
    pair.run_until_done();

    for id in ids {
        let o = pair.outcome(id);
        assert_eq!(o.kind, OutcomeKind::Delivered);
        assert_eq!((o.attempts, o.retransmissions), (2, 0));
        assert_eq!(o.elapsed, 4 * LATENCY);
    }
    assert_eq!(pair.outcomes.len(), 2);
    // Per flow, the phone gets each NOTIFY twice: its server transaction answers the copy
    // again without acting on it, so it acts on the authenticated NOTIFY once.
    assert_eq!((pair.answered.len(), pair.retransmissions), (2 * 2, 2 * 2));
    assert_eq!(pair.answered.iter().filter(|e| e.delivered()).count(), 2);
    // Each answer is duplicated too: 4 copies of the 401 and of the 200 per flow. The first
    // copy is used; the other 3 find their branch retired.
    assert_eq!(pair.endpoint.stats().unmatched, 2 * (3 + 3));
}

#[test]
fn late_responses_for_a_retired_branch_or_ended_flow_are_unmatched() {
    // Arrivals (ms): NOTIFY 0 → 30: the 401 (sent 0th toward the agent) is held to 600.
    // Timer E at 500: NOTIFY again → 530 → 401 at 560 → authenticated NOTIFY → 590: its
    // 200 (sent 2nd) is held to 1620. Timer E at 1060: NOTIFY again → 1090 → 200 at 1120.
    let mut pair = Pair::new(
        &[(PHONE_A, phone(ChallengeMode::Md5Qop))],
        |way, nth, _| match (way, nth) {
            (Way::ToAgent, 0) => Fate::Delay(Duration::from_millis(540)),
            (Way::ToAgent, 2) => Fate::Delay(Duration::from_millis(1000)),
            _ => Fate::Deliver,
        },
    );
    let id = start(&mut pair, &target(PHONE_A), Some("secret"));

    let first_401 = pair.epoch + Duration::from_millis(600);
    pair.run_while(|p| p.now < first_401);
    assert_eq!(pair.endpoint.stats().unmatched, 1);
    assert_eq!(
        pair.endpoint.in_flight(),
        1,
        "the authenticated attempt goes on"
    );
    assert!(pair.outcomes.is_empty());

    pair.run_until_done();
    let o = pair.outcome(id);
    assert_eq!((o.kind, o.status), (OutcomeKind::Delivered, Some(200)));
    assert_eq!((o.attempts, o.retransmissions), (2, 2));
    assert_eq!(o.elapsed, Duration::from_millis(1120));
    assert_eq!(pair.elapsed(), Duration::from_millis(1620));
    assert_eq!(pair.outcomes.len(), 1);
    assert_eq!(pair.endpoint.stats().unmatched, 2);
    // The retransmissions were answered again by the phone's server transactions.
    assert_eq!(statuses(&pair.answered), [(1, 401), (2, 200)]);
    assert_eq!(pair.retransmissions, 2);
}

#[test]
fn two_hundred_flows_through_twenty_percent_loss_are_all_delivered() {
    let fleet = PhoneConfig {
        users: vec!["1000-1099".parse().unwrap()],
        ..phone(ChallengeMode::Md5Qop)
    };
    let mut pair = Pair::new(
        &[(PHONE_A, fleet.clone()), (PHONE_B, fleet)],
        |_, _, rng| {
            if rng.gen_bool(0.2) {
                Fate::Drop
            } else {
                Fate::Deliver
            }
        },
    );
    let ids: BTreeSet<FlowId> = (1000..1100)
        .flat_map(|user| [PHONE_A, PHONE_B].map(|p| format!("sip:{user}@{p}")))
        .map(|t| start(&mut pair, &t, Some("secret")))
        .collect();
    assert_eq!(ids.len(), 200);
    pair.run_until_done();

    assert_eq!(pair.outcomes.len(), 200);
    for &id in &ids {
        let o = pair.outcome(id);
        assert_eq!(o.kind, OutcomeKind::Delivered, "flow {id}: {}", o.reason);
    }
    let retransmissions: u32 = pair.outcomes.iter().map(|(_, o)| o.retransmissions).sum();
    assert!(retransmissions > 0, "the loss was felt");
}

#[test]
fn a_503_is_rejected_with_its_retry_after() {
    let overloaded = PhoneConfig {
        fail_percent: 100.0,
        fail_status: 503,
        ..phone(ChallengeMode::Md5)
    };
    let mut pair = Pair::new(&[(PHONE_A, overloaded)], no_faults);
    let id = start(&mut pair, &target(PHONE_A), Some("secret"));
    pair.run_until_done();

    let o = pair.outcome(id);
    assert_eq!((o.kind, o.status), (OutcomeKind::Rejected, Some(503)));
    assert_eq!(o.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(o.reason, "Service Unavailable");
    assert_eq!(o.hint, hint_for(503));
    // The phone fails only authenticated requests: challenged first.
    assert_eq!(o.attempts, 2);
    assert_eq!(o.elapsed, 4 * LATENCY);
}
