//! Fuzzes what the HTTP channel reads from phones and builds from user input: answer
//! bodies (`read`, and `judge` for each kind of request and usual statuses) and pushed
//! objects. Invariants: no panic; what is kept of an answer is bounded (items and value
//! lengths); an object sipnotify builds or accepts is well-formed XML, and its form body
//! decodes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipnotify::http::answer::{self, Answer, Expect, MAX_ITEMS_KEPT, MAX_VALUE};
use sipnotify::http::object;

fuzz_target!(|data: &[u8]| {
    check_bounded(&answer::read(data));
    for expect in [Expect::Response, Expect::Image, Expect::DeviceInfo] {
        for status in [200, 401, 404, 500] {
            for credentials_sent in [false, true] {
                let judged = answer::judge(expect, status, "Phrase", data, credentials_sent);
                assert!(judged.items.len() <= MAX_ITEMS_KEPT);
            }
        }
    }

    let text = String::from_utf8_lossy(data);
    if let Ok(xml) = object::checked(&text) {
        let decoded: Vec<(String, String)> = form_urlencoded::parse(object::form_body(&xml).as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded, [("XML".to_string(), xml)]);
    }
    // Whatever the input, a built object is well-formed (the input is escaped).
    if let Ok(xml) = object::execute(&[text.to_string()], 0) {
        assert!(object::checked(&xml).is_ok(), "{xml:?}");
    }
    let (image, icon) = text.split_once('\n').unwrap_or((&text, &text));
    if let Ok(xml) = object::background(image, icon) {
        assert!(object::checked(&xml).is_ok(), "{xml:?}");
    }
});

fn check_bounded(read: &Answer) {
    // MAX_VALUE characters kept, each control character then escaped as `\xNN`.
    let short = |s: &str| s.chars().count() <= 4 * MAX_VALUE;
    match read {
        Answer::Response(items) => {
            assert!(items.len() <= MAX_ITEMS_KEPT);
            for item in items {
                assert!(short(&item.data) && short(&item.url), "{item:?}");
            }
        }
        Answer::Device(d) => {
            for field in [&d.mac, &d.host_name, &d.dn, &d.model, &d.firmware, &d.serial] {
                assert!(short(field), "{field:?}");
            }
        }
        Answer::Error(_) | Answer::Other => {}
    }
}
