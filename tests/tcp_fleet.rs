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

#[test]
fn a_tcp_campaign_to_2000_addresses_holds_descriptors_for_the_targets_in_flight() {
    // One simulator on the wildcard address answers for every 127.0.X.Y, on the connection
    // each was reached on.
    let phone = PhoneProcess::builder()
        .listen("0.0.0.0:0")
        .transport("tcp")
        .users(&format!("1000-{}", 1000 + TARGETS - 1))
        .start();
    let port = phone.addr("tcp").port();

    let dir = temp_dir("fleet");
    let input = dir.join("targets.csv");
    let mut rows = String::from("target\n");
    for i in 0..TARGETS {
        // 127.0.1.1 to 127.0.8.250: each its own destination.
        let (x, y) = (1 + i / 250, 1 + i % 250);
        rows += &format!("sip:{}@127.0.{x}.{y}:{port}\n", 1000 + i);
    }
    std::fs::write(&input, rows).unwrap();
    let stdout = dir.join("out.jsonl");
    let stderr = dir.join("err.txt");

    let mut child = bin()
        .arg("batch")
        .arg(&input)
        .args(["--transport", "tcp", "--output", "json"])
        .args(["--concurrency", &CONCURRENCY.to_string()])
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut peak_descriptors = 0;
    let exited = wait_watching(&mut child, Duration::from_secs(180), |pid| {
        peak_descriptors = peak_descriptors.max(open_descriptors(pid).unwrap_or(0));
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
    assert_eq!(delivered.len(), TARGETS as usize, "{err}");
    assert!(
        peak_descriptors <= CONCURRENCY + BASELINE_DESCRIPTORS,
        "{peak_descriptors} descriptors open at once for {CONCURRENCY} targets in flight"
    );
    eprintln!(
        "{TARGETS} targets over tcp, {CONCURRENCY} in flight: at most {peak_descriptors} \
         descriptors open, peak RSS {} KiB",
        exited.max_rss_kib
    );
}
