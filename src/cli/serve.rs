//! `sipnotify serve`: the provisioning server on the command line.

use super::profile::read_input;
use super::secret::{Given, IkmArgs, KeyArgs};
use super::{Failure, StopSignals};
use clap::Args;
use sipnotify::provision::serve::{self, BasicAuth, Encryption, ServeConfig};
use sipnotify::Password;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable the Basic password may come from.
const PASSWORD_ENV: &str = "SIPNOTIFY_SERVE_PASSWORD";

/// Options of `sipnotify serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
A request for cfg/NAME.EXT gets DIR/cfg/NAME.EXT, else DIR/cfg/default.EXT, else 404.
Paths that leave DIR (.., %2e%2e, hidden names, symbolic links leading out) get 404 and are
logged. One JSON line per request goes to --log: at, addr, path, mac (from the path, else the
User-Agent), file, status, bytes, encoding, note.

Examples:
  sipnotify serve ./profiles --listen 0.0.0.0:8099 --log fetch.log
  SIPNOTIFY_PROFILE_KEY=... sipnotify serve ./profiles --listen 0.0.0.0:8099 --key-file k
  sipnotify serve ./profiles --listen 0.0.0.0:8099 --ikm-file ikm --user prov --password-file pw
  sipnotify serve ./profiles --listen 0.0.0.0:8443 --tls-cert prov.pem --tls-key prov.key")]
pub struct ServeArgs {
    /// The directory of profiles.
    pub dir: PathBuf,
    /// Where to listen, ADDR:PORT (port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub ikm: IkmArgs,
    /// Require HTTP Basic credentials: this user (a rule's --uid) ...
    #[arg(long, value_name = "USER", requires = "password_file")]
    pub user: Option<String>,
    /// ... and the password in this file (a rule's --pwd), or SIPNOTIFY_SERVE_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Append one JSON line per request to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Store the configuration reports phones upload (POST or PUT, their Report_Rule) in
    /// this directory, at the request's path, as sent; logged like fetches (method POST,
    /// status 201), never counted as fetches.
    #[arg(long, value_name = "DIR")]
    pub reports: Option<PathBuf>,
    /// At most this many MiB more of reports while the server runs (each new file or
    /// directory counts 4 KiB more): past it an upload is answered 507 and not stored.
    #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "reports")]
    pub reports_quota: u64,
    #[command(flatten)]
    pub tls: TlsServerArgs,
}

/// `--tls-cert` and `--tls-key` of the servers (`serve`, `api`).
#[derive(Debug, Args)]
pub struct TlsServerArgs {
    /// Serve HTTPS with this certificate chain (PEM) ...
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// PEM files are small.
const MAX_PEM: usize = 1024 * 1024;

impl TlsServerArgs {
    /// The TLS server configuration, if the options are given.
    pub fn config(&self) -> Result<Option<std::sync::Arc<serve::TlsConfig>>, Failure> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf, what| read_input(&path.display().to_string(), MAX_PEM, what);
        let config = serve::tls_config(&read(cert, "certificate")?, &read(key, "TLS key")?)
            .map_err(|e| Failure::input(e.to_string()))?;
        Ok(Some(config))
    }

    /// `https` or `http`, for the line that says where the server listens.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Refuses any of `files` (by option; `-`, standard input, is none) that is inside `dir`,
/// the directory `served` names: any client of the server could fetch it.
pub fn refuse_served(
    dir: &Path,
    served: &str,
    files: &[(&str, Option<&Path>)],
) -> Result<(), Failure> {
    for &(option, file) in files {
        let Some(file) = file.filter(|file| *file != Path::new("-")) else {
            continue;
        };
        if sipnotify::paths::inside(file, dir) {
            return Err(Failure::input(format!(
                "{option} {} is inside {served}: anyone could fetch it; keep it elsewhere",
                file.display()
            )));
        }
    }
    Ok(())
}

impl ServeArgs {
    /// The server's configuration, checked.
    pub fn config(&self) -> Result<ServeConfig, Failure> {
        refuse_served(
            &self.dir,
            "the served directory",
            &[
                ("--key-file", self.key.key_file.as_deref()),
                ("--ikm-file", self.ikm.ikm_file.as_deref()),
                ("--password-file", self.password_file.as_deref()),
                ("--tls-key", self.tls.tls_key.as_deref()),
            ],
        )?;
        let encryption = match (self.key.key()?, self.ikm.ikm()?) {
            (Some(_), Some(_)) => {
                return Err(Failure::input(
                    "give a key (AES-256-CBC) or an IKM (aes128gcm), not both",
                ))
            }
            (Some(key), None) => Encryption::Cbc(key),
            (None, Some(ikm)) => Encryption::Rfc8188(ikm),
            (None, None) => Encryption::None,
        };
        let auth = match &self.user {
            Some(user) => {
                let given = Given {
                    file: self.password_file.as_deref(),
                    env: PASSWORD_ENV,
                    value: None,
                    flag: "password",
                };
                let password = given
                    .text()?
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| Failure::input("--user needs a password: --password-file"))?;
                Some(BasicAuth {
                    user: user.clone(),
                    password: Password::new(password),
                })
            }
            None => None,
        };
        Ok(ServeConfig {
            root: self.dir.clone(),
            encryption,
            auth,
            log: self.log.clone(),
            board: None,
            tls: self.tls.config()?,
            reports: self.reports.clone(),
            reports_quota: self.reports_quota.saturating_mul(1 << 20),
        })
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<u8, Failure> {
    let signals = StopSignals::listen();
    let server = serve::spawn(args.listen, args.config()?)
        .await
        .map_err(|e| match e {
            serve::ServeError::Bind(..) => Failure::local(e.to_string()),
            other => Failure::input(other.to_string()),
        })?;
    let scheme = args.tls.scheme();
    outln!(
        "serving {} on {scheme}://{}",
        args.dir.display(),
        server.local_addr()
    );
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    let mut signals = signals;
    signals.recv().await;
    server.shutdown().await;
    Ok(0)
}
