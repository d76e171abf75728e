//! The agent binary resets the machine when it ends; run anywhere but as a guest's PID 1 it must
//! refuse before touching anything.

use std::process::Command;

#[test]
fn agent_refuses_to_run_unless_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_nook-agent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must run as PID 1"), "{err}");
}
