//! TCP and TLS: one connection per destination, shared by the targets in flight to it and
//! closed as soon as the last of them ends; messages framed by Content-Length. A TLS
//! connection is a TCP connection wrapped by [`tls`](super::tls) once connected; from then
//! on the pool treats both alike.
//!
//! Nothing a peer sends makes memory grow: the queues between tasks are bounded (a reader
//! waits for room, so it stops reading and TCP flow control holds the peer back), a
//! connection buffers at most one message, and a connection that keeps sending what answers
//! nothing is closed.

use super::tls::TlsClient;
use crate::proto::endpoint::FlowId;
use crate::sip::codec;
use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot, OnceCell};

/// Messages and connection news waiting for the driver, from all connections together. At
/// most 64 KiB each ([`codec::MAX_MESSAGE`]), so at most 4 MiB.
pub(crate) const EVENT_QUEUE: usize = 64;

/// Requests waiting to be written on one connection. A target has at most one request
/// outstanding over TCP, so this fills only when the peer stops reading; the request that
/// finds it full ends `unreachable`.
const WRITE_QUEUE: usize = 1024;

/// A connection that sends this many messages in a row that answer nothing in flight
/// (unmatched, malformed, or another connection's) is closed, and its targets end
/// `unreachable`: the driver's time must not go to one peer's junk.
const MAX_JUNK_MESSAGES: u64 = 1000;

/// The same limit in bytes, reached first by large messages.
const MAX_JUNK_BYTES: u64 = 1 << 20;

/// Bytes a connection reads at a time.
const READ_CHUNK: usize = 8192;

/// Identifies one connection over the pool's life: a destination's next connection is
/// another one.
pub(crate) type ConnId = u64;

/// Where a pooled connection goes: an address and, over TLS, the name its certificate is
/// checked against. One address under two names is two connections, so that every
/// target's own name is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Destination {
    pub addr: SocketAddr,
    pub tls: Option<ServerName<'static>>,
}

impl Destination {
    /// The transport's name, for messages.
    pub(crate) fn transport(&self) -> &'static str {
        match self.tls {
            Some(_) => "tls",
            None => "tcp",
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// What connections report to the driver.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// One whole message received on connection `conn` to `from`.
    Message {
        conn: ConnId,
        from: Destination,
        bytes: Bytes,
    },
    /// The peer closed connection `conn`, or it broke. `unread` are the requests it may
    /// close without having read, which may go on a new connection: those never written,
    /// and those written after the peer's last answer with not a byte from it since (it
    /// closed the connection it was done with, and our request crossed its close).
    Closed {
        conn: ConnId,
        from: Destination,
        reason: String,
        unread: Vec<(FlowId, Bytes)>,
    },
    /// [`TcpPool::reconnect`] ended: the targets in `pending` may be sent again, or end with
    /// the error.
    Reconnected {
        result: Result<(), String>,
        pending: Vec<(FlowId, Bytes)>,
    },
}

/// What [`TcpPool::send`] did.
#[derive(Debug)]
pub(crate) enum Sent {
    /// Queued on this connection.
    Queued(ConnId),
    /// No connection to the destination is open (it closed, or is still being opened).
    NoConnection,
    /// The connection cannot take it.
    Failed(String),
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    local: SocketAddr,
    writer: mpsc::Sender<(FlowId, Bytes)>,
    /// Dropped with the connection, which tells its task to close it.
    _close: oneshot::Sender<()>,
    /// Messages and bytes received since the last one that answered a request.
    junk_messages: AtomicU64,
    junk_bytes: AtomicU64,
}

/// One attempt to open a connection, shared by the targets that wait for it.
type Slot = Arc<OnceCell<Result<Conn, String>>>;

/// The requests waiting to be written on one connection.
type Queue = mpsc::Receiver<(FlowId, Bytes)>;

#[derive(Debug, Default)]
struct Peer {
    /// Targets in flight or starting to this destination: one per [`Lease`].
    users: usize,
    /// The connection, or the attempt to open it; `None` once it closed or broke.
    slot: Option<Slot>,
    /// Requests waiting for [`TcpPool::reconnect`].
    pending: Vec<(FlowId, Bytes)>,
}

/// The connections, shared by the senders (which connect) and the driver (which writes).
#[derive(Debug)]
pub(crate) struct TcpPool {
    peers: Mutex<HashMap<Destination, Peer>>,
    events: mpsc::Sender<StreamEvent>,
    bind: Option<IpAddr>,
    tls: TlsClient,
    /// The longest a reconnection may take: no transaction waits longer (Timer F).
    connect_limit: Duration,
    next_id: AtomicU64,
}

/// A target's use of the connection to a destination, which stays open while any lease on
/// the destination is held: reused by targets in flight together, never kept for later
/// ones, so open descriptors follow the targets in flight, not the fleet.
#[derive(Debug)]
pub(crate) struct Lease {
    pool: Arc<TcpPool>,
    destination: Destination,
}

impl Lease {
    /// The destination whose connection this lease holds open.
    pub(crate) fn destination(&self) -> &Destination {
        &self.destination
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let gone = {
            let mut peers = self.pool.lock();
            match peers.get_mut(&self.destination) {
                Some(peer) if peer.users <= 1 => peers.remove(&self.destination),
                Some(peer) => {
                    peer.users -= 1;
                    None
                }
                None => None,
            }
        };
        // Dropping the connection (outside the lock) closes it.
        drop(gone);
    }
}

impl TcpPool {
    /// A pool whose connections report to `events` and are made TLS by `tls` when their
    /// destination says so; reconnections give up after `connect_limit`.
    pub(crate) fn new(
        events: mpsc::Sender<StreamEvent>,
        bind: Option<IpAddr>,
        tls: TlsClient,
        connect_limit: Duration,
    ) -> Self {
        TcpPool {
            peers: Mutex::new(HashMap::new()),
            events,
            bind,
            tls,
            connect_limit,
            next_id: AtomicU64::new(0),
        }
    }

    /// How TLS connections are made and checked.
    pub(crate) fn tls(&self) -> &TlsClient {
        &self.tls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Destination, Peer>> {
        self.peers.lock().expect("tcp pool lock")
    }

    /// Takes a lease on `destination` without connecting: the connection, opened when a
    /// request first needs it, stays open while the lease is held.
    pub(crate) fn lease(self: &Arc<Self>, destination: Destination) -> Lease {
        self.lock().entry(destination.clone()).or_default().users += 1;
        Lease {
            pool: self.clone(),
            destination,
        }
    }

    /// Takes a lease on `destination` and returns it with the local address of its
    /// connection, connecting first if none is open. Concurrent callers for one destination
    /// share one connection attempt; a failed one is not kept, so the next target tries
    /// again.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        destination: Destination,
    ) -> Result<(SocketAddr, Lease), String> {
        let (lease, slot) = {
            let mut peers = self.lock();
            let peer = peers.entry(destination.clone()).or_default();
            peer.users += 1;
            let slot = peer.slot.get_or_insert_with(Slot::default).clone();
            let lease = Lease {
                pool: self.clone(),
                destination: destination.clone(),
            };
            (lease, slot)
        };
        let opened = slot
            .get_or_init(|| async {
                self.open(&destination).await.map_err(|e| {
                    format!(
                        "cannot connect to {destination} over {}: {e}",
                        destination.transport()
                    )
                })
            })
            .await;
        let result = match opened {
            Ok(conn) if conn.writer.is_closed() => Err(format!(
                "the {} connection to {destination} closed as soon as it opened",
                destination.transport()
            )),
            Ok(conn) => Ok(conn.local),
            Err(e) => Err(e.clone()),
        };
        if result.is_err() {
            self.forget(&destination, |s| Arc::ptr_eq(s, &slot));
        }
        result.map(|local| (local, lease))
    }

    /// Queues the request of `flow` on the open connection to `destination`.
    pub(crate) fn send(&self, destination: &Destination, flow: FlowId, payload: Bytes) -> Sent {
        let peers = self.lock();
        let Some(Ok(conn)) = peers
            .get(destination)
            .and_then(|p| p.slot.as_ref())
            .and_then(|s| s.get())
        else {
            return Sent::NoConnection;
        };
        match conn.writer.try_send((flow, payload)) {
            Ok(()) => Sent::Queued(conn.id),
            Err(mpsc::error::TrySendError::Full(_)) => Sent::Failed(format!(
                "the {} connection to {destination} has {WRITE_QUEUE} requests waiting to be \
                 written: the peer is not reading",
                destination.transport()
            )),
            // Its task has ended and is about to say so.
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::NoConnection,
        }
    }

    /// Opens a new connection to `destination` for a request that found none (the peer
    /// closed the last one, as RFC 3261 section 18 allows), within Timer F. Requests for one
    /// destination share one attempt; [`StreamEvent::Reconnected`] hands them back.
    pub(crate) fn reconnect(
        self: &Arc<Self>,
        destination: Destination,
        flow: FlowId,
        payload: Bytes,
    ) {
        {
            let mut peers = self.lock();
            let peer = peers.entry(destination.clone()).or_default();
            peer.pending.push((flow, payload));
            if peer.pending.len() > 1 {
                return;
            }
        }
        let pool = self.clone();
        tokio::spawn(async move {
            let limit = pool.connect_limit;
            let connected = tokio::time::timeout(limit, pool.connect(destination.clone())).await;
            // Taken while this attempt's lease still holds the destination's entry.
            let pending = pool
                .lock()
                .get_mut(&destination)
                .map(|p| std::mem::take(&mut p.pending))
                .unwrap_or_default();
            // The lease goes: the waiting targets' own leases keep the connection open.
            let result = match connected {
                Ok(connected) => connected.map(drop),
                Err(_) => Err(format!(
                    "cannot connect to {destination} over {}: no answer in {:.1} s{}",
                    destination.transport(),
                    limit.as_secs_f64(),
                    if destination.tls.is_some() {
                        super::notifier::TLS_SILENCE
                    } else {
                        ""
                    }
                )),
            };
            let _ = pool
                .events
                .send(StreamEvent::Reconnected { result, pending })
                .await;
        });
    }

    /// Counts what became of a message received on `conn`: `useful` if it answered a
    /// request. Closes the connection after [`MAX_JUNK_MESSAGES`] or [`MAX_JUNK_BYTES`] of
    /// anything else in a row, and says why.
    pub(crate) fn received(
        &self,
        destination: &Destination,
        conn: ConnId,
        useful: bool,
        len: usize,
    ) -> Option<String> {
        let (gone, what) = {
            let mut peers = self.lock();
            let peer = peers.get_mut(destination)?;
            let Some(Ok(c)) = peer.slot.as_ref().and_then(|s| s.get()) else {
                return None;
            };
            if c.id != conn {
                return None;
            }
            if useful {
                c.junk_messages.store(0, Ordering::Relaxed);
                c.junk_bytes.store(0, Ordering::Relaxed);
                return None;
            }
            let messages = c.junk_messages.fetch_add(1, Ordering::Relaxed) + 1;
            let bytes = c.junk_bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            let what = if messages >= MAX_JUNK_MESSAGES {
                format!("{messages} messages")
            } else if bytes >= MAX_JUNK_BYTES {
                format!("{} KiB", bytes / 1024)
            } else {
                return None;
            };
            (peer.slot.take(), what)
        };
        drop(gone);
        Some(format!(
            "the {} connection to {destination} sent {what} that match no request; closed",
            destination.transport()
        ))
    }

    /// Drops the connection slot of `destination` if `which` says it is the one meant.
    fn forget(&self, destination: &Destination, which: impl Fn(&Slot) -> bool) {
        let gone = {
            let mut peers = self.lock();
            let Some(peer) = peers.get_mut(destination) else {
                return;
            };
            if !peer.slot.as_ref().is_some_and(which) {
                return;
            }
            peer.slot.take()
        };
        drop(gone);
    }

    /// Connects, with TLS when the destination says so, and starts the connection's task.
    async fn open(self: &Arc<Self>, destination: &Destination) -> Result<Conn, String> {
        let connect = async {
            let socket = match destination.addr {
                SocketAddr::V4(_) => TcpSocket::new_v4()?,
                SocketAddr::V6(_) => TcpSocket::new_v6()?,
            };
            if let Some(ip) = self.bind {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            let stream = socket.connect(destination.addr).await?;
            stream.set_nodelay(true)?;
            let local = stream.local_addr()?;
            io::Result::Ok((stream, local))
        };
        let (stream, local) = connect.await.map_err(|e| e.to_string())?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let (close, closed) = oneshot::channel();
        let served = (id, destination.clone(), queue, closed);
        match &destination.tls {
            // TCP's own halves, which need no lock between them.
            None => self.spawn(stream.into_split(), served),
            Some(name) => {
                let stream = self
                    .tls
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| e.to_string())?;
                self.spawn(tokio::io::split(stream), served);
            }
        }
        Ok(Conn {
            id,
            local,
            writer,
            _close: close,
            junk_messages: AtomicU64::new(0),
            junk_bytes: AtomicU64::new(0),
        })
    }

    /// Serves an open connection on its own task until it closes, then tells the driver.
    fn spawn<R, W>(
        self: &Arc<Self>,
        halves: (R, W),
        (id, destination, queue, closed): (ConnId, Destination, Queue, oneshot::Receiver<()>),
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let pool = self.clone();
        tokio::spawn(async move {
            let Some((reason, unread)) = pool.serve(halves, id, &destination, queue, closed).await
            else {
                return;
            };
            pool.forget(
                &destination,
                |slot| matches!(slot.get(), Some(Ok(conn)) if conn.id == id),
            );
            let _ = pool
                .events
                .send(StreamEvent::Closed {
                    conn: id,
                    from: destination,
                    reason,
                    unread,
                })
                .await;
        });
    }

    /// Writes what is queued and hands the driver what arrives, until the pool closes the
    /// connection (`None`) or the peer closes it or it breaks (the reason, and the requests
    /// it may not have read: see [`StreamEvent::Closed`]).
    async fn serve<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        (mut read, mut write): (R, W),
        conn: ConnId,
        destination: &Destination,
        mut queue: Queue,
        mut closed: oneshot::Receiver<()>,
    ) -> Option<(String, Vec<(FlowId, Bytes)>)> {
        let transport = destination.transport();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // Whether the peer has sent anything yet, and what was written since it last did.
        let mut answered = false;
        let mut unread = Vec::new();
        let reason = loop {
            match codec::frame(&buf) {
                Ok(Some(n)) => {
                    // Copied out, so that a queued message holds its own bytes and not the
                    // whole read buffer.
                    let bytes = Bytes::copy_from_slice(&buf[..n]);
                    buf.advance(n);
                    // Waiting here for room is the backpressure: nothing more is read.
                    let message = StreamEvent::Message {
                        conn,
                        from: destination.clone(),
                        bytes,
                    };
                    tokio::select! {
                        biased;
                        _ = &mut closed => return None,
                        sent = self.events.send(message) => if sent.is_err() {
                            return None;
                        },
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    break format!("the phone sent an unusable message over {transport}: {e}")
                }
            }
            // At most one message (64 KiB) and one read: frame refuses anything longer.
            buf.reserve(READ_CHUNK);
            let mut chunk = (&mut read).take(READ_CHUNK as u64);
            tokio::select! {
                // The pool's close first; then what the peer sent, so that a close it sent
                // before our next request is seen before that request is written (and the
                // request goes on a new connection instead).
                biased;
                _ = &mut closed => return None,
                read = chunk.read_buf(&mut buf) => match read {
                    Ok(0) => break format!("the phone closed the {transport} connection"),
                    Ok(_) => {
                        answered = true;
                        unread.clear();
                    }
                    Err(e) => break match destination.tls {
                        Some(_) => format!("tls connection error: {}", super::tls::explain(e)),
                        None => format!("tcp connection error: {e}"),
                    },
                },
                request = queue.recv() => match request {
                    Some((flow, payload)) => {
                        // Flushed, so that TLS writes its records out now.
                        let written = tokio::select! {
                            biased;
                            _ = &mut closed => return None,
                            written = async {
                                write.write_all(&payload).await?;
                                write.flush().await
                            } => written,
                        };
                        // On a fresh connection no close can have crossed the request.
                        if answered {
                            unread.push((flow, payload));
                        }
                        if let Err(e) = written {
                            break format!("cannot send over {transport}: {e}");
                        }
                    }
                    None => return None,
                },
            }
        };
        queue.close();
        while let Ok(request) = queue.try_recv() {
            unread.push(request);
        }
        Some((reason, unread))
    }
}

#[cfg(test)]
mod tests {
    use super::WRITE_QUEUE;
    use crate::net::{Notifier, NotifierConfig};
    use crate::proto::transaction::Timers;
    use crate::{Event, Notify, OutcomeKind, Target, Transport};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_does_not_read_gets_a_bounded_queue_and_is_let_go() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (read_now, start_reading) = std::sync::mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            start_reading.recv().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            // Ends at the agent's close, not at the timeout.
            std::io::copy(&mut stream, &mut std::io::sink()).is_ok()
        });
        let timers = Timers {
            t1: Duration::from_millis(20),
            ..Timers::default()
        };
        let notifier = Notifier::bind(NotifierConfig {
            timers,
            ..NotifierConfig::default()
        })
        .await
        .unwrap();
        // Large requests, so that the kernel's buffers fill before the queue.
        let event = Event::custom("check-sync", vec![b'x'; 16 * 1024], None).unwrap();
        let mut notify = Notify::new(Target::parse(&format!("sip:1@{addr}")).unwrap(), event);
        notify.transport = Some(Transport::Tcp);
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..WRITE_QUEUE + 1000 {
            let (notifier, notify) = (notifier.clone(), notify.clone());
            sends.spawn(async move { notifier.send(notify).await });
        }
        let mut refused = 0;
        while let Some(outcome) = sends.join_next().await {
            let outcome = outcome.unwrap();
            match outcome.kind {
                OutcomeKind::Unreachable => {
                    assert!(outcome.reason.contains("not reading"), "{}", outcome.reason);
                    refused += 1;
                }
                kind => assert_eq!(kind, OutcomeKind::Timeout, "{}", outcome.reason),
            }
        }
        assert!(refused > 0, "the write queue never filled");
        read_now.send(()).unwrap();
        assert!(
            tokio::task::spawn_blocking(move || peer.join().unwrap())
                .await
                .unwrap(),
            "the connection stayed open after its last target ended"
        );
    }
}
