//! `nook-runtime`: nook's OCI runtime, with runc's command line (see `nook::oci`).

use std::process::ExitCode;

fn main() -> ExitCode {
    // `nook-runtime state ID | grep -q running` ends quietly, as runc's does.
    nook::util::sigpipe::end_on_closed_output();
    ExitCode::from(u8::try_from(nook::oci::main()).unwrap_or(1))
}
