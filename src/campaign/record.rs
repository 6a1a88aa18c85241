//! One record per target: how it ended, and its forms in JSON Lines and CSV (the same for
//! the standard output, the report file and the one-phone commands).

use crate::proto::outcome::{Direction, TraceEntry};
use crate::proto::Outcome;
use crate::text::printable;
use serde::Serialize;
use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// How a target ended.
// Sent is the variant nearly every target ends in: boxing its outcome would allocate once
// per target to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Sent (perhaps several times); the last try's outcome.
    Sent {
        /// The last try.
        outcome: Outcome,
        /// Tries made (1 + retries).
        tries: u32,
        /// From the first send to the end, backoff included.
        total: Duration,
    },
    /// Journaled delivered by a previous run: not sent again.
    AlreadyDelivered,
    /// Journaled as started by a previous run with no result: it may or may not have been
    /// sent, so it is not sent again (unless asked).
    Unknown,
    /// The row could not be used.
    BadRow(String),
    /// The same target and event as the row at `first_line`: not sent again.
    Duplicate {
        /// The line of the row that was sent.
        first_line: u64,
    },
    /// The journal could not be written, so the target was not sent.
    JournalError(String),
}

impl Verdict {
    /// The label used in outputs and counts.
    pub fn label(&self) -> &str {
        match self {
            Verdict::Sent { outcome, .. } => outcome.kind.as_str(),
            Verdict::AlreadyDelivered => "already_delivered",
            Verdict::Unknown => "unknown",
            Verdict::BadRow(_) => "bad_row",
            Verdict::Duplicate { .. } => "duplicate",
            Verdict::JournalError(_) => "journal_error",
        }
    }

    /// Whether this counts as delivered (now or before).
    pub fn is_delivered(&self) -> bool {
        match self {
            Verdict::Sent { outcome, .. } => outcome.kind.is_success(),
            Verdict::AlreadyDelivered => true,
            Verdict::Unknown
            | Verdict::BadRow(_)
            | Verdict::Duplicate { .. }
            | Verdict::JournalError(_) => false,
        }
    }

    /// Why it ended so: the outcome's reason, or what the campaign decided.
    pub fn reason(&self) -> Cow<'_, str> {
        match self {
            Verdict::Sent { outcome, .. } => Cow::Borrowed(&outcome.reason),
            Verdict::AlreadyDelivered => {
                "journaled delivered by a previous run; not sent again".into()
            }
            Verdict::Unknown => "started by a previous run with no result; not sent again".into(),
            Verdict::Duplicate { first_line } => format!(
                "the same target and event as line {first_line}, sent once (--allow-duplicates sends each)"
            )
            .into(),
            Verdict::BadRow(m) | Verdict::JournalError(m) => Cow::Borrowed(m),
        }
    }
}

/// One output record per input row.
#[derive(Debug, Clone)]
pub struct Record {
    /// The input line.
    pub line: u64,
    /// The row's `id`.
    pub id: Option<String>,
    /// The target (as sent, or as written for a bad row).
    pub target: String,
    /// The event name (empty for a bad row).
    pub event: String,
    /// How it ended.
    pub verdict: Verdict,
}

impl Record {
    /// The JSON form, with the ladder when `ladder` is set.
    pub fn json(&self, ladder: bool) -> JsonRecord<'_> {
        let mut value = match &self.verdict {
            Verdict::Sent { outcome, tries, .. } => {
                let mut v = JsonRecord::sent(
                    &self.target,
                    &self.event,
                    self.id.as_deref(),
                    outcome,
                    ladder,
                );
                v.tries = Some(*tries);
                v
            }
            other => JsonRecord {
                outcome: other.label(),
                reason: other.reason(),
                ..JsonRecord::new(&self.target, &self.event, self.id.as_deref())
            },
        };
        value.line = Some(self.line);
        value
    }

    /// The CSV row, in the order of [`CSV_HEADER`].
    pub fn csv(&self) -> CsvRow {
        match &self.verdict {
            Verdict::Sent { outcome, tries, .. } => csv_row(
                &self.target,
                &self.event,
                self.id.as_deref(),
                Some(self.line),
                outcome,
                *tries,
            ),
            other => {
                let mut row: CsvRow = Default::default();
                row[0] = self.line.to_string();
                row[1] = self.id.clone().unwrap_or_default();
                row[2] = self.target.clone();
                row[3] = self.event.clone();
                row[4] = other.label().to_string();
                row[6] = printable(&other.reason(), false).into_owned();
                row
            }
        }
    }
}

/// One target as a JSON object, written by [`write_line`](Self::write_line): `id`,
/// `attempts`, `retransmissions`, `elapsed_ms`, `call_id`, `destination`, `answered_from`,
/// `tries`, `line` and `ladder` only when set, and the channel's own fields
/// ([`Outcome::details`]) after the others, in the same object.
#[derive(Debug)]
pub struct JsonRecord<'a> {
    /// The Request-URI.
    pub target: &'a str,
    /// The event type.
    pub event: &'a str,
    /// The batch row's label.
    pub id: Option<&'a str>,
    /// How it ended.
    pub outcome: &'a str,
    /// The final status.
    pub status: Option<u16>,
    /// The reason phrase, or what went wrong.
    pub reason: Cow<'a, str>,
    /// Advice for the user.
    pub hint: Option<&'static str>,
    /// Requests sent.
    pub attempts: Option<u32>,
    /// Timer E retransmissions.
    pub retransmissions: Option<u32>,
    /// From the first send to the end.
    pub elapsed_ms: Option<f64>,
    /// The Call-ID.
    pub call_id: Option<&'a str>,
    /// `address:port` the last request went to (the destination a name resolved to, the
    /// last one tried).
    pub destination: Option<SocketAddr>,
    /// `address:port` the responses came from, when not where the requests went.
    pub answered_from: Option<SocketAddr>,
    /// Batch: tries, retries included.
    pub tries: Option<u32>,
    /// Batch: the input line.
    pub line: Option<u64>,
    /// With -v: every message.
    pub ladder: Vec<LadderJson<'a>>,
    /// The channel's own fields ([`Outcome::details`]).
    pub details: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> JsonRecord<'a> {
    fn new(target: &'a str, event: &'a str, id: Option<&'a str>) -> JsonRecord<'a> {
        JsonRecord {
            target,
            event,
            id,
            outcome: "",
            status: None,
            reason: Cow::Borrowed(""),
            hint: None,
            attempts: None,
            retransmissions: None,
            elapsed_ms: None,
            call_id: None,
            destination: None,
            answered_from: None,
            tries: None,
            line: None,
            ladder: Vec::new(),
            details: None,
        }
    }

    /// The record of a target that was sent.
    pub fn sent(
        target: &'a str,
        event: &'a str,
        id: Option<&'a str>,
        o: &'a Outcome,
        ladder: bool,
    ) -> JsonRecord<'a> {
        JsonRecord {
            outcome: o.kind.as_str(),
            status: o.status,
            reason: Cow::Borrowed(&o.reason),
            hint: o.hint,
            attempts: Some(o.attempts),
            retransmissions: retransmissions(o),
            elapsed_ms: Some(millis(o.elapsed)),
            call_id: (!o.call_id.is_empty()).then_some(o.call_id.as_str()),
            destination: o.destination,
            answered_from: o.answered_from,
            ladder: if ladder {
                o.ladder.iter().map(LadderJson::from).collect()
            } else {
                Vec::new()
            },
            details: o.details.as_deref(),
            ..JsonRecord::new(target, event, id)
        }
    }

    /// Writes the record as one line of JSON Lines.
    ///
    /// Laid out here rather than by serde's derive, since a campaign writes one per target
    /// and the derive escapes every key again: the keys are written as they are, the
    /// values by serde_json (strings escaped, numbers as it writes them).
    pub fn write_line(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut digits = itoa::Buffer::new();
        w.write_all(b"{\"target\":")?;
        json(w, self.target)?;
        w.write_all(b",\"event\":")?;
        json(w, self.event)?;
        if let Some(id) = self.id {
            w.write_all(b",\"id\":")?;
            json(w, id)?;
        }
        w.write_all(b",\"outcome\":")?;
        json(w, self.outcome)?;
        w.write_all(b",\"status\":")?;
        match self.status {
            Some(status) => w.write_all(digits.format(status).as_bytes())?,
            None => w.write_all(b"null")?,
        }
        w.write_all(b",\"reason\":")?;
        json(w, &*self.reason)?;
        w.write_all(b",\"hint\":")?;
        json(w, &self.hint)?;
        let counts = [
            (&b",\"attempts\":"[..], self.attempts),
            (b",\"retransmissions\":", self.retransmissions),
        ];
        for (key, count) in counts {
            if let Some(count) = count {
                w.write_all(key)?;
                w.write_all(digits.format(count).as_bytes())?;
            }
        }
        if let Some(ms) = self.elapsed_ms {
            w.write_all(b",\"elapsed_ms\":")?;
            json(w, &ms)?;
        }
        if let Some(call_id) = self.call_id {
            w.write_all(b",\"call_id\":")?;
            json(w, call_id)?;
        }
        let addresses = [
            (&b",\"destination\":\""[..], self.destination),
            (b",\"answered_from\":\"", self.answered_from),
        ];
        for (key, addr) in addresses {
            if let Some(addr) = addr {
                // Digits, dots, colons, brackets and hex: nothing to escape.
                let mut text = Vec::with_capacity(48);
                crate::sip::push_socket_addr(&mut text, addr);
                w.write_all(key)?;
                w.write_all(&text)?;
                w.write_all(b"\"")?;
            }
        }
        if let Some(tries) = self.tries {
            w.write_all(b",\"tries\":")?;
            w.write_all(digits.format(tries).as_bytes())?;
        }
        if let Some(line) = self.line {
            w.write_all(b",\"line\":")?;
            w.write_all(digits.format(line).as_bytes())?;
        }
        if !self.ladder.is_empty() {
            w.write_all(b",\"ladder\":")?;
            json(w, &self.ladder)?;
        }
        for (key, value) in self.details.into_iter().flatten() {
            w.write_all(b",")?;
            json(w, key)?;
            w.write_all(b":")?;
            json(w, value)?;
        }
        w.write_all(b"}\n")
    }
}

/// `value` as serde_json writes it.
fn json(w: &mut impl Write, value: &(impl Serialize + ?Sized)) -> std::io::Result<()> {
    serde_json::to_writer(w, value).map_err(std::io::Error::from)
}

/// Timer E retransmissions, for a target that had a SIP transaction: a channel without
/// one (HTTP), or a request never built, has a Call-ID no more than retransmissions.
fn retransmissions(o: &Outcome) -> Option<u32> {
    (!o.call_id.is_empty()).then_some(o.retransmissions)
}

/// Milliseconds to the microsecond: `0.245`, not the float noise of `0.24529700000000002`.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// One message of the ladder in JSON.
#[derive(Debug, Serialize)]
pub struct LadderJson<'a> {
    at_ms: f64,
    direction: Direction,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<SocketAddr>,
    message: Cow<'a, str>,
}

impl<'a> From<&'a TraceEntry> for LadderJson<'a> {
    fn from(e: &'a TraceEntry) -> Self {
        LadderJson {
            at_ms: millis(e.at),
            direction: e.direction,
            from: e.from,
            message: String::from_utf8_lossy(&e.bytes),
        }
    }
}

/// The columns of CSV output and reports.
pub const CSV_HEADER: [&str; 14] = [
    "line",
    "id",
    "target",
    "event",
    "outcome",
    "status",
    "reason",
    "hint",
    "attempts",
    "tries",
    "retransmissions",
    "elapsed_ms",
    "call_id",
    "details",
];

/// One CSV row: a cell per column of [`CSV_HEADER`].
pub type CsvRow = [String; CSV_HEADER.len()];

/// The CSV row of a target that was sent, in the order of [`CSV_HEADER`].
pub fn csv_row(
    target: &str,
    event: &str,
    id: Option<&str>,
    line: Option<u64>,
    o: &Outcome,
    tries: u32,
) -> CsvRow {
    [
        line.map(|l| l.to_string()).unwrap_or_default(),
        id.unwrap_or_default().to_string(),
        target.to_string(),
        event.to_string(),
        o.kind.as_str().to_string(),
        o.status.map(|s| s.to_string()).unwrap_or_default(),
        // A cell may be shown on a terminal (`--output csv`): text from the network is
        // escaped as in the human output.
        printable(&o.reason, false).into_owned(),
        o.hint.unwrap_or_default().to_string(),
        o.attempts.to_string(),
        tries.to_string(),
        retransmissions(o)
            .map(|r| r.to_string())
            .unwrap_or_default(),
        format!("{:.1}", o.elapsed.as_secs_f64() * 1000.0),
        o.call_id.clone(),
        // The channel's own fields (HTTP: http_status, phone_error, items, device,
        // screenshot) as one JSON object, escaped like the reason.
        o.details
            .as_deref()
            .and_then(|d| serde_json::to_string(d).ok())
            .map(|d| printable(&d, false).into_owned())
            .unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::OutcomeKind;

    #[test]
    fn every_record_has_one_cell_per_column_and_a_hint_for_failures() {
        let outcome = Outcome {
            status: Some(489),
            hint: crate::proto::outcome::hint_for(489),
            ..Outcome::unsent(OutcomeKind::Rejected, "Bad Event")
        };
        let sent = Record {
            line: 2,
            id: None,
            target: "sip:1@h".into(),
            event: "resync".into(),
            verdict: Verdict::Sent {
                outcome,
                tries: 1,
                total: Duration::ZERO,
            },
        };
        let row = sent.csv();
        assert_eq!(
            (row.len(), row[4].as_str(), row[5].as_str()),
            (14, "rejected", "489")
        );
        assert_eq!(row[13], "", "no details for SIP");
        let mut details = serde_json::Map::new();
        details.insert("http_status".into(), 200.into());
        details.insert("phone_error".into(), "\u{1b}[2J".into());
        let http = Outcome {
            details: Some(Box::new(details)),
            ..Outcome::unsent(OutcomeKind::Delivered, "OK")
        };
        let http_row = csv_row("http://10.0.0.7", "background", None, None, &http, 1);
        assert_eq!(
            http_row[13],
            r#"{"http_status":200,"phone_error":"\u001b[2J"}"#
        );
        assert!(row[7].contains("Resync From SIP"), "{}", row[7]);
        let bad = Record {
            verdict: Verdict::BadRow("no target".into()),
            ..sent
        };
        assert_eq!(bad.csv()[4], "bad_row");
        assert_eq!(bad.csv()[6], "no target");
        assert!(!bad.verdict.is_delivered());
    }

    #[test]
    fn a_record_is_one_line_of_json_with_its_keys_in_order() {
        let mut details = serde_json::Map::new();
        details.insert("http_status".into(), 200.into());
        details.insert("phone_error".into(), "\u{1b}[2J \"x\"".into());
        let outcome = Outcome {
            status: Some(200),
            attempts: 2,
            retransmissions: 1,
            elapsed: Duration::from_micros(1_500),
            call_id: "c\"1".into(),
            destination: Some("[fe80::1]:5061".parse().unwrap()),
            answered_from: Some("127.0.0.2:5062".parse().unwrap()),
            ladder: vec![TraceEntry {
                at: Duration::from_micros(250),
                direction: Direction::Received,
                from: None,
                bytes: bytes::Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
            }],
            details: Some(Box::new(details)),
            ..Outcome::unsent(OutcomeKind::Delivered, "O\"K\\\u{7}\u{e9}")
        };
        let mut record = JsonRecord::sent("sip:1@h", "resync", Some("row\n1"), &outcome, true);
        (record.tries, record.line) = (Some(3), Some(9));
        let mut line = Vec::new();
        record.write_line(&mut line).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with("}\n"), "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "target": "sip:1@h", "event": "resync", "id": "row\n1",
                "outcome": "delivered", "status": 200, "reason": "O\"K\\\u{7}\u{e9}",
                "hint": null, "attempts": 2, "retransmissions": 1, "elapsed_ms": 1.5,
                "call_id": "c\"1", "destination": "[fe80::1]:5061",
                "answered_from": "127.0.0.2:5062", "tries": 3, "line": 9,
                "ladder": [{"at_ms": 0.25, "direction": "received",
                            "message": "SIP/2.0 200 OK\r\n\r\n"}],
                "http_status": 200, "phone_error": "\u{1b}[2J \"x\"",
            })
        );
        let keys = [
            "target",
            "event",
            "id",
            "outcome",
            "status",
            "reason",
            "hint",
            "attempts",
            "retransmissions",
            "elapsed_ms",
            "call_id",
            "destination",
            "answered_from",
            "tries",
            "line",
            "ladder",
            "http_status",
            "phone_error",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");

        let unsent = Outcome::unsent(OutcomeKind::Unreachable, "no route");
        let mut line = Vec::new();
        JsonRecord::sent("sip:2@h", "reboot", None, &unsent, true)
            .write_line(&mut line)
            .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"target\":\"sip:2@h\",\"event\":\"reboot\",\"outcome\":\"unreachable\",\
             \"status\":null,\"reason\":\"no route\",\"hint\":null,\"attempts\":0,\
             \"elapsed_ms\":0.0}\n"
        );
    }

    #[test]
    fn json_milliseconds_stop_at_the_microsecond() {
        let outcome = Outcome {
            elapsed: Duration::from_nanos(245_297_000) / 1000,
            ..Outcome::unsent(OutcomeKind::Delivered, "OK")
        };
        let mut line = Vec::new();
        JsonRecord::sent("sip:1@h", "resync", None, &outcome, false)
            .write_line(&mut line)
            .unwrap();
        let line = String::from_utf8(line).unwrap();
        let after = line.split("\"elapsed_ms\":").nth(1).unwrap_or_default();
        assert!(
            after.starts_with("0.245") && !after[5..].starts_with(|c: char| c.is_ascii_digit()),
            "{line}"
        );
    }
}
