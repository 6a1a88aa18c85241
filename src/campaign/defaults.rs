//! From a row and the command-line defaults to a [`Notify`]: the SIP channel's requests.

use super::channel::digest_prefix;
use super::input::Row;
use super::journal::Description;
use crate::event::{self, Action, Event, EventError, UrlUse, Vendor};
use crate::proto::Notify;
use crate::sip::digest::Password;
use crate::sip::request::ExtraHeader;
use crate::sip::uri::{HostPort, Target};
use crate::sip::Transport;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a row cannot be sent; never quotes the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRow(pub String);

impl From<String> for BadRow {
    fn from(message: String) -> BadRow {
        BadRow(message)
    }
}

/// What a row gets when a cell is missing.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// The event name of rows with no `event`: `resync`, `reboot`, `restart`, `report`,
    /// `xml-service`, or any other event (sent with `body`).
    pub event_name: String,
    /// The default event, built once and shared, when it needs nothing from the row.
    event: Option<Arc<Event>>,
    /// The resync profile URL for rows asking `resync` with no `url`.
    pub profile: Option<String>,
    /// The XML-Service URL for rows asking `xml-service` with no `url`.
    pub url: Option<String>,
    /// The body of a custom event.
    pub body: Vec<u8>,
    /// The Content-Type of a custom event's body.
    pub content_type: Option<String>,
    /// The digest user name.
    pub auth_user: Option<String>,
    /// The password.
    pub password: Option<Password>,
    /// The outbound proxy.
    pub proxy: Option<HostPort>,
    /// The transport.
    pub transport: Option<Transport>,
    /// Extra headers for every NOTIFY.
    pub extra: Arc<[ExtraHeader]>,
    /// The From URI.
    pub from: Option<String>,
    /// The per-attempt limit.
    pub timeout: Option<Duration>,
    /// The phones' vendor: actions become its events (`sipnotify vendors`); Cisco's when
    /// `None`.
    pub vendor: Option<&'static Vendor>,
}

impl Defaults {
    /// Defaults with this event name and nothing else; set the other fields, then call
    /// [`Defaults::check`].
    pub fn new(event_name: &str) -> Defaults {
        Defaults {
            event_name: event_name.to_string(),
            event: None,
            profile: None,
            url: None,
            body: Vec::new(),
            content_type: None,
            auth_user: None,
            password: None,
            proxy: None,
            transport: None,
            extra: Arc::from(Vec::new()),
            from: None,
            timeout: None,
            vendor: None,
        }
    }

    /// Checks the default event and builds it once when rows need not complete it; an error
    /// names what is wrong (a bad event name or URL).
    pub fn check(&mut self) -> Result<(), BadRow> {
        self.event = None;
        match self.build(&self.event_name.clone(), None, self.vendor) {
            Ok(event) => self.event = Some(event),
            // Rows may still give the URL.
            Err(_) if self.url.is_none() && url_needed(&self.event_name) => {}
            Err(e) => return Err(e),
        }
        // A default event too large for UDP fails every row: refused here, once.
        if let Some(event) = &self.event {
            let row = Target::parse("sip:0@0.0.0.0").expect("a target");
            let mut notify = Notify::new(row, Event::Report);
            notify.event = event.clone();
            notify.extra = self.extra.clone();
            notify.transport = self.transport;
            notify.check_size().map_err(|e| BadRow(e.to_string()))?;
        }
        Ok(())
    }

    /// What every row gets unless it says otherwise, for the journal's campaign record:
    /// the event (by its `Event` token, so `reboot` and `reboot_now` are one), its URL,
    /// a digest of the body, the Content-Type. Never the password.
    pub fn describe(&self) -> Description {
        let mut fields = BTreeMap::new();
        let event = event::lookup(&self.event_name).map_or_else(
            || self.event_name.trim().to_string(),
            |spec| spec.header.to_string(),
        );
        fields.insert("event".to_string(), event);
        let mut put = |name: &str, value: Option<&str>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                fields.insert(name.to_string(), value.to_string());
            }
        };
        put("url", self.url.as_deref());
        put("profile", self.profile.as_deref());
        put("content_type", self.content_type.as_deref());
        put("vendor", self.vendor.map(|v| v.name));
        if !self.body.is_empty() {
            fields.insert("body_digest".to_string(), digest_prefix(&self.body));
        }
        Description {
            channel: "sip-notify".to_string(),
            fields,
        }
    }

    /// The NOTIFY for a row, or why the row is bad. Never quotes the password.
    pub fn notify(&self, row: &Row) -> Result<Notify, BadRow> {
        let target = Target::parse(row.required_target()?).map_err(|e| e.to_string())?;
        let event = self.event_for(row)?;
        let mut notify = Notify::new(target, Event::Report);
        notify.event = event;
        notify.extra = self.extra.clone();
        let password = row.password.clone().or_else(|| self.password.clone());
        if let Some(password) = password {
            let user = row.auth_user.as_deref().or(self.auth_user.as_deref());
            notify = notify.with_credentials(user, password);
        }
        notify.transport = match &row.transport {
            Some(t) => Some(t.parse::<Transport>().map_err(|e| e.to_string())?),
            None => self.transport,
        };
        notify.proxy = match &row.proxy {
            Some(p) => Some(p.parse().map_err(|e| format!("proxy: {e}"))?),
            None => self.proxy.clone(),
        };
        notify.from = self.from.clone();
        notify.timeout = self.timeout;
        notify.check_size().map_err(|e| BadRow(e.to_string()))?;
        Ok(notify)
    }

    /// The row's event: the default one, shared, unless the row names one or a URL.
    fn event_for(&self, row: &Row) -> Result<Arc<Event>, BadRow> {
        if let (None, None, None, Some(event)) = (&row.event, &row.url, &row.vendor, &self.event) {
            return Ok(event.clone());
        }
        let name = row.event.as_deref().unwrap_or(&self.event_name);
        let vendor = match row.vendor.as_deref() {
            Some(name) => Some(
                event::vendor(name)
                    .ok_or_else(|| BadRow(EventError::UnknownVendor(name.into()).to_string()))?,
            ),
            None => self.vendor,
        };
        self.build(name, row.url.as_deref(), vendor)
    }

    /// Builds an event by name, with the row's URL or else the defaults for its kind, as
    /// the vendor's phones expect it when the name is an action.
    fn build(
        &self,
        name: &str,
        url: Option<&str>,
        vendor: Option<&Vendor>,
    ) -> Result<Arc<Event>, BadRow> {
        let url = url.or(match event::lookup(name).map(|spec| spec.url) {
            Some(UrlUse::Profile) => self.profile.as_deref(),
            Some(UrlUse::Body) => self.url.as_deref(),
            _ => None,
        });
        let built = match (vendor, Action::named(name)) {
            (Some(vendor), Some(action)) => vendor.event(action, url),
            _ => Event::named(name, url, self.body.clone(), self.content_type.clone()),
        };
        built
            .map(Arc::new)
            .map_err(|e| BadRow(format!("event `{name}`: {e}")))
    }
}

/// Whether the event named needs a URL (which rows may give).
fn url_needed(name: &str) -> bool {
    event::lookup(name).is_some_and(|spec| spec.url == UrlUse::Body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cells_fall_back_to_the_defaults() {
        let mut d = Defaults::new("reboot");
        d.check().unwrap();
        d.password = Some(Password::new("default"));
        d.auth_user = Some("admin".into());
        let n = d.notify(&Row::for_target("159@10.0.0.1")).unwrap();
        assert_eq!(n.event.name(), "reboot_now");
        let c = n.credentials.unwrap();
        assert_eq!(
            (c.user.as_deref(), c.password.expose()),
            (Some("admin"), "default")
        );

        let mut r = Row::for_target("sip:160@10.0.0.2");
        r.password = Some(Password::new("own"));
        r.auth_user = Some("160a".into());
        r.event = Some("xml-service".into());
        r.url = Some("http://10.0.0.9/menu.xml".into());
        r.transport = Some("tcp".into());
        let n = d.notify(&r).unwrap();
        assert_eq!(n.event.name(), "XML-Service");
        assert_eq!(n.transport, Some(Transport::Tcp));
        assert_eq!(n.credentials.unwrap().password.expose(), "own");
    }

    #[test]
    fn bad_rows_say_why() {
        let mut d = Defaults::new("reboot");
        d.check().unwrap();
        assert!(d.notify(&Row::for_target("not a target")).is_err());
        let mut r = Row::for_target("159@h");
        r.event = Some("xml-service".into());
        assert!(d.notify(&r).unwrap_err().0.contains("needs a url"));
        r.event = Some("bad event!".into());
        assert!(d.notify(&r).is_err());
        let mut r = Row::for_target("159@h");
        r.transport = Some("sctp".into());
        assert!(d.notify(&r).is_err());
        let mut r = Row::for_target("159@h");
        r.password = Some(Password::new("hunter2"));
        r.proxy = Some("proxy:notaport".into());
        assert!(!d.notify(&r).unwrap_err().0.contains("hunter2"));
    }

    #[test]
    fn default_events_are_checked() {
        assert!(Defaults::new("bad event!").check().is_err());
        let mut d = Defaults::new("xml-service");
        d.check().unwrap();
        let mut r = Row::for_target("159@h");
        assert!(d.notify(&r).is_err());
        r.url = Some("http://x/m.xml".into());
        assert_eq!(d.notify(&r).unwrap().event.name(), "XML-Service");
        d.url = Some("ftp://x".into());
        assert!(d.check().is_err());
        let mut d = Defaults::new("check-sync;reboot=false");
        d.check().unwrap();
        assert_eq!(
            d.notify(&Row::for_target("1@h"))
                .unwrap()
                .event
                .header_value(),
            "check-sync;reboot=false"
        );
    }
}
