//! The async API: bind once, then `send` any number of NOTIFYs concurrently.

use super::driver::{self, Start, UdpSockets, START_QUEUE};
use super::resolve::{self, ResolveError, Resolver};
use super::route::Routes;
use super::tcp::{Destination, Lease, TcpPool, EVENT_QUEUE};
use super::tls::{TlsClient, TlsError};
use crate::proto::endpoint::{Endpoint, Stats};
use crate::proto::flow::Flow;
use crate::proto::outcome::{Outcome, OutcomeKind};
use crate::proto::transaction::Timers;
use crate::proto::{Hop, Notify, Resolution, Route};
use crate::sip::uri::Host;
use crate::sip::Transport;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot, watch};

/// Why a NOTIFY could not be sent at all; [`Notifier::send`] reports it as an
/// `unreachable` outcome with this text.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The next hop has no address, or no route.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The TCP or TLS connection could not be opened.
    #[error("{0}")]
    Connect(String),
    /// The TCP connection was not accepted, or the TLS handshake not finished, in time.
    #[error(
        "cannot connect to {destination} over {transport}: no answer in {seconds:.1} s{}",
        if *transport == Transport::Tls { TLS_SILENCE } else { "" }
    )]
    ConnectTimeout {
        /// Where.
        destination: SocketAddr,
        /// Over what.
        transport: Transport,
        /// The limit that ran out.
        seconds: f64,
    },
    /// The next hop cannot be reached over TLS as named.
    #[error("cannot connect over tls: {0}")]
    Tls(#[from] TlsError),
}

/// What a TLS connection that got no answer may mean: a plain SIP port waits for the end of
/// a message that never comes.
pub(crate) const TLS_SILENCE: &str = " (from TCP or the TLS handshake: is it a TLS port?)";

/// A NOTIFY with its resolved route, ready for the driver.
struct Prepared {
    notify: Arc<Notify>,
    route: Route,
    lease: Option<Lease>,
}

/// How a [`Notifier`] is set up.
#[derive(Debug, Clone, Default)]
pub struct NotifierConfig {
    /// Local address for the UDP socket (and the source IP of TCP connections); any
    /// address and a free port when `None`.
    pub bind: Option<SocketAddr>,
    /// RFC 3261 timers (T1, T2, T4).
    pub timers: Timers,
    /// The DNS server to ask about names; the system's configuration when `None`.
    pub dns_server: Option<SocketAddr>,
    /// How TLS connections are checked; by default against the system's roots.
    pub tls: TlsClient,
}

/// Sends NOTIFYs and reports their outcomes. Cheap to clone; all clones share one UDP
/// socket, one TCP connection per destination (open while targets to it are in flight),
/// and one driver task.
#[derive(Debug, Clone)]
pub struct Notifier {
    starts: mpsc::Sender<Start>,
    udp_local: SocketAddr,
    /// The IPv6 socket's address, when there is one beside `udp_local`.
    udp6_local: Option<SocketAddr>,
    tcp: Arc<TcpPool>,
    timers: Timers,
    routes: Arc<Routes>,
    /// One for all clones, so that a campaign shares its DNS cache.
    resolver: Arc<Resolver>,
    stats: watch::Receiver<Stats>,
}

impl Notifier {
    /// Binds the UDP socket and starts the driver task. Must be called within a tokio
    /// runtime. The task ends when every clone is dropped and no target is in flight.
    ///
    /// Raises the process's soft limit on open files to its hard limit
    /// ([`raise_descriptor_limit`](super::raise_descriptor_limit)): a target in flight over
    /// TCP holds a descriptor.
    pub async fn bind(config: NotifierConfig) -> io::Result<Notifier> {
        super::raise_descriptor_limit();
        let bind = config
            .bind
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let udp = Arc::new(super::udp::bind(bind)?);
        let udp_local = udp.local_addr()?;
        // Bound to no address in particular: IPv6 too, where the machine has it.
        let udp6 = match config.bind {
            None => super::udp::bind_v6_only(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
                .ok()
                .map(Arc::new),
            Some(_) => None,
        };
        let udp6_local = udp6.as_ref().map(|s| s.local_addr()).transpose()?;
        for socket in std::iter::once(&udp).chain(&udp6) {
            super::udp::report_unreachable(socket);
        }
        let (stream_tx, stream_rx) = mpsc::channel(EVENT_QUEUE);
        let bind_ip = (!bind.ip().is_unspecified()).then_some(bind.ip());
        let tcp = Arc::new(TcpPool::new(
            stream_tx,
            bind_ip,
            config.tls,
            config.timers.timer_f(),
        ));
        let (starts, starts_rx) = mpsc::channel(START_QUEUE);
        let endpoint = Endpoint::new(StdRng::from_entropy(), config.timers);
        let (stats_tx, stats) = watch::channel(Stats::default());
        tokio::spawn(driver::run(
            endpoint,
            UdpSockets { v4: udp, v6: udp6 },
            tcp.clone(),
            starts_rx,
            stream_rx,
            stats_tx,
        ));
        Ok(Notifier {
            starts,
            udp_local,
            udp6_local,
            tcp,
            timers: config.timers,
            routes: Arc::default(),
            resolver: Arc::new(Resolver::new(config.dns_server)),
            stats,
        })
    }

    /// What was received and not used (unmatched, mismatched, malformed), and how many
    /// responses were used from another address than their request went to, over all
    /// targets so far: the explanation of targets that ended in a silent `timeout`.
    pub fn stats(&self) -> Stats {
        *self.stats.borrow()
    }

    /// The local UDP address (the Via port for UDP requests).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp_local
    }

    /// Sends one NOTIFY, answering challenges, and waits for its outcome. Network faults are
    /// outcomes (`timeout`, `unreachable`), never errors. Nothing is sent until the returned
    /// future is first polled. The notifier keeps `notify` while the target is in flight:
    /// pass an `Arc` to share it with the caller instead of copying it.
    pub fn send(&self, notify: impl Into<Arc<Notify>>) -> Sending<'_> {
        Sending {
            notifier: self,
            started: std::time::Instant::now(),
            state: SendState::New(notify.into()),
        }
    }

    /// Hands a prepared NOTIFY to the driver, at once if its queue has room, else once it
    /// has; `None` if the driver has ended.
    fn start(&self, prepared: Prepared) -> Option<SendState<'_>> {
        let (reply, outcome) = oneshot::channel();
        let start = Start {
            notify: prepared.notify,
            route: prepared.route,
            lease: prepared.lease,
            reply,
        };
        match self.starts.try_send(start) {
            Ok(()) => Some(SendState::Waiting(outcome)),
            Err(mpsc::error::TrySendError::Full(start)) => {
                let starts = &self.starts;
                Some(SendState::Starting(Box::pin(async move {
                    starts.send(start).await.ok().map(|()| outcome)
                })))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// [`prepare`](Self::prepare) for what needs nothing awaited, UDP to an address (nearly
    /// every target of a campaign), so that no future is made for it; the NOTIFY back for
    /// anything else.
    fn prepare_now(&self, notify: Arc<Notify>) -> Result<Result<Prepared, SendError>, Arc<Notify>> {
        if notify.transport() != Transport::Udp {
            return Err(notify);
        }
        let Some(destination) = resolve::literal(&notify.next_hop()) else {
            return Err(notify);
        };
        Ok(self
            .udp_route(destination)
            .map(|route| Prepared {
                notify,
                route,
                lease: None,
            })
            .map_err(SendError::from))
    }

    /// The exact first request `send` would put on the wire, sending nothing. Over TCP and
    /// TLS the Via port is the UDP socket's, since no connection is opened.
    pub async fn preview(&self, notify: Notify) -> Result<Bytes, SendError> {
        let Prepared { notify, route, .. } = self.prepare(Arc::new(notify), false).await?;
        let now = std::time::Instant::now();
        let mut flow = Flow::new(now, notify, route, self.timers, &mut StdRng::from_entropy());
        Ok(flow
            .poll_transmit(now)
            .expect("a new flow sends its first request"))
    }

    /// Resolves where the NOTIFY goes and from which local address; over TCP or TLS, takes
    /// a lease on the first destination's connection, and when `connect` is set and there
    /// is one destination, connects (or joins the open connection) first (with several,
    /// the driver connects to each when the flow gets to it).
    async fn prepare(&self, mut notify: Arc<Notify>, connect: bool) -> Result<Prepared, SendError> {
        let started = tokio::time::Instant::now();
        // Resolving and connecting happen before the transaction exists, so Timer F and
        // --timeout must bound them here: a DNS server that does not answer, or a firewall
        // that drops SYNs, would otherwise hold the target for the resolver's or the
        // kernel's own limits.
        let limit = notify
            .timeout
            .unwrap_or(self.timers.timer_f())
            .min(self.timers.timer_f());
        let mut hop = notify.next_hop();
        let given = notify
            .transport
            .or(notify.target.transport())
            .or(notify.target.is_sips().then_some(Transport::Tls));
        // TLS's own default port (RFC 3261 section 19.1.2): SIPS NAPTR and _sips._tcp SRV
        // records are not looked up yet.
        if given == Some(Transport::Tls) && hop.port.is_none() {
            hop.port = Some(Transport::Tls.default_port());
        }
        let resolved =
            tokio::time::timeout(limit, self.resolver.resolve(&hop, given, notify.trace))
                .await
                .map_err(|_| ResolveError::Timeout {
                    host: hop.host.to_string(),
                    seconds: limit.as_secs_f64(),
                })??;
        let transport = resolved.transport;
        // A destination the kernel has no route to is left out, unless all are.
        let mut unroutable = None;
        let mut next: Vec<Hop> = Vec::with_capacity(resolved.destinations.len());
        for destination in resolved.destinations {
            match self.udp_route(destination) {
                Ok(route) => next.push(Hop {
                    destination,
                    local: route.local,
                }),
                Err(e) => {
                    unroutable.get_or_insert(e);
                }
            }
        }
        if next.is_empty() {
            return Err(unroutable.expect("a resolution has a destination").into());
        }
        let Hop { destination, local } = next.remove(0);
        let tls = match transport {
            Transport::Tls => Some(self.tcp.tls().server_name(&hop.host)?),
            _ => None,
        };
        let (mut route, lease) = match transport {
            Transport::Tcp | Transport::Tls if connect && next.is_empty() => {
                let limit = limit.saturating_sub(started.elapsed());
                let connecting = self.tcp.connect(Destination {
                    addr: destination,
                    tls,
                });
                let (local, lease) = tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| SendError::ConnectTimeout {
                        destination,
                        transport,
                        seconds: limit.as_secs_f64(),
                    })?
                    .map_err(SendError::Connect)?;
                (Route::new(destination, local, transport), Some(lease))
            }
            // Over TCP to several destinations the Via port is the UDP socket's, as in a
            // preview: which connection will carry the request is not known yet.
            Transport::Tcp | Transport::Tls => (
                Route::new(destination, local, transport),
                Some(self.tcp.lease(Destination {
                    addr: destination,
                    tls,
                })),
            ),
            Transport::Udp => (Route::new(destination, local, transport), None),
        };
        if let Host::Name(_) = hop.host {
            // One limit for the whole target, the time spent resolving included (on a copy
            // of the NOTIFY if the caller shares it).
            Arc::make_mut(&mut notify).timeout = Some(limit.saturating_sub(started.elapsed()));
        }
        if !next.is_empty() || !resolved.steps.is_empty() {
            route.resolution = Some(Box::new(Resolution {
                next,
                steps: resolved.steps,
            }));
        }
        Ok(Prepared {
            notify,
            route,
            lease,
        })
    }

    /// The route of a datagram to `destination`, from the UDP socket.
    fn udp_route(&self, destination: SocketAddr) -> Result<Route, ResolveError> {
        let socket = match self.udp6_local {
            Some(v6) if destination.is_ipv6() => v6,
            _ => self.udp_local,
        };
        let ip = if socket.ip().is_unspecified() {
            self.routes.local_ip(destination.ip())?
        } else {
            socket.ip()
        };
        Ok(Route::new(
            destination,
            SocketAddr::new(ip, socket.port()),
            Transport::Udp,
        ))
    }
}

/// Where the driver hands a target's outcome back, boxed so the channel is a few words.
type OutcomeReceiver = oneshot::Receiver<Box<Outcome>>;

/// The future of [`Notifier::send`].
///
/// Written out rather than an `async fn`, because every target in flight holds one: an
/// `async fn` would keep its argument (a whole [`Notify`]) and the state of the preparation
/// (resolving, connecting) for the target's whole life. This keeps a few words.
#[must_use = "nothing is sent until the future is polled"]
pub struct Sending<'a> {
    notifier: &'a Notifier,
    started: std::time::Instant,
    state: SendState<'a>,
}

enum SendState<'a> {
    /// Not polled yet.
    New(Arc<Notify>),
    /// Resolving a host name or connecting over TCP.
    Preparing(Pin<Box<dyn Future<Output = Result<Prepared, SendError>> + Send + 'a>>),
    /// Waiting for room in the driver's queue.
    Starting(Pin<Box<dyn Future<Output = Option<OutcomeReceiver>> + Send + 'a>>),
    /// Handed to the driver.
    Waiting(OutcomeReceiver),
    /// Ended.
    Done,
}

impl Future for Sending<'_> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = &mut *self;
        loop {
            let prepared = match std::mem::replace(&mut this.state, SendState::Done) {
                SendState::New(notify) => match this.notifier.prepare_now(notify) {
                    Ok(prepared) => prepared,
                    Err(notify) => {
                        this.state =
                            SendState::Preparing(Box::pin(this.notifier.prepare(notify, true)));
                        continue;
                    }
                },
                SendState::Preparing(mut preparing) => match preparing.as_mut().poll(cx) {
                    Poll::Ready(prepared) => prepared,
                    Poll::Pending => {
                        this.state = SendState::Preparing(preparing);
                        return Poll::Pending;
                    }
                },
                SendState::Starting(mut starting) => match starting.as_mut().poll(cx) {
                    Poll::Ready(Some(outcome)) => {
                        this.state = SendState::Waiting(outcome);
                        continue;
                    }
                    Poll::Ready(None) => return Poll::Ready(stopped()),
                    Poll::Pending => {
                        this.state = SendState::Starting(starting);
                        return Poll::Pending;
                    }
                },
                SendState::Waiting(mut outcome) => {
                    return match Pin::new(&mut outcome).poll(cx) {
                        Poll::Ready(outcome) => {
                            Poll::Ready(outcome.map_or_else(|_| stopped(), |outcome| *outcome))
                        }
                        Poll::Pending => {
                            this.state = SendState::Waiting(outcome);
                            Poll::Pending
                        }
                    };
                }
                SendState::Done => panic!("`Sending` polled after it completed"),
            };
            let prepared = match prepared {
                Ok(prepared) => prepared,
                Err(e) => {
                    let mut outcome = Outcome::unsent(OutcomeKind::Unreachable, e.to_string());
                    outcome.elapsed = this.started.elapsed();
                    return Poll::Ready(outcome);
                }
            };
            match this.notifier.start(prepared) {
                Some(state) => this.state = state,
                None => return Poll::Ready(stopped()),
            }
        }
    }
}

/// The outcome of a target whose notifier's driver has ended.
fn stopped() -> Outcome {
    Outcome::unsent(OutcomeKind::Unreachable, "the notifier has stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::phone::{self, PhoneConfig};
    use crate::sip::digest::Password;
    use crate::sip::uri::{HostPort, Target};
    use std::time::Duration;

    async fn phone() -> (phone::RunningPhone, u16) {
        let config = PhoneConfig {
            password_template: "secret".into(),
            ..PhoneConfig::default()
        };
        let addr = "127.0.0.1:0".parse().unwrap();
        let phone = phone::spawn(config, &[(addr, Transport::Udp)])
            .await
            .unwrap();
        let port = phone.local_addrs()[0].0.port();
        (phone, port)
    }

    fn notify(target: &str) -> Notify {
        Notify::new(Target::parse(target).unwrap(), Event::resync(None).unwrap())
            .with_credentials(None, Password::new("secret"))
    }

    #[test]
    fn a_send_in_flight_is_a_few_words() {
        // Every target in flight holds one: the NOTIFY must not be kept inline.
        let size = std::mem::size_of::<Sending<'static>>();
        assert!(size <= 48, "Sending is {size} bytes");
    }

    #[tokio::test]
    async fn nothing_is_sent_until_the_future_is_polled() {
        let (phone, port) = phone().await;
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        let target = format!("sip:159@127.0.0.1:{port}");
        let unpolled = notifier.send(notify(&target));
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(unpolled);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(phone.stats().requests, 0);
        let outcome = notifier.send(notify(&target)).await;
        assert_eq!(
            (outcome.kind, outcome.attempts),
            (OutcomeKind::Delivered, 2)
        );
        assert_eq!(phone.stats().requests, 2);
        phone.shutdown().await;
    }

    #[tokio::test]
    async fn targets_beyond_the_start_queue_wait_for_room() {
        let (phone, port) = phone().await;
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        let target = format!("sip:159@127.0.0.1:{port}");
        // All polled before the driver runs (one thread): most find the queue full.
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..START_QUEUE * 3 {
            let notifier = notifier.clone();
            let notify = notify(&target);
            sends.spawn(async move { notifier.send(notify).await.kind });
        }
        let mut delivered = 0;
        while let Some(kind) = sends.join_next().await {
            assert_eq!(kind.unwrap(), OutcomeKind::Delivered);
            delivered += 1;
        }
        assert_eq!(delivered, START_QUEUE * 3);
        phone.shutdown().await;
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_before_sending() {
        let (phone, port) = phone().await;
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        let outcome = notifier
            .send(notify(&format!("sip:159@localhost:{port}")))
            .await;
        assert_eq!(outcome.kind, OutcomeKind::Delivered, "{}", outcome.reason);
        // A bad proxy is refused before anything is made of it.
        let bad = "127.0.0.1:notaport".parse::<HostPort>().unwrap_err();
        assert!(bad.to_string().contains("port"), "{bad}");
        assert_eq!(phone.stats().requests, 2);
        phone.shutdown().await;
    }

    #[tokio::test]
    async fn stats_count_what_was_dropped_and_answers_from_elsewhere() {
        // A phone reached at one socket that answers from another: first bytes that are not
        // SIP, then its 200 with another Call-ID, then its 200.
        let reached = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let answers = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (port, elsewhere) = (
            reached.local_addr().unwrap().port(),
            answers.local_addr().unwrap(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            let (len, agent) = reached.recv_from(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..len]).into_owned();
            let mut ok = String::from("SIP/2.0 200 OK\r\n");
            for line in request.lines().filter(|l| {
                ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
            }) {
                ok += line;
                ok += "\r\n";
            }
            ok += "Content-Length: 0\r\n\r\n";
            let call_id = request.lines().find_map(|l| l.strip_prefix("Call-ID: "));
            let forged = ok.replace(call_id.unwrap(), "forged");
            for datagram in [b"garbage".as_slice(), forged.as_bytes(), ok.as_bytes()] {
                answers.send_to(datagram, agent).unwrap();
            }
        });
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        assert_eq!(notifier.stats(), Stats::default());
        let outcome = notifier
            .send(notify(&format!("sip:159@127.0.0.1:{port}")))
            .await;
        assert_eq!(outcome.kind, OutcomeKind::Delivered, "{}", outcome.reason);
        assert_eq!(outcome.answered_from, Some(elsewhere));
        let stats = Stats {
            from_elsewhere: 1,
            unmatched: 0,
            mismatched: 1,
            malformed: 1,
        };
        assert_eq!(notifier.stats(), stats);
    }
}
