//! `sipnotify phone`: a simulated SPA/MPP line in the foreground until Ctrl-C or SIGTERM.

use super::Failure;
use clap::{Args, ValueEnum};
use sipnotify::net::tls::Identity;
use sipnotify::phone::{self, ChallengeMode, PhoneConfig, UserRange};
use sipnotify::provision::resync::Resyncer;
use sipnotify::text::printable;
use sipnotify::Transport;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Which transports the simulator listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Listen {
    /// UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// UDP and TCP on the same port.
    Both,
    /// TLS only, with --tls-cert and --tls-key, or a self-signed certificate made at start.
    Tls,
}

/// Options of `sipnotify phone`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sipnotify phone --listen 127.0.0.1:5060 --users 1000-1999 \\\n    --password-template 'pw-{user}' --challenge md5-qop"
)]
pub struct PhoneArgs {
    /// Address to listen on (repeatable); port 0 picks a free port. Default 127.0.0.1:5060,
    /// or 127.0.0.1:5061 with --transport tls.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// Transports to listen on.
    #[arg(long, value_enum, default_value_t = Listen::Both)]
    transport: Listen,
    /// The certificate (PEM, end entity first) of --transport tls and --http-tls; without
    /// it, a self-signed one is made at start and its SHA-256 printed, for --tls-pin.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A user (line User ID) the phone answers for (repeatable).
    #[arg(long, value_name = "USER")]
    user: Vec<String>,
    /// A range of numeric users, e.g. 1000-1999 (repeatable); costs no memory per user.
    #[arg(long, value_name = "FIRST-LAST")]
    users: Vec<String>,
    /// Each user's password; {user} is replaced by the user.
    #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_TEMPLATE)]
    password_template: String,
    /// The digest realm of the challenges.
    #[arg(long, default_value = "sipnotify-phone")]
    realm: String,
    /// The challenge: md5 (Sipura style, no qop), md5-qop, sha256 (SHA-256 and MD5), none.
    #[arg(long, default_value = "md5-qop", value_name = "MODE")]
    challenge: ChallengeMode,
    /// Accept this event too, besides resync, reboot_now, restart_now, report, XML-Service
    /// (or the --vendor's events).
    #[arg(long, value_name = "EVENT")]
    accept_event: Vec<String>,
    /// Play this vendor's phone: accept only its events (see `sipnotify vendors`), 489 to
    /// others.
    #[arg(long, value_name = "VENDOR")]
    vendor: Option<String>,
    /// Ignore this percentage of requests (0-100).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    drop: f64,
    /// Answer each request after this many milliseconds (UDP: within 0.25 ms after it).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay: u64,
    /// Answer this percentage of authenticated NOTIFYs with --fail-status (0-100).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    fail_percent: f64,
    /// The status of --fail-percent answers (503 adds Retry-After: 1).
    #[arg(long, value_name = "CODE", default_value_t = 503)]
    fail_status: u16,
    /// Append one JSON line per exchange to this file.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Answer on this many threads (1-64), each receiving from every UDP socket: a fleet
    /// rehearsal at tens of thousands of NOTIFYs per second needs more than one core.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    #[command(flatten)]
    provision: super::profile::PhoneProvisionArgs,
    #[command(flatten)]
    web: super::http::PhoneWebArgs,
}

impl PhoneArgs {
    fn config(&self) -> Result<PhoneConfig, Failure> {
        let mut users = Vec::new();
        for user in &self.user {
            users.push(UserRange::One(user.clone()));
        }
        for range in &self.users {
            users.push(
                range
                    .parse::<UserRange>()
                    .map_err(|e| Failure::input(format!("--users: {e}")))?,
            );
        }
        if users.is_empty() {
            users.push(UserRange::One("159".into()));
        }
        for (name, pct) in [("--drop", self.drop), ("--fail-percent", self.fail_percent)] {
            if !(0.0..=100.0).contains(&pct) {
                return Err(Failure::input(format!("{name} must be between 0 and 100")));
            }
        }
        if !(300..=699).contains(&self.fail_status) {
            return Err(Failure::input(
                "--fail-status must be a final error status, 300 to 699",
            ));
        }
        let vendor = match &self.vendor {
            Some(name) => Some(sipnotify::event::vendor(name).ok_or_else(|| {
                Failure::input(sipnotify::EventError::UnknownVendor(name.clone()).to_string())
            })?),
            None => None,
        };
        Ok(PhoneConfig {
            users,
            vendor,
            password_template: self.password_template.clone(),
            realm: self.realm.clone(),
            challenge: self.challenge,
            accept_events: self.accept_event.clone(),
            drop_percent: self.drop,
            delay: Duration::from_millis(self.delay),
            fail_percent: self.fail_percent,
            fail_status: self.fail_status,
            log: self.log.clone(),
            udp_workers: usize::from(self.threads),
            ..PhoneConfig::default()
        })
    }
}

/// The default `--password-template`: documented, so shown.
const DEFAULT_TEMPLATE: &str = "pw-{user}";

/// The start's second line: which users the phone answers, how it challenges, and their
/// passwords' template. Only the documented default template is shown: a template given on
/// the command line is a password, and passwords stay out of the output (as the agent's do).
fn answers_line(config: &PhoneConfig) -> String {
    let users: Vec<String> = config.users.iter().map(|u| u.to_string()).collect();
    let passwords = if config.challenge == ChallengeMode::None {
        "no passwords (--challenge none)".to_string()
    } else if config.password_template == DEFAULT_TEMPLATE {
        format!("password template `{DEFAULT_TEMPLATE}` (the user's password is pw-USER)")
    } else {
        "the password template of --password-template (not shown)".to_string()
    };
    format!(
        "answering user{} {}; challenge {}, realm {}; {passwords}",
        if users.len() == 1 && !users[0].contains('-') {
            ""
        } else {
            "s"
        },
        printable(&users.join(", "), false),
        config.challenge,
        printable(&config.realm, false),
    )
}

/// The certificate of the TLS and HTTPS listeners on `listen`, and the line that says what
/// it is. A generated one names localhost and the addresses listened on (loopback for a
/// wildcard).
fn identity(args: &PhoneArgs, listen: &[SocketAddr]) -> Result<(Identity, String), Failure> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity =
            Identity::from_pem_files(cert, key).map_err(|e| Failure::input(e.to_string()))?;
        let line = format!(
            "tls certificate {} (SHA-256 {})",
            cert.display(),
            identity.fingerprint()
        );
        return Ok((identity, line));
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for ip in listen.iter().map(SocketAddr::ip) {
        let named: &[IpAddr] = match ip {
            IpAddr::V4(v4) if v4.is_unspecified() => &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            IpAddr::V6(v6) if v6.is_unspecified() => &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            ip => &[ip],
        };
        for ip in named {
            if !addresses.contains(ip) {
                addresses.push(*ip);
            }
        }
    }
    let identity = Identity::self_signed(&addresses).map_err(|e| Failure::local(e.to_string()))?;
    let names: Vec<String> = std::iter::once("localhost".to_string())
        .chain(addresses.iter().map(IpAddr::to_string))
        .collect();
    let fingerprint = identity.fingerprint();
    let line = format!(
        "tls certificate self-signed for {}, made at start: SHA-256 {fingerprint} \
         (for sipnotify --tls-pin)",
        names.join(", ")
    );
    Ok((identity, line))
}

/// Runs the simulator until Ctrl-C or SIGTERM, then prints its counters.
pub async fn run(args: PhoneArgs) -> Result<u8, Failure> {
    let mut config = args.config()?;
    let transports: &[Transport] = match args.transport {
        Listen::Udp => &[Transport::Udp],
        Listen::Tcp => &[Transport::Tcp],
        Listen::Both => &[Transport::Udp, Transport::Tcp],
        Listen::Tls => &[Transport::Tls],
    };
    let addrs = match args.listen.as_slice() {
        [] => vec![SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            if args.transport == Listen::Tls {
                5061
            } else {
                5060
            },
        ))],
        given => given.to_vec(),
    };
    let mut listen = Vec::new();
    for addr in &addrs {
        for t in transports {
            listen.push((*addr, *t));
        }
    }
    // One certificate for SIP over TLS and HTTPS, naming the addresses of both.
    let sip_tls = args.transport == Listen::Tls;
    let mut named = Vec::new();
    if sip_tls {
        named.extend(&addrs);
    }
    if args.web.http_tls {
        named.extend(&args.web.http);
    }
    let (web_tls, certificate) = if named.is_empty() {
        if args.tls_cert.is_some() {
            return Err(Failure::input(
                "--tls-cert and --tls-key are for --transport tls and --http-tls",
            ));
        }
        (None, None)
    } else {
        let (identity, line) = identity(&args, &named)?;
        if sip_tls {
            config.tls = Some(identity.clone());
        }
        (args.web.http_tls.then_some(identity), Some(line))
    };
    let answers = answers_line(&config);
    let resyncer = args.provision.resyncer(!args.web.http.is_empty())?;
    let hook = args.provision.hook(resyncer.as_ref());
    let running = phone::spawn_with_hook(config, &listen, hook)
        .await
        .map_err(|e| Failure::local(format!("cannot listen: {e}")))?;
    let faults = super::http::Faults {
        delay: Duration::from_millis(args.delay),
        drop_percent: args.drop,
        fail_percent: args.fail_percent,
    };
    let web = args
        .web
        .start(
            &args.password_template,
            faults,
            web_tls,
            resyncer.map(Resyncer::web_hook),
        )
        .await?;
    let mut addrs: Vec<String> = running
        .local_addrs()
        .iter()
        .map(|(a, t)| format!("{t} {a}"))
        .collect();
    // Listening before saying so: a SIGTERM sent as soon as the first line is read stops
    // the phone with its counters, never by the default action.
    let mut signals = super::StopSignals::listen();
    if let Some(web) = &web {
        addrs.extend(
            web.local_addrs()
                .iter()
                .map(|a| format!("{} {a}", web.scheme())),
        );
    }
    outln!("phone listening on {}", addrs.join(", "));
    if let Some(certificate) = certificate {
        outln!("{certificate}");
    }
    outln!("{answers}");
    signals.recv().await;
    let stats = running.stats();
    running.shutdown().await;
    if let Some(web) = web {
        let s = web.stats();
        web.shutdown().await;
        outln!(
            "web stopped: {} requests, {} phones, {} executed, {} backgrounds, {} failed downloads, {} refused, {} screenshots, {} overlapping, {} resyncs, {} upgrades, {} reboots",
            s.requests, s.phones, s.executed, s.backgrounds, s.failed_fetches, s.refused, s.screenshots, s.overlapping, s.resyncs, s.upgrades, s.reboots
        );
    }
    outln!(
        "phone stopped: {} requests, {} challenged, {} delivered, {} forbidden, {} rejected, {} dropped, {} retransmissions answered again",
        stats.requests, stats.challenged, stats.delivered, stats.forbidden, stats.rejected, stats.dropped, stats.retransmissions
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(template: &str, users: Vec<UserRange>) -> PhoneConfig {
        PhoneConfig {
            users,
            password_template: template.into(),
            ..PhoneConfig::default()
        }
    }

    #[test]
    fn the_start_says_whom_the_phone_answers_and_shows_only_the_default_template() {
        let line = answers_line(&config(
            DEFAULT_TEMPLATE,
            vec![UserRange::One("159".into()), "1000-1999".parse().unwrap()],
        ));
        assert!(
            line.starts_with("answering users 159, 1000-1999; challenge md5, realm "),
            "{line}"
        );
        assert!(line.ends_with("password template `pw-{user}` (the user's password is pw-USER)"));
        let secret = answers_line(&config("s3cret-{user}", vec![UserRange::One("7".into())]));
        assert!(secret.starts_with("answering user 7;"), "{secret}");
        assert!(!secret.contains("s3cret"), "{secret}");
    }
}
