//! `nook version` and `nook --version`: the version, the commit it was built from and the
//! components a microVM needs (VMM, agent, kernel), each with the path nook would use and where
//! that path came from, so a user can tell an installed nook from a checkout's build.

use std::path::{Path, PathBuf};

use nook::isolation::vm::assets;
use nook::isolation::vm::kernel::find_kernel;
use nook::paths::{Env, ProcessEnv};

use super::emit;

/// The commit recorded by `build.rs` ("unknown" for a build without git).
pub const COMMIT: &str = env!("NOOK_COMMIT");
/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(clap::Args)]
pub struct Args {}

/// One component of the VM column: where it is and why that one, or why none was found.
pub struct Component {
    pub name: &'static str,
    pub found: Result<(PathBuf, String), String>,
}

/// The VMM, the agent and the kernel, looked up as `run --isolation=vm` looks them up.
pub fn components() -> Vec<Component> {
    let env = ProcessEnv;
    let origin = |var: &str, path: &Path| -> String {
        if env.var(var).is_some() {
            format!("${var}")
        } else if assets::installed_dir()
            .and_then(|d| d.canonicalize().ok())
            .is_some_and(|d| path.canonicalize().is_ok_and(|p| p.starts_with(&d)))
        {
            "the install".into()
        } else {
            "the build next to nook".into()
        }
    };
    let err = |e: &dyn std::error::Error| e.to_string();
    vec![
        Component {
            name: "VMM",
            found: assets::find_vmm(&env)
                .map(|p| {
                    let o = origin("NOOK_VMM", &p);
                    (p, o)
                })
                .map_err(|e| err(&e)),
        },
        Component {
            name: "agent",
            found: assets::find_agent(&env)
                .map(|p| {
                    let o = origin("NOOK_AGENT", &p);
                    (p, o)
                })
                .map_err(|e| err(&e)),
        },
        Component {
            name: "kernel",
            found: find_kernel(None, &env)
                .map(|k| (k.path, k.origin.to_string()))
                .map_err(|e| err(&e)),
        },
    ]
}

/// `nook version X, build C` and one line per component.
pub fn text() -> String {
    let mut s = format!("nook version {VERSION}, build {COMMIT}\n");
    for c in components() {
        match &c.found {
            Ok((path, origin)) => {
                s.push_str(&format!(
                    " {:<7} {} (from {origin})\n",
                    format!("{}:", c.name),
                    path.display()
                ));
            }
            Err(why) => s.push_str(&format!(
                " {:<7} not found: {why}\n",
                format!("{}:", c.name)
            )),
        }
    }
    s
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    emit(&text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_names_version_and_commit() {
        let t = text();
        let first = t.lines().next().unwrap();
        assert_eq!(first, format!("nook version {VERSION}, build {COMMIT}"));
        assert!(!COMMIT.is_empty());
        for name in ["VMM:", "agent:", "kernel:"] {
            assert!(t.contains(name), "{t}");
        }
    }
}
