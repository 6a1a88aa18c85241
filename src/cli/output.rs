//! How results are shown: a line per target for people, JSON for scripts, and the ladder.

use super::Format;
use serde::Serialize;
use sipnotify::proto::outcome::{Direction, TraceEntry};
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
                writeln!(stdout, "{}", human_line(target, event, outcome, 1))
            }
            Format::Json => self
                .json(target, event, id, outcome)
                .write_line(&mut stdout),
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

    /// The JSON record of one target that was sent.
    pub fn json<'a>(
        &self,
        target: &'a str,
        event: &'a str,
        id: Option<&'a str>,
        o: &'a Outcome,
    ) -> JsonRecord<'a> {
        JsonRecord {
            target,
            event,
            id,
            outcome: o.kind.as_str(),
            status: o.status,
            reason: &o.reason,
            hint: o.hint,
            attempts: Some(o.attempts),
            retransmissions: Some(o.retransmissions),
            elapsed_ms: Some(o.elapsed.as_secs_f64() * 1000.0),
            call_id: Some(&o.call_id),
            tries: None,
            line: None,
            ladder: if self.wants_ladder() {
                o.ladder.iter().map(LadderJson::from).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// One target as a JSON object. Serialized straight from borrowed fields: campaigns print
/// one per target.
#[derive(Debug, Serialize)]
pub struct JsonRecord<'a> {
    /// The Request-URI.
    pub target: &'a str,
    /// The event type.
    pub event: &'a str,
    /// The batch row's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// How it ended.
    pub outcome: &'a str,
    /// The final SIP status.
    pub status: Option<u16>,
    /// The reason phrase, or what went wrong.
    pub reason: &'a str,
    /// Advice for the user.
    pub hint: Option<&'static str>,
    /// NOTIFY requests sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Timer E retransmissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmissions: Option<u32>,
    /// From the first send to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
    /// The Call-ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<&'a str>,
    /// Batch: tries, retries included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries: Option<u32>,
    /// Batch: the input line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// With -v: every message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ladder: Vec<LadderJson<'a>>,
}

impl JsonRecord<'_> {
    /// Writes the record as one line of JSON Lines.
    pub fn write_line(&self, w: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *w, self)?;
        w.write_all(b"\n")
    }
}

/// One message of the ladder in JSON.
#[derive(Debug, Serialize)]
pub struct LadderJson<'a> {
    at_ms: f64,
    direction: Direction,
    message: std::borrow::Cow<'a, str>,
}

impl<'a> From<&'a TraceEntry> for LadderJson<'a> {
    fn from(e: &'a TraceEntry) -> Self {
        LadderJson {
            at_ms: e.at.as_secs_f64() * 1000.0,
            direction: e.direction,
            message: String::from_utf8_lossy(&e.bytes),
        }
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
    line.push(')');
    if let Some(hint) = o.hint.filter(|_| o.kind != OutcomeKind::Delivered) {
        line += &format!("\n  hint: {hint}");
    }
    line
}

/// Text from the network made safe for a terminal: a phone's reason phrase or message could
/// carry escape sequences. Control characters become `\xNN`; line ends are kept in
/// `multiline` text.
fn printable(text: &str, multiline: bool) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| !c.is_control() || (multiline && matches!(c, '\r' | '\n' | '\t'));
    if text.chars().all(keep) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if keep(c) {
                c.to_string()
            } else {
                format!("\\x{:02x}", u32::from(c))
            }
        })
        .collect::<String>()
        .into()
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
            printable(&String::from_utf8_lossy(&entry.bytes), true).trim_end_matches(['\r', '\n'])
        );
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_the_network_never_reach_the_terminal() {
        let hostile = "Bad\x1b]0;pwned\x07 Event\r\nX: y";
        assert_eq!(
            printable(hostile, false),
            "Bad\\x1b]0;pwned\\x07 Event\\x0d\\x0aX: y"
        );
        assert_eq!(
            printable(hostile, true),
            "Bad\\x1b]0;pwned\\x07 Event\r\nX: y"
        );
        assert!(matches!(
            printable("200 OK", false),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
