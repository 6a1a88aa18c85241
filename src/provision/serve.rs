//! The provisioning server (`sipnotify serve`, and `batch --serve`): files from one
//! directory over HTTP or HTTPS, encrypted on the fly if asked, one JSON line per request.
//!
//! A path names a file under the directory. When that file does not exist, the file
//! `default` with the same extension in the same directory is served instead (a request
//! for `cfg/000e08012345.xml` gets `cfg/000e08012345.xml`, else `cfg/default.xml`): a
//! Profile_Rule such as `http://prov/cfg/$MA.xml` then needs a file only for the phones
//! that differ.
//!
//! Nothing in a request is trusted: each path segment is percent-decoded on its own and
//! refused when it is `..`, starts with `.`, or holds `/`, `\` or NUL; the resolved file
//! (symbolic links followed) must still be inside the directory; refusals are answered 404,
//! like a missing file, and logged with the reason. Request heads are bounded (16 KiB, and
//! 10 s to arrive), bodies are never read (GET and HEAD only), files are at most
//! [`MAX_PROFILE`], and connections at most [`MAX_CONNECTIONS`]. Basic credentials are
//! compared in constant time (SHA-256 of each side, then `subtle`).

use super::fetch::{mac_in, unix_now, Encoding, Fetch, FetchBoard};
use super::profile::{self, Md};
use super::{rfc8188, Ikm, Key, MAX_PROFILE};
use crate::Password;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// The most a request head may take (hyper's smallest buffer is 8 KiB).
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a request head may take to arrive (slow clients hold no slot for long).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How files are sent.
#[derive(Debug, Clone, Default)]
pub enum Encryption {
    /// As they are.
    #[default]
    None,
    /// Encrypted as `openssl enc -aes-256-cbc -k KEY` (SHA-256 derivation), for rules
    /// with `--key KEY`; files already in that format are sent as they are.
    Cbc(Key),
    /// RFC 8188 with `Content-Encoding: aes128gcm`, for phones with this IKM.
    Rfc8188(Ikm),
}

/// The one user and password the server accepts (a rule's `--uid` and `--pwd`).
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: Password,
}

/// What to serve and how.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The directory served.
    pub root: PathBuf,
    /// How files are sent.
    pub encryption: Encryption,
    /// Credentials required, if any.
    pub auth: Option<BasicAuth>,
    /// Appends one JSON line per request here.
    pub log: Option<PathBuf>,
    /// Hands each request to a campaign waiting for fetches.
    pub board: Option<Arc<FetchBoard>>,
    /// HTTPS with this certificate and key ([`tls_config`]), else HTTP.
    pub tls: Option<Arc<TlsConfig>>,
    /// Store the configuration reports phones POST or PUT (their Report_Rule) here, at
    /// their path; without it such requests are refused with 405.
    pub reports: Option<PathBuf>,
    /// How many bytes the stored reports may grow by while this server runs, each new file
    /// or directory counted as [`ENTRY_COST`] more: past it an upload is refused (507) and
    /// not stored, so that uploads cannot fill the disk.
    pub reports_quota: u64,
}

/// What a new report file or directory costs of [`ServeConfig::reports_quota`] beyond its
/// bytes: a block, so that empty files cannot be made without end either.
pub const ENTRY_COST: u64 = 4096;

/// The longest a report's body may take in all, however steadily it trickles: a client
/// cannot hold one of the [`MAX_CONNECTIONS`] for longer.
pub const REPORT_WITHIN: Duration = Duration::from_secs(60);

/// A server's TLS settings.
pub type TlsConfig = rustls::ServerConfig;

/// A TLS server configuration from a PEM certificate chain and a PEM private key, with
/// rustls' safe defaults (TLS 1.2 and 1.3) and the *ring* provider.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<TlsConfig>, ServeError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("the certificate", &e))?;
    if chain.is_empty() {
        return Err(ServeError::Tls(
            "the certificate file holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("the key", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("the certificate and key", &e))?;
    Ok(Arc::new(config))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The directory cannot be served.
    #[error("cannot serve {0}: {1}")]
    Root(PathBuf, std::io::Error),
    /// The reports directory cannot be made.
    #[error("cannot store reports in {0}: {1}")]
    Reports(PathBuf, std::io::Error),
    /// The reports directory and the served one overlap: an upload could replace a
    /// profile, or a report (which may hold a line's password) be fetched.
    #[error(
        "--reports {0} overlaps the served directory: uploads could replace profiles or be \
         fetched; give a directory outside it"
    )]
    ReportsOverlap(PathBuf),
    /// The log is inside the served directory: anyone could fetch it.
    #[error("--log {0} is inside the served directory: anyone could fetch it (addresses, MACs); keep the log elsewhere")]
    LogServed(PathBuf),
    /// The log is inside the reports directory: an upload could replace it.
    #[error("--log {0} is inside --reports: an upload could replace it; keep the log elsewhere")]
    LogInReports(PathBuf),
    /// The log cannot be opened.
    #[error("cannot open the log {0}: {1}")]
    Log(PathBuf, std::io::Error),
    /// The address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

struct Shared {
    root: PathBuf,
    encryption: Encryption,
    auth: Option<BasicAuth>,
    log: Option<Mutex<std::fs::File>>,
    board: Option<Arc<FetchBoard>>,
    reports: Option<PathBuf>,
    /// What is left of the reports' quota.
    reports_room: Mutex<u64>,
}

/// A server that is running.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and ends the connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts serving on `listen`.
pub async fn spawn(listen: SocketAddr, config: ServeConfig) -> Result<RunningServer, ServeError> {
    let root = std::fs::canonicalize(&config.root)
        .and_then(|root| {
            if root.is_dir() {
                Ok(root)
            } else {
                Err(std::io::Error::other("not a directory"))
            }
        })
        .map_err(|e| ServeError::Root(config.root.clone(), e))?;
    let reports = config
        .reports
        .as_deref()
        .map(|dir| reports_dir(dir, &root))
        .transpose()?;
    if let Some(log) = &config.log {
        if crate::paths::inside(log, &root) {
            return Err(ServeError::LogServed(log.clone()));
        }
        if reports
            .as_ref()
            .is_some_and(|dir| crate::paths::inside(log, dir))
        {
            return Err(ServeError::LogInReports(log.clone()));
        }
    }
    let log = match &config.log {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| ServeError::Log(path.clone(), e))?,
        )),
        None => None,
    };
    let (listener, addr) = crate::net::listen(listen)
        .await
        .map_err(|e| ServeError::Bind(listen, e))?;
    let shared = Arc::new(Shared {
        root,
        encryption: config.encryption,
        auth: config.auth,
        log,
        board: config.board,
        reports,
        reports_room: Mutex::new(config.reports_quota),
    });
    let app = Router::new().fallback(handle).with_state(shared);
    Ok(RunningServer::start(listener, addr, app, config.tls))
}

impl RunningServer {
    /// Serves `app` on `listener` (which listens on `addr`) with this module's bounds:
    /// [`MAX_CONNECTIONS`], request heads of [`MAX_HEAD`] within [`HEAD_TIMEOUT`], TLS when
    /// given. The service mode (`crate::api`) serves its routes through it too.
    pub(crate) fn start(
        listener: TcpListener,
        addr: SocketAddr,
        app: Router,
        tls: Option<Arc<TlsConfig>>,
    ) -> RunningServer {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept(listener, app, tls, stopped));
        RunningServer { addr, stop, task }
    }
}

/// Accepts connections until stopped, each served by hyper with bounded heads.
async fn accept(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<TlsConfig>>,
    mut stopped: watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt;
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let service =
            app.clone()
                .map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(peer);
                    request
                });
        let stopped = stopped.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper_util::service::TowerToHyperService::new(service);
            match tls {
                None => connection(TokioIo::new(stream), service, stopped).await,
                // The handshake is bounded like a request head.
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await
                    {
                        connection(TokioIo::new(stream), service, stopped).await;
                    }
                }
            }
        });
    }
}

/// Serves one connection (plain or TLS) with bounded heads, until it ends or the server
/// stops.
async fn connection<I, S>(io: I, service: S, mut stopped: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped.changed() => {}
    }
}

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A segment is `..`, starts with `.`, or holds `/`, `\` or NUL once decoded.
    Segment,
    /// Bad percent-encoding, or not UTF-8.
    Encoding,
    /// The file, symbolic links followed, is outside the directory.
    Outside,
}

impl Refusal {
    fn note(self) -> &'static str {
        match self {
            Refusal::Segment => "refused: a path segment is .., hidden, or holds / \\ or NUL",
            Refusal::Encoding => "refused: bad percent-encoding",
            Refusal::Outside => "refused: the file is outside the directory",
        }
    }
}

/// The request path as segments under the directory (empty segments dropped).
pub fn segments(raw: &str) -> Result<Vec<String>, Refusal> {
    let mut out = Vec::new();
    for part in raw.split('/') {
        let decoded = percent_decode(part).ok_or(Refusal::Encoding)?;
        if decoded.is_empty() {
            continue;
        }
        if decoded.starts_with('.') || decoded.contains(['/', '\\', '\0']) {
            return Err(Refusal::Segment);
        }
        out.push(decoded);
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file to serve: the path's, else `default.EXT` beside it; `Ok(None)` when neither
/// exists. Symbolic links are followed and the result must be inside `root` (canonical).
fn lookup(root: &Path, segments: &[String]) -> Result<Option<PathBuf>, Refusal> {
    let Some((last, dirs)) = segments.split_last() else {
        return Ok(None);
    };
    let dir: PathBuf = dirs.iter().fold(root.to_path_buf(), |p, s| p.join(s));
    let fallback = match Path::new(last).extension() {
        Some(ext) => format!("default.{}", ext.to_string_lossy()),
        None => "default".to_string(),
    };
    for candidate in [dir.join(last), dir.join(fallback)] {
        let Ok(real) = std::fs::canonicalize(&candidate) else {
            continue;
        };
        if !real.starts_with(root) {
            return Err(Refusal::Outside);
        }
        if real.is_file() {
            return Ok(Some(real));
        }
    }
    Ok(None)
}

/// Whether the request carries the server's Basic credentials: user and password are
/// both compared ([`same_secret`]) before the result is looked at.
fn authorized(auth: &BasicAuth, headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(value)
        })
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .unwrap_or_default();
    let (user, password) = match given.iter().position(|&b| b == b':') {
        Some(colon) => (&given[..colon], &given[colon + 1..]),
        None => (&given[..], &b""[..]),
    };
    let ok = same_secret(user, auth.user.as_bytes())
        & same_secret(password, auth.password.expose().as_bytes());
    bool::from(ok) && !given.is_empty()
}

/// Whether `given` is `expected`, in a time that depends on neither: each side is hashed
/// first, so that the lengths do not show, and the hashes are compared in constant time.
/// A `Choice`, so that a caller comparing several secrets looks at the result once.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> subtle::Choice {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given).ct_eq(&Sha256::digest(expected))
}

/// The reports directory, made private (0700) and canonical, and refused when it overlaps
/// the served `root`.
fn reports_dir(dir: &Path, root: &Path) -> Result<PathBuf, ServeError> {
    use std::os::unix::fs::DirBuilderExt;
    let failed = |e| ServeError::Reports(dir.to_path_buf(), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let dir = std::fs::canonicalize(dir).map_err(failed)?;
    if dir.starts_with(root) || root.starts_with(&dir) {
        return Err(ServeError::ReportsOverlap(dir));
    }
    Ok(dir)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<SocketAddr>()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let raw = request.uri().path().to_string();
    let agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mac = mac_in(&raw).or_else(|| mac_in(agent));
    let mut fetch = Fetch {
        at: unix_now(),
        addr: peer.ip().to_canonical(),
        path: crate::text::printable(&raw, false).into_owned(),
        mac: mac.map(|m| m.ma()),
        file: None,
        status: 200,
        bytes: 0,
        encoding: Encoding::Identity,
        note: None,
        method: (request.method() != Method::GET).then(|| request.method().to_string()),
    };
    let (parts, body) = request.into_parts();
    let response = match (&parts.method, &shared.reports) {
        (&Method::POST | &Method::PUT, Some(dir)) => {
            store_report(&shared, dir, &parts, body, &mut fetch).await
        }
        // A fetch's body is never read: only the head is used.
        _ => respond(&shared, &parts, &mut fetch).await,
    };
    shared.logged(&fetch);
    response
}

/// Stores a configuration report (the body of a POST or PUT, bounded by [`MAX_PROFILE`])
/// at its path under `dir`, as sent (encrypted or not): 201, or why not.
async fn store_report(
    shared: &Arc<Shared>,
    dir: &Path,
    request: &axum::http::request::Parts,
    body: Body,
    fetch: &mut Fetch,
) -> Response {
    let mut fail = |status: StatusCode, note: String| {
        fetch.status = status.as_u16();
        fetch.note = Some(note);
        status.into_response()
    };
    if let Some(auth) = &shared.auth {
        if !authorized(auth, &request.headers) {
            return unauthorized(fail(
                StatusCode::UNAUTHORIZED,
                "no or wrong credentials".into(),
            ));
        }
    }
    let segments = match segments(request.uri.path()) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return fail(StatusCode::NOT_FOUND, "a report needs a file name".into()),
        Err(refusal) => return fail(StatusCode::NOT_FOUND, refusal.note().into()),
    };
    let bytes = match read_body(body, MAX_PROFILE, HEAD_TIMEOUT, REPORT_WITHIN).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a report is at most {MAX_PROFILE} bytes"),
            )
        }
        Err(BodyError::Idle) => {
            return fail(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body paused over {} s", HEAD_TIMEOUT.as_secs()),
            )
        }
        Err(BodyError::Late) => {
            return fail(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body took over {} s", REPORT_WITHIN.as_secs()),
            )
        }
        Err(BodyError::Broken(e)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            )
        }
    };
    fetch.encoding = if request
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"aes128gcm"))
    {
        Encoding::Aes128gcm
    } else if profile::is_encrypted(&bytes) {
        Encoding::Aes256Cbc
    } else {
        Encoding::Identity
    };
    let rel = segments.join("/");
    let dir = dir.to_path_buf();
    let shared = Arc::clone(shared);
    let written =
        tokio::task::spawn_blocking(move || store(&dir, &segments, &bytes, &shared.reports_room))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
    match written {
        Ok(len) => {
            fetch.file = Some(rel);
            fetch.bytes = len;
            fetch.status = StatusCode::CREATED.as_u16();
            fetch.note = Some("report stored".into());
            StatusCode::CREATED.into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            fail(StatusCode::INSUFFICIENT_STORAGE, format!("not stored: {e}"))
        }
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot store it: {e}"),
        ),
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub(crate) enum BodyError<E = std::convert::Infallible> {
    /// Over the limit.
    TooLarge,
    /// No data for the idle time: a client that stops sending must not hold a connection.
    Idle,
    /// Not whole within the total time: nor may one that trickles.
    Late,
    /// The connection failed.
    Broken(String),
    /// Where the pieces go refused one.
    Sink(E),
}

/// Where [`read_pieces`] puts a body's pieces as they arrive.
pub(crate) trait Sink {
    /// Why a piece is refused.
    type Error;
    /// Takes one piece, or refuses the body.
    async fn take(&mut self, data: bytes::Bytes) -> Result<(), Self::Error>;
}

impl Sink for Vec<u8> {
    type Error = std::convert::Infallible;

    async fn take(&mut self, data: bytes::Bytes) -> Result<(), Self::Error> {
        self.extend_from_slice(&data);
        Ok(())
    }
}

/// Reads a body piece by piece into `sink`, each piece within `idle` of the last, the
/// whole within `within`, at most `limit` bytes in all.
pub(crate) async fn read_pieces<S: Sink>(
    mut body: Body,
    limit: u64,
    (idle, within): (Duration, Duration),
    sink: &mut S,
) -> Result<(), BodyError<S::Error>> {
    use http_body_util::BodyExt;
    // One timer for the whole body; the idle one is per piece.
    let late = tokio::time::sleep(within);
    tokio::pin!(late);
    let mut len = 0u64;
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(idle, body.frame()) => frame.map_err(|_| BodyError::Idle)?,
            () = &mut late => return Err(BodyError::Late),
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            sink.take(data).await.map_err(BodyError::Sink)?;
        }
    }
}

/// Reads a body of at most `limit` bytes, each piece within `idle`, the whole within
/// `within`.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    idle: Duration,
    within: Duration,
) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    read_pieces(body, limit as u64, (idle, within), &mut bytes).await?;
    Ok(bytes)
}

/// Stores a report at `segments` under `dir` ([`replace_file`]), its directories made
/// private (0700), none of them a symbolic link (which could lead out of `dir`), once what
/// it adds fits in `room` (else `StorageFull`, and nothing is made). The bytes written.
///
/// One report at a time, `room` held throughout: what a report replaces and the
/// directories it makes are then counted as they really are, however many uploads come at
/// once. Reports are few and small; fetches never wait for this.
fn store(dir: &Path, segments: &[String], bytes: &[u8], room: &Mutex<u64>) -> std::io::Result<u64> {
    use std::os::unix::fs::DirBuilderExt;
    let Some((name, dirs)) = segments.split_last() else {
        return Err(std::io::Error::other("no file name"));
    };
    let mut room = room.lock().unwrap_or_else(PoisonError::into_inner);
    let mut missing = Vec::with_capacity(dirs.len());
    let mut parent = dir.to_path_buf();
    for segment in dirs {
        parent.push(segment);
        match std::fs::symlink_metadata(&parent) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(std::io::Error::other("a path segment is not a directory")),
            Err(_) => missing.push(parent.clone()),
        }
    }
    let path = parent.join(name);
    let earlier = match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Err(std::io::Error::other("the path is not a regular file"))
        }
        Ok(meta) => Some(meta.len()),
        Err(_) => None,
    };
    // A replaced report gives its bytes back; a new file or directory costs a block more.
    let entries = missing.len() as u64 + u64::from(earlier.is_none());
    let cost = (bytes.len() as u64).saturating_add(ENTRY_COST * entries);
    let left = room
        .saturating_add(earlier.unwrap_or(0))
        .checked_sub(cost)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "the reports' quota (--reports-quota) is used up",
            )
        })?;
    let mut made = 0;
    let stored = missing
        .iter()
        .try_for_each(|parent| {
            std::fs::DirBuilder::new().mode(0o700).create(parent)?;
            made += 1;
            Ok(())
        })
        .and_then(|()| replace_file(&path, bytes, false));
    *room = match stored {
        Ok(()) => left,
        // Not stored: only the directories made stay charged.
        Err(_) => room.saturating_sub(ENTRY_COST * made),
    };
    stored.map(|()| bytes.len() as u64)
}

/// Replaces the file at `path` with `bytes`, readable by this user only (0600): written
/// under a unique temporary name beside it, then renamed over it, so a reader never sees
/// half a file and two writers never mix. With `sync`, the file and then its directory
/// reach the disk before this returns.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("no file name"));
    };
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = dir.join(format!(
        ".{}.{}-{n}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            if sync {
                file.sync_all()?;
            }
            std::fs::rename(&partial, path)
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    if sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Adds the Basic challenge to a 401.
fn unauthorized(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sipnotify\""),
    );
    response
}

impl Shared {
    fn logged(&self, fetch: &Fetch) {
        tracing::info!(
            addr = %fetch.addr, path = %fetch.path, status = fetch.status, bytes = fetch.bytes,
            "fetch"
        );
        if let Some(log) = &self.log {
            if let Ok(mut line) = serde_json::to_vec(fetch) {
                line.push(b'\n');
                let mut file = log.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = file.write_all(&line) {
                    tracing::warn!("serve: cannot write the log: {e}");
                }
            }
        }
        if let Some(board) = self.board.as_ref().filter(|_| fetch.is_fetch()) {
            board.record(fetch);
        }
    }
}

async fn respond(
    shared: &Arc<Shared>,
    request: &axum::http::request::Parts,
    fetch: &mut Fetch,
) -> Response {
    let mut fail = |status: StatusCode, note: &str| {
        fetch.status = status.as_u16();
        fetch.note = Some(note.to_string());
        status.into_response()
    };
    if !matches!(request.method, Method::GET | Method::HEAD) {
        let mut response = fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD (POST and PUT of reports with --reports DIR)",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if let Some(auth) = &shared.auth {
        if !authorized(auth, &request.headers) {
            return unauthorized(fail(StatusCode::UNAUTHORIZED, "no or wrong credentials"));
        }
    }
    let segments = match segments(request.uri.path()) {
        Ok(s) => s,
        Err(refusal) => return fail(StatusCode::NOT_FOUND, refusal.note()),
    };
    let root = shared.root.clone();
    type Found = Result<Option<(String, Result<Vec<u8>, String>)>, Refusal>;
    let found: Found = tokio::task::spawn_blocking(move || {
        let path = lookup(&root, &segments)?;
        Ok(path.map(|path| {
            let bytes = read_bounded(&path);
            let rel = path
                .strip_prefix(&root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            (rel, bytes)
        }))
    })
    .await
    .unwrap_or(Ok(None));
    let (rel, bytes) = match found {
        Err(refusal) => return fail(StatusCode::NOT_FOUND, refusal.note()),
        Ok(None) => {
            return fail(
                StatusCode::NOT_FOUND,
                "no such file, nor a default beside it",
            )
        }
        Ok(Some((rel, Err(e)))) => {
            fetch.file = Some(rel);
            return fail(StatusCode::INTERNAL_SERVER_ERROR, &e);
        }
        Ok(Some((rel, Ok(bytes)))) => (rel, bytes),
    };
    fetch.file = Some(rel);
    let mut headers = HeaderMap::new();
    let body = match &shared.encryption {
        Encryption::None if profile::is_encrypted(&bytes) => {
            fetch.encoding = Encoding::Aes256Cbc;
            bytes
        }
        Encryption::None => bytes,
        Encryption::Cbc(_) if profile::is_encrypted(&bytes) => {
            fetch.encoding = Encoding::Aes256Cbc;
            bytes
        }
        Encryption::Cbc(key) => {
            fetch.encoding = Encoding::Aes256Cbc;
            profile::encrypt(&bytes, key, Md::Sha256, rand::random())
        }
        Encryption::Rfc8188(ikm) => {
            fetch.encoding = Encoding::Aes128gcm;
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static("aes128gcm"),
            );
            rfc8188::encode(
                &bytes,
                ikm,
                rand::random(),
                rfc8188::DEFAULT_RECORD_SIZE,
                b"",
            )
            .expect("the default record size is valid and the key id empty")
        }
    };
    let content_type = if fetch.encoding == Encoding::Identity && !profile::is_gzip(&body) {
        "application/xml"
    } else {
        "application/octet-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    fetch.bytes = if request.method == Method::HEAD {
        0
    } else {
        body.len() as u64
    };
    (headers, Body::from(body)).into_response()
}

/// A file's bytes, at most [`MAX_PROFILE`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PROFILE as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.len() > MAX_PROFILE {
        return Err(format!(
            "the file is over {} MiB",
            MAX_PROFILE / (1024 * 1024)
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `pieces` one-byte pieces, one every `every`.
    fn trickle(pieces: usize, every: Duration) -> Body {
        let pieces = futures_util::stream::unfold(pieces, move |left| async move {
            if left == 0 {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")),
                left - 1,
            ))
        });
        Body::from_stream(pieces)
    }

    /// Each piece may pause up to the idle time, and the whole must end within its total:
    /// a client that trickles a byte just inside the idle time is cut off all the same.
    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_ends_at_its_total_time() {
        let (idle, within) = (Duration::from_secs(10), Duration::from_secs(60));
        let read = |pieces, every| {
            read_body(
                trickle(pieces, Duration::from_secs(every)),
                4096,
                idle,
                within,
            )
        };
        let started = tokio::time::Instant::now();
        assert!(matches!(read(1000, 9).await, Err(BodyError::Late)));
        assert_eq!(started.elapsed(), within);
        assert_eq!(read(6, 9).await.unwrap(), b"xxxxxx");
        assert!(matches!(read(2, 11).await, Err(BodyError::Idle)));
    }

    /// What a report adds to the reports is charged to the quota before anything is made:
    /// its bytes, and a block for each new file and directory; a replaced report gives its
    /// bytes back.
    #[test]
    fn reports_are_stored_within_their_quota() {
        let dir = std::env::temp_dir().join(format!("sipnotify-quota-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        let room = Mutex::new(4 * ENTRY_COST + 100);
        let left = || *room.lock().unwrap();
        // A report that cannot be written (its temporary name is too long) after its
        // directory was made: the directory stays, and stays charged; the file is not.
        let long = format!("t/{}", "n".repeat(250));
        let failed = store(&dir, &path(&long), b"", &room).unwrap_err();
        assert_ne!(failed.kind(), std::io::ErrorKind::StorageFull);
        assert!(dir.join("t").is_dir());
        assert_eq!(left(), 3 * ENTRY_COST + 100);
        // A new directory and file: 100 bytes and two blocks.
        assert_eq!(store(&dir, &path("r/a"), &[b'a'; 100], &room).unwrap(), 100);
        assert_eq!(left(), ENTRY_COST);
        // Replaced by a smaller one: the difference comes back.
        store(&dir, &path("r/a"), &[b'a'; 40], &room).unwrap();
        assert_eq!(left(), ENTRY_COST + 60);
        // A new file needs a block more than is left: refused, and nothing made.
        let refused = store(&dir, &path("s/b"), b"", &room).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
        assert!(!dir.join("s").exists());
        assert_eq!(left(), ENTRY_COST + 60);
        store(&dir, &path("r/b"), &[b'b'; 60], &room).unwrap();
        assert_eq!(left(), 0);
        // Replaced by many uploads at once: its bytes come back once, not once each.
        std::thread::scope(|threads| {
            for _ in 0..8 {
                threads.spawn(|| store(&dir, &path("r/b"), b"", &room).unwrap());
            }
        });
        assert_eq!(left(), 60);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn path_segments_refuse_escapes() {
        assert_eq!(segments("/cfg/a.xml").unwrap(), vec!["cfg", "a.xml"]);
        assert_eq!(
            segments("//cfg///a%20b.xml").unwrap(),
            vec!["cfg", "a b.xml"]
        );
        for bad in [
            "/../x",
            "/cfg/..",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/.hidden",
            "/a%2fb",
            "/a%5cb",
            "/a%00b",
        ] {
            assert_eq!(segments(bad), Err(Refusal::Segment), "{bad}");
        }
        for bad in ["/a%2", "/a%zz", "/%ff"] {
            assert_eq!(segments(bad), Err(Refusal::Encoding), "{bad}");
        }
    }

    #[test]
    fn lookup_falls_back_to_default_and_stays_inside() {
        let dir = std::env::temp_dir().join(format!("sipnotify-serve-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/cfg")).unwrap();
        std::fs::write(dir.join("root/cfg/default.xml"), "d").unwrap();
        std::fs::write(dir.join("root/cfg/000e08012345.xml"), "m").unwrap();
        std::fs::write(dir.join("secret.xml"), "s").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.xml"), dir.join("root/cfg/out.xml")).unwrap();
        let root = std::fs::canonicalize(dir.join("root")).unwrap();
        let seg = |s: &str| segments(s).unwrap();
        let found = |s: &str| {
            lookup(&root, &seg(s)).map(|p| p.map(|p| std::fs::read_to_string(p).unwrap()))
        };
        assert_eq!(found("/cfg/000e08012345.xml"), Ok(Some("m".into())));
        assert_eq!(found("/cfg/000e08099999.xml"), Ok(Some("d".into())));
        assert_eq!(found("/cfg/x.cfg"), Ok(None));
        assert_eq!(found("/cfg"), Ok(None));
        assert_eq!(found("/"), Ok(None));
        assert_eq!(found("/cfg/out.xml"), Err(Refusal::Outside));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn basic_auth() {
        use base64::Engine as _;
        let auth = BasicAuth {
            user: "admin".into(),
            password: Password::new("s3cret"),
        };
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(authorized(&auth, &with(&basic("admin:s3cret"))));
        assert!(authorized(
            &auth,
            &with(&basic("admin:s3cret").replace("Basic", "basic"))
        ));
        assert!(!authorized(&auth, &with(&basic("admin:s3cre"))));
        assert!(!authorized(&auth, &with(&basic("admin"))));
        assert!(!authorized(&auth, &with(&basic("Admin:s3cret"))));
        assert!(!authorized(&auth, &with("Bearer x")));
        assert!(!authorized(&auth, &HeaderMap::new()));
        let empty = BasicAuth {
            user: String::new(),
            password: Password::new(""),
        };
        assert!(!authorized(&empty, &HeaderMap::new()));
    }
}
