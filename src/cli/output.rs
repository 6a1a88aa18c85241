//! How results are shown: a line per target for people, JSON for scripts, and the ladder.

use super::{Failure, Format};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sipnotify::campaign::html::{unix_now, HtmlReport, Span};
use sipnotify::campaign::record::{csv_row, JsonRecord, CSV_HEADER};
use sipnotify::campaign::{Input, Observer, Record, Summary, Verdict};
use sipnotify::proto::outcome::Direction;
use sipnotify::proto::Stats;
use sipnotify::text::printable;
use sipnotify::{Outcome, OutcomeKind};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Prints results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    format: Format,
    verbose: u8,
}

impl Printer {
    /// A printer for `--output` and `-v`.
    pub fn new(format: Format, verbose: u8) -> Printer {
        Printer { format, verbose }
    }

    /// Whether the flows must keep their messages.
    pub fn wants_ladder(&self) -> bool {
        self.verbose > 0
    }

    /// Prints a request that was not sent.
    pub fn dry_run(&self, request: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        match self.format {
            Format::Human => {
                let _ = stdout.write_all(request);
                let _ = writeln!(stdout);
            }
            Format::Json | Format::Csv => {
                let value = serde_json::json!({
                    "dry_run": true,
                    "request": String::from_utf8_lossy(request),
                });
                let _ = writeln!(stdout, "{value}");
            }
        }
    }

    /// Prints the result of one target.
    pub fn outcome(&self, target: &str, event: &str, id: Option<&str>, outcome: &Outcome) {
        let mut stdout = std::io::stdout().lock();
        let _ = match self.format {
            Format::Human => {
                if self.wants_ladder() {
                    let _ = stdout.write_all(ladder(outcome).as_bytes());
                }
                writeln!(stdout, "{}", human_line(target, event, outcome, 1))
            }
            Format::Json => JsonRecord::sent(target, event, id, outcome, self.wants_ladder())
                .write_line(&mut stdout),
            Format::Csv => {
                let mut csv = Printer::csv_writer(&mut stdout);
                let _ = csv.write_record(csv_row(target, event, id, None, outcome, 1));
                csv.flush()
            }
        };
    }

    /// A CSV writer that has written the header row.
    pub fn csv_writer<W: Write>(w: W) -> csv::Writer<W> {
        let mut csv = csv::Writer::from_writer(w);
        let _ = csv.write_record(CSV_HEADER);
        csv
    }
}

/// Labels are padded to the longest one, so that the targets of consecutive lines start in
/// one column: `no_credentials` among one target's outcomes, `already_delivered` among a
/// campaign's records.
const OUTCOME_WIDTH: usize = 14;
const RECORD_WIDTH: usize = 17;

/// `delivered      sip:159@10.0.0.7  resync  200 OK  (2 attempts, 3.1 ms)` and a hint line.
pub fn human_line(target: &str, event: &str, o: &Outcome, tries: u32) -> String {
    labelled_line(OUTCOME_WIDTH, target, event, o, tries)
}

/// [`human_line`] with its label padded to `width`.
fn labelled_line(width: usize, target: &str, event: &str, o: &Outcome, tries: u32) -> String {
    let reason = printable(&o.reason, false);
    let answer = match o.status {
        Some(code) => format!("{code} {reason}"),
        None => reason.into_owned(),
    };
    let mut line = format!(
        "{:<width$} {target}  {event}  {answer}  ({} attempt{}, {:.1} ms",
        o.kind.as_str(),
        o.attempts,
        if o.attempts == 1 { "" } else { "s" },
        o.elapsed.as_secs_f64() * 1000.0
    );
    if o.retransmissions > 0 {
        line += &format!(", {} retransmissions", o.retransmissions);
    }
    if tries > 1 {
        line += &format!(", {tries} tries");
    }
    if let Some(from) = o.answered_from {
        line += &format!(", answered from {from}");
    }
    line.push(')');
    if let Some(hint) = o.hint.filter(|_| o.kind != OutcomeKind::Delivered) {
        line += &format!("\n  hint: {hint}");
    }
    line
}

/// A short duration as people read it, with the digits that mean something: `312 µs`,
/// `4.25 ms`, `31.5 ms`, `2.1 s` (loopback exchanges take well under a millisecond).
pub fn duration_text(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    match micros {
        m if m < 1_000.0 => format!("{m:.0} µs"),
        m if m < 10_000.0 => format!("{:.2} ms", m / 1e3),
        m if m < 1_000_000.0 => format!("{:.1} ms", m / 1e3),
        m => format!("{:.1} s", m / 1e6),
    }
}

/// Every message of a target, in order, with its time.
pub fn ladder(o: &Outcome) -> String {
    let mut text = String::new();
    for entry in &o.ladder {
        let label = match entry.direction {
            Direction::Sent => ">>> sent",
            Direction::Retransmitted => ">>> retransmitted",
            Direction::Received => "<<< received",
            Direction::Routing => "--- routing",
        };
        let from = entry.from.map(|a| format!(" from {a}")).unwrap_or_default();
        text += &format!(
            "{label} at {:.1} ms{from}\n{}\n",
            entry.at.as_secs_f64() * 1000.0,
            printable(&String::from_utf8_lossy(&entry.bytes), true).trim_end_matches(['\r', '\n'])
        );
        text.push('\n');
    }
    text
}

/// A campaign record as a line for people: the target's line, or why it was not sent.
pub fn human_record(record: &Record) -> String {
    let id = record
        .id
        .as_deref()
        .map(|id| format!(" [{id}]"))
        .unwrap_or_default();
    match &record.verdict {
        Verdict::Sent { outcome, tries, .. } => {
            let line = labelled_line(RECORD_WIDTH, &record.target, &record.event, outcome, *tries);
            match line.split_once('\n') {
                Some((first, rest)) => format!("{first}{id}\n{rest}"),
                None => format!("{line}{id}"),
            }
        }
        Verdict::BadRow(message) => {
            format!(
                "{:<RECORD_WIDTH$} line {}: {message}",
                "bad_row", record.line
            )
        }
        other => format!(
            "{:<RECORD_WIDTH$} {}  {}  {}{id}",
            other.label(),
            record.target,
            record.event,
            other.reason()
        ),
    }
}

/// The progress bar of a campaign on stderr, with a total when the rows were counted. The
/// rate and ETA are in the message ([`Progress::message`]), not indicatif's, which would count
/// the rows a resume skips as work done.
pub fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{bar:30} {pos}/{len} {msg}"
    } else {
        "{spinner} {pos} {msg}"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// What the progress bar says: targets sent this run (delivered or failed), rows not sent
/// (journaled by an earlier run, unknown, duplicates), and the rate of targets sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    delivered: u64,
    failed: u64,
    skipped: u64,
}

impl Progress {
    /// Counts one record.
    pub fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Sent { outcome, .. } if outcome.kind == OutcomeKind::Delivered => {
                self.delivered += 1
            }
            Verdict::Sent { .. } | Verdict::BadRow(_) | Verdict::JournalError(_) => {
                self.failed += 1
            }
            Verdict::AlreadyDelivered | Verdict::Unknown | Verdict::Duplicate { .. } => {
                self.skipped += 1
            }
        }
    }

    /// `delivered 120, failed 3, skipped 4000  20/s  eta 3m 20s`: the rate is of the
    /// targets sent in `elapsed`, rounded; the ETA (with `remaining` rows) assumes the rest
    /// are sent at that rate.
    pub fn message(&self, elapsed: Duration, remaining: Option<u64>) -> String {
        let mut text = format!("delivered {}, failed {}", self.delivered, self.failed);
        if self.skipped > 0 {
            text += &format!(", skipped {}", self.skipped);
        }
        let sent = self.delivered + self.failed;
        let secs = elapsed.as_secs_f64();
        if sent == 0 || secs <= 0.0 {
            return text;
        }
        let rate = sent as f64 / secs;
        text += &match rate {
            r if r >= 10.0 => format!("  {r:.0}/s"),
            r => format!("  {r:.1}/s"),
        };
        if let Some(remaining) = remaining.filter(|&r| r > 0) {
            let eta = Duration::from_secs((remaining as f64 / rate).ceil() as u64);
            text += &format!("  eta {}", indicatif::HumanDuration(eta));
        }
        text
    }
}

/// Per-target output on stdout, the progress bar, and bad rows on stderr.
pub struct CampaignOutput {
    format: Format,
    verbose: u8,
    bar: Option<ProgressBar>,
    input: Input,
    progress: Progress,
    csv: Option<csv::Writer<std::io::Stdout>>,
    stdout: BufWriter<std::io::Stdout>,
    html: Option<LiveHtml>,
}

impl CampaignOutput {
    pub fn new(format: Format, verbose: u8, bar: Option<ProgressBar>, input: Input) -> Self {
        let csv = (format == Format::Csv).then(|| Printer::csv_writer(std::io::stdout()));
        CampaignOutput {
            format,
            verbose,
            bar,
            input,
            progress: Progress::default(),
            csv,
            stdout: BufWriter::new(std::io::stdout()),
            html: None,
        }
    }

    /// Also writes each record into `html` (`batch --report-html`).
    pub fn with_html(mut self, html: Option<LiveHtml>) -> Self {
        self.html = html;
        self
    }

    fn print(&mut self, record: &Record) {
        match self.format {
            Format::Human => {
                let _ = writeln!(self.stdout, "{}", human_record(record));
                if self.verbose > 0 {
                    let _ = self.stdout.flush();
                }
            }
            Format::Json => {
                let _ = record.json(false).write_line(&mut self.stdout);
            }
            Format::Csv => {
                if let Some(csv) = &mut self.csv {
                    let _ = csv.write_record(record.csv());
                }
            }
        }
    }
}

impl Observer for CampaignOutput {
    fn record(&mut self, record: &Record) {
        if let Verdict::BadRow(message) = &record.verdict {
            let line = record.line;
            errln!("error: {}: line {line}: {message}; row skipped", self.input);
        }
        self.progress.add(&record.verdict);
        match self.bar.clone() {
            Some(bar) => {
                bar.suspend(|| self.print(record));
                bar.inc(1);
                let remaining = bar.length().map(|len| len.saturating_sub(bar.position()));
                bar.set_message(self.progress.message(bar.elapsed(), remaining));
            }
            None => self.print(record),
        }
        if let Some(html) = &self.html {
            html.record(record);
        }
    }

    // What is written reaches a reader now, not at 8 KiB.
    fn caught_up(&mut self) {
        let _ = self.stdout.flush();
        if let Some(csv) = &mut self.csv {
            let _ = csv.flush();
        }
    }
}

/// What arrived and was not used, or came from another address, for the summary: a
/// timeout then has its explanation (`-vv` logs each one).
pub fn received_not_used(stats: Stats) -> String {
    let Stats {
        from_elsewhere,
        unmatched,
        mismatched,
        malformed,
    } = stats;
    let mut text = String::new();
    if unmatched + mismatched + malformed > 0 {
        text += &format!(
            "received and dropped: {unmatched} matching no request in flight, {mismatched} with \
             another Call-ID or CSeq, {malformed} not SIP (-vv logs each)\n"
        );
    }
    if from_elsewhere > 0 {
        text += &format!(
            "answers used from another address than their request went to: {from_elsewhere}\n"
        );
    }
    text
}

/// The HTML report of a running campaign, fed by the output thread and finished by the
/// command once the campaign ends. A write error is kept (and said at the end): the
/// campaign goes on.
#[derive(Clone)]
pub struct LiveHtml(Arc<Mutex<(HtmlReport, Option<std::io::Error>)>>);

impl LiveHtml {
    /// Starts the report at `path`; its timeline starts now.
    pub fn create(path: &Path, title: &str) -> Result<LiveHtml, Failure> {
        let report = HtmlReport::create(path, title, unix_now()).map_err(|e| {
            Failure::input(format!(
                "cannot open the HTML report {}: {e}",
                path.display()
            ))
        })?;
        Ok(LiveHtml(Arc::new(Mutex::new((report, None)))))
    }

    fn record(&self, record: &Record) {
        let mut html = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Seen within a millisecond of its end: it started its total time ago.
        let span = match &record.verdict {
            Verdict::Sent { total, .. } => Some(Span::ended_now(*total)),
            _ => None,
        };
        if html.1.is_none() {
            html.1 = html.0.record(record, span).err();
        }
    }

    /// Writes the charts and puts the file in place, or says why it could not.
    pub fn finish(self, summary: &Summary) {
        let Some(html) = Arc::into_inner(self.0) else {
            errln!("error: cannot write the HTML report: the campaign still holds it");
            return;
        };
        let (report, error) = html.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = error.map_or_else(|| report.finish(summary).err(), Some) {
            errln!("error: cannot write the HTML report: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipnotify::campaign::Verdict;
    use std::time::Duration;

    #[test]
    fn the_tries_go_in_the_outcome_parentheses_not_in_the_reason() {
        let outcome = Outcome {
            attempts: 1,
            elapsed: Duration::from_micros(1500),
            ..Outcome::unsent(
                OutcomeKind::Unreachable,
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
        let line = human_record(&record(3));
        assert!(
            line.starts_with(
                "unreachable       sip:159@10.0.0.7  resync  connection refused (os error 111)  \
                 (1 attempt, 1.5 ms, 3 tries) [desk-7]"
            ),
            "{line}"
        );
        let line = human_record(&record(1));
        assert!(
            line.contains("(os error 111)  (1 attempt, 1.5 ms) [desk-7]"),
            "{line}"
        );
    }

    #[test]
    fn targets_start_in_one_column_whatever_the_outcome() {
        let kinds = [
            OutcomeKind::Delivered,
            OutcomeKind::AuthFailed,
            OutcomeKind::Rejected,
            OutcomeKind::Timeout,
            OutcomeKind::Unreachable,
            OutcomeKind::NoCredentials,
        ];
        let columns: Vec<Option<usize>> = kinds
            .iter()
            .map(|&kind| {
                human_line("sip:159@h", "resync", &Outcome::unsent(kind, "r"), 1).find("sip:")
            })
            .collect();
        assert!(columns.iter().all(|c| *c == columns[0]), "{columns:?}");
        let record = |verdict| Record {
            line: 2,
            id: None,
            target: "sip:159@h".into(),
            event: "resync".into(),
            verdict,
        };
        let sent = record(Verdict::Sent {
            outcome: Outcome::unsent(OutcomeKind::NoCredentials, "r"),
            tries: 1,
            total: Duration::ZERO,
        });
        let skipped = record(Verdict::AlreadyDelivered);
        assert_eq!(
            human_record(&sent).find("sip:"),
            human_record(&skipped).find("sip:")
        );
    }

    #[test]
    fn progress_on_a_resume_counts_skipped_rows_apart_and_rates_only_what_was_sent() {
        let mut progress = Progress::default();
        for _ in 0..4000 {
            progress.add(&Verdict::AlreadyDelivered);
        }
        let delivered = Verdict::Sent {
            outcome: Outcome::unsent(OutcomeKind::Delivered, "OK"),
            tries: 1,
            total: Duration::ZERO,
        };
        for _ in 0..40 {
            progress.add(&delivered);
        }
        progress.add(&Verdict::BadRow("no target".into()));
        // 41 sent in 2.05 s (--rate 20): not 4041 rows in 2 s, and no decimals.
        let text = progress.message(Duration::from_millis(2050), Some(200));
        assert_eq!(
            text,
            "delivered 40, failed 1, skipped 4000  20/s  eta 10 seconds"
        );
        assert_eq!(
            Progress::default().message(Duration::from_secs(1), Some(5)),
            "delivered 0, failed 0"
        );
        let slow = Progress {
            delivered: 1,
            ..Progress::default()
        };
        assert_eq!(
            slow.message(Duration::from_secs(4), None),
            "delivered 1, failed 0  0.2/s"
        );
    }

    #[test]
    fn durations_keep_the_digits_that_mean_something() {
        let text: Vec<String> = [312, 4_250, 31_500, 2_100_000]
            .map(|us| duration_text(Duration::from_micros(us)))
            .into();
        assert_eq!(text, ["312 µs", "4.25 ms", "31.5 ms", "2.1 s"]);
    }
}
