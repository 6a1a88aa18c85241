//! The `sipnotify` command: a thin clap front end over the library's public API.

mod cli;

// A campaign makes many small, short-lived allocations, which mimalloc serves faster than
// glibc's malloc, and in memory that does not grow with the run (README, Performance).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
