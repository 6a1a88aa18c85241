//! `--report FILE`: one record per target in CSV or JSON Lines, beside the journal.

use super::journal::end_torn_line;
use super::record::{Record, CSV_HEADER};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// An open report.
#[derive(Debug)]
pub enum Report {
    /// CSV with a header row.
    Csv(Box<csv::Writer<File>>),
    /// JSON Lines.
    Jsonl(BufWriter<File>),
}

impl Report {
    /// Creates (or truncates) the report: CSV if the name ends in `.csv`, else JSON Lines.
    /// When `append` (a resumed campaign), opens it to append after the earlier runs'
    /// records instead, with no second CSV header.
    pub fn open(path: &Path, append: bool) -> io::Result<Report> {
        let (file, empty) = if append {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?;
            let len = end_torn_line(&mut file)?;
            (file, len == 0)
        } else {
            (File::create(path)?, true)
        };
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        Ok(if csv {
            let mut w = csv::Writer::from_writer(file);
            if empty {
                w.write_record(CSV_HEADER)?;
            }
            Report::Csv(Box::new(w))
        } else {
            Report::Jsonl(BufWriter::new(file))
        })
    }

    /// Adds one record.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        match self {
            Report::Csv(w) => w.write_record(record.csv()).map_err(io::Error::from),
            Report::Jsonl(w) => record.json(false).write_line(w),
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Report::Csv(w) => w.flush(),
            Report::Jsonl(w) => w.flush(),
        }
    }
}
