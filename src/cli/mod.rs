//! Command-line parsing, dispatch and exit codes.

// Output that never panics: text for a reader that went away (`sipnotify demo | head -1`)
// is dropped, and the command goes on to its end and its exit code, as if the reader had
// read it. A campaign whose output is cut short still finishes and journals every target.
macro_rules! emit {
    ($stream:expr, $write:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = $write!($stream, $($arg)*);
    }};
}
macro_rules! out {
    ($($arg:tt)*) => { emit!(std::io::stdout(), write, $($arg)*) };
}
macro_rules! outln {
    ($($arg:tt)*) => { emit!(std::io::stdout(), writeln, $($arg)*) };
}
macro_rules! err {
    ($($arg:tt)*) => { emit!(std::io::stderr(), write, $($arg)*) };
}
macro_rules! errln {
    ($($arg:tt)*) => { emit!(std::io::stderr(), writeln, $($arg)*) };
}

mod api;
mod batch;
mod confirm;
mod demo;
mod docs;
mod drive;
mod http;
mod journal;
mod output;
mod phone;
mod profile;
mod secret;
mod send;
mod serve;

use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use sipnotify::campaign::{Files, Stop};
use sipnotify::event::{self, Action, EventError};
use sipnotify::http::Action as HttpAction;
use sipnotify::Event;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  sipnotify demo
  SIPNOTIFY_PASSWORD=secret sipnotify resync sip:159@192.168.0.10
  sipnotify reboot 159@192.168.0.10:5061 --password-file ~/.line159 --transport tcp
  sipnotify xml-service sip:159@192.168.0.10 http://10.0.0.1/menu.xml --output json
  sipnotify notify sip:201@10.0.0.7 --event 'check-sync;reboot=false'
  sipnotify phone --listen 127.0.0.1:5060 --user 159 --password-template secret

Exit codes: 0 delivered, 2 bad input or no password when challenged, 3 auth failed,
4 rejected, 5 timeout or unreachable, 1 local failure (cannot bind).";

/// Send SIP NOTIFY (resync, reboot, XML-Service, ...) to SIP phones, answer their digest
/// challenges, and report what each phone really answered.
#[derive(Debug, Parser)]
#[command(name = "sipnotify", version, after_help = EXAMPLES)]
pub struct Cli {
    /// More detail: -v prints every message sent and received (the ladder; for `phone`, a
    /// line per exchange on stderr), -vv adds debug logs on stderr. Passwords are never shown.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Output format: one line per target for people, or one JSON object per target.
    #[arg(long, value_enum, default_value_t = Format::Human, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A line per target, and the ladder with -v.
    Human,
    /// One JSON object per target.
    Json,
    /// A CSV header, then one row per target.
    Csv,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the phone re-fetch its configuration profile (Event: resync; with --via http,
    /// MPP's GET /admin/resync[?URL]).
    Resync {
        #[command(flatten)]
        send: send::SendArgs,
        /// Resync from this profile URL instead of Profile_Rule (MPP: Event: resync;profile="URL";
        /// with --via http, /admin/resync?URL, where tftp:// is taken too).
        #[arg(long, value_name = "URL")]
        profile: Option<String>,
        #[command(flatten)]
        vendor: VendorArgs,
        #[command(flatten)]
        via: http::ViaArgs,
    },
    /// Cold restart (Event: reboot_now; with --via http, MPP's GET /admin/reboot).
    Reboot {
        #[command(flatten)]
        send: send::SendArgs,
        #[command(flatten)]
        vendor: VendorArgs,
        #[command(flatten)]
        via: http::ViaArgs,
    },
    /// Warm restart (Event: restart_now).
    Restart {
        #[command(flatten)]
        send: send::SendArgs,
        #[command(flatten)]
        vendor: VendorArgs,
    },
    /// Upload a configuration report per Report_Rule (Event: report).
    Report {
        #[command(flatten)]
        send: send::SendArgs,
        #[command(flatten)]
        vendor: VendorArgs,
    },
    /// Open an XML service: the phone fetches URL (Event: XML-Service, the URL as the body,
    /// with no trailing newline).
    XmlService {
        #[command(flatten)]
        send: send::SendArgs,
        /// The http:// or https:// URL the phone fetches.
        url: String,
    },
    /// Any event, with an optional body.
    Notify {
        #[command(flatten)]
        send: send::SendArgs,
        #[command(flatten)]
        custom: send::CustomArgs,
    },
    /// Send one event to many phones listed in a CSV or JSON Lines file (or - for standard
    /// input),
    /// paced, retried, journaled for resuming, with a report.
    Batch(Box<batch::BatchArgs>),
    #[command(flatten)]
    Http(http::HttpCommand),
    /// Work with campaign journals: merge the shards' journals into one report.
    #[command(subcommand)]
    Journal(journal::JournalCommand),
    /// List the vendor presets: each vendor's NOTIFY event for resync, reboot, restart and
    /// report, with its source.
    Vendors,
    /// Run a simulated SPA/MPP phone line (for tests and rehearsals).
    Phone(phone::PhoneArgs),
    /// Prepare and inspect MPP profiles: encrypt/decrypt (openssl enc -aes-256-cbc -k),
    /// encode/decode (RFC 8188 aes128gcm), check, expand a Profile_Rule.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Run as a service: an HTTP JSON API for one NOTIFY and for campaigns (journaled in a
    /// state directory, resumed after a restart), with Prometheus metrics.
    Api(api::ApiArgs),
    /// Serve profiles over HTTP (path template with default.EXT fallback, on-the-fly
    /// AES-256-CBC or aes128gcm, Basic auth), logging one JSON line per fetch.
    Serve(serve::ServeArgs),
    /// Start a simulated phone on loopback and send it resync, reboot, restart and
    /// XML-Service, explaining each message: the whole job with no phone and no setup.
    Demo,
    /// Print a shell completion script, e.g. `sipnotify completions bash >
    /// ~/.local/share/bash-completion/completions/sipnotify`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `sipnotify man | man -l -`.
    Man,
}

/// A failure of the command itself (not of a phone), with its exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input: exit 2, nothing sent.
    pub fn input(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// A local failure such as a socket that cannot be bound: exit 1.
    pub fn local(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Parses the command line, runs, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Batch(args), Some(("batch", matches))) =
        (&mut cli.command, matches.subcommand())
    {
        args.http.note_given(matches);
    }
    init_tracing(
        cli.verbose,
        matches!(
            cli.command,
            Command::Phone(_) | Command::Serve(_) | Command::Api(_)
        ),
    );
    // One thread: the agent's work is one event loop, and cross-thread wake-ups cost more
    // than they bring. Only a simulator asked for threads gets them.
    let mut builder = match &cli.command {
        Command::Phone(args) if args.threads > 1 => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(args.threads));
            builder
        }
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            errln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    refuse_output(&cli)?;
    let out = output::Printer::new(cli.output, cli.verbose);
    match cli.command {
        Command::Resync {
            send,
            profile,
            vendor,
            via,
        } => {
            if via.via == http::Via::Http {
                let (action, vendor) = (HttpAction::Resync, vendor.vendor.as_deref());
                return http::admin(action, send, profile, vendor, via, &out, cli.output).await;
            }
            via.refuse_http_options()?;
            let event = vendor
                .event(Action::Resync, profile.as_deref())
                .map_err(|e| match e {
                    EventError::NotHttpUrl(_) | EventError::UrlWhitespace => {
                        Failure::input(format!("--profile: {e}"))
                    }
                    other => Failure::input(other.to_string()),
                })?;
            send::run(send, event, &out).await
        }
        Command::Reboot { send, vendor, via } => {
            if via.via == http::Via::Http {
                let (action, vendor) = (HttpAction::Reboot, vendor.vendor.as_deref());
                return http::admin(action, send, None, vendor, via, &out, cli.output).await;
            }
            via.refuse_http_options()?;
            let event = vendor
                .event(Action::Reboot, None)
                .map_err(|e| Failure::input(e.to_string()))?;
            send::run(send, event, &out).await
        }
        Command::Restart { send, vendor } => {
            let event = vendor
                .event(Action::Restart, None)
                .map_err(|e| Failure::input(e.to_string()))?;
            send::run(send, event, &out).await
        }
        Command::Report { send, vendor } => {
            let event = vendor
                .event(Action::Report, None)
                .map_err(|e| Failure::input(e.to_string()))?;
            send::run(send, event, &out).await
        }
        Command::Vendors => {
            vendors(cli.output);
            Ok(0)
        }
        Command::XmlService { send, url } => {
            let event =
                sipnotify::Event::xml_service(&url).map_err(|e| Failure::input(e.to_string()))?;
            send::run(send, event, &out).await
        }
        Command::Notify { send, custom } => {
            let event = custom.event()?;
            send::run(send, event, &out).await
        }
        Command::Http(command) => http::run(command, &out, cli.output).await,
        Command::Batch(args) => batch::run(*args, cli.output, cli.verbose).await,
        Command::Journal(command) => journal::run(command, cli.output),
        Command::Phone(args) => phone::run(args).await,
        Command::Profile(command) => profile::run(command, cli.output),
        Command::Serve(args) => serve::run(args).await,
        Command::Api(args) => api::run(args).await,
        Command::Demo => demo::run(cli.verbose).await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
    }
}

/// Commands that print for people (or print a script) refuse `--output json|csv` rather
/// than ignore it: a script asking for JSON must not get text it cannot read.
fn refuse_output(cli: &Cli) -> Result<(), Failure> {
    let name = match cli.command {
        Command::Phone(_) => "phone",
        Command::Demo => "demo",
        Command::Api(_) => "api",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
        _ => return Ok(()),
    };
    match cli.output {
        Format::Human => Ok(()),
        _ => Err(Failure::input(format!(
            "`sipnotify {name}` prints text only: --output json and csv are for the commands \
             that send (resync, batch, ...) and `journal merge`"
        ))),
    }
}

/// `--vendor` of the single-target actions: whose event the action sends.
#[derive(Debug, Args)]
struct VendorArgs {
    /// The phone's vendor: its own event for this action (see `sipnotify vendors`);
    /// default cisco (SPA/MPP).
    #[arg(long, value_name = "VENDOR")]
    vendor: Option<String>,
}

impl VendorArgs {
    /// The event for an action, as the vendor's phones (default cisco) expect it.
    fn event(&self, action: Action, url: Option<&str>) -> Result<Event, EventError> {
        let name = self.vendor.as_deref().unwrap_or("cisco");
        event::vendor(name)
            .ok_or_else(|| EventError::UnknownVendor(name.to_string()))?
            .event(action, url)
    }
}

/// `sipnotify vendors`: the preset table, for people, as JSON Lines or as CSV.
fn vendors(format: Format) {
    let mut csv = (format == Format::Csv).then(|| {
        let mut csv = csv::Writer::from_writer(std::io::stdout());
        let _ = csv.write_record([
            "vendor", "action", "event", "body", "note", "phones", "source",
        ]);
        csv
    });
    for vendor in event::VENDORS.iter() {
        for e in vendor.events {
            let action = e.action.as_str();
            match (format, &mut csv) {
                (Format::Csv, Some(csv)) => {
                    let row = [vendor.name, action, e.header, e.body, e.note, vendor.phones];
                    let _ = csv.write_record(row.iter().chain([&vendor.source]));
                }
                (Format::Json, _) => outln!(
                    "{}",
                    serde_json::json!({
                        "vendor": vendor.name,
                        "phones": vendor.phones,
                        "action": action,
                        "event": e.header,
                        "body": e.body,
                        "note": e.note,
                        "source": vendor.source,
                    })
                ),
                _ => outln!(
                    "{:<12} {action:<8} Event: {}{}  ({})",
                    vendor.name,
                    e.header,
                    if e.body.is_empty() {
                        String::new()
                    } else {
                        format!(", body {}", e.body)
                    },
                    e.note
                ),
            }
        }
    }
    match csv {
        Some(mut csv) => {
            let _ = csv.flush();
        }
        None if format == Format::Human => {
            outln!("\nSources:");
            for vendor in event::VENDORS.iter() {
                outln!("  {:<12} {}: {}", vendor.name, vendor.phones, vendor.source);
            }
        }
        None => {}
    }
}

/// Parses `90`, `90s`, `250ms`, `30m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 500ms, 90s, 30m or 2h"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("`{text}` is too long"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is not a valid duration"))
}

/// Ctrl-C and SIGTERM (what `kill` and container runtimes send): the one place signals are
/// listened to.
pub enum StopSignals {
    /// Listening since [`StopSignals::listen`].
    #[cfg(unix)]
    Unix {
        interrupt: tokio::signal::unix::Signal,
        terminate: tokio::signal::unix::Signal,
    },
    /// Ctrl-C only, from the first poll of [`StopSignals::recv`].
    CtrlC,
}

impl StopSignals {
    /// Installs the handlers now (on Unix), so that a signal from here on is never the
    /// default action.
    pub fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(interrupt), Ok(terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                return StopSignals::Unix {
                    interrupt,
                    terminate,
                };
            }
        }
        StopSignals::CtrlC
    }

    /// Waits for the next Ctrl-C or SIGTERM.
    pub async fn recv(&mut self) {
        match self {
            #[cfg(unix)]
            StopSignals::Unix {
                interrupt,
                terminate,
            } => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            StopSignals::CtrlC => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The first Ctrl-C or SIGTERM stops the campaign gracefully; a second one exits at once,
/// with whole records only.
pub async fn stop_on_signals(mut signals: StopSignals, stop: Arc<Stop>, files: Files) {
    signals.recv().await;
    errln!("stopping: no new targets; waiting for those in flight (Ctrl-C again to exit now)");
    stop.stop();
    signals.recv().await;
    // Records still queued for the output thread (a poll interval's worth) are not in
    // the report; the journal has their results.
    let _held = files.flush_and_hold();
    errln!("exiting now: targets in flight are journaled with no result (unknown)");
    std::process::exit(130);
}

/// Warnings only by default; -v adds the simulator's line per exchange (info, for `phone`
/// only: the agent's -v is the ladder on stdout), -vv debug.
fn init_tracing(verbose: u8, phone: bool) {
    let level = match verbose {
        0 => "warn",
        1 if phone => "info",
        1 => "warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIPNOTIFY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flattened option groups must not share a name: clap only says so when the
    /// subcommand is first parsed, so every subcommand is checked here.
    #[test]
    fn every_subcommand_has_unique_options() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2d").is_err() && parse_duration("").is_err());
    }
}
