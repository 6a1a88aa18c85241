//! The real binary against the simulated phone on loopback, over UDP and TCP.

mod common;

use common::{bin, json_line, send, temp_dir, PhoneProcess, PASSWORD};
use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

/// `sipnotify resync TARGET EXTRA... --output json` with [`PASSWORD`]: the JSON result and
/// the exit code.
fn resync_json(target: &str, extra: &[&str]) -> (serde_json::Value, Option<i32>) {
    let mut args = vec!["resync", target];
    args.extend(extra);
    args.extend(["--output", "json"]);
    let out = send(&args);
    (json_line(&out.stdout), out.status.code())
}

fn target(phone: &PhoneProcess, transport: &str) -> String {
    format!("sip:159@{}", phone.addr(transport))
}

/// Each command of the table, with its expected Event header.
fn commands(target: &str) -> Vec<(Vec<String>, &'static str)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (v(&["resync", target]), "resync"),
        (
            v(&["resync", target, "--profile", "http://10.0.0.1/p.xml"]),
            "resync",
        ),
        (v(&["reboot", target]), "reboot_now"),
        (v(&["restart", target]), "restart_now"),
        (v(&["report", target]), "report"),
        (
            v(&["xml-service", target, "http://10.0.0.1/menu.xml"]),
            "XML-Service",
        ),
        (
            v(&["notify", target, "--event", "check-sync", "--body", "x=1"]),
            "check-sync",
        ),
    ]
}

#[test]
fn every_command_is_delivered_over_udp_and_tcp_after_a_challenge() {
    let phone = PhoneProcess::builder()
        .challenge("md5-qop")
        .args(["--accept-event", "check-sync"])
        .start();
    for transport in ["udp", "tcp"] {
        let t = target(&phone, transport);
        for (args, event) in commands(&t) {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--transport", transport, "--output", "json"]);
            let out = send(&args);
            let v = json_line(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {v}");
            assert_eq!(v["outcome"], "delivered", "{args:?}: {v}");
            assert_eq!(v["status"], 200);
            assert_eq!(v["event"], event);
            assert_eq!(v["attempts"], 2, "challenged once, then answered");
            assert_eq!(v["target"], t);
            assert!(v["call_id"].as_str().unwrap().len() >= 16);
            assert!(v["elapsed_ms"].as_f64().unwrap() >= 0.0);
        }
    }
}

#[test]
fn sha256_and_sipura_md5_challenges_are_answered() {
    for mode in ["sha256", "md5", "none"] {
        let phone = PhoneProcess::builder()
            .challenge(mode)
            .transport("udp")
            .start();
        let (v, _) = resync_json(&target(&phone, "udp"), &[]);
        assert_eq!(v["outcome"], "delivered", "{mode}: {v}");
        assert_eq!(v["attempts"], if mode == "none" { 1 } else { 2 }, "{mode}");
    }
}

#[test]
fn wrong_password_is_auth_failed_with_exit_3() {
    let phone = PhoneProcess::builder().transport("tcp").start();
    let out = bin()
        .args([
            "reboot",
            &target(&phone, "tcp"),
            "--transport",
            "tcp",
            "--output",
            "json",
        ])
        .env("SIPNOTIFY_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let v = common::assert_outcome(&out, 3, "auth_failed");
    assert_eq!(v["status"], 403);
}

#[test]
fn unknown_event_is_rejected_with_489_a_hint_and_exit_4() {
    let phone = PhoneProcess::builder().transport("udp").start();
    let out = send(&["notify", &target(&phone, "udp"), "--event", "check-sync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.starts_with("rejected"), "{text}");
    assert!(text.contains("489"), "{text}");
    assert!(
        text.contains("hint: the phone does not accept this event"),
        "{text}"
    );
}

#[test]
fn challenged_without_a_password_exits_2_and_says_how_to_fix_it() {
    let phone = PhoneProcess::builder().transport("udp").start();
    let out = bin()
        .args(["resync", &target(&phone, "udp"), "--output", "json"])
        .env_remove("SIPNOTIFY_PASSWORD")
        .output()
        .unwrap();
    let v = common::assert_outcome(&out, 2, "no_credentials");
    assert!(v["reason"].as_str().unwrap().contains("--password-file"));
}

#[test]
fn silence_is_a_timeout_and_a_closed_tcp_port_is_unreachable_both_exit_5() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = format!("sip:159@{}", silent.local_addr().unwrap());
    let (v, code) = resync_json(&t, &["--timeout", "1", "--t1", "100"]);
    assert_eq!(code, Some(5), "{v}");
    assert_eq!(v["outcome"], "timeout");
    assert!(v["retransmissions"].as_u64().unwrap() >= 3, "{v}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (v, code) = resync_json(&format!("sip:159@{addr};transport=tcp"), &[]);
    assert_eq!(code, Some(5), "{v}");
    assert_eq!(v["outcome"], "unreachable");
}

/// A UDP socket on a free loopback port, for commands that must send nothing to it.
fn listener() -> UdpSocket {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    listener
}

#[track_caller]
fn assert_nothing_sent(listener: &UdpSocket) {
    let mut buf = [0u8; 2048];
    assert!(listener.recv_from(&mut buf).is_err(), "nothing was sent");
}

#[test]
fn bad_input_exits_2_with_a_clear_message_and_sends_nothing() {
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let t = format!("sip:159@{addr}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["xml-service", &t, "ftp://h/x"],
            "not an http:// or https:// URL",
        ),
        (
            vec!["xml-service", &t, "<CiscoIPPhoneText/>"],
            "not an http:// or https:// URL",
        ),
        (
            vec!["resync", "sips:159@10.0.0.1;transport=udp"],
            "travels over TLS only",
        ),
        (vec!["resync", "159@host name"], "is not a SIP URI"),
        (
            vec!["resync", &t, "--header", "Call-ID: x"],
            "written by sipnotify itself",
        ),
        (
            vec!["resync", &t, "--password-file", "/nonexistent/pw"],
            "cannot read the password file",
        ),
        (vec!["resync", &t, "--transport", "sctp"], "udp, tcp or tls"),
        (
            vec!["notify", &t, "--event", "bad event"],
            "not a valid event",
        ),
        (
            vec!["resync", &t, "--proxy", "h:notaport"],
            "port must be a number",
        ),
        (
            vec!["resync", "sip:159:Hunter2@10.0.0.1"],
            "holds a password",
        ),
        (vec!["resync", "127.0.0.1:5599"], "has no user part"),
        (vec!["resync", "foo"], "USER@HOST"),
        (vec!["resync", "159", "--dry-run"], "USER@HOST"),
        (
            vec!["resync", &t, "--from", "noc@example.com"],
            "is not a SIP URI",
        ),
        (
            vec!["resync", &t, "--header", "l: 0"],
            "written by sipnotify itself",
        ),
    ];
    for (args, message) in cases {
        let out = send(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(
            !err.contains("Hunter2"),
            "a password in the URI is repeated: {err}"
        );
    }
    assert_nothing_sent(&listener);
}

#[test]
fn dry_run_prints_the_exact_request_and_sends_nothing() {
    let listener = listener();
    let t = format!("sip:159@{}", listener.local_addr().unwrap());
    let url = "http://10.0.0.1/menu.xml";
    let out = send(&["xml-service", &t, url, "--dry-run", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v = json_line(&out.stdout);
    let request = v["request"].as_str().unwrap();
    common::assert_notify(request, &t, &["Event: XML-Service\r\n"]);
    assert!(request.ends_with(&format!("Content-Length: {}\r\n\r\n{url}", url.len())));
    assert_nothing_sent(&listener);
}

#[test]
fn body_file_loses_its_final_newline_unless_asked() {
    let dir = temp_dir("body");
    let file = dir.join("body.txt");
    std::fs::write(&file, "line1\nline2\n").unwrap();
    let file = file.to_str().unwrap();
    let request = |extra: &[&str]| {
        let mut args = vec![
            "notify",
            "sip:1@127.0.0.1:9",
            "--event",
            "x",
            "--body-file",
            file,
        ];
        args.extend(extra);
        args.extend(["--dry-run", "--output", "json"]);
        json_line(&send(&args).stdout)["request"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plain = request(&[]);
    assert!(
        plain.ends_with("Content-Length: 11\r\n\r\nline1\nline2"),
        "{plain}"
    );
    let kept = request(&["--keep-final-newline"]);
    assert!(
        kept.ends_with("Content-Length: 12\r\n\r\nline1\nline2\n"),
        "{kept}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A UDP relay between the agent and the phone that drops the first `drop_first` datagrams
/// coming from the agent. It is also usable as an outbound proxy address.
fn relay(phone: std::net::SocketAddr, drop_first: usize) -> std::net::SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    thread::spawn(move || {
        let mut agent = None;
        let mut dropped = 0;
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from == phone {
                if let Some(a) = agent {
                    let _ = sock.send_to(&buf[..n], a);
                }
            } else {
                agent = Some(from);
                if dropped < drop_first {
                    dropped += 1;
                    continue;
                }
                let _ = sock.send_to(&buf[..n], phone);
            }
        }
    });
    addr
}

#[test]
fn a_lost_first_notify_is_retransmitted_and_still_delivered() {
    let phone = PhoneProcess::builder().transport("udp").start();
    let via = relay(phone.addr("udp"), 1);
    let (v, code) = resync_json(
        &target(&phone, "udp"),
        &["--proxy", &via.to_string(), "--t1", "100"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["outcome"], "delivered");
    assert_eq!(v["retransmissions"], 1, "{v}");
    assert_eq!(v["attempts"], 2);
}

#[test]
fn verbose_ladder_shows_every_message_but_never_the_password() {
    let phone = PhoneProcess::builder().transport("udp").start();
    for verbosity in ["-v", "-vv"] {
        let out = send(&["resync", &target(&phone, "udp"), verbosity]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert_eq!(all.matches(">>> sent").count(), 2, "{all}");
        assert_eq!(all.matches("<<< received").count(), 2, "{all}");
        assert!(all.contains("Authorization: Digest username=\"159\""));
        assert!(!all.contains(PASSWORD), "password leaked at {verbosity}");
    }
}

#[test]
fn password_on_the_command_line_works_but_warns() {
    let phone = PhoneProcess::builder().transport("udp").start();
    let out = bin()
        .args(["resync", &target(&phone, "udp"), "--password", PASSWORD])
        .env_remove("SIPNOTIFY_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("visible to other users"), "{err}");
    assert!(!err.contains(PASSWORD));
}

#[test]
fn demo_delivers_all_four_actions() {
    let out = bin().arg("demo").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for event in ["resync", "reboot_now", "restart_now", "XML-Service"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("delivered") && l.contains(event)),
            "{event} in {text}"
        );
    }
}
