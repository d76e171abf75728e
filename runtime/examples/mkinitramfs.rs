//! Writes the guest initramfs for an agent binary, for scripts and the nested rig:
//!
//!     cargo run -p nook --example mkinitramfs -- "$(agent/build-static.sh)" initramfs.cpio

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [agent, out] = args.as_slice() else {
        eprintln!("usage: mkinitramfs AGENT_BINARY OUTPUT");
        return ExitCode::from(2);
    };
    match nook::isolation::vm::initramfs::build_initramfs(agent, out) {
        Ok(()) => {
            println!("{}", out.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            let mut msg = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("mkinitramfs: {msg}");
            ExitCode::FAILURE
        }
    }
}
