//! `sipnotify api`: the service mode on the command line, and its campaigns' parameters,
//! which are `batch`'s long options read by `batch`'s own parser: each `name=value` of the
//! query becomes `--name=value` (a flag `--name` for `true`), and the resulting command line
//! is parsed into [`BatchArgs`] and checked by [`sip_settings`], as `batch` checks its own.

use super::batch::{sip_settings, BatchArgs};
use super::confirm::ConfirmArgs;
use super::http::BatchWebArgs;
use super::send::read_secret;
use super::serve::TlsServerArgs;
use super::{Failure, StopSignals};
use clap::{Args, FromArgMatches};
use sipnotify::api::{self, ApiConfig, ApiError, BadQuery, CampaignSettings, Settings};
use sipnotify::secret::MAX_SECRET_FILE;
use sipnotify::text::printable;
use sipnotify::{NotifierConfig, Password};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `sipnotify api`.
#[derive(Debug, Args)]
#[command(after_help = "\
Routes (GET /v1/openapi.json describes them):
  POST   /v1/notify                      one NOTIFY; the answer is the JSON record
  POST   /v1/campaigns?event=reboot&...  a campaign of the rows in the body (text/csv or
                                         application/x-ndjson) or in ?input=PATH; the
                                         parameters are `sipnotify batch`'s long options
  GET    /v1/campaigns/ID                its state (running, done, stopped), counts, rate, ETA
  GET    /v1/campaigns/ID/records        its records as JSON Lines (?offset=N&follow=true)
  DELETE /v1/campaigns/ID                stop it as Ctrl-C stops a batch
  GET    /metrics                        Prometheus metrics
  GET    /healthz                        no token needed

Every route but /healthz needs `Authorization: Bearer TOKEN` when --token-file is given;
a non-loopback --listen needs it. Campaigns are journaled in --state-dir and resumed when
the service starts again; no phone acts twice.

Examples:
  sipnotify api --state-dir /var/lib/sipnotify
  sipnotify api --listen 0.0.0.0:8443 --state-dir /var/lib/sipnotify --token-file /etc/sipnotify/token \\
      --tls-cert api.pem --tls-key api.key

Exit codes: 0 stopped by Ctrl-C or SIGTERM, 2 bad options (a non-loopback address with no
token), 1 the address cannot be bound.")]
pub struct ApiArgs {
    /// Where to listen, ADDR:PORT (port 0 picks a free one). An address other than
    /// loopback needs --token-file.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8098")]
    pub listen: SocketAddr,
    /// The folder of the campaigns (their rows, journals and records), created if needed;
    /// those that had not ended are resumed at start.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Require `Authorization: Bearer TOKEN` on every route but /healthz, TOKEN being this
    /// file's text (a final newline is ignored).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsServerArgs,
}

/// The token in `path`: visible ASCII (it travels in a header), a final newline ignored.
fn read_token(path: &Path) -> Result<Password, Failure> {
    let token = Some(read_secret(path, MAX_SECRET_FILE, "token file")?)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Failure::input(format!(
                "the token file {} must hold one token of visible ASCII characters (no spaces), \
                 e.g. made by `openssl rand -hex 32`",
                path.display()
            ))
        })?;
    Ok(Password::new(token))
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn run(args: ApiArgs) -> Result<u8, Failure> {
    let signals = StopSignals::listen();
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let config = ApiConfig {
        state_dir: args.state_dir.clone(),
        token,
        tls: args.tls.config()?,
        settings: Arc::new(BatchQuery),
        notifier: NotifierConfig::default(),
    };
    let api = api::spawn(args.listen, config).await.map_err(|e| match e {
        ApiError::Bind(..) | ApiError::Notifier(_) => Failure::local(e.to_string()),
        ApiError::NoToken(_) | ApiError::StateDir(..) | ApiError::Busy(..) => {
            Failure::input(e.to_string())
        }
    })?;
    outln!(
        "api listening on {}://{} (state in {}; {} campaign(s) resumed)",
        args.tls.scheme(),
        api.local_addr(),
        args.state_dir.display(),
        api.resumed()
    );
    {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
    let mut signals = signals;
    signals.recv().await;
    errln!("stopping: running campaigns stop as on Ctrl-C, and resume at the next start");
    api.shutdown().await;
    Ok(0)
}

/// `batch`'s options the service sets itself or refuses in a URL, and why. The options of
/// the HTTP channel and of fetch confirmation are refused too ([`refused`]).
const REFUSED: [(&str, &str); 8] = [
    (
        "journal",
        "the service journals each campaign in its state directory",
    ),
    (
        "resend-unknown",
        "a campaign's targets started with no result are never sent again by the service",
    ),
    (
        "report",
        "the records are at /v1/campaigns/ID/records (JSON Lines)",
    ),
    (
        "report-html",
        "the records are at /v1/campaigns/ID/records (JSON Lines)",
    ),
    (
        "password",
        "a password in a URL ends up in logs: give password-file, or a password column in \
         the rows",
    ),
    (
        "key",
        "a key in a URL ends up in logs, and the service does not confirm fetches",
    ),
    (
        "ikm",
        "a key in a URL ends up in logs, and the service does not confirm fetches",
    ),
    ("channel", "the service runs SIP campaigns"),
];

/// Why the long option `long` is refused in a campaign's query, if it is: [`REFUSED`], then
/// every option of `batch --channel http` and of fetch confirmation, taken from their
/// clap groups so that a new one is refused too (the service runs SIP campaigns only).
fn refused(long: &str) -> Option<&'static str> {
    if let Some((_, why)) = REFUSED.iter().find(|(refused, _)| *refused == long) {
        return Some(why);
    }
    let named =
        |command: clap::Command| command.get_arguments().any(|a| a.get_long() == Some(long));
    if named(BatchWebArgs::augment_args(clap::Command::new("http"))) {
        return Some("an option of batch --channel http: the service runs SIP campaigns");
    }
    if named(ConfirmArgs::augment_args(clap::Command::new("confirm"))) {
        return Some("the service does not confirm fetches nor serve profiles");
    }
    None
}

/// A campaign's query, read as `sipnotify batch`'s options.
struct BatchQuery;

impl Settings for BatchQuery {
    fn campaign(&self, query: &[(String, String)]) -> Result<CampaignSettings, BadQuery> {
        let args = batch_args(query).map_err(BadQuery)?;
        let (defaults, options, notifier) = sip_settings(&args).map_err(|f| BadQuery(f.message))?;
        Ok(CampaignSettings {
            defaults,
            options,
            notifier,
        })
    }
}

/// `sipnotify batch - --NAME=VALUE...` parsed, from the query's pairs (`_` taken for `-`).
fn batch_args(query: &[(String, String)]) -> Result<BatchArgs, String> {
    let command = BatchArgs::augment_args(clap::Command::new("batch"));
    let mut argv = vec!["batch".to_string(), "-".to_string()];
    for (name, value) in query {
        let long = name.replace('_', "-");
        if let Some(why) = refused(&long) {
            return Err(format!("{long}: {why}"));
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            return Err(format!(
                "unknown parameter `{}`: the parameters are the long options of `sipnotify \
                 batch` (see `sipnotify batch --help`), and input",
                printable(&long.chars().take(64).collect::<String>(), false)
            ));
        };
        // The files a campaign reads (its password, CA, certificate): a FIFO or a device
        // would hold the service's one thread while it is opened or read.
        let names_a_file = arg.get_value_names().is_some_and(|v| v == ["FILE"]);
        if names_a_file && !std::fs::metadata(value).is_ok_and(|m| m.is_file()) {
            return Err(format!(
                "{long}: {} is not a regular file the service can read",
                printable(value, false)
            ));
        }
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else {
            match value.as_str() {
                "" | "true" | "1" => argv.push(format!("--{long}")),
                "false" | "0" => {}
                _ => return Err(format!("{long} is a flag: give true or false")),
            }
        }
    }
    let matches = command.try_get_matches_from(argv).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        format!(
            "{} (query parameters are named as the options, without --)",
            first.trim_start_matches("error: ")
        )
    })?;
    BatchArgs::from_arg_matches(&matches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_batch_options() {
        let args = batch_args(&query(&[
            ("event", "reboot"),
            ("rate", "500"),
            ("allow_duplicates", "true"),
            ("header", "X-A: 1"),
            ("header", "X-B: 2"),
            ("retries", "2"),
        ]))
        .unwrap();
        assert_eq!(args.event, "reboot");
        assert_eq!(args.rate, Some(500.0));
        assert!(args.allow_duplicates);
        assert_eq!(args.line.headers, ["X-A: 1", "X-B: 2"]);
        assert_eq!(args.retries, 2);
    }

    #[test]
    fn a_file_parameter_must_name_a_regular_file() {
        for value in ["/dev/null", "/nonexistent/pw"] {
            let message = batch_args(&query(&[("password-file", value)]))
                .err()
                .unwrap();
            assert!(message.contains("not a regular file"), "{value}: {message}");
        }
    }

    #[test]
    fn mistakes_name_the_parameter() {
        for (pairs, expected) in [
            (&[("rate", "fast")][..], "--rate"),
            (&[("colour", "red")][..], "unknown parameter `colour`"),
            (&[("journal", "/tmp/j")][..], "state directory"),
            (&[("password", "secret")][..], "ends up in logs"),
            (&[("allow-duplicates", "maybe")][..], "a flag"),
            (&[("output", "json")][..], "unknown parameter `output`"),
            (&[("resend-unknown", "true")][..], "never sent again"),
            (&[("key", "secret")][..], "ends up in logs"),
            (&[("ikm", "secret")][..], "ends up in logs"),
            (&[("key-file", "/k")][..], "does not confirm fetches"),
            (&[("ikm_file", "/k")][..], "does not confirm fetches"),
            (
                &[("serve-listen", "127.0.0.1:1")][..],
                "does not confirm fetches",
            ),
            (&[("fetch-log", "/f")][..], "does not confirm fetches"),
            (&[("max-fetch-rate", "5")][..], "does not confirm fetches"),
            (&[("action", "reboot")][..], "--channel http"),
            (&[("uri", "Key:Settings")][..], "--channel http"),
            (&[("priority", "0")][..], "--channel http"),
            (&[("screenshots", "/s")][..], "--channel http"),
        ] {
            let message = batch_args(&query(pairs)).err().unwrap();
            assert!(message.contains(expected), "{pairs:?}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn every_http_and_confirm_option_is_refused() {
        for group in [
            BatchWebArgs::augment_args(clap::Command::new("http")),
            ConfirmArgs::augment_args(clap::Command::new("confirm")),
        ] {
            for arg in group.get_arguments() {
                let long = arg.get_long().unwrap();
                assert!(refused(long).is_some(), "{long} is accepted");
            }
        }
        assert_eq!(refused("event"), None);
        assert_eq!(refused("password-file"), None);
    }
}
