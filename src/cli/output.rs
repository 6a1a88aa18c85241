//! How results are shown: a line per target for people, JSON for scripts, and the ladder.

use super::Format;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sipnotify::campaign::record::{csv_row, JsonRecord, CSV_HEADER};
use sipnotify::campaign::{Input, Observer, Record, Verdict};
use sipnotify::proto::outcome::Direction;
use sipnotify::text::printable;
use sipnotify::{Outcome, OutcomeKind};
use std::io::{BufWriter, Write};
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

/// `delivered  sip:159@10.0.0.7  resync  200 OK  (2 attempts, 3.1 ms)` and a hint line.
pub fn human_line(target: &str, event: &str, o: &Outcome, tries: u32) -> String {
    let reason = printable(&o.reason, false);
    let answer = match o.status {
        Some(code) => format!("{code} {reason}"),
        None => reason.into_owned(),
    };
    let mut line = format!(
        "{:<12} {target}  {event}  {answer}  ({} attempt{}, {:.1} ms",
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
            other.reason()
        ),
    }
}

/// The progress bar of a campaign on stderr, with a total when the rows were counted.
pub fn progress_bar(total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
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

/// Per-target output on stdout, the progress bar, and bad rows on stderr.
pub struct CampaignOutput {
    format: Format,
    verbose: u8,
    bar: Option<ProgressBar>,
    input: Input,
    counts: (u64, u64),
    csv: Option<csv::Writer<std::io::Stdout>>,
    stdout: BufWriter<std::io::Stdout>,
}

impl CampaignOutput {
    pub fn new(format: Format, verbose: u8, bar: Option<ProgressBar>, input: Input) -> Self {
        let csv = (format == Format::Csv).then(|| Printer::csv_writer(std::io::stdout()));
        CampaignOutput {
            format,
            verbose,
            bar,
            input,
            counts: (0, 0),
            csv,
            stdout: BufWriter::new(std::io::stdout()),
        }
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
        if record.verdict.is_delivered() {
            self.counts.0 += 1;
        } else {
            self.counts.1 += 1;
        }
        match self.bar.clone() {
            Some(bar) => {
                bar.suspend(|| self.print(record));
                bar.inc(1);
                let (delivered, failed) = self.counts;
                bar.set_message(format!("delivered {delivered}, failed {failed}"));
            }
            None => self.print(record),
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
                "unreachable  sip:159@10.0.0.7  resync  connection refused (os error 111)  \
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
}
