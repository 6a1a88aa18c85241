//! The simulator as an MPP phone: after an authenticated resync it expands its
//! Profile_Rule for its own MAC address, fetches from `sipnotify serve`, decrypts, checks and
//! applies the profile, and logs the result; a wrong key, a 404 or a corrupt file is a
//! failed resync, and a failed rule stops the sequence.

mod common;
mod prov;

use common::{bin, openssl, run_ok, PhoneProcess, PASSWORD};
use prov::{temp_dir, wait_log, ServeProcess};
use std::path::{Path, PathBuf};

const PROFILE: &str = "<flat-profile>\n<Resync_Periodic> 7200 </Resync_Periodic>\n<Station_Name>sim</Station_Name>\n</flat-profile>\n";

fn profiles(name: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let root = dir.join("root");
    for d in ["cfg", "ok", "bad"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("cfg/default.xml"), PROFILE).unwrap();
    std::fs::write(root.join("ok/default"), "<flat-profile/>").unwrap();
    std::fs::write(root.join("bad/default.xml"), "<flat-profile>\n<A>\n").unwrap();
    (dir, root)
}

fn resync(phone: &PhoneProcess, user: &str, extra: &[&str]) {
    notify(phone, "resync", user, extra);
}

/// `sipnotify COMMAND USER@PHONE EXTRA...`, which must be delivered.
fn notify(phone: &PhoneProcess, command: &str, user: &str, extra: &[&str]) {
    let out = bin()
        .arg(command)
        .arg(format!("{user}@{}", phone.addr("udp")))
        .args(extra)
        .env("SIPNOTIFY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The profile key in the environment of `serve`.
const PROFILE_KEY: (&str, &str) = ("SIPNOTIFY_PROFILE_KEY", "Prov-Key-1");

/// Serves `root` with `args` and `env`, logging each request to `DIR/fetch.log`: the
/// server and its log.
fn serve_logged(
    dir: &Path,
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ServeProcess, PathBuf) {
    let fetches = dir.join("fetch.log");
    let log = ["--log", fetches.to_str().unwrap()];
    (
        ServeProcess::start(root, &[&log[..], args].concat(), env),
        fetches,
    )
}

fn start_phone(rules: &[String], log: &Path, extra: &[&str]) -> PhoneProcess {
    let mut args: Vec<String> = Vec::new();
    for rule in rules {
        args.extend(["--profile-rule".to_string(), rule.clone()]);
    }
    args.extend([
        "--resync-log".to_string(),
        log.display().to_string(),
        "-vv".to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    // Everything the phone logs goes next to its resync log, to be searched for keys.
    PhoneProcess::builder()
        .transport("udp")
        .users("1000-1009")
        .args(args)
        .stderr_to(&log.with_extension("stderr"))
        .start()
}

#[test]
fn a_resync_fetches_decrypts_and_applies_the_profile() {
    let (dir, root) = profiles("apply");
    let (server, fetches) = serve_logged(&dir, &root, &[], &[PROFILE_KEY]);
    let url = |path: &str| format!("http://{}/{path}", server.addr);
    let log = dir.join("resync.log");
    let rules = [
        format!("[--key Prov-Key-1] {}", url("cfg/$MA.xml")),
        format!("[--key \"Prov-Key-1\"] {}", url("ok/$MA")),
    ];
    let phone = start_phone(&rules, &log, &[]);
    resync(&phone, "1000", &[]);
    let lines = wait_log(&log, 1);
    assert_eq!(lines[0]["result"], "applied", "{lines:?}");
    assert_eq!(lines[0]["mac"], "000e080003e8");
    assert_eq!(
        (lines[0]["applied"].as_u64(), lines[0]["params"].as_u64()),
        (Some(2), Some(2))
    );
    let fetched = wait_log(&fetches, 2);
    assert_eq!(fetched[0]["path"], "/cfg/000e080003e8.xml");
    assert_eq!(fetched[0]["encoding"], "aes-256-cbc");
    assert_eq!(fetched[1]["path"], "/ok/000e080003e8");
    // The key never reaches a log.
    for file in [&log, &fetches] {
        assert!(!std::fs::read_to_string(file).unwrap().contains("Prov-Key"));
    }
}

#[test]
fn a_wrong_key_a_404_or_a_corrupt_file_is_a_failed_resync_that_stops_the_sequence() {
    let (dir, root) = profiles("fail");
    let (server, fetches) = serve_logged(&dir, &root, &[], &[PROFILE_KEY]);
    let url = |path: &str| format!("http://{}/{path}", server.addr);
    let cases = [
        (
            "wrong-key",
            format!("[--key Not-The-Key] {}", url("cfg/$MA.xml")),
            Some(200u16),
            "wrong key",
        ),
        (
            "missing",
            format!("[--key Prov-Key-1] {}", url("nope/$MA.xml")),
            Some(404),
            "HTTP 404",
        ),
        (
            "corrupt",
            format!("[--key Prov-Key-1] {}", url("bad/$MA.xml")),
            Some(200),
            "not well-formed",
        ),
        ("no-key", url("cfg/$MA.xml"), Some(200), "no --key"),
    ];
    for (name, rule, status, error) in cases {
        let log = dir.join(format!("{name}.log"));
        let before = prov::log_lines(&fetches).len();
        let phone = start_phone(
            &[rule, format!("[--key Prov-Key-1] {}", url("ok/$MA"))],
            &log,
            &[],
        );
        resync(&phone, "1001", &[]);
        let lines = wait_log(&log, 1);
        let line = &lines[0];
        assert_eq!(line["result"], "failed", "{name}: {line}");
        assert_eq!(line["rule"], 1, "{name}");
        assert_eq!(line["status"].as_u64(), status.map(u64::from), "{name}");
        assert!(
            line["error"].as_str().unwrap().contains(error),
            "{name}: {line}"
        );
        let stderr = std::fs::read_to_string(log.with_extension("stderr")).unwrap();
        assert!(stderr.contains("resync failed"), "{name}: {stderr}");
        assert!(
            !stderr.contains("Prov-Key") && !stderr.contains("Not-The-Key"),
            "{name}"
        );
        // The second rule is never fetched.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let after = prov::log_lines(&fetches);
        assert_eq!(after.len(), before + 1, "{name}: {after:?}");
        assert!(!after
            .iter()
            .any(|f| f["path"].as_str().unwrap().starts_with("/ok/")));
    }
}

#[test]
fn aes128gcm_and_an_explicit_profile_url() {
    let (dir, root) = profiles("gcm");
    let ikm = "BO3ZVPxUlnLORbVGMpbT1Q";
    let server = ServeProcess::start(&root, &[], &[("SIPNOTIFY_PROFILE_IKM", ikm)]);
    let log = dir.join("resync.log");
    let rule = format!("http://{}/cfg/$MA.xml", server.addr);
    let phone = start_phone(&[rule], &log, &["--ikm", ikm]);
    resync(&phone, "1002", &[]);
    // resync;profile="URL" replaces the rule.
    let explicit = format!("http://{}/nope/x.xml", server.addr);
    resync(&phone, "1003", &["--profile", &explicit]);
    let lines = wait_log(&log, 2);
    let by_user = |u: &str| lines.iter().find(|l| l["user"] == u).unwrap().clone();
    assert_eq!(by_user("1002")["result"], "applied", "{lines:?}");
    assert_eq!(by_user("1003")["url"], explicit.as_str());
    assert_eq!(by_user("1003")["status"], 404);
    // Without the IKM the aes128gcm body cannot be read.
    let log2 = dir.join("resync2.log");
    let phone2 = start_phone(&[format!("http://{}/cfg/$MA.xml", server.addr)], &log2, &[]);
    resync(&phone2, "1004", &[]);
    let lines = wait_log(&log2, 1);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("no IKM"),
        "{lines:?}"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, made by the openssl command line:
/// (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    use std::process::Command;
    openssl()?;
    let run = |args: &[&str]| {
        run_ok(Command::new("openssl").args(args).current_dir(dir));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sipnotify test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    Some((dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key")))
}

#[test]
fn https_with_the_phones_ca() {
    let (dir, root) = profiles("https");
    let Some((ca, cert, key)) = certificates(&dir) else {
        return;
    };
    let (cert_path, key_path) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls = ["--tls-cert", cert_path, "--tls-key", key_path];
    let (server, fetches) = serve_logged(&dir, &root, &tls, &[]);
    let rule = format!("https://{}/cfg/$MA.xml", server.addr);
    let log = dir.join("resync.log");
    let phone = start_phone(
        std::slice::from_ref(&rule),
        &log,
        &["--ca-file", ca.to_str().unwrap()],
    );
    resync(&phone, "1005", &[]);
    let lines = wait_log(&log, 1);
    assert_eq!(lines[0]["result"], "applied", "{lines:?}");
    assert_eq!(wait_log(&fetches, 1)[0]["status"], 200);
    // A phone that does not trust the server's CA fails the handshake: a failed resync,
    // and no request reaches the server.
    let log2 = dir.join("untrusted.log");
    let phone2 = start_phone(&[rule], &log2, &["--ca-file", cert.to_str().unwrap()]);
    resync(&phone2, "1006", &[]);
    let lines = wait_log(&log2, 1);
    assert_eq!(lines[0]["result"], "failed", "{lines:?}");
    assert!(
        lines[0]["error"].as_str().unwrap().contains("TLS"),
        "{lines:?}"
    );
    assert_eq!(prov::log_lines(&fetches).len(), 1);
    // Plain HTTP to the HTTPS port is refused without an answer worth the name.
    let r = prov::get(server.addr, "/cfg/default.xml", &[]);
    assert_ne!(r.status, 200);
}

/// An authenticated report NOTIFY makes the line POST its configuration report to its
/// Report_Rule, and `serve --reports` stores it: encrypted with the rule's key in openssl's
/// format (the openssl command line decrypts it), or plain without one. The key shows in no
/// log, and an upload is logged as a POST, never as a fetch.
#[test]
fn a_report_notify_uploads_the_configuration_report() {
    let Some(mut openssl) = openssl() else { return };
    let dir = temp_dir("report");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let reports = dir.join("reports");
    let (server, fetches) =
        serve_logged(&dir, &root, &["--reports", reports.to_str().unwrap()], &[]);
    let log = dir.join("resync.log");
    let rule = format!(
        "[--key Report-Key-9] http://{}/rep/$MA.xml.enc",
        server.addr
    );
    let phone = start_phone(&[], &log, &["--report-rule", &rule]);
    notify(&phone, "report", "1000", &[]);
    let lines = wait_log(&log, 1);
    assert_eq!(
        (&lines[0]["result"], &lines[0]["status"]),
        (&"reported".into(), &201.into()),
        "{lines:?}"
    );
    let stored = reports.join("rep/000e080003e8.xml.enc");
    let out = run_ok(
        openssl
            .args([
                "enc",
                "-d",
                "-aes-256-cbc",
                "-md",
                "sha256",
                "-k",
                "Report-Key-9",
                "-in",
            ])
            .arg(&stored),
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    for part in [
        "<flat-profile>",
        "<MAC_Address ua=\"ro\">000e080003e8</MAC_Address>",
        "<User_ID_1_ ua=\"na\">1000</User_ID_1_>",
    ] {
        assert!(xml.contains(part), "{part} not in {xml}");
    }
    let logged = wait_log(&fetches, 1);
    assert_eq!(
        (
            &logged[0]["method"],
            &logged[0]["status"],
            &logged[0]["encoding"]
        ),
        (&"POST".into(), &201.into(), &"aes-256-cbc".into()),
        "{logged:?}"
    );
    // A resync NOTIFY with no profile rule fetches nothing.
    resync(&phone, "1000", &[]);
    for file in [&log, &fetches, &log.with_extension("stderr")] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(!text.contains("Report-Key"), "{}: {text}", file.display());
    }
    assert_eq!(wait_log(&fetches, 1).len(), 1);

    // Without a key the report goes as plain XML.
    let plain_log = dir.join("plain.log");
    let rule = format!("http://{}/rep/$MA.xml", server.addr);
    let plain = start_phone(&[], &plain_log, &["--report-rule", &rule]);
    notify(&plain, "report", "1001", &[]);
    assert_eq!(wait_log(&plain_log, 1)[0]["result"], "reported");
    let text = std::fs::read_to_string(reports.join("rep/000e080003e9.xml")).unwrap();
    assert!(
        text.contains("<User_ID_1_ ua=\"na\">1001</User_ID_1_>"),
        "{text}"
    );
}
