//! The `sipnotify` command: a thin clap front end over the library's public API.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
