//! The resource limit flags `create`/`run` and `update` share (`--memory`, `--memory-swap`,
//! `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit`): one definition, parsed in
//! docker's units with docker's sentences for bad values.

use nook::isolation::limits::{self, Limits};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitFlags {
    /// Memory limit (e.g. 512m, 1g): a cgroup limit with --isolation=container (where a
    /// delegated cgroup v2 exists, see `nook info`), the VM's size with --isolation=vm
    #[arg(short, long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap; default: twice --memory)
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE")]
    pub memory_swap: Option<String>,
    /// Number of CPUs: a CPU quota with --isolation=container, the VM's vCPUs with
    /// --isolation=vm
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight, default 1024)
    #[arg(short = 'c', long, allow_hyphen_values = true, value_name = "SHARES")]
    pub cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long, value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (0 or -1 for unlimited): pids.max with
    /// --isolation=container, a cgroup in the guest with --isolation=vm
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub pids_limit: Option<String>,
}

impl LimitFlags {
    /// The limits these flags set (the others none), each value parsed; `--cpus` is checked
    /// against docker's range (a VM's vCPUs when `vm`); checking the combination is the
    /// caller's.
    pub fn limits(&self, vm: bool) -> anyhow::Result<Limits> {
        if let Some(c) = self.cpus {
            check_cpus(c, vm)?;
        }
        Ok(Limits {
            memory: self
                .memory
                .as_deref()
                .map(|m| limits::parse_size("--memory", m))
                .transpose()?,
            memory_swap: self
                .memory_swap
                .as_deref()
                .map(limits::parse_swap)
                .transpose()?,
            nano_cpus: self.cpus.map(|c| (c * 1e9).round() as u64),
            cpu_shares: self
                .cpu_shares
                .as_deref()
                .map(|s| {
                    s.trim().parse::<u64>().map_err(|_| {
                        anyhow::anyhow!("invalid --cpu-shares {s:?}: expected a number")
                    })
                })
                .transpose()?,
            cpuset_cpus: self
                .cpuset_cpus
                .as_deref()
                .map(limits::parse_cpuset)
                .transpose()?,
            pids_limit: self
                .pids_limit
                .as_deref()
                .map(limits::parse_pids)
                .transpose()?,
            ..Limits::default()
        })
    }
}

/// docker's range for `--cpus`: 0.01 to the host's CPUs (a VM's vCPUs: 255 at most).
fn check_cpus(cpus: f64, vm: bool) -> anyhow::Result<()> {
    let (max, why) = if vm {
        (255, "the most vCPUs a VM can have".to_string())
    } else {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (n, format!("as there are only {n} CPUs available"))
    };
    anyhow::ensure!(
        cpus.is_finite() && cpus >= 0.01 && cpus <= max as f64,
        "invalid --cpus {cpus}: Range of CPUs is from 0.01 to {max}.00, {why}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_verbs_parse_the_same() {
        let flags = LimitFlags {
            memory: Some("64m".into()),
            cpus: Some(0.5),
            pids_limit: Some("-1".into()),
            ..LimitFlags::default()
        };
        let l = flags.limits(false).unwrap();
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.nano_cpus, Some(500_000_000));
        assert_eq!(l.pids_limit, Some(-1));
        let bad = LimitFlags {
            memory: Some("-5".into()),
            ..LimitFlags::default()
        };
        assert!(bad.limits(false).is_err());
    }

    #[test]
    fn cpus_follow_dockers_range() {
        assert!(check_cpus(0.01, false).is_ok());
        assert!(check_cpus(1.0, false).is_ok());
        assert!(check_cpus(200.0, true).is_ok());
        for bad in [-1.0, 0.0, 0.001, f64::NAN, f64::INFINITY, 256.0] {
            let err = check_cpus(bad, true).unwrap_err().to_string();
            assert!(
                err.contains("Range of CPUs is from 0.01 to 255.00"),
                "{err}"
            );
        }
        let err = check_cpus(-1.0, false).unwrap_err().to_string();
        assert!(err.contains("as there are only"), "{err}");
    }
}
