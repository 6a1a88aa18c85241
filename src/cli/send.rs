//! The single-target sending commands: options shared by all of them, input checks, and
//! the one send.

use super::output::Printer;
use super::secret::LinePasswordArgs;
use super::Failure;
use clap::Args;
use sipnotify::net::tls::{Fingerprint, TlsClient, TlsOptions, Verification};
use sipnotify::proto::transaction::Timers;
use sipnotify::secret;
use sipnotify::{
    Event, ExtraHeader, HostPort, Notifier, NotifierConfig, Notify, Target, Transport,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Options of every sending command.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The phone line: a SIP URI (sip:159@192.168.0.10:5061;transport=tcp, sips:159@pbx.example.com) or USER@HOST[:PORT].
    pub target: String,
    #[command(flatten)]
    pub line: LineArgs,
    /// Print the exact request that would be sent, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How to reach and answer a line: shared by the single-target commands and `batch`, where
/// they apply to the rows whose cell is empty.
#[derive(Debug, Args)]
pub struct LineArgs {
    /// Digest user name (the line's Auth ID); default: the target's user part.
    #[arg(long, value_name = "NAME")]
    pub auth_user: Option<String>,
    #[command(flatten)]
    pub password: LinePasswordArgs,
    /// Transport; default: the target's transport parameter (tls for sips:), else udp.
    #[arg(long, value_name = "udp|tcp|tls")]
    pub transport: Option<Transport>,
    /// Send through this outbound proxy; the Request-URI stays the target.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub proxy: Option<HostPort>,
    /// Local address to send from (ADDR or ADDR:PORT).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub bind: Option<String>,
    /// Ask this DNS server (port 53 by default) about host names, instead of the system's
    /// configured ones.
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_dns_server)]
    pub dns_server: Option<SocketAddr>,
    /// The From URI; default sip:sipnotify@<local address>.
    #[arg(long, value_name = "URI", value_parser = parse_from)]
    pub from: Option<String>,
    /// Give up a target sooner than Timer F (64*T1 = 32 s), in seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// RFC 3261 T1 in milliseconds (first retransmission interval over udp) [default: 500].
    #[arg(long, value_name = "MS")]
    pub t1: Option<u64>,
    /// RFC 3261 T2 in milliseconds (longest retransmission interval) [default: 4000].
    #[arg(long, value_name = "MS")]
    pub t2: Option<u64>,
    /// An extra header, 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// RFC 3261's T1 in milliseconds, `--t1`'s default.
pub const DEFAULT_T1: u64 = 500;
/// RFC 3261's T2 in milliseconds, `--t2`'s default.
pub const DEFAULT_T2: u64 = 4000;

impl LineArgs {
    /// The first option given that only SIP uses (the HTTP channel must refuse it rather
    /// than ignore it).
    pub fn sip_only_given(&self) -> Option<&'static str> {
        [
            ("--auth-user", self.auth_user.is_some()),
            ("--transport", self.transport.is_some()),
            ("--proxy", self.proxy.is_some()),
            ("--bind", self.bind.is_some()),
            ("--dns-server", self.dns_server.is_some()),
            ("--from", self.from.is_some()),
            ("--header", !self.headers.is_empty()),
            ("--t1", self.t1.is_some()),
            ("--t2", self.t2.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }
}

/// The help heading of the TLS options. Given to each, as a heading for the group would go
/// on to the options that follow it.
const TLS: &str = "TLS (--transport tls, transport=tls, sips:, https://)";

/// How TLS certificates are checked, and the agent's own: for every TLS connection of the
/// command (SIP over TLS, and HTTPS to phones' web servers; the whole campaign, for `batch`).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Trust the CA certificates of this PEM file instead of the system's roots.
    #[arg(long, help_heading = TLS, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Check the certificate against this name, and send it as SNI, instead of the next
    /// hop's host.
    #[arg(long, help_heading = TLS, value_name = "NAME")]
    pub tls_name: Option<String>,
    /// Accept exactly the certificate whose SHA-256, or its public key's (SPKI), is this:
    /// hex, colons allowed (repeatable). Its names, CA and dates are not checked.
    #[arg(long, help_heading = TLS, value_name = "SHA256", conflicts_with = "ca")]
    pub tls_pin: Vec<Fingerprint>,
    /// Check no certificate (a warning every run): anyone on the path can then read and
    /// change the requests and their answers.
    #[arg(long, help_heading = TLS, conflicts_with_all = ["ca", "tls_pin"])]
    pub tls_insecure: bool,
    /// A client certificate (PEM, end entity first), for peers that require mutual TLS.
    #[arg(long, help_heading = TLS, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, help_heading = TLS, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// Reads and checks the files the options name; warns about --tls-insecure.
    pub fn client(&self) -> Result<TlsClient, Failure> {
        let verification = if self.tls_insecure {
            errln!(
                "warning: --tls-insecure: no TLS certificate is checked; anyone on the path can \
                 read and change the requests and their answers, and read or guess the \
                 credentials they carry"
            );
            Verification::Insecure
        } else if !self.tls_pin.is_empty() {
            Verification::Pins(self.tls_pin.clone())
        } else if let Some(ca) = &self.ca {
            Verification::Ca(ca.clone())
        } else {
            Verification::SystemRoots
        };
        let options = TlsOptions {
            verification,
            name: self.tls_name.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
        };
        TlsClient::new(&options).map_err(|e| Failure::input(e.to_string()))
    }
}

/// The event and body of `sipnotify notify`.
#[derive(Debug, Args)]
pub struct CustomArgs {
    /// The Event header value, e.g. check-sync or 'check-sync;reboot=true'.
    #[arg(long, value_name = "EVENT")]
    event: String,
    /// The body, as given.
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file, byte for byte except a final newline.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Keep the body file's final newline (by default it is removed, unlike sipsak).
    #[arg(long, requires = "body_file")]
    keep_final_newline: bool,
    /// The body's Content-Type (default text/plain when there is a body).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
}

impl CustomArgs {
    /// Checks the event and reads the body.
    pub fn event(&self) -> Result<Event, Failure> {
        let body = match (&self.body, &self.body_file) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(path)) => {
                let mut bytes = read_limited(path, MAX_BODY_FILE, "body file")?;
                if !self.keep_final_newline {
                    secret::strip_final_newline(&mut bytes);
                }
                bytes
            }
            (None, None) => Vec::new(),
        };
        Event::custom(&self.event, body, self.content_type.clone())
            .map_err(|e| Failure::input(format!("--event: {e}")))
    }
}

/// The largest `--body-file`: a NOTIFY body is a short document.
const MAX_BODY_FILE: usize = 64 * 1024;

/// [`secret::read_file`], its error a bad-input failure.
pub fn read_limited(path: &Path, limit: usize, what: &'static str) -> Result<Vec<u8>, Failure> {
    secret::read_file(path, limit, what).map_err(|e| Failure::input(e.to_string()))
}

/// [`secret::read_secret`], its error a bad-input failure.
pub fn read_secret(path: &Path, limit: usize, what: &'static str) -> Result<String, Failure> {
    secret::read_secret(path, limit, what).map_err(|e| Failure::input(e.to_string()))
}

/// Checks `--from` when the command line is parsed, so a bad one sends nothing.
pub fn parse_from(text: &str) -> Result<String, String> {
    sipnotify::sip::request::check_from(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// Parses `ADDR` or `ADDR:PORT` for --bind.
pub fn parse_bind(text: &str) -> Result<SocketAddr, Failure> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 0))
        })
        .map_err(|_| {
            Failure::input(format!(
                "--bind `{text}` is not ADDR or ADDR:PORT (e.g. 192.168.0.5:5062)"
            ))
        })
}

/// Parses `ADDR` or `ADDR:PORT` (`[V6]:PORT`) for --dns-server.
pub fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    text.parse::<SocketAddr>()
        .or_else(|_| {
            bare.unwrap_or(text)
                .parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| {
            format!(
                "`{text}` is not ADDR or ADDR:PORT (e.g. 10.0.0.53, 127.0.0.1:5353 or [::1]:53)"
            )
        })
}

/// Checks the `--header` values.
pub fn parse_headers(headers: &[String]) -> Result<Vec<ExtraHeader>, Failure> {
    headers
        .iter()
        .map(|h| ExtraHeader::parse(h).map_err(|e| Failure::input(format!("--header: {e}"))))
        .collect()
}

/// Checks `--timeout`.
pub fn parse_timeout(timeout: Option<f64>) -> Result<Option<Duration>, Failure> {
    match timeout {
        Some(s) if !(s > 0.0 && s.is_finite() && s <= 1e9) => Err(Failure::input(
            "--timeout must be a positive number of seconds (at most 1e9)",
        )),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|_| Failure::input("--timeout must be a positive number of seconds")),
        None => Ok(None),
    }
}

/// Checks `--t1` and `--t2`.
pub fn timers(t1: u64, t2: u64) -> Result<Timers, Failure> {
    // Timer F is 64*T1: past a minute for T1, a target could wait over an hour.
    if !(1..=60_000).contains(&t1) || t2 < t1 || t2 > 600_000 {
        return Err(Failure::input(
            "--t1 must be 1 to 60000 ms, and --t2 from --t1 to 600000 ms",
        ));
    }
    Ok(Timers {
        t1: Duration::from_millis(t1),
        t2: Duration::from_millis(t2),
    })
}

/// The notifier configuration and the per-target limit of the line options, checked.
pub fn notifier_config(line: &LineArgs) -> Result<(NotifierConfig, Option<Duration>), Failure> {
    let config = NotifierConfig {
        bind: line.bind.as_deref().map(parse_bind).transpose()?,
        timers: timers(line.t1.unwrap_or(DEFAULT_T1), line.t2.unwrap_or(DEFAULT_T2))?,
        dns_server: line.dns_server,
        tls: line.tls.client()?,
    };
    Ok((config, parse_timeout(line.timeout)?))
}

/// Refuses a `--timeout` longer than Timer F, which ends every try anyway (a campaign's
/// retries would otherwise be planned on a limit that never applies).
pub fn timeout_within_timer_f(
    config: &NotifierConfig,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let timer_f = config.timers.timer_f();
    match timeout.filter(|&t| t > timer_f) {
        Some(timeout) => Err(Failure::input(format!(
            "--timeout {} s is longer than Timer F ({} s, 64 x --t1), which ends a try \
             anyway: --timeout is for giving up sooner; leave it out or raise --t1",
            timeout.as_secs_f64(),
            timer_f.as_secs_f64()
        ))),
        None => Ok(()),
    }
}

/// Checks every option and builds the notifier configuration and the NOTIFY, before
/// anything is bound or sent.
pub fn prepare(
    args: &SendArgs,
    event: Event,
    trace: bool,
) -> Result<(NotifierConfig, Notify), Failure> {
    let target = Target::parse(&args.target).map_err(|e| Failure::input(e.to_string()))?;
    if let Some(other) = args
        .line
        .transport
        .filter(|&t| target.is_sips() && t != Transport::Tls)
    {
        return Err(Failure::input(format!(
            "`{target}` is a sips: URI, which travels over TLS only: leave out --transport {other}"
        )));
    }
    let extra = parse_headers(&args.line.headers)?;
    let password = args.line.password.given().password()?;
    let (config, timeout) = notifier_config(&args.line)?;
    let mut notify = Notify::new(target, event);
    notify.extra = Arc::from(extra);
    if let Some(password) = password {
        notify = notify.with_credentials(args.line.auth_user.as_deref(), password);
    }
    notify.transport = args.line.transport;
    notify.proxy = args.line.proxy.clone();
    notify.from = args.line.from.clone();
    notify.timeout = timeout;
    notify.trace = trace;
    notify
        .check_size()
        .map_err(|e| Failure::input(e.to_string()))?;
    Ok((config, notify))
}

/// Binds the notifier; a failure names the address (`--bind`'s, or any address and a free
/// port), so that "address in use" says which.
pub async fn bind(config: NotifierConfig) -> Result<Notifier, Failure> {
    let addr = config.bind;
    Notifier::bind(config).await.map_err(|e| {
        Failure::local(match addr {
            Some(addr) => format!("cannot bind {addr} (--bind): {e}"),
            None => format!("cannot bind a UDP socket on any local address: {e}"),
        })
    })
}

/// Sends one NOTIFY (or shows it with --dry-run), prints the result, returns the exit code.
pub async fn run(args: SendArgs, event: Event, out: &Printer) -> Result<u8, Failure> {
    let (config, notify) = prepare(&args, event, out.wants_ladder())?;
    let notifier = bind(config).await?;
    if args.dry_run {
        let request = notifier
            .preview(notify)
            .await
            .map_err(|e| Failure::input(e.to_string()))?;
        out.dry_run(&request);
        return Ok(0);
    }
    let target = notify.target.to_string();
    let event_name = notify.event.name().to_string();
    let outcome = notifier.send(notify).await;
    out.outcome(&target, &event_name, None, &outcome);
    Ok(outcome.kind.exit_code())
}
