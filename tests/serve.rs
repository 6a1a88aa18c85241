//! `sipnotify serve` on loopback: the path template and its fallback, on-the-fly
//! encryption, Basic auth, the JSON log, and what a hostile client sends.

mod common;
mod prov;

use prov::{get, raw, temp_dir, wait_log, ServeProcess};
use sipnotify::provision::profile::{self, Md};
use sipnotify::provision::{rfc8188, Ikm, Key};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const MAC_PROFILE: &str = "<flat-profile><Station_Name>mac</Station_Name></flat-profile>";
const DEFAULT_PROFILE: &str = "<flat-profile><Station_Name>default</Station_Name></flat-profile>";

/// DIR/root/cfg/{000e08012345.xml, default.xml}, DIR/secret.xml outside, and a symbolic
/// link from inside to it.
fn tree(name: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("cfg")).unwrap();
    std::fs::write(root.join("cfg/000e08012345.xml"), MAC_PROFILE).unwrap();
    std::fs::write(root.join("cfg/default.xml"), DEFAULT_PROFILE).unwrap();
    std::fs::write(dir.join("secret.xml"), "SECRET-OUTSIDE").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.xml"), root.join("cfg/link.xml")).unwrap();
    std::os::unix::fs::symlink(&dir, root.join("up")).unwrap();
    (dir, root)
}

/// The password of the user `prov` that `serve` asks for (Basic).
const PROV_PASSWORD: &str = "Serve-Pass-99";

/// `serve ROOT` as user `prov` with [`PROV_PASSWORD`] (in the file `DIR/pw`), and `args`.
fn serve_as_prov(dir: &Path, root: &Path, args: &[&str]) -> ServeProcess {
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PROV_PASSWORD}\n")).unwrap();
    let credentials = ["--user", "prov", "--password-file", pw.to_str().unwrap()];
    ServeProcess::start(root, &[&credentials[..], args].concat(), &[])
}

/// The Authorization header of Basic `credentials` (`user:password`).
fn basic(credentials: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!("Authorization: Basic {encoded}")
}

#[test]
fn per_mac_files_a_default_and_one_log_line_each() {
    let (dir, root) = tree("template");
    let log = dir.join("fetch.log");
    let server = ServeProcess::start(&root, &["--log", log.to_str().unwrap()], &[]);
    let r = get(server.addr, "/cfg/000E08012345.xml", &[]);
    // The file system is case-sensitive: 000E... is not 000e..., so the default answers.
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, DEFAULT_PROFILE.as_bytes())
    );
    let r = get(server.addr, "/cfg/000e08012345.xml", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, MAC_PROFILE.as_bytes()));
    let r = get(
        server.addr,
        "/cfg/x.xml",
        &["User-Agent: Cisco-CP-8845-3PCC/11.3.1 (00562B043615)"],
    );
    assert_eq!(r.status, 200);
    let r = get(server.addr, "/cfg/x.cfg", &[]);
    assert_eq!(r.status, 404);
    let lines = wait_log(&log, 4);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["mac"], "000e08012345");
    assert_eq!(lines[0]["file"], "cfg/default.xml");
    assert_eq!(lines[1]["file"], "cfg/000e08012345.xml");
    assert_eq!(lines[1]["bytes"], MAC_PROFILE.len());
    assert_eq!(lines[1]["encoding"], "identity");
    assert_eq!(lines[1]["addr"], "127.0.0.1");
    assert_eq!(lines[2]["mac"], "00562b043615");
    assert_eq!(lines[3]["status"], 404);
    assert!(lines[3]["at"].as_f64().unwrap() > 1.7e9);
}

#[test]
fn encrypted_on_the_fly() {
    let (_dir, root) = tree("encrypt");
    let key = "Prov-Key-1234";
    let server = ServeProcess::start(&root, &[], &[("SIPNOTIFY_PROFILE_KEY", key)]);
    let r = get(server.addr, "/cfg/000e08012345.xml", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"Salted__"));
    assert_eq!(r.header("content-encoding"), None);
    let plain = profile::decrypt(&r.body, &Key::new(key), Md::Sha256).unwrap();
    assert_eq!(plain, MAC_PROFILE.as_bytes());
    drop(server);

    let ikm = "BO3ZVPxUlnLORbVGMpbT1Q";
    let server = ServeProcess::start(&root, &[], &[("SIPNOTIFY_PROFILE_IKM", ikm)]);
    let r = get(server.addr, "/cfg/000e08012345.xml", &[]);
    assert_eq!(r.header("content-encoding"), Some("aes128gcm"));
    let decoded = rfc8188::decode(&r.body, &Ikm::from_base64url(ikm).unwrap()).unwrap();
    assert_eq!(decoded.plain, MAC_PROFILE.as_bytes());
}

#[test]
fn paths_outside_the_directory_get_404_and_are_logged() {
    let (dir, root) = tree("escape");
    let log = dir.join("fetch.log");
    let server = ServeProcess::start(&root, &["--log", log.to_str().unwrap()], &[]);
    let attempts = [
        "/../secret.xml",
        "/cfg/../../secret.xml",
        "/%2e%2e/secret.xml",
        "/%2E%2E%2Fsecret.xml",
        "/cfg/%2e%2e/%2e%2e/secret.xml",
        "/cfg/link.xml",
        "/up/secret.xml",
        "//etc/passwd",
        "/etc/passwd",
        "/%2fetc/passwd",
        "/cfg/..%5c..%5csecret.xml",
        "/.%2e/secret.xml",
    ];
    for path in attempts {
        let r = get(server.addr, path, &[]);
        assert!(
            r.status == 404 || r.status == 400,
            "{path}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET"),
            "{path}"
        );
    }
    // The request line in absolute form, as a proxy would send it.
    let r = raw(
        server.addr,
        b"GET http://127.0.0.1/../secret.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.status == 404 || r.status == 400, "{}", r.status);
    let lines = wait_log(&log, attempts.len());
    let refused = lines
        .iter()
        .filter(|l| l["status"] == 404 && l["note"].as_str().unwrap_or("").starts_with("refused"))
        .count();
    // All but /etc/passwd (a missing file under DIR, not an escape) and //etc/passwd.
    assert!(refused >= attempts.len() - 2, "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l["note"] == "refused: the file is outside the directory"));
}

#[test]
fn heads_and_bodies_are_bounded() {
    let (_dir, root) = tree("bounds");
    let server = ServeProcess::start(&root, &[], &[]);
    let big = format!(
        "GET /cfg/default.xml HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let r = raw(server.addr, big.as_bytes());
    assert!(r.status == 431 || r.status == 0, "{}", r.status);
    // A body is never read: a POST of 100 MB is answered at once, without the body.
    let started = std::time::Instant::now();
    let r = raw(
        server.addr,
        b"POST /cfg/default.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Still serving.
    assert_eq!(get(server.addr, "/cfg/default.xml", &[]).status, 200);
}

/// The status of a `method` (POST or PUT) of `body` to `path`, with the header `auth`.
fn upload(addr: SocketAddr, method: &str, path: &str, body: &[u8], auth: &str) -> u16 {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{auth}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw(addr, &request).status
}

/// `--reports-quota MIB` bounds what uploads add while the server runs: past it an upload
/// is answered 507 and not stored, and the log says why; a replaced report gives its room
/// back.
#[test]
fn reports_past_their_quota_are_refused_with_507() {
    let (dir, root) = tree("quota");
    let (reports, log) = (dir.join("reports"), dir.join("fetch.log"));
    let args = [
        "--reports",
        reports.to_str().unwrap(),
        "--reports-quota",
        "1",
    ];
    let log_args = ["--log", log.to_str().unwrap()];
    let server = serve_as_prov(&dir, &root, &[&args[..], &log_args].concat());
    let auth = basic(&format!("prov:{PROV_PASSWORD}"));
    let report = vec![b'r'; 600 * 1024];
    assert_eq!(upload(server.addr, "POST", "/a.xml", &report, &auth), 201);
    assert_eq!(upload(server.addr, "PUT", "/b.xml", &report, &auth), 507);
    assert!(!reports.join("b.xml").exists());
    assert_eq!(upload(server.addr, "PUT", "/a.xml", &report, &auth), 201);
    let lines = std::fs::read_to_string(&log).unwrap();
    let refused = lines
        .lines()
        .find(|l| l.contains("\"status\":507"))
        .unwrap();
    assert!(refused.contains("--reports-quota"), "{refused}");
}

/// With `--reports DIR`, a POST or PUT stores a report at its path (201), inside DIR only,
/// bounded, and behind the same Basic credentials as the fetches.
#[test]
fn reports_are_stored_inside_their_directory_and_bounded() {
    let (dir, root) = tree("reports");
    let reports = dir.join("reports");
    let server = serve_as_prov(&dir, &root, &["--reports", reports.to_str().unwrap()]);
    let auth = basic(&format!("prov:{PROV_PASSWORD}"));
    let post = |method: &str, path: &str, body: &[u8], auth: &str| {
        upload(server.addr, method, path, body, auth)
    };
    assert_eq!(post("POST", "/r/a.xml", b"<flat-profile/>", &auth), 201);
    assert_eq!(post("PUT", "/r/b.xml", b"<b/>", &auth), 201);
    assert_eq!(
        std::fs::read(reports.join("r/a.xml")).unwrap(),
        b"<flat-profile/>"
    );
    assert_eq!(post("POST", "/r/c.xml", b"x", "X-No: auth"), 401);
    for escape in ["/../escaped.xml", "/%2e%2e/escaped.xml", "/"] {
        assert_eq!(post("POST", escape, b"x", &auth), 404, "{escape}");
    }
    assert!(!dir.join("escaped.xml").exists());
    let over = vec![b'a'; 16 * 1024 * 1024 + 1];
    assert_eq!(post("POST", "/r/big.xml", &over, &auth), 413);
    assert!(!reports.join("r/big.xml").exists());
    // Private: a report may hold a line's password.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (
            mode(&reports),
            mode(&reports.join("r")),
            mode(&reports.join("r/a.xml"))
        ),
        (0o700, 0o700, 0o600)
    );
    // A directory of the reports that is a symbolic link (out of it) is not followed.
    std::os::unix::fs::symlink(&dir, reports.join("out")).unwrap();
    assert_eq!(post("POST", "/out/x.xml", b"x", &auth), 500);
    assert!(!dir.join("x.xml").exists());
    // `serve ROOT --reports REPORTS`, to be refused at start.
    let serve_reports = |reports: &Path| {
        let mut command = common::bin();
        let root = root.to_str().unwrap();
        command
            .args(["serve", root, "--listen", "127.0.0.1:0", "--reports"])
            .arg(reports);
        command
    };
    // A log inside the reports (an upload could replace it) or inside the served directory
    // (anyone could fetch it) is refused at start, and not made.
    for (log, why) in [
        (reports.join("r/fetch.log"), "is inside --reports"),
        (root.join("cfg/fetch.log"), "is inside the served directory"),
    ] {
        let out = serve_reports(&reports)
            .arg("--log")
            .arg(&log)
            .output()
            .unwrap();
        common::assert_refused(&out, why);
        assert!(!log.exists(), "{}", log.display());
    }
    // Reports inside the served directory, or around it, are refused at start.
    for overlapping in [root.join("reports"), dir.clone()] {
        let out = serve_reports(&overlapping).output().unwrap();
        common::assert_refused(&out, "overlaps the served directory");
    }
}

/// A secret inside the served directory is refused at start (exit 2), before the server
/// reads it or listens: any client could fetch it.
#[test]
fn secrets_inside_the_served_directory_are_refused() {
    let (dir, root) = tree("secrets");
    let secret = root.join("cfg/secret");
    std::fs::write(&secret, "Secret-Phrase-1234\n").unwrap();
    let secret = secret.to_str().unwrap();
    for args in [
        &["--key-file", secret][..],
        &["--ikm-file", secret],
        &["--user", "prov", "--password-file", secret],
        &["--tls-cert", secret, "--tls-key", secret],
    ] {
        let option = args[args.len() - 2];
        let out = common::bin()
            .args(["serve", root.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option}: {stderr}");
        let said = format!("{option} {secret} is inside the served directory");
        assert!(stderr.contains(&said), "{stderr}");
        assert!(!stderr.contains("Secret-Phrase"), "{stderr}");
    }
    // Beside it, the same key is used.
    std::fs::copy(root.join("cfg/secret"), dir.join("key")).unwrap();
    let key = dir.join("key");
    let server = ServeProcess::start(&root, &["--key-file", key.to_str().unwrap()], &[]);
    assert_eq!(get(server.addr, "/cfg/default.xml", &[]).status, 200);
}

#[test]
fn basic_auth() {
    let (dir, root) = tree("auth");
    let log = dir.join("fetch.log");
    let server = serve_as_prov(&dir, &root, &["--log", log.to_str().unwrap()]);
    let r = get(server.addr, "/cfg/default.xml", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"sipnotify\"")
    );
    assert_eq!(
        get(
            server.addr,
            "/cfg/default.xml",
            &[&basic("prov:Bad-Guess-77")]
        )
        .status,
        401
    );
    assert_eq!(
        get(
            server.addr,
            "/cfg/default.xml",
            &[&basic("other:Serve-Pass-99")]
        )
        .status,
        401
    );
    let r = get(
        server.addr,
        "/cfg/default.xml",
        &[&basic("prov:Serve-Pass-99")],
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, DEFAULT_PROFILE.as_bytes())
    );
    let lines = wait_log(&log, 4);
    assert_eq!(lines[0]["note"], "no or wrong credentials");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Serve-Pass") && !text.contains("Bad-Guess"));
}
