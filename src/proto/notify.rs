//! What to send to one phone line: the one description of a NOTIFY, used from the
//! command line and campaign rows down to the flow that puts it on the wire.

use crate::event::Event;
use crate::sip::digest::Password;
use crate::sip::request::ExtraHeader;
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
    /// The transport; the target's `transport` parameter, else UDP, when `None`.
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

    /// The transport this NOTIFY will use.
    pub fn transport(&self) -> Transport {
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
    pub fn auth_user(&self) -> Option<&str> {
        self.credentials
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .or(self.target.user())
    }
}

/// Where a NOTIFY goes once its next hop is resolved (and, over TCP, connected): what the
/// I/O layer tells the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The address requests go to (the phone, or an outbound proxy).
    pub destination: SocketAddr,
    /// The local address written in Via and Contact.
    pub local: SocketAddr,
    /// The transport of the requests.
    pub transport: Transport,
}
