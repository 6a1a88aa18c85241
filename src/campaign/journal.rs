//! The campaign journal: append-only JSON Lines, one `intent` record written before a
//! target's first NOTIFY and one `result` record when it ends.
//!
//! ```text
//! {"type":"intent","key":"id:desk-7","target":"sip:159@10.0.0.7","event":"reboot_now","id":"desk-7","line":9,"at":1718000000.123}
//! {"type":"result","key":"id:desk-7","outcome":"delivered","status":200,"reason":"OK","attempts":2,"tries":1,"elapsed_ms":12.5,"at":1718000000.136}
//! ```
//!
//! Each record is one `write` of a whole line to a file opened for appending, made before
//! the NOTIFY goes out (intent) or before the target is reported (result), so a process
//! killed at any moment (`kill -9`) leaves every record it reported, and at worst one torn
//! last line, which reading skips. (Records reach the kernel, not the disk: surviving a
//! power cut is not promised.) Passwords are never written.
//!
//! Reading a journal keeps one key per journaled target, in two sets (delivered, and
//! started with no result), not the records.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a previous run left: the keys delivered, and the keys started with no result.
#[derive(Debug, Clone, Default)]
pub struct ResumeState {
    /// Keys whose last result was `delivered`.
    pub delivered: HashSet<String>,
    /// Keys with an intent and no result after it: they may or may not have been sent.
    pub unknown: HashSet<String>,
    /// Lines that could not be read (a torn last line after a crash).
    pub unreadable: u64,
}

impl ResumeState {
    /// Reads a journal, line by line. Unreadable lines are counted and skipped.
    pub fn read(reader: impl BufRead) -> io::Result<ResumeState> {
        #[derive(Deserialize)]
        struct Light {
            #[serde(rename = "type")]
            kind: String,
            key: String,
            #[serde(default)]
            outcome: Option<String>,
        }
        let mut state = ResumeState::default();
        for line in reader.split(b'\n') {
            let line = line?;
            if line.trim_ascii().is_empty() {
                continue;
            }
            let Ok(record) = serde_json::from_slice::<Light>(&line) else {
                state.unreadable += 1;
                continue;
            };
            match record.kind.as_str() {
                "intent" => {
                    state.delivered.remove(&record.key);
                    state.unknown.insert(record.key);
                }
                "result" => {
                    state.unknown.remove(&record.key);
                    if record.outcome.as_deref() == Some("delivered") {
                        state.delivered.insert(record.key);
                    } else {
                        state.delivered.remove(&record.key);
                    }
                }
                _ => state.unreadable += 1,
            }
        }
        Ok(state)
    }
}

/// An intent record.
#[derive(Debug, Clone, Serialize)]
pub struct Intent<'a> {
    /// The row's key.
    pub key: &'a str,
    /// The Request-URI.
    pub target: &'a str,
    /// The event name.
    pub event: &'a str,
    /// The row's `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The input line.
    pub line: u64,
}

/// A result record.
#[derive(Debug, Clone, Serialize)]
pub struct Finished<'a> {
    /// The row's key.
    pub key: &'a str,
    /// `delivered`, `timeout`, ...
    pub outcome: &'a str,
    /// The final status.
    pub status: Option<u16>,
    /// The reason phrase or what went wrong.
    pub reason: &'a str,
    /// NOTIFYs sent in the last try.
    pub attempts: u32,
    /// Tries (1 + retries).
    pub tries: u32,
    /// Time of the last try.
    pub elapsed_ms: f64,
}

/// The open journal. Shared by all the tasks of a campaign.
#[derive(Debug)]
pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    /// Opens (or creates) the journal, reads what a previous run left, and gets it ready to
    /// append (ending a torn last line first).
    pub fn open(path: &Path) -> io::Result<(Journal, ResumeState)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let state = ResumeState::read(BufReader::new(&mut file))?;
        end_torn_line(&mut file)?;
        Ok((
            Journal {
                file: Mutex::new(file),
            },
            state,
        ))
    }

    /// Writes an intent record; returns once the line is in the file.
    pub fn intent(&self, intent: &Intent<'_>) -> io::Result<()> {
        self.append("intent", intent)
    }

    /// Writes a result record.
    pub fn result(&self, outcome: &Finished<'_>) -> io::Result<()> {
        self.append("result", outcome)
    }

    /// Holds the journal so no record is being written, e.g. while the process exits.
    pub fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, kind: &str, record: &impl Serialize) -> io::Result<()> {
        let mut value = serde_json::to_value(record).map_err(io::Error::other)?;
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
        let mut line = format!("{{\"type\":\"{kind}\",").into_bytes();
        // Splice the record's fields after "type", then the time.
        if let Some(map) = value.as_object_mut() {
            map.insert("at".into(), at.into());
        }
        let body = serde_json::to_vec(&value).map_err(io::Error::other)?;
        line.extend_from_slice(&body[1..]);
        line.push(b'\n');
        // One write of the whole line, under the lock.
        self.lock().write_all(&line)
    }
}

/// Ends a torn last line (a run killed mid-write) of a file open for reading and
/// appending, so that the next record starts on a line of its own; returns the file's
/// length before.
pub(crate) fn end_torn_line(file: &mut File) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1))?;
        let mut last = [0u8];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("sipnotify-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn result<'a>(key: &'a str, outcome: &'a str) -> Finished<'a> {
        Finished {
            key,
            outcome,
            status: None,
            reason: "",
            attempts: 1,
            tries: 1,
            elapsed_ms: 1.0,
        }
    }

    fn intent(key: &str) -> Intent<'_> {
        Intent {
            key,
            target: "sip:1@h",
            event: "reboot_now",
            id: None,
            line: 2,
        }
    }

    #[test]
    fn resume_state_from_records_and_a_torn_line() {
        let path = temp("resume");
        {
            let (j, state) = Journal::open(&path).unwrap();
            assert!(state.delivered.is_empty() && state.unknown.is_empty());
            for k in ["a", "b", "c", "d"] {
                j.intent(&intent(k)).unwrap();
            }
            j.result(&result("a", "delivered")).unwrap();
            j.result(&result("b", "timeout")).unwrap();
        }
        // A torn record, as after kill -9 in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"result\",\"key\":\"c\",\"outc")
            .unwrap();
        drop(f);
        let (j, state) = Journal::open(&path).unwrap();
        assert_eq!(state.delivered, HashSet::from(["a".to_string()]));
        assert_eq!(
            state.unknown,
            HashSet::from(["c".to_string(), "d".to_string()])
        );
        assert_eq!(state.unreadable, 1);
        j.result(&result("d", "delivered")).unwrap();
        drop(j);
        let (_, state) = Journal::open(&path).unwrap();
        assert_eq!(state.unknown, HashSet::from(["c".to_string()]));
        assert_eq!(state.delivered.len(), 2);
        assert_eq!(state.unreadable, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["type"], "intent");
        assert!(first["at"].as_f64().unwrap() > 1.6e9);
        std::fs::remove_file(&path).unwrap();
    }
}
