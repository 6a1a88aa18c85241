//! Interoperability with Kamailio (Debian package `kamailio`, auth module) as an outbound
//! proxy that challenges with 407 in front of the phone simulator, which challenges with
//! 401: the agent must answer both realms, and Kamailio's digest implementation (not ours)
//! decides whether the proxy credentials are right. Config: `tests/peers/kamailio/`.
//!
//! The `kamailio_tls_*` tests put Kamailio's TLS module (OpenSSL, Debian package
//! `kamailio-tls-modules`) in front: a throwaway CA and certificates made by each test
//! (rcgen), a `tls.cfg` written by it, and sipnotify's checks, refusals and client
//! certificates against them.
//!
//! If `kamailio` (or its TLS module) cannot be found, the tests fail when `CI` is set and
//! are otherwise reported ignored, with the reason (`tests/common/needs.rs`).

mod common;

use common::pki::{self, Leaf, Pki};
use common::{bin, json_line, send_json, PhoneBuilder, PhoneProcess, PASSWORD};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kamailio: on PATH or in the sbin directories (not on every user's PATH).
fn kamailio() -> common::needs::Program {
    common::needs::Program::find("kamailio", "kamailio", &["/usr/sbin", "/usr/local/sbin"])
}

/// Kamailio's TLS module, in the module directories of `kamailio.cfg`'s `mpath`.
fn kamailio_tls_module() -> common::needs::Program {
    common::needs::Program::find(
        "tls.so",
        "kamailio-tls-modules",
        &[
            "/usr/lib/x86_64-linux-gnu/kamailio/modules",
            "/usr/lib/aarch64-linux-gnu/kamailio/modules",
            "/usr/lib/kamailio/modules",
            "/usr/local/lib64/kamailio/modules",
            "/usr/local/lib/kamailio/modules",
        ],
    )
}

/// Kamailio in the foreground, in its own process group (it forks workers); the whole
/// group is stopped on drop.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    /// Its TLS listener, when started with one.
    tls: Option<SocketAddr>,
    log: PathBuf,
}

/// A TLS listener for Kamailio: on `host` (`127.0.0.1` or `[::1]`), with the lines of its
/// `tls.cfg` (the certificate, the key, and what it asks of clients).
struct TlsListener<'a> {
    host: &'a str,
    tls_cfg: String,
}

impl Kamailio {
    /// The test's own directory, empty.
    fn dir(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kamailio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn start(
        binary: &Path,
        dir: &Path,
        proxy_password: &str,
        tls: Option<TlsListener<'_>>,
    ) -> Kamailio {
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kamailio/kamailio.cfg");
        let port = common::free_port(&["127.0.0.1", "::1"]);
        let log = dir.join("kamailio.log");
        let mut command = Command::new(binary);
        command
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "4"])
            .args(["-l", &format!("udp:127.0.0.1:{port}")])
            .args(["-l", &format!("tcp:127.0.0.1:{port}")])
            .args(["-l", &format!("udp:[::1]:{port}")])
            .args(["-l", &format!("tcp:[::1]:{port}")])
            .arg("-Y")
            .arg(dir)
            .arg("-w")
            .arg(dir)
            .args(["-A", &format!("PROXY_PASSWORD=\"{proxy_password}\"")]);
        let tls = tls.map(|listener| {
            let tls_cfg = dir.join("tls.cfg");
            std::fs::write(&tls_cfg, &listener.tls_cfg).unwrap();
            let host = listener.host;
            let port = common::free_port(&[host.trim_start_matches('[').trim_end_matches(']')]);
            command
                .args(["-l", &format!("tls:{host}:{port}")])
                .args(["-A", "WITH_TLS"])
                .args(["-A", &format!("TLS_CONFIG=\"{}\"", tls_cfg.display())]);
            format!("{host}:{port}").parse::<SocketAddr>().unwrap()
        });
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("kamailio.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("start kamailio");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let kamailio = Kamailio {
            child,
            addr,
            tls,
            log,
        };
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
    let kamailio = Kamailio::start(&kamailio().path(), &Kamailio::dir(test), PASSWORD, None);
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

/// Kamailio on [::1] over UDP and TCP, in front of a phone on [::1]: brackets in every
/// address the agent writes, and both challenges answered.
fn kamailio_on_ipv6_loopback_over_udp_and_tcp_is_delivered() {
    let phone = PhoneProcess::builder()
        .listen("[::1]:0")
        .transport("both")
        .start();
    let dir = Kamailio::dir("kamailio_ipv6");
    let kamailio = Kamailio::start(&kamailio().path(), &dir, PASSWORD, None);
    let proxy = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, kamailio.addr.port()));
    for transport in ["udp", "tcp"] {
        // Kamailio relays to the phone over UDP, whatever the agent used to reach it.
        let (v, code) = resync(phone.addr("udp"), proxy, transport, PASSWORD);
        assert_delivered_through_both_challenges(&v, code, &kamailio.log());
        let first_sent = &ladder(&v)[0].2;
        let upper = transport.to_ascii_uppercase();
        assert!(
            first_sent.contains(&format!("\r\nVia: SIP/2.0/{upper} [::1]:")),
            "{first_sent}"
        );
    }
}

fn right_password_through_kamailio(transport: &str) {
    let test = format!("kamailio_{transport}_right_password");
    let phone = PhoneProcess::builder().transport("both");
    let (v, code, log) = resync_through_kamailio(&test, phone, transport, PASSWORD);
    assert_delivered_through_both_challenges(&v, code, &log);
}

/// Delivered (exit 0) after Kamailio's 407 and the phone's 401, each answered.
#[track_caller]
fn assert_delivered_through_both_challenges(v: &Value, code: i32, log: &str) {
    assert_eq!(
        (v["outcome"].as_str(), code),
        (Some("delivered"), 0),
        "{v}\n{log}"
    );
    // NOTIFY -> 407 (Kamailio), NOTIFY + Proxy-Authorization -> 401 (the phone, relayed),
    // NOTIFY + both -> 200.
    assert_eq!(v["attempts"], 3, "{v}");
    let received: Vec<String> = ladder(v)
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
    let last_sent = ladder(v)
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

/// A Kamailio TLS listener on `host` presenting `leaf`, with `more` lines of its server
/// profile (what it checks of clients, its TLS versions and suites).
fn tls_listener<'a>(host: &'a str, leaf: &Leaf, more: &str) -> TlsListener<'a> {
    TlsListener {
        host,
        tls_cfg: format!(
            "[server:default]\nprivate_key = {}\ncertificate = {}\n{more}\n",
            leaf.key.display(),
            leaf.cert.display()
        ),
    }
}

/// The simulated phone on UDP, and Kamailio in front of it on TLS as `listener` says.
fn phone_behind_tls(dir: &Path, listener: TlsListener<'_>) -> (PhoneProcess, Kamailio) {
    let phone = PhoneProcess::builder().transport("udp").start();
    let kamailio = Kamailio::start(&kamailio().path(), dir, PASSWORD, Some(listener));
    (phone, kamailio)
}

/// `sipnotify resync` to the phone through Kamailio's TLS listener, with `options`: the
/// JSON result (with the ladder), the exit code and stderr.
fn resync_over_tls(
    phone: &PhoneProcess,
    kamailio: &Kamailio,
    options: &[&str],
) -> (Value, i32, String) {
    let proxy = kamailio.tls.expect("a TLS listener");
    let target = format!("sip:159@{}", phone.addr("udp"));
    let proxy = proxy.to_string();
    let fixed = [
        "resync",
        &target,
        "--proxy",
        &proxy,
        "--transport",
        "tls",
        "-v",
        "--t1",
        "100",
        "--timeout",
        "10",
    ];
    send_json(&[&fixed[..], options].concat())
}

/// Refused before any request: `unreachable`, exit 5, with a reason that says `why`.
#[track_caller]
fn assert_refused(v: &Value, code: i32, why: &str, log: &str) {
    assert_eq!(
        (v["outcome"].as_str(), code, v["attempts"].as_u64()),
        (Some("unreachable"), 5, Some(0)),
        "{v}\n{log}"
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains(why), "{reason}\nexpected: {why}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A certificate from a CA given with --ca, naming the address: NOTIFY over TLS to Kamailio,
/// whose 407 and the phone's 401 (relayed over UDP) are answered on the one connection.
fn kamailio_tls_trusted_certificate_is_delivered_through_the_407_and_the_401() {
    let dir = Kamailio::dir("kamailio_tls_trusted");
    let pki = Pki::new(&dir, "proxy");
    let leaf = pki.issue("kamailio", &["127.0.0.1", "kamailio.test"]);
    let (phone, kamailio) =
        phone_behind_tls(&dir, tls_listener("127.0.0.1", &leaf, "method = TLSv1.2+"));
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &["--ca", path(pki.ca())]);
    assert_delivered_through_both_challenges(&v, code, &kamailio.log());
    for (direction, _, message) in ladder(&v) {
        if direction == "sent" {
            assert!(
                message.contains("\r\nVia: SIP/2.0/TLS 127.0.0.1:"),
                "{message}"
            );
            assert!(message.contains(";transport=tls>\r\n"), "{message}");
        }
    }
}

/// A self-signed certificate naming something else than the address, as phones and
/// appliances have: refused with exit 5 and a reason that offers its pin; accepted by that
/// pin (of the certificate or of its key) and by --tls-insecure, which warns.
fn kamailio_tls_untrusted_certificate_is_refused_and_pinned_or_insecure_accepted() {
    let dir = Kamailio::dir("kamailio_tls_untrusted");
    let leaf = pki::self_signed(&dir, "kamailio", &["00-11-22-33-44-55.example"]);
    let other = Pki::new(&dir, "other");
    let (phone, kamailio) =
        phone_behind_tls(&dir, tls_listener("127.0.0.1", &leaf, "method = TLSv1.2+"));
    let log = || kamailio.log();

    let (v, code, _) = resync_over_tls(&phone, &kamailio, &[]);
    let why = format!(
        "over tls: the certificate is not signed by a CA in the system's root certificates: \
         use --ca with the CA that signed it, or --tls-pin {} once you know it is the peer's",
        leaf.fingerprint
    );
    assert_refused(&v, code, &why, &log());
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &["--ca", path(other.ca())]);
    let why = format!("is not signed by a CA in --ca {}: ", other.ca().display());
    assert_refused(&v, code, &why, &log());
    let wrong = "00".repeat(32);
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &["--tls-pin", &wrong]);
    let why = format!(
        "the certificate matches no --tls-pin: its SHA-256 is {}, its public key's {}",
        leaf.fingerprint, leaf.spki
    );
    assert_refused(&v, code, &why, &log());

    for pin in [
        &leaf.fingerprint,
        &leaf.spki.replace(':', "").to_lowercase(),
    ] {
        let (v, code, _) =
            resync_over_tls(&phone, &kamailio, &["--tls-pin", &wrong, "--tls-pin", pin]);
        assert_delivered_through_both_challenges(&v, code, &log());
    }
    let (v, code, stderr) = resync_over_tls(&phone, &kamailio, &["--tls-insecure"]);
    assert_delivered_through_both_challenges(&v, code, &log());
    assert!(
        stderr.contains("warning: --tls-insecure: no TLS certificate is checked"),
        "{stderr}"
    );
}

/// A trusted certificate for a name, reached at an address: the reason names both and the
/// option; --tls-name checks that name (and sends it as SNI).
fn kamailio_tls_certificate_for_a_name_needs_tls_name_at_an_address() {
    let dir = Kamailio::dir("kamailio_tls_name");
    let pki = Pki::new(&dir, "proxy");
    let leaf = pki.issue("kamailio", &["kamailio.test"]);
    let (phone, kamailio) =
        phone_behind_tls(&dir, tls_listener("127.0.0.1", &leaf, "method = TLSv1.2+"));
    let ca = ["--ca", path(pki.ca())];
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &ca);
    let why = "the certificate names kamailio.test, not 127.0.0.1: use --tls-name or --tls-pin";
    assert_refused(&v, code, why, &kamailio.log());
    let (v, code, _) = resync_over_tls(
        &phone,
        &kamailio,
        &[&ca[..], &["--tls-name", "kamailio.test"]].concat(),
    );
    assert_delivered_through_both_challenges(&v, code, &kamailio.log());
}

/// A proxy that requires a client certificate from its CA: none, or one from another CA,
/// is refused with a reason that says so; --tls-cert and --tls-key from its CA are delivered.
fn kamailio_tls_mutual_tls_takes_cert_and_key() {
    let dir = Kamailio::dir("kamailio_tls_mutual");
    let pki = Pki::new(&dir, "proxy");
    let leaf = pki.issue("kamailio", &["127.0.0.1"]);
    let client = pki.issue("client", &["sipnotify.test"]);
    let stranger = Pki::new(&dir, "stranger").issue("stranger", &["sipnotify.test"]);
    let profile = format!(
        "method = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\nca_list = {}",
        pki.ca().display()
    );
    let (phone, kamailio) = phone_behind_tls(&dir, tls_listener("127.0.0.1", &leaf, &profile));
    let ca = ["--ca", path(pki.ca())];
    // Unreachable, exit 5, with a reason that says `why` (the request may have left: TLS
    // 1.3 clients learn of a refused certificate after the handshake).
    let unreachable_because = |(v, code, _): (Value, i32, String), why: &str| {
        assert_eq!(
            (v["outcome"].as_str(), code),
            (Some("unreachable"), 5),
            "{v}"
        );
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{reason}");
    };
    unreachable_because(
        resync_over_tls(&phone, &kamailio, &ca),
        "the peer requires a client certificate: use --tls-cert and --tls-key",
    );
    let with = |leaf: &Leaf| {
        resync_over_tls(
            &phone,
            &kamailio,
            &[
                &ca[..],
                &["--tls-cert", path(&leaf.cert), "--tls-key", path(&leaf.key)],
            ]
            .concat(),
        )
    };
    unreachable_because(
        with(&stranger),
        "the peer refused the client certificate of --tls-cert",
    );
    let (v, code, _) = with(&client);
    assert_delivered_through_both_challenges(&v, code, &kamailio.log());
}

/// A peer that speaks only TLS 1.1 (OpenSSL at security level 0): rustls cannot, and the
/// reason says so instead of naming an alert.
fn kamailio_tls_peer_with_only_tls_1_1_is_told_apart() {
    let old = "method = TLSv1.1\ncipher_list = DEFAULT:@SECLEVEL=0";
    let why = "the peer speaks only TLS 1.0 or 1.1, which rustls (sipnotify's TLS) does not and will not support";
    assert_tls_peer_told_apart("kamailio_tls_1_1", old, why);
}

/// A peer whose TLS 1.2 has only CBC suites: refused by the peer, and the reason names
/// what rustls offers and lacks.
fn kamailio_tls_peer_with_only_cbc_suites_is_told_apart() {
    let cbc = "method = TLSv1.2\ncipher_list = ECDHE-ECDSA-AES128-SHA";
    let why = "the peer refused the handshake (alert HandshakeFailure): it accepts none of the \
               suites rustls offers (TLS 1.2 and 1.3 with ECDHE and AES-GCM or ChaCha20; rustls \
               has no CBC, RSA key-exchange or TLS 1.0/1.1 suites)";
    assert_tls_peer_told_apart("kamailio_tls_cbc", cbc, why);
}

/// Kamailio's TLS listener on 127.0.0.1 with `profile` (its TLS settings), in the folder
/// `name`: sipnotify (with --tls-insecure) cannot speak with it, and the reason is `why`.
fn assert_tls_peer_told_apart(name: &str, profile: &str, why: &str) {
    let dir = Kamailio::dir(name);
    let leaf = Pki::new(&dir, "proxy").issue("kamailio", &["127.0.0.1"]);
    let (phone, kamailio) = phone_behind_tls(&dir, tls_listener("127.0.0.1", &leaf, profile));
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &["--tls-insecure"]);
    assert_refused(&v, code, why, &kamailio.log());
}

/// Kamailio's TLS listener on [::1], its certificate naming ::1.
fn kamailio_tls_on_ipv6_loopback_is_delivered() {
    if !common::ipv6_loopback() {
        return;
    }
    let dir = Kamailio::dir("kamailio_tls_ipv6");
    let pki = Pki::new(&dir, "proxy");
    let leaf = pki.issue("kamailio", &["::1"]);
    let (phone, kamailio) =
        phone_behind_tls(&dir, tls_listener("[::1]", &leaf, "method = TLSv1.2+"));
    let (v, code, _) = resync_over_tls(&phone, &kamailio, &["--ca", path(pki.ca())]);
    assert_delivered_through_both_challenges(&v, code, &kamailio.log());
    let (_, _, first_sent) = ladder(&v).into_iter().next().unwrap();
    assert!(
        first_sent.contains("\r\nVia: SIP/2.0/TLS [::1]:"),
        "{first_sent}"
    );
}

fn main() -> std::process::ExitCode {
    common::needs::run_groups(vec![
        (
            kamailio(),
            trials![
                kamailio_udp_407_then_phone_401_right_password_is_delivered,
                kamailio_tcp_407_then_phone_401_right_password_is_delivered,
                kamailio_udp_wrong_password_is_auth_failed_at_the_proxy,
                kamailio_tcp_wrong_password_is_auth_failed_at_the_proxy,
                kamailio_accepts_but_the_phone_refuses,
                kamailio_on_ipv6_loopback_over_udp_and_tcp_is_delivered,
            ],
        ),
        (
            kamailio_tls_module(),
            trials![
                kamailio_tls_trusted_certificate_is_delivered_through_the_407_and_the_401,
                kamailio_tls_untrusted_certificate_is_refused_and_pinned_or_insecure_accepted,
                kamailio_tls_certificate_for_a_name_needs_tls_name_at_an_address,
                kamailio_tls_mutual_tls_takes_cert_and_key,
                kamailio_tls_peer_with_only_tls_1_1_is_told_apart,
                kamailio_tls_peer_with_only_cbc_suites_is_told_apart,
                kamailio_tls_on_ipv6_loopback_is_delivered,
            ],
        ),
    ])
}
