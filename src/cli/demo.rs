//! `sipnotify demo`: a simulated phone on loopback and the four SPA/MPP actions sent to it,
//! with every message shown.

use super::output::{human_line, ladder};
use super::Failure;
use sipnotify::phone::{self, ChallengeMode, PhoneConfig, UserRange};
use sipnotify::{Event, Notifier, NotifierConfig, Notify, Password, Target, Transport};

/// A demo-only password: the simulated phone and the agent share it on loopback.
const DEMO_PASSWORD: &str = "demo-password";

/// Runs the demo; exit code 0 when every NOTIFY was delivered.
pub async fn run() -> Result<u8, Failure> {
    let config = PhoneConfig {
        users: vec![UserRange::One("159".into())],
        password_template: DEMO_PASSWORD.into(),
        challenge: ChallengeMode::Md5Qop,
        ..PhoneConfig::default()
    };
    let listen = [("127.0.0.1:0".parse().expect("loopback"), Transport::Udp)];
    let phone = phone::spawn(config, &listen)
        .await
        .map_err(|e| Failure::local(format!("cannot start the simulated phone: {e}")))?;
    let addr = phone.local_addrs()[0].0;
    let notifier = Notifier::bind(NotifierConfig::default())
        .await
        .map_err(|e| Failure::local(format!("cannot bind the local socket: {e}")))?;
    let target =
        Target::parse(&format!("sip:159@{addr}")).map_err(|e| Failure::local(e.to_string()))?;
    outln!("A simulated Cisco SPA/MPP line (user 159) listens on udp {addr} and challenges");
    outln!("every NOTIFY with 401; sipnotify answers with the line's digest credentials.\n");
    let events = [
        Event::resync(None).expect("no profile"),
        Event::Reboot,
        Event::Restart,
        Event::xml_service("http://127.0.0.1/services/menu.xml").expect("a valid URL"),
    ];
    let mut code = 0;
    for event in events {
        let name = event.name().to_string();
        outln!("=== {name} ===");
        let mut notify =
            Notify::new(target.clone(), event).with_credentials(None, Password::new(DEMO_PASSWORD));
        notify.trace = true;
        let outcome = notifier.send(notify).await;
        out!("{}", ladder(&outcome));
        outln!("{}\n", human_line(target.as_str(), &name, &outcome, 1));
        code = code.max(outcome.kind.exit_code());
    }
    phone.shutdown().await;
    outln!("Next: point it at a real phone, e.g.");
    outln!("  SIPNOTIFY_PASSWORD=... sipnotify resync sip:<user>@<phone-ip>");
    Ok(code)
}
