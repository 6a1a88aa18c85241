//! Secrets hygiene: every command, at every verbosity and in every output format, is run
//! with distinctive passwords, and the test fails if any of them (or any 10-character piece
//! of one) appears on stdout, on stderr, or in any file the run wrote: the journal, the
//! report, the simulator's log. The simulator itself (which knows the password through
//! `--password-template`) is checked too, at trace level, as are the files in `captures/`.

mod common;

use common::{bin, PhoneProcess};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Instant;

/// The line password every simulated user has.
const SECRET: &str = "Qx7-LeakCanary-93zK";
/// A wrong password, sent to get `auth_failed`: it must not show either.
const WRONG: &str = "Wr0ng-Kanarie-51Tj";
/// A password written as a JSON number in a JSON Lines row.
const NUMERIC: &str = "8675309421";

/// Where each leak was found, e.g. `resync -v (env): stdout`.
type Leaks = Vec<String>;

/// Every secret, and every 10-byte piece of it, that occurs in `bytes`.
fn scan(what: &str, bytes: &[u8], secrets: &[&str], leaks: &mut Leaks) {
    for secret in secrets {
        let s = secret.as_bytes();
        let width = s.len().min(10);
        let found = s
            .windows(width)
            .find(|piece| bytes.windows(piece.len()).any(|w| w == *piece));
        if let Some(piece) = found {
            let at = bytes.windows(piece.len()).position(|w| w == piece).unwrap();
            let from = at.saturating_sub(80);
            let to = (at + piece.len() + 80).min(bytes.len());
            leaks.push(format!(
                "{what}: contains `{}` (from {secret}): ...{}...",
                String::from_utf8_lossy(piece),
                String::from_utf8_lossy(&bytes[from..to])
            ));
        }
    }
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `sipnotify phone` with everything it prints captured: stdout, stderr (at trace level) and
/// its `--log` file.
struct LoudPhone {
    process: PhoneProcess,
    addr: SocketAddr,
    tcp: SocketAddr,
    dir: PathBuf,
}

impl LoudPhone {
    fn start(dir: PathBuf) -> LoudPhone {
        let process = PhoneProcess::builder()
            .transport("both")
            .user("159")
            .users("1000-1999")
            .password_template(SECRET)
            .args(["-vv", "--accept-event", "check-sync"])
            .log(&dir.join("phone.log"))
            .env("SIPNOTIFY_LOG", "trace")
            .stderr_to(&dir.join("phone.stderr"))
            .start();
        let (addr, tcp) = (process.addr("udp"), process.addr("tcp"));
        LoudPhone {
            process,
            addr,
            tcp,
            dir,
        }
    }

    /// Stops the phone with SIGTERM (so it prints its counters) and scans all it printed.
    fn stop_and_scan(self, leaks: &mut Leaks) {
        let first_line = self.process.first_line().to_string();
        let rest = self.process.terminate();
        let stdout = [first_line.as_bytes(), &rest].concat();
        assert!(
            String::from_utf8_lossy(&rest).contains("phone stopped:"),
            "the phone did not print its counters: {}",
            String::from_utf8_lossy(&rest)
        );
        scan("phone stdout", &stdout, &[SECRET, WRONG, NUMERIC], leaks);
        let log = std::fs::read(self.dir.join("phone.log")).unwrap();
        let stderr = std::fs::read(self.dir.join("phone.stderr")).unwrap();
        assert!(
            log.len() > 1000,
            "the phone's --log is almost empty: {} bytes",
            log.len()
        );
        assert!(
            stderr.len() > 1000,
            "the phone's trace output is almost empty: {} bytes",
            stderr.len()
        );
        scan("phone --log", &log, &[SECRET, WRONG, NUMERIC], leaks);
        scan("phone stderr", &stderr, &[SECRET, WRONG, NUMERIC], leaks);
    }
}

/// How the password is given to the agent.
#[derive(Debug, Clone, Copy)]
enum Source {
    Env,
    File,
    Arg,
}

impl Source {
    const ALL: [Source; 3] = [Source::Env, Source::File, Source::Arg];

    fn apply(self, cmd: &mut Command, dir: &Path, password: &str) {
        cmd.env_remove("SIPNOTIFY_PASSWORD");
        match self {
            Source::Env => {
                cmd.env("SIPNOTIFY_PASSWORD", password);
            }
            Source::File => {
                let path = dir.join("line.pw");
                std::fs::write(&path, format!("{password}\n")).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                cmd.arg("--password-file").arg(path);
            }
            Source::Arg => {
                cmd.args(["--password", password]);
            }
        }
    }
}

/// One run of the agent and what to expect of it.
struct Job {
    label: String,
    args: Vec<String>,
    source: Source,
    password: &'static str,
    trace: bool,
    /// Files to create in the run's directory first (name, contents).
    inputs: Vec<(String, String)>,
    code: i32,
    /// Text stdout must contain (to prove the run really did something).
    expect: Vec<String>,
    /// Files the run must have written (relative to its directory).
    writes: Vec<String>,
    /// Keep the directory of an earlier job (to resume a journal).
    reuse_dir: Option<String>,
}

/// The directory of a job's run: its label with only ASCII letters and digits.
fn dir_name(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `batch INPUT --output FORMAT -vv --journal JOURNAL --report REPORT`.
fn batch_vv(input: &str, format: &str, journal: &str, report: &str) -> Vec<String> {
    strings(&[
        "batch",
        input,
        "--output",
        format,
        "-vv",
        "--journal",
        journal,
        "--report",
        report,
    ])
}

/// `args` as owned strings.
fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl Job {
    /// A batch run with [`SECRET`] from `source` on the input file `input` (name, contents),
    /// which has bad rows: exit 1.
    fn batch(
        label: String,
        args: Vec<String>,
        source: Source,
        input: (&str, &str),
        expect: &[&str],
        writes: &[&str],
    ) -> Job {
        Job {
            label,
            args,
            source,
            password: SECRET,
            trace: false,
            inputs: vec![(input.0.into(), input.1.into())],
            code: 1,
            expect: strings(expect),
            writes: strings(writes),
            reuse_dir: None,
        }
    }
}

/// Runs the job in its own directory and scans stdout, stderr and every file there. Returns
/// the run's wall time.
fn run_job(job: &Job, leaks: &mut Leaks) -> std::time::Duration {
    let dir_name = job
        .reuse_dir
        .clone()
        .unwrap_or_else(|| dir_name(&job.label));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("secrets-{}", std::process::id()))
        .join("runs")
        .join(dir_name);
    if job.reuse_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in &job.inputs {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let mut cmd = bin();
    cmd.args(&job.args)
        .current_dir(&dir)
        .env_remove("SIPNOTIFY_LOG");
    if job.trace {
        cmd.env("SIPNOTIFY_LOG", "trace");
    }
    job.source.apply(&mut cmd, &dir, job.password);
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(job.code),
        "{}: unexpected exit\nstdout:\n{stdout}\nstderr:\n{stderr}",
        job.label
    );
    for text in &job.expect {
        assert!(
            stdout.contains(text.as_str()),
            "{}: stdout lacks `{text}`:\n{stdout}\nstderr:\n{stderr}",
            job.label
        );
    }
    let secrets = [SECRET, WRONG, NUMERIC];
    scan(
        &format!("{}: stdout", job.label),
        &out.stdout,
        &secrets,
        leaks,
    );
    scan(
        &format!("{}: stderr", job.label),
        &out.stderr,
        &secrets,
        leaks,
    );
    for name in &job.writes {
        assert!(
            dir.join(name).is_file(),
            "{}: did not write {name}",
            job.label
        );
    }
    for path in files(&dir) {
        // The password file and the inputs hold the password on purpose.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "line.pw" || job.inputs.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scan(
            &format!("{}: file {name}", job.label),
            &bytes,
            &secrets,
            leaks,
        );
    }
    took
}

/// Runs the jobs on a few threads (in order within a chain of `reuse_dir` jobs is not
/// needed: resumed jobs are run afterwards, by the caller).
fn run_all(jobs: &[Job], threads: usize) -> (Leaks, BTreeMap<String, f64>) {
    let next = AtomicUsize::new(0);
    let leaks = Mutex::new(Leaks::new());
    let times = Mutex::new(BTreeMap::new());
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { return };
                let mut mine = Leaks::new();
                let took = run_job(job, &mut mine);
                leaks.lock().unwrap().extend(mine);
                times
                    .lock()
                    .unwrap()
                    .insert(job.label.clone(), took.as_secs_f64());
            });
        }
    });
    (leaks.into_inner().unwrap(), times.into_inner().unwrap())
}

fn report(leaks: Leaks) {
    assert!(
        leaks.is_empty(),
        "{} leak(s) of a password:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// The single-target commands: (name, arguments after the target).
fn commands() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("resync", vec![]),
        ("reboot", vec![]),
        ("restart", vec![]),
        ("report", vec![]),
        ("xml-service", vec!["http://10.0.0.1/menu.xml"]),
        ("notify", vec!["--event", "check-sync", "--body", "hello"]),
    ]
}

/// Verbosities and formats: (label, arguments, SIPNOTIFY_LOG=trace, dry run).
fn modes() -> Vec<(&'static str, Vec<&'static str>, bool, bool)> {
    let mut modes = Vec::new();
    for (format, f) in [("human", "human"), ("json", "json"), ("csv", "csv")] {
        for (v, flags) in [("", vec![]), (" -v", vec!["-v"]), (" -vv", vec!["-vv"])] {
            let mut args = vec!["--output", f];
            args.extend(flags);
            modes.push((leak(format!("{format}{v}")), args, false, false));
        }
        modes.push((
            leak(format!("{format} --dry-run -vv")),
            vec!["--output", f, "--dry-run", "-vv"],
            false,
            true,
        ));
    }
    modes.push(("human -vv SIPNOTIFY_LOG=trace", vec!["-vv"], true, false));
    modes.push((
        "json -v SIPNOTIFY_LOG=trace",
        vec!["--output", "json", "-v"],
        true,
        false,
    ));
    modes
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn no_command_ever_shows_a_password() {
    let started = Instant::now();
    let phone = LoudPhone::start(fresh_dir("phone"));
    let (addr, tcp) = (phone.addr, phone.tcp);
    let mut jobs = Vec::new();
    for (n, (command, extra)) in commands().into_iter().enumerate() {
        for (m, (mode, margs, trace, dry)) in modes().into_iter().enumerate() {
            for (s, source) in Source::ALL.into_iter().enumerate() {
                // Alternate the transport so both paths are covered.
                let transport = if (n + m + s) % 2 == 0 { "udp" } else { "tcp" };
                let to = if transport == "udp" { addr } else { tcp };
                let mut args: Vec<String> = vec![command.into(), format!("sip:159@{to}")];
                args.extend(extra.iter().map(|a| a.to_string()));
                args.extend(margs.iter().map(|a| a.to_string()));
                args.extend(["--transport".into(), transport.into()]);
                let mut expect = Vec::new();
                if dry {
                    expect.push("NOTIFY sip:159@".to_string());
                } else {
                    expect.push("delivered".to_string());
                    let verbose = margs.contains(&"-v") || margs.contains(&"-vv");
                    if verbose && !margs.contains(&"csv") {
                        // The ladder is shown: the answer to the challenge with it.
                        expect.push("Authorization: Digest".to_string());
                    }
                }
                jobs.push(Job {
                    label: format!("{command} {mode} {transport} ({source:?})"),
                    args,
                    source,
                    password: SECRET,
                    trace,
                    inputs: vec![],
                    code: 0,
                    expect,
                    writes: vec![],
                    reuse_dir: None,
                });
            }
        }
        // A wrong password: auth_failed, and neither password shows.
        for (mode, margs) in [
            ("human -vv", vec!["-vv"]),
            ("json -v", vec!["--output", "json", "-v"]),
        ] {
            let mut args: Vec<String> = vec![command.into(), format!("sip:159@{addr}")];
            args.extend(extra.iter().map(|a| a.to_string()));
            args.extend(margs.iter().map(|a| a.to_string()));
            jobs.push(Job {
                label: format!("{command} {mode} wrong password"),
                args,
                source: Source::Arg,
                password: WRONG,
                trace: false,
                inputs: vec![],
                code: 3,
                expect: vec!["auth_failed".into()],
                writes: vec![],
                reuse_dir: None,
            });
        }
    }
    let count = jobs.len();
    let (mut leaks, times) = run_all(&jobs, 4);
    let slowest = times
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(l, t)| format!("{l}: {t:.2} s"))
        .unwrap_or_default();
    phone.stop_and_scan(&mut leaks);
    eprintln!(
        "{count} single-target runs in {:.1} s (slowest {slowest})",
        started.elapsed().as_secs_f64()
    );
    report(leaks);
}

#[test]
fn batch_never_shows_a_password() {
    let started = Instant::now();
    let phone = LoudPhone::start(fresh_dir("batch-phone"));
    let (a, t) = (phone.addr, phone.tcp);
    // Rows with their own password, rows using the default one, a wrong password, bad rows
    // that carry a password (their error message must not quote the row).
    let csv = format!(
        "target,id,password,event,url\n\
         sip:1000@{a},r0,{SECRET},,\n\
         sip:1001@{a},r1,,reboot,\n\
         sip:1002@{t};transport=tcp,r2,{SECRET},restart,\n\
         sip:1003@{a},r3,{WRONG},,\n\
         not a target,r4,{SECRET},,\n\
         sip:1004@{a},r5,{SECRET},xml-service,\n\
         sip:1005@{a},r6,{SECRET},xml-service,http://10.0.0.1/m.xml\n\
         sip:1006@{a},r7,{SECRET},resync,,{SECRET},extra\n\
         sip:1007@{a},r8,\"{SECRET}\",notify,\n"
    );
    let jsonl = format!(
        "{{\"target\":\"sip:1010@{a}\",\"id\":\"j0\",\"password\":\"{SECRET}\"}}\n\
         {{\"target\":\"sip:1011@{a}\",\"id\":\"j1\",\"password\":{NUMERIC}}}\n\
         {{\"target\":\"sip:1012@{a}\",\"id\":\"j2\"}}\n\
         {{\"target\":\"sip:1013@{a}\",\"id\":\"j3\",\"password\":[\"{SECRET}\"]}}\n\
         {{\"target\":\"sip:1014@{a}\",\"id\":\"j4\",\"password\":\"{WRONG}\"}}\n\
         {{\"target\":\"sip:1015@{a}\",\"id\":\"j5\",\"password\":\"{SECRET}\"\n"
    );
    let mut jobs = Vec::new();
    let mut n = 0;
    for (format, f) in [("human", "human"), ("json", "json"), ("csv", "csv")] {
        for (v, flags) in [("", vec![]), (" -v", vec!["-v"]), (" -vv", vec!["-vv"])] {
            for source in Source::ALL {
                let report = if n % 2 == 0 {
                    "report.csv"
                } else {
                    "report.jsonl"
                };
                n += 1;
                let mut args = strings(&["batch", "targets.csv", "--output", f]);
                args.extend(strings(&flags));
                args.extend(
                    ["--event", "resync", "--journal", "campaign.journal"].map(String::from),
                );
                args.extend(["--report".to_string(), report.to_string()]);
                jobs.push(Job {
                    trace: n == 5,
                    ..Job::batch(
                        format!("batch csv {format}{v} {report} ({source:?})"),
                        args,
                        source,
                        ("targets.csv", &csv),
                        &["r0", "r6"],
                        &["campaign.journal", report],
                    )
                });
            }
        }
    }
    for (format, f) in [("human", "human"), ("json", "json"), ("csv", "csv")] {
        for source in Source::ALL {
            jobs.push(Job::batch(
                format!("batch jsonl {format} -vv ({source:?})"),
                batch_vv("targets.jsonl", f, "j.journal", "report.jsonl"),
                source,
                ("targets.jsonl", &jsonl),
                &["j0", "j2"],
                &["j.journal", "report.jsonl"],
            ));
        }
    }
    // One run with the whole of tracing on.
    jobs.push(Job {
        trace: true,
        ..Job::batch(
            "batch csv json -vv SIPNOTIFY_LOG=trace".into(),
            batch_vv("targets.csv", "json", "campaign.journal", "report.jsonl"),
            Source::Env,
            ("targets.csv", &csv),
            &["r0"],
            &["campaign.journal", "report.jsonl"],
        )
    });
    let count = jobs.len();
    let (mut leaks, _) = run_all(&jobs, 3);

    // Resume each format from a journal: delivered rows are skipped, the rest sent again.
    let mut resumed = Vec::new();
    for (format, f) in [("human", "human"), ("json", "json"), ("csv", "csv")] {
        let first = jobs
            .iter()
            .find(|j| j.label.starts_with(&format!("batch csv {format} -vv")))
            .unwrap();
        let dir = dir_name(&first.label);
        resumed.push(Job {
            reuse_dir: Some(dir),
            ..Job::batch(
                format!("batch csv {format} -vv resumed"),
                batch_vv("targets.csv", f, "campaign.journal", "again.csv"),
                Source::File,
                ("targets.csv", &csv),
                &["already_delivered"],
                &["again.csv"],
            )
        });
    }
    let (more, _) = run_all(&resumed, 3);
    leaks.extend(more);
    phone.stop_and_scan(&mut leaks);
    eprintln!(
        "{} batch runs in {:.1} s",
        count + resumed.len(),
        started.elapsed().as_secs_f64()
    );
    report(leaks);
}

#[test]
fn captures_hold_no_password() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut leaks = Leaks::new();
    let all = files(&dir);
    assert!(all.len() >= 8, "captures/ has only {} files", all.len());
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        scan(
            &path.display().to_string(),
            &bytes,
            &[common::PASSWORD, SECRET],
            &mut leaks,
        );
    }
    report(leaks);
}

#[test]
fn a_password_file_readable_by_others_is_warned_about() {
    let dir = fresh_dir("modes");
    let path = dir.join("line.pw");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    let run = |mode: u32| {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = bin()
            .args([
                "resync",
                "sip:159@127.0.0.1:9",
                "--dry-run",
                "--password-file",
            ])
            .arg(&path)
            .env_remove("SIPNOTIFY_PASSWORD")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut leaks = Leaks::new();
        scan("stdout", &out.stdout, &[SECRET], &mut leaks);
        scan("stderr", &out.stderr, &[SECRET], &mut leaks);
        report(leaks);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for mode in [0o644, 0o640, 0o604] {
        let stderr = run(mode);
        assert!(
            stderr.contains("warning") && stderr.contains("chmod 600"),
            "mode {mode:o}: no warning: {stderr}"
        );
    }
    for mode in [0o600, 0o400] {
        let stderr = run(mode);
        assert!(
            !stderr.contains("warning"),
            "mode {mode:o}: unexpected warning: {stderr}"
        );
    }
    // The batch shares the check.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let input = dir.join("empty.csv");
    std::fs::write(&input, "target\n").unwrap();
    let out = bin()
        .arg("batch")
        .arg(&input)
        .arg("--password-file")
        .arg(&path)
        .env_remove("SIPNOTIFY_PASSWORD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "batch: no warning: {stderr}");
}

#[test]
fn the_demo_never_shows_its_password() {
    // src/cli/demo.rs: the simulated phone and the agent share "demo-password". -v shows
    // the messages whole, Authorization included.
    let out = bin()
        .args(["demo", "-v"])
        .env("SIPNOTIFY_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Authorization: Digest"), "{stdout}");
    let mut leaks = Leaks::new();
    scan("demo stdout", &out.stdout, &["demo-password"], &mut leaks);
    scan("demo stderr", &out.stderr, &["demo-password"], &mut leaks);
    report(leaks);
}
