//! `POST /v1/notify`: one NOTIFY, named by a JSON object, answered with the record
//! `--output json` prints.
//!
//! The object has a campaign row's fields (`target`, `id`, `event`, `url`, `auth_user`,
//! `password`, `proxy`, `transport`, `vendor`) and the options a row takes from the
//! command line (`body`, `content_type`, `timeout`, and `password_file`, a credential the
//! service reads instead of one in the request), and is turned into a [`Notify`] the way
//! a campaign row is ([`Defaults::notify`]). An unknown field, a value of the wrong type or
//! a target or event that cannot be sent is a 400 that says what is wrong, and nothing is
//! sent; no message quotes a value, which might be the password.

use super::metrics::Metered;
use super::{error, read_body, Service, MAX_NOTIFY_BODY};
use crate::campaign::record::JsonRecord;
use crate::campaign::{Channel, Defaults, Row};
use crate::proto::transaction::Timers;
use crate::{Notify, Password};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The request's JSON object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyRequest {
    target: String,
    id: Option<String>,
    event: Option<String>,
    url: Option<String>,
    body: Option<String>,
    content_type: Option<String>,
    auth_user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    proxy: Option<String>,
    transport: Option<String>,
    vendor: Option<String>,
    timeout: Option<f64>,
}

/// A NOTIFY from the request's body, and the row's `id`; or what is wrong with it.
pub(crate) fn parse(body: &[u8]) -> Result<(Notify, Option<String>), String> {
    let request: NotifyRequest = serde_json::from_slice(body).map_err(|e| json_message(&e))?;
    let password = match (request.password, &request.password_file) {
        (Some(_), Some(_)) => return Err("give password or password_file, not both".into()),
        (Some(password), None) => Some(Password::new(password)),
        (None, Some(path)) => Some(read_password(path)?),
        (None, None) => None,
    };
    let mut defaults = Defaults::new(request.event.as_deref().unwrap_or("resync"));
    defaults.body = request.body.unwrap_or_default().into_bytes();
    defaults.content_type = request.content_type;
    defaults.timeout = request.timeout.map(timeout).transpose()?;
    // The row's event is the defaults' own: checked once, with the row's URL.
    let row = Row {
        id: request.id,
        target: Some(request.target),
        auth_user: request.auth_user,
        password: password.filter(|p| !p.expose().is_empty()),
        url: request.url,
        proxy: request.proxy,
        transport: request.transport,
        vendor: request.vendor,
        ..Row::default()
    };
    let notify = defaults.notify(&row).map_err(|e| e.to_string())?;
    Ok((notify, row.id))
}

/// `timeout`, checked: a try ends at Timer F anyway (64 x T1, 32 s by default).
fn timeout(seconds: f64) -> Result<Duration, String> {
    let timer_f = Timers::default().timer_f();
    if !(seconds > 0.0 && seconds.is_finite()) || seconds > timer_f.as_secs_f64() {
        return Err(format!(
            "timeout must be a number of seconds above 0 and at most {} (Timer F)",
            timer_f.as_secs_f64()
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The password in `path` (a final newline is not part of it); errors never quote it.
fn read_password(path: &std::path::Path) -> Result<Password, String> {
    // A FIFO or a device would hold the service's one thread while it is opened or read:
    // only a regular file, as the opened file says.
    crate::secret::read_regular_secret(path, crate::secret::MAX_SECRET_FILE, "password_file")
        .map(Password::new)
        .map_err(|e| crate::text::printable(&e.to_string(), false).into_owned())
}

/// What is wrong with the JSON, without quoting a value (serde quotes a value of the wrong
/// type, which may be the password): the names of unknown or missing fields are kept.
fn json_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = e.to_string();
    let names_a_field = text.starts_with("unknown field") || text.starts_with("missing field");
    match e.classify() {
        Category::Eof => "the JSON object is cut short".into(),
        Category::Syntax => format!("the body is not valid JSON (column {})", e.column()),
        Category::Data if names_a_field => {
            let message = text.split(" at line ").next().unwrap_or(&text);
            format!("{message} (see /v1/openapi.json, NotifyRequest)")
        }
        Category::Data | Category::Io => format!(
            "the body must be a JSON object whose fields are strings (timeout a number of \
             seconds), with at least target (column {})",
            e.column()
        ),
    }
}

/// `POST /v1/notify`.
pub(super) async fn handle(State(service): State<Arc<Service>>, request: Request) -> Response {
    let body = match read_body(request.into_body(), MAX_NOTIFY_BODY).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let (notify, id) = match parse(&body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let channel = Metered {
        inner: service.notifier.clone(),
        metrics: service.metrics.clone(),
    };
    let outcome = channel.deliver(&notify).await;
    let event = notify.event.name();
    service.metrics.target(event, outcome.kind.as_str());
    let record = JsonRecord::sent(
        notify.target.as_str(),
        event,
        id.as_deref(),
        &outcome,
        false,
    );
    let mut body = Vec::with_capacity(512);
    if let Err(e) = record.write_line(&mut body) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    body.pop(); // the line's end
    let json = [(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    )];
    (json, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_a_row_with_its_options() {
        let (notify, id) = parse(
            br#"{"target":"159@127.0.0.1:5062","id":"desk","event":"xml-service",
                "url":"http://10.0.0.1/m.xml","password":"pw","timeout":2}"#,
        )
        .unwrap();
        assert_eq!(notify.target.as_str(), "sip:159@127.0.0.1:5062");
        assert_eq!(notify.event.body(), b"http://10.0.0.1/m.xml");
        assert_eq!(notify.timeout, Some(Duration::from_secs(2)));
        assert!(notify.credentials.is_some());
        assert_eq!(id.as_deref(), Some("desk"));
    }

    #[test]
    fn a_password_file_that_is_not_a_regular_file_is_refused_unread() {
        let message = parse(br#"{"target":"159@h","password_file":"/dev/null"}"#)
            .err()
            .unwrap();
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn mistakes_are_named_and_never_quote_a_value() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"{"target":"159@h","pasword":"x"}"#,
                "unknown field `pasword`",
            ),
            (br#"{"event":"reboot"}"#, "missing field `target`"),
            (
                br#"{"target":"159@h","password":12345678}"#,
                "fields are strings",
            ),
            (br#"{"target":"159@h""#, "cut short"),
            (
                br#"{"target":"159@h","timeout":600}"#,
                "at most 32 (Timer F)",
            ),
            (
                br#"{"target":"159@h","password":"x","password_file":"/p"}"#,
                "not both",
            ),
        ];
        for (body, expected) in cases {
            let message = parse(body).err().unwrap();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("12345678"), "{message}");
        }
        let message = parse(br#"{"target":"159@h","event":"xml-service"}"#)
            .err()
            .unwrap();
        assert!(message.contains("xml-service"), "{message}");
    }
}
