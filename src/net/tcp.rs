//! One reused TCP connection per destination, framed by Content-Length.

use crate::sip::codec;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, OnceCell};
use tokio::time::Instant;

/// What a connection reports to the driver.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// One whole message from `from`.
    Message { from: SocketAddr, bytes: Bytes },
    /// The connection to `from` ended; targets waiting on it are unreachable.
    Closed { from: SocketAddr, reason: String },
}

#[derive(Debug, Clone)]
struct Conn {
    writer: mpsc::UnboundedSender<Bytes>,
    local: SocketAddr,
}

type Slot = Arc<OnceCell<Result<Conn, String>>>;

/// The connections, shared by the senders (which connect) and the driver (which writes).
#[derive(Debug)]
pub(crate) struct TcpPool {
    conns: Mutex<HashMap<SocketAddr, Slot>>,
    events: mpsc::UnboundedSender<StreamEvent>,
    bind: Option<IpAddr>,
    idle: Duration,
}

impl TcpPool {
    /// A pool whose connections close after `idle` without a write.
    pub(crate) fn new(
        events: mpsc::UnboundedSender<StreamEvent>,
        bind: Option<IpAddr>,
        idle: Duration,
    ) -> Self {
        TcpPool {
            conns: Mutex::new(HashMap::new()),
            events,
            bind,
            idle,
        }
    }

    fn slot(&self, destination: SocketAddr) -> Slot {
        let mut conns = self.conns.lock().expect("tcp pool lock");
        conns.entry(destination).or_default().clone()
    }

    /// The local address of the connection to `destination`, connecting first if needed.
    /// Concurrent callers for one destination share one connection attempt.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        destination: SocketAddr,
    ) -> Result<SocketAddr, String> {
        let slot = self.slot(destination);
        let result = slot
            .get_or_init(|| async {
                self.open(destination)
                    .await
                    .map_err(|e| format!("cannot connect to {destination} over tcp: {e}"))
            })
            .await
            .clone();
        if result.is_err() {
            // A refused connection is not cached: the next target may find the phone up.
            self.forget(destination, &slot);
        }
        result.map(|c| c.local)
    }

    /// Queues `payload` on the connection to `destination`.
    pub(crate) fn send(&self, destination: SocketAddr, payload: Bytes) -> Result<(), String> {
        let conns = self.conns.lock().expect("tcp pool lock");
        match conns.get(&destination).and_then(|s| s.get()) {
            Some(Ok(conn)) => conn
                .writer
                .send(payload)
                .map_err(|_| format!("the tcp connection to {destination} is closed")),
            _ => Err(format!("no tcp connection to {destination}")),
        }
    }

    fn forget(&self, destination: SocketAddr, slot: &Slot) {
        let mut conns = self.conns.lock().expect("tcp pool lock");
        if conns
            .get(&destination)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
        {
            conns.remove(&destination);
        }
    }

    /// Writes what is queued and reads what arrives until the connection breaks (the reason
    /// is returned) or has been idle longer than any transaction can wait for an answer
    /// (`None`): a campaign over TCP to many phones must not keep a descriptor per phone.
    async fn serve(
        &self,
        stream: TcpStream,
        mut queue: mpsc::UnboundedReceiver<Bytes>,
        destination: SocketAddr,
    ) -> Option<String> {
        let (mut read, mut write) = stream.into_split();
        let mut buf = BytesMut::with_capacity(8192);
        let mut last_write = Instant::now();
        loop {
            match codec::frame(&buf) {
                Ok(Some(n)) => {
                    let bytes = buf.split_to(n).freeze();
                    let _ = self.events.send(StreamEvent::Message {
                        from: destination,
                        bytes,
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Some(format!("the phone sent an unusable message over tcp: {e}")),
            }
            tokio::select! {
                read = read.read_buf(&mut buf) => match read {
                    Ok(0) => return Some("the phone closed the tcp connection".into()),
                    Ok(_) => {}
                    Err(e) => return Some(format!("tcp connection error: {e}")),
                },
                payload = queue.recv() => match payload {
                    Some(payload) => {
                        if let Err(e) = write.write_all(&payload).await {
                            return Some(format!("cannot send over tcp: {e}"));
                        }
                        last_write = Instant::now();
                    }
                    None => return None,
                },
                _ = tokio::time::sleep_until(last_write + self.idle) => {
                    // Refuse new sends first, so none is accepted and then dropped.
                    queue.close();
                    if queue.is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    async fn open(self: &Arc<Self>, destination: SocketAddr) -> io::Result<Conn> {
        let socket = match destination {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.bind {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(destination).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let (writer, queue) = mpsc::unbounded_channel::<Bytes>();
        let pool = self.clone();
        let slot = self.slot(destination);
        tokio::spawn(async move {
            if let Some(reason) = pool.serve(stream, queue, destination).await {
                pool.forget(destination, &slot);
                let _ = pool.events.send(StreamEvent::Closed {
                    from: destination,
                    reason,
                });
            } else {
                pool.forget(destination, &slot);
            }
        });
        Ok(Conn { writer, local })
    }
}
