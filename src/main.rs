//! The `cardswitch` binary: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    cardswitch::cli::run(cardswitch::cli::Cli::parse())
}
