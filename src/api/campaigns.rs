//! The service's campaigns: started by `POST /v1/campaigns`, watched by `GET`, followed by
//! their record stream, stopped by `DELETE`, and resumed when the service starts again.
//!
//! Each campaign has a folder `campaigns/ID` in the state directory (mode 0700: rows may
//! hold passwords):
//!
//! - `input.csv` or `input.jsonl`: the rows of the request's body (none for `?input=PATH`);
//! - `journal.jsonl`: the campaign's journal, with the lock and durable intents of
//!   `batch --journal`;
//! - `spec.json`: the query parameters and the input, written durably once the campaign
//!   has opened and before its first target: a folder without it never sent anything,
//!   and is removed at the next start;
//! - `records.jsonl`: one JSON record per target, as `--output json` prints them (a
//!   resumed campaign appends its run's records, as `batch --report` does);
//! - `end.json`: the state and counts once the campaign has ended (done, or stopped by
//!   `DELETE` or a journal error); `stopped`: `DELETE` was asked, so that a restart before
//!   its end does not resume it.
//!
//! At start, every folder with `spec.json` and no end is resumed: the same parameters give
//! the same campaign, which its journal accepts; targets journaled delivered are skipped and
//! those started with no result are not sent again (reported `unknown`).

use super::metrics::{Metered, Metrics};
use super::{error, read_pieces, ApiError, Service, MAX_CAMPAIGN_BODY};
use crate::campaign::html::unix_now;
use crate::campaign::{Campaign, Defaults, Input, Observer, Options, Record, Report, Stop};
use crate::provision::serve::{replace_file, Sink};
use crate::text::printable;
use crate::{Notifier, NotifierConfig};
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Turns a campaign's query parameters into its settings: `sipnotify batch`'s long options,
/// parsed and checked where the command line parses them (the service has no list of its
/// own). `input`, the journal and the report are the service's.
pub trait Settings: Send + Sync + 'static {
    /// The settings of `query` (name, value pairs, `input` taken out), or what is wrong,
    /// naming the parameter.
    fn campaign(&self, query: &[(String, String)]) -> Result<CampaignSettings, BadQuery>;
}

/// What is wrong with a campaign's query, naming the parameter: the service's 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// What a campaign is made of, before the service gives it its input and journal.
pub struct CampaignSettings {
    /// The rows' defaults.
    pub defaults: Defaults,
    /// How it runs.
    pub options: Options,
    /// Its notifier.
    pub notifier: NotifierConfig,
}

/// Campaigns running at once; more are refused (429) until one ends.
pub const MAX_RUNNING: usize = 64;

/// A campaign's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Targets are being sent.
    Running,
    /// Every row has its record.
    Done,
    /// Stopped by `DELETE`, or by a journal error; the rest of the input was not started.
    Stopped,
}

impl CampaignState {
    const ALL: [CampaignState; 3] = [
        CampaignState::Running,
        CampaignState::Done,
        CampaignState::Stopped,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Done => "done",
            CampaignState::Stopped => "stopped",
        }
    }
}

const SPEC: &str = "spec.json";
const JOURNAL: &str = "journal.jsonl";
const RECORDS: &str = "records.jsonl";
const END: &str = "end.json";
const STOPPED: &str = "stopped";
/// The state directory's lock file, holding the pid of the service that holds it.
const LOCK: &str = "lock";

/// What is needed to open a campaign again: `spec.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Spec {
    query: Vec<(String, String)>,
    input: PathBuf,
    created: f64,
}

/// How a campaign ended: `end.json`.
#[derive(Debug, Serialize, Deserialize)]
struct End {
    state: CampaignState,
    counts: BTreeMap<String, u64>,
    error: Option<String>,
}

/// What changes while a campaign runs.
#[derive(Debug)]
struct Live {
    state: CampaignState,
    /// Records by label, in this run.
    counts: BTreeMap<String, u64>,
    done: u64,
    started: Instant,
    error: Option<String>,
}

/// One campaign.
struct Entry {
    id: String,
    dir: PathBuf,
    created: f64,
    total: Mutex<Option<u64>>,
    live: Mutex<Live>,
    stop: Mutex<Option<Arc<Stop>>>,
    /// `DELETE` was asked: an interrupted run is stopped, not left to resume.
    deleted: AtomicBool,
    /// Bumped each time records reach the file, and when the campaign ends.
    flushed: watch::Sender<u64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Entry {
    fn new(id: String, dir: PathBuf, created: f64, state: CampaignState) -> Arc<Entry> {
        Arc::new(Entry {
            id,
            dir,
            created,
            total: Mutex::new(None),
            live: Mutex::new(Live {
                state,
                counts: BTreeMap::new(),
                done: 0,
                started: Instant::now(),
                error: None,
            }),
            stop: Mutex::new(None),
            deleted: AtomicBool::new(false),
            flushed: watch::Sender::new(0),
            task: Mutex::new(None),
        })
    }

    fn state(&self) -> CampaignState {
        lock(&self.live).state
    }

    /// Ends the campaign: `end.json` written (durably), then the state set.
    async fn end(&self, state: CampaignState, error: Option<String>) {
        let counts = lock(&self.live).counts.clone();
        let end = End {
            state,
            counts,
            error: error.clone(),
        };
        if let Err(e) = persist(self.dir.join(END), &end).await {
            tracing::warn!(campaign = %self.id, "cannot write {END}: {e}");
        }
        self.set(state, error);
    }

    /// Sets the state (and wakes the followers) without writing `end.json`: for a
    /// campaign that could not be resumed now, and is tried again at the next start.
    fn set(&self, state: CampaignState, error: Option<String>) {
        let mut live = lock(&self.live);
        live.state = state;
        live.error = error;
        drop(live);
        self.flushed.send_modify(|n| *n += 1);
    }

    /// `GET /v1/campaigns/{id}`.
    fn status(&self) -> serde_json::Value {
        let live = lock(&self.live);
        let total = *lock(&self.total);
        let elapsed = live.started.elapsed().as_secs_f64();
        let running = live.state == CampaignState::Running;
        let rate = if running && elapsed > 0.0 {
            live.done as f64 / elapsed
        } else {
            0.0
        };
        let eta = total
            .filter(|_| running && rate > 0.0)
            .map(|total| total.saturating_sub(live.done) as f64 / rate);
        serde_json::json!({
            "id": self.id,
            "state": live.state,
            "created": self.created,
            "total": total,
            "done": live.done,
            "counts": live.counts,
            "rate": rate,
            "eta_s": eta,
            "error": live.error,
        })
    }
}

/// The campaigns the service knows, by id.
pub(super) struct Campaigns {
    /// The state directory's lock, held while the service lives: two services on one
    /// directory would both resume its campaigns.
    _lock: std::fs::File,
    root: PathBuf,
    settings: Arc<dyn Settings>,
    metrics: Arc<Metrics>,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// One permit per running campaign, taken when its request arrives (before its body is
    /// read) and held until it ends: concurrent requests cannot pass [`MAX_RUNNING`].
    slots: Arc<Semaphore>,
}

/// A campaign opened, with its notifier bound: ready to run.
struct Opened {
    campaign: Campaign<Metered<Notifier>>,
    notifier: Notifier,
}

impl Campaigns {
    /// The campaigns of `state_dir`, which is created if needed and locked; none running
    /// yet.
    pub(super) fn open(
        state_dir: &std::path::Path,
        settings: Arc<dyn Settings>,
        metrics: &Arc<Metrics>,
    ) -> Result<Campaigns, ApiError> {
        let failed = |e| ApiError::StateDir(state_dir.to_path_buf(), e);
        private_dir_all(&state_dir.join("campaigns")).map_err(failed)?;
        // Absolute: the paths written in `spec.json` must hold from any working folder.
        let state_dir = &state_dir.canonicalize().map_err(failed)?;
        let root = state_dir.join("campaigns");
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(state_dir.join(LOCK))
            .map_err(failed)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = std::io::Read::read_to_string(&mut lock, &mut pid);
                return Err(ApiError::Busy(
                    state_dir.to_path_buf(),
                    pid.trim().parse().ok(),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        // The pid, for the message of a second service.
        lock.set_len(0)
            .and_then(|()| write!(lock, "{}", std::process::id()))
            .map_err(failed)?;
        Ok(Campaigns {
            _lock: lock,
            root,
            settings,
            metrics: metrics.clone(),
            entries: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
        })
    }

    /// Loads every campaign of the state directory, resuming those that had not ended;
    /// how many were resumed.
    pub(super) async fn resume(&self) -> usize {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| valid_id(name))
            .collect();
        names.sort();
        let mut resumed = 0;
        for id in names {
            let dir = self.root.join(&id);
            if !dir.join(SPEC).exists() {
                // Never started (killed before its first target): nothing was sent.
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            let Some(spec) = read_json::<Spec>(&dir.join(SPEC)) else {
                tracing::warn!(campaign = %id, "{SPEC} cannot be read: left alone");
                continue;
            };
            let entry = Entry::new(
                id.clone(),
                dir.clone(),
                spec.created,
                CampaignState::Running,
            );
            lock(&self.entries).insert(id.clone(), entry.clone());
            if let Some(end) = read_json::<End>(&dir.join(END)) {
                let mut live = lock(&entry.live);
                live.done = end.counts.values().sum();
                (live.state, live.counts, live.error) = (end.state, end.counts, end.error);
                continue;
            }
            if dir.join(STOPPED).exists() {
                entry
                    .end(
                        CampaignState::Stopped,
                        Some("stopped by DELETE; the service ended before the campaign did".into()),
                    )
                    .await;
                continue;
            }
            match self.open_campaign(&entry, &spec).await {
                Ok(opened) => {
                    tracing::info!(campaign = %id, "resumed");
                    // At most MAX_RUNNING were running when the service stopped, so each
                    // finds a slot.
                    let slot = self.slots.clone().try_acquire_owned().ok();
                    self.run(&entry, opened, slot);
                    resumed += 1;
                }
                Err(message) => {
                    // The message may quote the campaign's query and the paths it names.
                    let shown = crate::text::printable(&message, false);
                    tracing::warn!(campaign = %id, "cannot resume: {shown}");
                    entry.set(
                        CampaignState::Stopped,
                        Some(format!(
                            "cannot resume: {message}; tried again at the next start"
                        )),
                    );
                }
            }
        }
        resumed
    }

    /// Opens a campaign of `spec` in `entry`'s folder and binds its notifier; nothing is
    /// sent yet.
    async fn open_campaign(&self, entry: &Entry, spec: &Spec) -> Result<Opened, String> {
        let settings = self.settings.clone();
        let query = spec.query.clone();
        let input = spec.input.clone();
        let journal = entry.dir.join(JOURNAL);
        // Opening reads (and counts) the rows: off the runtime's thread.
        let (campaign, config) = tokio::task::spawn_blocking(move || {
            let CampaignSettings {
                defaults,
                mut options,
                notifier,
            } = settings.campaign(&query).map_err(|e| e.0)?;
            options.input = Input::Path(input);
            options.journal = Some(journal);
            options.count = true;
            options.regular_input_only = true;
            options.report = None;
            options.report_html = None;
            let campaign =
                Campaign::<Metered<Notifier>>::open(options, move |row| defaults.notify(row))
                    .map_err(|e| e.to_string())?;
            Ok::<_, String>((campaign, notifier))
        })
        .await
        .map_err(|e| format!("the campaign could not be opened: {e}"))??;
        let notifier = Notifier::bind(config)
            .await
            .map_err(|e| format!("cannot bind the campaign's socket: {e}"))?;
        Ok(Opened { campaign, notifier })
    }

    /// Runs an opened campaign on a task of its own, its records to its folder; `slot` is
    /// released when it ends.
    fn run(&self, entry: &Arc<Entry>, opened: Opened, slot: Option<OwnedSemaphorePermit>) {
        let Opened { campaign, notifier } = opened;
        for warning in campaign.warnings() {
            tracing::warn!(campaign = %entry.id, "{warning}");
        }
        *lock(&entry.total) = campaign.total();
        *lock(&entry.stop) = Some(campaign.stop_handle());
        lock(&entry.live).started = Instant::now();
        let channel = Metered {
            inner: notifier,
            metrics: self.metrics.clone(),
        };
        let metrics = self.metrics.clone();
        let task_entry = entry.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            let entry = task_entry;
            let report = match Report::open(&entry.dir.join(RECORDS), true) {
                Ok(report) => report,
                Err(e) => {
                    let error = format!("cannot open {RECORDS}: {e}");
                    entry.end(CampaignState::Stopped, Some(error)).await;
                    return;
                }
            };
            let observer = Watch {
                entry: entry.clone(),
                report,
                metrics,
                unflushed: false,
                failed: false,
            };
            let finished = campaign.run(channel, observer).await;
            let deleted = entry.deleted.load(Ordering::SeqCst);
            let (state, error) = match finished {
                // The service is stopping: the campaign resumes at its next start.
                Ok(f) if f.end.interrupted && !deleted => {
                    entry.flushed.send_modify(|n| *n += 1);
                    return;
                }
                Ok(f) => match f.end.journal_error {
                    Some(e) => (CampaignState::Stopped, Some(e)),
                    None if f.end.interrupted => (CampaignState::Stopped, None),
                    None => (CampaignState::Done, None),
                },
                Err(e) => (CampaignState::Stopped, Some(e.to_string())),
            };
            tracing::info!(campaign = %entry.id, state = state.as_str(), "ended");
            entry.end(state, error).await;
        });
        *lock(&entry.task) = Some(task);
    }

    fn get(&self, id: &str) -> Option<Arc<Entry>> {
        lock(&self.entries).get(id).cloned()
    }

    /// How many campaigns are in `state`.
    fn count(&self, state: CampaignState) -> usize {
        let entries = lock(&self.entries);
        entries.values().filter(|e| e.state() == state).count()
    }

    /// How many campaigns are in each state.
    pub(super) fn by_state(&self) -> Vec<(&'static str, i64)> {
        CampaignState::ALL
            .iter()
            .map(|&state| (state.as_str(), self.count(state) as i64))
            .collect()
    }

    /// Stops the running campaigns as Ctrl-C would and waits for them; they stay
    /// unfinished, to be resumed.
    pub(super) async fn shutdown(&self) {
        let entries: Vec<Arc<Entry>> = lock(&self.entries).values().cloned().collect();
        for entry in &entries {
            if let Some(stop) = lock(&entry.stop).as_ref() {
                stop.stop();
            }
        }
        for entry in entries {
            let task = lock(&entry.task).take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }
}

/// Sees each record on the campaign's output thread: counts, metrics, and the records file
/// (flushed whenever the campaign has caught up, then followers are woken).
struct Watch {
    entry: Arc<Entry>,
    report: Report,
    metrics: Arc<Metrics>,
    unflushed: bool,
    failed: bool,
}

impl Observer for Watch {
    fn record(&mut self, record: &Record) {
        let label = record.verdict.label();
        {
            let mut live = lock(&self.entry.live);
            *live.counts.entry(label.to_string()).or_default() += 1;
            live.done += 1;
        }
        self.metrics.target(&record.event, label);
        if let Err(e) = self.report.record(record) {
            if !std::mem::replace(&mut self.failed, true) {
                tracing::warn!(campaign = %self.entry.id, "cannot write {RECORDS}: {e}");
            }
        }
        self.unflushed = true;
    }

    fn caught_up(&mut self) {
        if std::mem::take(&mut self.unflushed) {
            let _ = self.report.flush();
            self.entry.flushed.send_modify(|n| *n += 1);
        }
    }
}

/// Ids are 16 lowercase hex digits: checked before a path is made of one.
fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Writes `value` as JSON so that it is whole or absent after a crash: a temporary file,
/// synced, renamed, and the folder synced; on a blocking thread, as syncs may be slow.
async fn persist(path: PathBuf, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || replace_file(&path, &bytes, true))
        .await
        .map_err(std::io::Error::other)?
}

/// Creates a folder (and its parents) readable by this user only.
fn private_dir_all(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// The input format a body's Content-Type names, as the extension of its file.
fn extension(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "text/csv" => Some("csv"),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => Some("jsonl"),
        _ => None,
    }
}

/// Writes a body to `path` as it arrives, at most [`MAX_CAMPAIGN_BODY`] bytes, each part
/// within [`super::BODY_IDLE`] of the last and the whole within [`super::BODY_WITHIN`],
/// synced.
async fn save_body(body: Body, path: &std::path::Path) -> Result<(), Response> {
    let file = tokio::fs::File::create(path).await.map_err(write_failed)?;
    let mut rows = Rows(file);
    read_pieces(body, MAX_CAMPAIGN_BODY, |_| too_large(), &mut rows).await?;
    rows.0.sync_all().await.map_err(write_failed)
}

fn write_failed(e: std::io::Error) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot write the rows to the state directory: {e}"),
    )
}

/// The rows of a campaign, written as they arrive.
struct Rows(tokio::fs::File);

impl Sink for Rows {
    type Error = Response;

    async fn take(&mut self, data: Bytes) -> Result<(), Response> {
        use tokio::io::AsyncWriteExt;
        self.0.write_all(&data).await.map_err(write_failed)
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the rows are over {} MiB: write them to a file the service can read and give \
             ?input=PATH",
            MAX_CAMPAIGN_BODY >> 20
        ),
    )
}

/// `POST /v1/campaigns`.
pub(super) async fn start(State(service): State<Arc<Service>>, request: Request) -> Response {
    let campaigns = &service.campaigns;
    let Ok(slot) = campaigns.slots.clone().try_acquire_owned() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_RUNNING} campaigns are running or starting: wait for one to end"),
        );
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CAMPAIGN_BODY) {
        return too_large();
    }
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let mut inputs: Vec<String> = Vec::new();
    query.retain(|(name, value)| {
        let input = name == "input";
        if input {
            inputs.push(value.clone());
        }
        !input
    });
    if inputs.len() > 1 {
        return error(StatusCode::BAD_REQUEST, "give input at most once");
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let dir = campaigns.root.join(&id);
    if let Err(e) = private_dir_all(&dir) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot create the campaign's folder: {e}"),
        );
    }
    let entry = Entry::new(id.clone(), dir.clone(), unix_now(), CampaignState::Running);
    let opened = async {
        let input = match inputs.pop() {
            Some(path) => {
                // Any body at all is refused.
                super::read_body(body, 0).await.map_err(|_| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "give the rows in the body or as ?input=PATH, not both",
                    )
                })?;
                let shown = printable(&path, false);
                let unreadable = |e: std::io::Error| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the input {shown}: {e}"),
                    )
                };
                // Absolute, so that a restart from another folder finds it.
                let path = tokio::fs::canonicalize(&path).await.map_err(unreadable)?;
                // A FIFO or a device would hold a thread forever, or never end.
                if !tokio::fs::metadata(&path)
                    .await
                    .map_err(unreadable)?
                    .is_file()
                {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "the input {shown} is not a regular file: write the rows to a file, \
                             or send them in the body"
                        ),
                    ));
                }
                path
            }
            None => {
                let Some(extension) = extension(&parts.headers) else {
                    return Err(error(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "send the rows with Content-Type: text/csv or application/x-ndjson, \
                         or name a file with ?input=PATH",
                    ));
                };
                let path = dir.join(format!("input.{extension}"));
                save_body(body, &path).await?;
                path
            }
        };
        let spec = Spec {
            query,
            input,
            created: entry.created,
        };
        let opened = campaigns
            .open_campaign(&entry, &spec)
            .await
            .map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
        // From here on a restart resumes it.
        persist(dir.join(SPEC), &spec).await.map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write the campaign's {SPEC}: {e}"),
            )
        })?;
        Ok(opened)
    }
    .await;
    match opened {
        Ok(opened) => {
            lock(&campaigns.entries).insert(id.clone(), entry.clone());
            campaigns.run(&entry, opened, Some(slot));
            tracing::info!(campaign = %id, "started");
            (StatusCode::ACCEPTED, Json(entry.status())).into_response()
        }
        Err(response) => {
            // Nothing was sent: the folder goes (its journal was opened and is dropped).
            let _ = std::fs::remove_dir_all(&dir);
            response
        }
    }
}

/// The campaign a path names, or why none (a 404 in JSON, as every error: a path that
/// cannot be decoded names no campaign either).
fn find(
    service: &Service,
    path: Result<Path<String>, PathRejection>,
) -> Result<Arc<Entry>, String> {
    let Ok(Path(id)) = path else {
        return Err("no such campaign: ids are 16 hexadecimal digits".into());
    };
    valid_id(&id)
        .then(|| service.campaigns.get(&id))
        .flatten()
        .ok_or_else(|| {
            format!(
                "no campaign {}",
                printable(&id.chars().take(64).collect::<String>(), false)
            )
        })
}

/// `GET /v1/campaigns/{id}`.
pub(super) async fn status(
    State(service): State<Arc<Service>>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    match find(&service, path) {
        Ok(entry) => Json(entry.status()).into_response(),
        Err(message) => error(StatusCode::NOT_FOUND, message),
    }
}

/// `DELETE /v1/campaigns/{id}`: no new target starts; those in flight end and are
/// recorded, then the state is `stopped`.
pub(super) async fn stop(
    State(service): State<Arc<Service>>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let entry = match find(&service, path) {
        Ok(entry) => entry,
        Err(message) => return error(StatusCode::NOT_FOUND, message),
    };
    entry.deleted.store(true, Ordering::SeqCst);
    // Whatever the state: a campaign without an end (running, or not resumable now and
    // tried again at the next start) must not be resumed after this.
    if !entry.dir.join(END).exists() {
        if let Err(e) = persist(entry.dir.join(STOPPED), &true).await {
            tracing::warn!(campaign = %entry.id, "cannot write {STOPPED}: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot record the stop in the state directory: {e}; try again"),
            );
        }
    }
    if entry.state() != CampaignState::Running {
        return Json(entry.status()).into_response();
    }
    if let Some(stop) = lock(&entry.stop).as_ref() {
        stop.stop();
    }
    (StatusCode::ACCEPTED, Json(entry.status())).into_response()
}

/// The longest record line read back; a longer one is skipped.
const MAX_RECORD: usize = 1 << 20;

/// `GET /v1/campaigns/{id}/records?offset=N&follow=true`: the records from the N-th
/// (0-based), as JSON Lines; with `follow`, the response goes on until the campaign ends.
pub(super) async fn records(
    State(service): State<Arc<Service>>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let entry = match find(&service, path) {
        Ok(entry) => entry,
        Err(message) => return error(StatusCode::NOT_FOUND, message),
    };
    let (mut offset, mut follow) = (0u64, false);
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match (&*name, &*value) {
            ("offset", n) => match n.parse() {
                Ok(n) => offset = n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "offset must be a record number (0 for the first)",
                    )
                }
            },
            ("follow", "true" | "1" | "") => follow = true,
            ("follow", "false" | "0") => follow = false,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the parameters are offset=N and follow=true|false",
                )
            }
        }
    }
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(stream_records(entry, offset, follow, sender));
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        )],
        Body::new(Chunks(receiver)),
    )
        .into_response()
}

/// A response body of the chunks sent on a channel: it ends when the sender is dropped,
/// and the sender sees it closed as soon as the client has gone.
struct Chunks(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}

/// Sends the records file's whole lines from the `offset`-th record; with `follow`, waits
/// for more until the campaign has ended and its last records are sent.
async fn stream_records(entry: Arc<Entry>, offset: u64, follow: bool, sender: mpsc::Sender<Bytes>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut flushed = entry.flushed.subscribe();
    let mut reader = None;
    let mut line = Vec::new();
    let mut out = Vec::new();
    let mut seen = 0u64;
    loop {
        // Seen before reading to the end: a campaign that had ended then has all its
        // records in the file.
        let ended = entry.state() != CampaignState::Running;
        if reader.is_none() {
            reader = tokio::fs::File::open(entry.dir.join(RECORDS))
                .await
                .ok()
                .map(tokio::io::BufReader::new);
        }
        if let Some(reader) = reader.as_mut() {
            loop {
                let room = (MAX_RECORD + 1).saturating_sub(line.len()) as u64;
                match reader.take(room).read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if !line.ends_with(b"\n") {
                    if line.len() > MAX_RECORD {
                        line.clear();
                    }
                    // A line still being written: its end comes later.
                    continue;
                }
                // A torn line (a crash mid-write, ended at the next start) is not a record.
                if serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_ok() {
                    if seen >= offset {
                        out.extend_from_slice(&line);
                    }
                    seen += 1;
                }
                line.clear();
                if out.len() >= 64 * 1024
                    && sender
                        .send(Bytes::from(std::mem::take(&mut out)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
        if !out.is_empty()
            && sender
                .send(Bytes::from(std::mem::take(&mut out)))
                .await
                .is_err()
        {
            return;
        }
        if !follow || ended {
            return;
        }
        // Woken by new records; the timeout covers records flushed without a wake-up. A
        // client that has gone ends the stream at once, not when the campaign ends.
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_millis(250), flushed.changed()) => {}
            () = sender.closed() => return,
        }
    }
}
