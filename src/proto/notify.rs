//! What to send to one phone line: the one description of a NOTIFY, used from the
//! command line and campaign rows down to the flow that puts it on the wire.

use crate::event::Event;
use crate::sip::digest::Password;
use crate::sip::request::{ExtraHeader, NotifyRequest};
use crate::sip::uri::{HostPort, Target};
use crate::sip::Transport;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The credentials of a phone line.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The digest user name (Auth ID); the target's user part when `None`.
    pub user: Option<String>,
    /// The line password.
    pub password: Password,
}

/// One NOTIFY to send.
#[derive(Debug, Clone)]
pub struct Notify {
    /// The phone line.
    pub target: Target,
    /// What to ask. Shared, so a campaign holds one copy.
    pub event: Arc<Event>,
    /// Additional headers.
    pub extra: Arc<[ExtraHeader]>,
    /// The line's credentials, used only if the phone challenges.
    pub credentials: Option<Credentials>,
    /// The transport; the target's `transport` parameter, else UDP, when `None`. A `sips:`
    /// target goes over TLS whatever this says.
    pub transport: Option<Transport>,
    /// An outbound proxy: requests go there, the Request-URI stays the target.
    pub proxy: Option<HostPort>,
    /// The From URI; `sip:sipnotify@<local ip>` when `None`.
    pub from: Option<String>,
    /// An overall limit for this target, shorter than Timer F (32 s by default).
    pub timeout: Option<Duration>,
    /// Keep every message in [`Outcome::ladder`](super::Outcome::ladder).
    pub trace: bool,
}

impl Notify {
    /// A NOTIFY with no credentials, extra headers, proxy or limits.
    pub fn new(target: Target, event: Event) -> Notify {
        Notify {
            target,
            event: Arc::new(event),
            extra: Arc::from(Vec::new()),
            credentials: None,
            transport: None,
            proxy: None,
            from: None,
            timeout: None,
            trace: false,
        }
    }

    /// Adds the line's credentials.
    pub fn with_credentials(mut self, user: Option<&str>, password: Password) -> Notify {
        self.credentials = Some(Credentials {
            user: user.map(str::to_string),
            password,
        });
        self
    }

    /// The transport this NOTIFY will use: TLS for a `sips:` target, which no other may
    /// carry (RFC 3261 section 19.1).
    pub fn transport(&self) -> Transport {
        if self.target.is_sips() {
            return Transport::Tls;
        }
        self.transport
            .or(self.target.transport())
            .unwrap_or(Transport::Udp)
    }

    /// Where the requests go before resolution: the proxy, or else the target's host.
    pub fn next_hop(&self) -> HostPort {
        match &self.proxy {
            Some(proxy) => proxy.clone(),
            None => self.target.host_port(),
        }
    }

    /// The digest user name: the Auth ID, else the target's user part.
    pub fn auth_user(&self) -> &str {
        self.credentials
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or(self.target.user())
    }
}

/// The most a UDP datagram carries: 65,535 bytes less the IPv4 and UDP headers.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// A NOTIFY too large for the transport it would travel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request is {0} bytes with its credentials; UDP carries at most 65,507: use --transport tcp")]
pub struct TooLargeForUdp(pub usize);

impl Notify {
    /// Checks that the NOTIFY, its authenticated retry included, fits in a UDP datagram
    /// when it travels on UDP. The size is reckoned with the longest local address, tags
    /// and an `Authorization` header of [`AUTHORIZATION_ALLOWANCE`] bytes plus the
    /// Request-URI again (the digest `uri`).
    pub fn check_size(&self) -> Result<(), TooLargeForUdp> {
        if self.transport() != Transport::Udp {
            return Ok(());
        }
        // Every campaign row is checked: when the parts of any length leave room for the
        // rest, whose length is bounded, the request fits without being written out.
        if self.variable_len() + REST_BOUND <= MAX_UDP_PAYLOAD {
            return Ok(());
        }
        let local: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .expect("an address");
        let authorization = [(true, "x".repeat(AUTHORIZATION_ALLOWANCE))];
        let from = self
            .from
            .as_deref()
            .unwrap_or("sip:sipnotify@ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        let size = NotifyRequest {
            target: &self.target,
            from,
            from_tag: "0123456789abcdef",
            call_id: "0123456789abcdef0123456789abcdef",
            cseq: u32::MAX,
            branch: "z9hG4bK0123456789abcdef0123456789abcdef",
            local,
            transport: Transport::Udp,
            event: &self.event,
            extra: &self.extra,
            authorization: &authorization,
        }
        .to_bytes()
        .len()
            + self.target.as_str().len();
        if size > MAX_UDP_PAYLOAD {
            Err(TooLargeForUdp(size))
        } else {
            Ok(())
        }
    }
}

/// The most a NOTIFY writes beyond [`Notify::variable_len`]: the start line, header names,
/// addresses, tokens, numbers and fixed values.
const REST_BOUND: usize = 1024;

impl Notify {
    /// The parts of its requests whose length has no bound: the target (Request-URI, To, and
    /// the digest `uri`), the From URI, the event, the extra headers, and the allowance for
    /// the `Authorization` header.
    fn variable_len(&self) -> usize {
        3 * self.target.as_str().len()
            + self.from.as_deref().map_or(0, str::len)
            + self.event.header_value().len()
            + self.event.content_type().map_or(0, str::len)
            + self.event.body().len()
            + self
                .extra
                .iter()
                .map(ExtraHeader::written_len)
                .sum::<usize>()
            + AUTHORIZATION_ALLOWANCE
    }
}

/// Room left for an `Authorization` header when sizing a request before any challenge:
/// the phone's realm, nonce and opaque are not known yet.
pub const AUTHORIZATION_ALLOWANCE: usize = 1024;

/// Where a NOTIFY goes once its next hop is resolved (and, over TCP, connected): what the
/// I/O layer tells the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The address requests go to first (the phone, or an outbound proxy).
    pub destination: SocketAddr,
    /// The local address written in Via and Contact.
    pub local: SocketAddr,
    /// The transport of the requests.
    pub transport: Transport,
    /// What a name resolved through DNS adds: the destinations to try next and how they
    /// were found. `None` for an address, as nearly every target of a campaign is, so that
    /// its route stays one destination inline.
    pub resolution: Option<Box<Resolution>>,
}

impl Route {
    /// A route to one destination.
    pub fn new(destination: SocketAddr, local: SocketAddr, transport: Transport) -> Route {
        Route {
            destination,
            local,
            transport,
            resolution: None,
        }
    }
}

/// The rest of a resolved route (RFC 3263).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The destinations after [`Route::destination`], in the order to try them when a
    /// transaction times out within its share of the time, cannot be sent, or gets 503
    /// (RFC 3263 §4.3).
    pub next: Vec<Hop>,
    /// How the name was resolved, a line per step, shown in the ladder; empty unless the
    /// NOTIFY is traced.
    pub steps: Vec<String>,
}

/// One more destination of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// Its address.
    pub destination: SocketAddr,
    /// The local address written in Via and Contact when sending there.
    pub local: SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_over_a_datagram_is_refused_on_udp_only() {
        let target = Target::parse("sip:159@10.0.0.7").unwrap();
        let url = format!("http://10.0.0.1/{}", "a".repeat(70_000));
        let big = Notify::new(target.clone(), Event::xml_service(&url).unwrap());
        let TooLargeForUdp(size) = big.check_size().unwrap_err();
        assert!(size > 70_000, "{size}");
        let mut over_tcp = big;
        over_tcp.transport = Some(Transport::Tcp);
        assert_eq!(over_tcp.check_size(), Ok(()));
        let sips = Target::parse("sips:159@10.0.0.7").unwrap();
        let mut over_tls = Notify::new(sips, Event::xml_service(&url).unwrap());
        over_tls.transport = Some(Transport::Udp);
        assert_eq!(over_tls.transport(), Transport::Tls);
        assert_eq!(over_tls.check_size(), Ok(()));
        let small = Notify::new(target, Event::Reboot);
        assert_eq!(small.check_size(), Ok(()));
    }

    #[test]
    fn what_a_request_writes_beyond_its_variable_parts_is_bounded() {
        // The longest of everything else: an IPv6 Via and Contact, a sips: target, the
        // largest CSeq, a custom event with a content type, an answer to a proxy.
        let target = Target::parse("sips:1@h").unwrap();
        let event = Event::custom("e", b"x".to_vec(), Some("a/b".into())).unwrap();
        let mut notify = Notify::new(target, event);
        notify.extra = Arc::from(vec![ExtraHeader::parse("X-A: b").unwrap()]);
        let local: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        let authorization = [(true, "x".repeat(AUTHORIZATION_ALLOWANCE))];
        let written = NotifyRequest {
            target: &notify.target,
            from: "",
            from_tag: "0123456789abcdef",
            call_id: "0123456789abcdef0123456789abcdef",
            cseq: u32::MAX,
            branch: "z9hG4bK0123456789abcdef0123456789abcdef",
            local,
            transport: Transport::Tls,
            event: &notify.event,
            extra: &notify.extra,
            authorization: &authorization,
        }
        .to_bytes()
        .len();
        let rest = written - notify.variable_len();
        assert!(rest <= REST_BOUND, "{rest} bytes beyond the variable parts");
    }
}
