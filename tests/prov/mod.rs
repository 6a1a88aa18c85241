//! Helpers of the provisioning tests: `sipnotify serve` as a child process, raw HTTP/1.1
//! requests over loopback (raw, so that tests can send what no client would), and fleets of
//! simulated MPP lines with the campaigns that resync them. The including test declares
//! `mod common;` too.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A temporary directory of its own for a test.
pub use crate::common::temp_dir;

/// `sipnotify serve` running as a child; killed on drop.
pub struct ServeProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServeProcess {
    /// Starts `sipnotify serve DIR --listen 127.0.0.1:0 ARGS...` with `env`, and waits for
    /// the line that says where it listens.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sipnotify"))
            .arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sipnotify serve");
        let line = crate::common::first_line(&mut child);
        let addr = line
            .trim()
            .rsplit_once("://")
            .and_then(|(_, a)| a.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line: {line:?}")
            });
        ServeProcess { child, addr }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Response {
    /// The status code (0 when the server closed without answering).
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as is and reads the response until the server closes (within 10 s).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: bytes,
        };
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

/// `GET path` with extra header lines, on a connection closed after the response.
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    raw(addr, request.as_bytes())
}

/// The JSON lines of a log file.
pub fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits up to 5 s for the log to hold `n` lines (the server writes after answering).
pub fn wait_log(path: &Path, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..500 {
        let lines = log_lines(path);
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    log_lines(path)
}

pub const KEY: &str = "Fleet-Key-2024";
pub const PROFILE: &str =
    "<flat-profile>\n<Resync_Periodic> 7200 </Resync_Periodic>\n</flat-profile>\n";

/// DIR/cfg/default.xml (every phone's profile) and DIR/ok/default (the last rule's file).
pub fn profiles(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("cfg")).unwrap();
    std::fs::create_dir_all(root.join("ok")).unwrap();
    std::fs::write(root.join("cfg/default.xml"), PROFILE).unwrap();
    std::fs::write(root.join("ok/default"), "<flat-profile/>").unwrap();
    root
}

pub fn mac(user: u32) -> String {
    format!("000e08{user:06x}")
}

/// The MPP lines `first..=last`, fetching with `key` from `port`.
pub fn fleet(
    first: u32,
    last: u32,
    key: &str,
    port: u16,
    beacon: bool,
) -> crate::common::PhoneProcess {
    let mut args = vec![
        "--profile-rule".to_string(),
        format!("[--key {key}] http://127.0.0.1:{port}/cfg/$MA.xml"),
    ];
    if beacon {
        args.push("--profile-rule".into());
        args.push(format!("[--key {key}] http://127.0.0.1:{port}/ok/$MA"));
    }
    crate::common::PhoneProcess::builder()
        .transport("udp")
        .users(&format!("{first}-{last}"))
        .password_template("pw-{user}")
        .args(args)
        .start()
}

pub fn batch(
    input: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Output, Vec<serde_json::Value>) {
    let out = crate::common::bin()
        .args(["batch", "--output", "json", "--event", "resync"])
        .arg(input)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let records = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out, records)
}

/// A campaign that confirms fetches from `batch --serve`: its folder, the profiles it
/// serves ([`profiles`]) and the free port it serves them on.
pub struct Served {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub port: u16,
}

impl Served {
    pub fn new(name: &str) -> Served {
        let dir = temp_dir(name);
        let root = profiles(&dir);
        Served {
            dir,
            root,
            port: crate::common::free_port(&["127.0.0.1"]),
        }
    }

    /// `lines.csv` in the folder: each of `users` at `addr(user)`, with its MAC and its
    /// password `pw-USER`.
    pub fn lines(&self, users: std::ops::Range<u32>, addr: impl Fn(u32) -> SocketAddr) -> PathBuf {
        let mut csv = String::from("target,mac,password\n");
        for user in users {
            csv += &format!("{user}@{},{},pw-{user}\n", addr(user), mac(user));
        }
        let input = self.dir.join("lines.csv");
        std::fs::write(&input, csv).unwrap();
        input
    }

    /// [`batch`] of `input` with `args`, serving the profiles with [`KEY`].
    pub fn batch(&self, input: &Path, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
        let listen = format!("127.0.0.1:{}", self.port);
        let serve = [
            "--serve",
            self.root.to_str().unwrap(),
            "--serve-listen",
            &listen,
        ];
        batch(
            input,
            &[args, &serve].concat(),
            &[("SIPNOTIFY_PROFILE_KEY", KEY)],
        )
    }
}

pub fn counts(records: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts
            .entry(r["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}
