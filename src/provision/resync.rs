//! The simulated phone's resync, as an MPP phone does it after an authenticated
//! `Event: resync`: evaluate each Profile_Rule in turn for its own MAC address, fetch the
//! file over HTTP or HTTPS (trusting the `--ca-file` roots only; Basic credentials from `--uid`/`--pwd` when challenged), decrypt it
//! (aes128gcm when the response says `Content-Encoding: aes128gcm`, else AES-256-CBC when
//! the rule has `--key`), gunzip it, read its `<flat-profile>` and apply it. The first rule
//! that fails interrupts the sequence, as on the phone, so a later rule is fetched only
//! when every earlier profile was applied: a small last rule is how a provisioning server
//! learns that a phone applied its profile (see `batch --confirm-path`).
//!
//! `resync;profile="URL"` (or the web server's `/admin/resync?URL`) replaces the rules with
//! that one. Each line's MAC address comes from its user ([`mac_for_user`]); a resync asked
//! for on the web server is the phone at that address's, with the MAC its web server gives. Each resync ends in one JSON line (`--resync-log`)
//! and a log event: `applied`, `failed` (with the rule, URL, HTTP status and what went
//! wrong: a 404, a wrong key, a corrupt file) or `skipped` (no rule applied).
//!
//! An authenticated `Event: report` makes a line with a Report_Rule (`--report-rule`,
//! evaluated like a profile rule) POST its configuration report there, once, with no
//! retry, as the Cisco provisioning guides describe: AES-256-CBC with the rule's `--key`,
//! else aes128gcm with the IKM, else plain XML. It is logged as `reported` or
//! `report_failed`.

use super::check;
use super::profile::{self, Md, Secrets};
use super::rfc8188;
use super::rule::{Mac, Macros, Rule, RuleError, Url};
use super::{Ikm, MAX_PROFILE};
use crate::phone::{Exchange, NotifyHook, ResyncHook};
use crate::Password;
use http_body_util::BodyExt;
use serde::Serialize;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;

/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetches in flight at once for the whole simulator (a real fleet has one per phone;
/// this keeps a rehearsal of thousands within the machine's descriptors).
const CONCURRENT_FETCHES: usize = 256;
/// The Profile_Rule, Profile_Rule_B, _C and _D.
pub const MAX_RULES: usize = 4;

/// The MAC address of a simulated line: Cisco's 00:0E:08 (the guide's own example
/// prefix), then the user as a 24-bit number when it is one (user 1000 is 000e080003e8),
/// else the first three bytes of the user's SHA-256.
pub fn mac_for_user(user: &str) -> Mac {
    let low: [u8; 3] = match user.parse::<u32>() {
        Ok(n) if n < 1 << 24 => {
            let b = n.to_be_bytes();
            [b[1], b[2], b[3]]
        }
        _ => {
            use sha2::Digest;
            let h = sha2::Sha256::digest(user.as_bytes());
            [h[0], h[1], h[2]]
        }
    };
    Mac([0x00, 0x0e, 0x08, low[0], low[1], low[2]])
}

/// Why the simulator's resync settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    /// A rule that does not parse (not quoted: it may hold a key).
    #[error("--profile-rule number {0}: {1}")]
    Rule(usize, RuleError),
    /// More than Profile_Rule.._D.
    #[error("at most {MAX_RULES} profile rules (Profile_Rule, _B, _C, _D)")]
    TooMany,
    /// The log cannot be opened.
    #[error("cannot open the resync log {0}: {1}")]
    Log(String, std::io::Error),
    /// The CA certificates cannot be used.
    #[error("--ca-file: {0}")]
    Ca(String),
    /// A report rule that does not parse (not quoted: it may hold a key).
    #[error("--report-rule: {0}")]
    ReportRule(RuleError),
}

/// The TLS settings of the phone's HTTPS fetches: these PEM CA certificates are the only
/// trusted roots (as a phone provisioned with a custom CA), with the *ring* provider.
pub fn client_tls(ca_pem: &[u8]) -> Result<Arc<ClientTls>, ResyncError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| ResyncError::Ca(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ResyncError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ResyncError::Ca("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ResyncError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The phone's TLS settings.
pub type ClientTls = rustls::ClientConfig;

/// One resync's end: a line of the resync log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResyncReport {
    /// Unix time, in seconds, at the end.
    pub at: f64,
    /// The line's user.
    pub user: String,
    /// Its MAC address.
    pub mac: String,
    /// A resync: `applied`, `failed` or `skipped`; a report: `reported` or
    /// `report_failed`.
    pub result: &'static str,
    /// Rules whose profile was applied.
    pub applied: usize,
    /// Parameters applied, over all rules.
    pub params: usize,
    /// The rule that failed (1 = Profile_Rule, 2 = _B, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// The URL that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Its HTTP status, when one was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The simulator's resync: its rules, its IKM, and where it logs.
pub struct Resyncer {
    rules: Vec<Rule>,
    report_rule: Option<Rule>,
    ikm: Option<Ikm>,
    tls: Option<Arc<ClientTls>>,
    log: Option<Mutex<std::fs::File>>,
    fetches: Semaphore,
}

impl std::fmt::Debug for Resyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resyncer")
            .field("rules", &self.rules.len())
            .field("ikm", &self.ikm)
            .finish()
    }
}

/// A fetch that did not give a profile.
struct Failed {
    status: Option<u16>,
    error: String,
}

impl Resyncer {
    /// Reads the rules (in Profile_Rule, _B, _C, _D order) and opens the log.
    pub fn new(
        rules: &[String],
        ikm: Option<Ikm>,
        tls: Option<Arc<ClientTls>>,
        log: Option<&Path>,
    ) -> Result<Resyncer, ResyncError> {
        if rules.len() > MAX_RULES {
            return Err(ResyncError::TooMany);
        }
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::parse(r).map_err(|e| ResyncError::Rule(i + 1, e)))
            .collect::<Result<_, _>>()?;
        let log = log
            .map(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(Mutex::new)
                    .map_err(|e| ResyncError::Log(path.display().to_string(), e))
            })
            .transpose()?;
        Ok(Resyncer {
            rules,
            report_rule: None,
            ikm,
            tls,
            log,
            fetches: Semaphore::new(CONCURRENT_FETCHES),
        })
    }

    /// Sets the Report_Rule a `report` NOTIFY uploads the line's configuration to.
    pub fn with_report_rule(mut self, rule: &str) -> Result<Resyncer, ResyncError> {
        self.report_rule = Some(Rule::parse(rule).map_err(ResyncError::ReportRule)?);
        Ok(self)
    }

    /// The phone server's hook: each resync NOTIFY a line acts on starts a resync from the
    /// address the NOTIFY reached (so the provisioning server sees the phone's address),
    /// and each report NOTIFY an upload of its report, when it has a Report_Rule.
    pub fn hook(self: Arc<Self>) -> NotifyHook {
        Arc::new(move |exchange: &Exchange, local: IpAddr| {
            let Some(user) = exchange.user.clone() else {
                return;
            };
            let me = Arc::clone(&self);
            match exchange.event.as_deref() {
                Some("resync") if !self.rules.is_empty() => {
                    let profile = exchange.profile.clone();
                    tokio::spawn(async move {
                        me.resync(&user, local, profile.as_deref()).await;
                    });
                }
                Some("report") if self.report_rule.is_some() => {
                    tokio::spawn(async move {
                        me.report(&user, local).await;
                    });
                }
                _ => {}
            }
        })
    }

    /// Whether a line acts on NOTIFYs beyond answering them: it has profile rules or a
    /// report rule.
    pub fn acts(&self) -> bool {
        !self.rules.is_empty() || self.report_rule.is_some()
    }

    /// The web server's hook: `/admin/resync[?URL]` starts a resync of the phone at the
    /// address it reached, with the MAC address its web server gives it and its web user
    /// as the line, fetching from that address (so the provisioning server sees the
    /// phone's address, as after a SIP resync).
    pub fn web_hook(self: Arc<Self>) -> ResyncHook {
        Arc::new(
            move |user: &str, mac: [u8; 6], phone: SocketAddr, profile: Option<String>| {
                let (me, user) = (Arc::clone(&self), user.to_string());
                tokio::spawn(async move {
                    me.resync_as(&user, Mac(mac), phone.ip(), profile.as_deref())
                        .await;
                });
            },
        )
    }

    /// One resync of `user`'s line, fetching from `local`; logged, and returned.
    pub async fn resync(&self, user: &str, local: IpAddr, profile: Option<&str>) -> ResyncReport {
        self.resync_as(user, mac_for_user(user), local, profile)
            .await
    }

    /// One resync of the phone with MAC address `mac` (`user` its line), fetching from
    /// `local`; logged, and returned.
    pub async fn resync_as(
        &self,
        user: &str,
        mac: Mac,
        local: IpAddr,
        profile: Option<&str>,
    ) -> ResyncReport {
        let mut report = ResyncReport::new(user, &mac);
        self.apply_rules(&mut report, mac, local, profile).await;
        self.logged("resync", report)
    }

    /// Uploads `user`'s configuration report (from `local`) as its Report_Rule says;
    /// logged, and returned. `None` without a report rule.
    pub async fn report(&self, user: &str, local: IpAddr) -> Option<ResyncReport> {
        let rule = self.report_rule.as_ref()?;
        let mac = mac_for_user(user);
        let mut report = ResyncReport::new(user, &mac);
        let resolved = match rule.evaluate(&line_macros(user, mac)) {
            Ok(Some(r)) if !r.url.is_empty() => r,
            Ok(_) => return Some(self.logged("report", report)),
            Err(e) => {
                let failed = report_failed(report, None, None, e.to_string());
                return Some(self.logged("report", failed));
            }
        };
        let xml = report_xml(user, &mac);
        report.params = REPORTED_PARAMS;
        let upload = match (&resolved.key, &self.ikm) {
            (Some(key), _) => Upload {
                body: profile::encrypt(xml.as_bytes(), key, Md::Sha256, rand::random()),
                aes128gcm: false,
            },
            (None, Some(ikm)) => Upload {
                body: rfc8188::encode(
                    xml.as_bytes(),
                    ikm,
                    rand::random(),
                    rfc8188::DEFAULT_RECORD_SIZE,
                    b"",
                )
                .expect("the default record size is valid and the key id empty"),
                aes128gcm: true,
            },
            (None, None) => Upload {
                body: xml.into_bytes(),
                aes128gcm: false,
            },
        };
        let url = resolved.url.clone();
        let credentials = resolved.uid.as_deref().zip(resolved.pwd.as_ref());
        let sent = self
            .request(&url, local, &mac, credentials, Some(upload))
            .await;
        let report = match sent {
            Ok((status, ..)) => ResyncReport {
                result: "reported",
                url: Some(url),
                status: Some(status),
                ..report
            },
            Err(f) => report_failed(report, Some(url), f.status, f.error),
        };
        Some(self.logged("report", report))
    }

    /// Stamps, traces and logs a resync or a report (`what`).
    fn logged(&self, what: &str, mut report: ResyncReport) -> ResyncReport {
        report.at = super::fetch::unix_now();
        if report.error.is_some() {
            tracing::warn!(user = %report.user, mac = %report.mac, url = ?report.url, status = ?report.status, error = ?report.error, "{what} failed");
        } else {
            tracing::info!(user = %report.user, mac = %report.mac, result = report.result, params = report.params, "{what}");
        }
        if let Some(log) = &self.log {
            if let Ok(mut line) = serde_json::to_vec(&report) {
                line.push(b'\n');
                let _ = log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write_all(&line);
            }
        }
        report
    }

    /// Fetches and applies the profiles of `profile`, else of the rules, in order, counting
    /// them in `report`; the first failure ends the resync, recorded in `report`.
    async fn apply_rules(
        &self,
        report: &mut ResyncReport,
        mac: Mac,
        local: IpAddr,
        profile: Option<&str>,
    ) {
        let macros = line_macros(&report.user, mac);
        let explicit;
        let rules: &[Rule] = match profile {
            Some(url) => match Rule::parse(url) {
                Ok(rule) => {
                    explicit = [rule];
                    &explicit
                }
                Err(e) => return failed(report, 1, None, None, e.to_string()),
            },
            None => &self.rules,
        };
        for (index, rule) in rules.iter().enumerate() {
            let resolved = match rule.evaluate(&macros) {
                Ok(Some(r)) if !r.url.is_empty() => r,
                Ok(_) => continue,
                Err(e) => return failed(report, index + 1, None, None, e.to_string()),
            };
            let url = resolved.url.clone();
            let fetched = self
                .request(
                    &url,
                    local,
                    &mac,
                    resolved.uid.as_deref().zip(resolved.pwd.as_ref()),
                    None,
                )
                .await;
            let (status, aes128gcm, body) = match fetched {
                Ok(ok) => ok,
                Err(f) => return failed(report, index + 1, Some(url), f.status, f.error),
            };
            let secrets = Secrets {
                key: resolved.key.as_ref(),
                ikm: self.ikm.as_ref(),
            };
            let text = match profile::open(&body, aes128gcm, secrets) {
                Ok(text) => text,
                Err(e) => return failed(report, index + 1, Some(url), Some(status), e.to_string()),
            };
            let checked = check::check(text.as_bytes());
            if let Some(error) = checked.first_error() {
                let message = format!("line {}: {}", error.line, error.message);
                return failed(report, index + 1, Some(url), Some(status), message);
            }
            report.applied += 1;
            report.params += checked.params.len();
            report.result = "applied";
        }
    }

    /// GETs `url` from `local`, or POSTs `upload` to it, answering a 401 with Basic
    /// credentials when the rule gives them; a 2xx answer's status, whether its body is
    /// aes128gcm, and its body (bounded).
    async fn request(
        &self,
        url: &str,
        local: IpAddr,
        mac: &Mac,
        credentials: Option<(&str, &Password)>,
        upload: Option<Upload>,
    ) -> Result<(u16, bool, Vec<u8>), Failed> {
        let fail = |error: String| Failed {
            status: None,
            error,
        };
        let url = Url::parse(url).map_err(|e| fail(e.to_string()))?;
        let tls = match (url.scheme.as_str(), &self.tls) {
            ("http", _) => None,
            ("https", Some(tls)) => Some(Arc::clone(tls)),
            ("https", None) => return Err(fail("https needs --ca-file".into())),
            (other, _) => return Err(fail(format!("the simulator fetches http(s), not {other}"))),
        };
        let _slot = self
            .fetches
            .acquire()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let upload = upload.map(Arc::new);
        let attempt = |authorization: Option<String>| {
            let (url, tls, upload) = (url.clone(), tls.clone(), upload.clone());
            async move {
                tokio::time::timeout(
                    FETCH_TIMEOUT,
                    send(
                        &url,
                        tls.clone(),
                        local,
                        mac,
                        authorization,
                        upload.as_deref(),
                    ),
                )
                .await
                .unwrap_or_else(|_| Err(fail("no answer within 10 s".into())))
            }
        };
        let mut answer = attempt(None).await?;
        if let (401, Some((uid, pwd))) = (answer.0, credentials) {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{uid}:{}", pwd.expose()));
            answer = attempt(Some(format!("Basic {token}"))).await?;
        }
        if !(200..300).contains(&answer.0) {
            return Err(Failed {
                status: Some(answer.0),
                error: format!("HTTP {}", answer.0),
            });
        }
        Ok(answer)
    }
}

/// A configuration report to POST.
struct Upload {
    body: Vec<u8>,
    /// Sent with `Content-Encoding: aes128gcm`.
    aes128gcm: bool,
}

impl ResyncReport {
    /// The start of a resync or report of `user`'s line: nothing done yet.
    fn new(user: &str, mac: &Mac) -> ResyncReport {
        ResyncReport {
            at: 0.0,
            user: user.to_string(),
            mac: mac.ma(),
            result: "skipped",
            applied: 0,
            params: 0,
            rule: None,
            url: None,
            status: None,
            error: None,
        }
    }
}

/// The macros a line's rules expand: its MAC's, its user, the product name and serial.
fn line_macros(user: &str, mac: Mac) -> Macros {
    let mut macros = Macros::for_mac(mac);
    for (name, value) in [("UID1", user), ("PN", "CP-8845-3PCC"), ("PSN", "8845")] {
        macros.set(name, value).expect("known macros");
    }
    macros
}

/// The parameters of a simulated line's report.
const REPORTED_PARAMS: usize = 4;

/// A line's configuration report: its identity parameters in the `<flat-profile>` form the
/// phone's profiles use. Rules are left out: they may hold keys and passwords.
fn report_xml(user: &str, mac: &Mac) -> String {
    use quick_xml::escape::escape;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<flat-profile>\n\
         <MAC_Address ua=\"ro\">{}</MAC_Address>\n\
         <Product_Name ua=\"ro\">CP-8845-3PCC</Product_Name>\n\
         <Serial_Number ua=\"ro\">8845</Serial_Number>\n\
         <User_ID_1_ ua=\"na\">{}</User_ID_1_>\n</flat-profile>\n",
        mac.ma(),
        escape(user)
    )
}

fn report_failed(
    report: ResyncReport,
    url: Option<String>,
    status: Option<u16>,
    error: String,
) -> ResyncReport {
    ResyncReport {
        result: "report_failed",
        url,
        status,
        error: Some(error),
        ..report
    }
}

fn failed(
    report: &mut ResyncReport,
    rule: usize,
    url: Option<String>,
    status: Option<u16>,
    error: String,
) {
    report.result = "failed";
    report.rule = Some(rule);
    report.url = url;
    report.status = status;
    report.error = Some(error);
}

/// One GET (or POST of `upload`) over a new connection from `local`, over TLS when `tls`
/// is given.
async fn send(
    url: &Url,
    tls: Option<Arc<ClientTls>>,
    local: IpAddr,
    mac: &Mac,
    authorization: Option<String>,
    upload: Option<&Upload>,
) -> Result<(u16, bool, Vec<u8>), Failed> {
    let fail = |error: String| Failed {
        status: None,
        error,
    };
    let host = if url.host.is_empty() {
        "localhost"
    } else {
        &url.host
    };
    let addr = tokio::net::lookup_host((host, url.port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() == local.is_ipv4()))
        .ok_or_else(|| fail(format!("cannot resolve {host}")))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| fail(e.to_string()))?;
    if !local.is_unspecified() {
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|e| fail(format!("cannot bind {local}: {e}")))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| fail(format!("cannot connect to {addr}: {e}")))?;
    let method = match upload {
        Some(_) => hyper::Method::POST,
        None => hyper::Method::GET,
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(url.path.as_str())
        .header(hyper::header::HOST, host_port(host, url.port))
        .header(
            hyper::header::USER_AGENT,
            format!("Cisco-CP-8845-3PCC/12.0.1 ({})", mac.ma()),
        );
    if let Some(value) = authorization {
        request = request.header(hyper::header::AUTHORIZATION, value);
    }
    let body = match upload {
        Some(upload) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/xml");
            if upload.aes128gcm {
                request = request.header(hyper::header::CONTENT_ENCODING, "aes128gcm");
            }
            bytes::Bytes::from(upload.body.clone())
        }
        None => bytes::Bytes::new(),
    };
    let request = request
        .body(http_body_util::Full::new(body))
        .map_err(|e| fail(e.to_string()))?;
    match tls {
        None => exchange(hyper_util::rt::TokioIo::new(stream), request).await,
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| fail(format!("{host}: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| fail(format!("TLS with {addr}: {e}")))?;
            exchange(hyper_util::rt::TokioIo::new(stream), request).await
        }
    }
}

/// `host:port` for a Host header, an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    match crate::sip::uri::Host::parse(host) {
        Some(host) => format!("{host}:{port}"),
        None => format!("{host}:{port}"),
    }
}

/// Sends the request on a connection and reads the response: its status, whether it is
/// aes128gcm, and its body (bounded).
async fn exchange<I>(
    io: I,
    request: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<(u16, bool, Vec<u8>), Failed>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let fail = |error: String| Failed {
        status: None,
        error,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status().as_u16();
    let aes128gcm = response
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"aes128gcm"));
    let body = http_body_util::Limited::new(response.into_body(), MAX_PROFILE)
        .collect()
        .await
        .map_err(|e| fail(format!("reading the body: {e}")))?
        .to_bytes()
        .to_vec();
    Ok((status, aes128gcm, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_from_users() {
        assert_eq!(mac_for_user("1000").ma(), "000e080003e8");
        assert_eq!(mac_for_user("159").ma(), "000e0800009f");
        assert_eq!(mac_for_user("16777215").ma(), "000e08ffffff");
        let named = mac_for_user("alice");
        assert_eq!(&named.0[..3], &[0x00, 0x0e, 0x08]);
        assert_ne!(named, mac_for_user("bob"));
        assert_eq!(mac_for_user("16777216"), mac_for_user("16777216"));
    }
}
