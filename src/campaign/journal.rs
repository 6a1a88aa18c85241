//! The campaign journal: append-only JSON Lines. Its first record says what the campaign
//! is; each run then records its pid, an `intent` before a target's first send and a
//! `result` when it ends.
//!
//! ```text
//! {"type":"campaign","channel":"sip-notify","fields":{"event":"reboot"},"version":1,"at":1718000000.001}
//! {"type":"run","pid":4242,"at":1718000000.002}
//! {"type":"intent","key":"sip:159@10.0.0.7 reboot_now","target":"sip:159@10.0.0.7","event":"reboot_now","id":"desk-7","line":9,"at":1718000000.123}
//! {"type":"result","key":"sip:159@10.0.0.7 reboot_now","outcome":"delivered","status":200,"reason":"OK","attempts":2,"tries":1,"elapsed_ms":12.5,"at":1718000000.136}
//! ```
//!
//! A run holds an exclusive lock on the journal (an OS file lock, which the kernel drops
//! when the process dies), so two runs never share one. Records are written by one thread
//! in whole lines. With [`SyncMode::Batch`] the intents of the targets about to start are
//! written and synced to the disk together (a group commit of the intents of up to 300 µs)
//! before any of them is sent, so a resumed campaign never acts on a phone twice, even
//! after a power cut; results are written in batches gathered over up to a millisecond,
//! and synced lazily and at the end. Passwords are never written.
//!
//! Reading a journal keeps one key per journaled target, in two sets (delivered, and
//! started with no result), not the records.

use super::html::Span;
use super::record::{Record, Verdict};
use crate::proto::outcome::hint_for;
use crate::proto::{Outcome, OutcomeKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// The version of the journal's records.
const VERSION: u32 = 1;

/// What a campaign does: the first record of its journal. A journal is resumed only by
/// the same campaign, so that a resync's journal never makes a reboot skip its phones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// The delivery channel (`sip-notify`).
    pub channel: String,
    /// What every row gets unless it says otherwise (event, URL, body digest...), never a
    /// password.
    pub fields: BTreeMap<String, String>,
}

/// When intent records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Synced (fdatasync) before the targets they name are sent, many in one sync.
    #[default]
    Batch,
    /// Left to the kernel: a process killed loses nothing, a power cut may lose the last
    /// records, and a resumed campaign may then act on those phones again.
    Off,
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A device, a directory, `/dev/null` (or a link to one): resuming would resend
    /// everything.
    #[error(
        "it is not a regular file (a device, such as /dev/null, would keep nothing); name a file"
    )]
    NotAFile,
    /// Another run holds the lock.
    #[error("another run is using it{}; wait for it to end, or use another --journal", pid.map_or(String::new(), |p| format!(" (pid {p})")))]
    Busy {
        /// The other run's pid, from its `run` record.
        pid: Option<u32>,
    },
    /// The journal is another campaign's.
    #[error("it was written by another campaign: its {field} is {journal}, this run's is {this}; use a new --journal for this campaign")]
    Mismatch {
        /// What differs.
        field: String,
        /// The journal's value.
        journal: String,
        /// This run's value.
        this: String,
    },
    /// Records with no campaign record first.
    #[error("it does not start with a campaign record (not a journal of this version); use a new --journal")]
    NoHeader,
}

/// What a previous run left: the keys delivered, and the keys started with no result.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// Keys whose last result was `delivered`.
    pub delivered: HashSet<String>,
    /// Keys with an intent and no result after it: they may or may not have been sent.
    pub unknown: HashSet<String>,
    /// Lines that could not be read (a torn last line after a crash).
    pub unreadable: u64,
}

impl ResumeState {
    /// Reads a journal, line by line. Unreadable lines are counted and skipped.
    pub fn read(reader: impl BufRead) -> io::Result<ResumeState> {
        #[derive(Deserialize)]
        struct Light {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            key: Option<String>,
            #[serde(default)]
            outcome: Option<String>,
        }
        struct Keyed {
            key: String,
            outcome: Option<String>,
        }
        let mut state = ResumeState::default();
        for line in reader.split(b'\n') {
            let line = line?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<Light>(&line) else {
                state.unreadable += 1;
                continue;
            };
            let (kind, key) = match (record.kind.as_str(), record.key) {
                ("campaign" | "run", _) => continue,
                (kind, Some(key)) => (kind, key),
                (_, None) => {
                    state.unreadable += 1;
                    continue;
                }
            };
            let record = Keyed {
                key,
                outcome: record.outcome,
            };
            match kind {
                "intent" => {
                    state.delivered.remove(&record.key);
                    state.unknown.insert(record.key);
                }
                "result" => {
                    state.unknown.remove(&record.key);
                    // A confirmed fetch (--confirm-fetch) is a delivery too: not resent.
                    if matches!(record.outcome.as_deref(), Some("delivered" | "confirmed")) {
                        state.delivered.insert(record.key);
                    } else {
                        state.delivered.remove(&record.key);
                    }
                }
                _ => state.unreadable += 1,
            }
        }
        Ok(state)
    }
}

/// An intent record.
#[derive(Debug, Clone, Serialize)]
pub struct Intent<'a> {
    /// The row's key.
    pub key: &'a str,
    /// The Request-URI.
    pub target: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The row's `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The input line.
    pub line: u64,
}

/// A result record.
#[derive(Debug, Clone, Serialize)]
pub struct Finished<'a> {
    /// The row's key.
    pub key: &'a str,
    /// `delivered`, `timeout`, ...
    pub outcome: &'a str,
    /// The final status.
    pub status: Option<u16>,
    /// The reason phrase or what went wrong.
    pub reason: &'a str,
    /// NOTIFYs sent in the last try.
    pub attempts: u32,
    /// Tries (1 + retries).
    pub tries: u32,
    /// Time of the last try.
    pub elapsed_ms: f64,
}

/// A waiting record's answer: written (and synced), or the error that stopped the writer.
type Written = oneshot::Sender<Result<(), io::ErrorKind>>;

/// What the campaign's tasks have handed to the writer thread and it has not written yet.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// The records waiting for the write (and sync) of their lines.
    waiting: Vec<Written>,
    /// Whether any line pending must be synced before its waiter is told.
    sync: bool,
    /// When the first intent pending was handed in: its target waits for it to start, so
    /// it waits only [`Gather::intents`] for company. Results alone wait up to
    /// [`Gather::results`].
    urgent: Option<Instant>,
    /// What the writer waits for, and so which records wake it. Records handed in while it
    /// writes wake nobody, and go in its next write.
    idle: Idle,
    /// [`Journal::finish`] was called: the writer writes what is pending and ends.
    closed: bool,
    /// The first write error: every later record fails with it.
    failed: Option<io::ErrorKind>,
}

/// What the writer thread is waiting for.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing: it is writing, and takes what is pending next.
    #[default]
    Busy,
    /// Any record: nothing is pending.
    Empty,
    /// More records, until its gathering time has passed: only a first intent, a full
    /// batch or the end wakes it earlier.
    Gathering,
}

/// How long records wait for company before they are written: one wake of the writer and
/// one write (and sync) for all the records of that time, rather than for each.
#[derive(Debug, Clone, Copy)]
struct Gather {
    /// For results. A target's slot and record wait for its result, so this is also the
    /// most it adds to a target.
    results: Duration,
    /// For the first intent pending, which takes the results pending with it. Its target
    /// waits for the sync, which it then shares with the intents of this time: a group
    /// commit.
    intents: Duration,
}

const GATHER: Gather = Gather {
    results: Duration::from_millis(1),
    intents: Duration::from_micros(300),
};

/// Pending bytes that are written without waiting for the rest of the gathering time.
const GATHER_BYTES: usize = 256 * 1024;

/// The state the campaign's tasks share with the writer thread.
struct Shared {
    file: Mutex<File>,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// How long records wait for company: [`GATHER`], but for tests.
    gather: Gather,
    syncs: AtomicU64,
    #[cfg(test)]
    writes: AtomicU64,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("syncs", &self.syncs)
            .finish_non_exhaustive()
    }
}

/// The open journal, shared by all the tasks of a campaign. Records go to one writer
/// thread, which writes what is pending in one write and syncs it when an intent asks.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    sync: SyncMode,
}

impl Journal {
    /// Opens (or creates) the journal for the campaign `description`: takes its lock,
    /// checks it is this campaign's, reads what earlier runs left, and gets it ready to
    /// append (ending a torn last line first).
    pub fn open(
        path: &Path,
        description: &Description,
        sync: SyncMode,
    ) -> Result<(Journal, ResumeState), JournalError> {
        Journal::open_gathering(path, description, sync, GATHER)
    }

    fn open_gathering(
        path: &Path,
        description: &Description,
        sync: SyncMode,
        gather: Gather,
    ) -> Result<(Journal, ResumeState), JournalError> {
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(JournalError::NotAFile);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(JournalError::NotAFile);
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(JournalError::Busy {
                    pid: last_run_pid(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(&mut file);
        let header = first_record(&mut reader)?;
        let state = ResumeState::read(reader)?;
        let empty = end_torn_line(&mut file)? == 0;
        match header {
            Some(header) => check_header(&header, description)?,
            None if empty => {}
            None => return Err(JournalError::NoHeader),
        }
        let shared = Arc::new(Shared {
            file: Mutex::new(file),
            pending: Mutex::default(),
            wake: Condvar::new(),
            gather,
            syncs: AtomicU64::new(0),
            #[cfg(test)]
            writes: AtomicU64::new(0),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("campaign-journal".into())
                .spawn(move || write_pending(&shared))?
        };
        let journal = Journal {
            shared,
            writer: Mutex::new(Some(writer)),
            sync,
        };
        if empty {
            journal.append_now(
                "campaign",
                &Header {
                    channel: &description.channel,
                    fields: &description.fields,
                    version: VERSION,
                },
            )?;
        }
        journal.append_now(
            "run",
            &Run {
                pid: std::process::id(),
            },
        )?;
        Ok((journal, state))
    }

    /// Writes an intent record; returns once it is written, and synced to the disk unless
    /// the sync mode is off. Intents handed in within [`Gather::intents`] of each other
    /// share one write and one sync.
    pub async fn intent(&self, intent: &Intent<'_>) -> io::Result<()> {
        self.append("intent", intent, true, self.sync == SyncMode::Batch)
            .await
    }

    /// Writes a result record; returns once it is written (synced lazily), so that a
    /// target's record is reported only once its result is in the journal.
    pub async fn result(&self, outcome: &Finished<'_>) -> io::Result<()> {
        self.append("result", outcome, false, false).await
    }

    /// Hands the line of `record` to the writer (written straight into its pending bytes)
    /// and waits until it is written, and synced if `sync`; `urgent` if it must wait no more
    /// than [`Gather::intents`] for others to share its write.
    async fn append(
        &self,
        kind: &str,
        record: &impl Serialize,
        urgent: bool,
        sync: bool,
    ) -> io::Result<()> {
        let (done, written) = oneshot::channel();
        {
            let mut pending = self.shared.pending();
            if let Some(kind) = pending.failed {
                return Err(kind.into());
            }
            if pending.closed {
                return Err(io::Error::other("the journal is closed"));
            }
            write_line(&mut pending.bytes, kind, record)?;
            pending.waiting.push(done);
            pending.sync |= sync;
            let first_urgent = urgent && pending.urgent.is_none();
            if first_urgent {
                pending.urgent = Some(Instant::now());
            }
            let wake = match pending.idle {
                Idle::Busy => false,
                Idle::Empty => true,
                Idle::Gathering => first_urgent || pending.bytes.len() >= GATHER_BYTES,
            };
            if wake {
                pending.idle = Idle::Busy;
                self.shared.wake.notify_one();
            }
        }
        match written.await {
            Ok(result) => result.map_err(io::Error::from),
            Err(_) => Err(io::Error::other("the journal writer has stopped")),
        }
    }

    /// How many times the writer synced a group of records to the disk.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// How many writes the writer made, each of every record pending then.
    #[cfg(test)]
    fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// Writes what is pending, syncs the journal to the disk and stops its writer: the
    /// end of a campaign. The first write error of the run, if any.
    pub fn finish(&self) -> io::Result<()> {
        {
            let mut pending = self.shared.pending();
            pending.closed = true;
            self.shared.wake.notify_one();
        }
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
        if let Some(kind) = self.shared.pending().failed {
            return Err(kind.into());
        }
        self.lock().sync_data()
    }

    /// Holds the journal so no record is being written, e.g. while the process exits,
    /// after writing the records pending and syncing what is written.
    pub fn lock(&self) -> MutexGuard<'_, File> {
        let mut file = self.shared.file();
        let bytes = std::mem::take(&mut self.shared.pending().bytes);
        let _ = file.write_all(&bytes);
        let _ = file.sync_data();
        file
    }

    /// Writes a record at once from the caller's thread, synced.
    fn append_now(&self, kind: &str, record: &impl Serialize) -> io::Result<()> {
        let line = line(kind, record)?;
        let mut file = self.shared.file();
        file.write_all(&line)?;
        file.sync_data()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[derive(Serialize)]
struct Header<'a> {
    channel: &'a str,
    fields: &'a BTreeMap<String, String>,
    version: u32,
}

#[derive(Serialize)]
struct Run {
    pid: u32,
}

/// One JSON line: `type`, the record's fields in their order, then the time.
fn line(kind: &str, record: &impl Serialize) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(256);
    write_line(&mut line, kind, record)?;
    Ok(line)
}

/// Appends the [`line`] of `record` to `bytes`; on an error leaves `bytes` as it was.
fn write_line(bytes: &mut Vec<u8>, kind: &str, record: &impl Serialize) -> io::Result<()> {
    let start = bytes.len();
    let written = format_line(bytes, kind, record);
    if written.is_err() {
        bytes.truncate(start);
    }
    written
}

fn format_line(line: &mut Vec<u8>, kind: &str, record: &impl Serialize) -> io::Result<()> {
    // The time to the millisecond (truncated), written as integers: no float formatting.
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    write!(line, "{{\"type\":\"{kind}\"").expect("writing to a Vec");
    let fields = line.len();
    serde_json::to_writer(&mut *line, record).map_err(io::Error::other)?;
    // The record is an object whose fields go inside the line's, after `type`: its opening
    // brace becomes their comma (gone with no fields), its closing one ends the line.
    if line.get(fields) != Some(&b'{') || line.pop() != Some(b'}') {
        return Err(io::Error::other("a journal record must be an object"));
    }
    match line.len() - fields {
        1 => line.truncate(fields),
        _ => line[fields] = b',',
    }
    writeln!(line, ",\"at\":{}.{:03}}}", at / 1000, at % 1000).expect("writing to a Vec");
    Ok(())
}

/// The writer thread: everything pending in one write, synced when an intent asks, then
/// each waiting record told. Records wait for more (see [`Gather`]) unless a batch is full.
fn write_pending(shared: &Shared) {
    let mut bytes = Vec::new();
    let mut waiting = Vec::new();
    loop {
        let sync = {
            let mut pending = shared.pending();
            let mut gathering = None;
            loop {
                if pending.closed || pending.bytes.len() >= GATHER_BYTES {
                    break;
                }
                let intents = pending
                    .urgent
                    .map(|first| shared.gather.intents.saturating_sub(first.elapsed()));
                if intents.is_none() && pending.waiting.is_empty() {
                    gathering = None;
                    pending.idle = Idle::Empty;
                    pending = shared
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                let since = *gathering.get_or_insert_with(Instant::now);
                let results = shared.gather.results.saturating_sub(since.elapsed());
                let left = intents.map_or(results, |intents| intents.min(results));
                if left.is_zero() {
                    break;
                }
                pending.idle = Idle::Gathering;
                pending = shared
                    .wake
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            pending.idle = Idle::Busy;
            if pending.closed && pending.bytes.is_empty() && pending.waiting.is_empty() {
                return;
            }
            std::mem::swap(&mut bytes, &mut pending.bytes);
            std::mem::swap(&mut waiting, &mut pending.waiting);
            pending.urgent = None;
            std::mem::take(&mut pending.sync)
        };
        let result = {
            let mut file = shared.file();
            #[cfg(test)]
            shared.writes.fetch_add(1, Ordering::Relaxed);
            file.write_all(&bytes).and_then(|()| match sync {
                true => {
                    shared.syncs.fetch_add(1, Ordering::Relaxed);
                    file.sync_data()
                }
                false => Ok(()),
            })
        };
        let result = result.map_err(|e| e.kind());
        if let Err(kind) = result {
            shared.pending().failed.get_or_insert(kind);
        }
        for done in waiting.drain(..) {
            let _ = done.send(result);
        }
        bytes.clear();
    }
}

/// The first record of a journal, if it is a campaign record; `Ok(None)` for an empty
/// journal or one that starts with something else.
fn first_record(reader: &mut impl BufRead) -> io::Result<Option<Description>> {
    #[derive(Deserialize)]
    struct First {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        channel: String,
        #[serde(default)]
        fields: BTreeMap<String, String>,
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        return Ok(serde_json::from_slice::<First>(&line)
            .ok()
            .filter(|f| f.kind == "campaign")
            .map(|f| Description {
                channel: f.channel,
                fields: f.fields,
            }));
    }
}

/// The pid of the last run recorded in a journal, read without its lock.
fn last_run_pid(file: &mut File) -> Option<u32> {
    #[derive(Deserialize)]
    struct RunRecord {
        #[serde(rename = "type")]
        kind: String,
        pid: Option<u32>,
    }
    file.seek(SeekFrom::Start(0)).ok()?;
    BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice::<RunRecord>(&l).ok())
        .filter(|r| r.kind == "run")
        .last()
        .and_then(|r| r.pid)
}

/// Refuses a journal written by another campaign, naming the first difference.
fn check_header(journal: &Description, this: &Description) -> Result<(), JournalError> {
    let mismatch = |field: &str, journal: &str, this: &str| JournalError::Mismatch {
        field: field.to_string(),
        journal: shown(journal),
        this: shown(this),
    };
    if journal.channel != this.channel {
        return Err(mismatch("channel", &journal.channel, &this.channel));
    }
    let names: std::collections::BTreeSet<&String> =
        journal.fields.keys().chain(this.fields.keys()).collect();
    for name in names {
        let (a, b) = (journal.fields.get(name), this.fields.get(name));
        if a != b {
            return Err(mismatch(
                name,
                a.map_or("", String::as_str),
                b.map_or("", String::as_str),
            ));
        }
    }
    Ok(())
}

fn shown(value: &str) -> String {
    if value.is_empty() {
        "(none)".to_string()
    } else {
        format!("`{}`", crate::text::printable(value, false))
    }
}

/// What a set of journals (the shards of one campaign, or the runs of one) says of each
/// target: one record per target, as a single run would report it.
#[derive(Debug)]
pub struct Merged {
    /// The campaign all the journals belong to.
    pub description: Description,
    /// One record per target: its last result, or `unknown` when it was started and no
    /// result followed.
    pub records: Vec<Record>,
    /// When each record's target started (its last intent) and ended (its result), by
    /// index of `records`: for the HTML report's timeline.
    pub spans: Vec<Option<Span>>,
    /// Lines that could not be read (torn last lines).
    pub unreadable: u64,
}

/// Reads journals of one campaign and keeps, for each target, its last record. Refuses
/// journals of different campaigns, naming the difference.
pub fn merge(paths: &[PathBuf]) -> Result<Merged, MergeError> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        key: Option<String>,
        target: Option<String>,
        event: Option<String>,
        id: Option<String>,
        line: Option<u64>,
        outcome: Option<OutcomeKind>,
        status: Option<u16>,
        reason: Option<String>,
        attempts: Option<u32>,
        tries: Option<u32>,
        elapsed_ms: Option<f64>,
        at: Option<f64>,
    }
    #[derive(Default)]
    struct Target {
        record: Option<Record>,
        started: bool,
        started_at: Option<f64>,
        span: Option<Span>,
    }
    let mut description: Option<(PathBuf, Description)> = None;
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut unreadable = 0;
    for path in paths {
        let failed = |source: JournalError| MergeError {
            path: path.clone(),
            source,
        };
        let file = File::open(path).map_err(|e| failed(e.into()))?;
        let mut reader = BufReader::new(file);
        let header = first_record(&mut reader)
            .map_err(|e| failed(e.into()))?
            .ok_or_else(|| failed(JournalError::NoHeader))?;
        match &description {
            Some((_, first)) => check_header(first, &header).map_err(failed)?,
            None => description = Some((path.clone(), header)),
        }
        for line in reader.split(b'\n') {
            let line = line.map_err(|e| failed(e.into()))?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let Ok(l) = serde_json::from_slice::<Line>(&line) else {
                unreadable += 1;
                continue;
            };
            let Some(key) = l.key else { continue };
            let target = targets.entry(key).or_default();
            match l.kind.as_str() {
                "intent" => {
                    target.started = true;
                    target.started_at = l.at;
                    target.span = None;
                    target.record = Some(Record {
                        line: l.line.unwrap_or_default(),
                        id: l.id,
                        target: l.target.unwrap_or_default(),
                        event: l.event.unwrap_or_default(),
                        verdict: Verdict::Unknown,
                    });
                }
                "result" => {
                    let (Some(kind), Some(record)) = (l.outcome, target.record.as_mut()) else {
                        unreadable += 1;
                        continue;
                    };
                    let elapsed =
                        Duration::from_secs_f64(l.elapsed_ms.unwrap_or(0.0).max(0.0) / 1000.0);
                    let outcome = Outcome {
                        status: l.status,
                        hint: l.status.and_then(hint_for),
                        attempts: l.attempts.unwrap_or(0),
                        elapsed,
                        ..Outcome::unsent(kind, l.reason.unwrap_or_default())
                    };
                    record.verdict = Verdict::Sent {
                        outcome,
                        tries: l.tries.unwrap_or(1),
                        total: elapsed,
                    };
                    target.span = target
                        .started_at
                        .zip(l.at)
                        .map(|(started, ended)| Span { started, ended });
                }
                _ => unreadable += 1,
            }
        }
    }
    let description = description.map(|(_, d)| d).ok_or(MergeError {
        path: PathBuf::new(),
        source: JournalError::NoHeader,
    })?;
    let mut ended: Vec<(Record, Option<Span>)> = targets
        .into_values()
        .filter(|t| t.started)
        .filter_map(|t| Some((t.record?, t.span)))
        .collect();
    ended.sort_by_key(|(r, _)| r.line);
    let (records, spans) = ended.into_iter().unzip();
    Ok(Merged {
        description,
        records,
        spans,
        unreadable,
    })
}

/// A journal that could not be merged.
#[derive(Debug, thiserror::Error)]
#[error("cannot merge the journal {}: {source}", path.display())]
pub struct MergeError {
    /// Which journal.
    pub path: PathBuf,
    /// Why.
    pub source: JournalError,
}

/// Ends a torn last line (a run killed mid-write) of a file open for reading and
/// appending, so that the next record starts on a line of its own; returns the file's
/// length before.
pub(crate) fn end_torn_line(file: &mut File) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        let mut last = [0u8];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("sipnotify-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn result<'a>(key: &'a str, outcome: &'a str) -> Finished<'a> {
        Finished {
            key,
            outcome,
            status: None,
            reason: "",
            attempts: 1,
            tries: 1,
            elapsed_ms: 1.0,
        }
    }

    fn intent(key: &str) -> Intent<'_> {
        Intent {
            key,
            target: "sip:1@h",
            event: "reboot_now",
            id: None,
            line: 2,
        }
    }

    fn campaign(event: &str) -> Description {
        Description {
            channel: "sip-notify".into(),
            fields: BTreeMap::from([("event".to_string(), event.to_string())]),
        }
    }

    fn open(path: &Path) -> (Journal, ResumeState) {
        Journal::open(path, &campaign("reboot_now"), SyncMode::Batch).unwrap()
    }

    /// A journal whose results wait 30 s for company, and its intents `intents`.
    fn gathering(name: &str, intents: Duration) -> (PathBuf, Arc<Journal>, Gather) {
        let path = temp(name);
        let gather = Gather {
            results: Duration::from_secs(30),
            intents,
        };
        let description = campaign("reboot_now");
        let (j, _) = Journal::open_gathering(&path, &description, SyncMode::Batch, gather).unwrap();
        (path, Arc::new(j), gather)
    }

    /// Results wait up to the gathering time to share a write; an intent waits less, and
    /// takes the results gathered so far with it.
    #[tokio::test]
    async fn results_are_gathered_into_one_write_which_an_intent_hastens() {
        let (path, j, gather) = gathering("gather", GATHER.intents);
        let results: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|key| {
                let j = j.clone();
                tokio::spawn(async move { j.result(&result(key, "delivered")).await })
            })
            .collect();
        // Long enough for a writer that wrote each result at once to have done so.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            j.writes(),
            0,
            "results were written before the gathering time"
        );
        let started = std::time::Instant::now();
        j.intent(&intent("d")).await.unwrap();
        assert!(
            started.elapsed() < gather.results,
            "the intent waited for the results' gathering"
        );
        for written in results {
            written.await.unwrap().unwrap();
        }
        assert_eq!((j.writes(), j.syncs()), (1, 1));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\"type\":\"result\"").count(), 3, "{text}");
        // In the order handed in: the intent after the results it took along.
        let intent = text.find("\"key\":\"d\"").unwrap();
        assert!(
            intent > text.rfind("\"type\":\"result\"").unwrap(),
            "{text}"
        );
        drop(j);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn resume_state_from_records_and_a_torn_line() {
        let path = temp("resume");
        {
            let (j, state) = open(&path);
            assert!(state.delivered.is_empty() && state.unknown.is_empty());
            for k in ["a", "b", "c", "d"] {
                j.intent(&intent(k)).await.unwrap();
            }
            j.result(&result("a", "delivered")).await.unwrap();
            j.result(&result("b", "timeout")).await.unwrap();
        }
        // A torn record, as after kill -9 in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"result\",\"key\":\"c\",\"outc")
            .unwrap();
        drop(f);
        let (j, state) = open(&path);
        assert_eq!(state.delivered, HashSet::from(["a".to_string()]));
        assert_eq!(
            state.unknown,
            HashSet::from(["c".to_string(), "d".to_string()])
        );
        assert_eq!(state.unreadable, 1);
        j.result(&result("d", "delivered")).await.unwrap();
        drop(j);
        let (_, state) = open(&path);
        assert_eq!(state.unknown, HashSet::from(["c".to_string()]));
        assert_eq!(state.delivered.len(), 2);
        assert_eq!(state.unreadable, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&kinds[..3], ["campaign", "run", "intent"]);
        assert_eq!(kinds.iter().filter(|k| *k == "campaign").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "run").count(), 3);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["fields"]["event"], "reboot_now");
        assert!(first["at"].as_f64().unwrap() > 1.6e9);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn another_campaigns_journal_is_refused_naming_the_difference() {
        let path = temp("other");
        drop(open(&path));
        let refused = Journal::open(&path, &campaign("resync"), SyncMode::Batch).unwrap_err();
        let text = refused.to_string();
        assert!(matches!(refused, JournalError::Mismatch { .. }), "{text}");
        assert!(
            text.contains("event is `reboot_now`, this run's is `resync`"),
            "{text}"
        );
        // Records with no campaign record first: an older journal, or not a journal.
        std::fs::write(&path, "{\"type\":\"intent\",\"key\":\"k\"}\n").unwrap();
        let refused = Journal::open(&path, &campaign("resync"), SyncMode::Batch).unwrap_err();
        assert!(matches!(refused, JournalError::NoHeader), "{refused}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_device_is_not_a_journal_and_a_busy_journal_names_its_pid() {
        for device in ["/dev/null", "/dev/zero"] {
            let refused = Journal::open(Path::new(device), &campaign("x"), SyncMode::Off);
            assert!(matches!(refused, Err(JournalError::NotAFile)), "{device}");
        }
        let path = temp("busy");
        let (held, _) = open(&path);
        let busy = Journal::open(&path, &campaign("reboot_now"), SyncMode::Batch).unwrap_err();
        assert!(
            matches!(busy, JournalError::Busy { pid: Some(pid) } if pid == std::process::id()),
            "{busy}"
        );
        drop(held);
        // The lock goes with the journal: the next run gets it.
        drop(open(&path));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_given_together_share_their_syncs() {
        let path = temp("group");
        let (journal, _) = open(&path);
        let journal = Arc::new(journal);
        let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
        let writes = keys.iter().map(|k| {
            let journal = journal.clone();
            let key = k.clone();
            tokio::spawn(async move { journal.intent(&intent(&key)).await })
        });
        for write in writes.collect::<Vec<_>>() {
            write.await.unwrap().unwrap();
        }
        // Each intent was synced before its task went on, yet far fewer syncs than intents.
        let syncs = journal.syncs();
        assert!((1..500).contains(&syncs), "{syncs} syncs for 500 intents");
        journal.finish().unwrap();
        drop(journal);
        let (_, state) = open(&path);
        assert_eq!(state.unknown.len(), 500);
        std::fs::remove_file(&path).unwrap();
    }

    /// Intents handed in over the intents' gathering time share one sync: a second intent
    /// does not wake the writer again, nor a result.
    #[tokio::test]
    async fn intents_wait_a_little_for_company() {
        let (path, j, gather) = gathering("intents", Duration::from_millis(300));
        let started = std::time::Instant::now();
        let first = tokio::spawn({
            let j = j.clone();
            async move { j.intent(&intent("a")).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = tokio::spawn({
            let j = j.clone();
            async move { j.intent(&intent("b")).await }
        });
        let result = tokio::spawn({
            let j = j.clone();
            async move { j.result(&result("a", "delivered")).await }
        });
        for written in [first, second, result] {
            written.await.unwrap().unwrap();
        }
        let waited = started.elapsed();
        assert!(waited >= gather.intents, "written after {waited:?}");
        assert!(waited < gather.results, "written after {waited:?}");
        assert_eq!((j.writes(), j.syncs()), (1, 1));
        drop(j);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_line_is_its_type_then_the_records_fields_then_the_time() {
        #[derive(Serialize)]
        struct Empty {}
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        let run = text(line("run", &Run { pid: 7 }).unwrap());
        assert!(
            run.starts_with("{\"type\":\"run\",\"pid\":7,\"at\":"),
            "{run}"
        );
        assert!(run.ends_with("}\n"), "{run}");
        let empty = text(line("x", &Empty {}).unwrap());
        assert!(empty.starts_with("{\"type\":\"x\",\"at\":"), "{empty}");
        for l in [run, empty] {
            serde_json::from_str::<serde_json::Value>(&l).unwrap();
            // The time to the millisecond, with its three decimals.
            let at = l.rsplit_once("\"at\":").unwrap().1.trim_end_matches("}\n");
            let (seconds, millis) = at.split_once('.').unwrap();
            assert!(seconds.parse::<u64>().unwrap() > 1_600_000_000, "{l}");
            assert!(millis.len() == 3 && millis.parse::<u16>().is_ok(), "{l}");
        }
        assert!(line("x", &7).is_err());
        // A record that fails leaves the bytes pending as they were.
        let mut pending = b"{}\n".to_vec();
        assert!(write_line(&mut pending, "x", &7).is_err());
        assert_eq!(pending, b"{}\n");
    }
}
