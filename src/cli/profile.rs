//! `sipnotify profile ...`: prepare and inspect MPP profiles (encrypt and decrypt as
//! `openssl enc -aes-256-cbc -k`, RFC 8188 encode and decode, check, expand a rule).

use super::secret::{IkmArgs, KeyArgs};
use super::{Failure, Format};
use clap::{Args, Subcommand, ValueEnum};
use sipnotify::phone::NotifyHook;
use sipnotify::provision::profile::{self, Md};
use sipnotify::provision::resync::{self, Resyncer};
use sipnotify::provision::rfc8188;
use sipnotify::provision::rule::{Mac, Macros, Rule, Url};
use sipnotify::provision::{check, Ikm, Key, MAX_PROFILE};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// `sipnotify profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Encrypt as `openssl enc -e -aes-256-cbc -k KEY` does (what the phone's `--key`
    /// decrypts).
    Encrypt {
        #[command(flatten)]
        key: KeyArgs,
        /// The key derivation digest: sha256 (openssl 1.1.0 and later, the firmware's) or
        /// md5 (older openssl).
        #[arg(long, value_enum, default_value = "sha256")]
        md: MdArg,
        /// Compress with gzip first (compression must precede encryption).
        #[arg(long)]
        gzip: bool,
        /// The profile, or - for standard input.
        #[arg(value_name = "IN")]
        src: String,
        /// Where to write, or - for standard output.
        #[arg(value_name = "OUT")]
        dest: String,
    },
    /// Decrypt what `openssl enc -aes-256-cbc -k KEY` (or `encrypt`) wrote; a gzip result
    /// stays gzip.
    Decrypt {
        #[command(flatten)]
        key: KeyArgs,
        /// The key derivation digest the file was made with.
        #[arg(long, value_enum, default_value = "sha256")]
        md: MdArg,
        /// The encrypted file, or -.
        #[arg(value_name = "IN")]
        src: String,
        /// Where to write, or -.
        #[arg(value_name = "OUT")]
        dest: String,
    },
    /// Encode with RFC 8188 aes128gcm (served with Content-Encoding: aes128gcm).
    Encode {
        #[command(flatten)]
        ikm: IkmArgs,
        /// Record size in bytes (18 to 2^32-1).
        #[arg(long, value_name = "N", default_value_t = rfc8188::DEFAULT_RECORD_SIZE)]
        record_size: u32,
        /// The key id written in the header (up to 255 bytes).
        #[arg(long, value_name = "ID", default_value = "")]
        key_id: String,
        /// The content, or -.
        #[arg(value_name = "IN")]
        src: String,
        /// Where to write, or -.
        #[arg(value_name = "OUT")]
        dest: String,
    },
    /// Decode an RFC 8188 aes128gcm body.
    Decode {
        #[command(flatten)]
        ikm: IkmArgs,
        /// The encoded body, or -.
        #[arg(value_name = "IN")]
        src: String,
        /// Where to write, or -.
        #[arg(value_name = "OUT")]
        dest: String,
    },
    /// Check profile XML (gzip is read too): UTF-8, well-formed, a <flat-profile> root,
    /// duplicate or unknown-looking parameters, ua values, macros, rules. Exit 2 on errors.
    Check {
        /// The profiles, or - for standard input.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print the URL and options a phone would use for a Profile_Rule (macros, $$,
    /// conditions, alternatives).
    Expand {
        /// The rule, e.g. '[--key $SC] http://prov.example.com/cfg/$MA.xml'.
        rule: String,
        /// The phone's MAC address ($MA, $MAU, $MAC).
        #[arg(long, value_name = "MAC")]
        mac: String,
        /// The serial number ($SN).
        #[arg(long, value_name = "SN")]
        sn: Option<String>,
        /// Any other macro: A..P, SA..SD, PN, PSN, SWVER, PRVTMR, CCERT, ... (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
}

/// `--md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MdArg {
    /// SHA-256: openssl 1.1.0 and later.
    Sha256,
    /// MD5: openssl before 1.1.0.
    Md5,
}

impl From<MdArg> for Md {
    fn from(md: MdArg) -> Md {
        match md {
            MdArg::Sha256 => Md::Sha256,
            MdArg::Md5 => Md::Md5,
        }
    }
}

impl KeyArgs {
    /// The key, if one was given.
    pub fn key(&self) -> Result<Option<Key>, Failure> {
        match self.given().text()? {
            Some(k) if k.is_empty() => Err(Failure::input("the key is empty")),
            other => Ok(other.map(Key::new)),
        }
    }

    fn required(&self) -> Result<Key, Failure> {
        self.key()?.ok_or_else(|| {
            Failure::input(format!(
                "no key: give --key-file FILE, {}, or --key",
                Self::ENV
            ))
        })
    }
}

impl IkmArgs {
    /// The IKM, if one was given.
    pub fn ikm(&self) -> Result<Option<Ikm>, Failure> {
        self.given()
            .text()?
            .map(|text| Ikm::from_base64url(&text).map_err(|e| Failure::input(e.to_string())))
            .transpose()
    }

    fn required(&self) -> Result<Ikm, Failure> {
        self.ikm()?.ok_or_else(|| {
            Failure::input(format!(
                "no IKM: give --ikm-file FILE, {}, or --ikm",
                Self::ENV
            ))
        })
    }
}

/// Reads a file, or standard input for `-`, refusing more than `limit` bytes.
pub fn read_input(name: &str, limit: usize, what: &str) -> Result<Vec<u8>, Failure> {
    let fail = |e: std::io::Error| Failure::input(format!("cannot read the {what} {name}: {e}"));
    let reader: Box<dyn Read> = if name == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(name).map_err(fail)?)
    };
    let mut bytes = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() > limit {
        return Err(Failure::input(format!(
            "the {what} {name} is over {limit} bytes"
        )));
    }
    Ok(bytes)
}

/// Writes the result to a file (created readable by its owner only: it may be a
/// decrypted profile) or to standard output for `-`.
fn write_output(name: &str, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::local(format!("cannot write {name}: {e}"));
    if name == "-" {
        let mut out = std::io::stdout();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(fail);
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(name)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(fail)
}

/// Runs a `profile` command and returns the exit code.
pub fn run(command: ProfileCommand, format: Format) -> Result<u8, Failure> {
    let wrong = |name: &str, e: &dyn std::fmt::Display| Failure::input(format!("{name}: {e}"));
    match command {
        ProfileCommand::Encrypt {
            key,
            md,
            gzip,
            src,
            dest,
        } => {
            let key = key.required()?;
            let mut plain = read_input(&src, MAX_PROFILE, "profile")?;
            if gzip {
                plain = profile::gzip(&plain);
            }
            write_output(
                &dest,
                &profile::encrypt(&plain, &key, md.into(), rand::random()),
            )?;
        }
        ProfileCommand::Decrypt { key, md, src, dest } => {
            let key = key.required()?;
            let sealed = read_input(&src, MAX_PROFILE, "file")?;
            let plain = profile::decrypt(&sealed, &key, md.into()).map_err(|e| wrong(&src, &e))?;
            write_output(&dest, &plain)?;
        }
        ProfileCommand::Encode {
            ikm,
            record_size,
            key_id,
            src,
            dest,
        } => {
            let ikm = ikm.required()?;
            let plain = read_input(&src, MAX_PROFILE, "file")?;
            let body =
                rfc8188::encode(&plain, &ikm, rand::random(), record_size, key_id.as_bytes())
                    .map_err(|e| Failure::input(e.to_string()))?;
            write_output(&dest, &body)?;
        }
        ProfileCommand::Decode { ikm, src, dest } => {
            let ikm = ikm.required()?;
            let body = read_input(&src, MAX_PROFILE, "file")?;
            let decoded = rfc8188::decode(&body, &ikm).map_err(|e| wrong(&src, &e))?;
            write_output(&dest, &decoded.plain)?;
        }
        ProfileCommand::Check { files } => return check_files(&files, format),
        ProfileCommand::Expand {
            rule,
            mac,
            sn,
            vars,
        } => return expand(&rule, &mac, sn, &vars, format),
    }
    Ok(0)
}

/// Prints each finding as `FILE:LINE: error|warning: message`; 2 when any file has an error.
fn check_files(files: &[String], format: Format) -> Result<u8, Failure> {
    let mut code = 0;
    for name in files {
        let mut bytes = read_input(name, MAX_PROFILE, "profile")?;
        if profile::is_encrypted(&bytes) {
            return Err(Failure::input(format!(
                "{name} is encrypted: decrypt it first (sipnotify profile decrypt)"
            )));
        }
        if profile::is_gzip(&bytes) {
            bytes = profile::gunzip(&bytes).map_err(|e| Failure::input(format!("{name}: {e}")))?;
        }
        let checked = check::check(&bytes);
        let shown = sipnotify::text::printable(name, false);
        for f in &checked.findings {
            let severity = match f.severity {
                check::Severity::Error => "error",
                check::Severity::Warning => "warning",
            };
            let message = sipnotify::text::printable(&f.message, false);
            if format == Format::Json {
                let line = serde_json::json!({"file": name, "line": f.line, "severity": severity, "message": f.message});
                outln!("{line}");
            } else {
                outln!("{shown}:{}: {severity}: {message}", f.line);
            }
        }
        if checked.first_error().is_some() {
            code = 2;
        } else if format != Format::Json {
            errln!("{shown}: {} parameters", checked.params.len());
        }
    }
    Ok(code)
}

/// Prints what the rule gives for this phone: 0, or 1 when no alternative applies.
fn expand(
    rule: &str,
    mac: &str,
    sn: Option<String>,
    vars: &[String],
    format: Format,
) -> Result<u8, Failure> {
    let mac = Mac::parse(mac).map_err(|e| Failure::input(format!("--mac: {e}")))?;
    let mut macros = Macros::for_mac(mac);
    if let Some(sn) = sn {
        macros
            .set("SN", sn)
            .map_err(|e| Failure::input(e.to_string()))?;
    }
    for var in vars {
        let (name, value) = var
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--var {var}: write NAME=VALUE")))?;
        macros
            .set(name, value)
            .map_err(|e| Failure::input(format!("--var: {e}")))?;
    }
    for name in macros.unset_in(rule) {
        errln!("warning: ${name} has no value here (--var {name}=...): it expands to nothing");
    }
    let parsed = Rule::parse(rule).map_err(|e| Failure::input(e.to_string()))?;
    let Some(resolved) = parsed
        .evaluate(&macros)
        .map_err(|e| Failure::input(e.to_string()))?
    else {
        if format == Format::Json {
            outln!("{}", serde_json::json!({"alternative": null}));
        } else {
            outln!("no alternative applies: the phone skips this rule");
        }
        return Ok(1);
    };
    // A URL the phone cannot fetch is shown all the same: the expansion is what is asked.
    let url = match Url::parse(&resolved.url) {
        Ok(url) => Some(url),
        Err(e) => {
            if !resolved.url.is_empty() {
                errln!("warning: {e}");
            }
            None
        }
    };
    if format == Format::Json {
        let value = serde_json::json!({
            "alternative": resolved.alternative,
            "url": resolved.url,
            "scheme": url.as_ref().map(|u| &u.scheme),
            "host": url.as_ref().map(|u| &u.host),
            "port": url.as_ref().map(|u| u.port),
            "path": url.as_ref().map(|u| &u.path),
            "key": resolved.key.is_some(),
            "uid": resolved.uid,
            "pwd": resolved.pwd.is_some(),
            "options": resolved.other_options,
            "assignment": resolved.assignment,
        });
        outln!("{value}");
        return Ok(0);
    }
    let show = |text: &str| sipnotify::text::printable(text, false).into_owned();
    outln!("alternative: {}", resolved.alternative);
    outln!("url: {}", show(&resolved.url));
    if let Some(u) = &url {
        outln!(
            "  scheme {}, host {}, port {}, path {}",
            u.scheme,
            if u.host.is_empty() {
                "(from DHCP option 66)"
            } else {
                &u.host
            },
            u.port,
            show(&u.path)
        );
    }
    if let Some(key) = &resolved.key {
        outln!("key: {key} ({} characters)", key.expose().chars().count());
    }
    if let Some(uid) = &resolved.uid {
        outln!("uid: {}", show(uid));
    }
    if let Some(pwd) = &resolved.pwd {
        outln!("pwd: {pwd}");
    }
    if !resolved.other_options.is_empty() {
        outln!("options: {}", show(&resolved.other_options.join(" ")));
    }
    if let Some(a) = &resolved.assignment {
        outln!("assignment: {}", show(a));
    }
    Ok(0)
}

/// The simulator's MPP provisioning (`sipnotify phone --profile-rule ...`).
#[derive(Debug, Args)]
pub struct PhoneProvisionArgs {
    /// On each authenticated resync, fetch and apply this Profile_Rule for the line's own
    /// MAC address (00:0E:08 then the user as a 24-bit number: user 1000 is 000e080003e8).
    /// Repeat for Profile_Rule_B, _C, _D: evaluated in order, stopped by the first failure.
    /// E.g. '[--key $SC] http://127.0.0.1:8099/cfg/$MA.xml'.
    #[arg(long = "profile-rule", value_name = "RULE")]
    pub profile_rules: Vec<String>,
    /// On each authenticated report NOTIFY, POST the line's configuration report (its
    /// identity parameters as a flat-profile) to this Report_Rule, evaluated like a
    /// profile rule: AES-256-CBC with its --key, else aes128gcm with --ikm, else plain.
    /// E.g. '[--key $SC] http://127.0.0.1:8099/reports/$MA.xml'.
    #[arg(long, value_name = "RULE")]
    pub report_rule: Option<String>,
    #[command(flatten)]
    pub ikm: IkmArgs,
    /// Trust these CA certificates (PEM) for https:// rules, and no others.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Append one JSON line per resync (user, mac, result, applied, params, and for a
    /// failure the rule, URL, status and error).
    #[arg(long, value_name = "FILE")]
    pub resync_log: Option<PathBuf>,
}

impl PhoneProvisionArgs {
    /// The simulator's resync: made when there are profile rules, or for `web` (the web
    /// server's `/admin/resync?URL` fetches without rules); otherwise none.
    pub fn resyncer(&self, web: bool) -> Result<Option<Arc<Resyncer>>, Failure> {
        if self.profile_rules.is_empty() && self.report_rule.is_none() && !web {
            return Ok(None);
        }
        let tls = match &self.ca_file {
            Some(path) => Some(
                resync::client_tls(&read_input(
                    &path.display().to_string(),
                    1024 * 1024,
                    "CA file",
                )?)
                .map_err(|e| Failure::input(e.to_string()))?,
            ),
            None => None,
        };
        let mut resyncer = Resyncer::new(
            &self.profile_rules,
            self.ikm.ikm()?,
            tls,
            self.resync_log.as_deref(),
        )
        .map_err(|e| Failure::input(e.to_string()))?;
        if let Some(rule) = &self.report_rule {
            resyncer = resyncer
                .with_report_rule(rule)
                .map_err(|e| Failure::input(e.to_string()))?;
        }
        Ok(Some(Arc::new(resyncer)))
    }

    /// The phone server's hook: its lines resync for real when there are profile rules
    /// (a SIP resync with `profile="URL"` and no rules is acknowledged only), and report
    /// when there is a report rule.
    pub fn hook(&self, resyncer: Option<&Arc<Resyncer>>) -> Option<NotifyHook> {
        resyncer.filter(|r| r.acts()).map(|r| Arc::clone(r).hook())
    }
}
