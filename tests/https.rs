//! HTTPS to phones' web servers: the HTTP commands and `batch --channel http` against the
//! simulator serving HTTPS (`sipnotify phone --http ADDR --http-tls`), its certificate
//! checked by the same options and code as SIP over TLS (`--ca`, `--tls-name`,
//! `--tls-pin`, `--tls-insecure`). curl with `--cacert` against it: `tests/http.rs`.

mod common;

use common::pki::{self, phones_ca, Pki};
use common::{
    assert_contains_all, assert_exit, bin, json_line, png_pixel, send, temp_dir, web_phone,
    PhoneProcess, PASSWORD,
};
use std::process::{Output, Stdio};
use std::time::Duration;

/// A simulated phone serving HTTPS with `--http-auth auth` and more `args`; the
/// certificate line it printed.
fn https_phone(auth: &str, args: &[&str]) -> (PhoneProcess, String) {
    let phone = web_phone(auth, &[&["--http-tls"], args].concat());
    assert!(
        phone.first_line().contains(", https 127.0.0.1:"),
        "{}",
        phone.first_line()
    );
    let certificate = phone
        .line(Duration::from_secs(10))
        .expect("the certificate line");
    (phone, certificate)
}

/// A simulated phone serving HTTPS with `leaf`'s certificate.
fn https_phone_presenting(leaf: &pki::Leaf, auth: &str) -> PhoneProcess {
    https_phone(auth, &leaf.options()).0
}

/// `sipnotify ARGS --output json` with the web password in the environment.
fn run(args: &[&str]) -> Output {
    send(&[args, &["--output", "json"]].concat())
}

#[test]
fn a_trusted_ca_delivers_execute_info_and_screenshot_over_https() {
    let (dir, pki, leaf) = phones_ca("trusted", &["127.0.0.1"]);
    let (phone, certificate) = https_phone("digest", &leaf.options());
    assert_eq!(
        certificate.trim_end(),
        format!(
            "tls certificate {} (SHA-256 {})",
            leaf.cert.display(),
            leaf.fingerprint
        )
    );
    let url = format!("https://{}", phone.addr("https"));
    let ca = pki.ca().to_str().unwrap();
    let shot = dir.join("shot.png");
    let tls = ["--ca", ca, "--user", "admin"];
    for command in [
        vec!["execute", &url, "Key:Services"],
        vec!["info", &url],
        vec!["screenshot", &url, "-o", shot.to_str().unwrap()],
    ] {
        let out = run(&[&command[..], &tls].concat());
        assert_exit(&out, 0);
        let record = json_line(&out.stdout);
        assert_eq!(
            (
                &record["outcome"],
                &record["target"],
                &record["http_status"]
            ),
            (&"delivered".into(), &url.clone().into(), &200.into()),
            "{command:?}: {record}"
        );
    }
    assert_eq!(
        png_pixel(&std::fs::read(&shot).unwrap(), 0, 0).0,
        (160, 96),
        "a PNG of the screen"
    );
}

#[test]
fn an_untrusted_certificate_is_refused_with_its_reason_until_pinned_or_insecure() {
    let (phone, certificate) = https_phone("none", &[]);
    let fingerprint = common::certificate_fingerprint(&certificate);
    let addr = phone.addr("https");
    let url = format!("https://{addr}");

    // The system's roots do not know a self-signed certificate: unreachable, exit 5 (as SIP
    // over TLS), with the reason and the pin that would accept it.
    let out = run(&["info", &url]);
    assert_exit(&out, 5);
    let record = json_line(&out.stdout);
    assert_eq!(record["outcome"], "unreachable", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "cannot connect to {addr} over https: the certificate is not signed by a CA in \
             the system's root certificates: use --ca"
        )),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("--tls-pin {fingerprint}")),
        "{reason}"
    );

    // Another CA: refused, naming that file.
    let dir = temp_dir("untrusted");
    let other = Pki::new(&dir, "other");
    let out = run(&["info", &url, "--ca", other.ca().to_str().unwrap()]);
    assert_exit(&out, 5);
    let reason = json_line(&out.stdout)["reason"].to_string();
    assert!(
        reason.contains("is not signed by a CA in --ca "),
        "{reason}"
    );

    // A wrong pin: refused, with the certificate's own.
    let out = run(&["info", &url, "--tls-pin", &"AB".repeat(32)]);
    assert_exit(&out, 5);
    let reason = json_line(&out.stdout)["reason"].to_string();
    assert!(
        reason.contains(&format!(
            "the certificate matches no --tls-pin: its SHA-256 is {fingerprint}"
        )),
        "{reason}"
    );

    let out = run(&["info", &url, "--tls-pin", &fingerprint]);
    assert_exit(&out, 0);
    assert_eq!(json_line(&out.stdout)["outcome"], "delivered");
    let out = run(&["info", &url, "--tls-insecure"]);
    assert_exit(&out, 0);
    assert_eq!(json_line(&out.stdout)["outcome"], "delivered");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("warning: --tls-insecure: no TLS certificate is checked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP to the HTTPS port is no exchange either, and says so.
    let out = run(&["info", &format!("http://{addr}")]);
    assert_exit(&out, 5);
    let reason = json_line(&out.stdout)["reason"].to_string();
    assert!(
        reason.contains("the answer is not HTTP")
            && reason.contains("if the phone serves HTTPS there, give it as https://"),
        "{reason}"
    );
}

/// HTTPS to a plain HTTP port: the handshake fails, and the reason asks whether it is a
/// TLS port.
#[test]
fn https_to_a_plain_port_asks_whether_it_is_a_tls_port() {
    let phone = web_phone("none", &[]);
    let out = run(&[
        "info",
        &format!("https://{}", phone.addr("http")),
        "--tls-insecure",
    ]);
    assert_exit(&out, 5);
    let reason = json_line(&out.stdout)["reason"].to_string();
    assert!(reason.contains("is it a TLS port?"), "{reason}");
}

/// IPv6 loopback: the self-signed certificate names ::1, the address in brackets is
/// checked against it (and pinned).
#[test]
fn https_on_ipv6_loopback() {
    if !common::ipv6_loopback() {
        return;
    }
    let phone = PhoneProcess::builder()
        .transport("udp")
        .args(["--http", "[::1]:0", "--http-tls", "--http-auth", "none"])
        .start();
    let certificate = phone.line(Duration::from_secs(10)).unwrap();
    assert!(
        certificate.contains("self-signed for localhost, ::1,"),
        "{certificate}"
    );
    let pin = &common::certificate_fingerprint(&certificate);
    let addr = phone.addr("https");
    assert!(addr.is_ipv6(), "{addr}");
    let out = run(&["info", &format!("https://{addr}"), "--tls-pin", pin]);
    assert_exit(&out, 0);
    assert_eq!(
        json_line(&out.stdout)["target"],
        format!("https://[::1]:{}", addr.port())
    );
}

/// A certificate that names a host, not the address: refused by name, accepted with
/// `--tls-name`.
#[test]
fn a_certificate_naming_another_host_needs_tls_name() {
    let (_, pki, leaf) = phones_ca("named", &["phone-7.example"]);
    let phone = https_phone_presenting(&leaf, "none");
    let url = format!("https://{}", phone.addr("https"));
    let ca = pki.ca().to_str().unwrap();
    let out = run(&["info", &url, "--ca", ca]);
    assert_exit(&out, 5);
    let reason = json_line(&out.stdout)["reason"].to_string();
    assert!(
        reason.contains(
            "the certificate names phone-7.example, not 127.0.0.1: use --tls-name or --tls-pin"
        ),
        "{reason}"
    );
    let out = run(&["info", &url, "--ca", ca, "--tls-name", "phone-7.example"]);
    assert_exit(&out, 0);
}

#[test]
fn a_campaign_over_https() {
    let (dir, pki, leaf) = phones_ca("campaign", &["127.0.0.1"]);
    let phone = https_phone_presenting(&leaf, "basic");
    let addr = phone.addr("https");
    let rows = dir.join("rows.csv");
    let mut csv = String::from("id,target,uri\n");
    for i in 0..5 {
        csv += &format!("p{i},https://{addr},Dial:10{i}\n");
    }
    std::fs::write(&rows, csv).unwrap();
    let out = bin()
        .args(["batch", rows.to_str().unwrap(), "--channel", "http"])
        .args([
            "--action",
            "execute",
            "--user",
            "admin",
            "--allow-duplicates",
        ])
        .args(["--ca", pki.ca().to_str().unwrap(), "--output", "json"])
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r.get("outcome").is_some())
        .collect();
    assert_eq!(records.len(), 5, "{records:?}");
    for record in &records {
        assert_eq!(record["outcome"], "delivered", "{record}");
        assert_eq!(record["target"], format!("https://{addr}"));
    }
    let stopped = String::from_utf8(phone.terminate()).unwrap();
    assert_contains_all("the counters", &stopped, &["5 requests", "5 executed"]);
}
