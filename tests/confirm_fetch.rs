//! `batch --confirm-fetch`: the campaign waits for each phone's profile fetch after its
//! resync, against simulated MPP lines (`phone --profile-rule`) and `serve` in the same
//! process (`--serve`) or in another one (`--fetch-log`).

mod common;
mod prov;

use common::{bin, PhoneProcess};
use prov::PROFILE;
use prov::{batch, counts, fleet, log_lines, mac, profiles, temp_dir, ServeProcess, Served, KEY};
use std::net::Ipv4Addr;
use std::path::Path;

#[test]
fn a_thousand_lines_end_confirmed() {
    let served = Served::new("all");
    let phone = fleet(1000, 1999, KEY, served.port, false);
    let input = served.lines(1000..2000, |_| phone.addr("udp"));
    let journal = served.dir.join("journal");
    let args = [
        "--confirm-fetch",
        "5",
        "--journal",
        journal.to_str().unwrap(),
    ];
    let (out, records) = served.batch(&input, &args);
    assert_eq!(
        counts(&records).get("confirmed"),
        Some(&1000),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    let journaled = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(journaled.matches("\"outcome\":\"confirmed\"").count(), 1000);
    // A resume sends nothing: every line is journaled confirmed.
    let (out, records) = served.batch(&input, &args);
    assert_eq!(counts(&records).get("already_delivered"), Some(&1000));
    assert_eq!(out.status.code(), Some(0));
    // The journal is a confirmed campaign's: without --confirm-fetch it is refused.
    let out = bin()
        .args(["batch", "--event", "resync"])
        .arg(&input)
        .args(["--journal", journal.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("confirm_fetch"));
    let stats = String::from_utf8(phone.terminate()).unwrap();
    assert!(stats.contains("1000 delivered"), "{stats}");
}

#[test]
fn a_thousand_lines_confirmed_and_ten_with_a_wrong_key_not_fetched_then_resumed() {
    let served = Served::new("thousand");
    let good = fleet(1000, 1989, KEY, served.port, true);
    let wrong = fleet(1990, 1999, "Not-The-Key", served.port, true);
    let input = served.lines(1000..2000, |user| {
        let phone = if user < 1990 { &good } else { &wrong };
        phone.addr("udp")
    });
    let (journal, serve_log) = (served.dir.join("journal"), served.dir.join("fetch.log"));
    let args = [
        "--confirm-fetch",
        "3s",
        "--confirm-path",
        "/ok/",
        "--serve-log",
        serve_log.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ];
    let (out, records) = served.batch(&input, &args);
    let counts = counts(&records);
    assert_eq!(counts.get("confirmed"), Some(&990), "{counts:?}");
    assert_eq!(counts.get("not_fetched"), Some(&10), "{counts:?}");
    assert_eq!(out.status.code(), Some(1));
    for r in &records {
        let user: u32 = r["target"].as_str().unwrap()[4..8].parse().unwrap();
        let expected = if user < 1990 {
            "confirmed"
        } else {
            "not_fetched"
        };
        assert_eq!(r["outcome"], expected, "{r}");
        if expected == "confirmed" {
            assert_eq!(r["status"], 200);
            assert!(
                r["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("/ok/{}", mac(user))),
                "{r}"
            );
        }
    }
    // The wrong-key lines fetched their profile (200) and stopped there: the server
    // cannot tell a wrong key, the missing last fetch does.
    let fetches = log_lines(&serve_log);
    let wrong_fetches: Vec<_> = fetches
        .iter()
        .filter(|f| f["mac"].as_str().unwrap() >= mac(1990).as_str())
        .collect();
    assert_eq!(wrong_fetches.len(), 10);
    assert!(wrong_fetches
        .iter()
        .all(|f| f["path"].as_str().unwrap().starts_with("/cfg/")));
    assert!(!std::fs::read_to_string(&journal).unwrap().contains(KEY));

    // Resumed: the confirmed are not sent again; the 10 are, and stay not_fetched.
    let (_, records) = served.batch(&input, &args);
    let counts = self::counts(&records);
    assert_eq!(counts.get("already_delivered"), Some(&990), "{counts:?}");
    assert_eq!(counts.get("not_fetched"), Some(&10), "{counts:?}");
    let stats = String::from_utf8(good.terminate()).unwrap();
    assert!(stats.contains("990 delivered"), "{stats}");
}

#[test]
fn a_failed_fetch_and_an_external_servers_log_matched_by_address() {
    let dir = temp_dir("external");
    let root = profiles(&dir);
    std::fs::remove_file(root.join("cfg/default.xml")).unwrap();
    std::fs::write(root.join("cfg/000e080003e8.xml"), PROFILE).unwrap();
    let log = dir.join("fetch.log");
    std::fs::write(&log, "").unwrap();
    let server = ServeProcess::start(&root, &["--log", log.to_str().unwrap()], &[]);
    // One wildcard simulator is a fleet at 127.0.0.x; each line fetches from its address.
    let phone = PhoneProcess::builder()
        .listen("0.0.0.0:0")
        .transport("udp")
        .users("1000-1003")
        .password_template("pw-{user}")
        .args([
            "--profile-rule",
            &format!("http://{}/cfg/$MA.xml", server.addr),
        ])
        .start();
    let port = phone.addr("udp").port();
    let mut csv = String::from("target,password\n");
    for (i, user) in (1000..1004).enumerate() {
        csv += &format!(
            "{user}@{}:{port},pw-{user}\n",
            Ipv4Addr::new(127, 0, 0, 10 + i as u8)
        );
    }
    let input = dir.join("lines.csv");
    std::fs::write(&input, csv).unwrap();
    let (_, records) = batch(
        &input,
        &["--confirm-fetch", "3", "--fetch-log", log.to_str().unwrap()],
        &[],
    );
    let by_target = |ip: &str| {
        records
            .iter()
            .find(|r| r["target"].as_str().unwrap().contains(ip))
            .unwrap()
            .clone()
    };
    // Only 1000 (000e080003e8) has a profile: the others get 404.
    assert_eq!(
        by_target("127.0.0.10")["outcome"],
        "confirmed",
        "{records:?}"
    );
    for ip in ["127.0.0.11", "127.0.0.12", "127.0.0.13"] {
        let r = by_target(ip);
        assert_eq!(
            (r["outcome"].as_str(), r["status"].as_u64()),
            (Some("fetch_failed"), Some(404)),
            "{r}"
        );
    }
    let fetches = log_lines(&log);
    assert!(
        fetches.iter().any(|f| f["addr"] == "127.0.0.13"),
        "{fetches:?}"
    );
}

/// `--serve DIR` refuses a journal, report or log inside DIR, where any client could fetch
/// it: exit 2 naming the option, before anything is sent or written.
#[test]
fn the_campaigns_files_inside_the_served_directory_are_refused() {
    let served = Served::new("inside");
    let phone = fleet(1000, 1001, KEY, served.port, false);
    let input = served.lines(1000..1002, |_| phone.addr("udp"));
    let options = ["--journal", "--report", "--report-html", "--serve-log"];
    let file = served.root.join("campaign.out");
    // Secrets too: the profile key, the lines' password.
    for option in options.iter().chain(&["--key-file", "--password-file"]) {
        let args = ["--confirm-fetch", "5", option, file.to_str().unwrap()];
        let (out, records) = served.batch(&input, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option}: {stderr}");
        assert!(
            stderr.contains(&format!("{option} {} is inside --serve", file.display())),
            "{option}: {stderr}"
        );
        assert!(records.is_empty() && !file.exists(), "{option}");
    }
    // Nor may the log of the fetches be one of the campaign's files.
    let journal = served.dir.join("both");
    let both = journal.to_str().unwrap();
    let args = [
        "--confirm-fetch",
        "5",
        "--journal",
        both,
        "--serve-log",
        both,
    ];
    let (out, records) = served.batch(&input, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--serve-log") && stderr.contains("is the same file as --journal"));
    assert!(records.is_empty() && !journal.exists(), "{stderr}");
    // Beside the directory, all of them at once are fine.
    let beside: Vec<String> = options
        .iter()
        .map(|option| format!("{}/{}", served.dir.display(), &option[2..]))
        .collect();
    let mut args = vec!["--confirm-fetch", "5"];
    for (option, file) in options.iter().zip(&beside) {
        args.extend([*option, file.as_str()]);
    }
    let (out, records) = served.batch(&input, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(counts(&records).get("confirmed"), Some(&2), "{stderr}");
    assert!(beside.iter().all(|file| Path::new(file).exists()));
    let stats = String::from_utf8(phone.terminate()).unwrap();
    assert!(stats.contains("2 delivered"), "{stats}");
}
