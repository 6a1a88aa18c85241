//! Run a campaign from a CSV file through the library: the pipeline `sipnotify batch` runs,
//! with your own code deciding what to do with each record.
//!
//! Starts a simulated phone with lines 1000-1019 on loopback, writes a CSV of those lines
//! (with one bad row), resyncs them at 100 per second with a journal and a report, and
//! prints each record and the summary. Run it twice: the second run resumes from the
//! journal and sends nothing again.
//!
//! `cargo run --example campaign`

use sipnotify::campaign::{Campaign, Defaults, Input, Options, Record};
use sipnotify::phone::{self, PhoneConfig, UserRange};
use sipnotify::{Notifier, NotifierConfig, Password, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PhoneConfig {
        users: vec![UserRange::Range {
            first: 1000,
            last: 1019,
            width: 0,
        }],
        password_template: "secret-{user}".into(),
        ..PhoneConfig::default()
    };
    let phone = phone::spawn(config, &[("127.0.0.1:0".parse()?, Transport::Udp)]).await?;
    let addr = phone.local_addrs()[0].0;

    // Each row names its line and its own password; the event comes from the defaults.
    let dir = std::env::temp_dir().join("sipnotify-campaign-example");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("phones.csv");
    let mut csv = String::from("target,password,id\n");
    for user in 1000..1020 {
        csv += &format!("sip:{user}@{addr},secret-{user},desk-{user}\n");
    }
    csv += "not a target,x,broken\n";
    std::fs::write(&input, csv)?;

    let mut defaults = Defaults::new("resync");
    defaults.password = Some(Password::new("unused: every row has its own"));
    defaults.check()?;
    let mut options = Options::new(Input::Path(input));
    options.rate = Some(100.0);
    options.journal = Some(dir.join("resync.journal"));
    options.report = Some(dir.join("report.csv"));

    let campaign = Campaign::open(options, move |row| defaults.notify(row))?;
    let notifier = Notifier::bind(NotifierConfig::default()).await?;
    let finished = campaign
        .run(notifier, |record: &Record| {
            let id = record.id.as_deref().unwrap_or("-");
            println!(
                "{:<18} {id:<10} {}",
                record.verdict.label(),
                record.verdict.reason()
            );
        })
        .await?;
    print!("{}", finished.summary.render(&finished.end));
    println!("journal and report in {}", dir.display());
    phone.shutdown().await;
    std::process::exit(i32::from(finished.exit_code()));
}
