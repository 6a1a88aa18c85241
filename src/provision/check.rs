//! Open profile XML (`<flat-profile>`), read as the phone reads it and checked as an
//! administrator wants it checked before thousands of phones fetch it.
//!
//! The guide's rules: UTF-8 only; a `<flat-profile>` root holding one element per
//! parameter; tags are case-sensitive; `ua` is `na`, `rw` or `ro`; a value's leading and
//! trailing white space is removed and its new lines become spaces; when a parameter
//! appears twice the last one wins; unrecognised parameters are ignored. Macros are
//! expanded only in Profile_Rule*, Upgrade_Rule, Resync_Trigger_*, Log_*_Msg and GPP_*.
//!
//! [`check`] returns every finding with its line; [`Checked::params`] is what a phone
//! applies. A DTD is refused (no profile needs one, and entities are a way to blow up a
//! parser), and the tree is bounded in nodes.

use super::rule::{self, Rule};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The phone cannot use the file (or this parameter) as intended.
    Error,
    /// Legal, but probably not what was meant.
    Warning,
}

/// One finding, at a line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// From 1.
    pub line: u32,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// `ua`: what the phone's user may do with a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ua {
    /// No access.
    Na,
    /// Read and write.
    Rw,
    /// Read only.
    Ro,
}

/// One parameter as the phone applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The element name.
    pub name: String,
    /// The value, trimmed, new lines turned into spaces.
    pub value: String,
    /// The `ua` attribute.
    pub ua: Option<Ua>,
    /// Where it is.
    pub line: u32,
}

/// The findings and the parameters of a profile.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// In file order.
    pub findings: Vec<Finding>,
    /// In file order; duplicates kept (the phone applies them in order, so the last wins).
    pub params: Vec<Param>,
}

impl Checked {
    /// The first error, if any.
    pub fn first_error(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.severity == Severity::Error)
    }
}

/// More nodes than any real profile (a few thousand parameters).
const NODES_LIMIT: u32 = 1_000_000;

/// Whether the phone macro-expands this parameter's value.
fn expanded(name: &str) -> bool {
    name.starts_with("Profile_Rule")
        || name == "Upgrade_Rule"
        || name.starts_with("Resync_Trigger_")
        || name.starts_with("GPP_")
        || (name.starts_with("Log_") && name.ends_with("_Msg"))
}

/// Whether a name looks like an MPP parameter: a capital letter, then letters, digits and
/// `_` (the web page's field name with spaces and `[]()/` turned into `_`).
fn looks_like_parameter(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn line_of(text: &str, byte: usize) -> u32 {
    let newlines = text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(newlines + 1).unwrap_or(u32::MAX)
}

/// Checks a profile's bytes and reads its parameters.
pub fn check(bytes: &[u8]) -> Checked {
    let mut out = Checked::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("");
            out.findings.push(Finding {
                line: line_of(valid, valid.len()),
                severity: Severity::Error,
                message: format!(
                    "not UTF-8 (byte {}): the phone reads UTF-8 profiles only; keep the editor's encoding",
                    e.valid_up_to()
                ),
            });
            return out;
        }
    };
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
    };
    let doc = match roxmltree::Document::parse_with_options(text, options) {
        Ok(doc) => doc,
        Err(e) => {
            out.findings.push(Finding {
                line: e.pos().row,
                severity: Severity::Error,
                message: format!("not well-formed XML: {e}"),
            });
            return out;
        }
    };
    let line = |node: roxmltree::Node| doc.text_pos_at(node.range().start).row;
    let mut push = |line, severity, message: String| {
        out.findings.push(Finding {
            line,
            severity,
            message,
        })
    };
    let root = doc.root_element();
    if root.tag_name().name() != "flat-profile" {
        push(
            line(root),
            Severity::Error,
            format!(
                "the root element is <{}>: the phone reads parameters inside <flat-profile>",
                root.tag_name().name()
            ),
        );
        return out;
    }
    let mut params: Vec<Param> = Vec::new();
    for node in root.children() {
        if node.is_text() && !node.text().unwrap_or("").trim().is_empty() {
            push(
                line(node),
                Severity::Warning,
                "text outside any parameter is ignored".into(),
            );
        }
        if !node.is_element() {
            continue;
        }
        let at = line(node);
        let name = node.tag_name().name().to_string();
        if !looks_like_parameter(&name) {
            push(
                at,
                Severity::Warning,
                format!(
                    "<{name}> does not look like an MPP parameter (a capital letter, then letters, digits and _; tags are case-sensitive): the phone ignores unknown parameters"
                ),
            );
        }
        if node.children().any(|c| c.is_element()) {
            push(
                at,
                Severity::Warning,
                format!("<{name}> holds elements: the phone reads a flat list of parameters"),
            );
        }
        let mut ua = None;
        for attr in node.attributes() {
            match (attr.name(), attr.value()) {
                ("ua", "na") => ua = Some(Ua::Na),
                ("ua", "rw") => ua = Some(Ua::Rw),
                ("ua", "ro") => ua = Some(Ua::Ro),
                ("ua", other) => push(
                    at,
                    Severity::Error,
                    format!("<{name} ua=\"{other}\">: ua must be na, rw or ro"),
                ),
                (other, _) => push(
                    at,
                    Severity::Warning,
                    format!("<{name}> has an attribute {other} the phone does not use"),
                ),
            }
        }
        let raw: String = node
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect();
        let value = raw.trim().replace(['\r', '\n'], " ");
        if let Some(first) = params.iter().find(|p| p.name == name) {
            push(
                at,
                Severity::Warning,
                format!("<{name}> is also at line {}: the last one wins", first.line),
            );
        }
        if !value.is_ascii() {
            push(
                at,
                Severity::Warning,
                format!("<{name}> has non-ASCII characters: the firmware supports ASCII only"),
            );
        }
        let names = rule::macro_names(&value);
        if expanded(&name) {
            for unknown in names.iter().filter(|n| !rule::is_known(n)) {
                push(
                    at,
                    Severity::Warning,
                    format!("<{name}> uses ${unknown}, which is not a macro: it stays as written"),
                );
            }
        } else if let Some(known) = names.iter().find(|n| rule::is_known(n)) {
            push(
                at,
                Severity::Warning,
                format!("<{name}> uses ${known}, but the phone expands macros only in Profile_Rule*, Upgrade_Rule, Resync_Trigger_*, Log_*_Msg and GPP_*"),
            );
        }
        if name.starts_with("Profile_Rule") || name == "Upgrade_Rule" {
            if let Err(e) = Rule::parse(&value) {
                push(at, Severity::Error, format!("<{name}>: {e}"));
            }
        }
        params.push(Param {
            name,
            value,
            ua,
            line: at,
        });
    }
    out.params = params;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<(u32, Severity, String)> {
        check(text.as_bytes())
            .findings
            .into_iter()
            .map(|f| (f.line, f.severity, f.message))
            .collect()
    }

    #[test]
    fn the_guides_example_is_clean_and_read_as_the_phone_reads_it() {
        let text = "<flat-profile>\n<Resync_On_Reset> Yes\n  </Resync_On_Reset>\n<Resync_Periodic> 7200 </Resync_Periodic>\n<Profile_Rule> tftp://prov.telco.com:6900/cisco/config/CP_xxxx_MPP.cfg</Profile_Rule>\n<Dial_Plan_1_>\n(S0 &lt;:18005551212&gt;)\n</Dial_Plan_1_>\n<Speed_Dial_2_Name ua=\"rw\"/>\n<GPP_A>\n</GPP_A>\n<!-- a comment -->\n</flat-profile>\n";
        let checked = check(text.as_bytes());
        assert!(checked.findings.is_empty(), "{:?}", checked.findings);
        let values: Vec<(&str, &str, u32)> = checked
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str(), p.line))
            .collect();
        assert_eq!(
            values,
            vec![
                ("Resync_On_Reset", "Yes", 2),
                ("Resync_Periodic", "7200", 4),
                (
                    "Profile_Rule",
                    "tftp://prov.telco.com:6900/cisco/config/CP_xxxx_MPP.cfg",
                    5
                ),
                ("Dial_Plan_1_", "(S0 <:18005551212>)", 6),
                ("Speed_Dial_2_Name", "", 9),
                ("GPP_A", "", 10),
            ]
        );
        assert_eq!(checked.params[4].ua, Some(Ua::Rw));
    }

    #[test]
    fn errors_with_lines() {
        assert_eq!(
            messages("<flat-profile>\n<A>x</B>\n</flat-profile>")[0].0,
            2
        );
        assert!(messages("<flat-profile>\n<A>x</B>")[0]
            .2
            .starts_with("not well-formed"));
        let m = messages("<device>\n</device>");
        assert_eq!((m[0].0, m[0].1), (1, Severity::Error));
        let m = messages(
            "<flat-profile>\n\n<Line_Enable_1_ ua=\"yes\">Yes</Line_Enable_1_>\n</flat-profile>",
        );
        assert_eq!((m[0].0, m[0].1), (3, Severity::Error));
        assert!(m[0].2.contains("ua must be na, rw or ro"));
        let m = check(b"<flat-profile>\n<A>\xff</A></flat-profile>");
        assert_eq!(m.first_error().unwrap().line, 2);
        let m = messages("<!DOCTYPE x [<!ENTITY a \"b\">]><flat-profile/>");
        assert_eq!(m[0].1, Severity::Error);
        let m = messages(
            "<flat-profile>\n<Profile_Rule>(1 = 1? http://a/</Profile_Rule>\n</flat-profile>",
        );
        assert_eq!((m[0].0, m[0].1), (2, Severity::Error));
    }

    #[test]
    fn warnings() {
        let text = "<flat-profile>\n<Resync_Periodic>1</Resync_Periodic>\n<resync_periodic>2</resync_periodic>\n<Resync_Periodic>3</Resync_Periodic>\n<Station_Name>$MA</Station_Name>\n<Profile_Rule>http://h/$STRANGE$MA.xml</Profile_Rule>\n<Display_Name>caf\u{e9}</Display_Name>\n<X_>stray<Y/></X_>\n<Z foo=\"1\"/>\n</flat-profile>";
        let m = messages(text);
        assert!(m.iter().all(|f| f.1 == Severity::Warning), "{m:?}");
        let lines: Vec<u32> = m.iter().map(|f| f.0).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9]);
        assert!(m[1].2.contains("also at line 2"));
        assert!(m[2].2.contains("expands macros only"));
        assert!(m[3].2.contains("$STRANGE"));
        // The last occurrence is applied last.
        let params = check(text.as_bytes()).params;
        assert_eq!(
            params
                .iter()
                .rfind(|p| p.name == "Resync_Periodic")
                .unwrap()
                .value,
            "3"
        );
    }
}
