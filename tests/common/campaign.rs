//! A campaign's fixtures: a phone that logs each exchange, a CSV of its users, a journal.

use super::{batch, bin, temp_dir, PhoneProcess};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A simulated phone on a free loopback UDP port for users 1000-99999, whose passwords are
/// `pw-{user}`, with its `--log` in a test's folder; killed on drop.
pub struct LoggedPhone {
    pub process: PhoneProcess,
    pub log: PathBuf,
}

impl LoggedPhone {
    pub fn start(dir: &Path, extra: &[&str]) -> LoggedPhone {
        let log = dir.join("phone.log");
        let process = PhoneProcess::builder()
            .transport("udp")
            .users("1000-99999")
            .password_template("pw-{user}")
            .log(&log)
            .args(extra)
            .start();
        LoggedPhone { process, log }
    }

    /// `USER@127.0.0.1:PORT`.
    pub fn target(&self, user: u32) -> String {
        format!("{user}@127.0.0.1:{}", self.process.addr("udp").port())
    }

    /// The log lines that `keep`, once there are at least `expected` of them or after
    /// 10 s: the phone writes its log on a thread of its own, a little after answering.
    pub fn logged(&self, expected: usize, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A line being written may be cut short: skipped until it is whole.
            let lines: Vec<Value> = std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|l| keep(l))
                .collect();
            if lines.len() >= expected || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The 2xx answers to NOTIFY per user, from the phone's log, once it holds `expected`.
    pub fn deliveries(&self, expected: usize) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        let delivered =
            |l: &Value| l["method"] == "NOTIFY" && l["status"].as_u64().unwrap() / 100 == 2;
        for line in self.logged(expected, delivered) {
            *counts
                .entry(line["user"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    }

    /// The phone's log holds `times` 2xx answers to NOTIFY for each of `users` users, and
    /// no more.
    #[track_caller]
    pub fn assert_each_delivered(&self, users: usize, times: u32) {
        let counts = self.deliveries(users * times as usize);
        assert_eq!(counts.len(), users);
        assert!(counts.values().all(|n| *n == times), "{counts:?}");
    }

    /// The event of each 200 answer per user, from the phone's log, once it holds
    /// `expected`.
    pub fn events(&self, expected: usize) -> HashMap<String, String> {
        self.logged(expected, |l| l["status"] == 200)
            .into_iter()
            .map(|l| {
                (
                    l["user"].as_str().unwrap().to_string(),
                    l["event"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// `targets.csv` in `dir`: `users` of `phone`, each with its password.
fn write_targets(dir: &Path, phone: &LoggedPhone, users: std::ops::Range<u32>) -> PathBuf {
    let path = dir.join("targets.csv");
    let mut text = String::from("target,password\n");
    for user in users {
        text += &format!("{},pw-{user}\n", phone.target(user));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A campaign's fresh folder, a phone started with some arguments, a CSV of some of its
/// users (with their passwords) and where its journal goes.
pub struct Campaign {
    pub dir: PathBuf,
    pub phone: LoggedPhone,
    pub input: PathBuf,
    pub journal: PathBuf,
}

impl Campaign {
    /// `phone_args` are the phone's options, as words split at spaces: `"--delay 100"`.
    pub fn start(name: &str, phone_args: &str, users: std::ops::Range<u32>) -> Campaign {
        let dir = temp_dir(name);
        let phone_args: Vec<&str> = phone_args.split_whitespace().collect();
        let phone = LoggedPhone::start(&dir, &phone_args);
        let input = write_targets(&dir, &phone, users);
        let journal = dir.join("j.jsonl");
        Campaign {
            dir,
            phone,
            input,
            journal,
        }
    }

    /// [`Campaign::start`] whose input is what `rows` writes (header and rows) for the
    /// phone's UDP address: rows a test words itself.
    pub fn with_rows(
        name: &str,
        phone_args: &str,
        rows: impl FnOnce(std::net::SocketAddr) -> String,
    ) -> Campaign {
        let campaign = Campaign::start(name, phone_args, 0..0);
        let addr = campaign.phone.process.addr("udp");
        std::fs::write(&campaign.input, rows(addr)).unwrap();
        campaign
    }

    /// `sipnotify batch INPUT EXTRA... --journal JOURNAL`, stdin closed.
    pub fn command(&self, extra: &[&str]) -> Command {
        let mut command = bin();
        command
            .arg("batch")
            .arg(&self.input)
            .args(extra)
            .arg("--journal")
            .arg(&self.journal)
            .stdin(Stdio::null());
        command
    }

    /// Runs [`Campaign::command`] to the end.
    pub fn run(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }

    /// `sipnotify batch INPUT EXTRA...`, without the campaign's journal, to the end.
    pub fn batch(&self, extra: &[&str]) -> Output {
        let input = self.input.to_str().unwrap();
        batch(&[&[input], extra].concat())
    }
}
