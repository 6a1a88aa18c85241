//! The tokio layer: sockets pumped into the sans-IO [`crate::proto`] core.
//!
//! [`Notifier`] owns one UDP socket and a pool of TCP connections, and runs one driver task
//! that feeds an [`Endpoint`](crate::proto::endpoint::Endpoint) and carries out what it asks.

mod driver;
mod notifier;
mod tcp;
pub mod udp;

pub use notifier::{split_host_port, Credentials, Notifier, NotifierConfig, Notify, Sending};
