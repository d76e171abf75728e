//! Phase timestamps of one VM for `nook bench`: when `NOOK_PHASES_FILE` names a file, the VM
//! backend notes host `CLOCK_MONOTONIC` times at its steps (VMM spawned, VMM connected, agent
//! ready, container process exited, VMM exited) together with the guest's own boot times from
//! the agent, and appends them to that file as one JSON line when the VM is gone. Without the
//! variable every call here is a cheap no-op.
//!
//! Host marks are monotonic nanoseconds, comparable with the bench process's own clock on the
//! same host. Guest times are nanoseconds of the guest's `CLOCK_BOOTTIME` (zero at kernel start);
//! the bench anchors them to the host at the ready message.

use std::io::Write as _;
use std::sync::Mutex;

use nook_agent::client::Ready;
use serde::{Deserialize, Serialize};

/// The variable naming the file the record is appended to.
pub const PHASES_FILE_ENV: &str = "NOOK_PHASES_FILE";

/// One VM's marks. Every field is optional: a VM that failed early has only its first marks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// Host: just before the VMM process was spawned.
    pub vmm_spawn_ns: Option<u64>,
    /// Host: the VMM connected to the agent socket (it does so before loading the kernel).
    pub vmm_connected_ns: Option<u64>,
    /// Host: the container's start data was sent to the guest to be resumed (warm starts
    /// only; the guest reads it once the VMM has set the VM back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_ns: Option<u64>,
    /// Host: the agent's ready message arrived.
    pub ready_ns: Option<u64>,
    /// Guest: when the agent (PID 1) began, since kernel start.
    pub guest_agent_start_ns: Option<u64>,
    /// Guest: when the container's root was mounted and entered (the agent then says ready).
    pub guest_root_ready_ns: Option<u64>,
    /// Guest: when the container's entrypoint was executed.
    pub guest_exec_ns: Option<u64>,
    /// Host: the agent reported the entrypoint's exit.
    pub exit_ns: Option<u64>,
    /// Host: the VMM process ended.
    pub vmm_exit_ns: Option<u64>,
}

/// A host step worth a mark.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    VmmSpawn,
    Connected,
    Resumed,
}

static RECORD: Mutex<Option<PhaseRecord>> = Mutex::new(None);

fn enabled() -> bool {
    std::env::var_os(PHASES_FILE_ENV).is_some()
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn update(f: impl FnOnce(&mut PhaseRecord)) {
    if !enabled() {
        return;
    }
    let mut guard = RECORD.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(PhaseRecord::default));
}

/// Notes the host time of `mark`.
pub fn mark(mark: Mark) {
    let now = monotonic_ns();
    update(|r| {
        let slot = match mark {
            Mark::VmmSpawn => &mut r.vmm_spawn_ns,
            Mark::Connected => &mut r.vmm_connected_ns,
            Mark::Resumed => &mut r.resumed_ns,
        };
        *slot = Some(now);
    });
}

/// Notes the agent's ready message and the guest boot times it carries.
pub fn ready(ready: Ready) {
    let now = monotonic_ns();
    update(|r| {
        r.ready_ns = Some(now);
        r.guest_agent_start_ns = Some(ready.boot.agent_start_ns);
        r.guest_root_ready_ns = Some(ready.boot.root_ready_ns);
    });
}

/// Notes the entrypoint's end, and its guest exec time (`started` of the agent client's result).
pub fn exited(started: Option<(u32, u64)>) {
    let now = monotonic_ns();
    update(|r| {
        r.exit_ns = Some(now);
        r.guest_exec_ns = started.map(|(_, exec_ns)| exec_ns);
    });
}

/// Marks the VMM's end and appends the record to the phases file. Failures to write are
/// reported on stderr only: the container's own result matters more than the bench's.
pub fn finish() {
    let Some(path) = std::env::var_os(PHASES_FILE_ENV) else {
        return;
    };
    // Only the VM whose steps were marked: a second call (another workload) writes nothing.
    let Some(mut record) = RECORD.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    record.vmm_exit_ns = Some(monotonic_ns());
    let line = match serde_json::to_string(&record) {
        Ok(l) => l + "\n",
        Err(_) => return,
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "nook: cannot append the VM phases to {}: {e}",
            std::path::Path::new(&path).display()
        );
    }
}

/// Reads every record of a phases file.
pub fn read_records(text: &str) -> Result<Vec<PhaseRecord>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_json_lines() {
        let r = PhaseRecord {
            vmm_spawn_ns: Some(1),
            ready_ns: Some(5),
            guest_exec_ns: Some(7),
            ..PhaseRecord::default()
        };
        let text = format!("{}\n\n{}\n", serde_json::to_string(&r).unwrap(), "{}");
        let back = read_records(&text).unwrap();
        assert_eq!(back, vec![r, PhaseRecord::default()]);
        assert!(read_records("{not json").is_err());
    }

    #[test]
    fn the_monotonic_clock_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
