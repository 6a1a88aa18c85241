//! The local address that routes to a destination: what the phone must see in Via.
//!
//! The kernel answers when a UDP socket is connected (a probe: connect, getsockname,
//! disconnect; nothing is sent). A fleet has a distinct address per phone but few routes,
//! so for IPv4 a copy of the routing rules and tables ([`Fib`]) tells which route a
//! destination takes, and the kernel is asked once per route instead of once per phone.
//!
//! The copy is used only where the kernel's choice of local address cannot depend on the
//! destination within a route: the three default rules, and a destination whose longest
//! matching prefix is one unicast route (or a local route with a preferred source) with
//! one live next hop and no TOS, the same whether the local and main tables are looked up
//! as one or one after the other. Anything else (policy rules, multipath, nexthop objects,
//! IPv6, whose source selection is per destination) is probed per destination. A change
//! to links, addresses, routes or rules, announced by the kernel over netlink, drops what
//! was learnt, and the tables are read again; while they cannot be (and for good past 256
//! routes), every destination is probed.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP};
use netlink_packet_core::{NLM_F_DUMP_INTR, NLM_F_REQUEST};
use netlink_packet_route::route::{RouteAttribute, RouteFlags, RouteMessage, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket as Netlink, SocketAddr as NetlinkAddr};
use nix::libc;
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::resolve::ResolveError;

/// Destinations whose local address is remembered one by one.
const MAX_DESTINATIONS: usize = 4096;

/// Routes the copy may hold: a larger table is a router's, which changes too often to copy
/// and would take longer to search than the kernel.
const MAX_FIB_ROUTES: usize = 256;

/// How often the kernel's change announcements are looked at, at most.
const WATCH_EVERY: Duration = Duration::from_millis(1);

/// The local address that routes to each destination, remembered.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    state: Mutex<RouteState>,
}

#[derive(Debug, Default)]
struct RouteState {
    /// Per destination: IPv6, and IPv4 the copy cannot answer for.
    cache: HashMap<IpAddr, IpAddr>,
    /// One UDP socket per family (v4, v6) that asks the kernel for routes: a socket made
    /// and closed per question costs more than the question.
    probes: [Option<Socket>; 2],
    fib: FibState,
}

impl Routes {
    /// The local IP that routes to `dest`: what the phone must see in Via, never 0.0.0.0.
    pub(crate) fn local_ip(&self, dest: IpAddr) -> Result<IpAddr, ResolveError> {
        let mut state = self.state.lock().expect("route cache lock");
        state
            .local_ip(dest)
            .map_err(|source| ResolveError::NoRoute {
                destination: dest,
                source,
            })
    }
}

impl RouteState {
    fn local_ip(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        if self.fib.changed(Instant::now()) {
            self.cache.clear();
        }
        let route = match dest {
            IpAddr::V4(v4) => self.fib.route_for(v4),
            IpAddr::V6(_) => None,
        };
        if let Some(route) = route {
            if let Some(ip) = self.fib.learnt[route] {
                return Ok(ip);
            }
            let ip = self.probe(dest)?;
            self.fib.learnt[route] = Some(ip);
            return Ok(ip);
        }
        if let Some(ip) = self.cache.get(&dest) {
            return Ok(*ip);
        }
        let ip = self.probe(dest)?;
        // Bound the memory, not the fleet.
        if self.cache.len() >= MAX_DESTINATIONS {
            self.cache.clear();
        }
        self.cache.insert(dest, ip);
        Ok(ip)
    }

    /// Asks the kernel: connecting a UDP socket sends nothing, it only chooses the route and
    /// the local address. The probe is disconnected again, which also forgets that address,
    /// so that the next connect chooses afresh; a probe that failed is not used again.
    fn probe(&mut self, dest: IpAddr) -> io::Result<IpAddr> {
        let to = SocketAddr::new(dest, 9);
        let slot = &mut self.probes[usize::from(dest.is_ipv6())];
        let probe = match slot.take() {
            Some(probe) => probe,
            None => Socket::new(Domain::for_address(to), Type::DGRAM, None)?,
        };
        probe.connect(&to.into())?;
        let local = probe.local_addr()?;
        disconnect(&probe)?;
        *slot = Some(probe);
        local
            .as_socket()
            .map(|a| a.ip())
            .ok_or_else(|| io::Error::other("not an IP address"))
    }
}

/// Dissolves a UDP socket's association: a connect to an `AF_UNSPEC` address (the socket
/// crates have no call for it). Unless the socket was bound explicitly, this also resets
/// the local address and port its connect chose.
fn disconnect(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let unspecified = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `unspecified` is a valid sockaddr that lives across the call, `len` is its
    // size, and the descriptor is the borrowed socket's own.
    match unsafe { libc::connect(socket.as_raw_fd(), &unspecified, len) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The copy of the IPv4 tables, the kernel's announcements that keep it current, and the
/// local address learnt for each route.
#[derive(Debug, Default)]
struct FibState {
    /// Subscribed to changes; `None` before the first use, and if announcements are lost.
    watch: Option<Netlink>,
    /// The tables are not copied again: they are a router's, or announcements cannot be
    /// had (then neither is anything learnt per destination ever forgotten).
    never: bool,
    /// `None` when the rules or tables are beyond what the copy answers for, or could not
    /// be read (they are read again at the next announcement).
    fib: Option<Fib>,
    /// Per route of `fib`, the local address the kernel chose for one of its destinations.
    learnt: Vec<Option<IpAddr>>,
    /// When the announcements were last looked at.
    watched: Option<Instant>,
}

/// Why the tables are not copied.
enum Unread {
    /// More than [`MAX_FIB_ROUTES`]: for good.
    TooMany,
    /// Anything else (a dump interrupted by a change, a message not understood): until the
    /// next announcement.
    Failed(io::Error),
}

impl FibState {
    /// Reads the tables at first use and again after the kernel announced a change; `true`
    /// when what was learnt before may no longer hold.
    fn changed(&mut self, now: Instant) -> bool {
        if self.never && self.watch.is_none() {
            return false;
        }
        if self.watched.is_some_and(|at| now < at + WATCH_EVERY) {
            return false;
        }
        self.watched = Some(now);
        let changed = match &self.watch {
            None => match subscribe() {
                // Subscribed before the tables are read, so that no change is missed.
                Ok(watch) => {
                    self.watch = Some(watch);
                    true
                }
                Err(err) => {
                    tracing::debug!(%err, "no route announcements: probing every destination");
                    self.never = true;
                    return true;
                }
            },
            Some(watch) => match drained(watch) {
                Ok(changed) => changed,
                Err(err) => {
                    tracing::debug!(%err, "route announcements lost: probing every destination");
                    self.watch = None;
                    self.never = true;
                    true
                }
            },
        };
        if changed {
            self.fib = None;
            self.learnt.clear();
            if !self.never {
                self.read();
            }
        }
        changed
    }

    fn read(&mut self) {
        match tables() {
            Ok((rules, routes)) => {
                self.fib = Fib::new(&rules, &routes);
                self.learnt = vec![None; self.fib.as_ref().map_or(0, |f| f.routes.len())];
            }
            Err(Unread::TooMany) => {
                tracing::debug!("over {MAX_FIB_ROUTES} routes: probing every destination");
                self.never = true;
            }
            Err(Unread::Failed(err)) => {
                tracing::debug!(%err, "routing tables unread: probing until they change");
            }
        }
    }

    fn route_for(&self, dest: Ipv4Addr) -> Option<usize> {
        self.fib.as_ref()?.route_for(dest)
    }
}

/// The kernel's IPv4 routes of the default rules' tables, as far as the choice of a local
/// address goes.
#[derive(Debug, PartialEq)]
struct Fib {
    routes: Vec<FibRoute>,
}

#[derive(Debug, PartialEq)]
struct FibRoute {
    table: u32,
    prefix: u32,
    len: u8,
    /// The local address is the same for every destination this route takes.
    one_source: bool,
}

/// The tables the default rules look up, in their order.
const DEFAULT_TABLES: [u32; 3] = [
    libc::RT_TABLE_LOCAL as u32,
    libc::RT_TABLE_MAIN as u32,
    libc::RT_TABLE_DEFAULT as u32,
];

impl Fib {
    /// The copy, or `None` when the rules are not the default three (the kernel would then
    /// choose by more than the destination).
    fn new(rules: &[RuleMessage], routes: &[RouteMessage]) -> Option<Fib> {
        let mut tables: Vec<(u32, u32)> = rules
            .iter()
            .filter(|r| r.header.family == AddressFamily::Inet)
            .map(default_rule)
            .collect::<Option<_>>()?;
        tables.sort_unstable();
        let defaults: Vec<(u32, u32)> = [0, 32766, 32767].into_iter().zip(DEFAULT_TABLES).collect();
        if tables != defaults {
            return None;
        }
        let routes = routes
            .iter()
            .filter(|r| r.header.address_family == AddressFamily::Inet)
            .filter_map(fib_route)
            .collect();
        Some(Fib { routes })
    }

    /// The route `dest` takes, if the local address the kernel chooses for it is the same as
    /// for every other destination that takes that route.
    ///
    /// While no rule was ever added, the kernel keeps the local and main tables as one and
    /// takes the longest prefix of both; once one was, it looks them up one after the other,
    /// even after that rule is gone. A dump does not say which: the copy answers only where
    /// both ways take the same route.
    fn route_for(&self, dest: Ipv4Addr) -> Option<usize> {
        // Nor the network 0/8, which the kernel refuses as a destination.
        if dest.is_multicast() || dest.is_broadcast() || dest.octets()[0] == 0 {
            return None;
        }
        let dest = u32::from(dest);
        let [local, main, default] = DEFAULT_TABLES;
        let merged = self.lookup(dest, &[&[local, main], &[default]])?;
        let apart = self.lookup(dest, &[&[local], &[main], &[default]])?;
        (merged == apart).then_some(merged)
    }

    /// The route of the longest prefix that holds `dest` in the first group of tables that
    /// has one, if it is the only route for that prefix there (otherwise the kernel chooses
    /// among them by metric, TOS or type) and its local address is the same for every
    /// destination.
    fn lookup(&self, dest: u32, groups: &[&[u32]]) -> Option<usize> {
        for tables in groups {
            let mut longest: Option<(usize, u8)> = None;
            let mut twice = false;
            for (index, route) in self.routes.iter().enumerate() {
                if !tables.contains(&route.table) || !contains(route.prefix, route.len, dest) {
                    continue;
                }
                match longest {
                    Some((_, len)) if route.len < len => {}
                    Some((_, len)) if route.len == len => twice = true,
                    _ => {
                        longest = Some((index, route.len));
                        twice = false;
                    }
                }
            }
            if let Some((index, _)) = longest {
                return (!twice && self.routes[index].one_source).then_some(index);
            }
        }
        None
    }
}

fn contains(prefix: u32, len: u8, dest: u32) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    dest & mask == prefix & mask
}

/// A rule's priority and table, if it sends every packet to one table and nothing else.
fn default_rule(rule: &RuleMessage) -> Option<(u32, u32)> {
    let h = &rule.header;
    if h.dst_len != 0 || h.src_len != 0 || h.tos != 0 || h.action != RuleAction::ToTable {
        return None;
    }
    if !h.flags.is_empty() {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut priority = 0;
    for attribute in &rule.attributes {
        match attribute {
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::Protocol(_) => {}
            // The kernel's way of saying "no suppression".
            RuleAttribute::SuppressPrefixLen(u32::MAX)
            | RuleAttribute::SuppressIfGroup(u32::MAX) => {}
            _ => return None,
        }
    }
    Some((priority, table))
}

/// A route of one of the default tables; `one_source` only for a unicast route with one
/// live next hop and no TOS, or a local one with a preferred source (without one, the
/// kernel answers from the destination itself).
fn fib_route(route: &RouteMessage) -> Option<FibRoute> {
    let h = &route.header;
    let mut table = u32::from(h.table);
    let mut prefix = Ipv4Addr::UNSPECIFIED;
    let mut preferred = false;
    let mut one_next_hop = true;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(netlink_packet_route::route::RouteAddress::Inet(a)) => {
                prefix = *a
            }
            RouteAttribute::PrefSource(_) => preferred = true,
            RouteAttribute::MultiPath(_)
            | RouteAttribute::NhId(_)
            | RouteAttribute::Encap(_)
            | RouteAttribute::EncapType(_) => one_next_hop = false,
            _ => {}
        }
    }
    if !DEFAULT_TABLES.contains(&table) {
        return None;
    }
    let live = !h.flags.intersects(RouteFlags::Dead | RouteFlags::Linkdown);
    let one_source = one_next_hop
        && live
        && h.tos == 0
        && match h.kind {
            RouteType::Unicast => true,
            RouteType::Local => preferred,
            _ => false,
        };
    Some(FibRoute {
        table,
        prefix: u32::from(prefix),
        len: h.destination_prefix_length,
        one_source,
    })
}

/// A netlink socket told of every change to links, addresses, routes and rules.
fn subscribe() -> io::Result<Netlink> {
    let mut socket = Netlink::new(NETLINK_ROUTE)?;
    let groups = libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV4_RULE
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV6_ROUTE;
    socket.bind(&NetlinkAddr::new(0, groups as u32))?;
    socket.set_non_blocking(true)?;
    Ok(socket)
}

/// Announcements read at one look, at most: more are a change all the same, read at the
/// next look.
const MAX_DRAINED: usize = 64;

/// Reads what the kernel announced; `true` if anything was (an overflow counts).
fn drained(watch: &Netlink) -> io::Result<bool> {
    let mut buf = [0u8; 8192];
    let mut changed = false;
    for _ in 0..MAX_DRAINED {
        match watch.recv(&mut &mut buf[..], 0) {
            Ok(_) => changed = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changed),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The IPv4 rules and routes.
fn tables() -> Result<(Vec<RuleMessage>, Vec<RouteMessage>), Unread> {
    let mut rule = RuleMessage::default();
    rule.header.family = AddressFamily::Inet;
    let rules = dump(RouteNetlinkMessage::GetRule(rule), |m| match m {
        RouteNetlinkMessage::NewRule(rule) => Some(rule),
        _ => None,
    })?;
    let mut route = RouteMessage::default();
    route.header.address_family = AddressFamily::Inet;
    let routes = dump(RouteNetlinkMessage::GetRoute(route), |m| match m {
        RouteNetlinkMessage::NewRoute(route) => Some(route),
        _ => None,
    })?;
    Ok((rules, routes))
}

/// What `pick` keeps of the answers to one dump `request`, up to [`MAX_FIB_ROUTES`].
fn dump<T>(
    request: RouteNetlinkMessage,
    pick: impl Fn(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, Unread> {
    let failed = Unread::Failed;
    let invalid = |e: String| Unread::Failed(io::Error::new(io::ErrorKind::InvalidData, e));
    let mut socket = Netlink::new(NETLINK_ROUTE).map_err(failed)?;
    socket.bind_auto().map_err(failed)?;
    socket.connect(&NetlinkAddr::new(0, 0)).map_err(failed)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
    packet.finalize();
    let mut out = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0).map_err(failed)?;
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let len = socket.recv(&mut &mut buf[..], 0).map_err(failed)?;
        let mut at = 0;
        while at < len {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[at..len])
                .map_err(|e| invalid(e.to_string()))?;
            if message.header.flags & NLM_F_DUMP_INTR != 0 {
                return Err(invalid("the tables changed while they were read".into()));
            }
            // Messages are padded to 4 bytes; a header is 16 (deserialize checked it).
            let length = (message.header.length as usize).next_multiple_of(4).max(16);
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(messages),
                NetlinkPayload::Error(e) => return Err(failed(e.to_io())),
                NetlinkPayload::InnerMessage(m) => messages.extend(pick(m)),
                _ => {}
            }
            if messages.len() > MAX_FIB_ROUTES {
                return Err(Unread::TooMany);
            }
            at += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer a socket of its own gives: what the shared probe must give too.
    fn fresh_route(dest: IpAddr) -> io::Result<IpAddr> {
        let to = SocketAddr::new(dest, 9);
        let socket = Socket::new(Domain::for_address(to), Type::DGRAM, None)?;
        socket.connect(&to.into())?;
        Ok(socket.local_addr()?.as_socket().unwrap().ip())
    }

    /// The machine's own addresses, loopback, and addresses around them.
    fn destinations() -> Vec<IpAddr> {
        let mut destinations = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 9, 8, 7])];
        for interface in nix::ifaddrs::getifaddrs().unwrap() {
            if let Some(a) = interface.address.and_then(|a| a.as_sockaddr_in().copied()) {
                let ip = u32::from(a.ip());
                destinations.extend(
                    [ip, ip ^ 1, ip ^ 0x100, ip ^ 0x1_0000].map(|i| IpAddr::V4(Ipv4Addr::from(i))),
                );
            }
        }
        destinations
            .extend(["8.8.8.8", "203.0.113.9", "10.1.2.3"].map(|a| a.parse::<IpAddr>().unwrap()));
        if Socket::new(Domain::IPV6, Type::DGRAM, None).is_ok() {
            destinations.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        }
        destinations
    }

    fn rule(priority: u32, table: u32, extra: Vec<RuleAttribute>) -> RuleMessage {
        let mut rule = RuleMessage::default();
        rule.header.family = AddressFamily::Inet;
        rule.header.action = RuleAction::ToTable;
        rule.attributes = vec![
            RuleAttribute::Table(table),
            RuleAttribute::Priority(priority),
        ];
        rule.attributes.extend(extra);
        rule
    }

    fn default_rules() -> Vec<RuleMessage> {
        vec![
            rule(0, 255, vec![]),
            rule(32766, 254, vec![]),
            rule(32767, 253, vec![]),
        ]
    }

    /// A route: `kind` in `table` for `prefix`, with a preferred source when `src` is set.
    fn route(table: u8, kind: RouteType, prefix: &str, src: Option<&str>) -> RouteMessage {
        let (ip, len) = prefix.split_once('/').unwrap_or((prefix, "32"));
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = table;
        route.header.kind = kind;
        route.header.destination_prefix_length = len.parse().unwrap();
        if len != "0" {
            let ip: Ipv4Addr = ip.parse().unwrap();
            route
                .attributes
                .push(RouteAttribute::Destination(ip.into()));
        }
        if let Some(src) = src {
            let src: Ipv4Addr = src.parse().unwrap();
            route
                .attributes
                .push(RouteAttribute::PrefSource(src.into()));
        }
        route
    }

    /// A host's tables: loopback, one LAN, a default gateway.
    fn host() -> Vec<RouteMessage> {
        vec![
            route(255, RouteType::Local, "127.0.0.0/8", Some("127.0.0.1")),
            route(255, RouteType::Local, "192.0.2.2", Some("192.0.2.2")),
            route(255, RouteType::Broadcast, "192.0.2.255", Some("192.0.2.2")),
            route(254, RouteType::Unicast, "0.0.0.0/0", None),
            route(254, RouteType::Unicast, "192.0.2.0/24", Some("192.0.2.2")),
            route(254, RouteType::Unicast, "10.1.0.0/16", None),
        ]
    }

    fn taken(fib: &Fib, dest: &str) -> Option<(u32, String)> {
        let route = &fib.routes[fib.route_for(dest.parse().unwrap())?];
        Some((
            route.table,
            format!("{}/{}", Ipv4Addr::from(route.prefix), route.len),
        ))
    }

    #[test]
    fn the_longest_prefix_of_the_first_table_that_has_one_decides() {
        let fib = Fib::new(&default_rules(), &host()).unwrap();
        let cases = [
            ("127.4.5.6", 255, "127.0.0.0/8"),
            ("192.0.2.2", 255, "192.0.2.2/32"),
            ("192.0.2.77", 254, "192.0.2.0/24"),
            ("10.1.9.9", 254, "10.1.0.0/16"),
            ("10.2.9.9", 254, "0.0.0.0/0"),
            ("8.8.8.8", 254, "0.0.0.0/0"),
        ];
        for (dest, table, prefix) in cases {
            assert_eq!(
                taken(&fib, dest),
                Some((table, prefix.to_string())),
                "{dest}"
            );
        }
    }

    #[test]
    fn where_local_and_main_routes_overlap_both_lookup_orders_must_agree() {
        // An address added with its prefix to loopback makes a local route of that prefix.
        let mut routes = host();
        routes.push(route(255, RouteType::Local, "10.0.0.0/8", Some("10.0.0.1")));
        let fib = Fib::new(&default_rules(), &routes).unwrap();
        // Merged, the main table's /16 is longer; apart, the local table comes first.
        assert_eq!(taken(&fib, "10.1.2.3"), None);
        // Both ways, the local /8 is the longest.
        assert_eq!(taken(&fib, "10.2.3.4"), Some((255, "10.0.0.0/8".into())));
        // The same prefix in both tables: two routes for it when they are merged.
        let mut routes = host();
        routes.push(route(
            255,
            RouteType::Local,
            "192.0.2.0/24",
            Some("192.0.2.2"),
        ));
        let fib = Fib::new(&default_rules(), &routes).unwrap();
        assert_eq!(taken(&fib, "192.0.2.77"), None);
    }

    #[test]
    fn where_the_kernel_may_choose_by_more_than_the_route_it_is_asked() {
        let fib = |routes: Vec<RouteMessage>| Fib::new(&default_rules(), &routes).unwrap();
        let with = |extra: RouteMessage| {
            let mut routes = host();
            routes.push(extra);
            fib(routes)
        };
        // Not a unicast route, a broadcast, multicast or unspecified destination.
        let host_fib = fib(host());
        for dest in [
            "192.0.2.255",
            "255.255.255.255",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
        ] {
            assert_eq!(taken(&host_fib, dest), None, "{dest}");
        }
        // Two routes for one prefix (two metrics), a second default among them.
        let twice = with(route(254, RouteType::Unicast, "0.0.0.0/0", None));
        assert_eq!(taken(&twice, "8.8.8.8"), None);
        assert!(
            taken(&twice, "10.1.0.1").is_some(),
            "a longer prefix still decides"
        );
        // A local route without a preferred source answers from the destination itself.
        let anyip = with(route(255, RouteType::Local, "198.51.100.0/24", None));
        assert_eq!(taken(&anyip, "198.51.100.7"), None);
        // A route that is not a unicast one shadows the shorter ones.
        let blackhole = with(route(254, RouteType::BlackHole, "10.0.0.0/8", None));
        assert_eq!(taken(&blackhole, "10.3.0.1"), None);
        assert!(taken(&blackhole, "10.1.0.1").is_some());
        // Multipath, a nexthop object, a TOS, a dead next hop.
        let mut multipath = route(254, RouteType::Unicast, "203.0.113.0/24", None);
        multipath.attributes.push(RouteAttribute::MultiPath(vec![]));
        let mut object = route(254, RouteType::Unicast, "203.0.113.0/24", None);
        object.attributes.push(RouteAttribute::NhId(7));
        let mut tos = route(254, RouteType::Unicast, "203.0.113.0/24", None);
        tos.header.tos = 0x10;
        let mut dead = route(254, RouteType::Unicast, "203.0.113.0/24", None);
        dead.header.flags = RouteFlags::Dead;
        for odd in [multipath, object, tos, dead] {
            assert_eq!(taken(&with(odd.clone()), "203.0.113.5"), None, "{odd:?}");
        }
        // A table no default rule looks up is not the kernel's choice.
        let other = with(route(100, RouteType::Unicast, "203.0.113.0/24", None));
        assert_eq!(
            taken(&other, "203.0.113.5"),
            Some((254, "0.0.0.0/0".into()))
        );
    }

    #[test]
    fn only_the_three_default_rules_let_the_tables_answer() {
        assert!(Fib::new(&default_rules(), &host()).is_some());
        let kernel_rules = default_rules()
            .into_iter()
            .map(|mut r| {
                r.attributes
                    .push(RuleAttribute::SuppressPrefixLen(u32::MAX));
                r
            })
            .collect::<Vec<_>>();
        assert!(Fib::new(&kernel_rules, &host()).is_some());
        let mut fwmark = default_rules();
        fwmark.push(rule(100, 100, vec![RuleAttribute::FwMark(1)]));
        let mut from = default_rules();
        from[1].header.src_len = 24;
        let mut suppress = default_rules();
        suppress[1]
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(0));
        let mut vrf = default_rules();
        vrf.push(rule(1000, 0, vec![RuleAttribute::L3MDev(true)]));
        let without_main = vec![default_rules().remove(0), default_rules().remove(2)];
        for rules in [fwmark, from, suppress, vrf, without_main] {
            assert!(Fib::new(&rules, &host()).is_none(), "{rules:?}");
        }
    }

    #[test]
    fn every_answer_is_the_kernels_own() {
        let mut state = RouteState::default();
        // Each twice and in both orders: an answer learnt for a route, or a probe that kept
        // its first local address, would show as the wrong one.
        let destinations = destinations();
        for dest in destinations.iter().chain(destinations.iter().rev()) {
            let Ok(expected) = fresh_route(*dest) else {
                continue; // no route there on this machine
            };
            assert_eq!(state.local_ip(*dest).unwrap(), expected, "{dest}");
        }
        let v4 = state.probes[0].as_ref().unwrap().local_addr().unwrap();
        assert!(v4.as_socket().unwrap().ip().is_unspecified(), "{v4:?}");
    }

    #[test]
    fn a_fleet_behind_one_route_is_probed_once() {
        let mut state = RouteState::default();
        let first = IpAddr::from([127, 1, 0, 1]);
        assert_eq!(state.local_ip(first).unwrap(), fresh_route(first).unwrap());
        let Some(fib) = &state.fib.fib else {
            // Policy routing (a VPN, a VRF) is probed per destination: nothing to see here.
            assert!(
                std::env::var_os("CI").is_none(),
                "the routing rules of CI's machine are the default ones: {:?}",
                state.fib
            );
            eprintln!("SKIPPED: this machine's routing rules are not the default ones");
            return;
        };
        let route = fib
            .route_for(Ipv4Addr::new(127, 1, 0, 1))
            .expect("127/8 is one route");
        assert_eq!(fib.route_for(Ipv4Addr::new(127, 200, 3, 4)), Some(route));
        assert!(state.fib.learnt[route].is_some());
        // The probe is not asked again: take it away, and the answer still comes.
        state.probes = [None, None];
        for i in 0..1000u32 {
            let dest = IpAddr::V4(Ipv4Addr::from(0x7f02_0000 + i));
            assert_eq!(state.local_ip(dest).unwrap(), IpAddr::from([127, 0, 0, 1]));
        }
        assert!(state.probes[0].is_none());
    }
}
