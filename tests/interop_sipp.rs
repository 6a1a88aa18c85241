//! Interoperability tests against SIPp (Debian package `sip-tester`), an
//! independent SIP implementation.
//!
//! - Our agent (`sipnotify resync ...`) against SIPp playing a phone that
//!   challenges the NOTIFY (`tests/peers/uas_auth.xml`: Sipura style, no qop;
//!   `tests/peers/uas_auth_qop.xml`: qop="auth"), over UDP and TCP, with the
//!   right password (delivered, exit 0) and a wrong one (auth_failed, exit 3).
//! - SIPp as a NOTIFY sender (`tests/peers/uac_notify_auth.xml`, expecting
//!   200, and `uac_notify_auth_403.xml`, expecting 403) against our phone
//!   simulator (`sipnotify phone ...`), over UDP and TCP, with and without qop.
//!
//! Without `sipp` on PATH the tests fail when the `CI` environment variable is set, and are
//! otherwise reported ignored, with the reason (`tests/common/needs.rs`).
//!
//! Every child process (sipp, the phone) lives in a [`ChildGuard`] that kills
//! it on drop, and every wait is bounded.

mod common;

use common::needs::test;
use common::PhoneProcess;
use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The one user/password pair the SIPp scenarios and our phone agree on.
const USER: &str = "159";
const PASSWORD: &str = "secret159";
const WRONG_PASSWORD: &str = "not-the-password";

/// Upper bound for any one child process in these tests.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t` value: one socket, one connection.
    fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    /// Our CLI's `--transport` value.
    fn cli(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Where a child's stdout/stderr go: a file per child, shown on failure.
fn log_path(tag: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join("sipnotify-interop-sipp");
    fs::create_dir_all(&dir).expect("create log dir");
    dir.join(format!(
        "{tag}-{}-{}.log",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The last few KiB of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned());
    match text {
        Ok(t) => {
            let start = t.len().saturating_sub(4000);
            let start = (start..t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(0);
            t[start..].to_string()
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Kills (and reaps) its child when dropped, so a failing assertion never
/// leaves sipp or the phone running.
struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl ChildGuard {
    fn new(name: impl Into<String>, child: Child, log: Option<PathBuf>) -> Self {
        ChildGuard {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// The exit status if the child has already exited.
    fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Waits at most `limit` for the child to exit; panics (after killing it)
    /// if it does not.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{} did not exit within {limit:?}; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn output(&self) -> String {
        self.log.as_deref().map(tail).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        // Keep the log of a failed test (its tail is in the panic message);
        // remove the others.
        if let Some(log) = &self.log {
            if thread::panicking() {
                eprintln!("{} log kept at {}", self.name, log.display());
            } else {
                let _ = fs::remove_file(log);
            }
        }
    }
}

fn scenario(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name);
    assert!(path.is_file(), "missing scenario {}", path.display());
    path.to_string_lossy().into_owned()
}

/// Starts sipp in the foreground (never `-bg`), stdout and stderr to a log.
/// Common options: one call (`-m 1`), a global timeout, no stdin, no BYE
/// on timeouts (`-default_behaviors all,-bye`), no traces.
fn spawn_sipp(tag: &str, args: &[String]) -> ChildGuard {
    let log = log_path(tag);
    let out = File::create(&log).expect("create sipp log");
    let err = out.try_clone().expect("clone log handle");
    let mut cmd = Command::new("sipp");
    cmd.args(args)
        .args([
            "-m",
            "1",
            "-timeout",
            "10s",
            "-nostdin",
            "-default_behaviors",
            "all,-bye",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start sipp: {e}"));
    ChildGuard::new(format!("sipp ({tag}) {args:?}"), child, Some(log))
}

/// SIPp as a phone line on `port`, challenging with `scenario_file`.
fn spawn_sipp_uas(scenario_file: &str, transport: Transport, port: u16) -> ChildGuard {
    let args: Vec<String> = [
        "-sf",
        &scenario(scenario_file),
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        transport.sipp_flag(),
        "-key",
        "user",
        USER,
        "-key",
        "password",
        PASSWORD,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sipp = spawn_sipp("uas", &args);
    wait_until_listening(&mut sipp, transport, port);
    sipp
}

/// Waits until sipp accepts TCP connections on `port` (a UDP NOTIFY sent
/// early is simply retransmitted by the agent, so for UDP it only checks
/// that sipp has not died, e.g. on a port clash).
fn wait_until_listening(sipp: &mut ChildGuard, transport: Transport, port: u16) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    loop {
        if let Some(status) = sipp.try_status() {
            panic!(
                "{} exited early ({status}); output:\n{}",
                sipp.name,
                sipp.output()
            );
        }
        match transport {
            Transport::Tcp => {
                if TcpStream::connect_timeout(
                    &([127, 0, 0, 1], port).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
                {
                    return;
                }
            }
            Transport::Udp => {
                if started.elapsed() >= Duration::from_millis(300) {
                    return;
                }
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "{} is not listening on port {port} after 5 s; output:\n{}",
                sipp.name,
                sipp.output()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One line of `--output json`, checked for the fields of the CLI contract.
struct Report {
    json: Value,
}

impl Report {
    fn str(&self, key: &str) -> &str {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("`{key}` is not a string in {}", self.json))
    }

    fn u64(&self, key: &str) -> u64 {
        self.json[key]
            .as_u64()
            .unwrap_or_else(|| panic!("`{key}` is not an unsigned integer in {}", self.json))
    }
}

/// Runs `sipnotify resync sip:159@127.0.0.1:PORT --transport T --output json`
/// with the password in `SIPNOTIFY_PASSWORD`; returns the exit code and the
/// single JSON report line.
fn run_agent(transport: Transport, port: u16, password: &str) -> (i32, Report, String) {
    let target = format!("sip:{USER}@127.0.0.1:{port}");
    let output = assert_cmd::Command::cargo_bin("sipnotify")
        .expect("the sipnotify binary")
        .args([
            "resync",
            &target,
            "--transport",
            transport.cli(),
            "--output",
            "json",
        ])
        .env("SIPNOTIFY_PASSWORD", password)
        .timeout(CHILD_DEADLINE)
        .output()
        .expect("run sipnotify");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let context = format!("sipnotify {target}\n--- stdout:\n{stdout}--- stderr:\n{stderr}");
    let code = output
        .status
        .code()
        .unwrap_or_else(|| panic!("sipnotify killed by a signal (timeout?)\n{context}"));
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one JSON line for one target\n{context}"
    );
    let json: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{context}"));
    assert!(json.is_object(), "report is not a JSON object\n{context}");
    let report = Report { json };
    assert_eq!(report.str("event"), "resync", "{context}");
    assert!(
        report.str("target").contains(&port.to_string()),
        "target does not name the phone\n{context}"
    );
    assert!(
        !report.str("call_id").is_empty(),
        "empty call_id\n{context}"
    );
    let elapsed = report.json["elapsed_ms"].as_f64();
    assert!(
        elapsed.is_some_and(|ms| (0.0..60_000.0).contains(&ms)),
        "elapsed_ms is not a plausible number of milliseconds\n{context}"
    );
    report.str("reason");
    (code, report, context)
}

/// The agent against a SIPp phone: sipp must finish its scenario (exit 0)
/// and the agent must report `outcome`/`status` with exit code `code`.
fn agent_vs_sipp_uas(
    scenario_file: &str,
    transport: Transport,
    password: &str,
    want_code: i32,
    want_outcome: &str,
    want_status: u64,
) {
    let port = common::free_port(&["127.0.0.1"]);
    let mut sipp = spawn_sipp_uas(scenario_file, transport, port);

    let (code, report, context) = run_agent(transport, port, password);
    let sipp_status = sipp.wait(CHILD_DEADLINE);
    let sipp_log = sipp.output();
    let context = format!("{context}--- sipp:\n{sipp_log}");

    assert_eq!(report.str("outcome"), want_outcome, "{context}");
    assert_eq!(report.u64("status"), want_status, "{context}");
    assert!(
        report.u64("attempts") >= 2,
        "a challenged NOTIFY takes two requests\n{context}"
    );
    assert_eq!(code, want_code, "exit code\n{context}");
    assert_eq!(
        sipp_status.code(),
        Some(0),
        "sipp's scenario did not pass\n{context}"
    );
}

/// Starts `sipnotify phone` on `port`, its stderr to a log, and checks its ready line.
fn spawn_phone(transport: Transport, port: u16, challenge: &str) -> ChildGuard {
    let log = log_path("phone");
    let phone = PhoneProcess::builder()
        .listen(format!("127.0.0.1:{port}"))
        .transport(transport.cli())
        .user(USER)
        .password_template(PASSWORD)
        .challenge(challenge)
        .stderr_to(&log)
        .start();
    let line = phone.first_line().trim_end();
    assert!(
        line.contains(&port.to_string()),
        "phone's ready line does not name port {port}: {line:?}"
    );
    ChildGuard::new(
        format!("sipnotify phone ({} {challenge})", transport.cli()),
        phone.into_child(),
        Some(log),
    )
}

/// SIPp's UAC against our phone; returns sipp's exit status and its log.
fn sipp_uac_vs_phone(
    scenario_file: &str,
    transport: Transport,
    challenge: &str,
    password: &str,
) -> (ExitStatus, String) {
    let phone_port = common::free_port(&["127.0.0.1"]);
    let mut phone = spawn_phone(transport, phone_port, challenge);
    let local_port = common::free_port(&["127.0.0.1"]);
    let args: Vec<String> = [
        &format!("127.0.0.1:{phone_port}"),
        "-sf",
        &scenario(scenario_file),
        "-s",
        USER,
        "-au",
        USER,
        "-ap",
        password,
        "-i",
        "127.0.0.1",
        "-p",
        &local_port.to_string(),
        "-t",
        transport.sipp_flag(),
        // SIPp's UAC ignores -timeout with -m 1 while it waits for an answer.
        "-recv_timeout",
        "5000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sipp = spawn_sipp("uac", &args);
    let status = sipp.wait(CHILD_DEADLINE);
    assert!(
        phone.try_status().is_none(),
        "the phone died during the exchange; stderr:\n{}",
        phone.output()
    );
    let log = format!(
        "--- sipp:\n{}\n--- phone stderr:\n{}",
        sipp.output(),
        phone.output()
    );
    (status, log)
}

// ---------------------------------------------------------------------------
// The tests: our agent against SIPp playing the phone, SIPp sending NOTIFY to our phone
// ---------------------------------------------------------------------------

/// SIPp's UAC must pass its scenario (exit 0), which accepts only 401 then `want` from the
/// phone: `uac_notify_auth.xml` 200, `uac_notify_auth_403.xml` 403 (so a phone that let a
/// wrong password through fails it).
fn sipp_uac_passes(
    scenario_file: &str,
    transport: Transport,
    challenge: &str,
    password: &str,
    want: u16,
) {
    let (status, log) = sipp_uac_vs_phone(scenario_file, transport, challenge, password);
    assert_eq!(
        status.code(),
        Some(0),
        "sipp expected 401 then {want} from the phone ({challenge})\n{log}"
    );
}

fn main() -> std::process::ExitCode {
    let sipp = common::needs::Program::find("sipp", "sip-tester", &[]);
    let mut tests = Vec::new();
    // Every case on each transport, named `agent_{transport}_...` and
    // `sipp_uac_{transport}_...`.
    for transport in [Transport::Udp, Transport::Tcp] {
        let t = transport.cli();
        // Our agent against SIPp playing the phone: the right password is delivered (200,
        // exit 0), a wrong one auth_failed (403, exit 3).
        for (qop, file) in [("no_qop", "uas_auth.xml"), ("qop", "uas_auth_qop.xml")] {
            for (case, password, code, outcome, status) in [
                ("right_password_is_delivered", PASSWORD, 0, "delivered", 200),
                (
                    "wrong_password_is_auth_failed",
                    WRONG_PASSWORD,
                    3,
                    "auth_failed",
                    403,
                ),
            ] {
                tests.push(test(format!("agent_{t}_md5_{qop}_{case}"), move || {
                    agent_vs_sipp_uas(file, transport, password, code, outcome, status)
                }));
            }
        }
        // SIPp sending NOTIFY to our phone simulator, with and without qop.
        for challenge in ["md5", "md5-qop"] {
            let c = challenge.replace('-', "_");
            for (case, file, password, want) in [
                ("right", "uac_notify_auth.xml", PASSWORD, 200),
                ("wrong", "uac_notify_auth_403.xml", WRONG_PASSWORD, 403),
            ] {
                tests.push(test(
                    format!("sipp_uac_{t}_{c}_{case}_password_gets_{want}"),
                    move || sipp_uac_passes(file, transport, challenge, password, want),
                ));
            }
        }
    }
    common::needs::run(&sipp, tests)
}
