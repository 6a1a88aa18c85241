//! The service mode end to end: the real binary (`sipnotify api`) on loopback, `curl` as
//! the client, the simulator (`sipnotify phone`, logging each exchange) as the phones.

mod common;

use common::campaign::LoggedPhone;
use common::{bin, temp_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "t0ken-0f-the-api-4c1d";

/// `sipnotify api` running as a child on a free loopback port; killed on drop.
struct Api {
    child: Child,
    url: String,
    first_line: String,
}

impl Api {
    /// Starts the service on `state` (with [`TOKEN`] in a file of `dir` when `token`), its
    /// stderr to `dir/api.err`, and waits until it says where it listens.
    fn start(dir: &Path, state: &Path, token: bool, extra: &[&str]) -> Api {
        let mut command = bin();
        command
            .args(["api", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("api.err")).unwrap());
        if token {
            let file = dir.join("token");
            std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
            command.arg("--token-file").arg(file);
        }
        let mut child = command.spawn().unwrap();
        let first_line = common::first_line(&mut child);
        let url = first_line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {first_line:?}"))
            .to_string();
        Api {
            child,
            url,
            first_line,
        }
    }

    /// `curl` with the token, to `path` (and its query): the status and the body.
    fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
        curl(&self.url, path, &[&["-H", &bearer()], args].concat())
    }

    fn json(&self, path: &str, args: &[&str]) -> (u16, Value) {
        let (status, body) = self.curl(path, args);
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: {status} {body:?} is not JSON: {e}"));
        (status, value)
    }

    /// Starts a campaign of `rows` (CSV) with `query`: its id.
    fn start_campaign(&self, query: &str, rows: &Path) -> String {
        let body = format!("@{}", rows.display());
        let (status, value) = self.json(
            &format!("/v1/campaigns?{query}"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: text/csv",
                "--data-binary",
                &body,
            ],
        );
        assert_eq!(status, 202, "{value}");
        value["id"].as_str().unwrap().to_string()
    }

    /// `GET /v1/campaigns/{id}` until `done(status)`, at most `within`.
    fn wait(&self, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, status) = self.json(&format!("/v1/campaigns/{id}"), &[]);
            assert_eq!(code, 200, "{status}");
            if done(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "still {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Api::wait`] until the campaign has done `done` targets or more.
    fn wait_for(&self, id: &str, done: u64, within: Duration) -> Value {
        self.wait(id, within, |s| s["done"].as_u64() >= Some(done))
    }

    /// [`Api::wait`] until the campaign is no longer running: its status.
    fn wait_end(&self, id: &str, within: Duration) -> Value {
        self.wait(id, within, |s| s["state"] != "running")
    }

    /// [`Api::wait_end`], at most 60 s, for a campaign that must end `done`: its status
    /// and its counts.
    fn wait_done(&self, id: &str) -> (Value, BTreeMap<String, u64>) {
        let end = self.wait_end(id, Duration::from_secs(60));
        assert_eq!(end["state"], "done", "{end}");
        let counted = serde_json::from_value(end["counts"].clone()).unwrap();
        (end, counted)
    }
}

/// [`Api::start`] with the token and nothing more, which must say that it resumed
/// `resumed` campaigns.
fn restart(dir: &Path, state: &Path, resumed: usize) -> Api {
    let api = Api::start(dir, state, true, &[]);
    let said = format!("{resumed} campaign(s) resumed");
    assert!(api.first_line.contains(&said), "{}", api.first_line);
    api
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// `curl -sS URL+PATH ARGS...`: the status and the body.
fn curl(url: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let status = status.parse().unwrap_or_else(|_| {
        panic!(
            "curl {path}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (status, body.to_string())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `rows.csv` in `dir`: users `users` of `phone`, with their passwords except the users in
/// `wrong`, whose password is wrong.
fn rows(dir: &Path, phone: &LoggedPhone, users: std::ops::Range<u32>, wrong: &[u32]) -> PathBuf {
    let mut text = String::from("target,password\n");
    for user in users {
        let password = if wrong.contains(&user) {
            "not-it".to_string()
        } else {
            format!("pw-{user}")
        };
        text += &format!("{},{password}\n", phone.target(user));
    }
    let path = dir.join("rows.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// No campaign is in the state directory `state`.
#[track_caller]
fn assert_no_campaign(state: &Path) {
    let left: Vec<_> = std::fs::read_dir(state.join("campaigns"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A test's folder, a phone that logs, `rows.csv` of its users (as [`rows`] writes them)
/// and the service's state directory, `state` in the folder.
struct Fixture {
    dir: PathBuf,
    phone: LoggedPhone,
    rows: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new(name: &str, users: std::ops::Range<u32>, wrong: &[u32]) -> Fixture {
        let dir = temp_dir(name);
        let phone = LoggedPhone::start(&dir, &[]);
        let rows = rows(&dir, &phone, users, wrong);
        let state = dir.join("state");
        Fixture {
            dir,
            phone,
            rows,
            state,
        }
    }
}

/// The outcome counts of `records`.
fn counts(records: &[Value]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for record in records {
        *counts
            .entry(record["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// A notify delivered and one refused by the phone (auth_failed), each answered with the
/// JSON record the CLI prints; the password is in neither the answers nor the service's
/// log, at the highest verbosity.
#[test]
fn a_notify_is_delivered_and_a_wrong_password_is_auth_failed() {
    let dir = temp_dir("notify");
    let phone = LoggedPhone::start(&dir, &[]);
    let api = Api::start(&dir, &dir.join("state"), true, &["-vv"]);
    let notify = |body: &str| {
        api.json(
            "/v1/notify",
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
        )
    };
    let (status, delivered) = notify(&format!(
        r#"{{"target":"{}","event":"reboot","password":"pw-1000","id":"desk-1"}}"#,
        phone.target(1000)
    ));
    assert_eq!(status, 200, "{delivered}");
    assert_eq!(delivered["outcome"], "delivered", "{delivered}");
    assert_eq!(
        (delivered["status"].as_u64(), delivered["id"].as_str()),
        (Some(200), Some("desk-1"))
    );
    assert_eq!(delivered["attempts"], 2);
    assert!(delivered["call_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(delivered["elapsed_ms"].as_f64().is_some());

    let (status, refused) = notify(&format!(
        r#"{{"target":"{}","password":"Wr0ng-Passw0rd"}}"#,
        phone.target(1001)
    ));
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["outcome"], "auth_failed", "{refused}");
    assert_eq!(refused["status"], 403);
    assert!(refused["hint"].as_str().is_some());
    assert_eq!(phone.deliveries(1).get("1000"), Some(&1));

    let log = std::fs::read_to_string(dir.join("api.err")).unwrap();
    for secret in ["pw-1000", "Wr0ng-Passw0rd", TOKEN] {
        assert!(!delivered.to_string().contains(secret) && !refused.to_string().contains(secret));
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// Every route but /healthz wants the token; a wrong one is no better than none. Off
/// loopback, the service refuses to start without a token.
#[test]
fn the_token_is_required_and_needed_off_loopback() {
    let dir = temp_dir("token");
    let api = Api::start(&dir, &dir.join("state"), true, &[]);
    let routes = [
        ("GET", "/metrics"),
        ("GET", "/v1/openapi.json"),
        ("POST", "/v1/notify"),
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/0123456789abcdef"),
        ("DELETE", "/v1/campaigns/0123456789abcdef"),
        ("GET", "/v1/campaigns/0123456789abcdef/records"),
        ("GET", "/no/such/route"),
    ];
    for (method, path) in routes {
        for header in [
            None,
            Some("Authorization: Bearer wrong"),
            Some("Authorization: Basic dTpw"),
        ] {
            let mut args = vec!["-X", method, "-D", "-"];
            if let Some(header) = header {
                args.extend(["-H", header]);
            }
            let (status, body) = curl(&api.url, path, &args);
            assert_eq!(status, 401, "{method} {path} {header:?}: {body}");
            assert!(
                body.contains("WWW-Authenticate: Bearer")
                    || body.contains("www-authenticate: Bearer"),
                "{body}"
            );
            assert!(body.contains("Authorization: Bearer TOKEN"), "{body}");
        }
    }
    let (status, health) = curl(&api.url, "/healthz", &[]);
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = api.curl("/metrics", &[]);
    assert_eq!(status, 200);

    let out = bin()
        .args(["api", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(dir.join("open"))
        .output()
        .unwrap();
    common::assert_refused(&out, "refusing to listen on 0.0.0.0:0 without a token");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));
}

/// A campaign of 1,000 rows (ten with a wrong password) is followed to its end through
/// its state and its record stream, read from the start and from an offset; the metrics,
/// read by a Prometheus parser, count what the campaign counted.
#[test]
fn a_campaign_is_followed_to_its_end_and_the_metrics_match() {
    let wrong: Vec<u32> = (0..10).map(|i| 1000 + i * 97).collect();
    let fx = Fixture::new("follow", 1000..2000, &wrong);
    let api = Api::start(&fx.dir, &fx.state, true, &[]);
    let id = api.start_campaign("event=reboot&rate=2000&concurrency=64", &fx.rows);
    // Followed from the start while it runs: the stream ends when the campaign does.
    let follower = {
        let url = api.url.clone();
        let path = format!("/v1/campaigns/{id}/records?follow=true");
        std::thread::spawn(move || curl(&url, &path, &["-N", "-H", &bearer()]))
    };
    let running = api.wait_for(&id, 1, Duration::from_secs(5));
    assert_eq!(running["total"], 1000, "{running}");
    let (end, counted) = api.wait_done(&id);
    let (status, followed) = follower.join().unwrap();
    assert_eq!(status, 200);
    let records = json_lines(&followed);
    assert_eq!(records.len(), 1000);
    let expected: BTreeMap<String, u64> = [
        ("auth_failed".to_string(), 10),
        ("delivered".to_string(), 990),
    ]
    .into();
    assert_eq!(counts(&records), expected);
    assert_eq!(counted, expected);
    assert_eq!(end["done"], 1000);
    let lines: Vec<u64> = records
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u64>>()
            .len(),
        1000
    );
    for record in &records {
        let user: u32 = record["target"].as_str().unwrap()[4..8].parse().unwrap();
        let outcome = if wrong.contains(&user) {
            "auth_failed"
        } else {
            "delivered"
        };
        assert_eq!(record["outcome"], outcome, "{record}");
        assert_eq!(record["event"], "reboot_now");
    }
    // From an offset: the same records as the whole stream's last ones.
    let (_, tail) = api.curl(&format!("/v1/campaigns/{id}/records?offset=990"), &[]);
    assert_eq!(json_lines(&tail), records[990..]);
    let (_, none) = api.curl(&format!("/v1/campaigns/{id}/records?offset=1000"), &[]);
    assert_eq!(none, "");
    fx.phone.assert_each_delivered(990, 1);

    let (status, text) = api.curl("/metrics", &[]);
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |sample: &prometheus_parse::Sample| match &sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{other:?}"),
    };
    let mut targets: BTreeMap<String, u64> = BTreeMap::new();
    let mut gauges: BTreeMap<String, f64> = BTreeMap::new();
    let mut tries = None;
    for sample in &scrape.samples {
        match sample.metric.as_str() {
            "sipnotify_targets_total" => {
                assert_eq!(sample.labels.get("event"), Some("reboot_now"));
                let outcome = sample.labels.get("outcome").unwrap().to_string();
                *targets.entry(outcome).or_default() += value(sample) as u64;
            }
            "sipnotify_campaigns" => {
                let state = sample.labels.get("state").unwrap();
                gauges.insert(format!("campaigns {state}"), value(sample));
            }
            "sipnotify_targets_in_flight" | "sipnotify_retransmissions_total" => {
                gauges.insert(sample.metric.clone(), value(sample));
            }
            "sipnotify_target_duration_seconds" => match &sample.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    tries = buckets.iter().map(|b| b.count).reduce(f64::max);
                }
                other => panic!("{other:?}"),
            },
            _ => {}
        }
    }
    assert_eq!(targets, expected, "{text}");
    assert_eq!(tries, Some(1000.0), "{text}");
    for (name, expected) in [
        ("campaigns done", 1.0),
        ("campaigns running", 0.0),
        ("campaigns stopped", 0.0),
        ("sipnotify_targets_in_flight", 0.0),
        ("sipnotify_retransmissions_total", 0.0),
    ] {
        assert_eq!(gauges.get(name), Some(&expected), "{name} in {text}");
    }
}

/// The service killed with SIGKILL in the middle of a campaign, then started again on the
/// same state directory: it resumes the campaign, which ends done, and the phone's log
/// shows that no phone acted twice; the targets of the first run are not sent again.
#[test]
fn a_killed_service_resumes_its_campaign_and_no_phone_acts_twice() {
    let fx = Fixture::new("kill", 1000..1400, &[]);
    let first = restart(&fx.dir, &fx.state, 0);
    let id = first.start_campaign("event=reboot&rate=100&concurrency=8", &fx.rows);
    first.wait_for(&id, 60, Duration::from_secs(20));
    drop(first); // SIGKILL
    let before = fx.phone.deliveries(60).len();
    assert!(
        (60..400).contains(&before),
        "{before} delivered before the kill"
    );

    let second = restart(&fx.dir, &fx.state, 1);
    let (end, counted) = second.wait_done(&id);
    let get = |label: &str| counted.get(label).copied().unwrap_or(0);
    let (earlier, now, unknown) = (get("already_delivered"), get("delivered"), get("unknown"));
    assert_eq!(earlier + now + unknown, 400, "{counted:?}");
    assert!(earlier >= 60 && unknown <= 8, "{counted:?}");
    // Each phone that acted acted once: the first run's, the second's, and perhaps those in
    // flight at the kill (unknown: not sent again).
    let deliveries = fx.phone.deliveries((earlier + now) as usize);
    assert!(deliveries.values().all(|&n| n == 1), "{deliveries:?}");
    let acted = deliveries.len() as u64;
    assert!(
        (earlier + now..=earlier + now + unknown).contains(&acted),
        "{acted} {counted:?}"
    );
    // The record stream holds both runs' records, and no target is in it delivered twice.
    let (_, all) = second.curl(&format!("/v1/campaigns/{id}/records"), &[]);
    let records = json_lines(&all);
    assert!(records.len() >= 460, "{}", records.len());
    let mut delivered = BTreeMap::<String, u32>::new();
    for record in records.iter().filter(|r| r["outcome"] == "delivered") {
        *delivered.entry(record["target"].to_string()).or_default() += 1;
    }
    assert!(delivered.values().all(|&n| n == 1), "{delivered:?}");
    assert!(
        delivered.len() as u64 >= now + earlier.min(60),
        "{}",
        delivered.len()
    );
    // A third start has nothing left to resume, and still knows the campaign.
    drop(second);
    let third = restart(&fx.dir, &fx.state, 0);
    let (_, again) = third.json(&format!("/v1/campaigns/{id}"), &[]);
    assert_eq!(
        (again["state"].as_str(), again["counts"].clone()),
        (Some("done"), end["counts"].clone())
    );
}

/// SIGTERM stops the service as Ctrl-C stops `batch`: the targets in flight end and are
/// journaled, the campaign is left unfinished, and the next start resumes it: every phone
/// acts exactly once.
#[test]
fn a_terminated_service_resumes_its_campaign_at_the_next_start() {
    let fx = Fixture::new("term", 1000..1400, &[]);
    let mut first = Api::start(&fx.dir, &fx.state, true, &[]);
    let id = first.start_campaign("event=reboot&rate=100&concurrency=8", &fx.rows);
    first.wait_for(&id, 60, Duration::from_secs(20));
    let pid = first.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(first.child.wait().unwrap().code(), Some(0));

    let second = restart(&fx.dir, &fx.state, 1);
    let (_, counted) = second.wait_done(&id);
    assert_eq!(counted.get("unknown"), None, "{counted:?}");
    assert_eq!(counted.values().sum::<u64>(), 400, "{counted:?}");
    assert!(counted["already_delivered"] >= 60, "{counted:?}");
    fx.phone.assert_each_delivered(400, 1);
}

/// `?input=PATH` names the rows instead of a body: a path relative to the service's folder
/// is made absolute, so that a restart from elsewhere still finds it. JSON Lines rows and
/// `_` for `-` in parameter names work as on the command line.
#[test]
fn a_campaign_reads_its_rows_from_input_path() {
    let dir = temp_dir("input");
    let phone = LoggedPhone::start(&dir, &[]);
    let jsonl: String = (1000..1030)
        .map(|u| {
            format!(
                "{{\"target\":\"{}\",\"password\":\"pw-{u}\"}}\n",
                phone.target(u)
            )
        })
        .collect();
    std::fs::write(dir.join("rows.jsonl"), jsonl).unwrap();
    let api = Api::start(&dir, &dir.join("state"), true, &[]);
    let (status, started) = api.json(
        "/v1/campaigns?event=restart&input=rows.jsonl&allow_duplicates=true",
        &["-X", "POST"],
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap();
    let end = api.wait_end(id, Duration::from_secs(20));
    assert_eq!(end["counts"]["delivered"], 30, "{end}");
    let spec =
        std::fs::read_to_string(dir.join(format!("state/campaigns/{id}/spec.json"))).unwrap();
    let absolute = dir.canonicalize().unwrap().join("rows.jsonl");
    assert!(
        spec.contains(&format!("\"input\":{:?}", absolute.to_str().unwrap())),
        "{spec}"
    );
    assert_eq!(
        phone
            .events(30)
            .values()
            .filter(|e| *e == "restart_now")
            .count(),
        30
    );
}

/// Bodies over the limits are answered 413, malformed ones 400, with a JSON error that
/// says what is wrong (and never quotes the password); nothing reaches a phone and no
/// campaign is left in the state directory.
#[test]
fn oversized_and_malformed_bodies_are_refused_without_effect() {
    let dir = temp_dir("bodies");
    let phone = LoggedPhone::start(&dir, &[]);
    let state = dir.join("state");
    let api = Api::start(&dir, &state, true, &[]);
    let target = phone.target(1000);
    let huge = dir.join("huge.json");
    std::fs::write(
        &huge,
        format!(
            r#"{{"target":"{target}","password":"pw-1000","body":"{}"}}"#,
            "x".repeat(70_000)
        ),
    )
    .unwrap();
    let big_rows = dir.join("big.csv");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big_rows).unwrap());
        writeln!(file, "target,password").unwrap();
        let row = format!("{target},pw-1000\n");
        for _ in 0..(65 << 20) / row.len() + 1 {
            file.write_all(row.as_bytes()).unwrap();
        }
    }
    let notify = ["-X", "POST", "-H", "Content-Type: application/json"];
    let csv = ["-X", "POST", "-H", "Content-Type: text/csv"];
    let binary = |data: &str| vec!["--data-binary".to_string(), data.to_string()];
    let mut cases: Vec<(String, Vec<String>, u16, &str)> = vec![
        (
            "/v1/notify".into(),
            binary(&format!("@{}", huge.display())),
            413,
            "over 64 KiB",
        ),
        (
            "/v1/campaigns?event=reboot".into(),
            binary(&format!("@{}", big_rows.display())),
            413,
            "over 64 MiB",
        ),
    ];
    // One NOTIFY's JSON, malformed.
    let with_target = |fields: &str| format!(r#"{{"target":"{target}",{fields}}}"#);
    for (json, message) in [
        ("{\"target\":", "cut short"),
        ("not json", "not valid JSON"),
        (
            &with_target(r#""pasword":"pw-1000""#),
            "unknown field `pasword`",
        ),
        (
            &with_target(r#""password":["pw-1000"]"#),
            "fields are strings",
        ),
        (r#"{"target":"sip:"}"#, "sip:"),
        (
            &with_target(r#""event":"xml-service","password":"pw-1000""#),
            "xml-service",
        ),
    ] {
        cases.push((
            "/v1/notify".into(),
            vec!["-d".into(), json.into()],
            400,
            message,
        ));
    }
    // A campaign's rows, or its parameters, refused.
    let one_row = format!("target\n{target}\n");
    for (query, rows, message) in [
        ("event=reboot", "name,address\n1,2\n", "target"),
        ("event=reboot&rate=fast", &one_row, "--rate"),
        ("event=reboot&password=pw-1000", &one_row, "ends up in logs"),
        ("event=reboot&journal=/tmp/j", &one_row, "state directory"),
        ("evnt=reboot", &one_row, "unknown parameter `evnt`"),
        ("event=reboot&input=/etc/hostname", &one_row, "not both"),
        (
            "event=reboot&resend-unknown=true",
            &one_row,
            "resend-unknown: ",
        ),
        (
            "event=reboot&key=pw-1000",
            &one_row,
            "key: a key in a URL ends up in logs",
        ),
        (
            "event=reboot&action=reboot",
            &one_row,
            "action: an option of batch --channel http",
        ),
        (
            "event=reboot&fetch-log=/tmp/f",
            &one_row,
            "fetch-log: the service does not confirm fetches",
        ),
    ] {
        cases.push((format!("/v1/campaigns?{query}"), binary(rows), 400, message));
    }
    // A campaign's input that cannot be read as rows.
    for (input, message) in [
        ("/no/such/file.csv", "/no/such/file.csv"),
        ("fifo.csv", "fifo.csv is not a regular file"),
        ("/dev/null", "/dev/null is not a regular file"),
    ] {
        cases.push((
            format!("/v1/campaigns?event=reboot&input={input}"),
            vec![],
            400,
            message,
        ));
    }
    // A FIFO would hold a thread until something wrote to it.
    let fifo = dir.join("fifo.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (path, body, expected, message) in cases {
        let headers: &[&str] = if path.starts_with("/v1/notify") {
            &notify
        } else {
            &csv
        };
        let args: Vec<&str> = headers
            .iter()
            .copied()
            .chain(body.iter().map(String::as_str))
            .collect();
        let (status, text) = api.curl(&path, &args);
        assert_eq!(status, expected, "{path} {message}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(message), "{path}: {error}");
        assert!(!error.contains("pw-1000"), "{error}");
    }
    // Names from the network are cut by characters when quoted, never inside one.
    let long = format!("a{}", "%C3%A9".repeat(70));
    let (status, text) = api.curl(&format!("/v1/campaigns/{long}"), &[]);
    assert_eq!(status, 404, "{text}");
    let (status, text) = api.curl(&format!("/v1/campaigns?{long}=1"), &csv);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("unknown parameter `aé"), "{text}");
    // Rows with no Content-Type are not guessed at.
    let (status, text) = api.curl(
        "/v1/campaigns",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type:",
            "--data-binary",
            "target\n1@h\n",
        ],
    );
    assert_eq!(status, 415, "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&phone.log).unwrap_or_default(), "");
    assert_no_campaign(&state);
    let (_, metrics) = api.curl("/metrics", &[]);
    assert!(!metrics.contains("sipnotify_targets_total"), "{metrics}");
    // Still serving.
    let (status, _) = api.curl("/healthz", &[]);
    assert_eq!(status, 200);
}

/// `DELETE` stops a campaign as Ctrl-C stops `batch`: no new target starts, those in
/// flight end; its state is `stopped` and a restart does not resume it.
#[test]
fn delete_stops_a_campaign_for_good() {
    let fx = Fixture::new("delete", 1000..1300, &[]);
    let api = Api::start(&fx.dir, &fx.state, true, &[]);
    let id = api.start_campaign("event=resync&rate=50", &fx.rows);
    api.wait_for(&id, 10, Duration::from_secs(10));
    let (status, stopping) = api.json(&format!("/v1/campaigns/{id}"), &["-X", "DELETE"]);
    assert_eq!(status, 202, "{stopping}");
    let end = api.wait_end(&id, Duration::from_secs(10));
    assert_eq!(end["state"], "stopped", "{end}");
    let done = end["done"].as_u64().unwrap();
    assert!(done < 300, "{end}");
    std::thread::sleep(Duration::from_millis(500));
    let acted = fx.phone.deliveries(done as usize).len() as u64;
    assert_eq!(acted, done, "{end}");
    let (status, again) = api.json(&format!("/v1/campaigns/{id}"), &["-X", "DELETE"]);
    assert_eq!((status, again["state"].as_str()), (200, Some("stopped")));
    drop(api);
    let api = restart(&fx.dir, &fx.state, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fx.phone.deliveries(done as usize).len() as u64, done);
    let (_, status) = api.json(&format!("/v1/campaigns/{id}"), &[]);
    assert_eq!(status["state"], "stopped");
}

/// Resolves `{"$ref": "#/components/..."}` in the OpenAPI document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference}")),
            )
        }
        None => value,
    }
}

/// Each field the schema requires is in `value`.
#[track_caller]
fn assert_schema(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let schema = resolve(doc, schema);
    if schema["type"] == "object" {
        assert!(value.is_object(), "{what}: {value} is not an object");
        for field in schema["required"].as_array().into_iter().flatten() {
            let field = field.as_str().unwrap();
            assert!(
                value.get(field).is_some(),
                "{what}: no `{field}` in {value}"
            );
        }
    }
}

/// The OpenAPI document served is the one checked in, and it describes the real service:
/// every operation it lists answers with a status it lists, and the JSON fields its
/// schemas require are in the answers (each line of a JSON Lines answer).
#[test]
fn the_openapi_document_matches_the_responses() {
    let fx = Fixture::new("openapi", 1000..1020, &[]);
    let api = Api::start(&fx.dir, &fx.state, true, &[]);
    let (status, doc) = api.json("/v1/openapi.json", &[]);
    assert_eq!(status, 200);
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/openapi.json"))
            .unwrap();
    assert_eq!(doc, serde_json::from_str::<Value>(&file).unwrap());
    let id = api.start_campaign("event=resync", &fx.rows);
    api.wait(&id, Duration::from_secs(20), |s| s["state"] == "done");
    let notify = format!(
        r#"{{"target":"{}","password":"pw-1000"}}"#,
        fx.phone.target(1000)
    );
    let rows_body = format!("@{}", fx.rows.display());
    // A request for each operation, and one that fails for some.
    let requests: Vec<(&str, &str, Vec<&str>)> = vec![
        ("get", "/healthz", vec![]),
        ("get", "/metrics", vec![]),
        ("get", "/v1/openapi.json", vec![]),
        ("post", "/v1/notify", vec!["-d", &notify]),
        ("post", "/v1/notify", vec!["-d", "{}"]),
        (
            "post",
            "/v1/campaigns",
            vec!["-H", "Content-Type: text/csv", "--data-binary", &rows_body],
        ),
        (
            "post",
            "/v1/campaigns",
            vec!["-H", "Content-Type: text/plain", "-d", "x"],
        ),
        ("get", "/v1/campaigns/{id}", vec![]),
        ("get", "/v1/campaigns/{id}/records", vec![]),
        ("delete", "/v1/campaigns/{id}", vec![]),
    ];
    let mut answered = std::collections::BTreeSet::new();
    for (method, template, args) in &requests {
        let path = template.replace("{id}", &id);
        let (status, body) = api.curl(
            &path,
            &[&["-X", &method.to_uppercase()], &args[..]].concat(),
        );
        let operation = &doc["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        let response = resolve(&doc, &operation["responses"][status.to_string()]);
        assert!(
            response.is_object(),
            "{method} {template}: {status} is not documented: {body}"
        );
        answered.insert((method.to_string(), template.to_string()));
        let content = &response["content"];
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            let value: Value = serde_json::from_str(&body).unwrap();
            assert_schema(
                &doc,
                schema,
                &value,
                &format!("{method} {template} {status}"),
            );
        } else if let Some(schema) = content.get("application/x-ndjson").map(|c| &c["schema"]) {
            let lines = json_lines(&body);
            assert_eq!(lines.len(), 20);
            for line in lines {
                assert_schema(&doc, schema, &line, &format!("{method} {template} line"));
            }
        } else {
            assert!(
                content.get("application/openmetrics-text").is_some(),
                "{method} {template}"
            );
            assert!(body.contains("# TYPE sipnotify_targets counter"), "{body}");
        }
    }
    // Every documented operation was tried.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| *m != "parameters")
        {
            assert!(
                answered.contains(&(method.clone(), path.clone())),
                "{method} {path} not tried"
            );
        }
    }
    // The errors are documented too: without the token, and for an unknown campaign.
    let (status, body) = curl(&api.url, "/v1/campaigns/0123456789abcdef", &[]);
    let unauthorized = resolve(
        &doc,
        &doc["paths"]["/v1/campaigns/{id}"]["get"]["responses"]["401"],
    );
    assert_eq!(status, 401);
    assert_schema(
        &doc,
        &unauthorized["content"]["application/json"]["schema"],
        &serde_json::from_str(&body).unwrap(),
        "401",
    );
    let not_found = resolve(
        &doc,
        &doc["paths"]["/v1/campaigns/{id}"]["get"]["responses"]["404"],
    );
    // An id that cannot be decoded is answered as an unknown one.
    for path in ["/v1/campaigns/0123456789abcdef", "/v1/campaigns/%FF%FE"] {
        let (status, body) = api.json(path, &[]);
        assert_eq!(status, 404, "{path}");
        assert_schema(
            &doc,
            &not_found["content"]["application/json"]["schema"],
            &body,
            "404",
        );
    }
    // A method a route does not take: 405 in JSON, documented for each operation.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path_with_id = path.replace("{id}", &id);
        let (status, body) = api.json(&path_with_id, &["-X", "PUT"]);
        assert_eq!(status, 405, "PUT {path}: {body}");
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let documented = resolve(&doc, &operation["responses"]["405"]);
            assert!(
                documented.is_object(),
                "{method} {path}: 405 is not documented"
            );
            assert_schema(
                &doc,
                &documented["content"]["application/json"]["schema"],
                &body,
                &format!("{method} {path} 405"),
            );
        }
    }
}

/// A second service on the same state directory would resume the first one's campaigns:
/// it is refused (exit 2), naming the first one's pid.
#[test]
fn a_second_service_on_one_state_directory_is_refused() {
    let dir = temp_dir("busy");
    let state = dir.join("state");
    let first = Api::start(&dir, &state, false, &[]);
    let out = bin()
        .args(["api", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    common::assert_refused(
        &out,
        &format!(
            "another sipnotify api (pid {}) is using the state directory",
            first.child.id()
        ),
    );
}

/// With `--tls-cert` and `--tls-key` the service speaks HTTPS only, with that certificate.
#[test]
fn the_service_serves_https_with_its_certificate() {
    let dir = temp_dir("tls");
    let pki = common::pki::Pki::new(&dir, "api");
    let leaf = pki.issue("api", &["127.0.0.1"]);
    let api = Api::start(&dir, &dir.join("state"), true, &leaf.options());
    assert!(
        api.url.starts_with("https://127.0.0.1:"),
        "{}",
        api.first_line
    );
    let ca = pki.ca().to_str().unwrap();
    let (status, doc) = curl(
        &api.url,
        "/v1/openapi.json",
        &["--cacert", ca, "-H", &bearer()],
    );
    assert_eq!(status, 200);
    assert!(doc.contains("\"openapi\""), "{doc}");
    // Plain HTTP gets no answer.
    let plain = api.url.replacen("https://", "http://", 1);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("{plain}/healthz")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
}

/// A body that stops arriving is answered 408 after 30 s, for one NOTIFY and for a
/// campaign's rows alike; nothing is sent, no campaign is left behind.
#[test]
fn a_body_that_stops_arriving_is_answered_408() {
    use std::io::{Read, Write};
    let dir = temp_dir("slow");
    let state = dir.join("state");
    let api = Api::start(&dir, &state, true, &[]);
    let addr = api.url.trim_start_matches("http://").to_string();
    let slow = |path: &'static str, content_type: &'static str, start: &'static str| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n{start}"
            )
            .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let started = Instant::now();
            let mut answer = vec![0; 4096];
            let n = stream.read(&mut answer).unwrap();
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer[..n]).into_owned(),
            )
        })
    };
    // A body that arrives in parts, each within 30 s of the last but over 30 s in all, is
    // read whole: the limit is a pause, not a total.
    let trickle = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            let body = "{\"target\":\"sip:\"}";
            write!(
                stream,
                "POST /v1/notify HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            for part in [&body[..5], &body[5..10], &body[10..]] {
                std::thread::sleep(Duration::from_secs(14));
                stream.write_all(part.as_bytes()).unwrap();
            }
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut answer = vec![0; 4096];
            let n = stream.read(&mut answer).unwrap();
            String::from_utf8_lossy(&answer[..n]).into_owned()
        })
    };
    let notify = slow("/v1/notify", "application/json", "{\"target\":");
    let campaign = slow(
        "/v1/campaigns?event=reboot",
        "text/csv",
        "target\n1000@127.0.0.1:9\n",
    );
    for thread in [notify, campaign] {
        let (waited, answer) = thread.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("stopped arriving"), "{answer}");
        assert!(waited >= Duration::from_secs(25), "{waited:?}");
    }
    let answer = trickle.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("sip:"), "{answer}");
    assert_no_campaign(&state);
}

/// `DELETE` of a campaign that could not be resumed (its input gone at the start; it is
/// tried again at the next one) stops it for good: the next start, with the input back,
/// does not resume it, and no phone acts.
#[test]
fn delete_stops_a_campaign_that_could_not_be_resumed() {
    let fx = Fixture::new("delete-unresumed", 1000..1400, &[]);
    let first = Api::start(&fx.dir, &fx.state, true, &[]);
    let (status, started) = first.json(
        "/v1/campaigns?event=resync&rate=50&input=rows.csv",
        &["-X", "POST"],
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    first.wait_for(&id, 5, Duration::from_secs(10));
    drop(first); // SIGKILL
    std::thread::sleep(Duration::from_millis(300));
    let log = || std::fs::read_to_string(&fx.phone.log).unwrap_or_default();
    let acted = log();
    let hidden = fx.dir.join("rows.away");
    std::fs::rename(&fx.rows, &hidden).unwrap();
    let second = restart(&fx.dir, &fx.state, 0);
    let (_, status) = second.json(&format!("/v1/campaigns/{id}"), &[]);
    assert_eq!(status["state"], "stopped", "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("cannot resume"),
        "{status}"
    );
    let (code, stopped) = second.json(&format!("/v1/campaigns/{id}"), &["-X", "DELETE"]);
    assert_eq!((code, stopped["state"].as_str()), (200, Some("stopped")));
    drop(second);
    std::fs::rename(&hidden, &fx.rows).unwrap();
    let third = restart(&fx.dir, &fx.state, 0);
    let (_, status) = third.json(&format!("/v1/campaigns/{id}"), &[]);
    assert_eq!(status["state"], "stopped", "{status}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(log(), acted, "a phone acted after DELETE");
}

/// A relative --state-dir is made absolute: a campaign whose rows came in the body, the
/// service killed, resumes when the service starts again from another folder.
#[test]
fn a_relative_state_dir_resumes_from_another_folder() {
    let fx = Fixture::new("relative", 1000..1400, &[]);
    let first = Api::start(&fx.dir, Path::new("state"), true, &[]);
    let id = first.start_campaign("event=reboot&rate=100&concurrency=8", &fx.rows);
    first.wait_for(&id, 20, Duration::from_secs(20));
    drop(first); // SIGKILL
    let elsewhere = fx.dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let second = restart(&elsewhere, Path::new("../state"), 1);
    let (_, counted) = second.wait_done(&id);
    assert_eq!(counted.values().sum::<u64>(), 400, "{counted:?}");
}

/// A client that stops following a campaign's records ends its stream at once: the
/// service does not keep the records file open for it until the campaign ends.
#[test]
fn a_follower_that_has_gone_holds_nothing() {
    let dir = temp_dir("follow-gone");
    // A phone that never answers: no record for 30 s, so nothing is sent to the followers
    // that would tell them their client has gone.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rows = dir.join("rows.csv");
    std::fs::write(
        &rows,
        format!("target\n1000@{}\n", silent.local_addr().unwrap()),
    )
    .unwrap();
    let api = Api::start(&dir, &dir.join("state"), true, &[]);
    let id = api.start_campaign("event=resync&timeout=30", &rows);
    let records_open = || {
        std::fs::read_dir(format!("/proc/{}/fd", api.child.id()))
            .unwrap()
            .flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| target.ends_with("records.jsonl"))
            })
            .count()
    };
    let followers: Vec<_> = (0..10)
        .map(|_| {
            Command::new("curl")
                .args(["-sS", "-N", "-H", &bearer()])
                .arg(format!("{}/v1/campaigns/{id}/records?follow=true", api.url))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while records_open() < 11 {
        assert!(Instant::now() < deadline, "{} open", records_open());
        std::thread::sleep(Duration::from_millis(50));
    }
    for mut follower in followers {
        follower.kill().unwrap();
        follower.wait().unwrap();
    }
    // The campaign's own writer is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while records_open() > 1 {
        assert!(Instant::now() < deadline, "{} still open", records_open());
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, status) = api.json(&format!("/v1/campaigns/{id}"), &[]);
    assert_eq!(status["state"], "running", "{status}");
}

/// The cap on running campaigns counts those whose rows are still arriving: with 64 such
/// requests open, the next is refused 429; once they have gone, campaigns start again.
#[test]
fn the_running_cap_counts_campaigns_still_starting() {
    use std::io::Write;
    let dir = temp_dir("cap");
    let api = Api::start(&dir, &dir.join("state"), true, &[]);
    let addr = api.url.trim_start_matches("http://").to_string();
    let open: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            write!(
                stream,
                "POST /v1/campaigns?event=reboot HTTP/1.1\r\nHost: api\r\n\
                 Authorization: Bearer {TOKEN}\r\nContent-Type: text/csv\r\n\
                 Content-Length: 1000\r\n\r\ntarget\n"
            )
            .unwrap();
            stream
        })
        .collect();
    let body = "target\n1000@127.0.0.1:9\n";
    let post = || {
        api.curl(
            "/v1/campaigns?event=reboot&timeout=1",
            &["-X", "POST", "-H", "Content-Type: text/csv", "-d", body],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = post();
        if status == 429 {
            assert!(text.contains("64 campaigns are running"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {status} {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = post();
        if status == 202 {
            break;
        }
        assert_eq!(status, 429, "{text}");
        assert!(Instant::now() < deadline, "still refused: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
