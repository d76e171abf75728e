//! Resource limits of a container (`--memory`, `--memory-swap`, `--cpus`, `--cpu-shares`,
//! `--cpuset-cpus`, `--pids-limit`), in docker's units and with docker's checks, and where they
//! are enforced: a cgroup v2 the user has been delegated ([`delegation`]), one per container
//! ([`cgroup`]), read back by `nook stats` ([`stats`]).
//!
//! The namespace column puts the container's processes in that cgroup; a host without a
//! delegated cgroup v2 (cgroup v1 or hybrid, or no delegation) cannot enforce them rootless, and
//! `create` says so rather than pretend. The VM column sizes the VM with `--memory` and `--cpus`.

pub mod cgroup;
pub mod delegation;
mod parse;
pub mod stats;
mod systemd;
pub mod ulimit;

use serde::{Deserialize, Serialize};

pub use parse::{cpuset_cpus, parse_cpuset, parse_pids, parse_size, parse_swap, LimitsError};

/// The limits of one container, as docker's `HostConfig` keeps them. None: not set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// `--memory`, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap, bytes; -1 for unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// `--cpus`, in billionths of a CPU (docker's `NanoCpus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<u64>,
    /// `--cpu-shares`: the relative weight, 2 to 262144 (1024 is the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`: the CPUs the container may run on, as `0-2,4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`: the most processes and threads; 0 or less is unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// `--ulimit`: setrlimit for the container's processes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<ulimit::Ulimit>,
    /// `--shm-size`: the size of the container's /dev/shm, bytes (docker's default: 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
}

/// Gives the container `id`, whose first process `pid` has not yet run its entrypoint, its own
/// cgroup with `limits` where the user has one delegated. Without a delegation there is none
/// (`create` warned that the limits cannot hold); a cgroup that cannot be made fails the start
/// when limits were asked for, and is done without otherwise (`stats` then reads /proc).
pub fn place(
    delegation: &Result<delegation::Delegation, delegation::Unavailable>,
    id: &str,
    pid: i32,
    limits: &Limits,
) -> Result<Option<cgroup::Cgroup>, cgroup::CgroupError> {
    match delegation {
        Ok(d) => match cgroup::Cgroup::create(d, id, pid, limits) {
            Ok(c) => Ok(Some(c)),
            Err(_) if limits.is_default() => Ok(None),
            Err(e) => Err(e),
        },
        Err(_) => Ok(None),
    }
}

/// What a VM may take of the host beyond its RAM, for the VMM's own allocations, passt and the
/// virtiofsd processes (measured: the VMM holds a few MiB beyond the guest memory it touched).
pub const VM_OVERHEAD: u64 = 128 << 20;

/// The cgroup of a VM container `id` with `memory_mib` of RAM, made before its VMM and helper
/// processes start (they enter it as they start): their memory is bounded by the VM's RAM plus
/// [`VM_OVERHEAD`], their CPU time by `--cpus`. Only in a delegated directory (a systemd
/// scope needs a process to start with); None without one.
pub fn vm_cgroup(
    delegation: &Result<delegation::Delegation, delegation::Unavailable>,
    id: &str,
    limits: &Limits,
    memory_mib: u32,
) -> Result<Option<cgroup::Cgroup>, cgroup::CgroupError> {
    let Ok(d) = delegation else {
        return Ok(None);
    };
    let delegation::Parent::Directory(parent) = &d.parent else {
        return Ok(None);
    };
    let host = Limits {
        memory: Some((u64::from(memory_mib) << 20) + VM_OVERHEAD),
        nano_cpus: limits.nano_cpus,
        ..Limits::default()
    };
    let files: Vec<CgroupFile> = host
        .cgroup_files(None)
        .into_iter()
        // The VMM's memory is the guest's: no swap of its own to limit.
        .filter(|f| f.file != "memory.swap.max")
        .collect();
    cgroup::Cgroup::make(d, parent, id, &files).map(Some)
}

/// The period `cpu.max` is written with (docker's and the kernel's default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

impl Limits {
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    /// The flags that are set, by docker's names (for warnings and refusals).
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                out.push(name)
            }
        };
        add(self.memory.is_some(), "--memory");
        add(self.memory_swap.is_some(), "--memory-swap");
        add(self.nano_cpus.is_some(), "--cpus");
        add(self.cpu_shares.is_some(), "--cpu-shares");
        add(self.cpuset_cpus.is_some(), "--cpuset-cpus");
        add(self.pids_limit.is_some(), "--pids-limit");
        add(!self.ulimits.is_empty(), "--ulimit");
        add(self.shm_size.is_some(), "--shm-size");
        out
    }

    /// Checks the limits together, as docker does at create (and `update` with the result).
    pub fn check(&self) -> Result<(), LimitsError> {
        if let Some(m) = self.memory {
            if m != 0 && m < MIN_MEMORY {
                return Err(LimitsError::MemoryTooSmall(m));
            }
        }
        match (self.memory_swap, self.memory) {
            (Some(s), None) if s != -1 && s != 0 => return Err(LimitsError::SwapWithoutMemory),
            (Some(s), Some(m)) if s != -1 && s > 0 && (s as u64) < m => {
                return Err(LimitsError::SwapBelowMemory)
            }
            _ => {}
        }
        if self.shm_size == Some(0) {
            return Err(LimitsError::ShmSize);
        }
        if let Some(s) = self.cpu_shares {
            if s != 0 && !(2..=262_144).contains(&s) {
                return Err(LimitsError::CpuShares(s));
            }
        }
        Ok(())
    }

    /// Merges the limits `update` was given into these.
    pub fn updated_with(&self, new: &Limits) -> Limits {
        let mut out = self.clone();
        if let Some(m) = new.memory {
            out.memory = Some(m);
            // docker: a new memory limit without a new swap limit keeps swap at twice memory
            // unless swap was unlimited.
            if new.memory_swap.is_none() && self.memory_swap != Some(-1) {
                out.memory_swap = None;
            }
        }
        macro_rules! take {
            ($($f:ident),*) => {$(if new.$f.is_some() { out.$f = new.$f.clone(); })*};
        }
        take!(memory_swap, nano_cpus, cpu_shares, cpuset_cpus, pids_limit);
        out
    }

    /// The limits a VM's agent applies inside the guest: `--pids-limit` (a cgroup of the
    /// guest's) and `--ulimit`.
    pub fn guest_limits(&self) -> nook_agent::protocol::GuestLimits {
        nook_agent::protocol::GuestLimits {
            pids_max: self
                .pids_limit
                .and_then(|p| u64::try_from(p).ok())
                .filter(|p| *p > 0),
            rlimits: ulimit::Ulimit::rlimits(&self.ulimits)
                .into_iter()
                .map(|(resource, soft, hard)| nook_agent::protocol::Rlimit {
                    resource,
                    soft,
                    hard,
                })
                .collect(),
        }
    }

    /// The limits that the VM column does not apply (they are refused at create and update).
    pub fn not_in_vm(&self) -> Limits {
        Limits {
            memory: None,
            nano_cpus: None,
            pids_limit: None,
            ulimits: Vec::new(),
            ..self.clone()
        }
    }

    /// The limits a cgroup enforces (the others are set by the container's init).
    pub fn cgroup_limits(&self) -> Limits {
        Limits {
            ulimits: Vec::new(),
            shm_size: None,
            ..self.clone()
        }
    }

    /// The cgroup v2 interface files these limits write, with their values and the controller
    /// each needs; `changed` (for `update`) keeps only what `changed` sets.
    pub fn cgroup_files(&self, changed: Option<&Limits>) -> Vec<CgroupFile> {
        let all = changed.is_none();
        let touched = |f: fn(&Limits) -> bool| all || changed.is_some_and(f);
        let mut out = Vec::new();
        if touched(|c| c.memory.is_some()) {
            if let Some(m) = self.memory.filter(|m| *m > 0) {
                out.push(CgroupFile::new("memory", "memory.max", m.to_string()));
            }
        }
        if touched(|c| c.memory.is_some() || c.memory_swap.is_some()) {
            if let Some(swap) = self.swap_max() {
                out.push(CgroupFile::new("memory", "memory.swap.max", swap));
            }
        }
        if touched(|c| c.nano_cpus.is_some()) {
            if let Some(n) = self.nano_cpus {
                let value = match n {
                    0 => format!("max {CPU_PERIOD_US}"),
                    n => format!(
                        "{} {CPU_PERIOD_US}",
                        (n * CPU_PERIOD_US / 1_000_000_000).max(1000)
                    ),
                };
                out.push(CgroupFile::new("cpu", "cpu.max", value));
            }
        }
        if touched(|c| c.cpu_shares.is_some()) {
            if let Some(s) = self.cpu_shares.filter(|s| *s > 0) {
                out.push(CgroupFile::new(
                    "cpu",
                    "cpu.weight",
                    shares_to_weight(s).to_string(),
                ));
            }
        }
        if touched(|c| c.cpuset_cpus.is_some()) {
            if let Some(c) = &self.cpuset_cpus {
                out.push(CgroupFile::new("cpuset", "cpuset.cpus", c.clone()));
            }
        }
        if touched(|c| c.pids_limit.is_some()) {
            if let Some(p) = self.pids_limit {
                let value = if p > 0 { p.to_string() } else { "max".into() };
                out.push(CgroupFile::new("pids", "pids.max", value));
            }
        }
        out
    }

    /// `memory.swap.max`: docker's memory-swap is memory plus swap; unset with a memory limit
    /// means as much swap as memory (docker's default of twice the memory).
    fn swap_max(&self) -> Option<String> {
        let memory = self.memory.filter(|m| *m > 0)?;
        Some(match self.memory_swap {
            Some(-1) => "max".into(),
            Some(s) if s > 0 => (s as u64 - memory).to_string(),
            _ => memory.to_string(),
        })
    }
}

/// One write of a limit into a cgroup's interface file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupFile {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

impl CgroupFile {
    fn new(controller: &'static str, file: &'static str, value: String) -> Self {
        CgroupFile {
            controller,
            file,
            value,
        }
    }
}

/// docker's smallest memory limit, 6 MiB.
pub const MIN_MEMORY: u64 = 6 << 20;

/// `--cpu-shares` (cgroup v1's 2..262144, default 1024) as cgroup v2's `cpu.weight`
/// (1..10000, default 100), with the formula of crun and runc.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(files: &'a [CgroupFile], name: &str) -> Option<&'a str> {
        files
            .iter()
            .find(|f| f.file == name)
            .map(|f| f.value.as_str())
    }

    #[test]
    fn shares_convert_as_crun_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 20);
    }

    #[test]
    fn limits_become_cgroup_v2_files() {
        let l = Limits {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(64),
            ..Limits::default()
        };
        let f = l.cgroup_files(None);
        assert_eq!(file(&f, "memory.max"), Some("67108864"));
        // docker's default: swap as large as memory (memory-swap twice the memory).
        assert_eq!(file(&f, "memory.swap.max"), Some("67108864"));
        assert_eq!(file(&f, "cpu.max"), Some("50000 100000"));
        assert_eq!(file(&f, "cpu.weight"), Some("20"));
        assert_eq!(file(&f, "cpuset.cpus"), Some("0"));
        assert_eq!(file(&f, "pids.max"), Some("64"));
        let unlimited = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            pids_limit: Some(-1),
            ..Limits::default()
        };
        let f = unlimited.cgroup_files(None);
        assert_eq!(file(&f, "memory.swap.max"), Some("max"));
        assert_eq!(file(&f, "pids.max"), Some("max"));
        let no_swap = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(64 << 20),
            ..Limits::default()
        };
        assert_eq!(
            file(&no_swap.cgroup_files(None), "memory.swap.max"),
            Some("0")
        );
        assert!(Limits::default().cgroup_files(None).is_empty());
    }

    #[test]
    fn update_writes_only_what_changed_and_keeps_the_rest() {
        let old = Limits {
            memory: Some(256 << 20),
            pids_limit: Some(64),
            ..Limits::default()
        };
        let change = Limits {
            memory: Some(64 << 20),
            ..Limits::default()
        };
        let new = old.updated_with(&change);
        assert_eq!(new.memory, Some(64 << 20));
        assert_eq!(new.pids_limit, Some(64));
        let files = new.cgroup_files(Some(&change));
        let names: Vec<_> = files.iter().map(|f| f.file).collect();
        assert_eq!(names, ["memory.max", "memory.swap.max"]);
    }

    #[test]
    fn dockers_combination_rules() {
        let swap_alone = Limits {
            memory_swap: Some(1 << 30),
            ..Limits::default()
        };
        assert!(matches!(
            swap_alone.check(),
            Err(LimitsError::SwapWithoutMemory)
        ));
        let swap_small = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(1 << 20),
            ..Limits::default()
        };
        assert!(matches!(
            swap_small.check(),
            Err(LimitsError::SwapBelowMemory)
        ));
        let tiny = Limits {
            memory: Some(1 << 20),
            ..Limits::default()
        };
        assert!(tiny
            .check()
            .unwrap_err()
            .to_string()
            .contains("Minimum memory limit allowed is 6MB"));
        let shares = Limits {
            cpu_shares: Some(1),
            ..Limits::default()
        };
        assert!(shares.check().is_err());
    }
}
