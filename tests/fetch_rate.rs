//! `batch --max-fetch-rate`: the NOTIFYs are paced by the fetches the server sees, so the
//! fetch rate holds the cap. Its own test binary, so that no other test shares the CPU.

mod common;
mod prov;

use prov::{counts, fleet, log_lines, Served, KEY};

#[test]
fn max_fetch_rate_holds_the_fetch_rate() {
    let served = Served::new("rate");
    let lines = 600;
    let phone = fleet(1000, 1000 + lines - 1, KEY, served.port, false);
    let input = served.lines(1000..1000 + lines, |_| phone.addr("udp"));
    let serve_log = served.dir.join("fetch.log");
    let rate = 150.0;
    let (out, records) = served.batch(
        &input,
        &[
            "--confirm-fetch",
            "3",
            "--max-fetch-rate",
            "150",
            "--serve-log",
            serve_log.to_str().unwrap(),
        ],
    );
    assert_eq!(
        counts(&records).get("confirmed"),
        Some(&(lines as usize)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut at: Vec<f64> = log_lines(&serve_log)
        .iter()
        .map(|f| f["at"].as_f64().unwrap())
        .collect();
    at.sort_by(f64::total_cmp);
    let span = at[at.len() - 1] - at[0];
    let measured = (at.len() - 1) as f64 / span;
    assert!(
        (measured - rate).abs() <= rate * 0.10,
        "{measured:.1} fetches/s over {span:.2} s, asked {rate}"
    );
    // And no one-second window holds more than 10% over the cap.
    let most = at
        .iter()
        .enumerate()
        .map(|(i, t)| at[i..].iter().take_while(|u| **u < t + 1.0).count())
        .max()
        .unwrap();
    assert!(most as f64 <= rate * 1.10, "{most} fetches in one second");
    eprintln!("fetch rate {measured:.1}/s over {span:.2} s (asked {rate}), busiest second {most}");
}
