//! Building NOTIFY requests. Each attempt is serialized once; retransmissions resend the
//! same bytes.

use super::uri::Target;
use super::{push_header, push_socket_addr, Transport};
use crate::event::Event;
use crate::text::printable;
use std::net::SocketAddr;

/// The User-Agent every request carries.
pub const USER_AGENT: &str = concat!("sipnotify/", env!("CARGO_PKG_VERSION"));

/// Why a header given by the user cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A `--header` that is not `Name: value`.
    #[error("`{0}` is not a header: write 'Name: value' on one line")]
    BadHeader(String),
    /// A From URI that would break the header.
    #[error("--from `{0}` is not a SIP URI: write sip:USER@HOST (no spaces, no <>)")]
    BadFrom(String),
    /// A control character in a header value.
    #[error("the {0} header has a control character (only tab is allowed in a value)")]
    ControlInHeader(String),
    /// A header the agent writes itself.
    #[error("the {0} header is written by sipnotify itself and cannot be set with --header")]
    ManagedHeader(String),
}

/// Checks a From URI given by the user: it goes between `<` and `>` as is.
pub fn check_from(uri: &str) -> Result<(), RequestError> {
    let scheme_ok = ["sip:", "sips:", "tel:"]
        .iter()
        .any(|s| uri.len() > s.len() && uri[..s.len()].eq_ignore_ascii_case(s));
    let chars_ok = !uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
    if scheme_ok && chars_ok {
        Ok(())
    } else {
        Err(RequestError::BadFrom(uri.into()))
    }
}

/// Headers sipnotify writes itself; a user header with one of these names is refused.
const MANAGED: &[&str] = &[
    "Via",
    "Max-Forwards",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Event",
    "Content-Length",
    "Content-Type",
    "Authorization",
    "Proxy-Authorization",
];

/// Headers sipnotify writes by default that a user header of the same name replaces.
const DEFAULTED: &[&str] = &["Contact", "Subscription-State", "User-Agent"];

/// An extra header from the user, checked once when it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHeader {
    name: String,
    value: String,
}

impl ExtraHeader {
    /// Its length on the wire: name, `: `, value and the line's end.
    pub(crate) fn written_len(&self) -> usize {
        self.name.len() + self.value.len() + 4
    }

    /// Parses `Name: value`.
    pub fn parse(line: &str) -> Result<ExtraHeader, RequestError> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RequestError::BadHeader(printable(line, false).into_owned()))?;
        let (name, value) = (name.trim(), value.trim());
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._!%*+`'~".contains(&b));
        if !name_ok {
            return Err(RequestError::BadHeader(printable(line, false).into_owned()));
        }
        // Compact forms (`l:`, `v:`, `m:` ...) name the same headers as the long ones.
        let name = super::codec::canonical_name(name.as_bytes()).unwrap_or(name);
        if let Some(m) = MANAGED.iter().find(|m| m.eq_ignore_ascii_case(name)) {
            return Err(RequestError::ManagedHeader((*m).into()));
        }
        check_header_value(name, value)?;
        Ok(ExtraHeader {
            name: name.into(),
            value: value.into(),
        })
    }

    fn replaces(&self, default: &str) -> bool {
        self.name.eq_ignore_ascii_case(default)
    }
}

/// A header value is one line of text: a control character other than tab would end the
/// header, inject another, or reach a terminal.
pub(crate) fn check_header_value(name: &str, value: &str) -> Result<(), RequestError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(RequestError::ControlInHeader(name.to_string()));
    }
    Ok(())
}

/// Everything that goes into one NOTIFY attempt.
#[derive(Debug, Clone)]
pub struct NotifyRequest<'a> {
    /// The phone line (Request-URI and To).
    pub target: &'a Target,
    /// The From URI (without tag).
    pub from: &'a str,
    /// The From tag, the same for every attempt of one target.
    pub from_tag: &'a str,
    /// The Call-ID, the same for every attempt of one target.
    pub call_id: &'a str,
    /// CSeq number, one higher for each attempt.
    pub cseq: u32,
    /// The Via branch, new for each attempt (a new transaction).
    pub branch: &'a str,
    /// The local address the phone can answer to (Via sent-by and Contact).
    pub local: SocketAddr,
    /// The transport, written in Via and Contact.
    pub transport: Transport,
    /// What to ask.
    pub event: &'a Event,
    /// Additional headers.
    pub extra: &'a [ExtraHeader],
    /// `(proxy, value)`: Authorization (or Proxy-Authorization when `proxy`) values.
    pub authorization: &'a [(bool, String)],
}

impl NotifyRequest<'_> {
    /// The bytes on the wire: the one place a NOTIFY is written. Written straight into one
    /// buffer, since this runs for every attempt of every target; [`to_rsip`](Self::to_rsip)
    /// gives rsip's typed view of the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.event.body();
        let target = self.target.as_str();
        // Room for every header but the credentials, then theirs: one allocation.
        let credentials: usize = self.authorization.iter().map(|(_, v)| v.len() + 24).sum();
        let mut out = Vec::with_capacity(512 + credentials + body.len());
        out.extend_from_slice(b"NOTIFY ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        let mut line = |name: &str, parts: &[&str]| push_header(&mut out, name, parts);
        let mut local = Vec::with_capacity(21);
        push_socket_addr(&mut local, self.local);
        let local = std::str::from_utf8(&local).expect("an address is ASCII");
        let user_set = |name: &str| self.extra.iter().any(|e| e.replaces(name));
        let via = [
            "SIP/2.0/",
            self.transport.as_str(),
            " ",
            local,
            ";branch=",
            self.branch,
            ";rport",
        ];
        line("Via", &via);
        line("Max-Forwards", &["70"]);
        line("From", &["<", self.from, ">;tag=", self.from_tag]);
        line("To", &["<", target, ">"]);
        line("Call-ID", &[self.call_id]);
        line("CSeq", &[itoa::Buffer::new().format(self.cseq), " NOTIFY"]);
        if !user_set(DEFAULTED[0]) {
            // A sips: Request-URI needs a sips: Contact (RFC 3261 section 8.1.1.8), which
            // says TLS itself.
            let (scheme, param) = match (self.target.is_sips(), self.transport) {
                (true, _) => ("<sips:sipnotify@", ""),
                (false, Transport::Udp) => ("<sip:sipnotify@", ""),
                (false, Transport::Tcp) => ("<sip:sipnotify@", ";transport=tcp"),
                (false, Transport::Tls) => ("<sip:sipnotify@", ";transport=tls"),
            };
            line("Contact", &[scheme, local, param, ">"]);
        }
        line("Event", &[&self.event.header_value()]);
        if !user_set(DEFAULTED[1]) {
            line("Subscription-State", &["terminated"]);
        }
        for (proxy, value) in self.authorization {
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            line(name, &[value]);
        }
        if !user_set(DEFAULTED[2]) {
            line("User-Agent", &[USER_AGENT]);
        }
        for e in self.extra {
            line(&e.name, &[&e.value]);
        }
        if let Some(ct) = self.event.content_type() {
            line("Content-Type", &[ct]);
        }
        line("Content-Length", &[itoa::Buffer::new().format(body.len())]);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    /// The request as rsip's type, parsed from [`to_bytes`](Self::to_bytes).
    pub fn to_rsip(&self) -> Result<rsip::Request, rsip::Error> {
        rsip::Request::try_from(self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::codec;

    fn build(event: &Event, transport: Transport, extra: &[ExtraHeader]) -> Vec<u8> {
        let target = Target::parse("sip:159@192.168.0.10:5061").unwrap();
        NotifyRequest {
            target: &target,
            from: "sip:sipnotify@192.168.0.5",
            from_tag: "tag1",
            call_id: "cid1",
            cseq: 7,
            branch: "z9hG4bKabc",
            local: "192.168.0.5:5062".parse().unwrap(),
            transport,
            event,
            extra,
            authorization: &[(false, "Digest username=\"159\"".into())],
        }
        .to_bytes()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn rsip_reads_back_every_request_we_write() {
        let events = [
            Event::resync(Some("http://p/x.xml")).unwrap(),
            Event::Reboot,
            Event::xml_service("http://h/x").unwrap(),
            Event::custom("check-sync;reboot=true", b"a=b".to_vec(), None).unwrap(),
        ];
        let target = Target::parse("sip:159@192.168.0.10:5061;transport=tcp").unwrap();
        let extra = [ExtraHeader::parse("X-Campaign: 7").unwrap()];
        for event in &events {
            let auth = [(true, "Digest username=\"a\"".to_string())];
            let request = NotifyRequest {
                target: &target,
                from: "sip:sipnotify@10.0.0.1",
                from_tag: "t",
                call_id: "c",
                cseq: 3,
                branch: "z9hG4bKb",
                local: "10.0.0.1:5062".parse().unwrap(),
                transport: Transport::Tcp,
                event,
                extra: &extra,
                authorization: &auth,
            };
            let typed = request.to_rsip().expect("rsip parses what we write");
            assert_eq!(typed.method, rsip::Method::Notify);
            // The same URI to rsip (whose Display writes `transport=TCP`; ours keeps the
            // user's text).
            assert_eq!(
                Ok(&typed.uri),
                rsip::Uri::try_from(target.as_str()).as_ref()
            );
            assert_eq!(typed.body, event.body());
            let bytes = request.to_bytes();
            let ours = codec::parse(&bytes).unwrap();
            assert_eq!(typed.headers.iter().count(), ours.headers.len());
            let text = typed.to_string();
            for h in &ours.headers {
                assert!(
                    text.contains(&format!("{}: {}\r\n", h.name, h.value)),
                    "{}",
                    h.name
                );
            }
        }
    }

    #[test]
    fn notify_has_every_required_header() {
        let s = text(&build(&Event::resync(None).unwrap(), Transport::Udp, &[]));
        assert!(
            s.starts_with("NOTIFY sip:159@192.168.0.10:5061 SIP/2.0\r\n"),
            "{s}"
        );
        for line in [
            "Via: SIP/2.0/UDP 192.168.0.5:5062;branch=z9hG4bKabc;rport\r\n",
            "Max-Forwards: 70\r\n",
            "From: <sip:sipnotify@192.168.0.5>;tag=tag1\r\n",
            "To: <sip:159@192.168.0.10:5061>\r\n",
            "Call-ID: cid1\r\n",
            "CSeq: 7 NOTIFY\r\n",
            "Contact: <sip:sipnotify@192.168.0.5:5062>\r\n",
            "Event: resync\r\n",
            "Subscription-State: terminated\r\n",
            "Authorization: Digest username=\"159\"\r\n",
            "User-Agent: sipnotify/",
            "Content-Length: 0\r\n\r\n",
        ] {
            assert!(s.contains(line), "missing {line:?} in {s}");
        }
        assert!(s.ends_with("\r\n\r\n"));
        assert!(!s.contains("INVITE"));
    }

    #[test]
    fn event_header_for_each_command() {
        let cases = [
            (Event::resync(None).unwrap(), "Event: resync\r\n"),
            (
                Event::resync(Some("http://p/x.xml")).unwrap(),
                "Event: resync;profile=\"http://p/x.xml\"\r\n",
            ),
            (Event::Reboot, "Event: reboot_now\r\n"),
            (Event::Restart, "Event: restart_now\r\n"),
            (Event::Report, "Event: report\r\n"),
            (
                Event::xml_service("http://h/x").unwrap(),
                "Event: XML-Service\r\n",
            ),
        ];
        for (event, line) in cases {
            let s = text(&build(&event, Transport::Udp, &[]));
            assert!(s.contains(line), "{line:?} in {s}");
        }
    }

    #[test]
    fn xml_service_body_is_the_url_with_no_trailing_newline_and_exact_length() {
        let url = "http://10.0.0.1/services/menu.xml";
        let bytes = build(&Event::xml_service(url).unwrap(), Transport::Udp, &[]);
        assert!(
            bytes.ends_with(url.as_bytes()),
            "last byte is the URL's last"
        );
        let s = text(&bytes);
        assert!(s.contains(&format!("Content-Length: {}\r\n", url.len())));
        assert!(s.contains("Content-Type: text/plain\r\n"));
        let parsed = codec::parse(&bytes).unwrap();
        assert_eq!(parsed.body, url.as_bytes());
    }

    #[test]
    fn xml_service_refuses_what_is_not_an_http_url() {
        for bad in [
            "ftp://h/x",
            "h/x",
            "http://",
            "<CiscoIPPhoneText/>",
            "file:///etc",
        ] {
            assert!(
                matches!(
                    Event::xml_service(bad),
                    Err(crate::event::EventError::NotHttpUrl(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            Event::xml_service("http://h/x\n"),
            Err(crate::event::EventError::UrlWhitespace)
        );
        assert!(Event::xml_service("HTTPS://h/x").is_ok());
    }

    #[test]
    fn custom_body_is_sent_byte_for_byte_with_exact_length() {
        let body = vec![0xffu8, b'a', b'\n'];
        let event = Event::custom("check-sync;reboot=false", body.clone(), None).unwrap();
        let bytes = build(&event, Transport::Tcp, &[]);
        assert!(bytes.ends_with(&body));
        let s = String::from_utf8_lossy(&bytes);
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Event: check-sync;reboot=false\r\n"));
        assert!(s.contains("Via: SIP/2.0/TCP "));
        assert!(s.contains(";transport=tcp>"));
        assert_eq!(codec::parse(&bytes).unwrap().body, body);
    }

    #[test]
    fn tls_is_named_in_via_and_contact_and_a_sips_target_gets_a_sips_contact() {
        let s = text(&build(&Event::Reboot, Transport::Tls, &[]));
        assert!(
            s.contains("\r\nVia: SIP/2.0/TLS 192.168.0.5:5062;branch="),
            "{s}"
        );
        assert!(
            s.contains("\r\nContact: <sip:sipnotify@192.168.0.5:5062;transport=tls>\r\n"),
            "{s}"
        );
        let target = Target::parse("sips:159@pbx.example.com").unwrap();
        let request = NotifyRequest {
            target: &target,
            from: "sip:sipnotify@192.168.0.5",
            from_tag: "t",
            call_id: "c",
            cseq: 1,
            branch: "z9hG4bKsips",
            local: "192.168.0.5:5062".parse().unwrap(),
            transport: Transport::Tls,
            event: &Event::Reboot,
            extra: &[],
            authorization: &[],
        };
        let s = text(&request.to_bytes());
        assert!(
            s.starts_with("NOTIFY sips:159@pbx.example.com SIP/2.0\r\n"),
            "{s}"
        );
        assert!(
            s.contains("\r\nContact: <sips:sipnotify@192.168.0.5:5062>\r\n"),
            "{s}"
        );
        assert!(s.contains("\r\nTo: <sips:159@pbx.example.com>\r\n"), "{s}");
        let typed = request.to_rsip().unwrap();
        assert_eq!(typed.uri.to_string(), "sips:159@pbx.example.com");
    }

    #[test]
    fn bad_events_and_headers_are_refused() {
        assert!(Event::custom("", vec![], None).is_err());
        assert!(Event::custom("a b", vec![], None).is_err());
        assert!(Event::custom("x\r\nVia: evil", vec![], None).is_err());
        assert!(ExtraHeader::parse("NoColon").is_err());
        assert!(ExtraHeader::parse("Bad Name: v").is_err());
        assert_eq!(
            ExtraHeader::parse("call-id: x"),
            Err(RequestError::ManagedHeader("Call-ID".into()))
        );
        for (compact, long) in [
            ("l", "Content-Length"),
            ("v", "Via"),
            ("i", "Call-ID"),
            ("f", "From"),
            ("t", "To"),
            ("o", "Event"),
            ("c", "Content-Type"),
        ] {
            assert_eq!(
                ExtraHeader::parse(&format!("{compact}: 1")),
                Err(RequestError::ManagedHeader(long.into())),
                "{compact}"
            );
        }
        assert!(check_from("sip:noc@example.com").is_ok());
        for bad in ["noc@example.com", "sip:a b@h", "sip:a@h>\r\nVia: x", "sip:"] {
            assert!(check_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_headers_are_added_and_replace_defaults() {
        let extra = [
            ExtraHeader::parse("m: <sip:noc@10.0.0.1>").unwrap(),
            ExtraHeader::parse("Subscription-State: active;expires=60").unwrap(),
            ExtraHeader::parse("X-Campaign: 42").unwrap(),
        ];
        let s = text(&build(&Event::Reboot, Transport::Udp, &extra));
        assert!(s.contains("Subscription-State: active;expires=60\r\n"));
        assert!(!s.contains("terminated"));
        assert!(s.contains("X-Campaign: 42\r\n"));
        assert_eq!(
            s.matches("Contact:").count(),
            1,
            "the compact m: replaced our Contact"
        );
        assert!(s.contains("Contact: <sip:noc@10.0.0.1>\r\n"));
    }
}
