//! The tokio layer of the phone simulator: a [`Phone`] on UDP sockets, TCP listeners and
//! TLS listeners (TCP with a handshake first, presenting [`PhoneConfig::tls`]).
//!
//! Each UDP socket and each TCP connection gets its own [`Phone::fork`], so no lock sits on
//! the request path; forks share the nonce secret, so a nonce issued on one socket verifies
//! on any other. Counters are atomics shared by all tasks.
//!
//! A UDP socket on a wildcard address answers each datagram from the address it was sent
//! to, as a multi-homed device does, so one simulator on `0.0.0.0:P` is a fleet of phones
//! at `127.x.y.z:P`: the kernel says where each datagram went (IP_PKTINFO,
//! IPV6_RECVPKTINFO) and the answer names that address as its source.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, IoSlice, IoSliceMut, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{
    self as nix_socket, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::line::{Exchange, Handled, Phone, PhoneConfig};
use crate::sip::codec::{self, MAX_MESSAGE};
use crate::sip::Transport;

/// A snapshot of what a running phone has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PhoneStats {
    /// Requests received and parsed (dropped ones included; ACKs excluded).
    pub requests: u64,
    /// 401 challenges sent.
    pub challenged: u64,
    /// NOTIFYs answered 2xx: the phone acted on them.
    pub delivered: u64,
    /// 403 answers (wrong credentials).
    pub forbidden: u64,
    /// Other final failures: 400, 404, 405, 489, the `fail_status` fault, ...
    pub rejected: u64,
    /// Requests ignored by the `drop_percent` fault.
    pub dropped: u64,
    /// Retransmissions of requests already answered: answered again, not acted on again.
    pub retransmissions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    challenged: AtomicU64,
    delivered: AtomicU64,
    forbidden: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    retransmissions: AtomicU64,
}

/// Called for each NOTIFY a line acted on (2xx), with the local address the request
/// reached: the simulator's side effects (a resync's profile fetch) hang here, outside the
/// sans-IO line. It must not block: it runs on the serving task.
pub type NotifyHook = Arc<dyn Fn(&Exchange, IpAddr) + Send + Sync>;

/// What every serving task shares.
struct Ctx {
    counters: Arc<Counters>,
    /// JSON lines for the log writer thread; dropped with the last task, which ends it.
    log: Option<std_mpsc::Sender<String>>,
    hook: Option<NotifyHook>,
}

/// One line of the JSON exchange log.
#[derive(serde::Serialize)]
struct LogLine<'a> {
    method: &'a str,
    user: Option<&'a str>,
    event: Option<&'a str>,
    call_id: &'a str,
    cseq: u32,
    status: u16,
    authenticated: bool,
}

impl Ctx {
    /// Counts and logs one handled message; true if there is a response to send.
    fn record(
        &self,
        handled: &Handled,
        peer: SocketAddr,
        local: IpAddr,
        transport: Transport,
    ) -> bool {
        let c = &self.counters;
        let ex = match handled {
            Handled::Ignored => return false,
            Handled::Dropped => {
                c.requests.fetch_add(1, Relaxed);
                c.dropped.fetch_add(1, Relaxed);
                tracing::debug!(%peer, %transport, "phone dropped a request (fault)");
                return false;
            }
            Handled::Retransmission => {
                c.requests.fetch_add(1, Relaxed);
                c.retransmissions.fetch_add(1, Relaxed);
                tracing::debug!(%peer, %transport, "phone answered a retransmission again");
                return true;
            }
            Handled::Answered(ex) => ex,
        };
        c.requests.fetch_add(1, Relaxed);
        let counter = match ex.status {
            401 => Some(&c.challenged),
            403 => Some(&c.forbidden),
            _ if ex.delivered() => Some(&c.delivered),
            300.. => Some(&c.rejected),
            _ => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Relaxed);
        }
        if let Some(hook) = self.hook.as_ref().filter(|_| ex.delivered()) {
            hook(ex, local);
        }
        tracing::info!(
            %peer,
            %transport,
            method = %ex.method,
            user = ex.user.as_deref().unwrap_or("-"),
            event = ex.event.as_deref().unwrap_or("-"),
            call_id = %ex.call_id,
            cseq = ex.cseq,
            status = ex.status,
            auth = ?ex.auth,
            "phone answered"
        );
        if let Some(log) = &self.log {
            let line = LogLine {
                method: &ex.method,
                user: ex.user.as_deref(),
                event: ex.event.as_deref(),
                call_id: &ex.call_id,
                cseq: ex.cseq,
                status: ex.status,
                authenticated: ex.authenticated(),
            };
            if let Ok(line) = serde_json::to_string(&line) {
                // The writer only goes away after a write error it has already reported.
                let _ = log.send(line);
            }
        }
        true
    }
}

/// A phone serving on its sockets. Dropping it stops it without waiting;
/// [`shutdown`](RunningPhone::shutdown) stops it and waits until the log is flushed.
#[derive(Debug)]
pub struct RunningPhone {
    addrs: Vec<(SocketAddr, Transport)>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    log_writer: Option<thread::JoinHandle<()>>,
}

impl RunningPhone {
    /// The addresses actually bound (port 0 resolved), in the order requested.
    pub fn local_addrs(&self) -> &[(SocketAddr, Transport)] {
        &self.addrs
    }

    /// The first bound address of `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(_, t)| *t == transport)
            .map(|(a, _)| *a)
    }

    /// The counters so far.
    pub fn stats(&self) -> PhoneStats {
        let c = &self.counters;
        PhoneStats {
            requests: c.requests.load(Relaxed),
            challenged: c.challenged.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            forbidden: c.forbidden.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            retransmissions: c.retransmissions.load(Relaxed),
        }
    }

    /// Stops serving (closing sockets and connections) and waits until every task has ended
    /// and the exchange log is flushed.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(writer) = self.log_writer.take() {
            // The writer ends once the last task has released its sender.
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

/// Starts a phone on every `(address, transport)` in `listen` (port 0 picks a free port).
///
/// The nonce secret and fault decisions are seeded from entropy; use [`Phone`] directly
/// for deterministic runs.
pub async fn spawn(
    config: PhoneConfig,
    listen: &[(SocketAddr, Transport)],
) -> io::Result<RunningPhone> {
    spawn_with_hook(config, listen, None).await
}

/// [`spawn`], calling `hook` for each NOTIFY a line acts on.
pub async fn spawn_with_hook(
    config: PhoneConfig,
    listen: &[(SocketAddr, Transport)],
    hook: Option<NotifyHook>,
) -> io::Result<RunningPhone> {
    let mut seeds = StdRng::from_entropy();
    let (log, log_writer) = match &config.log {
        Some(path) => {
            let (tx, writer) = open_log(path)?;
            (Some(tx), Some(writer))
        }
        None => (None, None),
    };
    let phone = Phone::new(config, seeds.gen(), Instant::now());
    let counters = Arc::new(Counters::default());
    let ctx = Arc::new(Ctx {
        counters: Arc::clone(&counters),
        log,
        hook,
    });
    let (stop, _) = watch::channel(false);

    let mut addrs = Vec::with_capacity(listen.len());
    let mut tasks = Vec::with_capacity(listen.len());
    for &(addr, transport) in listen {
        let fork = phone.fork(seeds.gen());
        let ctx = Arc::clone(&ctx);
        match transport {
            Transport::Udp => {
                let socket = Arc::new(crate::net::udp::bind(addr)?);
                let wildcard = addr.ip().is_unspecified();
                if wildcard {
                    ask_destinations(&socket, addr)?;
                }
                addrs.push((socket.local_addr()?, transport));
                // Every worker receives from this socket, each with its own fault generator.
                let forks = std::iter::once(fork)
                    .chain(std::iter::repeat_with(|| phone.fork(seeds.gen())))
                    .take(phone.config().udp_workers.max(1));
                for fork in forks {
                    let served = serve_udp(Arc::clone(&socket), wildcard, fork, Arc::clone(&ctx));
                    tasks.push(tokio::spawn(until_stopped(stop.subscribe(), served)));
                }
            }
            Transport::Tcp | Transport::Tls => {
                let tls = match transport {
                    Transport::Tls => Some(acceptor(phone.config())?),
                    _ => None,
                };
                let (listener, local) = crate::net::listen(addr).await?;
                addrs.push((local, transport));
                let seeds = StdRng::seed_from_u64(seeds.gen());
                tasks.push(tokio::spawn(until_stopped(
                    stop.subscribe(),
                    serve_tcp(listener, tls, fork, seeds, ctx),
                )));
            }
        }
    }
    Ok(RunningPhone {
        addrs,
        counters,
        stop,
        tasks,
        log_writer,
    })
}

/// Runs `work` until the stop flag is raised or its sender is dropped.
async fn until_stopped(
    mut stop: watch::Receiver<bool>,
    work: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        _ = stop.wait_for(|stopped| *stopped) => {}
        () = work => {}
    }
}

/// Answers datagrams to their source address; on a `wildcard` socket, from the address
/// each was sent to. With a delay, responses queue (in deadline order, since the delay is
/// constant) for a sender running alongside the receiver.
async fn serve_udp(socket: Arc<UdpSocket>, wildcard: bool, mut phone: Phone, ctx: Arc<Ctx>) {
    let delay = phone.config().delay;
    let bound = socket
        .local_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Peer, Vec<u8>)>();
    let receive = async {
        let mut buf = vec![0u8; 65_536];
        let mut control = nix::cmsg_space!(libc::in_pktinfo, libc::in6_pktinfo);
        let mut out = Vec::with_capacity(1024);
        loop {
            let (len, peer) = match receive(&socket, wildcard, &mut buf, &mut control).await {
                Ok(received) => received,
                // E.g. an ICMP port unreachable reported for an earlier send: keep serving.
                Err(err) => {
                    tracing::debug!(%err, "phone UDP receive error");
                    continue;
                }
            };
            let now = Instant::now();
            let handled = phone.handle(now, &buf[..len], &mut out);
            let local = peer.reached_at.unwrap_or(bound);
            if !ctx.record(&handled, peer.addr, local, Transport::Udp) {
                continue;
            }
            if delay.is_zero() {
                answer(&socket, &out, peer).await;
            } else {
                let _ = tx.send((now + delay, peer, out.clone()));
            }
        }
    };
    let send_delayed = async {
        let timer = match (!delay.is_zero()).then(PreciseTimer::new).transpose() {
            Ok(timer) => timer,
            Err(err) => {
                tracing::warn!(%err, "no timerfd for delayed answers: tokio's timer instead");
                None
            }
        };
        while let Some((at, peer, bytes)) = rx.recv().await {
            // A burst of answers falls due together: only the first waits for the timer,
            // the others go at once.
            let waited = match &timer {
                Some(timer) => timer.until(at).await.is_ok(),
                None => false,
            };
            if !waited && at > Instant::now() {
                tokio::time::sleep_until(at.into()).await;
            }
            answer(&socket, &bytes, peer).await;
        }
    };
    tokio::join!(receive, send_delayed);
}

/// Waits until a deadline rounded up to the next [`TIMER_GRID`] step, where tokio's timer
/// rounds up to a millisecond tick and then to the reactor's millisecond timeout:
/// `--delay 100` answers after 100.0-100.3 ms, not 101-102, and a fleet rehearsal's targets
/// are not two milliseconds slower for it. The grid keeps the answers due within one step
/// together, for one wake-up. One timer per UDP worker; TCP answers keep tokio's timer,
/// since a timer per connection would cost a descriptor per phone.
struct PreciseTimer {
    timer: AsyncFd<Timer>,
    origin: Instant,
}

/// The step of [`PreciseTimer`]'s deadlines.
const TIMER_GRID: Duration = Duration::from_micros(250);

/// What tokio's `AsyncFd` needs of nix's timer, which has only `AsFd`.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl PreciseTimer {
    fn new() -> io::Result<PreciseTimer> {
        let flags = TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC;
        let timer = Timer(TimerFd::new(ClockId::CLOCK_MONOTONIC, flags)?);
        // SAFETY: the timer owns its descriptor, which stays open and the same until the
        // `AsyncFd` drops the timer with it; `as_raw_fd` always returns that descriptor.
        let timer = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }?;
        Ok(PreciseTimer {
            timer,
            origin: Instant::now(),
        })
    }

    /// The first step of the grid at or after `at` (which is after the origin).
    fn wake(&self, at: Instant) -> Instant {
        let grid = TIMER_GRID.as_nanos();
        let since = (at - self.origin).as_nanos().div_ceil(grid) * grid;
        self.origin + Duration::from_nanos(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Returns at `at` or up to a [`TIMER_GRID`] step after it, or at once if it has passed.
    /// `Instant` is `CLOCK_MONOTONIC` too.
    async fn until(&self, at: Instant) -> io::Result<()> {
        let now = Instant::now();
        let wait = self.wake(at).saturating_duration_since(now);
        // A zero time would disarm the timer rather than fire it.
        if at <= now || wait.is_zero() {
            return Ok(());
        }
        let once = Expiration::OneShot(TimeSpec::from_duration(wait));
        self.timer
            .get_ref()
            .0
            .set(once, TimerSetTimeFlags::empty())?;
        loop {
            let mut ready = self.timer.readable().await?;
            // Nonblocking: a read before the expiry fails with EAGAIN, read as not ready.
            if let Ok(expired) = ready.try_io(|t| t.get_ref().0.wait().map_err(io::Error::from)) {
                return expired;
            }
        }
    }
}

/// Who sent a datagram, and the local address it was sent to when the socket is on a
/// wildcard address (and the kernel said).
#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: SocketAddr,
    reached_at: Option<IpAddr>,
}

/// Asks the kernel to say where each datagram to the wildcard socket `addr` was sent. On a
/// dual-stack IPv6 socket this covers IPv4 datagrams too, as mapped addresses.
fn ask_destinations(socket: &UdpSocket, addr: SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => nix_socket::setsockopt(socket, sockopt::Ipv4PacketInfo, &true),
        SocketAddr::V6(_) => nix_socket::setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true),
    }
    .map_err(io::Error::from)
}

/// Receives one datagram; on a `wildcard` socket with the address it was sent to.
async fn receive(
    socket: &UdpSocket,
    wildcard: bool,
    buf: &mut [u8],
    control: &mut [u8],
) -> io::Result<(usize, Peer)> {
    if !wildcard {
        let (len, addr) = socket.recv_from(buf).await?;
        let reached_at = None;
        return Ok((len, Peer { addr, reached_at }));
    }
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let msg = nix_socket::recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut *control),
                MsgFlags::empty(),
            )?;
            let addr = msg.address.as_ref().and_then(|a| {
                a.as_sockaddr_in()
                    .map(|&a| SocketAddr::from(a))
                    .or_else(|| a.as_sockaddr_in6().map(|&a| SocketAddr::from(a)))
            });
            let addr = addr.ok_or_else(|| io::Error::other("a datagram with no IP source"))?;
            // ipi_spec_dst, not ipi_addr: the local address to answer from, which is the
            // destination itself unless that was a broadcast.
            let reached_at = msg.cmsgs()?.find_map(|c| match c {
                ControlMessageOwned::Ipv4PacketInfo(info) => Some(IpAddr::V4(Ipv4Addr::from(
                    u32::from_be(info.ipi_spec_dst.s_addr),
                ))),
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)))
                }
                _ => None,
            });
            Ok((msg.bytes, Peer { addr, reached_at }))
        })
        .await
}

/// Sends a response to `peer`, from the address it reached the phone at when known.
async fn answer(socket: &UdpSocket, bytes: &[u8], peer: Peer) {
    let sent = match peer.reached_at {
        None => crate::net::udp::send_to(socket, bytes, peer.addr)
            .await
            .map(drop),
        Some(source) => {
            socket
                .async_io(Interest::WRITABLE, || {
                    crate::net::udp::fragmentable(socket, bytes.len(), || {
                        send_from(socket, bytes, peer.addr, source)
                    })
                })
                .await
        }
    };
    if let Err(err) = sent {
        tracing::debug!(%err, peer = %peer.addr, "phone UDP send error");
    }
}

/// One `sendmsg` whose IP_PKTINFO / IPV6_PKTINFO names `source` as the source address (an
/// IPv4-mapped one on a dual-stack socket); interface 0 lets the route choose.
fn send_from(socket: &UdpSocket, bytes: &[u8], to: SocketAddr, source: IpAddr) -> io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let to = SockaddrStorage::from(to);
    let send = |control: &[ControlMessage]| {
        nix_socket::sendmsg(
            socket.as_raw_fd(),
            &iov,
            control,
            MsgFlags::empty(),
            Some(&to),
        )
    };
    match source {
        IpAddr::V4(ip) => send(&[ControlMessage::Ipv4PacketInfo(&libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        })]),
        IpAddr::V6(ip) => send(&[ControlMessage::Ipv6PacketInfo(&libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            ipi6_ifindex: 0,
        })]),
    }
    .map(drop)
    .map_err(io::Error::from)
}

/// The TLS side of a listener, presenting the configured certificate.
fn acceptor(config: &PhoneConfig) -> io::Result<TlsAcceptor> {
    let identity = config.tls.as_ref().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TLS listener needs a certificate (PhoneConfig::tls)",
        )
    })?;
    let server = identity.server_config().map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(server))
}

/// The longest a client may take over its TLS handshake before the phone hangs up.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Accepts connections (with a TLS handshake when `tls` is given); each is served by its
/// own task, aborted when this one stops.
async fn serve_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    phone: Phone,
    mut seeds: StdRng,
    ctx: Arc<Ctx>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let fork = phone.fork(seeds.gen());
                    let ctx = Arc::clone(&ctx);
                    connections.spawn(serve_accepted(stream, peer, tls.clone(), fork, ctx));
                }
                Err(err) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%err, "phone TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one accepted connection, after a TLS handshake when `tls` is given.
async fn serve_accepted(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    phone: Phone,
    ctx: Arc<Ctx>,
) {
    let _ = stream.set_nodelay(true);
    // The address the peer reached, which a provisioning hook reports per line.
    let local = stream
        .local_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let ends = Ends { peer, local };
    let Some(tls) = tls else {
        // TCP's own halves, which need no lock between them.
        let halves = stream.into_split();
        return serve_connection(halves, ends, Transport::Tcp, phone, ctx).await;
    };
    match tokio::time::timeout(HANDSHAKE_LIMIT, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let halves = tokio::io::split(stream);
            serve_connection(halves, ends, Transport::Tls, phone, ctx).await
        }
        Ok(Err(err)) => tracing::debug!(%peer, %err, "phone TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "phone TLS handshake timed out"),
    }
}

/// The two addresses of an accepted connection.
#[derive(Clone, Copy)]
struct Ends {
    peer: SocketAddr,
    local: IpAddr,
}

/// Reads a stream, cuts it into messages with [`codec::frame`] and answers on the same
/// connection. A malformed frame closes the connection: the stream cannot be resynchronised.
async fn serve_connection(
    (mut reader, mut writer): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    Ends { peer, local }: Ends,
    transport: Transport,
    mut phone: Phone,
    ctx: Arc<Ctx>,
) {
    let delay = phone.config().delay;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let receive = async move {
        let mut buf = Vec::with_capacity(8192);
        let mut out = Vec::new();
        loop {
            loop {
                match codec::frame(&buf) {
                    Ok(Some(len)) => {
                        let now = Instant::now();
                        let handled = phone.handle(now, &buf[..len], &mut out);
                        if ctx.record(&handled, peer, local, transport) {
                            let _ = tx.send((now + delay, std::mem::take(&mut out)));
                        }
                        buf.drain(..len);
                    }
                    Ok(None) if buf.len() <= MAX_MESSAGE => break,
                    Ok(None) | Err(_) => {
                        tracing::debug!(%peer, %transport, "phone closing connection: malformed frame");
                        return;
                    }
                }
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let send = async move {
        while let Some((at, bytes)) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep_until(at.into()).await;
            }
            // Flushed, so that TLS writes its records out now.
            let written = async {
                writer.write_all(&bytes).await?;
                writer.flush().await
            };
            if written.await.is_err() {
                return;
            }
        }
    };
    tokio::join!(receive, send);
}

/// Opens the JSON exchange log for appending and starts its writer thread, which flushes
/// whenever its queue runs dry so readers see lines promptly.
fn open_log(path: &Path) -> io::Result<(std_mpsc::Sender<String>, thread::JoinHandle<()>)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = std_mpsc::channel::<String>();
    let path = path.to_owned();
    let writer = thread::Builder::new().name("phone-log".to_owned()).spawn(move || {
        let mut out = BufWriter::new(file);
        while let Ok(first) = rx.recv() {
            let written = std::iter::once(first)
                .chain(rx.try_iter())
                .try_for_each(|line| writeln!(out, "{line}"))
                .and_then(|()| out.flush());
            if let Err(err) = written {
                tracing::warn!(%err, path = %path.display(), "phone exchange log write failed; logging stops");
                return;
            }
        }
    })?;
    Ok((tx, writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(transport: Transport, call_id: &str) -> Vec<u8> {
        format!(
            "NOTIFY sip:159@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/{} 127.0.0.1:5070;branch=z9hG4bK-{call_id}\r\n\
             From: <sip:sipnotify@127.0.0.1>;tag=a\r\n\
             To: <sip:159@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 NOTIFY\r\n\
             Event: resync\r\n\
             Content-Length: 0\r\n\r\n",
            transport.as_str()
        )
        .into_bytes()
    }

    fn assert_challenge(bytes: &[u8], call_id: &str) {
        let response = codec::parse(bytes).expect("response parses");
        assert_eq!(response.status(), Some(401));
        assert_eq!(response.header("Call-ID"), Some(call_id));
        assert!(response.header("WWW-Authenticate").is_some());
    }

    #[tokio::test]
    async fn answers_over_udp_and_tcp_and_logs_json() {
        let log =
            std::env::temp_dir().join(format!("sipnotify-phone-test-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let config = PhoneConfig {
            log: Some(log.clone()),
            ..PhoneConfig::default()
        };
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let phone = spawn(config, &[(any, Transport::Udp), (any, Transport::Tcp)])
            .await
            .unwrap();
        let udp_addr = phone.local_addr(Transport::Udp).unwrap();
        let tcp_addr = phone.local_addr(Transport::Tcp).unwrap();
        assert_ne!(udp_addr.port(), 0);
        assert_ne!(tcp_addr.port(), 0);

        assert_eq!(
            answered_from("127.0.0.1:0", udp_addr, "udp-1").await,
            udp_addr
        );

        // Two requests in one write: both are framed and answered, in order.
        let mut stream = TcpStream::connect(tcp_addr).await.unwrap();
        let mut two = notify(Transport::Tcp, "tcp-1");
        two.extend(notify(Transport::Tcp, "tcp-2"));
        stream.write_all(&two).await.unwrap();
        let mut received = Vec::new();
        for call_id in ["tcp-1", "tcp-2"] {
            let len = loop {
                if let Some(len) = codec::frame(&received).unwrap() {
                    break len;
                }
                let read =
                    tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut received));
                assert_ne!(
                    read.await.expect("TCP answer").unwrap(),
                    0,
                    "connection closed"
                );
            };
            assert_challenge(&received[..len], call_id);
            received.drain(..len);
        }

        assert_eq!(
            phone.stats(),
            PhoneStats {
                requests: 3,
                challenged: 3,
                ..PhoneStats::default()
            }
        );
        phone.shutdown().await;
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        std::fs::remove_file(&log).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["user"], "159");
        assert_eq!(lines[0]["event"], "resync");
        assert_eq!(lines[0]["status"], 401);
        assert_eq!(lines[0]["authenticated"], false);
        assert_eq!(lines[2]["call_id"], "tcp-2");
    }

    /// Sends a NOTIFY with `call_id` from a fresh socket on `client` to `to`, checks that it
    /// is challenged, and returns where the answer came from.
    async fn answered_from(client: &str, to: SocketAddr, call_id: &str) -> SocketAddr {
        let client = UdpSocket::bind(client).await.unwrap();
        client
            .send_to(&notify(Transport::Udp, call_id), to)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("UDP answer")
            .unwrap();
        assert_challenge(&buf[..len], call_id);
        from
    }

    #[tokio::test]
    async fn a_wildcard_socket_answers_from_the_address_it_was_reached_at() {
        for delay in [0, 50] {
            let config = PhoneConfig {
                delay: Duration::from_millis(delay),
                ..PhoneConfig::default()
            };
            let phone = spawn(config, &[("0.0.0.0:0".parse().unwrap(), Transport::Udp)])
                .await
                .unwrap();
            let port = phone.local_addr(Transport::Udp).unwrap().port();
            for ip in ["127.0.0.1", "127.0.0.5", "127.1.2.3"] {
                let to = SocketAddr::new(ip.parse().unwrap(), port);
                assert_eq!(
                    answered_from("127.0.0.1:0", to, "wild").await,
                    to,
                    "delay {delay}"
                );
            }
            phone.shutdown().await;
        }

        // IPv6, and IPv4 through the same dual-stack socket (as a mapped address).
        let any6 = "[::]:0".parse().unwrap();
        let Ok(phone) = spawn(PhoneConfig::default(), &[(any6, Transport::Udp)]).await else {
            return; // no IPv6 on this machine
        };
        let port = phone.local_addr(Transport::Udp).unwrap().port();
        let to = SocketAddr::new("::1".parse().unwrap(), port);
        assert_eq!(answered_from("[::1]:0", to, "wild").await, to);
        let to = SocketAddr::new("127.0.0.7".parse().unwrap(), port);
        assert_eq!(answered_from("127.0.0.1:0", to, "wild").await, to);
        phone.shutdown().await;
    }

    /// A retransmitted datagram is answered again and counted as such, not as a second
    /// exchange: the line acts on a NOTIFY once.
    #[tokio::test]
    async fn a_retransmission_is_answered_again_and_counted_apart() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let phone = spawn(PhoneConfig::default(), &[(any, Transport::Udp)])
            .await
            .unwrap();
        let to = phone.local_addr(Transport::Udp).unwrap();
        for _ in 0..2 {
            assert_eq!(answered_from("127.0.0.1:0", to, "twice").await, to);
        }
        assert_eq!(
            phone.stats(),
            PhoneStats {
                requests: 2,
                challenged: 1,
                retransmissions: 1,
                ..PhoneStats::default()
            }
        );
        phone.shutdown().await;
    }

    #[tokio::test]
    async fn the_precise_timer_never_returns_early_and_steps_on_its_grid() {
        let timer = PreciseTimer::new().unwrap();
        let past = Instant::now();
        timer.until(past).await.unwrap();
        for offset in [1, 137, 250, 251, 999, 1_500, 4_321] {
            let at = Instant::now() + Duration::from_micros(offset);
            timer.until(at).await.unwrap();
            let woke = Instant::now();
            assert!(woke >= at, "{offset} µs: woke {:?} early", at - woke);
        }
        // A deadline on the grid is its own wake-up; one just past it waits a step more.
        // Far out too: 2^32 steps are 12.4 days.
        let far = timer.origin + TIMER_GRID * u32::MAX + TIMER_GRID * 3;
        assert_eq!(timer.wake(far - Duration::from_nanos(1)), far);
        let on_grid = timer.origin + TIMER_GRID * 400_000;
        assert_eq!(timer.wake(on_grid), on_grid);
        let after = on_grid + Duration::from_nanos(1);
        assert_eq!(timer.wake(after), on_grid + TIMER_GRID);
        assert_eq!(timer.wake(on_grid - Duration::from_nanos(1)), on_grid);
    }

    #[tokio::test]
    async fn delay_postpones_the_answer_and_malformed_tcp_closes() {
        let config = PhoneConfig {
            delay: Duration::from_millis(200),
            ..PhoneConfig::default()
        };
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let phone = spawn(config, &[(any, Transport::Udp), (any, Transport::Tcp)])
            .await
            .unwrap();

        let client = UdpSocket::bind(any).await.unwrap();
        let sent = Instant::now();
        client
            .send_to(
                &notify(Transport::Udp, "late"),
                phone.local_addr(Transport::Udp).unwrap(),
            )
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_536];
        let (len, _) = client.recv_from(&mut buf).await.unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(200));
        assert_challenge(&buf[..len], "late");

        let mut stream = TcpStream::connect(phone.local_addr(Transport::Tcp).unwrap())
            .await
            .unwrap();
        stream
            .write_all(b"NOTIFY sip:159@h SIP/2.0\r\nContent-Length: nope\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        assert!(read.await.expect("connection closed").is_ok());
        assert!(rest.is_empty());
        phone.shutdown().await;
    }
}
