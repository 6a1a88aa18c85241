//! The tokio layer: one phone's web server, one connection per request, closed when done.
//! [`Pusher`] is the HTTP [`Channel`] of campaigns; [`Pusher::exchange`] serves the
//! one-phone commands, which also need the answer's body (a screenshot).

use super::addr::{PhoneAddr, Scheme};
use super::admin;
use super::answer::{self, Expect, MAX_ANSWER, MAX_SCREENSHOT};
use super::auth::{self, AuthMode, Reply, WebCredentials};
use super::object::form_body;
use crate::campaign::channel::digest_prefix;
use crate::campaign::Channel;
use crate::net::tls::TlsClient;
use crate::proto::outcome::{Direction, TraceEntry};
use crate::proto::{Outcome, OutcomeKind};
use crate::sip::uri::Host;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// What to do to a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// POST a `CiscoIPPhoneExecute`.
    Execute,
    /// POST a `setBackground`.
    Background,
    /// POST any object.
    Push,
    /// GET `/CGI/Screenshot`.
    Screenshot,
    /// GET `/DeviceInformationX`.
    Info,
    /// GET `/admin/resync[?URL]` (MPP): fetch and apply a profile.
    Resync,
    /// GET `/admin/upgrade?URL` (MPP): install a firmware load.
    Upgrade,
    /// GET `/admin/reboot` (MPP).
    Reboot,
}

impl Action {
    /// Every action, in the order help texts list them.
    pub const ALL: [Action; 8] = [
        Action::Execute,
        Action::Background,
        Action::Push,
        Action::Screenshot,
        Action::Info,
        Action::Resync,
        Action::Upgrade,
        Action::Reboot,
    ];

    /// The names of [`Action::ALL`], for messages: `execute, background, ...`.
    pub fn names() -> String {
        Action::ALL.map(Action::name).join(", ")
    }

    /// Whether it hands the phone a URL (`/admin/resync` may, `/admin/upgrade` must).
    pub fn takes_url(self) -> bool {
        matches!(self, Action::Resync | Action::Upgrade)
    }

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Action::Execute => "execute",
            Action::Background => "background",
            Action::Push => "push",
            Action::Screenshot => "screenshot",
            Action::Info => "info",
            Action::Resync => "resync",
            Action::Upgrade => "upgrade",
            Action::Reboot => "reboot",
        }
    }

    /// The campaign action named `name`.
    pub fn named(name: &str) -> Option<Action> {
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether it POSTs an object.
    pub fn posts(self) -> bool {
        matches!(self, Action::Execute | Action::Background | Action::Push)
    }

    /// Whether the page is a classic phone's CGI page (Basic sent with the first try under
    /// `--auth auto`), not an MPP `/admin/` page.
    pub(crate) fn classic(self) -> bool {
        !matches!(self, Action::Resync | Action::Upgrade | Action::Reboot)
    }

    fn path(self) -> &'static str {
        match self {
            Action::Execute | Action::Background | Action::Push => "/CGI/Execute",
            Action::Screenshot => "/CGI/Screenshot",
            Action::Info => "/DeviceInformationX",
            Action::Resync => admin::RESYNC,
            Action::Upgrade => admin::UPGRADE,
            Action::Reboot => admin::REBOOT,
        }
    }

    fn expect(self) -> Expect {
        match self {
            Action::Execute | Action::Background | Action::Push => Expect::Response,
            Action::Screenshot => Expect::Image,
            Action::Info => Expect::DeviceInfo,
            Action::Resync | Action::Upgrade | Action::Reboot => Expect::Page,
        }
    }
}

/// What to send to one phone.
#[derive(Debug, Clone)]
pub struct Push {
    /// The phone's web server.
    pub phone: PhoneAddr,
    /// What to do.
    pub action: Action,
    /// The object POSTed (for execute, background and push), built and checked.
    pub object: Option<Arc<str>>,
    /// The URL handed to `/admin/resync` (a profile) or `/admin/upgrade` (a firmware
    /// load) as the query, checked by [`admin::check_url`].
    pub url: Option<Arc<str>>,
    /// The web user.
    pub credentials: Option<WebCredentials>,
    /// How to authenticate.
    pub auth: AuthMode,
    /// Keep every request and answer in the outcome's ladder (credentials masked).
    pub trace: bool,
}

/// Screenshots a campaign takes after each push.
#[derive(Debug, Clone)]
pub struct Screenshots {
    /// Where each phone's `<host>_<port>.png` is written.
    pub dir: PathBuf,
    /// How long to let the phone act before the screenshot.
    pub settle: Duration,
}

/// How the pusher works.
#[derive(Debug, Clone)]
pub struct PusherConfig {
    /// The longest one request may take, connection included.
    pub timeout: Duration,
    /// Screenshots after each push (campaigns).
    pub screenshots: Option<Screenshots>,
    /// How `https://` phones' certificates are checked: the same trust options, checks
    /// and reasons as SIP over TLS.
    pub tls: TlsClient,
}

impl Default for PusherConfig {
    fn default() -> PusherConfig {
        PusherConfig {
            timeout: Duration::from_secs(10),
            screenshots: None,
            tls: TlsClient::default(),
        }
    }
}

/// The end of one exchange, and the answer's body for an image.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// How it ended.
    pub outcome: Outcome,
    /// The screenshot, when one was asked for and came.
    pub image: Option<Bytes>,
}

/// Acts on phones' web servers: one request at a time per phone, a connection per request.
#[derive(Debug, Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PusherConfig,
    /// The phones being acted on, each with what wakes the next request for it.
    busy: Mutex<HashMap<SocketAddr, Arc<Notify>>>,
}

/// A request as sent (for the ladder and `--dry-run`).
struct Wire {
    method: &'static str,
    /// The request target: the path, and the query of the MPP web actions.
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

/// A final answer.
struct Answer {
    status: u16,
    phrase: String,
    challenges: Vec<String>,
    /// `Retry-After` in delta-seconds (a 503's; an HTTP date is not read).
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Why no answer came.
struct Failed {
    kind: OutcomeKind,
    reason: String,
}

/// The most requests of one exchange: the first, an answer to a challenge, and one more
/// for a stale nonce.
const MAX_REQUESTS: u32 = 3;

impl Pusher {
    /// A pusher.
    pub fn new(config: PusherConfig) -> Pusher {
        Pusher {
            inner: Arc::new(Inner {
                config,
                busy: Mutex::default(),
            }),
        }
    }

    /// The first request of `push` as it would be sent, its credentials masked.
    pub fn preview(push: &Push) -> Vec<u8> {
        let first = auth::preemptive(push.auth, push.credentials.as_ref(), push.action.classic());
        render_request(&wire(push, first.as_deref()))
    }

    /// Acts on one phone once and returns the outcome and, for a screenshot, the image.
    pub async fn exchange(&self, push: &Push) -> Delivery {
        let started = Instant::now();
        let mut ladder = Ladder {
            on: push.trace,
            started,
            entries: Vec::new(),
        };
        let mut attempts = 0;
        let result = tokio::time::timeout(
            self.inner.config.timeout,
            exchange(push, &self.inner.config.tls, &mut ladder, &mut attempts),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failed {
                kind: OutcomeKind::Timeout,
                reason: format!(
                    "no answer in {:.1} s",
                    self.inner.config.timeout.as_secs_f64()
                ),
            })
        });
        let (mut outcome, image) = match result {
            Ok((answer, credentials_sent)) => {
                let judged = answer::judge(
                    push.action.expect(),
                    answer.status,
                    &answer.phrase,
                    &answer.body,
                    credentials_sent,
                );
                let mut details = serde_json::Map::new();
                details.insert("http_status".into(), answer.status.into());
                details.insert("phone_error".into(), judged.phone_error.into());
                if !judged.items.is_empty() {
                    details.insert("items".into(), serde_json::json!(judged.items));
                }
                if let Some(device) = &judged.device {
                    details.insert("device".into(), serde_json::json!(device));
                }
                let image = (judged.kind == OutcomeKind::Delivered
                    && push.action == Action::Screenshot)
                    .then_some(answer.body);
                let outcome = Outcome {
                    status: Some(answer.status),
                    retry_after: answer.retry_after,
                    hint: judged.hint,
                    details: Some(Box::new(details)),
                    ..Outcome::unsent(judged.kind, judged.reason)
                };
                (outcome, image)
            }
            Err(failed) => (Outcome::unsent(failed.kind, failed.reason), None),
        };
        outcome.attempts = attempts;
        outcome.elapsed = started.elapsed();
        tracing::debug!(phone = %push.phone, action = push.action.name(), outcome = %outcome.kind, reason = %outcome.reason, "ended");
        outcome.ladder = ladder.entries;
        Delivery { outcome, image }
    }

    /// Waits until no other request of this pusher is acting on `phone`, then holds it
    /// until the guard drops: phones' web servers take one request at a time.
    async fn hold(&self, phone: SocketAddr) -> Holding<'_> {
        loop {
            let wait = {
                let mut busy = self.inner.busy.lock().expect("lock");
                match busy.get(&phone) {
                    // Created under the lock: woken by the release even before it is polled.
                    Some(release) => release.clone().notified_owned(),
                    None => {
                        busy.insert(phone, Arc::new(Notify::new()));
                        return Holding {
                            pusher: self,
                            phone,
                        };
                    }
                }
            };
            wait.await;
        }
    }

    /// After a push, the phone's screen: saved as `<dir>/<host>_<port>.png`, its name (or
    /// why there is none) added to the outcome.
    async fn screenshot_after(&self, push: &Push, outcome: &mut Outcome, shots: &Screenshots) {
        let image = if push.action == Action::Screenshot {
            None
        } else {
            tokio::time::sleep(shots.settle).await;
            let shot = Push {
                action: Action::Screenshot,
                object: None,
                url: None,
                trace: false,
                ..push.clone()
            };
            let delivery = self.exchange(&shot).await;
            match delivery.image {
                Some(image) => Some(Ok(image)),
                None => Some(Err(delivery.outcome.reason)),
            }
        };
        let details = outcome.details.get_or_insert_with(Box::default);
        let saved = match image {
            Some(Err(why)) => Err(why),
            Some(Ok(image)) => save(&shots.dir, &push.phone, &image),
            None => Ok(None),
        };
        match saved {
            Ok(Some(name)) => {
                details.insert("screenshot".into(), name.into());
            }
            Ok(None) => {}
            Err(why) => {
                details.insert("screenshot_error".into(), why.into());
            }
        }
    }
}

/// Writes a screenshot; its file name.
fn save(dir: &std::path::Path, phone: &PhoneAddr, image: &[u8]) -> Result<Option<String>, String> {
    let name = format!("{}.png", phone.file_stem());
    std::fs::write(dir.join(&name), image)
        .map(|()| Some(name))
        .map_err(|e| format!("cannot write the screenshot: {e}"))
}

/// A phone held by [`Pusher::hold`].
struct Holding<'a> {
    pusher: &'a Pusher,
    phone: SocketAddr,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        let released = self
            .pusher
            .inner
            .busy
            .lock()
            .expect("lock")
            .remove(&self.phone);
        if let Some(release) = released {
            release.notify_waiters();
        }
    }
}

impl Channel for Pusher {
    type Request = Push;

    async fn deliver(&self, push: &Push) -> Outcome {
        let timeout = self.inner.config.timeout;
        let phone = match tokio::time::timeout(timeout, resolve(&push.phone)).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(failed)) => return Outcome::unsent(failed.kind, failed.reason),
            Err(_) => {
                let reason = format!(
                    "cannot resolve {} in {:.1} s",
                    push.phone.host(),
                    timeout.as_secs_f64()
                );
                return Outcome::unsent(OutcomeKind::Timeout, reason);
            }
        };
        let _holding = self.hold(phone).await;
        let mut outcome = self.exchange(push).await.outcome;
        // No screenshot after an MPP admin action: the phone is restarting or fetching,
        // and it would send the admin credentials to a CGI page.
        if let Some(shots) = &self.inner.config.screenshots {
            if outcome.status.is_some() && push.action.classic() {
                self.screenshot_after(push, &mut outcome, shots).await;
            }
        }
        outcome
    }

    fn target(push: &Push) -> &str {
        push.phone.as_str()
    }

    fn action(push: &Push) -> &str {
        push.action.name()
    }

    /// The phone, the action and a digest of the object or URL: another object or URL is
    /// another act.
    fn identity(push: &Push) -> String {
        match push.object.as_deref().or(push.url.as_deref()) {
            Some(what) => format!(
                "{} {} {}",
                push.phone,
                push.action.name(),
                digest_prefix(what.as_bytes())
            ),
            None => format!("{} {}", push.phone, push.action.name()),
        }
    }
}

/// The messages of one exchange, when asked for.
struct Ladder {
    on: bool,
    started: Instant,
    entries: Vec<TraceEntry>,
}

impl Ladder {
    fn push(&mut self, direction: Direction, text: Vec<u8>) {
        if self.on {
            self.entries.push(TraceEntry {
                at: self.started.elapsed(),
                direction,
                from: None,
                bytes: text.into(),
            });
        }
    }
}

/// The phone's address: the literal, else the first the system resolves.
async fn resolve(phone: &PhoneAddr) -> Result<SocketAddr, Failed> {
    if let Some(ip) = phone.ip() {
        return Ok(SocketAddr::new(ip, phone.port()));
    }
    let unresolved = |why: String| Failed {
        kind: OutcomeKind::Unreachable,
        reason: format!("cannot resolve {}: {why}", phone.host()),
    };
    tokio::net::lookup_host((phone.host(), phone.port()))
        .await
        .map_err(|e| unresolved(e.to_string()))?
        .next()
        .ok_or_else(|| unresolved("no address".into()))
}

/// The requests of one exchange: the first, then answers to 401s. The final answer, and
/// whether credentials were sent with it.
async fn exchange(
    push: &Push,
    tls: &TlsClient,
    ladder: &mut Ladder,
    attempts: &mut u32,
) -> Result<(Answer, bool), Failed> {
    let addr = resolve(&push.phone).await?;
    let mut authorization =
        auth::preemptive(push.auth, push.credentials.as_ref(), push.action.classic());
    let mut sent_digest = false;
    loop {
        let request = wire(push, authorization.as_deref());
        ladder.push(Direction::Sent, render_request(&request));
        *attempts += 1;
        let limit = match push.action {
            Action::Screenshot => MAX_SCREENSHOT,
            _ => MAX_ANSWER,
        };
        tracing::debug!(phone = %push.phone, method = request.method, path = %request.path, "request sent");
        let answer = send(&push.phone, addr, tls, &request, limit).await?;
        tracing::debug!(phone = %push.phone, status = answer.status, bytes = answer.body.len(), "answer received");
        ladder.push(Direction::Received, render_answer(&answer));
        let sent = authorization.take();
        if answer.status != 401 || *attempts >= MAX_REQUESTS {
            return Ok((answer, sent.is_some()));
        }
        let sent_basic = sent.as_deref().is_some_and(|v| v.starts_with("Basic"));
        sent_digest |= sent.as_deref().is_some_and(|v| v.starts_with("Digest"));
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let reply = auth::answer_401(
            push.auth,
            push.credentials.as_ref(),
            answer.challenges.iter().map(String::as_str),
            auth::Request {
                method: request.method,
                uri: &request.path,
                body: &request.body,
                sent_basic,
                sent_digest,
                auto_basic: push.action.classic() || matches!(push.phone.scheme(), Scheme::Https),
            },
            &cnonce,
        );
        match reply {
            Reply::Retry(value) => authorization = Some(value),
            Reply::NoCredentials => return Ok((answer, false)),
            Reply::Refused(why) => {
                let phrase = format!("{} ({why})", answer.phrase);
                return Ok((Answer { phrase, ..answer }, true));
            }
        }
    }
}

/// The request for `push`, with this `Authorization` value.
fn wire(push: &Push, authorization: Option<&str>) -> Wire {
    let body = match (&push.object, push.action.posts()) {
        (Some(object), true) => Bytes::from(form_body(object)),
        _ => Bytes::new(),
    };
    let method = if push.action.posts() { "POST" } else { "GET" };
    let mut headers = vec![
        ("Host", push.phone.authority()),
        (
            "User-Agent",
            concat!("sipnotify/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
    ];
    if method == "POST" {
        headers.push((
            "Content-Type",
            "application/x-www-form-urlencoded".to_string(),
        ));
        headers.push(("Content-Length", body.len().to_string()));
    }
    // One request per connection: phones' web servers serve few connections at once.
    headers.push(("Connection", "close".to_string()));
    if let Some(value) = authorization {
        headers.push(("Authorization", value.to_string()));
    }
    Wire {
        method,
        path: admin::target(push.action.path(), push.url.as_deref()),
        headers,
        body,
    }
}

/// A request as text, for the ladder and `--dry-run`: the `Authorization` value masked.
fn render_request(wire: &Wire) -> Vec<u8> {
    let mut text = format!("{} {} HTTP/1.1\r\n", wire.method, wire.path);
    for (name, value) in &wire.headers {
        let value = if *name == "Authorization" {
            auth::masked(value)
        } else {
            value.clone()
        };
        text += &format!("{name}: {value}\r\n");
    }
    text += "\r\n";
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&wire.body);
    bytes
}

/// The most bytes of an answer's body shown in the ladder.
const LADDER_BODY: usize = 4096;

/// An answer as text for the ladder: images and long bodies summarized.
fn render_answer(answer: &Answer) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {} {}\r\n", answer.status, answer.phrase);
    for challenge in &answer.challenges {
        text += &format!("WWW-Authenticate: {challenge}\r\n");
    }
    text += "\r\n";
    if answer::is_image(&answer.body) {
        text += &format!("<an image of {} bytes>", answer.body.len());
    } else {
        let shown = &answer.body[..answer.body.len().min(LADDER_BODY)];
        text += &String::from_utf8_lossy(shown);
        if answer.body.len() > LADDER_BODY {
            text += &format!("... ({} bytes)", answer.body.len());
        }
    }
    text.into_bytes()
}

/// One request on a new connection (TLS for an `https://` phone), its answer read whole
/// (at most `limit` bytes).
async fn send(
    phone: &PhoneAddr,
    addr: SocketAddr,
    tls: &TlsClient,
    wire: &Wire,
    limit: usize,
) -> Result<Answer, Failed> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable("cannot connect", &e))?;
    let _ = stream.set_nodelay(true);
    match phone.scheme() {
        Scheme::Http => request(TokioIo::new(stream), Scheme::Http, wire, limit).await,
        Scheme::Https => {
            // The certificate is checked against the phone's host as written (an address
            // against the certificate's IP addresses), unless --tls-name says otherwise.
            let refused = |why: &dyn std::fmt::Display| {
                unreachable(&format!("cannot connect to {addr} over https"), why)
            };
            let host = Host::parse(phone.host()).ok_or_else(|| refused(&"not a host"))?;
            let name = tls.server_name(&host).map_err(|e| refused(&e))?;
            let stream = tls.connect(name, stream).await.map_err(|e| refused(&e))?;
            request(TokioIo::new(stream), Scheme::Https, wire, limit).await
        }
    }
}

/// A phone that could not be reached, and why.
fn unreachable(what: &str, why: &dyn std::fmt::Display) -> Failed {
    Failed {
        kind: OutcomeKind::Unreachable,
        reason: format!("{what}: {why}"),
    }
}

/// One request on a connected stream, plain or TLS (`scheme`).
async fn request<I>(io: I, scheme: Scheme, wire: &Wire, limit: usize) -> Result<Answer, Failed>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // Header names as classic phones' servers expect them, not lower case.
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| unreachable("connection failed", &e))?;
    let mut request = http::Request::builder()
        .method(wire.method)
        .uri(wire.path.as_str());
    for (name, value) in &wire.headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(wire.body.clone()))
        .map_err(|e| unreachable("cannot build the request", &e))?;
    let work = async move {
        let response = sender.send_request(request).await.map_err(|e| {
            // A TLS server answers plain HTTP with a TLS alert, which is no HTTP answer.
            if e.is_parse() && scheme == Scheme::Http {
                unreachable(
                    "the answer is not HTTP",
                    &format!("{e}; if the phone serves HTTPS there, give it as https://"),
                )
            } else {
                unreachable("the connection broke", &e)
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Failed {
                        kind: OutcomeKind::Rejected,
                        reason: format!("the answer is over {limit} bytes"),
                    }
                } else {
                    unreachable("the connection broke", &e)
                }
            })?
            .to_bytes();
        let phrase = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .or_else(|| parts.status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let challenges = parts
            .headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .take(8)
            .filter_map(|v| v.to_str().ok())
            .map(|v| crate::text::printable(v, false).into_owned())
            .collect();
        let retry_after = parts
            .headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        Ok(Answer {
            status: parts.status.as_u16(),
            retry_after,
            phrase: crate::text::printable(&phrase, false).into_owned(),
            challenges,
            body,
        })
    };
    // The connection is driven beside the request and ends when the answer is read (or
    // the phone closes it).
    let (answer, _) = tokio::join!(work, connection);
    answer
}
