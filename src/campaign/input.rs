//! Streaming rows from CSV (with a header row) or JSON Lines.
//!
//! Both formats are read a line at a time, in bounded memory. A row is one line (no cell
//! of this format holds a newline), so a mistake in a line (a stray quote, a line too
//! long, bytes that are not UTF-8) makes that line a bad row and reading goes on at the
//! next: every line ends as exactly one record, a row or a bad row, except the lines the
//! format skips (blank lines; for JSON Lines, `#` comments) and the CSV header row.

use super::defaults::BadRow;
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
    /// The 1-based line of the file that holds the row (filled in by the reader).
    #[serde(skip)]
    pub line: u64,
    /// The 0-based record index, bad rows included (filled in by the reader); sharding
    /// uses it.
    #[serde(skip)]
    pub index: u64,
    /// An opaque label copied to the output.
    #[serde(default, deserialize_with = "opt_string")]
    pub id: Option<String>,
    /// The phone line (required).
    #[serde(default, deserialize_with = "opt_string")]
    pub target: Option<String>,
    /// The digest user name (SIP), or the web user (HTTP, also as `user`).
    #[serde(default, alias = "user", deserialize_with = "opt_string")]
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
    /// The phone's vendor, for its own event (`sipnotify vendors`).
    #[serde(default, deserialize_with = "opt_string")]
    pub vendor: Option<String>,
    /// The phone's MAC address, to match its profile fetch (`--confirm-fetch`).
    #[serde(default, deserialize_with = "opt_string")]
    pub mac: Option<String>,
    /// HTTP: `execute`, `background`, `push`, `screenshot` or `info`.
    #[serde(default, deserialize_with = "opt_string")]
    pub action: Option<String>,
    /// HTTP: the background image URL.
    #[serde(default, deserialize_with = "opt_string")]
    pub image: Option<String>,
    /// HTTP: the background thumbnail URL.
    #[serde(default, deserialize_with = "opt_string")]
    pub icon: Option<String>,
    /// HTTP: the Execute URIs, separated by spaces (1 to 3).
    #[serde(default, deserialize_with = "opt_string")]
    pub uri: Option<String>,
}

impl Row {
    /// A row for `target` with every other cell missing, so the campaign's defaults apply.
    pub fn for_target(target: impl Into<String>) -> Row {
        Row {
            target: Some(target.into()),
            ..Row::default()
        }
    }

    /// The target cell, which every channel needs: a row without one is bad (the reader
    /// reports those, but a library caller may build rows of its own).
    pub(crate) fn required_target(&self) -> Result<&str, BadRow> {
        self.target
            .as_deref()
            .ok_or_else(|| BadRow("the row has no target".into()))
    }
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
    /// The 1-based line that holds the row.
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

/// The longest line (a CSV row, the CSV header row or a JSON Lines line), newline
/// excluded: a longer one is a bad row, skipped without being kept in memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Reads one line of at most [`MAX_LINE`] bytes (plus its newline) into `buf`. `Ok(None)`
/// at the end of the input; `Ok(Some(false))` for a line that was too long, whose rest has
/// been skipped up to and including its newline (`buf` then holds only its start). A last
/// line without a newline ends at the end of the input, never at a pause of a pipe.
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

/// Why a line holds no text to read.
enum LineError {
    /// It is longer than [`MAX_LINE`]; it has been skipped.
    TooLong,
    /// The input could not be read; it ends here.
    Read(std::io::Error),
}

/// The input a line at a time, numbered from 1, without the lines the format skips.
/// [`RowReader`] and [`count_records`] both read through it, so that a count is the number
/// of records the reader yields.
struct Lines {
    reader: Box<dyn BufRead + Send>,
    format: InputFormat,
    /// The number of the last line read.
    number: u64,
    buf: Vec<u8>,
}

impl Lines {
    fn new(reader: Box<dyn BufRead + Send>, format: InputFormat) -> Lines {
        Lines {
            reader,
            format,
            number: 0,
            buf: Vec::new(),
        }
    }

    /// The next line not skipped, with its number, without its line end (`\n` or
    /// `\r\n`); `None` at the end of the input. After a read error the input ends.
    fn next(&mut self) -> Option<(u64, Result<&[u8], LineError>)> {
        loop {
            self.number += 1;
            match read_bounded_line(&mut self.reader, &mut self.buf) {
                Ok(None) => return None,
                Ok(Some(false)) => return Some((self.number, Err(LineError::TooLong))),
                Ok(Some(true)) => {}
                Err(e) => {
                    self.reader = Box::new(std::io::empty());
                    return Some((self.number, Err(LineError::Read(e))));
                }
            }
            if !skipped(without_line_end(&self.buf), self.format) {
                return Some((self.number, Ok(without_line_end(&self.buf))));
            }
        }
    }
}

/// A line without its end, `\n` or `\r\n`.
fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a line is left out rather than read as a record: an empty line, and in JSON
/// Lines a line of spaces or a comment (`#`). CSV has no comments: a row whose first cell
/// starts with `#` (an id such as `#12`) is a row, never silently dropped; a CSV line of
/// spaces is a row too (a bad one), as the csv crate read it.
fn skipped(line: &[u8], format: InputFormat) -> bool {
    match format {
        InputFormat::Csv => line.is_empty(),
        InputFormat::Jsonl => {
            let text = line.trim_ascii();
            text.is_empty() || text.starts_with(b"#")
        }
    }
}

/// One CSV line's cells, in one buffer reused from row to row.
#[derive(Default)]
struct Cells {
    text: String,
    ends: Vec<usize>,
}

impl Cells {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let cell = &self.text[start..end];
            start = end;
            cell
        })
    }

    /// Splits a line into cells as the csv crate reads a record: a comma ends a cell; a
    /// cell starting with `"` is quoted up to the next lone `"` (it may hold commas, and
    /// `""` in it is a `"`), what follows the closing quote is kept as written; any other
    /// `"` is an ordinary character. `false` when a quoted cell is still open at the end of
    /// the line: a cell never spans lines, so the quote is a mistake in this row, which
    /// must not swallow the rows after it.
    fn split(&mut self, line: &str) -> bool {
        self.text.clear();
        self.ends.clear();
        let bytes = line.as_bytes();
        let mut at = 0;
        loop {
            if bytes.get(at) == Some(&b'"') {
                at += 1;
                loop {
                    let Some(quote) = memchr::memchr(b'"', &bytes[at..]) else {
                        return false;
                    };
                    self.text.push_str(&line[at..at + quote]);
                    at += quote + 1;
                    if bytes.get(at) != Some(&b'"') {
                        break;
                    }
                    self.text.push('"');
                    at += 1;
                }
            }
            let end = memchr::memchr(b',', &bytes[at..]).map_or(line.len(), |i| at + i);
            self.text.push_str(&line[at..end]);
            self.ends.push(self.text.len());
            if end == line.len() {
                return true;
            }
            at = end + 1;
        }
    }
}

/// The CSV header row's column names, and the cells of the line being read.
struct Csv {
    columns: Vec<String>,
    cells: Cells,
}

impl Csv {
    /// Reads the header row: the first line that is not empty.
    fn header(lines: &mut Lines) -> Result<Csv, InputError> {
        let refuse = |why: &str| Err(InputError(format!("the CSV header row {why}")));
        let text = match lines.next() {
            None => return Err(InputError("the CSV input is empty: no header row".into())),
            Some((_, Err(LineError::TooLong))) => {
                return refuse(&format!("is longer than {} KiB", MAX_LINE / 1024))
            }
            Some((_, Err(LineError::Read(e)))) => return refuse(&format!("cannot be read: {e}")),
            Some((_, Ok(line))) => match std::str::from_utf8(line) {
                Ok(text) => text,
                Err(_) => return refuse("is not UTF-8 text"),
            },
        };
        // Lines end with `\n` or `\r\n`. A file whose lines end with `\r` alone would be one
        // line, header and rows, and nothing would be sent without a word.
        if text.contains('\r') {
            return refuse("holds a carriage return: lines must end with \\n or \\r\\n");
        }
        let mut cells = Cells::default();
        if !cells.split(text) {
            return refuse("has an unterminated quote");
        }
        let columns: Vec<String> = cells.iter().map(|c| c.trim().to_string()).collect();
        if !columns.iter().any(|c| c == "target") {
            // The names are not quoted: a file with no header row has a row there, which
            // may hold a password.
            return refuse(&format!(
                "has no `target` column ({} cells); the first line must name the columns, \
                 e.g. target,password",
                columns.len()
            ));
        }
        Ok(Csv { columns, cells })
    }

    /// The header's names that are no column sipnotify reads (a typo such as `pasword`
    /// would otherwise send every row without its password).
    fn unknown_columns(&self) -> Vec<&str> {
        let mut probe = Row::default();
        self.columns
            .iter()
            .map(String::as_str)
            .filter(|name| !set_cell(&mut probe, name, ""))
            .collect()
    }

    /// The row a line holds, or why it holds none, without quoting it.
    fn row(&mut self, line: &str) -> Result<Row, String> {
        if !self.cells.split(line) {
            return Err("unterminated quote (a quoted cell must end on its line)".into());
        }
        if self.cells.len() != self.columns.len() {
            // Cells would be shifted (an unquoted comma in a password makes its tail the
            // next column): refused.
            return Err(format!(
                "expected {} cells as in the header row, found {} (a cell holding a comma \
                 must be quoted)",
                self.columns.len(),
                self.cells.len()
            ));
        }
        Ok(csv_row(&self.columns, self.cells.iter()))
    }
}

/// Streams rows; memory stays bounded by [`MAX_LINE`].
pub struct RowReader {
    lines: Lines,
    /// `None` for JSON Lines.
    csv: Option<Csv>,
    index: u64,
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
        let mut lines = Lines::new(reader, format);
        let csv = match format {
            InputFormat::Csv => Some(Csv::header(&mut lines)?),
            InputFormat::Jsonl => None,
        };
        Ok(RowReader {
            lines,
            csv,
            index: 0,
        })
    }
}

impl RowReader {
    /// The CSV header's names that are no column sipnotify reads; their cells are ignored.
    /// (JSON Lines fields that are not read are ignored too, without a list.)
    pub fn unknown_columns(&self) -> Vec<&str> {
        self.csv
            .as_ref()
            .map_or_else(Vec::new, Csv::unknown_columns)
    }
}

impl Iterator for RowReader {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, read) = self.lines.next()?;
        let index = self.index;
        self.index += 1;
        // No message quotes the line: it may hold a password.
        let row = match (read, &mut self.csv) {
            (Err(LineError::TooLong), Some(_)) => {
                Err(format!("the row is longer than {} KiB", MAX_LINE / 1024))
            }
            (Err(LineError::TooLong), None) => {
                Err(format!("the line is longer than {MAX_LINE} bytes"))
            }
            (Err(LineError::Read(e)), _) => Err(format!("cannot read the input: {e}")),
            (Ok(bytes), csv) => match (std::str::from_utf8(bytes), csv) {
                (Ok(text), Some(csv)) => csv.row(text),
                (Ok(text), None) => {
                    serde_json::from_str::<Row>(text.trim()).map_err(|e| json_message(&e))
                }
                (Err(_), Some(_)) => Err("the row is not UTF-8 text".into()),
                (Err(_), None) => Err("the line is not UTF-8 text".into()),
            },
        };
        Some(match row {
            Ok(row) if row.target.is_some() => Ok(Row { line, index, ..row }),
            Ok(_) => Err(RowError {
                line,
                index,
                message: "the row has no target".into(),
            }),
            Err(message) => Err(RowError {
                line,
                index,
                message,
            }),
        })
    }
}

/// A CSV row, cell by cell, each cell the text as written: deserializing it with serde
/// would read `0123` as the number 123 (an `auth_user` of `0123` became `123`).
fn csv_row<'a>(columns: &[String], cells: impl Iterator<Item = &'a str>) -> Row {
    let mut row = Row::default();
    for (name, cell) in columns.iter().zip(cells) {
        set_cell(&mut row, name, cell);
    }
    row
}

/// Sets the cell of column `name`; false when no such column is read.
fn set_cell(row: &mut Row, name: &str, cell: &str) -> bool {
    let text = || Some(cell.trim().to_string()).filter(|t| !t.is_empty());
    match name {
        "id" => row.id = text(),
        "target" => row.target = text(),
        "auth_user" | "user" => row.auth_user = text(),
        // Taken as given (no trimming); an empty cell is a missing one.
        "password" => row.password = (!cell.is_empty()).then(|| Password::new(cell)),
        "event" => row.event = text(),
        "url" => row.url = text(),
        "proxy" => row.proxy = text(),
        "transport" => row.transport = text(),
        "vendor" => row.vendor = text(),
        "mac" => row.mac = text(),
        "action" => row.action = text(),
        "image" => row.image = text(),
        "icon" => row.icon = text(),
        "uri" => row.uri = text(),
        _ => return false,
    }
    true
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
             proxy, transport, vendor, mac, action, image, icon, uri (column {column})"
        ),
    }
}

/// Counts the records [`RowReader`] would yield (rows and bad rows), in bounded memory, for
/// progress and `--spread`: the lines it reads, less the CSV header row.
pub fn count_records(reader: Box<dyn BufRead + Send>, format: InputFormat) -> u64 {
    let mut lines = Lines::new(reader, format);
    let mut n = 0u64;
    while lines.next().is_some() {
        n += 1;
    }
    match format {
        InputFormat::Csv => n.saturating_sub(1),
        InputFormat::Jsonl => n,
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
    fn columns_that_are_not_read_are_named() {
        let reader = |text: &str| {
            RowReader::new(
                Box::new(std::io::Cursor::new(text.to_string())),
                InputFormat::Csv,
            )
            .unwrap()
        };
        let typo = reader("target,pasword,user,Event\n");
        assert_eq!(typo.unknown_columns(), ["pasword", "Event"]);
        let known = "id,target,auth_user,user,password,event,url,proxy,transport,vendor,mac,\
                     action,image,icon,uri\n";
        assert!(reader(known).unknown_columns().is_empty());
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
        let message = format!("the line is longer than {MAX_LINE} bytes");
        // Long lines at the end, with and without a newline.
        for end in ["\n", ""] {
            let text = format!("{long}{long}\n{{\"target\":\"161@h\"}}\n{exact}\n{long}{end}");
            let got = over_long_rows_are_bad(&text, InputFormat::Jsonl, 1, &message);
            let exact = got[2].as_ref().unwrap();
            assert_eq!((exact.line, exact.target.as_deref()), (3, Some("160@h")));
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

    fn count(text: &str, format: InputFormat) -> u64 {
        count_records(Box::new(std::io::Cursor::new(text.to_string())), format)
    }

    /// The rows of `text` from line `first`: an over-long row, `161@h`, a row of exactly
    /// `MAX_LINE` bytes and an over-long row. Checks that the long ones are bad rows saying
    /// `message` without quoting their cells (`s3cr3t...`), and that the reader and the count
    /// go on past them; returns the rows, for the format's own checks of the exact one.
    #[track_caller]
    fn over_long_rows_are_bad(
        text: &str,
        format: InputFormat,
        first: u64,
        message: &str,
    ) -> Vec<Result<Row, RowError>> {
        let got = rows(text, format);
        assert_eq!(got.len(), 4);
        let bad = got[0].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.index), (first, 0));
        assert_eq!(bad.message, message);
        let next = got[1].as_ref().unwrap();
        assert_eq!(
            (next.line, next.target.as_deref()),
            (first + 1, Some("161@h"))
        );
        assert_eq!(got[3].as_ref().unwrap_err().line, first + 3);
        assert!(!format!("{got:?}").contains("s3cr3t"));
        assert_eq!(count(text, format), 4);
        got
    }

    #[test]
    fn counts_match_the_reader() {
        // A quoted cell does not go on to the next line: `"b` and `c"` are two records. A
        // line of spaces is a (bad) row.
        let csv = "target\na\n\"b\nc\"\n\n  \nd\n";
        assert_eq!(rows(csv, InputFormat::Csv).len(), 5);
        assert_eq!(count(csv, InputFormat::Csv), 5);
        // A line of a non-ASCII space is a bad row for both (it was skipped by the reader
        // and counted by the count).
        let jsonl = "{}\n\n{\"target\":\"a\"}\n\u{a0}\n # c\n";
        assert_eq!(rows(jsonl, InputFormat::Jsonl).len(), 3);
        assert_eq!(count(jsonl, InputFormat::Jsonl), 3);
    }

    #[test]
    fn a_stray_quote_makes_only_its_row_bad_and_reading_goes_on() {
        let text = "target,password,id\n\
                    159@h,pw1,a\n\
                    160@h,\"s3cr3t,b\n\
                    161@h,\"pw \"\"quoted\"\", with comma\",c\n\
                    162@h,\"s3cr3t\"\"\n\
                    163@h,pw\"x,d\n\
                    164@h,pw4,e\n";
        let got = rows(text, InputFormat::Csv);
        let unterminated = "unterminated quote (a quoted cell must end on its line)";
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().line, 2);
        let bad = got[1].as_ref().unwrap_err();
        assert_eq!(
            (bad.line, bad.index, bad.message.as_str()),
            (3, 1, unterminated)
        );
        let quoted = got[2].as_ref().unwrap();
        assert_eq!((quoted.line, quoted.id.as_deref()), (4, Some("c")));
        assert_eq!(
            quoted.password.as_ref().unwrap().expose(),
            "pw \"quoted\", with comma"
        );
        let bad = got[3].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.message.as_str()), (5, unterminated));
        // A quote inside an unquoted cell is an ordinary character.
        let inner = got[4].as_ref().unwrap();
        assert_eq!(inner.password.as_ref().unwrap().expose(), "pw\"x");
        let last = got[5].as_ref().unwrap();
        assert_eq!(
            (last.line, last.index, last.id.as_deref()),
            (7, 5, Some("e"))
        );
        assert!(!format!("{got:?}").contains("s3cr3t"));
        assert_eq!(count(text, InputFormat::Csv), 6);
    }

    #[test]
    fn an_over_long_csv_row_is_a_bad_row_not_quoted_and_the_next_line_is_read() {
        let long = format!("159@h,s3cr3t{}", "x".repeat(MAX_LINE));
        let exact = format!("160@h,{}", "y".repeat(MAX_LINE - 6));
        assert_eq!(exact.len(), MAX_LINE);
        // Long rows at the end, with and without a newline.
        for end in ["\n", ""] {
            let text = format!("target,password\n{long}\n161@h,ok\n{exact}\n{long}{end}");
            let message = "the row is longer than 64 KiB";
            let got = over_long_rows_are_bad(&text, InputFormat::Csv, 2, message);
            let exact = got[2].as_ref().unwrap();
            assert_eq!(exact.line, 4);
            assert_eq!(
                exact.password.as_ref().unwrap().expose().len(),
                MAX_LINE - 6
            );
        }
        // A cell of 8 MiB, streamed: skipped a buffer at a time.
        let input = std::io::Cursor::new("target,password\n159@h,")
            .chain(std::io::repeat(b'x').take(8 << 20))
            .chain(std::io::Cursor::new("\n160@h,ok\n"));
        let reader = RowReader::new(Box::new(std::io::BufReader::new(input)), InputFormat::Csv);
        let got: Vec<_> = reader.unwrap().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap_err().line, 2);
        assert_eq!(got[1].as_ref().unwrap().line, 3);
    }

    #[test]
    fn the_csv_header_row_is_bounded_and_checked_without_quoting_it() {
        let refused = |text: String| {
            let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text));
            RowReader::new(reader, InputFormat::Csv).unwrap_err().0
        };
        let long = format!("target,{}\n159@h,pw\n", "n".repeat(MAX_LINE));
        assert_eq!(refused(long), "the CSV header row is longer than 64 KiB");
        let message = refused("target,\"password\n159@h,pw\n\"\n".into());
        assert_eq!(message, "the CSV header row has an unterminated quote");
        // Lines ending with `\r` alone: one line, which would have no rows.
        let message = refused("target,password\r159@h,pw\r160@h,pw\r".into());
        assert!(message.contains("carriage return"), "{message}");
        // No header row: the first row is taken for it, and not quoted.
        let message = refused("159@h,s3cr3t\n160@h,pw\n".into());
        assert!(
            message.contains("no `target` column (2 cells)"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
        assert_eq!(
            refused(String::new()),
            "the CSV input is empty: no header row"
        );
        // Blank lines before the header row are skipped and counted; `\r\n` ends a line.
        let text = "\n\r\n target , password\r\n159@h,pw\r\n";
        let got = rows(text, InputFormat::Csv);
        let row = got[0].as_ref().unwrap();
        assert_eq!((row.line, row.target.as_deref()), (4, Some("159@h")));
        assert_eq!(row.password.as_ref().unwrap().expose(), "pw");
        assert_eq!(count(text, InputFormat::Csv), 1);
    }

    /// Hands out its input a byte per read, as a slow pipe may.
    struct Trickle(std::io::Cursor<&'static str>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn a_last_line_without_a_newline_is_a_row_read_at_the_end_of_the_input() {
        let trickle = |text: &'static str, format| -> Vec<_> {
            let reader = std::io::BufReader::new(Trickle(std::io::Cursor::new(text)));
            RowReader::new(Box::new(reader), format).unwrap().collect()
        };
        // Each input here is two rows: the second, read at the end.
        let second = |text: &'static str, format| {
            let got = trickle(text, format);
            assert_eq!(got.len(), 2);
            got.into_iter().nth(1).unwrap()
        };
        let csv = "target,id\n159@h,a\n160@h,bcd";
        let last = second(csv, InputFormat::Csv).unwrap();
        assert_eq!((last.line, last.id.as_deref()), (3, Some("bcd")));
        assert_eq!(count(csv, InputFormat::Csv), 2);
        // A quote still open at the end of the input: a bad row, not a cell.
        let csv = "target,id\n159@h,a\n160@h,\"b";
        assert_eq!(second(csv, InputFormat::Csv).unwrap_err().line, 3);
        let jsonl = "{\"target\":\"159@h\"}\n{\"target\":\"160@h\"}";
        let last = second(jsonl, InputFormat::Jsonl).unwrap();
        assert_eq!((last.line, last.target.as_deref()), (2, Some("160@h")));
        assert_eq!(count(jsonl, InputFormat::Jsonl), 2);
    }

    #[test]
    fn a_csv_row_that_is_not_utf8_is_a_bad_row() {
        let mut text = b"target,password\n159@h,\xff\xfe\n".to_vec();
        text.extend_from_slice(b"160@h,pw\n");
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text));
        let got: Vec<_> = RowReader::new(reader, InputFormat::Csv).unwrap().collect();
        assert_eq!(got.len(), 2);
        let bad = got[0].as_ref().unwrap_err();
        assert_eq!(
            (bad.line, bad.message.as_str()),
            (2, "the row is not UTF-8 text")
        );
        assert_eq!(got[1].as_ref().unwrap().line, 3);
    }
}
