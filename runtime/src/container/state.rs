//! A container's persistent record: its configuration (fixed at create) and its state
//! (created, running, exited with code and time), each a JSON file in `containers/<id>/`,
//! replaced atomically.
//!
//! A record saying "running" is only believed while its monitor process still lives: the pid
//! and the process start time from /proc must both match, so a reused pid is not mistaken for
//! the monitor. A dead monitor leaves a container that is observed as exited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::isolation::{Isolation, LaunchSpec};

/// Fixed at `create`. Stored as `config.json` in the shape of [`super::record::Record`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "super::record::Record", into = "super::record::Record")]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it, and the manifest digest it resolved to.
    pub image: String,
    pub image_id: String,
    pub created: DateTime<Utc>,
    /// The column it runs in, with that column's root filesystem (and the VM's size).
    pub isolation: Isolation,
    pub launch: LaunchSpec,
    /// `-t`: the process gets a pty.
    pub tty: bool,
    /// `-i`: stdin stays open.
    pub open_stdin: bool,
    /// `--rm`: removed when it exits.
    pub auto_remove: bool,
    /// `--log-opt`: how its log rotates.
    pub log: super::log::LogOptions,
}

/// A process identified beyond its pid: (pid, start time in clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    Created,
    Running {
        /// The container's first process (host pid).
        init: ProcessId,
        /// The monitor holding its stdio and waiting for its exit.
        monitor: ProcessId,
        started_at: DateTime<Utc>,
        /// The container's own cgroup, when limits could be given one (see
        /// `isolation::limits`); `stats` and `update` work on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup: Option<std::path::PathBuf>,
    },
    Exited {
        code: i32,
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
        /// Set when the monitor died without recording the exit (nook observed it gone).
        #[serde(default)]
        monitor_lost: bool,
        /// The kernel's OOM killer ended one of its processes (its memory limit was reached).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oom_killed: bool,
    },
}

/// Exit code recorded when the monitor vanished: its container got SIGKILL (parent-death
/// signal), so 128 + 9, as a shell would report it.
pub const LOST_MONITOR_CODE: i32 = 137;

/// Reads process start times (from /proc in production, from a table in tests).
pub trait ProcessProbe {
    fn start_time(&self, pid: i32) -> Option<u64>;
}

/// The real /proc.
pub struct ProcFs;

impl ProcessProbe for ProcFs {
    fn start_time(&self, pid: i32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_start_time(&stat)
    }
}

/// Field 22 of /proc/PID/stat, None for a zombie (dead, waiting to be reaped). The command
/// name (field 2) may hold spaces and parentheses, so fields are counted from its closing
/// parenthesis.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")": field 3 (state) is the first; 22 is the 20th.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl ProcessId {
    /// Identifies the living process `pid`.
    pub fn of(pid: i32, probe: &dyn ProcessProbe) -> Option<ProcessId> {
        Some(ProcessId {
            pid,
            start_time: probe.start_time(pid)?,
        })
    }

    /// Whether this very process still exists (not another one that reused its pid).
    pub fn alive(&self, probe: &dyn ProcessProbe) -> bool {
        probe.start_time(self.pid) == Some(self.start_time)
    }
}

impl Status {
    /// The status as it really is: "running" with a dead monitor is exited.
    pub fn observed(&self, probe: &dyn ProcessProbe, now: DateTime<Utc>) -> Status {
        match self {
            Status::Running {
                monitor,
                started_at,
                ..
            } if !monitor.alive(probe) => Status::Exited {
                code: LOST_MONITOR_CODE,
                started_at: Some(*started_at),
                finished_at: now,
                monitor_lost: true,
                oom_killed: false,
            },
            other => other.clone(),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running { .. })
    }

    /// Docker's one-word state name.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running { .. } => "running",
            Status::Exited { .. } => "exited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Table(HashMap<i32, u64>);
    impl ProcessProbe for Table {
        fn start_time(&self, pid: i32) -> Option<u64> {
            self.0.get(&pid).copied()
        }
    }

    fn running() -> Status {
        Status::Running {
            init: ProcessId {
                pid: 11,
                start_time: 500,
            },
            monitor: ProcessId {
                pid: 10,
                start_time: 499,
            },
            started_at: Utc::now(),
            cgroup: None,
        }
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat =
            "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
        let zombie = stat.replace(" S ", " Z ");
        assert_eq!(parse_start_time(&zombie), None);
        let me = std::process::id() as i32;
        assert!(ProcFs.start_time(me).is_some());
    }

    #[test]
    fn a_running_record_with_a_live_monitor_stays_running() {
        let probe = Table([(10, 499)].into());
        assert!(running().observed(&probe, Utc::now()).is_running());
    }

    #[test]
    fn a_dead_or_reused_monitor_pid_means_exited() {
        let now = Utc::now();
        for probe in [Table(HashMap::new()), Table([(10, 777)].into())] {
            match running().observed(&probe, now) {
                Status::Exited {
                    code, monitor_lost, ..
                } => {
                    assert_eq!(code, LOST_MONITOR_CODE);
                    assert!(monitor_lost);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_config_from_before_log_rotation_gets_the_default_cap() {
        let json = r#"{"id":"a","name":"n","image":"busybox","image_id":"sha256:00",
            "created":"2024-01-01T00:00:00Z","isolation":"container",
            "launch":{"process":{"argv":["true"],"env":[],"cwd":"/","user":"","terminal":false},
              "rootfs":{"lower":[],"upper":"/u","work":"/w","merged":"/m","read_only":false},
              "hostname":"h"},
            "tty":false,"open_stdin":false,"auto_remove":false}"#;
        let config: ContainerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.log, crate::container::log::LogOptions::default());
    }

    #[test]
    fn status_round_trips_through_json() {
        let s = running();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"status\":\"running\""));
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
