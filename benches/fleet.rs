//! The fleet benchmark: a `sipnotify phone` fleet and a `sipnotify batch` campaign as two
//! processes on loopback, measured from outside.
//!
//! `cargo bench --bench fleet` runs campaigns of 1,000, 10,000 and 100,000 distinct users
//! (set `FLEET_SIZES=1000,50000` to choose, `FLEET_RUNS` for the runs of each size, default
//! 5 with the median compared, `FLEET_CONCURRENCY` for the targets in flight,
//! default 256; `FLEET_PHONE_THREADS` for the simulator's threads, default 2) and prints,
//! for each: targets/s, the agent's CPU per delivered target (user + sys from wait4, and
//! the kernel's part), the simulator's CPU per target, p50/p99
//! latency, the agent's peak RSS, and timeouts/retransmissions. Then the heap held per
//! target in flight by the protocol core, at 10,000 and 50,000 in flight. Then (with
//! `cargo bench`, or `FLEET_WAN=1`) the WAN-shaped figures: phones at 100 ms, one loopback
//! address each, 100,000 targets with 10,000 in flight against Little's bound, memory per
//! target in flight, the cost of syncing the journal (`FLEET_WAN_RUNS` rounds of the three
//! 100,000-target campaigns, default 3, medians reported), and the agent's CPU per target
//! beside SIPp's (`bench/compare-sipp.sh`, when sipp is installed; `FLEET_SIPP=0` skips it), then
//! all four beside the targets.

#[path = "../tests/common/mod.rs"]
mod common;

use common::PhoneProcess;
use sipnotify::campaign::summary::Summary;
use sipnotify::proto::transaction::Timers;
use sipnotify::proto::{Endpoint, Route};
use sipnotify::{Event, Notify, Password, Target, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts live heap bytes, for the per-target heap figure.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const FIRST_USER: u64 = 100_000;

struct Usage {
    cpu: Duration,
    /// The kernel's part of `cpu`.
    sys: Duration,
    max_rss_kib: i64,
}

/// Waits for `child` and returns its CPU time and peak RSS.
fn wait_usage(child: &mut Child) -> Usage {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Usage {
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

fn phone(users: u64, extra: &[&str]) -> (PhoneProcess, String) {
    let phone = PhoneProcess::builder()
        .transport("udp")
        .users(&format!("{FIRST_USER}-{}", FIRST_USER + users - 1))
        .password_template("pw-{user}")
        .challenge("md5-qop")
        .threads(phone_threads())
        .args(extra)
        .start();
    let addr = phone.addr("udp").to_string();
    (phone, addr)
}

/// A CSV of `size` distinct users of the phone at `addr`, in a fresh temporary folder.
fn fleet_file(size: u64, addr: &str) -> (PathBuf, PathBuf) {
    fleet_file_with(size, |_| addr.to_string())
}

/// The same, with each user's phone at its own loopback address (127.1.x.y), all served
/// by one wildcard simulator on `port`: a fleet as real fleets are, one address per phone.
fn distinct_fleet_file(size: u64, port: u16) -> (PathBuf, PathBuf) {
    fleet_file_with(size, |i| {
        let [_, _, x, y] = (i as u32).to_be_bytes();
        format!("127.{}.{x}.{y}:{port}", 1 + (i >> 16))
    })
}

fn fleet_file_with(size: u64, addr: impl Fn(u64) -> String) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("sipnotify-fleet-{}-{size}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("fleet.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(file, "target,password").unwrap();
    for i in 0..size {
        let user = FIRST_USER + i;
        writeln!(file, "sip:{user}@{},pw-{user}", addr(i)).unwrap();
    }
    file.flush().unwrap();
    (dir, input)
}

/// A wildcard simulator (0.0.0.0) answering every user after `delay_ms`.
fn wildcard_phone(users: u64, delay_ms: u64) -> (PhoneProcess, u16) {
    let phone = PhoneProcess::builder()
        .listen("0.0.0.0:0")
        .transport("udp")
        .users(&format!("{FIRST_USER}-{}", FIRST_USER + users - 1))
        .password_template("pw-{user}")
        .challenge("md5-qop")
        .threads(phone_threads())
        .args(["--delay", &delay_ms.to_string()])
        .start();
    let port = phone.addr("udp").port();
    (phone, port)
}

/// The WAN-shaped campaign: phones that answer after 100 ms (each target two round trips:
/// the challenge and the authenticated NOTIFY), one loopback address per phone, `size`
/// targets with `in_flight` at once. Prints the time against Little's bound (size /
/// in_flight x 200 ms), the agent's CPU per target and peak RSS, with `extra` options.
fn wan_campaign(size: u64, in_flight: u64, extra: &[&str]) -> (Duration, Usage) {
    let (phone, port) = wildcard_phone(size, 100);
    let (dir, input) = distinct_fleet_file(size, port);
    let concurrency = in_flight.to_string();
    let mut args = vec!["--concurrency", concurrency.as_str()];
    args.extend_from_slice(extra);
    let (usage, wall) = batch(&input, &dir.join("out.jsonl"), &args);
    stop(phone);
    let delivered = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .matches("\"outcome\":\"delivered\"")
        .count();
    let bound = Duration::from_millis(200) * (size / in_flight) as u32;
    println!(
        "WAN {size} targets, {in_flight} in flight, phones at 100 ms{}: {:.2} s against Little's bound {:.2} s ({:+.0}%) | agent {:.1} µs CPU/target | peak RSS {} KiB | delivered {delivered}",
        if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(" ")) },
        wall.as_secs_f64(),
        bound.as_secs_f64(),
        (wall.as_secs_f64() / bound.as_secs_f64() - 1.0) * 100.0,
        usage.cpu.as_secs_f64() * 1e6 / size as f64,
        usage.max_rss_kib,
    );
    std::fs::remove_dir_all(dir).unwrap();
    (wall, usage)
}

/// The WAN-shaped figures: time against Little's bound, bytes of RSS per target in flight
/// (peak RSS at 10,000 in flight less at 1,000, over 9,000), the cost of syncing the
/// journal's intents, and the agent's CPU per target beside SIPp's; then each beside the
/// issue's target, in one block.
fn wan() {
    let (_, low) = wan_campaign(1_000, 1_000, &[]);
    let (_, high) = wan_campaign(10_000, 10_000, &[]);
    let per_target = (high.max_rss_kib - low.max_rss_kib) as f64 * 1024.0 / 9_000.0;
    println!(
        "memory per target in flight (phones at 100 ms): {per_target:.0} bytes ({} KiB at 1,000, {} KiB at 10,000)",
        low.max_rss_kib, high.max_rss_kib
    );
    // The host's speed drifts by several percent within minutes: each round runs the three
    // campaigns back to back, each journal's cost is taken against its own round's, and
    // the medians over the rounds are reported.
    let rounds = wan_rounds();
    let dir = std::env::temp_dir().join(format!("sipnotify-wan-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("j.journal");
    let journal = journal.to_str().unwrap();
    let (mut plain, mut synced, mut unsynced) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (alone, _) = wan_campaign(100_000, 10_000, &[]);
        let cost = |t: Duration| (t.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0;
        for (sync, costs) in [("batch", &mut synced), ("off", &mut unsynced)] {
            let args = ["--journal", journal, "--journal-sync", sync];
            let (with, _) = wan_campaign(100_000, 10_000, &args);
            std::fs::remove_file(journal).unwrap();
            costs.push(cost(with));
        }
        plain.push(alone.as_secs_f64());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let (plain, synced, unsynced) = (median(plain), median(synced), median(unsynced));
    println!(
        "journal sync cost, median of {rounds}: {synced:+.1}% time with synced intents, {unsynced:+.1}% with --journal-sync off, against no journal in the same round"
    );
    let sipp = compare_sipp();
    let bound = 2.0;
    println!(
        "\nissue #16, WAN-shaped figures against their targets (load now: {}):",
        load()
    );
    println!(
        "  100,000 targets, 10,000 in flight, 100 ms phones: {plain:.2} s (median of {rounds}), {:+.0}% over Little's bound {bound:.1} s (target: within 10%)",
        (plain / bound - 1.0) * 100.0
    );
    println!("  memory per target in flight: {per_target:.0} bytes (target: at most 2,048)");
    println!("  synced journal: {synced:+.1}% time (target: under 10%)");
    match sipp {
        Some(ratio) => {
            println!("  agent CPU per target, SIPp / sipnotify: {ratio:.1}x (target: at least 3x)")
        }
        None => println!("  agent CPU per target against SIPp: not measured (see above)"),
    }
}

/// Runs `bench/compare-sipp.sh` on the binary under test (`FLEET_SIPP_TARGETS` targets,
/// default 100,000; `FLEET_SIPP=0` skips it), prints its report and returns its ratio of
/// SIPp's CPU per target to sipnotify's; `None` without sipp or if the run failed.
fn compare_sipp() -> Option<f64> {
    if std::env::var("FLEET_SIPP").is_ok_and(|v| v == "0") {
        println!("SIPp comparison skipped (FLEET_SIPP=0)");
        return None;
    }
    let targets = std::env::var("FLEET_SIPP_TARGETS").unwrap_or_else(|_| "100000".into());
    // The script runs <target dir>/release/sipnotify: the binary this bench was built with.
    let bin = Path::new(env!("CARGO_BIN_EXE_sipnotify"));
    let target_dir = bin.parent()?.parent()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/compare-sipp.sh");
    let run = std::process::Command::new(script)
        .arg(&targets)
        .env("SKIP_BUILD", "1")
        .env("CARGO_TARGET_DIR", target_dir)
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            println!("SIPp comparison not run: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        println!(
            "SIPp comparison failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("agent CPU per delivered target, SIPp / sipnotify: "))
        .and_then(|r| r.trim_end_matches('x').parse().ok())
}

/// The machine's load averages, to read the times by: other work on the two cores slows
/// every figure but the memory.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs `sipnotify batch` on `input` with JSON records to `output`; its usage and wall time.
fn batch(input: &Path, output: &Path, extra: &[&str]) -> (Usage, Duration) {
    let start = Instant::now();
    let mut agent = common::bin()
        .args(["batch", input.to_str().unwrap(), "--output", "json"])
        .args(extra)
        .stdout(std::fs::File::create(output).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the campaign");
    let usage = wait_usage(&mut agent);
    (usage, start.elapsed())
}

fn stop(phone: PhoneProcess) -> Usage {
    let mut phone = phone.into_child();
    unsafe { libc::kill(phone.id() as libc::pid_t, libc::SIGTERM) };
    wait_usage(&mut phone)
}

/// Runs one campaign of `size` targets, prints its figures, and returns the agent's CPU
/// per target in µs.
fn campaign(size: u64) -> f64 {
    let (phone, addr) = phone(size, &[]);
    let (dir, input) = fleet_file(size, &addr);
    let output = dir.join("out.jsonl");
    let concurrency = concurrency().to_string();
    let (agent_usage, wall) = batch(&input, &output, &["--concurrency", &concurrency]);
    let phone_usage = stop(phone);

    let mut summary = Summary::new();
    let (mut delivered, mut retransmissions) = (0u64, 0u64);
    for line in BufReader::new(std::fs::File::open(&output).unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let outcome = v["outcome"].as_str().unwrap_or("?");
        delivered += u64::from(outcome == "delivered");
        retransmissions += v["retransmissions"].as_u64().unwrap_or(0);
        let latency = v["elapsed_ms"]
            .as_f64()
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        summary.add(outcome, latency, None);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / size as f64;
    let ms = |p: f64| {
        summary
            .percentile(p / 100.0)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{size:>7} targets: {:>8.0} targets/s | agent {:>5.1} µs CPU/target ({:.1} of it in the kernel) | phone {:>5.1} µs CPU/target | p50 {:>6.1} ms p99 {:>6.1} ms | agent peak RSS {:>6} KiB | delivered {delivered} | retransmissions {retransmissions}",
        size as f64 / wall.as_secs_f64(),
        per(agent_usage.cpu),
        per(agent_usage.sys),
        per(phone_usage.cpu),
        ms(50.0),
        ms(99.0),
        agent_usage.max_rss_kib,
    );
    std::fs::remove_dir_all(dir).unwrap();
    per(agent_usage.cpu)
}

/// Heap held by the protocol core per target in flight: flows started and never answered.
fn heap_per_target(in_flight: u64) {
    let event = Arc::new(Event::resync(None).unwrap());
    let mut endpoint = Endpoint::new(rand::SeedableRng::seed_from_u64(1), Timers::default());
    let route = Route {
        destination: "127.0.0.1:5060".parse().unwrap(),
        local: "127.0.0.1:40000".parse().unwrap(),
        transport: Transport::Udp,
        resolution: None,
    };
    let now = std::time::Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    for user in FIRST_USER..FIRST_USER + in_flight {
        let target = Target::parse(&format!("sip:{user}@127.0.0.1:5060")).unwrap();
        let mut notify = Notify::new(target, Event::Report)
            .with_credentials(None, Password::new(format!("pw-{user}")));
        notify.event = event.clone();
        endpoint.start(now, notify, route.clone());
        while endpoint.poll_transmit().is_some() {}
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{in_flight:>7} in flight: {:.0} bytes of heap per target in the protocol core",
        bytes as f64 / in_flight as f64
    );
}

/// The whole agent's memory per target in flight: campaigns of `n` targets all in flight at
/// once against a phone that answers after a second, compared by peak RSS.
fn process_memory_per_target(low: u64, high: u64) {
    let rss = |n: u64| {
        let (phone, addr) = phone(n, &["--delay", "1000"]);
        let (dir, input) = fleet_file(n, &addr);
        let n_text = n.to_string();
        // T1 above the phone's delay: no retransmission while it holds its answers.
        let args = [
            "--concurrency",
            n_text.as_str(),
            "--t1",
            "2000",
            "--t2",
            "4000",
        ];
        let (usage, _) = batch(&input, &dir.join("out.jsonl"), &args);
        stop(phone);
        std::fs::remove_dir_all(dir).unwrap();
        usage.max_rss_kib
    };
    let (a, b) = (rss(low), rss(high));
    println!(
        "agent peak RSS with {low} in flight: {a} KiB, with {high}: {b} KiB: {:.0} bytes per target in flight",
        (b - a) as f64 * 1024.0 / (high - low) as f64
    );
}

/// The simulator's threads: `FLEET_PHONE_THREADS`, else 2 (the machine's cores).
fn phone_threads() -> u16 {
    std::env::var("FLEET_PHONE_THREADS")
        .ok()
        .map(|c| {
            c.parse()
                .expect("FLEET_PHONE_THREADS: a number from 1 to 64")
        })
        .unwrap_or(2)
}

/// Rounds of the WAN campaigns (each: no journal, synced, off): `FLEET_WAN_RUNS`, else 3.
fn wan_rounds() -> usize {
    std::env::var("FLEET_WAN_RUNS")
        .ok()
        .map(|c| c.parse().expect("FLEET_WAN_RUNS: a number"))
        .unwrap_or(3)
        .max(1)
}

/// The middle value (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs of each size: `FLEET_RUNS`, else 5 under `cargo bench` and 1 otherwise.
fn runs(full: bool) -> usize {
    std::env::var("FLEET_RUNS")
        .ok()
        .map(|c| c.parse().expect("FLEET_RUNS: a number"))
        .unwrap_or(if full { 5 } else { 1 })
        .max(1)
}

/// Targets in flight in the campaigns: `FLEET_CONCURRENCY`, else batch's default.
fn concurrency() -> usize {
    std::env::var("FLEET_CONCURRENCY")
        .ok()
        .map(|c| c.parse().expect("FLEET_CONCURRENCY: a number"))
        .unwrap_or(256)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it with no flag: keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = std::env::var("FLEET_SIZES")
        .ok()
        .map(|s| {
            s.split(',')
                .filter(|n| !n.trim().is_empty())
                .map(|n| n.trim().parse().expect("FLEET_SIZES: numbers"))
                .collect()
        })
        .unwrap_or_else(|| {
            if full {
                vec![1_000, 10_000, 100_000]
            } else {
                vec![200]
            }
        });
    println!(
        "fleet benchmark: sipnotify batch (concurrency {}) -> sipnotify phone (udp, md5-qop challenge, {} threads), loopback",
        concurrency(),
        phone_threads()
    );
    // The CPU a campaign gets depends on how the two processes happen to interleave, most
    // in a short run: each size runs several times and the medians are what to compare.
    let runs = runs(full);
    let mut medians = Vec::new();
    for &size in &sizes {
        medians.push((size, median((0..runs).map(|_| campaign(size)).collect())));
    }
    if runs > 1 {
        let line: Vec<String> = medians
            .iter()
            .map(|(size, cpu)| format!("{cpu:.1} µs at {size}"))
            .collect();
        println!(
            "agent CPU per target, median of {runs} runs: {}",
            line.join(", ")
        );
    }
    // Peak RSS is read from wait4, and a child's count starts from the bench's own size
    // when it is spawned: the figures that spawn campaigns come before the bench grows.
    if full {
        process_memory_per_target(10_000, 50_000);
    }
    if full || std::env::var_os("FLEET_WAN").is_some() {
        wan();
    }
    for n in [10_000, 50_000] {
        heap_per_target(n);
    }
}
