//! `captures/` holds one ladder per exchange kind, made by the tool itself. This test makes
//! them again and fails if they differ, so they cannot go stale. Random values (branch, tag,
//! Call-ID, nonces, digest response), ports and times are replaced by placeholders.
//!
//! After an intended change: `SIPNOTIFY_UPDATE_CAPTURES=1 cargo test --test captures`.

mod common;

use common::{send, PhoneProcess};
use regex::Regex;
use std::path::Path;

fn normalize(ladder: &str) -> String {
    let rules = [
        (r"branch=z9hG4bK[0-9a-f]+", "branch=z9hG4bK<branch>"),
        (r"tag=[0-9a-f]+", "tag=<tag>"),
        (r"Call-ID: \S+", "Call-ID: <call-id>"),
        (
            r#"\b(nonce|cnonce|response|opaque)="[^"]*""#,
            r#"$1="<$1>""#,
        ),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"at [0-9.]+ ms", "at <t> ms"),
        (r", [0-9.]+ ms\)", ", <t> ms)"),
        (r"sipnotify/[0-9A-Za-z.+-]+", "sipnotify/<version>"),
    ];
    let mut text = ladder.replace("\r\n", "\n");
    for (pattern, with) in rules {
        text = Regex::new(pattern)
            .unwrap()
            .replace_all(&text, with)
            .into_owned();
    }
    text
}

#[test]
fn captures_match_what_the_tool_sends_today() {
    let update = std::env::var_os("SIPNOTIFY_UPDATE_CAPTURES").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let commands: [(&str, &[&str]); 4] = [
        ("resync", &["resync"]),
        ("reboot", &["reboot"]),
        ("restart", &["restart"]),
        ("xml-service", &["xml-service"]),
    ];
    let mut stale = Vec::new();
    for (challenge, label) in [("md5-qop", "challenged"), ("none", "unchallenged")] {
        let phone = PhoneProcess::builder().challenge(challenge).start();
        for transport in ["udp", "tcp"] {
            for (name, cmd) in commands {
                let target = format!("sip:159@{}", phone.addr(transport));
                let mut args: Vec<&str> = cmd.to_vec();
                args.extend([target.as_str(), "--transport", transport, "-v"]);
                if name == "xml-service" {
                    args.push("http://10.0.0.1/services/menu.xml");
                }
                let out = send(&args);
                assert_eq!(out.status.code(), Some(0), "{args:?}");
                let text = normalize(&String::from_utf8_lossy(&out.stdout));
                let file = dir.join(format!("{transport}-{name}-{label}.txt"));
                if update {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&file, &text).unwrap();
                } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
                    stale.push(file.display().to_string());
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "captures differ from what the tool sends (run SIPNOTIFY_UPDATE_CAPTURES=1 cargo test --test captures if intended): {stale:?}"
    );
}
