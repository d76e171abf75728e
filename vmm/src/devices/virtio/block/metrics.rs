//! What a disk counts and how its failures reach the log: one stderr line per failed request,
//! rate-limited so a guest hammering a broken disk cannot flood the VMM's stderr.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};

/// Failures logged one by one before the log thins out to powers of two.
pub const LOG_FIRST: u64 = 8;

/// Counters of one disk, shared between its worker thread and whoever reports on the VM.
#[derive(Debug, Default)]
pub struct DiskMetrics {
    io_errors: AtomicU64,
}

impl DiskMetrics {
    /// Requests whose host I/O (seek, read, write, flush) failed.
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }

    /// Counts one failed request; returns the new count.
    pub fn count_io_error(&self) -> u64 {
        self.io_errors.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Whether the `n`th failure (counting from 1) gets a log line: the first LOG_FIRST, then
/// each power of two.
pub fn should_log(n: u64) -> bool {
    n <= LOG_FIRST || n.is_power_of_two()
}

/// The line logged for the `n`th failure, or None when rate limiting drops it. `sector` is
/// where a read or write started (a flush has none).
pub fn failure_line(
    disk: &str,
    op: &str,
    sector: Option<u64>,
    error: &dyn Error,
    n: u64,
) -> Option<String> {
    if !should_log(n) {
        return None;
    }
    let cause = nook_agent::errors::chain(error);
    let tail = match n {
        n if n == LOG_FIRST => " (further failures are logged at powers of two)".to_string(),
        n if n > LOG_FIRST => format!(" ({n} failures so far)"),
        _ => String::new(),
    };
    let at = sector.map_or(String::new(), |s| format!(" at sector {s}"));
    Some(format!(
        "nook-vmm: disk {disk}: {op}{at} failed: {cause}{tail}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_thins_out_to_powers_of_two() {
        let logged: Vec<u64> = (1..=1000).filter(|n| should_log(*n)).collect();
        assert_eq!(logged, [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512]);
    }

    #[test]
    fn a_line_names_disk_operation_sector_and_cause() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let line = failure_line("/img", "write", Some(7), &e, 1).unwrap();
        assert!(line.starts_with("nook-vmm: disk /img: write at sector 7 failed: "));
        assert!(line.contains("os error 28"), "{line}");
        assert!(failure_line("/img", "write", Some(7), &e, 9).is_none());
        let later = failure_line("/img", "write", Some(7), &e, 16).unwrap();
        assert!(later.ends_with("(16 failures so far)"), "{later}");
        let flush = failure_line("/img", "flush", None, &e, 8).unwrap();
        assert!(
            flush.starts_with("nook-vmm: disk /img: flush failed: "),
            "{flush}"
        );
        assert!(flush.ends_with("(further failures are logged at powers of two)"));
    }
}
