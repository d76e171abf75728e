//! Runs the ```console blocks of docs/tour.md carrying TAG (e.g. `rig`, the VM column's block)
//! and checks their output (nook_tests::tour). `nook` is `$NOOK_BIN`, else `nook` on PATH.
//!
//!   nook-tour-check TOUR.md TAG

use std::process::{Command, ExitCode};

use nook_tests::tour;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, tag] = args.as_slice() else {
        eprintln!("usage: nook-tour-check TOUR.md TAG");
        return ExitCode::from(2);
    };
    let nook = std::env::var("NOOK_BIN").unwrap_or_else(|_| "nook".into());
    let result = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {file}: {e}"))
        .and_then(|text| tour::parse(&text))
        .and_then(|blocks| {
            tour::run_blocks(&blocks, Some(tag), &mut |words| {
                let program = if words[0] == "nook" {
                    nook.as_str()
                } else {
                    words[0].as_str()
                };
                match Command::new(program).args(&words[1..]).output() {
                    Ok(out) => {
                        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                        text.push_str(&String::from_utf8_lossy(&out.stderr));
                        (text, out.status.code().unwrap_or(128))
                    }
                    Err(e) => (format!("cannot run {program}: {e}\n"), 127),
                }
            })
        });
    match result {
        Ok(0) => {
            eprintln!("nook-tour-check: FAIL: {file} has no `console {tag}` block");
            ExitCode::FAILURE
        }
        Ok(n) => {
            println!("nook-tour-check: {file} [{tag}]: {n} commands print what the page shows");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nook-tour-check: FAIL: {file}: {e}");
            ExitCode::FAILURE
        }
    }
}
