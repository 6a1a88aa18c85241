//! Micro-benchmarks of the hot path: building a NOTIFY, routing and parsing a response,
//! and computing a digest answer. `cargo bench --bench core`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sipnotify::sip::codec;
use sipnotify::sip::digest::{self, Answer};
use sipnotify::sip::request::NotifyRequest;
use sipnotify::{Event, Password, Target, Transport};

const CHALLENGE: &[u8] = b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK5fb2393b07715b8e61ee5bed;rport\r\n\
From: <sip:sipnotify@10.0.0.1>;tag=73647280f9530bc1\r\n\
To: <sip:159@10.0.0.7:5060>;tag=9e1b35d1c8128922\r\n\
Call-ID: f2278bf529c32f7eebd5a3db3c128739\r\n\
CSeq: 1 NOTIFY\r\n\
WWW-Authenticate: Digest realm=\"sipnotify-phone\", nonce=\"000000005922bcf186681e33\", qop=\"auth\", opaque=\"a4476c2b5faa0804\", algorithm=MD5\r\n\
Server: sipnotify-phone\r\n\
Content-Length: 0\r\n\r\n";

fn build(c: &mut Criterion) {
    let target = Target::parse("sip:159@10.0.0.7:5060").unwrap();
    let event = Event::xml_service("http://10.0.0.1/services/menu.xml").unwrap();
    let auth = [(false, "Digest username=\"159\", realm=\"r\", nonce=\"n\", uri=\"sip:159@10.0.0.7:5060\", response=\"6cb274cbfd7b2e20b6e824efc0db9430\", algorithm=MD5, cnonce=\"5fad5e5d96bfec73\", qop=auth, nc=00000001".to_string())];
    let request = NotifyRequest {
        target: &target,
        from: "sip:sipnotify@10.0.0.1",
        from_tag: "bd330529963b284b",
        call_id: "ea20ac62560b9418abb2ff3bdc06f864",
        cseq: 2,
        branch: "z9hG4bKc836850eaeff1638a13af67c",
        local: "10.0.0.1:5062".parse().unwrap(),
        transport: Transport::Udp,
        event: &event,
        extra: &[],
        authorization: &auth,
    };
    c.bench_function("build authenticated XML-Service NOTIFY", |b| {
        b.iter(|| black_box(&request).to_bytes())
    });
    c.bench_function("parse target URI", |b| {
        b.iter(|| Target::parse(black_box("sip:159@10.0.0.7:5060")).unwrap())
    });
}

fn parse(c: &mut Criterion) {
    c.bench_function("route_key of a 401", |b| {
        b.iter(|| codec::route_key(black_box(CHALLENGE)).unwrap().1)
    });
    c.bench_function("parse a 401", |b| {
        b.iter(|| codec::parse(black_box(CHALLENGE)).unwrap())
    });
    let msg = codec::parse(CHALLENGE).unwrap();
    c.bench_function("select the challenge of a 401", |b| {
        b.iter(|| digest::select(black_box(&msg).headers("WWW-Authenticate")))
    });
}

fn answer(c: &mut Criterion) {
    let msg = codec::parse(CHALLENGE).unwrap();
    let challenge = digest::select(msg.headers("WWW-Authenticate")).remove(0);
    let answer = Answer {
        username: "159",
        password: &Password::new("line-password"),
        method: "NOTIFY",
        uri: "sip:159@10.0.0.7:5060",
        body: b"",
        cnonce: "5fad5e5d96bfec73",
        nc: 1,
    };
    c.bench_function("MD5 qop=auth Authorization value", |b| {
        b.iter(|| digest::authorization(black_box(&challenge), black_box(&answer)))
    });
    let mut sha = challenge.clone();
    sha.algorithm = digest::Algorithm::Sha256;
    c.bench_function("SHA-256 qop=auth Authorization value", |b| {
        b.iter(|| digest::authorization(black_box(&sha), black_box(&answer)))
    });
}

criterion_group!(benches, build, parse, answer);
criterion_main!(benches);
