//! The simulated phone's web server (axum): Cisco's `POST /CGI/Execute`,
//! `GET /CGI/Screenshot` and `GET /DeviceInformationX`, and the MPP web interface's
//! `GET /admin/resync[?URL]`, `/admin/upgrade?URL` and `/admin/reboot`.
//!
//! Over HTTP, or HTTPS when [`WebConfig::tls`] gives a certificate.
//!
//! On a wildcard address each local address a connection reaches is a phone of its own
//! (its state is keyed by that address), so one process plays a fleet at `127.x.y.z`.
//! After a `setBackground` the phone downloads the image and the icon, from its own
//! address as a real phone would, before it answers: a URL that cannot be fetched makes
//! a failing `ResponseItem`, and is logged. Its screenshot is a PNG of the screen: the
//! background it shows, red stripes after a failed download, grey before any.

use crate::http::object::check_uri;
use crate::net::tls::Identity;
use crate::provision::serve::same_secret;
use crate::sip::digest::{self, Password, Qop};
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use axum::Router;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

/// How the web server checks its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebAuth {
    /// HTTP Basic, as CUCM phones (a wrong password: `CiscoIPPhoneError Number="4"`).
    #[default]
    Basic,
    /// HTTP Digest, as SPA/MPP phones in Local Credential mode (a wrong password: 401).
    Digest,
    /// None, as SPA/MPP phones in Trusted mode.
    None,
}

impl std::str::FromStr for WebAuth {
    type Err = super::BadSetting;

    fn from_str(s: &str) -> Result<WebAuth, super::BadSetting> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(WebAuth::Basic),
            "digest" => Ok(WebAuth::Digest),
            "none" => Ok(WebAuth::None),
            _ => Err(super::BadSetting(format!("`{s}`: basic, digest or none"))),
        }
    }
}

/// The simulated web server's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The authentication asked for.
    pub auth: WebAuth,
    /// Basic: answer wrong credentials with 401 (newer firmware) instead of
    /// `CiscoIPPhoneError Number="4"`.
    pub reject_with_401: bool,
    /// The web user.
    pub user: String,
    /// Its password.
    pub password: Password,
    /// The realm of the challenges.
    pub realm: String,
    /// The largest object taken (512 on classic phones).
    pub max_object: usize,
    /// Answer after this long.
    pub delay: Duration,
    /// Never answer this percentage of requests.
    pub drop_percent: f64,
    /// Answer this percentage of requests with 503.
    pub fail_percent: f64,
    /// The longest download of a background.
    pub fetch_timeout: Duration,
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<Identity>,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            auth: WebAuth::Basic,
            reject_with_401: false,
            user: "admin".into(),
            password: Password::new("pw-admin"),
            realm: "sipnotify-phone".into(),
            max_object: crate::http::object::DEFAULT_MAX_OBJECT,
            delay: Duration::ZERO,
            drop_percent: 0.0,
            fail_percent: 0.0,
            fetch_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// What the web server has done, over all its phones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebStats {
    /// Requests received.
    pub requests: u64,
    /// Objects executed (answered with a `CiscoIPPhoneResponse`).
    pub executed: u64,
    /// Backgrounds set (both downloads succeeded).
    pub backgrounds: u64,
    /// Downloads that failed.
    pub failed_fetches: u64,
    /// Requests refused for their credentials (401 or Error 4).
    pub refused: u64,
    /// Screenshots served.
    pub screenshots: u64,
    /// Distinct phones (local addresses) reached.
    pub phones: u64,
    /// Requests that reached a phone while it was still serving another one (a real
    /// phone's web server serves few at once).
    pub overlapping: u64,
    /// `/admin/resync` requests taken.
    pub resyncs: u64,
    /// `/admin/upgrade` requests taken.
    pub upgrades: u64,
    /// `/admin/reboot` requests taken.
    pub reboots: u64,
}

/// Called for each `/admin/resync` a phone takes, with the phone's web user, its MAC
/// address (the one `/DeviceInformationX` gives), the local address the request reached,
/// and the profile URL of the query, if any: the profile fetch hangs here (as
/// [`NotifyHook`](super::NotifyHook) for SIP). It must not block: it runs on the serving
/// task.
pub type ResyncHook = Arc<dyn Fn(&str, [u8; 6], SocketAddr, Option<String>) + Send + Sync>;

/// The screen's size, in pixels.
pub const SCREEN: (u32, u32) = (160, 96);

/// The most phones one process keeps state for.
const MAX_PHONES: usize = 1_000_000;

/// The largest request body read (the object limit applies to the decoded object).
const MAX_BODY: usize = 64 * 1024;

/// The largest background downloaded.
const MAX_IMAGE: usize = 4 << 20;

/// How long a nonce stays fresh.
const NONCE_LIFETIME: Duration = Duration::from_secs(30);

/// Distinct pictures kept decoded (a fleet usually shares one background).
const MAX_PICTURES: usize = 64;

/// A web server running; stopped on [`RunningWeb::shutdown`].
#[derive(Debug)]
pub struct RunningWeb {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningWeb {
    /// Where it listens.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `https` when it serves HTTPS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.shared.config.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Its counters.
    pub fn stats(&self) -> WebStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebStats {
            requests: get(&c.requests),
            executed: get(&c.executed),
            backgrounds: get(&c.backgrounds),
            failed_fetches: get(&c.failed_fetches),
            refused: get(&c.refused),
            screenshots: get(&c.screenshots),
            phones: self.shared.phones.lock().expect("lock").len() as u64,
            overlapping: get(&c.overlapping),
            resyncs: get(&c.resyncs),
            upgrades: get(&c.upgrades),
            reboots: get(&c.reboots),
        }
    }

    /// Stops accepting connections; those open end on their own.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    executed: AtomicU64,
    backgrounds: AtomicU64,
    failed_fetches: AtomicU64,
    refused: AtomicU64,
    screenshots: AtomicU64,
    overlapping: AtomicU64,
    resyncs: AtomicU64,
    upgrades: AtomicU64,
    reboots: AtomicU64,
}

struct Shared {
    config: WebConfig,
    resync: Option<ResyncHook>,
    /// Signs nonces, so that they need no state.
    secret: [u8; 16],
    phones: Mutex<HashMap<SocketAddr, PhoneState>>,
    pictures: Mutex<HashMap<[u8; 32], Arc<Picture>>>,
    /// Requests being served, per phone (phones with none are not kept).
    serving: Mutex<HashMap<SocketAddr, u32>>,
    counters: Counters,
}

/// A request being served by a phone: counted while it lives.
struct Serving<'a> {
    shared: &'a Shared,
    phone: SocketAddr,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let mut serving = self.shared.serving.lock().expect("lock");
        if let Some(n) = serving.get_mut(&self.phone) {
            *n -= 1;
            if *n == 0 {
                serving.remove(&self.phone);
            }
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("resync", &self.resync.is_some())
            .finish_non_exhaustive()
    }
}

/// One phone's screen.
#[derive(Debug, Default, Clone)]
struct PhoneState {
    background: Option<Background>,
}

#[derive(Debug, Clone)]
struct Background {
    /// What it shows, or why the download failed.
    shown: Result<Arc<Picture>, String>,
}

/// A background scaled to the screen, RGB.
#[derive(Debug)]
struct Picture {
    rgb: Vec<u8>,
}

/// The local address a connection reached: the phone it is for.
#[derive(Debug, Clone, Copy)]
struct Reached(SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Reached {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Reached {
        let local = stream
            .io()
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Reached(local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Reached {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Reached {
        Reached(*stream.remote_addr())
    }
}

/// The longest TLS handshake: a client that stalls in it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS handshakes run at once; more connections wait to be accepted.
const HANDSHAKES: usize = 256;

/// An HTTPS listener for axum. Each connection's handshake runs in a task of its own,
/// bounded in time and in number, so that a slow or silent client holds up no other;
/// `accept` hands over the finished ones, each with the local address it reached (its
/// `Addr`: the phone it is for).
struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn new(listener: TcpListener, identity: &Identity) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let config = identity
            .server_config()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (done, ready) = mpsc::channel(HANDSHAKES);
        let slots = Arc::new(Semaphore::new(HANDSHAKES));
        // Ends when the listener is dropped (the receiver closes).
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!("the web server cannot accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = done.closed() => return,
                };
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let reached = stream.local_addr();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            if let Ok(reached) = reached {
                                let _ = done.send((tls, reached)).await;
                            }
                        }
                        Ok(Err(e)) => tracing::info!("a TLS handshake failed: {e}"),
                        Err(_) => tracing::info!("a TLS handshake took over 10 s"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended: no connection will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Starts the web server on each address (port 0 picks a free one).
pub async fn spawn_web(config: WebConfig, addrs: &[SocketAddr]) -> std::io::Result<RunningWeb> {
    spawn_web_with_hook(config, addrs, None).await
}

/// [`spawn_web`], calling `resync` for each `/admin/resync` a phone takes.
pub async fn spawn_web_with_hook(
    config: WebConfig,
    addrs: &[SocketAddr],
    resync: Option<ResyncHook>,
) -> std::io::Result<RunningWeb> {
    let shared = Arc::new(Shared {
        config,
        resync,
        secret: rand::thread_rng().gen(),
        phones: Mutex::default(),
        pictures: Mutex::default(),
        serving: Mutex::default(),
        counters: Counters::default(),
    });
    let app = Router::new()
        .route("/CGI/Execute", post(execute))
        .route("/CGI/Screenshot", get(screenshot))
        .route("/DeviceInformationX", get(device_information))
        .route(
            crate::http::admin::RESYNC,
            get(admin_route(AdminAction::Resync)),
        )
        .route(
            crate::http::admin::UPGRADE,
            get(admin_route(AdminAction::Upgrade)),
        )
        .route(
            crate::http::admin::REBOOT,
            get(admin_route(AdminAction::Reboot)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            serve_with_faults,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared.clone());
    let mut running = RunningWeb {
        addrs: Vec::new(),
        shared,
        tasks: Vec::new(),
    };
    for addr in addrs {
        let (listener, local) = crate::net::listen(*addr).await?;
        running.addrs.push(local);
        let service = app.clone().into_make_service_with_connect_info::<Reached>();
        let served = match &running.shared.config.tls {
            None => tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, service).await {
                    tracing::warn!("the web server stopped: {e}");
                }
            }),
            Some(identity) => {
                let listener = TlsListener::new(listener, identity)?;
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, service).await {
                        tracing::warn!("the web server stopped: {e}");
                    }
                })
            }
        };
        running.tasks.push(served);
    }
    Ok(running)
}

type Phone = ConnectInfo<Reached>;

/// Every request routed: counted as served by its phone while it runs, and given the
/// faults (`--delay`, `--drop`, `--fail-percent`) before its handler, whatever its path.
async fn serve_with_faults(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Reached(phone)): Phone,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let _serving = shared.serving(phone);
    if let Some(early) = shared.faults().await {
        return early;
    }
    next.run(request).await
}

/// `POST /CGI/Execute`: the form field `XML` (case-sensitive) holds the object.
async fn execute(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Reached(phone)): Phone,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = shared.refusal(phone, &headers, "POST", "/CGI/Execute", &body, true) {
        return refusal;
    }
    let Some(xml) = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "XML")
        .map(|(_, value)| value.into_owned())
    else {
        tracing::info!(%phone, "no XML field in the form");
        return phone_error(1);
    };
    if xml.len() > shared.config.max_object {
        tracing::info!(%phone, size = xml.len(), "object over the limit");
        return phone_error(2);
    }
    let Ok(doc) = roxmltree::Document::parse(&xml) else {
        tracing::info!(%phone, "object not well-formed");
        return phone_error(1);
    };
    let root = doc.root_element();
    let items = match root.tag_name().name() {
        "CiscoIPPhoneExecute" => {
            let uris: Vec<String> = root
                .children()
                .filter(|n| n.has_tag_name("ExecuteItem"))
                .map(|n| n.attribute("URL").unwrap_or_default().to_string())
                .collect();
            if uris.is_empty() || uris.len() > crate::http::object::MAX_ITEMS {
                return phone_error(1);
            }
            uris.into_iter()
                .map(|uri| match check_uri(&uri) {
                    Ok(()) => (uri, 0, "Success".to_string()),
                    Err(_) => (uri, 1, "URI not supported".to_string()),
                })
                .collect()
        }
        "setBackground" => {
            let url = |name: &str| {
                root.descendants()
                    .find(|n| n.has_tag_name(name))
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            let (image, icon) = (url("image"), url("icon"));
            shared.set_background(phone, image, icon).await
        }
        name if name.starts_with("CiscoIPPhone") => vec![(String::new(), 0, "Success".into())],
        _ => return phone_error(1),
    };
    shared.counters.executed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%phone, object = root.tag_name().name(), "executed");
    let mut answer =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneResponse>");
    for (url, status, data) in items {
        answer += &format!(
            "<ResponseItem Status=\"{status}\" Data=\"{}\" URL=\"{}\"/>",
            quick_xml::escape::escape(data.as_str()),
            quick_xml::escape::escape(url.as_str())
        );
    }
    answer += "</CiscoIPPhoneResponse>";
    xml_response(StatusCode::OK, answer)
}

/// `GET /CGI/Screenshot`: the screen as a PNG.
async fn screenshot(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Reached(phone)): Phone,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = shared.refusal(phone, &headers, "GET", "/CGI/Screenshot", b"", true) {
        return refusal;
    }
    let background = shared
        .phones
        .lock()
        .expect("lock")
        .get(&phone)
        .and_then(|p| p.background.clone());
    shared.counters.screenshots.fetch_add(1, Ordering::Relaxed);
    let png = render(background.as_ref().map(|b| &b.shown));
    ([(header::CONTENT_TYPE, "image/png")], png).into_response()
}

/// `GET /DeviceInformationX`: the phone's identity, made from its address.
async fn device_information(ConnectInfo(Reached(phone)): Phone) -> Response {
    let id = identity(phone);
    let mac: String = id.iter().map(|b| format!("{b:02X}")).collect();
    let dn = 1000 + u32::from_be_bytes([0, id[3], id[4], id[5]]) % 9000;
    let serial: String = id[2..].iter().map(|b| format!("{b:02X}")).collect();
    xml_response(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DeviceInformation>\
             <MACAddress>{mac}</MACAddress><HostName>SEP{mac}</HostName><phoneDN>{dn}</phoneDN>\
             <appLoadID>sip88xx.14-2-1-0001-14</appLoadID><bootLoadID>PC0303000003</bootLoadID>\
             <versionID>sip88xx.14-2-1-0001-14</versionID><hardwareRevision>1.0</hardwareRevision>\
             <serialNumber>FCH{serial}</serialNumber><modelNumber>CP-8845</modelNumber>\
             <messageWaiting>No</messageWaiting></DeviceInformation>"
        ),
    )
}

/// An MPP web action.
#[derive(Debug, Clone, Copy)]
enum AdminAction {
    Resync,
    Upgrade,
    Reboot,
}

/// `GET /admin/resync[?URL]`, `/admin/upgrade?URL` and `/admin/reboot`, after faults and
/// credentials (the digest's URI is the whole request target, query included). A resync
/// is answered at once, then fetches and applies the profile at URL (its Profile_Rule
/// without one) through the resync hook. An upgrade's URL is logged and counted, not
/// downloaded: a load is tens of megabytes, and the simulator has no firmware to replace.
/// A reboot is logged and counted.
async fn admin(
    action: AdminAction,
    shared: Arc<Shared>,
    phone: SocketAddr,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let target = uri.path_and_query().map_or(uri.path(), |t| t.as_str());
    if let Some(refusal) = shared.refusal(phone, &headers, "GET", target, b"", false) {
        return refusal;
    }
    let url = uri.query().filter(|q| !q.is_empty()).map(str::to_string);
    // A URL with credentials in it (the guide's form appends `&xpassword=`) is not logged.
    let shown = url
        .as_deref()
        .map(|u| match crate::http::admin::carries_credentials(u) {
            true => "<a URL carrying credentials, not shown>".to_string(),
            false => crate::text::printable(u, false).into_owned(),
        });
    let counters = &shared.counters;
    match action {
        AdminAction::Resync => {
            counters.resyncs.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%phone, url = shown, "resync requested");
            if let Some(hook) = &shared.resync {
                hook(&shared.config.user, identity(phone), phone, url);
            }
            page("resync requested")
        }
        AdminAction::Upgrade => {
            let Some(shown) = shown else {
                let missing = "no firmware URL: /admin/upgrade?URL";
                return (StatusCode::BAD_REQUEST, missing).into_response();
            };
            counters.upgrades.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%phone, url = %shown, "upgrade requested");
            page("upgrade requested")
        }
        AdminAction::Reboot => {
            counters.reboots.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%phone, "reboot requested");
            page("reboot requested")
        }
    }
}

/// The handler of one MPP web action's path.
fn admin_route(
    action: AdminAction,
) -> impl Fn(State<Arc<Shared>>, Phone, HeaderMap, Uri) -> BoxedResponse + Clone + Send + Sync + 'static
{
    move |State(shared), ConnectInfo(Reached(phone)), headers, uri| {
        Box::pin(admin(action, shared, phone, headers, uri))
    }
}

/// A handler's answer, to come.
type BoxedResponse = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// A 200 with a short page, as the web interface answers an action.
fn page(what: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<html><body><p>{what}</p></body></html>\n"),
    )
        .into_response()
}

/// Six bytes naming a phone: 02 (a locally administered MAC), its IPv4 address and the
/// low byte of its port (for IPv6, the last bytes of the address).
fn identity(phone: SocketAddr) -> [u8; 6] {
    let ip = match phone.ip() {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, ip[0], ip[1], ip[2], ip[3], phone.port() as u8]
}

impl Shared {
    /// Counts a request as being served by `phone` until the guard drops, and one that
    /// overlaps another.
    fn serving(&self, phone: SocketAddr) -> Serving<'_> {
        let mut serving = self.serving.lock().expect("lock");
        let n = serving.entry(phone).or_default();
        if *n > 0 {
            self.counters.overlapping.fetch_add(1, Ordering::Relaxed);
        }
        *n += 1;
        Serving {
            shared: self,
            phone,
        }
    }

    /// `--delay`, `--drop` and `--fail-percent`: an answer to give at once, if any.
    async fn faults(&self) -> Option<Response> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let config = &self.config;
        if !config.delay.is_zero() {
            tokio::time::sleep(config.delay).await;
        }
        let (drop, fail) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_bool(config.drop_percent / 100.0),
                rng.gen_bool(config.fail_percent / 100.0),
            )
        };
        if drop {
            // No answer: the connection stays silent until the client gives up.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        fail.then(|| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "busy",
            )
                .into_response()
        })
    }

    /// Checks the request's credentials: the answer that refuses it, or `None`. A wrong
    /// Basic password on the CGI pages (`cgi`) is answered as CUCM phones do, with
    /// `CiscoIPPhoneError Number="4"` (unless `--http-reject-401`); elsewhere with a 401.
    fn refusal(
        &self,
        phone: SocketAddr,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
        cgi: bool,
    ) -> Option<Response> {
        if let Some(full) = self.remember(phone) {
            return Some(full);
        }
        let config = &self.config;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let refused = |response: Response| {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%phone, path, "credentials refused");
            Some(response)
        };
        match config.auth {
            WebAuth::None => None,
            WebAuth::Basic => match given.and_then(decode_basic) {
                None => refused(self.challenge(false)),
                // Both compared in constant time before either result is used.
                Some((user, password))
                    if bool::from(
                        same_secret(user.as_bytes(), config.user.as_bytes())
                            & same_secret(password.as_bytes(), config.password.expose().as_bytes()),
                    ) =>
                {
                    None
                }
                Some(_) if config.reject_with_401 || !cgi => refused(self.challenge(false)),
                Some(_) => refused(phone_error(4)),
            },
            WebAuth::Digest => {
                let Some(answer) = given.and_then(|v| digest::parse_authorization(v).ok()) else {
                    return refused(self.challenge(false));
                };
                match self.nonce_age(&answer.nonce) {
                    Some(age) if age <= NONCE_LIFETIME => {}
                    Some(_) => return refused(self.challenge(true)),
                    None => return refused(self.challenge(false)),
                }
                if answer.username == config.user
                    && answer.realm == config.realm
                    && answer.uri == path
                    && digest::verify(&answer, &config.password, method, body)
                {
                    None
                } else {
                    refused(self.challenge(false))
                }
            }
        }
    }

    /// Counts a phone the first time it is reached; refuses one past the limit.
    fn remember(&self, phone: SocketAddr) -> Option<Response> {
        let mut phones = self.phones.lock().expect("lock");
        if phones.len() >= MAX_PHONES && !phones.contains_key(&phone) {
            return Some((StatusCode::SERVICE_UNAVAILABLE, "too many phones").into_response());
        }
        phones.entry(phone).or_default();
        None
    }

    /// A 401 with this server's challenge.
    fn challenge(&self, stale: bool) -> Response {
        let value = match self.config.auth {
            WebAuth::Digest => digest::challenge_header(
                &self.config.realm,
                &self.nonce(),
                "MD5",
                Some(Qop::Auth),
                None,
                stale,
            ),
            _ => format!("Basic realm=\"{}\"", self.config.realm),
        };
        let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    /// A nonce that needs no state: its time and a signature of it.
    fn nonce(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("{now:x}.{}", self.sign(now))
    }

    fn sign(&self, time: u64) -> String {
        let mac = Sha256::new()
            .chain_update(self.secret)
            .chain_update(time.to_be_bytes())
            .finalize();
        mac[..12].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// How old a nonce of ours is; `None` for one we did not make.
    fn nonce_age(&self, nonce: &str) -> Option<Duration> {
        let (time, mac) = nonce.split_once('.')?;
        let time = u64::from_str_radix(time, 16).ok()?;
        if self.sign(time) != mac {
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Some(Duration::from_secs(now.saturating_sub(time)))
    }

    /// Downloads the image and the icon from the phone's own address, shows the image,
    /// and says how each download went.
    async fn set_background(
        &self,
        phone: SocketAddr,
        image: String,
        icon: String,
    ) -> Vec<(String, i32, String)> {
        let mut items = Vec::new();
        let mut shown = Err("no image".to_string());
        for (which, url) in [("image", &image), ("icon", &icon)] {
            let fetched = fetch(url, phone.ip(), self.config.fetch_timeout).await;
            let item = match &fetched {
                Ok(_) => (url.clone(), 0, "Success".to_string()),
                Err(why) => {
                    self.counters.failed_fetches.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%phone, url = %crate::text::printable(url, false), "cannot fetch the {which}: {why}");
                    (url.clone(), 1, format!("cannot fetch the {which}: {why}"))
                }
            };
            items.push(item);
            if which == "image" {
                shown = fetched.and_then(|bytes| self.picture(&bytes));
            }
        }
        if items.iter().all(|(_, status, _)| *status == 0) {
            self.counters.backgrounds.fetch_add(1, Ordering::Relaxed);
        }
        self.phones.lock().expect("lock").insert(
            phone,
            PhoneState {
                background: Some(Background { shown }),
            },
        );
        items
    }

    /// The picture of a downloaded image, decoded once per distinct image.
    fn picture(&self, bytes: &[u8]) -> Result<Arc<Picture>, String> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(picture) = self.pictures.lock().expect("lock").get(&key) {
            return Ok(picture.clone());
        }
        let picture = Arc::new(decode_scaled(bytes)?);
        let mut pictures = self.pictures.lock().expect("lock");
        if pictures.len() >= MAX_PICTURES {
            pictures.clear();
        }
        pictures.insert(key, picture.clone());
        Ok(picture)
    }
}

/// `Basic base64(user:password)`, decoded.
fn decode_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A `CiscoIPPhoneError`, with HTTP 200 as the phones send it.
fn phone_error(number: u32) -> Response {
    xml_response(
        StatusCode::OK,
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneError Number=\"{number}\"/>"
        ),
    )
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Downloads an http:// URL, from `from` when it can (as the phone itself would).
async fn fetch(url: &str, from: IpAddr, timeout: Duration) -> Result<Bytes, String> {
    crate::event::check_http_url(url).map_err(|_| "not an http:// URL".to_string())?;
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// is downloaded by the simulator".into());
    }
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let work = async {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {host}"))?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        // From the phone's own address when the families match, as a real phone fetches.
        if from.is_ipv4() == addr.is_ipv4() && !from.is_unspecified() {
            let _ = socket.bind(SocketAddr::new(from, 0));
        }
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let request = http::Request::get(path)
            .header(header::HOST, format!("{host}:{port}"))
            .header(header::CONNECTION, "close")
            .header(header::USER_AGENT, "sipnotify-phone")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let get = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(response.status().to_string());
            }
            Limited::new(response.into_body(), MAX_IMAGE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string())
        };
        let (bytes, _) = tokio::join!(get, connection);
        bytes
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {} s", timeout.as_secs_f64())))
}

/// A PNG decoded and scaled to the screen (nearest neighbour), RGB.
fn decode_scaled(bytes: &[u8]) -> Result<Picture, String> {
    let mut decoder =
        png::Decoder::new_with_limits(std::io::Cursor::new(bytes), png::Limits { bytes: 64 << 20 });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let size = reader.output_buffer_size().ok_or("the PNG is too large")?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("not a PNG: {e}"))?;
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    if w == 0 || h == 0 {
        return Err("an empty PNG".into());
    }
    let (sw, sh) = (SCREEN.0 as usize, SCREEN.1 as usize);
    let mut rgb = Vec::with_capacity(sw * sh * 3);
    for y in 0..sh {
        for x in 0..sw {
            let at = (y * h / sh) * info.line_size + (x * w / sw) * channels;
            let px = &buf[at..at + channels];
            match channels {
                1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
                _ => rgb.extend_from_slice(&px[..3]),
            }
        }
    }
    Ok(Picture { rgb })
}

/// The screen as a PNG: the background, red stripes after a failed download, or grey;
/// a dark status bar on top.
fn render(background: Option<&Result<Arc<Picture>, String>>) -> Vec<u8> {
    let (w, h) = (SCREEN.0 as usize, SCREEN.1 as usize);
    let mut rgb = match background {
        Some(Ok(picture)) => picture.rgb.clone(),
        Some(Err(_)) => (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                if (x + y) / 8 % 2 == 0 {
                    [0xc0, 0x20, 0x20]
                } else {
                    [0x60, 0x10, 0x10]
                }
            })
            .collect(),
        None => vec![0x50; w * h * 3],
    };
    for px in rgb[..w * 12 * 3].chunks_exact_mut(3) {
        px.copy_from_slice(&[0x10, 0x18, 0x20]);
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, SCREEN.0, SCREEN.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&rgb));
    debug_assert!(written.is_ok(), "an in-memory PNG of the screen's size");
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screens_are_pngs_showing_the_background() {
        let decode = |png: &[u8]| decode_scaled(png).unwrap().rgb;
        let grey = decode(&render(None));
        assert_eq!(grey.len(), 160 * 96 * 3);
        assert_eq!(&grey[160 * 50 * 3..160 * 50 * 3 + 3], &[0x50, 0x50, 0x50]);
        let failed = decode(&render(Some(&Err("404".into()))));
        assert_eq!(&failed[160 * 50 * 3..160 * 50 * 3 + 3], &[0xc0, 0x20, 0x20]);
        // A blue background, scaled from 4x2.
        let mut blue_png = Vec::new();
        let mut encoder = png::Encoder::new(&mut blue_png, 4, 2);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(&[0, 0, 255, 255].repeat(8))
            .unwrap();
        let picture = Arc::new(decode_scaled(&blue_png).unwrap());
        let shown = decode(&render(Some(&Ok(picture))));
        assert_eq!(&shown[160 * 50 * 3..160 * 50 * 3 + 3], &[0, 0, 255]);
        assert!(decode_scaled(b"GIF89a").is_err());
    }

    #[test]
    fn basic_credentials_and_identities() {
        assert_eq!(
            decode_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(decode_basic("Digest x"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
        let a = identity("127.0.3.4:80".parse().unwrap());
        assert_eq!(a, [2, 127, 0, 3, 4, 80]);
        assert_ne!(a, identity("127.0.3.5:80".parse().unwrap()));
    }
}
