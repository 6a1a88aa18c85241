//! `sipnotify phone`: a simulated SPA/MPP line in the foreground until Ctrl-C or SIGTERM.

use super::Failure;
use clap::{Args, ValueEnum};
use sipnotify::phone::{self, ChallengeMode, PhoneConfig, UserRange};
use sipnotify::Transport;
use std::net::SocketAddr;
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
}

/// Options of `sipnotify phone`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sipnotify phone --listen 127.0.0.1:5060 --users 1000-1999 \\\n    --password-template 'pw-{user}' --challenge md5-qop"
)]
pub struct PhoneArgs {
    /// Address to listen on (repeatable); port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5060")]
    listen: Vec<SocketAddr>,
    /// Transports to listen on.
    #[arg(long, value_enum, default_value_t = Listen::Both)]
    transport: Listen,
    /// A user (line User ID) the phone answers for (repeatable).
    #[arg(long, value_name = "USER")]
    user: Vec<String>,
    /// A range of numeric users, e.g. 1000-1999 (repeatable); costs no memory per user.
    #[arg(long, value_name = "FIRST-LAST")]
    users: Vec<String>,
    /// Each user's password; {user} is replaced by the user.
    #[arg(long, value_name = "TEMPLATE", default_value = "pw-{user}")]
    password_template: String,
    /// The digest realm of the challenges.
    #[arg(long, default_value = "sipnotify-phone")]
    realm: String,
    /// The challenge: md5 (Sipura style, no qop), md5-qop, sha256 (SHA-256 and MD5), none.
    #[arg(long, default_value = "md5-qop", value_name = "MODE")]
    challenge: ChallengeMode,
    /// Accept this event too, besides resync, reboot_now, restart_now, report, XML-Service.
    #[arg(long, value_name = "EVENT")]
    accept_event: Vec<String>,
    /// Ignore this percentage of requests (0-100).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    drop: f64,
    /// Answer each request after this many milliseconds.
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
        Ok(PhoneConfig {
            users,
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

/// Runs the simulator until Ctrl-C or SIGTERM, then prints its counters.
pub async fn run(args: PhoneArgs) -> Result<u8, Failure> {
    let config = args.config()?;
    let transports: &[Transport] = match args.transport {
        Listen::Udp => &[Transport::Udp],
        Listen::Tcp => &[Transport::Tcp],
        Listen::Both => &[Transport::Udp, Transport::Tcp],
    };
    let mut listen = Vec::new();
    for addr in &args.listen {
        for t in transports {
            listen.push((*addr, *t));
        }
    }
    let running = phone::spawn(config, &listen)
        .await
        .map_err(|e| Failure::local(format!("cannot listen: {e}")))?;
    let faults = super::http::Faults {
        delay: Duration::from_millis(args.delay),
        drop_percent: args.drop,
        fail_percent: args.fail_percent,
    };
    let web = args.web.start(&args.password_template, faults).await?;
    let mut addrs: Vec<String> = running
        .local_addrs()
        .iter()
        .map(|(a, t)| format!("{t} {a}"))
        .collect();
    addrs.extend(
        web.iter()
            .flat_map(|w| w.local_addrs())
            .map(|a| format!("http {a}")),
    );
    outln!("phone listening on {}", addrs.join(", "));
    super::StopSignals::listen().recv().await;
    let stats = running.stats();
    running.shutdown().await;
    if let Some(web) = web {
        let s = web.stats();
        web.shutdown().await;
        outln!(
            "web stopped: {} requests, {} phones, {} executed, {} backgrounds, {} failed downloads, {} refused, {} screenshots, {} overlapping",
            s.requests, s.phones, s.executed, s.backgrounds, s.failed_fetches, s.refused, s.screenshots, s.overlapping
        );
    }
    outln!(
        "phone stopped: {} requests, {} challenged, {} delivered, {} forbidden, {} rejected, {} dropped",
        stats.requests, stats.challenged, stats.delivered, stats.forbidden, stats.rejected, stats.dropped
    );
    Ok(0)
}
