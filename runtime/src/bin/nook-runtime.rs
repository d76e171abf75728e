//! `nook-runtime`: nook's OCI runtime, with runc's command line (see `nook::oci`).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(u8::try_from(nook::oci::main()).unwrap_or(1))
}
