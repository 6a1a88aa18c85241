//! The end-of-campaign summary, in fixed memory: counts per outcome, latency percentiles
//! from a log-scale histogram (within 2 %), and the most frequent failure reasons.

use super::record::{Record, Verdict};
use super::run::RunEnd;
use crate::text::printable;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;

/// Histogram buckets grow by this factor: percentiles are within 2 %.
const GROWTH: f64 = 1.02;
/// Buckets from 10 µs to about an hour.
const BUCKETS: usize = 1000;
const MIN_MICROS: f64 = 10.0;
/// Distinct failure reasons kept; further ones are counted as "(other reasons)".
const MAX_REASONS: usize = 1000;
const OTHER: &str = "(other reasons)";

/// Campaign totals.
#[derive(Debug, Clone)]
pub struct Summary {
    counts: BTreeMap<String, u64>,
    histogram: Vec<u64>,
    timed: u64,
    reasons: HashMap<String, u64>,
    bad_lines: Vec<u64>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            counts: BTreeMap::new(),
            histogram: vec![0; BUCKETS],
            timed: 0,
            reasons: HashMap::new(),
            bad_lines: Vec::new(),
        }
    }
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Summary {
        Summary::default()
    }

    /// Counts one target with this outcome label (`delivered`, `timeout`, `unknown`, ...).
    /// `latency` is given for targets that were sent; `reason` for failures.
    pub fn add(&mut self, label: &str, latency: Option<Duration>, reason: Option<&str>) {
        match self.counts.get_mut(label) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert(label.to_string(), 1);
            }
        }
        if let Some(latency) = latency {
            self.histogram[bucket(latency)] += 1;
            self.timed += 1;
        }
        if let Some(reason) = reason {
            let key = format!("{label}: {reason}");
            if let Some(n) = self.reasons.get_mut(&key) {
                *n += 1;
            } else if self.reasons.len() < MAX_REASONS {
                self.reasons.insert(key, 1);
            } else {
                *self.reasons.entry(OTHER.to_string()).or_default() += 1;
            }
        }
    }

    /// Counts a bad input row; the first 100 line numbers are kept for the summary.
    pub fn add_bad_row(&mut self, line: u64, reason: &str) {
        if self.bad_lines.len() < 100 {
            self.bad_lines.push(line);
        }
        self.add("bad_row", None, Some(reason));
    }

    /// Counts one record, with its latency and, for a failure, its reason.
    pub fn add_record(&mut self, record: &Record) {
        let label = record.verdict.label();
        match &record.verdict {
            Verdict::Sent { outcome, total, .. } => {
                let reason = (!outcome.kind.is_success()).then(|| match outcome.status
                {
                    Some(s) => format!("{s} {}", outcome.reason),
                    None => outcome.reason.clone(),
                });
                self.add(label, Some(*total), reason.as_deref());
            }
            Verdict::BadRow(message) => self.add_bad_row(record.line, message),
            Verdict::JournalError(message) => self.add(label, None, Some(message)),
            Verdict::AlreadyDelivered | Verdict::Duplicate { .. } => self.add(label, None, None),
            Verdict::Unknown => self.add(
                label,
                None,
                Some("started by a previous run with no result; not sent again (--resend-unknown sends it)"),
            ),
        }
    }

    /// Whether every target was delivered, now or by an earlier run (a duplicate row is
    /// its first row's target, which counts for it).
    pub fn all_delivered(&self) -> bool {
        self.total()
            == self.count("delivered")
                + self.count("confirmed")
                + self.count("already_delivered")
                + self.count("duplicate")
    }

    /// The summary for people: counts, latency percentiles, the most frequent failures
    /// (text from the network escaped for the terminal), bad rows, and how the run ended.
    pub fn render(&self, end: &RunEnd) -> String {
        let mut text = String::new();
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(label, n)| format!("{n} {label}"))
            .collect();
        let counts = if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        };
        let _ = writeln!(text, "summary: {} targets: {counts}", self.total());
        let ms = |p: f64| {
            self.percentile(p).map_or("-".to_string(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1000.0)
            })
        };
        if self.percentile(0.5).is_some() {
            let _ = writeln!(
                text,
                "latency: p50 {}, p95 {}, p99 {}",
                ms(0.5),
                ms(0.95),
                ms(0.99)
            );
        }
        let top = self.top_reasons(5);
        if !top.is_empty() {
            text += "most frequent failures:\n";
            for (reason, n) in top {
                let _ = writeln!(text, "  {n:>7}  {}", printable(reason, false));
            }
        }
        if !self.bad_lines.is_empty() {
            let lines: Vec<String> = self.bad_lines.iter().map(u64::to_string).collect();
            let more = self.count("bad_row") > lines.len() as u64;
            let _ = writeln!(
                text,
                "bad rows skipped at line{} {}{}",
                if lines.len() == 1 { "" } else { "s" },
                lines.join(", "),
                if more { ", ..." } else { "" }
            );
        }
        if end.interrupted {
            text += "interrupted: the rest of the input was not started; run the same command with the same --journal to resume\n";
        }
        text
    }

    /// The count of one outcome label.
    pub fn count(&self, label: &str) -> u64 {
        self.counts.get(label).copied().unwrap_or(0)
    }

    /// Every label and its count, by label.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// All targets counted, bad rows included.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The first line numbers of bad rows.
    pub fn bad_lines(&self) -> &[u64] {
        &self.bad_lines
    }

    /// The latency under which `p` (0 to 1) of the sent targets ended, within 2 %.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.timed == 0 {
            return None;
        }
        let rank = ((p * self.timed as f64).ceil() as u64).clamp(1, self.timed);
        let mut seen = 0;
        for (i, n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_value(i));
            }
        }
        None
    }

    /// The `n` most frequent failure reasons (prefixed with their outcome) and counts.
    pub fn top_reasons(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> =
            self.reasons.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

fn bucket(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros <= MIN_MICROS {
        return 0;
    }
    ((micros / MIN_MICROS).ln() / GROWTH.ln())
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

/// The upper bound of a bucket.
fn bucket_value(i: usize) -> Duration {
    Duration::from_secs_f64(MIN_MICROS * GROWTH.powi(i as i32) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_two_percent() {
        let mut s = Summary::new();
        for ms in 1..=1000u64 {
            s.add("delivered", Some(Duration::from_millis(ms)), None);
        }
        for (p, want) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = s.percentile(p).unwrap().as_secs_f64() * 1000.0;
            assert!((got - want).abs() / want <= 0.021, "p{p}: {got} vs {want}");
        }
        assert_eq!(s.count("delivered"), 1000);
    }

    #[test]
    fn reasons_are_ranked_and_bounded() {
        let mut s = Summary::new();
        for _ in 0..3 {
            s.add(
                "timeout",
                Some(Duration::from_secs(1)),
                Some("no response in 1.0 s"),
            );
        }
        s.add("rejected", None, Some("Busy Here"));
        for i in 0..2000 {
            s.add(
                "unreachable",
                None,
                Some(&format!("cannot resolve host-{i}")),
            );
        }
        s.add_bad_row(7, "the row has no target");
        let top = s.top_reasons(2);
        assert_eq!(top[0], ("(other reasons)", 2000 - 998 + 1));
        assert_eq!(top[1], ("timeout: no response in 1.0 s", 3));
        assert_eq!(s.bad_lines(), &[7]);
        assert_eq!(s.total(), 3 + 1 + 2000 + 1);
        assert!(s.reasons.len() <= MAX_REASONS + 1);
    }

    #[test]
    fn the_rendered_summary_escapes_what_a_phone_sent() {
        let mut s = Summary::new();
        s.add("rejected", None, Some("486 Busy\x1b]0;owned\x07"));
        let text = s.render(&RunEnd::default());
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text}");
        assert!(text.contains("Busy\\x1b]0;owned\\x07"), "{text}");
        assert!(!s.all_delivered());
    }
}
