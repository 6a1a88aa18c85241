//! Campaigns: one event to many phones, read from a streamed CSV or JSON Lines file.
//!
//! The pieces are small and mostly pure, so the command line and users' own programs can
//! combine them:
//!
//! - [`input`] streams rows from CSV (with a header) or JSON Lines, each with its line
//!   number; a bad row is an error item, never the end of the stream.
//! - [`target`] turns a row and the command-line defaults into a [`Notify`](crate::Notify)
//!   and the key that names the row in the journal.
//! - [`shard`] picks every N-th row starting at K (`--shard K/N`).
//! - [`journal`] is the append-only JSON Lines journal and the resume state read back from
//!   it (a set of keys, never whole records).
//! - [`retry`] is the retry policy: what is retried, exponential backoff with jitter,
//!   `Retry-After`.
//! - [`pace`] spreads starts uniformly at random over a window without knowing them all.
//! - [`summary`] counts outcomes, keeps latency percentiles in a fixed-size histogram and
//!   the most frequent failure reasons.
//! - [`run`] is the tokio runner: concurrency, rate, spread, retries, journal, stop.
//!
//! Memory does not grow with the input: rows are streamed through a bounded channel, the
//! histogram and the reason table have fixed bounds, and only the journal's resume state
//! (one key per journaled row) grows, with the journal rather than the input.

pub mod input;
pub mod journal;
pub mod pace;
pub mod retry;
pub mod run;
pub mod shard;
pub mod summary;
pub mod target;

pub use input::{InputFormat, Row, RowError, RowReader};
pub use journal::{Journal, ResumeState};
pub use retry::RetryPolicy;
pub use run::{Campaign, Item, Job, Record, Verdict};
pub use shard::Shard;
pub use summary::Summary;
pub use target::Defaults;
