//! Fuzzes what the provisioning side reads from files and the network: profile rules
//! (parse, evaluate, expand, conditions, URLs), profile XML checks, request paths,
//! fetch log lines, RFC 8188 bodies and the phone's body-to-profile pipeline. Invariants:
//! no panic; text without `$` expands to itself; and what sipnotify writes it reads back:
//! RFC 8188 (any record size), openssl-format AES-256-CBC (UTF-8 text) and gzip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipnotify::provision::confirm::parse_log_line;
use sipnotify::provision::fetch::mac_in;
use sipnotify::provision::profile::{self, Md, Secrets};
use sipnotify::provision::rule::{holds, Mac, Macros, Rule, Url};
use sipnotify::provision::serve::segments;
use sipnotify::provision::{check, rfc8188, Ikm, Key};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut macros = Macros::for_mac(Mac([0, 0x0e, 8, 1, 2, 3]));
    let _ = macros.set("SC", "k3y");
    if let Ok(rule) = Rule::parse(&text) {
        let _ = rule.evaluate(&macros);
    }
    let _ = holds(&text);
    let expanded = macros.expand(&text);
    if !text.contains('$') {
        assert_eq!(expanded, text);
    }
    let _ = Url::parse(&text);
    let _ = Mac::parse(&text);
    let _ = mac_in(&text);
    let _ = segments(&text);
    let _ = parse_log_line(&text);
    let _ = check::check(data);

    let ikm = Ikm::from_base64url("BO3ZVPxUlnLORbVGMpbT1Q").unwrap();
    let key = Key::new("k3y");
    let _ = rfc8188::decode(data, &ikm);
    let _ = profile::decrypt(data, &key, Md::Sha256);
    let aes128gcm = data.first().is_some_and(|b| b & 1 == 1);
    let _ = profile::open(data, aes128gcm, Secrets { key: Some(&key), ikm: Some(&ikm) });

    let record_size = 18 + u32::from(data.first().copied().unwrap_or(0));
    let body = rfc8188::encode(data, &ikm, [7; 16], record_size, b"id").unwrap();
    assert_eq!(rfc8188::decode(&body, &ikm).unwrap().plain, data);
    let sealed = profile::encrypt(text.as_bytes(), &key, Md::Md5, [9; 8]);
    assert_eq!(profile::decrypt(&sealed, &key, Md::Md5).unwrap(), text.as_bytes());
    assert_eq!(profile::gunzip(&profile::gzip(data)).unwrap(), data);
});
