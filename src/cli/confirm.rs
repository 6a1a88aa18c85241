//! `sipnotify batch --confirm-fetch`: the options, and the confirming channel around the
//! SIP notifier (the provisioning server in this process, or an external server's log).

use super::secret::{IkmArgs, KeyArgs};
use super::{parse_duration, Failure};
use clap::Args;
use sipnotify::campaign::{BadRow, Row};
use sipnotify::paths::same_file;
use sipnotify::provision::confirm::{follow_log, Confirming, FetchPace, Watched};
use sipnotify::provision::fetch::FetchBoard;
use sipnotify::provision::rule::Mac;
use sipnotify::provision::serve::{self, Encryption, RunningServer, ServeConfig};
use sipnotify::Notify;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `batch` for fetch confirmation.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// After a resync is delivered, wait up to this long (e.g. 15, 90s, 5m) for the phone's
    /// profile fetch: the target ends confirmed (2xx), fetch_failed (4xx/5xx) or
    /// not_fetched. Fetches are matched by the row's `mac` column, else the target's IP
    /// address. Needs --serve or --fetch-log.
    #[arg(long, value_name = "DURATION")]
    pub confirm_fetch: Option<String>,
    /// Serve this directory in this process (as `sipnotify serve`) and watch its fetches.
    #[arg(
        long,
        value_name = "DIR",
        requires = "confirm_fetch",
        conflicts_with = "fetch_log"
    )]
    pub serve: Option<PathBuf>,
    /// Where --serve listens.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8099")]
    pub serve_listen: SocketAddr,
    /// --serve's JSON log of every request.
    #[arg(long, value_name = "FILE", requires = "serve")]
    pub serve_log: Option<PathBuf>,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub ikm: IkmArgs,
    /// Watch the log of an external server from its current end: JSON lines with at least
    /// addr, path and status (as `sipnotify serve --log` writes), or Apache/nginx common or
    /// combined log format.
    #[arg(long, value_name = "FILE", requires = "confirm_fetch")]
    pub fetch_log: Option<PathBuf>,
    /// Count only fetches whose path starts with this (e.g. /ok/ for a last Profile_Rule
    /// that a phone fetches only once its profile applied).
    #[arg(long, value_name = "PREFIX", requires = "confirm_fetch")]
    pub confirm_path: Option<String>,
    /// Pace the NOTIFYs so that at most this many fetches per second reach the server,
    /// by the fetches observed (closed loop).
    #[arg(long, value_name = "PER_SEC", requires = "confirm_fetch")]
    pub max_fetch_rate: Option<f64>,
}

/// Fetch confirmation, ready to wrap the notifier.
pub struct Confirm {
    board: std::sync::Arc<FetchBoard>,
    within: Duration,
    prefix: Option<String>,
    rate: Option<f64>,
    /// The server in this process, kept running for the campaign.
    pub server: Option<RunningServer>,
    /// The task following an external log.
    pub follower: Option<tokio::task::JoinHandle<()>>,
}

impl ConfirmArgs {
    /// Checks the options (nothing is started yet): `None` without --confirm-fetch.
    /// `files` are the campaign's other files, by option (its input, secrets, journal,
    /// reports): none may be inside the directory served, where any client could fetch it,
    /// nor be the log of the fetches.
    pub fn check(&self, files: &[(&str, Option<&Path>)]) -> Result<Option<Duration>, Failure> {
        let Some(text) = &self.confirm_fetch else {
            let serving = [
                self.serve.is_some(),
                self.key.key.is_some() || self.key.key_file.is_some(),
                self.ikm.ikm.is_some() || self.ikm.ikm_file.is_some(),
            ];
            if serving.contains(&true) {
                return Err(Failure::input(
                    "--serve, --key and --ikm go with --confirm-fetch",
                ));
            }
            return Ok(None);
        };
        let within =
            parse_duration(text).map_err(|e| Failure::input(format!("--confirm-fetch: {e}")))?;
        if self.serve.is_none() && self.fetch_log.is_none() {
            return Err(Failure::input(
                "--confirm-fetch needs --serve DIR or --fetch-log FILE to see the fetches",
            ));
        }
        if let Some(dir) = &self.serve {
            let own = [
                ("--serve-log", self.serve_log.as_deref()),
                ("--key-file", self.key.key_file.as_deref()),
                ("--ikm-file", self.ikm.ikm_file.as_deref()),
            ];
            let served = format!("--serve {}", dir.display());
            super::serve::refuse_served(dir, &served, &[files, &own].concat())?;
        }
        let logs = [
            ("--serve-log", self.serve_log.as_deref()),
            ("--fetch-log", self.fetch_log.as_deref()),
        ];
        for (option, log) in logs {
            let Some(log) = log else { continue };
            let same = files
                .iter()
                .find(|(_, f)| f.is_some_and(|f| same_file(log, f)));
            if let Some((other, _)) = same {
                return Err(Failure::input(format!(
                    "{option} {} is the same file as {other}: the log and the campaign's files must be different files",
                    log.display()
                )));
            }
        }
        if let Some(rate) = self.max_fetch_rate {
            if !(0.001..=1_000_000.0).contains(&rate) {
                return Err(Failure::input(
                    "--max-fetch-rate must be between 0.001 and 1000000",
                ));
            }
        }
        Ok(Some(within))
    }

    /// Starts the server or the log follower.
    pub async fn start(&self, within: Duration) -> Result<Confirm, Failure> {
        let board = FetchBoard::new();
        let mut confirm = Confirm {
            board: board.clone(),
            within,
            prefix: self.confirm_path.clone(),
            rate: self.max_fetch_rate,
            server: None,
            follower: None,
        };
        if let Some(dir) = &self.serve {
            let encryption = match (self.key.key()?, self.ikm.ikm()?) {
                (Some(_), Some(_)) => return Err(Failure::input("give --key or --ikm, not both")),
                (Some(key), None) => Encryption::Cbc(key),
                (None, Some(ikm)) => Encryption::Rfc8188(ikm),
                (None, None) => Encryption::None,
            };
            let config = ServeConfig {
                root: dir.clone(),
                encryption,
                auth: None,
                log: self.serve_log.clone(),
                board: Some(board),
                tls: None,
                reports: None,
                reports_quota: 0,
            };
            let server = serve::spawn(self.serve_listen, config)
                .await
                .map_err(|e| Failure::input(e.to_string()))?;
            errln!(
                "serving {} on http://{}",
                dir.display(),
                server.local_addr()
            );
            confirm.server = Some(server);
        } else if let Some(path) = &self.fetch_log {
            let follow = follow_log(path.clone(), board)
                .map_err(|e| Failure::input(format!("--fetch-log {}: {e}", path.display())))?;
            confirm.follower = Some(tokio::spawn(follow));
        }
        Ok(confirm)
    }
}

impl Confirm {
    /// The confirming channel around `inner`.
    pub fn channel<C>(&self, inner: C) -> Confirming<C> {
        Confirming::new(
            inner,
            self.board.clone(),
            self.within,
            self.prefix.clone(),
            self.rate.map(FetchPace::new),
        )
    }

    /// Stops the server or the follower.
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
        if let Some(follower) = self.follower {
            follower.abort();
        }
    }
}

/// A row's NOTIFY with how its fetch is recognised: its `mac` cell, else its target's IP.
pub fn watched(notify: Notify, row: &Row) -> Result<Watched<Notify>, BadRow> {
    let mac = row
        .mac
        .as_deref()
        .map(|m| Mac::parse(m).map_err(|e| BadRow(format!("mac: {e}"))))
        .transpose()?;
    let addr = notify.target.host().ip();
    Watched::new(notify, mac, addr).ok_or_else(|| {
        BadRow("--confirm-fetch needs a mac column or a target with an IP address".into())
    })
}
