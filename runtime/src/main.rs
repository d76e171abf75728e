//! The `nook` command line: parse, run, and turn errors into docker's exit codes.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Exit status for errors of nook itself (docker's convention).
const EXIT_NOOK_ERROR: u8 = 125;

fn main() -> ExitCode {
    let parsed = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_NOOK_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli::run(parsed, &cli::Context::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(code) = cli::status::exit_code(&e) {
                if e.downcast_ref::<cli::status::ExitStatus>().is_none() {
                    eprintln!("Error: {e:#}");
                }
                return ExitCode::from(code as u8);
            }
            // The whole cause chain, once: "what failed: why: root cause".
            eprintln!("Error: {e:#}");
            ExitCode::from(EXIT_NOOK_ERROR)
        }
    }
}
