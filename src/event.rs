//! What a phone is asked to do: the one table of events, their aliases and URLs.
//!
//! Every place that names an event uses this table: the command line, the campaign's rows,
//! the simulated phone (which events it accepts) and the docs.

use crate::sip::request::check_header_value;
use crate::text::outside_xml;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Whether an event takes a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlUse {
    /// No URL.
    None,
    /// An optional URL: the MPP resync profile (`resync;profile="URL"`).
    Profile,
    /// A required URL, sent as the whole body (XML-Service).
    Body,
}

/// One row of the event table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSpec {
    /// The `Event` header token, as the phone expects it (case-sensitive on SPA/MPP).
    pub header: &'static str,
    /// The names accepted for it on the command line and in campaign rows
    /// (case-insensitive); the first is the usual one.
    pub names: &'static [&'static str],
    /// Whether it takes a URL.
    pub url: UrlUse,
    /// What a Cisco SPA/MPP line does when it accepts it.
    pub action: &'static str,
}

/// Every event SPA/MPP lines act on.
pub const EVENTS: &[EventSpec] = &[
    EventSpec {
        header: "resync",
        names: &["resync"],
        url: UrlUse::Profile,
        action: "re-fetches its configuration profile (from the profile URL when given)",
    },
    EventSpec {
        header: "reboot_now",
        names: &["reboot", "reboot_now"],
        url: UrlUse::None,
        action: "cold restarts",
    },
    EventSpec {
        header: "restart_now",
        names: &["restart", "restart_now"],
        url: UrlUse::None,
        action: "warm restarts",
    },
    EventSpec {
        header: "report",
        names: &["report"],
        url: UrlUse::None,
        action: "uploads a configuration report per its Report_Rule",
    },
    EventSpec {
        header: "XML-Service",
        names: &["xml-service", "xml_service"],
        url: UrlUse::Body,
        action: "fetches the URL and shows the XML service",
    },
];

/// The table row a name means (any of its names, or its header token), if any.
pub fn lookup(name: &str) -> Option<&'static EventSpec> {
    let name = name.trim();
    EVENTS.iter().find(|spec| {
        spec.header.eq_ignore_ascii_case(name)
            || spec.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    })
}

/// What an administrator asks of a phone, whatever its vendor calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-fetch the configuration.
    Resync,
    /// Cold restart.
    Reboot,
    /// Warm restart.
    Restart,
    /// Upload a configuration report.
    Report,
}

impl Action {
    /// The action a name of the event table means (`resync`, `reboot`, `reboot_now`, ...).
    pub fn named(name: &str) -> Option<Action> {
        match lookup(name)?.header {
            "resync" => Some(Action::Resync),
            "reboot_now" => Some(Action::Reboot),
            "restart_now" => Some(Action::Restart),
            "report" => Some(Action::Report),
            _ => None,
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Resync => "resync",
            Action::Reboot => "reboot",
            Action::Restart => "restart",
            Action::Report => "report",
        }
    }
}

/// How one vendor's phones are asked for an action: the `Event` header value and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorEvent {
    /// The action.
    pub action: Action,
    /// The Event header value, parameters included.
    pub header: &'static str,
    /// The body, `""` for none.
    pub body: &'static str,
    /// What the phone does, and the setting it depends on.
    pub note: &'static str,
}

/// One vendor's NOTIFY events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vendor {
    /// The name given to `--vendor` and in a row's `vendor` cell.
    pub name: &'static str,
    /// The phones it covers.
    pub phones: &'static str,
    /// The actions it has an event for; any other is refused.
    pub events: &'static [VendorEvent],
    /// Where the events come from.
    pub source: &'static str,
}

/// Every vendor preset, read once from `vendors.txt`: data, one line per vendor event. The
/// default, without `--vendor`, is `cisco`.
pub static VENDORS: LazyLock<Vec<Vendor>> = LazyLock::new(|| {
    parse_vendors(include_str!("vendors.txt")).unwrap_or_else(|bad| panic!("{bad}"))
});

/// Reads the vendor table (its format is described at its top). It is compiled in, so an
/// error is a bug in the table, caught by its test.
fn parse_vendors(text: &'static str) -> Result<Vec<Vendor>, String> {
    let mut vendors: Vec<(Vendor, Vec<VendorEvent>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let bad = || format!("vendors.txt line {}: {line:?}", n + 1);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("vendor ") {
            let vendor = Vendor {
                name,
                phones: "",
                events: &[],
                source: "",
            };
            vendors.push((vendor, Vec::new()));
            continue;
        }
        let (vendor, events) = vendors.last_mut().ok_or_else(bad)?;
        if let Some(phones) = line.strip_prefix("phones:") {
            vendor.phones = phones.trim();
        } else if let Some(source) = line.strip_prefix("source:") {
            vendor.source = source.trim();
        } else {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [action, header, body, note] = cells[..] else {
                return Err(bad());
            };
            let action = Action::named(action).ok_or_else(bad)?;
            events.push(VendorEvent {
                action,
                header,
                body,
                note,
            });
        }
    }
    // Each vendor's events are leaked, once, so that `Vendor` stays `Copy` with `'static`
    // fields.
    let vendors = vendors.into_iter().map(|(vendor, events)| Vendor {
        events: Vec::leak(events),
        ..vendor
    });
    Ok(vendors.collect())
}

/// The vendor preset of that name (any case).
pub fn vendor(name: &str) -> Option<&'static Vendor> {
    VENDORS
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name.trim()))
}

impl Vendor {
    /// This vendor's event for `action`, with the profile URL for a Cisco resync.
    pub fn event(&self, action: Action, url: Option<&str>) -> Result<Event, EventError> {
        let Some(found) = self.events.iter().find(|e| e.action == action) else {
            return Err(EventError::NoVendorEvent {
                vendor: self.name,
                action: action.as_str(),
                has: self
                    .events
                    .iter()
                    .map(|e| e.action.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if self.name == "cisco" {
            return Event::named(found.header, url, Vec::new(), None);
        }
        if url.is_some() {
            return Err(EventError::UrlNotTaken);
        }
        let content_type = (!found.body.is_empty()).then(|| "text/plain".to_string());
        Event::custom(found.header, found.body.as_bytes().to_vec(), content_type)
    }

    /// Whether this vendor's phones accept an `Event` token (the part before `;`).
    pub fn accepts(&self, token: &str) -> bool {
        self.events
            .iter()
            .any(|e| e.header.split(';').next() == Some(token))
    }
}

/// Why an event cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Profiles and XML services are fetched over http(s) only.
    #[error("`{0}` is not an http:// or https:// URL; phones fetch profiles and XML services only over http(s)")]
    NotHttpUrl(String),
    /// A URL with white space or control characters would be cut by the phone.
    #[error("the URL contains white space, control characters, quotes or U+FFFE/U+FFFF; percent-encode them (e.g. %20)")]
    UrlWhitespace,
    /// An event token that is not a token.
    #[error("`{0}` is not a valid event (letters, digits and -._!%*+`'~, then ;params)")]
    BadEvent(String),
    /// A Content-Type that would break the header.
    #[error("the Content-Type `{0}` has a line break or NUL")]
    BadContentType(String),
    /// XML-Service without a URL.
    #[error("event {0} needs a url (a `url` cell or --url)")]
    UrlNeeded(&'static str),
    /// A URL for an event that takes none.
    #[error("a url is given but the event takes none")]
    UrlNotTaken,
    /// A vendor with no event for the action.
    #[error("{vendor} phones have no NOTIFY event to {action} (they have: {has}); see `sipnotify vendors`")]
    NoVendorEvent {
        /// The vendor.
        vendor: &'static str,
        /// The action asked for.
        action: &'static str,
        /// The actions it has.
        has: String,
    },
    /// A vendor name not in the table.
    #[error("unknown vendor `{0}`: see `sipnotify vendors` for the list")]
    UnknownVendor(String),
}

/// What is wrong with a URL a phone is to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not `http://HOST...` or `https://HOST...`.
    NotHttp,
    /// Ends with CR, LF, space or tab: the phone silently ignores it.
    TrailingWhitespace,
    /// White space, a control character, a quote, or a noncharacter (U+FFFE, U+FFFF: no
    /// XML document can carry them) inside.
    Whitespace,
}

/// The one check of a URL a phone fetches (XML-Service bodies, resync profiles): the
/// agent refuses to send a bad one, and the simulated phone refuses to act on it.
pub fn check_http_url(url: &str) -> Result<(), UrlProblem> {
    if url.ends_with(['\r', '\n', ' ', '\t']) {
        return Err(UrlProblem::TrailingWhitespace);
    }
    let scheme = if url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        8
    } else if url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        7
    } else {
        return Err(UrlProblem::NotHttp);
    };
    let rest = &url[scheme..];
    if rest.is_empty() || rest.starts_with('/') {
        return Err(UrlProblem::NotHttp);
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || outside_xml(c))
    {
        return Err(UrlProblem::Whitespace);
    }
    Ok(())
}

fn checked_url(url: &str) -> Result<String, EventError> {
    match check_http_url(url) {
        Ok(()) => Ok(url.to_string()),
        Err(UrlProblem::NotHttp) => Err(EventError::NotHttpUrl(url.into())),
        Err(UrlProblem::TrailingWhitespace | UrlProblem::Whitespace) => {
            Err(EventError::UrlWhitespace)
        }
    }
}

/// What the phone is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Event: resync`: re-fetch the configuration profile, from `profile` when given (MPP).
    Resync {
        /// An explicit profile URL (`;profile="..."`).
        profile: Option<String>,
    },
    /// `Event: reboot_now`: cold restart.
    Reboot,
    /// `Event: restart_now`: warm restart.
    Restart,
    /// `Event: report`: upload a configuration report.
    Report,
    /// `Event: XML-Service` with the URL as the whole body.
    XmlService {
        /// The validated http(s) URL.
        url: String,
    },
    /// Any event, with an optional body and content type.
    Custom {
        /// The Event header value (type and parameters).
        event: String,
        /// The body, sent byte for byte.
        body: Vec<u8>,
        /// The Content-Type, when there is a body.
        content_type: Option<String>,
    },
}

impl Event {
    /// `Event: resync`, optionally with an MPP profile URL.
    pub fn resync(profile: Option<&str>) -> Result<Event, EventError> {
        let profile = profile.map(checked_url).transpose()?;
        Ok(Event::Resync { profile })
    }

    /// `Event: XML-Service` for `url`, which must be http(s) and contain no white space.
    pub fn xml_service(url: &str) -> Result<Event, EventError> {
        Ok(Event::XmlService {
            url: checked_url(url)?,
        })
    }

    /// Any event; `event` is checked to be a token with optional parameters.
    pub fn custom(
        event: &str,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<Event, EventError> {
        let event = event.trim();
        let token = event.split(';').next().unwrap_or_default().trim();
        let token_ok = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._!%*+`'~".contains(&b));
        if !token_ok || event.bytes().any(|b| b.is_ascii_control()) {
            return Err(EventError::BadEvent(event.into()));
        }
        if let Some(ct) = &content_type {
            check_header_value("Content-Type", ct)
                .map_err(|_| EventError::BadContentType(ct.clone()))?;
        }
        Ok(Event::Custom {
            event: event.into(),
            body,
            content_type,
        })
    }

    /// The event a name of the table means, with its URL; any other name is a custom
    /// event sent as is with `body` and `content_type` (which the table's events ignore).
    ///
    /// ```
    /// use sipnotify::Event;
    /// assert_eq!(Event::named("reboot", None, Vec::new(), None)?, Event::Reboot);
    /// let xml = Event::named("xml-service", Some("http://10.0.0.1/menu.xml"), Vec::new(), None)?;
    /// assert_eq!(xml.body(), b"http://10.0.0.1/menu.xml");
    /// # Ok::<(), sipnotify::EventError>(())
    /// ```
    pub fn named(
        name: &str,
        url: Option<&str>,
        body: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<Event, EventError> {
        let Some(spec) = lookup(name) else {
            if url.is_some() {
                return Err(EventError::UrlNotTaken);
            }
            return Event::custom(name, body, content_type);
        };
        match (spec.url, url) {
            (UrlUse::None, Some(_)) => Err(EventError::UrlNotTaken),
            (UrlUse::Body, None) => Err(EventError::UrlNeeded(spec.names[0])),
            (UrlUse::Body, Some(url)) => Event::xml_service(url),
            (UrlUse::Profile, url) => Event::resync(url),
            (UrlUse::None, None) => Ok(match spec.header {
                "reboot_now" => Event::Reboot,
                "restart_now" => Event::Restart,
                _ => Event::Report,
            }),
        }
    }

    /// The event type, as reported (`resync`, `reboot_now`, `XML-Service`, ...).
    pub fn name(&self) -> &str {
        match self {
            Event::Resync { .. } => EVENTS[0].header,
            Event::Reboot => EVENTS[1].header,
            Event::Restart => EVENTS[2].header,
            Event::Report => EVENTS[3].header,
            Event::XmlService { .. } => EVENTS[4].header,
            Event::Custom { event, .. } => event.split(';').next().unwrap_or(event).trim(),
        }
    }

    /// The Event header value: borrowed unless a profile URL is added (every request of
    /// every target writes it).
    pub fn header_value(&self) -> Cow<'_, str> {
        match self {
            Event::Resync { profile: Some(url) } => format!("resync;profile=\"{url}\"").into(),
            Event::Custom { event, .. } => Cow::Borrowed(event),
            other => Cow::Borrowed(other.name()),
        }
    }

    /// The body. For XML-Service it is the URL alone, with no trailing CR or LF: the phone
    /// silently ignores the request otherwise.
    pub fn body(&self) -> &[u8] {
        match self {
            Event::XmlService { url } => url.as_bytes(),
            Event::Custom { body, .. } => body,
            _ => &[],
        }
    }

    /// The Content-Type of the body, if there is one.
    pub fn content_type(&self) -> Option<&str> {
        match self {
            Event::XmlService { .. } => Some("text/plain"),
            Event::Custom {
                content_type: Some(ct),
                ..
            } => Some(ct),
            Event::Custom { body, .. } if !body.is_empty() => Some("text/plain"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_and_header_finds_its_row_and_builds_its_event() {
        for spec in EVENTS {
            let url = (spec.url == UrlUse::Body).then_some("http://10.0.0.1/m.xml");
            for name in spec.names.iter().chain([&spec.header]) {
                assert_eq!(lookup(name), Some(spec), "{name}");
                let upper = name.to_ascii_uppercase();
                assert_eq!(lookup(&upper), Some(spec), "{upper}");
                let event = Event::named(name, url, Vec::new(), None).unwrap();
                assert_eq!(event.name(), spec.header);
            }
        }
        assert!(lookup("check-sync").is_none());
    }

    #[test]
    fn urls_are_checked_by_role() {
        assert_eq!(
            Event::named("xml-service", None, Vec::new(), None),
            Err(EventError::UrlNeeded("xml-service"))
        );
        assert_eq!(
            Event::named("reboot", Some("http://x/y"), Vec::new(), None),
            Err(EventError::UrlNotTaken)
        );
        assert_eq!(
            Event::named("check-sync", Some("http://x/y"), Vec::new(), None),
            Err(EventError::UrlNotTaken)
        );
        let resync = Event::named("resync", Some("http://p/x.xml"), Vec::new(), None).unwrap();
        assert_eq!(resync.header_value(), "resync;profile=\"http://p/x.xml\"");
        let custom = Event::named("check-sync;reboot=false", None, b"x".to_vec(), None).unwrap();
        assert_eq!(custom.header_value(), "check-sync;reboot=false");
        assert_eq!(custom.content_type(), Some("text/plain"));
    }

    #[test]
    fn vendor_presets_map_actions_to_their_events_and_refuse_the_rest() {
        let event = |v: &str, a| vendor(v).unwrap().event(a, None);
        let yealink_reboot = event("yealink", Action::Reboot).unwrap();
        assert_eq!(yealink_reboot.header_value(), "check-sync;reboot=true");
        assert!(yealink_reboot.body().is_empty());
        assert_eq!(
            event("Snom", Action::Resync).unwrap().header_value(),
            "check-sync;reboot=false"
        );
        let cucm = event("cucm", Action::Restart).unwrap();
        assert_eq!(
            (cucm.header_value().as_ref(), cucm.body()),
            ("service-control", &b"action=restart"[..])
        );
        assert_eq!(cucm.content_type(), Some("text/plain"));
        assert_eq!(event("cisco", Action::Reboot).unwrap(), Event::Reboot);
        let refused = event("polycom", Action::Reboot).unwrap_err().to_string();
        assert!(
            refused.contains("polycom phones have no NOTIFY event to reboot (they have: resync)"),
            "{refused}"
        );
        assert!(vendor("nokia").is_none());
        for v in VENDORS.iter() {
            for e in v.events {
                assert!(v.accepts(e.header.split(';').next().unwrap()), "{}", v.name);
                assert!(v.event(e.action, None).is_ok(), "{} {}", v.name, e.header);
            }
        }
        assert_eq!(Action::named("reboot_now"), Some(Action::Reboot));
        assert_eq!(Action::named("xml-service"), None);
    }

    #[test]
    fn the_vendor_table_parses_and_a_malformed_line_is_refused() {
        let names: Vec<&str> = VENDORS.iter().map(|v| v.name).collect();
        assert_eq!(
            names,
            [
                "cisco",
                "polycom",
                "yealink",
                "snom",
                "gigaset",
                "grandstream",
                "aastra",
                "obihai",
                "cucm"
            ]
        );
        for v in VENDORS.iter() {
            assert!(!v.phones.is_empty() && !v.source.is_empty(), "{}", v.name);
            assert!(!v.events.is_empty(), "{}", v.name);
        }
        let cucm_report = vendor("cucm").unwrap().events[2];
        assert_eq!(
            cucm_report,
            VendorEvent {
                action: Action::Report,
                header: "service-control",
                body: "action=prt-report",
                note: "sends a problem report",
            }
        );
        for (text, line) in [
            ("resync | resync | | note", "line 1"),
            ("vendor x\nresync | resync | note", "line 2"),
            ("vendor x\n\nreset | resync | | note", "line 3"),
        ] {
            let bad = parse_vendors(text).unwrap_err();
            assert!(bad.contains(line), "{bad}");
        }
    }

    #[test]
    fn the_url_check_names_each_problem() {
        assert_eq!(check_http_url("http://h/x"), Ok(()));
        assert_eq!(check_http_url("HTTPS://h"), Ok(()));
        for bad in ["ftp://h/x", "http://", "https:///x", "h/x", "", "httpx://h"] {
            assert_eq!(check_http_url(bad), Err(UrlProblem::NotHttp), "{bad}");
        }
        for bad in [
            "http://h/x\n",
            "http://h/x\r\n",
            "http://h/x ",
            "http://h/x\t",
        ] {
            assert_eq!(check_http_url(bad), Err(UrlProblem::TrailingWhitespace));
        }
        for bad in [
            "http://h/a b",
            "http://h/a\"b",
            "http://h/a\u{7}b",
            "http://h/a\u{fffe}b",
        ] {
            assert_eq!(check_http_url(bad), Err(UrlProblem::Whitespace), "{bad}");
        }
        // The message says what is wrong without claiming the URL was for XML-Service.
        let e = Event::resync(Some("not-a-url")).unwrap_err().to_string();
        assert!(e.contains("profiles and XML services"), "{e}");
    }
}
