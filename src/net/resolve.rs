//! Where a next hop is (RFC 3263).
//!
//! - An address is used as it is.
//! - A name with a port: its A and AAAA records (§4.2), on that port.
//! - A name without a port: NAPTR records choose the transport when none was given
//!   (`SIP+D2U` udp, `SIP+D2T` tcp; `SIPS+D2T` is TLS, which sipnotify does not speak yet,
//!   so those are skipped), then SRV records the servers, by priority and, within one,
//!   in weighted random order (RFC 2782), then their A/AAAA records the addresses. With no
//!   usable NAPTR, SRV for `_sip._udp` then `_sip._tcp`; with no SRV, the name's own A/AAAA
//!   records on port 5060.
//!
//! Every address found is a destination, in order (IPv4 before IPv6 for each name, as most
//! phone networks are), for the flow to fail over to (`proto::flow`).
//!
//! One `Resolver` serves a whole `Notifier`: hickory keeps each answer for its TTL and
//! joins identical queries in flight, so a campaign of a million rows on ten domains asks
//! the DNS about ten times, not a million.

use crate::sip::uri::{Host, HostPort, DEFAULT_PORT};
use crate::sip::Transport;
use crate::text::printable;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::Rng;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

/// Why a next hop could not be reached before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system's resolver did not resolve the name.
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// A DNS query failed (no answer, a server failure): not the same as "no such record".
    #[error("cannot resolve {host}: the {query} query failed: {reason}")]
    Dns {
        /// The name given.
        host: String,
        /// The query, e.g. `SRV _sip._udp.example.com`.
        query: String,
        /// What the resolver said.
        reason: String,
    },
    /// The name resolved to no usable address.
    #[error("{0} has no address")]
    NoAddress(String),
    /// The domain's SRV record says it offers no SIP service (target `.`, RFC 2782).
    #[error("{0} offers no SIP service (its SRV record's target is \".\")")]
    NoService(String),
    /// Resolving took the whole time limit of the target.
    #[error("cannot resolve {host}: no answer in {seconds:.1} s")]
    Timeout {
        /// The name.
        host: String,
        /// The limit that ran out.
        seconds: f64,
    },
    /// The kernel has no route to the address.
    #[error("no route to {destination}: {source}")]
    NoRoute {
        /// The address.
        destination: IpAddr,
        /// What the kernel said.
        source: io::Error,
    },
}

/// The most destinations a name resolves to: each gets a share of the target's time, and
/// the DNS is not trusted to bound its own answers.
pub const MAX_DESTINATIONS: usize = 8;

/// Records shown per query in the steps.
const SHOWN_RECORDS: usize = 8;

/// The address of a literal next hop; `None` for a name.
pub(crate) fn literal(hop: &HostPort) -> Option<SocketAddr> {
    hop.host
        .ip()
        .map(|ip| SocketAddr::new(ip, hop.port_or_default()))
}

/// Where a next hop resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The transport: as given, else chosen by NAPTR, else udp.
    pub transport: Transport,
    /// Where to send, in the order to try them; never empty.
    pub destinations: Vec<SocketAddr>,
    /// How, a line per step, when asked for.
    pub steps: Vec<String>,
}

/// Resolves next hops for a notifier and all its clones. Built on first use, so that a
/// campaign of addresses never reads the DNS configuration.
#[derive(Debug)]
pub(crate) struct Resolver {
    server: Option<SocketAddr>,
    backend: OnceLock<Backend>,
}

#[derive(Debug)]
enum Backend {
    /// hickory, with its cache (boxed: built once, and much larger than the other).
    Dns(Box<TokioResolver>),
    /// The system's DNS configuration could not be read (the reason): names go through the
    /// system's own resolver (getaddrinfo), A/AAAA only.
    System(String),
}

impl Resolver {
    /// Asks `server` when given, else the servers of the system's configuration.
    pub(crate) fn new(server: Option<SocketAddr>) -> Resolver {
        Resolver {
            server,
            backend: OnceLock::new(),
        }
    }

    fn backend(&self) -> &Backend {
        self.backend.get_or_init(|| match hickory(self.server) {
            Ok(resolver) => Backend::Dns(Box::new(resolver)),
            Err(why) => {
                tracing::warn!(
                    "cannot read the system's DNS configuration ({why}): names are resolved by \
                     the system's resolver, A/AAAA only, without NAPTR or SRV; give --dns-server"
                );
                Backend::System(why)
            }
        })
    }

    /// Resolves a next hop. `transport` is the one the URI or the command line gives, if
    /// any; `trace` asks for the steps.
    pub(crate) async fn resolve(
        &self,
        hop: &HostPort,
        transport: Option<Transport>,
        trace: bool,
    ) -> Result<Resolved, ResolveError> {
        let name = match &hop.host {
            Host::Name(name) => name.as_str(),
            _ => {
                let address = literal(hop).expect("an address is literal");
                return Ok(Resolved {
                    transport: transport.unwrap_or(Transport::Udp),
                    destinations: vec![address],
                    steps: Vec::new(),
                });
            }
        };
        let resolved = match self.backend() {
            Backend::Dns(dns) => resolve_name(&**dns, name, hop.port, transport, trace).await,
            Backend::System(why) => {
                let port = hop.port_or_default();
                let ips: Vec<IpAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|source| ResolveError::Lookup {
                        host: name.to_string(),
                        source,
                    })?
                    .map(|a| a.ip())
                    .collect();
                let mut steps = Steps::new(trace);
                steps.push(|| {
                    format!(
                        "the system's DNS configuration could not be read ({why}): A/AAAA \
                         {name} through the system's resolver, no NAPTR or SRV"
                    )
                });
                let destinations = usable(ips, port, &mut steps);
                finish(
                    name,
                    transport.unwrap_or(Transport::Udp),
                    destinations,
                    steps,
                )
            }
        };
        match &resolved {
            Ok(r) => tracing::debug!(
                destinations = ?r.destinations,
                transport = %r.transport,
                "resolved {hop}"
            ),
            Err(e) => tracing::debug!("{e}"),
        }
        resolved
    }
}

/// A hickory resolver asking `server`, or the system's configured servers.
fn hickory(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(server) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = server.port();
                    c
                })
                .collect();
            let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                server.ip(),
                true,
                connections,
            )]);
            let mut builder = TokioResolver::builder_with_config(config, Default::default());
            // That server only: not /etc/hosts either.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
        None => {
            TokioResolver::builder(TokioRuntimeProvider::default()).map_err(|e| e.to_string())?
        }
    };
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(|e| e.to_string())
}

/// A NAPTR record (RFC 3403), its text fields as received but for control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub regexp: String,
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The three questions RFC 3263 asks the DNS. "No such records" is an empty answer, not an
/// error: an error is a query that got no usable answer.
pub(crate) trait Dns {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, Failure>;
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, Failure>;
    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, Failure>;
}

/// A DNS query that got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What the resolver said.
    pub reason: String,
    /// No answer at all (a timeout, no server reached): other queries would wait as long.
    pub silent: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Failure {
        Failure {
            reason: clean(&e.to_string()),
            silent: matches!(
                e,
                NetError::Timeout | NetError::NoConnections | NetError::Io(_)
            ),
        }
    }
}

/// The records of a hickory answer; none for "no records" (NXDOMAIN or NODATA).
fn answers<T>(
    result: Result<hickory_resolver::lookup::Lookup, NetError>,
    read: impl Fn(&RData) -> Option<T>,
) -> Result<Vec<T>, Failure> {
    match result {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| read(&r.data))
            .collect()),
        Err(e) if e.is_no_records_found() => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Text from a DNS answer, which may hold any bytes, with control characters escaped: it
/// is shown in ladders and messages.
fn clean(text: &str) -> String {
    printable(text, false).into_owned()
}

impl Dns for TokioResolver {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, Failure> {
        let text = |b: &[u8]| clean(&String::from_utf8_lossy(b));
        answers(
            self.lookup(name, RecordType::NAPTR).await,
            |data| match data {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: text(&n.flags),
                    services: text(&n.services),
                    regexp: text(&n.regexp),
                    replacement: clean(&n.replacement.to_string()),
                }),
                _ => None,
            },
        )
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, Failure> {
        answers(
            self.lookup(name, RecordType::SRV).await,
            |data| match data {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: clean(&s.target.to_string()),
                }),
                _ => None,
            },
        )
    }

    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, Failure> {
        match self.lookup_ip(name).await {
            Ok(ips) => Ok(ips.iter().collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The steps of a resolution, written only when asked for (a campaign resolves per target
/// and formats nothing).
struct Steps(Option<Vec<String>>);

impl Steps {
    fn new(trace: bool) -> Steps {
        Steps(trace.then(Vec::new))
    }

    fn push(&mut self, step: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.0 {
            steps.push(step());
        }
    }
}

/// RFC 3263 §4 for a name.
pub(crate) async fn resolve_name(
    dns: &impl Dns,
    name: &str,
    port: Option<u16>,
    given: Option<Transport>,
    trace: bool,
) -> Result<Resolved, ResolveError> {
    let mut steps = Steps::new(trace);
    let failed = |query: String, failure: Failure| ResolveError::Dns {
        host: name.to_string(),
        query,
        reason: failure.reason,
    };
    // Set when the server did not answer at all: the SRV queries would wait as long.
    let mut silent = false;
    if let Some(port) = port {
        steps.push(|| format!("{name}:{port} names its port: A/AAAA only, no NAPTR or SRV"));
        let ips = addresses(dns, name, &mut steps)
            .await
            .map_err(|e| failed(format!("A/AAAA {name}"), e))?;
        let destinations = usable(ips, port, &mut steps);
        return finish(name, given.unwrap_or(Transport::Udp), destinations, steps);
    }
    // The transports to try and the SRV name of each, in order.
    let candidates = match given {
        Some(transport) => {
            steps.push(|| format!("transport {transport} given: no NAPTR"));
            vec![(transport, srv_name(transport, name))]
        }
        None => {
            let records = optional(
                dns.naptr(name).await,
                || format!("NAPTR {name}"),
                show_naptr,
                &mut steps,
                &mut silent,
            );
            match naptr_choice(&records) {
                Some(chosen) => {
                    steps.push(|| format!("transport {} from NAPTR: SRV {}", chosen.0, chosen.1));
                    vec![chosen]
                }
                None => {
                    steps.push(|| "no usable NAPTR: SRV for udp, then tcp".to_string());
                    [Transport::Udp, Transport::Tcp]
                        .map(|t| (t, srv_name(t, name)))
                        .to_vec()
                }
            }
        }
    };
    for (transport, service) in &candidates {
        if silent {
            steps.push(|| "the DNS server did not answer: no SRV query".to_string());
            break;
        }
        let records = optional(
            dns.srv(service).await,
            || format!("SRV {service}"),
            show_srv,
            &mut steps,
            &mut silent,
        );
        if records.is_empty() {
            continue;
        }
        let records: Vec<Srv> = records.into_iter().filter(|r| r.port != 0).collect();
        if records.iter().all(|r| r.target == ".") {
            return Err(ResolveError::NoService(name.to_string()));
        }
        let ordered = srv_order(records, &mut rand::thread_rng());
        let mut destinations: Vec<SocketAddr> = Vec::new();
        let servers = ordered.iter().filter(|r| r.target != ".");
        for srv in servers.take(MAX_DESTINATIONS) {
            if destinations.len() >= MAX_DESTINATIONS {
                break;
            }
            // A server whose name does not resolve is skipped: the others may.
            match addresses(dns, &srv.target, &mut steps).await {
                Ok(ips) => {
                    let new = usable(ips, srv.port, &mut steps);
                    let new: Vec<SocketAddr> = new
                        .into_iter()
                        .filter(|a| !destinations.contains(a))
                        .collect();
                    destinations.extend(new);
                }
                Err(e) => steps.push(|| format!("A/AAAA {}: {e}: skipped", srv.target)),
            }
        }
        return finish(name, *transport, destinations, steps);
    }
    let transport = candidates[0].0;
    steps.push(|| format!("no SRV: A/AAAA {name}, port {DEFAULT_PORT}"));
    let ips = addresses(dns, name, &mut steps)
        .await
        .map_err(|e| failed(format!("A/AAAA {name}"), e))?;
    let destinations = usable(ips, DEFAULT_PORT, &mut steps);
    finish(name, transport, destinations, steps)
}

/// The records of a NAPTR or SRV query (added to the steps with `show`), none when it
/// failed: those steps are optional, and
/// whether the name can be reached is for its A/AAAA query to say (a name in the hosts file
/// has no NAPTR and maybe no DNS server to ask; some servers refuse types they do not know).
fn optional<T>(
    answer: Result<Vec<T>, Failure>,
    query: impl Fn() -> String,
    show: fn(&[T]) -> String,
    steps: &mut Steps,
    silent: &mut bool,
) -> Vec<T> {
    let records = answer.unwrap_or_else(|e| {
        *silent |= e.silent;
        let query = query();
        tracing::debug!("{query}: {e}");
        steps.push(|| format!("{query}: the query failed ({e}): going on without it"));
        Vec::new()
    });
    steps.push(|| format!("{}: {}", query(), show(&records)));
    records
}

/// A name's addresses, IPv4 first.
async fn addresses(dns: &impl Dns, name: &str, steps: &mut Steps) -> Result<Vec<IpAddr>, Failure> {
    let mut ips = dns.ips(name).await?;
    ips.sort_by_key(|ip| ip.is_ipv6());
    steps.push(|| {
        let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        format!("A/AAAA {name}: {}", or_none(&shown.join(", ")))
    });
    Ok(ips)
}

/// The destinations of `ips` on `port`, without the addresses a DNS answer must not send
/// a request to (unspecified, multicast, broadcast) and repeats.
fn usable(ips: Vec<IpAddr>, port: u16, steps: &mut Steps) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(ips.len());
    for ip in ips {
        let refused =
            ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST);
        if refused {
            steps.push(|| format!("{ip} is not an address to send to: skipped"));
        } else if !out.iter().any(|a| a.ip() == ip && a.port() == port) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

/// The end of a resolution: at most [`MAX_DESTINATIONS`], at least one.
fn finish(
    name: &str,
    transport: Transport,
    mut destinations: Vec<SocketAddr>,
    mut steps: Steps,
) -> Result<Resolved, ResolveError> {
    if destinations.is_empty() {
        return Err(ResolveError::NoAddress(name.to_string()));
    }
    destinations.truncate(MAX_DESTINATIONS);
    steps.push(|| {
        let shown: Vec<String> = destinations.iter().map(SocketAddr::to_string).collect();
        format!(
            "destinations over {transport}, in order: {}",
            shown.join(", ")
        )
    });
    Ok(Resolved {
        transport,
        destinations,
        steps: steps.0.unwrap_or_default(),
    })
}

/// `_sip._udp.NAME` or `_sip._tcp.NAME`.
fn srv_name(transport: Transport, name: &str) -> String {
    format!("_sip._{transport}.{name}")
}

/// The transport and SRV name of the first NAPTR record, by order then preference, that
/// RFC 3263 §4.1 lets us use: flag `s` (an SRV name follows), no regular expression, and a
/// service over a transport sipnotify speaks. `SIPS+D2T` needs TLS, which it does not
/// speak yet.
pub(crate) fn naptr_choice(records: &[Naptr]) -> Option<(Transport, String)> {
    let mut sorted: Vec<&Naptr> = records.iter().collect();
    sorted.sort_by_key(|r| (r.order, r.preference));
    sorted.into_iter().find_map(|r| {
        let transport = naptr_transport(&r.services)?;
        let usable = r.flags.eq_ignore_ascii_case("s") && r.regexp.is_empty();
        usable.then(|| (transport, r.replacement.clone()))
    })
}

/// The transport of a NAPTR service field that sipnotify speaks.
fn naptr_transport(services: &str) -> Option<Transport> {
    if services.eq_ignore_ascii_case("SIP+D2U") {
        Some(Transport::Udp)
    } else if services.eq_ignore_ascii_case("SIP+D2T") {
        Some(Transport::Tcp)
    } else {
        None
    }
}

fn show_naptr(records: &[Naptr]) -> String {
    let shown: Vec<String> = records
        .iter()
        .take(SHOWN_RECORDS)
        .map(|r| {
            let skipped = match naptr_transport(&r.services) {
                _ if r.services.eq_ignore_ascii_case("SIPS+D2T") => {
                    " (TLS, not supported yet: skipped)"
                }
                None => " (not a transport sipnotify speaks: skipped)",
                Some(_) if !r.flags.eq_ignore_ascii_case("s") || !r.regexp.is_empty() => {
                    " (not an SRV step: skipped)"
                }
                Some(_) => "",
            };
            format!(
                "{} {} \"{}\" \"{}\" \"{}\" {}{skipped}",
                r.order, r.preference, r.flags, r.services, r.regexp, r.replacement
            )
        })
        .collect();
    or_none(&more(shown, records.len()))
}

fn show_srv(records: &[Srv]) -> String {
    let shown: Vec<String> = records
        .iter()
        .take(SHOWN_RECORDS)
        .map(|r| format!("{} {} {} {}", r.priority, r.weight, r.port, r.target))
        .collect();
    or_none(&more(shown, records.len()))
}

fn more(shown: Vec<String>, total: usize) -> String {
    let mut text = shown.join("; ");
    if total > shown.len() {
        text += &format!("; and {} more", total - shown.len());
    }
    text
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "none".to_string()
    } else {
        text.to_string()
    }
}

/// RFC 2782's order: by priority, lowest first; within a priority, a weighted random
/// choice, repeated on the records left: each is picked next with a chance proportional to
/// its weight, and those of weight 0 only rarely (they are put first, and picked when the
/// draw is 0).
pub(crate) fn srv_order(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Srv> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let same = records
            .iter()
            .take_while(|r| r.priority == priority)
            .count();
        let mut group: Vec<Srv> = records.drain(..same).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let draw = rng.gen_range(0..=total);
            let mut sum = 0;
            let at = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= draw
                })
                .unwrap_or(0);
            ordered.push(group.remove(at));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashMap;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.to_string(),
        }
    }

    #[test]
    fn srv_order_is_by_priority_then_weighted_at_random() {
        let records = vec![
            srv(20, 0, "late"),
            srv(10, 10, "ten"),
            srv(10, 60, "sixty"),
            srv(10, 30, "thirty"),
        ];
        let mut rng = StdRng::seed_from_u64(2782);
        let mut first: HashMap<String, u32> = HashMap::new();
        let runs = 10_000;
        for _ in 0..runs {
            let order = srv_order(records.clone(), &mut rng);
            assert_eq!(order.len(), 4);
            assert_eq!(
                order[3].target, "late",
                "a lower priority always comes later"
            );
            *first.entry(order[0].target.clone()).or_default() += 1;
        }
        // Each is first in proportion to its weight (of 100, so in percent), within 2 points.
        for (target, weight) in [("sixty", 60), ("thirty", 30), ("ten", 10)] {
            let percent = f64::from(first[target]) * 100.0 / f64::from(runs);
            assert!(
                (percent - f64::from(weight)).abs() < 2.0,
                "{target} first in {percent:.1}% of runs, expected {weight}%"
            );
        }
        // The same seed, the same order: the choice depends only on the generator.
        let a = srv_order(records.clone(), &mut StdRng::seed_from_u64(1));
        let b = srv_order(records, &mut StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }

    #[test]
    fn a_weight_of_zero_is_rarely_first_and_zeros_alone_are_all_kept() {
        let mut rng = StdRng::seed_from_u64(7);
        let records = vec![srv(1, 0, "zero"), srv(1, 100, "hundred")];
        let zero_first = (0..10_000)
            .filter(|_| srv_order(records.clone(), &mut rng)[0].target == "zero")
            .count();
        // Picked only on a draw of 0 out of 0..=100.
        assert!(zero_first < 300, "{zero_first}");
        let zeros = vec![srv(1, 0, "a"), srv(1, 0, "b"), srv(1, 0, "c")];
        let mut order: Vec<String> = srv_order(zeros, &mut rng)
            .into_iter()
            .map(|r| r.target)
            .collect();
        order.sort();
        assert_eq!(order, ["a", "b", "c"]);
    }

    fn naptr(order: u16, flags: &str, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference: 10,
            flags: flags.into(),
            services: services.into(),
            regexp: String::new(),
            replacement: replacement.into(),
        }
    }

    #[test]
    fn naptr_picks_the_first_usable_record_and_skips_tls() {
        let records = vec![
            naptr(30, "s", "SIP+D2U", "_sip._udp.example.com."),
            naptr(10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(20, "S", "sip+d2t", "_sip._tcp.example.com."),
            naptr(5, "u", "SIP+D2U", "!^.*$!sip:x@y!"),
        ];
        assert_eq!(
            naptr_choice(&records),
            Some((Transport::Tcp, "_sip._tcp.example.com.".to_string()))
        );
        let tls_only = [naptr(10, "s", "SIPS+D2T", "_sips._tcp.example.com.")];
        assert_eq!(naptr_choice(&tls_only), None);
        assert!(show_naptr(&tls_only).contains("TLS, not supported yet: skipped"));
    }

    /// A DNS in memory: names to records.
    #[derive(Default)]
    struct Zone {
        naptr: HashMap<&'static str, Vec<Naptr>>,
        srv: HashMap<&'static str, Vec<Srv>>,
        ips: HashMap<&'static str, Vec<IpAddr>>,
        broken: Option<&'static str>,
        /// NAPTR and SRV queries get no answer.
        unanswered: bool,
        address_lookups: std::sync::atomic::AtomicUsize,
        srv_lookups: std::sync::atomic::AtomicUsize,
    }

    impl Zone {
        fn fails(&self, name: &str) -> Result<(), Failure> {
            match self.broken == Some(name) {
                true => Err(Failure {
                    reason: "SERVFAIL".into(),
                    silent: false,
                }),
                false => Ok(()),
            }
        }

        fn answers(&self) -> Result<(), Failure> {
            match self.unanswered {
                true => Err(Failure {
                    reason: "request timed out".into(),
                    silent: true,
                }),
                false => Ok(()),
            }
        }
    }

    impl Dns for Zone {
        async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, Failure> {
            self.answers()?;
            Ok(self.naptr.get(name).cloned().unwrap_or_default())
        }
        async fn srv(&self, name: &str) -> Result<Vec<Srv>, Failure> {
            self.srv_lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.answers()?;
            self.fails(name)?;
            Ok(self.srv.get(name).cloned().unwrap_or_default())
        }
        async fn ips(&self, name: &str) -> Result<Vec<IpAddr>, Failure> {
            self.fails(name)?;
            self.address_lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.ips.get(name).cloned().unwrap_or_default())
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn naptr_then_srv_then_addresses_in_order() {
        let mut zone = Zone::default();
        zone.naptr.insert(
            "pbx.test",
            vec![naptr(10, "s", "SIP+D2T", "_sip._tcp.pbx.test.")],
        );
        let mut backup = srv(20, 0, "b.pbx.test.");
        backup.port = 5070;
        zone.srv.insert(
            "_sip._tcp.pbx.test.",
            vec![backup, srv(10, 0, "a.pbx.test.")],
        );
        zone.ips
            .insert("a.pbx.test.", ips(&["::1", "127.0.0.9", "0.0.0.0"]));
        zone.ips.insert("b.pbx.test.", ips(&["127.0.0.3"]));
        let r = resolve_name(&zone, "pbx.test", None, None, true)
            .await
            .unwrap();
        assert_eq!(r.transport, Transport::Tcp);
        assert_eq!(
            r.destinations,
            addrs(&["127.0.0.9:5060", "[::1]:5060", "127.0.0.3:5070"])
        );
        let steps = r.steps.join("\n");
        for step in [
            "NAPTR pbx.test: 10 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp.pbx.test.",
            "transport tcp from NAPTR",
            "SRV _sip._tcp.pbx.test.: 20 0 5070 b.pbx.test.; 10 0 5060 a.pbx.test.",
            "0.0.0.0 is not an address to send to: skipped",
            "destinations over tcp, in order: 127.0.0.9:5060, [::1]:5060, 127.0.0.3:5070",
        ] {
            assert!(steps.contains(step), "{step} not in\n{steps}");
        }
        // Not traced: nothing written.
        let r = resolve_name(&zone, "pbx.test", None, None, false)
            .await
            .unwrap();
        assert!(r.steps.is_empty());
    }

    #[tokio::test]
    async fn without_naptr_or_srv_the_name_is_used_and_a_port_skips_both() {
        let mut zone = Zone::default();
        zone.srv
            .insert("_sip._tcp.pbx.test", vec![srv(1, 1, "tcp.pbx.test.")]);
        zone.ips.insert("tcp.pbx.test.", ips(&["127.0.0.5"]));
        zone.ips.insert("pbx.test", ips(&["127.0.0.4"]));
        // No NAPTR: udp's SRV first, then tcp's.
        let r = resolve_name(&zone, "pbx.test", None, None, false)
            .await
            .unwrap();
        assert_eq!(
            (r.transport, r.destinations),
            (Transport::Tcp, addrs(&["127.0.0.5:5060"]))
        );
        // A transport given: its SRV only, else the name on 5060.
        let r = resolve_name(&zone, "pbx.test", None, Some(Transport::Udp), false)
            .await
            .unwrap();
        assert_eq!(
            (r.transport, r.destinations),
            (Transport::Udp, addrs(&["127.0.0.4:5060"]))
        );
        // A port: the name's addresses, whatever the SRV records say.
        zone.broken = Some("_sip._udp.pbx.test");
        let r = resolve_name(&zone, "pbx.test", Some(5080), None, true)
            .await
            .unwrap();
        assert_eq!(r.destinations, addrs(&["127.0.0.4:5080"]));
        assert!(
            !r.steps.iter().any(|s| s.starts_with("SRV")),
            "{:?}",
            r.steps
        );
        // Without it, a failed SRV query is said and skipped.
        let r = resolve_name(&zone, "pbx.test", None, None, true)
            .await
            .unwrap();
        assert_eq!(r.destinations, addrs(&["127.0.0.5:5060"]));
        let failed = "SRV _sip._udp.pbx.test: the query failed (SERVFAIL): going on without it";
        assert!(r.steps.iter().any(|s| s == failed), "{:?}", r.steps);
        // The name's own A/AAAA query failing is the end.
        zone.broken = Some("pbx.test");
        let r = resolve_name(&zone, "pbx.test", Some(5080), None, false).await;
        assert_eq!(
            r.unwrap_err().to_string(),
            "cannot resolve pbx.test: the A/AAAA pbx.test query failed: SERVFAIL"
        );
        let e = resolve_name(&zone, "nothing.test", None, None, false)
            .await
            .unwrap_err();
        assert!(matches!(e, ResolveError::NoAddress(_)), "{e}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_not_asked_for_srv_too() {
        // NAPTR and SRV queries time out; the addresses come from elsewhere (a hosts file).
        let mut zone = Zone {
            unanswered: true,
            ..Zone::default()
        };
        zone.ips.insert("hosts.test", ips(&["127.0.0.6"]));
        let r = resolve_name(&zone, "hosts.test", None, None, true)
            .await
            .unwrap();
        assert_eq!(r.destinations, addrs(&["127.0.0.6:5060"]));
        let skipped = "the DNS server did not answer: no SRV query";
        assert!(r.steps.iter().any(|s| s == skipped), "{:?}", r.steps);
        assert_eq!(zone.srv_lookups.into_inner(), 0);
    }

    #[tokio::test]
    async fn a_dot_target_means_no_service_and_answers_are_bounded() {
        let mut zone = Zone::default();
        zone.srv.insert("_sip._udp.none.test", vec![srv(0, 0, ".")]);
        let e = resolve_name(&zone, "none.test", None, None, false)
            .await
            .unwrap_err();
        assert!(matches!(e, ResolveError::NoService(_)), "{e}");
        // 100 SRV records of 2 addresses each: at most MAX_DESTINATIONS, and no more
        // than that many names looked up.
        let many: Vec<Srv> = (0..100).map(|i| srv(i, 0, "many.test.")).collect();
        zone.srv.insert("_sip._udp.big.test", many);
        let two = ips(&["127.0.0.1", "127.0.0.2"]);
        zone.ips.insert("many.test.", two);
        let r = resolve_name(&zone, "big.test", None, None, false)
            .await
            .unwrap();
        assert_eq!(r.destinations, addrs(&["127.0.0.1:5060", "127.0.0.2:5060"]));
        let lookups = zone.address_lookups.into_inner();
        assert_eq!(
            lookups, MAX_DESTINATIONS,
            "one lookup per server tried, bounded"
        );
    }

    #[tokio::test]
    async fn without_the_system_configuration_names_go_through_getaddrinfo() {
        let resolver = Resolver::new(None);
        let unreadable = Backend::System("No such file or directory".into());
        resolver.backend.set(unreadable).unwrap();
        let hop: HostPort = "localhost:5072".parse().unwrap();
        let r = resolver.resolve(&hop, None, true).await.unwrap();
        assert!(r.destinations.contains(&"127.0.0.1:5072".parse().unwrap()));
        assert_eq!(r.transport, Transport::Udp);
        assert!(
            r.steps[0].contains("could not be read (No such file or directory)"),
            "{:?}",
            r.steps
        );
        // No port: 5060, and still no NAPTR or SRV.
        let hop: HostPort = "localhost".parse().unwrap();
        let r = resolver.resolve(&hop, Some(Transport::Tcp), false).await;
        let r = r.unwrap();
        assert_eq!(r.destinations[0].port(), 5060);
        assert_eq!(r.transport, Transport::Tcp);
    }

    #[tokio::test]
    async fn addresses_need_no_lookup_and_names_resolve() {
        let resolver = Resolver::new(None);
        let hop: HostPort = "127.0.0.1".parse().unwrap();
        assert_eq!(literal(&hop), Some("127.0.0.1:5060".parse().unwrap()));
        let hop: HostPort = "[::1]:5070".parse().unwrap();
        let r = resolver.resolve(&hop, None, true).await.unwrap();
        assert_eq!(r.destinations, addrs(&["[::1]:5070"]));
        assert!(r.steps.is_empty());
        assert!(
            resolver.backend.get().is_none(),
            "no DNS set up for an address"
        );
        let hop: HostPort = "localhost:5071".parse().unwrap();
        assert_eq!(literal(&hop), None);
        let r = resolver.resolve(&hop, None, false).await.unwrap();
        assert_eq!(r.destinations[0], "127.0.0.1:5071".parse().unwrap());
    }
}
