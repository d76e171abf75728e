//! What a running container consumes, as `nook stats` shows it: read from its cgroup when it has
//! one, else summed over its processes from /proc (no memory limit then but the host's memory,
//! and block I/O only of the processes the user may read). A VM container's figures are the
//! guest's own, read by its agent ([`from_guest`]), with the VMM's as the host sees them beside.

use std::path::Path;
use std::time::Instant;

use super::cgroup::Cgroup;

/// One reading of a container's counters.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    /// CPU time used since the container started, nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use, as docker counts it (without the inactive page cache).
    pub memory: u64,
    /// The memory limit, or the host's memory when there is none.
    pub memory_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
    /// The clock `cpu_ns` is measured against when it is not this host's (a VM's: the guest's
    /// boot-time clock), nanoseconds; none: `at`.
    pub clock_ns: Option<u64>,
    /// A VM container's VMM (with its helpers when they share its cgroup) as the host sees it.
    pub host: Option<HostUsage>,
}

/// What the host gives a VM: CPU time and memory of its VMM process, or of its cgroup.
#[derive(Clone, Copy, Debug)]
pub struct HostUsage {
    /// When the host's counters were read (the guest's may be read much later).
    pub at: Instant,
    pub cpu_ns: u64,
    pub memory: u64,
}

/// A VM container's sample: the guest's counters (`usage`, from its agent), and `host`, the
/// VMM's sample as the host sees it.
pub fn from_guest(usage: &nook_agent::protocol::GuestUsage, host: &Sample) -> Sample {
    Sample {
        at: Instant::now(),
        cpu_ns: usage.cpu_ns,
        memory: usage.memory,
        memory_limit: usage.memory_total,
        net_rx: usage.net_rx,
        net_tx: usage.net_tx,
        block_read: usage.block_read,
        block_write: usage.block_write,
        pids: usage.pids,
        clock_ns: Some(usage.clock_ns),
        host: Some(HostUsage {
            at: host.at,
            cpu_ns: host.cpu_ns,
            memory: host.memory,
        }),
    }
}

/// The host's memory (`MemTotal`), bytes.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// The counters of the container whose cgroup is `cgroup` and whose network namespace is
/// that of `init`.
pub fn from_cgroup(cgroup: &Cgroup, init: i32) -> Sample {
    let cpu_ns = cgroup.key_value("cpu.stat", "usage_usec").unwrap_or(0) * 1000;
    let current = cgroup.value("memory.current").unwrap_or(0);
    // docker's usage on cgroup v2: memory.current less the inactive file cache.
    let inactive = cgroup
        .key_value("memory.stat", "inactive_file")
        .unwrap_or(0);
    let limit = cgroup
        .value("memory.max")
        .unwrap_or_else(host_memory)
        .min(host_memory().max(1));
    let (block_read, block_write) = cgroup.read("io.stat").map_or((0, 0), |s| io_stat(&s));
    let (net_rx, net_tx) = net_dev(init);
    Sample {
        at: Instant::now(),
        cpu_ns,
        memory: current.saturating_sub(inactive),
        memory_limit: limit,
        net_rx,
        net_tx,
        block_read,
        block_write,
        pids: cgroup.value("pids.current").unwrap_or(0),
        clock_ns: None,
        host: None,
    }
}

/// The counters summed over `pids` (the container's processes, `init` among them) from /proc.
pub fn from_procs(pids: &[i32], init: i32) -> Sample {
    let ticks = clock_ticks();
    let page = page_size();
    let (mut cpu_ns, mut memory, mut read, mut write) = (0u64, 0u64, 0u64, 0u64);
    for pid in pids {
        let dir = Path::new("/proc").join(pid.to_string());
        if let Some((utime, stime)) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
        {
            cpu_ns += (utime + stime) * 1_000_000_000 / ticks;
        }
        if let Some(rss) = std::fs::read_to_string(dir.join("statm"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        {
            memory += rss * page;
        }
        if let Ok(io) = std::fs::read_to_string(dir.join("io")) {
            let (r, w) = proc_io(&io);
            read += r;
            write += w;
        }
    }
    let (net_rx, net_tx) = net_dev(init);
    Sample {
        at: Instant::now(),
        cpu_ns,
        memory,
        memory_limit: host_memory(),
        net_rx,
        net_tx,
        block_read: read,
        block_write: write,
        pids: pids.len() as u64,
        clock_ns: None,
        host: None,
    }
}

/// CPU use between two samples, in percent of one CPU (docker's CPU %), measured against the
/// samples' own clock (a guest's, for a VM).
pub fn cpu_percent(before: &Sample, after: &Sample) -> f64 {
    let wall = match (before.clock_ns, after.clock_ns) {
        (Some(b), Some(a)) => a.saturating_sub(b) as f64,
        _ => after.at.duration_since(before.at).as_nanos() as f64,
    };
    percent(before.cpu_ns, after.cpu_ns, wall)
}

/// A VM's host CPU use between two samples, in percent of one host CPU.
pub fn host_cpu_percent(before: &Sample, after: &Sample) -> Option<f64> {
    let (b, a) = (before.host?, after.host?);
    let wall = a.at.duration_since(b.at).as_nanos() as f64;
    Some(percent(b.cpu_ns, a.cpu_ns, wall))
}

fn percent(before_ns: u64, after_ns: u64, wall_ns: f64) -> f64 {
    if wall_ns <= 0.0 {
        return 0.0;
    }
    after_ns.saturating_sub(before_ns) as f64 / wall_ns * 100.0
}

/// Bytes read and written, summed over the devices of an `io.stat`.
fn io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    (r, w)
}

/// `read_bytes` and `write_bytes` of a /proc/PID/io.
fn proc_io(text: &str) -> (u64, u64) {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("read_bytes:"), get("write_bytes:"))
}

/// Fields 14 and 15 (utime, stime) of a /proc/PID/stat, counted after the command name.
fn cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Bytes received and sent on the interfaces of `init`'s network namespace, loopback aside.
fn net_dev(init: i32) -> (u64, u64) {
    std::fs::read_to_string(format!("/proc/{init}/net/dev"))
        .map(|t| nook_agent::supervisor::parse_net_dev(&t))
        .unwrap_or((0, 0))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes a constant and reads nothing else.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nook_agent::supervisor::parse_net_dev;

    #[test]
    fn counters_are_parsed() {
        assert_eq!(
            io_stat("8:0 rbytes=100 wbytes=20 rios=1 wios=2\n8:16 rbytes=5 wbytes=1\n"),
            (105, 21)
        );
        assert_eq!(
            proc_io("rchar: 9\nwchar: 8\nread_bytes: 4096\nwrite_bytes: 8192\n"),
            (4096, 8192)
        );
        let stat = "7 (a (b) c) S 1 7 7 0 -1 0 0 0 0 0 25 13 0 0 20 0 1 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some((25, 13)));
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), (1000, 200));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let me = std::process::id() as i32;
        let a = from_procs(&[me], me);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = from_procs(&[me], me);
        assert!(a.memory > 0 && a.pids == 1);
        assert!(b.cpu_ns >= a.cpu_ns);
        assert!(cpu_percent(&a, &b) >= 0.0);
        assert!(host_memory() > 0);
    }

    #[test]
    fn a_guests_cpu_is_measured_against_its_own_clock() {
        let vmm = from_procs(&[std::process::id() as i32], 0);
        let usage = |clock_ns, cpu_ns| nook_agent::protocol::GuestUsage {
            clock_ns,
            cpu_ns,
            memory: 64 << 20,
            memory_total: 240 << 20,
            pids: 2,
            ..Default::default()
        };
        let a = from_guest(&usage(10_000_000_000, 3_000_000_000), &vmm);
        // 1.5 s of CPU over 2 s of the guest's clock, however long the host took to ask.
        let b = from_guest(&usage(12_000_000_000, 4_500_000_000), &vmm);
        assert!((cpu_percent(&a, &b) - 75.0).abs() < 1e-9);
        assert_eq!((b.memory, b.memory_limit, b.pids), (64 << 20, 240 << 20, 2));
        assert_eq!(b.host.map(|h| h.memory), Some(vmm.memory));
        assert!(host_cpu_percent(&a, &b).is_some());
        assert!(host_cpu_percent(&vmm, &b).is_none());
    }
}
