//! The service mode (`sipnotify api`): one NOTIFY and whole campaigns behind an HTTP JSON
//! API, for proxies and provisioning systems that act on phones without running a process
//! per command, and Prometheus metrics for their monitoring.
//!
//! The routes (described by [`OPENAPI`], served at `/v1/openapi.json`):
//!
//! - `POST /v1/notify`: a JSON object names one target; the NOTIFY is sent and the answer is
//!   the JSON record `--output json` prints ([`notify`]).
//! - `POST /v1/campaigns?event=reboot&rate=500&...`: a campaign of the rows in the body
//!   (`text/csv` or `application/x-ndjson`) or in `?input=PATH`, whose parameters are
//!   `sipnotify batch`'s long options, turned into its settings by a [`Settings`] (the
//!   command line's own parser); `GET /v1/campaigns/{id}`, its state and counts;
//!   `GET /v1/campaigns/{id}/records?offset=N&follow=true`, its records as JSON Lines;
//!   `DELETE /v1/campaigns/{id}`, stop it like Ctrl-C ([`campaigns`]).
//! - `GET /metrics`: targets by outcome and event, latency, targets in flight,
//!   retransmissions, campaigns by state ([`metrics`]); `GET /healthz`.
//!
//! Security: every route but `/healthz` needs `Authorization: Bearer TOKEN` when a token is
//! configured, compared in constant time, and [`spawn`] refuses a non-loopback address
//! without one; request bodies are bounded ([`MAX_NOTIFY_BODY`], [`MAX_CAMPAIGN_BODY`]);
//! no password, key or token a request carries is logged or quoted in an error (errors may
//! quote what they refuse: a target, a rate, a file's path); every error, 404 and 405
//! included, is `{"error": MESSAGE}`. Connections are served as the provisioning server
//! serves them (bounded heads and count, optional TLS).
//!
//! Each campaign lives in a folder of the state directory, with its parameters, its rows,
//! its journal (the campaign's own, with its OS lock and durable intents) and its records.
//! A service killed and restarted resumes the campaigns that had not ended: the journal
//! skips the targets it has results for and never sends again one that was started.

pub mod campaigns;
pub mod metrics;
pub mod notify;

pub use campaigns::{BadQuery, CampaignSettings, Settings};

use crate::provision::serve::{self, same_secret, BodyError, RunningServer, Sink, TlsConfig};
use crate::{Notifier, NotifierConfig, Password};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The OpenAPI 3 description of the routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The largest `POST /v1/notify` body: one target's JSON object.
pub const MAX_NOTIFY_BODY: usize = 64 * 1024;

/// The largest campaign body (its rows), written to the state directory as it arrives;
/// a larger input is given as `?input=PATH`.
pub const MAX_CAMPAIGN_BODY: u64 = 64 << 20;

/// How the service runs.
pub struct ApiConfig {
    /// Where campaigns keep their parameters, rows, journals and records.
    pub state_dir: PathBuf,
    /// The bearer token every route but `/healthz` requires; needed off loopback.
    pub token: Option<Password>,
    /// HTTPS with this certificate and key, else HTTP.
    pub tls: Option<Arc<TlsConfig>>,
    /// Turns a campaign's query parameters into its settings.
    pub settings: Arc<dyn Settings>,
    /// How `POST /v1/notify` sends (campaigns have their own, from their parameters).
    pub notifier: NotifierConfig,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A non-loopback address and no token: anyone who reaches it could act on every phone.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could act on \
         every phone; give --token-file FILE, or listen on a loopback address (127.0.0.1, ::1)"
    )]
    NoToken(SocketAddr),
    /// The state directory cannot be used.
    #[error("cannot use the state directory {0}: {1}")]
    StateDir(PathBuf, std::io::Error),
    /// Another service holds the state directory.
    #[error(
        "another sipnotify api{} is using the state directory {0}: stop it, or give another \
         --state-dir",
        .1.map_or(String::new(), |pid| format!(" (pid {pid})"))
    )]
    Busy(PathBuf, Option<u32>),
    /// The address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The notifier of `POST /v1/notify` cannot be bound.
    #[error("cannot bind a UDP socket for /v1/notify: {0}")]
    Notifier(std::io::Error),
}

/// What every handler shares.
struct Service {
    token: Option<Password>,
    notifier: Notifier,
    metrics: Arc<metrics::Metrics>,
    campaigns: campaigns::Campaigns,
}

/// A service that is running.
pub struct RunningApi {
    server: RunningServer,
    service: Arc<Service>,
    resumed: usize,
}

impl RunningApi {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The campaigns resumed from the state directory at start.
    pub fn resumed(&self) -> usize {
        self.resumed
    }

    /// Stops accepting requests, then stops the running campaigns as Ctrl-C would and waits
    /// for their targets in flight: they are journaled, and resumed at the next start.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        self.service.campaigns.shutdown().await;
    }
}

/// Starts the service on `listen`, resuming the state directory's unfinished campaigns.
pub async fn spawn(listen: SocketAddr, config: ApiConfig) -> Result<RunningApi, ApiError> {
    if config.token.is_none() && !listen.ip().is_loopback() {
        return Err(ApiError::NoToken(listen));
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let campaigns = campaigns::Campaigns::open(&config.state_dir, config.settings, &metrics)?;
    let notifier = Notifier::bind(config.notifier)
        .await
        .map_err(ApiError::Notifier)?;
    let (listener, addr) = crate::net::listen(listen)
        .await
        .map_err(|e| ApiError::Bind(listen, e))?;
    let service = Arc::new(Service {
        token: config.token,
        notifier,
        metrics,
        campaigns,
    });
    let resumed = service.campaigns.resume().await;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/notify", post(notify::handle))
        .route("/v1/campaigns", post(campaigns::start))
        .route(
            "/v1/campaigns/{id}",
            get(campaigns::status).delete(campaigns::stop),
        )
        .route("/v1/campaigns/{id}/records", get(campaigns::records))
        .route(HEALTHZ, get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(service.clone(), authorized))
        .with_state(service.clone());
    Ok(RunningApi {
        server: RunningServer::start(listener, addr, app, config.tls),
        service,
        resumed,
    })
}

/// A JSON error: `{"error": MESSAGE}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

/// The one route that needs no token: a load balancer's or orchestrator's probe.
const HEALTHZ: &str = "/healthz";

/// Requires the bearer token, when there is one, compared in constant time, on every
/// route but [`HEALTHZ`] (unknown paths included, so that they do not tell what exists).
async fn authorized(State(service): State<Arc<Service>>, request: Request, next: Next) -> Response {
    let Some(token) = service
        .token
        .as_ref()
        .filter(|_| request.uri().path() != HEALTHZ)
    else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(value.trim())
        });
    let same = same_secret(given.unwrap_or("").as_bytes(), token.expose().as_bytes());
    if bool::from(same) && given.is_some() {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "no or wrong token: send the header `Authorization: Bearer TOKEN`, TOKEN as in the \
         service's --token-file",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sipnotify\""),
    );
    response
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn scrape(State(service): State<Arc<Service>>) -> Response {
    let text = service.metrics.encode(&service.campaigns.by_state());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route: see /v1/openapi.json for the routes",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take this method: see /v1/openapi.json for the routes",
    )
}

/// How long a body may pause: a client that stops sending holds no connection for long.
pub const BODY_IDLE: Duration = Duration::from_secs(30);

/// How long a whole body may take: nor does a client that trickles it.
pub const BODY_WITHIN: Duration = Duration::from_secs(600);

/// 408, for a body that paused longer than [`BODY_IDLE`], or with `late` took longer than
/// [`BODY_WITHIN`].
fn body_timeout(late: bool) -> Response {
    let how = match late {
        false => format!("stopped arriving for {} s", BODY_IDLE.as_secs()),
        true => format!("took over {} s", BODY_WITHIN.as_secs()),
    };
    error(
        StatusCode::REQUEST_TIMEOUT,
        format!("the body {how}; nothing was sent"),
    )
}

/// Reads a body piece by piece into `sink` ([`serve::read_pieces`]), each piece within
/// [`BODY_IDLE`] of the last and the whole within [`BODY_WITHIN`] (408 otherwise), at most
/// `limit` bytes (`too_large(limit)` past it), 400 if it breaks off.
async fn read_pieces<S: Sink<Error = Response>>(
    body: Body,
    limit: u64,
    too_large: fn(u64) -> Response,
    sink: &mut S,
) -> Result<(), Response> {
    serve::read_pieces(body, limit, (BODY_IDLE, BODY_WITHIN), sink)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(limit),
            BodyError::Idle => body_timeout(false),
            BodyError::Late => body_timeout(true),
            BodyError::Broken(e) => error(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}"),
            ),
            BodyError::Sink(refused) => refused,
        })
}

/// The pieces of a body kept whole.
struct Whole(bytes::BytesMut);

impl Sink for Whole {
    type Error = Response;

    async fn take(&mut self, data: bytes::Bytes) -> Result<(), Response> {
        self.0.extend_from_slice(&data);
        Ok(())
    }
}

/// Reads a whole body of at most `limit` bytes: 413 past it, 400 if it breaks off, 408 if
/// it pauses for over [`BODY_IDLE`].
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    let mut whole = Whole(bytes::BytesMut::new());
    read_pieces(
        body,
        limit as u64,
        |limit| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} KiB", limit / 1024),
            )
        },
        &mut whole,
    )
    .await?;
    Ok(whole.0.freeze())
}
