//! `sipnotify batch`: the command line of a campaign. The campaign itself (input, shards,
//! pacing, journal, retries, report, summary) is the library's [`Campaign`].

use super::drive::{drive, warn_if_descriptors_short, Shown};
use super::output::received_not_used;
use super::send::{bind, notifier_config, parse_headers, timeout_within_timer_f, LineArgs};
use super::{parse_duration, Failure, Format};
use clap::{Args, ValueEnum};
use sipnotify::campaign::{
    Campaign, Defaults, Input, InputFormat, Options, RetryPolicy, Shard, SyncMode,
};
use sipnotify::NotifierConfig;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The input format, when the file name does not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `--journal-sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JournalSync {
    /// Intents synced before their targets are sent, in groups.
    Batch,
    /// Left to the kernel.
    Off,
}

/// `--channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelName {
    /// SIP NOTIFY.
    Sip,
    /// HTTP push to Cisco phones' web servers (CGI/Execute, screenshots, information).
    Http,
}

/// Targets in flight at once over SIP when --concurrency is not given.
const SIP_CONCURRENCY: usize = 256;

/// Options of `sipnotify batch`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input columns (CSV header) or fields (JSON Lines): target (required), id, auth_user, password,
event, url, proxy, transport, vendor. An empty or missing cell falls back to the option of the
same name above (--event, --url, --auth-user, --password-file, --proxy, --transport, --vendor).

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
    /// The phones' vendor for rows with no `vendor` cell: resync, reboot, restart and report
    /// become its events (see `sipnotify vendors`); default cisco (SPA/MPP).
    #[arg(long, value_name = "VENDOR")]
    pub vendor: Option<String>,
    /// The XML-Service URL for rows with no `url` cell (--channel http: the profile or
    /// firmware URL of --action resync or upgrade).
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
    /// Targets in flight at once (default 256 for sip, 32 for http).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// New targets started per second, evenly spaced.
    #[arg(long, value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Spread the starts uniformly at random over this window (e.g. 90s, 30m, 2h), like the
    /// phones' own Resync_Random_Delay. Counts the rows first: a file is read twice, standard
    /// input is held in memory.
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
    /// When intents reach the disk: batch syncs them (fdatasync, many at once) before
    /// their targets are sent, so even a power cut never makes a resume act twice; off
    /// leaves them to the kernel (faster on slow disks; a power cut may lose the last
    /// records, and a resume may act on those phones again).
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "batch",
        requires = "journal"
    )]
    pub journal_sync: JournalSync,
    /// Send every row, even one naming the same target and event as an earlier row (by
    /// default it is reported `duplicate` with the line of the first, and not sent).
    #[arg(long)]
    pub allow_duplicates: bool,
    /// Take every N-th row starting at K (0 <= K < N), to split one file over N machines.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Also write one record per target to this file: CSV if it ends in .csv, else JSON
    /// Lines. Replaced, unless --journal names an existing journal (a resume): then
    /// appended to.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write this run's report as one HTML page: outcome counts, latency histogram,
    /// timeline, most frequent failures with hints, and a filterable table of every target
    /// (self-contained: opens with no network). Written when the run ends.
    #[arg(long, value_name = "FILE")]
    pub report_html: Option<PathBuf>,
    /// Fetch confirmation (--confirm-fetch, --serve, --fetch-log, --max-fetch-rate).
    #[command(flatten)]
    pub confirm: Box<super::confirm::ConfirmArgs>,
    /// How to act on the phones: sip (NOTIFY) or http (Cisco CGI/Execute push).
    #[arg(long, value_enum, default_value = "sip")]
    pub channel: ChannelName,
    #[command(flatten)]
    pub http: super::http::BatchWebArgs,
}

/// The defaults of rows whose cells are empty, checked.
fn defaults(args: &BatchArgs) -> Result<Defaults, Failure> {
    let mut defaults = Defaults::new(&args.event);
    defaults.url = args.url.clone();
    defaults.profile = args.profile.clone();
    defaults.body = args.body.clone().unwrap_or_default().into_bytes();
    defaults.content_type = args.content_type.clone();
    defaults.auth_user = args.line.auth_user.clone();
    defaults.password = args.line.password.given().password()?;
    defaults.transport = args.line.transport;
    defaults.proxy = args.line.proxy.clone();
    defaults.from = args.line.from.clone();
    defaults.extra = Arc::from(parse_headers(&args.line.headers)?);
    if let Some(name) = &args.vendor {
        defaults.vendor = Some(sipnotify::event::vendor(name).ok_or_else(|| {
            Failure::input(sipnotify::EventError::UnknownVendor(name.clone()).to_string())
        })?);
    }
    defaults
        .check()
        .map_err(|e| Failure::input(format!("--event: {e}")))?;
    Ok(defaults)
}

/// The campaign's options, checked; `concurrency` unless --concurrency is given.
pub fn options(args: &BatchArgs, concurrency: usize) -> Result<Options, Failure> {
    let duration = |name: &str, text: &str| {
        parse_duration(text).map_err(|e| Failure::input(format!("{name}: {e}")))
    };
    let retry = RetryPolicy {
        retries: args.retries,
        base: duration("--backoff", &args.backoff)?,
        ..RetryPolicy::default()
    };
    if retry.base > retry.max {
        return Err(Failure::input(format!(
            "--backoff: at most {} s (the longest backoff)",
            retry.max.as_secs()
        )));
    }
    let mut options = Options::new(Input::from_arg(&args.input));
    options.format = args.format.map(|f| match f {
        FileFormat::Csv => InputFormat::Csv,
        FileFormat::Jsonl => InputFormat::Jsonl,
    });
    options.shard = args.shard.unwrap_or(Shard::ALL);
    options.concurrency = args.concurrency.unwrap_or(concurrency);
    options.rate = args.rate;
    options.spread = args
        .spread
        .as_deref()
        .map(|s| duration("--spread", s))
        .transpose()?;
    options.retry = retry;
    options.journal = args.journal.clone();
    options.journal_sync = match args.journal_sync {
        JournalSync::Batch => SyncMode::Batch,
        JournalSync::Off => SyncMode::Off,
    };
    options.allow_duplicates = args.allow_duplicates;
    options.resend_unknown = args.resend_unknown;
    options.report = args.report.clone();
    options.report_html = args.report_html.clone();
    options.count = std::io::stderr().is_terminal();
    Ok(options)
}

/// What a SIP campaign needs from `args`, checked: the rows' defaults, the campaign's
/// options (described by the defaults, for its journal) and the notifier's
/// configuration. `batch` runs them, and so does the service (`sipnotify api`), whose
/// campaigns' query parameters are these same options.
pub fn sip_settings(args: &BatchArgs) -> Result<(Defaults, Options, NotifierConfig), Failure> {
    let mut defaults = defaults(args)?;
    let (config, timeout) = notifier_config(&args.line)?;
    timeout_within_timer_f(&config, timeout)?;
    defaults.timeout = timeout;
    let mut options = options(args, SIP_CONCURRENCY)?;
    options.description = defaults.describe();
    Ok((defaults, options, config))
}

/// Runs a campaign and returns the exit code.
pub async fn run(args: BatchArgs, output: Format, verbose: u8) -> Result<u8, Failure> {
    if args.channel == ChannelName::Http {
        return super::http::batch(args, output, verbose).await;
    }
    args.http.refuse_for_sip()?;
    let confirm_within = args.confirm.check(&[
        ("the input", Some(Path::new(&args.input))),
        (
            "--password-file",
            args.line.password.password_file.as_deref(),
        ),
        ("--journal", args.journal.as_deref()),
        ("--report", args.report.as_deref()),
        ("--report-html", args.report_html.as_deref()),
    ])?;
    let (defaults, options, config) = sip_settings(&args)?;
    let concurrency = options.concurrency;
    let input = options.input.clone();
    let shown = Shown {
        output,
        verbose,
        input,
        title: format!("sipnotify batch {} --event {}", args.input, args.event),
        report_html: args.report_html.clone(),
    };
    if let Some(within) = confirm_within {
        // Confirmed is not delivered: a journal resumes only the campaign that waited for
        // the same fetches.
        let mut options = options;
        let counted = args.confirm.confirm_path.as_deref().unwrap_or("any path");
        options
            .description
            .fields
            .insert("confirm_fetch".into(), counted.into());
        let campaign = Campaign::open(options, move |row| {
            super::confirm::watched(defaults.notify(row)?, row)
        })
        .map_err(|e| Failure::input(e.to_string()))?;
        let confirm = args.confirm.start(within).await?;
        let notifier = bind(config).await?;
        warn_if_descriptors_short(concurrency);
        let channel = confirm.channel(notifier.clone());
        let footer = || received_not_used(notifier.stats());
        let code = drive(campaign, channel, shown, |printed| printed, footer).await;
        confirm.stop().await;
        return code;
    }
    let campaign = Campaign::open(options, move |row| defaults.notify(row))
        .map_err(|e| Failure::input(e.to_string()))?;
    let notifier = bind(config).await?;
    warn_if_descriptors_short(concurrency);
    let footer = || received_not_used(notifier.stats());
    drive(campaign, notifier.clone(), shown, |printed| printed, footer).await
}
