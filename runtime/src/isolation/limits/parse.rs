//! docker's units for the limit flags: sizes as `RAMInBytes` reads them (`512m`, `1.5g`,
//! `64MiB`), CPU lists as `0-2,4`, and the sentences docker answers bad values with.

/// Why a limit flag was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("invalid argument {value:?} for \"{flag}\" flag: invalid size: '{value}'")]
    Size { flag: &'static str, value: String },
    #[error("invalid --memory {0} bytes: Minimum memory limit allowed is 6MB")]
    MemoryTooSmall(u64),
    #[error(
        "You should always set the Memory limit when using Memoryswap limit, see usage \
         (--memory-swap needs --memory)"
    )]
    SwapWithoutMemory,
    #[error("Minimum memoryswap limit should be larger than memory limit, see usage")]
    SwapBelowMemory,
    #[error("invalid --cpu-shares {0}: the range is 2 to 262144 (1024 is the default)")]
    CpuShares(u64),
    #[error("invalid --cpuset-cpus {0:?}: expected CPU numbers and ranges, like 0-2,4")]
    Cpuset(String),
    #[error("invalid --pids-limit {0:?}: expected a number (0 or -1: unlimited)")]
    Pids(String),
    #[error("invalid --shm-size: SHM size must be greater than 0")]
    ShmSize,
    #[error("invalid --ulimit {0}")]
    Ulimit(String),
}

/// A size as docker's `--memory` takes it: a non-negative number (a fraction too) with an
/// optional unit b, k, m, g, t or p (binary multiples; `kb`, `KiB` mean the same). `flag` names
/// the flag in the error.
pub fn parse_size(flag: &'static str, s: &str) -> Result<u64, LimitsError> {
    let bad = || LimitsError::Size {
        flag,
        value: s.to_string(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    if number.is_empty() || number.starts_with('.') || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `--memory-swap`: a size, or -1 for unlimited swap.
pub fn parse_swap(s: &str) -> Result<i64, LimitsError> {
    if s.trim() == "-1" {
        return Ok(-1);
    }
    let bytes = parse_size("--memory-swap", s)?;
    i64::try_from(bytes).map_err(|_| LimitsError::Size {
        flag: "--memory-swap",
        value: s.to_string(),
    })
}

/// `--pids-limit`: a number; 0 or less is unlimited.
pub fn parse_pids(s: &str) -> Result<i64, LimitsError> {
    s.trim()
        .parse()
        .map_err(|_| LimitsError::Pids(s.to_string()))
}

/// `--cpuset-cpus`: a list of CPU numbers and ranges, checked and kept as written.
pub fn parse_cpuset(s: &str) -> Result<String, LimitsError> {
    let bad = || LimitsError::Cpuset(s.to_string());
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b || b >= 8192 {
            return Err(bad());
        }
    }
    Ok(s.to_string())
}

/// The CPU numbers of a `0-2,4` list.
pub fn cpuset_cpus(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            out.extend(a..=b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_dockers_ram_in_bytes() {
        assert_eq!(parse_size("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("--memory", "64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("--memory", "1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("--memory", "100").unwrap(), 100);
        assert_eq!(parse_size("--memory", "4kb").unwrap(), 4096);
        for bad in ["-5", "", "lots", "5x", "1..5m", ".5m", "-1g", "m"] {
            let e = parse_size("--memory", bad).unwrap_err().to_string();
            assert!(e.contains("invalid size"), "{bad}: {e}");
        }
        assert_eq!(
            parse_size("--memory", "-5").unwrap_err().to_string(),
            "invalid argument \"-5\" for \"--memory\" flag: invalid size: '-5'"
        );
    }

    #[test]
    fn swap_pids_and_cpusets() {
        assert_eq!(parse_swap("-1").unwrap(), -1);
        assert_eq!(parse_swap("1g").unwrap(), 1 << 30);
        assert!(parse_swap("-2").is_err());
        assert_eq!(parse_pids("64").unwrap(), 64);
        assert_eq!(parse_pids("-1").unwrap(), -1);
        assert!(parse_pids("many").is_err());
        assert_eq!(parse_cpuset("0-1,3").unwrap(), "0-1,3");
        for bad in ["", "a", "2-1", "0,,1", "-1", "1-"] {
            assert!(parse_cpuset(bad).is_err(), "{bad}");
        }
        assert_eq!(cpuset_cpus("0-2,5"), [0, 1, 2, 5]);
    }
}
