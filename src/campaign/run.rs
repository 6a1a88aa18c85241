//! The tokio runner: items in, records out, with concurrency, rate, spread, retries, the
//! journal, and a graceful stop. Generic over the [`Channel`] that acts on each phone.

use super::channel::Channel;
use super::input::RowError;
use super::journal::{Finished, Intent, Journal, ResumeState};
use super::pace::{Pacer, Spread};
use super::record::{Record, Verdict};
use super::retry::RetryPolicy;
use crate::proto::Outcome;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// One input item: a target ready to send, or a bad row to report.
#[derive(Debug)]
pub(crate) enum Item<R> {
    /// A target.
    Job(Box<Job<R>>),
    /// A row that could not be used.
    Bad(RowError),
    /// A row naming the same target and event as an earlier one: not sent again.
    Duplicate(Box<Job<R>>, u64),
}

/// A target ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Job<R> {
    /// The input line.
    pub line: u64,
    /// The journal key: `id:` and the row's id, else the request's identity.
    pub key: String,
    /// The row's `id`.
    pub id: Option<String>,
    /// What to send; shared with the channel while the target is in flight
    /// ([`Channel::deliver_shared`]).
    pub request: Arc<R>,
}

/// A stop request shared by the runner, its tasks and the signal handler.
#[derive(Debug, Default)]
pub struct Stop {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stop {
    /// A stop not yet requested.
    pub fn new() -> Arc<Stop> {
        Arc::default()
    }

    /// Requests the stop: no new target starts, no retry is waited for.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits for the stop request.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// How a campaign runs.
pub(crate) struct Runner<C> {
    /// Acts on the phones.
    pub channel: C,
    /// Targets in flight at once (at least 1).
    pub concurrency: usize,
    /// New targets per second, if limited.
    pub rate: Option<f64>,
    /// Spread the starts over this window, given the number of targets.
    pub spread: Option<(Duration, u64)>,
    /// Retries.
    pub retry: RetryPolicy,
    /// The journal, if any.
    pub journal: Option<Arc<Journal>>,
    /// What the journal said at the start.
    pub resume: ResumeState,
    /// Send targets that a previous run started with no result.
    pub resend_unknown: bool,
}

/// How the run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// A stop was requested (a signal) before the input ended.
    pub interrupted: bool,
    /// The first journal write error, which stopped the campaign (not counted as
    /// `interrupted`).
    pub journal_error: Option<String>,
}

struct Shared<C> {
    channel: C,
    retry: RetryPolicy,
    journal: Option<Arc<Journal>>,
    /// The stop requested from outside (a signal).
    stop: Arc<Stop>,
    /// The stop after a journal write error, kept apart from `stop` so that the end tells
    /// which one it was.
    halt: Arc<Stop>,
    journal_error: Mutex<Option<String>>,
}

/// The time between two starts at `rate` starts per second. `None` when the rate is not a
/// positive number or its period does not fit a [`Duration`] (too small a rate) or rounds
/// to zero (too large a rate); the command line keeps it within [`MIN_RATE`] and
/// [`MAX_RATE`].
pub fn period(rate: f64) -> Option<Duration> {
    if !(rate > 0.0 && rate.is_finite()) {
        return None;
    }
    Duration::try_from_secs_f64(1.0 / rate)
        .ok()
        .filter(|p| !p.is_zero())
}

/// Items per chunk sent to [`Runner::run`]: large enough that the hand-over between the
/// input thread and the runner costs nothing per row, small enough to start at once.
pub(crate) const ITEM_CHUNK: usize = 64;

/// Targets started and not yet taken by [`in_flight`]; the runner waits while it is full.
const STARTED_QUEUE: usize = ITEM_CHUNK;

/// The lowest `--rate`: one start in 1000 seconds.
pub const MIN_RATE: f64 = 0.001;
/// The highest `--rate`: a start every microsecond.
pub const MAX_RATE: f64 = 1_000_000.0;

impl<C: Channel> Runner<C> {
    /// Runs until the items end or `stop` is requested, then waits for the targets in
    /// flight. One [`Record`] per item goes to `records`, in completion order.
    ///
    /// Items come in chunks (see [`ITEM_CHUNK`]): a producer on another thread then wakes
    /// this one once per chunk rather than once per row.
    pub async fn run(
        self,
        mut items: mpsc::Receiver<Vec<Item<C::Request>>>,
        records: mpsc::Sender<Record>,
        stop: Arc<Stop>,
    ) -> RunEnd {
        let concurrency = self.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut pacer = self.rate.and_then(period).map(Pacer::new);
        let mut spread = self.spread.map(|(w, total)| Spread::new(w, total));
        let mut rng = StdRng::from_entropy();
        let shared = Arc::new(Shared {
            channel: self.channel,
            retry: self.retry,
            journal: self.journal,
            stop: stop.clone(),
            halt: Stop::new(),
            journal_error: Mutex::new(None),
        });
        let halt = shared.halt.clone();
        let (targets, started_targets) = mpsc::channel(STARTED_QUEUE);
        // Unconstrained by tokio's budget, which counts the operations of all the targets
        // of this one task as if they were one task's: spent, it would make every target
        // polled after it wake itself at once, and the task go round without progress.
        let in_flight = tokio::spawn(tokio::task::unconstrained(in_flight(
            started_targets,
            records.clone(),
        )));
        let started = tokio::time::Instant::now();
        let mut end = RunEnd::default();
        let mut chunk = Vec::new().into_iter();
        'input: loop {
            let item = match chunk.next() {
                Some(item) => item,
                None => {
                    chunk = tokio::select! {
                        biased;
                        _ = stop.stopped() => { end.interrupted = true; break 'input; }
                        _ = halt.stopped() => break 'input,
                        next = items.recv() => match next {
                            Some(next) => next.into_iter(),
                            None => break 'input,
                        },
                    };
                    continue;
                }
            };
            let job = match item {
                Item::Bad(e) => {
                    let record = Record {
                        line: e.line,
                        id: None,
                        target: String::new(),
                        event: String::new(),
                        verdict: Verdict::BadRow(e.message),
                    };
                    let _ = records.send(record).await;
                    continue;
                }
                Item::Duplicate(job, first_line) => {
                    let verdict = Verdict::Duplicate { first_line };
                    let _ = records.send(record::<C>(&job, verdict)).await;
                    continue;
                }
                // Kept boxed: the task below holds it for the whole target, so its future
                // holds a pointer, not the job.
                Item::Job(job) => job,
            };
            let skip = if self.resume.delivered.contains(&job.key) {
                Some(Verdict::AlreadyDelivered)
            } else if !self.resend_unknown && self.resume.unknown.contains(&job.key) {
                Some(Verdict::Unknown)
            } else {
                None
            };
            if let Some(verdict) = skip {
                let _ = records.send(record::<C>(&job, verdict)).await;
                continue;
            }
            if let Some(spread) = &mut spread {
                let at = started + spread.next_offset(&mut rng);
                tokio::select! {
                    biased;
                    _ = stop.stopped() => { end.interrupted = true; break 'input; }
                    _ = halt.stopped() => break 'input,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            let permit = tokio::select! {
                biased;
                _ = stop.stopped() => { end.interrupted = true; break 'input; }
                _ = halt.stopped() => break 'input,
                permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            };
            if let Some(pacer) = &mut pacer {
                tokio::select! {
                    biased;
                    _ = stop.stopped() => { end.interrupted = true; break 'input; }
                    _ = halt.stopped() => break 'input,
                    _ = pacer.ready() => {}
                }
            }
            let shared = shared.clone();
            let target = async move { (shared.target(job).await, permit) };
            if targets.send(target).await.is_err() {
                break 'input;
            }
        }
        // Its end means every target in flight has ended and been reported.
        drop(targets);
        let _ = in_flight.await;
        if let Some(journal) = &shared.journal {
            if let Err(e) = journal.finish() {
                shared.journal_failed(e);
            }
        }
        end.journal_error = shared.journal_error.lock().expect("lock").take();
        end
    }
}

/// Runs every target started, all in this one task rather than a task each (a target in
/// flight then costs its future and little else), and reports each record as it ends,
/// before its concurrency slot is given back. A record that finds the output's queue full
/// waits here with its slot, while the other targets go on being polled: a slow reader of
/// the records holds back new targets, never the ones in flight. Ends when the runner has
/// started its last target and every target has ended and been reported.
async fn in_flight<F>(mut started: mpsc::Receiver<F>, records: mpsc::Sender<Record>)
where
    F: Future<Output = (Record, OwnedSemaphorePermit)>,
{
    let mut targets = FuturesUnordered::new();
    let mut ended: VecDeque<(Record, OwnedSemaphorePermit)> = VecDeque::new();
    let mut starting = true;
    loop {
        tokio::select! {
            next = started.recv(), if starting => match next {
                Some(target) => targets.push(target),
                None => starting = false,
            },
            Some((record, slot)) = targets.next(), if !targets.is_empty() => {
                // In the order they ended: behind those already waiting.
                if !ended.is_empty() {
                    ended.push_back((record, slot));
                } else if let Err(TrySendError::Full(record)) = records.try_send(record) {
                    ended.push_back((record, slot));
                }
            }
            room = records.reserve(), if !ended.is_empty() => {
                let (record, _slot) = ended.pop_front().expect("a record waits");
                // Nobody reading the records any more: the record goes, its slot too.
                if let Ok(room) = room {
                    room.send(record);
                }
            }
            else => return,
        }
    }
}

/// What follows an outcome: another try after a wait, or none (not retried, or a stop was
/// requested). The outcome moves through it, so that it is never borrowed by the target's
/// future.
enum NextTry {
    After(Duration, Outcome),
    None(Outcome),
}

fn record<C: Channel>(job: &Job<C::Request>, verdict: Verdict) -> Record {
    Record {
        line: job.line,
        id: job.id.clone(),
        target: C::target(&job.request).to_string(),
        event: C::action(&job.request).to_string(),
        verdict,
    }
}

impl<C: Channel> Shared<C> {
    /// One target: intent, tries with backoff, result. Every wait but the channel's own is
    /// boxed, and what it needs moves into it, so that a target waiting for its phone (what
    /// nearly all targets in flight do) holds little more than the channel's future. An
    /// outcome is bound only in blocks that end before the next wait: a local keeps its room
    /// in the future until its scope ends, even once moved.
    async fn target(&self, job: Box<Job<C::Request>>) -> Record {
        if let Some(journal) = &self.journal {
            let intent = Box::pin(async {
                let intent = Intent {
                    key: &job.key,
                    target: C::target(&job.request),
                    event: C::action(&job.request),
                    id: job.id.as_deref(),
                    line: job.line,
                };
                journal.intent(&intent).await
            });
            if let Err(e) = intent.await {
                return record::<C>(&job, Verdict::JournalError(self.journal_failed(e)));
            }
        }
        let first = tokio::time::Instant::now();
        let journaling = {
            let (outcome, tries) = self.tries(&job.request).await;
            let total = first.elapsed();
            match &self.journal {
                Some(journal) => {
                    Box::pin(self.journal_result(journal, &job.key, outcome, tries, total))
                }
                None => {
                    return record::<C>(
                        &job,
                        Verdict::Sent {
                            outcome,
                            tries,
                            total,
                        },
                    )
                }
            }
        };
        record::<C>(&job, journaling.await)
    }

    /// Delivers until an outcome is not retried; that outcome and the tries made.
    async fn tries(&self, request: &Arc<C::Request>) -> (Outcome, u32) {
        let mut tries = 0;
        loop {
            tries += 1;
            let back_off = {
                let outcome = self.channel.deliver_shared(request).await;
                match self.next_try(tries, outcome) {
                    NextTry::None(last) => return (last, tries),
                    NextTry::After(delay, outcome) => Box::pin(self.back_off(delay, outcome)),
                }
            };
            if let Some(last) = back_off.await {
                return (last, tries);
            }
        }
    }

    /// Whether `outcome` is tried again, and after what wait.
    fn next_try(&self, tries: u32, outcome: Outcome) -> NextTry {
        let delay = self
            .retry
            .next_delay(tries, &outcome, &mut rand::thread_rng());
        match delay {
            Some(delay) if !self.stop.is_stopped() && !self.halt.is_stopped() => {
                NextTry::After(delay, outcome)
            }
            _ => NextTry::None(outcome),
        }
    }

    /// Waits `delay` before the next try; `outcome` back if a stop came first, as the
    /// target's last.
    async fn back_off(&self, delay: Duration, outcome: Outcome) -> Option<Outcome> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => None,
            _ = self.stop.stopped() => Some(outcome),
            _ = self.halt.stopped() => Some(outcome),
        }
    }

    /// Journals the result of a target that was sent; its verdict.
    async fn journal_result(
        &self,
        journal: &Journal,
        key: &str,
        outcome: Outcome,
        tries: u32,
        total: Duration,
    ) -> Verdict {
        let finished = Finished {
            key,
            outcome: outcome.kind.as_str(),
            status: outcome.status,
            reason: &outcome.reason,
            attempts: outcome.attempts,
            tries,
            elapsed_ms: outcome.elapsed.as_secs_f64() * 1000.0,
        };
        if let Err(e) = journal.result(&finished).await {
            self.journal_failed(e);
        }
        Verdict::Sent {
            outcome,
            tries,
            total,
        }
    }

    /// Records the first journal error and stops the campaign: without a journal, a resumed
    /// campaign could send twice.
    fn journal_failed(&self, e: std::io::Error) -> String {
        let message = format!("cannot write the journal: {e}");
        let mut first = self.journal_error.lock().expect("lock");
        if first.is_none() {
            *first = Some(message.clone());
        }
        self.halt.stop();
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_spaces_starts_evenly() {
        assert_eq!(period(50.0), Some(Duration::from_millis(20)));
        assert!(period(0.0).is_none() && period(f64::NAN).is_none());
        // Periods that do not fit a Duration, or round to zero: no panic, no period.
        assert!(period(1e-20).is_none() && period(1e12).is_none());
        assert_eq!(period(MIN_RATE), Some(Duration::from_secs(1000)));
        assert_eq!(period(MAX_RATE), Some(Duration::from_micros(1)));
    }

    use crate::proto::OutcomeKind;

    /// A channel whose phones answer after `latency` of (virtual) time: the first
    /// `failures` tries of each target time out, the next is delivered.
    struct FakeChannel {
        latency: Duration,
        failures: u32,
        tries: Mutex<std::collections::HashMap<String, u32>>,
    }

    impl FakeChannel {
        fn new(latency: Duration, failures: u32) -> FakeChannel {
            FakeChannel {
                latency,
                failures,
                tries: Mutex::default(),
            }
        }
    }

    impl Channel for FakeChannel {
        type Request = String;

        async fn deliver(&self, target: &String) -> Outcome {
            tokio::time::sleep(self.latency).await;
            let mut tries = self.tries.lock().unwrap();
            let n = tries.entry(target.clone()).or_default();
            *n += 1;
            let kind = if *n > self.failures {
                OutcomeKind::Delivered
            } else {
                OutcomeKind::Timeout
            };
            Outcome::unsent(kind, "fake")
        }

        fn target(target: &String) -> &str {
            target
        }

        fn action(_: &String) -> &str {
            "resync"
        }

        fn identity(target: &String) -> String {
            target.clone()
        }
    }

    /// Runs `targets` through `runner` on tokio's paused clock; the records and the
    /// virtual time the campaign took.
    async fn run_paused(runner: Runner<FakeChannel>, targets: u64) -> (Vec<Record>, Duration) {
        let (items_tx, items_rx) = mpsc::channel(4);
        let (records_tx, mut records_rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            for i in 0..targets {
                let job = Job {
                    line: i + 2,
                    key: format!("t{i}"),
                    id: None,
                    request: Arc::new(format!("sip:{i}@h")),
                };
                let _ = items_tx.send(vec![Item::Job(Box::new(job))]).await;
            }
        });
        let start = tokio::time::Instant::now();
        let end = runner.run(items_rx, records_tx, Stop::new()).await;
        assert!(!end.interrupted && end.journal_error.is_none());
        let took = start.elapsed();
        let mut records = Vec::new();
        while let Ok(record) = records_rx.try_recv() {
            records.push(record);
        }
        (records, took)
    }

    fn runner(channel: FakeChannel) -> Runner<FakeChannel> {
        Runner {
            channel,
            concurrency: 1000,
            rate: None,
            spread: None,
            retry: RetryPolicy::default(),
            journal: None,
            resume: ResumeState::default(),
            resend_unknown: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_spaces_starts_and_concurrency_bounds_what_is_in_flight() {
        let mut paced = runner(FakeChannel::new(Duration::from_millis(100), 0));
        paced.rate = Some(10.0);
        let (records, took) = run_paused(paced, 20).await;
        assert_eq!(records.len(), 20);
        assert!(records.iter().all(|r| r.verdict.is_delivered()));
        // 20 starts 100 ms apart from the first, the last answered 100 ms later.
        assert_eq!(took, Duration::from_millis(2000));

        let mut narrow = runner(FakeChannel::new(Duration::from_millis(100), 0));
        narrow.concurrency = 5;
        let (records, took) = run_paused(narrow, 20).await;
        assert_eq!(records.len(), 20);
        // Four waves of five.
        assert_eq!(took, Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_record_queue_holds_back_slots_not_the_targets_in_flight() {
        type Target =
            std::pin::Pin<Box<dyn Future<Output = (Record, OwnedSemaphorePermit)> + Send>>;
        let slots = Arc::new(Semaphore::new(3));
        let (started_tx, started_rx) = mpsc::channel::<Target>(4);
        let (records_tx, mut records_rx) = mpsc::channel(1);
        let last_ended = Arc::new(AtomicBool::new(false));
        for i in 0..3u64 {
            let slot = slots.clone().acquire_owned().await.unwrap();
            let ended = last_ended.clone();
            started_tx
                .send(Box::pin(async move {
                    if i == 2 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ended.store(true, Ordering::SeqCst);
                    }
                    let record = Record {
                        line: i,
                        id: None,
                        target: format!("t{i}"),
                        event: "resync".into(),
                        verdict: Verdict::AlreadyDelivered,
                    };
                    (record, slot)
                }))
                .await
                .unwrap();
        }
        drop(started_tx);
        let running = tokio::spawn(in_flight(started_rx, records_tx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Nobody has read a record: the first fills the queue and gives its slot back, the
        // second waits with its slot, and the third was still polled to its end.
        assert!(last_ended.load(Ordering::SeqCst));
        assert_eq!(slots.available_permits(), 1);
        let mut lines = Vec::new();
        while let Some(record) = records_rx.recv().await {
            lines.push(record.line);
        }
        assert_eq!(lines, [0, 1, 2]);
        running.await.unwrap();
        assert_eq!(slots.available_permits(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_retried_after_its_backoff_and_counted_in_tries() {
        let mut retrying = runner(FakeChannel::new(Duration::from_millis(100), 1));
        retrying.retry = RetryPolicy {
            retries: 2,
            base: Duration::from_secs(2),
            ..RetryPolicy::default()
        };
        let (records, took) = run_paused(retrying, 3).await;
        assert_eq!(records.len(), 3);
        for record in &records {
            match &record.verdict {
                Verdict::Sent {
                    outcome,
                    tries,
                    total,
                } => {
                    assert_eq!((outcome.kind, *tries), (OutcomeKind::Delivered, 2));
                    // Two tries of 100 ms and an equal-jitter backoff of 1 to 2 s.
                    assert!(*total >= Duration::from_millis(1200), "{total:?}");
                    assert!(*total <= Duration::from_millis(2200), "{total:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(took <= Duration::from_millis(2200), "{took:?}");
    }

    #[test]
    fn a_target_in_flight_holds_its_channel_future_and_a_few_words() {
        // Every target in flight is one of these futures: the outcome, the record and the
        // waits that only some targets make must not take room in it.
        fn size_of_future<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        use crate::net::Notifier;
        use crate::proto::Notify;
        let target =
            size_of_future(|s: &'static Shared<Notifier>, j: Box<Job<Notify>>| s.target(j));
        let deliver =
            size_of_future(|n: &'static Notifier, r: &'static Arc<Notify>| n.deliver_shared(r));
        assert!(
            target <= deliver + 96,
            "{target} bytes, {deliver} of them the channel's"
        );
    }

    #[tokio::test]
    async fn stop_wakes_waiters_and_stays_set() {
        let stop = Stop::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.stopped().await })
        };
        tokio::task::yield_now().await;
        stop.stop();
        waiter.await.unwrap();
        stop.stopped().await;
        assert!(stop.is_stopped());
    }
}
