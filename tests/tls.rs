//! SIP over TLS against the simulator (`sipnotify phone --transport tls`): its own
//! self-signed certificate rehearsed with `--tls-pin`, a certificate given with `--tls-cert`
//! and `--tls-key` checked by `--ca` and `--tls-name`, `sips:` targets, IPv6, a campaign whose
//! `transport` column says tls, and TLS's default port. Kamailio's TLS module as a peer:
//! `tests/interop_kamailio.rs`.

mod common;

use common::pki::{phones_ca, Pki};
use common::{bin, json_line, send_json, temp_dir, PhoneProcess, PASSWORD};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

/// A phone on TLS at `listen`, with the SHA-256 its second line prints.
fn tls_phone(listen: &str, args: &[&str]) -> (PhoneProcess, String) {
    let phone = PhoneProcess::builder()
        .listen(listen)
        .transport("tls")
        .args(args)
        .start();
    let line = phone
        .line(Duration::from_secs(10))
        .expect("the phone's certificate line");
    let fingerprint = common::certificate_fingerprint(&line);
    assert!(
        line.starts_with("tls certificate self-signed for localhost, "),
        "{line}"
    );
    (phone, fingerprint)
}

/// `sipnotify resync TARGET OPTIONS --output json` with the line's password.
fn resync(target: &str, options: &[&str]) -> (Value, i32, String) {
    send_json(&[&["resync", target, "--timeout", "5"][..], options].concat())
}

#[track_caller]
fn assert_delivered(v: &Value, code: i32) {
    assert_eq!(
        (v["outcome"].as_str(), code, v["attempts"].as_u64()),
        (Some("delivered"), 0, Some(2)),
        "{v}"
    );
}

#[test]
fn the_simulators_own_certificate_is_refused_until_pinned_and_insecure_warns() {
    let (phone, fingerprint) = tls_phone("127.0.0.1:0", &[]);
    assert!(phone
        .first_line()
        .starts_with("phone listening on tls 127.0.0.1:"));
    let addr = phone.addr("tls");
    let target = format!("sip:159@{addr};transport=tls");

    let (v, code, _) = resync(&target, &["--tls-pin", &fingerprint]);
    assert_delivered(&v, code);
    let (v, code, _) = resync(&target, &[]);
    assert_eq!(
        (v["outcome"].as_str(), code),
        (Some("unreachable"), 5),
        "{v}"
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("cannot connect to {addr} over tls: the certificate is not signed by a CA in the system's root certificates")),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("--tls-pin {fingerprint}")),
        "{reason}"
    );
    let (v, code, stderr) = resync(&target, &["--tls-insecure"]);
    assert_delivered(&v, code);
    assert!(
        stderr.starts_with("warning: --tls-insecure: no TLS certificate is checked"),
        "{stderr}"
    );
}

#[test]
fn a_sips_target_goes_over_tls_with_a_sips_contact() {
    let (phone, fingerprint) = tls_phone("127.0.0.1:0", &[]);
    let target = format!("sips:159@{}", phone.addr("tls"));
    let dry = bin()
        .args(["resync", &target, "--dry-run"])
        .output()
        .unwrap();
    let request = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{request}");
    let via_and_contact = [
        "\r\nVia: SIP/2.0/TLS 127.0.0.1:",
        "\r\nContact: <sips:sipnotify@127.0.0.1:",
    ];
    common::assert_notify(&request, &target, &via_and_contact);
    let (v, code, _) = resync(&target, &["--tls-pin", &fingerprint]);
    assert_delivered(&v, code);

    // UDP cannot carry a sips: request.
    let udp = bin()
        .args(["resync", &format!("{target};transport=udp"), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(udp.status.code(), Some(2));
    let said = String::from_utf8_lossy(&udp.stderr);
    assert!(said.contains("travels over TLS only"), "{said}");
    for other in ["udp", "tcp"] {
        let out = bin()
            .args(["resync", &target, "--dry-run", "--transport", other])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            said.contains(&format!(
                "travels over TLS only: leave out --transport {other}"
            )),
            "{said}"
        );
    }
}

#[test]
fn ipv6_loopback_over_tls() {
    if !common::ipv6_loopback() {
        return;
    }
    let (phone, fingerprint) = tls_phone("[::1]:0", &[]);
    let addr = phone.addr("tls");
    assert!(addr.is_ipv6(), "{addr}");
    let (v, code, _) = resync(&format!("sips:159@{addr}"), &["--tls-pin", &fingerprint]);
    assert_delivered(&v, code);
    // The generated certificate names ::1: the address itself is checked.
    let (v, code, _) = resync(&format!("sips:159@{addr}"), &[]);
    assert_eq!(code, 5, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("not signed by a CA"),
        "{v}"
    );
}

/// The simulator presents a certificate given with --tls-cert and --tls-key; a campaign checks it
/// by --ca and --tls-name for every row, whether its `transport` cell or its URI says tls.
#[test]
fn a_campaign_over_tls_checks_the_given_certificate_for_every_row() {
    let (dir, pki, leaf) = phones_ca("campaign", &["phone.test"]);
    let phone = PhoneProcess::builder()
        .transport("tls")
        .users("1000-1009")
        .args(leaf.options())
        .start();
    let line = phone.line(Duration::from_secs(10)).unwrap();
    assert_eq!(
        line.trim_end(),
        format!(
            "tls certificate {} (SHA-256 {})",
            leaf.cert.display(),
            leaf.fingerprint
        )
    );
    let addr = phone.addr("tls");
    let mut csv = String::from("id,target,transport\n");
    for user in 1000..1005 {
        csv += &format!("cell-{user},sip:{user}@{addr},tls\n");
    }
    for user in 1005..1010 {
        csv += &format!("uri-{user},sip:{user}@{addr};transport=tls,\n");
    }
    let input = dir.join("phones.csv");
    std::fs::write(&input, csv).unwrap();
    let ca = pki.ca().to_str().unwrap();
    let batch = |options: &[&str]| -> Output {
        bin()
            .args(["batch", input.to_str().unwrap(), "--output", "json"])
            .args(options)
            .env("SIPNOTIFY_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    let records = |out: &Output| -> Vec<Value> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let out = batch(&["--ca", ca, "--tls-name", "phone.test"]);
    let all = records(&out);
    assert_eq!(out.status.code(), Some(0), "{all:?}");
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|r| r["outcome"] == "delivered"), "{all:?}");

    let out = batch(&["--ca", ca]);
    let all = records(&out);
    assert_eq!(all.len(), 10);
    for r in &all {
        assert_eq!(r["outcome"], "unreachable", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.ends_with(&format!(
                "the certificate names phone.test, not {}: use --tls-name or --tls-pin",
                addr.ip()
            )),
            "{reason}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// TLS to a port that speaks plain SIP over TCP, hangs up, or answers in plain text: the
/// reason asks whether it is a TLS port.
#[test]
fn tls_to_a_plain_port_asks_whether_it_is_a_tls_port() {
    // A SIP server on TCP waits for the end of a message that never comes.
    let phone = PhoneProcess::builder().transport("tcp").start();
    let addr = phone.addr("tcp");
    let out = bin()
        .args(["resync", &format!("sips:159@{addr}"), "--tls-insecure"])
        .args(["--timeout", "0.5", "--output", "json"])
        .output()
        .unwrap();
    let v = json_line(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{v}");
    assert_eq!(
        v["reason"].as_str().unwrap(),
        format!(
            "cannot connect to {addr} over tls: no answer in 0.5 s (from TCP or the TLS \
             handshake: is it a TLS port?)"
        )
    );
    // One that hangs up.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || drop(listener.accept()));
    let (v, code, _) = resync(&format!("sips:159@{addr}"), &["--tls-insecure"]);
    assert_eq!(code, 5, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.ends_with(
            "the peer closed the connection during the TLS handshake: is it a TLS port?"
        ),
        "{reason}"
    );
    // One that answers in plain text.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.read(&mut [0u8; 1024]);
        let _ = stream.write_all(b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let (v, code, _) = resync(&format!("sips:159@{addr}"), &["--tls-insecure"]);
    assert_eq!(code, 5, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("the peer does not answer in TLS ("),
        "{reason}"
    );
    assert!(reason.ends_with("): is it a TLS port?"), "{reason}");
}

/// Without a port, TLS goes to 5061 (RFC 3261 section 19.1.2): the reason of a pin that
/// cannot match names the address, whatever listens there.
#[test]
fn tls_without_a_port_goes_to_5061() {
    let zeros = "00".repeat(32);
    for target in ["sips:159@127.0.0.1", "sip:159@127.0.0.1;transport=tls"] {
        let (v, code, _) = resync(target, &["--tls-pin", &zeros]);
        assert_eq!(code, 5, "{v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.contains("127.0.0.1:5061 over tls"),
            "{target}: {reason}"
        );
    }
    let (v, code, _) = resync(
        "sip:159@127.0.0.1",
        &["--transport", "tls", "--tls-pin", &zeros],
    );
    assert_eq!(code, 5, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:5061 over tls"),
        "{v}"
    );
}

/// Mistakes in the TLS options are refused before anything is sent (exit 2), naming the
/// file and never showing a key.
#[test]
fn tls_option_mistakes_are_refused_and_keys_never_shown() {
    let dir = temp_dir("mistakes");
    let pki = Pki::new(&dir, "mistakes");
    let (one, two) = (pki.issue("one", &["a.test"]), pki.issue("two", &["b.test"]));
    let key_text = std::fs::read_to_string(&one.key).unwrap();
    let key_body: Vec<&str> = key_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cert_and_key = |cert: &std::path::Path, key: &std::path::Path| {
        vec![
            "--tls-cert".into(),
            path(cert),
            "--tls-key".into(),
            path(key),
        ]
    };
    let target = "sip:159@127.0.0.1:9;transport=tls";
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            cert_and_key(&two.cert, &one.key),
            format!(
                "--tls-key {} is not the private key of --tls-cert {}",
                one.key.display(),
                two.cert.display()
            ),
        ),
        (
            vec!["--ca".into(), path(&not_pem)],
            format!("--ca {} holds no PEM certificate", not_pem.display()),
        ),
        (
            vec!["--ca".into(), path(&dir.join("missing.pem"))],
            "cannot read --ca ".into(),
        ),
        (
            cert_and_key(&one.cert, &one.cert),
            format!(
                "cannot read --tls-key {}: it holds no PEM private key",
                one.cert.display()
            ),
        ),
        (
            vec!["--tls-pin".into(), "AB:CD".into()],
            "is not a SHA-256 fingerprint".into(),
        ),
        (
            vec!["--tls-insecure".into(), "--ca".into(), path(pki.ca())],
            "cannot be used with".into(),
        ),
        (
            vec!["--tls-cert".into(), path(&one.cert)],
            "--tls-key".into(),
        ),
    ];
    for (options, said) in cases {
        let out = bin()
            .args(["resync", target, "-vv"])
            .args(&options)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{options:?}: {stderr}");
        assert!(stderr.contains(&said), "{options:?}: {stderr}");
        for line in &key_body {
            assert!(
                !stderr.contains(line),
                "{options:?} shows the key: {stderr}"
            );
        }
    }
    // A run that uses the key shows none of it either, with every log line on.
    let (phone, fingerprint) = tls_phone("127.0.0.1:0", &[]);
    let out = bin()
        .args(["resync", &format!("sips:159@{}", phone.addr("tls")), "-vv"])
        .args([
            "--tls-pin",
            &fingerprint,
            "--tls-cert",
            &path(&one.cert),
            "--tls-key",
            &path(&one.key),
        ])
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    for line in &key_body {
        assert!(!all.contains(line), "the key is shown: {all}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
