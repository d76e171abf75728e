//! `linux.resources` as the limits `nook run` takes ([`Limits`]): memory and swap, CPU quota,
//! shares and set, and the pids limit, enforced by the same per-container cgroup
//! ([`crate::isolation::limits::place`]). What the limits module has no place for is named in
//! the log, not silently dropped.

use oci_spec::runtime::LinuxResources;

use super::log::Log;
use crate::isolation::limits::Limits;

/// The period the spec's CPU quota is relative to when it names none (the kernel's).
const DEFAULT_PERIOD_US: u64 = 100_000;

/// The limits `resources` asks for; what they cannot express is warned of in `log`.
pub fn limits(resources: &LinuxResources, log: &Log) -> Limits {
    let mut out = Limits::default();
    let mut ignored: Vec<&str> = Vec::new();
    if let Some(m) = resources.memory() {
        // Negative is unlimited in the spec; 0 is unset.
        out.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
        // The spec's swap is memory plus swap, as docker's --memory-swap.
        out.memory_swap = m.swap().filter(|s| *s != 0 && out.memory.is_some());
        if m.reservation().is_some_and(|r| r > 0) {
            ignored.push("memory.reservation");
        }
        if m.swappiness().is_some() {
            ignored.push("memory.swappiness");
        }
        if m.disable_oom_killer() == Some(true) {
            ignored.push("memory.disableOOMKiller");
        }
    }
    if let Some(c) = resources.cpu() {
        if let Some(quota) = c.quota().filter(|q| *q > 0) {
            let period = c.period().filter(|p| *p > 0).unwrap_or(DEFAULT_PERIOD_US);
            out.nano_cpus = Some((quota as u64).saturating_mul(1_000_000_000) / period);
        }
        out.cpu_shares = c.shares().filter(|s| *s > 0);
        out.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
        if c.mems().as_ref().is_some_and(|m| !m.is_empty()) {
            ignored.push("cpu.mems");
        }
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
            ignored.push("cpu.realtimeRuntime and realtimePeriod");
        }
    }
    if let Some(p) = resources.pids() {
        out.pids_limit = Some(p.limit());
    }
    if resources.block_io().is_some() {
        ignored.push("blockIO");
    }
    if resources
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
    {
        ignored.push("hugepageLimits");
    }
    if resources.network().is_some() {
        ignored.push("network");
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        ignored.push("rdma");
    }
    if resources.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        ignored.push("unified");
    }
    // Device rules other than the usual deny-all: no device cgroup is made (the container's
    // /dev holds only the nodes bound into it).
    if resources
        .devices()
        .as_ref()
        .is_some_and(|d| d.iter().any(|r| r.allow()))
    {
        ignored.push("devices (allow rules)");
    }
    if !ignored.is_empty() {
        log.warn(&format!(
            "linux.resources: {} not honoured (nook enforces memory, cpu and pids limits)",
            ignored.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::log::LogFormat;

    fn of(json: &str) -> Limits {
        let r: LinuxResources = serde_json::from_str(json).unwrap();
        limits(&r, &Log::open(None, LogFormat::Text, false))
    }

    #[test]
    fn resources_become_nooks_limits() {
        let l = of(r#"{"memory": {"limit": 67108864, "swap": 134217728},
                       "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "0"},
                       "pids": {"limit": 64},
                       "devices": [{"allow": false, "access": "rwm"}]}"#);
        assert_eq!(
            l,
            Limits {
                memory: Some(64 << 20),
                memory_swap: Some(128 << 20),
                nano_cpus: Some(500_000_000),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0".into()),
                pids_limit: Some(64),
                ..Limits::default()
            }
        );
        let files = l.cgroup_files(None);
        let value = |name: &str| {
            files
                .iter()
                .find(|f| f.file == name)
                .map(|f| f.value.clone())
        };
        assert_eq!(value("memory.max").as_deref(), Some("67108864"));
        assert_eq!(value("cpu.max").as_deref(), Some("50000 100000"));
        assert_eq!(value("pids.max").as_deref(), Some("64"));
    }

    #[test]
    fn unset_and_unlimited_values_ask_for_nothing() {
        assert!(of("{}").is_default());
        let l = of(r#"{"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1, "shares": 0}}"#);
        assert!(l.is_default(), "{l:?}");
        // A quota with another period: the same share of a CPU.
        let l = of(r#"{"cpu": {"quota": 25000, "period": 50000}}"#);
        assert_eq!(l.nano_cpus, Some(500_000_000));
        let l = of(r#"{"cpu": {"quota": 200000}}"#);
        assert_eq!(l.nano_cpus, Some(2_000_000_000));
        let l = of(r#"{"memory": {"limit": 67108864, "swap": -1}}"#);
        assert_eq!(l.memory_swap, Some(-1));
        let l = of(r#"{"pids": {"limit": -1}}"#);
        assert_eq!(l.pids_limit, Some(-1));
    }
}
