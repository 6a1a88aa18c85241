//! Helpers shared by the integration tests: a simulated phone as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The password every simulated line in these tests has.
pub const PASSWORD: &str = "Pw-159-sEcReT";

/// The real binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipnotify"))
}

/// `sipnotify phone` running as a child; killed on drop.
pub struct PhoneProcess {
    child: Child,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

impl PhoneProcess {
    /// Starts a phone on free loopback ports with `args` added, and waits until it listens.
    pub fn start(args: &[&str]) -> PhoneProcess {
        let mut child = bin()
            .args(["phone", "--listen", "127.0.0.1:0", "--user", "159"])
            .args(["--password-template", PASSWORD])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipnotify phone");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("phone prints its addresses");
        let find = |t: &str| {
            line.trim()
                .trim_start_matches("phone listening on ")
                .split(", ")
                .find_map(|part| part.strip_prefix(t).map(|a| a.trim().parse().unwrap()))
        };
        let (udp, tcp) = (find("udp "), find("tcp "));
        assert!(
            udp.is_some() || tcp.is_some(),
            "unexpected first line: {line}"
        );
        PhoneProcess { child, udp, tcp }
    }

    /// The phone's address for `transport` ("udp" or "tcp").
    pub fn addr(&self, transport: &str) -> SocketAddr {
        match transport {
            "udp" => self.udp.expect("phone listens on udp"),
            _ => self.tcp.expect("phone listens on tcp"),
        }
    }
}

impl Drop for PhoneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses the single JSON line a single-target command prints.
pub fn json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {text}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}
