//! Resync one phone from Rust code.
//!
//! Starts a simulated phone on loopback so it runs anywhere; point `target` at a real
//! phone instead: `sip:<user>@<phone-ip>`.
//!
//! `cargo run --example one_phone`

use sipnotify::phone::{self, PhoneConfig};
use sipnotify::{Event, Notifier, NotifierConfig, Notify, Password, Target, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = PhoneConfig {
        password_template: "line-secret".into(),
        ..PhoneConfig::default()
    };
    let phone = phone::spawn(config, &[("127.0.0.1:0".parse()?, Transport::Udp)]).await?;
    let target = Target::parse(&format!("sip:159@{}", phone.local_addrs()[0].0))?;

    let notifier = Notifier::bind(NotifierConfig::default()).await?;
    let notify = Notify::new(target, Event::resync(None)?)
        .with_credentials(None, Password::new("line-secret"));
    let outcome = notifier.send(notify).await;

    println!(
        "{}: {:?} {} after {} attempt(s)",
        outcome.kind, outcome.status, outcome.reason, outcome.attempts
    );
    phone.shutdown().await;
    Ok(())
}
