//! Interoperability with Kamailio (Debian package `kamailio`, auth module) as an outbound
//! proxy that challenges with 407 in front of the phone simulator, which challenges with
//! 401: the agent must answer both realms, and Kamailio's digest implementation (not ours)
//! decides whether the proxy credentials are right. Config: `tests/peers/kamailio/`.
//!
//! If `kamailio` cannot be found, the tests fail when `CI` is set and are otherwise reported
//! ignored, with the reason (`tests/common/needs.rs`).

mod common;

use common::{bin, json_line, PhoneBuilder, PhoneProcess, PASSWORD};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kamailio: on PATH or in the sbin directories (not on every user's PATH).
fn kamailio() -> common::needs::Program {
    common::needs::Program::find("kamailio", "kamailio", &["/usr/sbin", "/usr/local/sbin"])
}

/// A port free on 127.0.0.1 for both UDP and TCP.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Kamailio in the foreground, in its own process group (it forks workers); the whole
/// group is stopped on drop.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Kamailio {
    fn start(binary: &Path, name: &str, proxy_password: &str) -> Kamailio {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kamailio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kamailio/kamailio.cfg");
        let port = free_port();
        let log = dir.join("kamailio.log");
        let child = Command::new(binary)
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "4"])
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .args(["-l", &format!("tcp:127.0.0.1:{port}")])
            .arg("-Y")
            .arg(&dir)
            .arg("-w")
            .arg(&dir)
            .args(["-A", &format!("PROXY_PASSWORD=\"{proxy_password}\"")])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("kamailio.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("start kamailio");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let kamailio = Kamailio { child, addr, log };
        kamailio.wait_ready();
        kamailio
    }

    /// Sends OPTIONS until Kamailio answers (the config answers it 405).
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:ping@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping\r\n\
             Max-Forwards: 70\r\nFrom: <sip:t@{me}>;tag=1\r\nTo: <sip:ping@{a}>\r\n\
             Call-ID: ping-{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            a = self.addr
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            sock.send_to(options.as_bytes(), self.addr).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        panic!(
            "kamailio did not answer within 10 s:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (workers included).
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Starts `phone`, and Kamailio (named after `test`, accepting [`PASSWORD`]) in front of it,
/// and runs `sipnotify resync` with `password` to the phone's UDP address through the proxy
/// over `transport`: the JSON result, the exit code and Kamailio's log.
fn resync_through_kamailio(
    test: &str,
    phone: PhoneBuilder,
    transport: &str,
    password: &str,
) -> (Value, i32, String) {
    let phone = phone.start();
    let kamailio = Kamailio::start(&kamailio().path(), test, PASSWORD);
    let (v, code) = resync(phone.addr("udp"), kamailio.addr, transport, password);
    (v, code, kamailio.log())
}

/// `sipnotify resync` through the proxy; returns the JSON result (with the ladder) and the
/// exit code.
fn resync(phone: SocketAddr, proxy: SocketAddr, transport: &str, password: &str) -> (Value, i32) {
    let out = bin()
        .arg("resync")
        .arg(format!("sip:159@{phone}"))
        .args(["--proxy", &proxy.to_string(), "--transport", transport])
        .args(["--output", "json", "-v", "--t1", "100", "--timeout", "10"])
        .env("SIPNOTIFY_PASSWORD", password)
        .output()
        .unwrap();
    (json_line(&out.stdout), out.status.code().unwrap())
}

/// The messages of the ladder: (direction, first line, whole text).
fn ladder(v: &Value) -> Vec<(String, String, String)> {
    v["ladder"]
        .as_array()
        .unwrap_or_else(|| panic!("no ladder: {v}"))
        .iter()
        .map(|e| {
            let text = e["message"].as_str().unwrap().to_string();
            let first = text.lines().next().unwrap_or_default().to_string();
            (
                e["direction"].as_str().unwrap_or_default().to_string(),
                first,
                text,
            )
        })
        .collect()
}

/// Refused: auth_failed with a 403 (exit 3), after `attempts` attempts.
#[track_caller]
fn assert_auth_failed_403(v: &Value, code: i32, log: &str, attempts: u64) {
    assert_eq!(
        (v["outcome"].as_str(), code, v["status"].as_u64()),
        (Some("auth_failed"), 3, Some(403)),
        "{v}\n{log}"
    );
    assert_eq!(v["attempts"], attempts, "{v}");
}

fn right_password_through_kamailio(transport: &str) {
    let test = format!("kamailio_{transport}_right_password");
    let phone = PhoneProcess::builder().transport("both");
    let (v, code, log) = resync_through_kamailio(&test, phone, transport, PASSWORD);
    assert_eq!(
        (v["outcome"].as_str(), code),
        (Some("delivered"), 0),
        "{v}\n{log}"
    );
    // NOTIFY -> 407 (Kamailio), NOTIFY + Proxy-Authorization -> 401 (the phone, relayed),
    // NOTIFY + both -> 200.
    assert_eq!(v["attempts"], 3, "{v}");
    let received: Vec<String> = ladder(&v)
        .into_iter()
        .filter(|(d, _, _)| d == "received")
        .map(|(_, first, _)| first)
        .collect();
    assert_eq!(
        received,
        [
            "SIP/2.0 407 Proxy Authentication Required",
            "SIP/2.0 401 Unauthorized",
            "SIP/2.0 200 OK"
        ],
        "{v}"
    );
    let last_sent = ladder(&v)
        .into_iter()
        .rfind(|(d, _, _)| d == "sent")
        .unwrap()
        .2;
    assert!(
        last_sent.contains("Proxy-Authorization: Digest")
            && last_sent.contains("realm=\"kamailio-proxy\"")
            && last_sent.contains("\r\nAuthorization: Digest"),
        "{last_sent}"
    );
    assert!(
        log.contains("authenticated 159, relaying NOTIFY"),
        "Kamailio did not log the authentication:\n{log}"
    );
}

fn wrong_password_refused_by_kamailio(transport: &str) {
    let test = format!("kamailio_{transport}_wrong_password");
    let phone = PhoneProcess::builder().transport("both");
    let (v, code, log) = resync_through_kamailio(&test, phone, transport, "not-the-password");
    assert_auth_failed_403(&v, code, &log, 2);
    assert!(log.contains("auth failed -2 for 159"), "{log}");
}

fn kamailio_udp_407_then_phone_401_right_password_is_delivered() {
    right_password_through_kamailio("udp");
}

fn kamailio_tcp_407_then_phone_401_right_password_is_delivered() {
    right_password_through_kamailio("tcp");
}

fn kamailio_udp_wrong_password_is_auth_failed_at_the_proxy() {
    wrong_password_refused_by_kamailio("udp");
}

fn kamailio_tcp_wrong_password_is_auth_failed_at_the_proxy() {
    wrong_password_refused_by_kamailio("tcp");
}

/// The proxy accepts the password, the phone behind it does not: the 403 comes from the
/// phone, relayed, after three attempts.
fn kamailio_accepts_but_the_phone_refuses() {
    let test = "kamailio_accepts_but_the_phone_refuses";
    // A phone whose line password is not the one the proxy accepts.
    let phone = PhoneProcess::builder()
        .transport("udp")
        .password_template("the-phones-own-password");
    let (v, code, log) = resync_through_kamailio(test, phone, "udp", PASSWORD);
    assert_auth_failed_403(&v, code, &log, 3);
    assert!(log.contains("authenticated 159, relaying NOTIFY"), "{log}");
}

fn main() -> std::process::ExitCode {
    common::needs::run(
        &kamailio(),
        trials![
            kamailio_udp_407_then_phone_401_right_password_is_delivered,
            kamailio_tcp_407_then_phone_401_right_password_is_delivered,
            kamailio_udp_wrong_password_is_auth_failed_at_the_proxy,
            kamailio_tcp_wrong_password_is_auth_failed_at_the_proxy,
            kamailio_accepts_but_the_phone_refuses,
        ],
    )
}
