//! Writing responses: the one place a SIP response is put into bytes, for the simulated
//! phone and for tests that play a peer.

use super::codec::Message;
use super::push_header;

/// A response to write for a received request.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: &'a str,
    /// The To tag to add when the request's To has none (RFC 3261 §8.2.6.2); keep it the
    /// same for retransmissions of one request.
    pub to_tag: &'a str,
    /// Further headers, in order, as `(name, value)`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body; Content-Length is its exact length.
    pub body: &'a [u8],
}

/// A request that cannot be answered: it lacks a header the response must copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request has no {0} header to copy into a response")]
pub struct Unanswerable(pub &'static str);

impl Response<'_> {
    /// Appends the response to `request` to `out`: status line, the request's Via headers
    /// in order, From, To (with the tag), Call-ID and CSeq copied (RFC 3261 §8.2.6.2), then
    /// the further headers, Content-Length and the body.
    pub fn write(&self, request: &Message, out: &mut Vec<u8>) -> Result<(), Unanswerable> {
        let header = |name: &'static str| request.header(name).ok_or(Unanswerable(name));
        let (from, to, call_id, cseq) = (
            header("From")?,
            header("To")?,
            header("Call-ID")?,
            header("CSeq")?,
        );
        if request.header("Via").is_none() {
            return Err(Unanswerable("Via"));
        }
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut line = |name: &str, parts: &[&str]| push_header(out, name, parts);
        for via in request.headers("Via") {
            line("Via", &[via]);
        }
        line("From", &[from]);
        if has_tag(to) {
            line("To", &[to]);
        } else {
            line("To", &[to, ";tag=", self.to_tag]);
        }
        line("Call-ID", &[call_id]);
        line("CSeq", &[cseq]);
        for (name, value) in self.headers {
            line(name, &[value]);
        }
        line(
            "Content-Length",
            &[itoa::Buffer::new().format(self.body.len())],
        );
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
        Ok(())
    }
}

/// Whether a To value already carries a `tag` parameter (outside the `<...>` URI).
fn has_tag(to: &str) -> bool {
    let params = match to.rfind('>') {
        Some(end) => &to[end + 1..],
        None => to.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').any(|p| {
        let name = p.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("tag")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::codec;

    const REQUEST: &[u8] = b"NOTIFY sip:159@10.0.0.7 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
From: <sip:sipnotify@10.0.0.1>;tag=abc\r\n\
To: <sip:159@10.0.0.7>\r\n\
Call-ID: c1\r\n\
CSeq: 7 NOTIFY\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn copies_the_dialog_headers_adds_the_tag_and_counts_the_body() {
        let request = codec::parse(REQUEST).unwrap();
        let mut out = Vec::new();
        Response {
            status: 400,
            reason: "Bad Request",
            to_tag: "t1",
            headers: &[("Server", "x")],
            body: b"why",
        }
        .write(&request, &mut out)
        .unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 400 Bad Request\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
From: <sip:sipnotify@10.0.0.1>;tag=abc\r\n\
To: <sip:159@10.0.0.7>;tag=t1\r\n\
Call-ID: c1\r\n\
CSeq: 7 NOTIFY\r\n\
Server: x\r\n\
Content-Length: 3\r\n\r\nwhy"
        );
        let parsed = codec::parse(&out).unwrap();
        assert_eq!((parsed.status(), parsed.body), (Some(400), &b"why"[..]));
    }

    #[test]
    fn keeps_an_existing_tag_and_refuses_what_cannot_be_answered() {
        assert!(has_tag("<sip:a@b>;tag=x") && has_tag("sip:a@b;Tag=x"));
        assert!(!has_tag("<sip:a@b;tag=x>") && !has_tag("sip:a@b"));
        let no_call_id = b"NOTIFY sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:x@y>\r\nTo: <sip:a@b>\r\nCSeq: 1 NOTIFY\r\n\r\n";
        let request = codec::parse(no_call_id).unwrap();
        let response = Response {
            status: 200,
            reason: "OK",
            to_tag: "t",
            headers: &[],
            body: b"",
        };
        assert_eq!(
            response.write(&request, &mut Vec::new()),
            Err(Unanswerable("Call-ID"))
        );
    }
}
