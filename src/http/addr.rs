//! Where a phone's web server is: `HOST[:PORT]` or `http(s)://HOST[:PORT]`, IPv6 in brackets.

use std::net::IpAddr;

/// The scheme of a phone's web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP, port 80 by default.
    Http,
    /// HTTPS, port 443 by default.
    Https,
}

/// A phone's web server, as reports name it: `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneAddr {
    scheme: Scheme,
    /// The host as written in a URL: a name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    port: u16,
    /// `scheme://host:port`, the target's name in reports and journal keys.
    text: String,
}

/// Why a phone address cannot be used; nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing given.
    #[error("the phone address is empty")]
    Empty,
    /// Another scheme than http or https.
    #[error("`{0}`: a phone is HOST[:PORT] or http(s)://HOST[:PORT]")]
    Scheme(String),
    /// A user or password in the address: they belong in --user and the password options.
    #[error("the phone address must not carry a user or password: use --user and --password-file")]
    UserInfo,
    /// A path, query or fragment: the commands choose the path.
    #[error("`{0}`: give the phone as HOST[:PORT], without a path (the command chooses it)")]
    Path(String),
    /// Not a host and port.
    #[error("`{0}` is not HOST[:PORT] (IPv6 in brackets: [2001:db8::7]:80)")]
    Invalid(String),
}

impl PhoneAddr {
    /// Reads `HOST`, `HOST:PORT`, `http://HOST[:PORT][/]` or `https://...`.
    pub fn parse(text: &str) -> Result<PhoneAddr, AddrError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddrError::Empty);
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
            Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
            Some(_) => {
                return Err(AddrError::Scheme(
                    crate::text::printable(text, false).into(),
                ))
            }
            None => (Scheme::Http, text),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(AddrError::UserInfo);
        }
        if authority.contains(['/', '?', '#']) {
            return Err(AddrError::Path(crate::text::printable(text, false).into()));
        }
        let invalid = || AddrError::Invalid(crate::text::printable(text, false).into());
        let parsed: http::uri::Authority = authority.parse().map_err(|_| invalid())?;
        let host = parsed.host();
        if host.is_empty() {
            return Err(invalid());
        }
        // A bare IPv6 address (2001:db8::7) is read by `Authority` as host and port; it
        // must be in brackets.
        if !host.starts_with('[') && host.contains(':') {
            return Err(invalid());
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            inner.parse::<std::net::Ipv6Addr>().map_err(|_| invalid())?;
        }
        // After the host: nothing, or `:` and a port from 1 to 65535.
        let port = match &parsed.as_str()[host.len()..] {
            "" => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            suffix => suffix
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(invalid)?,
        };
        let host = host.to_ascii_lowercase();
        let name = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        Ok(PhoneAddr {
            text: format!("{name}://{host}:{port}"),
            scheme,
            host,
            port,
        })
    }

    /// `scheme://host:port`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host as in a URL (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        bare.parse().ok()
    }

    /// `host:port`, for the Host header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A file name for this phone (`127.0.0.1_80`): letters, digits, dots and dashes only.
    pub fn file_stem(&self) -> String {
        format!("{}_{}", self.host, self.port)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

impl std::fmt::Display for PhoneAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_schemes() {
        let ok = |t: &str| PhoneAddr::parse(t).unwrap().as_str().to_string();
        assert_eq!(ok("10.0.0.7"), "http://10.0.0.7:80");
        assert_eq!(ok("10.0.0.7:8080"), "http://10.0.0.7:8080");
        assert_eq!(ok("HTTP://Phone.Example:81/"), "http://phone.example:81");
        assert_eq!(ok("https://10.0.0.7"), "https://10.0.0.7:443");
        assert_eq!(ok("[2001:db8::7]:8080"), "http://[2001:db8::7]:8080");
        assert_eq!(ok("http://[::1]"), "http://[::1]:80");
        let v6 = PhoneAddr::parse("[::1]:81").unwrap();
        assert_eq!((v6.ip(), v6.port()), (Some("::1".parse().unwrap()), 81));
        assert_eq!(v6.file_stem(), "___1__81");
        assert_eq!(
            PhoneAddr::parse("10.0.0.7:80").unwrap().file_stem(),
            "10.0.0.7_80"
        );
    }

    #[test]
    fn what_is_refused() {
        let err = |t: &str| PhoneAddr::parse(t).unwrap_err();
        assert_eq!(err(""), AddrError::Empty);
        assert!(matches!(err("ftp://h"), AddrError::Scheme(_)));
        assert_eq!(err("http://admin:pw@h"), AddrError::UserInfo);
        assert!(!err("http://admin:pw@h").to_string().contains("pw@"));
        assert!(matches!(err("h/CGI/Execute"), AddrError::Path(_)));
        assert!(matches!(err("2001:db8::7"), AddrError::Invalid(_)));
        assert!(matches!(err("h:0"), AddrError::Invalid(_)));
        assert!(matches!(err("h:99999"), AddrError::Invalid(_)));
        assert!(matches!(err("h:"), AddrError::Invalid(_)));
        assert!(matches!(err("[zz]:80"), AddrError::Invalid(_)));
        assert!(matches!(err("a b"), AddrError::Invalid(_)));
    }
}
