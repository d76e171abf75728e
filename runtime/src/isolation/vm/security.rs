//! The VM column's security options in the agent protocol's form: the capability set and the
//! seccomp filters are computed and compiled on the host by the namespace column's code
//! (docker's rules in [`crate::isolation::security`], the profile compiler in
//! [`crate::isolation::seccomp_profile`]) and applied to each process in the guest by the agent.
//!
//! Without any option the guest's processes run as the guest's root does (every capability, no
//! filter): the VM is the boundary. With any, docker's rules hold inside the guest: docker's
//! default set changed by `--cap-add`/`--cap-drop` (every capability with `--privileged`),
//! no_new_privs unless `no-new-privileges=false`, and the profile given with `seccomp=` (the
//! VM column has no default profile of its own: `unconfined` and no `seccomp=` are the same).

use nook_agent::confine::program_to_bytes;
use nook_agent::protocol::GuestSecurity;

use crate::isolation::namespace::seccomp::as_kernel;
use crate::isolation::security::{self, Seccomp, SecurityOptions};
use crate::isolation::{seccomp_profile, IsolationError};

/// What the agent applies for `opts`.
pub fn guest_security(opts: &SecurityOptions) -> Result<GuestSecurity, IsolationError> {
    if opts.is_default() {
        return Ok(GuestSecurity::default());
    }
    let seccomp = match &opts.seccomp {
        _ if opts.privileged => Vec::new(),
        Seccomp::Default | Seccomp::Unconfined => Vec::new(),
        Seccomp::Profile { file, text } => seccomp_profile::compile(text, opts.capabilities())
            .map_err(|e| IsolationError::Start {
                code: 125,
                message: crate::errors::chain(&security::profile_error(file, e)),
            })?
            .filters
            .iter()
            .map(|p| program_to_bytes(as_kernel(p)))
            .collect(),
    };
    Ok(GuestSecurity {
        caps: Some(if opts.privileged {
            u64::MAX
        } else {
            opts.capabilities()
        }),
        no_new_privs: opts.no_new_privs(),
        seccomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules_only_when_asked() {
        assert_eq!(
            guest_security(&SecurityOptions::default()).unwrap(),
            GuestSecurity::default()
        );
        let drop_all = SecurityOptions::from_flags(&[], &["ALL".into()], &[], false).unwrap();
        let g = guest_security(&drop_all).unwrap();
        assert_eq!(g.caps, Some(0));
        assert!(g.no_new_privs && g.seccomp.is_empty());
        let privileged = SecurityOptions::from_flags(&[], &[], &[], true).unwrap();
        assert_eq!(guest_security(&privileged).unwrap().caps, Some(u64::MAX));
        let profile = SecurityOptions {
            seccomp: Seccomp::Profile {
                file: "p.json".into(),
                text: r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#.into(),
            },
            ..SecurityOptions::default()
        };
        let g = guest_security(&profile).unwrap();
        assert_eq!(g.caps, Some(security::default_caps()));
        assert!(!g.seccomp.is_empty() && g.seccomp.iter().all(|p| p.len() % 8 == 0));
    }
}
