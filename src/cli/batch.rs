//! `sipnotify batch`: one event to many phones from a CSV or JSON Lines file, paced,
//! retried, journaled, with progress, a report and a summary.

use super::output::{csv_record, human_line, JsonRecord, Printer, CSV_HEADER};
use super::phone::wait_for_stop;
use super::send::{parse_bind, parse_headers, parse_timeout, password, timers, LineArgs};
use super::{Failure, Format};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sipnotify::campaign::input::{count_records, InputFormat, RowReader};
use sipnotify::campaign::run::{Campaign, Item, Job, Record, RunEnd, Stop, Verdict, ITEM_CHUNK};
use sipnotify::campaign::target::key;
use sipnotify::campaign::{Defaults, Journal, ResumeState, RetryPolicy, Shard, Summary};
use sipnotify::{Notifier, NotifierConfig};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// The input format, when the file name does not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Options of `sipnotify batch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input columns (CSV header) or fields (JSON Lines): target (required), id, auth_user, password,
event, url, proxy, transport. Missing cells fall back to the options below.

Examples:
  sipnotify batch phones.csv --event resync --rate 50 --journal resync.journal
  sipnotify batch phones.jsonl --event xml-service --url http://10.0.0.1/menu.xml --output json
  sipnotify batch phones.csv --event reboot --spread 30m --shard $JOB_COMPLETION_INDEX/4

Exit codes: 0 every row delivered, 1 any row not delivered (bad rows and unknown ones
included) or a journal write error, 2 bad input before anything was sent, 130 interrupted
(Ctrl-C or SIGTERM).")]
pub struct BatchArgs {
    /// The CSV or JSON Lines file, or - for standard input.
    pub input: String,
    /// The input format; default: from the extension (.csv, .jsonl/.ndjson/.json), else
    /// guessed from the first character.
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// The event of rows with no `event` cell: resync, reboot, restart, report, xml-service,
    /// or any other event name (sent as is, with --body).
    #[arg(long, value_name = "EVENT", default_value = "resync")]
    pub event: String,
    /// The XML-Service URL for rows with no `url` cell.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The resync profile URL for rows with no `url` cell (MPP).
    #[arg(long, value_name = "URL")]
    pub profile: Option<String>,
    /// The body of a custom event.
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,
    /// The Content-Type of --body (default text/plain).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// Options for rows whose cell is empty.
    #[command(flatten)]
    pub line: LineArgs,
    /// Targets in flight at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub concurrency: usize,
    /// New targets started per second, evenly spaced.
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Spread the starts uniformly at random over this window (e.g. 90s, 30m, 2h), like the
    /// phones' own Resync_Random_Delay. Needs a file (not stdin) to count the rows.
    #[arg(long, value_name = "DURATION")]
    pub spread: Option<String>,
    /// Retries of a target after timeout, unreachable or 503, with exponential backoff and
    /// jitter (a 503's Retry-After is honoured).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// The first retry's backoff (doubled for each further retry, at most 60s).
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub backoff: String,
    /// Append intents and results to this JSON Lines journal, and resume from it: targets
    /// journaled delivered are skipped, ones started with no result are reported unknown.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Send again the targets a previous run started with no result (they may have been
    /// sent: a reboot may happen twice).
    #[arg(long, requires = "journal")]
    pub resend_unknown: bool,
    /// Take every N-th row starting at K (0 <= K < N), to split one file over N machines.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Also write one record per target to this file: CSV if it ends in .csv, else JSON
    /// Lines. Replaced, unless --journal names an existing journal (a resume): then
    /// appended to.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Parses `90`, `90s`, `250ms`, `30m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 90s, 30m or 2h"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("`{text}` is too long"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a valid duration"))
}

struct Plan {
    defaults: Defaults,
    config: NotifierConfig,
    format: InputFormat,
    shard: Shard,
    spread: Option<Duration>,
    retry: RetryPolicy,
}

/// Checks every option before anything is opened or sent.
fn plan(args: &BatchArgs) -> Result<Plan, Failure> {
    let mut defaults = Defaults::new(&args.event);
    defaults.url = args.url.clone();
    defaults.profile = args.profile.clone();
    defaults.body = args.body.clone().unwrap_or_default().into_bytes();
    defaults.content_type = args.content_type.clone();
    defaults.auth_user = args.line.auth_user.clone();
    defaults.password = password(&args.line)?;
    defaults.transport = args.line.transport;
    if let Some(proxy) = &args.line.proxy {
        sipnotify::net::split_host_port(proxy)
            .map_err(|e| Failure::input(format!("--proxy: {e}")))?;
    }
    defaults.proxy = args.line.proxy.clone();
    defaults.from = args.line.from.clone();
    defaults.extra = Arc::from(parse_headers(&args.line.headers)?);
    defaults.timeout = parse_timeout(args.line.timeout)?;
    defaults
        .check()
        .map_err(|e| Failure::input(format!("--event: {e}")))?;
    let config = NotifierConfig {
        bind: args.line.bind.as_deref().map(parse_bind).transpose()?,
        timers: timers(args.line.t1, args.line.t2)?,
    };
    if let Some(timeout) = defaults.timeout {
        let timer_f = config.timers.timer_f();
        if timeout > timer_f {
            return Err(Failure::input(format!(
                "--timeout {} s is longer than Timer F ({} s, 64 x --t1), which ends a try \
                 anyway: --timeout is for giving up sooner; leave it out or raise --t1",
                timeout.as_secs_f64(),
                timer_f.as_secs_f64()
            )));
        }
    }
    if args.concurrency == 0 {
        return Err(Failure::input("--concurrency must be at least 1"));
    }
    if let Some(rate) = args.rate {
        use sipnotify::campaign::run::{quota, MAX_RATE, MIN_RATE};
        if !(MIN_RATE..=MAX_RATE).contains(&rate) || quota(rate).is_none() {
            return Err(Failure::input(
                "--rate must be between 0.001 and 1000000 starts per second",
            ));
        }
    }
    let spread = args
        .spread
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| Failure::input(format!("--spread: {e}")))?;
    if spread.is_some() && args.input == "-" {
        return Err(Failure::input(
            "--spread needs a file, not stdin: the rows are counted first",
        ));
    }
    let backoff =
        parse_duration(&args.backoff).map_err(|e| Failure::input(format!("--backoff: {e}")))?;
    let retry = RetryPolicy {
        retries: args.retries,
        base: backoff,
        ..RetryPolicy::default()
    };
    if retry.base > retry.max {
        return Err(Failure::input(format!(
            "--backoff: at most {} s (the longest backoff)",
            retry.max.as_secs()
        )));
    }
    let format = match args.format {
        Some(FileFormat::Csv) => InputFormat::Csv,
        Some(FileFormat::Jsonl) => InputFormat::Jsonl,
        // Guessed from the content when the input is opened.
        None => InputFormat::from_path(Path::new(&args.input)).unwrap_or(InputFormat::Csv),
    };
    Ok(Plan {
        defaults,
        config,
        format,
        shard: args.shard.unwrap_or(Shard::ALL),
        spread,
        retry,
    })
}

/// Opens the input, guessing the format from the first character when neither --format
/// nor the extension says.
fn open_input(
    args: &BatchArgs,
    format: InputFormat,
) -> Result<(Box<dyn BufRead + Send>, InputFormat), Failure> {
    let mut reader: Box<dyn BufRead + Send> = if args.input == "-" {
        Box::new(BufReader::with_capacity(64 * 1024, std::io::stdin()))
    } else {
        let file = File::open(&args.input)
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.input)))?;
        Box::new(BufReader::with_capacity(64 * 1024, file))
    };
    let known = args.format.is_some() || InputFormat::from_path(Path::new(&args.input)).is_some();
    let format = if known {
        format
    } else {
        let head = reader
            .fill_buf()
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.input)))?;
        match head.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => InputFormat::Jsonl,
            _ => InputFormat::Csv,
        }
    };
    Ok((reader, format))
}

/// How often the output thread looks for new records.
const OUTPUT_POLL: Duration = Duration::from_millis(1);

/// Records queued for the output thread: what the fastest campaign ends in several polls.
const RECORDS_QUEUED: usize = 1024;

/// Runs a campaign and returns the exit code.
pub async fn run(args: BatchArgs, output: Format, verbose: u8) -> Result<u8, Failure> {
    let plan = plan(&args)?;
    let (reader, format) = open_input(&args, plan.format)?;
    let rows = RowReader::new(reader, format)
        .map_err(|e| Failure::input(format!("{}: {e}", args.input)))?;
    let progress = std::io::stderr().is_terminal();
    // The rows of this shard, counted in a first pass over the file (constant memory).
    let total = if args.input != "-" && (plan.spread.is_some() || progress) {
        let file = File::open(&args.input)
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", args.input)))?;
        let records = count_records(Box::new(BufReader::new(file)), format);
        let Shard { index, count } = plan.shard;
        Some((records + count - 1 - index) / count)
    } else {
        None
    };
    // A journal that exists already means a resume: the report goes on after the earlier
    // runs' records instead of replacing them.
    let resuming = args.journal.as_deref().is_some_and(Path::exists);
    let (journal, resume) = match &args.journal {
        Some(path) => {
            let (journal, resume) = Journal::open(path).map_err(|e| {
                Failure::input(format!("cannot open the journal {}: {e}", path.display()))
            })?;
            if resume.unreadable > 0 {
                eprintln!(
                    "warning: the journal {} has {} unreadable line(s) (a torn last line after a crash is expected); skipped",
                    path.display(),
                    resume.unreadable
                );
            }
            (Some(Arc::new(journal)), resume)
        }
        None => (None, ResumeState::default()),
    };
    let report = match &args.report {
        Some(path) => Some(Arc::new(Mutex::new(Report::open(path, resuming)?))),
        None => None,
    };
    let notifier = Notifier::bind(plan.config)
        .await
        .map_err(|e| Failure::local(format!("cannot bind the local socket: {e}")))?;

    // Rows are read and checked on their own thread, through a bounded channel: memory
    // does not grow with the input.
    let (items_tx, items_rx) = mpsc::channel::<Vec<Item>>(4);
    let shard = plan.shard;
    let defaults = plan.defaults;
    // A pipe (stdin, /dev/stdin, a FIFO, <(cmd)) may feed rows as they come: each is handed
    // over at once. Only a regular file is read ahead.
    let regular = args.input != "-" && std::fs::metadata(&args.input).is_ok_and(|m| m.is_file());
    let chunk_len = if regular { ITEM_CHUNK } else { 1 };
    std::thread::Builder::new()
        .name("batch-input".into())
        .spawn(move || {
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
                    Ok(row) => match defaults.notify(&row) {
                        Ok(notify) => Item::Job(Box::new(Job {
                            line: row.line,
                            key: key(&row, &notify),
                            id: row.id.clone(),
                            notify,
                        })),
                        Err(message) => Item::Bad(sipnotify::campaign::RowError {
                            line: row.line,
                            index,
                            message,
                        }),
                    },
                };
                chunk.push(item);
                if chunk.len() == chunk_len {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_len));
                    if items_tx.blocking_send(full).is_err() {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = items_tx.blocking_send(chunk);
            }
        })
        .map_err(|e| Failure::local(format!("cannot start the input thread: {e}")))?;

    let stop = Stop::new();
    // Listening from here on, before the first target starts (not from the task's first
    // poll): a signal sent once the journal has a line is never the default action.
    let mut listener = StopSignals::listen();
    let signals = {
        let stop = stop.clone();
        let journal = journal.clone();
        let report = report.clone();
        tokio::spawn(async move {
            listener.recv().await;
            eprintln!(
                "stopping: no new targets; waiting for those in flight (Ctrl-C again to exit now)"
            );
            stop.stop();
            listener.recv().await;
            // Hold the journal so no record is half written, then leave.
            let _held = journal.as_ref().map(|j| j.lock());
            // Whole records only: the output task writes one under the same lock. Records
            // still queued for it (a poll interval's worth) are not written; the journal
            // has their results.
            if let Some(report) = &report {
                report
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .flush();
            }
            eprintln!("exiting now: targets in flight are journaled with no result (unknown)");
            std::process::exit(130);
        })
    };

    let bar = progress.then(|| progress_bar(total));
    let (records_tx, mut records_rx) = mpsc::channel::<Record>(RECORDS_QUEUED);
    let printer = Printer::new(Format::Json, 0);
    let consumer = {
        let bar = bar.clone();
        let input_name = if args.input == "-" {
            "stdin".to_string()
        } else {
            args.input.clone()
        };
        tokio::task::spawn_blocking(move || {
            let mut summary = Summary::new();
            let mut out = Output::new(output, verbose, printer);
            let (mut delivered, mut failed) = (0u64, 0u64);
            loop {
                // Polled, not awaited: a waiting receiver would cost the runner a wake-up
                // of this thread (a futex call) per record.
                let record = match records_rx.try_recv() {
                    Ok(record) => record,
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        // Caught up: what is written reaches a reader now, not at 8 KiB.
                        out.flush();
                        std::thread::sleep(OUTPUT_POLL);
                        continue;
                    }
                };
                let label = record.verdict.label().to_string();
                match &record.verdict {
                    Verdict::Sent { outcome, total, .. } => {
                        let reason = (outcome.kind != sipnotify::OutcomeKind::Delivered).then(|| {
                            match outcome.status {
                                Some(s) => format!("{s} {}", outcome.reason),
                                None => outcome.reason.clone(),
                            }
                        });
                        summary.add(&label, Some(*total), reason.as_deref());
                    }
                    Verdict::BadRow(message) => {
                        eprintln!("error: {input_name}: line {}: {message}; row skipped", record.line);
                        summary.add_bad_row(record.line, message);
                    }
                    Verdict::JournalError(message) => summary.add(&label, None, Some(message)),
                    Verdict::AlreadyDelivered => summary.add(&label, None, None),
                    Verdict::Unknown => summary.add(
                        &label,
                        None,
                        Some("started by a previous run with no result; not sent again (--resend-unknown sends it)"),
                    ),
                }
                if record.verdict.is_delivered() {
                    delivered += 1;
                } else {
                    failed += 1;
                }
                match &bar {
                    Some(bar) => bar.suspend(|| out.record(&record)),
                    None => out.record(&record),
                }
                if let Some(report) = &report {
                    report
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record(&printer, &record);
                }
                if let Some(bar) = &bar {
                    bar.inc(1);
                    bar.set_message(format!("delivered {delivered}, failed {failed}"));
                }
            }
            out.flush();
            if let Some(report) = &report {
                report
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .flush();
            }
            summary
        })
    };

    let campaign = Campaign {
        notifier,
        concurrency: args.concurrency,
        rate: args.rate,
        spread: plan.spread.zip(total),
        retry: plan.retry,
        journal,
        resume,
        resend_unknown: args.resend_unknown,
    };
    let end = campaign.run(items_rx, records_tx, stop.clone()).await;
    let summary = consumer
        .await
        .map_err(|e| Failure::local(format!("the output task failed: {e}")))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    signals.abort();
    print_summary(&summary, &end, output);
    if let Some(e) = &end.journal_error {
        eprintln!(
            "error: {e}: the campaign stopped, the rest of the input was not started; once the \
             journal can be written, run the same command to resume"
        );
    }
    Ok(exit_code(&end, &summary))
}

/// 1 after a journal write error (the campaign stopped itself; checked first, so that it
/// is not taken for a signal), 130 when stopped by a signal, else 0 when every row was
/// delivered and 1 when not.
fn exit_code(end: &RunEnd, summary: &Summary) -> u8 {
    if end.journal_error.is_some() {
        return 1;
    }
    if end.interrupted {
        return 130;
    }
    let all = summary.total();
    let delivered = summary.count("delivered") + summary.count("already_delivered");
    if all == delivered {
        0
    } else {
        1
    }
}

/// Ctrl-C and SIGTERM.
enum StopSignals {
    /// Listening since [`StopSignals::listen`].
    #[cfg(unix)]
    Unix {
        interrupt: tokio::signal::unix::Signal,
        terminate: tokio::signal::unix::Signal,
    },
    /// Listening from the first poll of [`StopSignals::recv`].
    Later,
}

impl StopSignals {
    /// Installs the handlers now (on Unix).
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(interrupt), Ok(terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                return StopSignals::Unix {
                    interrupt,
                    terminate,
                };
            }
        }
        StopSignals::Later
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    async fn recv(&mut self) {
        match self {
            #[cfg(unix)]
            StopSignals::Unix {
                interrupt,
                terminate,
            } => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            StopSignals::Later => wait_for_stop().await,
        }
    }
}

fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{bar:30} {pos}/{len} {msg}  {per_sec}  eta {eta}"
    } else {
        "{spinner} {pos} {msg}  {per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Per-target output on stdout.
struct Output {
    format: Format,
    verbose: u8,
    printer: Printer,
    csv: Option<csv::Writer<std::io::Stdout>>,
    stdout: BufWriter<std::io::Stdout>,
}

impl Output {
    fn new(format: Format, verbose: u8, printer: Printer) -> Output {
        let csv = (format == Format::Csv).then(|| {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            let _ = w.write_record(CSV_HEADER);
            w
        });
        Output {
            format,
            verbose,
            printer,
            csv,
            stdout: BufWriter::new(std::io::stdout()),
        }
    }

    fn record(&mut self, record: &Record) {
        match self.format {
            Format::Human => {
                let line = human(record);
                let _ = writeln!(self.stdout, "{line}");
                if self.verbose > 0 {
                    let _ = self.stdout.flush();
                }
            }
            Format::Json => {
                let _ = json(&self.printer, record).write_line(&mut self.stdout);
            }
            Format::Csv => {
                if let Some(csv) = &mut self.csv {
                    let _ = csv.write_record(csv_fields(record));
                }
            }
        }
    }

    fn flush(&mut self) {
        let _ = self.stdout.flush();
        if let Some(csv) = &mut self.csv {
            let _ = csv.flush();
        }
    }
}

fn human(record: &Record) -> String {
    let id = record
        .id
        .as_deref()
        .map(|id| format!(" [{id}]"))
        .unwrap_or_default();
    match &record.verdict {
        Verdict::Sent { outcome, tries, .. } => {
            let line = human_line(&record.target, &record.event, outcome, *tries);
            match line.split_once('\n') {
                Some((first, rest)) => format!("{first}{id}\n{rest}"),
                None => format!("{line}{id}"),
            }
        }
        Verdict::BadRow(message) => format!("{:<12} line {}: {message}", "bad_row", record.line),
        other => format!(
            "{:<12} {}  {}  {}{id}",
            other.label(),
            record.target,
            record.event,
            verdict_reason(other)
        ),
    }
}

fn verdict_reason(verdict: &Verdict) -> &str {
    match verdict {
        Verdict::Sent { outcome, .. } => &outcome.reason,
        Verdict::AlreadyDelivered => "journaled delivered by a previous run; not sent again",
        Verdict::Unknown => "started by a previous run with no result; not sent again",
        Verdict::BadRow(m) | Verdict::JournalError(m) => m,
    }
}

fn json<'a>(printer: &Printer, record: &'a Record) -> JsonRecord<'a> {
    let mut value = match &record.verdict {
        Verdict::Sent { outcome, tries, .. } => {
            let mut v = printer.json(&record.target, &record.event, record.id.as_deref(), outcome);
            v.tries = Some(*tries);
            v
        }
        other => JsonRecord {
            target: &record.target,
            event: &record.event,
            id: record.id.as_deref(),
            outcome: other.label(),
            status: None,
            reason: verdict_reason(other),
            hint: None,
            attempts: None,
            retransmissions: None,
            elapsed_ms: None,
            call_id: None,
            tries: None,
            line: None,
            ladder: Vec::new(),
        },
    };
    value.line = Some(record.line);
    value
}

fn csv_fields(record: &Record) -> [String; 12] {
    match &record.verdict {
        Verdict::Sent { outcome, tries, .. } => csv_record(
            &record.target,
            &record.event,
            record.id.as_deref(),
            Some(record.line),
            outcome.kind.as_str(),
            Some(outcome),
            *tries,
        ),
        other => {
            let mut fields = csv_record(
                &record.target,
                &record.event,
                record.id.as_deref(),
                Some(record.line),
                other.label(),
                None,
                0,
            );
            fields[6] = verdict_reason(other).to_string();
            fields
        }
    }
}

/// `--report FILE`: CSV or JSON Lines.
enum Report {
    Csv(Box<csv::Writer<File>>),
    Jsonl(BufWriter<File>),
}

impl Report {
    /// Creates (or truncates) the report; when `append` (a resumed campaign), opens it to
    /// append after the earlier runs' records instead, with no second CSV header.
    fn open(path: &Path, append: bool) -> Result<Report, Failure> {
        let cannot = |e: std::io::Error| {
            Failure::input(format!("cannot open the report {}: {e}", path.display()))
        };
        let (file, empty) = if append {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .map_err(cannot)?;
            let len = file.seek(SeekFrom::End(0)).map_err(cannot)?;
            if len > 0 {
                // End a torn last record (a run killed mid-write) before appending.
                let mut last = [0u8];
                file.seek(SeekFrom::Start(len - 1)).map_err(cannot)?;
                file.read_exact(&mut last).map_err(cannot)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n").map_err(cannot)?;
                }
            }
            (file, len == 0)
        } else {
            (File::create(path).map_err(cannot)?, true)
        };
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        Ok(if csv {
            let mut w = csv::Writer::from_writer(file);
            if empty {
                let _ = w.write_record(CSV_HEADER);
            }
            Report::Csv(Box::new(w))
        } else {
            Report::Jsonl(BufWriter::new(file))
        })
    }

    fn record(&mut self, printer: &Printer, record: &Record) {
        match self {
            Report::Csv(w) => {
                let _ = w.write_record(csv_fields(record));
            }
            Report::Jsonl(w) => {
                let _ = json(printer, record).write_line(w);
            }
        }
    }

    fn flush(&mut self) {
        let result = match self {
            Report::Csv(w) => w.flush(),
            Report::Jsonl(w) => w.flush(),
        };
        if let Err(e) = result {
            eprintln!("error: cannot write the report: {e}");
        }
    }
}

/// The summary: on stdout for people, on stderr when stdout carries JSON or CSV.
fn print_summary(summary: &Summary, end: &RunEnd, format: Format) {
    let mut text = String::new();
    let counts: Vec<String> = summary
        .counts()
        .iter()
        .map(|(label, n)| format!("{n} {label}"))
        .collect();
    text += &format!(
        "summary: {} targets: {}\n",
        summary.total(),
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    );
    let ms = |p: f64| {
        summary.percentile(p).map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1000.0)
        })
    };
    if summary.percentile(0.5).is_some() {
        text += &format!(
            "latency: p50 {}, p95 {}, p99 {}\n",
            ms(0.5),
            ms(0.95),
            ms(0.99)
        );
    }
    let top = summary.top_reasons(5);
    if !top.is_empty() {
        text += "most frequent failures:\n";
        for (reason, n) in top {
            text += &format!("  {n:>7}  {reason}\n");
        }
    }
    if !summary.bad_lines().is_empty() {
        let lines: Vec<String> = summary.bad_lines().iter().map(u64::to_string).collect();
        text += &format!(
            "bad rows skipped at line{} {}{}\n",
            if lines.len() == 1 { "" } else { "s" },
            lines.join(", "),
            if summary.count("bad_row") > lines.len() as u64 {
                ", ..."
            } else {
                ""
            }
        );
    }
    if end.interrupted {
        text += "interrupted: the rest of the input was not started; run the same command with the same --journal to resume\n";
    }
    if format == Format::Human {
        print!("{text}");
        let _ = std::io::stdout().flush();
    } else {
        eprint!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_error_is_exit_1_even_when_the_stop_looks_like_an_interruption() {
        let summary = Summary::new();
        let journal_error = Some("cannot write the journal: disk full".to_string());
        for interrupted in [false, true] {
            let end = RunEnd {
                interrupted,
                journal_error: journal_error.clone(),
            };
            assert_eq!(exit_code(&end, &summary), 1);
        }
        let end = RunEnd {
            interrupted: true,
            journal_error: None,
        };
        assert_eq!(exit_code(&end, &summary), 130);
        assert_eq!(exit_code(&RunEnd::default(), &summary), 0);
    }

    #[test]
    fn the_tries_go_in_the_outcome_parentheses_not_in_the_reason() {
        let outcome = sipnotify::Outcome {
            attempts: 1,
            elapsed: Duration::from_micros(1500),
            ..sipnotify::Outcome::unsent(
                sipnotify::OutcomeKind::Unreachable,
                "connection refused (os error 111)",
            )
        };
        let record = |tries| Record {
            line: 2,
            id: Some("desk-7".into()),
            target: "sip:159@10.0.0.7".into(),
            event: "resync".into(),
            verdict: Verdict::Sent {
                outcome: outcome.clone(),
                tries,
                total: Duration::from_secs(3),
            },
        };
        let line = human(&record(3));
        assert!(
            line.starts_with(
                "unreachable  sip:159@10.0.0.7  resync  connection refused (os error 111)  \
                 (1 attempt, 1.5 ms, 3 tries) [desk-7]"
            ),
            "{line}"
        );
        let line = human(&record(1));
        assert!(
            line.contains("(os error 111)  (1 attempt, 1.5 ms) [desk-7]"),
            "{line}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2d").is_err() && parse_duration("").is_err());
    }
}
