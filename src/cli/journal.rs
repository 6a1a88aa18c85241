//! `sipnotify journal merge`: one report and one summary from the journals of a campaign's
//! shards (or runs), as a single run would give.

use super::output::CampaignOutput;
use super::{Failure, Format};
use clap::{Args, Subcommand};
use sipnotify::campaign::html::HtmlReport;
use sipnotify::campaign::{merge, Input, Observer, Report, RunEnd, Summary};
use sipnotify::paths::same_file;
use std::io::Write;
use std::path::PathBuf;

/// `sipnotify journal ...`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Combine the journals of one campaign (its shards, or its runs) into one record per
    /// target and the summary a single run would print.
    #[command(after_help = "\
Examples:
  sipnotify journal merge shard-0.journal shard-1.journal shard-2.journal --report all.csv
  sipnotify journal merge shard-*.journal --html campaign.html
  sipnotify journal merge /state/shard-*.journal --output json > all.jsonl

Exit codes: 0 every target delivered, 1 any target not delivered (or only started),
2 a journal that cannot be read or belongs to another campaign.")]
    Merge(MergeArgs),
}

/// Options of `sipnotify journal merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The journals, all of one campaign.
    #[arg(required = true, value_name = "JOURNAL")]
    pub journals: Vec<PathBuf>,
    /// Also write the records to this file: CSV if it ends in .csv, else JSON Lines.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write the whole campaign as one HTML page: counts, latency, timeline, most
    /// frequent failures with hints, and a filterable table of every target.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Runs `journal merge` and returns the exit code.
pub fn run(command: JournalCommand, output: Format) -> Result<u8, Failure> {
    let JournalCommand::Merge(args) = command;
    let outputs = [("--report", &args.report), ("--html", &args.html)];
    for (option, path) in outputs {
        let Some(path) = path else { continue };
        if args.journals.iter().any(|j| same_file(j, path)) {
            return Err(Failure::input(format!(
                "{option} {} is one of the journals: name another file",
                path.display()
            )));
        }
    }
    if let (Some(report), Some(html)) = (&args.report, &args.html) {
        if same_file(report, html) {
            return Err(Failure::input(format!(
                "--report and --html name the same file ({}): name two files",
                html.display()
            )));
        }
    }
    let merged = merge(&args.journals).map_err(|e| Failure::input(e.to_string()))?;
    if merged.unreadable > 0 {
        errln!(
            "warning: {} unreadable journal line(s) (torn last lines after a crash); skipped",
            merged.unreadable
        );
    }
    let mut report = match &args.report {
        Some(path) => Some(Report::open(path, false).map_err(|e| {
            Failure::input(format!("cannot open the report {}: {e}", path.display()))
        })?),
        None => None,
    };
    let mut html = match &args.html {
        Some(path) => {
            let names: Vec<String> = args
                .journals
                .iter()
                .map(|j| j.display().to_string())
                .collect();
            let title = format!("sipnotify journal merge {}", names.join(" "));
            let origin = merged
                .spans
                .iter()
                .flatten()
                .map(|s| s.started)
                .min_by(f64::total_cmp)
                .unwrap_or(0.0);
            Some(HtmlReport::create(path, &title, origin).map_err(|e| {
                Failure::input(format!(
                    "cannot open the HTML report {}: {e}",
                    path.display()
                ))
            })?)
        }
        None => None,
    };
    let mut out = CampaignOutput::new(output, 0, None, Input::Stdin);
    let mut summary = Summary::new();
    let html_failed =
        |e: std::io::Error| Failure::local(format!("cannot write the HTML report: {e}"));
    for (record, span) in merged.records.iter().zip(&merged.spans) {
        summary.add_record(record);
        out.record(record);
        if let Some(html) = &mut html {
            html.record(record, *span).map_err(html_failed)?;
        }
        if let Some(report) = &mut report {
            report
                .record(record)
                .map_err(|e| Failure::local(format!("cannot write the report: {e}")))?;
        }
    }
    out.caught_up();
    if let Some(report) = &mut report {
        report
            .flush()
            .map_err(|e| Failure::local(format!("cannot write the report: {e}")))?;
    }
    if let Some(html) = html {
        html.finish(&summary).map_err(html_failed)?;
    }
    let text = summary.render(&RunEnd::default());
    if output == Format::Human {
        out!("{text}");
        let _ = std::io::stdout().flush();
    } else {
        err!("{text}");
    }
    Ok(if summary.all_delivered() { 0 } else { 1 })
}
