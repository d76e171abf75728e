//! The process-level security options of the container (`--cap-add`, `--cap-drop`,
//! `--privileged`, `--security-opt no-new-privileges`, `--security-opt seccomp=`), applied in each
//! process the agent starts between fork and exec, in runc's order: the bounding set first
//! (needs CAP_SETPCAP), the seccomp filters while still root when no_new_privs is off (needs
//! CAP_SYS_ADMIN then), the user switch, the capability sets of a root workload, no_new_privs,
//! and the filters last when no_new_privs is on.
//!
//! The host compiled the filters (nook's seccomp profile compiler) and computed the capability
//! set; a `Start` without options leaves the processes as the guest's root runs them.

use std::io;

use crate::confine;
use crate::protocol::GuestSecurity;

/// The confinement of the container's processes, prepared once at `Start`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Security {
    /// The capabilities kept (within those the guest kernel knows); none: all, untouched.
    keep: Option<u64>,
    last_cap: u32,
    no_new_privs: bool,
    filters: Vec<Vec<libc::sock_filter>>,
}

impl Security {
    pub(crate) fn prepare(spec: &GuestSecurity) -> Result<Security, String> {
        let last_cap = confine::last_cap();
        let filters = spec
            .seccomp
            .iter()
            .map(|p| {
                confine::program_from_bytes(p)
                    .ok_or_else(|| "a seccomp filter is not whole instructions".to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Security {
            keep: spec.caps.map(|c| c & confine::known(last_cap)),
            last_cap,
            no_new_privs: spec.no_new_privs,
            filters,
        })
    }

    fn install(&self) -> io::Result<()> {
        for f in &self.filters {
            confine::install_filter(f)?;
        }
        Ok(())
    }

    /// In the child, before it changes to the workload's user. Async-signal-safe.
    pub(crate) fn before_identity(&self) -> io::Result<()> {
        if let Some(keep) = self.keep {
            confine::drop_bounding(keep, self.last_cap)?;
        }
        if !self.no_new_privs {
            self.install()?;
        }
        Ok(())
    }

    /// In the child, after it changed to the workload's user (`root`: it stayed uid 0, whose
    /// capability sets are set to the kept ones). Async-signal-safe.
    pub(crate) fn after_identity(&self, root: bool) -> io::Result<()> {
        if let (Some(keep), true) = (self.keep, root) {
            confine::set(keep)?;
        }
        if self.no_new_privs {
            confine::set_no_new_privs()?;
            self.install()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_asked_by_default_and_bad_programs_are_refused() {
        let s = Security::prepare(&GuestSecurity::default()).unwrap();
        assert!(s.keep.is_none() && !s.no_new_privs && s.filters.is_empty());
        let all = Security::prepare(&GuestSecurity {
            caps: Some(u64::MAX),
            no_new_privs: true,
            seccomp: vec![vec![0; 16]],
        })
        .unwrap();
        assert_eq!(all.keep, Some(confine::known(confine::last_cap())));
        assert_eq!(all.filters[0].len(), 2);
        assert!(Security::prepare(&GuestSecurity {
            caps: None,
            no_new_privs: false,
            seccomp: vec![vec![0; 7]],
        })
        .is_err());
    }
}
