//! Operator mistakes and hostile answers, through the real binary on loopback: pipes read
//! once, files that clash, journals of another campaign or in use, duplicate rows, escape
//! sequences from a phone, inputs without bound, requests too large for UDP.

mod common;

use common::campaign::Campaign;
use common::{assert_exit, assert_refused, batch, bin, response, spawn_piped, temp_dir};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A socket on a free loopback UDP port whose reads give up after `timeout`, to play a
/// hostile phone, and its address.
fn udp_peer(timeout: Duration) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Runs sipnotify with `args` and returns its output and peak RSS in KiB. Measured by GNU
/// time (Debian package `time`), whose child starts from its small size: a child of this
/// test process would start its count from the test process's own peak.
#[cfg(target_os = "linux")]
fn output_and_peak_rss(args: &[&str]) -> (Output, i64) {
    let dir = temp_dir("peak-rss");
    let peak = dir.join(args.join("_").replace('/', "_"));
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&peak)
        .arg(env!("CARGO_BIN_EXE_sipnotify"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("GNU time (Debian package time, installed by .ci/run)");
    let kib = std::fs::read_to_string(&peak)
        .ok()
        .and_then(|t| t.lines().last()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time for {args:?}"));
    (out, kib)
}

/// A 1,000-row list fed through process substitution (`<(cat file)`, a pipe opened by
/// path) is read once: with --spread it is held whole and counted, and with a terminal on
/// stderr (a progress bar) the bar has no total; all 1,000 are delivered either way.
#[cfg(target_os = "linux")]
#[test]
fn a_pipe_is_read_once_with_spread_and_with_a_progress_bar() {
    let campaign = Campaign::start("pipe", "", 1000..2000);
    let run = |extra: &str, stderr: Stdio| {
        let script = format!(
            "exec \"$0\" batch <(cat '{}') --event resync --output json {extra}",
            campaign.input.display()
        );
        Command::new("bash")
            .args(["-c", &script, env!("CARGO_BIN_EXE_sipnotify")])
            .stdin(Stdio::null())
            .stderr(stderr)
            .output()
            .unwrap()
    };
    let spread = run("--spread 1s", Stdio::piped());
    assert_exit(&spread, 0);
    let records = json_lines(&spread.stdout);
    assert_eq!(records.len(), 1000);
    assert!(records.iter().all(|r| r["outcome"] == "delivered"));

    // A pseudo-terminal on stderr: the progress bar is drawn.
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills in two descriptors; the others may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty");
    // Drain the terminal so the bar never blocks on a full buffer.
    let drained = std::thread::spawn(move || {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        // SAFETY: `master` is ours, and owned by this File from here on.
        let mut terminal = unsafe { std::fs::File::from_raw_fd(master) };
        let mut seen = Vec::new();
        let _ = terminal.read_to_end(&mut seen);
        seen
    });
    // SAFETY: `slave` is ours, and owned by the Stdio from here on.
    let tty = unsafe { <Stdio as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    let with_bar = run("", tty);
    let records = json_lines(&with_bar.stdout);
    assert_eq!(with_bar.status.code(), Some(0));
    assert_eq!(records.len(), 1000);
    assert!(records.iter().all(|r| r["outcome"] == "delivered"));
    let seen = drained.join().unwrap();
    // stderr was the terminal: the summary went there (stdout carries JSON).
    assert!(String::from_utf8_lossy(&seen).contains("summary: 1000 targets"));
    // Every phone acted twice: once per run, never more.
    campaign.phone.assert_each_delivered(1000, 2);
}

/// Options naming the same file are refused before anything is opened for writing, and
/// the input is left as it was.
#[test]
fn options_naming_the_same_file_are_refused_and_the_input_is_untouched() {
    let campaign = Campaign::start("clash", "", 1000..1005);
    let written = std::fs::read_to_string(&campaign.input).unwrap();
    let journal = &campaign.journal;
    let input_s = campaign.input.to_str().unwrap();
    let journal_s = journal.to_str().unwrap();
    // The same journal by another spelling.
    let dotted = format!("{}/./j.jsonl", campaign.dir.display());
    for (args, message) in [
        (
            vec![input_s, "--journal", journal_s, "--report", &dotted],
            "--journal and --report name the same file",
        ),
        (
            vec![input_s, "--report", input_s],
            "the input and --report name the same file",
        ),
        (
            vec![input_s, "--journal", input_s],
            "the input and --journal name the same file",
        ),
    ] {
        let out = batch(&args);
        assert_refused(&out, message);
        assert_eq!(std::fs::read_to_string(input_s).unwrap(), written);
        assert!(!journal.exists(), "{args:?} opened the journal");
    }
    assert!(campaign.phone.deliveries(0).is_empty());
}

/// A journal is this campaign's or refused: another event, a device, a link to one, a run
/// holding it.
#[test]
fn a_journal_of_another_campaign_or_in_use_is_refused() {
    let campaign = Campaign::start("journal", "", 1000..1050);
    let journal = campaign.dir.join("resync.journal");
    let (input_s, journal_s) = (campaign.input.to_str().unwrap(), journal.to_str().unwrap());
    let out = batch(&[input_s, "--event", "resync", "--journal", journal_s]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(campaign.phone.deliveries(50).len(), 50);

    let reboot = batch(&[input_s, "--event", "reboot", "--journal", journal_s]);
    assert_refused(&reboot, "its event is `resync`, this run's is `reboot_now`");
    // Nothing was rebooted.
    let events: Vec<String> = std::fs::read_to_string(&campaign.phone.log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(events.iter().all(|e| e == "resync"), "{events:?}");

    let link = campaign.dir.join("null.journal");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for device in ["/dev/null", link.to_str().unwrap()] {
        let out = batch(&[input_s, "--journal", device]);
        assert_refused(&out, "not a regular file");
    }
    assert_eq!(campaign.phone.deliveries(50).len(), 50);
}

/// A second run on a journal a first run holds sends nothing and exits 2, naming the
/// first run's pid; no phone acts twice.
#[test]
fn a_second_run_on_a_busy_journal_sends_nothing() {
    // Slow phones: the first run is still going when the second starts.
    let campaign = Campaign::start("busy", "--delay 200", 1000..1040);
    let journal = &campaign.journal;
    let args = [
        campaign.input.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--concurrency",
        "4",
    ];
    let mut first = bin()
        .arg("batch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for its run record: it holds the lock from then on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(journal)
        .unwrap_or_default()
        .contains("\"type\":\"intent\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = batch(&args);
    assert_refused(
        &second,
        &format!("another run is using it (pid {})", first.id()),
    );
    assert!(first.wait().unwrap().success());
    campaign.phone.assert_each_delivered(40, 1);
}

/// The same phone four times in one file (two spellings of its URI) acts once; the other
/// rows are reported `duplicate` with the line of the first. `--allow-duplicates` sends
/// each.
#[test]
fn duplicate_rows_act_once_unless_allowed() {
    let campaign = Campaign::with_rows("dup", "", |addr| {
        format!(
            "target,password\n\
             sip:1000@{addr},pw-1000\n\
             1000@{addr},pw-1000\n\
             sip:1001@{addr},pw-1001\n\
             sip:1000@{addr},pw-1000\n\
             1000@{addr},pw-1000\n"
        )
    });
    let out = campaign.batch(&["--event", "reboot", "--output", "json"]);
    assert_exit(&out, 0);
    let records = json_lines(&out.stdout);
    let duplicates: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "duplicate")
        .collect();
    assert_eq!(duplicates.len(), 3);
    assert!(duplicates
        .iter()
        .all(|r| r["reason"].as_str().unwrap().contains("line 2")));
    let counts = campaign.phone.deliveries(2);
    assert_eq!((counts["1000"], counts["1001"]), (1, 1));

    let out = campaign.batch(&["--event", "reboot", "--allow-duplicates"]);
    assert_eq!(out.status.code(), Some(0));
    // 1000 four times more, 1001 once: seven in all.
    assert_eq!(campaign.phone.deliveries(7)["1000"], 1 + 4);
}

/// A misspelt column (`pasword`) would send every row without its password: the run says
/// which columns it does not read before the first row is sent.
#[test]
fn columns_that_are_not_read_are_named_before_sending() {
    let campaign = Campaign::with_rows("columns", "", |addr| {
        format!("target,pasword\nsip:1000@{addr},pw-1000\n")
    });
    let out = campaign.batch(&["--event", "reboot", "--output", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.contains("warning: the input's column(s) `pasword` are not read")),
        "{stderr}"
    );
    assert!(!stderr.contains("pw-1000"), "{stderr}");
    // Without its password the phone's challenge cannot be answered: the warning says why.
    assert_exit(&out, 1);
    assert_eq!(json_lines(&out.stdout)[0]["outcome"], "no_credentials");
}

/// A phone whose reason phrase carries escape sequences: no raw ESC reaches stdout or
/// stderr, whatever the output mode, one target or a campaign.
#[test]
fn escape_sequences_from_a_phone_never_reach_the_terminal() {
    let (socket, addr) = udp_peer(Duration::from_millis(200));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let reason = "Busy\x1b]0;pwned\x07\x1b[2K\rdelivered";
                    let answer = response(&buf[..n], 486, reason, &[], b"");
                    let _ = socket.send_to(&answer, from);
                }
            }
        })
    };
    let dir = temp_dir("escape");
    let input = dir.join("phones.csv");
    std::fs::write(&input, format!("target\nsip:1@{addr}\nsip:2@{addr}\n")).unwrap();
    for output in ["human", "json", "csv"] {
        let one = bin()
            .args(["resync", &format!("sip:1@{addr}"), "--output", output])
            .output()
            .unwrap();
        let many = batch(&[input.to_str().unwrap(), "--output", output]);
        for out in [&one, &many] {
            assert!(out.status.code() == Some(4) || out.status.code() == Some(1));
            for stream in [&out.stdout, &out.stderr] {
                assert!(
                    !stream.contains(&0x1b),
                    "{output}: {}",
                    String::from_utf8_lossy(stream)
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("Busy"), "{output}: {text}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hostile.join().unwrap();
}

/// Inputs without bound are refused early and cheaply: a body or password file that never
/// ends, a request too large for a datagram, a control character in a header.
#[cfg(target_os = "linux")]
#[test]
fn unbounded_inputs_are_refused_in_bounded_memory() {
    let target = "sip:159@127.0.0.1:9";
    for (args, message) in [
        (
            vec!["notify", target, "--event", "x", "--body-file", "/dev/zero"],
            "the body file /dev/zero is over 64 KiB",
        ),
        (
            vec!["resync", target, "--password-file", "/dev/urandom"],
            "the password file /dev/urandom is over 4 KiB",
        ),
    ] {
        let (out, rss_kib) = output_and_peak_rss(&args);
        assert_refused(&out, message);
        assert!(rss_kib < 64 * 1024, "{args:?}: {rss_kib} KiB");
    }
    let url = format!("http://10.0.0.1/{}", "a".repeat(70_000));
    let out = bin().args(["xml-service", target, &url]).output().unwrap();
    assert_refused(&out, "UDP carries at most 65,507: use --transport tcp");
    let dir = temp_dir("big");
    let input = dir.join("phones.csv");
    std::fs::write(&input, format!("target\n{target}\n")).unwrap();
    let out = batch(&[
        input.to_str().unwrap(),
        "--event",
        "xml-service",
        "--url",
        &url,
    ]);
    assert_refused(&out, "UDP carries at most 65,507");
    let out = bin()
        .args(["resync", target, "--header", "X-A: b\x1b[2Kc"])
        .output()
        .unwrap();
    assert_refused(&out, "the X-A header has a control character");
}

/// A reader that goes away after one line (`| head -1`) is no panic: the command goes on
/// to its end and its usual exit code; a campaign journals every target.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    // More output than a pipe holds, so writes go on after the reader left.
    let campaign = Campaign::start("pipe-closed", "", 1000..3000);
    let journal = &campaign.journal;
    let mut demo = bin();
    demo.arg("demo");
    let mut run = campaign.command(&[]);
    for command in [&mut demo, &mut run] {
        let mut child = spawn_piped(command.stdin(Stdio::null()));
        let first = common::first_line(&mut child);
        assert!(!first.is_empty());
        // The reader is gone (its end of the pipe dropped above).
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(campaign.phone.deliveries(2000).len(), 2000);
    let results = std::fs::read_to_string(journal)
        .unwrap()
        .matches("\"type\":\"result\"")
        .count();
    assert_eq!(results, 2000);
}

/// A campaign that times out says why: what arrived and was dropped is counted in its
/// summary.
#[test]
fn dropped_answers_are_counted_in_the_summary() {
    let (socket, addr) = udp_peer(Duration::from_secs(5));
    // The socket stays open (returned by the thread) so that the retransmissions meet a
    // silent phone, not a closed port.
    let junk = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let foreign = String::from_utf8_lossy(&response(&buf[..n], 200, "OK", &[], b""))
                .replace("branch=z9hG4bK", "branch=z9hG4bKforeign");
            let _ = socket.send_to(b"\x00not sip at all", from);
            let _ = socket.send_to(foreign.as_bytes(), from);
        }
        socket
    });
    let dir = temp_dir("dropped");
    let input = dir.join("phones.csv");
    std::fs::write(&input, format!("target\nsip:1@{addr}\n")).unwrap();
    let out = batch(&[input.to_str().unwrap(), "--timeout", "1"]);
    junk.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("1 timeout"), "{text}");
    assert!(
        text.contains("received and dropped: 1 matching no request in flight, 0 with another Call-ID or CSeq, 1 not SIP"),
        "{text}"
    );
}
