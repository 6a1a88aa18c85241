//! A phone that closes the TCP connection after each response (RFC 3261 section 18 lets it):
//! the agent's next request for the same target goes on a new connection.

mod common;

use common::{bin, json_line, read_message, response, temp_dir};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Output, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A phone that answers the first request on each connection with the next of `answers`
/// (status line and extra headers), then closes the connection. Returns its address and,
/// once it has answered them all, the requests it got.
fn closing_phone(
    answers: Vec<(u16, &'static str, Vec<String>)>,
) -> (SocketAddr, JoinHandle<Vec<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let phone = thread::spawn(move || {
        let mut requests = Vec::new();
        for (status, reason, headers) in answers {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let request = read_message(&mut stream, &mut Vec::new()).expect("a request");
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            stream
                .write_all(&response(&request, status, reason, &headers, b""))
                .unwrap();
            requests.push(request);
            // Closed here, right after the answer.
        }
        requests
    });
    (addr, phone)
}

#[track_caller]
fn assert_delivered(out: &Output, attempts: u64) -> serde_json::Value {
    let v = json_line(&out.stdout);
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["attempts"].as_u64(),
            out.status.code()
        ),
        (Some("delivered"), Some(attempts), Some(0)),
        "{v}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

#[test]
fn the_authenticated_retry_opens_a_new_connection() {
    let challenge = r#"WWW-Authenticate: Digest realm="closing", nonce="4f1e0c2b", algorithm=MD5"#;
    let (addr, phone) = closing_phone(vec![
        (401, "Unauthorized", vec![challenge.to_string()]),
        (200, "OK", vec![]),
    ]);
    let out = bin()
        .arg("resync")
        .arg(format!("sip:159@{addr};transport=tcp"))
        .args(["--output", "json"])
        .env("SIPNOTIFY_PASSWORD", "pw")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_delivered(&out, 2);
    let requests = phone.join().unwrap();
    assert_eq!(requests.len(), 2, "two connections, one request on each");
    let retry = String::from_utf8_lossy(&requests[1]);
    assert!(retry.contains("Authorization: Digest"), "{retry}");
}

#[test]
fn a_campaign_retry_after_503_opens_a_new_connection() {
    let (addr, phone) = closing_phone(vec![
        (
            503,
            "Service Unavailable",
            vec!["Retry-After: 0".to_string()],
        ),
        (200, "OK", vec![]),
    ]);
    let dir = temp_dir("reconnect");
    let input = dir.join("targets.csv");
    std::fs::write(&input, format!("target\nsip:159@{addr};transport=tcp\n")).unwrap();
    let out = bin()
        .arg("batch")
        .arg(&input)
        .args(["--output", "json", "--retries", "1", "--backoff", "10ms"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_delivered(&out, 1);
    assert_eq!(phone.join().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
