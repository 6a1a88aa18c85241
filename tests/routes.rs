//! The local address in Via follows the kernel's routes while a notifier runs. sipnotify
//! asks the kernel once per route, not once per phone (`net::route`), so what it learnt
//! must be forgotten when the routes change.
//!
//! Shown in a network namespace of its own, where routes may change without touching the
//! machine's: this binary runs itself again under `unshare -rn` (util-linux), and that run
//! sets up its loopback with `ip` (Debian package `iproute2`), starts a phone and sends
//! through one notifier. Reported ignored where `ip` is missing or user namespaces are
//! refused, outside CI; failed in CI (`tests/common/needs.rs`).

mod common;

use common::needs::Program;
use sipnotify::phone::{self, PhoneConfig, UserRange};
use sipnotify::{Event, Notifier, NotifierConfig, Notify, Password, Target, Transport};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Set in the run inside the namespace.
const INSIDE: &str = "SIPNOTIFY_TEST_INSIDE_A_NAMESPACE";

fn main() -> ExitCode {
    if std::env::var_os(INSIDE).is_some() {
        inside_the_namespace();
        return ExitCode::SUCCESS;
    }
    // Both are needed: `ip` installed, then `unshare -rn` allowed.
    let needs = match ip().path {
        Some(_) => unshare(),
        None => ip(),
    };
    common::needs::run(
        &needs,
        trials![a_route_changed_while_sending_changes_the_next_via],
    )
}

fn ip() -> Program {
    Program::find("ip", "iproute2", &["/usr/sbin", "/sbin"])
}

fn unshare() -> Program {
    Program::find("unshare", "util-linux", &[]).works(
        &["-rn", "true"],
        "user namespaces are not allowed (a container or kernel.unprivileged_userns_clone=0)",
    )
}

fn a_route_changed_while_sending_changes_the_next_via() {
    let out = Command::new(unshare().path())
        .arg("-rn")
        .arg(std::env::current_exe().unwrap())
        .env(INSIDE, ip().path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the run in a namespace: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two local addresses, and every address of 198.51.100.0/24 a local one (a route of type
/// local) answered from 10.9.0.1; a phone on all of them. One target is sent, the route's
/// source becomes 10.9.0.2, and the same target and another are sent by the same notifier.
fn inside_the_namespace() {
    let ip = std::env::var_os(INSIDE).unwrap();
    let run = |args: &str| {
        let status = Command::new(&ip).args(args.split(' ')).status().unwrap();
        assert!(status.success(), "ip {args}");
    };
    run("link set lo up");
    run("addr add 10.9.0.1/32 dev lo");
    run("addr add 10.9.0.2/32 dev lo");
    run("route add local 198.51.100.0/24 dev lo src 10.9.0.1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = PhoneConfig {
            users: vec!["1001-1002".parse::<UserRange>().unwrap()],
            password_template: "pw-{user}".into(),
            ..PhoneConfig::default()
        };
        let listen = ("0.0.0.0:5060".parse().unwrap(), Transport::Udp);
        let phone = phone::spawn(config, &[listen]).await.unwrap();
        let notifier = Notifier::bind(NotifierConfig::default()).await.unwrap();
        let via = |user: u32, ip: &'static str| {
            let target = Target::parse(&format!("sip:{user}@{ip}:5060")).unwrap();
            let mut notify = Notify::new(target, Event::resync(None).unwrap())
                .with_credentials(None, Password::new(format!("pw-{user}")));
            notify.trace = true;
            let sending = notifier.send(notify);
            async move {
                let outcome = sending.await;
                assert_eq!(outcome.status, Some(200), "{outcome:?}");
                let first = String::from_utf8_lossy(&outcome.ladder[0].bytes).into_owned();
                let via = first.lines().find(|l| l.starts_with("Via:")).unwrap();
                via.to_string()
            }
        };
        let before = via(1001, "198.51.100.7").await;
        assert!(before.contains(" 10.9.0.1:"), "{before}");
        run("route replace local 198.51.100.0/24 dev lo src 10.9.0.2");
        // The kernel's announcements are read at most once a millisecond.
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The phone sent to before, whatever remembered its address, and a new one.
        for (user, ip) in [(1001, "198.51.100.7"), (1002, "198.51.100.8")] {
            let after = via(user, ip).await;
            assert!(after.contains(" 10.9.0.2:"), "{ip}: {after}");
        }
        phone.shutdown().await;
    });
}
