//! The `nook` command line: parse, run, and turn errors into docker's exit codes.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// Exit status for errors of nook itself (docker's convention).
const EXIT_NOOK_ERROR: u8 = 125;

fn main() -> ExitCode {
    // `nook ps | head -1` ends quietly, as docker's does.
    nook::util::sigpipe::end_on_closed_output();
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
    if puts_processes_into_containers(&parsed.command) {
        // Returns only when already running from a sealed copy, or on failure.
        if let Err(e) = nook::sealed_exe::ensure_sealed() {
            eprintln!("Error: {}", nook::errors::chain(&e));
            return ExitCode::from(EXIT_NOOK_ERROR);
        }
    }
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

/// The verbs whose processes enter a container's pid namespace before their `execve` (its first
/// process, `exec`): they run from a sealed copy of nook so that no container can write into the
/// nook file through `/proc/<pid>/exe` (see `nook::sealed_exe`). `run` of a VM container does
/// not: its processes run in the guest, which sees no host process (the copy of an 11 MiB binary
/// and the re-execution were a third of a warm VM start in the rig). `start`, `restart` and
/// `exec` learn the column only from the container's record, and seal as before. `bench` only
/// spawns `nook run`, which seals itself; the helpers of `stop`, `rm`, `diff` and the like join
/// no container's pid namespace, so no container sees them.
fn puts_processes_into_containers(command: &Option<cli::Command>) -> bool {
    use cli::Command as C;
    match command {
        Some(C::Run(args)) => !args.wants_vm(),
        Some(C::Start(_) | C::Restart(_) | C::Exec(_)) => true,
        _ => false,
    }
}
