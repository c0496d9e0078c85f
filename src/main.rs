//! The `podmap` binary: parses arguments, runs a command, turns errors into messages.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("podmap: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
