//! `nook top CONTAINER [ps OPTIONS]`: the running processes of a container, docker's way.
//!
//! A namespace container's are the host's: the host's `ps` (with `-ef` unless options are
//! given), keeping the lines whose PID is one of the container's. A VM container's run in its
//! guest kernel, out of the host's `ps`: its agent lists them from the guest's /proc and they
//! are laid out here as `ps` lays them out, for the options `ps` is given most (`-ef`, `aux`,
//! `-o FIELDS`), with the PIDs the container sees (its entrypoint is 1).

use anyhow::Context as _;
use chrono::{DateTime, Datelike as _, Local};

use nook::container::state::Status;
use nook::isolation::Isolation;
use nook_agent::protocol::{GuestProcess, GuestProcesses};

use super::{emit, Context};

#[derive(clap::Args)]
pub struct Args {
    container: String,
    /// Options for ps (default: -ef); the output must have a PID column. A VM container's
    /// take -e, -A, -f, BSD a, u, x and -o FIELDS (pid, ppid, uid, user, c, %cpu, %mem, vsz,
    /// rss, tty, stat, stime, start, time, etime, comm, args, cmd; FIELD=HEADER renames)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS_OPTIONS"
    )]
    ps_options: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let engine = ctx.engine();
    let container = engine.containers.find(&args.container)?;
    let Status::Running { init, .. } = container.status() else {
        anyhow::bail!("container {} is not running", args.container);
    };
    if let Isolation::Vm(_) = container.config.isolation {
        let columns = columns(&args.ps_options)?;
        let path = nook::isolation::vm::control_path(&nook::paths::ProcessEnv, container.id())?;
        let list = nook::isolation::vm::control::client::top(&path)
            .with_context(|| format!("cannot list the processes of {}", args.container))?;
        if list.omitted > 0 {
            eprintln!(
                "warning: {} processes left out: the list is longer than one answer holds",
                list.omitted
            );
        }
        return emit(&table(&columns, &list, Local::now()));
    }
    let pids = container.config.isolation.processes(init.pid)?;
    let options = if args.ps_options.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_options
    };
    let out = std::process::Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps (procps) on the host")?;
    anyhow::ensure!(
        out.status.success(),
        "ps {} failed: {}",
        options.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    emit(&keep_pids(&String::from_utf8_lossy(&out.stdout), &pids)?)
}

/// The header of `ps` output and the lines whose PID column is in `pids`.
fn keep_pids(ps: &str, pids: &[i32]) -> anyhow::Result<String> {
    let mut lines = ps.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("cannot find the PID column in the ps output: give ps options that print it")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A column of a VM container's listing: what it shows and its header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Column {
    field: Field,
    header: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Pid,
    Ppid,
    Uid,
    /// The user's name, its number when the container's /etc/passwd has none.
    User,
    /// CPU use over the process's life, in whole percent, at most 99 (`-f`'s `C`).
    C,
    Pcpu,
    Pmem,
    Vsz,
    Rss,
    Tty,
    Stat,
    /// The start: a time today, a date this year, else a year.
    Stime,
    /// CPU time as `[DD-]HH:MM:SS`.
    Time,
    /// CPU time as BSD's `M:SS`.
    BsdTime,
    Etime,
    Comm,
    Args,
}

impl Field {
    fn right_aligned(self) -> bool {
        !matches!(
            self,
            Field::User | Field::Tty | Field::Stat | Field::Comm | Field::Args
        )
    }
}

/// `ps`'s name for a field and its header.
fn field(name: &str) -> Option<(Field, &'static str)> {
    Some(match name {
        "pid" => (Field::Pid, "PID"),
        "ppid" => (Field::Ppid, "PPID"),
        "uid" | "euid" => (Field::Uid, "UID"),
        "user" | "euser" | "uname" => (Field::User, "USER"),
        "c" => (Field::C, "C"),
        "%cpu" | "pcpu" => (Field::Pcpu, "%CPU"),
        "%mem" | "pmem" => (Field::Pmem, "%MEM"),
        "vsz" | "vsize" => (Field::Vsz, "VSZ"),
        "rss" | "rssize" | "rsz" => (Field::Rss, "RSS"),
        "tty" | "tt" | "tname" => (Field::Tty, "TT"),
        "stat" => (Field::Stat, "STAT"),
        "s" | "state" => (Field::Stat, "S"),
        "stime" | "start_time" => (Field::Stime, "STIME"),
        "start" | "lstart" | "bsdstart" => (Field::Stime, "STARTED"),
        "time" | "cputime" => (Field::Time, "TIME"),
        "etime" => (Field::Etime, "ELAPSED"),
        "comm" | "ucomm" | "ucmd" => (Field::Comm, "COMMAND"),
        "args" | "command" => (Field::Args, "COMMAND"),
        "cmd" => (Field::Args, "CMD"),
        _ => return None,
    })
}

/// The columns `ps OPTIONS` prints, for the options a VM container's listing takes: `-e`,
/// `-A` (every process is the container's anyway), `-f`, BSD `a`, `u`, `x`, `w`, and `-o`
/// (or `o`, `--format`) lists.
fn columns(options: &[String]) -> anyhow::Result<Vec<Column>> {
    let (mut full, mut bsd, mut bsd_user) = (false, false, false);
    let mut listed: Vec<String> = Vec::new();
    let mut it = options.iter();
    while let Some(opt) = it.next() {
        let mut list_from = |rest: &str, it: &mut std::slice::Iter<'_, String>| {
            let list = if rest.is_empty() {
                it.next().context("-o needs a list of fields")?.clone()
            } else {
                rest.to_string()
            };
            listed.push(list);
            anyhow::Ok(())
        };
        if let Some(list) = opt.strip_prefix("--format") {
            list_from(list.trim_start_matches('='), &mut it)?;
        } else if let Some(flags) = opt.strip_prefix('-') {
            for (i, c) in flags.char_indices() {
                match c {
                    'e' | 'A' => {}
                    'f' => full = true,
                    'o' => {
                        list_from(&flags[i + 1..], &mut it)?;
                        break;
                    }
                    _ => anyhow::bail!(unsupported(opt)),
                }
            }
        } else {
            bsd = true;
            for (i, c) in opt.char_indices() {
                match c {
                    'a' | 'x' | 'w' | 'e' => {}
                    'u' => bsd_user = true,
                    'o' => {
                        list_from(&opt[i + 1..], &mut it)?;
                        break;
                    }
                    _ => anyhow::bail!(unsupported(opt)),
                }
            }
        }
    }
    if !listed.is_empty() {
        let mut out = Vec::new();
        for list in &listed {
            // A header runs to the end of its list (`-o pid,comm=NAME OF IT`).
            let mut rest = list.as_str();
            while !rest.is_empty() {
                let (item, next) = match rest.find([',', '=']) {
                    Some(i) if rest.as_bytes()[i] == b'=' => (rest, ""),
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, ""),
                };
                rest = next;
                let (name, header) = match item.split_once('=') {
                    Some((n, h)) => (n, Some(h)),
                    None => (item, None),
                };
                let (f, default) = field(name.trim()).with_context(|| {
                    format!("ps field {name:?} is not listed for a VM container")
                })?;
                out.push(Column {
                    field: f,
                    header: header.unwrap_or(default).to_string(),
                });
            }
        }
        return Ok(out);
    }
    let names: &[(Field, &str)] = if bsd_user {
        &[
            (Field::User, "USER"),
            (Field::Pid, "PID"),
            (Field::Pcpu, "%CPU"),
            (Field::Pmem, "%MEM"),
            (Field::Vsz, "VSZ"),
            (Field::Rss, "RSS"),
            (Field::Tty, "TTY"),
            (Field::Stat, "STAT"),
            (Field::Stime, "START"),
            (Field::BsdTime, "TIME"),
            (Field::Args, "COMMAND"),
        ]
    } else if full || options.is_empty() {
        &[
            (Field::User, "UID"),
            (Field::Pid, "PID"),
            (Field::Ppid, "PPID"),
            (Field::C, "C"),
            (Field::Stime, "STIME"),
            (Field::Tty, "TTY"),
            (Field::Time, "TIME"),
            (Field::Args, "CMD"),
        ]
    } else if bsd {
        &[
            (Field::Pid, "PID"),
            (Field::Tty, "TTY"),
            (Field::Stat, "STAT"),
            (Field::BsdTime, "TIME"),
            (Field::Args, "COMMAND"),
        ]
    } else {
        &[
            (Field::Pid, "PID"),
            (Field::Tty, "TTY"),
            (Field::Time, "TIME"),
            (Field::Comm, "CMD"),
        ]
    };
    Ok(names
        .iter()
        .map(|(field, header)| Column {
            field: *field,
            header: (*header).to_string(),
        })
        .collect())
}

fn unsupported(opt: &str) -> String {
    format!(
        "ps option {opt:?} is not supported for a VM container: its processes are listed by its \
         agent, for -e, -A, -f, a, u, x and -o FIELDS"
    )
}

/// The listing as `ps` prints it: a header, then a line a process, in columns; `now` is the
/// host's time (the start times are the guest's boot clock, placed against it).
fn table(columns: &[Column], list: &GuestProcesses, now: DateTime<Local>) -> String {
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.header.clone()).collect()];
    for p in &list.processes {
        rows.push(
            columns
                .iter()
                .map(|c| value(c.field, p, list, now))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, c)) in row.iter().zip(columns).enumerate() {
            if i > 0 {
                line.push(' ');
            }
            let last = i + 1 == columns.len();
            match (c.field.right_aligned(), last) {
                (true, _) => line.push_str(&format!("{cell:>w$}", w = widths[i])),
                (false, false) => line.push_str(&format!("{cell:<w$}", w = widths[i])),
                (false, true) => line.push_str(cell),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn value(field: Field, p: &GuestProcess, list: &GuestProcesses, now: DateTime<Local>) -> String {
    let elapsed = list.clock_ns.saturating_sub(p.start_ns);
    let percent = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    match field {
        Field::Pid => p.pid.to_string(),
        Field::Ppid => p.ppid.to_string(),
        Field::Uid => p.uid.to_string(),
        Field::User if p.user.is_empty() => p.uid.to_string(),
        Field::User => p.user.clone(),
        Field::C => (percent(p.cpu_ns, elapsed) as u64).min(99).to_string(),
        Field::Pcpu => format!("{:.1}", percent(p.cpu_ns, elapsed)),
        Field::Pmem => format!("{:.1}", percent(p.rss, list.memory_total)),
        Field::Vsz => (p.vsz / 1024).to_string(),
        Field::Rss => (p.rss / 1024).to_string(),
        Field::Tty => p.tty.clone(),
        Field::Stat => p.state.clone(),
        Field::Stime => {
            let start = now - chrono::Duration::nanoseconds(i64::try_from(elapsed).unwrap_or(0));
            if start.date_naive() == now.date_naive() {
                start.format("%H:%M").to_string()
            } else if start.year() == now.year() {
                start.format("%b%d").to_string()
            } else {
                start.format("%Y").to_string()
            }
        }
        Field::Time => {
            let s = p.cpu_ns / 1_000_000_000;
            let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
            if d > 0 {
                format!("{d}-{h:02}:{m:02}:{s:02}")
            } else {
                format!("{h:02}:{m:02}:{s:02}")
            }
        }
        Field::BsdTime => {
            let s = p.cpu_ns / 1_000_000_000;
            format!("{}:{:02}", s / 60, s % 60)
        }
        Field::Etime => {
            let s = elapsed / 1_000_000_000;
            let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
            match (d, h) {
                (0, 0) => format!("{m:02}:{s:02}"),
                (0, h) => format!("{h:02}:{m:02}:{s:02}"),
                (d, h) => format!("{d}-{h:02}:{m:02}:{s:02}"),
            }
        }
        Field::Comm => p.comm.clone(),
        Field::Args => p.args.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_list() -> GuestProcesses {
        let sec = 1_000_000_000;
        GuestProcesses {
            clock_ns: 4000 * sec,
            memory_total: 1000 << 10,
            processes: vec![
                GuestProcess {
                    pid: 1,
                    ppid: 0,
                    uid: 0,
                    user: "root".into(),
                    tty: "?".into(),
                    state: "S".into(),
                    start_ns: 3950 * sec,
                    cpu_ns: 5 * sec,
                    vsz: 4096 << 10,
                    rss: 100 << 10,
                    args: "sh -c sleep 1000".into(),
                    comm: "sh".into(),
                },
                GuestProcess {
                    pid: 7,
                    ppid: 1,
                    uid: 1234,
                    user: String::new(),
                    tty: "pts/0".into(),
                    state: "R".into(),
                    start_ns: 0,
                    cpu_ns: 3725 * sec,
                    vsz: 2048 << 10,
                    rss: 20 << 10,
                    args: "sleep 1000".into(),
                    comm: "sleep".into(),
                },
            ],
            omitted: 0,
        }
    }

    fn now() -> DateTime<Local> {
        use chrono::TimeZone as _;
        Local.with_ymd_and_hms(2026, 6, 15, 12, 30, 0).unwrap()
    }

    fn show(options: &[&str]) -> String {
        let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        table(&columns(&options).unwrap(), &guest_list(), now())
    }

    #[test]
    fn a_vm_listing_has_the_columns_of_ps_ef() {
        let expect = "UID  PID PPID  C STIME TTY       TIME CMD\n\
                      root   1    0 10 12:29 ?     00:00:05 sh -c sleep 1000\n\
                      1234   7    1 93 11:23 pts/0 01:02:05 sleep 1000\n";
        assert_eq!(show(&[]), expect);
        assert_eq!(show(&["-ef"]), expect);
        assert_eq!(show(&["-e", "-f"]), expect);
        // Every line keeps its PID in the header's PID column.
        assert_eq!(keep_pids(expect, &[7]).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_vm_listing_takes_bsd_and_field_options() {
        assert_eq!(
            show(&["aux"]),
            "USER PID %CPU %MEM  VSZ RSS TTY   STAT START  TIME COMMAND\n\
             root   1 10.0 10.0 4096 100 ?     S    12:29  0:05 sh -c sleep 1000\n\
             1234   7 93.1  2.0 2048  20 pts/0 R    11:23 62:05 sleep 1000\n"
        );
        assert_eq!(
            show(&["-o", "pid,comm", "-o", "etime=UP FOR"]),
            "PID COMMAND   UP FOR\n  1 sh         00:50\n  7 sleep   01:06:40\n"
        );
        assert_eq!(show(&["-opid,uid"]), "PID  UID\n  1    0\n  7 1234\n");
        for bad in [
            &["-L"][..],
            &["-o", "pid,wchan"],
            &["-o"],
            &["aux", "--sort=pid"],
        ] {
            let options: Vec<String> = bad.iter().map(|o| o.to_string()).collect();
            assert!(columns(&options).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_containers_lines_are_kept() {
        let ps = "UID   PID  PPID C STIME TTY TIME CMD\n\
                  root    1     0 0 10:00 ?   0:01 /sbin/init\n\
                  user  420   419 0 10:01 ?   0:00 sleep 1000\n\
                  user 4200   419 0 10:01 ?   0:00 sh\n";
        let out = keep_pids(ps, &[420]).unwrap();
        assert_eq!(
            out,
            "UID   PID  PPID C STIME TTY TIME CMD\nuser  420   419 0 10:01 ?   0:00 sleep 1000\n"
        );
        let e = keep_pids("USER COMMAND\nroot init\n", &[1]).unwrap_err();
        assert!(e.to_string().contains("PID column"), "{e}");
    }
}
