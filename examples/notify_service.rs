//! A tokio service that sends NOTIFYs on demand, as a provisioning system would embed it:
//! requests arrive on a channel (in real life: an HTTP handler, a queue consumer), each
//! is sent concurrently through one shared `Notifier`, and each outcome is reported back.
//!
//! `cargo run --example notify_service`

use sipnotify::phone::{self, PhoneConfig, UserRange};
use sipnotify::{Event, Notifier, NotifierConfig, Notify, Outcome, Password, Target, Transport};
use tokio::sync::{mpsc, oneshot};

/// What the rest of the system asks for.
struct Request {
    target: Target,
    event: Event,
    password: Password,
    reply: oneshot::Sender<Outcome>,
}

/// Serves requests until every sender is dropped. The notifier is cloned into each task:
/// all of them share one socket and one protocol driver.
async fn serve(notifier: Notifier, mut requests: mpsc::Receiver<Request>) {
    while let Some(r) = requests.recv().await {
        let notifier = notifier.clone();
        tokio::spawn(async move {
            let notify = Notify::new(r.target, r.event).with_credentials(None, r.password);
            let _ = r.reply.send(notifier.send(notify).await);
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A simulated fleet of lines 1000-1009, each with password pw-<user>.
    let config = PhoneConfig {
        users: vec!["1000-1009".parse::<UserRange>()?],
        password_template: "pw-{user}".into(),
        ..PhoneConfig::default()
    };
    let phone = phone::spawn(config, &[("127.0.0.1:0".parse()?, Transport::Udp)]).await?;
    let addr = phone.local_addrs()[0].0;

    let (tx, rx) = mpsc::channel(64);
    let service = tokio::spawn(serve(Notifier::bind(NotifierConfig::default()).await?, rx));

    let mut replies = Vec::new();
    for user in 1000..1010 {
        let (reply, outcome) = oneshot::channel();
        let event = if user % 2 == 0 {
            Event::resync(None)?
        } else {
            Event::xml_service("http://10.0.0.1/menu.xml")?
        };
        tx.send(Request {
            target: Target::parse(&format!("sip:{user}@{addr}"))?,
            event,
            password: Password::new(format!("pw-{user}")),
            reply,
        })
        .await?;
        replies.push((user, outcome));
    }
    drop(tx);
    for (user, outcome) in replies {
        let o = outcome.await?;
        println!("line {user}: {} ({:?})", o.kind, o.status);
    }
    service.await?;
    phone.shutdown().await;
    Ok(())
}
