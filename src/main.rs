//! The `cardswitch` binary: parses the command line and hands it to the library.
#![forbid(unsafe_code)]

use clap::Parser;

// glibc's malloc and free were a fifth of the daemon's instructions per txn
// (issue 14: a request's rows, strings and buffers are many small
// allocations, freed on other threads than made them).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cardswitch::cli::run(cardswitch::cli::Cli::parse())
}
