//! The one task that owns the endpoint: it pumps the UDP socket, the TCP events and the
//! timer into the sans-IO core, and hands each outcome back to whoever started the target.

use super::tcp::{StreamEvent, TcpPool};
use crate::proto::endpoint::{Endpoint, FlowId, Received, Stats};
use crate::proto::outcome::Outcome;
use crate::proto::{Notify, Route};
use crate::sip::Transport;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// A target handed to the driver.
pub(crate) struct Start {
    pub notify: Box<Notify>,
    pub route: Route,
    pub reply: oneshot::Sender<Outcome>,
}

/// A request over TCP that found no connection to its destination (a flow that moved to its
/// next destination), with the result of connecting there.
struct Connected {
    flow: FlowId,
    destination: SocketAddr,
    payload: Bytes,
    result: Result<(), String>,
}

/// Runs until every [`Start`] sender is gone and no target is in flight. A connection that
/// is not opened within `connect_limit` is given up on.
pub(crate) async fn run(
    mut endpoint: Endpoint,
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpPool>,
    mut starts: mpsc::UnboundedReceiver<Start>,
    mut streams: mpsc::UnboundedReceiver<StreamEvent>,
    stats: watch::Sender<Stats>,
    connect_limit: Duration,
) {
    let mut waiting: FxHashMap<FlowId, oneshot::Sender<Outcome>> = FxHashMap::default();
    let (connected_tx, mut connected) = mpsc::unbounded_channel::<Connected>();
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
            let flow = t.flow;
            let sent = match t.transport {
                Transport::Udp => send_udp(&udp, &t.payload, t.destination).await,
                // A request that finds no connection (to the next destination of a flow that
                // failed over, or since closed) opens one, and is sent once it is open.
                Transport::Tcp => match tcp.send(t.destination, t.payload.clone()) {
                    Err(_) => {
                        connect(&tcp, &connected_tx, connect_limit, t);
                        Ok(())
                    }
                    sent => sent,
                },
            };
            if let Err(reason) = sent {
                endpoint.handle_transport_error(Instant::now().into_std(), flow, &reason);
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
            Some(c) = connected.recv() => {
                // Sent only if the flow still goes there: it may have moved on, or ended.
                if endpoint.destination(c.flow) == Some(c.destination) {
                    let sent = c.result.and_then(|()| tcp.send(c.destination, c.payload));
                    if let Err(reason) = sent {
                        endpoint.handle_transport_error(Instant::now().into_std(), c.flow, &reason);
                    }
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                endpoint.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

/// Opens the connection a request found missing, in a task, and hands the request back.
fn connect(
    tcp: &Arc<TcpPool>,
    connected: &mpsc::UnboundedSender<Connected>,
    limit: Duration,
    t: crate::proto::Transmit,
) {
    let (tcp, connected) = (tcp.clone(), connected.clone());
    tokio::spawn(async move {
        let result = match tokio::time::timeout(limit, tcp.connect(t.destination)).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(format!(
                "cannot connect to {} over tcp: no answer in {:.1} s",
                t.destination,
                limit.as_secs_f64()
            )),
        };
        let _ = connected.send(Connected {
            flow: t.flow,
            destination: t.destination,
            payload: t.payload,
            result,
        });
    });
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
