//! `sipnotify batch` warns when `--concurrency` targets over TCP, a descriptor each, cannot
//! all be open at once.

mod common;

use common::{bin, temp_dir, PhoneProcess, PASSWORD};
use std::os::unix::process::CommandExt;
use std::process::Stdio;

#[test]
fn a_concurrency_beyond_the_open_file_limit_is_warned_about() {
    let phone = PhoneProcess::builder().transport("tcp").start();
    let dir = temp_dir("nofile");
    let input = dir.join("targets.csv");
    std::fs::write(&input, format!("target\nsip:159@{}\n", phone.addr("tcp"))).unwrap();
    let run = |concurrency: &str, hard_limit: Option<libc::rlim_t>| {
        let mut command = bin();
        command
            .arg("batch")
            .arg(&input)
            .args(["--transport", "tcp", "--concurrency", concurrency])
            .env("SIPNOTIFY_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        if let Some(limit) = hard_limit {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warned = run("500", Some(64));
    assert!(
        warned.contains("warning: --concurrency 500, but only "),
        "{warned}"
    );
    let quiet = run("8", None);
    assert!(!quiet.contains("warning"), "{quiet}");
    let _ = std::fs::remove_dir_all(&dir);
}
