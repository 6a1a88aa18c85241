//! The MPP web actions (`resync --via http`, `upgrade`, `reboot --via http`) as the real
//! binary against the simulator's web server on loopback: Basic, Digest, wrong passwords,
//! HTTPS, `--dry-run`, options of the other channel refused; the simulator's
//! `/admin/resync` fetching from `sipnotify serve` (its fetch log seen), its upgrade URL and
//! reboot logged.

mod common;
mod prov;

use common::PASSWORD;
use common::{assert_contains_all, assert_exit, assert_refused, bin, json_line, PhoneProcess};
use common::{web_builder, web_phone, web_stopped};
use prov::{profiles, temp_dir, wait_log, ServeProcess};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// `sipnotify ARGS --output json` with `password` in the environment.
fn run(args: &[&str], password: &str) -> Output {
    bin()
        .args(args)
        .args(["--output", "json"])
        .env("SIPNOTIFY_PASSWORD", password)
        .output()
        .expect("run sipnotify")
}

const FIRMWARE: &str = "http://10.0.0.1:8080/fw/sip88xx.12-0-1MPP-1.loads";

#[test]
fn each_action_with_basic_and_digest_and_a_wrong_password_exits_3() {
    // Under auto nothing is sent before the phone's challenge (no pre-emptive Basic on
    // /admin/ pages): two requests. Basic over plain http only when asked for, at once.
    for (auth, answer, mode, attempts) in [
        ("basic", "Basic", "basic", 1),
        ("digest", "Digest", "auto", 2),
    ] {
        let phone = web_phone(auth, &[]);
        let addr = phone.addr("http").to_string();
        let actions: [&[&str]; 3] = [
            &["resync", &addr, "--via", "http"],
            &["upgrade", &addr, FIRMWARE],
            &["reboot", &addr, "--via", "http"],
        ];
        for args in actions {
            let out = run(&[args, &["-v", "--auth", mode]].concat(), PASSWORD);
            assert_exit(&out, 0);
            let shown = String::from_utf8_lossy(&out.stdout);
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                !shown.contains(PASSWORD) && !said.contains(PASSWORD),
                "{shown}{said}"
            );
            assert_contains_all(
                "the ladder",
                &shown,
                &[&format!("Authorization: {answer} "), "HTTP/1.1 200 OK"],
            );
            let record = json_line(&out.stdout);
            assert_eq!(
                (&record["outcome"], &record["event"], &record["http_status"]),
                (&"delivered".into(), &args[0].into(), &200.into()),
                "{auth} {args:?}: {record}"
            );
            assert_eq!(record["attempts"], attempts, "{auth} {args:?}: {record}");
            assert_eq!(
                shown.contains("HTTP/1.1 401 Unauthorized"),
                attempts == 2,
                "{shown}"
            );
            assert_eq!(record["target"], format!("http://{addr}"));

            // Under auto, a Basic challenge over plain http is not answered: the password
            // would cross the network readable.
            if auth == "basic" {
                let out = run(args, PASSWORD);
                assert_exit(&out, 3);
                let record = json_line(&out.stdout);
                assert!(
                    record["reason"].as_str().unwrap().contains("use https://"),
                    "{record}"
                );
            }
            // A wrong admin password: a 401 after credentials, exit 3, whatever the scheme
            // (the web interface does not answer with CiscoIPPhoneError 4).
            let out = run(&[args, &["--auth", mode]].concat(), "wrong");
            assert_exit(&out, 3);
            let record = json_line(&out.stdout);
            assert_eq!(
                (&record["outcome"], &record["http_status"]),
                (&"auth_failed".into(), &401.into()),
                "{auth} {args:?}: {record}"
            );
            assert!(
                record["hint"].as_str().unwrap().contains("admin user"),
                "{record}"
            );
        }
        let stopped = web_stopped(phone);
        assert!(
            stopped.ends_with("1 resyncs, 1 upgrades, 1 reboots"),
            "{auth}: {stopped}"
        );
    }
}

/// `/admin/resync?URL` makes the simulated phone fetch and apply that profile through the
/// provisioning fetch path, as a SIP resync with `profile="URL"`; without a URL, its
/// Profile_Rule. `sipnotify serve` logs each fetch, from the phone's address, under the MAC
/// the phone's web server gives (`/DeviceInformationX`).
#[test]
fn a_web_resync_fetches_the_profile_from_serve() {
    let dir = temp_dir("web-resync");
    let root = profiles(&dir);
    let fetches = dir.join("fetch.log");
    let server = ServeProcess::start(&root, &["--log", fetches.to_str().unwrap()], &[]);
    let resyncs = dir.join("resync.log");
    let phone = web_phone(
        "digest",
        &[
            "--profile-rule",
            &format!("http://{}/ok/$MA", server.addr),
            "--resync-log",
            resyncs.to_str().unwrap(),
        ],
    );
    let addr = phone.addr("http").to_string();
    let info = run(&["info", &addr], PASSWORD);
    assert_exit(&info, 0);
    let mac = json_line(&info.stdout)["device"]["mac"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();

    // `resync ADDR --via http EXTRA...`, which the phone takes.
    let resync = |extra: &[&str]| {
        let out = run(
            &[&["resync", &addr, "--via", "http"][..], extra].concat(),
            PASSWORD,
        );
        assert_exit(&out, 0);
    };
    let profile = format!("http://{}/cfg/$MA.xml", server.addr);
    resync(&["--profile", &profile]);
    let fetched = wait_log(&fetches, 1);
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(
        (
            fetched[0]["path"].as_str(),
            fetched[0]["file"].as_str(),
            fetched[0]["status"].as_u64(),
            fetched[0]["addr"].as_str(),
            fetched[0]["mac"].as_str(),
        ),
        (
            Some(format!("/cfg/{mac}.xml").as_str()),
            Some("cfg/default.xml"),
            Some(200),
            Some("127.0.0.1"),
            Some(mac.as_str()),
        ),
        "{fetched:?}"
    );
    let applied = wait_log(&resyncs, 1);
    assert_eq!(
        (applied[0]["result"].as_str(), applied[0]["mac"].as_str()),
        (Some("applied"), Some(mac.as_str())),
        "{applied:?}"
    );

    // No URL: the phone's own Profile_Rule.
    resync(&[]);
    let fetched = wait_log(&fetches, 2);
    assert_eq!(
        fetched.get(1).and_then(|f| f["path"].as_str()),
        Some(format!("/ok/{mac}").as_str()),
        "{fetched:?}"
    );
    assert_eq!(wait_log(&resyncs, 2)[1]["result"], "applied");

    // A profile that is not there: the phone took the request (delivered), and its resync
    // failed, as a real phone's does later.
    let missing = format!("http://{}/nowhere/x.xml", server.addr);
    resync(&["--profile", &missing]);
    let failed = wait_log(&resyncs, 3);
    assert_eq!(
        (failed[2]["result"].as_str(), failed[2]["status"].as_u64()),
        (Some("failed"), Some(404)),
        "{failed:?}"
    );
    assert!(web_stopped(phone).ends_with("3 resyncs, 0 upgrades, 0 reboots"));
}

/// The simulator logs the firmware URL it was asked to install and the reboot (its
/// stderr at -v), and counts them.
#[test]
fn the_upgrade_url_is_recorded_and_the_reboot_seen() {
    let dir = temp_dir("web-upgrade");
    let stderr = dir.join("phone.stderr");
    let phone = web_builder("basic").args(["-v"]).stderr_to(&stderr).start();
    let addr = phone.addr("http").to_string();
    let basic = ["--auth", "basic"];
    assert_exit(
        &run(
            &[&["upgrade", &addr, FIRMWARE][..], &basic].concat(),
            PASSWORD,
        ),
        0,
    );
    assert_exit(
        &run(
            &[&["reboot", &addr, "--via", "http"][..], &basic].concat(),
            PASSWORD,
        ),
        0,
    );
    let logged = wait_for(&stderr, "reboot requested");
    let requested: [&str; 2] = [
        &format!("upgrade requested phone={addr} url={FIRMWARE}"),
        &format!("reboot requested phone={addr}"),
    ];
    assert_contains_all("the phone's log", &logged, &requested);
    assert!(!logged.contains(PASSWORD), "{logged}");
    assert!(web_stopped(phone).ends_with("0 resyncs, 1 upgrades, 1 reboots"));
}

/// The file's text once it holds `what` (waiting at most 5 s).
fn wait_for(path: &Path, what: &str) -> String {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn dry_run_prints_each_request_masked_and_sends_nothing() {
    let phone = web_phone("basic", &[]);
    let addr = phone.addr("http").to_string();
    let profile = "tftp://192.168.15.100/my_config.xml";
    for (args, line) in [
        (
            vec!["resync", &addr, "--via", "http", "--profile", profile],
            format!("GET /admin/resync?{profile} HTTP/1.1\r\n"),
        ),
        (
            vec!["resync", &addr, "--via", "http"],
            "GET /admin/resync HTTP/1.1\r\n".to_string(),
        ),
        (
            vec!["upgrade", &addr, FIRMWARE],
            format!("GET /admin/upgrade?{FIRMWARE} HTTP/1.1\r\n"),
        ),
        (
            vec!["reboot", &addr, "--via", "http", "--user", "root"],
            "GET /admin/reboot HTTP/1.1\r\n".to_string(),
        ),
    ] {
        let out = bin()
            .args(&args)
            .arg("--dry-run")
            .env("SIPNOTIFY_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert_exit(&out, 0);
        let request = String::from_utf8(out.stdout).unwrap();
        assert!(request.starts_with(&line), "{args:?}: {request}");
        assert_contains_all(
            "the request",
            &request,
            &[&format!("Host: {addr}\r\n"), "Connection: close\r\n"],
        );
        // The first request waits for the phone's challenge.
        assert!(!request.contains("Authorization"), "{request}");
    }
    assert!(web_stopped(phone).starts_with("web stopped: 0 requests,"));
}

/// Options of the other channel, and URLs the phone cannot take, are refused before
/// anything is sent (exit 2).
#[test]
fn options_of_the_other_channel_and_bad_urls_are_refused_unsent() {
    let phone = web_phone("none", &[]);
    let addr = phone.addr("http").to_string();
    for extra in [
        ["--proxy", "127.0.0.1:5060"],
        ["--transport", "tcp"],
        ["--vendor", "yealink"],
        ["--header", "X-A: b"],
        ["--t1", "100"],
        // At its default value too: given is given.
        ["--t2", "4000"],
        ["--auth-user", "159"],
    ] {
        let message = format!("{} is for SIP NOTIFY, not --via http", extra[0]);
        for command in ["resync", "reboot"] {
            let out = run(
                &[&[command, &addr, "--via", "http"][..], &extra].concat(),
                PASSWORD,
            );
            assert_refused(&out, &message);
        }
    }
    // The web interface's options with SIP.
    for extra in [
        &["--user", "admin"][..],
        &["--auth", "digest"][..],
        &["--via", "sip", "--user", "a"][..],
    ] {
        let out = run(
            &[&["reboot", "sip:159@127.0.0.1:9"], extra].concat(),
            PASSWORD,
        );
        assert_refused(&out, "is for --via http (the phone's web interface)");
    }
    // URLs: the guide's credentials in the query (never echoed), another scheme, a `#`.
    let out = run(
        &[
            "upgrade",
            &addr,
            "tftp://10.0.0.1/x.loads&xuser=admin&xpassword=s3cret",
        ],
        PASSWORD,
    );
    assert_refused(
        &out,
        "the URL carries credentials (user@, xuser or xpassword)",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
    let out = run(
        &[
            "resync",
            &addr,
            "--via",
            "http",
            "--profile",
            "ftp://h/c.xml",
        ],
        PASSWORD,
    );
    assert_refused(
        &out,
        "the URL must be tftp://, http:// or https://SERVER[:PORT]/PATH",
    );
    let out = run(&["upgrade", &addr, "http://h/a#b"], PASSWORD);
    assert_refused(&out, "percent-encode it (%23)");
    // The phone is not a SIP target with --via http, nor a web address with SIP.
    let out = run(&["reboot", "sip:159@127.0.0.1", "--via", "http"], PASSWORD);
    assert_exit(&out, 2);
    assert!(web_stopped(phone).starts_with("web stopped: 0 requests,"));
}

#[test]
fn web_actions_over_https() {
    let phone = web_phone("digest", &["--http-tls"]);
    let certificate = phone.line(Duration::from_secs(10)).unwrap();
    let pin = common::certificate_fingerprint(&certificate);
    let url = format!("https://{}", phone.addr("https"));
    let out = run(&["reboot", &url, "--via", "http"], PASSWORD);
    assert_exit(&out, 5);
    assert!(json_line(&out.stdout)["reason"]
        .as_str()
        .unwrap()
        .contains("over https: the certificate is not signed by a CA"),);
    for args in [
        &["reboot", &url, "--via", "http", "--tls-pin", &pin][..],
        &[
            "upgrade",
            &url,
            FIRMWARE,
            "--tls-pin",
            &pin,
            "--auth",
            "digest",
        ][..],
    ] {
        let out = run(args, PASSWORD);
        assert_exit(&out, 0);
        assert_eq!(json_line(&out.stdout)["outcome"], "delivered");
    }
    assert!(web_stopped(phone).ends_with("0 resyncs, 1 upgrades, 1 reboots"));
}

/// The web actions as a campaign against one wildcard simulator (a phone per address): a
/// reboot by default, a resync and an upgrade from the rows' `url`, an upgrade without one a
/// bad row; run again on its journal, it acts on no phone twice.
#[test]
fn web_actions_as_a_campaign_act_once() {
    let dir = temp_dir("web-batch");
    let phone = PhoneProcess::builder()
        .transport("udp")
        .args(["--http", "0.0.0.0:0", "--http-auth", "digest"])
        .start();
    let port = phone.addr("http").port();
    let input = dir.join("phones.csv");
    std::fs::write(
        &input,
        format!(
            "target,action,url\n\
             127.0.0.1:{port},,\n\
             127.0.0.2:{port},resync,http://127.0.0.1:9/cfg/$MA.xml\n\
             127.0.0.3:{port},upgrade,\n\
             127.0.0.4:{port},upgrade,{FIRMWARE}\n"
        ),
    )
    .unwrap();
    let journal = dir.join("journal.jsonl");
    let args = [
        "batch",
        input.to_str().unwrap(),
        "--channel",
        "http",
        "--action",
        "reboot",
        "--journal",
        journal.to_str().unwrap(),
    ];
    // The records in the input's order (they are printed as targets end).
    let outcomes = |out: &Output| -> Vec<String> {
        let mut records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        records.sort_by_key(|r| r["line"].as_u64());
        records
            .iter()
            .map(|r| format!("{} {}", r["outcome"].as_str().unwrap(), r["reason"]))
            .collect()
    };
    let out = run(&args, PASSWORD);
    assert_exit(&out, 1);
    let first = outcomes(&out);
    assert!(first[0].starts_with("delivered"), "{first:?}");
    assert!(first[1].starts_with("delivered"), "{first:?}");
    assert!(
        first[2].starts_with("bad_row") && first[2].contains("upgrade needs a url"),
        "{first:?}"
    );
    assert!(first[3].starts_with("delivered"), "{first:?}");

    let again = outcomes(&run(&args, PASSWORD));
    assert_eq!(
        again
            .iter()
            .filter(|o| o.starts_with("already_delivered"))
            .count(),
        3,
        "{again:?}"
    );
    assert!(web_stopped(phone).ends_with("1 resyncs, 1 upgrades, 1 reboots"));
}
