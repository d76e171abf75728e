//! Warm starts: a VM resumed from a snapshot of a booted, idle guest (see nook-vmm's
//! `snapshot` module). A template guest boots with `nook.warm`: once the kernel is up, and
//! before anything of a container is touched, its agent asks the host for its container:
//!
//! 1. the agent writes [`REQUEST`] on the channel and waits for the answer;
//! 2. the host building the template reads the request ([`read_request`]) and has the VMM write
//!    its snapshot there, the agent waiting; the guest never goes further;
//! 3. every VM resumed from the snapshot is that agent, still waiting: its host sends the answer
//!    at once ([`WarmStart::send`]), one line, [`WarmStart`]'s `Display`: the container's
//!    `nook.*` parameters, 64 bytes of fresh randomness, the host's wall-clock time and each
//!    disk's size in sectors;
//! 4. the agent mixes the bytes into the kernel's random pool and forces a reseed (clones must
//!    not share the template's random state), sets the clock, waits until the kernel sees each
//!    disk at its size (the VMM raised a configuration change for them) and drops what it
//!    cached of the placeholders, and boots on with the new parameters.
//!
//! The randomness goes over the channel, not the command line, so the container cannot read
//! it back from /proc/cmdline.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a resumed agent writes to ask for its container's start data.
pub const REQUEST: &[u8] = b"NOOK-WARM 1\n";
/// How many random bytes the host sends.
pub const SEED_BYTES: usize = 64;
/// The longest answer line accepted.
const MAX_LINE: usize = 16 << 10;
/// How long the kernel may take to see a restored disk's new size.
const DISK_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's answer to [`REQUEST`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmStart {
    /// The container's kernel command line (what a cold boot would have had).
    pub cmdline: String,
    /// Fresh random bytes for the guest's pool.
    pub seed: [u8; SEED_BYTES],
    /// The host's CLOCK_REALTIME, in ns.
    pub realtime_ns: u64,
    /// Each virtio-blk disk's size in 512-byte sectors, in order (vda, vdb, ...).
    pub disk_sectors: Vec<u64>,
}

/// Why the answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("the host's warm-start answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("the warm-start exchange with the host failed")]
    Io(#[from] io::Error),
    #[error("disk {disk} did not reach {sectors} sectors within {DISK_TIMEOUT:?} (it has {seen})")]
    Disk {
        disk: String,
        sectors: u64,
        seen: u64,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `SEED_HEX REALTIME_NS SECTORS,SECTORS|CMDLINE`: one line, the command line last since it
/// holds spaces.
impl fmt::Display for WarmStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disks: Vec<String> = self.disk_sectors.iter().map(u64::to_string).collect();
        write!(
            f,
            "{} {} {}|{}",
            hex(&self.seed),
            self.realtime_ns,
            if disks.is_empty() {
                "-".to_string()
            } else {
                disks.join(",")
            },
            self.cmdline
        )
    }
}

impl WarmStart {
    /// Reads one answer line (without its newline).
    pub fn parse(line: &str) -> Result<WarmStart, WarmError> {
        let bad = WarmError::Malformed;
        let (head, cmdline) = line.split_once('|').ok_or(bad("no '|'"))?;
        if cmdline.contains('\n') {
            return Err(bad("a newline in the command line"));
        }
        let mut words = head.split(' ');
        let (Some(seed), Some(time), Some(disks), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad("not three fields before '|'"));
        };
        if seed.len() != 2 * SEED_BYTES || !seed.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the seed is not 64 bytes of hex"));
        }
        let mut bytes = [0u8; SEED_BYTES];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).map_err(|_| bad("seed"))?;
        }
        let realtime_ns = time.parse().map_err(|_| bad("the time is not a number"))?;
        let disk_sectors = match disks {
            "-" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| bad("a disk size is not a number"))?,
        };
        if disk_sectors.len() > 26 {
            return Err(bad("more disks than vda..vdz"));
        }
        Ok(WarmStart {
            cmdline: cmdline.to_owned(),
            seed: bytes,
            realtime_ns,
            disk_sectors,
        })
    }

    /// The agent's half: asks on `channel` and reads the answer.
    pub fn ask<C: Read + Write>(channel: &mut C) -> Result<WarmStart, WarmError> {
        channel.write_all(REQUEST)?;
        channel.flush()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if channel.read(&mut byte)? == 0 {
                return Err(WarmError::Malformed("the channel closed mid-answer"));
            }
            if byte[0] == b'\n' {
                break;
            }
            if line.len() == MAX_LINE {
                return Err(WarmError::Malformed("the answer is too long"));
            }
            line.push(byte[0]);
        }
        let line = String::from_utf8(line).map_err(|_| WarmError::Malformed("not UTF-8"))?;
        WarmStart::parse(&line)
    }

    /// The resumed VM's host's half: sends the answer (the request was read by the host that
    /// built the template).
    pub fn send<C: Write>(&self, channel: &mut C) -> Result<(), WarmError> {
        let mut line = self.to_string();
        line.push('\n');
        channel.write_all(line.as_bytes())?;
        channel.flush()?;
        Ok(())
    }
}

/// The template builder's half: reads [`REQUEST`] from `channel`, and nothing more.
pub fn read_request<C: Read>(channel: &mut C) -> Result<(), WarmError> {
    let mut request = [0u8; REQUEST.len()];
    channel.read_exact(&mut request)?;
    if request != REQUEST {
        return Err(WarmError::Malformed(
            "the guest did not ask for a warm start",
        ));
    }
    Ok(())
}

/// `struct rand_pool_info` with its buffer.
#[repr(C)]
struct PoolInfo {
    entropy_count: libc::c_int,
    buf_size: libc::c_int,
    buf: [u8; SEED_BYTES],
}

/// Mixes `seed` into the kernel's pool, credited, and makes the kernel reseed its generator
/// from the pool now: every later read of /dev/urandom, getrandom and the stack canaries of
/// new processes differ between clones.
pub fn reseed(seed: &[u8; SEED_BYTES]) -> io::Result<()> {
    // _IOW('R', 0x03, int[2]) and _IO('R', 0x07), from linux/random.h.
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    let urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    let info = PoolInfo {
        entropy_count: (SEED_BYTES * 8) as libc::c_int,
        buf_size: SEED_BYTES as libc::c_int,
        buf: *seed,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: `info` is a rand_pool_info followed by its `buf_size` bytes, read by the call.
    if unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, &info) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: this ioctl takes no argument.
    if unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the wall clock (the template's is the time it was snapshotted).
pub fn set_clock(realtime_ns: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (realtime_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (realtime_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec read by the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the kernel sees disk `i` (vda, vdb, ...) at `sectors[i]`, reading its size
/// under `sys_block` (`/sys/block`), then drops what the kernel cached of the template's
/// placeholder disks (the partition scan at boot read their first blocks): a mount must read
/// this container's disk, not the placeholder's cached zeros.
pub fn refresh_disks(sys_block: &Path, sectors: &[u64]) -> Result<(), WarmError> {
    wait_for_disks(sys_block, sectors)?;
    for i in 0..sectors.len() {
        let dev = format!("/dev/vd{}", (b'a' + i as u8) as char);
        flush_buffers(Path::new(&dev)).map_err(WarmError::Io)?;
    }
    Ok(())
}

/// `BLKFLSBUF`: writes back and drops the block device's cached pages.
fn flush_buffers(dev: &Path) -> io::Result<()> {
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    let disk = std::fs::File::open(dev)?;
    use std::os::fd::AsRawFd;
    // SAFETY: this ioctl takes no argument.
    if unsafe { libc::ioctl(disk.as_raw_fd(), BLKFLSBUF, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the kernel sees disk `i` (vda, vdb, ...) at `sectors[i]`, reading its size
/// under `sys_block` (`/sys/block`).
pub fn wait_for_disks(sys_block: &Path, sectors: &[u64]) -> Result<(), WarmError> {
    let start = Instant::now();
    for (i, &want) in sectors.iter().enumerate() {
        let disk = format!("vd{}", (b'a' + i as u8) as char);
        let path = sys_block.join(&disk).join("size");
        loop {
            let seen = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if seen == want {
                break;
            }
            if start.elapsed() > DISK_TIMEOUT {
                return Err(WarmError::Disk {
                    disk,
                    sectors: want,
                    seen,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WarmStart {
        WarmStart {
            cmdline: "console=ttynull reboot=k panic=-1 rdinit=/init nook.upper=vdb".into(),
            seed: std::array::from_fn(|i| i as u8 * 3),
            realtime_ns: 1_795_000_000_123_456_789,
            disk_sectors: vec![2048, 4_194_304],
        }
    }

    #[test]
    fn the_answer_reads_back_as_written() {
        let w = sample();
        assert_eq!(WarmStart::parse(&w.to_string()).unwrap(), w);
        let none = WarmStart {
            disk_sectors: Vec::new(),
            cmdline: String::new(),
            ..w
        };
        assert_eq!(WarmStart::parse(&none.to_string()).unwrap(), none);
    }

    /// Both halves over a socket pair, as the host and the agent run them.
    #[test]
    fn the_exchange_over_a_stream() {
        let (mut host, mut guest) = std::os::unix::net::UnixStream::pair().unwrap();
        let w = sample();
        let sent = w.clone();
        let t = std::thread::spawn(move || {
            read_request(&mut host)?;
            sent.send(&mut host)?;
            // The host may send the container's start at once, before the guest is ready.
            host.write_all(b"start").map_err(WarmError::Io)?;
            Ok::<_, WarmError>(host)
        });
        assert_eq!(WarmStart::ask(&mut guest).unwrap(), w);
        let mut host = t.join().unwrap().unwrap();
        // Nothing beyond the answer was written or read: the protocol that follows is intact.
        guest.write_all(b"next").unwrap();
        let mut next = [0u8; 4];
        host.read_exact(&mut next).unwrap();
        assert_eq!(&next, b"next");
        let mut start = [0u8; 5];
        guest.read_exact(&mut start).unwrap();
        assert_eq!(&start, b"start");
    }

    #[test]
    fn malformed_answers_are_refused() {
        let good = sample().to_string();
        let (head, cmdline) = good.split_once('|').unwrap();
        for bad in [
            String::new(),
            cmdline.to_string(),
            format!("{}|x", &head[2..]),
            head.replacen(' ', "  ", 1) + "|x",
            head.replace("2048", "-1") + "|x",
            format!("{} 1 -|x", "zz".repeat(SEED_BYTES)),
            format!("{} x -|x", "00".repeat(SEED_BYTES)),
            format!(
                "{} 1 {}|x",
                "00".repeat(SEED_BYTES),
                vec!["1"; 27].join(",")
            ),
        ] {
            assert!(WarmStart::parse(&bad).is_err(), "{bad:?}");
        }
        // A guest that asks for something else is no template.
        let (mut host, mut guest) = std::os::unix::net::UnixStream::pair().unwrap();
        guest.write_all(b"NOOK-COLD 1\n").unwrap();
        assert!(read_request(&mut host).is_err());
    }

    #[test]
    fn disks_are_waited_for_until_their_size_shows() {
        let dir = tempfile::tempdir().unwrap();
        for (disk, size) in [("vda", "8\n"), ("vdb", "0\n")] {
            std::fs::create_dir(dir.path().join(disk)).unwrap();
            std::fs::write(dir.path().join(disk).join("size"), size).unwrap();
        }
        let vdb = dir.path().join("vdb/size");
        let grow = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(vdb, "16\n").unwrap();
        });
        wait_for_disks(dir.path(), &[8, 16]).unwrap();
        grow.join().unwrap();
    }
}
