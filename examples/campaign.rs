//! Run a campaign from a CSV file through the library: the pipeline `sipnotify batch` runs,
//! with your own code deciding what to do with each record.
//!
//! Starts a simulated phone with lines 1000-1019 on loopback, writes a CSV of those lines
//! (with one bad row), resyncs them at 100 per second with a journal and a report, and
//! prints each record and the summary. Run it twice: the second run resumes from the
//! journal and sends nothing again.
//!
//! `cargo run --example campaign [-- DIR]` (the folder for the CSV, journal and report;
//! default: sipnotify-campaign-example in the temporary folder)

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
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sipnotify-campaign-example"));
    std::fs::create_dir_all(&dir)?;
    // The phones keep their address from one run to the next, as real ones do: the journal
    // knows a target by its URI.
    let port_file = dir.join("phone.port");
    let port: u16 = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let phone = phone::spawn(config, &[(listen, Transport::Udp)]).await?;
    let addr = phone.local_addrs()[0].0;
    std::fs::write(&port_file, addr.port().to_string())?;

    // Each row names its line and its own password; the event comes from the defaults.
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
    println!(
        "journal and report in {}; `sipnotify batch` would exit {} (1: not every row delivered)",
        dir.display(),
        finished.exit_code()
    );
    phone.shutdown().await;
    Ok(())
}
