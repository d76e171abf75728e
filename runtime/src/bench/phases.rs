//! The VM phases of one run, from the host's monotonic marks and the guest's boot times.
//!
//! The guest's clock starts at zero with its kernel; the agent sends its ready message right
//! after the container root is ready, so the host time of that message minus the guest's
//! `root_ready` is where the kernel started on the host clock. The other guest times (agent
//! start, entrypoint exec) are placed from there. Durations are not clamped: a negative one
//! would show that the clocks disagree, and the rig test checks they do not.

use serde::{Deserialize, Serialize};

use crate::isolation::vm::phases::PhaseRecord;

/// The phase names, in order. A cold start has no `restore`, a warm start no `kernel_boot`
/// (both are then zero).
pub const PHASES: [&str; 8] = [
    "image_prep",
    "vmm_start",
    "kernel_boot",
    "restore",
    "agent_ready",
    "entrypoint_exec",
    "exit",
    "teardown",
];

/// One phase of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub ms: f64,
}

/// The phases between `start_ns` (the bench spawned the program) and `end_ns` (it was reaped);
/// None when the record misses a mark (the VM failed before that step).
///
/// A warm start (the record has `resumed_ns`) runs no kernel boot: its guest clock counts from
/// the template's boot, so only differences of guest times are used. `vmm_start` runs until the
/// VMM connected (it has read and checked the snapshot by then), `restore` until the resumed
/// agent had its container's start data (the agent's start time, placed from the ready
/// message: the VMM sets the VM back, the guest runs on and reads the answer), `agent_ready` on
/// to the ready message (reseed, disks, mounts).
pub fn phases(start_ns: u64, record: &PhaseRecord, end_ns: u64) -> Option<Vec<Phase>> {
    let ready = i128::from(record.ready_ns?);
    let root_ready = i128::from(record.guest_root_ready_ns?);
    let exec = ready + i128::from(record.guest_exec_ns?) - root_ready;
    let spawn = i128::from(record.vmm_spawn_ns?);
    let marks = match record.resumed_ns {
        None => {
            let kernel_start = ready - root_ready;
            let agent_start = kernel_start + i128::from(record.guest_agent_start_ns?);
            [
                i128::from(start_ns),
                spawn,
                kernel_start,
                agent_start,
                agent_start,
                ready,
                exec,
                i128::from(record.exit_ns?),
                i128::from(end_ns),
            ]
        }
        Some(_) => {
            let connected = i128::from(record.vmm_connected_ns?);
            let resumed = ready - root_ready + i128::from(record.guest_agent_start_ns?);
            [
                i128::from(start_ns),
                spawn,
                connected,
                connected,
                resumed,
                ready,
                exec,
                i128::from(record.exit_ns?),
                i128::from(end_ns),
            ]
        }
    };
    Some(
        PHASES
            .iter()
            .zip(marks.windows(2))
            .map(|(name, w)| Phase {
                name: (*name).to_string(),
                ms: (w[1] - w[0]) as f64 / 1e6,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn guest_times_are_placed_from_the_ready_message() {
        let record = PhaseRecord {
            vmm_spawn_ns: Some(1_010 * MS),
            vmm_connected_ns: Some(1_012 * MS),
            ready_ns: Some(1_100 * MS),
            guest_agent_start_ns: Some(60 * MS),
            guest_root_ready_ns: Some(80 * MS),
            guest_exec_ns: Some(85 * MS),
            exit_ns: Some(1_110 * MS),
            vmm_exit_ns: Some(1_115 * MS),
            resumed_ns: None,
        };
        let p = phases(1_000 * MS, &record, 1_120 * MS).unwrap();
        let got: Vec<(&str, f64)> = p.iter().map(|p| (p.name.as_str(), p.ms)).collect();
        assert_eq!(
            got,
            vec![
                ("image_prep", 10.0),
                ("vmm_start", 10.0),
                ("kernel_boot", 60.0),
                ("restore", 0.0),
                ("agent_ready", 20.0),
                ("entrypoint_exec", 5.0),
                ("exit", 5.0),
                ("teardown", 10.0),
            ]
        );
        let total: f64 = p.iter().map(|p| p.ms).sum();
        assert_eq!(total, 120.0);
    }

    #[test]
    fn a_warm_start_has_a_restore_and_no_kernel_boot() {
        // The guest clock counts from the template's boot, long before this VMM started.
        let record = PhaseRecord {
            vmm_spawn_ns: Some(1_010 * MS),
            vmm_connected_ns: Some(1_013 * MS),
            resumed_ns: Some(1_014 * MS),
            ready_ns: Some(1_030 * MS),
            guest_agent_start_ns: Some(4_998 * MS),
            guest_root_ready_ns: Some(5_008 * MS),
            guest_exec_ns: Some(5_010 * MS),
            exit_ns: Some(1_040 * MS),
            vmm_exit_ns: Some(1_045 * MS),
        };
        let p = phases(1_000 * MS, &record, 1_050 * MS).unwrap();
        let got: Vec<(&str, f64)> = p.iter().map(|p| (p.name.as_str(), p.ms)).collect();
        assert_eq!(
            got,
            vec![
                ("image_prep", 10.0),
                ("vmm_start", 3.0),
                ("kernel_boot", 0.0),
                ("restore", 7.0),
                ("agent_ready", 10.0),
                ("entrypoint_exec", 2.0),
                ("exit", 8.0),
                ("teardown", 10.0),
            ]
        );
    }

    #[test]
    fn a_record_without_a_ready_message_has_no_phases() {
        let record = PhaseRecord {
            vmm_spawn_ns: Some(1),
            ..PhaseRecord::default()
        };
        assert_eq!(phases(0, &record, 10), None);
    }
}
