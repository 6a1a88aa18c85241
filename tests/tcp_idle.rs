//! A TCP connection the agent no longer needs is closed once no transaction can still wait
//! on it: a campaign to many phones must not keep a descriptor per phone.

mod common;

use common::response;
use sipnotify::proto::transaction::Timers;
use sipnotify::{Event, Notifier, NotifierConfig, Notify, OutcomeKind, Target, Transport};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_idle_connection_is_closed_after_timer_f() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, closed_after) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        stream
            .write_all(&response(&buf[..n], 200, "OK", &[], b""))
            .unwrap();
        let answered = Instant::now();
        // The agent closes: read returns 0. Without the idle close it would time out.
        let eof = matches!(stream.read(&mut buf), Ok(0));
        done.send((eof, answered.elapsed())).unwrap();
    });

    let timers = Timers {
        t1: Duration::from_millis(10),
        ..Timers::default()
    };
    let notifier = Notifier::bind(NotifierConfig {
        timers,
        ..NotifierConfig::default()
    })
    .await
    .unwrap();
    let mut notify = Notify::new(
        Target::parse(&format!("sip:159@{addr}")).unwrap(),
        Event::Reboot,
    );
    notify.transport = Some(Transport::Tcp);
    assert_eq!(notifier.send(notify).await.kind, OutcomeKind::Delivered);

    let (eof, after) = tokio::task::spawn_blocking(move || closed_after.recv().unwrap())
        .await
        .unwrap();
    assert!(eof, "the connection was not closed");
    // Timer F is 640 ms here; the connection waits at least that long, then closes.
    assert!(after >= Duration::from_millis(640), "{after:?}");
    drop(notifier);
}
