//! Names resolved per RFC 3263 against a real DNS server nobody here wrote: dnsmasq (Debian
//! package `dnsmasq-base`), started by each test on loopback with the records it needs,
//! and asked through `--dns-server`. Its query log says what sipnotify asked.
//!
//! If `dnsmasq` cannot be found, the tests fail when `CI` is set and are otherwise reported
//! ignored, with the reason (tests/common/needs.rs).

mod common;

use common::needs::Program;
use common::{json_line, send, PhoneBuilder, PhoneProcess};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where every dnsmasq of these tests listens (each on its own port).
const DNS_IP: &str = "127.0.0.53";

/// dnsmasq, which every test here needs.
fn dnsmasq() -> Program {
    Program::find("dnsmasq", "dnsmasq-base", &["/usr/sbin", "/usr/local/sbin"])
}

fn main() -> std::process::ExitCode {
    common::needs::run(
        &dnsmasq(),
        trials![
            naptr_then_srv_then_a_and_the_dead_first_server_is_given_its_share_only,
            over_tcp_a_refused_server_and_one_answering_503_are_passed_at_once,
            a_name_with_a_port_asks_for_its_addresses_only,
            a_campaign_on_one_domain_asks_the_dns_once,
            answers_are_kept_for_their_ttl_and_no_longer,
            a_dns_server_that_is_not_an_address_is_refused_before_anything_is_sent,
        ],
    )
}

/// dnsmasq in the foreground, answering only from `records` (its own configuration lines)
/// with a TTL of `ttl` seconds, and logging every query; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(name: &str, ttl: u32, records: &[String]) -> Dnsmasq {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("dnsmasq-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = common::free_port(&[DNS_IP]);
        let mut config = vec![
            "no-resolv".to_string(),
            "no-hosts".into(),
            format!("port={port}"),
            format!("listen-address={DNS_IP}"),
            "bind-interfaces".into(),
            // Records from the configuration carry a TTL of 0 unless told: nothing cached.
            format!("local-ttl={ttl}"),
            "log-queries".into(),
            "log-facility=-".into(),
            "pid-file=".into(),
        ];
        config.extend(records.iter().cloned());
        let conf = dir.join("dnsmasq.conf");
        std::fs::write(&conf, config.join("\n") + "\n").unwrap();
        let log = dir.join("dnsmasq.log");
        let child = Command::new(dnsmasq().path())
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dnsmasq");
        let addr: SocketAddr = format!("{DNS_IP}:{port}").parse().unwrap();
        let mut dns = Dnsmasq { child, addr, log };
        dns.wait_ready();
        dns
    }

    /// Asks until dnsmasq answers anything.
    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // A query for the A record of `ready.`, written out (RFC 1035 §4.1).
        let mut query = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend(b"\x05ready\x00\x00\x01\x00\x01");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dnsmasq exited ({status}):\n{}", self.log_text());
            }
            sock.send_to(&query, self.addr).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n >= 2 && buf[..2] == query[..2] {
                    return;
                }
            }
        }
        panic!("dnsmasq did not answer within 10 s:\n{}", self.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The queries logged so far, as `TYPE name`, in order, but for the readiness probe's.
    fn queries(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("query[")? + "query[".len()..];
                let (kind, rest) = rest.split_once("] ")?;
                let name = rest.split(' ').next()?;
                Some(format!("{kind} {name}"))
            })
            .filter(|q| q != "A ready")
            .collect()
    }

    /// The queries once the log has stopped growing: dnsmasq writes it as it goes.
    fn settled_queries(&self) -> Vec<String> {
        let mut last = self.queries();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.queries();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    fn server(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A simulated phone on `ip`, on a free UDP port, for more options.
fn udp_phone(ip: &str) -> PhoneBuilder {
    PhoneProcess::builder()
        .listen(format!("{ip}:0"))
        .transport("udp")
}

/// `sipnotify batch` through `dns` of `targets` (a target a line, as `name.csv` in a
/// folder of its own) with JSON output and `extra` arguments, which must exit 0: its
/// standard output.
fn batch_through(dns: &Dnsmasq, name: &str, targets: &str, extra: &[&str]) -> String {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dns-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("{name}.csv"));
    std::fs::write(&input, format!("target\n{targets}")).unwrap();
    let (input, server) = (input.to_str().unwrap(), dns.server());
    let args = ["batch", input, "--dns-server", &server, "--output", "json"];
    let out = send(&[&args[..], extra].concat());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `sipnotify resync TARGET` through `dns` with JSON output and `extra` arguments: the
/// exit status and its one record.
fn resync_through(dns: &Dnsmasq, target: &str, extra: &[&str]) -> (Output, Value) {
    let server = dns.server();
    let mut args = vec![
        "resync",
        target,
        "--dns-server",
        &server,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = send(&args);
    let record = json_line(&out.stdout);
    (out, record)
}

fn routing_steps(record: &Value) -> Vec<String> {
    record["ladder"]
        .as_array()
        .expect("a ladder")
        .iter()
        .filter(|e| e["direction"] == "routing")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn assert_contains(all: &[String], wanted: &str) {
    assert!(
        all.iter().any(|s| s.contains(wanted)),
        "`{wanted}` not in:\n{}",
        all.join("\n")
    );
}

fn naptr_then_srv_then_a_and_the_dead_first_server_is_given_its_share_only() {
    let phone = udp_phone("127.0.53.3").start();
    let port = phone.addr("udp").port();
    // The first server by priority takes the requests and never answers (a closed port
    // would say so at once, by ICMP: see tests/icmp.rs).
    let _black_hole = UdpSocket::bind(("127.0.53.9", port)).unwrap();
    let dns = Dnsmasq::start(
        "failover",
        300,
        &[
            "naptr-record=fo.test,10,10,s,SIP+D2U,,_sip._udp.fo.test".into(),
            "naptr-record=fo.test,5,10,s,SIPS+D2T,,_sips._tcp.fo.test".into(),
            format!("srv-host=_sip._udp.fo.test,dead.fo.test,{port},10,10"),
            format!("srv-host=_sip._udp.fo.test,live.fo.test,{port},20,10"),
            "host-record=dead.fo.test,127.0.53.9".into(),
            "host-record=live.fo.test,127.0.53.3".into(),
        ],
    );
    let started = Instant::now();
    let (out, record) = resync_through(&dns, "sip:159@fo.test", &["--t1", "50", "-v"]);
    let elapsed = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{record:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["outcome"], "delivered");
    assert_eq!(record["destination"], format!("127.0.53.3:{port}"));
    // To the dead server, to the live one, and the authenticated retry.
    assert_eq!(record["attempts"], 3);
    let steps = routing_steps(&record);
    for step in [
        "\"SIPS+D2T\" \"\" _sips._tcp.fo.test. (TLS, not supported yet: skipped)",
        "transport udp from NAPTR: SRV _sip._udp.fo.test.",
        "A/AAAA dead.fo.test.: 127.0.53.9",
        &format!("destinations over udp, in order: 127.0.53.9:{port}, 127.0.53.3:{port}"),
        &format!("trying the next destination, 127.0.53.3:{port}"),
    ] {
        assert_contains(&steps, step);
    }
    // Timer F is 64 x 50 ms = 3.2 s: half of it for each of the two servers, less the few
    // milliseconds of resolving.
    let dead = format!("no response from 127.0.53.9:{port} in ");
    let waited: f64 = steps
        .iter()
        .find_map(|s| s.split_once(&dead)?.1.split_once(" s")?.0.parse().ok())
        .expect("the dead server's share");
    assert!((1.5..=1.6).contains(&waited), "{waited} s");
    assert!(
        elapsed < Duration::from_millis(3200),
        "within one Timer F: {elapsed:?}"
    );
    let queries = dns.settled_queries();
    for query in ["NAPTR fo.test", "SRV _sip._udp.fo.test", "A live.fo.test"] {
        assert!(queries.iter().any(|q| q == query), "{query}: {queries:?}");
    }
}

fn over_tcp_a_refused_server_and_one_answering_503_are_passed_at_once() {
    let busy = PhoneProcess::builder()
        .listen("127.0.53.5:0")
        .transport("tcp")
        .args(["--fail-percent", "100", "--fail-status", "503"])
        .start();
    let port = busy.addr("tcp").port();
    let _live = PhoneProcess::builder()
        .listen(format!("127.0.53.6:{port}"))
        .transport("tcp")
        .start();
    // No NAPTR: SRV for udp (none), then tcp. Nothing listens on the first server's address,
    // so its connection is refused.
    let dns = Dnsmasq::start(
        "tcp",
        300,
        &[
            format!("srv-host=_sip._tcp.tcp.test,refused.tcp.test,{port},1,0"),
            format!("srv-host=_sip._tcp.tcp.test,busy.tcp.test,{port},2,0"),
            format!("srv-host=_sip._tcp.tcp.test,live.tcp.test,{port},3,0"),
            "host-record=refused.tcp.test,127.0.53.4".into(),
            "host-record=busy.tcp.test,127.0.53.5".into(),
            "host-record=live.tcp.test,127.0.53.6".into(),
        ],
    );
    let started = Instant::now();
    let (out, record) = resync_through(&dns, "sip:159@tcp.test", &["-v"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{record:#}");
    assert_eq!(record["destination"], format!("127.0.53.6:{port}"));
    let steps = routing_steps(&record);
    assert_contains(&steps, "no usable NAPTR: SRV for udp, then tcp");
    assert_contains(&steps, "SRV _sip._udp.tcp.test: none");
    assert_contains(
        &steps,
        &format!("cannot connect to 127.0.53.4:{port} over tcp"),
    );
    assert_contains(
        &steps,
        &format!("503 Service Unavailable from 127.0.53.5:{port}: trying the next destination"),
    );
    // No timer was waited for: refused and 503 move on at once.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let busy_said = String::from_utf8_lossy(&busy.terminate()).into_owned();
    assert!(
        busy_said.contains("phone stopped: 2 requests"),
        "{busy_said}"
    );
}

fn a_name_with_a_port_asks_for_its_addresses_only() {
    let phone = udp_phone("127.0.53.7").start();
    let port = phone.addr("udp").port();
    // SRV and NAPTR records that would lead elsewhere, if they were asked for.
    let dns = Dnsmasq::start(
        "port",
        300,
        &[
            "naptr-record=port.test,10,10,s,SIP+D2T,,_sip._tcp.port.test".into(),
            "srv-host=_sip._udp.port.test,elsewhere.port.test,5999,1,1".into(),
            "host-record=elsewhere.port.test,127.0.53.99".into(),
            "host-record=port.test,127.0.53.7,::1".into(),
        ],
    );
    let target = format!("sip:159@port.test:{port}");
    let (out, record) = resync_through(&dns, &target, &["-v"]);
    assert_eq!(out.status.code(), Some(0), "{record:#}");
    assert_eq!(record["destination"], format!("127.0.53.7:{port}"));
    let steps = routing_steps(&record);
    assert_contains(&steps, "names its port: A/AAAA only, no NAPTR or SRV");
    // IPv4 first, then the AAAA record's ::1.
    assert_contains(
        &steps,
        &format!("destinations over udp, in order: 127.0.53.7:{port}, [::1]:{port}"),
    );
    let mut queries = dns.settled_queries();
    queries.sort();
    assert_eq!(queries, ["A port.test", "AAAA port.test"]);

    // A name the server does not know: nothing sent, exit 5.
    let (out, record) = resync_through(&dns, "sip:159@unknown.test:5060", &[]);
    assert_eq!(out.status.code(), Some(5), "{record:#}");
    assert_eq!(record["outcome"], "unreachable");
    assert_eq!(record["attempts"], 0);
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot resolve unknown.test"),
        "{record:#}"
    );
}

fn a_campaign_on_one_domain_asks_the_dns_once() {
    const ROWS: u32 = 1000;
    let phone = udp_phone("127.0.53.8")
        .users(&format!("1000-{}", 1000 + ROWS - 1))
        .start();
    let port = phone.addr("udp").port();
    let dns = Dnsmasq::start(
        "campaign",
        300,
        &[
            "naptr-record=fleet.test,10,10,s,SIP+D2U,,_sip._udp.fleet.test".into(),
            format!("srv-host=_sip._udp.fleet.test,sbc.fleet.test,{port},10,10"),
            "host-record=sbc.fleet.test,127.0.53.8,::1".into(),
        ],
    );
    let rows: String = (1000..1000 + ROWS)
        .map(|user| format!("sip:{user}@fleet.test\n"))
        .collect();
    let stdout = batch_through(&dns, "fleet", &rows, &[]);
    let destinations: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["destination"].clone())
        .collect();
    assert_eq!(destinations.len(), ROWS as usize);
    let expected = format!("127.0.53.8:{port}");
    assert!(destinations.iter().all(|d| d == expected.as_str()));
    let mut asked: BTreeMap<String, usize> = BTreeMap::new();
    for query in dns.settled_queries() {
        *asked.entry(query).or_default() += 1;
    }
    let once: BTreeMap<String, usize> = [
        "A sbc.fleet.test",
        "AAAA sbc.fleet.test",
        "NAPTR fleet.test",
        "SRV _sip._udp.fleet.test",
    ]
    .into_iter()
    .map(|q| (q.to_string(), 1))
    .collect();
    assert_eq!(asked, once, "one query of each kind for {ROWS} targets");
}

fn answers_are_kept_for_their_ttl_and_no_longer() {
    let phone = udp_phone("127.0.53.10").users("1000-1029").start();
    let port = phone.addr("udp").port();
    let dns = Dnsmasq::start("ttl", 1, &["host-record=short.test,127.0.53.10,::1".into()]);
    let rows: String = (1000..1030)
        .map(|user| format!("sip:{user}@short.test:{port}\n"))
        .collect();
    // 30 rows at 10 a second: 3 s, so the 1 s answer is asked for again, but not per row.
    batch_through(&dns, "short", &rows, &["--rate", "10"]);
    let asked = dns
        .settled_queries()
        .iter()
        .filter(|q| *q == "A short.test")
        .count();
    assert!(
        (2..=5).contains(&asked),
        "A short.test asked {asked} times for 30 rows over 3 s"
    );
}

fn a_dns_server_that_is_not_an_address_is_refused_before_anything_is_sent() {
    for bad in ["dns.example.com", "127.0.0.1:dns", "[::1"] {
        let out = send(&["resync", "sip:159@fo.test", "--dns-server", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains("is not ADDR or ADDR:PORT"),
            "{bad}: {stderr}"
        );
    }
}
