//! IPv6 on loopback (`[::1]`): brackets everywhere an address goes into a message, and
//! delivered exchanges over UDP and TCP with the simulator. The machine must have IPv6
//! loopback (Linux has it unless disabled).

mod common;

use common::{dry_run, send, PhoneProcess};

#[test]
fn an_ipv6_target_is_written_with_brackets_and_delivered_over_udp_and_tcp() {
    for transport in ["udp", "tcp"] {
        let phone = PhoneProcess::builder()
            .listen("[::1]:0")
            .transport(transport)
            .start();
        let addr = phone.addr(transport);
        assert!(addr.is_ipv6(), "{addr}");
        let target = format!("sip:159@[::1]:{};transport={transport}", addr.port());
        let request = dry_run(&["resync", &target]);
        let upper = transport.to_ascii_uppercase();
        let bracketed: [&str; 3] = [
            &format!("Via: SIP/2.0/{upper} [::1]:"),
            "From: <sip:sipnotify@[::1]>;tag=",
            "Contact: <sip:sipnotify@[::1]:",
        ];
        common::assert_notify(&request, &target, &bracketed);

        let out = send(&["resync", &target, "--output", "json"]);
        let record = common::assert_outcome(&out, 0, "delivered");
        assert_eq!(record["attempts"], 2);
    }
}

/// A proxy given as a bracketed IPv6 address, with the phone's own Request-URI.
#[test]
fn an_ipv6_proxy_in_brackets_is_used() {
    let phone = PhoneProcess::builder().listen("[::1]:0").start();
    let proxy = format!("[::1]:{}", phone.addr("udp").port());
    let out = send(&["resync", "sip:159@phone.invalid", "--proxy", &proxy]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("delivered"), "{text}");
}
