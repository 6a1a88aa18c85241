//! Fetch confirmation for campaigns (`batch --confirm-fetch`): a [`Channel`] around another
//! one that, once a resync is delivered, waits for that phone's profile fetch and ends the
//! target `confirmed`, `fetch_failed` or `not_fetched`; and [`follow_log`], which reads an
//! external server's log (JSON lines, or Apache/nginx common or combined format) into a
//! [`FetchBoard`].
//!
//! The wait starts before the NOTIFY is sent (a phone may fetch before its answer is
//! read), and holds the target's concurrency slot. With a fetch rate cap, each NOTIFY
//! takes a credit that comes back one window after its phone's fetch is seen (at once
//! when none is), with `rate x window` credits: the fetches seen in any window never
//! exceed the cap, and a server that answers slowly, or phones that fetch late, slow the
//! NOTIFYs down (closed loop). Starts are also spaced by 1/rate, so the first window does
//! not start in a burst.

use super::fetch::{Confirmation, Fetch, FetchBoard, FetchKey};
use super::rule::Mac;
use crate::campaign::Channel;
use crate::proto::{Outcome, OutcomeKind};
use std::future::Future;
use std::io::{BufRead, Read, Seek};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A request whose delivery is confirmed by a fetch from this phone.
#[derive(Debug, Clone)]
pub struct Watched<R> {
    /// What the inner channel sends.
    pub request: R,
    /// How the phone's fetch is recognised.
    pub key: FetchKey,
}

impl<R> Watched<R> {
    /// Matched by the MAC address when given (a `mac` column), else by the target's IP
    /// address; `None` when neither is known.
    pub fn new(request: R, mac: Option<Mac>, addr: Option<IpAddr>) -> Option<Watched<R>> {
        let key = mac.map(FetchKey::Mac).or(addr.map(FetchKey::Addr))?;
        Some(Watched { request, key })
    }
}

/// Closed-loop pacing by the fetch rate.
#[derive(Debug)]
pub struct FetchPace {
    credits: Arc<Semaphore>,
    window: Duration,
    period: Duration,
    next: Mutex<Option<tokio::time::Instant>>,
}

impl FetchPace {
    /// At most `rate` fetches per second (`rate` > 0).
    pub fn new(rate: f64) -> FetchPace {
        // One second's worth of credits, or one credit for a rate under 1/s.
        let window = Duration::from_secs_f64((1.0 / rate).max(1.0));
        let credits = (rate * window.as_secs_f64()).round().max(1.0) as usize;
        FetchPace {
            credits: Arc::new(Semaphore::new(credits.min(Semaphore::MAX_PERMITS))),
            window,
            period: Duration::from_secs_f64(1.0 / rate),
            next: Mutex::new(None),
        }
    }

    async fn acquire(&self) -> OwnedSemaphorePermit {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + self.period);
            at
        };
        tokio::time::sleep_until(at).await;
        Arc::clone(&self.credits)
            .acquire_owned()
            .await
            .expect("never closed")
    }

    fn release(&self, credit: OwnedSemaphorePermit, fetched: bool) {
        if fetched {
            let window = self.window;
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                drop(credit);
            });
        }
    }
}

/// A channel whose delivered outcomes wait for the phone's fetch.
#[derive(Debug)]
pub struct Confirming<C> {
    inner: C,
    board: Arc<FetchBoard>,
    within: Duration,
    path_prefix: Option<String>,
    pace: Option<FetchPace>,
}

impl<C> Confirming<C> {
    /// Waits up to `within` after each delivery; only fetches whose path starts with
    /// `path_prefix` count, when given; `pace` caps the fetch rate.
    pub fn new(
        inner: C,
        board: Arc<FetchBoard>,
        within: Duration,
        path_prefix: Option<String>,
        pace: Option<FetchPace>,
    ) -> Confirming<C> {
        Confirming {
            inner,
            board,
            within,
            path_prefix,
            pace,
        }
    }
}

impl<C: Channel> Channel for Confirming<C> {
    type Request = Watched<C::Request>;

    async fn deliver(&self, watched: &Watched<C::Request>) -> Outcome {
        let credit = match &self.pace {
            Some(pace) => Some(pace.acquire().await),
            None => None,
        };
        let ticket = self
            .board
            .expect(watched.key.clone(), self.path_prefix.clone());
        let started = tokio::time::Instant::now();
        let mut outcome = self.inner.deliver(&watched.request).await;
        if outcome.kind != OutcomeKind::Delivered {
            return outcome;
        }
        let confirmation = ticket.wait(self.within).await;
        if let (Some(pace), Some(credit)) = (&self.pace, credit) {
            pace.release(credit, confirmation != Confirmation::NotFetched);
        }
        outcome.elapsed = started.elapsed();
        outcome.hint = None;
        let fetched = |f: &Fetch| {
            format!(
                "fetched {} ({} bytes{})",
                f.path,
                f.bytes,
                f.file
                    .as_deref()
                    .map_or(String::new(), |file| format!(", {file}"))
            )
        };
        match confirmation {
            Confirmation::Confirmed(f) => {
                outcome.kind = OutcomeKind::Confirmed;
                outcome.status = Some(f.status);
                outcome.reason = fetched(&f);
            }
            Confirmation::Failed(f) => {
                outcome.kind = OutcomeKind::FetchFailed;
                outcome.status = Some(f.status);
                outcome.reason = format!("fetch of {} answered {}", f.path, f.status);
            }
            Confirmation::NotFetched => {
                outcome.kind = OutcomeKind::NotFetched;
                outcome.status = None;
                outcome.reason = format!(
                    "resync delivered, no fetch within {} s",
                    self.within.as_secs_f64()
                );
            }
        }
        outcome
    }

    fn target(watched: &Watched<C::Request>) -> &str {
        C::target(&watched.request)
    }

    fn action(watched: &Watched<C::Request>) -> &str {
        C::action(&watched.request)
    }

    fn identity(watched: &Watched<C::Request>) -> String {
        C::identity(&watched.request)
    }
}

/// The longest log line read; longer ones are skipped.
const MAX_LOG_LINE: usize = 64 * 1024;

/// A log line as another server may write it: `addr`, `path` and `status` are required,
/// the rest optional (the MAC is then looked for in the path).
#[derive(Debug, serde::Deserialize)]
struct LogLine {
    #[serde(default)]
    at: f64,
    #[serde(default)]
    method: Option<String>,
    addr: IpAddr,
    path: String,
    status: u16,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    bytes: u64,
}

/// Reads one log line into a fetch, if it is one: a JSON object (as `sipnotify serve`
/// writes, or any with `addr`, `path` and `status`), or the common or combined log format
/// of Apache and nginx (`ADDR - USER [TIME] "GET PATH HTTP/1.1" STATUS BYTES "REFERER"
/// "USER-AGENT"`, whose time is taken as the time the line is read).
pub fn parse_log_line(line: &str) -> Option<Fetch> {
    let (at, addr, path, status, bytes, mac, file, agent) = if line.trim_start().starts_with('{') {
        let l: LogLine = serde_json::from_str(line).ok()?;
        if !l
            .method
            .as_deref()
            .is_none_or(super::fetch::is_fetch_method)
        {
            return None;
        }
        (l.at, l.addr, l.path, l.status, l.bytes, l.mac, l.file, None)
    } else {
        let (addr, rest) = line.trim().split_once(' ')?;
        let quoted: Vec<&str> = rest.split('"').skip(1).step_by(2).collect();
        let mut request = quoted.first()?.split(' ');
        if !super::fetch::is_fetch_method(request.next()?) {
            return None;
        }
        let path = request.next()?.to_string();
        let mut after = rest.split('"').nth(2)?.split_whitespace();
        let status = after.next()?.parse().ok()?;
        let bytes = after.next().and_then(|b| b.parse().ok()).unwrap_or(0);
        let agent = (quoted.len() >= 3).then(|| quoted[quoted.len() - 1].to_string());
        let at = super::fetch::unix_now();
        (
            at,
            addr.parse().ok()?,
            path,
            status,
            bytes,
            None,
            None,
            agent,
        )
    };
    let mac = mac
        .as_deref()
        .and_then(|m| Mac::parse(m).ok())
        .or_else(|| super::fetch::mac_in(&path))
        .or_else(|| agent.as_deref().and_then(super::fetch::mac_in));
    Some(Fetch {
        at,
        addr: addr.to_canonical(),
        path: crate::text::printable(&path, false).into_owned(),
        mac: mac.map(|m| m.ma()),
        file,
        status,
        bytes,
        encoding: super::fetch::Encoding::Identity,
        note: None,
        method: None,
    })
}

/// Follows a log from its current end (earlier lines are other campaigns'), handing
/// each new fetch to `board`, every 20 ms until the task is dropped. A file that shrinks
/// (rotated, truncated) is read again from its start.
pub fn follow_log(
    path: PathBuf,
    board: Arc<FetchBoard>,
) -> std::io::Result<impl Future<Output = ()> + Send> {
    let mut file = std::fs::File::open(&path)?;
    let mut offset = file.seek(std::io::SeekFrom::End(0))?;
    Ok(async move {
        let mut partial: Vec<u8> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let len = std::fs::metadata(&path).map_or(offset, |m| m.len());
            if len < offset {
                offset = 0;
                partial.clear();
            }
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
                continue;
            }
            let mut reader = std::io::BufReader::new(file);
            loop {
                let mut chunk = Vec::new();
                let read = (&mut reader)
                    .take((MAX_LOG_LINE + 1) as u64)
                    .read_until(b'\n', &mut chunk)
                    .unwrap_or(0);
                if read == 0 {
                    break;
                }
                offset += read as u64;
                partial.extend_from_slice(&chunk);
                if !partial.ends_with(b"\n") {
                    if partial.len() > MAX_LOG_LINE {
                        partial.clear();
                    }
                    continue;
                }
                if let Some(fetch) = std::str::from_utf8(&partial).ok().and_then(parse_log_line) {
                    board.record(&fetch);
                }
                partial.clear();
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_of_sipnotify_serve_and_of_others() {
        let f = parse_log_line(r#"{"at":1.5,"addr":"127.0.0.2","path":"/cfg/000e08012345.xml","mac":null,"file":"cfg/default.xml","status":200,"bytes":10,"encoding":"identity"}"#).unwrap();
        assert_eq!((f.status, f.mac.as_deref()), (200, Some("000e08012345")));
        let f = parse_log_line(r#"{"addr":"::ffff:10.0.0.7","path":"/x","status":404}"#).unwrap();
        assert_eq!(f.addr, "10.0.0.7".parse::<IpAddr>().unwrap());
        assert!(parse_log_line(r#"{"addr":"nope","path":"/x","status":404}"#).is_none());
        let f = parse_log_line(r#"10.0.0.7 - prov [01/Dec/2026:10:00:00 +0000] "GET /cfg/x.xml HTTP/1.1" 404 153 "-" "Cisco-CP-8845-3PCC/12.0.1 (00562b043615)""#).unwrap();
        assert_eq!(
            (f.addr.to_string(), f.path.as_str(), f.status, f.bytes),
            ("10.0.0.7".into(), "/cfg/x.xml", 404, 153)
        );
        assert_eq!(f.mac.as_deref(), Some("00562b043615"));
        let f = parse_log_line(
            r#"::1 - - [01/Dec/2026:10:00:00 +0000] "GET /c/000e08012345.xml HTTP/1.0" 200 -"#,
        )
        .unwrap();
        assert_eq!((f.mac.as_deref(), f.bytes), (Some("000e08012345"), 0));
        assert!(parse_log_line("garbage").is_none());
        assert!(parse_log_line(r#"1.2.3.4 - - [x] "GET" 200 1"#).is_none());
    }

    /// A channel whose phones answer `kind` at once, and then fetch (from the board's
    /// point of view) with `status` after 10 ms, when given.
    struct Phones {
        kind: OutcomeKind,
        fetch: Option<u16>,
        board: Arc<FetchBoard>,
    }

    impl Channel for Phones {
        type Request = IpAddr;

        async fn deliver(&self, addr: &IpAddr) -> Outcome {
            if let Some(status) = self.fetch {
                let (board, addr) = (Arc::clone(&self.board), *addr);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    board.record(&Fetch {
                        at: 0.0,
                        addr,
                        path: "/cfg/a.xml".into(),
                        mac: None,
                        file: Some("cfg/default.xml".into()),
                        status,
                        bytes: 7,
                        encoding: super::super::fetch::Encoding::Identity,
                        note: None,
                        method: None,
                    });
                });
            }
            Outcome::unsent(self.kind, "phone")
        }
        fn target(_: &IpAddr) -> &str {
            "t"
        }
        fn action(_: &IpAddr) -> &str {
            "resync"
        }
        fn identity(addr: &IpAddr) -> String {
            addr.to_string()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delivered_outcomes_wait_for_the_fetch() {
        let addr: IpAddr = "127.0.0.5".parse().unwrap();
        let watched = Watched::new(addr, None, Some(addr)).unwrap();
        let run = |kind, fetch| {
            let board = FetchBoard::new();
            let phones = Phones {
                kind,
                fetch,
                board: Arc::clone(&board),
            };
            let channel = Confirming::new(phones, board, Duration::from_secs(2), None, None);
            let watched = watched.clone();
            async move { channel.deliver(&watched).await }
        };
        let o = run(OutcomeKind::Delivered, Some(200)).await;
        assert_eq!((o.kind, o.status), (OutcomeKind::Confirmed, Some(200)));
        assert_eq!(o.reason, "fetched /cfg/a.xml (7 bytes, cfg/default.xml)");
        assert_eq!(o.elapsed, Duration::from_millis(10));
        let o = run(OutcomeKind::Delivered, Some(404)).await;
        assert_eq!((o.kind, o.status), (OutcomeKind::FetchFailed, Some(404)));
        let o = run(OutcomeKind::Delivered, None).await;
        assert_eq!((o.kind, o.status), (OutcomeKind::NotFetched, None));
        assert_eq!(o.elapsed, Duration::from_secs(2));
        // What was not delivered is not waited for.
        let o = run(OutcomeKind::Timeout, Some(200)).await;
        assert_eq!(o.kind, OutcomeKind::Timeout);
        assert!(Watched::new(addr, None, None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn fetch_pace_spaces_and_holds_credits_for_a_window() {
        let pace = FetchPace::new(2.0);
        let t0 = tokio::time::Instant::now();
        let a = pace.acquire().await;
        let b = pace.acquire().await;
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        pace.release(a, true);
        // Both credits are out: the third start waits for the first one's window to end
        // (a second after its fetch), not only for its turn at 1 s.
        let _c = pace.acquire().await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1500));
        // A target with no fetch gives its credit back at once.
        pace.release(b, false);
        let _d = pace.acquire().await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1500));
    }
}
