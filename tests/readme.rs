//! README's examples run as written, so that they cannot rot: every ```sh block that does
//! not run cargo is given to bash (`set -euo pipefail`, so an unquoted `$MA` is an error),
//! with `sipnotify` the real binary behind a shell function that keeps the examples on this
//! machine:
//!
//! - sending commands (resync, reboot, restart, report, xml-service, notify, and the HTTP
//!   push ones: execute, background, push, screenshot, info) get `--dry-run`:
//!   the request is built and checked, nothing is sent; a proxy named `*.example.com` is
//!   rewritten to 127.0.0.1;
//! - `phone` listens on a free loopback port instead of the one shown, and is stopped with
//!   SIGTERM after two seconds (it must still be running then: exit 0 on the signal);
//! - campaigns run for real, against a simulator, from `phones.csv` and `phones.jsonl`
//!   made here; the password file, the body file, the XML object and HOME are in a scratch
//!   directory;
//! - `man -l -` only checks that it is given a man page.
//!
//! A block fenced ```` ```sh no-run ```` is shown, not run, because it needs real phones
//! and servers side by side: the provisioning walkthrough (a server while a campaign waits
//! for the fetches; tests/confirm_fetch.rs, serve.rs and provision_phone.rs run its steps)
//! and HTTP campaigns whose phones download images from elsewhere (tests/http.rs and
//! http_fleet.rs run those).

mod common;

use common::PhoneProcess;
use std::path::Path;
use std::process::Command;

/// What the examples' shell knows as `sipnotify` and `man`.
const SHIM: &str = r#"
sipnotify() {
    local args=() a previous=""
    for a in "$@"; do
        if [[ $previous == --proxy && $a =~ ^[a-z0-9.-]+\.example\.com(:[0-9]+)?$ ]]; then
            a="127.0.0.1${BASH_REMATCH[1]}"
        fi
        if [[ $previous == --listen ]]; then
            a="127.0.0.1:0"
        fi
        args+=("$a")
        previous=$a
    done
    case "$1" in
        resync|reboot|restart|report|xml-service|notify|execute|background|push|screenshot|info)
            [[ " ${args[*]} " == *" --dry-run "* ]] || args+=(--dry-run)
            "$SIPNOTIFY_BIN" "${args[@]}" ;;
        phone)
            local rc=0
            timeout -s TERM 2 "$SIPNOTIFY_BIN" "${args[@]}" || rc=$?
            [[ $rc == 124 ]] ;;
        *)
            "$SIPNOTIFY_BIN" "${args[@]}" ;;
    esac
}
man() {
    [[ "$*" == "-l -" ]] && grep -q '^\.TH sipnotify'
}
"#;

/// The README's ```sh blocks, each a list of lines.
fn shell_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_readme_example_runs_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<String> = shell_blocks(&readme)
        .into_iter()
        .filter(|b| !b.lines().any(|l| l.trim_start().starts_with("cargo ")))
        .collect();
    let commands = blocks
        .iter()
        .flat_map(|b| b.lines())
        .filter(|l| l.contains("sipnotify "))
        .count();
    assert!(
        commands >= 20,
        "only {commands} sipnotify commands found in README's examples"
    );

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-examples");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let password = "line password";
    let phone = PhoneProcess::builder()
        .users("1000-1999")
        .user("159")
        .password_template(password)
        .start();
    let addr = phone.addr("udp");
    std::fs::write(
        dir.join("phones.csv"),
        format!("id,target\ndesk-1,sip:1000@{addr}\ndesk-2,1001@{addr}\n,sip:159@{addr}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("phones.jsonl"),
        format!(
            "{{\"target\":\"sip:1002@{addr}\"}}\n{{\"target\":\"1003@{addr}\",\"id\":\"x\"}}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("mwi.txt"),
        "Messages-Waiting: yes\nVoice-Message: 2/8\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("notice.xml"),
        "<CiscoIPPhoneText><Title>Notice</Title><Text>Maintenance at 22:00</Text></CiscoIPPhoneText>",
    )
    .unwrap();
    let password_file = dir.join(".line159");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    for block in &blocks {
        let script = format!("set -euo pipefail\n{SHIM}\n{block}");
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("SIPNOTIFY_BIN", env!("CARGO_BIN_EXE_sipnotify"))
            .env("SIPNOTIFY_PASSWORD", password)
            .env_remove("SIPNOTIFY_LOG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README example failed ({:?}):\n{block}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The campaigns ran against the simulator, and the HTML report is in place.
    let merged = std::fs::read_to_string(dir.join("campaign.html")).unwrap();
    assert!(merged.contains("data-outcome=\"delivered\" data-count=\"3\""));
    let _ = std::fs::remove_dir_all(&dir);
}
