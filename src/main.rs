//! The `sipnotify` command: a thin clap front end over the library's public API.

mod cli;

// glibc's malloc was a fifth of a campaign's CPU (many small, short-lived allocations).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
