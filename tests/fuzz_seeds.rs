//! The fuzzing seed corpus (fuzz/corpus/) run through the parsers on stable Rust, so the
//! seeds stay what they claim to be (real messages and header values the parsers accept)
//! even where nobody runs cargo-fuzz.

use std::fs;
use std::path::{Path, PathBuf};

use sipnotify::sip::codec;
use sipnotify::sip::digest;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

#[test]
fn every_codec_seed_is_a_message_we_parse_and_frame() {
    for (path, bytes) in seeds("codec") {
        let m = codec::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some((branch, number)) = codec::route_key(&bytes) {
            assert_eq!(m.top_via_branch(), Some(branch), "{}", path.display());
            assert_eq!(m.cseq().map(|c| c.0), Some(number), "{}", path.display());
        }
        if let Ok(Some(n)) = codec::frame(&bytes) {
            assert!(n <= bytes.len(), "{}", path.display());
            let cut = codec::parse(&bytes[..n]).unwrap();
            assert_eq!(cut.headers, m.headers, "{}", path.display());
        }
    }
}

#[test]
fn every_challenge_seed_line_is_a_digest_header() {
    for (path, bytes) in seeds("challenge") {
        let text = String::from_utf8(bytes).unwrap();
        for line in text.lines() {
            let challenge = digest::parse_challenge(line);
            let authorization = digest::parse_authorization(line);
            // A few seeds are there to be refused (Basic, an unknown algorithm or qop).
            let refused = line.starts_with("Basic")
                || line.contains("SHA-512-256")
                || line.contains("auth-conf");
            assert!(
                refused || challenge.is_ok() || authorization.is_ok(),
                "{}: {line:?}: {challenge:?} / {authorization:?}",
                path.display()
            );
        }
    }
}

#[test]
fn every_batch_input_seed_reads_to_its_end_without_quoting_a_password() {
    use sipnotify::campaign::input::{InputFormat, RowReader};
    for (path, bytes) in seeds("batch_input") {
        for format in [InputFormat::Csv, InputFormat::Jsonl] {
            let input = Box::new(std::io::Cursor::new(bytes.clone()));
            let Ok(reader) = RowReader::new(input, format) else {
                continue;
            };
            let items: Vec<_> = reader.take(bytes.len() + 2).collect();
            assert!(items.len() <= bytes.len() + 1, "{}", path.display());
            for item in items.iter().filter_map(|i| i.as_ref().err()) {
                assert!(!item.message.contains("fuzz-secret"), "{}", path.display());
            }
        }
    }
}

#[test]
fn every_provision_seed_is_what_its_name_says() {
    use sipnotify::provision::{check, confirm, rfc8188, rule, Ikm};
    for (path, bytes) in seeds("provision") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&bytes);
        let shown = path.display();
        if name.starts_with("rule_") {
            rule::Rule::parse(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        } else if name == "profile.xml" {
            assert!(check::check(&bytes).findings.is_empty(), "{shown}");
        } else if name.starts_with("log_") {
            assert!(confirm::parse_log_line(&text).is_some(), "{shown}");
        } else if name.starts_with("rfc8188") {
            let ikm = Ikm::from_base64url("BO3ZVPxUlnLORbVGMpbT1Q").unwrap();
            assert_eq!(
                rfc8188::decode(&bytes, &ikm).unwrap().plain,
                b"I am the walrus"
            );
        } else if name.starts_with("path_") {
            assert!(
                sipnotify::provision::serve::segments(&text).is_err(),
                "{shown}"
            );
        } else {
            // macros and regressions: they must go through without a panic or a hang.
            let _ = rule::holds(&text);
            let _ = rule::Rule::parse(&text);
        }
    }
}

#[test]
fn every_http_answer_seed_is_what_its_name_says() {
    use sipnotify::http::answer::{self, Answer};
    use sipnotify::http::object;
    for (path, bytes) in seeds("http_answer") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = String::from_utf8_lossy(&bytes);
        let (image, icon) = text.split_once('\n').unwrap_or((&text, &text));
        let built = object::background(image, icon);
        match name.as_str() {
            "background" => assert!(object::checked(&built.unwrap()).is_ok()),
            // A URL no XML can carry is refused, not built into a malformed object.
            "regression-noncharacter-url" => assert!(built.is_err(), "{name}"),
            _ => assert_ne!(answer::read(&bytes), Answer::Other, "{name}"),
        }
    }
}
