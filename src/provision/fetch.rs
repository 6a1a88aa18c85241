//! Fetches: the JSON line a provisioning server writes for each request ([`Fetch`]), the
//! MAC address found in a path or a User-Agent, and the [`FetchBoard`] on which a campaign
//! waits for a phone's fetch after its resync NOTIFY.
//!
//! The board is filled by the server in the same process (`batch --serve`) or by a task
//! that follows an external server's log (`batch --fetch-log`), and is matched by the
//! phone's address or its MAC address.

use super::rule::Mac;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How a body was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// As it is on disk.
    Identity,
    /// `openssl enc -aes-256-cbc` format (on the fly, or already so on disk).
    #[serde(rename = "aes-256-cbc")]
    Aes256Cbc,
    /// RFC 8188, with `Content-Encoding: aes128gcm`.
    Aes128gcm,
}

/// One request to the provisioning server: a line of its JSON log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// Unix time, in seconds.
    pub at: f64,
    /// The client's address (the phone's, unless a proxy is in between).
    pub addr: IpAddr,
    /// The request path, as received (percent-encoded, query included), made printable.
    pub path: String,
    /// The MAC address found in the path, else in the User-Agent (lowercase hex).
    pub mac: Option<String>,
    /// The file served, relative to the served directory.
    pub file: Option<String>,
    /// The HTTP status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// How the body was encoded.
    pub encoding: Encoding,
    /// Why a request was refused (outside the directory, no credentials, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The method when it is not GET (`HEAD`, or `POST`/`PUT`: a configuration report
    /// uploaded): only GET and HEAD are fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl Fetch {
    /// Whether the request fetched (GET or HEAD), rather than uploaded a report.
    pub fn is_fetch(&self) -> bool {
        self.method.as_deref().is_none_or(is_fetch_method)
    }
}

/// GET and HEAD fetch; a report upload (POST, PUT) in a log is not a fetch.
pub fn is_fetch_method(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

/// The first MAC address in `text`: 12 hex digits not touching another hex digit, or six
/// pairs separated by `:` or `-`. Cisco MPP's User-Agent carries it in parentheses
/// (`Cisco-CP-8845-3PCC/11.3.1 (00562b043615)`), and paths carry it by `$MA`.
pub fn mac_in(text: &str) -> Option<Mac> {
    let bytes = text.as_bytes();
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    for start in 0..bytes.len() {
        if !hex(start) {
            continue;
        }
        // Plain: exactly 12 hex digits, not part of a longer run.
        let alone = start == 0 || !hex(start - 1);
        if alone && (start..start + 12).all(hex) && !hex(start + 12) {
            return Mac::parse(&text[start..start + 12]).ok();
        }
        // Separated: xx:xx:xx:xx:xx:xx (or with -), checked as bytes before slicing.
        let Some(candidate) = bytes.get(start..start + 17) else {
            continue;
        };
        let sep = candidate[2];
        let shaped = candidate.iter().enumerate().all(|(i, b)| {
            if i % 3 == 2 {
                *b == sep
            } else {
                b.is_ascii_hexdigit()
            }
        });
        if matches!(sep, b':' | b'-') && shaped && !hex(start + 17) {
            return Mac::parse(&text[start..start + 17]).ok();
        }
    }
    None
}

/// The time now in Unix seconds, as log lines carry it.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a phone is known by in fetches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FetchKey {
    /// The address the fetch comes from.
    Addr(IpAddr),
    /// The MAC address in the path or User-Agent.
    Mac(Mac),
}

/// What became of the wait for a phone's fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// Fetched with a 2xx.
    Confirmed(Fetch),
    /// Fetched, answered 4xx/5xx (a 401 only when no fetch with credentials followed).
    Failed(Fetch),
    /// No fetch in time.
    NotFetched,
}

/// One wait: its id, the path prefix a fetch must have to count, and where to send it.
type Waiter = (u64, Option<String>, oneshot::Sender<Fetch>);
type Waiters = HashMap<FetchKey, Vec<Waiter>>;

/// Where fetches meet the campaign records waiting for them.
#[derive(Debug, Default)]
pub struct FetchBoard {
    waiters: Mutex<Waiters>,
    next: AtomicU64,
}

impl FetchBoard {
    /// An empty board.
    pub fn new() -> Arc<FetchBoard> {
        Arc::new(FetchBoard::default())
    }

    /// Hands a fetch to whoever waits for its address or its MAC.
    pub fn record(&self, fetch: &Fetch) {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = [
            Some(FetchKey::Addr(fetch.addr)),
            fetch
                .mac
                .as_deref()
                .and_then(|m| Mac::parse(m).ok())
                .map(FetchKey::Mac),
        ];
        for key in keys.into_iter().flatten() {
            let Some(list) = waiters.get_mut(&key) else {
                continue;
            };
            let counts = |prefix: &Option<String>| {
                prefix.as_deref().is_none_or(|p| fetch.path.starts_with(p))
            };
            for (_, _, tx) in list.extract_if(.., |(_, prefix, _)| counts(prefix)) {
                let _ = tx.send(fetch.clone());
            }
            if list.is_empty() {
                waiters.remove(&key);
            }
        }
    }

    /// Starts waiting for `key`'s next fetch whose path starts with `prefix` (any path
    /// when `None`; a prefix names the last rule's file, fetched only once the earlier
    /// profiles applied). Call it before the NOTIFY goes out: a phone may fetch before the
    /// NOTIFY's answer is read.
    pub fn expect(self: &Arc<Self>, key: FetchKey, prefix: Option<String>) -> Ticket {
        let id = self.next.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .push((id, prefix.clone(), tx));
        Ticket {
            board: Arc::clone(self),
            key,
            prefix,
            id,
            rx,
        }
    }
}

/// A wait for one phone's fetch; dropping it stops waiting.
#[derive(Debug)]
pub struct Ticket {
    board: Arc<FetchBoard>,
    key: FetchKey,
    prefix: Option<String>,
    id: u64,
    rx: oneshot::Receiver<Fetch>,
}

impl Ticket {
    /// Waits up to `within` for the phone's fetch. A 2xx confirms; a 401 waits on for the
    /// fetch with credentials that a phone sends next (HTTP authentication is challenged
    /// first); any other status fails at once.
    pub async fn wait(mut self, within: Duration) -> Confirmation {
        let deadline = tokio::time::Instant::now() + within;
        let mut challenged = None;
        loop {
            let fetch = match tokio::time::timeout_at(deadline, &mut self.rx).await {
                Ok(Ok(fetch)) => fetch,
                _ => return challenged.map_or(Confirmation::NotFetched, Confirmation::Failed),
            };
            match fetch.status {
                200..=299 => return Confirmation::Confirmed(fetch),
                401 => {
                    challenged = Some(fetch);
                    let again = self.board.expect(self.key.clone(), self.prefix.clone());
                    self = again;
                }
                _ => return Confirmation::Failed(fetch),
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut waiters = self
            .board
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = waiters.get_mut(&self.key) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                waiters.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(addr: &str, mac: Option<&str>, status: u16) -> Fetch {
        Fetch {
            at: 0.0,
            addr: addr.parse().unwrap(),
            path: "/cfg/x.xml".into(),
            mac: mac.map(str::to_string),
            file: None,
            status,
            bytes: 0,
            encoding: Encoding::Identity,
            note: None,
            method: None,
        }
    }

    #[test]
    fn macs_in_paths_and_user_agents() {
        let m = |t: &str| mac_in(t).map(|m| m.ma());
        assert_eq!(m("/cfg/000E08012345.xml").as_deref(), Some("000e08012345"));
        assert_eq!(
            m("Cisco-CP-8845-3PCC/11.3.1 (00562b043615)").as_deref(),
            Some("00562b043615")
        );
        assert_eq!(
            m("/spa00:0e:08:01:23:45.cfg").as_deref(),
            Some("000e08012345")
        );
        assert_eq!(m("/x/0123456789abcd.xml"), None); // 14 hex digits: not a MAC
        assert_eq!(m("/x/00:0e:08:01:23.xml"), None);
        assert_eq!(m("/default.xml"), None);
        assert_eq!(m("é000e08012345é").as_deref(), Some("000e08012345"));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_match_by_address_or_mac() {
        let board = FetchBoard::new();
        let by_addr = board.expect(FetchKey::Addr("127.0.0.2".parse().unwrap()), None);
        let by_mac = board.expect(FetchKey::Mac(Mac::parse("000e08012345").unwrap()), None);
        let idle = board.expect(FetchKey::Addr("127.0.0.9".parse().unwrap()), None);
        board.record(&fetch("127.0.0.2", None, 200));
        board.record(&fetch("127.0.0.3", Some("000e08012345"), 404));
        let s = Duration::from_secs(5);
        assert!(matches!(by_addr.wait(s).await, Confirmation::Confirmed(f) if f.status == 200));
        assert!(matches!(by_mac.wait(s).await, Confirmation::Failed(f) if f.status == 404));
        assert_eq!(idle.wait(s).await, Confirmation::NotFetched);
        assert!(board.waiters.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_prefix_waits_for_the_last_rules_file() {
        let board = FetchBoard::new();
        let key = FetchKey::Addr("127.0.0.2".parse().unwrap());
        let ticket = board.expect(key.clone(), Some("/ok/".into()));
        let mut profile = fetch("127.0.0.2", None, 200);
        profile.path = "/cfg/a.xml".into();
        board.record(&profile);
        let mut beacon = fetch("127.0.0.2", None, 200);
        beacon.path = "/ok/a".into();
        let b = Arc::clone(&board);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.record(&beacon);
        });
        let got = ticket.wait(Duration::from_secs(5)).await;
        assert!(matches!(got, Confirmation::Confirmed(f) if f.path == "/ok/a"));
        let ticket = board.expect(key, Some("/ok/".into()));
        board.record(&profile);
        assert_eq!(
            ticket.wait(Duration::from_secs(5)).await,
            Confirmation::NotFetched
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_challenge_waits_for_the_fetch_with_credentials() {
        let board = FetchBoard::new();
        let key = FetchKey::Addr("127.0.0.2".parse().unwrap());
        let ticket = board.expect(key.clone(), None);
        let b = Arc::clone(&board);
        tokio::spawn(async move {
            b.record(&fetch("127.0.0.2", None, 401));
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.record(&fetch("127.0.0.2", None, 200));
        });
        let s = Duration::from_secs(5);
        assert!(matches!(ticket.wait(s).await, Confirmation::Confirmed(_)));
        let ticket = board.expect(key, None);
        board.record(&fetch("127.0.0.2", None, 401));
        assert!(matches!(ticket.wait(s).await, Confirmation::Failed(f) if f.status == 401));
        assert!(board.waiters.lock().unwrap().is_empty());
    }
}
