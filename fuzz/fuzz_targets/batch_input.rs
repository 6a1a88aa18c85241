//! Fuzzes the batch input reader with arbitrary bytes as CSV and as JSON Lines. Invariants:
//! no panic; the reader ends (at most one item per input byte, plus the header and the
//! end); line numbers never go backwards; record indexes count up by one, bad rows
//! included; and no error message quotes a password cell.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipnotify::campaign::input::{InputFormat, RowReader};
use std::io::{BufReader, Cursor};

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
    }
});
