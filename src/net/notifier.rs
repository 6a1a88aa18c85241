//! The async API: bind once, then `send` any number of NOTIFYs concurrently.

use super::driver::{self, Start};
use super::tcp::TcpPool;
use crate::proto::digest::Password;
use crate::proto::endpoint::Endpoint;
use crate::proto::flow::{Flow, Job};
use crate::proto::outcome::{Outcome, OutcomeKind};
use crate::proto::request::{Event, ExtraHeader};
use crate::proto::target::{Target, DEFAULT_PORT};
use crate::proto::transaction::Timers;
use crate::proto::Transport;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a [`Notifier`] is set up.
#[derive(Debug, Clone, Default)]
pub struct NotifierConfig {
    /// Local address for the UDP socket (and the source IP of TCP connections); any
    /// address and a free port when `None`.
    pub bind: Option<SocketAddr>,
    /// RFC 3261 timers (T1, T2, T4).
    pub timers: Timers,
}

/// The credentials of a phone line.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The digest user name (Auth ID); the target's user part when `None`.
    pub user: Option<String>,
    /// The line password.
    pub password: Password,
}

/// One NOTIFY to send.
#[derive(Debug, Clone)]
pub struct Notify {
    /// The phone line.
    pub target: Target,
    /// What to ask. Shared, so a campaign holds one copy.
    pub event: Arc<Event>,
    /// Additional headers.
    pub extra: Arc<[ExtraHeader]>,
    /// The line's credentials, used only if the phone challenges.
    pub credentials: Option<Credentials>,
    /// The transport; the target's `transport` parameter, else UDP, when `None`.
    pub transport: Option<Transport>,
    /// An outbound proxy `HOST[:PORT]`: requests go there, the Request-URI stays the target.
    pub proxy: Option<String>,
    /// The From URI; `sip:sipnotify@<local ip>` when `None`.
    pub from: Option<String>,
    /// An overall limit for this target, shorter than Timer F (32 s by default).
    pub timeout: Option<Duration>,
    /// Keep every message in [`Outcome::ladder`].
    pub trace: bool,
}

impl Notify {
    /// A NOTIFY with no credentials, extra headers, proxy or limits.
    pub fn new(target: Target, event: Event) -> Notify {
        Notify {
            target,
            event: Arc::new(event),
            extra: Arc::from(Vec::new()),
            credentials: None,
            transport: None,
            proxy: None,
            from: None,
            timeout: None,
            trace: false,
        }
    }

    /// Adds the line's credentials.
    pub fn with_credentials(mut self, user: Option<&str>, password: Password) -> Notify {
        self.credentials = Some(Credentials {
            user: user.map(str::to_string),
            password,
        });
        self
    }

    /// The transport this NOTIFY will use.
    pub fn transport(&self) -> Transport {
        self.transport
            .or(self.target.transport())
            .unwrap_or(Transport::Udp)
    }
}

/// Sends NOTIFYs and reports their outcomes. Cheap to clone; all clones share one UDP
/// socket, one TCP connection per destination, and one driver task.
#[derive(Debug, Clone)]
pub struct Notifier {
    starts: mpsc::UnboundedSender<Start>,
    udp_local: SocketAddr,
    tcp: Arc<TcpPool>,
    timers: Timers,
    routes: Arc<Mutex<HashMap<IpAddr, IpAddr>>>,
}

impl Notifier {
    /// Binds the UDP socket and starts the driver task. Must be called within a tokio
    /// runtime. The task ends when every clone is dropped and no target is in flight.
    pub async fn bind(config: NotifierConfig) -> io::Result<Notifier> {
        let bind = config
            .bind
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        let udp = Arc::new(super::udp::bind(bind)?);
        let udp_local = udp.local_addr()?;
        let (stream_tx, stream_rx) = mpsc::unbounded_channel();
        let bind_ip = (!bind.ip().is_unspecified()).then_some(bind.ip());
        // Idle longer than Timer F, no transaction can still wait for an answer on it.
        let idle = config.timers.timer_f() + Duration::from_secs(1);
        let tcp = Arc::new(TcpPool::new(stream_tx, bind_ip, idle));
        let (starts, starts_rx) = mpsc::unbounded_channel();
        let endpoint = Endpoint::new(StdRng::from_entropy());
        tokio::spawn(driver::run(
            endpoint,
            udp,
            tcp.clone(),
            starts_rx,
            stream_rx,
        ));
        Ok(Notifier {
            starts,
            udp_local,
            tcp,
            timers: config.timers,
            routes: Arc::default(),
        })
    }

    /// The local UDP address (the Via port for UDP requests).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp_local
    }

    /// Sends one NOTIFY, answering challenges, and waits for its outcome. Network faults are
    /// outcomes (`timeout`, `unreachable`), never errors. Nothing is sent until the returned
    /// future is first polled.
    pub fn send(&self, notify: Notify) -> Sending<'_> {
        Sending {
            notifier: self,
            started: std::time::Instant::now(),
            state: SendState::New(Box::new(notify)),
        }
    }

    /// Hands a prepared job to the driver; `None` if the driver has ended.
    fn start(&self, job: Job) -> Option<oneshot::Receiver<Outcome>> {
        let (reply, outcome) = oneshot::channel();
        self.starts
            .send(Start { job, reply })
            .ok()
            .map(|()| outcome)
    }

    /// [`prepare`](Self::prepare) for what needs nothing awaited, UDP to an address (nearly
    /// every target of a campaign), so that no future is made for it; the NOTIFY back for
    /// anything else.
    fn prepare_now(&self, notify: Box<Notify>) -> Result<Result<Job, String>, Box<Notify>> {
        if notify.transport() != Transport::Udp {
            return Err(notify);
        }
        let destination = match self.literal_destination(&notify) {
            Ok(Some(destination)) => destination,
            Ok(None) => return Err(notify),
            Err(reason) => return Ok(Err(reason)),
        };
        Ok(self.route_ip(destination.ip()).map(|ip| {
            let local = SocketAddr::new(ip, self.udp_local.port());
            self.job(*notify, destination, local)
        }))
    }

    /// The exact first request `send` would put on the wire, sending nothing. Over TCP the
    /// Via port is the UDP socket's, since no connection is opened.
    pub async fn preview(&self, notify: Notify) -> Result<Bytes, String> {
        let job = self.prepare(notify, false).await?;
        let mut flow = Flow::new(std::time::Instant::now(), job, &mut StdRng::from_entropy());
        Ok(flow
            .poll_transmit(std::time::Instant::now())
            .expect("a new flow sends its first request"))
    }

    /// Resolves where the NOTIFY goes and from which local address; connects over TCP when
    /// `connect` is set.
    async fn prepare(&self, notify: Notify, connect: bool) -> Result<Job, String> {
        let transport = notify.transport();
        let destination = match self.literal_destination(&notify)? {
            Some(destination) => destination,
            None => self.resolve(&notify).await?,
        };
        let local = match transport {
            Transport::Tcp if connect => {
                // The connect happens before the transaction exists, so Timer F and
                // --timeout must bound it here: a firewall that drops SYNs would otherwise
                // hold the target for the kernel's two minutes.
                let limit = notify
                    .timeout
                    .unwrap_or(self.timers.timer_f())
                    .min(self.timers.timer_f());
                tokio::time::timeout(limit, self.tcp.connect(destination))
                    .await
                    .map_err(|_| {
                        format!(
                            "cannot connect to {destination} over tcp: no answer in {:.1} s",
                            limit.as_secs_f64()
                        )
                    })??
            }
            _ => SocketAddr::new(self.route_ip(destination.ip())?, self.udp_local.port()),
        };
        Ok(self.job(notify, destination, local))
    }

    /// The job for `notify`, once its destination and local address are known.
    fn job(&self, notify: Notify, destination: SocketAddr, local: SocketAddr) -> Job {
        let transport = notify.transport();
        let (auth_user, password) = match notify.credentials {
            Some(c) => (c.user, Some(c.password)),
            None => (None, None),
        };
        Job {
            target: notify.target,
            event: notify.event,
            extra: notify.extra,
            auth_user,
            password,
            from: notify.from,
            transport,
            destination,
            local,
            timers: self.timers,
            timeout: notify.timeout,
            trace: notify.trace,
        }
    }

    /// The proxy's host and port, or else the target's.
    fn host_port(notify: &Notify) -> Result<(String, u16), String> {
        match &notify.proxy {
            Some(proxy) => split_host_port(proxy),
            None => Ok((notify.target.host().to_string(), notify.target.port())),
        }
    }

    /// Where the NOTIFY goes when that host is an address; `None` for a host name.
    fn literal_destination(&self, notify: &Notify) -> Result<Option<SocketAddr>, String> {
        let (host, port) = Notifier::host_port(notify)?;
        Ok(host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port)))
    }

    /// Resolves that host name.
    async fn resolve(&self, notify: &Notify) -> Result<SocketAddr, String> {
        let (host, port) = Notifier::host_port(notify)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{host} has no address"))
    }

    /// The local IP that routes to `dest`: what the phone must see in Via, never 0.0.0.0.
    fn route_ip(&self, dest: IpAddr) -> Result<IpAddr, String> {
        if !self.udp_local.ip().is_unspecified() {
            return Ok(self.udp_local.ip());
        }
        let mut routes = self.routes.lock().expect("route cache lock");
        if let Some(ip) = routes.get(&dest) {
            return Ok(*ip);
        }
        // Connecting a UDP socket sends nothing; it only asks the kernel for the route.
        let ip = std::net::UdpSocket::bind(SocketAddr::new(unspecified(dest), 0))
            .and_then(|s| s.connect((dest, 9)).and_then(|()| s.local_addr()))
            .map(|a| a.ip())
            .map_err(|e| format!("no route to {dest}: {e}"))?;
        // A fleet has many phones but few routes: bound the cache, not the fleet.
        if routes.len() >= MAX_ROUTES {
            routes.clear();
        }
        routes.insert(dest, ip);
        Ok(ip)
    }
}

/// The future of [`Notifier::send`].
///
/// Written out rather than an `async fn`, because every target in flight holds one: an
/// `async fn` would keep its argument (a whole [`Notify`]) and the state of the preparation
/// (resolving, connecting) for the target's whole life: 792 bytes where this is 48.
#[must_use = "nothing is sent until the future is polled"]
pub struct Sending<'a> {
    notifier: &'a Notifier,
    started: std::time::Instant,
    state: SendState<'a>,
}

enum SendState<'a> {
    /// Not polled yet. Boxed: the NOTIFY is only needed until the first poll.
    New(Box<Notify>),
    /// Resolving a host name or connecting over TCP.
    Preparing(Pin<Box<dyn Future<Output = Result<Job, String>> + Send + 'a>>),
    /// Handed to the driver.
    Waiting(oneshot::Receiver<Outcome>),
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
                            SendState::Preparing(Box::pin(this.notifier.prepare(*notify, true)));
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
                SendState::Waiting(mut outcome) => {
                    return match Pin::new(&mut outcome).poll(cx) {
                        Poll::Ready(outcome) => Poll::Ready(outcome.unwrap_or_else(|_| stopped())),
                        Poll::Pending => {
                            this.state = SendState::Waiting(outcome);
                            Poll::Pending
                        }
                    };
                }
                SendState::Done => panic!("`Sending` polled after it completed"),
            };
            let job = match prepared {
                Ok(job) => job,
                Err(reason) => {
                    let mut outcome = Outcome::unsent(OutcomeKind::Unreachable, reason);
                    outcome.elapsed = this.started.elapsed();
                    return Poll::Ready(outcome);
                }
            };
            match this.notifier.start(job) {
                Some(outcome) => this.state = SendState::Waiting(outcome),
                None => return Poll::Ready(stopped()),
            }
        }
    }
}

/// The outcome of a target whose notifier's driver has ended.
fn stopped() -> Outcome {
    Outcome::unsent(OutcomeKind::Unreachable, "the notifier has stopped")
}

/// Destinations whose local address is remembered.
const MAX_ROUTES: usize = 4096;

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// Splits `HOST[:PORT]`, the form of `--proxy`.
pub fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let text = text.trim().trim_start_matches("sip:");
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("`{text}`: the port must be a number from 1 to 65535"))?,
        ),
        None => (text, DEFAULT_PORT),
    };
    if host.is_empty() || port == 0 {
        return Err(format!("`{text}` is not HOST[:PORT]"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::{self, PhoneConfig};
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
    async fn a_host_name_is_resolved_before_sending() {
        let (phone, port) = phone().await;
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        let outcome = notifier
            .send(notify(&format!("sip:159@localhost:{port}")))
            .await;
        assert_eq!(outcome.kind, OutcomeKind::Delivered, "{}", outcome.reason);
        // A bad proxy is an outcome, decided without sending.
        let mut bad = notify(&format!("sip:159@127.0.0.1:{port}"));
        bad.proxy = Some("127.0.0.1:notaport".into());
        let outcome = notifier.send(bad).await;
        assert_eq!(outcome.kind, OutcomeKind::Unreachable);
        assert!(outcome.reason.contains("port"), "{}", outcome.reason);
        assert_eq!(phone.stats().requests, 2);
        phone.shutdown().await;
    }
}
