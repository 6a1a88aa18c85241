//! A TCP connection is shared by the targets in flight to its destination together, and
//! closed as soon as the last of them ends: a campaign to many phones holds descriptors for
//! the targets in flight, not for every phone it has reached.

mod common;

use common::{bin, read_message, response, temp_dir};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn a_connection_is_shared_in_flight_and_closed_when_its_last_target_ends() {
    // Phone A gets targets 1 and 2 together: one connection, both answered at once.
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let a_addr = a.local_addr().unwrap();
    let (a_done, a_result) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = a.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut pending = Vec::new();
        let requests: Vec<Vec<u8>> = (0..2)
            .map_while(|_| read_message(&mut stream, &mut pending))
            .collect();
        for request in &requests {
            stream
                .write_all(&response(request, 200, "OK", &[], b""))
                .unwrap();
        }
        // Closed by the agent: the read ends (rather than timing out).
        let closed = read_message(&mut stream, &mut pending).is_none();
        let closed_at = Instant::now();
        a.set_nonblocking(true).unwrap();
        let second_connection = !matches!(a.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock);
        a_done
            .send((requests.len(), closed, closed_at, second_connection))
            .unwrap();
    });
    // Phone B gets target 3 once a slot is free, and answers it 2 s later: the agent is
    // still running when A's connection, no longer used, must already be closed.
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let b_addr = b.local_addr().unwrap();
    let (b_done, b_result) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = b.accept().unwrap();
        let request = read_message(&mut stream, &mut Vec::new()).unwrap();
        thread::sleep(Duration::from_secs(2));
        let answered_at = Instant::now();
        stream
            .write_all(&response(&request, 200, "OK", &[], b""))
            .unwrap();
        b_done.send(answered_at).unwrap();
    });

    let dir = temp_dir("idle");
    let input = dir.join("targets.csv");
    std::fs::write(
        &input,
        format!("target\nsip:1@{a_addr}\nsip:2@{a_addr}\nsip:3@{b_addr}\n"),
    )
    .unwrap();
    let out = bin()
        .arg("batch")
        .arg(&input)
        .args([
            "--event",
            "reboot",
            "--transport",
            "tcp",
            "--concurrency",
            "2",
        ])
        .args(["--output", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (requests, closed, closed_at, second_connection) =
        a_result.recv_timeout(Duration::from_secs(30)).unwrap();
    let b_answered_at = b_result.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(requests, 2, "both targets in flight on one connection");
    assert!(!second_connection, "a second connection to A");
    assert!(closed, "A's connection was not closed");
    // Before, not at the agent's exit (nor after Timer F, 32 s).
    assert!(
        closed_at < b_answered_at,
        "A's connection closed {:?} after B answered",
        closed_at - b_answered_at
    );
}
