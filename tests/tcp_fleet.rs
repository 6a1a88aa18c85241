//! A TCP campaign to thousands of distinct phones holds descriptors (and memory) for the
//! targets in flight, not for every phone reached.

mod common;

use common::{bin, open_descriptors, temp_dir, wait_watching, PhoneProcess, PASSWORD};
use serde_json::Value;
use std::collections::HashSet;
use std::fs::File;
use std::process::Stdio;
use std::time::Duration;

const TARGETS: u32 = 2000;
const CONCURRENCY: usize = 64;
/// What the agent holds besides its connections: standard streams, the runtime's epoll and
/// wakers, the UDP socket, the input file.
const BASELINE_DESCRIPTORS: usize = 32;

/// What a campaign to `targets` distinct phones, each at its own loopback address, did:
/// the targets delivered in two attempts, the most descriptors open at once, and the peak
/// RSS (VmHWM, read while it runs: wait4's figure would start from the test's own size).
struct Run {
    delivered: usize,
    peak_descriptors: usize,
    peak_rss_kib: i64,
}

fn campaign(transport: &str, targets: u32, concurrency: usize) -> Run {
    // One simulator on the wildcard address answers for every 127.0.X.Y, from the address
    // (over UDP) or on the connection (over TCP) each was reached at.
    let phone = PhoneProcess::builder()
        .listen("0.0.0.0:0")
        .transport(transport)
        .users(&format!("1000-{}", 1000 + targets - 1))
        .threads(2)
        .start();
    let port = phone.addr(transport).port();

    let dir = temp_dir(&format!("fleet-{transport}"));
    let input = dir.join("targets.csv");
    let mut rows = String::from("target\n");
    for i in 0..targets {
        // 127.0.1.1 onwards, 250 a block: each its own destination.
        let (x, y) = (1 + i / 250, 1 + i % 250);
        rows += &format!("sip:{}@127.{}.{}.{y}:{port}\n", 1000 + i, x / 256, x % 256);
    }
    std::fs::write(&input, rows).unwrap();
    let stdout = dir.join("out.jsonl");
    let stderr = dir.join("err.txt");

    let mut child = bin()
        .arg("batch")
        .arg(&input)
        .args(["--transport", transport, "--output", "json"])
        .args(["--concurrency", &concurrency.to_string()])
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let (mut peak_descriptors, mut peak_rss_kib) = (0, 0);
    let exited = wait_watching(&mut child, Duration::from_secs(300), |pid| {
        peak_descriptors = peak_descriptors.max(open_descriptors(pid).unwrap_or(0));
        peak_rss_kib = peak_rss_kib.max(peak_rss(pid).unwrap_or(0));
        Ok(())
    });
    let out = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(exited.code, Some(0), "{err}");
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let delivered: HashSet<&str> = records
        .iter()
        .filter(|r| r["outcome"] == "delivered" && r["attempts"] == 2)
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    eprintln!(
        "{targets} targets over {transport}, {concurrency} in flight: {} delivered, at most \
         {peak_descriptors} descriptors open, peak RSS {peak_rss_kib} KiB",
        delivered.len()
    );
    Run {
        delivered: delivered.len(),
        peak_descriptors,
        peak_rss_kib,
    }
}

/// The peak RSS of process `pid` so far, in KiB (Linux's VmHWM).
fn peak_rss(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_tcp_campaign_to_2000_addresses_holds_descriptors_for_the_targets_in_flight() {
    let run = campaign("tcp", TARGETS, CONCURRENCY);
    assert_eq!(run.delivered, TARGETS as usize);
    assert!(
        run.peak_descriptors <= CONCURRENCY + BASELINE_DESCRIPTORS,
        "{} descriptors open at once for {CONCURRENCY} targets in flight",
        run.peak_descriptors
    );
}

/// 20,000 distinct phones: over TCP the agent's memory stays within 1.5 times what the
/// same campaign takes over UDP, since connections last only while targets are in flight.
#[test]
fn tcp_to_20000_phones_peaks_within_one_and_a_half_times_udp() {
    let udp = campaign("udp", 20_000, 256);
    let tcp = campaign("tcp", 20_000, 256);
    assert_eq!((udp.delivered, tcp.delivered), (20_000, 20_000));
    assert!(
        tcp.peak_rss_kib * 2 <= udp.peak_rss_kib * 3,
        "tcp {} KiB against udp {} KiB",
        tcp.peak_rss_kib,
        udp.peak_rss_kib
    );
}
