//! `sipnotify demo`: a simulated phone on loopback and the four SPA/MPP actions sent to it,
//! each message with a caption that says what it is, for someone who has never seen SIP.

use super::output::{duration_text, human_line};
use super::Failure;
use sipnotify::event::EVENTS;
use sipnotify::phone::{self, ChallengeMode, PhoneConfig, UserRange};
use sipnotify::proto::outcome::{Direction, TraceEntry};
use sipnotify::text::printable;
use sipnotify::{Event, Notifier, NotifierConfig, Notify, Password, Target, Transport};

/// A demo-only password: the simulated phone and the agent share it on loopback.
const DEMO_PASSWORD: &str = "demo-password";

/// Runs the demo; exit code 0 when every NOTIFY was delivered. `-v` shows each message
/// whole, else its first line.
pub async fn run(verbose: u8) -> Result<u8, Failure> {
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
        .map_err(|e| Failure::local(format!("cannot bind a local UDP socket: {e}")))?;
    let target =
        Target::parse(&format!("sip:159@{addr}")).map_err(|e| Failure::local(e.to_string()))?;
    outln!("A simulated Cisco SPA/MPP phone line (user 159) listens on udp {addr}.");
    outln!("Like a real phone with \"Auth Resync-Reboot\" on, it acts on a NOTIFY only from");
    outln!("someone who knows the line's password, so each action takes four messages.");
    if verbose == 0 {
        outln!("(The first line of each message is shown; -v shows them whole.)");
    }
    outln!();
    let events = [
        Event::resync(None).expect("no profile"),
        Event::Reboot,
        Event::Restart,
        Event::xml_service("http://127.0.0.1/services/menu.xml").expect("a valid URL"),
    ];
    let mut code = 0;
    let mut sent = Vec::new();
    for event in events {
        let name = event.name().to_string();
        outln!("=== {name} ===");
        let mut notify =
            Notify::new(target.clone(), event).with_credentials(None, Password::new(DEMO_PASSWORD));
        notify.trace = true;
        let outcome = notifier.send(notify).await;
        let mut previous = None;
        for entry in &outcome.ladder {
            out!("{}", step(entry, previous, verbose > 0));
            previous = Some(entry.at);
        }
        outln!("{}\n", human_line(target.as_str(), &name, &outcome, 1));
        code = code.max(outcome.kind.exit_code());
        sent.push((name, outcome.kind.as_str()));
    }
    phone.shutdown().await;
    outln!("What a real phone does with each:");
    for (name, outcome) in &sent {
        let action = EVENTS
            .iter()
            .find(|spec| spec.header == name)
            .map_or("acts on it", |spec| spec.action);
        outln!("  {name:<12} ({outcome}): the phone {action}");
    }
    outln!();
    outln!("Next: the same against a real phone, with its line's user, IP and password:");
    outln!(
        "  SIPNOTIFY_PASSWORD='line password' {} resync sip:USER@PHONE-IP",
        invoked()
    );
    Ok(code)
}

/// How the reader ran this program: `sipnotify` when that is what is on their PATH, else
/// the path they gave (e.g. `target/release/sipnotify` after `cargo run`).
fn invoked() -> String {
    let arg0 = std::env::args().next().unwrap_or_default();
    let on_path = std::path::Path::new(&arg0)
        .file_name()
        .is_some_and(|name| name == arg0.as_str());
    if arg0.is_empty() || on_path {
        "sipnotify".into()
    } else {
        arg0
    }
}

/// One message: its caption, when it went (after the one before), and the message (its
/// first line, or all of it when `whole`), escaped for the terminal.
fn step(entry: &TraceEntry, previous: Option<std::time::Duration>, whole: bool) -> String {
    let text = String::from_utf8_lossy(&entry.bytes);
    // An answer's time is the round trip since the request it answers; a request leaves as
    // soon as the answer before it is read.
    let when = match (entry.direction, previous) {
        (Direction::Received, Some(before)) => {
            format!(", after {}", duration_text(entry.at.saturating_sub(before)))
        }
        _ => String::new(),
    };
    let mut shown = match whole {
        true => printable(&text, true)
            .trim_end_matches(['\r', '\n'])
            .to_string(),
        false => printable(text.lines().next().unwrap_or_default(), false).into_owned(),
    };
    shown = shown.replace('\n', "\n    ");
    let arrow = match entry.direction {
        Direction::Received => "<<<",
        Direction::Sent | Direction::Retransmitted => ">>>",
        Direction::Routing => "---",
    };
    format!(
        "{arrow} {}{when}\n    {shown}\n",
        caption(entry.direction, &text)
    )
}

/// What a message is, in words: the point of the demo.
fn caption(direction: Direction, message: &str) -> String {
    let header = |name: &str| {
        message.lines().find_map(|line| {
            let (n, value) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    };
    match direction {
        Direction::Routing => "how sipnotify found where to send it".into(),
        Direction::Retransmitted => {
            "no answer yet: sipnotify sends the same request again (UDP may lose it)".into()
        }
        Direction::Sent => match header("Authorization").or(header("Proxy-Authorization")) {
            None => format!(
                "sipnotify sends the NOTIFY (Event: {}), without credentials yet",
                header("Event").unwrap_or("?")
            ),
            Some(authorization) => {
                let algorithm = authorization
                    .split(',')
                    .find_map(|p| p.trim().strip_prefix("algorithm="))
                    .unwrap_or("MD5")
                    .trim_matches('"')
                    .to_ascii_uppercase();
                format!(
                    "sipnotify answers with an {algorithm} digest of the line password and the \
                     nonce (never the password itself)"
                )
            }
        },
        Direction::Received => {
            let status: u16 = message
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match status {
                100..=199 => "the phone is working on it (a provisional answer)".into(),
                200..=299 => "the phone accepts: the password matched, it acts now".into(),
                401 => "the phone asks for credentials (401 with a nonce)".into(),
                407 => "the proxy asks for credentials (407 with a nonce)".into(),
                403 => "the phone refuses: the digest did not match the line password".into(),
                _ => "the phone refuses the request".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_of_an_exchange_gets_its_caption() {
        let notify = "NOTIFY sip:159@h SIP/2.0\r\nEvent: resync\r\n\r\n";
        assert_eq!(
            caption(Direction::Sent, notify),
            "sipnotify sends the NOTIFY (Event: resync), without credentials yet"
        );
        let answer = "NOTIFY sip:159@h SIP/2.0\r\nAuthorization: Digest username=\"159\", \
                      algorithm=SHA-256, qop=auth\r\n\r\n";
        assert!(caption(Direction::Sent, answer).starts_with("sipnotify answers with an SHA-256"));
        let plain = "NOTIFY sip:159@h SIP/2.0\r\nAuthorization: Digest username=\"159\"\r\n\r\n";
        assert!(caption(Direction::Sent, plain).contains("an MD5 digest"));
        for (status, words) in [
            ("401 Unauthorized", "asks for credentials (401"),
            ("200 OK", "accepts"),
            ("403 Forbidden", "did not match"),
            ("489 Bad Event", "refuses"),
        ] {
            let response = format!("SIP/2.0 {status}\r\n\r\n");
            let text = caption(Direction::Received, &response);
            assert!(text.contains(words), "{status}: {text}");
        }
    }
}
