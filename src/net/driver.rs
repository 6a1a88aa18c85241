//! The one task that owns the endpoint: it pumps the UDP socket, the TCP events and the
//! timer into the sans-IO core, and hands each outcome back to whoever started the target.

use super::tcp::{ConnId, Destination, Lease, Sent, StreamEvent, TcpPool};
use crate::proto::endpoint::{Endpoint, FlowId, Received, Stats};
use crate::proto::outcome::Outcome;
use crate::proto::{Notify, Route};
use crate::sip::Transport;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Targets handed to the driver and not yet taken; senders wait while it is full.
pub(crate) const START_QUEUE: usize = 1024;

/// A target handed to the driver.
pub(crate) struct Start {
    pub notify: Arc<Notify>,
    pub route: Route,
    /// Over TCP or TLS, the target's use of its connection, released when the target ends.
    pub lease: Option<Lease>,
    /// Boxed, so that the channel a target waits on is a few words until it ends.
    pub reply: oneshot::Sender<Box<Outcome>>,
}

/// A target in flight over TCP or TLS.
struct OnTcp {
    /// Its use of the connection to its current destination, which also says where the
    /// connection goes.
    lease: Lease,
    /// The connection its request was queued on, and whether that connection was opened
    /// again for this request (which then gets no other).
    conn: Option<(ConnId, bool)>,
}

/// What the driver owns besides its sockets.
struct Driver {
    endpoint: Endpoint,
    tcp: Arc<TcpPool>,
    waiting: FxHashMap<FlowId, oneshot::Sender<Box<Outcome>>>,
    /// Apart, so that a target over UDP (nearly all of a campaign) costs no more.
    on_tcp: FxHashMap<FlowId, OnTcp>,
}

/// Runs until every [`Start`] sender is gone and no target is in flight.
pub(crate) async fn run(
    endpoint: Endpoint,
    udp: UdpSockets,
    tcp: Arc<TcpPool>,
    mut starts: mpsc::Receiver<Start>,
    mut streams: mpsc::Receiver<StreamEvent>,
    stats: watch::Sender<Stats>,
) {
    let mut driver = Driver {
        endpoint,
        tcp,
        waiting: FxHashMap::default(),
        on_tcp: FxHashMap::default(),
    };
    let mut buf = vec![0u8; 65536];
    let mut buf6 = vec![0u8; if udp.v6.is_some() { 65536 } else { 0 }];
    let mut accepting = true;
    // One timer for the whole run, moved only to an earlier deadline: a deadline that
    // moved later (its flow ended) fires early and finds nothing due, which costs less
    // than registering a timer on every turn (and waking the reactor when it is nearer
    // than the reactor's own wake-up).
    let mut timer = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
    let mut armed: Option<Instant> = None;
    loop {
        while let Some(t) = driver.endpoint.poll_transmit() {
            tracing::debug!(
                to = %t.destination,
                transport = %t.transport,
                bytes = t.payload.len(),
                "sending {}",
                first_line(&t.payload)
            );
            match t.transport {
                Transport::Udp => {
                    let socket = udp.for_destination(t.destination);
                    if let Err(reason) = send_udp(socket, &t.payload, t.destination).await {
                        driver.fail(t.flow, &reason);
                    }
                }
                Transport::Tcp | Transport::Tls => driver.send_tcp(t.flow, t.payload, false),
            }
        }
        // Before the outcomes: whoever reads them after a target ends sees its responses.
        let now_stats = driver.endpoint.stats();
        stats.send_if_modified(|s| std::mem::replace(s, now_stats) != now_stats);
        while let Some((id, outcome)) = driver.endpoint.poll_event() {
            tracing::debug!(
                call_id = %outcome.call_id,
                status = ?outcome.status,
                attempts = outcome.attempts,
                "target ended: {}",
                outcome.kind
            );
            // Its lease goes with it: a connection no target uses any more closes.
            driver.on_tcp.remove(&id);
            if let Some(reply) = driver.waiting.remove(&id) {
                let _ = reply.send(Box::new(outcome));
            }
        }
        if !accepting && driver.waiting.is_empty() {
            return;
        }
        if let Some(deadline) = driver.endpoint.poll_timeout().map(Instant::from_std) {
            if armed.is_none_or(|at| deadline < at) {
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
        }
        tokio::select! {
            start = starts.recv(), if accepting => match start {
                Some(Start { notify, route, lease, reply }) => {
                    let id = driver.endpoint.start(Instant::now().into_std(), notify, route);
                    driver.waiting.insert(id, reply);
                    if let Some(lease) = lease {
                        driver.on_tcp.insert(id, OnTcp { lease, conn: None });
                    }
                }
                None => accepting = false,
            },
            received = udp.v4.recv_from(&mut buf) => {
                driver.datagrams(&udp.v4, received, &mut buf);
            }
            received = recv_from(udp.v6.as_deref(), &mut buf6) => {
                if let Some(v6) = &udp.v6 {
                    driver.datagrams(v6, received, &mut buf6);
                }
            }
            Some(event) = streams.recv() => driver.stream_event(event),
            () = timer.as_mut(), if armed.is_some() => {
                armed = None;
                driver.endpoint.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

impl Driver {
    /// Feeds a received datagram, then what else the socket has queued, without another
    /// trip through the reactor.
    fn datagrams(
        &mut self,
        socket: &UdpSocket,
        received: std::io::Result<(usize, SocketAddr)>,
        buf: &mut [u8],
    ) {
        match received {
            Ok((n, from)) => {
                let now = Instant::now().into_std();
                tracing::debug!(%from, bytes = n, "received {}", first_line(&buf[..n]));
                receive(&mut self.endpoint, now, from, &buf[..n]);
                for _ in 0..RECV_BATCH {
                    match socket.try_recv_from(buf) {
                        Ok((n, from)) => {
                            receive(&mut self.endpoint, now, from, &buf[..n]);
                        }
                        Err(_) => break,
                    }
                }
            }
            // An ICMP error: the socket's error queue says for which datagram.
            Err(e) => {
                tracing::debug!("udp receive error: {e}");
                let now = Instant::now().into_std();
                while let Some(icmp) = super::udp::next_unreachable(socket, buf) {
                    tracing::debug!("{}", icmp.reason);
                    self.endpoint
                        .handle_unreachable(now, &icmp.request, &icmp.reason);
                }
            }
        }
    }

    /// Ends a target as `unreachable`.
    fn fail(&mut self, flow: FlowId, reason: &str) {
        self.endpoint
            .handle_transport_error(Instant::now().into_std(), flow, reason);
    }

    /// Queues a request on the connection its target leases. One that finds none open
    /// (the peer closed it after its last answer) opens a new one, once per request.
    fn send_tcp(&mut self, flow: FlowId, payload: Bytes, reopened: bool) {
        // A target waiting for a reconnection may have ended meanwhile (Timer F).
        let Some(target) = self.on_tcp.get_mut(&flow) else {
            return;
        };
        // A flow that failed over holds the connection to its new destination instead.
        let now_to = self.endpoint.destination(flow);
        if let Some(addr) = now_to.filter(|&a| a != target.lease.destination().addr) {
            let tls = target.lease.destination().tls.clone();
            target.lease = self.tcp.lease(Destination { addr, tls });
        }
        target.conn = None;
        let destination = target.lease.destination().clone();
        match self.tcp.send(&destination, flow, payload.clone()) {
            Sent::Queued(conn) => target.conn = Some((conn, reopened)),
            Sent::NoConnection if !reopened => {
                self.tcp.reconnect(destination.clone(), flow, payload)
            }
            Sent::NoConnection => {
                let reason = format!(
                    "the {} connection to {destination} closed before the request was sent",
                    destination.transport()
                );
                self.fail(flow, &reason)
            }
            Sent::Failed(reason) => self.fail(flow, &reason),
        }
    }

    fn stream_event(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Message { conn, from, bytes } => {
                let now = Instant::now().into_std();
                let used = matches!(
                    receive(&mut self.endpoint, now, from.addr, &bytes),
                    Received::Used | Received::UsedFromElsewhere
                );
                if let Some(reason) = self.tcp.received(&from, conn, used, bytes.len()) {
                    self.connection_lost(conn, from, &reason, Vec::new());
                }
            }
            StreamEvent::Closed {
                conn,
                from,
                reason,
                unread,
            } => self.connection_lost(conn, from, &reason, unread),
            StreamEvent::Reconnected { result, pending } => {
                for (flow, payload) in pending {
                    // Only if the flow still goes there: it may have failed over, or ended.
                    let leased = self.on_tcp.get(&flow).map(|t| t.lease.destination().addr);
                    if leased.is_none() || self.endpoint.destination(flow) != leased {
                        continue;
                    }
                    match &result {
                        Ok(()) => self.send_tcp(flow, payload, true),
                        Err(reason) => self.fail(flow, reason),
                    }
                }
            }
        }
    }

    /// Connection `conn` closed or broke: the targets whose request went on it are
    /// unreachable, except those whose request the peer may not have read, which go on a
    /// new connection (once; the same bytes, so a phone that did read it sees a
    /// retransmission).
    fn connection_lost(
        &mut self,
        conn: ConnId,
        destination: Destination,
        reason: &str,
        unread: Vec<(FlowId, Bytes)>,
    ) {
        let mut unread: FxHashMap<FlowId, Bytes> = unread.into_iter().collect();
        let lost: Vec<(FlowId, bool)> = self
            .on_tcp
            .iter_mut()
            .filter_map(|(id, target)| match target.conn {
                Some((c, reopened)) if c == conn => {
                    target.conn = None;
                    Some((*id, reopened))
                }
                _ => None,
            })
            .collect();
        for (flow, reopened) in lost {
            match unread.remove(&flow) {
                Some(payload) if !reopened => {
                    self.tcp.reconnect(destination.clone(), flow, payload)
                }
                _ => self.fail(flow, reason),
            }
        }
    }
}

/// Feeds received bytes to the endpoint and logs, at -vv, what it did not use and why, so
/// that a target ending in a silent `timeout` has an explanation.
fn receive(
    endpoint: &mut Endpoint,
    now: std::time::Instant,
    from: SocketAddr,
    bytes: &[u8],
) -> Received {
    let received = endpoint.handle(now, from, bytes);
    if let Some(why) = received.dropped_because() {
        tracing::debug!(%from, bytes = bytes.len(), "dropped: {why}");
    } else if received == Received::UsedFromElsewhere {
        tracing::debug!(%from, "used a response from another address than the request's destination");
    }
    received
}

/// The agent's UDP sockets: the one it was bound to and, when it was bound to no address
/// in particular, one for IPv6 beside the IPv4 one.
pub(crate) struct UdpSockets {
    pub v4: Arc<UdpSocket>,
    pub v6: Option<Arc<UdpSocket>>,
}

impl UdpSockets {
    /// The socket that reaches `to`.
    fn for_destination(&self, to: SocketAddr) -> &UdpSocket {
        match &self.v6 {
            Some(v6) if to.is_ipv6() => v6,
            _ => &self.v4,
        }
    }
}

/// Receives on `socket`, or waits forever when there is none.
async fn recv_from(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The start line, for logs.
fn first_line(message: &[u8]) -> std::borrow::Cow<'_, str> {
    let end = message.iter().position(|&b| b == b'\r' || b == b'\n');
    String::from_utf8_lossy(&message[..end.unwrap_or(message.len())])
}

/// Datagrams read per wake-up beyond the first, so timers and sends still get their turn.
const RECV_BATCH: usize = 64;

/// Sends at once when the socket buffer has room, and waits for room otherwise.
async fn send_udp(udp: &UdpSocket, payload: &[u8], to: SocketAddr) -> Result<(), String> {
    super::udp::send_to(udp, payload, to)
        .await
        .map(drop)
        .map_err(|e| format!("cannot send to {to} over udp: {e}"))
}
