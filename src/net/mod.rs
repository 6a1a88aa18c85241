//! The tokio layer: sockets pumped into the sans-IO [`crate::proto`] core. Thin on purpose.
//!
//! [`Notifier`] owns one UDP socket and a pool of TCP and TLS connections, and runs one
//! driver task that feeds an [`Endpoint`](crate::proto::Endpoint) and carries out what it
//! asks. [`resolve`] finds where a next hop is, and `route` the local address that routes
//! there.
//! [`tls`] makes a connected TCP stream a TLS one and checks the peer's certificate.
//! [`descriptor_budget`] says how many TCP targets can be in flight at once.

mod descriptors;
mod driver;
mod notifier;
pub mod resolve;
mod route;
mod tcp;
pub mod tls;
pub(crate) mod udp;

pub use descriptors::{descriptor_budget, raise_descriptor_limit};
pub use notifier::{Notifier, NotifierConfig, SendError, Sending};
pub use resolve::ResolveError;

/// A TCP listener on `addr`, and the address it got (port 0 picks a free one): what the
/// servers print and hand back.
pub(crate) async fn listen(
    addr: std::net::SocketAddr,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
