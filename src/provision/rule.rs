//! Profile rules as an MPP phone evaluates them (the guide's "Profile Rules", "Macro
//! Expansion", "Conditional Expressions" and "Optional Resync Arguments").
//!
//! A rule is alternatives separated by `|`; each is `[(condition)?] [(assignment);]
//! [[options]] URL`, and every alternative but the last must have a condition. The first
//! alternative whose condition holds (or that has none) is used; when none holds the rule
//! is skipped. Options are `--key K`, `--uid U`, `--pwd P` (values optionally in double
//! quotes) and others kept as they are (`--post a`, `--alias b`).
//!
//! Macro expansion replaces `$NAME` and `$(NAME)` with the variable's value: a bare name
//! runs over letters, digits and `_`, so text that follows a name needs the parenthesised
//! form (`$(MAU)config.cfg`). `$$` is a literal `$`. Unknown names are left as they are
//! (`$STRANGE`), a known name without a value expands to nothing, and values are not
//! expanded again. `SA` to `SD` (GPP_SA..GPP_SD) are expanded only in the `--key`, `--uid`
//! and `--pwd` arguments. The rule's structure is parsed before expansion, so a value can
//! never add an alternative or an option.

use super::Key;
use crate::Password;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// The variables a phone expands, with what each holds (Cisco MPP's macro table). The
/// general purpose parameters are A..P (also as GPP_A..GPP_P) and SA..SD.
pub const MACROS: &[(&str, &str)] = &[
    ("MA", "MAC address, lowercase hex (000e08012345)"),
    ("MAU", "MAC address, uppercase hex (000E08012345)"),
    (
        "MAC",
        "MAC address, lowercase hex with colons (00:0e:08:01:23:45)",
    ),
    ("SN", "serial number"),
    ("PN", "product name (CP-8845-3PCC)"),
    ("PSN", "product series number (8845)"),
    (
        "CCERT",
        "client certificate status: Installed or Not Installed",
    ),
    ("IP", "IP address of the phone in its subnet"),
    ("EXTIP", "external IP address of the phone"),
    ("SWVER", "software version (sip88xx.11-3-2MPP0001-609)"),
    ("HWVER", "hardware version"),
    (
        "PRVST",
        "provisioning state: -1 requested, 0 power-up, 1 periodic, 2 retry",
    ),
    ("UPGST", "upgrade state"),
    ("UPGERR", "result of the last upgrade attempt"),
    ("PRVTMR", "seconds since the last resync attempt"),
    ("UPGTMR", "seconds since the last upgrade attempt"),
    ("REGTMR1", "seconds since line 1 lost registration"),
    ("REGTMR2", "seconds since line 2 lost registration"),
    ("UPGCOND", "legacy upgrade condition"),
    (
        "SCHEME",
        "file access scheme of the request (tftp, http, https)",
    ),
    ("METH", "deprecated alias of SCHEME"),
    ("SERV", "server host name of the request"),
    ("SERVIP", "server IP address of the request"),
    ("PORT", "server port of the request"),
    ("PATH", "file path of the request"),
    ("ERR", "result of the last resync or upgrade attempt"),
    ("UID1", "line 1 user ID"),
    ("UID2", "line 2 user ID"),
    ("EMS", "extension mobility status"),
    ("MUID", "extension mobility user ID"),
    ("MPWD", "extension mobility password"),
];

/// The canonical name of a known macro (`GPP_A` is `A`), and whether it is one of the
/// secret registers SA..SD.
fn canonical(name: &str) -> Option<(String, bool)> {
    let short = name.strip_prefix("GPP_").unwrap_or(name);
    let gpp = |s: &str| s.len() == 1 && (b'A'..=b'P').contains(&s.as_bytes()[0]);
    let secret = matches!(short, "SA" | "SB" | "SC" | "SD");
    if gpp(short) || secret || (short == name && MACROS.iter().any(|(n, _)| *n == name)) {
        Some((short.to_string(), secret))
    } else {
        None
    }
}

/// Whether the phone knows this macro name.
pub fn is_known(name: &str) -> bool {
    canonical(name).is_some()
}

/// Why a rule could not be read or evaluated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// An unbalanced `(`, `[` or `"`.
    #[error("alternative {0}: unbalanced {1}")]
    Unbalanced(usize, char),
    /// An alternative other than the last has no condition.
    #[error("alternative {0} has no (condition)? but is not the last one")]
    NoCondition(usize),
    /// A condition that does not parse.
    #[error("condition `{text}`: {why}")]
    Condition {
        /// The expanded condition.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// `--var` or `set` with a name the phone does not know.
    #[error("`{0}` is not a macro the phone knows (it would be left as is)")]
    UnknownMacro(String),
    /// An option without its value.
    #[error("option {0} needs a value")]
    OptionValue(String),
    /// A MAC address that is not 12 hex digits.
    #[error("`{0}` is not a MAC address (12 hex digits, optionally separated by : or -)")]
    Mac(String),
    /// A URL the phone cannot fetch.
    #[error("URL `{0}`: {1}")]
    Url(String, &'static str),
}

/// A phone's MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Reads `000E08012345`, `00:0e:08:01:23:45` or `00-0E-08-01-23-45`.
    pub fn parse(text: &str) -> Result<Mac, RuleError> {
        let hex: String = text.chars().filter(|c| !matches!(c, ':' | '-')).collect();
        let bad = || RuleError::Mac(crate::text::printable(text, false).into_owned());
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Mac(mac))
    }

    /// `$MA`: lowercase hex.
    pub fn ma(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `$MAU`: uppercase hex.
    pub fn mau(&self) -> String {
        self.0.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// `$MAC`: lowercase hex with colons.
    pub fn colons(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        parts.join(":")
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ma())
    }
}

/// The values of one phone's macros.
#[derive(Clone, Default)]
pub struct Macros {
    values: HashMap<String, String>,
}

impl fmt::Debug for Macros {
    // GPP_SA..SD hold keys and passwords: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Macros").field("set", &names).finish()
    }
}

/// Where text is expanded: SA..SD only in option arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Url,
    Option,
}

impl Macros {
    /// MA, MAU and MAC for this address.
    pub fn for_mac(mac: Mac) -> Macros {
        let mut m = Macros::default();
        m.values.insert("MA".into(), mac.ma());
        m.values.insert("MAU".into(), mac.mau());
        m.values.insert("MAC".into(), mac.colons());
        m
    }

    /// Sets a known macro (`GPP_A` and `A` are one).
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> Result<(), RuleError> {
        let (name, _) = canonical(name).ok_or_else(|| {
            RuleError::UnknownMacro(crate::text::printable(name, false).into_owned())
        })?;
        self.values.insert(name, value.into());
        Ok(())
    }

    /// Expands `text` outside option arguments (SA..SD are left as they are).
    pub fn expand(&self, text: &str) -> String {
        self.expand_in(text, Context::Url)
    }

    fn expand_in(&self, text: &str, context: Context) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (name, used) = if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            } else if let Some(inner) = after.strip_prefix('(') {
                match inner.find(')') {
                    Some(close) => (&inner[..close], close + 2),
                    None => ("", 0),
                }
            } else {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..len], len)
            };
            match canonical(name) {
                Some((name, secret)) if used > 0 && (!secret || context == Context::Option) => {
                    out.push_str(self.values.get(&name).map_or("", String::as_str));
                }
                _ => out.push_str(&rest[at..at + 1 + used]),
            }
            rest = &after[used..];
        }
        out.push_str(rest);
        out
    }

    /// The known macros that `text` uses and that have no value here (they expand to
    /// nothing), in order of first use.
    pub fn unset_in(&self, text: &str) -> Vec<String> {
        let mut unset: Vec<String> = Vec::new();
        for name in macro_names(text) {
            if let Some((name, _)) = canonical(&name) {
                if !self.values.contains_key(&name) && !unset.contains(&name) {
                    unset.push(name);
                }
            }
        }
        unset
    }
}

/// The macro names `text` refers to (`$$` excluded), known or not.
pub fn macro_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let after = &text[i + 1..];
        if after.starts_with('$') {
            i += 2;
            continue;
        }
        if let Some(inner) = after.strip_prefix('(') {
            if let Some(close) = inner.find(')') {
                names.push(inner[..close].to_string());
                i += close + 3;
                continue;
            }
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len > 0 {
            names.push(after[..len].to_string());
        }
        i += 1 + len;
    }
    names
}

/// One alternative of a rule, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The text between `(` and `)?`.
    pub condition: Option<String>,
    /// The text between `(` and `);`.
    pub assignment: Option<String>,
    /// The options between `[` and `]`: names without `--`, values unquoted.
    pub options: Vec<(String, Option<String>)>,
    /// The URL (may be empty: an alternative that only assigns).
    pub url: String,
}

/// A parsed profile rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// In order; all but the last have a condition.
    pub alternatives: Vec<Alternative>,
}

/// The index of the `close` that balances the `open` at the start of `text`, outside
/// double quotes.
fn matching(text: &str, open: char, close: char) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on `|` outside quotes, parentheses and brackets.
fn alternatives(text: &str) -> Vec<&str> {
    let (mut parts, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0i32, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            '|' if !quoted && depth <= 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Words separated by white space, a double-quoted word taken whole without its quotes.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            words.push(quoted[..end].to_string());
            rest = quoted.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    words
}

impl Rule {
    /// Parses a rule's structure (no expansion yet).
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let parts = alternatives(text);
        let count = parts.len();
        let mut alternatives = Vec::with_capacity(count);
        for (index, part) in parts.into_iter().enumerate() {
            let number = index + 1;
            let mut rest = part.trim();
            let mut condition = None;
            let mut assignment = None;
            if rest.starts_with('(') {
                let close = matching(rest, '(', ')').ok_or(RuleError::Unbalanced(number, '('))?;
                let after = rest[close + 1..].trim_start();
                if let Some(tail) = after.strip_prefix('?') {
                    condition = Some(rest[1..close].trim().to_string());
                    rest = tail.trim_start();
                }
            }
            if rest.starts_with('(') {
                let close = matching(rest, '(', ')').ok_or(RuleError::Unbalanced(number, '('))?;
                let after = rest[close + 1..].trim_start();
                if let Some(tail) = after.strip_prefix(';') {
                    assignment = Some(rest[1..close].trim().to_string());
                    rest = tail.strip_prefix('!').unwrap_or(tail).trim_start();
                }
            }
            let mut options = Vec::new();
            if rest.starts_with('[') {
                let close = matching(rest, '[', ']').ok_or(RuleError::Unbalanced(number, '['))?;
                let mut list = words(&rest[1..close]).into_iter().peekable();
                while let Some(word) = list.next() {
                    let name = word.trim_start_matches('-').to_string();
                    let value = list.next_if(|next| !next.starts_with("--"));
                    options.push((name, value));
                }
                rest = rest[close + 1..].trim_start();
            }
            if rest.matches('"').count() % 2 != 0 {
                return Err(RuleError::Unbalanced(number, '"'));
            }
            if condition.is_none() && number < count {
                return Err(RuleError::NoCondition(number));
            }
            alternatives.push(Alternative {
                condition,
                assignment,
                options,
                url: rest.to_string(),
            });
        }
        Ok(Rule { alternatives })
    }

    /// The alternative a phone with these macros uses, expanded; `None` when every
    /// alternative has a condition and none holds.
    pub fn evaluate(&self, macros: &Macros) -> Result<Option<Resolved>, RuleError> {
        for (index, alt) in self.alternatives.iter().enumerate() {
            if let Some(condition) = &alt.condition {
                if !holds(&macros.expand(condition))? {
                    continue;
                }
            }
            let mut resolved = Resolved {
                alternative: index + 1,
                assignment: alt.assignment.as_deref().map(|a| macros.expand(a)),
                url: macros.expand(&alt.url),
                key: None,
                uid: None,
                pwd: None,
                other_options: Vec::new(),
            };
            for (name, value) in &alt.options {
                let expand = || {
                    value
                        .as_deref()
                        .map(|v| macros.expand_in(v, Context::Option))
                        .ok_or_else(|| RuleError::OptionValue(format!("--{name}")))
                };
                match name.as_str() {
                    "key" => resolved.key = Some(Key::new(expand()?)),
                    "uid" => resolved.uid = Some(expand()?),
                    "pwd" => resolved.pwd = Some(Password::new(expand()?)),
                    _ => resolved.other_options.push(match value {
                        Some(v) => format!("--{name} {}", macros.expand(v)),
                        None => format!("--{name}"),
                    }),
                }
            }
            return Ok(Some(resolved));
        }
        Ok(None)
    }
}

/// The alternative a phone uses, with its macros expanded.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Which alternative, from 1.
    pub alternative: usize,
    /// The assignment expression, expanded.
    pub assignment: Option<String>,
    /// The URL, expanded.
    pub url: String,
    /// `--key`: the AES-256-CBC passphrase.
    pub key: Option<Key>,
    /// `--uid`: the HTTP user.
    pub uid: Option<String>,
    /// `--pwd`: the HTTP password.
    pub pwd: Option<Password>,
    /// Other options (`--post a`, `--alias b`), expanded.
    pub other_options: Vec<String>,
}

/// A URL split as the guide writes it: `[scheme://][server[:port]]filepath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `tftp` when omitted.
    pub scheme: String,
    /// Empty when omitted (the phone then uses DHCP option 66); an IPv6 address without
    /// its brackets.
    pub host: String,
    /// The scheme's port when omitted (69, 80, 443).
    pub port: u16,
    /// From the first `/`, query included.
    pub path: String,
}

impl Url {
    /// Splits an expanded URL.
    pub fn parse(text: &str) -> Result<Url, RuleError> {
        let bad = |why| RuleError::Url(crate::text::printable(text, false).into_owned(), why);
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("tftp".to_string(), text),
        };
        let default_port = match scheme.as_str() {
            "tftp" => 69,
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("the scheme must be tftp, http or https")),
        };
        let slash = rest
            .find('/')
            .ok_or_else(|| bad("the file path must start with /"))?;
        let (server, path) = rest.split_at(slash);
        // `[v6]` or `[v6]:port`; else `host` or `host:port`.
        let (host, port) = match server.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
                (host, after.strip_prefix(':'))
            }
            None => match server.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (server, None),
            },
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad("the port is not a number"))?,
            None => default_port,
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains white space or control characters"));
        }
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// A typed operand of a comparison.
#[derive(Debug, PartialEq, Eq)]
enum Operand {
    Int(i64),
    Version(Vec<u64>),
    Str(String),
}

/// `sipyyyy.MAJOR-MINOR-MICRO-BUILD`: major, minor, the micro's digit runs, then build,
/// compared in that order (the model prefix is not compared).
fn version(text: &str) -> Option<Vec<u64>> {
    let (_, numbers) = text.split_once('.')?;
    let parts: Vec<&str> = numbers.split('-').collect();
    let [major, minor, micro, build] = parts[..] else {
        return None;
    };
    let mut key = vec![major.parse().ok()?, minor.parse().ok()?];
    let runs: Vec<u64> = micro
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if runs.is_empty() {
        return None;
    }
    // A fixed width keeps "11-3-2" below "11-3-2MPP0001" and keeps the build last.
    key.extend(runs.iter().copied().chain(std::iter::repeat(0)).take(4));
    key.push(build.parse().ok()?);
    Some(key)
}

/// Evaluates an expanded condition: comparisons joined by `and`.
pub fn holds(text: &str) -> Result<bool, RuleError> {
    let fail = |why: String| RuleError::Condition {
        text: crate::text::printable(text, false).into_owned(),
        why,
    };
    #[derive(Debug)]
    enum Token {
        Str(String),
        Word(String),
        Op(&'static str),
    }
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let inner = &rest[1..];
            let end = inner
                .find('"')
                .ok_or_else(|| fail("unbalanced \"".into()))?;
            tokens.push(Token::Str(inner[..end].to_string()));
            rest = &inner[end + 1..];
        } else if let Some(op) = ["!=", "<=", ">=", "=", "<", ">"]
            .into_iter()
            .find(|op| rest.starts_with(op))
        {
            tokens.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            // A lone `!` is not an operator: it is taken as a one-character word (and then
            // refused as an operand), so that the scan always moves on.
            let end = rest
                .find(|c: char| c.is_whitespace() || "\"=!<>".contains(c))
                .unwrap_or(rest.len())
                .max(1);
            let word = &rest[..end];
            let op = match word.to_ascii_lowercase().as_str() {
                "eq" => Some("="),
                "ne" => Some("!="),
                "lt" => Some("<"),
                "le" => Some("<="),
                "gt" => Some(">"),
                "ge" => Some(">="),
                _ => None,
            };
            tokens.push(op.map_or_else(|| Token::Word(word.to_string()), Token::Op));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    let operand = |token: Option<Token>| -> Result<Operand, RuleError> {
        match token {
            Some(Token::Str(s)) => Ok(Operand::Str(s)),
            Some(Token::Word(w)) => {
                if let Ok(n) = w.parse() {
                    Ok(Operand::Int(n))
                } else if let Some(v) = version(&w) {
                    Ok(Operand::Version(v))
                } else {
                    Err(fail(format!(
                        "`{}` is neither a number, a version nor a quoted string",
                        crate::text::printable(&w, false)
                    )))
                }
            }
            _ => Err(fail("a comparison needs two operands".into())),
        }
    };
    let mut tokens = tokens.into_iter();
    let mut all = true;
    loop {
        let left = operand(tokens.next())?;
        let Some(Token::Op(op)) = tokens.next() else {
            return Err(fail("a comparison needs an operator".into()));
        };
        let right = operand(tokens.next())?;
        let order = match (&left, &right) {
            (Operand::Int(a), Operand::Int(b)) => a.cmp(b),
            (Operand::Version(a), Operand::Version(b)) => a.cmp(b),
            (Operand::Str(a), Operand::Str(b)) if matches!(op, "=" | "!=") => {
                if a == b {
                    Ordering::Equal
                } else {
                    Ordering::Less
                }
            }
            (Operand::Str(_), Operand::Str(_)) => {
                return Err(fail(format!(
                    "strings can only be compared with = or !=, not {op}"
                )))
            }
            _ => return Err(fail("the two sides are of different kinds".into())),
        };
        all &= match op {
            "=" => order == Ordering::Equal,
            "!=" => order != Ordering::Equal,
            "<" => order == Ordering::Less,
            "<=" => order != Ordering::Greater,
            ">" => order == Ordering::Greater,
            _ => order != Ordering::Less,
        };
        match tokens.next() {
            None => return Ok(all),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") => {}
            Some(_) => return Err(fail("comparisons are joined by `and`".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone() -> Macros {
        Macros::for_mac(Mac::parse("000E08012345").unwrap())
    }

    fn url(rule: &str, macros: &Macros) -> Option<String> {
        Rule::parse(rule)
            .unwrap()
            .evaluate(macros)
            .unwrap()
            .map(|r| r.url)
    }

    #[test]
    fn the_guides_macro_examples() {
        let m = phone();
        assert_eq!(m.expand("$(MAU)config.cfg"), "000E08012345config.cfg");
        assert_eq!(m.expand("$STRANGE$MAU.cfg"), "$STRANGE000E08012345.cfg");
        assert_eq!(m.expand("$$MAU"), "$MAU");
        assert_eq!(m.expand("/$MA.cfg"), "/000e08012345.cfg");
        assert_eq!(m.expand("$MAC"), "00:0e:08:01:23:45");
        let mut m = m;
        m.set("GPP_A", "ABC").unwrap();
        m.set("B", "123").unwrap();
        assert_eq!(m.expand("$A$B"), "ABC123");
        assert_eq!(m.expand("$GPP_A"), "ABC");
    }

    #[test]
    fn expansion_is_not_recursive_and_keeps_the_unknown() {
        let mut m = phone();
        m.set("A", "$MA").unwrap();
        assert_eq!(m.expand("$A"), "$MA");
        assert_eq!(m.expand("$(NOPE)x $( $"), "$(NOPE)x $( $");
        assert_eq!(m.expand("$SWVER."), ".");
        assert_eq!(m.unset_in("$SWVER $MA $PN $PN"), vec!["SWVER", "PN"]);
        assert_eq!(
            m.set("STRANGE", "x"),
            Err(RuleError::UnknownMacro("STRANGE".into()))
        );
    }

    #[test]
    fn secret_registers_only_in_options() {
        let mut m = phone();
        m.set("SC", "k3y").unwrap();
        m.set("SA", "user").unwrap();
        m.set("SB", "pass").unwrap();
        let r = Rule::parse("[--key $SC --uid $SA --pwd \"$SB\"] http://h/$SC/$MA.xml")
            .unwrap()
            .evaluate(&m)
            .unwrap()
            .unwrap();
        assert_eq!(r.key.unwrap().expose(), "k3y");
        assert_eq!(r.uid.as_deref(), Some("user"));
        assert_eq!(r.pwd.unwrap().expose(), "pass");
        assert_eq!(r.url, "http://h/$SC/000e08012345.xml");
    }

    #[test]
    fn quoted_keys_and_other_options() {
        let r =
            Rule::parse("[--key \"my secret phrase\" --alias b] https://p.tel.com/a/$PN$MA.xml")
                .unwrap()
                .evaluate(&phone())
                .unwrap()
                .unwrap();
        assert_eq!(r.key.unwrap().expose(), "my secret phrase");
        assert_eq!(r.other_options, vec!["--alias b"]);
        assert_eq!(r.url, "https://p.tel.com/a/000e08012345.xml");
        assert_eq!(
            Rule::parse("[--key] /x")
                .unwrap()
                .evaluate(&phone())
                .unwrap_err(),
            RuleError::OptionValue("--key".into())
        );
    }

    #[test]
    fn the_guides_conditional_rules() {
        let mut m = phone();
        let rule = "(\"$CCERT\" eq \"Installed\")? https://p.tel.com/config?\n| https://p.tel.com/config?cisco$MAU";
        assert_eq!(
            url(rule, &m).unwrap(),
            "https://p.tel.com/config?cisco000E08012345"
        );
        m.set("CCERT", "Installed").unwrap();
        assert_eq!(url(rule, &m).unwrap(), "https://p.tel.com/config?");

        let rule = "(\"$A\" ne \"Provisioned\")? (Line_Enable_1_ = \"No\");! https://p.tel.com/init-prov\n| https://p.tel.com/configs";
        let r = Rule::parse(rule).unwrap().evaluate(&m).unwrap().unwrap();
        assert_eq!(
            (r.alternative, r.url.as_str()),
            (1, "https://p.tel.com/init-prov")
        );
        assert_eq!(r.assignment.as_deref(), Some("Line_Enable_1_ = \"No\""));
        m.set("A", "Provisioned").unwrap();
        assert_eq!(url(rule, &m).unwrap(), "https://p.tel.com/configs");

        let rule = "($PRVTMR ge 600)? http://p.tel.com/has-reg.cfg | [--post a] http://p.tel.com/lost-reg?";
        m.set("PRVTMR", "700").unwrap();
        assert_eq!(url(rule, &m).unwrap(), "http://p.tel.com/has-reg.cfg");
        m.set("PRVTMR", "20").unwrap();
        assert_eq!(url(rule, &m).unwrap(), "http://p.tel.com/lost-reg?");

        let rule = "($SWVER ne sip68xx.11-3-2MPP0001-609)? http://ps.tell.com/sw/new.loads";
        m.set("SWVER", "sip68xx.11-3-2MPP0001-609").unwrap();
        assert_eq!(url(rule, &m), None);
        m.set("SWVER", "sip68xx.11-3-1MPP-110").unwrap();
        assert_eq!(url(rule, &m).unwrap(), "http://ps.tell.com/sw/new.loads");
    }

    #[test]
    fn conditions() {
        let t = |s| holds(s).unwrap();
        assert!(t("sipyyyy.11-3-1MPP-110 > sipyyyy.11-2-3MPP-256"));
        assert!(t("sipyyyy.11-3-2MPP0002-256 > sipyyyy.11-3-2MPP0001-609"));
        assert!(t("sipyyyy.11-3-2MPP0001-609 gt sipyyyy.11-3-2MPP0001-608"));
        assert!(t("1 lt 2 and 3 >= 3 AND \"a\" = \"a\""));
        assert!(!t("1 lt 2 and 3 != 3"));
        assert!(t("\"a b\" != \"a\""));
        assert!(holds("\"a\" < \"b\"").is_err());
        assert!(holds("1 = \"1\"").is_err());
        assert!(holds(" ge 600").is_err());
        assert!(holds("1 = 1 or 2 = 2").is_err());
        assert!(holds("1 =").is_err());
        assert!(holds("abc = 1").is_err());
        assert!(holds("\"x = 1").is_err());
        // Found by fuzzing: a lone `!` looped for ever.
        assert!(holds("1 ! 2").is_err() && holds("!").is_err());
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            Rule::parse("http://a | http://b"),
            Err(RuleError::NoCondition(1))
        );
        assert_eq!(
            Rule::parse("(1 = 1? http://a"),
            Err(RuleError::Unbalanced(1, '('))
        );
        assert_eq!(
            Rule::parse("[--key x http://a"),
            Err(RuleError::Unbalanced(1, '['))
        );
        // A value cannot add an alternative: the structure is read first.
        let mut m = phone();
        m.set("A", "x | http://evil/").unwrap();
        assert_eq!(url("http://h/$A", &m).unwrap(), "http://h/x | http://evil/");
    }

    #[test]
    fn urls_and_macs() {
        assert_eq!(
            Url::parse("http://127.0.0.1:8099/cfg/a.xml?x").unwrap(),
            Url {
                scheme: "http".into(),
                host: "127.0.0.1".into(),
                port: 8099,
                path: "/cfg/a.xml?x".into()
            }
        );
        let u = Url::parse("/$MA.cfg").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host.as_str(), u.port),
            ("tftp", "", 69)
        );
        assert_eq!(
            Url::parse("192.168.1.130/p/init.cfg").unwrap().host,
            "192.168.1.130"
        );
        for (text, host, port) in [
            ("http://[2001:db8::1]/cfg.xml", "2001:db8::1", 80),
            ("https://[::1]:8443/cfg.xml", "::1", 8443),
        ] {
            let u = Url::parse(text).unwrap();
            assert_eq!((u.host.as_str(), u.port), (host, port), "{text}");
        }
        assert!(Url::parse("http://[::1/x").is_err());
        assert!(Url::parse("ftp://h/x").is_err() && Url::parse("http://h").is_err());
        assert!(Url::parse("http://h:99999/x").is_err());
        assert_eq!(
            Mac::parse("00:0e:08:01:23:45").unwrap().mau(),
            "000E08012345"
        );
        assert!(Mac::parse("000E0801234").is_err() && Mac::parse("000E0801234G").is_err());
    }
}
