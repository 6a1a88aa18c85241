//! The sans-IO protocol core: the state machines that take one NOTIFY from its first send
//! to its [`Outcome`]. No sockets, no clock reads, no tokio: time comes in as an
//! [`std::time::Instant`] argument, bytes in and out as buffers. Built on [`crate::sip`].
//!
//! - [`notify`]: what to send ([`Notify`]) and where, once resolved ([`Route`]).
//! - [`transaction`]: the RFC 3261 non-INVITE client transaction and its timers.
//! - `flow` (internal): one target from first NOTIFY to its outcome, answering
//!   401/407 challenges.
//! - [`endpoint`]: many flows behind one socket, like quinn-proto's `Endpoint`: responses
//!   routed by Via branch, one timer queue, datagrams handed out to send.
//! - [`outcome`]: what happened to one target, as data.

pub mod endpoint;
pub(crate) mod flow;
pub mod notify;
pub mod outcome;
#[cfg(test)]
mod paired;
pub mod transaction;

pub use endpoint::{Endpoint, FlowId, Mismatch, Received, Stats, Transmit};
pub use notify::{Credentials, Hop, Notify, Resolution, Route, TooLargeForUdp, MAX_UDP_PAYLOAD};
pub use outcome::{Outcome, OutcomeKind};
pub use transaction::Timers;
