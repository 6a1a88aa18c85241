//! The RFC 3261 §17.1.2 non-INVITE client transaction.
//!
//! The transaction does not hold the request: it only says when the caller must (re)send it,
//! when it wants to be woken up, and what a response or a timer means. Time is passed in.

use std::time::{Duration, Instant};

/// The RFC 3261 timer values (§17.1.2.2, table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate; the first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// The longest retransmission interval (default 4 s).
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

impl Timers {
    /// Timer F: how long the transaction waits for a final response (64*T1).
    pub fn timer_f(&self) -> Duration {
        self.t1 * 64
    }
}

/// Where the transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sent, nothing received yet.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received, or Timer F fired. The Completed state of §17.1.2.2
    /// (absorbing retransmitted finals until Timer K) is not kept: the endpoint forgets the
    /// branch at the final response, so a retransmitted final matches nothing and is
    /// dropped, which is all Timer K would do for a NOTIFY.
    Terminated,
}

/// What a response or a timer meant for the transaction user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEvent {
    /// A 1xx response.
    Provisional(u16),
    /// The first final response (2xx-6xx); later responses are ignored.
    Final(u16),
    /// Timer F fired before any final response.
    Timeout,
}

/// One non-INVITE client transaction.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    timers: Timers,
    state: State,
    send_pending: bool,
    interval: Duration,
    timer_e: Option<Instant>,
    timer_f: Instant,
    sends: u32,
}

impl ClientTransaction {
    /// Starts a transaction at `now`. The first [`poll_transmit`](Self::poll_transmit) asks
    /// for the initial send. Over a reliable transport there is no Timer E.
    pub fn new(now: Instant, timers: Timers, reliable: bool) -> Self {
        ClientTransaction {
            timers,
            state: State::Trying,
            send_pending: true,
            interval: timers.t1,
            timer_e: (!reliable).then(|| now + timers.t1),
            timer_f: now + timers.timer_f(),
            sends: 0,
        }
    }

    /// The timers it runs on.
    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// True once, after creation and after each Timer E expiry: the caller must send the
    /// request (again). Call after `new`, `handle_timeout` and `handle_response`.
    pub fn poll_transmit(&mut self) -> bool {
        if self.send_pending {
            self.send_pending = false;
            self.sends += 1;
            true
        } else {
            false
        }
    }

    /// Brings the next retransmission forward to `at` (over UDP, while no final response
    /// has come): for a request that an ICMP error says did not arrive.
    pub fn retransmit_by(&mut self, at: Instant) {
        if let Some(e) = &mut self.timer_e {
            *e = (*e).min(at);
        }
    }

    /// How many times the request was sent beyond the first.
    pub fn retransmissions(&self) -> u32 {
        self.sends.saturating_sub(1)
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) must be called,
    /// or `None` once terminated. Changes after every `handle_*` call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Trying | State::Proceeding => Some(match self.timer_e {
                Some(e) => e.min(self.timer_f),
                None => self.timer_f,
            }),
            State::Terminated => None,
        }
    }

    /// Fires the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TxEvent> {
        match self.state {
            State::Trying | State::Proceeding => {
                if now >= self.timer_f {
                    self.state = State::Terminated;
                    return Some(TxEvent::Timeout);
                }
                if let Some(e) = self.timer_e.filter(|e| now >= *e) {
                    // §17.1.2.2: the interval doubles up to T2 in Trying, and is T2 once a
                    // provisional response has been seen.
                    self.interval = match self.state {
                        State::Trying => (self.interval * 2).min(self.timers.t2),
                        _ => self.timers.t2,
                    };
                    // From now, not from the missed deadline: after a stall (a suspended
                    // process) one retransmission goes out, not a burst of catch-ups.
                    self.timer_e = Some(now.max(e) + self.interval);
                    self.send_pending = true;
                }
                None
            }
            State::Terminated => None,
        }
    }

    /// Feeds the status code of a response matched to this transaction.
    pub fn handle_response(&mut self, status: u16) -> Option<TxEvent> {
        match (self.state, status) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                Some(TxEvent::Provisional(status))
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.timer_e = None;
                self.send_pending = false;
                self.state = State::Terminated;
                Some(TxEvent::Final(status))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// A transaction with the default timers, started now, after its first send.
    fn started(reliable: bool) -> (Instant, ClientTransaction) {
        let start = Instant::now();
        let mut tx = ClientTransaction::new(start, Timers::default(), reliable);
        assert!(tx.poll_transmit());
        (start, tx)
    }

    /// Drives a transaction with no answer, stepping to each wake-up, and records when it
    /// asked to send and when it timed out.
    fn run_unanswered(reliable: bool, timers: Timers) -> (Vec<Duration>, Duration) {
        let start = Instant::now();
        let mut tx = ClientTransaction::new(start, timers, reliable);
        let mut sends = Vec::new();
        let mut now = start;
        loop {
            while tx.poll_transmit() {
                sends.push(now - start);
            }
            now = tx
                .poll_timeout()
                .expect("an unanswered transaction has a deadline");
            if tx.handle_timeout(now) == Some(TxEvent::Timeout) {
                assert_eq!(tx.state(), State::Terminated);
                assert!(!tx.poll_transmit());
                return (sends, now - start);
            }
        }
    }

    #[test]
    fn udp_retransmits_on_the_rfc_schedule_and_times_out_at_64_t1() {
        let (sends, timeout) = run_unanswered(false, Timers::default());
        let expected: Vec<Duration> = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
            .iter()
            .map(|s| secs(*s))
            .collect();
        assert_eq!(sends, expected);
        assert_eq!(timeout, secs(32.0));
    }

    #[test]
    fn tcp_sends_once_and_times_out_at_timer_f() {
        let (sends, timeout) = run_unanswered(true, Timers::default());
        assert_eq!(sends, vec![Duration::ZERO]);
        assert_eq!(timeout, secs(32.0));
    }

    #[test]
    fn timers_are_configurable() {
        let timers = Timers {
            t1: Duration::from_millis(100),
            t2: Duration::from_millis(300),
        };
        let (sends, timeout) = run_unanswered(false, timers);
        assert_eq!(
            &sends[..5],
            &[secs(0.0), secs(0.1), secs(0.3), secs(0.6), secs(0.9)]
        );
        assert_eq!(timeout, secs(6.4));
    }

    #[test]
    fn provisional_response_holds_retransmissions_at_t2() {
        let (start, mut tx) = started(false);
        assert_eq!(tx.handle_response(100), Some(TxEvent::Provisional(100)));
        assert_eq!(tx.state(), State::Proceeding);
        // Timer E was armed at 0.5 s; after it fires in Proceeding the interval is T2.
        tx.handle_timeout(start + secs(0.5));
        assert!(tx.poll_transmit());
        assert_eq!(tx.poll_timeout(), Some(start + secs(4.5)));
    }

    #[test]
    fn final_response_stops_retransmission_and_ignores_what_follows() {
        let (start, mut tx) = started(false);
        tx.handle_timeout(start + secs(0.5));
        assert!(tx.poll_transmit());
        assert_eq!(tx.retransmissions(), 1);
        let t = start + secs(0.6);
        assert_eq!(tx.handle_response(401), Some(TxEvent::Final(401)));
        assert_eq!(tx.handle_response(401), None, "a retransmitted final");
        assert_eq!(tx.handle_response(180), None);
        tx.handle_timeout(t + secs(5.0));
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
        assert!(!tx.poll_transmit());
    }

    #[test]
    fn a_retransmission_brought_forward_goes_then_and_the_schedule_goes_on() {
        let start = Instant::now();
        let mut tx = ClientTransaction::new(start, Timers::default(), false);
        assert!(tx.poll_transmit());
        tx.retransmit_by(start + secs(0.2));
        assert_eq!(tx.poll_timeout(), Some(start + secs(0.2)));
        tx.handle_timeout(start + secs(0.2));
        assert!(tx.poll_transmit());
        // The interval doubled from T1, from the retransmission.
        assert_eq!(tx.poll_timeout(), Some(start + secs(1.2)));
        // Never later than it was.
        tx.retransmit_by(start + secs(9.0));
        assert_eq!(tx.poll_timeout(), Some(start + secs(1.2)));
        let mut reliable = ClientTransaction::new(start, Timers::default(), true);
        reliable.retransmit_by(start);
        assert_eq!(reliable.poll_timeout(), Some(start + secs(32.0)));
    }

    #[test]
    fn reliable_final_response_terminates_at_once() {
        let (_, mut tx) = started(true);
        assert_eq!(tx.handle_response(200), Some(TxEvent::Final(200)));
        assert_eq!(tx.state(), State::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn a_late_wake_up_sends_one_retransmission_not_a_burst() {
        let (start, mut tx) = started(false);
        let late = start + secs(10.0);
        tx.handle_timeout(late);
        assert!(tx.poll_transmit());
        assert!(
            tx.poll_timeout().unwrap() > late,
            "the next send is in the future"
        );
        tx.handle_timeout(late);
        assert!(!tx.poll_transmit());
    }

    #[test]
    fn timer_f_still_fires_while_proceeding() {
        let (start, mut tx) = started(true);
        tx.handle_response(100);
        assert_eq!(
            tx.handle_timeout(start + secs(32.0)),
            Some(TxEvent::Timeout)
        );
    }
}
