//! The MPP web interface's actions (sans-IO): `GET /admin/resync?URL` (fetch and apply
//! that profile; without a URL, the phone's Profile_Rule), `GET /admin/upgrade?URL`
//! (install that firmware load) and `GET /admin/reboot`. As the MPP provisioning guide
//! writes them, the URL is the whole query, as is: not a form field, not percent-encoded.
//!
//! The guide's browser form appends `&xuser=admin&xpassword=...` to the query. That puts
//! the password in the phone's, the proxies' and the shell's history, so a URL carrying
//! them is refused: the admin credentials go by HTTP authentication instead.

use crate::provision::rule::Url;
use crate::text::printable;

/// The MPP phones' admin user: the web actions' user when none is given.
pub const DEFAULT_USER: &str = "admin";

/// Fetch and apply a profile.
pub const RESYNC: &str = "/admin/resync";
/// Install a firmware load; the phone reboots at the end.
pub const UPGRADE: &str = "/admin/upgrade";
/// Restart the phone.
pub const REBOOT: &str = "/admin/reboot";

/// Why a profile or firmware URL cannot be sent; nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminUrlError {
    /// Not `SCHEME://SERVER[:PORT]/PATH` with a scheme the phone fetches.
    #[error("`{0}`: the URL must be tftp://, http:// or https://SERVER[:PORT]/PATH")]
    Form(String),
    /// A character that cannot stand in a request's query as is.
    #[error("`{url}`: {why}")]
    Character {
        /// The URL, escaped for a terminal.
        url: String,
        /// Which character, and what to do.
        why: String,
    },
    /// The guide's `&xuser=`/`&xpassword=`, or `user:password@` (the URL is not shown: it
    /// holds a password).
    #[error(
        "the URL carries credentials (user@, xuser or xpassword): a password in a URL is \
         logged by the phone, proxies and shells; give it with --password-file or \
         SIPNOTIFY_PASSWORD (and --user) instead"
    )]
    Credentials,
}

/// Checks a URL to hand to `/admin/resync` or `/admin/upgrade`: the guide's schemes
/// (tftp, http, https), a server and a path, and only characters a query holds as is.
pub fn check_url(url: &str) -> Result<(), AdminUrlError> {
    if carries_credentials(url) {
        return Err(AdminUrlError::Credentials);
    }
    let shown = || printable(url, false).into_owned();
    // Outside a query's characters (RFC 3986): white space and controls end or break the
    // request line, `#` would end the query, and the rest are refused by servers.
    if let Some(c) = url
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "#\"<>\\^`{|}".contains(c))
    {
        let why = if c.is_ascii_graphic() {
            format!(
                "`{c}` cannot stand in the query as is: percent-encode it (%{:02X})",
                c as u32
            )
        } else {
            "it holds white space, a control or a non-ASCII character: percent-encode it".into()
        };
        return Err(AdminUrlError::Character { url: shown(), why });
    }
    let parsed = Url::parse(url).map_err(|_| AdminUrlError::Form(shown()))?;
    if !url.contains("://") || parsed.host.is_empty() {
        return Err(AdminUrlError::Form(shown()));
    }
    Ok(())
}

/// Whether the URL carries credentials: `user:password@` in its authority, or the guide's
/// `xuser=`/`xpassword=`, percent-encoded or not.
pub(crate) fn carries_credentials(url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let decoded: String = percent_encoding::percent_decode_str(url)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    authority.contains('@') || decoded.contains("xpassword=") || decoded.contains("xuser=")
}

/// The request target: `path`, then `?` and the URL as is when there is one.
pub fn target(path: &str, url: Option<&str>) -> String {
    match url {
        Some(url) => format!("{path}?{url}"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_the_query_as_the_guide_writes_it() {
        assert_eq!(
            target(
                UPGRADE,
                Some("http://10.0.0.1:8080/fw/sip88xx.12-0-1MPP-1.loads")
            ),
            "/admin/upgrade?http://10.0.0.1:8080/fw/sip88xx.12-0-1MPP-1.loads"
        );
        assert_eq!(
            target(RESYNC, Some("tftp://192.168.15.100/my_config.xml")),
            "/admin/resync?tftp://192.168.15.100/my_config.xml"
        );
        assert_eq!(target(RESYNC, None), "/admin/resync");
        assert_eq!(target(REBOOT, None), "/admin/reboot");
        // The target is a valid request target for the HTTP stack.
        let t = target(RESYNC, Some("https://p.example/cfg/$MA.xml?a=1&b=%20"));
        assert_eq!(
            t.parse::<http::Uri>().unwrap().query(),
            Some("https://p.example/cfg/$MA.xml?a=1&b=%20")
        );
    }

    #[test]
    fn urls_the_phone_fetches_are_accepted_and_others_refused() {
        for ok in [
            "tftp://192.168.15.100/my_config.xml",
            "http://10.0.0.1/cfg/$MA.xml",
            "HTTPS://p.example:8443/fw/sip78xx.11-3-1MPP-678.loads",
            "http://[2001:db8::1]:8080/cfg.xml?mac=$MA&x=1",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for form in [
            "ftp://h/x",
            "http:///x",
            "http://h",
            "10.0.0.1/cfg.xml",
            "http://h:port/x",
        ] {
            assert!(
                matches!(check_url(form), Err(AdminUrlError::Form(_))),
                "{form}"
            );
        }
        for bad in [
            "http://h/a b",
            "http://h/a#b",
            "http://h/é",
            "http://h/a\r\n",
            "http://h/{x}",
        ] {
            assert!(
                matches!(check_url(bad), Err(AdminUrlError::Character { .. })),
                "{bad:?}"
            );
        }
        let e = check_url("http://h/a#b").unwrap_err().to_string();
        assert!(e.ends_with("percent-encode it (%23)"), "{e}");
        // The guide's credentials in the URL: refused, and never shown.
        for bad in [
            "tftp://h/c.xml&xuser=admin&xpassword=s3cret",
            "http://h/c.xml&%78password=s3cret",
            "http://admin:s3cret@h:8080/fw.loads",
            "http://admin:s3cret@h/fw.loads",
        ] {
            let e = check_url(bad).unwrap_err();
            assert_eq!(e, AdminUrlError::Credentials, "{bad}");
            assert!(!e.to_string().contains("s3cret"));
        }
        // IPv6 servers, with and without a port.
        for good in [
            "http://[2001:db8::1]/cfg.xml",
            "https://[::1]:8443/fw.loads",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
    }
}
