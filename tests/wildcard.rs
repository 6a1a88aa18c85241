//! Phones that answer from another address than the one the NOTIFY went to: a simulator on a
//! wildcard address serving a fleet of `127.x.y.z` phones (it must answer from each), and a
//! phone that answers from another port (the agent must accept it and say so).

mod common;

use common::{assert_exit, bin, response, temp_dir, PhoneProcess};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// The `i`-th phone's loopback address: `i` in base 200 over the last three bytes, plus one,
/// so distinct for each `i` and never a 0 or 255 byte.
fn phone_ip(i: u32) -> Ipv4Addr {
    let digit = |n: u32| u8::try_from(1 + n % 200).unwrap();
    Ipv4Addr::new(127, digit(i / 40_000), digit(i / 200), digit(i))
}

/// Runs a batch of `phones` users (1000 on) of one wildcard simulator, each at its own
/// `127.x.y.z`, over `transport`; checks every one is delivered, with no `answered_from`, and
/// that the simulator acted on each once. Returns how long the batch took.
fn fleet(transport: &str, phones: u32) -> Duration {
    let dir = temp_dir(transport);
    let last = 1000 + phones - 1;
    let phone = PhoneProcess::builder()
        .listen("0.0.0.0:0")
        .transport(transport)
        .users(&format!("1000-{last}"))
        .password_template("pw-{user}")
        // Two tasks receive from the one wildcard socket, each answering from its own reads.
        .threads(2)
        .start();
    let port = phone.addr(transport).port();
    let param = if transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    let mut csv = String::from("target,password\n");
    for i in 0..phones {
        let user = 1000 + i;
        csv += &format!("sip:{user}@{}:{port}{param},pw-{user}\n", phone_ip(i));
    }
    let input = dir.join("fleet.csv");
    std::fs::write(&input, csv).unwrap();

    let started = Instant::now();
    let out = bin()
        .args(["batch", "--output", "json", "--event", "resync"])
        .arg(&input)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_exit(&out, 0);

    let mut targets = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["outcome"], "delivered", "{record}");
        assert_eq!(record["attempts"], 2, "challenged, then answered: {record}");
        // Each answer came from the address its NOTIFY went to.
        assert!(record.get("answered_from").is_none(), "{record}");
        targets.insert(record["target"].as_str().unwrap().to_string());
    }
    assert_eq!(targets.len(), phones as usize, "one record per phone");
    let stopped = String::from_utf8(phone.terminate()).unwrap();
    assert!(
        stopped.contains(&format!("{phones} challenged, {phones} delivered")),
        "{stopped}"
    );
    // Two requests a phone, and any retransmission on a loaded machine answered again,
    // not acted on again.
    let count = |after: &str| -> u64 {
        let line = stopped
            .lines()
            .find(|l| l.starts_with("phone stopped:"))
            .unwrap();
        let before = line.split(after).next().unwrap();
        before
            .rsplit(' ')
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(" requests") - count(" retransmissions answered again"),
        2 * phones as u64,
        "{stopped}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    took
}

#[test]
fn one_wildcard_simulator_is_twenty_thousand_udp_phones() {
    let took = fleet("udp", 20_000);
    eprintln!("20000 UDP phones at distinct 127.x.y.z addresses: {took:?}");
}

/// As many as over UDP: a connection closes when its target ends, so neither process needs
/// a descriptor per phone.
#[test]
fn one_wildcard_simulator_is_twenty_thousand_tcp_phones() {
    let took = fleet("tcp", 20_000);
    eprintln!("20000 TCP phones at distinct 127.x.y.z addresses: {took:?}");
}

/// A phone reached at one socket that answers 200 from another, after a datagram that is not
/// SIP and a response with its branch but another Call-ID: both are dropped (and said so at
/// -vv), the 200 is accepted and its source reported.
fn phone_answering_from_another_port() -> (SocketAddr, SocketAddr) {
    let reached = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answers = UdpSocket::bind("127.0.0.1:0").unwrap();
    reached
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addrs = (reached.local_addr().unwrap(), answers.local_addr().unwrap());
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((len, agent)) = reached.recv_from(&mut buf) {
            let request = &buf[..len];
            let ok = response(request, 200, "OK", &[], b"");
            let text = String::from_utf8_lossy(request);
            let call_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap();
            let forged = String::from_utf8_lossy(&ok).replace(call_id, "forged");
            for datagram in [b"garbage".as_slice(), forged.as_bytes(), &ok] {
                answers.send_to(datagram, agent).unwrap();
            }
        }
    });
    addrs
}

#[test]
fn an_answer_from_another_port_is_accepted_and_reported() {
    let (reached, answers) = phone_answering_from_another_port();
    let target = format!("sip:159@{reached}");
    let out = bin()
        .args(["resync", &target, "--output", "json", "-vv"])
        .env_remove("SIPNOTIFY_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let record = common::json_line(&out.stdout);
    assert_eq!(record["outcome"], "delivered", "{record}");
    assert_eq!(record["answered_from"], answers.to_string(), "{record}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for why in [
        "dropped: not a SIP message",
        "dropped: our branch with another Call-ID",
        "used a response from another address",
    ] {
        let logged = stderr
            .lines()
            .any(|l| l.contains(why) && l.contains(&format!("from={answers}")));
        assert!(logged, "no {why:?} from {answers} in:\n{stderr}");
    }

    // The ladder says where the answer came from, and so does the result line.
    let out = bin()
        .args(["resync", &target, "-v"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let from = format!(" ms from {answers}\nSIP/2.0 200 OK");
    assert!(
        stdout.contains("<<< received at ") && stdout.contains(&from),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("answered from {answers})")),
        "{stdout}"
    );
}
