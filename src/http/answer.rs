//! What a phone's web server answers, read tolerantly and judged into an outcome (sans-IO).
//!
//! A pushed object is answered with a `CiscoIPPhoneResponse` (one `ResponseItem` per item,
//! `Status="0"` on success, in any order) or a `CiscoIPPhoneError Number="N"` (1 parse,
//! 2 framing, 3 internal file, 4 authentication), usually with HTTP 200; MPP firmware
//! answers neither, so there the HTTP status decides.

use crate::proto::OutcomeKind;
use serde::Serialize;

/// The most bytes of an answer read for an object or device information.
pub const MAX_ANSWER: usize = 64 * 1024;

/// The most bytes of a screenshot read.
pub const MAX_SCREENSHOT: usize = 8 << 20;

/// What the action asked for, which decides how an answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A `CiscoIPPhoneResponse`, a `CiscoIPPhoneError`, or anything with a 2xx (MPP).
    Response,
    /// An image.
    Image,
    /// A `DeviceInformation` document.
    DeviceInfo,
    /// A page of the MPP web interface (`/admin/...`): judged by the status alone.
    Page,
}

/// One `ResponseItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseItem {
    /// `Status`, as a number when it is one (0 is success).
    pub status: Option<i64>,
    /// `Data` (`Success`, or why not).
    pub data: String,
    /// `URL`, the item it answers.
    #[serde(rename = "url")]
    pub url: String,
}

/// A phone's answer body, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `CiscoIPPhoneResponse` with its items.
    Response(Vec<ResponseItem>),
    /// `CiscoIPPhoneError` and its `Number`.
    Error(Option<u32>),
    /// A `DeviceInformation` document.
    Device(DeviceInfo),
    /// Anything else (empty, HTML, not XML).
    Other,
}

/// A phone's identity from `/DeviceInformationX`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// `MACAddress`.
    pub mac: String,
    /// `HostName` (SEP and the MAC on CUCM phones).
    pub host_name: String,
    /// `phoneDN`, the directory number.
    pub dn: String,
    /// `modelNumber`.
    pub model: String,
    /// `versionID`, else `appLoadID`.
    pub firmware: String,
    /// `serialNumber`.
    pub serial: String,
}

/// The most ResponseItems kept from one answer.
pub const MAX_ITEMS_KEPT: usize = 16;

/// The most characters kept of a value from the phone (before control characters are
/// escaped, each as 4 characters `\xNN`).
pub const MAX_VALUE: usize = 256;

/// Reads an answer body. Never fails: what is not a known document is [`Answer::Other`].
/// Names are matched without regard to case, since firmware differs.
pub fn read(body: &[u8]) -> Answer {
    let body = &body[..body.len().min(MAX_ANSWER)];
    let text = String::from_utf8_lossy(body);
    let Ok(doc) = roxmltree::Document::parse(text.trim_start_matches('\u{feff}')) else {
        return Answer::Other;
    };
    let root = doc.root_element();
    let name = root.tag_name().name();
    let attr = |node: roxmltree::Node<'_, '_>, wanted: &str| {
        node.attributes()
            .find(|a| a.name().eq_ignore_ascii_case(wanted))
            .map(|a| short(a.value()))
    };
    if name.eq_ignore_ascii_case("CiscoIPPhoneError") {
        return Answer::Error(attr(root, "Number").and_then(|n| n.trim().parse().ok()));
    }
    if name.eq_ignore_ascii_case("CiscoIPPhoneResponse") {
        let items = root
            .children()
            .filter(|n| n.tag_name().name().eq_ignore_ascii_case("ResponseItem"))
            .take(MAX_ITEMS_KEPT)
            .map(|n| ResponseItem {
                status: attr(n, "Status").and_then(|s| s.trim().parse().ok()),
                data: attr(n, "Data").unwrap_or_default(),
                url: attr(n, "URL").unwrap_or_default(),
            })
            .collect();
        return Answer::Response(items);
    }
    if name.eq_ignore_ascii_case("DeviceInformation") {
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|wanted| {
                    root.children()
                        .find(|n| n.tag_name().name().eq_ignore_ascii_case(wanted))
                        .and_then(|n| n.text())
                        .map(|t| short(t.trim()))
                        .filter(|t| !t.is_empty())
                })
                .unwrap_or_default()
        };
        return Answer::Device(DeviceInfo {
            mac: field(&["MACAddress"]),
            host_name: field(&["HostName"]),
            dn: field(&["phoneDN"]),
            model: field(&["modelNumber"]),
            firmware: field(&["versionID", "appLoadID"]),
            serial: field(&["serialNumber"]),
        });
    }
    Answer::Other
}

/// A value from the phone, bounded and safe for a terminal.
fn short(value: &str) -> String {
    let value: String = value.chars().take(MAX_VALUE).collect();
    crate::text::printable(&value, false).into_owned()
}

/// What a `CiscoIPPhoneError` number means.
pub fn error_meaning(number: Option<u32>) -> &'static str {
    match number {
        Some(1) => "parse error",
        Some(2) => "framing error",
        Some(3) => "internal file error",
        Some(4) => "authentication error",
        _ => "unknown error",
    }
}

/// Whether the bytes start like an image a phone sends (PNG, BMP, JPEG, GIF).
pub fn is_image(body: &[u8]) -> bool {
    body.starts_with(b"\x89PNG\r\n\x1a\n")
        || body.starts_with(b"BM")
        || body.starts_with(b"\xff\xd8\xff")
        || body.starts_with(b"GIF8")
}

/// An answer judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// How the target ended.
    pub kind: OutcomeKind,
    /// Why, in words (the HTTP reason phrase when all went well).
    pub reason: String,
    /// Advice for the usual causes.
    pub hint: Option<&'static str>,
    /// The `CiscoIPPhoneError` number, if one came.
    pub phone_error: Option<u32>,
    /// The `ResponseItem`s, if any came.
    pub items: Vec<ResponseItem>,
    /// The device information, for [`Expect::DeviceInfo`].
    pub device: Option<DeviceInfo>,
}

/// Hint for a 404 from `/CGI/Execute` and friends.
pub const HINT_NOT_FOUND: &str = "the phone has no such page: its web access may be disabled (CUCM: Web Access), or XML execution (SPA/MPP: CISCO XML EXE Enable)";
/// Hint for a 404 from an MPP web action.
pub const HINT_NO_ADMIN: &str = "the phone has no such page: /admin/resync, /admin/upgrade and /admin/reboot are MPP and SPA firmware's, with the web server enabled (Enable Web Server, Enable Web Admin Access)";
/// Hint for credentials an MPP web action refused.
pub const HINT_ADMIN_AUTH: &str = "credentials refused: the MPP web actions take the phone's admin user (--user, default admin) and its Admin Login password";
/// Hint for an authentication failure.
pub const HINT_AUTH: &str = "credentials refused: the user must be associated with the device (CUCM) and the phone's Authentication URL must answer AUTHORIZED; SPA/MPP: CISCO XML EXE Auth Mode and its password";
/// Hint for a 401 with no credentials to answer it.
pub const HINT_NO_CREDENTIALS: &str =
    "the phone asks for credentials: give --user and a password (--password-file or SIPNOTIFY_PASSWORD)";

/// Judges a final HTTP answer. `status` is the HTTP status (a 401 reaching here was
/// answered with credentials, or there were none to give: `credentials_sent` says which).
pub fn judge(
    expect: Expect,
    status: u16,
    phrase: &str,
    body: &[u8],
    credentials_sent: bool,
) -> Judged {
    let mut judged = Judged {
        kind: OutcomeKind::Rejected,
        reason: crate::text::printable(phrase, false).into_owned(),
        hint: None,
        phone_error: None,
        items: Vec::new(),
        device: None,
    };
    match status {
        401 if credentials_sent => {
            judged.kind = OutcomeKind::AuthFailed;
            judged.hint = Some(if expect == Expect::Page {
                HINT_ADMIN_AUTH
            } else {
                HINT_AUTH
            });
            return judged;
        }
        401 => {
            judged.kind = OutcomeKind::NoCredentials;
            judged.hint = Some(HINT_NO_CREDENTIALS);
            return judged;
        }
        404 => {
            judged.hint = Some(if expect == Expect::Page {
                HINT_NO_ADMIN
            } else {
                HINT_NOT_FOUND
            });
            return judged;
        }
        200..=299 => {}
        _ => return judged,
    }
    // An image is judged by its bytes: it is not XML.
    if expect == Expect::Image && is_image(body) {
        judged.kind = OutcomeKind::Delivered;
        return judged;
    }
    match read(body) {
        Answer::Error(number) => {
            judged.phone_error = number;
            judged.reason = format!(
                "CiscoIPPhoneError {} ({})",
                number.map_or("without a number".to_string(), |n| n.to_string()),
                error_meaning(number)
            );
            if number == Some(4) {
                judged.kind = OutcomeKind::AuthFailed;
                judged.hint = Some(HINT_AUTH);
            }
        }
        Answer::Response(items) if expect == Expect::Response => {
            let failed: Vec<&ResponseItem> = items.iter().filter(|i| i.status != Some(0)).collect();
            if failed.is_empty() {
                judged.kind = OutcomeKind::Delivered;
            } else {
                judged.reason = failed
                    .iter()
                    .map(|i| {
                        let status = i.status.map_or("?".to_string(), |s| s.to_string());
                        format!("item {} failed: Status {status} {}", i.url, i.data)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            judged.items = items;
        }
        Answer::Device(device) if expect == Expect::DeviceInfo => {
            judged.kind = OutcomeKind::Delivered;
            judged.device = Some(device);
        }
        // MPP answers a push with a bare 2xx, and its web actions with a page.
        _ if matches!(expect, Expect::Response | Expect::Page) => {
            judged.kind = OutcomeKind::Delivered
        }
        _ if expect == Expect::Image => {
            judged.reason = format!("{} but the body is not an image", judged.reason);
        }
        _ => {
            judged.reason = format!(
                "{} but the body is not a DeviceInformation document",
                judged.reason
            );
        }
    }
    judged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_errors_and_devices_are_read() {
        let items = read(br#"<CiscoIPPhoneResponse><ResponseItem Status="0" Data="Success" URL="Dial:1"/><responseitem status="1" data="no" url="Key:X"/></CiscoIPPhoneResponse>"#);
        let Answer::Response(items) = items else {
            panic!("{items:?}")
        };
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].status, items[1].status), (Some(0), Some(1)));
        assert_eq!(items[1].url, "Key:X");
        assert_eq!(
            read(b"<CiscoIPPhoneError Number=\"4\"/>"),
            Answer::Error(Some(4))
        );
        assert_eq!(
            read(b"<CiscoIPPhoneError Number=\"x\"/>"),
            Answer::Error(None)
        );
        assert_eq!(read(b"<html>Not Found"), Answer::Other);
        assert_eq!(read(b""), Answer::Other);
        assert_eq!(read(&[0xff; 100]), Answer::Other);
        let device = read(
            b"<?xml version=\"1.0\"?>\n<DeviceInformation><MACAddress>0011223344AA</MACAddress>\
            <HostName>SEP0011223344AA</HostName><phoneDN>1001</phoneDN><appLoadID>app</appLoadID>\
            <versionID>sip88xx.14-2-1</versionID><serialNumber>FCH1</serialNumber>\
            <modelNumber>CP-8845</modelNumber></DeviceInformation>",
        );
        let Answer::Device(d) = device else { panic!() };
        assert_eq!(
            (
                d.mac.as_str(),
                d.host_name.as_str(),
                d.dn.as_str(),
                d.model.as_str(),
                d.firmware.as_str(),
                d.serial.as_str()
            ),
            (
                "0011223344AA",
                "SEP0011223344AA",
                "1001",
                "CP-8845",
                "sip88xx.14-2-1",
                "FCH1"
            )
        );
    }

    #[test]
    fn hostile_answers_are_bounded() {
        let huge = format!(
            "<CiscoIPPhoneResponse>{}</CiscoIPPhoneResponse>",
            "<ResponseItem Status=\"0\"/>".repeat(1000)
        );
        match read(huge.as_bytes()) {
            // Cut at MAX_ANSWER: no longer well-formed, or at most MAX_ITEMS_KEPT items.
            Answer::Other => {}
            Answer::Response(items) => assert!(items.len() <= MAX_ITEMS_KEPT),
            other => panic!("{other:?}"),
        }
        let long = format!(
            "<CiscoIPPhoneResponse><ResponseItem Status=\"1\" Data=\"{}\"/></CiscoIPPhoneResponse>",
            "a".repeat(10_000)
        );
        let Answer::Response(items) = read(long.as_bytes()) else {
            panic!()
        };
        assert_eq!(items[0].data.len(), MAX_VALUE);
        let bomb = "<!DOCTYPE a [<!ENTITY b \"bbbbbbbbbb\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">]><CiscoIPPhoneError Number=\"&g;\"/>";
        assert!(matches!(
            read(bomb.as_bytes()),
            Answer::Other | Answer::Error(None)
        ));
    }

    /// Mutated and truncated answers (a small deterministic fuzz): reading and judging
    /// never panic, and whatever they keep is bounded.
    #[test]
    fn any_bytes_are_read_without_panic() {
        let seeds: [&[u8]; 3] = [
            b"<CiscoIPPhoneResponse><ResponseItem Status=\"0\" Data=\"Success\" URL=\"Key:Services\"/></CiscoIPPhoneResponse>",
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><CiscoIPPhoneError Number=\"4\"/>",
            b"<DeviceInformation><MACAddress>0011223344AA</MACAddress><phoneDN>1</phoneDN></DeviceInformation>",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, b"<>\"&;=/\x00\xff"[(next() % 9) as usize]),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            for expect in [Expect::Response, Expect::Image, Expect::DeviceInfo] {
                let judged = judge(expect, 200, "OK", &bytes, true);
                assert!(judged.items.len() <= MAX_ITEMS_KEPT);
            }
        }
    }

    #[test]
    fn judging() {
        let ok = judge(Expect::Response, 200, "OK", b"<CiscoIPPhoneResponse><ResponseItem Status=\"0\" Data=\"Success\" URL=\"Key:Services\"/></CiscoIPPhoneResponse>", true);
        assert_eq!((ok.kind, ok.items.len()), (OutcomeKind::Delivered, 1));
        let failing = judge(Expect::Response, 200, "OK", b"<CiscoIPPhoneResponse><ResponseItem Status=\"0\" URL=\"a\"/><ResponseItem Status=\"6\" Data=\"Bad\" URL=\"Key:Nope\"/></CiscoIPPhoneResponse>", true);
        assert_eq!(failing.kind, OutcomeKind::Rejected);
        assert!(
            failing.reason.contains("Key:Nope") && failing.reason.contains("Status 6"),
            "{}",
            failing.reason
        );
        let e4 = judge(
            Expect::Response,
            200,
            "OK",
            b"<CiscoIPPhoneError Number=\"4\" />",
            true,
        );
        assert_eq!(
            (e4.kind, e4.phone_error),
            (OutcomeKind::AuthFailed, Some(4))
        );
        let e1 = judge(
            Expect::Image,
            200,
            "OK",
            b"<CiscoIPPhoneError Number=\"1\" />",
            true,
        );
        assert_eq!((e1.kind, e1.phone_error), (OutcomeKind::Rejected, Some(1)));
        assert!(e1.reason.contains("parse error"));
        let table: [(Expect, u16, &[u8], bool, OutcomeKind); 7] = [
            (Expect::Response, 200, b"", false, OutcomeKind::Delivered),
            (Expect::Response, 401, b"", true, OutcomeKind::AuthFailed),
            (
                Expect::Response,
                401,
                b"",
                false,
                OutcomeKind::NoCredentials,
            ),
            (
                Expect::Image,
                200,
                b"\x89PNG\r\n\x1a\nrest",
                true,
                OutcomeKind::Delivered,
            ),
            (Expect::Image, 200, b"<html/>", true, OutcomeKind::Rejected),
            (
                Expect::DeviceInfo,
                200,
                b"<x/>",
                true,
                OutcomeKind::Rejected,
            ),
            (Expect::Response, 500, b"", true, OutcomeKind::Rejected),
        ];
        for (expect, status, body, with_credentials, kind) in table {
            assert_eq!(
                judge(expect, status, "Phrase", body, with_credentials).kind,
                kind,
                "{expect:?} {status} {body:?} {with_credentials}"
            );
        }
        let nf = judge(Expect::Response, 404, "Not Found", b"", true);
        assert_eq!(
            (nf.kind, nf.hint),
            (OutcomeKind::Rejected, Some(HINT_NOT_FOUND))
        );
    }
}
