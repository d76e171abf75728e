//! Whether the guest kernel's OOM killer ran while the container's first process did (docker's
//! `OOMKilled`): the guest is the container, so any kill counts. Counted from `/proc/vmstat`'s
//! `oom_kill` where the kernel keeps VM event counters, else from the kernel log (`/dev/kmsg`),
//! whose records carry sequence numbers: the kills are the "Killed process" records after the
//! one last seen at the start (nook's guest kernel has no event counters).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

/// Where the count stood at the start.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mark {
    vmstat: Option<u64>,
    /// The sequence number of the last kernel log record then.
    kmsg: Option<u64>,
}

impl Mark {
    pub fn now() -> Mark {
        Mark {
            vmstat: vmstat_kills(),
            kmsg: kmsg_records().map(|r| r.iter().map(|(seq, _)| *seq).max().unwrap_or(0)),
        }
    }

    /// The OOM kills since the mark.
    pub fn kills_since(&self) -> u64 {
        if let (Some(before), Some(now)) = (self.vmstat, vmstat_kills()) {
            return now.saturating_sub(before);
        }
        let Some(after) = self.kmsg else {
            return 0;
        };
        kmsg_records().map_or(0, |records| {
            records
                .iter()
                .filter(|(seq, text)| *seq > after && is_kill(text))
                .count() as u64
        })
    }
}

fn vmstat_kills() -> Option<u64> {
    std::fs::read_to_string("/proc/vmstat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The kernel's "Out of memory: Killed process N (name) ..." (or "Memory cgroup out of memory:
/// ...") record.
fn is_kill(text: &str) -> bool {
    text.contains("Killed process ")
}

/// Every record the kernel log holds now: (sequence number, text).
fn kmsg_records() -> Option<Vec<(u64, String)>> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(record) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                    out.push(record);
                }
            }
            // Records overwritten since the last read: go on with the oldest kept.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EAGAIN: nothing more for now.
            Err(_) => break,
        }
    }
    Some(out)
}

/// `PRIORITY,SEQUENCE,TIMESTAMP,FLAGS[,...];TEXT`.
fn parse_record(record: &str) -> Option<(u64, String)> {
    let (header, text) = record.split_once(';')?;
    let seq = header.split(',').nth(1)?.parse().ok()?;
    Some((seq, text.lines().next().unwrap_or_default().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_log_records_are_read() {
        let r = parse_record(
            "3,812,5123456,-;Out of memory: Killed process 42 (alloc) total-vm:270000kB\n",
        )
        .unwrap();
        assert_eq!(r.0, 812);
        assert!(is_kill(&r.1));
        let r = parse_record("6,813,5123999,-,caller=T1;eth0: link up\n SUBSYSTEM=net\n").unwrap();
        assert_eq!(r, (813, "eth0: link up".to_string()));
        assert!(!is_kill(&r.1));
        assert!(parse_record("garbage").is_none());
        assert_eq!(Mark::default().kills_since(), 0);
    }
}
