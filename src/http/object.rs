//! The XML objects pushed to a phone, and the form that carries them (sans-IO).
//!
//! `POST /CGI/Execute` takes an `application/x-www-form-urlencoded` body whose field `XML`
//! (case-sensitive) holds one object: a `CiscoIPPhoneExecute` with up to 3 `ExecuteItem`s,
//! a `setBackground`, or any other CiscoIPPhone object. Values are XML-escaped in the
//! object, and the object is URL-encoded in the form.

use crate::event::{check_http_url, UrlProblem};
use crate::text::outside_xml;
use quick_xml::escape::escape;

/// The most `ExecuteItem`s one `CiscoIPPhoneExecute` may hold.
pub const MAX_ITEMS: usize = 3;

/// The classic phones' limit on a pushed object, in bytes (larger content goes by URL).
pub const DEFAULT_MAX_OBJECT: usize = 512;

/// The largest `--max-object` accepted: newer firmware takes about 40 KB.
pub const MAX_OBJECT_LIMIT: usize = 64 * 1024;

/// The URI schemes of `ExecuteItem`s that phones know (Cisco IP Phone Services SDK).
pub const URI_SCHEMES: &[&str] = &[
    "http",
    "https",
    "Dial",
    "EditDial",
    "Key",
    "SoftKey",
    "Init",
    "Play",
    "Display",
    "Vibrate",
    "RTPRx",
    "RTPTx",
    "RTPMRx",
    "RTPMTx",
    "QueryStringParam",
    "Notify",
    "App",
];

/// Why an object cannot be pushed; nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// No URI, or more than [`MAX_ITEMS`].
    #[error("an Execute object holds 1 to 3 items; {0} given")]
    ItemCount(usize),
    /// A URI whose scheme no phone knows.
    #[error("`{uri}` is not a phone URI: it must start with one of {}", URI_SCHEMES.iter().map(|s| format!("{s}:")).collect::<Vec<_>>().join(" "))]
    UnknownUri {
        /// The URI, escaped for a terminal.
        uri: String,
    },
    /// A URI with nothing after its scheme, or control characters.
    #[error("`{uri}`: {why}")]
    BadUri {
        /// The URI, escaped for a terminal.
        uri: String,
        /// What is wrong.
        why: String,
    },
    /// Priority other than 0, 1, 2.
    #[error("priority {0}: 0 (now), 1 (when idle) or 2 (only if idle)")]
    Priority(u8),
    /// Not well-formed XML.
    #[error("the object is not well-formed XML: {0}")]
    Malformed(String),
    /// Larger than the phone takes.
    #[error("the object is {size} bytes, over the limit of {limit} (--max-object); push a CiscoIPPhoneExecute whose URL the phone fetches instead")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// One `ExecuteItem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteItem {
    /// The URI the phone executes (`Dial:1234`, `Key:Services`, `http://...`).
    pub uri: String,
    /// 0 now, 1 when idle, 2 only if idle.
    pub priority: u8,
}

/// Checks one Execute URI: a known scheme, something after it, no control characters.
pub fn check_uri(uri: &str) -> Result<(), ObjectError> {
    let shown = || crate::text::printable(uri, false).into_owned();
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(ObjectError::UnknownUri { uri: shown() });
    };
    if !URI_SCHEMES.contains(&scheme) {
        return Err(ObjectError::UnknownUri { uri: shown() });
    }
    if scheme.starts_with("http") {
        return check_http_url(uri).map_err(|e| ObjectError::BadUri {
            uri: shown(),
            why: url_problem(e).into(),
        });
    }
    if rest.is_empty() || uri.chars().any(|c| c.is_control() || outside_xml(c)) {
        return Err(ObjectError::BadUri {
            uri: shown(),
            why: "nothing after the scheme, or a control character or U+FFFE/U+FFFF".into(),
        });
    }
    Ok(())
}

/// What is wrong with a URL, in words.
fn url_problem(problem: UrlProblem) -> &'static str {
    match problem {
        UrlProblem::NotHttp => "not an http:// or https:// URL with a host",
        UrlProblem::TrailingWhitespace => "ends with white space",
        UrlProblem::Whitespace => {
            "holds white space, a control character, a quote or U+FFFE/U+FFFF"
        }
    }
}

/// A `CiscoIPPhoneExecute` of 1 to 3 items, all with `priority`.
pub fn execute(uris: &[String], priority: u8) -> Result<String, ObjectError> {
    if uris.is_empty() || uris.len() > MAX_ITEMS {
        return Err(ObjectError::ItemCount(uris.len()));
    }
    if priority > 2 {
        return Err(ObjectError::Priority(priority));
    }
    let mut xml = String::from("<CiscoIPPhoneExecute>");
    for uri in uris {
        check_uri(uri)?;
        xml += &format!(
            "<ExecuteItem Priority=\"{priority}\" URL=\"{}\"/>",
            escape(uri.as_str())
        );
    }
    xml += "</CiscoIPPhoneExecute>";
    Ok(xml)
}

/// A `setBackground` object: the phone downloads `image` and its thumbnail `icon`.
pub fn background(image: &str, icon: &str) -> Result<String, ObjectError> {
    for url in [image, icon] {
        check_http_url(url).map_err(|e| ObjectError::BadUri {
            uri: crate::text::printable(url, false).into_owned(),
            why: url_problem(e).into(),
        })?;
    }
    Ok(format!(
        "<setBackground><background><image>{}</image><icon>{}</icon></background></setBackground>",
        escape(image),
        escape(icon)
    ))
}

/// Any object given as text, checked to be well-formed XML with one root element.
pub fn checked(xml: &str) -> Result<String, ObjectError> {
    roxmltree::Document::parse(xml).map_err(|e| ObjectError::Malformed(e.to_string()))?;
    Ok(xml.to_string())
}

/// Refuses an object over `limit` bytes, saying its size.
pub fn check_size(xml: &str, limit: usize) -> Result<(), ObjectError> {
    if xml.len() > limit {
        return Err(ObjectError::TooLarge {
            size: xml.len(),
            limit,
        });
    }
    Ok(())
}

/// The body of `POST /CGI/Execute`: `XML=` and the object, URL-encoded.
pub fn form_body(xml: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("XML", xml)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_objects_escape_their_uris() {
        let xml = execute(&["Dial:1234".into(), "http://h/a?b=1&c=\"2\"".into()], 1);
        assert!(xml.is_err(), "a quote in a URL is refused by the URL check");
        let xml = execute(&["Dial:1234".into(), "http://h/a?b=1&c=2".into()], 1).unwrap();
        assert_eq!(
            xml,
            "<CiscoIPPhoneExecute><ExecuteItem Priority=\"1\" URL=\"Dial:1234\"/>\
             <ExecuteItem Priority=\"1\" URL=\"http://h/a?b=1&amp;c=2\"/></CiscoIPPhoneExecute>"
        );
        checked(&xml).unwrap();
    }

    #[test]
    fn one_to_three_known_uris() {
        let uris = |n: usize| vec!["Key:Services".to_string(); n];
        assert_eq!(execute(&uris(0), 0), Err(ObjectError::ItemCount(0)));
        assert!(execute(&uris(3), 0).is_ok());
        assert_eq!(execute(&uris(4), 0), Err(ObjectError::ItemCount(4)));
        assert_eq!(execute(&uris(1), 3), Err(ObjectError::Priority(3)));
        for bad in ["ftp://h/x", "javascript:alert(1)", "Services", "dial:1"] {
            let e = execute(&[bad.into()], 0).unwrap_err();
            assert!(matches!(e, ObjectError::UnknownUri { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("Dial:"), "{e}");
        }
        assert!(matches!(
            execute(&["Dial:".into()], 0),
            Err(ObjectError::BadUri { .. })
        ));
        // What no XML document can carry is refused rather than built into a malformed
        // object.
        for bad in ["Key:A\nB", "Dial:1\u{fffe}", "http://h/\u{ffff}.xml"] {
            assert!(
                matches!(execute(&[bad.into()], 0), Err(ObjectError::BadUri { .. })),
                "{bad:?}"
            );
        }
        assert!(background("http://h/\u{fffe}.png", "http://h/tn.png").is_err());
    }

    #[test]
    fn background_and_size() {
        let xml = background("http://h/bg.png", "http://h/tn.png").unwrap();
        assert_eq!(
            xml,
            "<setBackground><background><image>http://h/bg.png</image>\
             <icon>http://h/tn.png</icon></background></setBackground>"
        );
        assert!(background("tftp://h/bg.png", "http://h/tn.png").is_err());
        assert_eq!(
            check_size(&"x".repeat(513), 512),
            Err(ObjectError::TooLarge {
                size: 513,
                limit: 512
            })
        );
        assert!(check_size(&"x".repeat(512), 512).is_ok());
    }

    #[test]
    fn malformed_xml_is_refused() {
        for bad in ["<a>", "<a></b>", "<a/><b/>", "text", "<a x=1/>", ""] {
            assert!(
                matches!(checked(bad), Err(ObjectError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(checked(
            "<?xml version=\"1.0\"?><CiscoIPPhoneText><Text>a &amp; b</Text></CiscoIPPhoneText>"
        )
        .is_ok());
    }

    /// The documented form: field `XML`, the object URL-encoded (`application/x-www-form-urlencoded`).
    #[test]
    fn the_form_is_the_documented_one() {
        assert_eq!(
            form_body("<a x=\"1&amp;2\">b c+d/é</a>"),
            "XML=%3Ca+x%3D%221%26amp%3B2%22%3Eb+c%2Bd%2F%C3%A9%3C%2Fa%3E"
        );
        let decoded: Vec<(String, String)> =
            form_urlencoded::parse(form_body("<a>+ &</a>").as_bytes())
                .into_owned()
                .collect();
        assert_eq!(decoded, vec![("XML".into(), "<a>+ &</a>".into())]);
    }
}
