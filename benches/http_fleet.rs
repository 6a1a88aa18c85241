//! The HTTP fleet benchmark: `sipnotify batch --channel http --action background` over
//! distinct phones of one `sipnotify phone --http 0.0.0.0:0` (each 127.x.y.z a phone
//! with Basic authentication, downloading its background and icon from a file server in
//! this process), measured from outside: phones per second.
//!
//! `cargo bench --bench http_fleet` runs 10,000 phones (`HTTP_FLEET_PHONES` to choose,
//! `HTTP_FLEET_CONCURRENCY` for the phones in flight, default the command's 32), once
//! without and once with `--screenshots`; `cargo test --benches` runs 200 to keep it quick.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{background_batch, solid_png, FileServer, PhoneProcess};
use std::process::Stdio;
use std::time::Instant;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let phones: usize = std::env::var("HTTP_FLEET_PHONES")
        .ok()
        .map(|n| n.parse().expect("HTTP_FLEET_PHONES: a number"))
        .unwrap_or(if full { 10_000 } else { 200 });
    let concurrency = std::env::var("HTTP_FLEET_CONCURRENCY").unwrap_or_else(|_| "32".into());
    let files = FileServer::start(vec![
        ("/bg.png", solid_png(320, 196, [30, 90, 200])),
        ("/tn.png", solid_png(80, 49, [30, 90, 200])),
    ]);
    let phone = PhoneProcess::builder()
        .transport("udp")
        .threads(2)
        .args(["--http", "0.0.0.0:0", "--http-auth", "basic"])
        .start();
    let port = phone.addr("http").port();
    let dir = std::env::temp_dir().join(format!("sipnotify-http-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("phones.csv");
    let mut csv = String::from("target\n");
    for i in 0..phones {
        csv += &format!(
            "127.{}.{}.{}:{port}\n",
            2 + i / 62_500,
            i / 250 % 250,
            i % 250 + 1
        );
    }
    std::fs::write(&input, csv).unwrap();
    println!(
        "http fleet benchmark: sipnotify batch --channel http --action background (concurrency {concurrency}) -> sipnotify phone --http (basic, 2 threads), loopback"
    );
    for screenshots in [false, true] {
        let mut command = background_batch(&input, &files, &["--concurrency", &concurrency]);
        command.stderr(Stdio::null());
        if screenshots {
            let shots = dir.join("shots");
            command.args(["--screenshots", shots.to_str().unwrap(), "--settle", "0"]);
        }
        let started = Instant::now();
        let out = command.output().expect("run sipnotify batch");
        let took = started.elapsed().as_secs_f64();
        let delivered = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("\"outcome\":\"delivered\""))
            .count();
        assert_eq!(
            delivered,
            phones,
            "every phone delivered (exit {:?})",
            out.status.code()
        );
        println!(
            "{phones} phones{}: {took:.2} s, {:.0} phones/s",
            if screenshots {
                ", with a screenshot each and the contact sheet"
            } else {
                ""
            },
            phones as f64 / took
        );
    }
    drop(phone);
    let _ = std::fs::remove_dir_all(&dir);
}
