//! What happened to one target: data, not an error.

use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The kind of ending, as reported in `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A 2xx: the phone accepted the NOTIFY.
    Delivered,
    /// A 403, or a challenge again after credentials were sent: wrong user or password.
    AuthFailed,
    /// Any other final response.
    Rejected,
    /// No final response in time.
    Timeout,
    /// The request could not be sent or its connection failed.
    Unreachable,
    /// The phone challenged but no password (or user) was given.
    NoCredentials,
    /// Delivered, and the phone then fetched its profile (2xx) within the wait
    /// (`batch --confirm-fetch`).
    Confirmed,
    /// Delivered, and the phone's fetch was answered 4xx/5xx (`--confirm-fetch`).
    FetchFailed,
    /// Delivered, but no fetch from the phone within the wait (`--confirm-fetch`).
    NotFetched,
}

impl OutcomeKind {
    /// The name used in reports (`delivered`, `auth_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::AuthFailed => "auth_failed",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Unreachable => "unreachable",
            OutcomeKind::NoCredentials => "no_credentials",
            OutcomeKind::Confirmed => "confirmed",
            OutcomeKind::FetchFailed => "fetch_failed",
            OutcomeKind::NotFetched => "not_fetched",
        }
    }

    /// The process exit code for a single-target command that ended this way.
    pub fn exit_code(self) -> u8 {
        match self {
            OutcomeKind::Delivered | OutcomeKind::Confirmed => 0,
            OutcomeKind::NoCredentials => 2,
            OutcomeKind::AuthFailed => 3,
            OutcomeKind::Rejected | OutcomeKind::FetchFailed => 4,
            OutcomeKind::Timeout | OutcomeKind::Unreachable | OutcomeKind::NotFetched => 5,
        }
    }

    /// Whether the target got what was asked: delivered, or confirmed when a fetch was
    /// awaited.
    pub fn is_success(self) -> bool {
        matches!(self, OutcomeKind::Delivered | OutcomeKind::Confirmed)
    }
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a traced message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent by the agent (first transmission).
    Sent,
    /// Sent again by Timer E.
    Retransmitted,
    /// Received from the phone or proxy.
    Received,
    /// Not a message: a routing step (how a name was resolved, a move to the next
    /// destination), its text in place of the bytes.
    Routing,
}

/// One message of the ladder, kept only when tracing was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Time since the target started.
    pub at: Duration,
    /// Which way it went.
    pub direction: Direction,
    /// Where a received message came from, when not the destination.
    pub from: Option<SocketAddr>,
    /// The message bytes.
    pub bytes: bytes::Bytes,
}

/// The end of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub kind: OutcomeKind,
    /// The final SIP status, when one was received.
    pub status: Option<u16>,
    /// The reason phrase, or what went wrong when there was no final response.
    pub reason: String,
    /// Advice for the user, for responses with a usual cause.
    pub hint: Option<&'static str>,
    /// NOTIFY requests sent (the first and each authenticated retry), not counting
    /// retransmissions.
    pub attempts: u32,
    /// Timer E retransmissions over all attempts.
    pub retransmissions: u32,
    /// From the first send to the end.
    pub elapsed: Duration,
    /// The Call-ID shared by all attempts.
    pub call_id: String,
    /// Where the last request went (the last destination tried); `None` when nothing was
    /// sent.
    pub destination: Option<SocketAddr>,
    /// Where the last response used came from, when not the address the requests went to
    /// (a multi-homed phone, an SBC); `None` when it came from there, or none came.
    pub answered_from: Option<SocketAddr>,
    /// The messages, when tracing was on.
    pub ladder: Vec<TraceEntry>,
    /// The delta-seconds of a `Retry-After` header in the final response (e.g. with 503).
    pub retry_after: Option<Duration>,
    /// What a channel reports beyond these fields, added to the JSON record as they are
    /// (HTTP: `http_status`, `phone_error`, `items`, `device`, `screenshot`); boxed, and
    /// `None` for SIP, so that an outcome stays small.
    pub details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Outcome {
    /// A target that ended before anything was sent (name resolution, connection refused).
    pub fn unsent(kind: OutcomeKind, reason: impl Into<String>) -> Outcome {
        Outcome {
            kind,
            status: None,
            reason: reason.into(),
            hint: None,
            attempts: 0,
            retransmissions: 0,
            elapsed: Duration::ZERO,
            call_id: String::new(),
            destination: None,
            answered_from: None,
            ladder: Vec::new(),
            retry_after: None,
            details: None,
        }
    }
}

/// Advice for final responses that usually mean a phone setting.
pub fn hint_for(status: u16) -> Option<&'static str> {
    Some(match status {
        489 => "the phone does not accept this event: check Resync From SIP / Auth Resync-Reboot, or the event name",
        481 => "the phone has no subscription for this NOTIFY: it may expect a different event or Request-URI user",
        405 => "the phone does not accept NOTIFY here: check the port, the line, and the event support",
        404 => "no such user on this phone: check the Request-URI user (the line's User ID)",
        403 => "credentials refused: check --auth-user (Auth ID vs User ID) and the line password",
        400 => "the phone refused the request as malformed: for XML-Service, check the URL",
        408 | 480 => "the phone or proxy could not reach the line: is it registered?",
        503 => "the phone or proxy is overloaded or restarting: retry later",
        _ => return None,
    })
}
