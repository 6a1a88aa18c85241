//! Many flows behind one socket: responses routed by Via branch, one timer queue for all.
//!
//! Like quinn-proto's `Endpoint`: inputs are `start`, `handle`, `handle_timeout` and
//! `handle_transport_error`; outputs come from `poll_transmit`, `poll_timeout` and
//! `poll_event`. Call the `poll_*` methods after every input.

pub use super::flow::Mismatch;
use super::flow::{Branch, Flow};
use super::notify::{Notify, Route};
use super::outcome::Outcome;
use super::transaction::Timers;
use crate::sip::codec;
use crate::sip::Transport;
use bytes::Bytes;
use rand::rngs::StdRng;
use rustc_hash::FxHashMap;
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Identifies one target within an endpoint.
pub type FlowId = u64;

/// A message to put on the wire.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The flow it belongs to (for reporting transport errors back).
    pub flow: FlowId,
    /// Where to send it.
    pub destination: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// The bytes: each retransmission is written again, identical to the first send.
    pub payload: Bytes,
}

/// What became of received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A response to one of the flows in flight, from the address its request went to.
    Used,
    /// A response to one of the flows in flight, from another address: used too, since
    /// RFC 3261 §17.1.3 matches responses to transactions, not to sources.
    UsedFromElsewhere,
    /// Not a SIP message.
    Malformed,
    /// A response whose branch is not one in flight (late, or not for us).
    Unmatched,
    /// One of our branches on something that is not the response of that transaction.
    Mismatched(Mismatch),
}

impl Received {
    /// Why the bytes were not used, for logs; `None` when they were.
    pub fn dropped_because(self) -> Option<&'static str> {
        Some(match self {
            Received::Used | Received::UsedFromElsewhere => return None,
            Received::Malformed => "not a SIP message",
            Received::Unmatched => "no target in flight has its branch",
            Received::Mismatched(Mismatch::NotAResponse) => "a request with one of our branches",
            Received::Mismatched(Mismatch::CallId) => "our branch with another Call-ID",
            Received::Mismatched(Mismatch::CSeq) => "our branch with another CSeq",
        })
    }
}

/// Counters of what arrived: everything not used, and responses used from elsewhere, so
/// that a target that ends silent (`timeout`) has an explanation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Responses used that came from another address than their request went to.
    pub from_elsewhere: u64,
    /// Responses whose branch is not one of ours (late, or not for us).
    pub unmatched: u64,
    /// Messages with one of our branches but another Call-ID or CSeq, or not a response.
    pub mismatched: u64,
    /// Bytes that were not a SIP message.
    pub malformed: u64,
}

#[derive(Debug)]
struct Entry {
    /// Boxed, so that the map's spare capacity costs a pointer per slot, not a whole flow.
    flow: Box<Flow>,
    /// The flow's entry in the timer queue, to move or remove it.
    scheduled: Option<Instant>,
}

/// The sans-IO agent for any number of concurrent targets.
#[derive(Debug)]
pub struct Endpoint {
    rng: StdRng,
    /// The RFC 3261 timers of every transaction.
    sip_timers: Timers,
    next_id: FlowId,
    // Fx, not SipHash: both maps hold only keys made here (sequential ids, random
    // branches), so received bytes can look keys up but never choose what collides, and
    // a lookup per datagram must be cheap.
    flows: FxHashMap<FlowId, Entry>,
    branches: FxHashMap<Branch, FlowId>,
    // One entry per flow, its next deadline, moved or removed as the flow changes: a
    // campaign's timer memory follows the targets in flight, not the rate.
    timers: BTreeSet<(Instant, FlowId)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(FlowId, Outcome)>,
    stats: Stats,
}

impl Endpoint {
    /// A new endpoint whose transactions run on `timers`. `rng` must be a cryptographic
    /// generator (branches, tags, cnonces).
    pub fn new(rng: StdRng, timers: Timers) -> Endpoint {
        Endpoint {
            rng,
            sip_timers: timers,
            next_id: 0,
            flows: FxHashMap::default(),
            branches: FxHashMap::default(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Starts a target on its resolved route; its first request is available from
    /// `poll_transmit` at once. The flow keeps `notify` until the target ends: pass an
    /// `Arc` to share it with the caller instead of copying it.
    pub fn start(&mut self, now: Instant, notify: impl Into<Arc<Notify>>, route: Route) -> FlowId {
        let id = self.next_id;
        self.next_id += 1;
        let flow = Flow::new(now, notify.into(), route, self.sip_timers, &mut self.rng);
        self.branches.insert(flow.branch(), id);
        self.flows.insert(
            id,
            Entry {
                flow: Box::new(flow),
                scheduled: None,
            },
        );
        self.after_input(now, id);
        id
    }

    /// Targets not yet ended.
    pub fn in_flight(&self) -> usize {
        self.flows.len()
    }

    /// Where a target in flight sends now; `None` once it has ended.
    pub fn destination(&self, id: FlowId) -> Option<SocketAddr> {
        self.flows.get(&id).map(|e| e.flow.destination())
    }

    /// What was received and not used, and what was used from elsewhere.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Feeds bytes received from `from` (a datagram, or one frame of a stream), and says
    /// what became of them. A response is matched by its Via branch, Call-ID and CSeq,
    /// whatever address it comes from; all but [`Received::Used`] are counted in [`Stats`].
    pub fn handle(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Received {
        // One parse both routes the message and feeds its flow: nearly every response
        // received is for a flow in progress.
        let Ok(msg) = codec::parse(bytes) else {
            self.stats.malformed += 1;
            return Received::Malformed;
        };
        let id = msg.top_via_branch().and_then(|b| self.branch(b));
        let Some((id, Entry { flow, .. })) = id.and_then(|id| Some((id, self.flows.get_mut(&id)?)))
        else {
            self.stats.unmatched += 1;
            return Received::Unmatched;
        };
        let elsewhere = flow.destination() != from;
        if let Err(mismatch) = flow.handle_response(now, from, &msg, bytes, &mut self.rng) {
            self.stats.mismatched += 1;
            return Received::Mismatched(mismatch);
        }
        self.after_input(now, id);
        if elsewhere {
            self.stats.from_elsewhere += 1;
            Received::UsedFromElsewhere
        } else {
            Received::Used
        }
    }

    /// The transport failed for this flow (connect refused, connection closed, send error):
    /// it moves to its next destination, or ends `unreachable`.
    pub fn handle_transport_error(&mut self, now: Instant, id: FlowId, reason: &str) {
        if let Some(Entry { flow, .. }) = self.flows.get_mut(&id) {
            flow.handle_transport_error(now, reason, &mut self.rng);
            self.after_input(now, id);
        }
    }

    /// An ICMP error came back for `request`, one of the datagrams this endpoint sent (the
    /// kernel returns its bytes with the error): its flow takes it, by the request's Via
    /// branch. Anything else is ignored.
    pub fn handle_unreachable(&mut self, now: Instant, request: &[u8], reason: &str) {
        let Some(id) = codec::route_key(request).and_then(|(b, _)| self.branch(b)) else {
            return;
        };
        if let Some(Entry { flow, .. }) = self.flows.get_mut(&id) {
            flow.handle_unreachable(now, reason, &mut self.rng);
            self.after_input(now, id);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(entry) = self.flows.get_mut(&id) {
                entry.scheduled = None;
                entry.flow.handle_timeout(now, &mut self.rng);
                self.after_input(now, id);
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next target that ended.
    pub fn poll_event(&mut self) -> Option<(FlowId, Outcome)> {
        self.events.pop_front()
    }

    /// The flow in flight whose branch `text` is.
    fn branch(&self, text: &str) -> Option<FlowId> {
        self.branches.get(&Branch::from_text(text)?).copied()
    }

    /// Collects what a flow wants after an input: sends, a new branch, a timer, its end.
    /// A flow is dropped at its outcome: a retransmitted final response then matches no
    /// branch and is counted as unmatched, which is all the Completed state (Timer K)
    /// would do for a NOTIFY, without holding the flow for T4.
    fn after_input(&mut self, now: Instant, id: FlowId) {
        let Some(Entry { flow, scheduled }) = self.flows.get_mut(&id) else {
            return;
        };
        if let Some(payload) = flow.poll_transmit(now) {
            self.transmits.push_back(Transmit {
                flow: id,
                destination: flow.destination(),
                transport: flow.transport(),
                payload,
            });
        }
        if let Some(old) = flow.take_retired_branch() {
            self.branches.remove(&old);
            self.branches.insert(flow.branch(), id);
        }
        let next = flow.poll_timeout();
        if next != *scheduled {
            if let Some(old) = scheduled.take() {
                self.timers.remove(&(old, id));
            }
            if let Some(at) = next {
                self.timers.insert((at, id));
                *scheduled = Some(at);
            }
        }
        if let Some(outcome) = flow.take_outcome() {
            self.branches.remove(&flow.branch());
            self.flows.remove(&id);
            self.events.push_back((id, outcome));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::proto::outcome::OutcomeKind;
    use crate::sip::uri::Target;
    use rand::SeedableRng;
    use std::time::Duration;

    fn job(port: u16) -> (Notify, Route) {
        let target = Target::parse(&format!("sip:{port}@127.0.0.1:{port}")).unwrap();
        let route = Route {
            destination: SocketAddr::from(([127, 0, 0, 1], port)),
            local: "127.0.0.1:40000".parse().unwrap(),
            transport: Transport::Udp,
            resolution: None,
        };
        (Notify::new(target, Event::Reboot), route)
    }

    fn start(ep: &mut Endpoint, now: Instant, (notify, route): (Notify, Route)) -> FlowId {
        ep.start(now, notify, route)
    }

    fn ok_for(request: &[u8]) -> Vec<u8> {
        let req = codec::parse(request).unwrap();
        let mut s = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            s += &format!("{name}: {}\r\n", req.header(name).unwrap());
        }
        s += "Content-Length: 0\r\n\r\n";
        s.into_bytes()
    }

    #[test]
    fn responses_are_routed_by_branch_from_any_address_and_the_rest_counted() {
        let mut ep = Endpoint::new(StdRng::seed_from_u64(1), Timers::default());
        let now = Instant::now();
        let ids: Vec<FlowId> = (5060..5064).map(|p| start(&mut ep, now, job(p))).collect();
        let sent: Vec<Transmit> = std::iter::from_fn(|| ep.poll_transmit()).collect();
        assert_eq!(sent.len(), 4);
        assert_eq!(ep.in_flight(), 4);
        assert_eq!(ep.timers.len(), 4, "one timer entry per flow");

        assert_eq!(
            ep.handle(now, sent[1].destination, b"garbage"),
            Received::Malformed
        );
        let foreign = String::from_utf8(ok_for(&sent[2].payload))
            .unwrap()
            .replace("branch=z9hG4bK", "branch=z9hG4bKx");
        assert_eq!(
            ep.handle(now, sent[2].destination, foreign.as_bytes()),
            Received::Unmatched
        );
        // The right branch with another Call-ID is not the answer, from wherever it comes.
        let request = codec::parse(&sent[2].payload).unwrap();
        let call_id = request.header("Call-ID").unwrap();
        let forged = String::from_utf8(ok_for(&sent[2].payload))
            .unwrap()
            .replace(call_id, "forged");
        assert_eq!(
            ep.handle(now, sent[2].destination, forged.as_bytes()),
            Received::Mismatched(Mismatch::CallId)
        );
        assert_eq!(
            ep.handle(now, sent[2].destination, &sent[2].payload),
            Received::Mismatched(Mismatch::NotAResponse)
        );
        assert!(ep.poll_event().is_none());
        assert_eq!(
            ep.stats(),
            Stats {
                from_elsewhere: 0,
                unmatched: 1,
                mismatched: 2,
                malformed: 1,
            }
        );

        // The answer to the second target from the first target's address: the branch, the
        // Call-ID and the CSeq say whose it is (RFC 3261 §17.1.3), not the source.
        let elsewhere = sent[0].destination;
        assert_eq!(
            ep.handle(now, elsewhere, &ok_for(&sent[1].payload)),
            Received::UsedFromElsewhere
        );
        let (id, outcome) = ep.poll_event().unwrap();
        assert_eq!((id, outcome.kind), (ids[1], OutcomeKind::Delivered));
        assert_eq!(outcome.answered_from, Some(elsewhere));
        assert_eq!(ep.stats().from_elsewhere, 1);

        assert_eq!(
            ep.handle(now, sent[3].destination, &ok_for(&sent[3].payload)),
            Received::Used
        );
        let (id, outcome) = ep.poll_event().unwrap();
        assert_eq!((id, outcome.answered_from), (ids[3], None));

        // A retransmitted 200 for a finished target is not routed anywhere.
        assert_eq!(
            ep.handle(now, sent[1].destination, &ok_for(&sent[1].payload)),
            Received::Unmatched
        );
        assert_eq!(ep.stats().unmatched, 2);
        assert_eq!(ep.in_flight(), 2);
        assert_eq!(ep.timers.len(), 2, "an ended flow leaves no timer behind");
        let dropped = [Received::Unmatched, Received::Mismatched(Mismatch::CSeq)];
        assert!(dropped.iter().all(|r| r.dropped_because().is_some()));
        assert_eq!(Received::UsedFromElsewhere.dropped_because(), None);
    }

    #[test]
    fn a_flow_that_fails_over_is_routed_by_its_new_branch_only() {
        let mut ep = Endpoint::new(StdRng::seed_from_u64(3), Timers::default());
        let now = Instant::now();
        let (mut notify, mut route) = job(5060);
        notify.timeout = Some(Duration::from_secs(2));
        let second: SocketAddr = "127.0.0.3:5070".parse().unwrap();
        route.resolution = Some(Box::new(crate::proto::Resolution {
            next: vec![crate::proto::Hop {
                destination: second,
                local: route.local,
            }],
            steps: Vec::new(),
        }));
        let id = ep.start(now, notify, route);
        let first = ep.poll_transmit().unwrap();
        let mut to_second = None;
        while let Some(at) = ep.poll_timeout().filter(|_| to_second.is_none()) {
            ep.handle_timeout(at);
            to_second = std::iter::from_fn(|| ep.poll_transmit()).find(|t| t.destination == second);
        }
        let to_second = to_second.expect("the request to the next destination");
        assert_eq!(ep.destination(id), Some(second));
        assert_eq!(ep.branches.len(), 1, "the old branch is forgotten");
        assert_eq!(
            ep.handle(now, first.destination, &ok_for(&first.payload)),
            Received::Unmatched
        );
        assert_eq!(
            ep.handle(now, second, &ok_for(&to_second.payload)),
            Received::Used
        );
        let (_, outcome) = ep.poll_event().unwrap();
        assert_eq!(outcome.destination, Some(second));
        assert_eq!(ep.destination(id), None);
    }

    #[test]
    fn one_timer_queue_drives_every_flow_to_its_end() {
        let mut ep = Endpoint::new(StdRng::seed_from_u64(2), Timers::default());
        let t0 = Instant::now();
        for p in 0..100 {
            start(&mut ep, t0 + Duration::from_millis(p), job(6000 + p as u16));
        }
        let mut sends = 0;
        let mut now = t0;
        while let Some(at) = ep.poll_timeout() {
            now = now.max(at);
            ep.handle_timeout(now);
            while ep.poll_transmit().is_some() {
                sends += 1;
            }
        }
        // Each target: the first send (drained above only from the second loop on) + 10
        // retransmissions, then a timeout.
        let outcomes: Vec<_> = std::iter::from_fn(|| ep.poll_event()).collect();
        assert_eq!(outcomes.len(), 100);
        assert!(outcomes.iter().all(|(_, o)| o.kind == OutcomeKind::Timeout));
        assert_eq!(sends, 100 + 100 * 10);
        assert_eq!(ep.in_flight(), 0);
        assert!(ep.timers.is_empty(), "no timer outlives its flow");
    }
}
