//! HTTP authentication of the phone's web user (sans-IO): Basic, sent pre-emptively as
//! classic CUCM phones expect, and Digest (RFC 7616, computed by [`crate::sip::digest`]),
//! which SPA/MPP phones ask for with a 401.

use crate::sip::digest::{self, Password};
use base64::Engine;

/// Which authentication to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMode {
    /// Basic pre-emptively when credentials are given, and answer a Digest challenge.
    #[default]
    Auto,
    /// Basic only (pre-emptively).
    Basic,
    /// Digest only (answering the phone's 401).
    Digest,
    /// No credentials at all.
    None,
}

/// An `--auth` value that names no [`AuthMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: the auth is auto, basic, digest or none")]
pub struct UnknownAuthMode(pub String);

impl std::str::FromStr for AuthMode {
    type Err = UnknownAuthMode;

    fn from_str(s: &str) -> Result<AuthMode, UnknownAuthMode> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AuthMode::Auto),
            "basic" => Ok(AuthMode::Basic),
            "digest" => Ok(AuthMode::Digest),
            "none" => Ok(AuthMode::None),
            _ => Err(UnknownAuthMode(s.to_owned())),
        }
    }
}

/// The web user and its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebCredentials {
    /// The user (a CUCM end user associated with the device, or the phone's local user).
    pub user: String,
    /// Its password.
    pub password: Password,
}

/// The `Authorization` value of Basic authentication.
pub fn basic(credentials: &WebCredentials) -> String {
    let pair = format!("{}:{}", credentials.user, credentials.password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The Basic credentials a request's first try carries, if any. `classic` says the page
/// is one of the classic phones' CGI pages, whose CUCM authentication expects Basic
/// without a challenge; elsewhere (the MPP `/admin/` pages, which challenge with Digest)
/// `Auto` waits for the 401, so the password never crosses plain HTTP in Basic form.
pub fn preemptive(
    mode: AuthMode,
    credentials: Option<&WebCredentials>,
    classic: bool,
) -> Option<String> {
    match mode {
        AuthMode::Basic => credentials.map(basic),
        AuthMode::Auto if classic => credentials.map(basic),
        AuthMode::Auto | AuthMode::Digest | AuthMode::None => None,
    }
}

/// How to answer a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send again with this `Authorization` value.
    Retry(String),
    /// Nothing to send: no credentials, or `--auth none`.
    NoCredentials,
    /// Credentials were sent for this scheme and refused, or the phone asks for a scheme
    /// this mode does not allow.
    Refused(String),
}

/// What the request being answered was.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST` or `GET`.
    pub method: &'a str,
    /// The request target (`/CGI/Execute`).
    pub uri: &'a str,
    /// The body (hashed for `auth-int`).
    pub body: &'a [u8],
    /// Whether this request carried Basic credentials.
    pub sent_basic: bool,
    /// Whether this request carried Digest credentials (stale nonces aside, no second try).
    pub sent_digest: bool,
    /// Whether `Auto` may answer a Basic challenge: not on an MPP admin page over plain
    /// HTTP, where the admin password would cross the network readable.
    pub auto_basic: bool,
}

/// Answers a 401 from its `WWW-Authenticate` values. `cnonce` is random, from the caller.
pub fn answer_401<'v>(
    mode: AuthMode,
    credentials: Option<&WebCredentials>,
    challenges: impl IntoIterator<Item = &'v str> + Clone,
    request: Request<'_>,
    cnonce: &str,
) -> Reply {
    let Some(credentials) = credentials.filter(|_| mode != AuthMode::None) else {
        return Reply::NoCredentials;
    };
    let digest = digest::select(challenges.clone()).into_iter().next();
    let offers_basic = challenges.into_iter().any(|c| {
        c.trim_start()
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("basic"))
    });
    match (mode, digest) {
        (AuthMode::Basic, _) if request.sent_basic => {
            Reply::Refused("401 after Basic credentials".into())
        }
        (AuthMode::Basic, _) => Reply::Retry(basic(credentials)),
        (_, Some(challenge)) if !request.sent_digest || challenge.stale => {
            let answer = digest::Answer {
                username: &credentials.user,
                password: &credentials.password,
                method: request.method,
                uri: request.uri,
                body: request.body,
                cnonce,
                nc: 1,
            };
            Reply::Retry(digest::authorization(&challenge, &answer))
        }
        (_, Some(_)) => Reply::Refused("401 after Digest credentials".into()),
        (AuthMode::Auto, None) if offers_basic && !request.auto_basic => Reply::Refused(
            "the phone asks for Basic over plain http, which would show the admin password to \
             the network: use https://, or --auth basic to send it anyway"
                .into(),
        ),
        (AuthMode::Auto, None) if offers_basic && !request.sent_basic => {
            Reply::Retry(basic(credentials))
        }
        (AuthMode::Auto, None) if request.sent_basic => {
            Reply::Refused("401 after Basic credentials".into())
        }
        (AuthMode::Digest, None) if offers_basic => {
            Reply::Refused("the phone asks for Basic authentication and --auth is digest".into())
        }
        _ => Reply::Refused("401 with no challenge this agent can answer".into()),
    }
}

/// An `Authorization` value as shown in ladders: its scheme only.
pub fn masked(value: &str) -> String {
    let scheme = value.split_whitespace().next().unwrap_or("");
    format!("{} <redacted>", crate::text::printable(scheme, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> WebCredentials {
        WebCredentials {
            user: "admin".into(),
            password: Password::new("s3cret"),
        }
    }

    fn request(sent_basic: bool, sent_digest: bool) -> Request<'static> {
        Request {
            method: "POST",
            uri: "/CGI/Execute",
            body: b"XML=x",
            sent_basic,
            sent_digest,
            auto_basic: true,
        }
    }

    #[test]
    fn basic_is_preemptive_unless_digest_or_none() {
        // RFC 7617 §2's example pair.
        let aladdin = WebCredentials {
            user: "Aladdin".into(),
            password: Password::new("open sesame"),
        };
        assert_eq!(basic(&aladdin), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(preemptive(AuthMode::Auto, Some(&creds()), true).is_some());
        assert!(preemptive(AuthMode::Basic, Some(&creds()), true).is_some());
        assert!(preemptive(AuthMode::Digest, Some(&creds()), true).is_none());
        assert!(preemptive(AuthMode::None, Some(&creds()), true).is_none());
        assert!(preemptive(AuthMode::Auto, None, true).is_none());
        // MPP admin pages: Auto waits for the challenge; Basic is still sent if asked.
        assert!(preemptive(AuthMode::Auto, Some(&creds()), false).is_none());
        assert!(preemptive(AuthMode::Basic, Some(&creds()), false).is_some());
    }

    #[test]
    fn a_digest_challenge_is_answered_once_and_verifies() {
        let challenge = digest::challenge_header(
            "phone",
            "n0nce",
            "MD5",
            Some(digest::Qop::Auth),
            Some("op"),
            false,
        );
        let reply = answer_401(
            AuthMode::Auto,
            Some(&creds()),
            [challenge.as_str()],
            request(true, false),
            "c1",
        );
        let Reply::Retry(value) = reply else {
            panic!("{reply:?}")
        };
        let parsed = digest::parse_authorization(&value).unwrap();
        assert_eq!(
            (parsed.uri.as_str(), parsed.username.as_str()),
            ("/CGI/Execute", "admin")
        );
        assert!(digest::verify(
            &parsed,
            &Password::new("s3cret"),
            "POST",
            b"XML=x"
        ));
        assert!(!digest::verify(
            &parsed,
            &Password::new("wrong"),
            "POST",
            b"XML=x"
        ));
        // Answered again: refused, unless the nonce went stale.
        assert!(matches!(
            reply_to(AuthMode::Auto, true, &challenge, (false, true)),
            Reply::Refused(_)
        ));
        let stale =
            digest::challenge_header("phone", "n1", "MD5", Some(digest::Qop::Auth), None, true);
        assert!(matches!(
            reply_to(AuthMode::Digest, true, &stale, (false, true)),
            Reply::Retry(_)
        ));
    }

    /// The reply to a 401 carrying `challenge`, after a request that sent Basic
    /// (`sent.0`) or Digest (`sent.1`) credentials.
    fn reply_to(
        mode: AuthMode,
        with_credentials: bool,
        challenge: &str,
        sent: (bool, bool),
    ) -> Reply {
        let credentials = creds();
        answer_401(
            mode,
            Some(&credentials).filter(|_| with_credentials),
            [challenge],
            request(sent.0, sent.1),
            "c",
        )
    }

    #[test]
    fn modes_and_schemes() {
        let basic_challenge = "Basic realm=\"phone\"";
        let none = (false, false);
        assert!(matches!(
            reply_to(AuthMode::Auto, false, basic_challenge, none),
            Reply::NoCredentials
        ));
        assert!(matches!(
            reply_to(AuthMode::None, true, basic_challenge, none),
            Reply::NoCredentials
        ));
        assert!(matches!(
            reply_to(AuthMode::Auto, true, basic_challenge, (true, false)),
            Reply::Refused(_)
        ));
        assert!(
            matches!(reply_to(AuthMode::Auto, true, basic_challenge, none), Reply::Retry(v) if v.starts_with("Basic "))
        );
        assert!(
            matches!(reply_to(AuthMode::Digest, true, basic_challenge, none), Reply::Refused(m) if m.contains("Basic"))
        );
        assert!(matches!(
            reply_to(AuthMode::Auto, true, "Negotiate", none),
            Reply::Refused(_)
        ));
        // An MPP admin page over plain http: Auto does not send Basic, --auth basic does.
        let credentials = creds();
        let admin = |mode| {
            let request = Request {
                auto_basic: false,
                ..request(false, false)
            };
            answer_401(mode, Some(&credentials), [basic_challenge], request, "c")
        };
        assert!(matches!(admin(AuthMode::Auto), Reply::Refused(m) if m.contains("https://")));
        assert!(matches!(admin(AuthMode::Basic), Reply::Retry(_)));
    }

    #[test]
    fn ladders_never_show_credentials() {
        let value = basic(&creds());
        assert_eq!(masked(&value), "Basic <redacted>");
        assert_eq!(
            masked("Digest username=\"admin\", response=\"abc\""),
            "Digest <redacted>"
        );
    }
}
