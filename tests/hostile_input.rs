//! Input files with mistakes in them, run through the real binary against `sipnotify
//! phone` on loopback: a mistake in a row costs that row only, in bounded memory.

mod common;

use common::{bin, temp_dir, PhoneProcess};
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};

/// A phone answering for users 1000-1999, each with the password `pw-{user}`.
fn phone() -> PhoneProcess {
    PhoneProcess::builder()
        .transport("udp")
        .users("1000-1999")
        .password_template("pw-{user}")
        .start()
}

/// `sipnotify batch INPUT --output json ARGS...`, its stderr to `dir/stderr`.
fn spawn_batch(dir: &Path, input: &Path, args: &[&str]) -> Child {
    bin()
        .arg("batch")
        .arg(input)
        .args(["--output", "json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout to its end, then reaps it with wait4: its exit code and its
/// peak resident set size in KiB (`ru_maxrss`).
fn finish(mut child: Child) -> (String, Option<i32>, i64) {
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (stdout, code, usage.ru_maxrss)
}

fn records(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn with_outcome<'a>(records: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["outcome"] == outcome).collect()
}

/// Row 3 of 1,000 opens a quote in its password cell and never closes it: that row is a
/// bad row, on line 4 (the header row is line 1), and the 999 others are delivered. Read
/// as one stream by the csv crate, the quoted cell went on to the end of the file: 3
/// records, 997 rows never sent and never reported.
#[test]
fn a_stray_quote_in_row_3_of_1000_costs_that_row_only() {
    let dir = temp_dir("stray-quote");
    let phone = phone();
    let port = phone.addr("udp").port();
    let mut text = String::from("target,password\n");
    for user in 1000..2000 {
        let quote = if user == 1002 { "\"" } else { "" };
        text += &format!("{user}@127.0.0.1:{port},{quote}pw-{user}\n");
    }
    let input = dir.join("phones.csv");
    std::fs::write(&input, text).unwrap();
    let (stdout, code, _) = finish(spawn_batch(&dir, &input, &[]));
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    let records = records(&stdout);
    assert_eq!(records.len(), 1000, "{stderr}");
    let delivered = with_outcome(&records, "delivered");
    assert_eq!(delivered.len(), 999, "{stderr}");
    assert!(delivered
        .iter()
        .all(|r| !r["target"].as_str().unwrap().contains("1002@")));
    let bad = with_outcome(&records, "bad_row");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["line"], 4);
    assert_eq!(
        bad[0]["reason"],
        "unterminated quote (a quoted cell must end on its line)"
    );
    assert!(stderr.contains("line 4: unterminated quote"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("pw-1002"), "the password leaked: {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A 20 MB cell makes its row a bad row, skipped without being held: the process's peak
/// RSS stays under 40 MB, with `--spread` so that the rows are counted first too. The csv
/// crate held the cell whole (and the row sent it as the password).
#[test]
fn a_20_mb_cell_is_a_bad_row_read_in_bounded_memory() {
    const MAX_RSS_KIB: i64 = 40 * 1024;
    let dir = temp_dir("huge-cell");
    let phone = phone();
    let port = phone.addr("udp").port();
    let input = dir.join("phones.csv");
    let mut file = BufWriter::new(File::create(&input).unwrap());
    writeln!(file, "target,password").unwrap();
    writeln!(file, "1000@127.0.0.1:{port},pw-1000").unwrap();
    write!(file, "1001@127.0.0.1:{port},").unwrap();
    let chunk = [b'x'; 64 * 1024];
    for _ in 0..(20 << 20) / chunk.len() {
        file.write_all(&chunk).unwrap();
    }
    writeln!(file).unwrap();
    writeln!(file, "1002@127.0.0.1:{port},pw-1002").unwrap();
    file.into_inner().unwrap().sync_all().unwrap();
    let (stdout, code, max_rss_kib) = finish(spawn_batch(&dir, &input, &["--spread", "1s"]));
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    let records = records(&stdout);
    assert_eq!(records.len(), 3, "{stderr}");
    assert_eq!(with_outcome(&records, "delivered").len(), 2, "{records:?}");
    let bad = with_outcome(&records, "bad_row");
    assert_eq!(bad.len(), 1, "{records:?}");
    assert_eq!(bad[0]["line"], 3);
    assert_eq!(bad[0]["reason"], "the row is longer than 64 KiB");
    eprintln!("peak RSS of sipnotify batch with a 20 MB cell: {max_rss_kib} KiB");
    assert!(
        max_rss_kib < MAX_RSS_KIB,
        "peak RSS {max_rss_kib} KiB, at most {MAX_RSS_KIB} KiB"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
