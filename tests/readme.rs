//! README's examples run as written, so that they cannot rot: every ```sh block that does
//! not run cargo is given to bash (`set -euo pipefail`, so an unquoted `$MA` is an error),
//! with `sipnotify` the real binary behind a shell function that keeps the examples on this
//! machine:
//!
//! - sending commands (resync, reboot, restart, report, xml-service, notify, and the HTTP
//!   push ones: execute, background, push, screenshot, info, upgrade) get `--dry-run`:
//!   the request is built and checked, nothing is sent; a proxy named `*.example.com` is
//!   rewritten to 127.0.0.1;
//! - `phone` listens (`--listen`, `--http`) on a free loopback port instead of the one shown, and is stopped with
//!   SIGTERM after two seconds (it must still be running then: exit 0 on the signal);
//! - campaigns run for real, against a simulator, from `phones.csv` and `phones.jsonl`
//!   made here; HTTP campaigns against the same simulator's web server, from
//!   `web-phones.csv`, with the images of `http://10.0.0.1/` served from loopback; the
//!   password file, the body file, the XML object and HOME are in a scratch directory;
//! - `man -l -` only checks that it is given a man page.
//!
//! - `serve` runs in the background for at most 10 seconds on a port chosen here, so that a
//!   campaign later in the block can wait for the fetches it logs; `lines.csv` names a
//!   simulated MPP line whose profile rule fetches from it.

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
        if [[ $a == http://10.0.0.1/* ]]; then
            a="$FILES_URL/${a#http://10.0.0.1/}"
        fi
        if [[ $previous == --listen && $1 == serve ]]; then
            a="127.0.0.1:$SERVE_PORT"
        elif [[ $previous == --listen || $previous == --http ]]; then
            a="127.0.0.1:0"
        fi
        args+=("$a")
        previous=$a
    done
    case "$1" in
        resync|reboot|restart|report|xml-service|notify|execute|background|push|screenshot|info|upgrade)
            [[ " ${args[*]} " == *" --dry-run "* ]] || args+=(--dry-run)
            "$SIPNOTIFY_BIN" "${args[@]}" ;;
        serve)
            { timeout -s TERM 10 "$SIPNOTIFY_BIN" "${args[@]}" || [[ $? == 124 ]]; } &
            local tries=0
            until (exec 3<>"/dev/tcp/127.0.0.1/$SERVE_PORT") 2>/dev/null; do
                (( ++tries < 100 )) || return 1
                sleep 0.05
            done ;;
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
        .args(["--http", "127.0.0.1:0", "--http-user", "bbell"])
        .start();
    let addr = phone.addr("udp");
    std::fs::write(
        dir.join("web-phones.csv"),
        format!("target\n{}\n", phone.addr("http")),
    )
    .unwrap();
    // The provisioning walkthrough: the profiles it serves, and a line that fetches the
    // last rule's file from its server (the file is encrypted with the key the block makes,
    // which this line does not have: the server logs the fetch all the same).
    let serve_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir.join("profiles/cfg")).unwrap();
    std::fs::create_dir_all(dir.join("profiles/ok")).unwrap();
    std::fs::write(
        dir.join("profiles/cfg/default.xml"),
        "<flat-profile>\n<Resync_Periodic> 7200 </Resync_Periodic>\n</flat-profile>\n",
    )
    .unwrap();
    let mpp = PhoneProcess::builder()
        .transport("udp")
        .user("2000")
        .password_template(password)
        .args([
            "--profile-rule".to_string(),
            format!("http://127.0.0.1:{serve_port}/ok/$MA"),
        ])
        .start();
    std::fs::write(
        dir.join("lines.csv"),
        format!("target,mac\n2000@{},000e080007d0\n", mpp.addr("udp")),
    )
    .unwrap();
    let images = common::FileServer::start(vec![
        ("/bg/logo.png", common::solid_png(320, 212, [0, 90, 160])),
        ("/bg/logo-tn.png", common::solid_png(80, 53, [0, 90, 160])),
    ]);
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
            .env("FILES_URL", images.url(""))
            .env("SERVE_PORT", serve_port.to_string())
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
    // The walkthrough's line fetched its file and its resync was confirmed.
    let report = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    assert!(report.contains(",confirmed,"), "{report}");
    // The HTTP campaign set the background (the phone fetched both images), took the
    // screenshot for the contact sheet, and the inventory has the phone.
    let hits = images.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits.values().all(|&n| n == 1), "{hits:?}");
    assert!(dir.join("shots/report.html").is_file());
    let inventory = std::fs::read_to_string(dir.join("inventory.csv")).unwrap();
    assert_eq!(inventory.lines().count(), 2, "{inventory}");
    assert!(inventory.contains(",delivered,"), "{inventory}");
    let _ = std::fs::remove_dir_all(&dir);
}
