//! Vendor presets through the real binary: for every vendor and action, the exact request
//! (`--dry-run`) and a delivered exchange with the simulator playing that vendor.

mod common;

use common::campaign::Campaign;
use common::{assert_exit, assert_refused, bin, dry_run, send, PhoneProcess};

/// Every preset: vendor, action, Event header, body. Written out here, apart from the
/// table in src/event.rs, so a change to the table is a visible change to this list.
const PRESETS: &[(&str, &str, &str, &str)] = &[
    ("cisco", "resync", "resync", ""),
    ("cisco", "reboot", "reboot_now", ""),
    ("cisco", "restart", "restart_now", ""),
    ("cisco", "report", "report", ""),
    ("polycom", "resync", "check-sync", ""),
    ("yealink", "resync", "check-sync;reboot=false", ""),
    ("yealink", "reboot", "check-sync;reboot=true", ""),
    ("snom", "resync", "check-sync;reboot=false", ""),
    ("snom", "reboot", "check-sync;reboot=true", ""),
    ("gigaset", "resync", "check-sync;reboot=false", ""),
    ("gigaset", "reboot", "check-sync;reboot=true", ""),
    ("grandstream", "resync", "resync", ""),
    ("grandstream", "reboot", "check-sync;reboot=true", ""),
    ("aastra", "resync", "check-sync", ""),
    ("obihai", "resync", "resync", ""),
    ("cucm", "restart", "service-control", "action=restart"),
    ("cucm", "reboot", "service-control", "action=reset"),
    ("cucm", "report", "service-control", "action=prt-report"),
];

#[test]
fn every_preset_writes_its_exact_request() {
    let target = "sip:159@127.0.0.1:5060";
    for (vendor, action, header, body) in PRESETS {
        let request = dry_run(&[action, target, "--vendor", vendor]);
        assert!(
            request.contains(&format!("\r\nEvent: {header}\r\n")),
            "{vendor} {action}: {request}"
        );
        // The request as sent, then the one newline the dry run prints after it.
        let printed = request.strip_suffix('\n').unwrap_or(&request);
        let (head, sent_body) = printed.split_once("\r\n\r\n").unwrap();
        assert_eq!(sent_body, *body, "{vendor} {action}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{vendor} {action}: {head}"
        );
        if !body.is_empty() {
            assert!(head.contains("Content-Type: text/plain"), "{head}");
        }
    }
}

#[test]
fn every_preset_is_delivered_to_a_phone_playing_its_vendor() {
    // Each vendor of the list, once (its rows are together).
    let mut vendors: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
    vendors.dedup();
    for vendor in vendors {
        let phone = PhoneProcess::builder().args(["--vendor", vendor]).start();
        let target = format!("sip:159@{}", phone.addr("udp"));
        for (_, action, _, _) in PRESETS.iter().filter(|p| p.0 == vendor) {
            let out = send(&[action, &target, "--vendor", vendor]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{vendor} {action}: {text}");
            assert!(text.starts_with("delivered"), "{vendor} {action}: {text}");
        }
    }
}

#[test]
fn a_vendor_without_the_event_is_refused_and_a_vendors_phone_refuses_others() {
    let target = "sip:159@127.0.0.1:5060";
    for (args, message) in [
        (
            &["reboot", target, "--vendor", "polycom", "--dry-run"][..],
            "polycom phones have no NOTIFY event to reboot (they have: resync)",
        ),
        (
            &["resync", target, "--vendor", "nokia"],
            "unknown vendor `nokia`",
        ),
    ] {
        assert_refused(&bin().args(args).output().unwrap(), message);
    }

    // A Yealink answers 489 to Cisco's reboot_now, before any challenge.
    let phone = PhoneProcess::builder()
        .args(["--vendor", "yealink"])
        .start();
    let out = send(&["reboot", &format!("sip:159@{}", phone.addr("udp"))]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("489"));
}

/// A campaign's rows may name their vendor; the others get `--vendor`.
#[test]
fn a_campaign_sends_each_row_its_vendors_event() {
    let campaign = Campaign::with_rows("rows", "--accept-event check-sync", |addr| {
        format!(
            "target,password,vendor\n\
             sip:1000@{addr},pw-1000,yealink\n\
             sip:1001@{addr},pw-1001,\n\
             sip:1002@{addr},pw-1002,cisco\n"
        )
    });
    let out = campaign.batch(&["--event", "reboot", "--vendor", "snom", "--output", "json"]);
    assert_exit(&out, 0);
    let events = campaign.phone.events(3);
    assert_eq!(events["1000"], "check-sync");
    assert_eq!(events["1001"], "check-sync");
    assert_eq!(events["1002"], "reboot_now");
    let records = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        records.matches("\"event\":\"check-sync\"").count(),
        2,
        "{records}"
    );
}
