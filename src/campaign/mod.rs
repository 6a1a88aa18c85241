//! Campaigns: one action to many phones, read from a streamed CSV or JSON Lines file,
//! paced, retried, journaled and reported, through any delivery [`Channel`].
//!
//! [`Campaign`] is the whole pipeline behind one API: it opens the input, the journal and
//! the report ([`Campaign::open`]), then reads the rows on a thread of their own, shards
//! them, turns each into a request, runs them, journals and reports each one, and counts
//! the [`Summary`] ([`Campaign::run`]). The pieces:
//!
//! - [`input`] streams rows from CSV (with a header) or JSON Lines, each with its line
//!   number; a bad row is an error item, never the end of the stream.
//! - [`defaults`] turns a row and the command-line defaults into a [`Notify`](crate::Notify)
//!   for the SIP channel.
//! - [`channel`] is what a campaign acts through: [`Notifier`](crate::Notifier) for SIP.
//! - [`shard`] picks every N-th row starting at K (`--shard K/N`).
//! - [`journal`] is the append-only JSON Lines journal and the resume state read back from
//!   it (a set of keys, never whole records).
//! - [`retry`] is the retry policy: what is retried, exponential backoff with jitter,
//!   `Retry-After`.
//! - [`pace`] spreads starts uniformly at random over a window without knowing them all.
//! - [`record`] is one record per target, and its JSON and CSV forms.
//! - [`report`] writes the records to a file; [`html`] writes them as a page with charts.
//! - [`summary`] counts outcomes, keeps latency percentiles in a fixed-size histogram and
//!   the most frequent failure reasons.
//! - `run` is the tokio runner: concurrency, rate, spread, retries, journal, stop.
//!
//! Memory does not grow with the input: rows are streamed through a bounded channel, the
//! histogram and the reason table have fixed bounds, and only the journal's resume state
//! (one key per journaled row) grows, with the journal rather than the input.
//!
//! # Example
//!
//! ```no_run
//! use sipnotify::campaign::{Campaign, Defaults, Input, Options, Record};
//! use sipnotify::{Notifier, NotifierConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut defaults = Defaults::new("resync");
//! defaults.check()?;
//! let mut options = Options::new(Input::Path("phones.csv".into()));
//! options.rate = Some(50.0);
//! options.journal = Some("resync.journal".into());
//! let campaign = Campaign::open(options, move |row| defaults.notify(row))?;
//! let notifier = Notifier::bind(NotifierConfig::default()).await?;
//! let finished = campaign
//!     .run(notifier, |record: &Record| println!("{} {}", record.verdict.label(), record.target))
//!     .await?;
//! print!("{}", finished.summary.render(&finished.end));
//! # Ok(())
//! # }
//! ```

pub mod channel;
pub mod defaults;
pub mod html;
pub mod input;
pub mod journal;
pub mod pace;
pub mod record;
pub mod report;
pub mod retry;
mod run;
pub mod shard;
pub mod summary;

pub use channel::Channel;
pub use defaults::{BadRow, Defaults};
pub use input::{InputFormat, Row, RowError, RowReader};
pub use journal::{
    merge, Description, Journal, JournalError, MergeError, Merged, ResumeState, SyncMode,
};
pub use record::{Record, Verdict};
pub use report::Report;
pub use retry::RetryPolicy;
pub use run::{period, RunEnd, Stop, MAX_RATE, MIN_RATE};
pub use shard::Shard;
pub use summary::Summary;

use input::count_records;
use run::{Item, Job, Runner, ITEM_CHUNK};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// Where the rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The standard input.
    Stdin,
    /// A file, a FIFO or any path.
    Path(PathBuf),
}

impl Input {
    /// `-` is the standard input, anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        match arg {
            "-" => Input::Stdin,
            path => Input::Path(path.into()),
        }
    }

    /// Whether the input is a regular file, which may be read ahead and counted.
    pub fn is_regular_file(&self) -> bool {
        match self {
            Input::Stdin => false,
            Input::Path(path) => std::fs::metadata(path).is_ok_and(|m| m.is_file()),
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Stdin => f.write_str("standard input"),
            Input::Path(path) => path.display().fmt(f),
        }
    }
}

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rows.
    pub input: Input,
    /// Their format; from the file name, else guessed from the first character.
    pub format: Option<InputFormat>,
    /// Every N-th row starting at K.
    pub shard: Shard,
    /// Targets in flight at once (at least 1).
    pub concurrency: usize,
    /// New targets per second, if limited (from [`MIN_RATE`] to [`MAX_RATE`]).
    pub rate: Option<f64>,
    /// Spread the starts uniformly at random over this window (needs a regular file).
    pub spread: Option<Duration>,
    /// Retries.
    pub retry: RetryPolicy,
    /// The journal to resume from and append to.
    pub journal: Option<PathBuf>,
    /// When the journal's intents reach the disk.
    pub journal_sync: SyncMode,
    /// What this campaign is, recorded first in its journal: a journal is resumed only by
    /// the same campaign.
    pub description: Description,
    /// Send each row, even one naming the same target and event as an earlier row (by
    /// default such a row is reported `duplicate` and not sent).
    pub allow_duplicates: bool,
    /// Send again the targets a previous run started with no result.
    pub resend_unknown: bool,
    /// The report file: CSV if it ends in `.csv`, else JSON Lines.
    pub report: Option<PathBuf>,
    /// The HTML report (written by the caller, with [`html::HtmlReport`]): named here so
    /// that it is checked against the input, the journal and the report.
    pub report_html: Option<PathBuf>,
    /// Count the rows of a regular file first, for progress ([`Campaign::total`]).
    pub count: bool,
    /// Read the input only if it is a regular file, as the opened file says
    /// ([`paths::open_regular`](crate::paths::open_regular)): for inputs named by others,
    /// such as the service's requests, where a FIFO or a device swapped in after a check of
    /// the path would hold a thread forever.
    pub regular_input_only: bool,
}

impl Options {
    /// Every row of `input`, 256 in flight, no rate, spread, retry, journal or report.
    pub fn new(input: Input) -> Options {
        Options {
            input,
            format: None,
            shard: Shard::ALL,
            concurrency: 256,
            rate: None,
            spread: None,
            retry: RetryPolicy::default(),
            journal: None,
            journal_sync: SyncMode::Batch,
            description: Description {
                channel: String::new(),
                fields: Default::default(),
            },
            allow_duplicates: false,
            resend_unknown: false,
            report: None,
            report_html: None,
            count: false,
            regular_input_only: false,
        }
    }
}

/// Why a campaign could not start: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// An option out of its range.
    #[error("{0}")]
    Option(&'static str),
    /// The input cannot be read.
    #[error("cannot read {input}: {source}")]
    Read {
        /// Which input.
        input: Input,
        /// What the system said.
        source: std::io::Error,
    },
    /// The input is not rows (no header, no `target` column).
    #[error("{input}: {source}")]
    Rows {
        /// Which input.
        input: Input,
        /// What is wrong.
        source: input::InputError,
    },
    /// The journal cannot be used.
    #[error("cannot use the journal {path}: {source}")]
    Journal {
        /// Where.
        path: PathBuf,
        /// Why.
        source: JournalError,
    },
    /// Two options name the same file.
    #[error("{first} and {second} name the same file ({path}): {why}")]
    SameFile {
        /// One option.
        first: &'static str,
        /// The other.
        second: &'static str,
        /// The file.
        path: PathBuf,
        /// What writing it would destroy.
        why: &'static str,
    },
    /// A pipe too long to hold for `--spread`.
    #[error(
        "{input} is over {limit} MiB: --spread reads a pipe whole first; write the rows to a file"
    )]
    TooLong {
        /// Which input.
        input: Input,
        /// The limit in MiB.
        limit: usize,
    },
    /// The report cannot be opened.
    #[error("cannot open the report {path}: {source}")]
    Report {
        /// Where.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A thread or task of the campaign could not start or failed.
    #[error("{0}")]
    Internal(String),
}

/// Sees each record as it is made, on the campaign's output thread.
pub trait Observer: Send + 'static {
    /// One record, in completion order.
    fn record(&mut self, record: &Record);
    /// Every record so far has been seen: a good moment to flush.
    fn caught_up(&mut self) {}
}

impl<F: FnMut(&Record) + Send + 'static> Observer for F {
    fn record(&mut self, record: &Record) {
        self(record)
    }
}

/// How a campaign ended.
#[derive(Debug)]
pub struct Finished {
    /// The counts, latencies and reasons.
    pub summary: Summary,
    /// Interrupted, or stopped by a journal error.
    pub end: RunEnd,
    /// The first error writing the report, if any (the campaign went on).
    pub report_error: Option<std::io::Error>,
}

impl Finished {
    /// 1 after a journal write error (the campaign stopped itself; checked first, so that
    /// it is not taken for a signal), 130 when stopped by a signal, else 0 when every row
    /// was delivered and 1 when not.
    pub fn exit_code(&self) -> u8 {
        if self.end.journal_error.is_some() {
            1
        } else if self.end.interrupted {
            130
        } else if self.summary.all_delivered() {
            0
        } else {
            1
        }
    }
}

/// Holds a campaign's files still for a process that is about to exit at once.
#[derive(Debug, Clone)]
pub struct Files {
    journal: Option<Arc<Journal>>,
    report: Option<Arc<Mutex<Report>>>,
}

impl Files {
    /// Flushes the report's whole records and holds the journal, so that no record is left
    /// half written when the process exits while the guard lives.
    pub fn flush_and_hold(&self) -> Option<MutexGuard<'_, File>> {
        if let Some(report) = &self.report {
            let _ = report
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .flush();
        }
        self.journal.as_ref().map(|j| j.lock())
    }
}

/// The function that turns a row into a channel's request, or says why the row is bad.
type RowsToRequests<R> = Box<dyn Fn(&Row) -> Result<R, BadRow> + Send>;

/// A campaign whose files are open, ready to [`run`](Campaign::run).
pub struct Campaign<C: Channel> {
    options: Options,
    rows: RowReader,
    requests: RowsToRequests<C::Request>,
    total: Option<u64>,
    resume: ResumeState,
    files: Files,
    stop: Arc<Stop>,
    warnings: Vec<String>,
}

/// Records queued for the output thread: what the fastest campaign ends in several polls.
const RECORDS_QUEUED: usize = 1024;

/// How often the output thread looks for new records.
const OUTPUT_POLL: Duration = Duration::from_millis(1);

impl<C: Channel> Campaign<C> {
    /// Checks the options and opens the input, the journal and the report; `requests`
    /// turns each row into what the channel sends. Nothing is sent yet.
    pub fn open(
        options: Options,
        requests: impl Fn(&Row) -> Result<C::Request, BadRow> + Send + 'static,
    ) -> Result<Campaign<C>, CampaignError> {
        if options.concurrency == 0 {
            return Err(CampaignError::Option("--concurrency must be at least 1"));
        }
        if let Some(rate) = options.rate {
            if !(MIN_RATE..=MAX_RATE).contains(&rate) || period(rate).is_none() {
                return Err(CampaignError::Option(
                    "--rate must be between 0.001 and 1000000 starts per second",
                ));
            }
        }
        check_distinct_files(&options)?;
        let regular = options.input.is_regular_file();
        let (mut reader, format) = open_input(&options)?;
        // The input is read once. Rows are counted (for --spread and progress) in a first
        // pass over a regular file, or over a pipe read whole into memory for --spread.
        let counted = match &options.input {
            Input::Path(path) if regular && (options.spread.is_some() || options.count) => {
                let file = open_path(&options, path).map_err(|source| CampaignError::Read {
                    input: options.input.clone(),
                    source,
                })?;
                Some(count_records(Box::new(BufReader::new(file)), format))
            }
            _ if options.spread.is_some() => {
                let whole = read_whole(&mut reader, &options.input)?;
                let records = count_records(Box::new(std::io::Cursor::new(whole.clone())), format);
                reader = Box::new(std::io::Cursor::new(whole));
                Some(records)
            }
            _ => None,
        };
        let total = counted.map(|records| {
            let Shard { index, count } = options.shard;
            (records + count - 1 - index) / count
        });
        let rows = RowReader::new(reader, format).map_err(|source| CampaignError::Rows {
            input: options.input.clone(),
            source,
        })?;
        // A journal that exists already means a resume: the report goes on after the
        // earlier runs' records instead of replacing them.
        let resuming = options.journal.as_deref().is_some_and(Path::exists);
        let mut warnings = Vec::new();
        let unknown = rows.unknown_columns();
        if !unknown.is_empty() {
            warnings.push(format!(
                "the input's column(s) `{}` are not read and their cells are ignored (the \
                 columns are listed in `sipnotify batch --help`)",
                crate::text::printable(&unknown.join("`, `"), false)
            ));
        }
        let (journal, resume) = match &options.journal {
            Some(path) => {
                let (journal, resume) =
                    Journal::open(path, &options.description, options.journal_sync).map_err(
                        |source| CampaignError::Journal {
                            path: path.clone(),
                            source,
                        },
                    )?;
                if resume.unreadable > 0 {
                    warnings.push(format!(
                        "the journal {} has {} unreadable line(s) (a torn last line after a crash is expected); skipped",
                        path.display(),
                        resume.unreadable
                    ));
                }
                (Some(Arc::new(journal)), resume)
            }
            None => (None, ResumeState::default()),
        };
        let report = match &options.report {
            Some(path) => Some(Arc::new(Mutex::new(Report::open(path, resuming).map_err(
                |source| CampaignError::Report {
                    path: path.clone(),
                    source,
                },
            )?))),
            None => None,
        };
        Ok(Campaign {
            options,
            rows,
            requests: Box::new(requests),
            total,
            resume,
            files: Files { journal, report },
            stop: Stop::new(),
            warnings,
        })
    }

    /// The rows of this shard, when counted (a regular file, with `count` or a spread).
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// What the user should know before the run (an unreadable journal line).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Stops the campaign: no new target starts; those in flight end and are reported.
    pub fn stop_handle(&self) -> Arc<Stop> {
        self.stop.clone()
    }

    /// The journal and report, to hold still before an immediate exit.
    pub fn files(&self) -> Files {
        self.files.clone()
    }

    /// Runs the campaign through `channel` until the input ends or a stop, journaling and
    /// reporting each target and showing each record to `observer`.
    pub async fn run(self, channel: C, observer: impl Observer) -> Result<Finished, CampaignError> {
        let Campaign {
            options,
            rows,
            requests,
            total,
            resume,
            files,
            stop,
            warnings: _,
        } = self;
        let (items_tx, items_rx) = mpsc::channel(4);
        // A pipe (stdin, /dev/stdin, a FIFO, <(cmd)) may feed rows as they come: each is
        // handed over at once. Only a regular file is read ahead.
        let chunk_len = if options.input.is_regular_file() {
            ITEM_CHUNK
        } else {
            1
        };
        let shard = options.shard;
        let duplicates = (!options.allow_duplicates).then(Duplicates::default);
        std::thread::Builder::new()
            .name("campaign-input".into())
            .spawn(move || {
                read_items::<C>(rows, shard, &*requests, duplicates, chunk_len, items_tx)
            })
            .map_err(|e| CampaignError::Internal(format!("cannot start the input thread: {e}")))?;
        let (records_tx, records_rx) = mpsc::channel(RECORDS_QUEUED);
        let report = files.report.clone();
        let output = tokio::task::spawn_blocking(move || output(records_rx, report, observer));
        let runner = Runner {
            channel,
            concurrency: options.concurrency,
            rate: options.rate,
            spread: options.spread.zip(total),
            retry: options.retry,
            journal: files.journal.clone(),
            resume,
            resend_unknown: options.resend_unknown,
        };
        let end = runner.run(items_rx, records_tx, stop).await;
        let (summary, report_error) = output
            .await
            .map_err(|e| CampaignError::Internal(format!("the output task failed: {e}")))?;
        Ok(Finished {
            summary,
            end,
            report_error,
        })
    }
}

/// Opens the input file, as [`Options::regular_input_only`] says.
fn open_path(options: &Options, path: &Path) -> std::io::Result<File> {
    match options.regular_input_only {
        true => crate::paths::open_regular(path),
        false => File::open(path),
    }
}

/// Opens the input, guessing the format from the first character when neither the options
/// nor the file name say.
fn open_input(options: &Options) -> Result<(Box<dyn BufRead + Send>, InputFormat), CampaignError> {
    let cannot = |source| CampaignError::Read {
        input: options.input.clone(),
        source,
    };
    let (mut reader, named): (Box<dyn BufRead + Send>, _) = match &options.input {
        Input::Stdin => (
            Box::new(BufReader::with_capacity(64 * 1024, std::io::stdin())),
            None,
        ),
        Input::Path(path) => (
            Box::new(BufReader::with_capacity(
                64 * 1024,
                open_path(options, path).map_err(cannot)?,
            )),
            InputFormat::from_path(path),
        ),
    };
    let format = match options.format.or(named) {
        Some(format) => format,
        None => match reader
            .fill_buf()
            .map_err(cannot)?
            .iter()
            .find(|b| !b.is_ascii_whitespace())
        {
            Some(b'{') => InputFormat::Jsonl,
            _ => InputFormat::Csv,
        },
    };
    Ok((reader, format))
}

/// The input thread: rows of this shard, turned into items, handed over in chunks through
/// a bounded channel so memory does not grow with the input.
fn read_items<C: Channel>(
    rows: RowReader,
    shard: Shard,
    requests: &(dyn Fn(&Row) -> Result<C::Request, BadRow> + Send),
    mut duplicates: Option<Duplicates>,
    chunk_len: usize,
    items: mpsc::Sender<Vec<Item<C::Request>>>,
) {
    let mut chunk = Vec::with_capacity(chunk_len);
    for row in rows {
        let index = match &row {
            Ok(r) => r.index,
            Err(e) => e.index,
        };
        if !shard.takes(index) {
            continue;
        }
        let item = match row {
            Err(e) => Item::Bad(e),
            Ok(row) => match requests(&row) {
                Ok(request) => {
                    let identity = C::identity(&request);
                    let first = duplicates
                        .as_mut()
                        .and_then(|d| d.first_line(&identity, row.line));
                    let job = Box::new(Job {
                        line: row.line,
                        // Each row is its own target when duplicates are sent.
                        key: match duplicates {
                            Some(_) => identity,
                            None => format!("{identity} line {}", row.line),
                        },
                        id: row.id,
                        request: Arc::new(request),
                    });
                    match first {
                        Some(first_line) => Item::Duplicate(job, first_line),
                        None => Item::Job(job),
                    }
                }
                Err(BadRow(message)) => Item::Bad(RowError {
                    line: row.line,
                    index,
                    message,
                }),
            },
        };
        chunk.push(item);
        if chunk.len() == chunk_len {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_len));
            if items.blocking_send(full).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = items.blocking_send(chunk);
    }
}

/// The targets seen so far, to send each once. A target is kept as a 64-bit keyed hash of
/// its identity (8 bytes and its first line per distinct target, not the text): two
/// distinct targets of a million collide with a chance of about 3 in 100 million.
#[derive(Default)]
struct Duplicates {
    hasher: std::collections::hash_map::RandomState,
    first_lines: rustc_hash::FxHashMap<u64, u64>,
}

impl Duplicates {
    /// The line of an earlier row with this identity, or `None` (and `line` remembered).
    fn first_line(&mut self, identity: &str, line: u64) -> Option<u64> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(identity);
        match self.first_lines.entry(hash) {
            std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
            std::collections::hash_map::Entry::Vacant(new) => {
                new.insert(line);
                None
            }
        }
    }
}

/// Most of a pipe held in memory for `--spread` (which must count the rows first).
pub const SPREAD_PIPE_LIMIT_MIB: usize = 256;

/// Reads a pipe whole, up to [`SPREAD_PIPE_LIMIT_MIB`].
fn read_whole(reader: &mut dyn BufRead, input: &Input) -> Result<Arc<[u8]>, CampaignError> {
    use std::io::Read;
    let limit = SPREAD_PIPE_LIMIT_MIB << 20;
    let mut whole = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut whole)
        .map_err(|source| CampaignError::Read {
            input: input.clone(),
            source,
        })?;
    if whole.len() > limit {
        return Err(CampaignError::TooLong {
            input: input.clone(),
            limit: SPREAD_PIPE_LIMIT_MIB,
        });
    }
    Ok(whole.into())
}

/// Refuses options that name the same file (the report or journal would overwrite the
/// input or each other), before anything is opened for writing.
fn check_distinct_files(options: &Options) -> Result<(), CampaignError> {
    let input = match &options.input {
        Input::Path(path) => Some(path.clone()),
        // What standard input is, where the system says.
        Input::Stdin => Some(PathBuf::from("/dev/stdin")).filter(|p| p.exists()),
    };
    let named = [
        ("the input", input.as_deref()),
        ("--journal", options.journal.as_deref()),
        ("--report", options.report.as_deref()),
        ("--report-html", options.report_html.as_deref()),
    ];
    for (i, (first, a)) in named.iter().enumerate() {
        for (second, b) in &named[i + 1..] {
            let (Some(a), Some(b)) = (a, b) else { continue };
            if crate::paths::same_file(a, b) {
                return Err(CampaignError::SameFile {
                    first,
                    second,
                    path: b.to_path_buf(),
                    why: match *first {
                        "the input" => "writing it would destroy the rows; name another file",
                        "--journal" => {
                            "the report would overwrite the journal's records; name two files"
                        }
                        _ => "one report would overwrite the other; name two files",
                    },
                });
            }
        }
    }
    Ok(())
}

/// The output thread: each record to the summary, the report and the observer. Returns
/// the summary and the first error writing the report.
fn output(
    mut records: mpsc::Receiver<Record>,
    report: Option<Arc<Mutex<Report>>>,
    mut observer: impl Observer,
) -> (Summary, Option<std::io::Error>) {
    let mut summary = Summary::new();
    let mut report_error = None;
    loop {
        // Polled, not awaited: a waiting receiver would cost the runner a wake-up of this
        // thread (a futex call) per record.
        let record = match records.try_recv() {
            Ok(record) => record,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                observer.caught_up();
                std::thread::sleep(OUTPUT_POLL);
                continue;
            }
        };
        summary.add_record(&record);
        observer.record(&record);
        if let Some(report) = &report {
            let written = report
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(&record);
            if let Err(e) = written {
                report_error.get_or_insert(e);
            }
        }
    }
    observer.caught_up();
    if let Some(report) = &report {
        let flushed = report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush();
        report_error = report_error.or(flushed.err());
    }
    (summary, report_error)
}
