//! The HTTP commands (Cisco CGI/Execute push, screenshots, device information), `batch
//! --channel http`, and the simulator's `--http` options. The work is the library's
//! [`sipnotify::http`].

use super::batch::{self, BatchArgs};
use super::drive::{drive, warn_if_descriptors_short, Shown};
use super::output::{CampaignOutput, Printer};
use super::secret::WebPasswordArgs;
use super::send::{parse_timeout, read_limited, SendArgs, TlsArgs};
use super::{Failure, Format};
use clap::{Args, Subcommand, ValueEnum};
use sipnotify::campaign::{Campaign, Input, Observer, Options, Record, Verdict};
use sipnotify::http::admin;
use sipnotify::http::object::{self, MAX_OBJECT_LIMIT};
use sipnotify::http::{
    Action, AuthMode, ContactSheet, PhoneAddr, Push, PushDefaults, Pusher, PusherConfig,
    Screenshots, WebCredentials,
};
use sipnotify::net::tls::Identity;
use sipnotify::paths::same_file;
use sipnotify::phone::{spawn_web_with_hook, ResyncHook, RunningWeb, WebAuth, WebConfig};
use sipnotify::text::printable;
use sipnotify::Password;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The HTTP commands.
#[derive(Debug, Subcommand)]
pub enum HttpCommand {
    /// Make a Cisco phone execute 1 to 3 URIs (POST /CGI/Execute with a CiscoIPPhoneExecute):
    /// Dial:1234, Key:Services, Init:Services, Play:ring.raw, Display:Off, http://...
    Execute {
        #[command(flatten)]
        web: WebArgs,
        /// The URIs (1 to 3).
        #[arg(value_name = "URI", required = true, num_args = 1..)]
        uris: Vec<String>,
        /// 0 now, 1 when idle, 2 only if idle.
        #[arg(long, default_value_t = 0)]
        priority: u8,
    },
    /// Set a Cisco phone's background (POST /CGI/Execute with a setBackground): the phone
    /// downloads the image and its thumbnail.
    Background {
        #[command(flatten)]
        web: WebArgs,
        /// The background image URL (a PNG of the phone's screen size).
        #[arg(long, value_name = "URL")]
        image: String,
        /// The thumbnail URL.
        #[arg(long, value_name = "URL")]
        icon: String,
    },
    /// Push any CiscoIPPhone object (POST /CGI/Execute), checked to be well-formed XML.
    Push {
        #[command(flatten)]
        web: WebArgs,
        /// The object: a file, or - for standard input.
        #[arg(long, value_name = "FILE|-")]
        xml: String,
    },
    /// Save a Cisco phone's screen (GET /CGI/Screenshot).
    Screenshot {
        #[command(flatten)]
        web: WebArgs,
        /// Where to write the image.
        #[arg(short = 'o', long = "out", value_name = "FILE.png")]
        out: PathBuf,
    },
    /// A Cisco phone's identity (GET /DeviceInformationX): MAC, host name, directory
    /// number, model, firmware, serial.
    Info {
        #[command(flatten)]
        web: WebArgs,
    },
    /// Upgrade an MPP phone's firmware (GET /admin/upgrade?URL, with its admin user).
    #[command(long_about = UPGRADE_HELP)]
    Upgrade {
        #[command(flatten)]
        web: WebArgs,
        /// The firmware load: tftp://, http:// or https://SERVER[:PORT]/PATH/NAME.loads.
        url: String,
    },
}

/// `upgrade --help`: the MPP provisioning guide's cautions.
const UPGRADE_HELP: &str = "\
Upgrade an MPP phone's firmware: GET /admin/upgrade?URL on its web server, with its admin \
user (--user, default admin) and password, as the MPP provisioning guide's browser command \
(the URL as the query, as is; never xuser/xpassword in it).

The phone answers at once and upgrades later. It upgrades only when idle: with a call up, \
the upgrade is attempted after the call ends. It disables audio when the upgrade starts and \
reboots when it ends: calls cannot be made meanwhile. Do not power the phone off or unplug \
it until it is back. A load already in the phone's inactive partition is activated without \
a download. Upgrade_Enable must be Yes (it also governs this command); a failed upgrade is \
retried after Upgrade_Error_Retry_Delay. Delivered means the phone took the request, not \
that the upgrade succeeded: check the phone's firmware version afterwards.";

/// The phone and how to talk to its web server.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// The phone's web server: HOST[:PORT] or http(s)://HOST[:PORT] (IPv6 in brackets;
    /// https:// checks the certificate as --ca, --tls-pin or --tls-insecure say).
    pub phone: String,
    #[command(flatten)]
    pub auth: WebAuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Give up after this many seconds (a request, connection included).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Print the request that would be sent (credentials masked), and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The web user, its password and the object limit: shared by the commands and `batch`.
#[derive(Debug, Args)]
pub struct WebAuthArgs {
    /// The web user (CUCM: an end user associated with the phone).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub password: WebPasswordArgs,
    /// auto: Basic pre-emptively on the CGI pages (classic phones), nothing before the
    /// challenge on the MPP /admin/ pages (and no Basic there over plain http); then
    /// whatever the phone's 401 asks. Or basic, digest (SPA/MPP), none.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub auth: AuthMode,
    /// Refuse objects over this many bytes (512 on classic phones; at most 65536).
    #[arg(long, value_name = "BYTES", default_value_t = object::DEFAULT_MAX_OBJECT)]
    pub max_object: usize,
}

impl WebAuthArgs {
    /// The web user (`user` when --user is not given) and its password, if one is given.
    fn credentials(&self, user: &str) -> Result<Option<WebCredentials>, Failure> {
        check_max_object(self.max_object)?;
        let password = self.password.given().password()?;
        Ok(password.map(|password| WebCredentials {
            user: self.user.clone().unwrap_or_else(|| user.to_string()),
            password,
        }))
    }
}

/// `--max-object` (the commands' and `batch`'s), checked against [`MAX_OBJECT_LIMIT`].
fn check_max_object(bytes: usize) -> Result<(), Failure> {
    if bytes > MAX_OBJECT_LIMIT {
        return Err(Failure::input(format!(
            "--max-object: at most {MAX_OBJECT_LIMIT}"
        )));
    }
    Ok(())
}

/// A profile or firmware URL for an MPP web action, checked.
fn admin_url(url: String) -> Result<Arc<str>, Failure> {
    admin::check_url(&url).map_err(input)?;
    Ok(Arc::from(url))
}

/// How `resync` and `reboot` reach the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// A SIP NOTIFY to the line.
    Sip,
    /// The MPP web interface: GET /admin/resync[?URL] or /admin/reboot.
    Http,
}

/// `resync --via http` and `reboot --via http`: the options of the web interface.
#[derive(Debug, Args)]
#[command(next_help_heading = "Web interface (--via http)")]
pub struct ViaArgs {
    /// sip: a NOTIFY to the line TARGET; http: the MPP web interface of the phone at
    /// TARGET, HOST[:PORT] or http(s)://HOST[:PORT], with its admin user, the password
    /// options, --timeout, --dry-run and the TLS options.
    #[arg(long, value_enum, default_value_t = Via::Sip)]
    pub via: Via,
    /// With --via http: the phone's admin user (default admin).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// With --via http: auto (nothing before the phone's 401, then Digest, or Basic over
    /// https only), basic, digest or none.
    #[arg(long, value_name = "MODE")]
    pub auth: Option<AuthMode>,
}

impl ViaArgs {
    /// Refuses the web interface's options with `--via sip`: ignored, they would let the
    /// user believe they applied.
    pub fn refuse_http_options(&self) -> Result<(), Failure> {
        let given = [
            ("--user", self.user.is_some()),
            ("--auth", self.auth.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(Failure::input(format!(
                "{name} is for --via http (the phone's web interface); a SIP line's digest \
                 user is --auth-user, its password the password options"
            ))),
            None => Ok(()),
        }
    }
}

/// `resync --via http` (with the profile `url`, else the phone's Profile_Rule) and
/// `reboot --via http`: one MPP web action, printed as every HTTP command.
pub async fn admin(
    action: Action,
    send: SendArgs,
    url: Option<String>,
    vendor: Option<&str>,
    via: ViaArgs,
    out: &Printer,
    format: Format,
) -> Result<u8, Failure> {
    let line = &send.line;
    let sip_only = vendor.map(|_| "--vendor").or_else(|| line.sip_only_given());
    if let Some(name) = sip_only {
        return Err(Failure::input(format!(
            "{name} is for SIP NOTIFY, not --via http: the web interface takes --user, --auth, \
             the password options, --timeout and the TLS options (see `sipnotify {} --help`)",
            action.name()
        )));
    }
    let url = url.map(admin_url).transpose()?;
    let password = line.password.given().password()?;
    let push = Push {
        phone: phone(&send.target)?,
        action,
        object: None,
        url,
        credentials: password.map(|password| WebCredentials {
            user: via.user.unwrap_or_else(|| admin::DEFAULT_USER.to_string()),
            password,
        }),
        auth: via.auth.unwrap_or_default(),
        trace: out.wants_ladder(),
    };
    one(
        push,
        &line.tls,
        line.timeout,
        send.dry_run,
        None,
        out,
        format,
    )
    .await
}

/// Runs one HTTP command; the exit code.
pub async fn run(command: HttpCommand, out: &Printer, format: Format) -> Result<u8, Failure> {
    let (web, action, object, save) = match command {
        HttpCommand::Execute {
            web,
            uris,
            priority,
        } => {
            let xml = object::execute(&uris, priority).map_err(input)?;
            (web, Action::Execute, Some(xml), None)
        }
        HttpCommand::Background { web, image, icon } => {
            let xml = object::background(&image, &icon).map_err(input)?;
            (web, Action::Background, Some(xml), None)
        }
        HttpCommand::Push { web, xml } => (web, Action::Push, Some(read_object(&xml)?), None),
        HttpCommand::Screenshot { web, out } => (web, Action::Screenshot, None, Some(out)),
        HttpCommand::Info { web } => (web, Action::Info, None, None),
        HttpCommand::Upgrade { web, url } => {
            let url = admin_url(url)?;
            let credentials = web.auth.credentials(admin::DEFAULT_USER)?;
            let push = Push {
                phone: phone(&web.phone)?,
                action: Action::Upgrade,
                object: None,
                url: Some(url),
                credentials,
                auth: web.auth.auth,
                trace: out.wants_ladder(),
            };
            return one(push, &web.tls, web.timeout, web.dry_run, None, out, format).await;
        }
    };
    if let Some(xml) = &object {
        object::check_size(xml, web.auth.max_object).map_err(input)?;
    }
    let phone = phone(&web.phone)?;
    let push = Push {
        phone,
        action,
        object: object.map(Arc::from),
        url: None,
        credentials: web.auth.credentials("")?,
        auth: web.auth.auth,
        trace: out.wants_ladder(),
    };
    one(push, &web.tls, web.timeout, web.dry_run, save, out, format).await
}

/// Sends one request to one phone (or shows it, with `dry_run`), prints the outcome and
/// returns the exit code: where every one-phone HTTP command ends. A screenshot is written
/// to `save`.
pub async fn one(
    push: Push,
    tls: &TlsArgs,
    timeout: Option<f64>,
    dry_run: bool,
    save: Option<PathBuf>,
    out: &Printer,
    format: Format,
) -> Result<u8, Failure> {
    let timeout = parse_timeout(timeout)?.unwrap_or(PusherConfig::default().timeout);
    let tls = tls.client()?;
    if dry_run {
        out.dry_run(&Pusher::preview(&push));
        return Ok(0);
    }
    let pusher = Pusher::new(PusherConfig {
        timeout,
        screenshots: None,
        tls,
    });
    let delivery = pusher.exchange(&push).await;
    if let (Some(path), Some(image)) = (save, &delivery.image) {
        std::fs::write(&path, image)
            .map_err(|e| Failure::local(format!("cannot write {}: {e}", path.display())))?;
    }
    out.outcome(
        push.phone.as_str(),
        push.action.name(),
        None,
        &delivery.outcome,
    );
    if format == Format::Human {
        if let Some(device) = delivery
            .outcome
            .details
            .as_deref()
            .and_then(|d| d.get("device"))
        {
            outln!("  {device}");
        }
    }
    Ok(delivery.outcome.kind.exit_code())
}

fn input(e: impl std::fmt::Display) -> Failure {
    Failure::input(e.to_string())
}

/// Reads a phone address.
fn phone(text: &str) -> Result<PhoneAddr, Failure> {
    PhoneAddr::parse(text).map_err(input)
}

/// The object of `push --xml FILE|-`: bounded, UTF-8, well-formed.
fn read_object(source: &str) -> Result<String, Failure> {
    use std::io::Read;
    let bytes = if source == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_OBJECT_LIMIT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::input(format!("cannot read the object: {e}")))?;
        if bytes.len() > MAX_OBJECT_LIMIT {
            return Err(Failure::input(format!(
                "the object is over {MAX_OBJECT_LIMIT} bytes"
            )));
        }
        bytes
    } else {
        read_limited(Path::new(source), MAX_OBJECT_LIMIT, "object file")?
    };
    let text = String::from_utf8(bytes).map_err(|_| Failure::input("the object is not UTF-8"))?;
    object::checked(text.trim_end()).map_err(input)
}

/// `batch --channel http`'s options.
#[derive(Debug, Args)]
#[command(next_help_heading = "HTTP channel (--channel http)")]
pub struct BatchWebArgs {
    /// What to do to each phone whose row has no `action`: execute, background, push,
    /// screenshot, info, or the MPP web actions resync, upgrade (with --url or a `url`
    /// column: the firmware load) and reboot.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// The background image URL for rows with no `image`.
    #[arg(long, value_name = "URL")]
    pub image: Option<String>,
    /// The background thumbnail URL for rows with no `icon`.
    #[arg(long, value_name = "URL")]
    pub icon: Option<String>,
    /// An Execute URI for rows with no `uri` (repeatable, at most 3).
    #[arg(long = "uri", value_name = "URI")]
    pub uris: Vec<String>,
    /// The Execute items' priority.
    #[arg(long, default_value_t = 0)]
    pub priority: u8,
    /// The object of `push`, for every row.
    #[arg(long, value_name = "FILE")]
    pub xml: Option<String>,
    /// The web user for rows with no `user`.
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,
    /// auto, basic, digest or none.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub auth: AuthMode,
    /// Refuse objects over this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = object::DEFAULT_MAX_OBJECT)]
    pub max_object: usize,
    /// Save each phone's screenshot after its push in DIR, and a contact sheet DIR/report.html.
    #[arg(long, value_name = "DIR")]
    pub screenshots: Option<PathBuf>,
    /// Seconds to let each phone act before its screenshot.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub settle: f64,
    /// With --action info: write an inventory CSV (target, id, outcome, mac, host_name, dn,
    /// model, firmware, serial), one row per phone.
    #[arg(long, value_name = "FILE.csv")]
    pub inventory: Option<PathBuf>,
    /// The options above given on the command line (`--action`, ...), set by
    /// [`BatchWebArgs::note_given`]: --channel sip refuses them.
    #[arg(skip)]
    pub given: Vec<String>,
}

impl BatchWebArgs {
    /// Notes which of these options `matches` (batch's) got from the command line; the
    /// options are this group's own, so that a new one is noted too.
    pub fn note_given(&mut self, matches: &clap::ArgMatches) {
        let group = BatchWebArgs::augment_args(clap::Command::new("http"));
        self.given = group
            .get_arguments()
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str())
                    == Some(clap::parser::ValueSource::CommandLine)
            })
            .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
            .collect();
    }

    /// Refuses the options given (see [`BatchWebArgs::note_given`]) to a SIP campaign,
    /// which would ignore them.
    pub fn refuse_for_sip(&self) -> Result<(), Failure> {
        match self.given.first() {
            Some(name) => Err(Failure::input(format!(
                "{name} is for --channel http, and the campaign is SIP NOTIFY (--channel sip, \
                 the default): give --channel http, or leave {name} out"
            ))),
            None => Ok(()),
        }
    }
}

/// Phones' web servers serve few connections: a modest default.
pub const HTTP_CONCURRENCY: usize = 32;

/// `batch --channel http`.
pub async fn batch(args: BatchArgs, output: Format, verbose: u8) -> Result<u8, Failure> {
    refuse_sip_options(&args)?;
    let web = &args.http;
    let action_name = web.action.as_deref().ok_or_else(|| {
        Failure::input(format!(
            "--channel http needs --action: {}",
            Action::names()
        ))
    })?;
    let action = Action::named(action_name).ok_or_else(|| {
        Failure::input(format!(
            "--action `{}`: one of {}",
            printable(action_name, false),
            Action::names()
        ))
    })?;
    check_max_object(web.max_object)?;
    let mut defaults = PushDefaults::new(action);
    defaults.image = web.image.clone();
    defaults.icon = web.icon.clone();
    defaults.uris = web.uris.clone();
    defaults.priority = web.priority;
    defaults.xml = web.xml.as_deref().map(read_object).transpose()?;
    defaults.user = web.user.clone();
    defaults.password = args.line.password.given().password()?;
    defaults.auth = web.auth;
    defaults.max_object = web.max_object;
    defaults.url = args.url.clone();
    defaults.check().map_err(input)?;
    if !(0.0..=3600.0).contains(&web.settle) {
        return Err(Failure::input("--settle: 0 to 3600 seconds"));
    }
    let settle = Duration::from_secs_f64(web.settle);
    let screenshots = match &web.screenshots {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::input(format!("--screenshots {}: {e}", dir.display())))?;
            Some(Screenshots {
                dir: dir.clone(),
                settle,
            })
        }
        None => None,
    };
    let timeout = parse_timeout(args.line.timeout)?.unwrap_or(PusherConfig::default().timeout);
    let tls = args.line.tls.client()?;
    let mut options = batch::options(&args, HTTP_CONCURRENCY)?;
    let concurrency = options.concurrency;
    options.description = defaults.describe();
    let input_name = options.input.clone();
    check_own_files(&options, web)?;
    let campaign = Campaign::open(options, move |row| defaults.push(row))
        .map_err(|e| Failure::input(e.to_string()))?;
    let sheet = match &screenshots {
        Some(shots) => Some(ContactSheet::create(&shots.dir).map_err(|e| {
            Failure::local(format!(
                "cannot write {}/report.html: {e}",
                shots.dir.display()
            ))
        })?),
        None => None,
    };
    let inventory = match &web.inventory {
        Some(path) => {
            let mut csv = csv::Writer::from_path(path)
                .map_err(|e| Failure::input(format!("--inventory {}: {e}", path.display())))?;
            let _ = csv.write_record(INVENTORY_HEADER);
            Some(csv)
        }
        None => None,
    };
    let pusher = Pusher::new(PusherConfig {
        timeout,
        screenshots,
        tls,
    });
    let shown = Shown {
        output,
        verbose,
        input: input_name,
        title: format!(
            "sipnotify batch {} --channel http --action {action_name}",
            args.input
        ),
        report_html: args.report_html.clone(),
    };
    warn_if_descriptors_short(concurrency);
    let sheeted = |printed| Sheeted {
        printed,
        sheet,
        inventory,
    };
    drive(campaign, pusher, shown, sheeted, String::new).await
}

/// Refuses `--inventory` or the contact sheet (`--screenshots DIR`/report.html) naming a
/// file the campaign reads or writes: opened for writing, it would destroy that file.
fn check_own_files(options: &Options, web: &BatchWebArgs) -> Result<(), Failure> {
    let input = match &options.input {
        Input::Path(path) => Some(path.clone()),
        Input::Stdin => None,
    };
    let sheet = web.screenshots.as_ref().map(|dir| dir.join("report.html"));
    let named = [
        ("--inventory", web.inventory.clone()),
        ("--screenshots", sheet),
        ("the input", input),
        ("--journal", options.journal.clone()),
        ("--report", options.report.clone()),
        ("--report-html", options.report_html.clone()),
    ];
    for (i, (ours, a)) in named.iter().enumerate().take(2) {
        for (theirs, b) in &named[i + 1..] {
            let (Some(a), Some(b)) = (a, b) else { continue };
            if same_file(a, b) {
                return Err(Failure::input(format!(
                    "{ours} and {theirs} name the same file ({}): name two files",
                    b.display()
                )));
            }
        }
    }
    Ok(())
}

/// Refuses the options of `batch` that only SIP uses: given with `--channel http` they
/// would be ignored, and the user would believe they applied.
fn refuse_sip_options(args: &BatchArgs) -> Result<(), Failure> {
    let given = [
        ("--profile", args.profile.is_some()),
        ("--body", args.body.is_some()),
        ("--content-type", args.content_type.is_some()),
        ("--vendor", args.vendor.is_some()),
        ("--confirm-fetch", args.confirm.confirm_fetch.is_some()),
        ("--event", args.event != "resync"),
    ];
    let name = given
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
        .or_else(|| args.line.sip_only_given());
    match name {
        Some(name) => Err(Failure::input(format!(
            "{name} is for SIP NOTIFY, not --channel http: use --action, --image, --icon, \
             --uri, --xml, --url and --user (see `sipnotify batch --help`)"
        ))),
        None => Ok(()),
    }
}

/// The columns of `--inventory`.
const INVENTORY_HEADER: [&str; 9] = [
    "target",
    "id",
    "outcome",
    "mac",
    "host_name",
    "dn",
    "model",
    "firmware",
    "serial",
];

/// The campaign's output, the contact sheet and the inventory.
struct Sheeted {
    printed: CampaignOutput,
    sheet: Option<ContactSheet>,
    inventory: Option<csv::Writer<std::fs::File>>,
}

impl Observer for Sheeted {
    fn record(&mut self, record: &Record) {
        self.printed.record(record);
        if let Some(sheet) = &mut self.sheet {
            if let Err(e) = sheet.add(record) {
                errln!("error: cannot write the contact sheet: {e}");
                self.sheet = None;
            }
        }
        if let Some(csv) = &mut self.inventory {
            if let Err(e) = csv.write_record(inventory_row(record)) {
                errln!("error: cannot write the inventory: {e}");
                self.inventory = None;
            }
        }
    }

    fn caught_up(&mut self) {
        self.printed.caught_up();
        if let Some(csv) = &mut self.inventory {
            let _ = csv.flush();
        }
    }
}

/// A phone's inventory row: its device information when it answered with some.
fn inventory_row(record: &Record) -> [String; 9] {
    let device = match &record.verdict {
        Verdict::Sent { outcome, .. } => outcome.details.as_deref().and_then(|d| d.get("device")),
        _ => None,
    };
    let field = |name: &str| {
        device
            .and_then(|d| d.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    [
        record.target.clone(),
        record.id.clone().unwrap_or_default(),
        record.verdict.label().to_string(),
        field("mac"),
        field("host_name"),
        field("dn"),
        field("model"),
        field("firmware"),
        field("serial"),
    ]
}

// The campaign's output ends by dropping its observer: the sheet and the inventory are
// completed then.
impl Drop for Sheeted {
    fn drop(&mut self) {
        if let Some(sheet) = self.sheet.take() {
            if let Err(e) = sheet.finish() {
                errln!("error: cannot write the contact sheet: {e}");
            }
        }
        if let Some(mut csv) = self.inventory.take() {
            if let Err(e) = csv.flush() {
                errln!("error: cannot write the inventory: {e}");
            }
        }
    }
}

/// The simulator's web server options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Web server (Cisco CGI/Execute)")]
pub struct PhoneWebArgs {
    /// Also serve a Cisco phone's web server here (repeatable; port 0 picks a free one). On
    /// a wildcard address (0.0.0.0:80) each local address reached is a phone of its own.
    #[arg(long = "http", value_name = "ADDR:PORT")]
    pub http: Vec<SocketAddr>,
    /// Serve HTTPS instead of HTTP on the --http addresses, presenting --tls-cert and
    /// --tls-key, or a self-signed certificate made at start (its SHA-256 printed, for
    /// --tls-pin).
    #[arg(long, requires = "http")]
    pub http_tls: bool,
    /// basic (CUCM phones), digest (SPA/MPP Local Credential) or none (Trusted).
    #[arg(long, value_name = "MODE", default_value = "basic")]
    pub http_auth: WebAuth,
    /// The web user; its password is --password-template with {user} replaced.
    #[arg(long, value_name = "NAME", default_value = "admin")]
    pub http_user: String,
    /// With basic: answer a wrong password with 401 (newer firmware) instead of
    /// CiscoIPPhoneError 4.
    #[arg(long)]
    pub http_reject_401: bool,
    /// The largest object taken, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = object::DEFAULT_MAX_OBJECT)]
    pub http_max_object: usize,
}

/// The simulator's faults, shared with its SIP side.
pub struct Faults {
    /// `--delay`.
    pub delay: Duration,
    /// `--drop`.
    pub drop_percent: f64,
    /// `--fail-percent`.
    pub fail_percent: f64,
}

impl PhoneWebArgs {
    /// Starts the web server when `--http` is given, over HTTPS with `tls`, its
    /// `/admin/resync` calling `resync`.
    pub async fn start(
        &self,
        password_template: &str,
        faults: Faults,
        tls: Option<Identity>,
        resync: Option<ResyncHook>,
    ) -> Result<Option<RunningWeb>, Failure> {
        if self.http.is_empty() {
            return Ok(None);
        }
        let config = WebConfig {
            auth: self.http_auth,
            reject_with_401: self.http_reject_401,
            user: self.http_user.clone(),
            password: Password::new(password_template.replace("{user}", &self.http_user)),
            max_object: self.http_max_object,
            delay: faults.delay,
            drop_percent: faults.drop_percent,
            fail_percent: faults.fail_percent,
            tls,
            ..WebConfig::default()
        };
        spawn_web_with_hook(config, &self.http, resync)
            .await
            .map(Some)
            .map_err(|e| Failure::local(format!("cannot listen (--http): {e}")))
    }
}
