//! How the command line behaves beyond sending (issue 13): the demo that teaches, options
//! refused rather than ignored, messages that name what they are about, the user's target
//! kept as written, and output that lines up.

mod common;

use common::{
    assert_contains_all, bin, json_line, output_with_stdin, send, PhoneProcess, PASSWORD,
};
use regex::Regex;
use std::process::{Output, Stdio};

fn run(args: &[&str]) -> Output {
    bin().args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_demo_captions_each_message_and_says_what_a_phone_does() {
    let out = run(&["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for caption in [
        "without credentials yet",
        "the phone asks for credentials (401 with a nonce)",
        "sipnotify answers with an MD5 digest of the line password",
        "the phone accepts",
    ] {
        assert_eq!(stdout.matches(caption).count(), 4, "{caption}:\n{stdout}");
    }
    // Real round trips, each more than nothing.
    let after = Regex::new(r"after (\d+(?:\.\d+)?) (µs|ms)").unwrap();
    let times: Vec<f64> = after
        .captures_iter(&stdout)
        .map(|c| c[1].parse().unwrap())
        .collect();
    assert_eq!(times.len(), 8, "{stdout}");
    assert!(times.iter().all(|&t| t > 0.0), "{times:?}");
    let actions = [
        "re-fetches its configuration profile",
        "cold restarts",
        "warm restarts",
        "fetches the URL and shows the XML service",
    ];
    assert_contains_all("the demo", &stdout, &actions);
    // The first line of each message only; -v shows them whole.
    assert!(!stdout.contains("WWW-Authenticate:"));
    let verbose = text(&run(&["demo", "-v"]).stdout);
    assert_eq!(verbose.matches("WWW-Authenticate: Digest").count(), 4);
    // The way the reader ran it, for the next command.
    let next = format!(
        "{} resync sip:USER@PHONE-IP",
        env!("CARGO_BIN_EXE_sipnotify")
    );
    assert!(stdout.contains(&next), "{stdout}");
    assert!(stdout.contains("sipnotify sends the NOTIFY (Event: XML-Service)"));
}

#[test]
fn commands_that_print_only_text_refuse_json_and_csv() {
    for (command, format) in [
        (&["demo"][..], "json"),
        (&["demo"][..], "csv"),
        (&["phone", "--listen", "127.0.0.1:0"][..], "json"),
        (&["man"][..], "json"),
        (
            &["api", "--state-dir", "/nonexistent/sipnotify-api"][..],
            "json",
        ),
        (&["completions", "bash"][..], "csv"),
    ] {
        let mut args = command.to_vec();
        args.extend(["--output", format]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("`sipnotify {}` prints text only", command[0])),
            "{stderr}"
        );
    }
}

#[test]
fn the_phone_says_whom_it_answers() {
    let phone = PhoneProcess::builder()
        .users("1000-1099")
        .user("159")
        .password_template("pw-{user}")
        .start();
    let rest = text(&phone.terminate());
    assert!(
        rest.starts_with(
            "answering users 159, 1000-1099; challenge md5-qop, realm sipnotify-phone; \
             password template `pw-{user}`"
        ),
        "{rest}"
    );
    // A template of one's own is a password: not shown.
    let phone = PhoneProcess::builder().start();
    let rest = text(&phone.terminate());
    assert!(rest.starts_with("answering user 159; "), "{rest}");
    assert!(!rest.contains(PASSWORD), "{rest}");
}

#[test]
fn a_bind_error_names_the_address() {
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: nothing is sent.
    let out = run(&["resync", "sip:159@127.0.0.1:9", "--bind", "192.0.2.1:5062"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot bind 192.0.2.1:5062 (--bind): "),
        "{stderr}"
    );
}

#[test]
fn standard_input_has_one_name() {
    let out = output_with_stdin(bin().args(["batch", "-"]), b"target\nfoo\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: standard input: line 2: "),
        "{stderr}"
    );
    let help = text(&run(&["batch", "--help"]).stdout);
    assert!(help.contains("or - for standard input"), "{help}");
    for help in [help, text(&run(&["--help"]).stdout)] {
        assert!(!help.contains("stdin"), "{help}");
    }
}

#[test]
fn batch_help_points_up_to_the_options() {
    let help = text(&run(&["batch", "--help"]).stdout);
    let options = help.find("Options:").unwrap();
    let columns = help.find("Input columns").unwrap();
    assert!(
        options < columns,
        "the columns' note comes after the options"
    );
    assert!(!help.contains("options below"), "{help}");
    assert!(help.contains("option of the\nsame name above"), "{help}");
}

#[test]
fn the_target_is_kept_as_written_on_the_wire_and_in_the_output() {
    let phone = PhoneProcess::builder().transport("tcp").start();
    let target = format!("sip:159@{};transport=tcp", phone.addr("tcp"));
    let out = run(&["resync", &target, "--dry-run"]);
    let request = text(&out.stdout);
    common::assert_notify(&request, &target, &[&format!("\r\nTo: <{target}>\r\n")]);
    assert!(!request.contains("transport=TCP"), "{request}");
    let out = send(&["resync", &target, "--output", "json"]);
    let v = json_line(&out.stdout);
    assert_eq!(
        (v["outcome"].as_str(), v["target"].as_str()),
        (Some("delivered"), Some(&*target))
    );
    // Milliseconds to the microsecond: no float noise.
    let elapsed = v["elapsed_ms"].to_string();
    let decimals = elapsed.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "{elapsed}");
}

#[test]
fn a_no_credentials_line_lines_up_with_the_others() {
    let phone = PhoneProcess::builder().start();
    let target = format!("sip:159@{}", phone.addr("udp"));
    let line = |password: Option<&str>| {
        let mut command = bin();
        command
            .args(["resync", &target])
            .env_remove("SIPNOTIFY_PASSWORD");
        if let Some(password) = password {
            command.env("SIPNOTIFY_PASSWORD", password);
        }
        let out = command.output().unwrap();
        text(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let delivered = line(Some(PASSWORD));
    let no_credentials = line(None);
    assert!(
        no_credentials.starts_with("no_credentials "),
        "{no_credentials}"
    );
    assert!(delivered.starts_with("delivered "), "{delivered}");
    assert_eq!(delivered.find("sip:"), no_credentials.find("sip:"));
}
