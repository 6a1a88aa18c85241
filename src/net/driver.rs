//! The one task that owns the endpoint: it pumps the UDP socket, the TCP events and the
//! timer into the sans-IO core, and hands each outcome back to whoever started the target.

use super::tcp::{StreamEvent, TcpPool};
use crate::proto::endpoint::{Endpoint, FlowId, Received, Stats};
use crate::proto::outcome::Outcome;
use crate::proto::{Notify, Route};
use crate::sip::Transport;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// A target handed to the driver.
pub(crate) struct Start {
    pub notify: Box<Notify>,
    pub route: Route,
    pub reply: oneshot::Sender<Outcome>,
}

/// Runs until every [`Start`] sender is gone and no target is in flight.
pub(crate) async fn run(
    mut endpoint: Endpoint,
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpPool>,
    mut starts: mpsc::UnboundedReceiver<Start>,
    mut streams: mpsc::UnboundedReceiver<StreamEvent>,
    stats: watch::Sender<Stats>,
) {
    let mut waiting: FxHashMap<FlowId, oneshot::Sender<Outcome>> = FxHashMap::default();
    let mut buf = vec![0u8; 65536];
    let mut accepting = true;
    loop {
        while let Some(t) = endpoint.poll_transmit() {
            tracing::debug!(
                to = %t.destination,
                transport = %t.transport,
                bytes = t.payload.len(),
                "sending {}",
                first_line(&t.payload)
            );
            let sent = match t.transport {
                Transport::Udp => send_udp(&udp, &t.payload, t.destination).await,
                Transport::Tcp => tcp.send(t.destination, t.payload),
            };
            if let Err(reason) = sent {
                endpoint.handle_transport_error(Instant::now().into_std(), t.flow, &reason);
            }
        }
        // Before the outcomes: whoever reads them after a target ends sees its responses.
        let now_stats = endpoint.stats();
        stats.send_if_modified(|s| std::mem::replace(s, now_stats) != now_stats);
        while let Some((id, outcome)) = endpoint.poll_event() {
            tracing::debug!(
                call_id = %outcome.call_id,
                status = ?outcome.status,
                attempts = outcome.attempts,
                "target ended: {}",
                outcome.kind
            );
            if let Some(reply) = waiting.remove(&id) {
                let _ = reply.send(outcome);
            }
        }
        if !accepting && waiting.is_empty() {
            return;
        }
        let deadline = endpoint.poll_timeout();
        tokio::select! {
            start = starts.recv(), if accepting => match start {
                Some(Start { notify, route, reply }) => {
                    let id = endpoint.start(Instant::now().into_std(), *notify, route);
                    waiting.insert(id, reply);
                }
                None => accepting = false,
            },
            received = udp.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let now = Instant::now().into_std();
                    tracing::debug!(%from, bytes = n, "received {}", first_line(&buf[..n]));
                    receive(&mut endpoint, now, from, &buf[..n]);
                    // Drain what else is queued without another trip through the reactor.
                    for _ in 0..RECV_BATCH {
                        match udp.try_recv_from(&mut buf) {
                            Ok((n, from)) => receive(&mut endpoint, now, from, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                // ICMP errors surface here on some systems; the transaction timers decide.
                Err(e) => tracing::debug!("udp receive error: {e}"),
            },
            Some(event) = streams.recv() => match event {
                StreamEvent::Message { from, bytes } => {
                    receive(&mut endpoint, Instant::now().into_std(), from, &bytes);
                }
                StreamEvent::Closed { from, reason } => {
                    endpoint.handle_connection_lost(Instant::now().into_std(), from, &reason)
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                endpoint.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

/// Feeds received bytes to the endpoint and logs, at -vv, what it did not use and why, so
/// that a target ending in a silent `timeout` has an explanation.
fn receive(endpoint: &mut Endpoint, now: std::time::Instant, from: SocketAddr, bytes: &[u8]) {
    let received = endpoint.handle(now, from, bytes);
    if let Some(why) = received.dropped_because() {
        tracing::debug!(%from, bytes = bytes.len(), "dropped: {why}");
    } else if received == Received::UsedFromElsewhere {
        tracing::debug!(%from, "used a response from another address than the request's destination");
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
    let sent = match udp.try_send_to(payload, to) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => udp.send_to(payload, to).await,
        other => other,
    };
    sent.map(drop)
        .map_err(|e| format!("cannot send to {to} over udp: {e}"))
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(Instant::from_std(d)).await;
    }
}
