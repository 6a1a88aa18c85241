//! Fuzzes the batch input reader with arbitrary bytes as CSV and as JSON Lines. Invariants:
//! no panic; the reader ends (at most one item per input byte, plus the header and the
//! end); line numbers never go backwards; record indexes count up by one, bad rows
//! included; no error message quotes a password cell; and every data line ends as exactly
//! one record (a row or a bad row), so that a stray quote or a long line never swallows
//! the lines after it, and `count_records` counts those records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipnotify::campaign::input::{count_records, InputFormat, RowReader, MAX_LINE};
use std::io::{BufReader, Cursor};

/// The records `data` holds, worked out from its lines alone: each line (the last one
/// without a newline included) is one, but for those skipped: empty ones (`\n`, `\r\n`),
/// in JSON Lines also spaces-only and `#` lines, and in CSV the header row (the first
/// line not empty). A line longer than MAX_LINE is a (bad) record, whatever it holds.
fn expected_records(data: &[u8], format: InputFormat) -> u64 {
    let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // What follows the last newline is a line only if it is not empty.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let records = lines
        .iter()
        .filter(|raw| {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            raw.len() > MAX_LINE
                || match format {
                    InputFormat::Csv => !line.is_empty(),
                    InputFormat::Jsonl => {
                        let text = line.trim_ascii();
                        !text.is_empty() && !text.starts_with(b"#")
                    }
                }
        })
        .count() as u64;
    match format {
        InputFormat::Csv => records - 1,
        InputFormat::Jsonl => records,
    }
}

fuzz_target!(|data: &[u8]| {
    for format in [InputFormat::Csv, InputFormat::Jsonl] {
        let input = Box::new(BufReader::new(Cursor::new(data.to_vec())));
        let Ok(reader) = RowReader::new(input, format) else {
            continue;
        };
        let (mut last_line, mut items) = (0u64, 0u64);
        for (expected_index, item) in reader.enumerate() {
            items += 1;
            assert!(items <= data.len() as u64 + 2, "the reader does not end");
            let (line, index) = match &item {
                Ok(row) => (row.line, row.index),
                Err(e) => {
                    assert!(!e.message.contains("fuzz-secret"), "{}", e.message);
                    (e.line, e.index)
                }
            };
            assert_eq!(index, expected_index as u64);
            assert!(line >= last_line, "line {line} after {last_line}");
            last_line = line;
        }
        assert_eq!(items, expected_records(data, format), "{format:?}");
        let counted = count_records(Box::new(Cursor::new(data.to_vec())), format);
        assert_eq!(counted, items, "{format:?}");
    }
});
