//! The HTTP commands (execute, background, push, screenshot, info) as the real binary
//! against the simulated phone's web server, on loopback; curl as a client we did not
//! write; and the exact form body against a listener that records it.

mod common;

use common::pki::phones_ca;
use common::{bin, json_line, png_pixel, solid_png, temp_dir, FileServer, PhoneProcess, PASSWORD};
use common::{web_builder, web_phone, web_stopped};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn web_addr(phone: &PhoneProcess) -> SocketAddr {
    phone.addr("http")
}

/// Runs `sipnotify ARGS` with the web password in the environment (none for `None`).
fn run(args: &[&str], password: Option<&str>) -> Output {
    let mut command = bin();
    command.args(args).env_remove("SIPNOTIFY_PASSWORD");
    if let Some(password) = password {
        command.env("SIPNOTIFY_PASSWORD", password);
    }
    command.output().expect("run sipnotify")
}

/// [`run`] as user `admin`, with `password`.
fn run_as_admin(args: &[&str], password: &str) -> Output {
    run(&[args, &["--user", "admin"]].concat(), Some(password))
}

/// [`run`] of `batch ROWS --channel http --action ACTION EXTRA...`, with no password.
fn http_batch(rows: &Path, action: &str, extra: &[&str]) -> Output {
    let rows = rows.to_str().unwrap();
    let args = ["batch", rows, "--channel", "http", "--action", action];
    run(&[&args[..], extra].concat(), None)
}

/// A new folder for the test `name`, and its `rows.csv` holding `text`.
fn rows_csv(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let rows = dir.join("rows.csv");
    std::fs::write(&rows, text).unwrap();
    (dir, rows)
}

/// The run exited with `code`, and `said` (its stdout, its stderr or both) contains `part`.
#[track_caller]
fn assert_exit_saying(out: &Output, code: i32, said: &[u8], part: &str) {
    assert_eq!(out.status.code(), Some(code), "for {part:?}: {}", text(out));
    assert!(
        String::from_utf8_lossy(said).contains(part),
        "no {part:?} in:\n{}",
        text(out)
    );
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The web server's counters, printed when it stops: `(requests, executed, backgrounds,
/// failed downloads, refused)`.
fn web_counters(phone: PhoneProcess) -> (u64, u64, u64, u64, u64) {
    let line = web_stopped(phone);
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[2], n[3], n[4], n[5])
}

#[test]
fn every_command_with_basic_digest_and_no_auth() {
    let files = FileServer::start(vec![
        ("/bg.png", solid_png(320, 196, [0, 0, 255])),
        ("/tn.png", solid_png(80, 49, [0, 0, 255])),
    ]);
    let dir = temp_dir("every");
    let object = dir.join("text.xml");
    std::fs::write(
        &object,
        "<CiscoIPPhoneText><Title>T</Title><Text>hello &amp; bye</Text></CiscoIPPhoneText>\n",
    )
    .unwrap();
    for auth in ["basic", "digest", "none"] {
        let phone = web_phone(auth, &[]);
        let addr = web_addr(&phone).to_string();
        let password = (auth != "none").then_some(PASSWORD);
        let user = ["--user", "admin"];
        fn with<'a>(args: &[&'a str], user: &[&'a str]) -> Vec<&'a str> {
            [args, user].concat()
        }
        let shot = dir.join(format!("{auth}.png"));
        let (image, icon) = (files.url("/bg.png"), files.url("/tn.png"));
        let commands: Vec<Vec<&str>> = vec![
            with(&["execute", &addr, "Key:Services", "Dial:1234"], &user),
            with(
                &["background", &addr, "--image", &image, "--icon", &icon],
                &user,
            ),
            with(&["push", &addr, "--xml", object.to_str().unwrap()], &user),
            with(&["screenshot", &addr, "-o", shot.to_str().unwrap()], &user),
            with(&["info", &addr], &user),
        ];
        for args in &commands {
            let out = run(&[&args[..], &["--output", "json"]].concat(), password);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{auth} {args:?}: {}",
                text(&out)
            );
            let record = json_line(&out.stdout);
            assert_eq!(record["outcome"], "delivered", "{auth} {args:?}");
            assert_eq!(record["http_status"], 200);
            assert!(
                record.get("call_id").is_none() && record.get("retransmissions").is_none(),
                "no SIP leftovers: {record}"
            );
            // Digest: the first request is challenged.
            let attempts = if auth == "digest" && args[0] != "info" {
                2
            } else {
                1
            };
            assert_eq!(record["attempts"], attempts, "{auth} {args:?}: {record}");
            if args[0] == "execute" {
                let items = record["items"].as_array().unwrap();
                assert_eq!(items.len(), 2);
                assert!(items.iter().all(|i| i["status"] == 0));
            }
            if args[0] == "info" {
                let device = &record["device"];
                let mac = device["mac"].as_str().unwrap();
                assert_eq!(mac.len(), 12, "{device}");
                assert_eq!(device["host_name"], format!("SEP{mac}"));
                assert_eq!(device["model"], "CP-8845");
                assert!(device["firmware"].as_str().unwrap().starts_with("sip88xx"));
                assert!(device["serial"].as_str().unwrap().starts_with("FCH"));
                assert!(device["dn"].as_str().unwrap().parse::<u32>().is_ok());
            }
        }
        // The screenshot is a valid PNG of the screen showing the blue background.
        let png = std::fs::read(&shot).unwrap();
        let (size, below_bar) = png_pixel(&png, 80, 60);
        assert_eq!((size, below_bar), ((160, 96), [0, 0, 255]), "{auth}");
        // The phone downloaded both files, from its own address.
        let (requests, executed, backgrounds, failed, refused) = web_counters(phone);
        assert_eq!((executed, backgrounds, failed), (3, 1, 0), "{auth}");
        let expected_refused = if auth == "digest" { 4 } else { 0 };
        assert_eq!(refused, expected_refused, "{auth}");
        assert_eq!(requests, 5 + expected_refused, "{auth}");
    }
    let hits = files.hits();
    assert_eq!(hits.values().sum::<u32>(), 6, "{hits:?}");
}

#[test]
fn wrong_passwords_exit_3_in_both_styles() {
    // CUCM style: HTTP 200 and CiscoIPPhoneError 4.
    let phone = web_phone("basic", &[]);
    let addr = web_addr(&phone).to_string();
    let out = run_as_admin(
        &["execute", &addr, "Key:Services", "--output", "json"],
        "wrong",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let record = json_line(&out.stdout);
    assert_eq!(
        (
            &record["outcome"],
            &record["phone_error"],
            &record["http_status"]
        ),
        (&"auth_failed".into(), &4.into(), &200.into())
    );
    // Without credentials, the Basic phone challenges: no_credentials, exit 2.
    let out = run(&["execute", &addr, "Key:Services"], None);
    assert_exit_saying(&out, 2, &out.stdout, "no_credentials");
    drop(phone);
    // Newer firmware: 401.
    for (auth, extra) in [("basic", &["--http-reject-401"][..]), ("digest", &[][..])] {
        let phone = web_phone(auth, extra);
        let addr = web_addr(&phone).to_string();
        let shot = ["screenshot", &addr, "-o", "/nonexistent/x.png"];
        let out = run_as_admin(&[&shot[..], &["--output", "json"]].concat(), "wrong");
        assert_eq!(out.status.code(), Some(3), "{auth}: {}", text(&out));
        let record = json_line(&out.stdout);
        assert_eq!(
            (&record["outcome"], &record["http_status"]),
            (&"auth_failed".into(), &401.into()),
            "{auth}"
        );
        assert!(record["phone_error"].is_null());
    }
}

#[test]
fn objects_too_large_or_malformed_and_a_fourth_item_are_refused_unsent() {
    let phone = web_phone("none", &[]);
    let addr = web_addr(&phone).to_string();
    let dir = temp_dir("refused");
    // Exactly 513 bytes, then 512.
    let wrap = |n: usize| {
        let frame = "<CiscoIPPhoneText><Text></Text></CiscoIPPhoneText>";
        format!(
            "<CiscoIPPhoneText><Text>{}</Text></CiscoIPPhoneText>",
            "x".repeat(n - frame.len())
        )
    };
    let big = dir.join("big.xml");
    std::fs::write(&big, wrap(513)).unwrap();
    let out = run(&["push", &addr, "--xml", big.to_str().unwrap()], None);
    assert_exit_saying(&out, 2, &out.stderr, "513 bytes");
    let malformed = dir.join("bad.xml");
    std::fs::write(
        &malformed,
        "<CiscoIPPhoneText><Text>x</Txt></CiscoIPPhoneText>",
    )
    .unwrap();
    let out = run(&["push", &addr, "--xml", malformed.to_str().unwrap()], None);
    assert_exit_saying(&out, 2, &out.stderr, "well-formed");
    let four = ["execute", &addr, "Key:A", "Key:B", "Key:C", "Key:D"];
    let out = run(&four, None);
    assert_exit_saying(&out, 2, &out.stderr, "1 to 3 items; 4 given");
    let out = run(&["execute", &addr, "ftp://h/x"], None);
    assert_exit_saying(&out, 2, &out.stderr, "Dial:");
    assert_eq!(web_counters(phone).0, 0, "nothing was sent");
    // The limits themselves: 512 bytes and 3 items are sent.
    let phone = web_phone("none", &[]);
    let addr = web_addr(&phone).to_string();
    let ok = dir.join("ok.xml");
    std::fs::write(&ok, wrap(512)).unwrap();
    let out = run(&["push", &addr, "--xml", ok.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        &[
            "execute", &addr, "Key:A", "Key:B", "Key:C", "--output", "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_line(&out.stdout)["items"].as_array().unwrap().len(), 3);
    // A larger object where the phone takes it: --max-object on both sides.
    let big = ["push", &addr, "--xml", big.to_str().unwrap()];
    let out = run(&[&big[..], &["--max-object", "1024"]].concat(), None);
    // The simulator's 512-byte limit.
    assert_exit_saying(&out, 4, &out.stdout, "CiscoIPPhoneError 2");
}

#[test]
fn a_background_is_downloaded_by_the_phone_and_a_missing_image_is_reported() {
    let files = FileServer::start(vec![
        ("/bg.png", solid_png(320, 196, [0, 200, 0])),
        ("/tn.png", solid_png(80, 49, [0, 200, 0])),
    ]);
    let phone = web_phone("basic", &[]);
    let addr = web_addr(&phone).to_string();
    let dir = temp_dir("background");
    let shot = dir.join("shot.png");
    let background = |image: &str, extra: &[&str]| {
        let icon = files.url("/tn.png");
        let args = ["background", &addr, "--image", image, "--icon", &icon];
        run_as_admin(&[&args[..], extra].concat(), PASSWORD)
    };
    let good = background(&files.url("/bg.png"), &[]);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    let screenshot = |expect: [u8; 3]| {
        let out = run_as_admin(
            &["screenshot", &addr, "-o", shot.to_str().unwrap()],
            PASSWORD,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(png_pixel(&std::fs::read(&shot).unwrap(), 8, 40).1, expect);
    };
    screenshot([0, 200, 0]);
    let missing = background(&files.url("/missing.png"), &["--output", "json"]);
    assert_eq!(missing.status.code(), Some(4), "{}", text(&missing));
    let record = json_line(&missing.stdout);
    assert_eq!(record["outcome"], "rejected");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("/missing.png") && reason.contains("404"),
        "{reason}"
    );
    let items = record["items"].as_array().unwrap();
    assert_eq!(
        (items[0]["status"].as_i64(), items[1]["status"].as_i64()),
        (Some(1), Some(0))
    );
    // The screen shows the failed download (red stripes at the first pixel below the bar).
    screenshot([0xc0, 0x20, 0x20]);
    let hits = files.hits();
    let phone_ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(hits.get(&(phone_ip, "/bg.png".into())), Some(&1));
    assert_eq!(hits.get(&(phone_ip, "/tn.png".into())), Some(&2));
    assert_eq!(hits.get(&(phone_ip, "/missing.png".into())), Some(&1));
    let (_, _, backgrounds, failed, _) = web_counters(phone);
    assert_eq!((backgrounds, failed), (1, 1));
}

/// A listener that records one request and answers a CiscoIPPhoneResponse.
fn record_one_request() -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0; 4096];
        // Head, then Content-Length bytes of body.
        loop {
            let n = stream.read(&mut buf).unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            assert!(n > 0, "the request ended early");
        }
        let body = "<CiscoIPPhoneResponse><ResponseItem Status=\"0\" Data=\"Success\" URL=\"Key:Services\"/></CiscoIPPhoneResponse>";
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        request
    });
    (addr, thread)
}

/// The documented request: `POST /CGI/Execute` (that case), a form of
/// `application/x-www-form-urlencoded` whose one field is `XML` (that case) holding the
/// object URL-encoded, and Basic credentials.
#[test]
fn the_form_body_is_the_documented_one() {
    let (addr, request) = record_one_request();
    let out = run_as_admin(
        &["execute", &addr.to_string(), "Key:Services", "-v"],
        PASSWORD,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let request = String::from_utf8(request.join().unwrap()).unwrap();
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("POST /CGI/Execute HTTP/1.1"));
    let headers: Vec<&str> = lines.collect();
    assert!(
        headers.contains(&"Content-Type: application/x-www-form-urlencoded"),
        "{head}"
    );
    assert!(
        headers.contains(&format!("Host: {addr}").as_str()),
        "{head}"
    );
    assert!(
        headers.contains(&format!("Content-Length: {}", body.len()).as_str()),
        "{head}"
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    assert!(
        headers.contains(&format!("Authorization: Basic {basic}").as_str()),
        "{head}"
    );
    assert_eq!(
        body,
        "XML=%3CCiscoIPPhoneExecute%3E%3CExecuteItem+Priority%3D%220%22+URL%3D%22Key%3AServices%22%2F%3E%3C%2FCiscoIPPhoneExecute%3E"
    );
    let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(
        fields,
        vec![("XML".to_string(), "<CiscoIPPhoneExecute><ExecuteItem Priority=\"0\" URL=\"Key:Services\"/></CiscoIPPhoneExecute>".to_string())]
    );
    // The -v ladder shows the request with its credentials masked.
    let shown = text(&out);
    assert!(shown.contains("Authorization: Basic <redacted>"), "{shown}");
    assert!(
        !shown.contains(&basic) && !shown.contains(PASSWORD),
        "{shown}"
    );
}

#[test]
fn dry_run_shows_the_request_masked_and_sends_nothing() {
    let phone = web_phone("basic", &[]);
    let addr = web_addr(&phone).to_string();
    let out = run_as_admin(&["execute", &addr, "Dial:1001", "--dry-run"], PASSWORD);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("POST /CGI/Execute HTTP/1.1")
            && shown.contains("Authorization: Basic <redacted>"),
        "{shown}"
    );
    assert!(!shown.contains(PASSWORD));
    assert_eq!(web_counters(phone).0, 0);
}

#[test]
fn phone_addresses_and_unreachable_phones() {
    for bad in [
        "ftp://10.0.0.7",
        "http://admin:pw@127.0.0.1",
        "127.0.0.1/CGI/Execute",
        "::1",
    ] {
        let out = run(&["info", bad], None);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(!text(&out).contains("pw@"));
    }
    // Nothing listens on this port: unreachable, exit 5.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run(
        &["info", &format!("http://{closed}/"), "--output", "json"],
        None,
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(json_line(&out.stdout)["outcome"], "unreachable");
    // A phone that never answers: timeout, exit 5, in the time given.
    let phone = web_phone("none", &["--drop", "100"]);
    let started = std::time::Instant::now();
    let out = run(
        &["info", &web_addr(&phone).to_string(), "--timeout", "0.5"],
        None,
    );
    // What it printed starts with `timeout`.
    assert_exit_saying(&out, 5, out.stdout.get(..7).unwrap_or_default(), "timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // A 404 names the settings that usually cause it.
    let (addr, _request) = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (
            addr,
            std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = [0; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }),
        )
    };
    let out = run(&["execute", &addr.to_string(), "Key:Services"], None);
    assert_exit_saying(&out, 4, &out.stdout, "CISCO XML EXE Enable");
}

/// Whether curl is installed; where it is not, outside CI, the test says it skipped.
fn curl_installed() -> bool {
    let installed = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is missing and CI is set"
        );
        eprintln!("SKIPPED: curl is not installed");
    }
    installed
}

/// `curl ARGS`, which must succeed: the HTTP status and the body.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", text(&out));
    let body = String::from_utf8(out.stdout).unwrap();
    let (body, code) = body.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

/// curl, a client nobody here wrote, against the simulator.
#[test]
fn curl_against_the_simulator() {
    if !curl_installed() {
        return;
    }
    let object =
        "XML=<CiscoIPPhoneExecute><ExecuteItem URL=\"Key:Services\"/></CiscoIPPhoneExecute>";
    let login = format!("admin:{PASSWORD}");
    for auth in ["basic", "digest"] {
        let phone = web_phone(auth, &[]);
        let url = format!("http://{}", web_addr(&phone));
        let execute = format!("{url}/CGI/Execute");
        let scheme = format!("--{auth}");
        let as_admin = |args: &[&str]| curl(&[&[scheme.as_str(), "-u", &login][..], args].concat());
        let (code, body) = as_admin(&["--data-urlencode", object, &execute]);
        assert_eq!(code, "200", "{auth}: {body}");
        assert!(
            body.contains("<ResponseItem Status=\"0\" Data=\"Success\" URL=\"Key:Services\"/>"),
            "{auth}: {body}"
        );
        // Unencoded, as old scripts post it, is read too.
        let (code, body) = as_admin(&["--data-binary", object, &execute]);
        assert_eq!(
            (code.as_str(), body.contains("Status=\"0\"")),
            ("200", true),
            "{auth}: {body}"
        );
        // The field name is case-sensitive: `xml` is not read.
        let lower = object.replacen("XML=", "xml=", 1);
        let (_, body) = as_admin(&["--data-urlencode", &lower, &execute]);
        assert!(
            body.contains("<CiscoIPPhoneError Number=\"1\"/>"),
            "{auth}: {body}"
        );
        // So is the path.
        let (code, _) = as_admin(&["--data-urlencode", object, &format!("{url}/cgi/execute")]);
        assert_eq!(code, "404");
        // Credentials: none is a 401 with the phone's challenge.
        let (code, _) = curl(&["--data-urlencode", object, &execute]);
        assert_eq!(code, "401", "{auth}");
        let shot = temp_dir("curl").join(format!("{auth}.png"));
        let (code, _) = as_admin(&[
            "-o",
            shot.to_str().unwrap(),
            &format!("{url}/CGI/Screenshot"),
        ]);
        assert_eq!(code, "200");
        assert_eq!(png_pixel(&std::fs::read(&shot).unwrap(), 0, 0).0, (160, 96));
        let (code, body) = curl(&[&format!("{url}/DeviceInformationX")]);
        assert_eq!(code, "200");
        assert!(
            body.contains("<modelNumber>CP-8845</modelNumber>"),
            "{body}"
        );
    }
    let phone = web_phone("basic", &[]);
    let (code, body) = curl(&[
        "--basic",
        "-u",
        "admin:wrong",
        "--data-urlencode",
        object,
        &format!("http://{}/CGI/Execute", web_addr(&phone)),
    ]);
    assert_eq!(
        (code.as_str(), body.trim_end()),
        (
            "200",
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneError Number=\"4\"/>"
        )
    );
}

/// curl with `--cacert` (the CA its only trust) against the simulator serving HTTPS
/// (`--http-tls`); without it, curl refuses the certificate.
#[test]
fn curl_with_cacert_against_the_https_simulator() {
    if !curl_installed() {
        return;
    }
    let (_, pki, leaf) = phones_ca("curl-https", &["127.0.0.1"]);
    let phone = web_phone("basic", &[&["--http-tls"][..], &leaf.options()].concat());
    let url = format!("https://{}", phone.addr("https"));
    let ca = pki.ca().to_str().unwrap();
    let (code, body) = curl(&["--cacert", ca, &format!("{url}/DeviceInformationX")]);
    assert_eq!(code, "200");
    assert!(
        body.contains("<modelNumber>CP-8845</modelNumber>"),
        "{body}"
    );
    let object =
        "XML=<CiscoIPPhoneExecute><ExecuteItem URL=\"Key:Services\"/></CiscoIPPhoneExecute>";
    let login = format!("admin:{PASSWORD}");
    let execute = format!("{url}/CGI/Execute");
    let (code, body) = curl(&[
        "--cacert",
        ca,
        "--basic",
        "-u",
        &login,
        "--data-urlencode",
        object,
        &execute,
    ]);
    assert_eq!(code, "200");
    assert!(body.contains("Status=\"0\""), "{body}");
    // Without the CA: exit 60, the peer's certificate is not trusted.
    let untrusted = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            &format!("{url}/DeviceInformationX"),
        ])
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(60), "{}", text(&untrusted));
}

/// The web password, and the Basic value that carries it, appear in no output, ladder,
/// log, journal or report, whatever the verbosity, format or password source.
#[test]
fn passwords_appear_nowhere() {
    use base64::Engine;
    let dir = temp_dir("secrets");
    let stderr = dir.join("phone.stderr");
    let phone = web_builder("digest")
        .args(["-vv"])
        .stderr_to(&stderr)
        .start();
    let addr = web_addr(&phone).to_string();
    let password_file = dir.join("pw");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    let mut seen = String::new();
    for verbosity in [None, Some("-v"), Some("-vv")] {
        for format in ["human", "json", "csv"] {
            for source in ["file", "env", "arg"] {
                let mut args = vec![
                    "execute",
                    &addr,
                    "Key:Services",
                    "--user",
                    "admin",
                    "--output",
                    format,
                ];
                args.extend(verbosity);
                let path = password_file.to_str().unwrap();
                match source {
                    "file" => args.extend(["--password-file", path]),
                    "arg" => args.extend(["--password", PASSWORD]),
                    _ => {}
                }
                let out = run(&args, (source == "env").then_some(PASSWORD));
                assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
                seen += &text(&out);
            }
        }
    }
    // A campaign with per-row passwords, a journal and a report.
    let rows = dir.join("rows.csv");
    std::fs::write(
        &rows,
        format!("target,user,password\n{addr},admin,{PASSWORD}\n"),
    )
    .unwrap();
    let (journal, report) = (dir.join("journal"), dir.join("report.jsonl"));
    let (journal_path, report_path) = (journal.to_str().unwrap(), report.to_str().unwrap());
    let files = ["--journal", journal_path, "--report", report_path];
    let action = ["--uri", "Key:Services", "-vv", "--output", "json"];
    let out = http_batch(&rows, "execute", &[&action[..], &files].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    seen += &text(&out);
    seen += &std::fs::read_to_string(&journal).unwrap();
    seen += &std::fs::read_to_string(&report).unwrap();
    drop(phone);
    seen += &std::fs::read_to_string(&stderr).unwrap();
    assert!(
        seen.contains("Authorization: Digest <redacted>"),
        "the ladders were checked"
    );
    assert!(!seen.contains(PASSWORD), "the password appears");
    assert!(!seen.contains(&basic), "the Basic credentials appear");
}

/// A phone answering 503 with `Retry-After: 1` is retried (`--retries`), no sooner than
/// it asked; the tries are counted.
#[test]
fn a_busy_phone_is_retried_after_it_asks() {
    let phone = web_phone("none", &["--fail-percent", "100"]);
    let (_, rows) = rows_csv("busy", &format!("target\n{}\n", web_addr(&phone)));
    let started = std::time::Instant::now();
    let retries = ["--retries", "1", "--backoff", "10ms", "--output", "json"];
    let out = http_batch(&rows, "info", &retries);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let record = json_line(&out.stdout);
    assert_eq!(
        (&record["outcome"], &record["status"], &record["tries"]),
        (&"rejected".into(), &503.into(), &2.into()),
        "{record}"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 is a floor"
    );
    assert_eq!(web_counters(phone).0, 2);
}

/// `info` over a fleet: an inventory CSV with each phone's MAC, model and firmware.
#[test]
fn an_inventory_of_a_fleet() {
    let phone = PhoneProcess::builder()
        .transport("udp")
        .args(["--http", "0.0.0.0:0"])
        .start();
    let port = web_addr(&phone).port();
    let (dir, rows) = rows_csv(
        "inventory",
        &format!("id,target\na,127.0.9.1:{port}\nb,127.0.9.2:{port}\nc,127.0.9.3:1\n"),
    );
    let inventory = dir.join("inventory.csv");
    let out = http_batch(&rows, "info", &["--inventory", inventory.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one phone is unreachable: {}",
        text(&out)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&inventory)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        lines.remove(0),
        "target,id,outcome,mac,host_name,dn,model,firmware,serial"
    );
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("http://127.0.9.1:{port},a,delivered,027F000901")),
        "{lines:?}"
    );
    assert!(
        lines[0].contains(",CP-8845,sip88xx.14-2-1-0001-14,FCH"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("http://127.0.9.2:{port},b,delivered,027F000902")),
        "{lines:?}"
    );
    assert_eq!(lines[2], "http://127.0.9.3:1,c,unreachable,,,,,,");
}

/// A campaign sends one request at a time to a phone, even for rows that name it with
/// different actions; commands run side by side overlap, and the simulator sees it.
#[test]
fn one_request_at_a_time_per_phone() {
    let phone = web_phone("none", &["--delay", "30"]);
    let addr = web_addr(&phone).to_string();
    let mut csv = String::from("target,action,uri\n");
    for i in 0..8 {
        csv += &format!("{addr},execute,Dial:10{i}\n{addr},info,\n");
    }
    let (_, rows) = rows_csv("one-at-a-time", &csv);
    let out = http_batch(&rows, "execute", &["--allow-duplicates"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stopped = String::from_utf8(phone.terminate()).unwrap();
    assert!(
        stopped.contains("16 requests") && stopped.contains(", 0 overlapping"),
        "{stopped}"
    );
    // The control: separate commands at once do overlap.
    let phone = web_phone("none", &["--delay", "200"]);
    let addr = web_addr(&phone).to_string();
    let children: Vec<_> = (0..4)
        .map(|_| {
            bin()
                .args(["info", &addr])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stopped = String::from_utf8(phone.terminate()).unwrap();
    assert!(!stopped.contains(", 0 overlapping"), "{stopped}");
}

/// `batch --channel http` refuses the options only SIP uses, before anything is sent:
/// ignored, they would let the user believe they applied.
#[test]
fn sip_options_with_the_http_channel_are_refused() {
    let phone = web_phone("none", &[]);
    let (_, rows) = rows_csv("sip-options", &format!("target\n{}\n", web_addr(&phone)));
    for (option, value) in [
        ("--profile", "http://10.0.0.1/cfg.xml"),
        ("--proxy", "127.0.0.1:5060"),
        ("--event", "reboot"),
    ] {
        let out = http_batch(&rows, "info", &[option, value]);
        let said = format!("{option} is for SIP NOTIFY, not --channel http");
        assert_exit_saying(&out, 2, text(&out).as_bytes(), &said);
    }
    assert_eq!(web_counters(phone).0, 0, "nothing was sent");
}

/// `batch` over SIP (`--channel sip`, the default) refuses the options of the HTTP channel,
/// even one given its default value, before anything is sent: ignored, they would let the
/// user believe they applied.
#[test]
fn http_options_with_the_sip_channel_are_refused() {
    let dir = temp_dir("http-options");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_nonblocking(true).unwrap();
    let rows = dir.join("rows.csv");
    std::fs::write(
        &rows,
        format!("target\n1000@{}\n", phone.local_addr().unwrap()),
    )
    .unwrap();
    for channel in [&[][..], &["--channel", "sip"][..]] {
        for (option, value) in [
            ("--action", "reboot"),
            ("--priority", "0"),
            ("--uri", "Key:Settings"),
            ("--settle", "2"),
            ("--inventory", "inventory.csv"),
        ] {
            let rows = rows.to_str().unwrap();
            let args = [&["batch", rows, option, value][..], channel].concat();
            let out = run(&args, None);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(
                text(&out).contains(&format!("{option} is for --channel http")),
                "{}",
                text(&out)
            );
        }
    }
    let mut buf = [0; 2048];
    assert!(phone.recv(&mut buf).is_err(), "nothing was sent");
}

/// `--inventory` naming the input is refused before anything is written or sent: the
/// inventory would truncate the rows.
#[test]
fn an_inventory_over_the_input_is_refused() {
    let phone = web_phone("none", &[]);
    let text_before = format!("target\n{}\n", web_addr(&phone));
    let (_, rows) = rows_csv("inventory-clash", &text_before);
    let out = http_batch(&rows, "info", &["--inventory", rows.to_str().unwrap()]);
    let said = "--inventory and the input name the same file";
    assert_exit_saying(&out, 2, text(&out).as_bytes(), said);
    assert_eq!(std::fs::read_to_string(&rows).unwrap(), text_before);
    assert_eq!(web_counters(phone).0, 0, "nothing was sent");
}
