//! Streaming rows from CSV (with a header row) or JSON Lines.

use crate::sip::digest::Password;
use serde::Deserialize;
use std::io::{BufRead, Read};
use std::path::Path;

/// The input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Comma-separated values with a header row naming the columns.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl InputFormat {
    /// The format a file name suggests: `.jsonl`, `.ndjson` and `.json` are JSON Lines,
    /// `.csv` is CSV.
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(InputFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(InputFormat::Jsonl),
            _ => None,
        }
    }
}

/// One input row: a target and the per-target options that override the command line.
/// The password is wrapped so that it never shows in `Debug` output.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Row {
    /// The 1-based line of the file where the row starts (filled in by the reader).
    #[serde(skip)]
    pub line: u64,
    /// The 0-based record index, bad rows included (filled in by the reader); sharding
    /// uses it.
    #[serde(skip)]
    pub index: u64,
    /// An opaque label copied to the output and used as the journal key.
    #[serde(default, deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// The phone line (required).
    #[serde(default, deserialize_with = "opt_string")]
    pub target: Option<String>,
    /// The digest user name.
    #[serde(default, deserialize_with = "opt_string")]
    pub auth_user: Option<String>,
    /// The line password.
    #[serde(default, deserialize_with = "opt_password")]
    pub password: Option<Password>,
    /// The event (`resync`, `reboot`, `restart`, `report`, `xml-service`, or any event).
    #[serde(default, deserialize_with = "opt_string")]
    pub event: Option<String>,
    /// The XML-Service URL (or the resync profile URL).
    #[serde(default, deserialize_with = "opt_string")]
    pub url: Option<String>,
    /// An outbound proxy, `HOST[:PORT]`.
    #[serde(default, deserialize_with = "opt_string")]
    pub proxy: Option<String>,
    /// `udp` or `tcp`.
    #[serde(default, deserialize_with = "opt_string")]
    pub transport: Option<String>,
}

/// Empty strings and nulls are missing cells; numbers are accepted as text (`"id": 7`).
fn opt_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cell {
        Text(String),
        Int(i64),
        Float(f64),
    }
    Ok(match Option::<Cell>::deserialize(d)? {
        None => None,
        Some(Cell::Text(s)) if s.trim().is_empty() => None,
        Some(Cell::Text(s)) => Some(s.trim().to_string()),
        Some(Cell::Int(i)) => Some(i.to_string()),
        Some(Cell::Float(f)) => Some(f.to_string()),
    })
}

/// Passwords are taken as given (no trimming), but an empty cell is a missing one. A
/// password that is not a string is an error whose text is never shown ([`json_message`]).
fn opt_password<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Password>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Password::new))
}

/// A row that could not be read; the campaign reports it and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The 1-based line where the row starts.
    pub line: u64,
    /// The 0-based record index, as for [`Row::index`].
    pub index: u64,
    /// What is wrong, never quoting a password.
    pub message: String,
}

/// A problem with the whole input (unreadable, no header, no `target` column): nothing can
/// be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The longest JSON Lines line, newline excluded: a longer one is a bad row, skipped
/// without being kept in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one line of at most [`MAX_LINE`] bytes (plus its newline) into `buf`. `Ok(None)`
/// at the end of the input; `Ok(Some(false))` for a line that was too long, whose rest has
/// been skipped up to and including its newline (`buf` then holds only its start).
fn read_bounded_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = reader.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() <= MAX_LINE || buf.ends_with(b"\n") {
        return Ok(Some(true));
    }
    // Too long: skip to the next newline, a buffer at a time.
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(Some(false));
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(Some(false));
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Streams rows; memory stays bounded by the longest row (for JSON Lines, [`MAX_LINE`]).
pub struct RowReader {
    inner: Inner,
    index: u64,
}

enum Inner {
    Csv {
        reader: Box<csv::Reader<Box<dyn Read + Send>>>,
        headers: csv::StringRecord,
        record: csv::StringRecord,
    },
    Jsonl {
        lines: Box<dyn BufRead + Send>,
        line: u64,
        buf: Vec<u8>,
    },
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl RowReader {
    /// Starts reading. For CSV the header row is read and checked now.
    pub fn new(
        reader: Box<dyn BufRead + Send>,
        format: InputFormat,
    ) -> Result<RowReader, InputError> {
        let inner = match format {
            InputFormat::Csv => {
                // No comment lines in CSV: a row whose first cell starts with `#` (an id
                // such as `#12`) is a row, never silently dropped.
                let mut csv = csv::ReaderBuilder::new()
                    .flexible(true)
                    .trim(csv::Trim::Headers)
                    .from_reader(Box::new(reader) as Box<dyn Read + Send>);
                let headers = csv
                    .headers()
                    .map_err(|e| InputError(format!("cannot read the CSV header row: {e}")))?;
                if !headers.iter().any(|h| h == "target") {
                    return Err(InputError(format!(
                        "the CSV header row has no `target` column (found: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    )));
                }
                let headers = headers.clone();
                Inner::Csv {
                    reader: Box::new(csv),
                    headers,
                    record: csv::StringRecord::new(),
                }
            }
            InputFormat::Jsonl => Inner::Jsonl {
                lines: reader,
                line: 0,
                buf: Vec::new(),
            },
        };
        Ok(RowReader { inner, index: 0 })
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let index = self.index;
        let result = match &mut self.inner {
            Inner::Csv {
                reader,
                headers,
                record,
            } => match reader.read_record(record) {
                Ok(false) => return None,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() == headers.len() {
                        Ok(Row {
                            line,
                            ..csv_row(headers, record)
                        })
                    } else {
                        // Cells would be shifted (an unquoted comma in a password makes
                        // its tail the next column): refused, never quoted.
                        Err(RowError {
                            line,
                            index,
                            message: format!(
                                "expected {} cells as in the header row, found {} (a cell \
                                 holding a comma must be quoted)",
                                headers.len(),
                                record.len()
                            ),
                        })
                    }
                }
                Err(e) if e.is_io_error() => {
                    let message = format!("cannot read the input: {e}");
                    // An I/O error ends the input; it is still reported as a row.
                    self.inner = Inner::Jsonl {
                        lines: Box::new(std::io::empty()),
                        line: 0,
                        buf: Vec::new(),
                    };
                    Err(RowError {
                        line: 0,
                        index,
                        message,
                    })
                }
                Err(e) => Err(RowError {
                    line: e.position().map_or(0, |p| p.line()),
                    index,
                    message: csv_message(&e),
                }),
            },
            Inner::Jsonl { lines, line, buf } => loop {
                *line += 1;
                match read_bounded_line(lines, buf) {
                    Ok(None) => return None,
                    Ok(Some(true)) => {}
                    Ok(Some(false)) => {
                        // Never quoted: it may hold a password.
                        break Err(RowError {
                            line: *line,
                            index,
                            message: format!("the line is longer than {MAX_LINE} bytes"),
                        });
                    }
                    Err(e) => {
                        // Stop on a read error.
                        *lines = Box::new(std::io::empty());
                        break Err(RowError {
                            line: *line,
                            index,
                            message: format!("cannot read the input: {e}"),
                        });
                    }
                }
                let Ok(text) = std::str::from_utf8(buf) else {
                    break Err(RowError {
                        line: *line,
                        index,
                        message: "the line is not UTF-8 text".into(),
                    });
                };
                let text = text.trim();
                if text.is_empty() || text.starts_with('#') {
                    continue;
                }
                break match serde_json::from_str::<Row>(text) {
                    Ok(row) => Ok(Row { line: *line, ..row }),
                    Err(e) => Err(RowError {
                        line: *line,
                        index,
                        message: json_message(&e),
                    }),
                };
            },
        };
        self.index += 1;
        Some(result.and_then(|row| {
            if row.target.is_none() {
                return Err(RowError {
                    line: row.line,
                    index,
                    message: "the row has no target".into(),
                });
            }
            Ok(Row { index, ..row })
        }))
    }
}

/// A CSV record as a row, cell by cell, each cell the text as written: deserializing it with
/// serde would read `0123` as the number 123 (an `auth_user` of `0123` became `123`).
fn csv_row(headers: &csv::StringRecord, record: &csv::StringRecord) -> Row {
    let mut row = Row::default();
    for (name, cell) in headers.iter().zip(record.iter()) {
        let text = || Some(cell.trim().to_string()).filter(|t| !t.is_empty());
        match name {
            "id" => row.id = text(),
            "target" => row.target = text(),
            "auth_user" => row.auth_user = text(),
            // Taken as given (no trimming); an empty cell is a missing one.
            "password" => row.password = (!cell.is_empty()).then(|| Password::new(cell)),
            "event" => row.event = text(),
            "url" => row.url = text(),
            "proxy" => row.proxy = text(),
            "transport" => row.transport = text(),
            _ => {}
        }
    }
    row
}

/// A JSON error without the line's contents: serde quotes the offending value, which may
/// be a password (a bare string line, or a password cell of the wrong type).
fn json_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let column = e.column();
    match e.classify() {
        Category::Eof => "the JSON object is cut short".into(),
        Category::Syntax => format!("not valid JSON (column {column})"),
        Category::Data | Category::Io => format!(
            "not a JSON object with string fields target, id, auth_user, password, event, url, \
             proxy, transport (column {column})"
        ),
    }
}

/// A CSV error without the record's contents (which may hold a password).
fn csv_message(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8 text".into(),
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(field) => format!("column {}: {}", field + 1, err.kind()),
            None => err.kind().to_string(),
        },
        _ => "the row is not valid CSV".into(),
    }
}

/// Counts the records [`RowReader`] would yield, in constant memory, for progress and
/// `--spread`.
pub fn count_records(reader: Box<dyn BufRead + Send>, format: InputFormat) -> u64 {
    match format {
        InputFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
            let mut record = csv::ByteRecord::new();
            let mut n = 0;
            while let Ok(true) = csv.read_byte_record(&mut record) {
                n += 1;
            }
            n
        }
        InputFormat::Jsonl => {
            let mut reader = reader;
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                match read_bounded_line(&mut reader, &mut buf) {
                    Ok(None) | Err(_) => return n,
                    // A line too long is a (bad) row.
                    Ok(Some(false)) => n += 1,
                    Ok(Some(true)) => {
                        let text = buf.trim_ascii();
                        if !text.is_empty() && !text.starts_with(b"#") {
                            n += 1;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, format: InputFormat) -> Vec<Result<Row, RowError>> {
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.to_string()));
        RowReader::new(reader, format).unwrap().collect()
    }

    #[test]
    fn csv_rows_with_lines_and_missing_cells() {
        let text = "target,password,event,id\n\
                    159@10.0.0.1,secret,reboot,a\n\
                    160@10.0.0.2,,,\n\
                    ,x,,c\n\
                    \"161@10.0.0.3\",\"pw,with,commas\",resync,7\n";
        let got = rows(text, InputFormat::Csv);
        assert_eq!(got.len(), 4);
        let a = got[0].as_ref().unwrap();
        assert_eq!((a.line, a.index), (2, 0));
        assert_eq!(a.target.as_deref(), Some("159@10.0.0.1"));
        assert_eq!(a.password.as_ref().unwrap().expose(), "secret");
        assert_eq!(a.id.as_deref(), Some("a"));
        let b = got[1].as_ref().unwrap();
        assert!(b.password.is_none() && b.event.is_none() && b.id.is_none());
        assert_eq!(b.line, 3);
        let c = got[2].as_ref().unwrap_err();
        assert_eq!((c.line, c.index), (4, 2));
        let d = got[3].as_ref().unwrap();
        assert_eq!(d.password.as_ref().unwrap().expose(), "pw,with,commas");
        assert_eq!(d.line, 5);
        assert!(!format!("{d:?}").contains("pw,with"));
    }

    #[test]
    fn a_password_that_is_not_a_string_is_refused_without_quoting_it() {
        let text = "{\"target\":\"159@10.0.0.1\",\"password\":8675309421}\n\
                    {\"target\":\"160@10.0.0.1\",\"password\":[\"s3cr3t-in-array\"]}\n\
                    \"a line that is only a string: s3cr3t-bare\"\n\
                    {\"target\":\"161@10.0.0.1\",\"password\":\"ok\"}\n";
        let got = rows(text, InputFormat::Jsonl);
        for bad in &got[..3] {
            let message = &bad.as_ref().unwrap_err().message;
            assert!(message.contains("string fields"), "{message}");
            assert!(
                !message.contains("8675309421") && !message.contains("s3cr3t"),
                "{message}"
            );
        }
        let ok = got[3].as_ref().unwrap();
        assert_eq!(ok.password.as_ref().unwrap().expose(), "ok");
    }

    #[test]
    fn csv_rows_with_the_wrong_number_of_cells_are_bad_rows_never_quoted() {
        // An unquoted comma in the password: `tail9` would have become the event.
        let text = "target,password,event\n\
                    159@10.0.0.1,s3cr3t,tail9,\n\
                    160@10.0.0.1\n\
                    161@10.0.0.1,ok,reboot\n";
        let got = rows(text, InputFormat::Csv);
        assert_eq!(got.len(), 3);
        let long = got[0].as_ref().unwrap_err();
        assert_eq!((long.line, long.index), (2, 0));
        assert_eq!(
            long.message,
            "expected 3 cells as in the header row, found 4 (a cell holding a comma must be \
             quoted)"
        );
        let short = got[1].as_ref().unwrap_err();
        assert_eq!((short.line, short.index), (3, 1));
        assert!(short.message.contains("found 1"), "{}", short.message);
        let ok = got[2].as_ref().unwrap();
        assert_eq!(ok.event.as_deref(), Some("reboot"));
    }

    #[test]
    fn a_csv_row_starting_with_a_hash_is_a_row_not_a_comment() {
        let text = "id,target\n#12,159@10.0.0.1\n# not a comment,160@10.0.0.1\n";
        let got = rows(text, InputFormat::Csv);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().id.as_deref(), Some("#12"));
        assert_eq!(
            got[1].as_ref().unwrap().id.as_deref(),
            Some("# not a comment")
        );
        let n = count_records(Box::new(std::io::Cursor::new(text)), InputFormat::Csv);
        assert_eq!(n, 2);
    }

    #[test]
    fn jsonl_lines_starting_with_a_hash_are_comments() {
        let text = "# a comment\n  #another\n{\"target\":\"159@h\"}\n";
        let got = rows(text, InputFormat::Jsonl);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().line, 3);
        let n = count_records(Box::new(std::io::Cursor::new(text)), InputFormat::Jsonl);
        assert_eq!(n, 1);
    }

    #[test]
    fn csv_cells_are_text_as_written() {
        let text = "target,auth_user,id,password,url\n\
                    0123@10.0.0.1,0123,007,0042, 1.50 \n";
        let got = rows(text, InputFormat::Csv);
        let row = got[0].as_ref().unwrap();
        assert_eq!(row.target.as_deref(), Some("0123@10.0.0.1"));
        assert_eq!(row.auth_user.as_deref(), Some("0123"));
        assert_eq!(row.id.as_deref(), Some("007"));
        assert_eq!(row.password.as_ref().unwrap().expose(), "0042");
        assert_eq!(row.url.as_deref(), Some("1.50"));
    }

    #[test]
    fn csv_needs_a_target_column() {
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new("host,pw\na,b\n"));
        assert!(RowReader::new(reader, InputFormat::Csv).is_err());
    }

    #[test]
    fn jsonl_rows_skip_blank_lines_and_report_bad_ones() {
        let text = "{\"target\":\"159@h\",\"id\":1}\n\n{not json\n{\"target\":\"160@h\",\"password\":\"p\",\"event\":\"reboot\",\"extra\":true}\n{\"id\":\"x\"}\n";
        let got = rows(text, InputFormat::Jsonl);
        assert_eq!(got.len(), 4);
        let a = got[0].as_ref().unwrap();
        assert_eq!((a.line, a.index, a.id.as_deref()), (1, 0, Some("1")));
        let bad = got[1].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.index), (3, 1));
        let b = got[2].as_ref().unwrap();
        assert_eq!(
            (b.line, b.index, b.event.as_deref()),
            (4, 2, Some("reboot"))
        );
        assert_eq!(got[3].as_ref().unwrap_err().line, 5);
    }

    #[test]
    fn an_over_long_jsonl_line_is_a_bad_row_not_quoted_and_the_next_line_is_read() {
        let long = format!(
            "{{\"target\":\"159@h\",\"password\":\"s3cr3t{}\"}}",
            "x".repeat(MAX_LINE)
        );
        let exact = format!(
            "{{\"target\":\"160@h\",\"id\":\"{}\"}}",
            "y".repeat(MAX_LINE - 30)
        );
        let exact = format!("{exact}{}", " ".repeat(MAX_LINE - exact.len()));
        assert_eq!(exact.len(), MAX_LINE);
        // Long lines at the end, with and without a newline.
        for end in ["\n", ""] {
            let text = format!("{long}{long}\n{{\"target\":\"161@h\"}}\n{exact}\n{long}{end}");
            let got = rows(&text, InputFormat::Jsonl);
            assert_eq!(got.len(), 4);
            let bad = got[0].as_ref().unwrap_err();
            assert_eq!((bad.line, bad.index), (1, 0));
            assert_eq!(
                bad.message,
                format!("the line is longer than {MAX_LINE} bytes")
            );
            let next = got[1].as_ref().unwrap();
            assert_eq!((next.line, next.target.as_deref()), (2, Some("161@h")));
            let exact = got[2].as_ref().unwrap();
            assert_eq!((exact.line, exact.target.as_deref()), (3, Some("160@h")));
            let last = got[3].as_ref().unwrap_err();
            assert_eq!(last.line, 4);
            assert!(!format!("{got:?}").contains("s3cr3t"));
            let n = count_records(
                Box::new(std::io::Cursor::new(text.clone())),
                InputFormat::Jsonl,
            );
            assert_eq!(n, 4);
        }
    }

    #[test]
    fn a_jsonl_line_that_is_not_utf8_is_a_bad_row() {
        let mut text = b"{\"target\":\"\xff\"}\n".to_vec();
        text.extend_from_slice(b"{\"target\":\"162@h\"}\n");
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text));
        let got: Vec<_> = RowReader::new(reader, InputFormat::Jsonl)
            .unwrap()
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].as_ref().unwrap_err().message,
            "the line is not UTF-8 text"
        );
        assert_eq!(got[1].as_ref().unwrap().line, 2);
    }

    #[test]
    fn counts_match_the_reader() {
        let csv = "target\na\n\"b\nc\"\n\nd\n";
        let n = count_records(Box::new(std::io::Cursor::new(csv)), InputFormat::Csv);
        assert_eq!(n as usize, rows(csv, InputFormat::Csv).len());
        let jsonl = "{}\n\n{\"target\":\"a\"}\n";
        let n = count_records(Box::new(std::io::Cursor::new(jsonl)), InputFormat::Jsonl);
        assert_eq!(n as usize, rows(jsonl, InputFormat::Jsonl).len());
    }
}
