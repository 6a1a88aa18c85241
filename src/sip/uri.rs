//! The phone addresses users type: `sip:159@192.168.0.10:5061;transport=tcp`,
//! `sips:159@pbx.example.com` or `159@192.168.0.10[:port]`.

use super::Transport;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The SIP port used when a target names none.
pub const DEFAULT_PORT: u16 = 5060;

/// The port used over TLS when a target names none (RFC 3261 section 19.1.2).
pub const DEFAULT_TLS_PORT: u16 = 5061;

/// Why a target could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Empty input.
    #[error("the target is empty: give a SIP URI such as sip:159@192.168.0.10:5060")]
    Empty,
    /// `user:password@host`: the password would be sent in the Request-URI and shown in every
    /// report, so the target is refused without repeating it.
    #[error("the target holds a password (user:password@host); never put it in the URI: give it with --password-file or SIPNOTIFY_PASSWORD")]
    Password,
    /// `sips:` asks for TLS on every hop (RFC 3261 section 19.1), which UDP cannot give.
    #[error(
        "`{0}` is a sips: URI, which travels over TLS only: leave out transport=udp, or write sip:"
    )]
    SipsOverUdp(String),
    /// No user part: a phone line is `USER@HOST`.
    #[error("`{0}` has no user part: a target is a phone line, USER@HOST, e.g. 159@192.168.0.10 or sip:159@192.168.0.10:5060")]
    NoUser(String),
    /// Not a URI at all.
    #[error(
        "`{0}` is not a SIP URI: write sip:USER@HOST[:PORT][;transport=tcp] or USER@HOST[:PORT]"
    )]
    Invalid(String),
    /// The `transport` parameter names something other than udp, tcp or tls.
    #[error("`{0}` asks for transport `{1}`: sipnotify sends over udp, tcp or tls")]
    Transport(String, String),
}

/// The host part of a URI or of `--proxy`: a name to resolve, or an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, resolved when sending.
    Name(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address, written in brackets in URIs.
    V6(Ipv6Addr),
}

impl Host {
    /// Reads `name`, `a.b.c.d` or `[v6]` (a bare IPv6 address too).
    pub fn parse(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner.parse().ok().map(Host::V6);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(ip.into());
        }
        let name_ok = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        name_ok.then(|| Host::Name(text.to_string()))
    }

    /// The address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Name(_) => None,
            Host::V4(v4) => Some((*v4).into()),
            Host::V6(v6) => Some((*v6).into()),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(v4) => Host::V4(v4),
            IpAddr::V6(v6) => Host::V6(v6),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::V4(v4) => v4.fmt(f),
            Host::V6(v6) => write!(f, "[{v6}]"),
        }
    }
}

impl PartialEq<str> for Host {
    fn eq(&self, other: &str) -> bool {
        match self {
            Host::Name(name) => name.eq_ignore_ascii_case(other),
            _ => Host::parse(other).as_ref() == Some(self),
        }
    }
}

/// `HOST[:PORT]`, the form of `--proxy` (a `sip:` prefix is allowed; IPv6 in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port, if given (RFC 3263 looks up SRV records only when it is not).
    pub port: Option<u16>,
}

impl HostPort {
    /// The port, or 5060 when none was given.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// Why a `HOST[:PORT]` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPortError {
    /// The port is not a number from 1 to 65535.
    #[error("`{0}`: the port must be a number from 1 to 65535")]
    Port(String),
    /// Not a host.
    #[error("`{0}` is not HOST[:PORT] (an IPv6 address goes in brackets: [2001:db8::1]:5060)")]
    Host(String),
}

impl std::str::FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(text: &str) -> Result<HostPort, HostPortError> {
        let text = text.trim();
        let bare = text.strip_prefix("sip:").unwrap_or(text);
        // After a bracketed IPv6 address, or else after the only colon.
        let split = match bare.strip_prefix('[') {
            Some(_) => bare.find(']').map(|end| end + 1),
            None => (bare.matches(':').count() == 1)
                .then(|| bare.find(':'))
                .flatten(),
        };
        let (host, port) = match split {
            Some(at) if bare[at..].starts_with(':') => {
                let port = bare[at + 1..]
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| HostPortError::Port(text.into()))?;
                (&bare[..at], Some(port))
            }
            Some(at) if at < bare.len() => return Err(HostPortError::Host(text.into())),
            _ => (bare, None),
        };
        let host = Host::parse(host).ok_or_else(|| HostPortError::Host(text.into()))?;
        Ok(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => self.host.fmt(f),
        }
    }
}

/// A phone line to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    text: String,
    user: String,
    host: Host,
    port: Option<u16>,
    /// The `transport` parameter; TLS for every `sips:` target.
    transport: Option<Transport>,
    /// A `sips:` URI.
    sips: bool,
}

impl Target {
    /// Parses a target. A missing `sip:` scheme is added.
    pub fn parse(input: &str) -> Result<Target, TargetError> {
        let input = input.trim();
        if let Some(plain) = Target::parse_plain(input) {
            return Ok(plain);
        }
        Target::parse_with_rsip(input)
    }

    /// The form of nearly every row of a campaign, `[sip:]USER@A.B.C.D[:PORT]`, read
    /// without rsip, whose parse and `Display` are costly on a per-row path.
    /// `None` for anything else, which rsip then reads; a test checks that both agree.
    fn parse_plain(input: &str) -> Option<Target> {
        let rest = input.strip_prefix("sip:").unwrap_or(input);
        let (user, host_port) = rest.split_once('@')?;
        // rsip refuses some users that RFC 3261 allows (`930X.6`): only those it reads.
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
        if user.is_empty() || !user.bytes().all(unreserved) {
            return None;
        }
        let (host, port) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        // Only the canonical spelling of an address: rsip would write it back the same.
        let ip: std::net::Ipv4Addr = host.parse().ok()?;
        let mut canonical = Vec::with_capacity(15);
        super::push_ip(&mut canonical, ip.into());
        if canonical != host.as_bytes() {
            return None;
        }
        let port = match port {
            None => None,
            Some(text) => {
                let port: u16 = text.parse().ok().filter(|&p| p != 0)?;
                if itoa::Buffer::new().format(port) != text {
                    return None;
                }
                Some(port)
            }
        };
        Some(Target {
            text: with_scheme(false, rest),
            user: user.to_string(),
            host: Host::V4(ip),
            port,
            transport: None,
            sips: false,
        })
    }

    /// `[sip:]USER@[V6][:PORT][;params]`, read here: rsip cannot parse bracketed hosts.
    /// The text is kept as given (with the scheme added), as for the plain form.
    fn parse_ipv6(input: &str, sips: bool, without_scheme: &str) -> Result<Target, TargetError> {
        let invalid = || TargetError::Invalid(input.into());
        let (user, rest) = without_scheme.split_once('@').ok_or(invalid())?;
        if user.is_empty() {
            return Err(TargetError::NoUser(input.into()));
        }
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c);
        if !user.chars().all(unreserved) {
            return Err(invalid());
        }
        let end = rest.find(']').ok_or(invalid())?;
        let host = Host::parse(&rest[..=end]).ok_or(invalid())?;
        let after = &rest[end + 1..];
        let (port, params) = match after.split_once(';') {
            Some((port, params)) => (port, Some(params)),
            None => (after, None),
        };
        let port = match port {
            "" => None,
            port => Some(
                port.strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|&p| p != 0)
                    .ok_or(invalid())?,
            ),
        };
        if params.is_some_and(|p| p.contains(char::is_whitespace)) {
            return Err(invalid());
        }
        let text = with_scheme(sips, without_scheme);
        let transport = transport_of(input, &text, sips)?;
        Ok(Target {
            text,
            user: user.to_string(),
            host,
            port,
            transport,
            sips,
        })
    }

    /// Any other target, through rsip.
    fn parse_with_rsip(input: &str) -> Result<Target, TargetError> {
        if input.is_empty() {
            return Err(TargetError::Empty);
        }
        let lower = input.to_ascii_lowercase();
        let sips = lower.starts_with("sips:");
        let without_scheme = match (sips, lower.starts_with("sip:")) {
            (true, _) => &input[5..],
            (false, true) => &input[4..],
            (false, false) => input,
        };
        if let Some((userinfo, _)) = without_scheme.rsplit_once('@') {
            if userinfo.contains(':') {
                return Err(TargetError::Password);
            }
        }
        if input.contains('[') {
            return Target::parse_ipv6(input, sips, without_scheme);
        }
        if input.contains(char::is_whitespace) {
            return Err(TargetError::Invalid(input.into()));
        }
        // rsip reads the parts; a sips: URI has the same parts as its sip: twin.
        let uri = rsip::Uri::try_from(format!("sip:{without_scheme}").as_str())
            .map_err(|_| TargetError::Invalid(input.into()))?;
        if uri.user().is_none_or(str::is_empty) {
            return Err(TargetError::NoUser(input.into()));
        }
        let host = Host::parse(&uri.host().to_string())
            .ok_or_else(|| TargetError::Invalid(input.into()))?;
        let port = uri.port().map(|p| *p.value());
        let text = with_scheme(sips, without_scheme);
        let transport = transport_of(input, &text, sips)?;
        // Only the parts are kept, not rsip's Uri: a campaign holds one Target per target in
        // flight, and the URI's own allocations would double its size. The text is the
        // user's, as rsip read it (its Display rewrites `transport=tcp` as `transport=TCP`):
        // the Request-URI, the To header and the output show the target as given.
        Ok(Target {
            text,
            user: uri.user().unwrap_or_default().to_string(),
            host,
            port,
            transport,
            sips,
        })
    }

    /// The Request-URI exactly as it goes on the wire (and into the digest `uri`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The user part: the line's SIP user ID.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host name or address.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port; when none is given, 5061 over TLS, else 5060.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(self.transport.map_or(DEFAULT_PORT, Transport::default_port))
    }

    /// The port as given, `None` when the target names none (RFC 3263 then looks up SRV).
    pub fn explicit_port(&self) -> Option<u16> {
        self.port
    }

    /// Where the target's requests go when no proxy is given.
    pub fn host_port(&self) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port: self.port,
        }
    }

    /// The `transport` URI parameter, if given; TLS for a `sips:` URI.
    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }

    /// Whether this is a `sips:` URI: TLS to the phone, and a `sips:` Contact (RFC 3261
    /// section 8.1.1.8).
    pub fn is_sips(&self) -> bool {
        self.sips
    }
}

/// The target's text with its scheme.
fn with_scheme(sips: bool, without_scheme: &str) -> String {
    let scheme = if sips { "sips:" } else { "sip:" };
    // Built by hand rather than by format!: every row of a campaign has a target.
    let mut text = String::with_capacity(scheme.len() + without_scheme.len());
    text.push_str(scheme);
    text.push_str(without_scheme);
    text
}

/// The transport a target asks for: its `transport` parameter, and TLS for any `sips:`
/// URI (whose `transport=tcp` means TLS over TCP, RFC 3261 section 19.1; UDP cannot carry
/// it).
fn transport_of(input: &str, text: &str, sips: bool) -> Result<Option<Transport>, TargetError> {
    let given = match transport_param(text) {
        None => None,
        Some(t) => Some(
            t.parse::<Transport>()
                .map_err(|_| TargetError::Transport(input.into(), t.to_string()))?,
        ),
    };
    match (sips, given) {
        (false, given) => Ok(given),
        (true, Some(Transport::Udp)) => Err(TargetError::SipsOverUdp(input.into())),
        (true, _) => Ok(Some(Transport::Tls)),
    }
}

/// Reads the `transport` parameter from the text, because rsip maps unknown values (such as
/// `sctp`) to its own variants and would hide the user's mistake.
fn transport_param(uri: &str) -> Option<&str> {
    uri.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("transport")
            .then(|| value.split(['?', '>']).next().unwrap_or(value).trim())
    })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_form_reads_as_rsip_reads_it() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"0123456789abcXYZ-_";
        let mut plain = 0;
        for _ in 0..5000 {
            let mut user: String = (0..rng.gen_range(1..8))
                .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
                .collect();
            // Now and then a character that RFC 3261 allows and rsip may refuse.
            if rng.gen_ratio(1, 5) {
                user.insert(0, char::from(b".!~*+%"[rng.gen_range(0..6)]));
            }
            let ip: [u8; 4] = rng.gen();
            let host = std::net::Ipv4Addr::from(ip).to_string();
            let port = match rng.gen_range(0..4) {
                0 => String::new(),
                1 => format!(":{}", rng.gen_range(1..=65535u32)),
                2 => format!(":0{}", rng.gen_range(1..=9u32)),
                _ => format!(":{}", rng.gen_range(0..=70000u32)),
            };
            let scheme = if rng.gen() { "sip:" } else { "" };
            let input = format!("{scheme}{user}@{host}{port}");
            if let Some(fast) = Target::parse_plain(&input) {
                plain += 1;
                assert_eq!(Ok(fast), Target::parse_with_rsip(&input), "{input}");
            }
        }
        assert!(
            plain > 2500,
            "the plain form was taken {plain} times in 5000"
        );
        for other in [
            "SIP:1@10.0.0.1",
            "1@010.0.0.1",
            "1@h",
            "1:pw@10.0.0.1",
            "1@10.0.0.1;transport=tcp",
            "1@10.0.0.1:+5",
            "@10.0.0.1",
        ] {
            assert_eq!(Target::parse_plain(other), None, "{other}");
        }
    }

    #[test]
    fn full_uri_with_port_and_transport() {
        let t = Target::parse("sip:159@192.168.0.10:5061;transport=tcp").unwrap();
        assert_eq!(t.user(), "159");
        assert_eq!(t.host(), "192.168.0.10");
        assert_eq!(t.port(), 5061);
        assert_eq!(t.transport(), Some(Transport::Tcp));
        assert_eq!(t.as_str(), "sip:159@192.168.0.10:5061;transport=tcp");
        let t = Target::parse("SIP:159@phone.example.com;transport=tcp;user=phone").unwrap();
        assert_eq!(
            t.as_str(),
            "sip:159@phone.example.com;transport=tcp;user=phone"
        );
        assert!(rsip::Uri::try_from(t.as_str()).is_ok());
    }

    #[test]
    fn user_at_host_gets_scheme_and_default_port() {
        let t = Target::parse("159@10.0.0.7").unwrap();
        assert_eq!(t.as_str(), "sip:159@10.0.0.7");
        assert_eq!(t.port(), 5060);
        assert_eq!(t.transport(), None);
        let t = Target::parse("  SIP:201@phone.example.com:5070 ").unwrap();
        assert_eq!(t.user(), "201");
        assert_eq!(t.host(), "phone.example.com");
        assert_eq!(t.port(), 5070);
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        assert_eq!(Target::parse(""), Err(TargetError::Empty));
        assert!(matches!(
            Target::parse("sips:1@h;transport=udp"),
            Err(TargetError::SipsOverUdp(_))
        ));
        assert!(matches!(
            Target::parse("1@h:99999"),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            Target::parse("1@h x"),
            Err(TargetError::Invalid(_))
        ));
        assert!(matches!(
            Target::parse("1@h;transport=sctp"),
            Err(TargetError::Transport(_, _))
        ));
        let msg = Target::parse("1@h;transport=sctp").unwrap_err().to_string();
        assert!(msg.contains("udp, tcp or tls"), "{msg}");
    }

    #[test]
    fn tls_targets_default_to_port_5061_and_sips_is_tls_only() {
        let t = Target::parse("sip:159@10.0.0.7;transport=tls").unwrap();
        assert_eq!(
            (t.transport(), t.port(), t.is_sips()),
            (Some(Transport::Tls), 5061, false)
        );
        assert_eq!(t.explicit_port(), None);
        let t = Target::parse("SIPS:159@pbx.example.com").unwrap();
        assert_eq!(t.as_str(), "sips:159@pbx.example.com");
        assert_eq!(
            (t.transport(), t.port(), t.is_sips()),
            (Some(Transport::Tls), 5061, true)
        );
        assert_eq!(t.host(), "pbx.example.com");
        // transport=tcp on a sips: URI is TLS over TCP (RFC 3261 section 19.1).
        let t = Target::parse("sips:159@10.0.0.7:5071;transport=tcp").unwrap();
        assert_eq!((t.transport(), t.port()), (Some(Transport::Tls), 5071));
        let t = Target::parse("sips:159@[2001:db8::7]").unwrap();
        assert_eq!(t.as_str(), "sips:159@[2001:db8::7]");
        assert_eq!((t.transport(), t.port()), (Some(Transport::Tls), 5061));
        for udp in [
            "sips:159@10.0.0.7;transport=udp",
            "sips:159@[::1];transport=UDP",
        ] {
            let refused = Target::parse(udp).unwrap_err();
            assert_eq!(refused, TargetError::SipsOverUdp(udp.into()));
            assert!(refused.to_string().contains("TLS only"), "{refused}");
        }
        assert_eq!(
            Target::parse("sips:1:pw@10.0.0.7"),
            Err(TargetError::Password)
        );
        // A plain sip: target keeps UDP's default port.
        assert_eq!(Target::parse("sip:159@10.0.0.7").unwrap().port(), 5060);
    }

    #[test]
    fn a_password_in_the_uri_is_refused_without_repeating_it() {
        for input in [
            "sip:159:s3cret@10.0.0.1",
            "159:s3cret@10.0.0.1:5060",
            "SIP:1:x@h",
        ] {
            let err = Target::parse(input).unwrap_err();
            assert_eq!(err, TargetError::Password);
            assert!(!err.to_string().contains("s3cret"));
        }
        assert!(Target::parse("sip:159@10.0.0.1:5060").is_ok());
    }

    #[test]
    fn host_port_reads_names_addresses_and_bracketed_ipv6() {
        let hp = |t: &str| t.parse::<HostPort>();
        let sbc = hp("sbc.example.com").unwrap();
        assert_eq!(
            (sbc.host.clone(), sbc.port),
            (Host::Name("sbc.example.com".into()), None)
        );
        assert_eq!(sbc.port_or_default(), 5060);
        let v4 = hp("sip:10.0.0.1:5070").unwrap();
        assert_eq!(
            (v4.host.ip(), v4.port),
            (Some("10.0.0.1".parse().unwrap()), Some(5070))
        );
        let v6 = hp("[2001:db8::7]:5061").unwrap();
        assert_eq!(v6.host, Host::V6("2001:db8::7".parse().unwrap()));
        assert_eq!(
            (v6.port, v6.to_string()),
            (Some(5061), "[2001:db8::7]:5061".into())
        );
        assert_eq!(hp("[::1]").unwrap().port, None);
        assert!(matches!(
            hp("127.0.0.1:notaport"),
            Err(HostPortError::Port(_))
        ));
        assert!(matches!(hp("h:0"), Err(HostPortError::Port(_))));
        for bad in ["", ":5060", "a b", "[::1]x", "[nope]:5060", "h@x"] {
            assert!(matches!(hp(bad), Err(HostPortError::Host(_))), "{bad}");
        }
        let target = Target::parse("159@10.0.0.7").unwrap();
        assert_eq!((target.explicit_port(), target.port()), (None, 5060));
        assert_eq!(target.host_port().to_string(), "10.0.0.7");
    }

    #[test]
    fn a_target_without_a_user_part_is_refused_with_the_right_form() {
        for bare in ["127.0.0.1:5599", "foo", "159", "sip:10.0.0.1", "@10.0.0.1"] {
            let refused = Target::parse(bare).unwrap_err();
            assert!(
                matches!(refused, TargetError::NoUser(_) | TargetError::Invalid(_)),
                "{bare}: {refused}"
            );
            assert!(
                refused.to_string().contains("USER@HOST"),
                "{bare}: {refused}"
            );
        }
    }

    #[test]
    fn rsip_cannot_parse_bracketed_ipv6_which_is_why_we_read_it_ourselves() {
        assert!(rsip::Uri::try_from("sip:159@[::1]:5060").is_err());
        let t = Target::parse("159@[2001:db8::7]:5061;transport=tcp").unwrap();
        assert_eq!(t.as_str(), "sip:159@[2001:db8::7]:5061;transport=tcp");
        assert_eq!(t.user(), "159");
        assert_eq!(t.host(), &Host::V6("2001:db8::7".parse().unwrap()));
        assert_eq!(
            (t.explicit_port(), t.transport()),
            (Some(5061), Some(Transport::Tcp))
        );
        let t = Target::parse("sip:159@[::1]").unwrap();
        assert_eq!(
            (t.port(), t.host_port().to_string()),
            (5060, "[::1]".to_string())
        );
        for bad in [
            "159@[::1",
            "159@[nope]",
            "159@[::1]:x",
            "159@[::1]5060",
            "@[::1]",
            "159@[::1]:0",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Target::parse("159:pw@[::1]"), Err(TargetError::Password));
    }
}
