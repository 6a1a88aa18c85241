//! `sipnotify batch` end to end: the real binary against `sipnotify phone` on loopback.

mod common;

use common::campaign::{Campaign, LoggedPhone};
use common::{assert_exit, batch, bin, output_with_stdin, temp_dir};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Polls the journal every 20 ms until it holds `n` lines of type `kind`; panics after 30 s.
fn wait_for_journal(journal: &Path, kind: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_type(&journal_so_far(journal), kind) < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} {kind}s in the journal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The journal's whole lines that parse (the last one may be being written).
fn journal_so_far(journal: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count_type(lines: &[Value], kind: &str) -> usize {
    lines.iter().filter(|l| l["type"] == kind).count()
}

/// The keys of the journal lines of type `kind`.
fn keys<'a>(lines: &'a [Value], kind: &str) -> HashSet<&'a str> {
    lines
        .iter()
        .filter(|l| l["type"] == kind)
        .map(|l| l["key"].as_str().unwrap())
        .collect()
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

impl Campaign {
    /// Starts [`Campaign::command`] with its stdout to `stdout` and its stderr piped, and
    /// sends it `sig` once the journal holds `intents` intents: the child and when the
    /// signal was sent.
    fn signal_after_intents(
        &self,
        extra: &[&str],
        stdout: Stdio,
        intents: usize,
        sig: i32,
    ) -> (Child, Instant) {
        let child = self
            .command(extra)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_journal(&self.journal, "intent", intents);
        let sent_at = Instant::now();
        signal(&child, sig);
        (child, sent_at)
    }
}

/// Journal intents' times, in seconds.
fn intent_times(journal: &Path) -> Vec<f64> {
    let mut at: Vec<f64> = read_lines(journal)
        .iter()
        .filter(|r| r["type"] == "intent")
        .map(|r| r["at"].as_f64().unwrap())
        .collect();
    at.sort_by(f64::total_cmp);
    at
}

#[test]
fn csv_with_per_row_credentials_events_and_a_bad_row() {
    let dir = temp_dir("csv");
    let phone = LoggedPhone::start(&dir, &[]);
    let input = dir.join("in.csv");
    let pwfile = dir.join("default.pw");
    std::fs::write(&pwfile, "pw-1003\n").unwrap();
    std::fs::write(
        &input,
        format!(
            "id,target,auth_user,password,event,url\n\
             a,{},,pw-1000,reboot,\n\
             b,{},1001,pw-1001,xml-service,http://10.0.0.1/menu.xml\n\
             c,not a target,,secret-c,,\n\
             d,{},,,restart,\n\
             e,{},,wrong-pw,,\n",
            phone.target(1000),
            phone.target(1001),
            phone.target(1003),
            phone.target(1004),
        ),
    )
    .unwrap();
    let report = dir.join("report.csv");
    let journal = dir.join("journal.jsonl");
    let out = batch(&[
        input.to_str().unwrap(),
        "--password-file",
        pwfile.to_str().unwrap(),
        "--output",
        "json",
        "--journal",
        journal.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
    let records = json_lines(&out.stdout);
    let by_id: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or("-"), r))
        .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(by_id["a"]["outcome"], "delivered");
    assert_eq!(by_id["b"]["outcome"], "delivered");
    assert_eq!(by_id["d"]["outcome"], "delivered");
    assert_eq!(by_id["e"]["outcome"], "auth_failed");
    let bad = records.iter().find(|r| r["outcome"] == "bad_row").unwrap();
    assert_eq!(bad["line"], 4);
    let events = phone.events(3);
    assert_eq!(events["1000"], "reboot_now");
    assert_eq!(events["1001"], "XML-Service");
    assert_eq!(events["1003"], "restart_now");
    assert!(stderr.contains("summary: 5 targets"), "{stderr}");
    assert!(stderr.contains("p95"), "{stderr}");
    // Passwords never leave the input.
    for text in [
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr.to_string(),
        std::fs::read_to_string(&report).unwrap(),
        std::fs::read_to_string(&journal).unwrap(),
    ] {
        for secret in ["pw-1000", "pw-1001", "secret-c", "pw-1003", "wrong-pw"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.starts_with("line,id,target,event,outcome"));
    assert_eq!(report.lines().count(), 6);
}

#[test]
fn jsonl_from_stdin_with_per_row_events() {
    let dir = temp_dir("jsonl");
    let phone = LoggedPhone::start(&dir, &[]);
    let input = format!(
        "{{\"target\":\"{}\",\"password\":\"pw-1100\",\"event\":\"report\",\"id\":1}}\n\n\
         {{\"target\":\"{}\",\"password\":\"pw-1101\"}}\n\
         {{\"target\":\"{}\",\"password\":\"pw-1102\",\"event\":\"xml-service\",\"url\":\"http://h/x.xml\"}}\n",
        phone.target(1100),
        phone.target(1101),
        phone.target(1102)
    );
    let out = output_with_stdin(
        bin().args([
            "batch", "-", "--format", "jsonl", "--event", "reboot", "--output", "csv",
        ]),
        input.as_bytes(),
    );
    assert_exit(&out, 0);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",delivered,200,")),
        "{csv}"
    );
    let events = phone.events(3);
    assert_eq!(events["1100"], "report");
    assert_eq!(events["1101"], "reboot_now");
    assert_eq!(events["1102"], "XML-Service");
}

#[test]
fn rate_holds_the_start_rate() {
    let campaign = Campaign::start("rate", "--challenge none", 2000..2070);
    let out = campaign.run(&["--rate", "30"]);
    assert_eq!(out.status.code(), Some(0));
    let at = intent_times(&campaign.journal);
    assert_eq!(at.len(), 70);
    // Starts in the 2-second window from the first: 60 at 30 per second, within 10%. At
    // 30 starts a second even a loaded machine keeps up, so this measures the limiter.
    let in_window = at.iter().filter(|t| **t < at[0] + 2.0).count();
    assert!((54..=66).contains(&in_window), "{in_window} starts in 2 s");
    let rate = 69.0 / (at[69] - at[0]);
    assert!(
        (27.0..=33.0).contains(&rate),
        "{rate:.1} starts per second over the run"
    );
}

#[test]
fn spread_scatters_the_starts_over_the_window() {
    let campaign = Campaign::start("spread", "--challenge none", 3000..3040);
    let begin = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = campaign.run(&["--spread", "2s"]);
    assert_eq!(out.status.code(), Some(0));
    let at = intent_times(&campaign.journal);
    assert_eq!(at.len(), 40);
    let span = at[39] - at[0];
    // 40 uniform starts over 2 s span less than 1.2 s with probability ~1e-7; the upper
    // bounds leave room for a slow machine.
    assert!(span > 1.2 && span < 3.0, "starts spanned {span:.2} s");
    assert!(at[39] - begin < 6.0, "the last start came late");
    // Not bunched: each half-second holds some starts.
    for q in 0..3 {
        let from = at[0] + 0.5 * q as f64;
        assert!(at.iter().any(|t| (from..from + 0.5).contains(t)), "{at:?}");
    }
}

#[test]
fn retries_503_honouring_retry_after() {
    let campaign = Campaign::start("retry", "--fail-percent 50 --fail-status 503", 4000..4010);
    // 20 retries: a target failing every try at 50 % is a one-in-a-million event, not a flake.
    let out = campaign.run(&["--retries", "20", "--backoff", "100ms", "--output", "json"]);
    assert_exit(&out, 0);
    let records = json_lines(&out.stdout);
    assert!(records.iter().all(|r| r["outcome"] == "delivered"));
    let retried: Vec<&Value> = records
        .iter()
        .filter(|r| r["tries"].as_u64() > Some(1))
        .collect();
    assert!(!retried.is_empty(), "no 503 in 10 targets at 50 %?");
    // Retry-After: 1 means a retried target took at least a second per retry.
    let lines = read_lines(&campaign.journal);
    for r in retried {
        let key = format!(
            "sip:{} resync",
            r["target"].as_str().unwrap().trim_start_matches("sip:")
        );
        let time = |kind: &str| {
            lines
                .iter()
                .find(|l| l["type"] == kind && l["key"] == key.as_str())
                .unwrap()["at"]
                .as_f64()
                .unwrap()
        };
        let tries = r["tries"].as_f64().unwrap();
        assert!(time("result") - time("intent") >= (tries - 1.0) * 0.99);
    }
    // Every user got exactly one delivery.
    campaign.phone.assert_each_delivered(10, 1);
}

#[test]
fn shards_cover_every_row_once() {
    let campaign = Campaign::start("shard", "--challenge none", 5000..5031);
    let mut seen = Vec::new();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let out = campaign.batch(&["--shard", &shard, "--output", "json"]);
        assert_eq!(out.status.code(), Some(0));
        let records = json_lines(&out.stdout);
        assert!((10..=11).contains(&records.len()));
        seen.extend(
            records
                .iter()
                .map(|r| r["target"].as_str().unwrap().to_string()),
        );
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (31, 31));
    campaign.phone.assert_each_delivered(31, 1);
}

/// A campaign split 3 ways, each shard with its journal, merged: one record per target and
/// the summary a single run gives, with failures and bad rows in their places.
#[test]
fn shard_journals_merge_into_the_report_of_one_run() {
    let campaign = Campaign::start("merge", "--challenge none", 7000..7030);
    // Two users the phone does not have (404) and a bad row, among the 30.
    let mut rows = std::fs::read_to_string(&campaign.input).unwrap();
    let port = campaign.phone.process.addr("udp").port();
    rows += &format!("sip:99@127.0.0.1:{port},x\nsip:98@127.0.0.1:{port},x\nnot a target,x\n");
    std::fs::write(&campaign.input, rows).unwrap();
    let whole = campaign.batch(&["--output", "json"]);
    let single = String::from_utf8_lossy(&whole.stderr).to_string();
    let mut journals = Vec::new();
    for k in 0..3 {
        let journal = campaign.dir.join(format!("shard-{k}.journal"));
        let shard = format!("{k}/3");
        let out = campaign.batch(&["--shard", &shard, "--journal", journal.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        journals.push(journal);
    }
    let report = campaign.dir.join("merged.csv");
    let merged = bin()
        .args(["journal", "merge", "--output", "json", "--report"])
        .arg(&report)
        .args(&journals)
        .output()
        .unwrap();
    assert_eq!(merged.status.code(), Some(1));
    let records = json_lines(&merged.stdout);
    // Bad rows are never journaled: 30 + 2 targets.
    assert_eq!(records.len(), 32);
    let outcomes = |records: &[Value]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in records {
            *counts
                .entry(r["outcome"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    };
    assert_eq!(outcomes(&records)["delivered"], 30);
    assert_eq!(outcomes(&records)["rejected"], 2);
    let summary = String::from_utf8_lossy(&merged.stderr);
    let merged_said = [
        "summary: 32 targets: 30 delivered, 2 rejected",
        "2  rejected: 404 Not Found",
    ];
    common::assert_contains_all("the merged summary", &summary, &merged_said);
    assert!(
        single.contains("summary: 33 targets: 1 bad_row, 30 delivered, 2 rejected"),
        "{single}"
    );
    let csv = std::fs::read_to_string(&report).unwrap();
    assert_eq!(csv.lines().count(), 33, "{csv}");
    // Journals of another campaign are refused.
    let other = campaign.dir.join("other.journal");
    let out = campaign.batch(&["--event", "reboot", "--journal", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let refused = bin()
        .args(["journal", "merge"])
        .arg(&journals[0])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another campaign"));
}

#[test]
fn resume_after_kill_9_never_sends_twice() {
    let campaign = Campaign::start("kill9", "--challenge none --delay 100", 10000..15000);
    let args = ["--concurrency", "200", "--output", "json"];
    let mut first = campaign
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some targets are journaled delivered, well before the end (5000 at 200
    // in flight and 100 ms each take 2.5 s at least).
    wait_for_journal(&campaign.journal, "result", 100);
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let mut delivered_before = HashSet::new();
    let mut started = HashSet::new();
    for line in std::fs::read_to_string(&campaign.journal).unwrap().lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue; // a torn last line
        };
        // The campaign and run records name no target.
        let Some(key) = r["key"].as_str().map(str::to_string) else {
            continue;
        };
        match r["type"].as_str() {
            Some("intent") => {
                started.insert(key);
            }
            _ if r["outcome"] == "delivered" => {
                delivered_before.insert(key);
            }
            _ => {}
        }
    }
    assert!(
        !delivered_before.is_empty() && delivered_before.len() < 5000,
        "{} delivered, {} started before kill -9",
        delivered_before.len(),
        started.len()
    );

    let out = campaign.run(&args);
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 5000);
    let answered = records
        .iter()
        .filter(|r| r["outcome"] == "delivered" || r["outcome"] == "already_delivered")
        .count();
    let counts = campaign.phone.deliveries(answered);
    let mut unknown = 0;
    for r in &records {
        let target = r["target"].as_str().unwrap();
        let user = &target[4..9];
        let key = format!("{target} resync");
        let sent = counts.get(user).copied().unwrap_or(0);
        assert!(sent <= 1, "{user} delivered {sent} times");
        match r["outcome"].as_str().unwrap() {
            "already_delivered" => {
                assert!(delivered_before.contains(&key));
                assert_eq!(sent, 1);
            }
            "delivered" => {
                assert!(!delivered_before.contains(&key));
                assert_eq!(sent, 1);
            }
            "unknown" => {
                assert!(started.contains(&key) && !delivered_before.contains(&key));
                unknown += 1;
            }
            other => panic!("{user}: {other}"),
        }
    }
    assert_eq!(out.status.code(), Some(if unknown > 0 { 1 } else { 0 }));
}

fn signal(child: &Child, sig: i32) {
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0);
}

#[test]
fn sigterm_finishes_in_flight_and_leaves_a_consistent_journal() {
    let campaign = Campaign::start("sigterm", "--challenge none --delay 200", 20000..22000);
    // A journal line means the signal handlers are installed (before the first start).
    let (child, sent_at) = campaign.signal_after_intents(
        &["--concurrency", "50", "--output", "json"],
        Stdio::piped(),
        60,
        libc::SIGTERM,
    );
    let out = child.wait_with_output().unwrap();
    // The 50 in flight end within 200 ms; the whole input would take 8 s.
    assert!(sent_at.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let lines = read_lines(&campaign.journal); // every line parses
    let (intents, results) = (keys(&lines, "intent"), keys(&lines, "result"));
    assert!(!intents.is_empty() && intents.len() < 2000);
    assert_eq!(intents, results, "in-flight targets were not finished");
    assert_eq!(json_lines(&out.stdout).len(), results.len());
}

#[test]
fn second_ctrl_c_exits_at_once() {
    // The phone answers after 30 s: waiting for the targets in flight would take that.
    let campaign = Campaign::start("ctrlc2", "--challenge none --delay 30000", 30000..30100);
    let report = campaign.dir.join("report.csv");
    // Every slot taken (and the signal handlers installed before the first one).
    let (mut child, sent_at) = campaign.signal_after_intents(
        &["--concurrency", "20", "--report", report.to_str().unwrap()],
        Stdio::null(),
        20,
        libc::SIGINT,
    );
    // The second Ctrl-C once the first is handled (two at once may be seen as one).
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no 'stopping' line after the first Ctrl-C");
        if line.starts_with("stopping:") {
            break;
        }
    }
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    // At once, not after the 30 s the targets in flight would take.
    assert!(sent_at.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let lines = read_lines(&campaign.journal);
    let intents = lines.iter().filter(|l| l["type"] == "intent").count();
    assert_eq!(intents, 20);
    // Besides the campaign and run records, intents only: no result was written.
    assert!(lines
        .iter()
        .all(|l| ["intent", "campaign", "run"].contains(&l["type"].as_str().unwrap())));
    // The report was flushed before the exit: its header at least.
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(
        report.starts_with("line,id,target,event,outcome"),
        "{report:?}"
    );
}

/// A journal that can no longer be written (here: past the file size limit, EFBIG) stops
/// the campaign with exit 1 and says why; it is not taken for Ctrl-C (exit 130).
#[cfg(target_os = "linux")]
#[test]
fn a_journal_write_error_is_exit_1_with_its_message() {
    use std::os::unix::process::CommandExt;
    let campaign = Campaign::start("journalerr", "--challenge none", 6000..6200);
    let mut command = campaign.command(&["--concurrency", "4"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Writing past the limit fails with EFBIG instead of raising SIGXFSZ.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 2000,
                rlim_max: 2000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = command.stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write the journal"), "{stderr}");
    assert!(!stderr.contains("interrupted"), "{stderr}");
    let written = std::fs::metadata(&campaign.journal).unwrap().len();
    assert!(written <= 2000, "{written}");
}

/// An unquoted comma in a password shifts the cells: the row is refused as a bad row and
/// no part of the password is sent, printed or written (it used to become the event).
#[test]
fn a_csv_row_with_an_extra_cell_is_a_bad_row_and_leaks_nothing() {
    let dir = temp_dir("cells");
    let phone = LoggedPhone::start(&dir, &[]);
    let input = dir.join("in.csv");
    std::fs::write(
        &input,
        format!(
            "target,password,event\n{},pw-6300,reboot\n{},s3cr3t,tail9,\n",
            phone.target(6300),
            phone.target(6301),
        ),
    )
    .unwrap();
    let report = dir.join("report.jsonl");
    let journal = dir.join("j.jsonl");
    for output in ["human", "json", "csv"] {
        let _ = std::fs::remove_file(&journal);
        let out = batch(&[
            input.to_str().unwrap(),
            "--output",
            output,
            "--journal",
            journal.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("line 3: expected 3 cells as in the header row, found 4"),
            "{stderr}"
        );
        for text in [
            &stdout,
            &stderr,
            &std::fs::read_to_string(&report).unwrap(),
            &std::fs::read_to_string(&journal).unwrap(),
        ] {
            for secret in ["s3cr3t", "tail9", "pw-6300"] {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
        }
    }
    let events = phone.events(1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events["6300"], "reboot_now");
}

/// Out-of-range rates and durations are refused before anything is sent (exit 2, with a
/// message), never a panic.
#[test]
fn out_of_range_rates_and_durations_are_exit_2_with_a_message() {
    let dir = temp_dir("ranges");
    let input = dir.join("in.csv");
    std::fs::write(&input, "target\n1000@127.0.0.1:9\n").unwrap();
    for (args, message) in [
        (
            &["--rate", "1e-20"][..],
            "--rate must be between 0.001 and 1000000",
        ),
        (
            &["--rate", "1e12"],
            "--rate must be between 0.001 and 1000000",
        ),
        (&["--rate", "0"], "--rate must be between"),
        (
            &["--timeout", "1e20"],
            "--timeout must be a positive number",
        ),
        (
            &["--timeout", "1e12"],
            "--timeout must be a positive number",
        ),
        (&["--timeout", "33"], "longer than Timer F (32 s"),
        (
            &["--timeout", "40", "--t1", "100"],
            "longer than Timer F (6.4 s",
        ),
        (&["--backoff", "1000000000"], "--backoff: at most 60 s"),
        (
            &["--backoff", "99999999999999"],
            "--backoff: `99999999999999` is too long",
        ),
        (
            &["--spread", "1e300"],
            "--spread: `1e300`: the unit must be",
        ),
        (
            &["--spread", "99999999999999h"],
            "--spread: `99999999999999h` is too long",
        ),
    ] {
        let mut all = vec![input.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = batch(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The bounds themselves are accepted (the one row has no target: nothing is sent).
    let input = dir.join("bad-row.csv");
    std::fs::write(&input, "target,id\n,x\n").unwrap();
    for args in [
        &["--rate", "0.001", "--timeout", "0.2"][..],
        &["--rate", "1000000", "--timeout", "32", "--backoff", "60s"],
    ] {
        let mut all = vec![input.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = batch(&all);
        // A bad row: exit 1, not 2.
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A resumed campaign (its --journal exists) appends to the report, with one CSV header;
/// without a journal to resume, the report is replaced.
#[test]
fn a_resumed_campaign_appends_to_its_report() {
    let campaign = Campaign::start("report", "--challenge none", 7000..7003);
    for name in ["report.csv", "report.jsonl"] {
        let report = campaign.dir.join(name);
        let _ = std::fs::remove_file(&campaign.journal);
        let run = |with_journal: bool| {
            let mut command = bin();
            command
                .arg("batch")
                .arg(&campaign.input)
                .arg("--report")
                .arg(&report);
            if with_journal {
                command.arg("--journal").arg(&campaign.journal);
            }
            let out = command.stdin(Stdio::null()).output().unwrap();
            assert_exit(&out, 0);
        };
        // The outcomes in the report, and how many CSV header rows it has.
        let outcomes = || -> (Vec<String>, usize) {
            let text = std::fs::read_to_string(&report).unwrap();
            if name.ends_with(".csv") {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(text.as_bytes());
                let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
                let headers = rows.iter().filter(|r| &r[0] == "line").count();
                let column = rows[0].iter().position(|c| c == "outcome").unwrap();
                let outcomes = rows
                    .iter()
                    .filter(|r| &r[0] != "line")
                    .map(|r| r[column].to_string())
                    .collect();
                (outcomes, headers)
            } else {
                let outcomes = read_lines(&report)
                    .iter()
                    .map(|r| r["outcome"].as_str().unwrap().to_string())
                    .collect();
                (outcomes, 0)
            }
        };
        let header = usize::from(name.ends_with(".csv"));
        run(true);
        run(true);
        let (got, headers) = outcomes();
        let count = |label: &str| got.iter().filter(|o| *o == label).count();
        assert_eq!(got.len(), 6, "{name}: {got:?}");
        assert_eq!(
            (count("delivered"), count("already_delivered"), headers),
            (3, 3, header),
            "{name}: {got:?}"
        );
        // No journal: a new report.
        run(false);
        let (got, headers) = outcomes();
        assert_eq!(got, vec!["delivered"; 3], "{name}");
        assert_eq!(headers, header, "{name}");
    }
}

#[test]
fn a_phone_on_two_threads_answers_every_target_once() {
    let campaign = Campaign::start("threads", "--threads 2", 20_000..22_000);
    let out = campaign.batch(&["--output", "json"]);
    assert_exit(&out, 0);
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 2000);
    // Challenged by one thread, answered by either: the nonce holds across them.
    assert!(records
        .iter()
        .all(|r| r["outcome"] == "delivered" && r["attempts"] == 2));
    campaign.phone.assert_each_delivered(2000, 1);

    let refused = bin().args(["phone", "--threads", "0"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--threads"));
}

#[test]
fn rows_from_a_fifo_start_as_they_come() {
    use std::io::Write;
    let dir = temp_dir("fifo");
    let phone = LoggedPhone::start(&dir, &[]);
    let fifo = dir.join("rows.csv");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let mut agent = bin()
        .args(["batch", fifo.to_str().unwrap(), "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Blocks until the agent opens the FIFO for reading.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writeln!(writer, "target,password\n{},pw-2001", phone.target(2001)).unwrap();
    writer.flush().unwrap();
    let stdout = agent.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // The writer is still open: the row must not wait for more rows or the end.
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a record for the one row written, while the FIFO is still open");
    let record: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(record["outcome"], "delivered");
    drop(writer);
    assert_eq!(agent.wait().unwrap().code(), Some(0));
}
