//! Phones that misbehave: every fault ends as one outcome, in bounded time, without a panic.
//! Each fake phone is a thread on a loopback socket that answers from a script.

mod common;

use common::{bin, json_line, response};
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// A UDP phone that calls `script(n, request, socket, from)` for the n-th request received.
fn udp_phone(script: impl Fn(usize, &[u8], &UdpSocket, SocketAddr) + Send + 'static) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        let mut n = 0;
        while let Ok((len, from)) = sock.recv_from(&mut buf) {
            script(n, &buf[..len], &sock, from);
            n += 1;
        }
    });
    addr
}

/// A TCP phone: for each connection, reads one request and calls `script`.
fn tcp_phone(script: impl Fn(&[u8], &mut std::net::TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 65536];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf[len..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
            script(&buf[..len], &mut stream);
        }
    });
    addr
}

/// Runs a resync to `addr` and returns the JSON result, the exit code and the wall time.
fn resync(addr: SocketAddr, extra: &[&str]) -> (serde_json::Value, Option<i32>, Duration) {
    let start = Instant::now();
    let out = bin()
        .arg("resync")
        .arg(format!("sip:159@{addr}"))
        .args(["--output", "json", "--t1", "50"])
        .args(extra)
        .env("SIPNOTIFY_PASSWORD", "pw")
        .output()
        .unwrap();
    (json_line(&out.stdout), out.status.code(), start.elapsed())
}

/// The result's outcome and the exit code are `outcome` and `exit`.
#[track_caller]
fn assert_outcome(v: &serde_json::Value, code: Option<i32>, outcome: &str, exit: i32) {
    assert_eq!(
        (v["outcome"].as_str(), code),
        (Some(outcome), Some(exit)),
        "{v}"
    );
}

#[test]
fn a_phone_that_never_answers_times_out_at_timer_f() {
    let addr = udp_phone(|_, _, _, _| {});
    let (v, code, took) = resync(addr, &[]);
    assert_outcome(&v, code, "timeout", 5);
    // T1 = 50 ms: Timer F = 3.2 s, retransmissions at 50, 150, 350, 750, 1550, 3150 ms.
    assert!(
        took >= Duration::from_millis(3200) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(v["retransmissions"], 6, "{v}");
}

#[test]
fn only_100_trying_ends_as_timeout_that_says_so() {
    let addr = udp_phone(|_, req, sock, from| {
        sock.send_to(&response(req, 100, "Trying", &[], b""), from)
            .unwrap();
    });
    let (v, code, _) = resync(addr, &[]);
    assert_eq!(code, Some(5), "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("only provisional"),
        "{v}"
    );
}

#[test]
fn a_phone_that_challenges_forever_is_auth_failed_in_bounded_rounds() {
    /// The n-th challenge's value.
    type Challenge = fn(usize) -> String;
    // (the challenges, the attempts the resync ends after)
    let cases: [(Challenge, u64); 2] = [
        // The same realm again: refused credentials after the first answer.
        (|n| format!("Digest realm=\"r\", nonce=\"n{n}\""), 2),
        // A new realm every time: stopped by the round limit.
        (|n| format!("Digest realm=\"r{n}\", nonce=\"n\""), 5),
    ];
    for (challenge, attempts) in cases {
        let addr = udp_phone(move |n, req, sock, from| {
            let ch = format!("WWW-Authenticate: {}", challenge(n));
            sock.send_to(&response(req, 401, "Unauthorized", &[&ch], b""), from)
                .unwrap();
        });
        let (v, code, _) = resync(addr, &[]);
        assert_outcome(&v, code, "auth_failed", 3);
        assert_eq!(v["attempts"], attempts, "{v}");
    }
}

#[test]
fn answers_with_another_branch_are_ignored_and_one_from_another_address_is_used() {
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    let addr = udp_phone(move |n, req, sock, from| {
        if n > 0 {
            return; // retransmissions
        }
        let text = String::from_utf8_lossy(&response(req, 200, "OK", &[], b"")).into_owned();
        let forged = text.replace("branch=z9hG4bK", "branch=z9hG4bKforged");
        sock.send_to(forged.as_bytes(), from).unwrap();
        thread::sleep(Duration::from_millis(100));
        // RFC 3261 §17.1.3: the branch says whose answer it is, not the source address.
        other
            .send_to(&response(req, 200, "OK", &[], b""), from)
            .unwrap();
        // Too late: the target has ended.
        sock.send_to(&response(req, 603, "Decline", &[], b""), from)
            .unwrap();
    });
    let (v, code, _) = resync(addr, &[]);
    assert_outcome(&v, code, "delivered", 0);
    assert_eq!(v["status"], 200);
    assert_eq!(v["answered_from"], other_addr.to_string(), "{v}");
}

#[test]
fn a_tcp_connection_closed_mid_message_is_unreachable() {
    let addr = tcp_phone(|req, stream| {
        let full = response(req, 200, "OK", &[], b"");
        stream.write_all(&full[..full.len() / 2]).unwrap();
    });
    let (v, code, took) = resync(addr, &["--transport", "tcp"]);
    assert_outcome(&v, code, "unreachable", 5);
    assert!(v["reason"].as_str().unwrap().contains("closed"), "{v}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_response_over_64_kib_is_refused_without_waiting_for_it() {
    let addr = tcp_phone(|req, stream| {
        let huge = response(req, 200, "OK", &[], &[b'x'; 70000]);
        let (head, body) = huge.split_at(huge.len() - 70000);
        stream.write_all(head).unwrap();
        let _ = stream.write_all(body);
        thread::sleep(Duration::from_millis(500));
    });
    let (v, code, _) = resync(addr, &["--transport", "tcp"]);
    assert_outcome(&v, code, "unreachable", 5);
    assert!(
        v["reason"].as_str().unwrap().contains("unusable message"),
        "{v}"
    );

    // Over UDP an oversized or broken datagram is dropped and the timer decides.
    let addr = udp_phone(|_, _, sock, from| {
        let _ = sock.send_to(&vec![b'A'; 65_000], from);
    });
    let (v, code, _) = resync(addr, &["--timeout", "1"]);
    assert_outcome(&v, code, "timeout", 5);
}

#[test]
fn random_bytes_never_crash_the_agent() {
    let addr = udp_phone(|n, _, sock, from| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        for _ in 0..20 {
            let len = rng.gen_range(0..2000);
            let junk: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = sock.send_to(&junk, from);
        }
        let _ = sock.send_to(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK\r\n\r\n",
            from,
        );
    });
    let (v, code, _) = resync(addr, &["--timeout", "1"]);
    assert_outcome(&v, code, "timeout", 5);

    let addr = tcp_phone(|_, stream| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let junk: Vec<u8> = (0..5000).map(|_| rng.gen()).collect();
        let _ = stream.write_all(&junk);
        thread::sleep(Duration::from_millis(1500));
    });
    let (v, code, _) = resync(addr, &["--transport", "tcp", "--timeout", "1"]);
    assert!(code == Some(5), "{v}");
    assert!(
        ["timeout", "unreachable"].contains(&v["outcome"].as_str().unwrap()),
        "{v}"
    );
}

#[test]
fn a_tcp_connect_that_gets_no_answer_is_bounded_by_the_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, as a firewall
    // that silently discards would.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    thread::sleep(Duration::from_millis(200));
    let (v, code, took) = resync(addr, &["--transport", "tcp", "--timeout", "1"]);
    assert_outcome(&v, code, "unreachable", 5);
    assert!(v["reason"].as_str().unwrap().contains("no answer"), "{v}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(v["elapsed_ms"].as_f64().unwrap() >= 900.0, "{v}");
}
