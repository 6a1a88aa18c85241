//! `sipnotify completions SHELL` and `sipnotify man`: generated from the same clap
//! definitions as the parser, so they never disagree with it.

use super::{Cli, Failure};
use clap::CommandFactory;
use std::io::Write;

/// Prints the completion script of `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sipnotify", &mut script);
    write_all(&script)
}

/// Prints the man page (roff) on stdout: `sipnotify man | man -l -`.
pub fn man() -> Result<u8, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Failure::local(format!("cannot render the man page: {e}")))?;
    write_all(&page)
}

// Written at once, and a reader that went away is not an error (as for the out! macro).
fn write_all(bytes: &[u8]) -> Result<u8, Failure> {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
    Ok(0)
}
