//! sipnotify: send SIP NOTIFY requests (resync, reboot, XML-Service, ...) to SIP phones,
//! answer their digest challenges, and report what really happened to each one.
//!
//! # Layout
//!
//! From the bytes on the wire up to campaigns (ARCHITECTURE.md tells the same with the flow
//! of one NOTIFY and one campaign row through it):
//!
//! - [`sip`] is the wire format, sans-IO: [`sip::codec`] parses and frames what is
//!   received, tolerantly and within bounds; [`sip::uri`] reads targets into a [`Target`]
//!   with a [`Host`] and an optional port; [`sip::request`] and [`sip::response`] write
//!   messages; [`sip::digest`] is digest authentication, split into its client and server
//!   sides.
//! - [`event`] is the one table of events (resync, reboot, restart, report, XML-Service)
//!   and their names, and the [`Event`] a NOTIFY carries.
//! - [`proto`] is the protocol core, sans-IO: no sockets, no clock reads, no tokio. Time
//!   comes in as an [`std::time::Instant`] argument, bytes in and out as buffers. A
//!   [`Notify`] (what to send) and its [`Route`](proto::Route) (where, once resolved) start
//!   a flow in the [`Endpoint`](proto::Endpoint), which runs RFC 3261 transactions,
//!   answers 401/407 challenges and ends each target with an [`Outcome`].
//! - [`net`] is the thin tokio layer: [`net::resolve`] finds the next hop, and one driver
//!   task pumps a UDP socket, TCP and TLS connections ([`net::tls`] checks certificates)
//!   and one timer into an endpoint, behind the async [`Notifier`].
//! - [`campaign`] sends one event to many phones from a streamed CSV or JSON Lines file:
//!   the whole pipeline (input, sharding, pacing, retries, a crash-safe journal, report,
//!   summary) behind [`Campaign`](campaign::Campaign), over any delivery
//!   [`Channel`](campaign::Channel), of which the [`Notifier`] is the first.
//! - [`http`] acts on phones over HTTP (Cisco CGI/Execute push, screenshots, device
//!   information): objects, answers and authentication sans-IO, a hyper client, and the
//!   campaign channel [`Pusher`](http::Pusher).
//! - [`text`] makes text from the network or a file safe to show on a terminal; [`secret`]
//!   declares the types of passwords and keys, which never show in output, and reads the
//!   files that hold them.
//! - [`phone`] is a simulated SPA/MPP phone line (sans-IO logic plus a tokio server) used by
//!   the tests, the demo and users' own rehearsals.
//! - [`provision`] is what follows a resync: MPP profile formats (openssl AES-256-CBC,
//!   RFC 8188, gzip), profile rules and checks (sans-IO), the provisioning server, the
//!   simulated phone's fetch, and campaigns confirmed by the phones' fetches.
//! - [`api`] is the service mode (`sipnotify api`): one NOTIFY and whole campaigns behind
//!   an HTTP JSON API (axum), campaigns journaled in a state directory and resumed after a
//!   restart, Prometheus metrics; built on [`campaign`] and the [`Notifier`].
//!
//! # Example
//!
//! Resync one line. Here the phone is the built-in simulator, so the example runs anywhere.
//!
//! ```
//! use sipnotify::phone::{self, PhoneConfig};
//! use sipnotify::{Event, Notifier, NotifierConfig, Notify, OutcomeKind, Password, Target, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PhoneConfig { password_template: "secret".into(), ..PhoneConfig::default() };
//! let phone = phone::spawn(config, &[("127.0.0.1:0".parse()?, Transport::Udp)]).await?;
//! let target = Target::parse(&format!("sip:159@{}", phone.local_addrs()[0].0))?;
//!
//! let notifier = Notifier::bind(NotifierConfig::default()).await?;
//! let notify = Notify::new(target, Event::resync(None)?)
//!     .with_credentials(None, Password::new("secret"));
//! let outcome = notifier.send(notify).await;
//! assert_eq!(outcome.kind, OutcomeKind::Delivered);
//! assert_eq!(outcome.attempts, 2); // challenged with 401, then answered
//! # phone.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The command-line interface lives in the binary (`src/main.rs`, `src/cli/`) and uses only
//! this public API.
#![warn(missing_docs)]

pub mod api;
pub mod campaign;
pub mod event;
pub mod http;
pub mod net;
pub mod paths;
pub mod phone;
pub mod proto;
pub mod provision;
pub mod secret;
pub mod sip;
pub mod text;

pub use event::{Event, EventError};
pub use net::{Notifier, NotifierConfig};
pub use proto::{Credentials, Notify, Outcome, OutcomeKind};
pub use sip::digest::Password;
pub use sip::request::ExtraHeader;
pub use sip::uri::{Host, HostPort, Target};
pub use sip::Transport;
