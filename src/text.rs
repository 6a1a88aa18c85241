//! Text made safe to show: what a phone or a file sent may hold escape sequences that
//! would retitle or repaint a terminal.

use std::borrow::Cow;

/// U+FFFE and U+FFFF: valid in a Rust string, but no XML document can carry them (XML 1.0
/// §2.2), so text bound for an XML object or a phone's URL must not hold them.
pub(crate) fn outside_xml(c: char) -> bool {
    matches!(c, '\u{fffe}' | '\u{ffff}')
}

/// Text from the network or a file made safe for a terminal: a phone's reason phrase or message could
/// carry escape sequences. Control characters become `\xNN`; line ends are kept in
/// `multiline` text.
pub fn printable(text: &str, multiline: bool) -> Cow<'_, str> {
    let keep = |c: char| !c.is_control() || (multiline && matches!(c, '\r' | '\n' | '\t'));
    if text.chars().all(keep) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if keep(c) {
                c.to_string()
            } else {
                format!("\\x{:02x}", u32::from(c))
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_from_the_network_never_reach_the_terminal() {
        let hostile = "Bad\x1b]0;pwned\x07 Event\r\nX: y";
        assert_eq!(
            printable(hostile, false),
            "Bad\\x1b]0;pwned\\x07 Event\\x0d\\x0aX: y"
        );
        assert_eq!(
            printable(hostile, true),
            "Bad\\x1b]0;pwned\\x07 Event\r\nX: y"
        );
        assert!(matches!(printable("200 OK", false), Cow::Borrowed(_)));
    }
}
