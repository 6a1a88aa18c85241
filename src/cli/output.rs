//! How results are shown: a line per target for people, JSON for scripts, and the ladder.

use super::Format;
use sipnotify::proto::outcome::Direction;
use sipnotify::{Outcome, OutcomeKind};
use std::io::Write;

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
                writeln!(stdout, "{}", human_line(target, event, outcome))
            }
            Format::Json => writeln!(stdout, "{}", self.json(target, event, id, outcome)),
            Format::Csv => {
                let mut csv = csv::Writer::from_writer(&mut stdout);
                let _ = csv.write_record(CSV_HEADER);
                let _ = csv.write_record(csv_record(
                    target,
                    event,
                    id,
                    None,
                    outcome.kind.as_str(),
                    Some(outcome),
                    1,
                ));
                csv.flush()
            }
        };
    }

    /// The JSON record of one target.
    pub fn json(
        &self,
        target: &str,
        event: &str,
        id: Option<&str>,
        o: &Outcome,
    ) -> serde_json::Value {
        let mut value = serde_json::json!({
            "target": target,
            "event": event,
            "outcome": o.kind,
            "status": o.status,
            "reason": o.reason,
            "hint": o.hint,
            "attempts": o.attempts,
            "retransmissions": o.retransmissions,
            "elapsed_ms": o.elapsed.as_secs_f64() * 1000.0,
            "call_id": o.call_id,
        });
        if let Some(id) = id {
            value["id"] = id.into();
        }
        if self.wants_ladder() {
            value["ladder"] = o
                .ladder
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "at_ms": e.at.as_secs_f64() * 1000.0,
                        "direction": e.direction,
                        "message": String::from_utf8_lossy(&e.bytes),
                    })
                })
                .collect();
        }
        value
    }
}

/// The columns of `--output csv`.
pub const CSV_HEADER: [&str; 12] = [
    "line",
    "id",
    "target",
    "event",
    "outcome",
    "status",
    "reason",
    "attempts",
    "tries",
    "retransmissions",
    "elapsed_ms",
    "call_id",
];

/// One CSV row, in the order of [`CSV_HEADER`]; `outcome` may be absent for rows that
/// were not sent (bad rows, resumed ones), whose reason is then given in `label`'s place.
pub fn csv_record(
    target: &str,
    event: &str,
    id: Option<&str>,
    line: Option<u64>,
    label: &str,
    outcome: Option<&Outcome>,
    tries: u32,
) -> [String; 12] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    [
        opt(line.map(|l| l.to_string())),
        id.unwrap_or_default().to_string(),
        target.to_string(),
        event.to_string(),
        label.to_string(),
        opt(outcome.and_then(|o| o.status).map(|s| s.to_string())),
        opt(outcome.map(|o| o.reason.clone())),
        opt(outcome.map(|o| o.attempts.to_string())),
        opt(outcome.map(|_| tries.to_string())),
        opt(outcome.map(|o| o.retransmissions.to_string())),
        opt(outcome.map(|o| format!("{:.1}", o.elapsed.as_secs_f64() * 1000.0))),
        opt(outcome.map(|o| o.call_id.clone())),
    ]
}

/// `delivered  sip:159@10.0.0.7  resync  200 OK  (2 attempts, 3.1 ms)` and a hint line.
pub fn human_line(target: &str, event: &str, o: &Outcome) -> String {
    let answer = match o.status {
        Some(code) => format!("{code} {}", o.reason),
        None => o.reason.clone(),
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
        };
        text += &format!(
            "{label} at {:.1} ms\n{}\n",
            entry.at.as_secs_f64() * 1000.0,
            String::from_utf8_lossy(&entry.bytes).trim_end_matches(['\r', '\n'])
        );
        text.push('\n');
    }
    text
}
