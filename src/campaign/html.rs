//! The HTML campaign report: one self-contained file (no fetches: styles, script and SVG
//! inline) with the outcome counts as a bar, a latency histogram, a timeline of starts and
//! ends, the most frequent failures with their hints, and a filterable table of every
//! target, shown a page at a time so that 100,000 rows stay usable.
//!
//! Written as the records come, in bounded memory like the rest of a campaign: each row goes
//! to the file at once (as JSON inside the page, for the table's script), and only fixed-size
//! aggregates are kept for the charts, which [`HtmlReport::finish`] writes after the rows.
//! The file is written under a temporary name and renamed when finished, so a report that
//! exists is whole. Every text is escaped: records hold what phones sent.

use super::record::{Record, Verdict};
use super::summary::Summary;
use crate::proto::OutcomeKind;
use crate::text::printable;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a target started and ended, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Its first send.
    pub started: f64,
    /// Its end.
    pub ended: f64,
}

impl Span {
    /// A target that ended now after `total`.
    pub fn ended_now(total: Duration) -> Span {
        let ended = unix_now();
        Span {
            started: ended - total.as_secs_f64(),
            ended,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Latency histogram: 5 bins per decade from 100 µs to 100 s (faster and slower ones go in
/// the first and last).
const LATENCY_BINS: usize = 30;
const LATENCY_MIN_MS: f64 = 0.1;
const BINS_PER_DECADE: f64 = 5.0;

/// Timeline bins: at most this many, each first 10 ms wide, doubled (pairs merged) when the
/// campaign outlasts them.
const TIMELINE_BINS: usize = 120;
const TIMELINE_FIRST_WIDTH: f64 = 0.01;

/// Distinct failure reasons kept (the rest are counted together), and those shown.
const MAX_REASONS: usize = 1000;
const REASONS_SHOWN: usize = 10;

/// Starts and ends per bin of time.
#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    started: u64,
    delivered: u64,
    failed: u64,
}

/// A failure reason as shown: outcome, status and reason, with its hint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Reason {
    label: String,
    status: Option<u16>,
    reason: String,
}

/// An HTML report being written: [`HtmlReport::create`], one [`HtmlReport::record`] per
/// record, then [`HtmlReport::finish`].
pub struct HtmlReport {
    out: BufWriter<File>,
    partial: PathBuf,
    path: PathBuf,
    title: String,
    origin: f64,
    rows: u64,
    latency: [u64; LATENCY_BINS],
    timeline: Vec<Bin>,
    width: f64,
    reasons: HashMap<Reason, (u64, Option<&'static str>)>,
    other_reasons: u64,
}

impl HtmlReport {
    /// Starts the report at `path` (written as `path.partial` until finished). `title` says
    /// what the campaign was; `origin` (Unix seconds) is where its timeline starts.
    pub fn create(path: &Path, title: &str, origin: f64) -> io::Result<HtmlReport> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let mut out = BufWriter::new(File::create(&partial)?);
        let title = escape(&printable(title, false));
        write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>sipnotify: {title}</title>\n<style>{STYLE}</style></head>\n<body>\n\
             <script type=\"application/json\" id=\"rows\">["
        )?;
        Ok(HtmlReport {
            out,
            partial,
            path: path.to_path_buf(),
            title,
            origin,
            rows: 0,
            latency: [0; LATENCY_BINS],
            timeline: Vec::new(),
            width: TIMELINE_FIRST_WIDTH,
            reasons: HashMap::new(),
            other_reasons: 0,
        })
    }

    /// Adds one record: its row now, its latency, times and reason to the charts. `span`
    /// is when it started and ended, for a target that was sent.
    pub fn record(&mut self, record: &Record, span: Option<Span>) -> io::Result<()> {
        let label = record.verdict.label();
        let reason = printable(&record.verdict.reason(), false).into_owned();
        let (status, attempts, tries, ms) = match &record.verdict {
            Verdict::Sent {
                outcome,
                tries,
                total,
            } => (
                outcome.status,
                Some(outcome.attempts),
                Some(*tries),
                Some(total.as_micros() as f64 / 1000.0),
            ),
            _ => (None, None, None, None),
        };
        let row = serde_json::json!([
            record.line,
            record.id,
            record.target,
            record.event,
            label,
            status,
            reason,
            attempts,
            tries,
            ms,
        ]);
        if self.rows > 0 {
            self.out.write_all(b",\n")?;
        }
        self.out
            .write_all(script_safe(&row.to_string()).as_bytes())?;
        self.rows += 1;
        if let Some(ms) = ms {
            self.latency[latency_bin(ms)] += 1;
        }
        if let Some(span) = span {
            let delivered = record.verdict.is_delivered();
            self.bin(span.started).started += 1;
            let end = self.bin(span.ended);
            if delivered {
                end.delivered += 1;
            } else {
                end.failed += 1;
            }
        }
        if !record.verdict.is_delivered() && !matches!(record.verdict, Verdict::Duplicate { .. }) {
            let hint = match &record.verdict {
                Verdict::Sent { outcome, .. } if outcome.kind != OutcomeKind::Delivered => {
                    outcome.hint
                }
                Verdict::Unknown => {
                    Some("it may have been sent: check the phone, or resume with --resend-unknown")
                }
                _ => None,
            };
            let key = Reason {
                label: label.to_string(),
                status,
                reason,
            };
            if let Some((n, _)) = self.reasons.get_mut(&key) {
                *n += 1;
            } else if self.reasons.len() < MAX_REASONS {
                self.reasons.insert(key, (1, hint));
            } else {
                self.other_reasons += 1;
            }
        }
        Ok(())
    }

    /// The timeline bin of `at` (Unix seconds), merging pairs of bins until it fits.
    fn bin(&mut self, at: f64) -> &mut Bin {
        let offset = (at - self.origin).max(0.0);
        while offset >= self.width * TIMELINE_BINS as f64 {
            self.timeline = self
                .timeline
                .chunks(2)
                .map(|pair| Bin {
                    started: pair.iter().map(|b| b.started).sum(),
                    delivered: pair.iter().map(|b| b.delivered).sum(),
                    failed: pair.iter().map(|b| b.failed).sum(),
                })
                .collect();
            self.width *= 2.0;
        }
        let i = ((offset / self.width) as usize).min(TIMELINE_BINS - 1);
        if self.timeline.len() <= i {
            self.timeline.resize(i + 1, Bin::default());
        }
        &mut self.timeline[i]
    }

    /// Writes the charts, the failures and the table after the rows, and puts the file in
    /// its place. `summary` is the campaign's (its counts and percentiles are the report's).
    pub fn finish(mut self, summary: &Summary) -> io::Result<()> {
        self.out.write_all(b"]</script>\n")?;
        let mut html = String::new();
        let total = summary.total();
        let _ = writeln!(
            html,
            "<header><h1>sipnotify campaign report</h1><p class=\"what\">{}</p>\
             <p class=\"made\">{} targets; written {}</p></header>",
            self.title,
            total,
            escape(&utc_text(unix_now()))
        );
        html += &self.counts_section(summary);
        html += &self.latency_section(summary);
        html += &self.timeline_section();
        html += &self.reasons_section();
        html += TABLE;
        let _ = write!(html, "<script>{SCRIPT}</script>\n</body></html>\n");
        self.out.write_all(html.as_bytes())?;
        self.out.flush()?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.path)
    }

    /// The outcome counts: a stacked bar and its legend (each a filter for the table).
    fn counts_section(&self, summary: &Summary) -> String {
        let total = summary.total().max(1) as f64;
        let mut bar = String::new();
        let mut legend = String::new();
        let mut x = 0.0;
        // Delivered first, then the rest by count.
        let mut counts: Vec<(&String, &u64)> = summary.counts().iter().collect();
        counts.sort_by_key(|(label, n)| {
            (
                !matches!(label.as_str(), "delivered" | "already_delivered"),
                std::cmp::Reverse(**n),
            )
        });
        for (label, &n) in counts {
            let label = escape(label);
            let width = n as f64 / total * 1000.0;
            let _ = write!(
                bar,
                "<rect x=\"{x:.2}\" y=\"0\" width=\"{width:.2}\" height=\"36\" fill=\"{}\" \
                 data-filter=\"{label}\"><title>{label}: {n}</title></rect>",
                color(&label)
            );
            x += width;
            let _ = write!(
                legend,
                "<li data-outcome=\"{label}\" data-count=\"{n}\" data-filter=\"{label}\">\
                 <span class=\"swatch\" style=\"background:{}\"></span>{label} \
                 <b>{n}</b> <small>{:.1} %</small></li>",
                color(&label),
                n as f64 / total * 100.0
            );
        }
        format!(
            "<section id=\"counts\" data-total=\"{}\"><h2>Outcomes</h2>\
             <svg class=\"bar\" viewBox=\"0 0 1000 36\" preserveAspectRatio=\"none\" \
             role=\"img\" aria-label=\"outcome counts\">{bar}</svg>\
             <ul class=\"legend\">{legend}</ul></section>\n",
            summary.total()
        )
    }

    /// Latency of the targets sent: a log-scale histogram and the percentiles.
    fn latency_section(&self, summary: &Summary) -> String {
        let most = self.latency.iter().copied().max().unwrap_or(0);
        if most == 0 {
            return String::new();
        }
        let (w, h) = (1000.0, 160.0);
        let bar_w = w / LATENCY_BINS as f64;
        let mut svg = String::new();
        for (i, &n) in self.latency.iter().enumerate() {
            let bar_h = n as f64 / most as f64 * (h - 20.0);
            let (low, high) = (latency_edge(i), latency_edge(i + 1));
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar_h:.1}\" \
                 class=\"lat\"><title>{} to {}: {n}</title></rect>",
                i as f64 * bar_w + 1.0,
                h - 20.0 - bar_h,
                bar_w - 2.0,
                ms_text(low),
                ms_text(high)
            );
        }
        for decade in 0..=6 {
            let x = decade as f64 * BINS_PER_DECADE * bar_w;
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{}\" class=\"axis\">{}</text>",
                h - 4.0,
                ms_text(latency_edge(decade * BINS_PER_DECADE as usize))
            );
        }
        let p = |q: f64| {
            summary
                .percentile(q)
                .map_or("-".into(), |d| ms_text(d.as_secs_f64() * 1000.0))
        };
        format!(
            "<section id=\"latency\"><h2>Latency</h2><p>p50 {}, p95 {}, p99 {} \
             (first send to end, retries included)</p>\
             <svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"latency histogram\">{svg}</svg>\
             </section>\n",
            p(0.5),
            p(0.95),
            p(0.99)
        )
    }

    /// Starts (above the axis) and ends, delivered or not (below), per bin of time.
    fn timeline_section(&self) -> String {
        let most = self
            .timeline
            .iter()
            .map(|b| b.started.max(b.delivered + b.failed))
            .max()
            .unwrap_or(0);
        if most == 0 {
            return String::new();
        }
        let (w, half) = (1000.0, 70.0);
        // The bins used fill the width (a short campaign is not a sliver at the left).
        let bar_w = w / self.timeline.len().max(TIMELINE_BINS / 4) as f64;
        let scale = |n: u64| n as f64 / most as f64 * (half - 4.0);
        let mut svg = String::new();
        for (i, bin) in self.timeline.iter().enumerate() {
            let x = i as f64 * bar_w;
            let from = ms_text(i as f64 * self.width * 1000.0);
            let (s, d, f) = (scale(bin.started), scale(bin.delivered), scale(bin.failed));
            let _ = write!(
                svg,
                "<g><title>from {from}: {} started, {} delivered, {} not</title>\
                 <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{s:.1}\" class=\"start\"/>\
                 <rect x=\"{x:.1}\" y=\"{half}\" width=\"{bar_w:.1}\" height=\"{d:.1}\" class=\"ok\"/>\
                 <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{f:.1}\" class=\"bad\"/></g>",
                bin.started,
                bin.delivered,
                bin.failed,
                half - s,
                half + d
            );
        }
        let span = ms_text(self.timeline.len() as f64 * self.width * 1000.0);
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" class=\"axis\">0</text>\
             <text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"end\">{span}</text>",
            2.0 * half + 14.0,
            self.timeline.len() as f64 * bar_w,
            2.0 * half + 14.0
        );
        format!(
            "<section id=\"timeline\"><h2>Timeline</h2><p><span class=\"key start\"></span> \
             started <span class=\"key ok\"></span> ended delivered <span class=\"key bad\"></span> \
             ended otherwise; bins of {}, {span} in all</p>\
             <svg viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"timeline\">{svg}\
             <line x1=\"0\" x2=\"{w}\" y1=\"{half}\" y2=\"{half}\" class=\"axisline\"/></svg></section>\n",
            ms_text(self.width * 1000.0),
            2.0 * half + 18.0
        )
    }

    /// The most frequent failures, each with its hint.
    fn reasons_section(&self) -> String {
        let mut all: Vec<(&Reason, &(u64, Option<&str>))> = self.reasons.iter().collect();
        if all.is_empty() {
            return String::new();
        }
        all.sort_by(|a, b| {
            b.1 .0
                .cmp(&a.1 .0)
                .then_with(|| a.0.reason.cmp(&b.0.reason))
        });
        let mut rows = String::new();
        for (reason, (n, hint)) in all.into_iter().take(REASONS_SHOWN) {
            let _ = write!(
                rows,
                "<tr><td class=\"num\">{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&reason.label),
                reason.status.map(|s| s.to_string()).unwrap_or_default(),
                escape(&reason.reason),
                escape(hint.unwrap_or(""))
            );
        }
        if self.other_reasons > 0 {
            let _ = write!(
                rows,
                "<tr><td class=\"num\">{}</td><td colspan=\"4\">(other reasons)</td></tr>",
                self.other_reasons
            );
        }
        format!(
            "<section id=\"reasons\"><h2>Most frequent failures</h2><table>\
             <thead><tr><th>targets</th><th>outcome</th><th>status</th><th>reason</th>\
             <th>hint</th></tr></thead><tbody>{rows}</tbody></table></section>\n"
        )
    }
}

/// The bin of a latency in milliseconds.
fn latency_bin(ms: f64) -> usize {
    if ms <= LATENCY_MIN_MS {
        return 0;
    }
    ((ms / LATENCY_MIN_MS).log10() * BINS_PER_DECADE)
        .floor()
        .min((LATENCY_BINS - 1) as f64) as usize
}

/// The lower edge of latency bin `i`, in milliseconds.
fn latency_edge(i: usize) -> f64 {
    LATENCY_MIN_MS * 10f64.powf(i as f64 / BINS_PER_DECADE)
}

/// `0.25 ms`, `4.5 ms`, `40 ms`, `2.5 s`: three significant digits at most, no trailing zeros.
fn ms_text(ms: f64) -> String {
    let (value, unit, decimals) = match ms {
        m if m < 10.0 => (m, "ms", 2),
        m if m < 100.0 => (m, "ms", 1),
        m if m < 1000.0 => (m, "ms", 0),
        m => (m / 1000.0, "s", 1),
    };
    let text = format!("{value:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    format!("{text} {unit}")
}

/// `2024-06-10 06:13:20 UTC`.
fn utc_text(unix: f64) -> String {
    let secs = unix as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The color of an outcome (the script uses the same for the table).
fn color(label: &str) -> &'static str {
    match label {
        "delivered" => "#2e7d32",
        "already_delivered" => "#81c784",
        "auth_failed" => "#c62828",
        "rejected" => "#ef6c00",
        "timeout" => "#6a1b9a",
        "unreachable" => "#ad1457",
        "no_credentials" => "#f9a825",
        "unknown" => "#757575",
        "duplicate" => "#90a4ae",
        "bad_row" => "#5d4037",
        _ => "#212121",
    }
}

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside `<script>`: `<`, `>` and `&` only occur in its strings, where
/// their `\u` escapes mean the same, so no `</script>` or `<!--` can end the block early.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/report.js");

/// The table's frame; the script fills it a page at a time.
const TABLE: &str = "<section id=\"targets\"><h2>Every target</h2>\
<form id=\"filters\" onsubmit=\"return false\"><input id=\"q\" type=\"search\" \
placeholder=\"filter: target, id, reason, status...\" aria-label=\"filter\">\
<select id=\"outcome\" aria-label=\"outcome\"><option value=\"\">every outcome</option></select>\
<button type=\"button\" id=\"prev\">previous</button><button type=\"button\" id=\"next\">next</button>\
<span id=\"shown\" data-matching=\"\"></span></form>\
<table id=\"table\"><thead><tr><th>line</th><th>id</th><th>target</th><th>event</th>\
<th>outcome</th><th>status</th><th>reason</th><th>attempts</th><th>tries</th><th>ms</th></tr></thead>\
<tbody></tbody></table></section>\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Outcome;

    fn sent(line: u64, kind: OutcomeKind, status: u16, reason: &str, ms: u64) -> Record {
        let outcome = Outcome {
            status: Some(status),
            hint: crate::proto::outcome::hint_for(status),
            attempts: 2,
            ..Outcome::unsent(kind, reason)
        };
        Record {
            line,
            id: Some(format!("desk-{line}")),
            target: format!("sip:{line}@10.0.0.7"),
            event: "resync".into(),
            verdict: Verdict::Sent {
                outcome,
                tries: 1,
                total: Duration::from_millis(ms),
            },
        }
    }

    #[test]
    fn a_report_escapes_what_phones_sent_and_counts_every_outcome() {
        let dir = std::env::temp_dir().join(format!("sipnotify-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.html");
        let origin = 1_700_000_000.0;
        let mut report = HtmlReport::create(&path, "resync <b>phones.csv</b>", origin).unwrap();
        let mut summary = Summary::new();
        let records = [
            sent(2, OutcomeKind::Delivered, 200, "OK", 3),
            sent(
                3,
                OutcomeKind::Rejected,
                489,
                "Bad</script><img src=x onerror=alert(1)>",
                5,
            ),
            Record {
                verdict: Verdict::AlreadyDelivered,
                ..sent(4, OutcomeKind::Delivered, 200, "OK", 0)
            },
        ];
        for (i, record) in records.iter().enumerate() {
            let span = Span {
                started: origin + i as f64,
                ended: origin + i as f64 + 0.005,
            };
            summary.add_record(record);
            report.record(record, Some(span)).unwrap();
        }
        report.finish(&summary).unwrap();
        assert!(!dir.join("report.html.partial").exists());
        let html = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            html.matches("</script>").count(),
            2,
            "the rows cannot end their block"
        );
        assert!(
            !html.contains("<img") && !html.contains("<b>phones"),
            "{html}"
        );
        assert!(html.contains("Bad\\u003c/script\\u003e\\u003cimg"));
        assert!(html.contains("&lt;b&gt;phones.csv&lt;/b&gt;"));
        for (label, n) in [("delivered", 1), ("rejected", 1), ("already_delivered", 1)] {
            let item = format!("data-outcome=\"{label}\" data-count=\"{n}\"");
            assert!(html.contains(&item), "{item}");
        }
        assert!(html.contains("Resync From SIP"), "the 489's hint");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no fetches"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_timeline_keeps_its_bins_as_the_campaign_grows() {
        let dir = std::env::temp_dir().join(format!("sipnotify-html-t-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut report = HtmlReport::create(&dir.join("r.html"), "t", 0.0).unwrap();
        for second in 0..3600u64 {
            let record = sent(second + 2, OutcomeKind::Delivered, 200, "OK", 10);
            let at = second as f64;
            let span = Span {
                started: at,
                ended: at + 0.01,
            };
            report.record(&record, Some(span)).unwrap();
        }
        assert!(report.timeline.len() <= TIMELINE_BINS);
        let started: u64 = report.timeline.iter().map(|b| b.started).sum();
        let delivered: u64 = report.timeline.iter().map(|b| b.delivered).sum();
        assert_eq!((started, delivered), (3600, 3600));
        assert!(report.width * TIMELINE_BINS as f64 >= 3600.0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn latency_bins_and_dates() {
        assert_eq!(latency_bin(0.05), 0);
        assert_eq!(latency_bin(1.0), 5);
        assert_eq!(latency_bin(1e9), LATENCY_BINS - 1);
        assert_eq!(utc_text(1_718_000_000.0), "2024-06-10 06:13:20 UTC");
        assert_eq!(ms_text(0.25), "0.25 ms");
        assert_eq!(ms_text(40.0), "40 ms");
        assert_eq!(ms_text(4.5), "4.5 ms");
        assert_eq!(ms_text(14.617), "14.6 ms");
        assert_eq!(ms_text(2500.0), "2.5 s");
    }
}
