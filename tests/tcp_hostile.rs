//! A TCP peer that floods the connection with responses that match nothing: the agent's
//! memory stays bounded, and it closes the connection and reports the target unreachable.

mod common;

use common::{bin, json_line, read_message, read_pipes, response, rss_kib, wait_watching};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

/// The agent's peak resident memory must stay below this.
const RSS_LIMIT_KIB: i64 = 64 * 1024;

/// Runs a resync against a peer that answers the NOTIFY with the same response, `body_len`
/// bytes of body and a branch no request has, over and over until the agent closes the
/// connection. Checks that the agent ends `unreachable` (exit 5) in bounded memory, and
/// returns its JSON result and the peer's address.
fn flooded(body_len: usize) -> (serde_json::Value, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let flood = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let request = read_message(&mut stream, &mut Vec::new()).expect("the NOTIFY");
        let body = vec![b'x'; body_len];
        let foreign = response(&request, 200, "OK", &["Content-Type: text/plain"], &body);
        let foreign = String::from_utf8(foreign)
            .unwrap()
            .replace("branch=z9hG4bK", "branch=z9hG4bKforeign");
        let burst = foreign.repeat(100).into_bytes();
        while stream.write_all(&burst).is_ok() {}
    });
    let mut child = bin()
        .arg("resync")
        .arg(format!("sip:159@{addr};transport=tcp"))
        .args(["--output", "json"])
        .env("SIPNOTIFY_PASSWORD", "pw")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exited = wait_watching(&mut child, Duration::from_secs(30), |pid| {
        match rss_kib(pid) {
            Some(rss) if rss > RSS_LIMIT_KIB => Err(format!("resident memory {rss} KiB")),
            _ => Ok(()),
        }
    });
    let (stdout, _) = read_pipes(&mut child);
    flood.join().unwrap();
    let v = json_line(&stdout);
    assert!(
        exited.max_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} KiB",
        exited.max_rss_kib
    );
    assert_eq!(exited.code, Some(5), "{v}");
    assert_eq!(v["outcome"], "unreachable", "{v}");
    eprintln!("peak RSS {} KiB: {}", exited.max_rss_kib, v["reason"]);
    (v, addr)
}

#[test]
fn a_peer_streaming_foreign_responses_is_closed_in_bounded_memory() {
    let (v, addr) = flooded(0);
    assert_eq!(
        v["reason"],
        format!("the tcp connection to {addr} sent 1000 messages that match no request; closed"),
    );
}

#[test]
fn large_foreign_responses_are_counted_in_bytes() {
    let (v, addr) = flooded(60 * 1024);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("the tcp connection to {addr} sent 10"))
            && reason.ends_with(" KiB that match no request; closed"),
        "{v}"
    );
}
