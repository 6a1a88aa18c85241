//! A lossy network: a UDP relay drops 30% of the datagrams in each direction between the
//! agent and `sipnotify phone`, and a 1,000-target campaign must still deliver every target
//! exactly once, with retransmission counts that match what the relay saw on the wire.
//!
//! The relay is the agent's outbound proxy (`--proxy`), so the agent accepts responses from
//! it. Drops follow a fixed-seed pseudo-random sequence in each direction.

mod common;

use common::bin;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TARGETS: u32 = 1000;
const LOSS_PERCENT: u64 = 30;

/// SplitMix64: a small deterministic generator, seeded per direction.
struct Drops(u64);

impl Drops {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn drop_this(&mut self) -> bool {
        self.next() % 100 < LOSS_PERCENT
    }
}

/// What the relay saw.
#[derive(Debug, Default)]
struct Counts {
    /// Datagrams received from the agent, per Call-ID.
    from_agent: HashMap<String, u64>,
    /// The Request-URI user of each Call-ID.
    user_of: HashMap<String, String>,
    /// Datagrams from the agent with no Call-ID (there should be none).
    unparsed: u64,
    /// Agent datagrams forwarded to the phone, and dropped.
    to_phone: u64,
    dropped_to_phone: u64,
    /// Datagrams received from the phone, forwarded to the agent, and dropped.
    from_phone: u64,
    to_agent: u64,
    dropped_to_agent: u64,
}

fn header<'a>(text: &'a str, names: &[&str]) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        names
            .iter()
            .any(|n| name.trim().eq_ignore_ascii_case(n))
            .then(|| value.trim())
    })
}

struct Relay {
    addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Binds a UDP socket on loopback with a large receive buffer (best effort), so that the
/// kernel does not drop what the relay is meant to count.
fn bind() -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let _ = socket.set_recv_buffer_size(8 << 20);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
}

impl Relay {
    fn start(phone: SocketAddr, seed: u64) -> Relay {
        let agent_side = Arc::new(bind());
        let phone_side = Arc::new(bind());
        let addr = agent_side.local_addr().unwrap();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let agent: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        // Agent -> phone.
        {
            let (agent_side, phone_side) = (agent_side.clone(), phone_side.clone());
            let (counts, stop, agent) = (counts.clone(), stop.clone(), agent.clone());
            threads.push(thread::spawn(move || {
                let mut drops = Drops(seed);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, from)) = agent_side.recv_from(&mut buf) else {
                        continue;
                    };
                    *agent.lock().unwrap() = Some(from);
                    let text = String::from_utf8_lossy(&buf[..len]);
                    let drop = drops.drop_this();
                    {
                        let mut c = counts.lock().unwrap();
                        match header(&text, &["Call-ID", "i"]) {
                            Some(call_id) => {
                                *c.from_agent.entry(call_id.to_string()).or_default() += 1;
                                let user = text
                                    .split_whitespace()
                                    .nth(1)
                                    .and_then(|uri| uri.strip_prefix("sip:"))
                                    .and_then(|uri| uri.split_once('@'))
                                    .map(|(user, _)| user.to_string())
                                    .unwrap_or_default();
                                c.user_of.insert(call_id.to_string(), user);
                            }
                            None => c.unparsed += 1,
                        }
                        if drop {
                            c.dropped_to_phone += 1;
                        } else {
                            c.to_phone += 1;
                        }
                    }
                    if !drop {
                        phone_side.send_to(&buf[..len], phone).unwrap();
                    }
                }
            }));
        }
        // Phone -> agent.
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                let mut drops = Drops(seed ^ 0xA5A5_A5A5_A5A5_A5A5);
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, _)) = phone_side.recv_from(&mut buf) else {
                        continue;
                    };
                    let drop = drops.drop_this();
                    {
                        let mut c = counts.lock().unwrap();
                        c.from_phone += 1;
                        if drop {
                            c.dropped_to_agent += 1;
                        } else {
                            c.to_agent += 1;
                        }
                    }
                    let to = *agent.lock().unwrap();
                    if let (false, Some(to)) = (drop, to) {
                        agent_side.send_to(&buf[..len], to).unwrap();
                    }
                }
            }));
        }
        Relay {
            addr,
            counts,
            stop,
            threads,
        }
    }

    fn stop(self) -> Counts {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.counts).unwrap().into_inner().unwrap()
    }
}

#[test]
fn thirty_percent_loss_each_way_still_delivers_every_target_once() {
    let started = Instant::now();
    let phone = common::PhoneProcess::builder()
        .transport("udp")
        .user("159")
        .users("1000-1999")
        .start();
    let phone_addr = phone.addr("udp");
    let relay = Relay::start(phone_addr, 0x5EED_1234);

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("loss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("targets.csv");
    let mut csv = String::from("target,id\n");
    for user in 1000..1000 + TARGETS {
        csv += &format!("sip:{user}@{phone_addr},t{user}\n");
    }
    std::fs::write(&input, csv).unwrap();

    // T1 = 50 ms: Timer F = 3.2 s, sends at 0, 50, 150, 350, 750, 1550 and 3150 ms. A
    // transaction whose 7 round trips are all lost (0.51^7, about 1%) times out, and the
    // target is tried again (new Call-ID) after a short backoff.
    let out = bin()
        .arg("batch")
        .arg(&input)
        .args(["--output", "json", "--event", "resync"])
        .args(["--proxy", &relay.addr.to_string()])
        .args(["--t1", "50", "--retries", "3", "--backoff", "100ms"])
        .args(["--concurrency", "100"])
        .env("SIPNOTIFY_PASSWORD", common::PASSWORD)
        .output()
        .unwrap();
    let took = started.elapsed();
    // Late answers to retransmissions are still on their way: let the relay count them.
    thread::sleep(Duration::from_millis(300));
    let counts = relay.stop();
    drop(phone);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");

    let records: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(records.len(), TARGETS as usize, "{stderr}");
    let mut seen = HashSet::new();
    for r in &records {
        assert_eq!(r["outcome"], "delivered", "{r}");
        assert!(
            seen.insert(r["id"].as_str().unwrap().to_string()),
            "twice: {r}"
        );
    }
    assert_eq!(seen.len(), TARGETS as usize);

    // Every datagram the agent sent reached the relay and carried a Call-ID; each try of a
    // target is a new Call-ID.
    assert_eq!(counts.unparsed, 0);
    let mut call_ids_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (call_id, user) in &counts.user_of {
        call_ids_of.entry(user).or_default().push(call_id);
    }
    let (mut reported, mut retransmissions, mut retried) = (0u64, 0u64, 0u64);
    for r in &records {
        let call_id = r["call_id"].as_str().unwrap();
        let attempts = r["attempts"].as_u64().unwrap();
        let retrans = r["retransmissions"].as_u64().unwrap();
        let tries = r["tries"].as_u64().unwrap();
        let sent = counts.from_agent.get(call_id).copied().unwrap_or(0);
        // The final try: exactly the datagrams the record accounts for.
        assert_eq!(
            sent,
            attempts + retrans,
            "the relay saw {sent} datagrams of the final try, the record says {attempts} \
             attempts + {retrans} retransmissions: {r}"
        );
        let user = r["target"]
            .as_str()
            .unwrap()
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .unwrap();
        // One Call-ID per try: earlier (timed out) tries are on the wire too.
        let calls = call_ids_of.get(user).map_or(0, Vec::len) as u64;
        assert_eq!(calls, tries, "{user}: {calls} Call-IDs on the wire: {r}");
        reported += attempts + retrans;
        retransmissions += retrans;
        retried += tries - 1;
    }
    let total_from_agent: u64 = counts.from_agent.values().sum();
    assert_eq!(counts.user_of.len() as u64, TARGETS as u64 + retried);
    // Earlier tries ended in a timeout (the only reason to retry here): the transaction that
    // timed out was sent 6 or 7 times before Timer F (7 on time, 6 if Timer E drifted), and
    // a challenge answered before it adds at most 7 more.
    let finals: HashSet<&str> = records
        .iter()
        .map(|r| r["call_id"].as_str().unwrap())
        .collect();
    let mut earlier = 0;
    for (call_id, &n) in &counts.from_agent {
        if !finals.contains(call_id.as_str()) {
            assert!((6..=14).contains(&n), "an earlier try sent {n} datagrams");
            earlier += n;
        }
    }
    assert_eq!(total_from_agent, reported + earlier);
    // The loss was real, and so were the retransmissions it caused.
    let loss = |dropped: u64, total: u64| dropped as f64 * 100.0 / total as f64;
    let up = loss(counts.dropped_to_phone, total_from_agent);
    let down = loss(counts.dropped_to_agent, counts.from_phone);
    assert!((25.0..35.0).contains(&up), "agent->phone loss {up:.1}%");
    assert!((25.0..35.0).contains(&down), "phone->agent loss {down:.1}%");
    assert!(
        retransmissions > TARGETS as u64 / 2,
        "only {retransmissions} retransmissions"
    );
    // The phone answers every request it gets, once: nothing was lost outside the relay.
    assert_eq!(
        counts.from_phone, counts.to_phone,
        "the phone answered {} of the {} requests it was sent",
        counts.from_phone, counts.to_phone
    );
    eprintln!(
        "{TARGETS} targets delivered in {:.1} s through {:.1}% / {:.1}% loss: {} datagrams \
         from the agent ({} in final tries, {retransmissions} retransmissions), {retried} \
         retried tries, {} from the phone",
        took.as_secs_f64(),
        up,
        down,
        total_from_agent,
        reported,
        counts.from_phone
    );
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
