//! One reused TCP connection per destination, framed by Content-Length.

use crate::proto::codec;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, OnceCell};

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
}

impl TcpPool {
    pub(crate) fn new(events: mpsc::UnboundedSender<StreamEvent>, bind: Option<IpAddr>) -> Self {
        TcpPool {
            conns: Mutex::new(HashMap::new()),
            events,
            bind,
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
        let (mut read, mut write) = stream.into_split();
        let (writer, mut queue) = mpsc::unbounded_channel::<Bytes>();
        let pool = self.clone();
        let slot = self.slot(destination);
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(8192);
            let reason = loop {
                match codec::frame(&buf) {
                    Ok(Some(n)) => {
                        let bytes = buf.split_to(n).freeze();
                        let _ = pool.events.send(StreamEvent::Message {
                            from: destination,
                            bytes,
                        });
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => break format!("the phone sent an unusable message over tcp: {e}"),
                }
                match read.read_buf(&mut buf).await {
                    Ok(0) => break "the phone closed the tcp connection".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("tcp connection error: {e}"),
                }
            };
            pool.forget(destination, &slot);
            let _ = pool.events.send(StreamEvent::Closed {
                from: destination,
                reason,
            });
        });
        tokio::spawn(async move {
            while let Some(payload) = queue.recv().await {
                if write.write_all(&payload).await.is_err() {
                    break;
                }
            }
        });
        Ok(Conn { writer, local })
    }
}
