//! The `mailbag` binary: parses the command line and reports errors in one line.

use std::process::ExitCode;

use clap::Parser;
use mailbag::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            // NOTE: errors can quote server replies or file names: sanitise like everything shown.
            eprintln!("mailbag: {}", mailbag::sanitize::line(&e.to_string()));
            ExitCode::from(1)
        }
    }
}
