//! Running an open campaign from the command line, whatever its channel: signals,
//! progress, per-target lines, the HTML report, the summary and the exit code.

use super::output::{progress_bar, CampaignOutput, LiveHtml};
use super::{stop_on_signals, Failure, Format, StopSignals};
use sipnotify::campaign::{Campaign, Channel, Input, Observer};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// How a campaign is shown: the output format and detail, the input's name, the HTML
/// report's title and file.
pub struct Shown {
    pub output: Format,
    pub verbose: u8,
    pub input: Input,
    pub title: String,
    pub report_html: Option<PathBuf>,
}

/// Runs an open campaign through `channel` with signals, progress, per-target output
/// (`observe` may add to it), the HTML report and the summary (`footer` adds the channel's
/// own lines); the exit code.
pub async fn drive<C: Channel, O: Observer>(
    campaign: Campaign<C>,
    channel: C,
    shown: Shown,
    observe: impl FnOnce(CampaignOutput) -> O,
    footer: impl FnOnce() -> String,
) -> Result<u8, Failure> {
    let Shown {
        output,
        verbose,
        input,
        title,
        report_html,
    } = shown;
    for warning in campaign.warnings() {
        errln!("warning: {warning}");
    }
    // Listening from here on, before the first target starts: a signal sent once the
    // journal has a line is never the default action.
    let signals = tokio::spawn(stop_on_signals(
        StopSignals::listen(),
        campaign.stop_handle(),
        campaign.files(),
    ));
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(campaign.total()));
    let html = report_html
        .as_deref()
        .map(|path| LiveHtml::create(path, &title))
        .transpose()?;
    let observer =
        observe(CampaignOutput::new(output, verbose, bar.clone(), input).with_html(html.clone()));
    let finished = campaign
        .run(channel, observer)
        .await
        .map_err(|e| Failure::local(e.to_string()))?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    signals.abort();
    let mut summary = finished.summary.render(&finished.end);
    summary += &footer();
    if output == Format::Human {
        out!("{summary}");
        let _ = std::io::stdout().flush();
    } else {
        err!("{summary}");
    }
    if let Some(e) = &finished.report_error {
        errln!("error: cannot write the report: {e}");
    }
    if let Some(html) = html {
        html.finish(&finished.summary);
    }
    if let Some(e) = &finished.end.journal_error {
        errln!(
            "error: {e}: the campaign stopped, the rest of the input was not started; once the \
             journal can be written, run the same command to resume"
        );
    }
    Ok(finished.exit_code())
}

/// Warns when `concurrency` targets over TCP, a descriptor each, cannot all be open at once
/// (after the limit was raised as far as it goes, as `Notifier::bind` does).
pub fn warn_if_descriptors_short(concurrency: usize) {
    match sipnotify::net::descriptor_budget() {
        Some(left) if concurrency as u64 > left => errln!(
            "warning: --concurrency {concurrency}, but only {left} more files can be opened \
             (ulimit -n): a target in flight over TCP holds one, and those beyond end unreachable"
        ),
        _ => {}
    }
}
