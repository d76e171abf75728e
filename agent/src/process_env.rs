//! The environment a container process starts with, as docker builds it: its defaults
//! (`PATH`, `HOSTNAME`, `TERM` with a terminal) overridden by the container's own entries, then
//! `HOME` from the resolved user when still unset. The one definition for both isolation
//! columns.

/// The `PATH` a process gets when its environment sets none (docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the defaults depend on besides the container's own entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults<'a> {
    /// The resolved user's home directory, for `HOME`.
    pub home: &'a str,
    /// The container's hostname, for `HOSTNAME`; empty sets none.
    pub hostname: &'a str,
    /// The process has a terminal: `TERM=xterm`.
    pub terminal: bool,
}

fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// The final `KEY=value` list, in docker's order: `PATH`, `HOSTNAME`, `TERM`, the container's
/// entries (each replaces an earlier one of its name in place, else is appended; a bare `KEY`
/// removes it), then `HOME` unless set.
pub fn build(env: &[String], defaults: Defaults<'_>) -> Vec<String> {
    let mut out = vec![format!("PATH={DEFAULT_PATH}")];
    if !defaults.hostname.is_empty() {
        out.push(format!("HOSTNAME={}", defaults.hostname));
    }
    if defaults.terminal {
        out.push("TERM=xterm".into());
    }
    for entry in env {
        let k = key(entry);
        if k.is_empty() {
            continue;
        }
        let slot = out.iter().position(|o| key(o) == k);
        match (entry.contains('='), slot) {
            (true, Some(i)) => out[i] = entry.clone(),
            (true, None) => out.push(entry.clone()),
            (false, Some(i)) => {
                out.remove(i);
            }
            (false, None) => {}
        }
    }
    if !out.iter().any(|o| key(o) == "HOME") {
        out.push(format!("HOME={}", defaults.home));
    }
    out
}

/// The `PATH` an executable is looked up in: the environment's, else [`DEFAULT_PATH`].
pub fn search_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// The kernel's hostname (the container's, inside its UTS namespace or guest); empty when it
/// cannot be read or was never set (the kernel's `(none)`).
pub fn kernel_hostname() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the valid struct.
    if unsafe { libc::uname(&mut uts) } < 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    match String::from_utf8_lossy(&bytes).into_owned() {
        unset if unset == "(none)" => String::new(),
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    const ROOT: Defaults<'static> = Defaults {
        home: "/root",
        hostname: "box",
        terminal: false,
    };

    #[test]
    fn an_empty_image_gets_dockers_defaults() {
        assert_eq!(
            build(&[], ROOT),
            env(&[
                &format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=box",
                "HOME=/root"
            ])
        );
        let tty = Defaults {
            terminal: true,
            hostname: "",
            ..ROOT
        };
        assert_eq!(
            build(&[], tty),
            env(&[&format!("PATH={DEFAULT_PATH}"), "TERM=xterm", "HOME=/root"])
        );
    }

    #[test]
    fn the_containers_entries_override_in_place() {
        let tty = Defaults {
            terminal: true,
            ..ROOT
        };
        let got = build(
            &env(&[
                "FOO=1",
                "PATH=/bin",
                "TERM=dumb",
                "HOME=/home/x",
                "FOO=2",
                "HOSTNAME",
                "UNSET",
                "EMPTY=",
            ]),
            tty,
        );
        assert_eq!(
            got,
            env(&["PATH=/bin", "TERM=dumb", "FOO=2", "HOME=/home/x", "EMPTY="])
        );
        assert_eq!(search_path(&got), "/bin");
        assert_eq!(search_path(&env(&["A=b"])), DEFAULT_PATH);
    }

    #[test]
    fn the_kernel_hostname_is_read() {
        assert!(!kernel_hostname().is_empty());
    }
}
