//! A closed UDP port is known at once from the ICMP error the kernel gets back, not after
//! Timer F; one ICMP error followed by an answer still delivers.

mod common;

use common::{bin, response};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_closed_port_ends_unreachable_in_well_under_a_second() {
    let port = closed_port();
    let started = Instant::now();
    let out = bin()
        .args([
            "resync",
            &format!("sip:1000@127.0.0.1:{port}"),
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    let record = common::assert_outcome(&out, 5, "unreachable");
    let reason = record["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!("port unreachable from 127.0.0.1:{port}: nothing listens there")
    );
    // Timer F is 32 s; one early retransmission (200 ms) confirms the first error.
    assert_eq!(record["retransmissions"], 1);
    assert!(took < Duration::from_millis(800), "{took:?}");
}

/// The phone's port is closed for the first NOTIFY (a phone restarting its SIP stack) and
/// open for the second: the early retransmission is answered.
#[test]
fn one_icmp_error_then_an_answer_delivers() {
    use std::io::{BufRead, BufReader};
    let port = closed_port();
    let mut agent = bin()
        .args([
            "resync",
            &format!("sip:1000@127.0.0.1:{port}"),
            "--output",
            "json",
            "-vv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The phone comes up once the agent has had its ICMP error (its -vv log says so), in
    // the 200 ms before the request goes again.
    let mut log = BufReader::new(agent.stderr.take().unwrap()).lines();
    assert!(
        log.by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("port unreachable from")),
        "no ICMP error logged"
    );
    let phone = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let (n, from) = phone.recv_from(&mut buf).unwrap();
    phone
        .send_to(&response(&buf[..n], 200, "OK", &[], b""), from)
        .unwrap();
    std::thread::spawn(move || log.for_each(drop));
    let out = agent.wait_with_output().unwrap();
    let record = common::assert_outcome(&out, 0, "delivered");
    assert_eq!(record["retransmissions"], 1);
    // Answered at the early retransmission, not at Timer E (500 ms).
    assert!(record["elapsed_ms"].as_f64().unwrap() < 450.0, "{record}");
}
