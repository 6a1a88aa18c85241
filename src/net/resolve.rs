//! Where a next hop is: a literal address at once, a name through the system resolver
//! (A/AAAA), and the local address that routes to it. SRV and NAPTR (RFC 3263) belong here.

use crate::sip::uri::{Host, HostPort};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

/// Why a next hop could not be reached before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The name resolved to nothing.
    #[error("{0} has no address")]
    NoAddress(String),
    /// The kernel has no route to the address.
    #[error("no route to {destination}: {source}")]
    NoRoute {
        /// The address.
        destination: IpAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

/// The address of a literal next hop; `None` for a name.
pub(crate) fn literal(hop: &HostPort) -> Option<SocketAddr> {
    hop.host
        .ip()
        .map(|ip| SocketAddr::new(ip, hop.port_or_default()))
}

/// Resolves a next hop, preferring IPv4 as most phone networks are.
pub(crate) async fn lookup(hop: &HostPort) -> Result<SocketAddr, ResolveError> {
    if let Some(addr) = literal(hop) {
        return Ok(addr);
    }
    let name = match &hop.host {
        Host::Name(name) => name.as_str(),
        _ => unreachable!("an address is literal"),
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, hop.port_or_default()))
        .await
        .map_err(|source| ResolveError::Lookup {
            host: name.to_string(),
            source,
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(name.to_string()))
}

/// Destinations whose local address is remembered.
const MAX_ROUTES: usize = 4096;

/// The local address that routes to each destination, remembered.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    cache: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Routes {
    /// The local IP that routes to `dest`: what the phone must see in Via, never 0.0.0.0.
    pub(crate) fn local_ip(&self, dest: IpAddr) -> Result<IpAddr, ResolveError> {
        let mut routes = self.cache.lock().expect("route cache lock");
        if let Some(ip) = routes.get(&dest) {
            return Ok(*ip);
        }
        // Connecting a UDP socket sends nothing; it only asks the kernel for the route.
        let unspecified: IpAddr = match dest {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let ip = std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))
            .and_then(|s| s.connect((dest, 9)).and_then(|()| s.local_addr()))
            .map(|a| a.ip())
            .map_err(|source| ResolveError::NoRoute {
                destination: dest,
                source,
            })?;
        // A fleet has many phones but few routes: bound the cache, not the fleet.
        if routes.len() >= MAX_ROUTES {
            routes.clear();
        }
        routes.insert(dest, ip);
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_lookup_and_names_resolve() {
        let hop: HostPort = "127.0.0.1".parse().unwrap();
        assert_eq!(literal(&hop), Some("127.0.0.1:5060".parse().unwrap()));
        let hop: HostPort = "[::1]:5070".parse().unwrap();
        assert_eq!(lookup(&hop).await.unwrap(), "[::1]:5070".parse().unwrap());
        let hop: HostPort = "localhost:5071".parse().unwrap();
        assert_eq!(literal(&hop), None);
        assert_eq!(lookup(&hop).await.unwrap().port(), 5071);
        let routes = Routes::default();
        let local = routes.local_ip("127.0.0.2".parse().unwrap()).unwrap();
        assert!(local.is_loopback());
    }
}
