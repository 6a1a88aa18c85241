//! sipnotify: send SIP NOTIFY requests (resync, reboot, XML-Service, ...) to SIP phones,
//! answer their digest challenges, and report what really happened to each one.
//!
//! # Layout
//!
//! - [`proto`] is the SIP protocol core. It is sans-IO: no sockets, no clock reads, no tokio.
//!   Time comes in as an [`std::time::Instant`] argument, bytes in and out as buffers.
//!   - [`sip::codec`] parses and frames everything received, tolerantly and within bounds.
//!   - [`sip::digest`] computes and verifies digest answers (MD5, SHA-256, -sess, qop).
//!   - [`sip::request`] writes the NOTIFY requests, once per attempt, into one buffer;
//!     rsip parses them back as the typed view.
//!   - [`sip::uri`] parses the phone addresses users type.
//!   - [`proto::transaction`] is the RFC 3261 non-INVITE client transaction and its timers.
//!   - [`proto::flow`] drives one target from first NOTIFY to its [`Outcome`], answering
//!     401/407 challenges.
//!   - [`proto::endpoint`] multiplexes many flows: routes responses by Via branch, keeps one
//!     timer queue, and hands out datagrams to send.
//! - [`net`] is the thin tokio layer: one driver task pumps a UDP socket, TCP connections
//!   and one timer into an endpoint, behind the async [`Notifier`] API.
//! - [`campaign`] sends one event to many phones from a streamed CSV or JSON Lines file:
//!   sharding, pacing (concurrency, rate, spread), retries, and a crash-safe journal that
//!   lets a campaign resume without sending twice.
//! - [`phone`] is a simulated SPA/MPP phone line (sans-IO logic plus a tokio server) used by
//!   the tests, the demo and users' own integration tests.
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

pub mod campaign;
pub mod event;
pub mod net;
pub mod phone;
pub mod proto;
pub mod sip;

pub use event::{Event, EventError};
pub use net::{Notifier, NotifierConfig};
pub use proto::{Credentials, Notify, Outcome, OutcomeKind};
pub use sip::digest::Password;
pub use sip::request::ExtraHeader;
pub use sip::uri::{Host, HostPort, Target};
pub use sip::Transport;
