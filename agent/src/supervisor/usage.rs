//! What the guest consumes, for `Stats` (`nook stats` of a VM container): the guest is the
//! container, so its own counters are the container's. Read from /proc at once, in the
//! supervision loop; it takes a few reads of small files and holds no stream up.
//!
//! - CPU: the guest's non-idle time from /proc/stat (user, nice, system, irq, softirq; not
//!   idle, iowait or steal, the time the host gave to others), summed over the vCPUs.
//! - Memory: `MemTotal - MemAvailable` from /proc/meminfo, what `free` calls used: anonymous
//!   memory, tmpfs and shared memory, kernel memory that cannot be reclaimed; not the page cache
//!   the kernel can drop. The limit is `MemTotal`.
//! - PIDs: the tasks of every process but the agent's own and the kernel's threads.
//! - Block I/O: sectors read and written on the whole disks of /proc/diskstats.
//! - Network: bytes of /proc/net/dev, loopback aside.

use std::path::Path;

use crate::protocol::GuestUsage;

/// The guest's counters now.
pub(crate) fn now() -> GuestUsage {
    read(Path::new("/proc"), Path::new("/sys/block"))
}

/// Reads the counters from `proc` (`/proc`) and `sys_block` (`/sys/block`).
fn read(proc: &Path, sys_block: &Path) -> GuestUsage {
    let text = |name: &str| std::fs::read_to_string(proc.join(name)).unwrap_or_default();
    let (memory, memory_total) = meminfo(&text("meminfo"));
    let (block_read, block_write) = diskstats(&text("diskstats"), |name| {
        !name.starts_with("loop") && !name.starts_with("ram") && sys_block.join(name).exists()
    });
    let (net_rx, net_tx) = parse_net_dev(&text("net/dev"));
    GuestUsage {
        clock_ns: super::sys::boottime_ns(),
        cpu_ns: cpu_ticks(&text("stat")) * 1_000_000_000 / clock_ticks(),
        memory,
        memory_total,
        pids: tasks(proc, std::process::id()),
        block_read,
        block_write,
        net_rx,
        net_tx,
    }
}

/// The non-idle ticks of /proc/stat's `cpu` line (all CPUs).
fn cpu_ticks(stat: &str) -> u64 {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user and nice).
    [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| v.get(i).copied().unwrap_or(0))
        .sum()
}

/// (`MemTotal - MemAvailable`, `MemTotal`) in bytes.
fn meminfo(text: &str) -> (u64, u64) {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let total = kib("MemTotal:").unwrap_or(0);
    // Kernels before 3.14 have no MemAvailable: free memory and the page cache then.
    let available = kib("MemAvailable:").unwrap_or_else(|| {
        (kib("MemFree:").unwrap_or(0) + kib("Buffers:").unwrap_or(0) + kib("Cached:").unwrap_or(0))
            .saturating_sub(kib("Shmem:").unwrap_or(0))
    });
    (total.saturating_sub(available) * 1024, total * 1024)
}

/// Bytes read and written on the devices `disk` accepts (sectors are 512 bytes in diskstats).
fn diskstats(text: &str, disk: impl Fn(&str) -> bool) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || !disk(f[2]) {
            continue;
        }
        r += f[5].parse::<u64>().unwrap_or(0) * 512;
        w += f[9].parse::<u64>().unwrap_or(0) * 512;
    }
    (r, w)
}

/// Bytes received and sent in a `/proc/net/dev` text, loopback aside (the host's stats of a
/// namespace container read theirs with it too).
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// The threads of the process whose /proc/PID/stat is `stat`, unless it is `agent`'s or a
/// kernel thread (kthreadd, PID 2, and its children).
fn user_threads(pid: u32, stat: &str, agent: u32) -> u64 {
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ppid: u32 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    if pid == agent || pid == 2 || ppid == 2 {
        return 0;
    }
    f.get(17).and_then(|v| v.parse().ok()).unwrap_or(1)
}

fn tasks(proc: &Path, agent: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(proc) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| {
            // Gone meanwhile: not counted.
            std::fs::read_to_string(proc.join(pid.to_string()).join("stat"))
                .map_or(0, |s| user_threads(pid, &s, agent))
        })
        .sum()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes a constant and reads nothing else.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let stat = "cpu  100 5 50 9000 30 7 3 40 20 0\ncpu0 100 5 50 9000 30 7 3 40 20 0\n";
        assert_eq!(cpu_ticks(stat), 100 + 5 + 50 + 7 + 3);
        assert_eq!(cpu_ticks("intr 5\n"), 0);

        let mem = "MemTotal:         244000 kB\nMemFree:          100000 kB\n\
                   MemAvailable:     150000 kB\nBuffers:            1000 kB\n";
        assert_eq!(meminfo(mem), (94000 * 1024, 244000 * 1024));
        let old =
            "MemTotal: 1000 kB\nMemFree: 300 kB\nBuffers: 50 kB\nCached: 200 kB\nShmem: 100 kB\n";
        assert_eq!(meminfo(old), (550 * 1024, 1000 * 1024));

        let disks = "   1       0 ram0 9 0 9 0 9 0 9 0 0 0 0\n\
                     254       0 vda 120 0 2048 30 0 0 0 0 0 40 30\n\
                     254       1 vda1 100 0 2000 30 0 0 0 0 0 40 30\n\
                     254      16 vdb 10 2 64 5 40 8 800 60 0 70 65 0 0 0 0\n";
        let whole = |n: &str| n == "vda" || n == "vdb";
        assert_eq!(diskstats(disks, whole), ((2048 + 64) * 512, 800 * 512));

        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), (1000, 200));
        assert_eq!(parse_net_dev(""), (0, 0));

        let threads = "1 (nook-agent) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0";
        assert_eq!(user_threads(1, threads, 1), 0);
        let kthread = "15 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 20 0 1 0";
        assert_eq!(user_threads(15, kthread, 1), 0);
        let shell = "40 (sh (x)) S 1 40 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 4 0";
        assert_eq!(user_threads(40, shell, 1), 4);
    }

    #[test]
    fn this_machine_can_be_read() {
        let u = read(Path::new("/proc"), Path::new("/sys/block"));
        assert!(u.memory_total > 0 && u.memory > 0 && u.memory <= u.memory_total);
        assert!(u.cpu_ns > 0 && u.clock_ns > 0);
        // This test's process and its threads are counted: not the agent here.
        assert!(u.pids >= 1);
    }
}
