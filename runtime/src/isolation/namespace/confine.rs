//! What a container's processes are confined by, from its security options: computed and
//! compiled by nook before it forks into the container, so that nothing is parsed there.

use seccompiler::BpfProgram;

use super::{caps, seccomp};
use crate::isolation::security::{self, Seccomp, SecurityOptions};
use crate::isolation::{seccomp_profile, IsolationError};

/// The confinement of one process of a container (its first, or one `exec` starts).
pub struct Confinement {
    /// Kept in the bounding set, and given to a workload running as root.
    pub caps: u64,
    /// Set before the workload runs; else the filters go in while the process still holds
    /// CAP_SYS_ADMIN in the container's user namespace, as runc does.
    pub no_new_privs: bool,
    /// Installed in order; none when unconfined or privileged.
    pub filters: Vec<BpfProgram>,
    /// docker's masked and read-only paths of /proc and /sys (none with `--privileged`).
    pub masks: bool,
    /// Effective, permitted, inheritable and ambient sets of their own, for any user (an OCI
    /// bundle's); None: a root workload gets `caps` as the first three, others none.
    pub sets: Option<caps::Sets>,
}

fn start_error(message: String) -> IsolationError {
    IsolationError::Start { code: 125, message }
}

impl Confinement {
    pub fn of(opts: &SecurityOptions) -> Result<Confinement, IsolationError> {
        let known = caps::known(caps::last_cap());
        let filters = match &opts.seccomp {
            _ if opts.privileged => Vec::new(),
            Seccomp::Default => seccomp::default_filters()
                .map_err(|e| start_error(format!("cannot build the seccomp profile: {e}")))?
                .into(),
            Seccomp::Unconfined => Vec::new(),
            Seccomp::Profile { file, text } => {
                seccomp_profile::compile(text, opts.capabilities())
                    .map_err(|e| {
                        start_error(crate::errors::chain(&security::profile_error(file, e)))
                    })?
                    .filters
            }
        };
        Ok(Confinement {
            caps: if opts.privileged {
                known
            } else {
                opts.capabilities() & known
            },
            no_new_privs: opts.no_new_privs(),
            filters,
            masks: !opts.privileged,
            sets: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_privileged_and_unconfined() {
        let c = Confinement::of(&SecurityOptions::default()).unwrap();
        assert_eq!(c.caps, security::default_caps());
        assert!(c.no_new_privs && c.masks && c.filters.len() == 2);

        let p = Confinement::of(&SecurityOptions {
            privileged: true,
            ..SecurityOptions::default()
        })
        .unwrap();
        assert_eq!(p.caps, caps::known(caps::last_cap()));
        assert!(p.filters.is_empty() && !p.masks);

        let u = Confinement::of(&SecurityOptions {
            seccomp: Seccomp::Unconfined,
            no_new_privileges: Some(false),
            ..SecurityOptions::default()
        })
        .unwrap();
        assert!(u.filters.is_empty() && u.masks && !u.no_new_privs);

        let bad = Confinement::of(&SecurityOptions {
            seccomp: Seccomp::Profile {
                file: "p.json".into(),
                text: "[]".into(),
            },
            ..SecurityOptions::default()
        });
        let Err(IsolationError::Start { code: 125, message }) = bad else {
            panic!("a bad profile must fail the start");
        };
        assert!(
            message.starts_with("invalid seccomp profile p.json: "),
            "{message}"
        );
    }
}
