//! The container's processes, for `Top` (`nook top` of a VM container): every process of the
//! guest but the agent's own and the kernel's threads (the ones `Usage` counts), read from
//! /proc at once in the supervision loop.
//!
//! PIDs are the container's (the innermost of /proc/PID/status's `NSpid`: the entrypoint is 1),
//! a parent outside the container (the agent) is 0, and user names come from the process's own
//! root's /etc/passwd, as `ps` run inside the container would show them.

use std::collections::HashMap;
use std::path::Path;

use crate::protocol::{GuestProcess, GuestProcesses, MAX_BODY};

/// A command line is cut at this many bytes (`ps` cuts it at the terminal's width).
const MAX_ARGS: usize = 4096;

/// The container's processes now.
pub(crate) fn now() -> GuestProcesses {
    let memory_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let mut list = read(Path::new("/proc"), std::process::id(), page_size());
    list.clock_ns = super::sys::boottime_ns();
    list.memory_total = memory_total;
    list
}

/// The processes of `proc` (a /proc), `agent` aside; `page` is the size of a page in bytes.
fn read(proc: &Path, agent: u32, page: u64) -> GuestProcesses {
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let ticks = clock_ticks();
    let mut found: Vec<(u32, GuestProcess)> = Vec::new();
    for pid in pids {
        let dir = proc.join(pid.to_string());
        // Gone meanwhile: not listed.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some(mut p) = parse_stat(&stat, ticks, page) else {
            continue;
        };
        if pid == agent || pid == 2 || p.ppid == 2 {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let (uid, ns_pid) = parse_status(&status);
        p.uid = uid.unwrap_or(0);
        p.pid = ns_pid.unwrap_or(pid);
        p.user = std::fs::read_to_string(dir.join("root/etc/passwd"))
            .ok()
            .and_then(|passwd| user_name(&passwd, p.uid))
            .unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        p.args = args(&cmdline, &p.comm);
        found.push((pid, p));
    }
    // The parents by the container's numbers; one not listed (the agent) is outside it.
    let inside: HashMap<u32, u32> = found.iter().map(|(pid, p)| (*pid, p.pid)).collect();
    let mut list = GuestProcesses::default();
    // The frame's header and the list's own fields, with room to spare.
    let mut size = 64;
    for (_, mut p) in found {
        p.ppid = inside.get(&p.ppid).copied().unwrap_or(0);
        size += p.wire_len();
        if size > MAX_BODY {
            list.omitted += 1;
        } else {
            list.processes.push(p);
        }
    }
    list
}

/// The fields of /proc/PID/stat a listing shows (the PID, user and command line are filled in
/// from other files).
fn parse_stat(stat: &str, ticks: u64, page: u64) -> Option<GuestProcess> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    // Field 3 (state) is index 0.
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let num = |field: usize| -> u64 { f.get(field - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let tty = tty_name(num(7));
    Some(GuestProcess {
        ppid: u32::try_from(num(4)).unwrap_or(0),
        state: f.first()?.to_string(),
        tty,
        cpu_ns: (num(14) + num(15)) * 1_000_000_000 / ticks,
        start_ns: num(22) * 1_000_000_000 / ticks,
        vsz: num(23),
        rss: num(24) * page,
        comm,
        ..Default::default()
    })
}

/// The effective uid and the innermost PID of a /proc/PID/status text.
fn parse_status(status: &str) -> (Option<u32>, Option<u32>) {
    let field = |key: &str, nth_from_end: bool, nth: usize| -> Option<u32> {
        let values = status.lines().find_map(|l| l.strip_prefix(key))?;
        let mut v = values.split_whitespace();
        let s = if nth_from_end { v.last() } else { v.nth(nth) }?;
        s.parse().ok()
    };
    (field("Uid:", false, 1), field("NSpid:", true, 0))
}

/// The name of `uid` in an /etc/passwd text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid) && !f[0].is_empty()).then(|| f[0].to_string())
    })
}

/// A command line (NUL-separated arguments) as `ps` shows it: its arguments separated by
/// spaces, or `[comm]` when it has none (a zombie's), cut at [`MAX_ARGS`].
fn args(cmdline: &[u8], comm: &str) -> String {
    let cmdline = cmdline.strip_suffix(b"\0").unwrap_or(cmdline);
    if cmdline.is_empty() {
        return format!("[{comm}]");
    }
    let cut = &cmdline[..cmdline.len().min(MAX_ARGS)];
    let joined: Vec<u8> = cut.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    String::from_utf8_lossy(&joined).into_owned()
}

/// The name `ps` gives a `tty_nr` of /proc/PID/stat.
fn tty_name(nr: u64) -> String {
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".into(),
        229 => format!("hvc{minor}"),
        _ => "?".into(),
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes a constant and reads nothing else.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /proc entry: its stat line (state S, ppid, tty, times, sizes), status and cmdline.
    fn process(proc: &Path, pid: u32, comm: &str, ppid: u32, ns: &[u32], uid: u32, cmd: &str) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(dir.join("root/etc")).unwrap();
        // tty_nr 34816 is pts/0; utime 150 and stime 50 ticks; started 1000 ticks after
        // boot; 8 MiB virtual, 300 pages resident.
        let stat = format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 34816 -1 4194560 0 0 0 0 150 50 0 0 20 0 1 0 \
             1000 8388608 300 18446744073709551615"
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        let ns: Vec<String> = ns.iter().map(u32::to_string).collect();
        let status = format!(
            "Name:\t{comm}\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpid:\t{}\n",
            ns.join("\t")
        );
        std::fs::write(dir.join("status"), status).unwrap();
        std::fs::write(dir.join("cmdline"), cmd).unwrap();
        std::fs::write(
            dir.join("root/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
    }

    #[test]
    fn the_containers_processes_are_listed_as_it_numbers_them() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        process(proc, 1, "nook-agent", 0, &[1], 0, "/init\0");
        process(proc, 2, "kthreadd", 0, &[2], 0, "");
        process(proc, 15, "kworker/0:1", 2, &[15], 0, "");
        process(proc, 40, "sh (x)", 1, &[40, 1], 0, "sh\0-c\0sleep 1000\0");
        process(proc, 41, "sleep", 40, &[41, 2], 33, "sleep\x001000\0");
        process(proc, 50, "sh", 1, &[50, 3], 1234, "");
        let list = read(proc, 1, 4096);
        let ticks = clock_ticks();
        let rows: Vec<(u32, u32, u32, &str, &str)> = list
            .processes
            .iter()
            .map(|p| (p.pid, p.ppid, p.uid, p.user.as_str(), p.args.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (1, 0, 0, "root", "sh -c sleep 1000"),
                (2, 1, 33, "www", "sleep 1000"),
                (3, 0, 1234, "", "[sh]"),
            ]
        );
        let sh = &list.processes[0];
        assert_eq!(sh.comm, "sh (x)");
        assert_eq!(sh.tty, "pts/0");
        assert_eq!(sh.state, "S");
        assert_eq!(sh.cpu_ns, 200 * 1_000_000_000 / ticks);
        assert_eq!(sh.start_ns, 1000 * 1_000_000_000 / ticks);
        assert_eq!((sh.vsz, sh.rss), (8 << 20, 300 * 4096));
        assert_eq!(list.omitted, 0);
    }

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(136 << 8 | 3), "pts/3");
        assert_eq!(tty_name(4 << 8 | 1), "tty1");
        assert_eq!(tty_name(4 << 8 | 64), "ttyS0");
        assert_eq!(tty_name(5 << 8 | 1), "console");
    }

    #[test]
    fn this_machine_can_be_listed() {
        // Every process of this machine the test may read; this test's own aside.
        let list = read(Path::new("/proc"), std::process::id(), page_size());
        assert!(!list.processes.is_empty());
        assert!(list.processes.iter().all(|p| !p.args.is_empty()));
    }
}
